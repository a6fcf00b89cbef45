/* cpu_backend.c: the CPU backend object: memory (size tables), tokens, forward outputs, walker
 * state, and the lpe_backend function table. The math is in forward.c, backward.c, scores.c.
 *
 * Dimension legend: see cpu_internal.h (Bm max rows, B rows, k, D, Q3, F, V, L).
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_internal.h"
#include "lpe/common.h"
#include "lpe/size_table.h"

/* ---- size tables ------------------------------------------------------------------------- */

#define ALIGN 64
#define ADD(p, count) LPE_SLOT(t, n, p, count)
static size_t carve(lpe_slot *t, int n, char *base) { return lpe_carve(t, n, base, ALIGN); }

/* The batch lifetime class. c->{L..Bm} and keep must be set. */
static int batch_table(lpe_slot *t, cpu_impl *c, int attn_only) {
    int n = 0;
    size_t Nm = (size_t)c->Bm * c->k, Bm = c->Bm, k = c->k, D = c->D, F = c->F;
    int Lf = c->L - 1, keep = c->keep;
    size_t nX = keep ? (size_t)c->L : (c->L > 1 ? 2 : 1);
    size_t nL = keep ? (size_t)c->L : 1;
    size_t nF = keep ? (size_t)Lf : (Lf > 0 ? 1 : 0);
    size_t nM = attn_only ? 0 : nF;
    size_t Grows = attn_only ? 0 : (Lf > 0 ? Nm : Bm);
    ADD(c->tok, Bm * k);
    ADD(c->resid, nX * Nm * D);
    ADD(c->ln1_mean, nL * Nm);
    ADD(c->ln1_rstd, nL * Nm);
    ADD(c->qkv, nL * Nm * c->Q3);
    ADD(c->att, nF * Bm * c->H * k * k);
    ADD(c->attn_out, nF * Nm * c->HD);
    ADD(c->resid_mid, nM * Nm * D);
    ADD(c->ln2_mean, nM * Nm);
    ADD(c->ln2_rstd, nM * Nm);
    ADD(c->mlp_pre, nM * Nm * F);
    ADD(c->last_att, Bm * c->H * k);
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
    size_t g = keep ? 1 : 0;
    ADD(c->grad, g * Nm * D);
    ADD(c->d_resid_mid, g * Nm * D);
    ADD(c->d_ln_out, g * Nm * D);
    ADD(c->seed_p, g * (Bm < CPU_SEED_ROWS ? Bm : CPU_SEED_ROWS) * c->V);
    ADD(c->d_mlp_act, g * Grows * F);
    ADD(c->d_qkv, g * Nm * c->Q3);
    ADD(c->d_attn_out, g * Nm * c->HD);
    ADD(c->sc_emb, g * CPU_SCORE_TILE * D);
    ADD(c->sc_grad, g * Bm * D);
    ADD(c->sc_prod, g * Bm * CPU_SCORE_TILE);
    ADD(c->sc_order, g * Bm);
    ADD(c->am_last, Bm); /* argmax histogram (qld-dev) */
    ADD(c->am_hist, c->V);
    return n;
}

static int state_table(lpe_slot *t, cpu_impl *c, int with_state) {
    int n = 0;
    size_t s = with_state ? 1 : 0, g = with_state && c->keep ? 1 : 0;
    ADD(c->state_tok, s * c->Bm * c->k);
    ADD(c->state_grad, g * c->Bm * c->k * c->D);
    return n;
}

static int weight_table(lpe_slot *t, cpu_weights *w, const lpe_model_config *cfg) {
    int n = 0;
    size_t Q3 = 3 * (size_t)cfg->n_heads * cfg->d_head;
    ADD(w->Wqkv, (size_t)cfg->n_layers * cfg->d_model * Q3);
    ADD(w->bqkv, (size_t)cfg->n_layers * Q3);
    return n;
}

static void set_dims(cpu_impl *c, const lpe_model_config *cfg, int Bm, int k, int flags) {
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
    c->keep = (flags & LPE_BE_GRAD) != 0;
}

size_t cpu_batch_bytes(const lpe_model_config *cfg, int Bm, int k, int flags) {
    cpu_impl c = {0};
    lpe_slot t[64];
    set_dims(&c, cfg, Bm, k, flags);
    return carve(t, batch_table(t, &c, cfg->attn_only), NULL) +
           carve(t, state_table(t, &c, (flags & LPE_BE_STATE) != 0), NULL);
}

static void *alloc_table(lpe_slot *t, int n) {
    size_t bytes = carve(t, n, NULL);
    char *base = bytes ? lpe_alloc_aligned(bytes) : NULL;
    carve(t, n, base);
    return base;
}

/* ---- operations -------------------------------------------------------------------------- */

static cpu_impl *impl(lpe_backend *be) { return (cpu_impl *)be->impl; }

static void check_rows(const cpu_impl *c, int B, const char *op) {
    if (B < 1 || B > c->Bm)
        lpe_fail("cpu backend %s: %d rows requested, the backend holds 1..%d", op, B, c->Bm);
}

static void check_tokens(const cpu_impl *c, const int32_t *tokens, int B, const char *what) {
    lpe_backend_check_tokens(tokens, B, c->k, c->V, what);
}

static void op_load_tokens(lpe_backend *be, const int32_t *tokens, int B) {
    cpu_impl *c = impl(be);
    check_rows(c, B, "load_tokens");
    check_tokens(c, tokens, B, "input tokens");
    memcpy(c->tok, tokens, (size_t)B * c->k * sizeof *c->tok);
}

static void op_use_dist(lpe_backend *be, const lpe_dist *d) {
    cpu_impl *c = impl(be);
    if (d->k != c->k)
        lpe_fail_input("distribution '%s' has %d positions, the backend was made for k = %d",
                       d->name, d->k, c->k);
    if (d->d_vocab != c->V)
        lpe_fail_input("distribution '%s' was checked against a vocabulary of %d, the model has %d",
                       d->name, d->d_vocab, c->V);
    c->d = d;
    be->dist = d;
}

static void op_sample_tokens(lpe_backend *be, uint64_t seed, uint32_t stream, uint64_t first,
                             int B) {
    cpu_impl *c = impl(be);
    check_rows(c, B, "sample_tokens");
    if (!c->d) lpe_fail("cpu backend sample_tokens: no distribution (use_dist) given");
    lpe_dist_sample(c->tok, c->d, seed, stream, first, B);
}

static void op_get_tokens(lpe_backend *be, int32_t *tokens, int which, int B) {
    cpu_impl *c = impl(be);
    check_rows(c, B, "get_tokens");
    if (which == LPE_BUF_STATE && !c->state_tok) lpe_fail("cpu backend: no walker state (LPE_BE_STATE)");
    memcpy(tokens, which == LPE_BUF_STATE ? c->state_tok : c->tok, (size_t)B * c->k * sizeof *tokens);
}

/* l_t - max_{v != t} l_v over one row of logits [V] */
static float margin_of(const float *lg, int t, int V) {
    float other = -INFINITY;
    for (int v = 0; v < V; v++)
        if (v != t && lg[v] > other) other = lg[v];
    return lg[t] - other;
}

static void op_forward(lpe_backend *be, lpe_fwd_out *out, const int32_t *targets, int B,
                       int want_grad) {
    cpu_impl *c = impl(be);
    int V = c->V;
    check_rows(c, B, "forward");
    if (want_grad && !c->keep) lpe_fail("cpu backend: gradient asked of a backend made without LPE_BE_GRAD");
    if ((want_grad || (out && (out->target_logit || out->margin))) && !targets)
        lpe_fail("cpu backend forward: target logit or gradient asked without targets");
    if (targets)
        for (int b = 0; b < B; b++)
            if (targets[b] < 0 || targets[b] >= V)
                lpe_fail_input("target token %d (row %d) is outside the vocabulary [0, %d)",
                               (int)targets[b], b, V);
    c->grad_valid = 0;
    cpu_forward(c, B, want_grad);
    c->B_last = B;
    int bad_row = -1;
#pragma omp parallel for schedule(static) CPU_PAR((size_t)B * V)
    for (int b = 0; b < B; b++) {
        const float *lg = c->logits + (size_t)b * V; /* [V] */
        int am = 0, finite = 1;
        float mx = lg[0];
        for (int v = 0; v < V; v++) { /* strict '>' keeps the lowest index on ties */
            if (!isfinite(lg[v])) finite = 0;
            if (lg[v] > mx) {
                mx = lg[v];
                am = v;
            }
        }
        if (!finite) {
#pragma omp critical
            if (bad_row < 0 || b < bad_row) bad_row = b;
        }
        c->am_last[b] = am; /* for argmax_hist_add (qld-dev) */
        if (out && out->argmax) out->argmax[b] = am;
        if (out && out->max_logit) out->max_logit[b] = mx;
        if (out && out->target_logit) out->target_logit[b] = lg[targets[b]];
        if (out && out->margin) out->margin[b] = margin_of(lg, targets[b], V);
    }
    if (bad_row >= 0)
        lpe_fail("forward: the logits of batch row %d are not finite (NaN or inf in the model's "
                 "activations)",
                 bad_row);
    if (out && out->act) memcpy(out->act, c->lnf, (size_t)B * c->D * sizeof *out->act);
    if (want_grad) {
        cpu_backward(c, targets, B, be->grad_of);
        c->grad_valid = 1;
    }
}

static void op_commit_state(lpe_backend *be, const uint8_t *accept, int B) {
    cpu_impl *c = impl(be);
    check_rows(c, B, "commit_state");
    if (!c->state_tok) lpe_fail("cpu backend: commit_state without walker state (LPE_BE_STATE)");
    size_t kD = (size_t)c->k * c->D;
    int with_grad = c->state_grad && c->grad_valid;
#pragma omp parallel for schedule(static) CPU_PAR((size_t)B * kD)
    for (int b = 0; b < B; b++) {
        if (!accept[b]) continue;
        memcpy(c->state_tok + (size_t)b * c->k, c->tok + (size_t)b * c->k, c->k * sizeof *c->tok);
        if (with_grad) memcpy(c->state_grad + b * kD, c->grad + b * kD, kD * sizeof *c->grad);
    }
}

static void op_load_state(lpe_backend *be, const int32_t *tokens, int B) {
    cpu_impl *c = impl(be);
    check_rows(c, B, "load_state");
    if (!c->state_tok) lpe_fail("cpu backend: load_state without walker state (LPE_BE_STATE)");
    check_tokens(c, tokens, B, "walker-state tokens");
    memcpy(c->state_tok, tokens, (size_t)B * c->k * sizeof *c->state_tok);
}

/* through the batch buffers: they have the state's shape, and a gather cannot be done in place */
static void op_gather_state(lpe_backend *be, const int32_t *src, int B) {
    cpu_impl *c = impl(be);
    check_rows(c, B, "gather_state");
    if (!c->state_tok) lpe_fail("cpu backend: gather_state without walker state (LPE_BE_STATE)");
    const size_t k = (size_t)c->k, kD = k * c->D;
    const int with_grad = c->state_grad != NULL;
    for (int b = 0; b < B; b++)
        if (src[b] < 0 || src[b] >= c->Bm) lpe_fail("gather_state: row %d takes row %d", b, src[b]);
#pragma omp parallel for schedule(static) CPU_PAR((size_t)B * kD)
    for (int b = 0; b < B; b++) {
        memcpy(c->tok + b * k, c->state_tok + (size_t)src[b] * k, k * sizeof *c->tok);
        if (with_grad) memcpy(c->grad + b * kD, c->state_grad + (size_t)src[b] * kD, kD * sizeof *c->grad);
    }
    memcpy(c->state_tok, c->tok, (size_t)B * k * sizeof *c->tok);
    if (with_grad) memcpy(c->state_grad, c->grad, (size_t)B * kD * sizeof *c->grad);
    c->grad_valid = 0;
    cpu_walkers_gather(c, src, B); /* walker operations (issue 10) */
}

static void op_get_logits(lpe_backend *be, float *logits, int B) {
    cpu_impl *c = impl(be);
    LPE_ASSERT(B >= 1 && B <= c->B_last);
    memcpy(logits, c->logits, (size_t)B * c->V * sizeof *logits);
}

static void op_get_grad(lpe_backend *be, float *grad, int which, int B) {
    cpu_impl *c = impl(be);
    check_rows(c, B, "get_grad");
    const float *src = which == LPE_BUF_STATE ? c->state_grad : c->grad;
    if (!src) lpe_fail("cpu backend: no gradient buffer for get_grad");
    memcpy(grad, src, (size_t)B * c->k * c->D * sizeof *grad);
}

static void op_destroy(lpe_backend *be) {
    cpu_impl *c = impl(be);
    cpu_itgis_free(c); /* ITGIS (issue 10) */
    lpe_free_aligned(c->bmem);
    lpe_free_aligned(c->smem);
    cpu_walkers_free(c); /* walker operations (issue 10) */
    free(c);
    free(be);
}

/* ---- creation ---------------------------------------------------------------------------- */

/* 1/sqrt(Dh) folded into q: scores become plain dot products */
static void repack_qkv(cpu_weights *cw, const lpe_model *m) {
    const lpe_model_config *cfg = &m->cfg;
    int D = cfg->d_model, H = cfg->n_heads, Dh = cfg->d_head, Q3 = 3 * H * Dh;
    float qscale = (float)(1.0 / sqrt((double)Dh));
    for (int l = 0; l < cfg->n_layers; l++) {
        const lpe_layer *w = &m->layers[l];
        const float *Ws[3] = {w->W_Q, w->W_K, w->W_V}; /* [H, D, Dh] each */
        const float *bs[3] = {w->b_Q, w->b_K, w->b_V}; /* [H, Dh] each */
        float *W = cw->Wqkv + (size_t)l * D * Q3;       /* [D, Q3] */
        float *bq = cw->bqkv + (size_t)l * Q3;          /* [Q3] */
        for (int p = 0; p < 3; p++) {
            float s = p == 0 ? qscale : 1.0f;
            for (int h = 0; h < H; h++)
                for (int e = 0; e < Dh; e++) {
                    int col = (p * H + h) * Dh + e;
                    bq[col] = s * bs[p][h * Dh + e];
                    for (int dd = 0; dd < D; dd++)
                        W[(size_t)dd * Q3 + col] = s * Ws[p][((size_t)h * D + dd) * Dh + e];
                }
        }
    }
}

static lpe_weights *cpu_upload(const lpe_model *m) {
    cpu_weights *cw = lpe_calloc(1, sizeof *cw);
    lpe_slot t[4];
    cw->mem = alloc_table(t, weight_table(t, cw, &m->cfg));
    repack_qkv(cw, m);
    lpe_weights *w = lpe_calloc(1, sizeof *w);
    w->impl = cw;
    return w;
}

static void cpu_free_weights(lpe_weights *w) {
    cpu_weights *cw = w->impl;
    lpe_free_aligned(cw->mem);
    free(cw);
    free(w);
}

static void describe(char *out, size_t n) {
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    char ver[64] = "?";
    sscanf(openblas_get_config(), "OpenBLAS %63s", ver);
    snprintf(out, n, "CPU: %d OpenMP thread%s, OpenBLAS %s (%s kernels)", threads,
             threads == 1 ? "" : "s", ver, openblas_get_corename());
}

static lpe_backend *cpu_create(lpe_weights *w, int max_batch, int k, int flags) {
    const lpe_model *m = w->model;
    const lpe_model_config *cfg = &m->cfg;
    if (max_batch < 1) lpe_fail_input("cpu backend: batch size %d must be at least 1", max_batch);
    if (k < 1 || k > cfg->n_ctx)
        lpe_fail_input("cpu backend: sequence length %d must be in 1..n_ctx = %d", k, cfg->n_ctx);
    cpu_impl *c = lpe_calloc(1, sizeof *c);
    c->m = m;
    set_dims(c, cfg, max_batch, k, flags);
    const cpu_weights *cw = w->impl;
    c->Wqkv = cw->Wqkv;
    c->bqkv = cw->bqkv;
    lpe_slot t[64];
    c->bmem = alloc_table(t, batch_table(t, c, cfg->attn_only));
    c->smem = alloc_table(t, state_table(t, c, (flags & LPE_BE_STATE) != 0));

    lpe_backend *be = lpe_calloc(1, sizeof *be);
    be->name = "cpu";
    describe(be->device, sizeof be->device);
    be->max_batch = max_batch;
    be->k = k;
    be->with_grad = c->keep;
    be->with_state = (flags & LPE_BE_STATE) != 0;
    be->impl = c;
    be->destroy = op_destroy;
    be->use_dist = op_use_dist;
    be->load_tokens = op_load_tokens;
    be->sample_tokens = op_sample_tokens;
    be->get_tokens = op_get_tokens;
    be->forward = op_forward;
    be->scores_at = cpu_scores_at;
    be->scores_sum = cpu_scores_sum;
    be->commit_state = op_commit_state;
    be->load_state = op_load_state;
    be->gather_state = op_gather_state;
    be->target_logits = cpu_target_logits;
    be->qld_pairs = cpu_qld_pairs;
    be->get_logits = op_get_logits;
    be->get_grad = op_get_grad;
    cpu_itgis_install(be); /* ITGIS (issue 10) */
    be->argmax_hist_add = cpu_argmax_hist_add; /* argmax histogram (qld-dev) */
    be->argmax_hist_take = cpu_argmax_hist_take;
    cpu_walkers_install(be); /* walker operations (issue 10) */
    return be;
}

static int cpu_available(void) { return 1; }

/* A fixed 2 GiB: the machine's memory is shared with the host side of a run (activation
 * samples, score tables), which the budget does not see. */
static double cpu_default_budget(void) { return 2.0 * 1024 * 1024 * 1024; }

const lpe_backend_kind lpe_cpu_backend_kind = {
    .name = "cpu",
    .available = cpu_available,
    .upload = cpu_upload,
    .free_weights = cpu_free_weights,
    .create = cpu_create,
    .batch_bytes = cpu_batch_bytes,
    .default_budget = cpu_default_budget,
};
