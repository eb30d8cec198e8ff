//! Helpers of the backend's integration tests: the workspace's skip rule and input folders
//! ([`fixtures`]), the plugin built for this run, the cached model.
#![allow(dead_code)]

use std::path::PathBuf;

#[path = "../../../tests/src/fixtures.rs"]
pub mod fixtures;

/// The SmolLM2-135M GGUF of the cache (`scripts/fetch-models.sh`); it may be absent.
pub fn smollm() -> PathBuf {
    fixtures::cache_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The plugin built for this test run (cargo builds the cdylib with the integration tests), or
/// `$FAIRY2I_PLUGIN`.
pub fn plugin() -> PathBuf {
    if let Some(p) = std::env::var_os("FAIRY2I_PLUGIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary's folder");
    [deps.parent().unwrap_or(deps), deps]
        .iter()
        .map(|d| d.join("libggml_fairy2i.so"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("libggml_fairy2i.so not found next to {}", exe.display()))
}

/// Why a test needing the llama.cpp build skips without one.
pub const NO_LLAMA: &str = "no llama.cpp build (run `ffi/build-llama.sh` or set FAIRY2I_LLAMA_DIR)";
