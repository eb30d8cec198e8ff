//! Every `extern "C"` entry of the plugin (docs/abi.md). ggml calls the `f2i_*` callbacks through
//! the tables of the C shim (`ffi/shim/fairy2i-shim.c`); the shim's one-line accessors are the only
//! way Rust reads ggml structs. Raw pointers become slices only here, after the range checks of
//! `run_mul_mat`. Every callback body runs inside [`guard`]: a panic becomes the callback's failure
//! value (NULL, false, `GGML_STATUS_FAILED`) plus one log line.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io::Write;
use std::marker::{PhantomData, PhantomPinned};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::buffer::{range_inside, ranges_overlap, HostBuffer, ALIGNMENT};
use crate::compute::{MulMat, Precision};
use crate::device::{config, BackendCtx, Stats, BUFT_NAME, DEVICE_NAME};
use crate::kernels::q8::Q8Cols;
use crate::supports::{self, GetRowsPlan, MulMatPlan, OpDesc, Supported, TensorDesc};

macro_rules! opaque {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
            _marker: PhantomData<(*mut u8, PhantomPinned)>,
        }
    )*};
}

opaque! {
    /// `struct ggml_tensor`.
    GgmlTensor;
    /// `struct ggml_cgraph`.
    GgmlCgraph;
    /// `struct ggml_backend_reg`.
    BackendReg;
    /// `struct ggml_backend_device`.
    BackendDevice;
    /// `struct ggml_backend_buffer_type`.
    BufferType;
    /// `struct ggml_backend_buffer`.
    Buffer;
    /// `struct ggml_backend`.
    Backend;
    /// `struct ggml_backend_dev_props`.
    DevProps;
}

/// `enum ggml_status` values.
const GGML_STATUS_SUCCESS: c_int = 0;
const GGML_STATUS_FAILED: c_int = -1;
/// `GGML_BACKEND_DEVICE_TYPE_ACCEL`.
const DEVICE_TYPE_ACCEL: c_int = 3;
/// `GGML_TENSOR_FLAG_COMPUTE`.
const TENSOR_FLAG_COMPUTE: i32 = 16;
/// `GGML_BACKEND_BUFFER_USAGE_WEIGHTS`.
const BUFFER_USAGE_WEIGHTS: c_int = 1;
/// `enum ggml_log_level` values.
const LOG_INFO: c_int = 2;
const LOG_WARN: c_int = 3;
const LOG_ERROR: c_int = 4;

extern "C" {
    fn f2i_shim_reg() -> *mut BackendReg;
    fn f2i_shim_device() -> *mut BackendDevice;
    fn f2i_shim_buft() -> *mut BufferType;
    fn f2i_shim_ggml_present() -> c_int;

    fn f2i_shim_backend_size() -> usize;
    fn f2i_shim_backend_align() -> usize;
    fn f2i_shim_backend_fill(b: *mut Backend, ctx: *mut c_void);
    fn f2i_shim_backend_is_ours(b: *mut Backend) -> c_int;
    fn f2i_shim_backend_context(b: *mut Backend) -> *mut c_void;

    fn f2i_shim_buffer_new(ctx: *mut c_void, size: usize) -> *mut Buffer;
    fn f2i_shim_buffer_is_ours(b: *mut Buffer) -> c_int;
    fn f2i_shim_buffer_context(b: *mut Buffer) -> *mut c_void;
    fn f2i_shim_buffer_base(b: *mut Buffer) -> *mut c_void;
    fn f2i_shim_buffer_size(b: *mut Buffer) -> usize;
    fn f2i_shim_buffer_buft(b: *mut Buffer) -> *mut BufferType;
    fn f2i_shim_buft_is_host(t: *mut BufferType) -> c_int;
    fn f2i_shim_buffer_usage(b: *mut Buffer) -> c_int;
    fn f2i_shim_op_name(op: c_int) -> *const c_char;

    fn f2i_shim_cpu_device() -> *mut BackendDevice;
    fn f2i_shim_cpu_supports_op(cpu: *mut BackendDevice, op: *const GgmlTensor) -> c_int;
    fn f2i_shim_cpu_init(cpu: *mut BackendDevice) -> *mut Backend;
    fn f2i_shim_cpu_free(b: *mut Backend);
    fn f2i_shim_cpu_set_n_threads(cpu: *mut BackendDevice, b: *mut Backend, n: c_int);
    fn f2i_shim_cpu_compute(b: *mut Backend, g: *mut GgmlCgraph, i0: c_int, i1: c_int) -> c_int;

    fn f2i_tensor_type(t: *const GgmlTensor) -> c_int;
    fn f2i_tensor_op(t: *const GgmlTensor) -> c_int;
    fn f2i_tensor_flags(t: *const GgmlTensor) -> i32;
    fn f2i_tensor_ne(t: *const GgmlTensor, i: c_int) -> i64;
    fn f2i_tensor_nb(t: *const GgmlTensor, i: c_int) -> usize;
    fn f2i_tensor_data(t: *const GgmlTensor) -> *mut c_void;
    fn f2i_tensor_src(t: *const GgmlTensor, i: c_int) -> *mut GgmlTensor;
    fn f2i_tensor_view_src(t: *const GgmlTensor) -> *mut GgmlTensor;
    fn f2i_tensor_buffer(t: *const GgmlTensor) -> *mut Buffer;
    fn f2i_tensor_name(t: *const GgmlTensor) -> *const c_char;
    fn f2i_tensor_nbytes(t: *const GgmlTensor) -> usize;

    fn f2i_graph_n_nodes(g: *mut GgmlCgraph) -> c_int;
    fn f2i_graph_node(g: *mut GgmlCgraph, i: c_int) -> *mut GgmlTensor;

    fn f2i_shim_props_fill(p: *mut DevProps, name: *const c_char, desc: *const c_char);
    fn f2i_shim_log(level: c_int, msg: *const c_char);
}

// ---------------------------------------------------------------- logging

fn log(level: c_int, msg: &str) {
    let msg = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    // SAFETY: msg is a NUL-terminated string that outlives the call; the shim only formats it.
    unsafe { f2i_shim_log(level, msg.as_ptr()) }
}

/// Logs through ggml's logger (stderr when the host has none) at error level.
pub(crate) fn log_error(msg: &str) {
    log(LOG_ERROR, msg)
}

/// Logs at warning level.
pub(crate) fn log_warn(msg: &str) {
    log(LOG_WARN, msg)
}

/// Logs at info level.
pub(crate) fn log_info(msg: &str) {
    log(LOG_INFO, msg)
}

/// Runs a callback body; a panic becomes `fallback` and one error line.
fn guard<R>(what: &str, fallback: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            // a second panic (e.g. in the logger) must not unwind into C either
            let _ = catch_unwind(|| log_error(&format!("fairy2i: {what} failed: panic: {msg}")));
            fallback
        }
    }
}

// ---------------------------------------------------------------- safe views of ggml objects

/// A tensor ggml passed to the current callback (or reached from one through `src`/`view_src`).
#[derive(Clone, Copy)]
struct Tensor<'a> {
    ptr: NonNull<GgmlTensor>,
    _life: PhantomData<&'a GgmlTensor>,
}

impl<'a> Tensor<'a> {
    /// # Safety
    /// `ptr` is NULL or points to a tensor that stays alive and unmoved for `'a`.
    unsafe fn from_ptr(ptr: *const GgmlTensor) -> Option<Tensor<'a>> {
        NonNull::new(ptr.cast_mut()).map(|ptr| Tensor {
            ptr,
            _life: PhantomData,
        })
    }

    fn raw(self) -> *const GgmlTensor {
        self.ptr.as_ptr()
    }

    fn ty(self) -> i32 {
        // SAFETY: a live tensor (from_ptr's contract); the accessor reads one field.
        unsafe { f2i_tensor_type(self.raw()) }
    }

    fn op(self) -> i32 {
        // SAFETY: a live tensor; the accessor reads one field.
        unsafe { f2i_tensor_op(self.raw()) }
    }

    fn flags(self) -> i32 {
        // SAFETY: a live tensor; the accessor reads one field.
        unsafe { f2i_tensor_flags(self.raw()) }
    }

    fn ne(self) -> [i64; 4] {
        // SAFETY: a live tensor; i < GGML_MAX_DIMS = 4 (pinned in the shim).
        std::array::from_fn(|i| unsafe { f2i_tensor_ne(self.raw(), i as c_int) })
    }

    fn nb(self) -> [usize; 4] {
        // SAFETY: a live tensor; i < GGML_MAX_DIMS = 4 (pinned in the shim).
        std::array::from_fn(|i| unsafe { f2i_tensor_nb(self.raw(), i as c_int) })
    }

    fn data(self) -> *mut u8 {
        // SAFETY: a live tensor; the accessor reads one field.
        unsafe { f2i_tensor_data(self.raw()).cast() }
    }

    fn src(self, i: usize) -> Option<Tensor<'a>> {
        assert!(i < 10, "GGML_MAX_SRC is 10");
        // SAFETY: a live tensor and i < GGML_MAX_SRC; a graph's sources outlive its nodes' use.
        unsafe { Tensor::from_ptr(f2i_tensor_src(self.raw(), i as c_int)) }
    }

    fn is_view(self) -> bool {
        // SAFETY: a live tensor; the accessor reads one field.
        !unsafe { f2i_tensor_view_src(self.raw()) }.is_null()
    }

    fn buffer(self) -> Option<BufferRef<'a>> {
        // SAFETY: a live tensor; its buffer outlives it.
        let ptr = unsafe { f2i_tensor_buffer(self.raw()) };
        NonNull::new(ptr).map(|ptr| BufferRef {
            ptr,
            _life: PhantomData,
        })
    }

    fn name(self) -> String {
        // SAFETY: a live tensor; `name` is a NUL-terminated char array inside it.
        unsafe { CStr::from_ptr(f2i_tensor_name(self.raw())) }
            .to_string_lossy()
            .into_owned()
    }

    fn desc(self) -> TensorDesc {
        TensorDesc {
            ty: self.ty(),
            ne: self.ne(),
            nb: self.nb(),
            is_view: self.is_view(),
            // SAFETY: f2i_shim_buft returns the address of a static.
            in_our_buft: self
                .buffer()
                .is_some_and(|b| b.buft() == unsafe { f2i_shim_buft() }),
        }
    }

    /// The node as the predicate sees it.
    fn op_desc(self) -> OpDesc {
        OpDesc {
            op: self.op(),
            dst: self.desc(),
            src0: self.src(0).map(Tensor::desc),
            src1: self.src(1).map(Tensor::desc),
        }
    }
}

/// A backend buffer reached from a live tensor or passed to a buffer callback.
#[derive(Clone, Copy)]
struct BufferRef<'a> {
    ptr: NonNull<Buffer>,
    _life: PhantomData<&'a Buffer>,
}

impl<'a> BufferRef<'a> {
    /// # Safety
    /// `ptr` is NULL or a live buffer for `'a`.
    unsafe fn from_ptr(ptr: *mut Buffer) -> Option<BufferRef<'a>> {
        NonNull::new(ptr).map(|ptr| BufferRef {
            ptr,
            _life: PhantomData,
        })
    }

    fn buft(self) -> *mut BufferType {
        // SAFETY: a live buffer; the accessor reads one field.
        unsafe { f2i_shim_buffer_buft(self.ptr.as_ptr()) }
    }

    fn is_host(self) -> bool {
        // SAFETY: the buffer type of a live buffer is live (NULL is handled by the shim).
        unsafe { f2i_shim_buft_is_host(self.buft()) != 0 }
    }

    /// Whether the buffer has this plugin's buffer type (placeholders included).
    fn has_our_type(self) -> bool {
        // SAFETY: f2i_shim_buft returns the address of a static.
        self.buft() == unsafe { f2i_shim_buft() }
    }

    /// Whether the buffer holds weights: ggml marked it so (the model loader does), or it is the
    /// zero-size placeholder the loader probes a buffer type with. (A buffer made by an RPC server
    /// has neither mark: usage does not travel over RPC.)
    fn holds_weights(self) -> bool {
        // SAFETY: a live buffer; the accessor reads one field.
        let usage = unsafe { f2i_shim_buffer_usage(self.ptr.as_ptr()) };
        usage == BUFFER_USAGE_WEIGHTS || self.range().1 == 0
    }

    /// The base address and size, as ggml's `ggml_backend_buffer_get_base`/`_size` report them.
    fn range(self) -> (usize, usize) {
        // SAFETY: a live buffer; get_base is its own callback.
        let base = unsafe { f2i_shim_buffer_base(self.ptr.as_ptr()) } as usize;
        // SAFETY: a live buffer; the accessor reads one field.
        let size = unsafe { f2i_shim_buffer_size(self.ptr.as_ptr()) };
        (base, size)
    }

    /// Our allocation, when this buffer was made by `f2i_buft_alloc_buffer`.
    fn host_buffer(self) -> Option<&'a HostBuffer> {
        // SAFETY: a live buffer; the shim compares its free callback with ours.
        if unsafe { f2i_shim_buffer_is_ours(self.ptr.as_ptr()) } == 0 {
            return None;
        }
        // SAFETY: buffers with our free callback were created by f2i_buft_alloc_buffer, whose context
        // is a HostBuffer leaked from a Box and freed only by f2i_buffer_free_buffer.
        unsafe {
            f2i_shim_buffer_context(self.ptr.as_ptr())
                .cast::<HostBuffer>()
                .as_ref()
        }
    }
}

/// The backend context of one of our backends; `None` for anything else.
///
/// # Safety
/// `backend` is NULL or a live `struct ggml_backend` that stays alive for `'a`.
unsafe fn backend_ctx<'a>(backend: *mut Backend) -> Option<&'a BackendCtx> {
    // SAFETY: the shim checks NULL before reading the backend's interface.
    if unsafe { f2i_shim_backend_is_ours(backend) } == 0 {
        return None;
    }
    // SAFETY: our backends are made by f2i_dev_init_backend with a leaked Box<BackendCtx> as context,
    // freed only by f2i_backend_free.
    unsafe {
        f2i_shim_backend_context(backend)
            .cast::<BackendCtx>()
            .as_ref()
    }
}

// ---------------------------------------------------------------- entry points

/// The plugin entry point looked up by `ggml_backend_load`: returns the registry, or NULL when the
/// host process lacks the ggml functions this plugin calls.
#[no_mangle]
pub extern "C" fn ggml_backend_init() -> *mut BackendReg {
    guard("ggml_backend_init", ptr::null_mut(), || {
        // SAFETY: reads the addresses of weak symbols.
        if unsafe { f2i_shim_ggml_present() } == 0 {
            log_error("fairy2i: the host process has no libggml-base (ggml_backend_buffer_init not found); not loading");
            return ptr::null_mut();
        }
        let cfg = config();
        if cfg.log >= 1 {
            log_info(&format!(
                "fairy2i: kernel {} {}",
                cfg.kernel.isa().name(),
                cfg.precision.name()
            ));
        }
        // SAFETY: returns the address of a static.
        unsafe { f2i_shim_reg() }
    })
}

/// `ggml_backend_score`: > 0 on every CPU (the scalar kernel always runs).
#[no_mangle]
pub extern "C" fn ggml_backend_score() -> c_int {
    guard("ggml_backend_score", 0, crate::device::score)
}

// ---------------------------------------------------------------- registry

#[no_mangle]
extern "C" fn f2i_reg_get_name(_reg: *mut BackendReg) -> *const c_char {
    DEVICE_NAME.as_ptr()
}

#[no_mangle]
extern "C" fn f2i_reg_get_device_count(_reg: *mut BackendReg) -> usize {
    1
}

#[no_mangle]
extern "C" fn f2i_reg_get_device(_reg: *mut BackendReg, index: usize) -> *mut BackendDevice {
    if index == 0 {
        // SAFETY: returns the address of a static.
        unsafe { f2i_shim_device() }
    } else {
        ptr::null_mut()
    }
}

/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
unsafe extern "C" fn f2i_reg_get_proc_address(
    _reg: *mut BackendReg,
    name: *const c_char,
) -> *mut c_void {
    guard("get_proc_address", ptr::null_mut(), || {
        if name.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: ggml passes a NUL-terminated name (checked non-NULL above).
        let name = unsafe { CStr::from_ptr(name) };
        if name == c"ggml_backend_set_n_threads" {
            f2i_set_n_threads as *mut c_void
        } else {
            ptr::null_mut()
        }
    })
}

/// `ggml_backend_set_n_threads`: threads for the following graphs of this backend.
///
/// # Safety
/// `backend` is NULL or a live `ggml_backend` (ggml's contract for this callback).
#[no_mangle]
unsafe extern "C" fn f2i_set_n_threads(backend: *mut Backend, n_threads: c_int) {
    guard("set_n_threads", (), || {
        // SAFETY: ggml passes a live backend (this callback's contract).
        match unsafe { backend_ctx(backend) } {
            Some(ctx) => ctx.set_n_threads(n_threads),
            None => log_error("fairy2i: set_n_threads called with a backend that is not FAIRY2I"),
        }
    })
}

// ---------------------------------------------------------------- device

#[no_mangle]
extern "C" fn f2i_dev_get_name(_dev: *mut BackendDevice) -> *const c_char {
    DEVICE_NAME.as_ptr()
}

#[no_mangle]
extern "C" fn f2i_dev_get_description(_dev: *mut BackendDevice) -> *const c_char {
    guard("get_description", DEVICE_NAME.as_ptr(), || {
        config().description.as_ptr()
    })
}

/// # Safety
/// `free` and `total` are NULL or writable.
#[no_mangle]
unsafe extern "C" fn f2i_dev_get_memory(
    _dev: *mut BackendDevice,
    free: *mut usize,
    total: *mut usize,
) {
    // The buffers are ordinary host memory: report the host's (llama.cpp's --fit skips devices that
    // report none, e.g. an RPC server serving this device).
    let (f, t) = host_memory().unwrap_or((0, 0));
    for (out, v) in [(free, f), (total, t)] {
        if !out.is_null() {
            // SAFETY: a non-NULL out-pointer from ggml is writable.
            unsafe { out.write(v) }
        }
    }
}

/// (available, total) bytes of host memory from `/proc/meminfo`.
fn host_memory() -> Option<(usize, usize)> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<usize> {
        let line = info.lines().find(|l| l.starts_with(name))?;
        let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    };
    Some((field("MemAvailable:")?, field("MemTotal:")?))
}

#[no_mangle]
extern "C" fn f2i_dev_get_type(_dev: *mut BackendDevice) -> c_int {
    DEVICE_TYPE_ACCEL
}

/// # Safety
/// `props` is NULL or a writable `struct ggml_backend_dev_props`.
#[no_mangle]
unsafe extern "C" fn f2i_dev_get_props(_dev: *mut BackendDevice, props: *mut DevProps) {
    guard("get_props", (), || {
        if !props.is_null() {
            // SAFETY: props is writable (ggml's contract); the strings are 'static.
            unsafe {
                f2i_shim_props_fill(props, DEVICE_NAME.as_ptr(), config().description.as_ptr())
            }
        }
    })
}

#[no_mangle]
extern "C" fn f2i_dev_init_backend(
    _dev: *mut BackendDevice,
    _params: *const c_char,
) -> *mut Backend {
    guard("init_backend", ptr::null_mut(), || {
        // SAFETY: plain queries of sizeof/_Alignof.
        let layout = unsafe {
            std::alloc::Layout::from_size_align(f2i_shim_backend_size(), f2i_shim_backend_align())
        };
        let Ok(layout) = layout else {
            return ptr::null_mut();
        };
        // SAFETY: sizeof(struct ggml_backend) > 0.
        let mem = unsafe { std::alloc::alloc(layout) }.cast::<Backend>();
        if mem.is_null() {
            log_error("fairy2i: cannot allocate a backend");
            return ptr::null_mut();
        }
        let ctx = Box::into_raw(Box::<BackendCtx>::default());
        // SAFETY: mem is a fresh allocation with the size and alignment of struct ggml_backend; the shim
        // writes every field. Freed by f2i_backend_free with the same layout.
        unsafe { f2i_shim_backend_fill(mem, ctx.cast()) };
        mem
    })
}

#[no_mangle]
extern "C" fn f2i_dev_get_buffer_type(_dev: *mut BackendDevice) -> *mut BufferType {
    // SAFETY: returns the address of a static.
    unsafe { f2i_shim_buft() }
}

/// # Safety
/// `op` is NULL or a live tensor whose sources are live.
#[no_mangle]
unsafe extern "C" fn f2i_dev_supports_op(_dev: *mut BackendDevice, op: *const GgmlTensor) -> bool {
    guard("supports_op", false, || {
        // SAFETY: ggml passes a live tensor for the duration of the call.
        let Some(t) = (unsafe { Tensor::from_ptr(op) }) else {
            return false;
        };
        match supports::check(&t.op_desc()) {
            Ok(_) => true,
            Err(why) => match hand_on(t) {
                Ok(()) => true,
                // No other backend can run a node on F2I data (ggml-cpu refuses F2I types), so
                // refusing it would make ggml's scheduler abort the process: the node is taken,
                // and graph_compute fails it with an error line instead (docs/backend.md §3.2).
                Err(_) if f2i_data_is_readable(t) => {
                    if config().log >= 2 {
                        let _ = writeln!(
                            std::io::stderr(),
                            "fairy2i: taking '{}' (op {}) only to fail it cleanly: {why}",
                            t.name(),
                            t.op()
                        );
                    }
                    true
                }
                Err(not) => {
                    if config().log >= 2 {
                        let _ = writeln!(
                            std::io::stderr(),
                            "fairy2i: refusing '{}' (op {}): {why}; not handed on: {not}",
                            t.name(),
                            t.op()
                        );
                    }
                    false
                }
            },
        }
    })
}

// ---------------------------------------------------------------- nodes handed on to ggml-cpu

/// Buffers of our type with memory (not the loader's zero-size probes) now alive: while there is
/// one, an F2I model is loaded and the device also takes the nodes around its products.
static LIVE_BUFFERS: AtomicUsize = AtomicUsize::new(0);

/// Ops llama.cpp probes as "fused" (`resolve_fused_ops`): in auto mode it turns them off when the
/// scheduler puts them on another device than the layer's (CPU), so they are left to ggml-cpu:
/// FLASH_ATTN_EXT, GATED_DELTA_NET (ids pinned in the shim).
const FUSED_OPS: [i32; 2] = [74, 86];

/// The host process's CPU device, looked up once it is needed (it registers after this plugin).
fn cpu_device() -> Option<NonNull<BackendDevice>> {
    // SAFETY: the shim checks that the ggml functions exist before calling them.
    NonNull::new(unsafe { f2i_shim_cpu_device() })
}

/// Whether this device takes `t`, a node it does not compute itself, to run it on ggml-cpu inside
/// its own graph (docs/backend.md §3.1). Only while an F2I model is loaded; never a node on F2I
/// data (ggml-cpu cannot read it); never a node whose non-F2I weight would be placed in our buffer
/// type (the loader's probe: such weights stay where llama.cpp puts them without this plugin, so
/// ggml-cpu keeps its repacked layouts and mmap); and only what ggml-cpu itself supports.
fn hand_on(t: Tensor<'_>) -> Result<(), &'static str> {
    if LIVE_BUFFERS.load(Ordering::Relaxed) == 0 {
        return Err("no F2I model is loaded");
    }
    if FUSED_OPS.contains(&t.op()) {
        return Err("llama.cpp switches a fused op off when it is not on the layer's device");
    }
    for (i, s) in node_and_sources(t).enumerate() {
        let Some(s) = s else { continue };
        if is_f2i(s.ty()) {
            return Err("it touches F2I data other than as a MUL_MAT weight");
        }
        if i > 0
            && s.buffer()
                .is_some_and(|b| b.has_our_type() && b.holds_weights())
        {
            return Err("a non-F2I weight would be placed in a FAIRY2I buffer");
        }
    }
    let cpu = cpu_device().ok_or("the process has no CPU backend")?;
    // SAFETY: a live CPU device and a live tensor.
    if unsafe { f2i_shim_cpu_supports_op(cpu.as_ptr(), t.raw()) } == 0 {
        return Err("ggml-cpu does not support it");
    }
    Ok(())
}

/// The node itself, then its `GGML_MAX_SRC` source slots (`None` where empty).
fn node_and_sources(t: Tensor<'_>) -> impl Iterator<Item = Option<Tensor<'_>>> {
    std::iter::once(Some(t)).chain((0..10).map(move |i| t.src(i)))
}

/// Whether `t` or one of its sources is F2I data.
fn touches_f2i(t: Tensor<'_>) -> bool {
    node_and_sources(t).flatten().any(|s| is_f2i(s.ty()))
}

/// Whether `t` or one of its sources is F2I data, and all such data lies in our buffer type or in
/// host memory (F2I data in another device's memory belongs to that device).
fn f2i_data_is_readable(t: Tensor<'_>) -> bool {
    let f2i: Vec<Tensor<'_>> = node_and_sources(t)
        .flatten()
        .filter(|s| is_f2i(s.ty()))
        .collect();
    !f2i.is_empty()
        && f2i
            .iter()
            .all(|s| s.buffer().is_none_or(|b| b.has_our_type() || b.is_host()))
}

fn is_f2i(ty: i32) -> bool {
    u32::try_from(ty)
        .ok()
        .and_then(fairy2i_format::GgmlType::from_u32)
        .is_some_and(|t| t.is_f2i())
}

/// A ggml-cpu backend owned by one of our backends, for the nodes handed on.
#[derive(Debug)]
pub(crate) struct CpuBackend {
    dev: NonNull<BackendDevice>,
    backend: NonNull<Backend>,
    threads: usize,
}

// SAFETY: a ggml backend may be used from any thread as long as calls are not concurrent; the
// owning BackendCtx keeps it behind a Mutex.
unsafe impl Send for CpuBackend {}

impl CpuBackend {
    fn new() -> Option<CpuBackend> {
        let dev = cpu_device()?;
        // SAFETY: a live CPU device.
        let backend = NonNull::new(unsafe { f2i_shim_cpu_init(dev.as_ptr()) })?;
        Some(CpuBackend {
            dev,
            backend,
            threads: 0,
        })
    }

    fn set_threads(&mut self, n: usize) {
        if self.threads != n {
            // SAFETY: our live CPU backend and its device.
            unsafe {
                f2i_shim_cpu_set_n_threads(
                    self.dev.as_ptr(),
                    self.backend.as_ptr(),
                    c_int::try_from(n).unwrap_or(1),
                )
            };
            self.threads = n;
        }
    }

    /// Whether ggml-cpu supports node `t`.
    fn supports(&self, t: Tensor<'_>) -> bool {
        // SAFETY: a live device and tensor.
        unsafe { f2i_shim_cpu_supports_op(self.dev.as_ptr(), t.raw()) != 0 }
    }

    /// Computes nodes [i0, i1) of `graph` on ggml-cpu.
    ///
    /// # Safety
    /// `graph` is live and 0 ≤ i0 ≤ i1 ≤ its node count.
    unsafe fn compute(&self, graph: *mut GgmlCgraph, i0: c_int, i1: c_int) -> c_int {
        // SAFETY: the caller's contract; our live backend.
        unsafe { f2i_shim_cpu_compute(self.backend.as_ptr(), graph, i0, i1) }
    }
}

impl Drop for CpuBackend {
    fn drop(&mut self) {
        // SAFETY: created by f2i_shim_cpu_init and freed once, here.
        unsafe { f2i_shim_cpu_free(self.backend.as_ptr()) }
    }
}

/// # Safety
/// `buft` is NULL or a live buffer type (ggml's contract for this callback).
#[no_mangle]
unsafe extern "C" fn f2i_dev_supports_buft(
    _dev: *mut BackendDevice,
    buft: *mut BufferType,
) -> bool {
    // SAFETY: ggml passes a live buffer type (the shim handles NULL).
    guard(
        "supports_buft",
        false,
        || unsafe { f2i_shim_buft_is_host(buft) } != 0,
    )
}

// ---------------------------------------------------------------- buffer type

#[no_mangle]
extern "C" fn f2i_buft_get_name(_buft: *mut BufferType) -> *const c_char {
    BUFT_NAME.as_ptr()
}

#[no_mangle]
extern "C" fn f2i_buft_alloc_buffer(_buft: *mut BufferType, size: usize) -> *mut Buffer {
    guard("alloc_buffer", ptr::null_mut(), || {
        let Some(host) = HostBuffer::new(size) else {
            log_error(&format!(
                "fairy2i: cannot allocate a buffer of {size} bytes"
            ));
            return ptr::null_mut();
        };
        let ctx = Box::into_raw(Box::new(host));
        // SAFETY: ctx is a leaked Box<HostBuffer>, owned by the new buffer and freed by
        // f2i_buffer_free_buffer.
        let buffer = unsafe { f2i_shim_buffer_new(ctx.cast(), size) };
        if buffer.is_null() {
            // SAFETY: ctx came from Box::into_raw above and was not handed out.
            drop(unsafe { Box::from_raw(ctx) });
        } else {
            LIVE_BUFFERS.fetch_add(1, Ordering::Relaxed);
        }
        buffer
    })
}

#[no_mangle]
extern "C" fn f2i_buft_get_alignment(_buft: *mut BufferType) -> usize {
    ALIGNMENT
}

#[no_mangle]
extern "C" fn f2i_buft_is_host(_buft: *mut BufferType) -> bool {
    true
}

// ---------------------------------------------------------------- buffers

/// Our allocation behind a buffer callback's buffer.
///
/// # Safety
/// `buffer` is NULL or a live `struct ggml_backend_buffer` that stays alive for `'a`.
unsafe fn our_buffer<'a>(buffer: *mut Buffer) -> Option<&'a HostBuffer> {
    // SAFETY: the caller's contract.
    unsafe { BufferRef::from_ptr(buffer) }.and_then(BufferRef::host_buffer)
}

/// `tensor->data + offset`, checked to lie with `size` bytes inside `host`.
///
/// # Safety
/// `tensor` is NULL or a live `struct ggml_tensor`.
unsafe fn tensor_range(
    host: &HostBuffer,
    tensor: *const GgmlTensor,
    offset: usize,
    size: usize,
    what: &str,
) -> Option<*mut u8> {
    // SAFETY: the caller's contract.
    let t = unsafe { Tensor::from_ptr(tensor) }?;
    let addr = (t.data() as usize).checked_add(offset)?;
    if t.data().is_null() || !range_inside(host.base() as usize, host.size(), addr, size) {
        log_error(&format!(
            "fairy2i: {what}: {size} bytes at offset {offset} of '{}' are outside the buffer",
            t.name()
        ));
        return None;
    }
    Some(t.data().wrapping_add(offset))
}

/// # Safety
/// `buffer` is NULL or a live buffer, freed once (ggml's contract for this callback).
#[no_mangle]
unsafe extern "C" fn f2i_buffer_free_buffer(buffer: *mut Buffer) {
    guard("free_buffer", (), || {
        // SAFETY: ggml passes a live buffer.
        if unsafe { f2i_shim_buffer_is_ours(buffer) } == 0 {
            return;
        }
        // SAFETY: our buffers' context is a leaked Box<HostBuffer>; ggml frees a buffer once.
        let ctx = unsafe { f2i_shim_buffer_context(buffer) }.cast::<HostBuffer>();
        if !ctx.is_null() {
            // SAFETY: see above.
            drop(unsafe { Box::from_raw(ctx) });
            LIVE_BUFFERS.fetch_sub(1, Ordering::Relaxed);
        }
    })
}

/// # Safety
/// `buffer` is NULL or a live buffer (ggml's contract for this callback).
#[no_mangle]
unsafe extern "C" fn f2i_buffer_get_base(buffer: *mut Buffer) -> *mut c_void {
    guard("get_base", ptr::null_mut(), || {
        // SAFETY: ggml passes a live buffer (this callback's contract).
        unsafe { our_buffer(buffer) }.map_or(ptr::null_mut(), |h| h.base().cast())
    })
}

/// # Safety
/// `buffer` and `tensor` are NULL or live (ggml's contract for this callback).
#[no_mangle]
unsafe extern "C" fn f2i_buffer_memset_tensor(
    buffer: *mut Buffer,
    tensor: *mut GgmlTensor,
    value: u8,
    offset: usize,
    size: usize,
) {
    guard("memset_tensor", (), || {
        // SAFETY: ggml passes a live buffer (this callback\'s contract).
        let Some(host) = (unsafe { our_buffer(buffer) }) else {
            return;
        };
        // SAFETY: ggml passes a live tensor (this callback\'s contract).
        if let Some(dst) = unsafe { tensor_range(host, tensor, offset, size, "memset_tensor") } {
            // SAFETY: [dst, dst + size) lies inside our allocation (tensor_range).
            unsafe { ptr::write_bytes(dst, value, size) }
        }
    })
}

/// # Safety
/// `data` is readable for `size` bytes.
#[no_mangle]
unsafe extern "C" fn f2i_buffer_set_tensor(
    buffer: *mut Buffer,
    tensor: *mut GgmlTensor,
    data: *const c_void,
    offset: usize,
    size: usize,
) {
    guard("set_tensor", (), || {
        // SAFETY: ggml passes a live buffer (this callback\'s contract).
        let Some(host) = (unsafe { our_buffer(buffer) }) else {
            return;
        };
        if size == 0 || data.is_null() {
            return;
        }
        // SAFETY: ggml passes a live tensor (this callback\'s contract).
        if let Some(dst) = unsafe { tensor_range(host, tensor, offset, size, "set_tensor") } {
            // SAFETY: dst..dst+size is inside our allocation; data is readable for size bytes (ggml's
            // contract); ptr::copy tolerates overlap.
            unsafe { ptr::copy(data.cast::<u8>(), dst, size) }
        }
    })
}

/// # Safety
/// `data` is writable for `size` bytes.
#[no_mangle]
unsafe extern "C" fn f2i_buffer_get_tensor(
    buffer: *mut Buffer,
    tensor: *const GgmlTensor,
    data: *mut c_void,
    offset: usize,
    size: usize,
) {
    guard("get_tensor", (), || {
        // SAFETY: ggml passes a live buffer (this callback\'s contract).
        let Some(host) = (unsafe { our_buffer(buffer) }) else {
            return;
        };
        if size == 0 || data.is_null() {
            return;
        }
        // SAFETY: ggml passes a live tensor (this callback\'s contract).
        if let Some(src) = unsafe { tensor_range(host, tensor, offset, size, "get_tensor") } {
            // SAFETY: src..src+size is inside our allocation; data is writable for size bytes (ggml's
            // contract); ptr::copy tolerates overlap.
            unsafe { ptr::copy(src.cast_const(), data.cast::<u8>(), size) }
        }
    })
}

/// # Safety
/// `buffer`, `src` and `dst` are NULL or live (ggml's contract for this callback).
#[no_mangle]
unsafe extern "C" fn f2i_buffer_cpy_tensor(
    buffer: *mut Buffer,
    src: *const GgmlTensor,
    dst: *mut GgmlTensor,
) -> bool {
    guard("cpy_tensor", false, || {
        // SAFETY: ggml passes a live buffer (this callback\'s contract).
        let Some(host) = (unsafe { our_buffer(buffer) }) else {
            return false;
        };
        // SAFETY: ggml passes live tensors.
        let Some(s) = (unsafe { Tensor::from_ptr(src) }) else {
            return false;
        };
        let Some(src_buf) = s.buffer().filter(|b| b.is_host()) else {
            return false;
        };
        // SAFETY: a live tensor; ggml_nbytes only reads its shape.
        let size = unsafe { f2i_tensor_nbytes(s.raw()) };
        let (base, len) = src_buf.range();
        if s.data().is_null() || !range_inside(base, len, s.data() as usize, size) {
            return false;
        }
        // SAFETY: ggml passes a live tensor (this callback's contract).
        let Some(to) = (unsafe { tensor_range(host, dst, 0, size, "cpy_tensor") }) else {
            return false;
        };
        // SAFETY: both ranges were checked to lie inside live buffers; ptr::copy tolerates overlap.
        unsafe { ptr::copy(s.data().cast_const(), to, size) };
        true
    })
}

/// # Safety
/// `buffer` is NULL or a live buffer (ggml's contract for this callback).
#[no_mangle]
unsafe extern "C" fn f2i_buffer_clear(buffer: *mut Buffer, value: u8) {
    guard("clear", (), || {
        // SAFETY: ggml passes a live buffer (this callback's contract).
        if let Some(host) = unsafe { our_buffer(buffer) } {
            // SAFETY: the whole allocation is ours and at least host.size() bytes long.
            unsafe { ptr::write_bytes(host.base(), value, host.size()) }
        }
    })
}

// ---------------------------------------------------------------- backend

#[no_mangle]
extern "C" fn f2i_backend_get_name(_backend: *mut Backend) -> *const c_char {
    DEVICE_NAME.as_ptr()
}

/// # Safety
/// `backend` is NULL or a live backend, freed once (ggml's contract for this callback).
#[no_mangle]
unsafe extern "C" fn f2i_backend_free(backend: *mut Backend) {
    guard("backend_free", (), || {
        // SAFETY: ggml passes a live backend (this callback's contract).
        if unsafe { backend_ctx(backend) }.is_none() {
            return;
        }
        // SAFETY: our backend (checked above): the context is a leaked Box<BackendCtx>, and the struct
        // was allocated by f2i_dev_init_backend with this layout; ggml frees a backend once.
        unsafe {
            let ctx = Box::from_raw(f2i_shim_backend_context(backend).cast::<BackendCtx>());
            if config().log >= 1 {
                let totals = ctx.totals.lock().unwrap_or_else(|e| e.into_inner());
                let _ = writeln!(
                    std::io::stderr(),
                    "fairy2i: backend freed: {} graphs, {}",
                    totals.graphs,
                    totals.summary()
                );
            }
            drop(ctx);
            let layout = std::alloc::Layout::from_size_align_unchecked(
                f2i_shim_backend_size(),
                f2i_shim_backend_align(),
            );
            std::alloc::dealloc(backend.cast(), layout);
        }
    })
}

/// # Safety
/// `backend` and `graph` are NULL or live for the duration of the call (ggml's contract for this callback).
#[no_mangle]
unsafe extern "C" fn f2i_backend_graph_compute(
    backend: *mut Backend,
    graph: *mut GgmlCgraph,
) -> c_int {
    guard("graph_compute", GGML_STATUS_FAILED, || {
        // SAFETY: ggml passes a live backend (this callback's contract).
        let Some(ctx) = (unsafe { backend_ctx(backend) }) else {
            return GGML_STATUS_FAILED;
        };
        if graph.is_null() {
            return GGML_STATUS_FAILED;
        }
        let cfg = config();
        let threads = ctx.n_threads();
        let pool = crate::pool::get(threads);
        let mut stats = Stats {
            graphs: 1,
            ..Stats::default()
        };
        let mut cpu_slot = ctx.cpu.lock().unwrap_or_else(|e| e.into_inner());
        // the int8 columns of the last product's src1: the next product with the same src1 (K and V
        // after Q, up after gate) reuses them; nodes in between never write to a live src1
        let mut q8_cache: Option<Q8Cache> = None;
        // SAFETY: a live graph for the duration of the call.
        let n_nodes = unsafe { f2i_graph_n_nodes(graph) };
        // nodes [start, i) not yet run, `pending` of them to be computed by ggml-cpu
        let (mut start, mut pending) = (0, 0usize);
        for i in 0..n_nodes {
            // SAFETY: 0 <= i < n_nodes; nodes live as long as the graph.
            let Some(node) = (unsafe { Tensor::from_ptr(f2i_graph_node(graph, i)) }) else {
                continue;
            };
            if node.flags() & TENSOR_FLAG_COMPUTE == 0 {
                continue;
            }
            match supports::check(&node.op_desc()) {
                Ok(Supported::View | Supported::Empty) => stats.views += 1,
                Ok(own @ (Supported::GetRows(_) | Supported::MulMat(_))) => {
                    // the nodes handed on since the last product run first
                    if let Err(why) = flush_cpu(
                        &mut cpu_slot,
                        graph,
                        (start, i),
                        threads,
                        &mut pending,
                        &mut stats,
                    ) {
                        log_error(&format!(
                            "fairy2i: graph_compute: before '{}': {why}",
                            node.name()
                        ));
                        return GGML_STATUS_FAILED;
                    }
                    start = i + 1;
                    let done = match own {
                        Supported::GetRows(plan) => run_get_rows(node, &plan).map(|()| {
                            stats.get_rows += plan.n_idx as u64;
                        }),
                        Supported::MulMat(plan) => {
                            run_mul_mat(node, &plan, cfg, pool.as_ref(), &mut q8_cache).map(|()| {
                                stats.mul_mats[plan.stages - 1] += 1;
                                stats.columns += plan.n_cols() as u64;
                            })
                        }
                        Supported::View | Supported::Empty => Ok(()),
                    };
                    if let Err(why) = done {
                        log_error(&format!(
                            "fairy2i: graph_compute: {} '{}': {why}",
                            op_name(node.op()),
                            node.name()
                        ));
                        return GGML_STATUS_FAILED;
                    }
                }
                Err(why) => {
                    if cpu_slot.is_none() {
                        *cpu_slot = CpuBackend::new();
                    }
                    // Whatever ggml-cpu runs is run, whatever the rules of `hand_on` (they steer
                    // llama.cpp's scheduler; an RPC server hands this device whole graphs without
                    // asking `supports_op`).
                    let runs_on_cpu =
                        !touches_f2i(node) && cpu_slot.as_ref().is_some_and(|c| c.supports(node));
                    if !runs_on_cpu {
                        log_error(&format!(
                            "fairy2i: graph_compute: node '{}' ({}) cannot run: {why}; no backend \
                             runs this op on F2I data",
                            node.name(),
                            op_name(node.op())
                        ));
                        return GGML_STATUS_FAILED;
                    }
                    pending += 1;
                }
            }
        }
        if let Err(why) = flush_cpu(
            &mut cpu_slot,
            graph,
            (start, n_nodes),
            threads,
            &mut pending,
            &mut stats,
        ) {
            log_error(&format!("fairy2i: graph_compute: {why}"));
            return GGML_STATUS_FAILED;
        }
        drop(cpu_slot);
        if cfg.log >= 1 {
            let _ = writeln!(
                std::io::stderr(),
                "fairy2i: graph: {}; threads {threads} ({}), kernel {} {}",
                stats.summary(),
                pool.as_ref().map_or("caller", crate::pool::Team::kind),
                cfg.kernel.isa().name(),
                cfg.precision.name()
            );
        }
        ctx.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&stats);
        GGML_STATUS_SUCCESS
    })
}

/// The ggml name of an op id (`ggml_op_name`), for error lines.
fn op_name(op: i32) -> String {
    // SAFETY: ggml_op_name returns a static string for every id below GGML_OP_COUNT, and the shim
    // checks the id first.
    let p = unsafe { f2i_shim_op_name(op) };
    if p.is_null() {
        return format!("op {op}");
    }
    // SAFETY: a static NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Decodes the rows an F2I GET_ROWS asks for (real rows of the matrix the stored rows encode: row r
/// needs stored rows r mod n and n + r mod n).
fn run_get_rows(node: Tensor<'_>, plan: &GetRowsPlan) -> Result<(), String> {
    let w = node.src(0).ok_or("no src0")?;
    let idx = node.src(1).ok_or("no src1")?;
    let host = w
        .buffer()
        .and_then(BufferRef::host_buffer)
        .ok_or("src0 is not in a FAIRY2I buffer")?;
    let weight_bytes = plan.row_bytes * plan.n_rows;
    if w.data().is_null()
        || !range_inside(
            host.base() as usize,
            host.size(),
            w.data() as usize,
            weight_bytes,
        )
    {
        return Err("src0 data is not inside its buffer".into());
    }
    let (i_bytes, d_bytes) = (plan.n_idx * 4, plan.n_idx * plan.k * 4);
    for (t, bytes, what) in [(idx, i_bytes, "src1"), (node, d_bytes, "dst")] {
        let buf = t.buffer().ok_or_else(|| format!("{what} has no buffer"))?;
        let (base, size) = buf.range();
        let addr = t.data() as usize;
        if !buf.is_host()
            || t.data().is_null()
            || !addr.is_multiple_of(4)
            || !range_inside(base, size, addr, bytes)
        {
            return Err(format!(
                "{what} is not 4-aligned host memory inside its buffer"
            ));
        }
    }
    if ranges_overlap(node.data() as usize, d_bytes, idx.data() as usize, i_bytes)
        || ranges_overlap(
            node.data() as usize,
            d_bytes,
            w.data() as usize,
            weight_bytes,
        )
    {
        return Err("dst overlaps a source".into());
    }
    // SAFETY: checked above: inside our allocation, not written during this node.
    let weights = unsafe { std::slice::from_raw_parts(w.data().cast_const(), weight_bytes) };
    // SAFETY: checked above: 4-aligned I32 data inside a live host buffer, not written here.
    let rows =
        unsafe { std::slice::from_raw_parts(idx.data().cast_const().cast::<i32>(), plan.n_idx) };
    // SAFETY: checked above: 4-aligned, inside a live host buffer, overlapping no source.
    let dst =
        unsafe { std::slice::from_raw_parts_mut(node.data().cast::<f32>(), plan.n_idx * plan.k) };
    let n = plan.n_rows / 2;
    let mut pair = vec![0u8; 2 * plan.row_bytes];
    for (&r, out) in rows.iter().zip(dst.chunks_exact_mut(plan.k)) {
        let r = usize::try_from(r)
            .ok()
            .filter(|&r| r < plan.n_rows)
            .ok_or_else(|| format!("row index {r} is outside 0..{}", plan.n_rows))?;
        let j = r % n;
        pair[..plan.row_bytes].copy_from_slice(&weights[j * plan.row_bytes..][..plan.row_bytes]);
        pair[plan.row_bytes..]
            .copy_from_slice(&weights[(n + j) * plan.row_bytes..][..plan.row_bytes]);
        let real = fairy2i_format::f2i::dequantize_tensor(&pair, plan.k, 2, plan.stages)
            .map_err(|e| e.to_string())?;
        out.copy_from_slice(&real[(r / n) * plan.k..][..plan.k]);
    }
    Ok(())
}

/// Runs the `pending` handed-on nodes among nodes [range.0, range.1) of `graph` on ggml-cpu.
fn flush_cpu(
    cpu: &mut Option<CpuBackend>,
    graph: *mut GgmlCgraph,
    (i0, i1): (c_int, c_int),
    threads: usize,
    pending: &mut usize,
    stats: &mut Stats,
) -> Result<(), &'static str> {
    if *pending == 0 {
        return Ok(());
    }
    let cpu = cpu.as_mut().ok_or("nodes to hand on but no CPU backend")?;
    cpu.set_threads(threads);
    // SAFETY: graph_compute's live graph; 0 <= i0 <= i1 <= its node count.
    let status = unsafe { cpu.compute(graph, i0, i1) };
    stats.cpu_runs += 1;
    stats.cpu_nodes += *pending as u64;
    *pending = 0;
    if status == GGML_STATUS_SUCCESS {
        Ok(())
    } else {
        Err("ggml-cpu failed on the nodes handed on")
    }
}

/// Checks the pointers of a MUL_MAT the predicate accepted, makes the slices and runs it.
/// Quantized activations of one src1 tensor within one `graph_compute`.
struct Q8Cache {
    /// The src1 tensor, its data and its columns (a key, never dereferenced).
    key: (usize, usize, usize),
    cols: Q8Cols,
}

fn run_mul_mat(
    node: Tensor<'_>,
    plan: &MulMatPlan,
    cfg: &crate::device::Config,
    pool: Option<&crate::pool::Team>,
    q8_cache: &mut Option<Q8Cache>,
) -> Result<(), String> {
    let w = node.src(0).ok_or("no src0")?;
    let x = node.src(1).ok_or("no src1")?;

    // the weight: inside one of our allocations
    let w_buf = w.buffer().ok_or("src0 has no buffer")?;
    let host = w_buf
        .host_buffer()
        .ok_or("src0 is not in a FAIRY2I buffer")?;
    let w_addr = w.data() as usize;
    if w.data().is_null()
        || !range_inside(host.base() as usize, host.size(), w_addr, plan.weight_bytes)
    {
        return Err(format!(
            "src0 data ({} bytes) is not inside its buffer",
            plan.weight_bytes
        ));
    }

    // activations and result: f32-aligned, inside host buffers
    let x_bytes = plan.src1_extent * 4;
    let d_bytes = plan.dst_len * 4;
    for (t, bytes, what) in [(x, x_bytes, "src1"), (node, d_bytes, "dst")] {
        let buf = t.buffer().ok_or_else(|| format!("{what} has no buffer"))?;
        if !buf.is_host() {
            return Err(format!("{what} is not in host memory"));
        }
        let (base, size) = buf.range();
        let addr = t.data() as usize;
        if t.data().is_null() || !addr.is_multiple_of(4) || !range_inside(base, size, addr, bytes) {
            return Err(format!(
                "{what} data ({bytes} bytes) is misaligned or not inside its buffer"
            ));
        }
    }
    let (x_addr, d_addr) = (x.data() as usize, node.data() as usize);
    if ranges_overlap(d_addr, d_bytes, x_addr, x_bytes)
        || ranges_overlap(d_addr, d_bytes, w_addr, plan.weight_bytes)
    {
        return Err("dst overlaps a source".into());
    }

    // SAFETY: [w_addr, +weight_bytes) lies inside our zero-initialised allocation (checked above) and
    // nothing writes to it during the product (dst does not overlap it).
    let weights = unsafe { std::slice::from_raw_parts(w.data().cast_const(), plan.weight_bytes) };
    // SAFETY: [x_addr, +x_bytes) lies inside a live host buffer, is 4-aligned, and is not written
    // during the product (dst does not overlap it).
    let xs = unsafe {
        std::slice::from_raw_parts(x.data().cast_const().cast::<f32>(), plan.src1_extent)
    };
    // SAFETY: [d_addr, +d_bytes) lies inside a live host buffer, is 4-aligned, and overlaps neither
    // source; ggml gives this node's output to this call alone.
    let dst = unsafe { std::slice::from_raw_parts_mut(node.data().cast::<f32>(), plan.dst_len) };

    let cols = (0..plan.n_cols())
        .map(|c| {
            let off = plan.src1_offset(c);
            xs.get(off..off + plan.k).ok_or("src1 column out of range")
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pre = if cfg.precision == Precision::Q8 {
        let key = (x.raw() as usize, x_addr, plan.n_cols());
        if q8_cache.as_ref().is_none_or(|c| c.key != key) {
            *q8_cache = Some(Q8Cache {
                key,
                cols: Q8Cols::quantize(&cols, plan.k),
            });
        }
        q8_cache.as_ref().map(|c| &c.cols)
    } else {
        None
    };
    MulMat {
        weights,
        k: plan.k,
        n_rows: plan.n_rows,
        stages: plan.stages,
        cols,
        dst,
        precision: cfg.precision,
    }
    .run_with(cfg.kernel, pool, pre);
    Ok(())
}
