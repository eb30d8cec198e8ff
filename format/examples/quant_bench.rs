//! Throughput of the paper-exact F2I quantizer (issue 3, item 5).
//!
//!     cargo run --release -p fairy2i-format --example quant_bench [-- path.gguf]
//!
//! Prints MB/s of bf16 input (2 bytes per real weight) for W1..W4 on a 8960×1536 and a 1536×8960 matrix:
//! random N(0,1)·0.02 rounded to bf16, or, given a GGUF, its `blk.0.ffn_up.weight` / `blk.0.ffn_down.weight`
//! dequantized (when the `blocks` module handles their type) and rounded to bf16. Each cell is the best of
//! three runs after a warm-up; the thread count is rayon's (RAYON_NUM_THREADS).

use std::time::Instant;

use fairy2i_format::f2i::{
    dequantize_tensor, quantize_tensor, round_bf16, QuantOptions, ScaleMode,
};
use fairy2i_format::gguf::MappedGguf;

struct Matrix {
    name: String,
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

fn random_matrix(rows: usize, cols: usize, seed: u64) -> Matrix {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut uniform = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        ((s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut data = Vec::with_capacity(rows * cols);
    while data.len() < rows * cols {
        // Box–Muller: two normals per pair of uniforms.
        let (u1, u2) = (uniform(), uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        for z in [r * t.cos(), r * t.sin()] {
            if data.len() < rows * cols {
                data.push(round_bf16((z * 0.02) as f32));
            }
        }
    }
    Matrix {
        name: format!("random {rows}×{cols}"),
        rows,
        cols,
        data,
    }
}

fn gguf_matrices(path: &str) -> Result<Vec<Matrix>, Box<dyn std::error::Error>> {
    let map = MappedGguf::open(path)?;
    let g = map.parse()?;
    let mut out = Vec::new();
    for name in ["blk.0.ffn_up.weight", "blk.0.ffn_down.weight"] {
        let t = g
            .tensor(name)
            .ok_or_else(|| format!("{path}: no tensor {name}"))?;
        let (cols, rows) = (t.ne0() as usize, t.n_rows() as usize);
        if !fairy2i_format::blocks::can_dequantize(t.ty) {
            return Err(format!("{name}: type {} cannot be dequantized here", t.ty.name()).into());
        }
        let mut data = vec![0f32; rows * cols];
        fairy2i_format::blocks::dequantize(t.ty, g.tensor_data(t), &mut data)?;
        for x in &mut data {
            *x = round_bf16(*x);
        }
        out.push(Matrix {
            name: format!("{name} ({}) {rows}×{cols}", t.ty.name()),
            rows,
            cols,
            data,
        });
    }
    Ok(out)
}

/// CPU seconds used by this process so far (all threads), from /proc/self/stat; 0 where unavailable.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (clock ticks).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Best wall time of three runs after a warm-up, and the mean CPU time of those three runs.
fn best_of<F: FnMut()>(mut f: F) -> (f64, f64) {
    f();
    let c0 = cpu_seconds();
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    (best, (cpu_seconds() - c0) / 3.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mats = match std::env::args().nth(1) {
        Some(path) => gguf_matrices(&path)?,
        None => vec![random_matrix(8960, 1536, 1), random_matrix(1536, 8960, 2)],
    };
    // F2I_MODE=tensor|block|joint picks the scale mode (default tensor, the paper-exact quantizer).
    let mode = match std::env::var("F2I_MODE").as_deref() {
        Ok("block") => ScaleMode::Block,
        Ok("joint") => ScaleMode::Joint,
        Ok("tensor") | Err(_) => ScaleMode::Tensor,
        Ok(other) => {
            return Err(format!("F2I_MODE={other}: expected tensor, block or joint").into())
        }
    };
    // F2I_RUNS=1 times a single run (no warm-up): for the slow modes.
    let single = std::env::var("F2I_RUNS").as_deref() == Ok("1");
    // F2I_STAGES=t times only W<t>; F2I_SHAPE=wide keeps only the 1536×8960 matrix.
    let only_stages: Option<usize> = std::env::var("F2I_STAGES")
        .ok()
        .and_then(|s| s.parse().ok());
    let mats: Vec<Matrix> = if std::env::var("F2I_SHAPE").as_deref() == Ok("wide") {
        mats.into_iter().filter(|m| m.rows < m.cols).collect()
    } else {
        mats
    };
    let threads = rayon::current_num_threads();
    println!(
        "threads: {threads}, load average before: {}",
        load_average()
    );
    println!("MB/s = bf16 input bytes (2 per weight) / best wall time of 3 runs;");
    println!("cpu MB/s = the same per CPU-second of this process (×threads ≈ MB/s on an otherwise idle machine)");
    println!(
        "{:<40} {:>4} {:>5} {:>9} {:>9} {:>9} {:>9}",
        "matrix", "type", "bf16", "ms", "MB/s", "cpu MB/s", "deq MB/s"
    );
    for m in &mats {
        let mb = (m.rows * m.cols * 2) as f64 / 1e6;
        for stages in 1..=4 {
            if only_stages.is_some_and(|s| s != stages) {
                continue;
            }
            for bf16_rounding in [true, false] {
                if !bf16_rounding && stages != 2 {
                    continue;
                }
                let opts = QuantOptions {
                    stages,
                    bf16_rounding,
                    mode,
                    ..Default::default()
                };
                let mut bytes = Vec::new();
                let mut run = || {
                    bytes = quantize_tensor(&m.data, m.cols, m.rows, &opts).expect("quantize");
                };
                let (secs, cpu) = if single {
                    let (c0, t) = (cpu_seconds(), Instant::now());
                    run();
                    (t.elapsed().as_secs_f64(), cpu_seconds() - c0)
                } else {
                    best_of(run)
                };
                let dsecs = if bf16_rounding {
                    let (d, _) = best_of(|| {
                        let v =
                            dequantize_tensor(&bytes, m.cols, m.rows, stages).expect("dequantize");
                        std::hint::black_box(v);
                    });
                    format!("{:.0}", mb / d)
                } else {
                    "-".to_string()
                };
                println!(
                    "{:<40} {:>4} {:>5} {:>9.1} {:>9.0} {:>9.0} {:>9}",
                    m.name,
                    format!("W{stages}"),
                    if bf16_rounding { "yes" } else { "no" },
                    secs * 1e3,
                    mb / secs,
                    if cpu > 0.0 { mb / cpu } else { f64::NAN },
                    dsecs
                );
            }
        }
    }
    println!("load average after: {}", load_average());
    Ok(())
}
