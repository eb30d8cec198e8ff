//! Issue 14: the k-quant encoders (Q2_K … Q6_K) and `fairy2i quantize --tensor-type` against
//! llama-quantize itself, byte for byte.
//!
//! SmolLM2-135M is made f32 by llama-quantize; rows 0 and 1 of `blk.0…4.ffn_down` (the matrices
//! with K = 1536, a multiple of 256) are then replaced by [`edge_rows`] (zero, constant, one-signed,
//! tiny, huge and outlier blocks). llama-quantize quantizes that file with `--pure` and
//! `--tensor-type blk\.L\.ffn_down=<type>` giving layer L = 0…4 the types Q2_K … Q6_K (everything
//! else Q8_0), once without and once with an importance matrix (a legacy `.dat` written here, with
//! zero, tiny and huge entries). Our encoders must give the same bytes for every row of those
//! tensors (the reference quantizers without, the imatrix ones with), and `fairy2i quantize` with
//! the same `--tensor-type` arguments must write the same tensors as llama-quantize, all of them.
//!
//! With `FAIRY2I_WRITE_KQUANT_GOLDEN=<dir>` the test also writes the small golden files of
//! `format/tests/data/kquants/` (the two edge rows, the importance vector, llama-quantize's bytes for
//! them) into `<dir>`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fairy2i_format::blocks;
use fairy2i_format::gguf::{GgufWriter, MappedGguf, TensorSpec};
use fairy2i_format::GgmlType;
use fairy2i_tests::*;

const TYPES: [(&str, GgmlType); 5] = [
    ("q2_k", GgmlType::Q2_K),
    ("q3_k", GgmlType::Q3_K),
    ("q4_k", GgmlType::Q4_K),
    ("q5_k", GgmlType::Q5_K),
    ("q6_k", GgmlType::Q6_K),
];

/// Row length of SmolLM2's ffn_down.
const K: usize = 1536;

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Two rows of K values, six 256-value blocks each, made of the real rows `real0`, `real1`:
/// row 0: real | zeros | zero, constant and real sub-blocks | all positive | all negative | an
/// outlier and a 16-value run of 1e-30; row 1: real·1e-20 | real·1e3 | 1e-16 values (below ggml's
/// "all zero" threshold) with a few normal ones | ±1 | real | a ramp.
fn edge_rows(real0: &[f32], real1: &[f32]) -> Vec<f32> {
    let mut a = real0.to_vec();
    let mut b = real1.to_vec();
    a[256..512].fill(0.0);
    a[512..528].fill(0.0);
    a[528..544].fill(0.5);
    a[544..576].fill(-0.25);
    for v in &mut a[768..1024] {
        *v = v.abs();
    }
    for v in &mut a[1024..1280] {
        *v = -v.abs();
    }
    a[1300] *= 100.0;
    a[1408..1424].fill(1e-30);
    for v in &mut b[0..256] {
        *v *= 1e-20;
    }
    for v in &mut b[256..512] {
        *v *= 1e3;
    }
    b[512..768].fill(1e-16);
    b[700] = 0.03;
    b[701] = -0.02;
    for (i, v) in b[768..1024].iter_mut().enumerate() {
        *v = if i % 2 == 0 { 1.0 } else { -1.0 };
    }
    for (i, v) in b[1280..1536].iter_mut().enumerate() {
        *v = -1.0 + 2.0 * i as f32 / 255.0;
    }
    a.extend(b);
    a
}

/// An importance vector of K values: smooth positive values with a zero sub-block, tiny and huge
/// entries.
fn importance() -> Vec<f32> {
    (0..K)
        .map(|i| match i {
            32..48 => 0.0,
            300 => 1e4,
            301 => 1e-12,
            _ => {
                let s = (i as f32 * 0.37).sin() + 1.2;
                s * s * 0.01
            }
        })
        .collect()
}

/// A legacy llama.cpp `.dat` imatrix (ncall 1, so llama-quantize uses the values as they are).
fn legacy_imatrix(path: &Path, entries: &[(String, Vec<f32>)]) {
    let mut b = (entries.len() as i32).to_le_bytes().to_vec();
    for (name, vals) in entries {
        b.extend((name.len() as i32).to_le_bytes());
        b.extend(name.as_bytes());
        b.extend(1i32.to_le_bytes());
        b.extend((vals.len() as i32).to_le_bytes());
        b.extend(bytes_of(vals));
    }
    std::fs::write(path, b).expect("write imatrix");
}

fn pattern_args() -> Vec<String> {
    TYPES
        .iter()
        .enumerate()
        .flat_map(|(l, (name, _))| {
            [
                "--tensor-type".to_string(),
                format!("blk\\.{l}\\.ffn_down={name}"),
            ]
        })
        .collect()
}

/// Where `got` and `want` first differ (byte, block, 16 bytes from there), for the failure message.
fn first_diff(ty: GgmlType, got: &[u8], want: &[u8]) -> Option<String> {
    if got == want {
        return None;
    }
    let i = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let n_bad = got.iter().zip(want).filter(|(a, b)| a != b).count();
    Some(format!(
        "lengths {} / {}, {n_bad} bytes differ, the first at byte {i} (block {}): ours {:02x?}…, llama-quantize {:02x?}…",
        got.len(),
        want.len(),
        i / ty.type_size() as usize,
        &got[i.min(got.len())..(i + 16).min(got.len())],
        &want[i.min(want.len())..(i + 16).min(want.len())]
    ))
}

fn llama_quantize(llama: &Path, args: &[String], input: &Path, output: &Path, ftype: &str) {
    run(
        Command::new(llama_tool(llama, "llama-quantize"))
            .args(args)
            .arg(input)
            .arg(output)
            .args([ftype, "2"]),
        Duration::from_secs(600),
    )
    .ok("llama-quantize");
}

#[test]
fn kquant_encoders_and_tensor_types_give_llama_quantize_bytes() {
    let test = "kquant_encoders_and_tensor_types_give_llama_quantize_bytes";
    let Some(llama) = llama_dir() else {
        skip(
            test,
            "the patched llama.cpp build is absent (run `ffi/build-llama.sh` or scripts/test)",
        );
        return;
    };
    let Some(smollm) = model(SMOLLM) else {
        skip(
            test,
            &format!("model {SMOLLM} is absent (run scripts/fetch-models.sh)"),
        );
        return;
    };
    let _g = heavy();
    let tmp = tempfile::tempdir().expect("tmp");
    let path = |n: &str| -> PathBuf { tmp.path().join(n) };

    // The f32 source, made by llama.cpp, with the edge rows in layers 0..5.
    llama_quantize(
        &llama,
        &["--allow-requantize".into()],
        &smollm,
        &path("f32.gguf"),
        "F32",
    );
    let f32_file = MappedGguf::open(path("f32.gguf")).expect("open f32");
    let g = f32_file.parse().expect("parse f32");
    let real = {
        let t = g.tensor("blk.0.ffn_down.weight").expect("ffn_down");
        assert_eq!((t.ty, t.ne0()), (GgmlType::F32, K as u64));
        f32s(&g.tensor_data(t)[..2 * K * 4])
    };
    let edge = edge_rows(&real[..K], &real[K..]);
    let edited: Vec<String> = (0..TYPES.len())
        .map(|l| format!("blk.{l}.ffn_down.weight"))
        .collect();
    let specs: Vec<TensorSpec> = g
        .tensors
        .iter()
        .map(|t| TensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ty: t.ty,
        })
        .collect();
    let mut w =
        GgufWriter::create_versioned(path("edge.gguf"), g.version, &g.metadata, specs).expect("w");
    for t in &g.tensors {
        let mut data = g.tensor_data(t).to_vec();
        if edited.contains(&t.name) {
            data[..2 * K * 4].copy_from_slice(&bytes_of(&edge));
        }
        w.write_tensor(&data).expect("write");
    }
    w.finish().expect("finish");
    drop(f32_file);

    let imp = importance();
    let entries: Vec<(String, Vec<f32>)> =
        edited.iter().map(|n| (n.clone(), imp.clone())).collect();
    legacy_imatrix(&path("imatrix.dat"), &entries);

    // llama-quantize's references.
    let patterns = pattern_args();
    let mut args = vec!["--pure".to_string()];
    args.extend(patterns.iter().cloned());
    llama_quantize(&llama, &args, &path("edge.gguf"), &path("ref.gguf"), "Q8_0");
    let mut args_im = args.clone();
    args_im.extend([
        "--imatrix".into(),
        path("imatrix.dat").display().to_string(),
    ]);
    llama_quantize(
        &llama,
        &args_im,
        &path("edge.gguf"),
        &path("ref-im.gguf"),
        "Q8_0",
    );

    let src_file = MappedGguf::open(path("edge.gguf")).expect("open edge");
    let src = src_file.parse().expect("parse edge");
    let golden = std::env::var_os("FAIRY2I_WRITE_KQUANT_GOLDEN").map(PathBuf::from);
    if let Some(dir) = &golden {
        std::fs::create_dir_all(dir).expect("golden dir");
        std::fs::write(dir.join("input.f32"), bytes_of(&edge)).expect("write");
        std::fs::write(dir.join("imatrix.f32"), bytes_of(&imp)).expect("write");
    }
    let mut failures = Vec::new();
    for (file, weighted) in [("ref.gguf", false), ("ref-im.gguf", true)] {
        let r_file = MappedGguf::open(path(file)).expect("open ref");
        let r = r_file.parse().expect("parse ref");
        for (l, (name, ty)) in TYPES.iter().enumerate() {
            let tname = &edited[l];
            let rt = r.tensor(tname).expect("reference tensor");
            assert_eq!(
                rt.ty, *ty,
                "{file}: llama-quantize gave {tname} another type"
            );
            let want = r.tensor_data(rt);
            let x = f32s(src.tensor_data(src.tensor(tname).expect("source tensor")));
            let mut got = vec![0u8; want.len()];
            if weighted {
                blocks::quantize_weighted_into(*ty, &x, &imp, &mut got).expect("quantize");
            } else {
                blocks::quantize_into(*ty, &x, &mut got).expect("quantize");
            }
            if let Some(d) = first_diff(*ty, &got, want) {
                failures.push(format!("{name} (imatrix: {weighted}): {d}"));
            }
            if let Some(dir) = &golden {
                let rows = 2 * ty.row_size(K as u64).expect("row size") as usize;
                let suffix = if weighted { ".imatrix" } else { "" };
                std::fs::write(dir.join(format!("{name}{suffix}.bin")), &want[..rows])
                    .expect("write");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "k-quant bytes differ from llama-quantize's:\n{}",
        failures.join("\n")
    );

    // The CLI: the same --tensor-type arguments, every tensor equal to llama-quantize's.
    for (reference, extra) in [
        ("ref.gguf", vec![]),
        (
            "ref-im.gguf",
            vec![
                "--scale-mode".to_string(),
                "block".into(),
                "--imatrix".into(),
                path("imatrix.dat").display().to_string(),
            ],
        ),
    ] {
        let out = path(&format!("ours-{reference}"));
        run(
            Command::new(fairy2i())
                .arg("quantize")
                .arg(path("edge.gguf"))
                .arg(&out)
                .args(["--type", "q8_0", "-q"])
                .args(&patterns)
                .args(&extra),
            Duration::from_secs(600),
        )
        .ok("fairy2i quantize");
        let o_file = MappedGguf::open(&out).expect("open ours");
        let o = o_file.parse().expect("parse ours");
        let r_file = MappedGguf::open(path(reference)).expect("open ref");
        let r = r_file.parse().expect("parse ref");
        let names = |g: &fairy2i_format::gguf::Gguf<'_>| {
            let mut v: Vec<String> = g.tensors.iter().map(|t| t.name.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(names(&o), names(&r), "{reference}: tensor names");
        let mut bad = Vec::new();
        for rt in &r.tensors {
            let ot = o.tensor(&rt.name).expect("tensor");
            if (ot.ty, &ot.dims) != (rt.ty, &rt.dims) {
                bad.push(format!(
                    "{}: {} {:?} vs {} {:?}",
                    rt.name, ot.ty, ot.dims, rt.ty, rt.dims
                ));
            } else if let Some(d) = first_diff(rt.ty, o.tensor_data(ot), r.tensor_data(rt)) {
                bad.push(format!("{} ({}): {d}", rt.name, rt.ty));
            }
        }
        assert!(
            bad.is_empty(),
            "fairy2i quantize differs from llama-quantize ({reference}) in {} tensors:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }
}

/// The default mixture of `fairy2i quantize` (F2I matrices next to k-quants) loads and runs in
/// llama.cpp: llama-completion answers, with the F2I products on our plugin and the k-quant ones on
/// the CPU backend.
#[test]
fn a_mixture_of_f2i_and_k_quants_runs_in_llama_completion() {
    let test = "a_mixture_of_f2i_and_k_quants_runs_in_llama_completion";
    let Some(llama) = llama_dir() else {
        skip(
            test,
            "the patched llama.cpp build is absent (run `ffi/build-llama.sh` or scripts/test)",
        );
        return;
    };
    let Some(smollm) = model(SMOLLM) else {
        skip(
            test,
            &format!("model {SMOLLM} is absent (run scripts/fetch-models.sh)"),
        );
        return;
    };
    let _g = heavy();
    // W4 mix (ffn_down: Q6_K on the "more bits" layers, F2I-W4 elsewhere), the first five ffn_down
    // at Q4_K by pattern; SmolLM2's other matrices (K = 576) fall back to q8_0.
    let f = quantized(
        &smollm,
        "f2i_w4",
        &[
            "--scale-mode",
            "block",
            "--tensor-type",
            "blk\\.[0-4]\\.ffn_down=q4_k",
        ],
    );
    let m = MappedGguf::open(&f).expect("open");
    let g = m.parse().expect("parse");
    let ty = |n: &str| g.tensor(n).map(|t| t.ty);
    assert_eq!(ty("blk.0.ffn_down.weight"), Some(GgmlType::Q4_K));
    assert_eq!(ty("blk.5.ffn_down.weight"), Some(GgmlType::Q6_K));
    assert_eq!(ty("blk.6.ffn_down.weight"), Some(GgmlType::F2I_W4));
    drop(m);
    let r = run(
        Command::new(llama_tool(&llama, "llama-completion"))
            .env("FAIRY2I_LOG", "1")
            .arg("-m")
            .arg(&f)
            .args([
                "-p",
                "The capital of France is",
                "-n",
                "8",
                "-t",
                "2",
                "--temp",
                "0",
                "-no-cnv",
            ]),
        Duration::from_secs(300),
    )
    .ok("llama-completion on the mixture");
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains("fairy2i: graph:") && l.contains("(f2i_w4")),
        "the plugin ran no F2I product:\n{}",
        &r.stderr[r.stderr.len().saturating_sub(4000)..]
    );
    assert!(
        r.stdout.len() > "The capital of France is".len(),
        "{}",
        r.stdout
    );
}

/// Per tensor, the type llama-quantize's `--dry-run` wants for it before its shape fallback (the
/// type in "required for type X" when it falls back, else the type it writes).
fn llama_wanted(log: &str) -> std::collections::HashMap<String, String> {
    let mut wanted = std::collections::HashMap::new();
    let mut fell_back = std::collections::HashMap::new();
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("warning: ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            if let Some(t) = rest.split("(required for type").nth(1) {
                let ty = t
                    .trim()
                    .trim_end_matches(')')
                    .split(')')
                    .next()
                    .unwrap_or("");
                fell_back.insert(name.to_string(), ty.trim().to_string());
            }
        } else if line.starts_with('[') {
            let Some((_, rest)) = line.split_once("] ") else {
                continue;
            };
            let name = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            let ty = match rest.rsplit_once('(') {
                Some((_, t)) if rest.ends_with(')') => t.trim_end_matches(')').to_string(),
                _ => rest
                    .split("type =")
                    .nth(1)
                    .and_then(|t| t.split(',').next())
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            };
            wanted.insert(name, ty);
        }
    }
    wanted.extend(fell_back);
    wanted
}

/// Per tensor, the type `fairy2i quantize --dry-run` wants for it (before the shape fallback), for
/// the weights it quantizes.
fn fairy2i_wanted(summary: &str) -> std::collections::HashMap<String, String> {
    summary
        .lines()
        .take_while(|l| !l.starts_with("type "))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (name, ty) = (w.next()?, w.next()?);
            let note: Vec<&str> = w.collect();
            match note.first() {
                None => None,
                Some(&"fallback,") => Some((name.to_string(), note.get(1)?.to_string())),
                Some(_) => Some((name.to_string(), ty.to_string())),
            }
        })
        .collect()
}

/// The `mix` recipes choose, tensor by tensor, what llama-quantize's mixtures choose: for output.weight
/// and token_embd the same type, for the other matrices F2I-Wk where llama-quantize takes Qk_K
/// (k = 2, 3, 4) and the same type above that.
#[test]
fn mix_recipes_follow_llama_quantize_mixtures() {
    let test = "mix_recipes_follow_llama_quantize_mixtures";
    let Some(llama) = llama_dir() else {
        skip(
            test,
            "the patched llama.cpp build is absent (run `ffi/build-llama.sh` or scripts/test)",
        );
        return;
    };
    let models: Vec<PathBuf> = [SMOLLM, QWEN].iter().filter_map(|m| model(m)).collect();
    if models.is_empty() {
        skip(test, "no test model (run scripts/fetch-models.sh)");
        return;
    }
    for m in &models {
        for (ftype, ours) in [
            ("Q2_K", "f2i_w2"),
            ("Q3_K_M", "f2i_w3"),
            ("Q4_K_M", "f2i_w4"),
        ] {
            let l = run(
                Command::new(llama_tool(&llama, "llama-quantize"))
                    .args(["--dry-run", "--allow-requantize"])
                    .arg(m)
                    .arg(ftype),
                Duration::from_secs(300),
            )
            .ok("llama-quantize --dry-run");
            let theirs = llama_wanted(&format!("{}\n{}", l.stdout, l.stderr));
            let f = run(
                Command::new(fairy2i())
                    .args(["quantize", "--dry-run", "--type", ours])
                    .arg(m),
                Duration::from_secs(300),
            )
            .ok("fairy2i quantize --dry-run");
            let mine = fairy2i_wanted(&f.stderr);
            assert!(mine.len() > 100, "{}", f.stderr);
            let mut bad = Vec::new();
            for (name, ty) in &mine {
                let Some(t) = theirs.get(name) else {
                    bad.push(format!("{name}: not in llama-quantize's plan"));
                    continue;
                };
                let expected = match t.as_str() {
                    _ if name == "output.weight" || name == "token_embd.weight" => t.clone(),
                    "q2_K" => "f2i_w2".into(),
                    "q3_K" => "f2i_w3".into(),
                    "q4_K" => "f2i_w4".into(),
                    other => other.to_string(),
                };
                if *ty != expected {
                    bad.push(format!("{name}: ours {ty}, llama-quantize {t}"));
                }
            }
            bad.sort();
            assert!(
                bad.is_empty(),
                "{} {ftype} vs {ours}: {} tensors differ:\n{}",
                m.display(),
                bad.len(),
                bad.join("\n")
            );
        }
    }
}
