//! Prints a table of F2I product speed per kernel, stage count, batch and thread count
//! (docs/backend.md §5). Not a test: `cargo run --release -p fairy2i-ggml-backend --example kernel_bench
//! [K N]` (default 4096 × 4096).

use std::time::Instant;

use ggml_fairy2i::compute::MulMat;
use ggml_fairy2i::kernels::{Kernel, QK, STAGE_BYTES};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (k, n_rows) = (
        args.first().copied().unwrap_or(4096),
        args.get(1).copied().unwrap_or(4096),
    );
    let max_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("K {k}, N {n_rows}; weight GB/s = F2I bytes read per second; Gw/s = real weights × columns per second");
    println!(
        "{:<8} {:>6} {:>6} {:>8} {:>10} {:>10} {:>10}",
        "kernel", "type", "batch", "threads", "ms", "GB/s", "Gw/s"
    );
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for stages in [1usize, 2, 4] {
        let row_bytes = k / QK * stages * STAGE_BYTES;
        let mut weights: Vec<u8> = (0..row_bytes * n_rows).map(|_| next() as u8).collect();
        for rec in weights.chunks_exact_mut(STAGE_BYTES) {
            rec[..4].copy_from_slice(&[0x00, 0x24, 0x00, 0x24]); // scales 0.0156
        }
        for batch in [1usize, 16] {
            let x: Vec<f32> = (0..k * batch)
                .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            let mut dst = vec![0.0f32; n_rows * batch];
            for kernel in Kernel::available() {
                for threads in (1..=max_threads).filter(|t| *t == 1 || *t == max_threads) {
                    let pool = ggml_fairy2i::pool::get(threads);
                    let run = |dst: &mut [f32]| {
                        MulMat {
                            weights: &weights,
                            k,
                            n_rows,
                            stages,
                            cols: x.chunks_exact(k).collect(),
                            dst,
                        }
                        .run(kernel, pool.as_deref())
                    };
                    run(&mut dst);
                    let reps = 5;
                    let t0 = Instant::now();
                    for _ in 0..reps {
                        run(&mut dst);
                    }
                    let s = t0.elapsed().as_secs_f64() / reps as f64;
                    println!(
                        "{:<8} {:>6} {:>6} {:>8} {:>10.3} {:>10.2} {:>10.2}",
                        kernel.isa().name(),
                        format!("w{stages}"),
                        batch,
                        threads,
                        s * 1e3,
                        weights.len() as f64 / s / 1e9,
                        (k * n_rows * batch) as f64 / s / 1e9
                    );
                }
            }
        }
    }
}
