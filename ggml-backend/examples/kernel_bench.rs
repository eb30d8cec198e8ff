//! Prints the machine's memory bandwidth (stream-style copy and read, measured in this run) and the
//! F2I product speed per kernel, precision, type, batch and thread count (docs/backend.md §5).
//! Not a test: `cargo run --release -p fairy2i-ggml-backend --example kernel_bench [K N]`
//! (default 4096 × 4096). Mat-vec weights cycle through a ring of matrices of ≥ 256 MiB in total, so
//! every product reads its weights from memory, as token generation does (`KERNEL_BENCH_HOT=1`: one
//! matrix, read from cache after the first product). `KERNEL_BENCH_ONLY="avx2 q8 w2 1 1"` runs one row.

use std::time::Instant;

use ggml_fairy2i::compute::{MulMat, Precision};
use ggml_fairy2i::kernels::{Kernel, QK, STAGE_BYTES};
use rayon::prelude::*;

/// Bytes of each bandwidth buffer and of each weight ring (well above any last-level cache).
const RING_BYTES: usize = 256 << 20;

fn best_of<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// CPU time of the calling thread in seconds (Linux: /proc/thread-self/schedstat), when readable:
/// unlike wall time it does not count time other processes took the core.
fn thread_cpu() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// Copy (a → b, counted as read + write like STREAM) and read-only (sum) bandwidth in GB/s.
fn bandwidth(threads: usize) -> (f64, f64) {
    let words = RING_BYTES / 8;
    let a: Vec<u64> = (0..words as u64).collect();
    let mut b = vec![0u64; words];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("bench threads");
    let chunk = words.div_ceil(threads);
    let copy = best_of(5, || {
        pool.install(|| {
            b.par_chunks_mut(chunk)
                .zip(a.par_chunks(chunk))
                .for_each(|(d, s)| d.copy_from_slice(s))
        })
    });
    let mut sink = 0u64;
    let read = best_of(5, || {
        sink ^= pool.install(|| {
            a.par_chunks(chunk)
                .map(|s| {
                    // four independent lanes so the adds are not the bottleneck
                    let mut acc = [0u64; 4];
                    for q in s.chunks_exact(4) {
                        for i in 0..4 {
                            acc[i] = acc[i].wrapping_add(q[i]);
                        }
                    }
                    acc.iter().fold(0u64, |x, y| x.wrapping_add(*y))
                })
                .reduce(|| 0, u64::wrapping_add)
        })
    });
    std::hint::black_box(sink);
    (
        2.0 * RING_BYTES as f64 / copy / 1e9,
        RING_BYTES as f64 / read / 1e9,
    )
}

extern "C" {
    fn dlopen(file: *const std::ffi::c_char, mode: std::ffi::c_int) -> *mut std::ffi::c_void;
}

/// Loads libgomp as llama.cpp's OpenMP build of ggml-cpu does, so multi-thread rows run on the team
/// the plugin uses there (`FAIRY2I_POOL=rayon` measures the rayon pool instead).
fn load_openmp() -> bool {
    const RTLD_NOW_GLOBAL: std::ffi::c_int = 2 | 0x100;
    // SAFETY: dlopen with a NUL-terminated name; libgomp's initialisers are safe to run.
    !unsafe { dlopen(c"libgomp.so.1".as_ptr(), RTLD_NOW_GLOBAL) }.is_null()
}

fn main() {
    let openmp = load_openmp();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (k, n_rows) = (
        args.first().copied().unwrap_or(4096),
        args.get(1).copied().unwrap_or(4096),
    );
    let max_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // KERNEL_BENCH_ONLY="avx2 q8 w2 1 1" runs only the rows whose "kernel prec type batch threads"
    // starts with it (for profiling one configuration)
    let filter = std::env::var("KERNEL_BENCH_ONLY").ok();
    let thread_counts: Vec<usize> = if max_threads > 1 {
        vec![1, max_threads]
    } else {
        vec![1]
    };

    println!("memory bandwidth ({} MiB buffers)", RING_BYTES >> 20);
    println!("{:>8} {:>12} {:>12}", "threads", "copy GB/s", "read GB/s");
    let mut read_bw = 0.0f64;
    for &t in &thread_counts {
        if filter.is_some() {
            read_bw = f64::NAN;
            break;
        }
        let (copy, read) = bandwidth(t);
        read_bw = read_bw.max(read);
        println!("{t:>8} {copy:>12.2} {read:>12.2}");
    }
    println!();
    println!("F2I products, K {k}, N {n_rows}; GB/s = F2I weight bytes read per second; % = of the best read GB/s above");
    println!(
        "{:<8} {:<6} {:>5} {:>6} {:>8} {:>10} {:>8} {:>6} {:>10}",
        "kernel", "prec", "type", "batch", "threads", "ms", "GB/s", "%", "cpu ms"
    );
    println!("(cpu ms: CPU time of the calling thread per product, 1-thread rows; insensitive to other load)");
    if let Some(team) = ggml_fairy2i::pool::get(2) {
        println!(
            "(several threads: the {} team{})",
            team.kind(),
            if openmp {
                ", libgomp loaded as in llama.cpp"
            } else {
                ""
            }
        );
    }
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // every kernel this CPU runs, best first
    let kernels: Vec<Kernel> = Kernel::available().into_iter().rev().collect();
    for stages in [1usize, 2, 4] {
        let row_bytes = k / QK * stages * STAGE_BYTES;
        let mat_bytes = row_bytes * n_rows;
        // KERNEL_BENCH_HOT=1: one matrix, read from cache after the first product (compute bound)
        let ring = if std::env::var_os("KERNEL_BENCH_HOT").is_some() {
            1
        } else {
            RING_BYTES.div_ceil(mat_bytes).max(1)
        };
        let mut weights: Vec<u8> = (0..mat_bytes * ring).map(|_| next() as u8).collect();
        for rec in weights.chunks_exact_mut(STAGE_BYTES) {
            rec[..4].copy_from_slice(&[0x00, 0x24, 0x00, 0x24]); // scales 0.0156
        }
        for batch in [1usize, 16, 64] {
            if batch > 1 && stages != 2 {
                continue;
            }
            let x: Vec<f32> = (0..k * batch)
                .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            let mut dst = vec![0.0f32; n_rows * batch];
            for &kernel in &kernels {
                for precision in [Precision::Q8, Precision::Exact] {
                    if kernel == Kernel::scalar() && (stages != 2 || batch != 1) {
                        continue;
                    }
                    for &threads in &thread_counts {
                        let key = format!(
                            "{} {} w{stages} {batch} {threads}",
                            kernel.isa().name(),
                            precision.name()
                        );
                        if !filter.as_ref().is_none_or(|f| key.starts_with(f.as_str())) {
                            continue;
                        }
                        let pool = ggml_fairy2i::pool::get(threads);
                        let mut r = 0usize;
                        let mut run = || {
                            MulMat {
                                weights: &weights[r * mat_bytes..][..mat_bytes],
                                k,
                                n_rows,
                                stages,
                                cols: x.chunks_exact(k).collect(),
                                dst: &mut dst,
                                precision,
                            }
                            .run(kernel, pool.as_ref());
                            r = (r + 1) % ring;
                        };
                        // enough products to touch the whole ring at least once, at least 8
                        let reps = if batch == 1 { ring.max(32) } else { 3 };
                        let mut total = 0.0f64;
                        let cpu0 = thread_cpu();
                        for _ in 0..reps {
                            let t0 = Instant::now();
                            run();
                            total += t0.elapsed().as_secs_f64();
                        }
                        let cpu = match (cpu0, thread_cpu()) {
                            (Some(a), Some(b)) if threads == 1 => {
                                format!("{:.3}", (b - a) / reps as f64 * 1e3)
                            }
                            _ => "-".to_string(),
                        };
                        let s = total / reps as f64;
                        let gbs = mat_bytes as f64 / s / 1e9;
                        println!(
                            "{:<8} {:<6} {:>5} {:>6} {:>8} {:>10.3} {:>8.2} {:>5.0}% {:>10}",
                            kernel.isa().name(),
                            precision.name(),
                            format!("w{stages}"),
                            batch,
                            threads,
                            s * 1e3,
                            gbs,
                            100.0 * gbs / read_bw,
                            cpu
                        );
                    }
                }
            }
        }
    }
}
