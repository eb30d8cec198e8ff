//! Helpers of the format crate's integration tests: the workspace's skip rule and input folders
//! ([`fixtures`]), the golden quantizer cases, the cached models.
#![allow(dead_code)]

use std::path::PathBuf;

use fairy2i_format::gguf::MappedGguf;

#[path = "../../../tests/src/fixtures.rs"]
pub mod fixtures;

/// Qwen2.5-Coder-1.5B-Instruct Q4_K_M of the cache (`scripts/fetch-models.sh`).
pub const QWEN: &str = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf";
/// SmolLM2-135M-Instruct Q4_1 of the cache (`scripts/fetch-models.sh`).
pub const SMOLLM: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The golden case `case` (`<case>.safetensors`): bundled in `tests/data/golden/`, else in
/// `<shared>/golden/quant/`; `None` after [`fixtures::skip`] when in neither.
pub fn golden(case: &str) -> Option<PathBuf> {
    let file = format!("{case}.safetensors");
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(&file);
    if local.is_file() {
        return Some(local);
    }
    let shared = fixtures::shared_dir().join("golden/quant").join(&file);
    fixtures::present(
        &fixtures::test_name(),
        shared,
        "not bundled in tests/data/golden; ../shared must sit beside the repo, or set FAIRY2I_SHARED",
    )
}

/// The cached model `name`, mapped; `None` after [`fixtures::skip`] when absent.
pub fn open_model(name: &str) -> Option<MappedGguf> {
    let path = fixtures::present(
        &fixtures::test_name(),
        fixtures::cache_dir().join("models").join(name),
        "run scripts/fetch-models.sh",
    )?;
    Some(MappedGguf::open(&path).unwrap_or_else(|e| panic!("{e}")))
}
