// fairy2i ggml backend shim (docs/abi.md).
//
// The only C in libggml-fairy2i.so: (a) the static reg / device / buffer-type tables and the
// backend and buffer interface tables, all pointing at Rust `f2i_*` callbacks (ggml-backend/src/abi.rs);
// (b) one-line accessors so that Rust never mirrors a ggml struct; (c) build-time checks that fail
// when the pinned headers (llama.cpp b11434 + ffi/patches) change.
// No loops, no allocation. ggml functions are referenced weakly: the host process (which loaded
// libggml-base) provides them at dlopen time, and Rust unit tests link without ggml.

#include "ggml.h"
#include "ggml-backend-impl.h"
#include "ggml-impl.h" // struct ggml_cgraph and ggml_graph_view (graph views for the CPU backend)

#define GGML_COMMON_DECL_C
#include "ggml-common.h"

#include "fairy2i.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// ---------------------------------------------------------------- pinned header facts
_Static_assert(GGML_BACKEND_API_VERSION == 3, "ggml backend API changed: re-check ffi/shim and abi.rs");
_Static_assert(GGML_TYPE_F32 == 0, "ggml_type F32 moved");
_Static_assert(GGML_TYPE_F2I_W1 == 64 && GGML_TYPE_F2I_W2 == 65 && GGML_TYPE_F2I_W3 == 66 &&
               GGML_TYPE_F2I_W4 == 67 && GGML_TYPE_COUNT == 68, "F2I type ids changed (ffi/patches)");
_Static_assert(sizeof(block_f2i_stage) == 36, "F2I stage record is 36 bytes");
// ffi/include/fairy2i.h must agree with the patched headers
_Static_assert((int) FAIRY2I_TYPE_F2I_W1 == (int) GGML_TYPE_F2I_W1 && (int) FAIRY2I_TYPE_F2I_W2 == (int) GGML_TYPE_F2I_W2 &&
               (int) FAIRY2I_TYPE_F2I_W3 == (int) GGML_TYPE_F2I_W3 && (int) FAIRY2I_TYPE_F2I_W4 == (int) GGML_TYPE_F2I_W4 &&
               (int) FAIRY2I_GGML_TYPE_COUNT == (int) GGML_TYPE_COUNT, "fairy2i.h type ids");
_Static_assert(sizeof(struct fairy2i_stage) == sizeof(block_f2i_stage) && FAIRY2I_STAGE_BYTES == sizeof(block_f2i_stage) &&
               offsetof(struct fairy2i_stage, qs) == offsetof(block_f2i_stage, qs) && FAIRY2I_QK == QK_K,
               "fairy2i.h stage layout");
_Static_assert(GGML_OP_GET_ROWS == 40 && GGML_TYPE_I32 == 26, "ggml ids changed (supports.rs)");
_Static_assert(GGML_OP_FLASH_ATTN_EXT == 74 && GGML_OP_GATED_DELTA_NET == 86, "ggml op ids changed (abi.rs FUSED_OPS)");
_Static_assert(GGML_OP_NONE == 0 && GGML_OP_MUL_MAT == 29 && GGML_OP_RESHAPE == 36 && GGML_OP_VIEW == 37 &&
               GGML_OP_PERMUTE == 38 && GGML_OP_TRANSPOSE == 39, "ggml_op ids changed (supports.rs)");
_Static_assert(GGML_MAX_DIMS == 4 && GGML_MAX_SRC == 10, "ggml tensor dims/srcs changed");
_Static_assert(GGML_TENSOR_FLAG_COMPUTE == 16, "GGML_TENSOR_FLAG_COMPUTE changed");
_Static_assert(GGML_BACKEND_DEVICE_TYPE_ACCEL == 3, "ggml_backend_dev_type changed");
_Static_assert(GGML_STATUS_SUCCESS == 0 && GGML_STATUS_FAILED == -1, "ggml_status changed");
_Static_assert(GGML_LOG_LEVEL_DEBUG == 1 && GGML_LOG_LEVEL_INFO == 2 && GGML_LOG_LEVEL_WARN == 3 &&
               GGML_LOG_LEVEL_ERROR == 4, "ggml_log_level changed");

// ---------------------------------------------------------------- ggml functions (weak)
void ggml_log_internal(enum ggml_log_level level, const char * format, ...);
#pragma weak ggml_backend_buffer_init
#pragma weak ggml_log_internal
#pragma weak ggml_nbytes
#pragma weak ggml_graph_n_nodes
#pragma weak ggml_graph_node
// the host's CPU backend, for the nodes the plugin hands on (docs/backend.md §3.1)
#pragma weak ggml_backend_dev_by_type
#pragma weak ggml_backend_dev_init
#pragma weak ggml_backend_dev_supports_op
#pragma weak ggml_backend_dev_backend_reg
#pragma weak ggml_backend_reg_get_proc_address
#pragma weak ggml_backend_graph_compute
#pragma weak ggml_backend_free
#pragma weak ggml_graph_view
#pragma weak ggml_op_name

// ---------------------------------------------------------------- Rust callbacks (abi.rs)
const char * f2i_reg_get_name(ggml_backend_reg_t reg);
size_t f2i_reg_get_device_count(ggml_backend_reg_t reg);
ggml_backend_dev_t f2i_reg_get_device(ggml_backend_reg_t reg, size_t index);
void * f2i_reg_get_proc_address(ggml_backend_reg_t reg, const char * name);

const char * f2i_dev_get_name(ggml_backend_dev_t dev);
const char * f2i_dev_get_description(ggml_backend_dev_t dev);
void f2i_dev_get_memory(ggml_backend_dev_t dev, size_t * free, size_t * total);
enum ggml_backend_dev_type f2i_dev_get_type(ggml_backend_dev_t dev);
void f2i_dev_get_props(ggml_backend_dev_t dev, struct ggml_backend_dev_props * props);
ggml_backend_t f2i_dev_init_backend(ggml_backend_dev_t dev, const char * params);
ggml_backend_buffer_type_t f2i_dev_get_buffer_type(ggml_backend_dev_t dev);
bool f2i_dev_supports_op(ggml_backend_dev_t dev, const struct ggml_tensor * op);
bool f2i_dev_supports_buft(ggml_backend_dev_t dev, ggml_backend_buffer_type_t buft);

const char * f2i_buft_get_name(ggml_backend_buffer_type_t buft);
ggml_backend_buffer_t f2i_buft_alloc_buffer(ggml_backend_buffer_type_t buft, size_t size);
size_t f2i_buft_get_alignment(ggml_backend_buffer_type_t buft);
bool f2i_buft_is_host(ggml_backend_buffer_type_t buft);

void f2i_buffer_free_buffer(ggml_backend_buffer_t buffer);
void * f2i_buffer_get_base(ggml_backend_buffer_t buffer);
void f2i_buffer_memset_tensor(ggml_backend_buffer_t buffer, struct ggml_tensor * tensor, uint8_t value,
                              size_t offset, size_t size);
void f2i_buffer_set_tensor(ggml_backend_buffer_t buffer, struct ggml_tensor * tensor, const void * data,
                           size_t offset, size_t size);
void f2i_buffer_get_tensor(ggml_backend_buffer_t buffer, const struct ggml_tensor * tensor, void * data,
                           size_t offset, size_t size);
bool f2i_buffer_cpy_tensor(ggml_backend_buffer_t buffer, const struct ggml_tensor * src, struct ggml_tensor * dst);
void f2i_buffer_clear(ggml_backend_buffer_t buffer, uint8_t value);

const char * f2i_backend_get_name(ggml_backend_t backend);
void f2i_backend_free(ggml_backend_t backend);
enum ggml_status f2i_backend_graph_compute(ggml_backend_t backend, struct ggml_cgraph * cgraph);

// ---------------------------------------------------------------- tables
static const struct ggml_backend_i f2i_backend_i = {
    /* .get_name            = */ f2i_backend_get_name,
    /* .free                = */ f2i_backend_free,
    /* .set_tensor_async    = */ NULL,
    /* .get_tensor_async    = */ NULL,
    /* .set_tensor_2d_async = */ NULL,
    /* .get_tensor_2d_async = */ NULL,
    /* .cpy_tensor_async    = */ NULL,
    /* .synchronize         = */ NULL,
    /* .graph_plan_create   = */ NULL,
    /* .graph_plan_free     = */ NULL,
    /* .graph_plan_update   = */ NULL,
    /* .graph_plan_compute  = */ NULL,
    /* .graph_compute       = */ f2i_backend_graph_compute,
    /* .event_record        = */ NULL,
    /* .event_wait          = */ NULL,
    /* .graph_optimize      = */ NULL,
};

static const struct ggml_backend_buffer_i f2i_buffer_i = {
    /* .free_buffer   = */ f2i_buffer_free_buffer,
    /* .get_base      = */ f2i_buffer_get_base,
    /* .init_tensor   = */ NULL,
    /* .memset_tensor = */ f2i_buffer_memset_tensor,
    /* .set_tensor    = */ f2i_buffer_set_tensor,
    /* .get_tensor    = */ f2i_buffer_get_tensor,
    /* .set_tensor_2d = */ NULL,
    /* .get_tensor_2d = */ NULL,
    /* .cpy_tensor    = */ f2i_buffer_cpy_tensor,
    /* .clear         = */ f2i_buffer_clear,
    /* .reset         = */ NULL,
};

static struct ggml_backend_reg f2i_reg = {
    /* .api_version = */ GGML_BACKEND_API_VERSION,
    /* .iface       = */ {
        /* .get_name         = */ f2i_reg_get_name,
        /* .get_device_count = */ f2i_reg_get_device_count,
        /* .get_device       = */ f2i_reg_get_device,
        /* .get_proc_address = */ f2i_reg_get_proc_address,
    },
    /* .context     = */ NULL,
};

static struct ggml_backend_device f2i_device = {
    /* .iface   = */ {
        /* .get_name             = */ f2i_dev_get_name,
        /* .get_description      = */ f2i_dev_get_description,
        /* .get_memory           = */ f2i_dev_get_memory,
        /* .get_type             = */ f2i_dev_get_type,
        /* .get_props            = */ f2i_dev_get_props,
        /* .init_backend         = */ f2i_dev_init_backend,
        /* .get_buffer_type      = */ f2i_dev_get_buffer_type,
        /* .get_host_buffer_type = */ NULL,
        /* .buffer_from_host_ptr = */ NULL,
        /* .supports_op          = */ f2i_dev_supports_op,
        /* .supports_buft        = */ f2i_dev_supports_buft,
        /* .offload_op           = */ NULL,
        /* .event_new            = */ NULL,
        /* .event_free           = */ NULL,
        /* .event_synchronize    = */ NULL,
    },
    /* .reg     = */ &f2i_reg,
    /* .context = */ NULL,
};

static struct ggml_backend_buffer_type f2i_buft = {
    /* .iface   = */ {
        /* .get_name         = */ f2i_buft_get_name,
        /* .alloc_buffer     = */ f2i_buft_alloc_buffer,
        /* .alloc_buffer_n   = */ NULL,
        /* .get_alignment    = */ f2i_buft_get_alignment,
        /* .get_max_size     = */ NULL,
        /* .get_alloc_size   = */ NULL,
        /* .get_alloc_size_n = */ NULL,
        /* .is_host          = */ f2i_buft_is_host,
    },
    /* .device  = */ &f2i_device,
    /* .context = */ NULL,
};

static ggml_guid f2i_guid = { 0xf2, 0x1a, 0x49, 0x32, 0x7e, 0x0b, 0x4c, 0x6d,
                              0x9a, 0x51, 0x2e, 0x13, 0xb8, 0x66, 0xd0, 0x04 };

// ---------------------------------------------------------------- tables, handed to Rust
ggml_backend_reg_t f2i_shim_reg(void) { return &f2i_reg; }
ggml_backend_dev_t f2i_shim_device(void) { return &f2i_device; }
ggml_backend_buffer_type_t f2i_shim_buft(void) { return &f2i_buft; }
// 1 when the host process provides the ggml functions this plugin calls.
int f2i_shim_ggml_present(void) {
    return ggml_backend_buffer_init != NULL && ggml_nbytes != NULL && ggml_graph_n_nodes != NULL &&
           ggml_graph_node != NULL;
}

// ---------------------------------------------------------------- backend objects (memory owned by Rust)
size_t f2i_shim_backend_size(void) { return sizeof(struct ggml_backend); }
size_t f2i_shim_backend_align(void) { return _Alignof(struct ggml_backend); }
void f2i_shim_backend_fill(ggml_backend_t b, void * ctx) {
    *b = (struct ggml_backend){ &f2i_guid, f2i_backend_i, &f2i_device, ctx };
}
int f2i_shim_backend_is_ours(ggml_backend_t b) { return b != NULL && b->iface.graph_compute == f2i_backend_graph_compute; }
void * f2i_shim_backend_context(ggml_backend_t b) { return b->context; }

// ---------------------------------------------------------------- buffers
// The struct is allocated by ggml (freed by ggml_backend_buffer_free); ctx is a Rust HostBuffer.
ggml_backend_buffer_t f2i_shim_buffer_new(void * ctx, size_t size) {
    return ggml_backend_buffer_init(&f2i_buft, f2i_buffer_i, ctx, size);
}
int f2i_shim_buffer_is_ours(ggml_backend_buffer_t b) { return b != NULL && b->iface.free_buffer == f2i_buffer_free_buffer; }
void * f2i_shim_buffer_context(ggml_backend_buffer_t b) { return b->context; }
void * f2i_shim_buffer_base(ggml_backend_buffer_t b) { return b->iface.get_base ? b->iface.get_base(b) : NULL; }
size_t f2i_shim_buffer_size(ggml_backend_buffer_t b) { return b->size; }
ggml_backend_buffer_type_t f2i_shim_buffer_buft(ggml_backend_buffer_t b) { return b->buft; }
int f2i_shim_buft_is_host(ggml_backend_buffer_type_t t) { return t != NULL && t->iface.is_host && t->iface.is_host(t); }

// ---------------------------------------------------------------- tensors
int f2i_tensor_type(const struct ggml_tensor * t) { return (int) t->type; }
int f2i_tensor_op(const struct ggml_tensor * t) { return (int) t->op; }
int32_t f2i_tensor_flags(const struct ggml_tensor * t) { return t->flags; }
int64_t f2i_tensor_ne(const struct ggml_tensor * t, int i) { return t->ne[i]; }
size_t f2i_tensor_nb(const struct ggml_tensor * t, int i) { return t->nb[i]; }
void * f2i_tensor_data(const struct ggml_tensor * t) { return t->data; }
struct ggml_tensor * f2i_tensor_src(const struct ggml_tensor * t, int i) { return t->src[i]; }
struct ggml_tensor * f2i_tensor_view_src(const struct ggml_tensor * t) { return t->view_src; }
ggml_backend_buffer_t f2i_tensor_buffer(const struct ggml_tensor * t) { return t->buffer; }
const char * f2i_tensor_name(const struct ggml_tensor * t) { return t->name; }
size_t f2i_tensor_nbytes(const struct ggml_tensor * t) { return ggml_nbytes(t); }

int f2i_shim_buffer_usage(ggml_backend_buffer_t b) { return (int) b->usage; }
const char * f2i_shim_op_name(int op) {
    return (op >= 0 && op < GGML_OP_COUNT && ggml_op_name != NULL) ? ggml_op_name((enum ggml_op) op) : NULL;
}
_Static_assert(GGML_BACKEND_BUFFER_USAGE_WEIGHTS == 1, "ggml_backend_buffer_usage changed");

// ---------------------------------------------------------------- the host's CPU backend
// The CPU device of the host process, NULL when it has none (or lacks the functions).
ggml_backend_dev_t f2i_shim_cpu_device(void) {
    if (ggml_backend_dev_by_type == NULL || ggml_backend_dev_init == NULL || ggml_backend_dev_supports_op == NULL ||
        ggml_backend_graph_compute == NULL || ggml_backend_free == NULL || ggml_graph_view == NULL) {
        return NULL;
    }
    return ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
}
int f2i_shim_cpu_supports_op(ggml_backend_dev_t cpu, const struct ggml_tensor * op) {
    return ggml_backend_dev_supports_op(cpu, op);
}
ggml_backend_t f2i_shim_cpu_init(ggml_backend_dev_t cpu) { return ggml_backend_dev_init(cpu, NULL); }
void f2i_shim_cpu_free(ggml_backend_t b) { ggml_backend_free(b); }
// Sets the thread count of a CPU backend through its registry's ggml_backend_set_n_threads.
void f2i_shim_cpu_set_n_threads(ggml_backend_dev_t cpu, ggml_backend_t b, int n) {
    if (ggml_backend_dev_backend_reg == NULL || ggml_backend_reg_get_proc_address == NULL) {
        return;
    }
    ggml_backend_set_n_threads_t fn = (ggml_backend_set_n_threads_t) ggml_backend_reg_get_proc_address(
        ggml_backend_dev_backend_reg(cpu), "ggml_backend_set_n_threads");
    if (fn != NULL) {
        fn(b, n);
    }
}
// Computes nodes [i0, i1) of g on the CPU backend b.
int f2i_shim_cpu_compute(ggml_backend_t b, struct ggml_cgraph * g, int i0, int i1) {
    struct ggml_cgraph view = ggml_graph_view(g, i0, i1);
    return (int) ggml_backend_graph_compute(b, &view);
}

// ---------------------------------------------------------------- graphs, props, log
int f2i_graph_n_nodes(struct ggml_cgraph * g) { return ggml_graph_n_nodes(g); }
struct ggml_tensor * f2i_graph_node(struct ggml_cgraph * g, int i) { return ggml_graph_node(g, i); }

void f2i_shim_props_fill(struct ggml_backend_dev_props * p, const char * name, const char * desc) {
    *p = (struct ggml_backend_dev_props){ 0 };
    p->name = name;
    p->description = desc;
    p->type = GGML_BACKEND_DEVICE_TYPE_ACCEL;
    p->caps.mmap_support = true; // weights are copied into our buffers; mmap'd files are fine to read from
}

void f2i_shim_log(int level, const char * msg) {
    if (ggml_log_internal != NULL) {
        ggml_log_internal((enum ggml_log_level) level, "%s\n", msg);
    } else {
        fprintf(stderr, "%s\n", msg);
    }
}
