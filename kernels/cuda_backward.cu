/* cuda_backward.cu: gradient of the target logit s = l_{t_b} to the embedding input r0 on the
 * GPU, step for step the one of src/cpu/backward.c, using the activations the forward kept.
 *
 * Dimension legend: see cuda_internal.cuh (B rows, k positions, N = B*k, D, HD, Q3, F, V).
 *
 * Only input gradients: every step is one product of an activation gradient with a transposed
 * weight. ds/d lnf = W_U[:, t]; for the log-probability (grad_of = LPE_GRAD_LOGPROB, backend.h)
 *   d(l_t - logsumexp_v l_v)/d lnf = W_U[:, t] - sum_v p_v W_U[:, v],   p = softmax(l),
 * the sum one product of the rows' -p (k_neg_softmax, chunks of CUDA_SEED_ROWS) with W_U^T, as
 * src/cpu/backward.c's logprob_seed. The last block's gradient reaches the other positions only
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

#define SM_THREADS 256

/* p [nr, V] = -softmax(logits [nr, V]) per row: one block per row; max in float, the normaliser
 * in float64 (backend.h's numerics), as the CPU's */
__global__ static void k_neg_softmax(float *p, const float *logits, int V) {
    __shared__ float s_m[SM_THREADS];
    __shared__ double s_z[SM_THREADS];
    const int b = blockIdx.x, tid = threadIdx.x;
    const float *lg = logits + (size_t)b * V; /* [V] */
    float mx = -INFINITY;
    for (int v = tid; v < V; v += SM_THREADS) mx = fmaxf(mx, lg[v]);
    s_m[tid] = mx;
    __syncthreads();
    for (int s = SM_THREADS / 2; s > 0; s >>= 1) {
        if (tid < s) s_m[tid] = fmaxf(s_m[tid], s_m[tid + s]);
        __syncthreads();
    }
    mx = s_m[0];
    double z = 0;
    for (int v = tid; v < V; v += SM_THREADS) z += exp((double)lg[v] - mx);
    s_z[tid] = z;
    __syncthreads();
    for (int s = SM_THREADS / 2; s > 0; s >>= 1) {
        if (tid < s) s_z[tid] += s_z[tid + s];
        __syncthreads();
    }
    const double Z = s_z[0];
    for (int v = tid; v < V; v += SM_THREADS) p[(size_t)b * V + v] = (float)(-exp((double)lg[v] - mx) / Z);
}

/* dact [B, D] -= softmax(logits[b]) . W_U^T */
static void logprob_seed(cuda_impl *c, float *dact, int B) {
    const int V = c->V, D = c->D, R = c->Bm < CUDA_SEED_ROWS ? c->Bm : CUDA_SEED_ROWS;
    for (int r0 = 0; r0 < B; r0 += R) {
        const int nr = B - r0 < R ? B - r0 : R;
        k_neg_softmax<<<nr, SM_THREADS>>>(c->seed_p, c->logits + (size_t)r0 * V, V);
        CU_LAUNCH_CHECK();
        cuda_gemm(c->blas, dact + (size_t)r0 * D, D, c->seed_p, V, c->w->W_U, V, nr, D, V, 1, 1.0f);
    }
}

/* final LN and the last block's MLP: d lnf -> d last_resid_mid [B, D] (in c->d_resid_mid) */
static void last_top_bwd(cuda_impl *c, const cuda_layer *w, int B, int grad_of) {
    cublasHandle_t h = c->blas;
    int D = c->D, F = c->F;
    float *dact = c->d_ln_out;   /* [B, D] */
    float *dxm = c->d_resid_mid; /* [B, D] */
    cuda_gather_cols(dact, c->w->W_U, c->targets, B, D, c->V);
    if (grad_of == LPE_GRAD_LOGPROB) logprob_seed(c, dact, B);
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
static void block_last_bwd(cuda_impl *c, int B, int grad_of) {
    int l = c->L - 1;
    const cuda_layer *w = &c->w->layers[l];
    cublasHandle_t h = c->blas;
    int k = c->k, D = c->D, HD = c->HD, Q3 = c->Q3, N = B * k;
    size_t Nm = (size_t)c->Bm * k;
    const float *x = c->resid + (size_t)l * Nm * D;  /* [N, D] */
    const float *qkv = c->qkv + (size_t)l * Nm * Q3; /* [N, Q3] */
    float *dxm = c->d_resid_mid;                     /* [B, D] */

    last_top_bwd(c, w, B, grad_of);
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

void cuda_backward(cuda_impl *c, int B, int grad_of) {
    LPE_ASSERT(c->keep);
    block_last_bwd(c, B, grad_of);
    for (int l = c->L - 2; l >= 0; l--) block_full_bwd(c, l, B);
}
