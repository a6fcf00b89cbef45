/* cuda_forward.cu: the pruned forward pass on the GPU, step for step the one of
 * src/cpu/forward.c (same buffers, same order), with cuBLAS products and the kernels of
 * cuda_elementwise.cu and cuda_attention.cu.
 *
 * Dimension legend: see cuda_internal.cuh (B rows, k positions, N = B*k, D, HD, Q3, F, V).
 *
 * Blocks 0 .. L-2 run on every position. In the last block K and V are computed for every
 * position, but q, attention, residual, LN2 and the MLP for the last row of each sequence only,
 * and the final LN and unembedding on B rows. Biases (and residuals) are written into a
 * product's output first so that the product accumulates onto them (beta = 1).
 */
#include "cuda_internal.cuh"

/* residual stream entering block l: resid[l] with all layers kept, else alternating slots */
static float *resid_in(cuda_impl *c, int l) {
    size_t Nm = (size_t)c->Bm * c->k;
    return c->resid + (c->keep ? (size_t)l : (size_t)(l & 1)) * Nm * c->D;
}

/* One full block on every position: resid(l) -> resid(l + 1). */
static void block_full(cuda_impl *c, int l, int B, int want_grad) {
    const cuda_layer *w = &c->w->layers[l];
    cublasHandle_t h = c->blas;
    int k = c->k, D = c->D, HD = c->HD, Q3 = c->Q3, F = c->F, N = B * k;
    size_t Nm = (size_t)c->Bm * k, s = c->keep ? (size_t)l : 0;
    float *x = resid_in(c, l);                                      /* [N, D] */
    float *xo = resid_in(c, l + 1);                                 /* [N, D] */
    float *qkv = c->qkv + s * Nm * Q3;                              /* [N, Q3] */
    float *P = c->att + s * (size_t)c->Bm * c->H * k * k;           /* [B, H, k, k] */
    float *z = c->attn_out + s * Nm * HD;                           /* [N, HD] */
    float *xm = c->attn_only ? xo : c->resid_mid + s * Nm * D;      /* [N, D] */

    cuda_ln_fwd(c->ln_out, D, c->ln1_mean + s * Nm, c->ln1_rstd + s * Nm, x, D, w->ln1_w,
                w->ln1_b, N, D, c->ln_eps);
    cuda_rows_init(qkv, Q3, NULL, 0, w->bqkv, N, Q3);
    cuda_gemm(h, qkv, Q3, c->ln_out, D, w->Wqkv, Q3, N, Q3, D, 0, 1.0f);
    cuda_attn_fwd_full(z, P, qkv, B, k, c->H, c->Dh);
    cuda_rows_init(xm, D, x, D, w->b_O, N, D);
    cuda_gemm(h, xm, D, z, HD, w->W_O, D, N, D, HD, 0, 1.0f);
    if (c->attn_only) return;

    float *hp = c->mlp_pre + s * Nm * F; /* [N, F] */
    cuda_ln_fwd(c->ln_out, D, c->ln2_mean + s * Nm, c->ln2_rstd + s * Nm, xm, D, w->ln2_w,
                w->ln2_b, N, D, c->ln_eps);
    cuda_rows_init(hp, F, NULL, 0, w->b_in, N, F);
    cuda_gemm(h, hp, F, c->ln_out, D, w->W_in, F, N, F, D, 0, 1.0f);
    cuda_act_fwd(c->mlp_act, hp, (size_t)N * F, c->act, want_grad);
    cuda_rows_init(xo, D, xm, D, w->b_out, N, D);
    cuda_gemm(h, xo, D, c->mlp_act, F, w->W_out, D, N, D, F, 0, 1.0f);
}

/* The last block's MLP on the B last rows: last_resid_mid -> resid_final. */
static void last_mlp(cuda_impl *c, const cuda_layer *w, int B, int want_grad) {
    cublasHandle_t h = c->blas;
    int D = c->D, F = c->F;
    cuda_ln_fwd(c->ln_out, D, c->last_ln2_mean, c->last_ln2_rstd, c->last_resid_mid, D, w->ln2_w,
                w->ln2_b, B, D, c->ln_eps);
    cuda_rows_init(c->last_mlp_pre, F, NULL, 0, w->b_in, B, F);
    cuda_gemm(h, c->last_mlp_pre, F, c->ln_out, D, w->W_in, F, B, F, D, 0, 1.0f);
    cuda_act_fwd(c->mlp_act, c->last_mlp_pre, (size_t)B * F, c->act, want_grad);
    cuda_rows_init(c->resid_final, D, c->last_resid_mid, D, w->b_out, B, D);
    cuda_gemm(h, c->resid_final, D, c->mlp_act, F, w->W_out, D, B, D, F, 0, 1.0f);
}

/* The last block, pruned, then the final LN and the unembedding: resid[L-1] -> lnf, logits. */
static void block_last(cuda_impl *c, int B, int want_grad) {
    int l = c->L - 1;
    const cuda_layer *w = &c->w->layers[l];
    cublasHandle_t h = c->blas;
    int k = c->k, D = c->D, HD = c->HD, Q3 = c->Q3, V = c->V, N = B * k;
    size_t Nm = (size_t)c->Bm * k, s = c->keep ? (size_t)l : 0;
    float *x = resid_in(c, l);          /* [N, D] */
    float *qkv = c->qkv + s * Nm * Q3;  /* [N, Q3] */

    cuda_ln_fwd(c->ln_out, D, c->ln1_mean + s * Nm, c->ln1_rstd + s * Nm, x, D, w->ln1_w,
                w->ln1_b, N, D, c->ln_eps);
    /* k|v for every position, q for the last row of each sequence (row stride k rows) */
    cuda_rows_init(qkv + HD, Q3, NULL, 0, w->bqkv + HD, N, 2 * HD);
    cuda_gemm(h, qkv + HD, Q3, c->ln_out, D, w->Wqkv + HD, Q3, N, 2 * HD, D, 0, 1.0f);
    float *ql = qkv + (size_t)(k - 1) * Q3; /* row b at b*k*Q3 */
    cuda_rows_init(ql, k * Q3, NULL, 0, w->bqkv, B, HD);
    cuda_gemm(h, ql, k * Q3, c->ln_out + (size_t)(k - 1) * D, k * D, w->Wqkv, Q3, B, HD, D, 0,
              1.0f);
    cuda_attn_fwd_last(c->last_attn_out, c->last_att, qkv, B, k, c->H, c->Dh);
    cuda_rows_init(c->last_resid_mid, D, x + (size_t)(k - 1) * D, k * D, w->b_O, B, D);
    cuda_gemm(h, c->last_resid_mid, D, c->last_attn_out, HD, w->W_O, D, B, D, HD, 0, 1.0f);

    if (!c->attn_only)
        last_mlp(c, w, B, want_grad);
    else
        CU_CHECK(cudaMemcpy(c->resid_final, c->last_resid_mid, (size_t)B * D * sizeof(float),
                            cudaMemcpyDeviceToDevice));
    cuda_ln_fwd(c->lnf, D, c->lnf_mean, c->lnf_rstd, c->resid_final, D, c->w->lnf_w, c->w->lnf_b,
                B, D, c->ln_eps);
    if (c->w->b_U) cuda_rows_init(c->logits, V, NULL, 0, c->w->b_U, B, V);
    cuda_gemm(h, c->logits, V, c->lnf, D, c->w->W_U, V, B, V, D, 0, c->w->b_U ? 1.0f : 0.0f);
}

void cuda_forward(cuda_impl *c, int B, int want_grad) {
    cuda_embed(c->resid, c->tok, c->w->W_E, c->w->W_pos, B, c->k, c->D);
    for (int l = 0; l < c->L - 1; l++) block_full(c, l, B, want_grad);
    block_last(c, B, want_grad);
}
