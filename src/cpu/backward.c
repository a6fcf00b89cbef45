/* backward.c: gradient of the target logit s = l_{t_b} to the embedding input r0 (methods.md §3),
 * through the pruned graph of forward.c, using the activations it kept.
 *
 * Dimension legend: see cpu_internal.h (B rows, k positions, N = B*k, D, HD, Q3, F, V).
 *
 * Only input gradients are needed (never weight gradients), so every step is one product of
 * an activation gradient with a transposed weight. ds/dACT = W_U[:, t] (b_U does not depend on
 * the input); for the log-probability (grad_of = LPE_GRAD_LOGPROB, backend.h)
 *   d(l_t - logsumexp_v l_v)/dACT = W_U[:, t] - sum_v p_v W_U[:, v],   p = softmax(l),
 * the sum one product of the rows' -p (chunks of CPU_SEED_ROWS) with W_U^T. The last block's gradient enters the other positions only through K and V; the
 * residual carries it to the last row only. The running dX lives in the gradient buffer itself,
 * so the result needs no copy.
 */
#include <math.h>

#include "cpu_internal.h"
#include "lpe/common.h"

/* dX [N, D] (= grad) <- the gradient entering block l's output; -> the one entering its input */
static void block_full_bwd(cpu_impl *c, int l, int B) {
    const lpe_layer *w = &c->m->layers[l];
    int k = c->k, D = c->D, HD = c->HD, Q3 = c->Q3, F = c->F, N = B * k;
    size_t Nm = (size_t)c->Bm * k;
    float *dX = c->grad;                                       /* [N, D] */
    const float *x = c->resid + (size_t)l * Nm * D;                /* [N, D] */
    const float *qkv = c->qkv + (size_t)l * Nm * Q3;           /* [N, Q3] */
    const float *P = c->att + (size_t)l * c->Bm * c->H * k * k;  /* [B, H, k, k] */
    float *dxm = dX;                                           /* [N, D] */
    if (!c->m->cfg.attn_only) {
        dxm = c->d_resid_mid;
        cpu_gemm(c->d_mlp_act, F, dX, D, w->W_out, D, N, F, D, 1, 0.0f);
        cpu_mul(c->d_mlp_act, c->mlp_pre + (size_t)l * Nm * F, (size_t)N * F); /* act' kept by the forward */
        cpu_gemm(c->d_ln_out, D, c->d_mlp_act, F, w->W_in, F, N, D, F, 1, 0.0f);
        cpu_ln_bwd(dxm, D, dX, D, c->d_ln_out, D, c->resid_mid + (size_t)l * Nm * D, D, c->ln2_mean + l * Nm,
                   c->ln2_rstd + l * Nm, w->ln2_w, N, D);
    }
    cpu_gemm(c->d_attn_out, HD, dxm, D, w->W_O, D, N, HD, D, 1, 0.0f);
    cpu_attn_bwd_full(c->d_qkv, c->d_attn_out, P, qkv, B, k, c->H, c->Dh);
    cpu_gemm(c->d_ln_out, D, c->d_qkv, Q3, c->Wqkv + (size_t)l * D * Q3, Q3, N, D, Q3, 1, 0.0f);
    cpu_ln_bwd(dX, D, dxm, D, c->d_ln_out, D, x, D, c->ln1_mean + l * Nm, c->ln1_rstd + l * Nm, w->ln1_w, N, D);
}

/* final LN, the last block (pruned) -> dX [N, D] entering the last block */
/* dact [B, D] -= softmax(logits[b]) . W_U^T: the log-probability's correction to W_U[:, t] */
static void logprob_seed(cpu_impl *c, float *dact, int B) {
    const int V = c->V, D = c->D, R = c->Bm < CPU_SEED_ROWS ? c->Bm : CPU_SEED_ROWS;
    for (int r0 = 0; r0 < B; r0 += R) {
        const int nr = B - r0 < R ? B - r0 : R;
#pragma omp parallel for schedule(static) CPU_PAR((size_t)nr * V)
        for (int i = 0; i < nr; i++) {
            const float *lg = c->logits + (size_t)(r0 + i) * V; /* [V] */
            float *p = c->seed_p + (size_t)i * V;               /* [V] */
            float mx = lg[0];
            for (int v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
            double Z = 0; /* float64 normaliser (backend.h's numerics) */
            for (int v = 0; v < V; v++) Z += exp((double)lg[v] - mx);
            for (int v = 0; v < V; v++) p[v] = (float)(-exp((double)lg[v] - mx) / Z);
        }
        cpu_gemm(dact + (size_t)r0 * D, D, c->seed_p, V, c->m->W_U, V, nr, D, V, 1, 1.0f);
    }
}

static void block_last_bwd(cpu_impl *c, const int32_t *targets, int B, int grad_of) {
    const lpe_model *m = c->m;
    int l = c->L - 1;
    const lpe_layer *w = &m->layers[l];
    int k = c->k, D = c->D, HD = c->HD, Q3 = c->Q3, F = c->F, V = c->V, N = B * k;
    size_t Nm = (size_t)c->Bm * k;
    const float *x = c->resid + (size_t)l * Nm * D;       /* [N, D] */
    const float *qkv = c->qkv + (size_t)l * Nm * Q3;  /* [N, Q3] */
    const float *Wqkv = c->Wqkv + (size_t)l * D * Q3; /* [D, Q3] */
    float *dact = c->d_ln_out;                              /* [B, D] */
    float *dxm = c->d_resid_mid;                              /* [B, D] */

#pragma omp parallel for schedule(static) CPU_PAR((size_t)B * D)
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++) dact[(size_t)b * D + d] = m->W_U[(size_t)d * V + targets[b]];
    if (grad_of == LPE_GRAD_LOGPROB) logprob_seed(c, dact, B);
    cpu_ln_bwd(dxm, D, NULL, 0, dact, D, c->resid_final, D, c->lnf_mean, c->lnf_rstd, m->lnf_w, B, D);
    if (!m->cfg.attn_only) {
        cpu_gemm(c->d_mlp_act, F, dxm, D, w->W_out, D, B, F, D, 1, 0.0f);
        cpu_mul(c->d_mlp_act, c->last_mlp_pre, (size_t)B * F);
        cpu_gemm(c->d_ln_out, D, c->d_mlp_act, F, w->W_in, F, B, D, F, 1, 0.0f);
        cpu_ln_bwd(dxm, D, dxm, D, c->d_ln_out, D, c->last_resid_mid, D, c->last_ln2_mean, c->last_ln2_rstd, w->ln2_w, B, D);
    }
    cpu_gemm(c->d_attn_out, HD, dxm, D, w->W_O, D, B, HD, D, 1, 0.0f);
    cpu_attn_bwd_last(c->d_qkv, c->d_attn_out, c->last_att, qkv, B, k, c->H, c->Dh);
    /* through k|v of every position, then through q of the last rows */
    cpu_gemm(c->d_ln_out, D, c->d_qkv + HD, Q3, Wqkv + HD, Q3, N, D, 2 * HD, 1, 0.0f);
    cpu_gemm(c->d_ln_out + (size_t)(k - 1) * D, k * D, c->d_qkv + (size_t)(k - 1) * Q3, k * Q3, Wqkv, Q3,
             B, D, HD, 1, 1.0f);
    cpu_ln_bwd(c->grad, D, NULL, 0, c->d_ln_out, D, x, D, c->ln1_mean + l * Nm, c->ln1_rstd + l * Nm, w->ln1_w, N,
               D);
#pragma omp parallel for schedule(static) CPU_PAR((size_t)B * D)
    for (int b = 0; b < B; b++) { /* the residual path: last row only */
        float *g = c->grad + ((size_t)b * k + k - 1) * D; /* [D] */
        for (int d = 0; d < D; d++) g[d] += dxm[(size_t)b * D + d];
    }
}

void cpu_backward(cpu_impl *c, const int32_t *targets, int B, int grad_of) {
    LPE_ASSERT(c->keep);
    block_last_bwd(c, targets, B, grad_of);
    for (int l = c->L - 2; l >= 0; l--) block_full_bwd(c, l, B);
}
