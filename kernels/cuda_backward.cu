/* cuda_backward.cu: gradient of the target logit s = l_{t_b} to the embedding input r0 on the
 * GPU, step for step the one of src/cpu/backward.c, using the activations the forward kept.
 *
 * Dimension legend: see cuda_internal.cuh (B rows, k positions, N = B*k, D, HD, Q3, F, V).
 *
 * Only input gradients: every step is one product of an activation gradient with a transposed
 * weight. ds/d lnf = W_U[:, t]. The last block's gradient reaches the other positions only
 * through K and V; the residual carries it to the last row only. The running dX lives in the
 * gradient buffer itself.
 */
#include "cuda_internal.cuh"

/* dX [N, D] (= grad) <- the gradient entering block l's output; -> the one entering its input */
static void block_full_bwd(cuda_impl *c, int l, int B) {
    const cuda_layer *w = &c->w->layers[l];
    cublasHandle_t h = c->blas;
    int k = c->k, D = c->D, HD = c->HD, Q3 = c->Q3, F = c->F, N = B * k;
    size_t Nm = (size_t)c->Bm * k;
    float *dX = c->grad;                                        /* [N, D] */
    const float *x = c->resid + (size_t)l * Nm * D;             /* [N, D] */
    const float *qkv = c->qkv + (size_t)l * Nm * Q3;            /* [N, Q3] */
    const float *P = c->att + (size_t)l * c->Bm * c->H * k * k; /* [B, H, k, k] */
    float *dxm = dX;                                            /* [N, D] */
    if (!c->attn_only) {
        dxm = c->d_resid_mid;
        cuda_gemm(h, c->d_mlp_act, F, dX, D, w->W_out, D, N, F, D, 1, 0.0f);
        cuda_mul(c->d_mlp_act, c->mlp_pre + (size_t)l * Nm * F, (size_t)N * F); /* act' kept */
        cuda_gemm(h, c->d_ln_out, D, c->d_mlp_act, F, w->W_in, F, N, D, F, 1, 0.0f);
        cuda_ln_bwd(dxm, D, dX, D, c->d_ln_out, D, c->resid_mid + (size_t)l * Nm * D, D,
                    c->ln2_mean + l * Nm, c->ln2_rstd + l * Nm, w->ln2_w, N, D);
    }
    cuda_gemm(h, c->d_attn_out, HD, dxm, D, w->W_O, D, N, HD, D, 1, 0.0f);
    cuda_attn_bwd_full(c->d_qkv, c->d_att, c->d_attn_out, P, qkv, B, k, c->H, c->Dh);
    cuda_gemm(h, c->d_ln_out, D, c->d_qkv, Q3, w->Wqkv, Q3, N, D, Q3, 1, 0.0f);
    cuda_ln_bwd(dX, D, dxm, D, c->d_ln_out, D, x, D, c->ln1_mean + l * Nm, c->ln1_rstd + l * Nm,
                w->ln1_w, N, D);
}

/* final LN and the last block's MLP: d lnf -> d last_resid_mid [B, D] (in c->d_resid_mid) */
static void last_top_bwd(cuda_impl *c, const cuda_layer *w, int B) {
    cublasHandle_t h = c->blas;
    int D = c->D, F = c->F;
    float *dact = c->d_ln_out;   /* [B, D] */
    float *dxm = c->d_resid_mid; /* [B, D] */
    cuda_gather_cols(dact, c->w->W_U, c->targets, B, D, c->V);
    cuda_ln_bwd(dxm, D, NULL, 0, dact, D, c->resid_final, D, c->lnf_mean, c->lnf_rstd,
                c->w->lnf_w, B, D);
    if (c->attn_only) return;
    cuda_gemm(h, c->d_mlp_act, F, dxm, D, w->W_out, D, B, F, D, 1, 0.0f);
    cuda_mul(c->d_mlp_act, c->last_mlp_pre, (size_t)B * F);
    cuda_gemm(h, c->d_ln_out, D, c->d_mlp_act, F, w->W_in, F, B, D, F, 1, 0.0f);
    cuda_ln_bwd(dxm, D, dxm, D, c->d_ln_out, D, c->last_resid_mid, D, c->last_ln2_mean,
                c->last_ln2_rstd, w->ln2_w, B, D);
}

/* the last block (pruned) -> dX [N, D] entering it */
static void block_last_bwd(cuda_impl *c, int B) {
    int l = c->L - 1;
    const cuda_layer *w = &c->w->layers[l];
    cublasHandle_t h = c->blas;
    int k = c->k, D = c->D, HD = c->HD, Q3 = c->Q3, N = B * k;
    size_t Nm = (size_t)c->Bm * k;
    const float *x = c->resid + (size_t)l * Nm * D;  /* [N, D] */
    const float *qkv = c->qkv + (size_t)l * Nm * Q3; /* [N, Q3] */
    float *dxm = c->d_resid_mid;                     /* [B, D] */

    last_top_bwd(c, w, B);
    cuda_gemm(h, c->d_attn_out, HD, dxm, D, w->W_O, D, B, HD, D, 1, 0.0f);
    cuda_attn_bwd_last(c->d_qkv, c->d_att, c->d_attn_out, c->last_att, qkv, B, k, c->H, c->Dh);
    /* through k|v of every position, then through q of the last rows */
    cuda_gemm(h, c->d_ln_out, D, c->d_qkv + HD, Q3, w->Wqkv + HD, Q3, N, D, 2 * HD, 1, 0.0f);
    cuda_gemm(h, c->d_ln_out + (size_t)(k - 1) * D, k * D, c->d_qkv + (size_t)(k - 1) * Q3,
              k * Q3, w->Wqkv, Q3, B, D, HD, 1, 1.0f);
    cuda_ln_bwd(c->grad, D, NULL, 0, c->d_ln_out, D, x, D, c->ln1_mean + l * Nm,
                c->ln1_rstd + l * Nm, w->ln1_w, N, D);
    /* the residual path: last row of each sequence only */
    cuda_rows_add(c->grad + (size_t)(k - 1) * D, k * D, dxm, D, B, D);
}

void cuda_backward(cuda_impl *c, int B) {
    LPE_ASSERT(c->keep);
    block_last_bwd(c, B);
    for (int l = c->L - 2; l >= 0; l--) block_full_bwd(c, l, B);
}
