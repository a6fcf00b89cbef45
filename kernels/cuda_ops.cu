/* cuda_ops.cu: the CUDA backend's operations on tokens, distributions, forward outputs and the
 * walker state (backend.h), with the checks and messages of src/cpu/cpu_backend.c. Ids from the
 * host are checked on the host before they are uploaded (exit 2 naming the row).
 *
 * Dimension legend: see cuda_internal.cuh (Bm max rows, B rows, k, D, V; NS, NF of the dist).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "lpe/common.h"

#define THREADS 256

static cuda_impl *impl(lpe_backend *be) { return (cuda_impl *)be->impl; }

static void check_rows(const cuda_impl *c, int B, const char *op) {
    if (B < 1 || B > c->Bm)
        lpe_fail("cuda backend %s: %d rows requested, the backend holds 1..%d", op, B, c->Bm);
}

static void check_tokens(const cuda_impl *c, const int32_t *tokens, int B, const char *what) {
    lpe_backend_check_tokens(tokens, B, c->k, c->V, what);
}

static void h2d(void *dst, const void *src, size_t bytes) {
    CU_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
static void d2h(void *dst, const void *src, size_t bytes) {
    CU_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
static void d2d(void *dst, const void *src, size_t bytes) {
    CU_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

/* ---- row copies (walker state) ------------------------------------------------------------- */

/* dst row b (width w) = src row (src_row ? src_row[b] : b), for rows with flag[b] != 0 (or all
 * rows when flag is NULL). thread = one element. */
template <typename T>
__global__ static void k_copy_rows(T *dst, const T *src, const uint8_t *flag,
                                   const int32_t *src_row, int B, size_t w) {
    size_t total = (size_t)B * w;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t b = i / w, e = i % w;
        if (flag && !flag[b]) continue;
        size_t sb = src_row ? (size_t)src_row[b] : b;
        dst[b * w + e] = src[sb * w + e];
    }
}

template <typename T>
static void copy_rows(T *dst, const T *src, const uint8_t *flag, const int32_t *src_row, int B,
                      size_t w) {
    k_copy_rows<T><<<cuda_blocks((size_t)B * w, THREADS), THREADS>>>(dst, src, flag, src_row, B,
                                                                      w);
    CU_LAUNCH_CHECK();
}

/* ---- operations ---------------------------------------------------------------------------- */

static void op_load_tokens(lpe_backend *be, const int32_t *tokens, int B) {
    cuda_impl *c = impl(be);
    check_rows(c, B, "load_tokens");
    check_tokens(c, tokens, B, "input tokens");
    h2d(c->tok, tokens, (size_t)B * c->k * sizeof *tokens);
}

/* the alias tables of d to the device, one allocation: values, alias_prob, alias_idx, offsets,
 * positions (8-byte arrays first, so every array keeps its alignment) */
static void upload_dist(cuda_impl *c, const lpe_dist *d) {
    size_t NS = (size_t)d->offsets[d->n_factors], NF = (size_t)d->n_factors;
    size_t sz[5] = {NS * sizeof(double), (NF + 1) * sizeof(int64_t), NS * sizeof(int32_t),
                    NS * sizeof(int32_t), (size_t)d->k * sizeof(int32_t)};
    size_t off[5], total = 0;
    for (int i = 0; i < 5; i++) {
        off[i] = total;
        total += (sz[i] + 255) / 256 * 256;
    }
    if (c->dmem) CU_CHECK(cudaFree(c->dmem));
    c->dmem = NULL;
    char *base;
    CU_CHECK(cudaMalloc((void **)&base, total));
    c->dmem = base;
    c->d_alias_prob = (double *)(base + off[0]);
    c->d_offsets = (int64_t *)(base + off[1]);
    c->d_values = (int32_t *)(base + off[2]);
    c->d_alias_idx = (int32_t *)(base + off[3]);
    c->d_positions = (int32_t *)(base + off[4]);
    h2d(c->d_alias_prob, d->alias_prob, sz[0]);
    h2d(c->d_offsets, d->offsets, sz[1]);
    h2d(c->d_values, d->values, sz[2]);
    h2d(c->d_alias_idx, d->alias_idx, sz[3]);
    h2d(c->d_positions, d->positions, sz[4]);
}

/* Uploads only when the distribution differs from the one on the device: same object and same
 * content hash (a distribution freed and another loaded at its address has another hash). */
static void op_use_dist(lpe_backend *be, const lpe_dist *d) {
    cuda_impl *c = impl(be);
    if (d->k != c->k)
        lpe_fail_input("distribution '%s' has %d positions, the backend was made for k = %d",
                       d->name, d->k, c->k);
    if (d->d_vocab != c->V)
        lpe_fail_input("distribution '%s' was checked against a vocabulary of %d, the model has %d",
                       d->name, d->d_vocab, c->V);
    int same = c->dmem && c->d == d && d->sha256[0] && !strcmp(c->d_sha256, d->sha256);
    if (!same) {
        upload_dist(c, d);
        snprintf(c->d_sha256, sizeof c->d_sha256, "%s", d->sha256);
    }
    c->d = d;
    be->dist = d;
}

static void op_sample_tokens(lpe_backend *be, uint64_t seed, uint32_t stream, uint64_t first,
                             int B) {
    cuda_impl *c = impl(be);
    check_rows(c, B, "sample_tokens");
    if (!c->d) lpe_fail("cuda backend sample_tokens: no distribution (use_dist) given");
    cuda_sample(c, seed, stream, first, B);
}

static void op_get_tokens(lpe_backend *be, int32_t *tokens, int which, int B) {
    cuda_impl *c = impl(be);
    check_rows(c, B, "get_tokens");
    if (which == LPE_BUF_STATE && !c->state_tok)
        lpe_fail("cuda backend: no walker state (LPE_BE_STATE)");
    d2h(tokens, which == LPE_BUF_STATE ? c->state_tok : c->tok, (size_t)B * c->k * sizeof *tokens);
}

static void check_forward_args(cuda_impl *c, const lpe_fwd_out *out, const int32_t *targets,
                               int B, int want_grad) {
    check_rows(c, B, "forward");
    if (want_grad && !c->keep)
        lpe_fail("cuda backend: gradient asked of a backend made without LPE_BE_GRAD");
    if ((want_grad || (out && (out->target_logit || out->margin))) && !targets)
        lpe_fail("cuda backend forward: target logit or gradient asked without targets");
    if (targets)
        for (int b = 0; b < B; b++)
            if (targets[b] < 0 || targets[b] >= c->V)
                lpe_fail_input("target token %d (row %d) is outside the vocabulary [0, %d)",
                               (int)targets[b], b, c->V);
}

static void op_forward(lpe_backend *be, lpe_fwd_out *out, const int32_t *targets, int B,
                       int want_grad) {
    cuda_impl *c = impl(be);
    check_forward_args(c, out, targets, B, want_grad);
    if (targets) h2d(c->targets, targets, (size_t)B * sizeof *targets);
    c->grad_valid = 0;
    cuda_forward(c, B, want_grad);
    c->B_last = B;
    cuda_epilogue(c, B, targets != NULL);
    d2h(c->h_rows, c->o_bad, (size_t)B * sizeof *c->h_rows);
    for (int b = 0; b < B; b++)
        if (c->h_rows[b])
            lpe_fail("forward: the logits of batch row %d are not finite (NaN or inf in the "
                     "model's activations)",
                     b);
    size_t fb = (size_t)B * sizeof(float);
    if (out && out->argmax) d2h(out->argmax, c->o_argmax, (size_t)B * sizeof(int32_t));
    if (out && out->max_logit) d2h(out->max_logit, c->o_max, fb);
    if (out && out->target_logit) d2h(out->target_logit, c->o_target, fb);
    if (out && out->margin) d2h(out->margin, c->o_margin, fb);
    if (out && out->act) d2h(out->act, c->lnf, fb * c->D);
    if (want_grad) {
        cuda_backward(c, B, be->grad_of);
        c->grad_valid = 1;
    }
}

static void op_commit_state(lpe_backend *be, const uint8_t *accept, int B) {
    cuda_impl *c = impl(be);
    check_rows(c, B, "commit_state");
    if (!c->state_tok) lpe_fail("cuda backend: commit_state without walker state (LPE_BE_STATE)");
    h2d(c->accept, accept, (size_t)B);
    copy_rows(c->state_tok, c->tok, c->accept, NULL, B, (size_t)c->k);
    if (c->state_grad && c->grad_valid)
        copy_rows(c->state_grad, c->grad, c->accept, NULL, B, (size_t)c->k * c->D);
}

static void op_load_state(lpe_backend *be, const int32_t *tokens, int B) {
    cuda_impl *c = impl(be);
    check_rows(c, B, "load_state");
    if (!c->state_tok) lpe_fail("cuda backend: load_state without walker state (LPE_BE_STATE)");
    check_tokens(c, tokens, B, "walker-state tokens");
    h2d(c->state_tok, tokens, (size_t)B * c->k * sizeof *tokens);
}

/* through the batch buffers, as the CPU: a gather cannot be done in place */
static void op_gather_state(lpe_backend *be, const int32_t *src, int B) {
    cuda_impl *c = impl(be);
    check_rows(c, B, "gather_state");
    if (!c->state_tok) lpe_fail("cuda backend: gather_state without walker state (LPE_BE_STATE)");
    for (int b = 0; b < B; b++)
        if (src[b] < 0 || src[b] >= c->Bm) lpe_fail("gather_state: row %d takes row %d", b, src[b]);
    size_t k = (size_t)c->k, kD = k * c->D;
    h2d(c->gather_src, src, (size_t)B * sizeof *src);
    copy_rows(c->tok, c->state_tok, (const uint8_t *)NULL, c->gather_src, B, k);
    d2d(c->state_tok, c->tok, (size_t)B * k * sizeof *c->tok);
    if (c->state_grad) {
        copy_rows(c->grad, c->state_grad, (const uint8_t *)NULL, c->gather_src, B, kD);
        d2d(c->state_grad, c->grad, (size_t)B * kD * sizeof *c->grad);
    }
    c->grad_valid = 0;
    cuda_walkers_gather(c, c->gather_src, B); /* walker operations (issue 10) */
}

static void op_get_logits(lpe_backend *be, float *logits, int B) {
    cuda_impl *c = impl(be);
    LPE_ASSERT(B >= 1 && B <= c->B_last);
    d2h(logits, c->logits, (size_t)B * c->V * sizeof *logits);
}

static void op_get_grad(lpe_backend *be, float *grad, int which, int B) {
    cuda_impl *c = impl(be);
    check_rows(c, B, "get_grad");
    const float *src = which == LPE_BUF_STATE ? c->state_grad : c->grad;
    if (!src) lpe_fail("cuda backend: no gradient buffer for get_grad");
    d2h(grad, src, (size_t)B * c->k * c->D * sizeof *grad);
}

static void op_destroy(lpe_backend *be) {
    cuda_impl *c = impl(be);
    cuda_itgis_free(c); /* ITGIS (issue 10) */
    CU_CHECK(cudaFree(c->bmem));
    CU_CHECK(cudaFree(c->smem));
    CU_CHECK(cudaFree(c->dmem));
    cuda_walkers_free(c); /* walker operations (issue 10) */
    free(c->h_stage);
    free(c->h_order);
    free(c->h_rows);
    free(c);
    free(be);
}

void cuda_ops_install(lpe_backend *be) {
    be->destroy = op_destroy;
    be->use_dist = op_use_dist;
    be->load_tokens = op_load_tokens;
    be->sample_tokens = op_sample_tokens;
    be->get_tokens = op_get_tokens;
    be->forward = op_forward;
    be->scores_at = cuda_scores_at;
    be->scores_sum = cuda_scores_sum;
    be->commit_state = op_commit_state;
    be->load_state = op_load_state;
    be->gather_state = op_gather_state;
    be->target_logits = cuda_target_logits;
    be->qld_pairs = cuda_qld_pairs;
    be->get_logits = op_get_logits;
    be->get_grad = op_get_grad;
    cuda_itgis_install(be); /* ITGIS (issue 10) */
    be->argmax_hist_add = cuda_argmax_hist_add; /* argmax histogram (qld-dev) */
    be->argmax_hist_take = cuda_argmax_hist_take;
    cuda_walkers_install(be); /* walker operations (issue 10) */
}
