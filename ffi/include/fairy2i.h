/*
 * fairy2i.h — the C view of libggml-fairy2i.so, for hosts other than llama.cpp (docs/abi.md).
 *
 * The plugin is a ggml dynamic backend (GGML_BACKEND_API_VERSION 3, llama.cpp b11434 + the fairy2i
 * patch). A host normally loads it with ggml_backend_load("…/libggml-fairy2i.so") or lets the patched
 * ggml_backend_load_all() find it beside the executable; the two entry points below are what ggml
 * looks up. Everything else goes through the ggml-backend API: one device "FAIRY2I" (type ACCEL), its
 * buffer type "FAIRY2I" (host memory), MUL_MAT with an F2I weight in that buffer type.
 *
 * This header does not need ggml's headers. The shim that is compiled into the plugin includes it and
 * checks every value here against the patched ggml headers at build time.
 */
#ifndef FAIRY2I_H
#define FAIRY2I_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ggml_type ids of the F2I types (ggml/include/ggml.h after ffi/patches/0001-fairy2i-types.patch). */
enum fairy2i_type {
    FAIRY2I_TYPE_F2I_W1 = 64, /* 1 stage,  36 bytes per 256 weights, 1.125 bpw */
    FAIRY2I_TYPE_F2I_W2 = 65, /* 2 stages, 72 bytes,  2.25 bpw */
    FAIRY2I_TYPE_F2I_W3 = 66, /* 3 stages, 108 bytes, 3.375 bpw */
    FAIRY2I_TYPE_F2I_W4 = 67, /* 4 stages, 144 bytes, 4.5 bpw */
    FAIRY2I_GGML_TYPE_COUNT = 68
};

/* Real weights per block (ggml blck_size); a block holds 128 complex entries. */
#define FAIRY2I_QK 256
/* Bytes of one stage record; an f2i_w<t> block is t records, stage 1 first. */
#define FAIRY2I_STAGE_BYTES 36
/* ggml type_size of f2i_w<t>. */
#define FAIRY2I_TYPE_SIZE(t) ((t) * FAIRY2I_STAGE_BYTES)
/* Stages of an F2I type id (1..4), 0 for any other id. */
#define FAIRY2I_STAGES(type) (((type) >= FAIRY2I_TYPE_F2I_W1 && (type) <= FAIRY2I_TYPE_F2I_W4) ? (type) - 63 : 0)

/*
 * One stage of one block (docs/format.md): entry e (0..127) has code (qs[e % 32] >> (2 * (e / 32))) & 3,
 * meaning i^code: 0 → +d_re, 1 → +i·d_im, 2 → −d_re, 3 → −i·d_im. A complex weight is the sum of its
 * stages. Rows j and n+j of an [K, N] tensor hold U[j] and W[j]; y_c = U z + W conj(z) with
 * z = x[0..K/2) + i·x[K/2..K), y = (Re y_c | Im y_c).
 */
struct fairy2i_stage {
    uint16_t d_re;   /* IEEE half, little endian: scale of the codes on the real axis */
    uint16_t d_im;   /* IEEE half, little endian: scale of the codes on the imaginary axis */
    uint8_t  qs[32]; /* 128 codes, 2 bits each */
};

/* Device, backend, registry and buffer type name. */
#define FAIRY2I_DEVICE_NAME "FAIRY2I"

/* Entry points ggml_backend_load() looks up (exported by the plugin). */
struct ggml_backend_reg;
struct ggml_backend_reg * ggml_backend_init(void); /* NULL if the host has no libggml-base loaded */
int ggml_backend_score(void);                      /* > 0 on every CPU: 1 scalar, 5 AVX2, 10 AVX-512 */

/*
 * Extra function, through ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads"):
 * threads for the following graphs of one FAIRY2I backend (a pool per thread count is built once).
 */
struct ggml_backend;
typedef void (*fairy2i_set_n_threads_t)(struct ggml_backend * backend, int n_threads);

/*
 * Environment, read once per process (ggml-backend/src/device.rs, pool.rs):
 *   FAIRY2I_LOG=1   at load, the ggml info line "fairy2i: kernel K P"; one stderr line per graph_compute
 *                   "fairy2i: graph: mul_mat N (f2i_wT N, ...), views V, columns C, cpu nodes X in R runs;
 *                   threads T (M), kernel K P" (X nodes run on ggml-cpu inside the device's graph in R
 *                   runs); and when a backend is freed "fairy2i: backend freed: G graphs, mul_mat N (...),
 *                   views V, columns C, cpu nodes X in R runs". K is scalar|avx2|avxvnni|avx512|avx512vnni|neon,
 *                   P is q8 (int8 activations) or exact, M is how the threads run: openmp (the host's
 *                   team), rayon (our pool) or caller (one thread);
 *   FAIRY2I_LOG=2   also, on stderr, every op refused by supports_op ("fairy2i: refusing '<name>' (op N): why")
 *                   and every node taken only to fail it ("fairy2i: taking '<name>' (op N) only to fail it cleanly");
 *   FAIRY2I_ISA=scalar|avx2|avxvnni|avx512|avx512vnni|neon   force a kernel (ignored with a warning if the
 *                   CPU lacks it);
 *   FAIRY2I_EXACT=1 f32 activations instead of the default int8 ones (any value but empty or 0);
 *   FAIRY2I_POOL=rayon   never use the host's OpenMP team; run on a rayon pool of the plugin's own.
 */

#ifdef __cplusplus
}
#endif

#endif /* FAIRY2I_H */
