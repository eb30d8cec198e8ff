//! `libggml-fairy2i.so`: a ggml dynamic backend that runs MUL_MAT with F2I weights
//! (docs/abi.md for the C boundary, docs/backend.md for the kernels).
//!
//! Loaded by llama.cpp's `ggml_backend_load_all` (patched to look for `fairy2i`) or through
//! `GGML_BACKEND_PATH`. It registers one ACCEL device, `FAIRY2I`, with its own host buffer type, so
//! llama.cpp places every weight whose MUL_MAT this device accepts in that buffer type, and the
//! scheduler runs those products here.
//!
//! - [`abi`]: every `extern "C"` entry; the only place raw pointers become slices.
//! - [`device`]: names, kernel choice, environment switches, backend state.
//! - [`buffer`]: the host allocations of the buffer type.
//! - [`supports`]: the predicate shared by `supports_op` and `graph_compute`.
//! - [`compute`]: tiling a product over the thread pool.
//! - [`pool`]: thread teams: the process's OpenMP team (ggml-cpu's) when libgomp is loaded, else rayon
//!   pools, one per thread count, built once.
//! - [`kernels`]: scalar, AVX2 and AVX-512 pair kernels.
//!
//! Environment: `FAIRY2I_LOG=1` prints one line per graph (products run, views skipped) and the
//! totals when a backend is freed; `FAIRY2I_LOG=2` also logs every refused op (ggml debug level);
//! `FAIRY2I_ISA=scalar|avx2|avxvnni|avx512|avx512vnni|neon` forces a kernel; `FAIRY2I_EXACT=1` uses f32 activations instead of
//! the default int8 path (docs/backend.md §2.4); `FAIRY2I_POOL=rayon` never uses the OpenMP team.

pub mod abi;
pub mod buffer;
pub mod compute;
pub mod device;
pub mod kernels;
pub mod pool;
pub mod supports;
