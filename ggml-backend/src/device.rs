//! The FAIRY2I device and its backend (stream) state (docs/abi.md §2, §5): names, the kernel chosen
//! once per process, the `FAIRY2I_*` environment switches and per-backend counters.

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::kernels::{Isa, Kernel};

/// Device, backend and registry name.
pub const DEVICE_NAME: &CStr = c"FAIRY2I";
/// Buffer type name.
pub const BUFT_NAME: &CStr = c"FAIRY2I";

/// Process-wide settings, read once.
#[derive(Debug)]
pub struct Config {
    /// The kernel every product uses.
    pub kernel: Kernel,
    /// Activation precision: int8 unless `FAIRY2I_EXACT=1`.
    pub precision: crate::compute::Precision,
    /// `FAIRY2I_LOG`: 0 quiet; 1 one line per graph with the products run (stderr); 2 also every
    /// refused op (ggml debug log).
    pub log: u32,
    /// Device description, e.g. "Fairy2i F2I matmul (avx2)".
    pub description: CString,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// The settings; the first call detects the CPU and reads `FAIRY2I_ISA`, `FAIRY2I_EXACT` and `FAIRY2I_LOG`.
pub fn config() -> &'static Config {
    CONFIG.get_or_init(|| {
        let log = std::env::var("FAIRY2I_LOG")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut kernel = Kernel::best();
        if let Ok(name) = std::env::var("FAIRY2I_ISA") {
            match Isa::from_name(&name).map(|isa| (isa, Kernel::new(isa))) {
                Some((_, Some(k))) => kernel = k,
                Some((isa, None)) => crate::abi::log_warn(&format!(
                    "fairy2i: FAIRY2I_ISA={} is not supported by this CPU; using {}",
                    isa.name(),
                    kernel.isa().name()
                )),
                None => crate::abi::log_warn(&format!(
                    "fairy2i: FAIRY2I_ISA={name:?} is not one of scalar, avx2, avxvnni, avx512, avx512vnni, neon; using {}",
                    kernel.isa().name()
                )),
            }
        }
        let exact = std::env::var("FAIRY2I_EXACT").is_ok_and(|v| !matches!(v.trim(), "" | "0"));
        let precision = if exact {
            crate::compute::Precision::Exact
        } else {
            crate::compute::Precision::Q8
        };
        let description = CString::new(format!(
            "Fairy2i F2I matmul ({}, {})",
            kernel.isa().name(),
            precision.name()
        ))
        .expect("no NUL in the description");
        Config {
            kernel,
            precision,
            log,
            description,
        }
    })
}

/// Score for `ggml_backend_score`: higher for better kernels (only compared between variants of
/// this same plugin), always > 0 because the scalar kernel runs anywhere.
pub fn score() -> i32 {
    match Kernel::best().isa() {
        Isa::Scalar => 1,
        Isa::Avx2 => 5,
        Isa::AvxVnni => 6,
        Isa::Avx512 => 10,
        Isa::Avx512Vnni => 12,
        Isa::Neon => 5,
    }
}

/// Counters of one graph or of a backend's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Graphs computed.
    pub graphs: u64,
    /// MUL_MATs run, by F2I stages (index t−1).
    pub mul_mats: [u64; 4],
    /// View nodes skipped.
    pub views: u64,
    /// Activation columns multiplied.
    pub columns: u64,
    /// Rows decoded by GET_ROWS nodes on F2I weights.
    pub get_rows: u64,
    /// Nodes handed on to ggml-cpu, and the ggml-cpu graph runs they took.
    pub cpu_nodes: u64,
    /// See `cpu_nodes`.
    pub cpu_runs: u64,
}

impl Stats {
    /// All MUL_MATs.
    pub fn total_mul_mats(&self) -> u64 {
        self.mul_mats.iter().sum()
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Stats) {
        self.graphs += other.graphs;
        for (a, b) in self.mul_mats.iter_mut().zip(&other.mul_mats) {
            *a += b;
        }
        self.views += other.views;
        self.columns += other.columns;
        self.cpu_nodes += other.cpu_nodes;
        self.get_rows += other.get_rows;
        self.cpu_runs += other.cpu_runs;
    }

    /// One-line summary, e.g. `mul_mat 7 (f2i_w2 7), views 12, columns 7`.
    pub fn summary(&self) -> String {
        let by_type: Vec<String> = self
            .mul_mats
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, c)| format!("f2i_w{} {c}", i + 1))
            .collect();
        format!(
            "mul_mat {} ({}), views {}, columns {}, cpu nodes {} in {} runs",
            self.total_mul_mats(),
            by_type.join(", "),
            self.views,
            self.columns,
            self.cpu_nodes,
            self.cpu_runs
        )
    }
}

/// State of one backend instance (`ggml_backend_t::context`).
#[derive(Debug)]
pub struct BackendCtx {
    n_threads: AtomicUsize,
    /// Totals over the backend's life (printed at free with `FAIRY2I_LOG=1`).
    pub totals: Mutex<Stats>,
    /// The ggml-cpu backend for the nodes handed on (docs/backend.md §3.1), made on first need.
    pub(crate) cpu: Mutex<Option<crate::abi::CpuBackend>>,
}

impl Default for BackendCtx {
    fn default() -> Self {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        BackendCtx {
            n_threads: AtomicUsize::new(n),
            totals: Mutex::new(Stats::default()),
            cpu: Mutex::new(None),
        }
    }
}

impl BackendCtx {
    /// Threads for the next graphs (`ggml_backend_set_n_threads`); values < 1 mean 1.
    pub fn set_n_threads(&self, n: i32) {
        self.n_threads.store(
            usize::try_from(n)
                .unwrap_or(1)
                .clamp(1, crate::pool::MAX_THREADS),
            Ordering::Relaxed,
        );
    }

    /// Threads to use.
    pub fn n_threads(&self) -> usize {
        self.n_threads.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_summary() {
        let mut s = Stats::default();
        s.add(&Stats {
            graphs: 1,
            mul_mats: [0, 3, 0, 1],
            views: 2,
            columns: 4,
            cpu_nodes: 9,
            cpu_runs: 3,
            get_rows: 0,
        });
        assert_eq!(
            s.summary(),
            "mul_mat 4 (f2i_w2 3, f2i_w4 1), views 2, columns 4, cpu nodes 9 in 3 runs"
        );
        assert!(score() > 0);
    }

    #[test]
    fn threads_are_clamped() {
        let ctx = BackendCtx::default();
        ctx.set_n_threads(-4);
        assert_eq!(ctx.n_threads(), 1);
        ctx.set_n_threads(3);
        assert_eq!(ctx.n_threads(), 3);
    }
}
