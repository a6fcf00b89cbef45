/* cpu_internal.h: the CPU backend's private state and the kernels its files share.
 *
 * Dimension legend: L = n_layers, D = d_model, H = n_heads, Dh = d_head, HD = H*Dh,
 *   Q3 = 3*HD (one row of q|k|v), F = d_mlp, V = d_vocab, k = positions,
 *   Bm = max_batch, B = rows of the current batch, N = B*k (Nm = Bm*k) token rows,
 *   Lf = L - 1 full blocks (every position); the last block is pruned to the last position.
 *
 * Memory, one allocation per lifetime class, each carved from a size table (cpu_backend.c):
 *   weights  the q|k|v projection repacked as one [D, Q3] matrix per layer (the rest is used in
 *            place from the model); an lpe_weights, shared by workspaces of any k;
 *   batch    tokens, activations kept for the backward, the gradient and all scratch, sized
 *            for Bm rows;
 *   state    the walker-state tokens and gradient (LPE_BE_STATE).
 * Without LPE_BE_GRAD only one layer's worth of activations is kept (slots are reused).
 */
#ifndef LPE_CPU_INTERNAL_H
#define LPE_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "lpe/backend.h"

/* OpenMP clause: run a loop in parallel only when it has enough elements to pay for the fork
 * and join. On a shared, oversubscribed machine every parallel region can cost a scheduler
 * time slice (a thread waits for a descheduled sibling), so small models must not have many. */
#define CPU_PAR(work) if ((size_t)(work) >= (size_t)1 << 15)

/* The CPU's lpe_weights impl: the q|k|v projection repacked as one [D, Q3] matrix per layer (the
 * rest is used in place from the host model). One allocation. */
typedef struct {
    void *mem;
    float *Wqkv; /* [L, D, Q3]: column (c*H + h)*Dh + e is W_{Q,K,V}[h][:, e]; Q scaled 1/sqrt(Dh) */
    float *bqkv; /* [L, Q3] */
} cpu_weights;

/* Support rows of W_E per product in the score operations: large, so that a full-vocabulary
 * support takes few products (each is a parallel region; see CPU_PAR). */
#define CPU_SCORE_TILE 2048
#define CPU_SEED_ROWS 256 /* rows per chunk of the log-probability seed (backward.c) */

typedef struct {
    const lpe_model *m;
    int L, D, H, Dh, HD, Q3, F, V, k, Bm;
    int keep; /* activations of every layer kept (LPE_BE_GRAD) */

    const lpe_dist *d; /* use_dist */

    /* weights (lifetime: the lpe_weights, shared by every workspace on them) */
    const float *Wqkv; /* [L, D, Q3] (cpu_weights) */
    const float *bqkv; /* [L, Q3] */

    /* batch (lifetime: backend; contents: one batch) */
    void *bmem;
    int32_t *tok;          /* [Bm, k] */
    float *resid;          /* [L or 2, Nm, D] residual stream entering each block (resid[0] = r0) */
    float *ln1_mean, *ln1_rstd; /* [L or 1, Nm] LN1 mean and 1/std */
    float *qkv;            /* [L or 1, Nm, Q3] (last block: q only on the last row of each sequence) */
    float *att;            /* [Lf or 1, Bm, H, k, k] attention probabilities of the full blocks */
    float *attn_out;       /* [Lf or 1, Nm, HD] attention output per head, before W_O */
    float *resid_mid;      /* [Lf or 1, Nm, D] residual after attention (LN2 input) */
    float *ln2_mean, *ln2_rstd; /* [Lf or 1, Nm] */
    float *mlp_pre;        /* [Lf or 1, Nm, F] MLP pre-activation; act'(pre-activation) after a
                              forward with gradient */
    float *last_att;       /* [Bm, H, k] last block: attention of the last query */
    float *last_attn_out;  /* [Bm, HD] */
    float *last_resid_mid; /* [Bm, D] */
    float *last_ln2_mean, *last_ln2_rstd; /* [Bm] */
    float *last_mlp_pre;   /* [Bm, F] (as mlp_pre) */
    float *resid_final;    /* [Bm, D] residual after the last block (final LN input) */
    float *lnf_mean, *lnf_rstd; /* [Bm] */
    float *lnf;            /* [Bm, D] final LN output */
    float *logits;         /* [Bm, V] logits at the last position */
    float *ln_out;         /* [Nm, D] scratch: a LayerNorm output */
    float *mlp_act;        /* [Nm or Bm, F] scratch: MLP activation output */
    float *grad;           /* [Bm, k, D] ds/dr0 (LPE_BE_GRAD); also the running d resid of the
                              backward */
    float *d_resid_mid;    /* [Nm, D] */
    float *d_ln_out;       /* [Nm, D] */
    float *seed_p;         /* [min(Bm, CPU_SEED_ROWS), V] -softmax of a chunk of rows
                              (the log-probability's backward seed, LPE_GRAD_LOGPROB) */
    float *d_mlp_act;      /* [Nm or Bm, F] */
    float *d_qkv;          /* [Nm, Q3] */
    float *d_attn_out;     /* [Nm, HD] */
    float *sc_emb;         /* [CPU_SCORE_TILE, D] gathered support rows of W_E */
    float *sc_grad;        /* [Bm, D] gathered gradient rows (scores) */
    float *sc_prod;        /* [Bm, CPU_SCORE_TILE] product tile */
    int32_t *sc_order;     /* [Bm] row order grouped by factor */
    int B_last;      /* rows of the last forward */
    int grad_valid;  /* the last forward kept its gradient */

    /* walker state (LPE_BE_STATE) */
    void *smem;
    int32_t *state_tok;  /* [Bm, k] */
    float *state_grad;   /* [Bm, k, D] (with LPE_BE_GRAD) */

    /* ---- ITGIS (issue 10) ---- */
    struct cpu_itgis *itgis; /* the ITGIS tables (cpu_itgis.c; lifetime: itgis_tables), or NULL */
    /* ---- end ITGIS (issue 10) ---- */
    /* ---- argmax histogram (qld-dev; batch lifetime class) ---- */
    int32_t *am_last;    /* [Bm] argmax of the last forward's rows */
    uint64_t *am_hist;   /* [V] backend.h: argmax_hist_add / argmax_hist_take */

    struct cpu_walk *walk; /* walker operations (issue 10): cpu_walkers.c, made on first use */
} cpu_impl;

/* Bytes of the batch and state allocations for a config (batch_for_budget and create agree). */
size_t cpu_batch_bytes(const lpe_model_config *c, int Bm, int k, int flags);

/* forward.c / backward.c */
void cpu_forward(cpu_impl *c, int B, int want_grad);
void cpu_backward(cpu_impl *c, const int32_t *targets, int B, int grad_of);

/* scores.c: the backend's scores_at and scores_sum (backend.h) */
void cpu_scores_at(lpe_backend *be, float *out, int ld, const int32_t *pos, int which, int B);
void cpu_scores_sum(lpe_backend *be, double *out, const int32_t *group_off, int n_groups);

/* ---- ITGIS (issue 10) ----------------------------------------------------------------------
 * scores.c: scores_sum's sums into out [n_groups, S]; add = 1 adds them to out (one addition
 * per entry) instead of storing them. */
void cpu_scores_sum_into(cpu_impl *c, double *out, const int32_t *group_off, int n_groups,
                         int add);
/* cpu_itgis.c: the backend's itgis_* operations (backend.h) into be; free the tables */
void cpu_itgis_install(lpe_backend *be);
void cpu_itgis_free(cpu_impl *c);
/* ---- end ITGIS (issue 10) ---------------------------------------------------------------- */

/* unembed.c: the backend's target_logits and qld_pairs (backend.h) */
void cpu_target_logits(lpe_backend *be, double *out, const float *act, const int32_t *targets,
                       long long n, int T);
void cpu_qld_pairs(lpe_backend *be, int64_t *count, const lpe_qld_pairs *job);

/* ---- argmax histogram (qld-dev): cpu_argmax_hist.c, the backend's argmax_hist_add / take ---- */
void cpu_argmax_hist_add(lpe_backend *be, int r0, int r1);
void cpu_argmax_hist_take(lpe_backend *be, uint64_t *counts);

/* ---- walker operations (issue 10): cpu_walkers.c ---- */
/* the backend's walkers_* entries (backend.h) into be */
void cpu_walkers_install(lpe_backend *be);
/* gather_state's part: the walker rows' settings, results and statistics (rows b < B take row
 * src[b]'s); destroy's part: free them */
void cpu_walkers_gather(cpu_impl *c, const int32_t *src, int B);
void cpu_walkers_free(cpu_impl *c);
/* ---- end walker operations ---- */

/* kernels.c: row-major products and the elementwise pieces.
 * C[M, N] (ldc) = A[M, K] (lda) @ op(B) + beta * C, op(B) = B [K, N] (ldb) or B^T (B [N, K]). */
void cpu_gemm(float *C, int ldc, const float *A, int lda, const float *Bm, int ldb, int M, int N,
              int K, int transB, float beta);
/* out[r, :] = bias (or 0 when bias is NULL) + (add ? add[r, :] : 0); rows with strides. */
void cpu_rows_init(float *out, int ldo, const float *add, int lda, const float *bias, int M, int N);
/* y = LN(x) * w + b per row; statistics in float64, kept in mu, rs (1/std). */
void cpu_ln_fwd(float *y, int ldy, float *mu, float *rs, const float *x, int ldx, const float *w,
                const float *b, int M, int D, double eps);
/* dx (ldx) = resid (ldr; NULL = 0) + d LN / dx applied to dy. dx may alias resid. */
void cpu_ln_bwd(float *dx, int ldx, const float *resid, int ldr, const float *dy, int ldy,
                const float *x, int ldxin, const float *mu, const float *rs, const float *w, int M,
                int D);
/* y = act(h) elementwise over n values; with keep_grad, h is overwritten by act'(h), all the
 * backward needs of it (so the backward does not evaluate erf/exp again). */
void cpu_act_fwd(float *y, float *h, size_t n, int act, int keep_grad);
/* y *= d elementwise */
void cpu_mul(float *y, const float *d, size_t n);

/* attention.c: causal attention over the packed q|k|v rows [B, k, Q3] (head h: columns h*Dh). */
void cpu_attn_fwd_full(float *attn_out, float *att, const float *qkv, int B, int k, int H, int Dh);
void cpu_attn_fwd_last(float *last_attn_out, float *last_att, const float *qkv, int B, int k, int H, int Dh);
/* d_qkv [B, k, Q3] from d_attn_out [B, k, HD] (full) or d_last_attn_out [B, HD] (last query only; the q part of the
 * other rows is left untouched). */
void cpu_attn_bwd_full(float *d_qkv, const float *d_attn_out, const float *att, const float *qkv, int B,
                       int k, int H, int Dh);
void cpu_attn_bwd_last(float *d_qkv, const float *d_last_attn_out, const float *last_att, const float *qkv, int B,
                       int k, int H, int Dh);

#endif
