//! Issue 3 §1: reading real GGUF files and writing them back gives byte-identical files.
//! Files come from `../shared/fixtures/reference/` (llama.cpp's own converter) and from the model
//! cache (`~/.cache/fairy2i/models/`, filled by `scripts/fetch-models.sh`); absent files are skipped
//! with a printed reason, and `.ci/run` sets `FAIRY2I_REQUIRE_FIXTURES=1`, which turns a skip into a failure.

use std::path::PathBuf;

use fairy2i_format::gguf::{GgufWriter, MappedGguf, TensorSpec};

fn candidates() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = std::env::var_os("FAIRY2I_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared"));
    let cache = std::env::var_os("FAIRY2I_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/fairy2i")
        });
    let mut v: Vec<PathBuf> = [
        "llama-tiny.f16.gguf",
        "llama-tiny.bf16.gguf",
        "llama-tiny.f32.gguf",
        "qwen2-tiny.f16.gguf",
        "llama-spm-tiny.f16.gguf",
    ]
    .iter()
    .map(|f| shared.join("fixtures/reference").join(f))
    .collect();
    v.push(cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    v.push(cache.join("models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"));
    v
}

#[test]
fn real_gguf_files_round_trip_byte_for_byte() {
    let require = std::env::var_os("FAIRY2I_REQUIRE_FIXTURES").is_some();
    let dir = tempfile::tempdir().unwrap();
    let mut done = 0;
    for path in candidates() {
        if !path.exists() {
            eprintln!("SKIPPED: {} is absent (run scripts/fetch-models.sh; ../shared must sit beside the repo)", path.display());
            assert!(!require, "required file missing: {}", path.display());
            continue;
        }
        let map = MappedGguf::open(&path).unwrap();
        let g = map.parse().unwrap();
        let specs: Vec<TensorSpec> = g
            .tensors
            .iter()
            .map(|t| TensorSpec {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty: t.ty,
            })
            .collect();
        let out = dir.path().join("out.gguf");
        let mut w = GgufWriter::create_versioned(&out, g.version, &g.metadata, specs).unwrap();
        for t in &g.tensors {
            w.write_tensor(g.tensor_data(t)).unwrap();
        }
        w.finish().unwrap();
        let a = std::fs::read(&path).unwrap();
        let b = std::fs::read(&out).unwrap();
        assert_eq!(a.len(), b.len(), "{}", path.display());
        assert!(a == b, "{} differs after round trip", path.display());
        done += 1;
    }
    eprintln!("round-tripped {done} files");
}
