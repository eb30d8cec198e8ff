//! Reading a Hugging Face checkpoint folder: `config.json` and `generation_config.json` ([`config`]),
//! the safetensors shards ([`safetensors`]), the naming heuristics of gguf-py ([`naming`]) and the
//! tokenizer ([`tokenizer`], its own module).

pub mod config;
pub mod naming;
pub mod safetensors;
pub mod tokenizer;

use std::path::Path;

use fairy2i_format::gguf::Value;

use crate::arch::Arch;
use crate::error::Result;

/// All `tokenizer.*` KVs of the model folder, in the reference converter's order.
pub fn tokenizer_kvs(
    dir: &Path,
    config: &serde_json::Map<String, serde_json::Value>,
    arch: Arch,
) -> Result<Vec<(String, Value)>> {
    let config = serde_json::Value::Object(config.clone());
    let input = tokenizer::TokenizerInput {
        dir,
        config: &config,
        arch: arch.name(),
    };
    Ok(tokenizer::tokenizer_kvs(&input)?)
}
