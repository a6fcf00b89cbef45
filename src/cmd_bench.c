/* cmd_bench.c: `lpe bench`: forward and forward+backward throughput of a backend beside this
 * machine's sgemm rate, measured in the same run.
 *
 * Dimension legend: B batch rows, k positions, D d_model, V d_vocab; sgemm shapes M x N x K.
 *
 * Achieved GFLOP/s counts only the products the pruned network needs (lpe_model_forward_flops,
 * lpe_model_backward_flops), so the fraction of the sgemm rate says how close the engine gets
 * to "nothing but large matrix products".
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/backend.h"
#ifdef LPE_HAVE_CUDA
#include "lpe/cuda.h"
#endif
#include "lpe/cmd.h"
#include "lpe/common.h"
#include "lpe/dist.h"
#include "lpe/model.h"
#include "lpe/philox.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lpe bench [--batch B] [--iters N] [--backend cpu|cuda|auto] [--quick]\n"
            "                 [--model M.h5 [--k K]]\n\n"
            "Measures sgemm GFLOP/s (1024^3 and the gelu-1l q|k|v shape), then samples/s of the\n"
            "forward and of forward+backward (gradient to the embeddings) at batch B (default\n"
            "256) for a gelu-1l-shaped random model (d_model 512, 8 heads x 64, d_mlp 2048,\n"
            "d_vocab 48262, k 33) and a small one (2 layers, d_model 64, 4 heads x 16, d_mlp 256,\n"
            "vocab 512, k 8), or for the model file given. Each pass runs N batches (default: as\n"
            "many as fit in ~2 s, after one warm-up; --quick: ~0.3 s and smaller sgemm shapes).\n"
            "GFLOP/s counts the products the pruned network needs; 'frac' divides it by an\n"
            "sgemm rate (M x 1024 x 512) measured just before that model's passes, so both\n"
            "numbers see the same machine load. scores@: scores_at over the whole vocabulary\n"
            "(rows/s); scoresum: scores_sum of 8 groups over the whole vocabulary at every\n"
            "position (calls/s).\n"
            "With --backend cuda the sgemm column is cuBLAS FP32 at the unembedding shape\n"
            "(batch x d_vocab x d_model) on the device, measured in the same run.\n");
}

static double sgemm_rate(int M, int N, int K, int reps) {
    float *A = lpe_alloc_aligned((size_t)M * K * sizeof *A); /* [M, K] */
    float *Bm = lpe_alloc_aligned((size_t)K * N * sizeof *Bm); /* [K, N] */
    float *C = lpe_alloc_aligned((size_t)M * N * sizeof *C); /* [M, N] */
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < (size_t)K * N; i++) Bm[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
    double best = 1e30;
    for (int r = 0; r < reps + 1; r++) { /* the first is a warm-up */
        double t = lpe_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, Bm, N, 0.0f,
                    C, N);
        t = lpe_now() - t;
        if (r > 0 && t < best) best = t;
    }
    lpe_free_aligned(A);
    lpe_free_aligned(Bm);
    lpe_free_aligned(C);
    return 2.0 * M * N * K / best * 1e-9;
}

typedef struct {
    const char *backend;
    int batch, iters;
    double min_time;
    double sgemm; /* GFLOP/s reference */
} bench_opts;

/* samples/s of forward and forward+backward, then the score products over a uniform
 * full-vocabulary support (the largest an estimator meets). The sgemm rate is measured again
 * just before, so that the fraction compares numbers taken under the same machine load. */
static void bench_model(const bench_opts *o, const char *label, const lpe_model *m, int k) {
    int B = o->batch, V = m->cfg.d_vocab, D = m->cfg.d_model;
    lpe_backend *be = lpe_backend_create(o->backend, m, B, k, LPE_BE_GRAD);
    int32_t *tok = lpe_calloc((size_t)B * k, sizeof *tok); /* [B, k] */
    int32_t *tgt = lpe_calloc((size_t)B, sizeof *tgt);     /* [B] */
    int32_t *am = lpe_calloc((size_t)B, sizeof *am);       /* [B] */
    float *tl = lpe_calloc((size_t)B, sizeof *tl);         /* [B] */
    for (int i = 0; i < B * k; i++) {
        uint32_t w[4];
        lpe_rng4(w, 12345, lpe_stream(LPE_STREAM_TEST, 0), (uint64_t)i, 0);
        tok[i] = (int32_t)lpe_below(w[0], (uint32_t)V);
        if (i < B) tgt[i] = (int32_t)lpe_below(w[1], (uint32_t)V);
    }
    be->load_tokens(be, tok, B);
    lpe_fwd_out out = {.argmax = am, .target_logit = tl};
    double ff = lpe_model_forward_flops(&m->cfg, k), fb = lpe_model_backward_flops(&m->cfg, k);
    double ref = sgemm_rate(B * k < 4096 ? B * k : 4096, 1024, 512, o->min_time < 1 ? 1 : 2);
#ifdef LPE_HAVE_CUDA
    if (!strcmp(be->name, "cuda")) ref = lpe_cuda_sgemm_rate(B, V, D, 3); /* cuBLAS, B x V x D */
#endif
    for (int grad = 0; grad < 2; grad++) {
        be->forward(be, &out, tgt, B, grad); /* warm-up: first touch of the buffers */
        int n = 0;
        double t0 = lpe_now(), t;
        do {
            be->forward(be, &out, tgt, B, grad);
            n++;
            t = lpe_now() - t0;
        } while (o->iters > 0 ? n < o->iters : t < o->min_time);
        double sps = (double)n * B / t, flops = grad ? ff + fb : ff;
        double gf = sps * flops * 1e-9;
        printf("%-18s %6d %4d  %-8s %11.1f %9.2f %10.2f %9.1f %7.1f %6.2f\n", label, B, k,
               grad ? "fwd+bwd" : "forward", sps, 1e3 * t / n, flops * 1e-6, gf, ref, gf / ref);
        fflush(stdout);
    }

    /* scores over all V tokens at every position: scores_at (one position per row) and
     * scores_sum (every position, 8 groups) */
    int64_t off[2] = {0, V};
    int32_t *vals = lpe_calloc((size_t)V, sizeof *vals);
    double *pr = lpe_calloc((size_t)V, sizeof *pr);
    int32_t *posf = lpe_calloc((size_t)k, sizeof *posf), *pos = lpe_calloc((size_t)B, sizeof *pos);
    for (int v = 0; v < V; v++) vals[v] = v, pr[v] = 1;
    for (int b = 0; b < B; b++) pos[b] = b % k;
    lpe_dist d;
    lpe_dist_from_arrays(&d, "uniform", "", 1, off, vals, pr, k, posf, V);
    be->use_dist(be, &d);
    float *sc = lpe_alloc_aligned((size_t)B * V * sizeof *sc); /* [B, V] */
    int G = 8;
    int32_t goff[9];
    for (int g = 0; g <= G; g++) goff[g] = (int32_t)((int64_t)B * g / G);
    double *ss = lpe_alloc_aligned((size_t)G * k * V * sizeof *ss); /* [G, k*V] */
    for (int which = 0; which < 2; which++) {
        int n = 0;
        double t0 = lpe_now(), t;
        do {
            if (which == 0)
                be->scores_at(be, sc, V, pos, LPE_BUF_BATCH, B);
            else
                be->scores_sum(be, ss, goff, G);
            n++;
            t = lpe_now() - t0;
        } while (t < o->min_time / 4);
        double flops = which == 0 ? 2.0 * B * V * D : 2.0 * G * k * V * D;
        printf("%-18s %6d %4d  %-8s %11.1f %9.2f %10.2f %9.1f %7.1f %6.2f\n", label, B, k,
               which == 0 ? "scores@" : "scoresum", which == 0 ? n * B / t : n / t, 1e3 * t / n,
               flops * 1e-6 / (which == 0 ? B : 1), flops * n / t * 1e-9, ref,
               flops * n / t * 1e-9 / ref);
    }
    lpe_free_aligned(sc);
    lpe_free_aligned(ss);
    lpe_dist_free(&d);
    free(vals), free(pr), free(posf), free(pos);
    free(tok);
    free(tgt);
    free(am);
    free(tl);
    lpe_backend_destroy(be);
}

/* Options into o (and the model file, its k, --quick); returns -1 to go on, else the exit code. */
static int parse_args(bench_opts *o, const char **model_path, int *k_file, int *quick, int argc,
                      char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--batch")) {
            v = lpe_arg_value(argc, argv, &i, "bench");
            o->batch = (int)lpe_parse_ll(v, "--batch");
            if (o->batch < 1) lpe_fail_input("bench: --batch %d must be >= 1", o->batch);
        } else if (!strcmp(a, "--iters")) {
            v = lpe_arg_value(argc, argv, &i, "bench");
            o->iters = (int)lpe_parse_ll(v, "--iters");
            if (o->iters < 1) lpe_fail_input("bench: --iters %d must be >= 1", o->iters);
        } else if (!strcmp(a, "--backend")) {
            o->backend = lpe_arg_value(argc, argv, &i, "bench");
        } else if (!strcmp(a, "--model")) {
            *model_path = lpe_arg_value(argc, argv, &i, "bench");
        } else if (!strcmp(a, "--k")) {
            v = lpe_arg_value(argc, argv, &i, "bench");
            *k_file = (int)lpe_parse_ll(v, "--k");
        } else if (!strcmp(a, "--quick")) {
            *quick = 1;
        } else {
            fprintf(stderr, "lpe bench: unknown option '%s'\n", a);
            usage(stderr);
            return LPE_EXIT_INPUT;
        }
    }
    return -1;
}

/* This machine's sgemm rates (the yardstick), into o->sgemm, printed. */
static void sgemm_reference(bench_opts *o, int quick) {
    int Mq = o->batch * 33; /* the gelu-1l q|k|v product of a batch */
    double r1 = sgemm_rate(quick ? 512 : 1024, quick ? 512 : 1024, quick ? 512 : 1024, quick ? 2 : 4);
    double r2 = sgemm_rate(quick && Mq > 2048 ? 2048 : Mq, 1536, 512, quick ? 2 : 3);
    o->sgemm = r1 > r2 ? r1 : r2; /* printed for reference; fractions use the adjacent rate */
    printf("sgemm %dx%dx%d: %.1f GFLOP/s\n", quick ? 512 : 1024, quick ? 512 : 1024,
           quick ? 512 : 1024, r1);
    printf("sgemm %dx1536x512 (q|k|v of a batch): %.1f GFLOP/s\n", quick && Mq > 2048 ? 2048 : Mq, r2);
}

/* The backend's name and device, the load average, the table's header. */
static void print_header(const bench_opts *o, const lpe_model *m) {
    lpe_backend *probe = lpe_backend_create(o->backend, m, 1, 1, 0);
    printf("backend %s: %s\n", probe->name, probe->device);
    double load[1];
    if (getloadavg(load, 1) == 1)
        printf("load average %.2f (other processes on these cores slow both the sgemm and the\n"
               "model; 'frac' compares the two under the same load)\n",
               load[0]);
    lpe_backend_destroy(probe);
    printf("\n");
    printf("%-18s %6s %4s  %-8s %11s %9s %10s %9s %7s %6s\n", "model", "batch", "k", "pass",
           "samples/s", "ms/call", "MFLOP/smp", "GFLOP/s", "sgemm", "frac");
}

int lpe_cmd_bench(int argc, char **argv) {
    bench_opts o = {.backend = "cpu", .batch = 256, .iters = 0, .min_time = 2.0};
    int quick = 0, k_file = 33;
    const char *model_path = NULL;
    int rc = parse_args(&o, &model_path, &k_file, &quick, argc, argv);
    if (rc >= 0) return rc;
    if (quick) o.min_time = 0.3;
    /* a GPU run compares with cuBLAS (bench_model): the host's sgemm only at the quick sizes */
    sgemm_reference(&o, quick || !strcmp(lpe_backend_kind_find(o.backend)->name, "cuda"));

    lpe_model m1, m2;
    if (model_path) {
        lpe_model_load(&m1, model_path);
    } else {
        lpe_model_config c1 = {.n_layers = 1, .d_model = 512, .n_heads = 8, .d_head = 64,
                               .d_mlp = 2048, .d_vocab = 48262, .n_ctx = 1024,
                               .act = LPE_ACT_GELU, .ln_eps = 1e-5};
        lpe_model_config c2 = {.n_layers = 2, .d_model = 64, .n_heads = 4, .d_head = 16,
                               .d_mlp = 256, .d_vocab = 512, .n_ctx = 64, .act = LPE_ACT_GELU,
                               .ln_eps = 1e-5};
        lpe_model_init_random(&m1, &c1, 1);
        lpe_model_init_random(&m2, &c2, 2);
    }
    print_header(&o, model_path ? &m1 : &m2);
    if (model_path) {
        bench_model(&o, "model file", &m1, k_file);
        lpe_model_free(&m1);
    } else {
        bench_model(&o, "gelu-1l (random)", &m1, 33);
        bench_model(&o, "small (2l, d64)", &m2, 8);
        lpe_model_free(&m1);
        lpe_model_free(&m2);
    }
    return 0;
}
