// Correctness oracle for libggml-fairy2i.so (docs/backend.md §4), driven by ggml-backend/tests/oracle.rs.
//
// Builds one graph with two products of the same activations, run by ggml's own scheduler over
// the backends {FAIRY2I, CPU}:
//   y_f2i = mul_mat(W_f2i, x)   W_f2i in a FAIRY2I buffer  -> must be assigned to FAIRY2I
//   y_cpu = mul_mat(W_f32, x)   W_f32 = the dequantized weight in a CPU buffer -> CPU backend
// and writes both results for the Rust side to compare.
//
// usage: oracle PLUGIN.so LIBGGML_CPU.so CASE_FILE OUT_FILE
// CASE_FILE: u32 magic 0x4f493246 ("F2IO"), type, k, n_rows, ne11, ne12, ne13, n_threads, strided;
//            then the F2I bytes, the f32 weight (n_rows*k), the f32 activations (k*ne11*ne12*ne13).
//            strided == 1: x is a view with 32 NaN floats of padding after every column;
//            strided == 2: x is a view 2 bytes into its buffer (misaligned f32): only the F2I product is
//            built, and the program prints "status <ggml_status>" instead of writing results.
// OUT_FILE:  y_f2i then y_cpu, f32, n_rows per column.
// stdout:    "assigned <backend of y_f2i> <backend of y_cpu>"

#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAD 32

static void die(const char * msg) {
    fprintf(stderr, "oracle: %s\n", msg);
    exit(2);
}

static void * read_exact(FILE * f, size_t n) {
    void * p = malloc(n ? n : 1);
    if (!p || fread(p, 1, n, f) != n) die("short case file");
    return p;
}

typedef void (*set_n_threads_t)(ggml_backend_t, int);

static void set_threads(ggml_backend_reg_t reg, ggml_backend_t backend, int n) {
    set_n_threads_t fn = (set_n_threads_t) ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads");
    if (!fn) die("backend has no ggml_backend_set_n_threads");
    fn(backend, n);
}

int main(int argc, char ** argv) {
    if (argc != 5) die("usage: oracle PLUGIN.so LIBGGML_CPU.so CASE_FILE OUT_FILE");

    FILE * f = fopen(argv[3], "rb");
    if (!f) die("cannot open case file");
    uint32_t h[9];
    if (fread(h, sizeof(uint32_t), 9, f) != 9 || h[0] != 0x4f493246u) die("bad case header");
    const enum ggml_type type = (enum ggml_type) h[1];
    const int64_t k = h[2], n_rows = h[3], ne11 = h[4], ne12 = h[5], ne13 = h[6];
    const int n_threads = (int) h[7];
    const int misaligned = h[8] == 2;
    const int strided = h[8] != 0;
    const int64_t n_cols = ne11 * ne12 * ne13;
    const size_t f2i_bytes = ggml_row_size(type, k) * (size_t) n_rows;
    void * f2i = read_exact(f, f2i_bytes);
    float * wf = read_exact(f, sizeof(float) * (size_t) (n_rows * k));
    float * xs = read_exact(f, sizeof(float) * (size_t) (k * n_cols));
    fclose(f);

    ggml_backend_reg_t reg_f2i = ggml_backend_load(argv[1]);
    ggml_backend_reg_t reg_cpu = ggml_backend_load(argv[2]);
    if (!reg_f2i || !reg_cpu) die("cannot load the backends");
    ggml_backend_dev_t dev_f2i = ggml_backend_reg_dev_get(reg_f2i, 0);
    ggml_backend_dev_t dev_cpu = ggml_backend_reg_dev_get(reg_cpu, 0);
    ggml_backend_t be_f2i = ggml_backend_dev_init(dev_f2i, NULL);
    ggml_backend_t be_cpu = ggml_backend_dev_init(dev_cpu, NULL);
    if (!be_f2i || !be_cpu) die("cannot init the backends");
    set_threads(reg_f2i, be_f2i, n_threads);
    set_threads(reg_cpu, be_cpu, n_threads);

    // weights and inputs, each context in its own buffer type
    struct ggml_init_params ip = { ggml_tensor_overhead() * 8, NULL, true };
    struct ggml_context * ctx_w = ggml_init(ip);
    struct ggml_context * ctx_c = ggml_init(ip);
    struct ggml_tensor * w = ggml_new_tensor_2d(ctx_w, type, k, n_rows);
    struct ggml_tensor * w32 = ggml_new_tensor_2d(ctx_c, GGML_TYPE_F32, k, n_rows);
    const int64_t row = strided ? k + PAD : k;
    struct ggml_tensor * xfull = ggml_new_tensor_4d(ctx_c, GGML_TYPE_F32, row, ne11, ne12, ne13);
    ggml_set_name(w, "w_f2i");
    ggml_set_name(w32, "w_f32");
    ggml_backend_buffer_t buf_w = ggml_backend_alloc_ctx_tensors_from_buft(ctx_w, ggml_backend_dev_buffer_type(dev_f2i));
    ggml_backend_buffer_t buf_c = ggml_backend_alloc_ctx_tensors_from_buft(ctx_c, ggml_backend_dev_buffer_type(dev_cpu));
    if (!buf_w || !buf_c) die("cannot allocate weight buffers");
    ggml_backend_buffer_set_usage(buf_w, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    ggml_backend_buffer_set_usage(buf_c, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    ggml_backend_tensor_set(w, f2i, 0, f2i_bytes);
    ggml_backend_tensor_set(w32, wf, 0, sizeof(float) * (size_t) (n_rows * k));
    float * xin = malloc(sizeof(float) * (size_t) (row * n_cols));
    for (int64_t c = 0; c < n_cols; c++) {
        memcpy(xin + c * row, xs + c * k, sizeof(float) * (size_t) k);
        for (int64_t i = k; i < row; i++) xin[c * row + i] = NAN;
    }
    ggml_backend_tensor_set(xfull, xin, 0, sizeof(float) * (size_t) (row * n_cols));

    // the graph
    struct ggml_init_params gp = { ggml_tensor_overhead() * 16 + ggml_graph_overhead(), NULL, true };
    struct ggml_context * ctx_g = ggml_init(gp);
    struct ggml_tensor * x = strided
        ? ggml_view_4d(ctx_g, xfull, k, ne11, ne12, ne13, xfull->nb[1], xfull->nb[2], xfull->nb[3], misaligned ? 2 : 0)
        : xfull;
    if (misaligned) {
        struct ggml_tensor * y = ggml_mul_mat(ctx_g, w, x);
        ggml_set_output(y);
        struct ggml_cgraph * g1 = ggml_new_graph(ctx_g);
        ggml_build_forward_expand(g1, y);
        ggml_backend_t bes[2] = { be_f2i, be_cpu };
        ggml_backend_sched_t s1 = ggml_backend_sched_new(bes, NULL, 2, GGML_DEFAULT_GRAPH_SIZE, false, true);
        if (!ggml_backend_sched_alloc_graph(s1, g1)) die("sched cannot allocate the graph");
        printf("assigned %s\n", ggml_backend_name(ggml_backend_sched_get_tensor_backend(s1, y)));
        printf("status %d\n", (int) ggml_backend_sched_graph_compute(s1, g1));
        return 0;
    }
    struct ggml_tensor * y_f2i = ggml_mul_mat(ctx_g, w, x);
    struct ggml_tensor * y_cpu = ggml_mul_mat(ctx_g, w32, x);
    ggml_set_name(y_f2i, "y_f2i");
    ggml_set_name(y_cpu, "y_cpu");
    ggml_set_output(y_f2i);
    ggml_set_output(y_cpu);
    struct ggml_cgraph * gf = ggml_new_graph(ctx_g);
    ggml_build_forward_expand(gf, y_f2i);
    ggml_build_forward_expand(gf, y_cpu);

    ggml_backend_t backends[2] = { be_f2i, be_cpu };
    ggml_backend_sched_t sched = ggml_backend_sched_new(backends, NULL, 2, GGML_DEFAULT_GRAPH_SIZE, false, true);
    // The FAIRY2I device also takes non-F2I nodes while an F2I weight is loaded (it would run this one
    // through ggml-cpu inside its own graph, docs/backend.md §3.1): the reference is pinned to
    // llama.cpp's CPU backend so that it is computed and scheduled independently of the plugin.
    ggml_backend_sched_set_tensor_backend(sched, y_cpu, be_cpu);
    if (!ggml_backend_sched_alloc_graph(sched, gf)) die("sched cannot allocate the graph");
    if (ggml_backend_sched_graph_compute(sched, gf) != GGML_STATUS_SUCCESS) die("graph compute failed");

    printf("assigned %s %s\n", ggml_backend_name(ggml_backend_sched_get_tensor_backend(sched, y_f2i)),
           ggml_backend_name(ggml_backend_sched_get_tensor_backend(sched, y_cpu)));

    const size_t out_n = (size_t) (n_rows * n_cols);
    float * out = malloc(sizeof(float) * out_n * 2);
    ggml_backend_tensor_get(y_f2i, out, 0, sizeof(float) * out_n);
    ggml_backend_tensor_get(y_cpu, out + out_n, 0, sizeof(float) * out_n);
    FILE * o = fopen(argv[4], "wb");
    if (!o || fwrite(out, sizeof(float), out_n * 2, o) != out_n * 2 || fclose(o) != 0) die("cannot write output");

    ggml_backend_sched_free(sched);
    ggml_free(ctx_g);
    ggml_backend_buffer_free(buf_w);
    ggml_backend_buffer_free(buf_c);
    ggml_free(ctx_w);
    ggml_free(ctx_c);
    ggml_backend_free(be_f2i);
    ggml_backend_free(be_cpu);
    free(out); free(xin); free(f2i); free(wf); free(xs);
    return 0;
}
