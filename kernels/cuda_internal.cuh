/* cuda_internal.cuh: the CUDA backend's private state and the kernels its files share. The
 * buffers and their meaning are those of the CPU backend (src/cpu/cpu_internal.h), held in
 * device memory, so that every step can be compared with the reference one to one.
 *
 * Dimension legend: L = n_layers, D = d_model, H = n_heads, Dh = d_head, HD = H*Dh,
 *   Q3 = 3*HD (one row of q|k|v), F = d_mlp, V = d_vocab, k = positions,
 *   Bm = max_batch, B = rows of the current batch, N = B*k (Nm = Bm*k) token rows,
 *   Lf = L - 1 full blocks (every position); the last block is pruned to the last position.
 *   NS = support entries of the distribution in use, NF its factors.
 *
 * Memory: one device allocation per lifetime class, each carved from a size table
 * (cuda_backend.cu), exactly as the CPU backend:
 *   weights  the host model's float block copied as is (device pointers at the same offsets)
 *            plus the q|k|v projection repacked as [D, Q3] per layer (cuda_weights.cu);
 *   batch    tokens, activations kept for the backward, the gradient and all scratch (Bm rows);
 *   state    the walker-state tokens and gradient (LPE_BE_STATE);
 *   dist     the alias tables of the distribution in use (use_dist; replaced when it changes).
 * All pointers below named d_* or documented "device" point into device memory; host copies
 * are named h_*. Every call runs on the default stream, in order, so there are no races between
 * kernels; results are copied back with synchronous cudaMemcpy.
 */
#ifndef LPE_CUDA_INTERNAL_CUH
#define LPE_CUDA_INTERNAL_CUH

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>

#include "cuda_check.cuh"
#include "lpe/backend.h"

/* One layer's weights on the device (the model's TransformerLens layout, model.h). */
typedef struct {
    const float *ln1_w, *ln1_b; /* [D], [D] */
    const float *W_O, *b_O;     /* [H, Dh, D] = [HD, D], [D] */
    const float *ln2_w, *ln2_b; /* [D], [D] (NULL when attn_only) */
    const float *W_in, *b_in;   /* [D, F], [F] */
    const float *W_out, *b_out; /* [F, D], [D] */
    const float *Wqkv, *bqkv;   /* [D, Q3], [Q3] repacked; q scaled by 1/sqrt(Dh) */
} cuda_layer;

/* The CUDA lpe_weights impl. */
typedef struct {
    float *mem;           /* device: the model's floats, then the repacked q|k|v */
    const float *W_E;     /* [V, D] device */
    const float *W_pos;   /* [C, D] device */
    const float *lnf_w, *lnf_b; /* [D] device */
    const float *W_U;     /* [D, V] device */
    const float *b_U;     /* [V] device, or NULL */
    cuda_layer *layers;   /* [L] (host array of device pointers) */
    cublasHandle_t blas;  /* one handle per uploaded model, shared by its workspaces */
} cuda_weights;

typedef struct {
    const lpe_model *m; /* host model (sizes, config) */
    const cuda_weights *w;
    cublasHandle_t blas;
    int L, D, H, Dh, HD, Q3, F, V, k, Bm, attn_only, act;
    double ln_eps;
    int keep; /* activations of every layer kept (LPE_BE_GRAD) */

    /* distribution in use (lifetime: until a different one is given) */
    const lpe_dist *d;    /* host view */
    char d_sha256[65];    /* of the tables on the device ("" = none or not identifiable) */
    void *dmem;           /* device allocation of the tables below */
    int32_t *d_values;    /* [NS] */
    double *d_alias_prob; /* [NS] */
    int32_t *d_alias_idx; /* [NS] */
    int64_t *d_offsets;   /* [NF + 1] */
    int32_t *d_positions; /* [k] */

    /* batch (lifetime: backend); device pointers, same meaning as cpu_impl */
    void *bmem;
    int32_t *tok;          /* [Bm, k] */
    float *resid;          /* [L or 2, Nm, D] residual entering each block (resid[0] = r0) */
    float *ln1_mean, *ln1_rstd; /* [L or 1, Nm] */
    float *qkv;            /* [L or 1, Nm, Q3] */
    float *att;            /* [Lf or 1, Bm, H, k, k] */
    float *attn_out;       /* [Lf or 1, Nm, HD] */
    float *resid_mid;      /* [Lf or 1, Nm, D] */
    float *ln2_mean, *ln2_rstd; /* [Lf or 1, Nm] */
    float *mlp_pre;        /* [Lf or 1, Nm, F]; act'(pre) after a forward with gradient */
    float *last_att;       /* [Bm, H, k] */
    float *last_attn_out;  /* [Bm, HD] */
    float *last_resid_mid; /* [Bm, D] */
    float *last_ln2_mean, *last_ln2_rstd; /* [Bm] */
    float *last_mlp_pre;   /* [Bm, F] */
    float *resid_final;    /* [Bm, D] */
    float *lnf_mean, *lnf_rstd; /* [Bm] */
    float *lnf;            /* [Bm, D] */
    float *logits;         /* [Bm, V] */
    float *ln_out;         /* [Nm, D] scratch */
    float *mlp_act;        /* [Nm or Bm, F] scratch */
    int32_t *targets;      /* [Bm] targets of the last forward */
    int32_t *o_argmax;     /* [Bm] epilogue outputs */
    float *o_max, *o_target, *o_margin; /* [Bm] each */
    int32_t *o_bad;        /* [Bm] 1 where a row's logits are not finite */
    float *grad;           /* [Bm, k, D] ds/dr0 (LPE_BE_GRAD); the running d resid */
    float *d_resid_mid;    /* [Nm, D] */
    float *d_ln_out;       /* [Nm, D] */
    float *seed_p;         /* [min(Bm, CUDA_SEED_ROWS), V] -softmax of a chunk of rows (the
                              log-probability's backward seed, LPE_GRAD_LOGPROB) */
    float *d_mlp_act;      /* [Nm or Bm, F] */
    float *d_qkv;          /* [Nm, Q3] */
    float *d_attn_out;     /* [Nm, HD] */
    float *d_att;          /* [Bm, H, k, k] d score (softmax Jacobian applied); last: [Bm, H, k] */
    float *sc_emb;         /* [CUDA_SCORE_TILE, D] gathered support rows of W_E */
    float *sc_grad;        /* [Bm, D] gathered / summed gradient rows */
    float *sc_prod;        /* [Bm, CUDA_SCORE_TILE] product tile */
    int32_t *sc_rows;      /* [Bm] gradient row (b*k + j) of each gathered row */
    int32_t *sc_idx;       /* [CUDA_SCORE_TILE] support ids of the tile */
    int32_t *sc_pairs;     /* [Bm, 3] scores_sum: (position j, first row, end row) per pair */
    float *h_stage;        /* host [Bm, CUDA_SCORE_TILE]: a product tile on its way to `out` */
    int32_t *h_order;      /* host [Bm, 3]: row order / pair table built on the host */
    int B_last;
    int grad_valid;

    /* walker state (LPE_BE_STATE) */
    void *smem;
    int32_t *state_tok;  /* [Bm, k] */
    float *state_grad;   /* [Bm, k, D] (with LPE_BE_GRAD) */
    uint8_t *accept;     /* [Bm] commit_state's flags on the device */
    int32_t *gather_src; /* [Bm] gather_state's source rows on the device */
    int32_t *h_rows;     /* host [Bm]: per-row flags coming back (non-finite rows) */

    /* ---- ITGIS (issue 10) ---- */
    struct cuda_itgis *itgis; /* the ITGIS tables (cuda_itgis.cu; lifetime: itgis_tables), or NULL */
    /* ---- end ITGIS (issue 10) ---- */
    /* ---- argmax histogram (qld-dev; batch lifetime class) ---- */
    unsigned long long *am_hist; /* [V] device: backend.h argmax_hist_add / take */

    struct cuda_walk *walk; /* walker operations (issue 10): cuda_walkers.cu, made on first use */
} cuda_impl;

#define CUDA_SCORE_TILE 2048
#define CUDA_SEED_ROWS 1024 /* rows per chunk of the log-probability seed (cuda_backward.cu) */

/* cuda_backend.cu */
size_t cuda_batch_bytes(const lpe_model_config *c, int Bm, int k, int flags);

/* cuda_weights.cu: the lpe_backend_kind's upload / free_weights */
lpe_weights *cuda_upload(const lpe_model *m);
void cuda_free_weights(lpe_weights *w);

/* cuda_forward.cu / cuda_backward.cu: the same passes as src/cpu/forward.c, backward.c */
void cuda_forward(cuda_impl *c, int B, int want_grad);
void cuda_backward(cuda_impl *c, int B, int grad_of); /* targets already in c->targets */

/* cuda_epilogue.cu: per row of c->logits: argmax (ties: lowest index), max, target logit,
 * margin, finiteness; into c->o_*. with_targets: c->targets holds B targets. */
void cuda_epilogue(cuda_impl *c, int B, int with_targets);

/* cuda_scores.cu: the backend's scores_at and scores_sum */
void cuda_scores_at(lpe_backend *be, float *out, int ld, const int32_t *pos, int which, int B);
void cuda_scores_sum(lpe_backend *be, double *out, const int32_t *group_off, int n_groups);

/* cuda_sample.cu: tokens [B, k] of samples first .. first+B-1 from the uploaded alias tables */
void cuda_sample(cuda_impl *c, uint64_t seed, uint32_t stream, uint64_t first, int B);

/* ---- ITGIS (issue 10) ----------------------------------------------------------------------
 * cuda_itgis.cu: the backend's itgis_* operations (backend.h) into be; free the tables */
void cuda_itgis_install(lpe_backend *be);
void cuda_itgis_free(cuda_impl *c);
/* ---- end ITGIS (issue 10) ---------------------------------------------------------------- */

/* cuda_unembed.cu: the backend's target_logits (float64 on the device);
 * cuda_qld.cu: its qld_pairs (one fused kernel: logits tile, interval, binary search) */
void cuda_target_logits(lpe_backend *be, double *out, const float *act, const int32_t *targets,
                        long long n, int T);
void cuda_qld_pairs(lpe_backend *be, int64_t *count, const lpe_qld_pairs *job);

/* ---- argmax histogram (qld-dev): cuda_argmax_hist.cu, the backend's argmax_hist_add / take ---- */
void cuda_argmax_hist_add(lpe_backend *be, int r0, int r1);
void cuda_argmax_hist_take(lpe_backend *be, uint64_t *counts);

/* ---- walker operations (issue 10): cuda_walkers.cu (the contracts of src/cpu/cpu_walkers.c) */
void cuda_walkers_install(lpe_backend *be);
void cuda_walkers_gather(cuda_impl *c, const int32_t *src, int B); /* src: device [B] */
void cuda_walkers_free(cuda_impl *c);
/* ---- end walker operations ---- */

/* cuda_gemm.cu: row-major C[M, N] (ldc) = A[M, K] (lda) @ op(B) + beta * C with
 * op(B) = B [K, N] (ldb) or, with transB, B^T (B [N, K]). FP32 products, FP32 accumulation. */
void cuda_gemm(cublasHandle_t h, float *C, int ldc, const float *A, int lda, const float *Bm,
               int ldb, int M, int N, int K, int transB, float beta);

/* cuda_elementwise.cu: the elementwise pieces (same contracts as src/cpu/kernels.c) */
void cuda_rows_init(float *out, int ldo, const float *add, int lda, const float *bias, int M,
                    int N);
void cuda_rows_add(float *out, int ldo, const float *add, int lda, int M, int N); /* out += add */
void cuda_ln_fwd(float *y, int ldy, float *mu, float *rs, const float *x, int ldx, const float *w,
                 const float *b, int M, int D, double eps);
void cuda_ln_bwd(float *dx, int ldx, const float *resid, int ldr, const float *dy, int ldy,
                 const float *x, int ldxin, const float *mu, const float *rs, const float *w, int M,
                 int D);
void cuda_act_fwd(float *y, float *h, size_t n, int act, int keep_grad);
void cuda_mul(float *y, const float *d, size_t n);
/* X0 [B, k, D] = W_E[tok] + W_pos[position] */
void cuda_embed(float *X0, const int32_t *tok, const float *W_E, const float *W_pos, int B, int k,
                int D);
/* out [B, D] = W_U[:, targets[b]]  (W_U [D, V]) */
void cuda_gather_cols(float *out, const float *W_U, const int32_t *targets, int B, int D, int V);
/* out [n, D] = src rows idx[i] (src [*, D]) */
void cuda_gather_rows(float *out, const float *src, const int32_t *idx, int n, int D);

/* cuda_attention.cu: causal attention over packed q|k|v rows (same contracts as
 * src/cpu/attention.c); d_att is scratch [B, H, k, k] (full) or [B, H, k] (last). */
void cuda_attn_fwd_full(float *attn_out, float *att, const float *qkv, int B, int k, int H,
                        int Dh);
void cuda_attn_fwd_last(float *last_attn_out, float *last_att, const float *qkv, int B, int k,
                        int H, int Dh);
void cuda_attn_bwd_full(float *d_qkv, float *d_att, const float *d_attn_out, const float *att,
                        const float *qkv, int B, int k, int H, int Dh);
void cuda_attn_bwd_last(float *d_qkv, float *d_att, const float *d_last_attn_out,
                        const float *last_att, const float *qkv, int B, int k, int H, int Dh);

#endif
