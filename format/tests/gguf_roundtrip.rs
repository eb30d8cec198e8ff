//! Issue 3 §1: reading real GGUF files and writing them back gives byte-identical files.
//! Files come from `../shared/fixtures/reference/` (llama.cpp's own converter) and from the model
//! cache (`~/.cache/fairy2i/models/`, filled by `scripts/fetch-models.sh`); absent files are skipped
//! with a printed reason, and `.ci/run` sets `FAIRY2I_REQUIRE_FIXTURES=1`, which turns a skip into a
//! failure.

mod common;

use std::path::PathBuf;

use fairy2i_format::gguf::{GgufWriter, MappedGguf, TensorSpec};

/// The files to round-trip: llama.cpp's converter output in `../shared`, the registry models in the cache.
fn candidates() -> Vec<(PathBuf, &'static str)> {
    let reference = common::fixtures::shared_dir().join("fixtures/reference");
    let models = common::fixtures::cache_dir().join("models");
    let shared = "../shared must sit beside the repo, or set FAIRY2I_SHARED";
    let mut v: Vec<(PathBuf, &str)> = [
        "llama-tiny.f16.gguf",
        "llama-tiny.bf16.gguf",
        "llama-tiny.f32.gguf",
        "qwen2-tiny.f16.gguf",
        "llama-spm-tiny.f16.gguf",
    ]
    .iter()
    .map(|f| (reference.join(f), shared))
    .collect();
    for m in [common::SMOLLM, common::QWEN] {
        v.push((models.join(m), "run scripts/fetch-models.sh"));
    }
    v
}

#[test]
fn real_gguf_files_round_trip_byte_for_byte() {
    let test = common::fixtures::test_name();
    let dir = tempfile::tempdir().unwrap();
    let mut done = 0;
    for (path, how) in candidates() {
        let Some(path) = common::fixtures::present(&test, path, how) else {
            continue;
        };
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
