//! Correctness oracle (issue 5 item 4, docs/backend.md §4): the real ggml of the patched llama.cpp
//! build runs `mul_mat(W_f2i, x)` on the FAIRY2I backend (this crate's cdylib) and
//! `mul_mat(dequantize(W_f2i), x)` on its own CPU backend, in one graph through ggml's scheduler;
//! the results must agree to a normalized MSE of 1e-6 on the exact path (`FAIRY2I_EXACT=1`) and of
//! 1e-4 on the default int8-activation path (its per-element bound is tested in `kernels::q8`).
//!
//! Needs the built llama.cpp: `$FAIRY2I_LLAMA_DIR` (the dir `ffi/build-llama.sh` prints), else the
//! dir of `ffi/build-llama.sh --print-dir` if it has been built. Without it the test prints
//! `SKIPPED:` and passes, unless `FAIRY2I_REQUIRE_FIXTURES=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use fairy2i_format::f2i;
use ggml_fairy2i::kernels::Isa;

/// The exact path (f32 activations).
const NMSE_MAX: f64 = 1e-6;
/// The default path (activations quantized to int8 per block of 256).
const NMSE_MAX_Q8: f64 = 1e-4;

mod common;

use common::{fixtures, plugin};

fn skip(why: &str) {
    fixtures::skip(&fixtures::test_name(), why);
}

/// The llama.cpp build dir (holding `bin/`), if built.
fn llama_dir() -> Option<PathBuf> {
    let dir = fixtures::llama_build_dir()?;
    ["libggml-base.so", "libggml.so", "libggml-cpu.so"]
        .iter()
        .all(|f| dir.join("bin").join(f).is_file())
        .then_some(dir)
}

struct Oracle {
    exe: PathBuf,
    plugin: PathBuf,
    cpu: PathBuf,
    tmp: tempfile::TempDir,
}

impl Oracle {
    fn build(llama: &Path) -> Oracle {
        let src = std::env::var_os("FAIRY2I_LLAMA_SRC")
            .map(PathBuf::from)
            .unwrap_or_else(|| llama.join("src"));
        let bin = llama.join("bin");
        let tmp = tempfile::tempdir().unwrap();
        let exe = tmp.path().join("oracle");
        let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .arg("-std=c11")
            .arg("-O1")
            .arg("-Wall")
            .arg("-o")
            .arg(&exe)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/oracle.c"))
            .arg(format!("-I{}", src.join("ggml/include").display()))
            .arg(format!("-L{}", bin.display()))
            .arg(format!("-Wl,-rpath,{}", bin.display()))
            .args(["-lggml", "-lggml-base", "-lm"])
            .status()
            .expect("run cc");
        assert!(status.success(), "compiling the oracle failed");
        Oracle {
            exe,
            plugin: plugin(),
            cpu: bin.join("libggml-cpu.so"),
            tmp,
        }
    }

    /// Runs the oracle on one case with the layout flag (0 plain, 1 strided, 2 misaligned);
    /// returns (stdout, stderr, output file).
    fn exec(
        &self,
        case: &Case,
        threads: u32,
        layout: u32,
        isa: Option<&str>,
        exact: bool,
    ) -> (String, String, PathBuf) {
        let stages = case.stages as u32;
        let mut bytes = Vec::new();
        for v in [
            0x4f49_3246u32,
            63 + stages,
            case.k as u32,
            case.n_rows as u32,
        ]
        .into_iter()
        .chain(case.cols.iter().map(|&c| c as u32))
        .chain([threads, layout])
        {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend_from_slice(&case.f2i);
        bytes.extend(case.w32.iter().flat_map(|v| v.to_le_bytes()));
        bytes.extend(case.x.iter().flat_map(|v| v.to_le_bytes()));
        let input = self.tmp.path().join("case.bin");
        let output = self.tmp.path().join("out.bin");
        std::fs::write(&input, bytes).unwrap();
        let mut cmd = Command::new(&self.exe);
        cmd.arg(&self.plugin)
            .arg(&self.cpu)
            .arg(&input)
            .arg(&output)
            .env("FAIRY2I_LOG", "1");
        match isa {
            Some(isa) => cmd.env("FAIRY2I_ISA", isa),
            None => cmd.env_remove("FAIRY2I_ISA"),
        };
        if exact {
            cmd.env("FAIRY2I_EXACT", "1");
        } else {
            cmd.env_remove("FAIRY2I_EXACT");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "oracle failed for {}:\n{stdout}\n{stderr}",
            case.name
        );
        (stdout, stderr, output)
    }

    /// Runs one case; returns (y_f2i, y_cpu, stderr).
    fn run(
        &self,
        case: &Case,
        threads: u32,
        strided: bool,
        isa: Option<&str>,
        exact: bool,
    ) -> (Vec<f32>, Vec<f32>, String) {
        let n_cols = case.cols.iter().product::<usize>();
        let (stdout, stderr, output) = self.exec(case, threads, strided as u32, isa, exact);
        assert!(
            stdout.contains("assigned FAIRY2I CPU"),
            "{}: wrong backends: {stdout}",
            case.name
        );
        let floats: Vec<f32> = std::fs::read(&output)
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let n = case.n_rows * n_cols;
        assert_eq!(floats.len(), 2 * n);
        (floats[..n].to_vec(), floats[n..].to_vec(), stderr)
    }
}

struct Case {
    name: String,
    k: usize,
    n_rows: usize,
    stages: usize,
    cols: [usize; 3],
    f2i: Vec<u8>,
    w32: Vec<f32>,
    x: Vec<f32>,
}

/// xorshift64*, for test data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Independent dequantizer, straight from docs/format.md and docs/fairy2i-math.md §1 (f64 sums).
fn dequantize_ref(data: &[u8], k: usize, n_rows: usize, stages: usize) -> Vec<f32> {
    let row_bytes = k / 256 * stages * 36;
    let (m, n) = (k / 2, n_rows / 2);
    let entry = |row: &[u8], e: usize| -> (f64, f64) {
        let (b, i) = (e / 128, e % 128);
        let mut v = (0.0f64, 0.0f64);
        for s in 0..stages {
            let rec = &row[(b * stages + s) * 36..][..36];
            let d_re = half::f16::from_le_bytes([rec[0], rec[1]]).to_f64();
            let d_im = half::f16::from_le_bytes([rec[2], rec[3]]).to_f64();
            match (rec[4 + i % 32] >> (2 * (i / 32))) & 3 {
                0 => v.0 += d_re,
                1 => v.1 += d_im,
                2 => v.0 -= d_re,
                _ => v.1 -= d_im,
            }
        }
        v
    };
    let mut a = vec![0.0f32; n_rows * k];
    for j in 0..n {
        let u = &data[j * row_bytes..][..row_bytes];
        let w = &data[(n + j) * row_bytes..][..row_bytes];
        for e in 0..m {
            let ((u_re, u_im), (w_re, w_im)) = (entry(u, e), entry(w, e));
            a[j * k + e] = (u_re + w_re) as f32;
            a[j * k + m + e] = (w_im - u_im) as f32;
            a[(n + j) * k + e] = (u_im + w_im) as f32;
            a[(n + j) * k + m + e] = (u_re - w_re) as f32;
        }
    }
    a
}

/// `f2i::dequantize_tensor` (the format crate's) must agree with the reference above.
fn cross_check_format_dequantizer(case: &Case) {
    match std::panic::catch_unwind(|| {
        f2i::dequantize_tensor(&case.f2i, case.k, case.n_rows, case.stages)
    }) {
        Ok(Ok(w)) => {
            let max = w
                .iter()
                .zip(&case.w32)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let scale = case.w32.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(
                max <= 1e-6 * scale.max(1e-30),
                "{}: f2i::dequantize_tensor differs by {max}",
                case.name
            );
        }
        Ok(Err(e)) => panic!("{}: f2i::dequantize_tensor failed: {e}", case.name),
        Err(_) => {
            eprintln!("note: f2i::dequantize_tensor not available yet; reference dequantizer only")
        }
    }
}

fn random_case(rng: &mut Rng, k: usize, n_rows: usize, stages: usize, cols: [usize; 3]) -> Case {
    let mut f2i = Vec::new();
    for _ in 0..n_rows * (k / 256) * stages {
        f2i.extend_from_slice(&half::f16::from_f32(rng.unit() * 0.05).to_le_bytes());
        f2i.extend_from_slice(&half::f16::from_f32(rng.unit() * 0.05).to_le_bytes());
        f2i.extend((0..32).map(|_| rng.next() as u8));
    }
    let w32 = dequantize_ref(&f2i, k, n_rows, stages);
    let x = (0..k * cols.iter().product::<usize>())
        .map(|_| rng.unit())
        .collect();
    Case {
        name: format!("random f2i_w{stages} k={k} n={n_rows} cols={cols:?}"),
        k,
        n_rows,
        stages,
        cols,
        f2i,
        w32,
        x,
    }
}

/// A real weight (SmolLM2-135M ffn_down, from the cached Q4_1 GGUF) quantized by `f2i::quantize_tensor`.
fn real_case(rng: &mut Rng, stages: usize, cols: [usize; 3]) -> Result<Case, String> {
    let path = common::smollm();
    if !path.is_file() {
        return Err(format!(
            "{} is absent (run scripts/fetch-models.sh)",
            path.display()
        ));
    }
    let mapped = fairy2i_format::gguf::MappedGguf::open(&path).map_err(|e| e.to_string())?;
    let gguf = mapped.parse().map_err(|e| e.to_string())?;
    let name = "blk.0.ffn_down.weight";
    let t = gguf
        .tensor(name)
        .ok_or_else(|| format!("{name} not in {}", path.display()))?;
    let (k, n_rows) = (t.ne0() as usize, t.n_rows() as usize);
    let mut w = vec![0.0f32; k * n_rows];
    fairy2i_format::blocks::dequantize(t.ty, gguf.tensor_data(t), &mut w)
        .map_err(|e| e.to_string())?;
    let opts = f2i::QuantOptions {
        stages,
        ..Default::default()
    };
    let f2i = std::panic::catch_unwind(|| f2i::quantize_tensor(&w, k, n_rows, &opts))
        .map_err(|_| "f2i::quantize_tensor is not implemented yet".to_string())?
        .map_err(|e| e.to_string())?;
    let w32 = dequantize_ref(&f2i, k, n_rows, stages);
    let x = (0..k * cols.iter().product::<usize>())
        .map(|_| rng.unit())
        .collect();
    Ok(Case {
        name: format!("real {name} f2i_w{stages} k={k} n={n_rows} cols={cols:?}"),
        k,
        n_rows,
        stages,
        cols,
        f2i,
        w32,
        x,
    })
}

fn nmse(got: &[f32], want: &[f32]) -> f64 {
    let err: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w as f64).powi(2))
        .sum();
    let norm: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum();
    err / norm.max(f64::MIN_POSITIVE)
}

/// The products reported in the plugin's `FAIRY2I_LOG=1` lines.
fn logged_mul_mats(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("fairy2i: graph: mul_mat "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Both paths: exact (NMSE ≤ 1e-6) and the default int8 path (NMSE ≤ 1e-4).
fn check(oracle: &Oracle, case: &Case, threads: u32, strided: bool, isa: Option<&str>) {
    check_path(oracle, case, threads, strided, isa, true);
    check_path(oracle, case, threads, strided, isa, false);
}

fn check_path(
    oracle: &Oracle,
    case: &Case,
    threads: u32,
    strided: bool,
    isa: Option<&str>,
    exact: bool,
) {
    let (got, want, stderr) = oracle.run(case, threads, strided, isa, exact);
    let e = nmse(&got, &want);
    let (path, max) = if exact {
        ("exact", NMSE_MAX)
    } else {
        ("q8", NMSE_MAX_Q8)
    };
    println!(
        "{:<60} threads {threads} strided {strided:<5} isa {:<7} {path:<5} NMSE {e:.3e}",
        case.name,
        isa.unwrap_or("best")
    );
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{}: non-finite output",
        case.name
    );
    assert!(e <= max, "{} ({path}): NMSE {e} > {max}", case.name);
    assert_eq!(
        logged_mul_mats(&stderr),
        1,
        "{}: FAIRY2I did not run exactly one MUL_MAT:\n{stderr}",
        case.name
    );
}

#[test]
fn oracle_matches_ggml_cpu_on_dequantized_weights() {
    let Some(llama) = llama_dir() else {
        skip(common::NO_LLAMA);
        return;
    };
    let oracle = Oracle::build(&llama);
    let mut rng = Rng(0x1234_5678_9abc_def1);

    // random weights: every type, the batch sizes of the issue, broadcast dims, 1..4 threads
    for (i, &batch) in [1usize, 2, 7, 64, 512].iter().enumerate() {
        for stages in 1..=4 {
            let case = random_case(&mut rng, 512, 96, stages, [batch, 1, 1]);
            if batch == 1 {
                cross_check_format_dequantizer(&case);
            }
            check(&oracle, &case, 1 + ((i + stages) % 4) as u32, false, None);
        }
    }
    let case = random_case(&mut rng, 768, 34, 2, [3, 2, 2]);
    check(&oracle, &case, 2, false, None);
    check(&oracle, &case, 3, true, None);

    // every kernel this CPU has, forced through FAIRY2I_ISA
    let case = random_case(&mut rng, 1024, 64, 3, [7, 1, 1]);
    for isa in Isa::ALL {
        if isa.is_available() {
            check(&oracle, &case, 2, true, Some(isa.name()));
        } else {
            println!("{}: not supported by this CPU, not tested", isa.name());
        }
    }

    // misaligned activations: an error status and one log line, no crash
    let case = random_case(&mut rng, 256, 4, 1, [2, 1, 1]);
    let (stdout, stderr, _) = oracle.exec(&case, 2, 2, None, false);
    assert!(stdout.contains("assigned FAIRY2I"), "{stdout}");
    assert!(
        stdout.contains("status -1"),
        "misaligned src1 must fail: {stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("misaligned or not inside its buffer"),
        "{stderr}"
    );
    println!(
        "misaligned src1: GGML_STATUS_FAILED with \"{}\"",
        stderr
            .lines()
            .find(|l| l.contains("misaligned"))
            .unwrap_or("")
    );

    // a real tensor, quantized by the format crate
    for (stages, batch) in [(2usize, 1usize), (2, 64), (1, 7), (4, 2)] {
        match real_case(&mut rng, stages, [batch, 1, 1]) {
            Ok(mut case) => {
                cross_check_format_dequantizer(&case);
                check(&oracle, &case, 2, false, None);
                // LLM-like activations: a few huge outliers among small values
                for (i, v) in case.x.iter_mut().enumerate() {
                    *v *= 0.1;
                    if i % 509 == 3 {
                        *v = if i % 2 == 0 { 600.0 } else { -450.0 };
                    }
                }
                case.name = case.name.replacen("real", "real+outliers", 1);
                check(&oracle, &case, 2, false, None);
            }
            Err(why) => {
                skip(&format!("real-tensor case: {why}"));
                break;
            }
        }
    }
}
