//! The subcommands.

pub mod bench;
pub mod convert;
pub mod gguf_to_hf;
pub mod inspect;
pub mod quantize;

use std::io::Write;
use std::path::Path;

use fairy2i_format::gguf::GgufWriter;

use crate::error::{Error, FormatContext, Result};

/// Writes `text` to standard output. A reader that went away (a closed pipe) gives
/// [`Error::StdoutClosed`], which `main` turns into a quiet exit 0.
pub fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Error::StdoutClosed,
            _ => Error::Stdout(e),
        })
}

/// Writes `text` to standard error, ignoring failures: a closed or full stderr must not turn a
/// finished job into a failure (or a panic, as `eprint!` would).
pub fn print_err(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

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

/// Runs `produce` (which encodes tensors in file order and hands each one's bytes to `send`) while
/// a second thread writes them, so encoding the next tensor overlaps writing the last. At most one
/// finished tensor waits in between. `send` returns false once the writer has failed; the writer's
/// error is then returned. On success the file is finished (renamed into place).
pub fn pipelined<F>(mut writer: GgufWriter, out: &Path, produce: F) -> Result<()>
where
    F: FnOnce(&dyn Fn(Vec<u8>) -> bool) -> Result<()>,
{
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
    std::thread::scope(|scope| {
        let consumer = scope.spawn(move || -> Result<GgufWriter> {
            for bytes in rx {
                writer.write_tensor(&bytes).at_file(out)?;
            }
            Ok(writer)
        });
        let produced = produce(&|bytes| tx.send(bytes).is_ok());
        drop(tx);
        let written = match consumer.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        // An encoding error stops production; the writer (and its temp file) is dropped.
        produced?;
        written?.finish().at_file(out)?;
        Ok(())
    })
}
