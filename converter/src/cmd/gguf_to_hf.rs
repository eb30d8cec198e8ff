//! Hidden `fairy2i gguf-to-hf`: dequantizes a GGUF into a Hugging Face style folder (bf16 shards).
//! Not yet implemented.

use crate::cli::GgufToHfArgs;
use crate::error::Result;

/// Runs `gguf-to-hf`.
pub fn run(args: &GgufToHfArgs) -> Result<()> {
    let _ = args;
    Ok(())
}
