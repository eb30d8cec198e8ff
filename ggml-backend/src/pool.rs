//! Thread teams (docs/backend.md §3). A product runs a closure on every thread of a team, the
//! calling thread (ggml's) included, so `-t n` runs n threads.
//!
//! Two kinds:
//! - **OpenMP (shared with ggml-cpu).** llama.cpp builds ggml-cpu with OpenMP by default; its worker
//!   threads spin for a while after each of ggml-cpu's graph splits. A second pool of our own would
//!   fight them for the cores between splits (measured: `-t 2` slower than `-t 1` end to end). When
//!   the process has libgomp loaded, a product runs as a `GOMP_parallel` region on the same thread
//!   team ggml-cpu uses, found at run time with `dlsym` (the plugin does not link libgomp: a host
//!   without OpenMP never sees it).
//! - **rayon** otherwise: one pool of n − 1 workers per thread count, built on first use and kept for
//!   the life of the process. `FAIRY2I_POOL=rayon` forces it.
//!
//! `ggml_backend_set_n_threads` only picks a team; nothing is spawned per call.

use std::any::Any;
use std::ffi::{c_char, c_uint, c_void, CStr};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use rayon::ThreadPool;

/// The most threads a team may have (a bound on a caller's request, not a tuning knob).
pub const MAX_THREADS: usize = 512;

/// libgomp's entry point for `#pragma omp parallel`: runs `f(data)` on `num_threads` threads (the
/// caller is thread 0) and returns when all are done.
type GompParallel = unsafe extern "C" fn(
    f: unsafe extern "C" fn(*mut c_void),
    data: *mut c_void,
    num_threads: c_uint,
    flags: c_uint,
);

/// A team of threads that runs one closure on each of its threads.
#[derive(Clone)]
pub enum Team {
    /// The process's OpenMP team (ggml-cpu's), `n` threads.
    Gomp { n: usize, parallel: GompParallel },
    /// Our rayon pool of n − 1 workers plus the caller.
    Rayon(Arc<ThreadPool>),
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} × {}", self.kind(), self.count())
    }
}

impl Team {
    /// Threads that run the closure, the caller included.
    pub fn count(&self) -> usize {
        match self {
            Team::Gomp { n, .. } => *n,
            Team::Rayon(pool) => pool.current_num_threads() + 1,
        }
    }

    /// Weight bytes × columns below which a product runs on the calling thread alone. OpenMP's
    /// workers spin between regions and start within a microsecond; rayon's sleep, and waking one
    /// costs about as much as a 1536 × 256 K/V projection for one token (~30 µs).
    pub fn min_bytes(&self) -> usize {
        match self {
            Team::Gomp { .. } => 16 << 10,
            Team::Rayon(_) => 256 << 10,
        }
    }

    /// `openmp` or `rayon`.
    pub fn kind(&self) -> &'static str {
        match self {
            Team::Gomp { .. } => "openmp",
            Team::Rayon(_) => "rayon",
        }
    }

    /// Runs `f` once on each thread of the team (the caller included) and returns when every call
    /// has returned. A panic in any call is raised again here, on the caller.
    pub fn run_on_all(&self, f: &(dyn Fn() + Sync)) {
        match self {
            Team::Rayon(pool) => pool.in_place_scope(|s| {
                for _ in 0..pool.current_num_threads() {
                    s.spawn(|_| f());
                }
                f();
            }),
            Team::Gomp { n, parallel } => {
                struct Region<'a> {
                    f: &'a (dyn Fn() + Sync),
                    panic: Mutex<Option<Box<dyn Any + Send>>>,
                }
                unsafe extern "C" fn body(data: *mut c_void) {
                    // SAFETY: `data` is the `Region` below, alive until GOMP_parallel returns;
                    // every thread only reads it (the panic slot is behind a mutex).
                    let region = unsafe { &*data.cast::<Region<'_>>() };
                    // no unwinding across the C frames of libgomp
                    if let Err(p) = catch_unwind(AssertUnwindSafe(|| (region.f)())) {
                        let mut slot = region.panic.lock().unwrap_or_else(|e| e.into_inner());
                        slot.get_or_insert(p);
                    }
                }
                let region = Region {
                    f,
                    panic: Mutex::new(None),
                };
                let threads = c_uint::try_from(*n).unwrap_or(1);
                // SAFETY: `parallel` is libgomp's GOMP_parallel (looked up by name, the ABI GCC
                // emits for `omp parallel`); `body` never unwinds and `region` outlives the call,
                // which returns only after every thread finished `body`.
                unsafe {
                    parallel(
                        body,
                        std::ptr::from_ref(&region).cast_mut().cast(),
                        threads,
                        0,
                    )
                };
                if let Some(p) = region.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
                    resume_unwind(p);
                }
            }
        }
    }
}

/// Pools by thread count.
type PoolCache = Mutex<Vec<(usize, Arc<ThreadPool>)>>;

static POOLS: OnceLock<PoolCache> = OnceLock::new();

extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// `GOMP_parallel` when libgomp is already loaded in the process (and `FAIRY2I_POOL` is not
/// `rayon`).
fn gomp_parallel() -> Option<GompParallel> {
    static GOMP: OnceLock<Option<GompParallel>> = OnceLock::new();
    *GOMP.get_or_init(|| {
        if std::env::var("FAIRY2I_POOL").is_ok_and(|v| v.trim() == "rayon") {
            return None;
        }
        let name: &CStr = c"GOMP_parallel";
        // SAFETY: dlsym with RTLD_DEFAULT (a null handle in glibc) and a NUL-terminated name only
        // searches the loaded objects; it loads nothing.
        let sym = unsafe { dlsym(std::ptr::null_mut(), name.as_ptr()) };
        if sym.is_null() {
            None
        } else {
            // SAFETY: the symbol GOMP_parallel has this signature in every libgomp since GCC 4.9.
            Some(unsafe { std::mem::transmute::<*mut c_void, GompParallel>(sym) })
        }
    })
}

/// The team for `n_threads`: `None` for one thread (run on the caller) or when no threads can be
/// had (then the caller runs the work itself, after one log line).
pub fn get(n_threads: usize) -> Option<Team> {
    let n = n_threads.clamp(1, MAX_THREADS);
    if n == 1 {
        return None;
    }
    if let Some(parallel) = gomp_parallel() {
        return Some(Team::Gomp { n, parallel });
    }
    rayon_pool(n).map(Team::Rayon)
}

/// The rayon pool of `n − 1` workers (cached per `n`).
pub fn rayon_pool(n: usize) -> Option<Arc<ThreadPool>> {
    let mut pools = POOLS
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(k, _)| *k == n) {
        return Some(pool.clone());
    }
    match rayon::ThreadPoolBuilder::new()
        .num_threads(n - 1)
        .thread_name(|i| format!("fairy2i-{i}"))
        .build()
    {
        Ok(pool) => {
            let pool = Arc::new(pool);
            pools.push((n, pool.clone()));
            Some(pool)
        }
        Err(e) => {
            crate::abi::log_error(&format!(
                "fairy2i: cannot start {n} threads ({e}); running on one"
            ));
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicUsize, Ordering};

    extern "C" {
        fn dlopen(file: *const std::ffi::c_char, mode: std::ffi::c_int) -> *mut c_void;
    }

    /// An OpenMP team of `n` threads from libgomp.so.1 loaded here (test processes do not have it);
    /// `None`, said loudly, when it is not installed.
    pub(crate) fn gomp_team(n: usize) -> Option<super::Team> {
        const RTLD_NOW: std::ffi::c_int = 2;
        // SAFETY: dlopen/dlsym with NUL-terminated names; libgomp's initialisers are safe to run.
        let sym = unsafe {
            let h = dlopen(c"libgomp.so.1".as_ptr(), RTLD_NOW);
            if h.is_null() {
                eprintln!("SKIP: libgomp.so.1 not installed: the OpenMP team is not tested");
                return None;
            }
            super::dlsym(h, c"GOMP_parallel".as_ptr())
        };
        assert!(!sym.is_null(), "libgomp without GOMP_parallel");
        // SAFETY: GOMP_parallel's signature (see `GompParallel`).
        let parallel = unsafe { std::mem::transmute::<*mut c_void, super::GompParallel>(sym) };
        Some(super::Team::Gomp { n, parallel })
    }

    #[test]
    fn pools_are_cached() {
        assert!(super::get(1).is_none());
        assert!(super::get(0).is_none());
        let a = super::rayon_pool(2).unwrap();
        let b = super::rayon_pool(2).unwrap();
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert_eq!(a.current_num_threads(), 1);
        assert_eq!(super::rayon_pool(3).unwrap().current_num_threads(), 2);
    }

    #[test]
    fn every_thread_runs_once_and_panics_come_back() {
        let teams = [
            Some(super::Team::Rayon(super::rayon_pool(3).unwrap())),
            gomp_team(3),
        ];
        for team in teams.into_iter().flatten() {
            let calls = AtomicUsize::new(0);
            team.run_on_all(&|| {
                calls.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(calls.load(Ordering::Relaxed), team.count(), "{team:?}");
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                team.run_on_all(&|| panic!("an expected panic: pool test of panics in a team"))
            }));
            assert!(r.is_err(), "{team:?}");
        }
    }
}
