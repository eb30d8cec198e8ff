//! Thread pools (docs/abi.md §5): one rayon pool per thread count, built on first use and kept for
//! the life of the process, shared by every backend instance. `ggml_backend_set_n_threads` only
//! picks a pool; nothing is spawned per call. A pool for n threads has n − 1 workers: the calling
//! thread (ggml's) works too (`compute.rs`), so n threads run, as with ggml-cpu's own pool.

use std::sync::{Arc, Mutex, OnceLock};

use rayon::ThreadPool;

/// The most threads a pool may have (a bound on a caller's request, not a tuning knob).
pub const MAX_THREADS: usize = 512;

/// Pools by thread count.
type PoolCache = Mutex<Vec<(usize, Arc<ThreadPool>)>>;

static POOLS: OnceLock<PoolCache> = OnceLock::new();

/// The pool of `n_threads − 1` workers that, with the caller, run `n_threads` threads; `None` for one
/// thread (run on the caller) or when the threads cannot be spawned (then the caller runs the work
/// itself, after one log line).
pub fn get(n_threads: usize) -> Option<Arc<ThreadPool>> {
    let n = n_threads.clamp(1, MAX_THREADS);
    if n == 1 {
        return None;
    }
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
mod tests {
    #[test]
    fn pools_are_cached() {
        assert!(super::get(1).is_none());
        assert!(super::get(0).is_none());
        let a = super::get(2).unwrap();
        let b = super::get(2).unwrap();
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert_eq!(a.current_num_threads(), 1);
        assert_eq!(super::get(3).unwrap().current_num_threads(), 2);
    }
}
