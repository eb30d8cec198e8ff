//! Loading proof (issue 5 item 3, docs/abi.md §6): the real llama.cpp tools of the patched build find
//! the plugin, list the FAIRY2I device, and run every F2I MUL_MAT of a model in it.
//!
//! Needs the built llama.cpp (`$FAIRY2I_LLAMA_DIR` or `ffi/build-llama.sh --print-dir`) and, for the
//! generation test, the cached SmolLM2-135M GGUF (`$FAIRY2I_CACHE/models`). Missing → `SKIPPED:`
//! (a failure with `FAIRY2I_REQUIRE_FIXTURES=1`).

use std::path::{Path, PathBuf};
use std::process::Command;

use fairy2i_format::gguf::{GgufWriter, MappedGguf, TensorSpec};
use fairy2i_format::{f2i, GgmlType};

mod common;

use common::{fixtures, plugin};

fn skip(why: &str) {
    fixtures::skip(&fixtures::test_name(), why);
}

fn llama_bin() -> Option<PathBuf> {
    let bin = fixtures::llama_build_dir()?.join("bin");
    ["llama-cli", "llama-simple", "libggml-cpu.so"]
        .iter()
        .all(|f| bin.join(f).is_file())
        .then_some(bin)
}

/// A private copy of one tool with `libggml-cpu.so` and this build's plugin as
/// `libggml-fairy2i.so` beside it: `ggml_backend_load_all` scans the executable's directory, so the
/// patch's `fairy2i` entry picks the plugin up without `GGML_BACKEND_PATH`, and no other copy of the
/// plugin can interfere.
fn staged_tool(bin: &Path, tool: &str, dir: &Path) -> PathBuf {
    let exe = dir.join(tool);
    std::fs::copy(bin.join(tool), &exe).unwrap();
    std::fs::copy(bin.join("libggml-cpu.so"), dir.join("libggml-cpu.so")).unwrap();
    std::fs::copy(plugin(), dir.join("libggml-fairy2i.so")).unwrap();
    exe
}

#[test]
fn llama_cli_lists_the_device() {
    let Some(bin) = llama_bin() else {
        return skip(common::NO_LLAMA);
    };
    // through GGML_BACKEND_PATH, as any unpatched-loader host would do
    let out = Command::new(bin.join("llama-cli"))
        .arg("--list-devices")
        .env("GGML_BACKEND_PATH", plugin())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("FAIRY2I: Fairy2i F2I matmul"),
        "device not listed:\n{text}"
    );

    // through the patched ggml_backend_load_all (libggml-fairy2i.so beside the executable)
    let tmp = tempfile::tempdir().unwrap();
    let exe = staged_tool(&bin, "llama-cli", tmp.path());
    let out = Command::new(exe)
        .arg("--list-devices")
        .env_remove("GGML_BACKEND_PATH")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("FAIRY2I: Fairy2i F2I matmul"),
        "device not found by load_all:\n{text}"
    );
}

/// Rewrites a GGUF with the MUL_MAT weights of layers `0..n_layers` that fit F2I (K % 256 == 0,
/// N even) quantized to `ty` by the format crate, everything else copied. Returns the number of F2I
/// tensors.
fn make_f2i_gguf(src: &Path, dst: &Path, ty: GgmlType, n_layers: usize) -> usize {
    let stages = ty.f2i_stages().unwrap();
    let mapped = MappedGguf::open(src).unwrap();
    let gguf = mapped.parse().unwrap();
    let layer = |name: &str| {
        name.strip_prefix("blk.")?
            .split('.')
            .next()?
            .parse::<usize>()
            .ok()
    };
    let fits = |t: &fairy2i_format::gguf::TensorInfo| {
        t.dims.len() == 2
            && layer(&t.name).is_some_and(|l| l < n_layers)
            && t.name.ends_with(".weight")
            && t.dims[0].is_multiple_of(256)
            && t.dims[1].is_multiple_of(2)
    };
    let specs: Vec<TensorSpec> = gguf
        .tensors
        .iter()
        .map(|t| TensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ty: if fits(t) { ty } else { t.ty },
        })
        .collect();
    let mut writer = GgufWriter::create(dst, &gguf.metadata, specs).unwrap();
    let mut n_f2i = 0;
    for t in &gguf.tensors {
        let data = gguf.tensor_data(t);
        if fits(t) {
            let (k, n) = (t.dims[0] as usize, t.dims[1] as usize);
            let mut w = vec![0.0f32; k * n];
            fairy2i_format::blocks::dequantize(t.ty, data, &mut w).unwrap();
            let opts = f2i::QuantOptions {
                stages,
                ..Default::default()
            };
            writer
                .write_tensor(&f2i::quantize_tensor(&w, k, n, &opts).unwrap())
                .unwrap();
            n_f2i += 1;
        } else {
            writer.write_tensor(data).unwrap();
        }
    }
    writer.finish().unwrap();
    n_f2i
}

#[test]
fn llama_simple_runs_every_f2i_mul_mat_in_fairy2i() {
    let Some(bin) = llama_bin() else {
        return skip(common::NO_LLAMA);
    };
    let model = common::smollm();
    if !model.is_file() {
        return skip(&format!(
            "{} is absent (run scripts/fetch-models.sh)",
            model.display()
        ));
    }
    let tmp = tempfile::tempdir().unwrap();
    let f2i_model = tmp.path().join("smol-f2i.gguf");
    let n_f2i = make_f2i_gguf(&model, &f2i_model, GgmlType::F2I_W4, usize::MAX);
    assert!(n_f2i > 0);

    let exe = staged_tool(&bin, "llama-simple", tmp.path());
    let run = |model: &Path| {
        let out = Command::new(&exe)
            .args(["-n", "8", "-m"])
            .arg(model)
            .arg("The capital of France is")
            .env("FAIRY2I_LOG", "1")
            .env_remove("GGML_BACKEND_PATH")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "llama-simple failed:\n{stdout}\n{stderr}"
        );
        (stdout, stderr)
    };
    let (text, stderr) = run(&f2i_model);
    // graph_compute runs once per scheduler split: sum the products over the lines of the run
    let per_split: Vec<u64> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("fairy2i: graph: mul_mat "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    let total: u64 = per_split.iter().sum();
    println!(
        "{n_f2i} F2I tensors; {} FAIRY2I splits, {total} products\nF2I output: {text}",
        per_split.len()
    );
    // 8 decodes (prompt, then one token at a time), each running every F2I tensor once in FAIRY2I
    // (the patched CPU backend refuses F2I ops, so a product scheduled elsewhere would abort)
    assert!(
        total >= 8 * n_f2i as u64 && total.is_multiple_of(n_f2i as u64),
        "F2I products run in FAIRY2I: {total}\n{stderr}"
    );
    assert!(
        text.starts_with("The capital of France is") && text.trim().len() > 24,
        "no text generated: {text}"
    );
}
