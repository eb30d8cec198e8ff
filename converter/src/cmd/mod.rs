//! The subcommands.

pub mod convert;
pub mod gguf_to_hf;
pub mod inspect;
pub mod quantize;

use std::path::Path;

use crate::error::{Error, Result};

/// Sizes the global rayon pool (once per process).
pub fn init_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()?;
    }
    Ok(())
}

/// Checks, before any work, that `out` can be created: its folder exists and it is not a folder.
pub fn check_output(out: &Path) -> Result<()> {
    let problem = if out.is_dir() {
        Some("it is a directory")
    } else {
        match out.parent() {
            Some(p) if !p.as_os_str().is_empty() && !p.is_dir() => {
                Some("its folder does not exist")
            }
            _ => None,
        }
    };
    match problem {
        Some(problem) => Err(Error::OutputPath {
            path: out.to_path_buf(),
            problem,
        }),
        None => Ok(()),
    }
}
