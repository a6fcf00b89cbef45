/* cuda_backend.cu: the CUDA backend object: memory (size tables), tokens, distributions,
 * forward outputs, walker state, and the lpe_backend function table. The math is in
 * cuda_forward.cu, cuda_backward.cu, cuda_scores.cu; this file mirrors src/cpu/cpu_backend.c.
 *
 * Dimension legend: see cuda_internal.cuh (Bm max rows, B rows, k, D, Q3, F, V, L, NS, NF).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "lpe/common.h"
#include "lpe/size_table.h"

/* ---- size tables ------------------------------------------------------------------------- */

#define ALIGN 256 /* cudaMalloc's own alignment: every carved buffer keeps it */
#define ADD(p, count) LPE_SLOT(t, n, p, count)
static size_t carve(lpe_slot *t, int n, char *base) { return lpe_carve(t, n, base, ALIGN); }

/* The batch lifetime class (the CPU's table plus the epilogue outputs and d_att). */
static int batch_table(lpe_slot *t, cuda_impl *c) {
    int n = 0;
    size_t Nm = (size_t)c->Bm * c->k, Bm = c->Bm, k = c->k, D = c->D, F = c->F, H = c->H;
    int Lf = c->L - 1, keep = c->keep, attn_only = c->attn_only;
    size_t nX = keep ? (size_t)c->L : (c->L > 1 ? 2 : 1);
    size_t nL = keep ? (size_t)c->L : 1;
    size_t nF = keep ? (size_t)Lf : (Lf > 0 ? 1 : 0);
    size_t nM = attn_only ? 0 : nF;
    size_t Grows = attn_only ? 0 : (Lf > 0 ? Nm : Bm);
    size_t g = keep ? 1 : 0;
    ADD(c->tok, Bm * k);
    ADD(c->resid, nX * Nm * D);
    ADD(c->ln1_mean, nL * Nm);
    ADD(c->ln1_rstd, nL * Nm);
    ADD(c->qkv, nL * Nm * c->Q3);
    ADD(c->att, nF * Bm * H * k * k);
    ADD(c->attn_out, nF * Nm * c->HD);
    ADD(c->resid_mid, nM * Nm * D);
    ADD(c->ln2_mean, nM * Nm);
    ADD(c->ln2_rstd, nM * Nm);
    ADD(c->mlp_pre, nM * Nm * F);
    ADD(c->last_att, Bm * H * k);
    ADD(c->last_attn_out, Bm * c->HD);
    ADD(c->last_resid_mid, Bm * D);
    ADD(c->last_ln2_mean, Bm);
    ADD(c->last_ln2_rstd, Bm);
    ADD(c->last_mlp_pre, attn_only ? 0 : Bm * F);
    ADD(c->resid_final, Bm * D);
    ADD(c->lnf_mean, Bm);
    ADD(c->lnf_rstd, Bm);
    ADD(c->lnf, Bm * D);
    ADD(c->logits, Bm * c->V);
    ADD(c->ln_out, Nm * D);
    ADD(c->mlp_act, Grows * F);
    ADD(c->targets, Bm);
    ADD(c->o_argmax, Bm);
    ADD(c->o_max, Bm);
    ADD(c->o_target, Bm);
    ADD(c->o_margin, Bm);
    ADD(c->o_bad, Bm);
    ADD(c->grad, g * Nm * D);
    ADD(c->d_resid_mid, g * Nm * D);
    ADD(c->d_ln_out, g * Nm * D);
    ADD(c->seed_p, g * (Bm < CUDA_SEED_ROWS ? Bm : CUDA_SEED_ROWS) * c->V);
    ADD(c->d_mlp_act, g * Grows * F);
    ADD(c->d_qkv, g * Nm * c->Q3);
    ADD(c->d_attn_out, g * Nm * c->HD);
    ADD(c->d_att, g * Bm * H * k * (Lf > 0 ? k : 1));
    ADD(c->sc_emb, g * CUDA_SCORE_TILE * D);
    ADD(c->sc_grad, g * Bm * D);
    ADD(c->sc_prod, g * Bm * CUDA_SCORE_TILE);
    ADD(c->sc_rows, g * Bm);
    ADD(c->sc_idx, g * CUDA_SCORE_TILE);
    ADD(c->sc_pairs, g * Bm * 3);
    ADD(c->am_hist, c->V); /* argmax histogram (qld-dev) */
    return n;
}

static int state_table(lpe_slot *t, cuda_impl *c, int with_state) {
    int n = 0;
    size_t s = with_state ? 1 : 0, g = with_state && c->keep ? 1 : 0;
    ADD(c->state_tok, s * c->Bm * c->k);
    ADD(c->state_grad, g * c->Bm * c->k * c->D);
    ADD(c->accept, s * c->Bm);
    ADD(c->gather_src, s * c->Bm);
    return n;
}

static void set_dims(cuda_impl *c, const lpe_model_config *cfg, int Bm, int k, int flags) {
    c->L = cfg->n_layers;
    c->D = cfg->d_model;
    c->H = cfg->n_heads;
    c->Dh = cfg->d_head;
    c->HD = c->H * c->Dh;
    c->Q3 = 3 * c->HD;
    c->F = cfg->attn_only ? 0 : cfg->d_mlp;
    c->V = cfg->d_vocab;
    c->k = k;
    c->Bm = Bm;
    c->attn_only = cfg->attn_only;
    c->act = cfg->act;
    c->ln_eps = cfg->ln_eps;
    c->keep = (flags & LPE_BE_GRAD) != 0;
}

/* 1 when a buffer of the table has 2^31 or more 4-byte elements: cuBLAS takes int sizes and
 * leading dimensions, and the kernels index rows with int, so such a batch is refused. */
static int too_large(const lpe_slot *t, int n) {
    for (int i = 0; i < n; i++)
        if (t[i].bytes / 4 >= (size_t)INT32_MAX) return 1;
    return 0;
}

/* Bytes of the batch and state classes; "infinite" (2^62) for a batch with a buffer too large
 * (too_large), so that lpe_backend_batch_for_budget never chooses one. */
size_t cuda_batch_bytes(const lpe_model_config *cfg, int Bm, int k, int flags) {
    cuda_impl c;
    memset(&c, 0, sizeof c);
    lpe_slot t[64], u[8];
    set_dims(&c, cfg, Bm, k, flags);
    int nt = batch_table(t, &c), nu = state_table(u, &c, (flags & LPE_BE_STATE) != 0);
    if (too_large(t, nt) || too_large(u, nu)) return (size_t)1 << 62;
    return carve(t, nt, NULL) + carve(u, nu, NULL);
}

static void *alloc_table(lpe_slot *t, int n) {
    size_t bytes = carve(t, n, NULL);
    char *base = NULL;
    if (bytes) {
        CU_CHECK(cudaMalloc((void **)&base, bytes));
        CU_CHECK(cudaMemset(base, 0, bytes)); /* as the CPU's zero-filled allocation */
    }
    carve(t, n, base);
    return base;
}

/* ---- creation and the kind's entries ------------------------------------------------------ */

void cuda_ops_install(lpe_backend *be); /* cuda_ops.cu */

/* "NVIDIA H200 (sm_90, 139.8 GiB), driver 13.0, runtime 13.0" */
static void describe(char *out, size_t n) {
    int dev = 0, drv = 0, rt = 0;
    cudaDeviceProp p;
    CU_CHECK(cudaGetDevice(&dev));
    CU_CHECK(cudaGetDeviceProperties(&p, dev));
    CU_CHECK(cudaDriverGetVersion(&drv));
    CU_CHECK(cudaRuntimeGetVersion(&rt));
    snprintf(out, n, "%.120s (sm_%d%d, %.1f GiB), CUDA driver %d.%d, runtime %d.%d", p.name, p.major,
             p.minor, (double)p.totalGlobalMem / (1 << 30), drv / 1000, drv % 1000 / 10,
             rt / 1000, rt % 1000 / 10);
}

static lpe_backend *cuda_create(lpe_weights *w, int max_batch, int k, int flags) {
    const lpe_model *m = w->model;
    const lpe_model_config *cfg = &m->cfg;
    if (max_batch < 1) lpe_fail_input("cuda backend: batch size %d must be at least 1", max_batch);
    if (k < 1 || k > cfg->n_ctx)
        lpe_fail_input("cuda backend: sequence length %d must be in 1..n_ctx = %d", k, cfg->n_ctx);
    if (cuda_batch_bytes(cfg, max_batch, k, flags) >> 62)
        lpe_fail_input("cuda backend: a batch of %d rows at k = %d needs a buffer of 2^31 or more "
                       "elements (e.g. the logits, batch x d_vocab); use a smaller batch",
                       max_batch, k);
    cuda_impl *c = (cuda_impl *)lpe_calloc(1, sizeof *c);
    c->m = m;
    c->w = (const cuda_weights *)w->impl;
    c->blas = c->w->blas;
    set_dims(c, cfg, max_batch, k, flags);
    lpe_slot t[64];
    c->bmem = alloc_table(t, batch_table(t, c));
    c->smem = alloc_table(t, state_table(t, c, (flags & LPE_BE_STATE) != 0));
    c->h_rows = (int32_t *)lpe_calloc((size_t)max_batch, sizeof(int32_t));
    if (c->keep) { /* host staging for the score tiles (cuda_scores.cu) */
        c->h_stage = (float *)lpe_calloc((size_t)max_batch * CUDA_SCORE_TILE, sizeof(float));
        c->h_order = (int32_t *)lpe_calloc((size_t)max_batch * 3, sizeof(int32_t));
    }

    lpe_backend *be = (lpe_backend *)lpe_calloc(1, sizeof *be);
    be->name = "cuda";
    describe(be->device, sizeof be->device);
    be->max_batch = max_batch;
    be->k = k;
    be->with_grad = c->keep;
    be->with_state = (flags & LPE_BE_STATE) != 0;
    be->impl = c;
    cuda_ops_install(be);
    return be;
}

/* 1 when a CUDA device can be used; never fails (no device, no driver: 0). */
static int cuda_available(void) {
    static int avail = -1; /* probed once */
    if (avail < 0) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        avail = e == cudaSuccess && n > 0;
        if (e != cudaSuccess) cudaGetLastError(); /* clear the sticky-free error state */
    }
    return avail;
}

/* 70% of the device memory free now: the rest is for cuBLAS workspaces, other workspaces and
 * the CUDA context's own growth. */
static double cuda_default_budget(void) {
    size_t free_b = 0, total_b = 0;
    if (!cuda_available()) return 0;
    CU_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return 0.7 * (double)free_b;
}

extern "C" const lpe_backend_kind lpe_cuda_backend_kind = {
    .name = "cuda",
    .available = cuda_available,
    .upload = cuda_upload,
    .free_weights = cuda_free_weights,
    .create = cuda_create,
    .batch_bytes = cuda_batch_bytes,
    .default_budget = cuda_default_budget,
};
