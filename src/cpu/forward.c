/* forward.c: the pruned forward pass of the CPU backend (methods.md §2).
 *
 * Dimension legend: see cpu_internal.h (B rows, k positions, N = B*k, D, HD, Q3, F, V).
 *
 * Blocks 0 .. L-2 run on every position. In the last block only the last position's output
 * matters: K and V are still needed for all positions, but q, attention, residual, LN2 and the
 * MLP run on the last row of each sequence only, and the final LN and unembedding on B rows.
 * Every projection is one sgemm over all rows of the batch; biases (and residuals) are written
 * into the output first so the product accumulates onto them (beta = 1).
 */
#include <string.h>

#include "cpu_internal.h"

static void embed(cpu_impl *c, float *X0, int B) {
    const lpe_model *m = c->m;
    int k = c->k, D = c->D;
#pragma omp parallel for collapse(2) schedule(static) CPU_PAR((size_t)B * k * D)
    for (int b = 0; b < B; b++)
        for (int i = 0; i < k; i++) {
            float *x = X0 + ((size_t)b * k + i) * D;                 /* [D] */
            const float *e = m->W_E + (size_t)c->tok[b * k + i] * D; /* [D] */
            const float *p = m->W_pos + (size_t)i * D;               /* [D] */
            for (int d = 0; d < D; d++) x[d] = e[d] + p[d];
        }
}

/* One full block on every position: X[l] -> X[l + 1] (the next block's input). */
static void block_full(cpu_impl *c, int l, int B, int want_grad) {
    const lpe_layer *w = &c->m->layers[l];
    int k = c->k, D = c->D, HD = c->HD, Q3 = c->Q3, F = c->F, N = B * k;
    size_t Nm = (size_t)c->Bm * k, s = c->keep ? (size_t)l : 0;
    float *x = c->resid + (c->keep ? (size_t)l : (size_t)(l & 1)) * Nm * D;      /* [N, D] */
    float *xo = c->resid + (c->keep ? (size_t)l + 1 : (size_t)((l + 1) & 1)) * Nm * D; /* [N, D] */
    float *qkv = c->qkv + s * Nm * Q3;                            /* [N, Q3] */
    float *P = c->att + s * (size_t)c->Bm * c->H * k * k;           /* [B, H, k, k] */
    float *z = c->attn_out + s * Nm * HD;                                 /* [N, HD] */
    float *xm = c->m->cfg.attn_only ? xo : c->resid_mid + s * Nm * D; /* [N, D]; no MLP: the output */
    const float *Wqkv = c->Wqkv + (size_t)l * D * Q3;             /* [D, Q3] */

    cpu_ln_fwd(c->ln_out, D, c->ln1_mean + s * Nm, c->ln1_rstd + s * Nm, x, D, w->ln1_w, w->ln1_b, N, D,
               c->m->cfg.ln_eps);
    cpu_rows_init(qkv, Q3, NULL, 0, c->bqkv + (size_t)l * Q3, N, Q3);
    cpu_gemm(qkv, Q3, c->ln_out, D, Wqkv, Q3, N, Q3, D, 0, 1.0f);
    cpu_attn_fwd_full(z, P, qkv, B, k, c->H, c->Dh);
    cpu_rows_init(xm, D, x, D, w->b_O, N, D);
    cpu_gemm(xm, D, z, HD, w->W_O, D, N, D, HD, 0, 1.0f);
    if (c->m->cfg.attn_only) return;

    float *hp = c->mlp_pre + s * Nm * F; /* [N, F] */
    cpu_ln_fwd(c->ln_out, D, c->ln2_mean + s * Nm, c->ln2_rstd + s * Nm, xm, D, w->ln2_w, w->ln2_b, N, D,
               c->m->cfg.ln_eps);
    cpu_rows_init(hp, F, NULL, 0, w->b_in, N, F);
    cpu_gemm(hp, F, c->ln_out, D, w->W_in, F, N, F, D, 0, 1.0f);
    cpu_act_fwd(c->mlp_act, hp, (size_t)N * F, c->m->cfg.act, want_grad);
    cpu_rows_init(xo, D, xm, D, w->b_out, N, D);
    cpu_gemm(xo, D, c->mlp_act, F, w->W_out, D, N, D, F, 0, 1.0f);
}

/* The last block, pruned, then the final LN and the unembedding: resid[L-1] -> lnf, logits. */
static void block_last(cpu_impl *c, int B, int want_grad) {
    const lpe_model *m = c->m;
    int l = c->L - 1;
    const lpe_layer *w = &m->layers[l];
    int k = c->k, D = c->D, HD = c->HD, Q3 = c->Q3, F = c->F, V = c->V, N = B * k;
    size_t Nm = (size_t)c->Bm * k, s = c->keep ? (size_t)l : 0;
    float *x = c->resid + (c->keep ? (size_t)l : (size_t)(l & 1)) * Nm * D; /* [N, D] */
    float *qkv = c->qkv + s * Nm * Q3;                                   /* [N, Q3] */
    const float *Wqkv = c->Wqkv + (size_t)l * D * Q3;                    /* [D, Q3] */
    const float *bqkv = c->bqkv + (size_t)l * Q3;                        /* [Q3] */
    double eps = m->cfg.ln_eps;

    cpu_ln_fwd(c->ln_out, D, c->ln1_mean + s * Nm, c->ln1_rstd + s * Nm, x, D, w->ln1_w, w->ln1_b, N, D, eps);
    /* k|v for every position, q for the last row of each sequence (row stride k rows) */
    cpu_rows_init(qkv + HD, Q3, NULL, 0, bqkv + HD, N, 2 * HD);
    cpu_gemm(qkv + HD, Q3, c->ln_out, D, Wqkv + HD, Q3, N, 2 * HD, D, 0, 1.0f);
    float *ql = qkv + (size_t)(k - 1) * Q3; /* row b at b*k*Q3 */
    cpu_rows_init(ql, k * Q3, NULL, 0, bqkv, B, HD);
    cpu_gemm(ql, k * Q3, c->ln_out + (size_t)(k - 1) * D, k * D, Wqkv, Q3, B, HD, D, 0, 1.0f);
    cpu_attn_fwd_last(c->last_attn_out, c->last_att, qkv, B, k, c->H, c->Dh);
    cpu_rows_init(c->last_resid_mid, D, x + (size_t)(k - 1) * D, k * D, w->b_O, B, D);
    cpu_gemm(c->last_resid_mid, D, c->last_attn_out, HD, w->W_O, D, B, D, HD, 0, 1.0f);

    const float *xf = c->last_resid_mid; /* [B, D] */
    if (!m->cfg.attn_only) {
        cpu_ln_fwd(c->ln_out, D, c->last_ln2_mean, c->last_ln2_rstd, c->last_resid_mid, D, w->ln2_w, w->ln2_b, B, D, eps);
        cpu_rows_init(c->last_mlp_pre, F, NULL, 0, w->b_in, B, F);
        cpu_gemm(c->last_mlp_pre, F, c->ln_out, D, w->W_in, F, B, F, D, 0, 1.0f);
        cpu_act_fwd(c->mlp_act, c->last_mlp_pre, (size_t)B * F, m->cfg.act, want_grad);
        cpu_rows_init(c->resid_final, D, c->last_resid_mid, D, w->b_out, B, D);
        cpu_gemm(c->resid_final, D, c->mlp_act, F, w->W_out, D, B, D, F, 0, 1.0f);
        xf = c->resid_final;
    } else {
        memcpy(c->resid_final, c->last_resid_mid, (size_t)B * D * sizeof *c->resid_final);
    }
    cpu_ln_fwd(c->lnf, D, c->lnf_mean, c->lnf_rstd, xf, D, m->lnf_w, m->lnf_b, B, D, eps);
    /* [B, V] is the largest output of the pass: without b_U, do not write it twice */
    if (m->b_U) cpu_rows_init(c->logits, V, NULL, 0, m->b_U, B, V);
    cpu_gemm(c->logits, V, c->lnf, D, m->W_U, V, B, V, D, 0, m->b_U ? 1.0f : 0.0f);
}

void cpu_forward(cpu_impl *c, int B, int want_grad) {
    embed(c, c->resid, B);
    for (int l = 0; l < c->L - 1; l++) block_full(c, l, B, want_grad);
    block_last(c, B, want_grad);
}
