//! The subcommands.

pub mod convert;
pub mod gguf_to_hf;
pub mod inspect;
pub mod quantize;

use crate::error::Result;

/// Sizes the global rayon pool (once per process).
pub fn init_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()?;
    }
    Ok(())
}
