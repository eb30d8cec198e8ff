//! `fairy2i quantize`: a GGUF file to another type. Not yet implemented.

use crate::cli::QuantizeArgs;
use crate::error::Result;

/// Runs `quantize`.
pub fn run(args: &QuantizeArgs) -> Result<()> {
    let _ = args;
    Ok(())
}
