/* cuda_elementwise.cu: the CUDA backend's elementwise and per-row pieces, with the contracts of
 * src/cpu/kernels.c: bias/residual row initialisation, LayerNorm forward/backward with float64
 * statistics, MLP activations (and their derivatives), embedding and gathers.
 *
 * Dimension legend: M rows, N columns, D = d_model, ld* row strides (floats), n values.
 *
 * Per-row reductions (LayerNorm) use one warp per row: lanes stride over the row, partial sums
 * in double are combined with __shfl_xor_sync (every lane ends with the full sum). Elementwise
 * kernels use grid-stride loops, so any size works with a capped grid.
 */
#include <math.h>

#include "cuda_internal.cuh"

#define THREADS 256
#define WARPS_PER_BLOCK (THREADS / 32)

__device__ static double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ---- rows ---------------------------------------------------------------------------------- */

__global__ static void k_rows_init(float *out, int ldo, const float *add, int lda,
                                   const float *bias, int M, int N) {
    size_t total = (size_t)M * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / N, c = i % N;
        float v = bias ? bias[c] : 0.0f;
        if (add) v = bias ? add[r * lda + c] + v : add[r * lda + c];
        out[r * ldo + c] = v;
    }
}

void cuda_rows_init(float *out, int ldo, const float *add, int lda, const float *bias, int M,
                    int N) {
    if (M <= 0 || N <= 0) return;
    k_rows_init<<<cuda_blocks((size_t)M * N, THREADS), THREADS>>>(out, ldo, add, lda, bias, M, N);
    CU_LAUNCH_CHECK();
}

__global__ static void k_rows_add(float *out, int ldo, const float *add, int lda, int M, int N) {
    size_t total = (size_t)M * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / N, c = i % N;
        out[r * ldo + c] += add[r * lda + c];
    }
}

void cuda_rows_add(float *out, int ldo, const float *add, int lda, int M, int N) {
    if (M <= 0 || N <= 0) return;
    k_rows_add<<<cuda_blocks((size_t)M * N, THREADS), THREADS>>>(out, ldo, add, lda, M, N);
    CU_LAUNCH_CHECK();
}

/* ---- LayerNorm ----------------------------------------------------------------------------- */

/* one warp per row: two passes in float64 (mean, then centred variance) as the CPU */
__global__ static void k_ln_fwd(float *y, int ldy, float *mu, float *rs, const float *x, int ldx,
                                const float *w, const float *b, int M, int D, double eps) {
    int row = blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= M) return; /* whole warps leave together: row is uniform within a warp */
    const float *xr = x + (size_t)row * ldx; /* [D] */
    float *yr = y + (size_t)row * ldy;       /* [D] */
    double s = 0;
    for (int i = lane; i < D; i += 32) s += xr[i];
    double m = warp_sum(s) / D, v = 0;
    for (int i = lane; i < D; i += 32) {
        double d = xr[i] - m;
        v += d * d;
    }
    double r_std = 1.0 / sqrt(warp_sum(v) / D + eps);
    if (lane == 0) {
        mu[row] = (float)m;
        rs[row] = (float)r_std;
    }
    for (int i = lane; i < D; i += 32) yr[i] = (float)((xr[i] - m) * r_std) * w[i] + b[i];
}

void cuda_ln_fwd(float *y, int ldy, float *mu, float *rs, const float *x, int ldx, const float *w,
                 const float *b, int M, int D, double eps) {
    if (M <= 0) return;
    unsigned blocks = (unsigned)((M + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
    k_ln_fwd<<<blocks, THREADS>>>(y, ldy, mu, rs, x, ldx, w, b, M, D, eps);
    CU_LAUNCH_CHECK();
}

/* dx = rs * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * w,  xhat = (x - mu) * rs.
 * dx may alias resid (each element is read before it is written, by the same lane). */
__global__ static void k_ln_bwd(float *dx, int ldx, const float *resid, int ldr, const float *dy,
                                int ldy, const float *x, int ldxin, const float *mu,
                                const float *rs, const float *w, int M, int D) {
    int row = blockIdx.x * WARPS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= M) return;
    const float *xr = x + (size_t)row * ldxin; /* [D] */
    const float *dyr = dy + (size_t)row * ldy; /* [D] */
    float *dxr = dx + (size_t)row * ldx;       /* [D] */
    const float *rr = resid ? resid + (size_t)row * ldr : NULL; /* [D] */
    float m = mu[row], s = rs[row];
    double sg = 0, sgx = 0;
    for (int i = lane; i < D; i += 32) {
        float g = dyr[i] * w[i], xh = (xr[i] - m) * s;
        sg += g;
        sgx += (double)g * xh;
    }
    float mg = (float)(warp_sum(sg) / D), mgx = (float)(warp_sum(sgx) / D);
    for (int i = lane; i < D; i += 32) {
        float g = dyr[i] * w[i], xh = (xr[i] - m) * s;
        float v = s * (g - mg - xh * mgx);
        dxr[i] = rr ? rr[i] + v : v;
    }
}

void cuda_ln_bwd(float *dx, int ldx, const float *resid, int ldr, const float *dy, int ldy,
                 const float *x, int ldxin, const float *mu, const float *rs, const float *w, int M,
                 int D) {
    if (M <= 0) return;
    unsigned blocks = (unsigned)((M + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
    k_ln_bwd<<<blocks, THREADS>>>(dx, ldx, resid, ldr, dy, ldy, x, ldxin, mu, rs, w, M, D);
    CU_LAUNCH_CHECK();
}

/* ---- activations --------------------------------------------------------------------------- */

#define SQRT2_PI 0.79788456080286535588f     /* sqrt(2/pi) */
#define INV_SQRT_2PI 0.39894228040143267794f /* 1/sqrt(2 pi) */
#define INV_SQRT2 0.70710678118654752440f
#define GELU_C 0.044715f

/* y = act(h); with keep_grad h becomes act'(h) (the CPU's formulas, with CUDA's erfcf/expf:
 * both are float32-accurate, so the two backends differ by a few ulps here).
 *   gelu:     x Phi(x), Phi(x) = erfc(-x/sqrt 2)/2;  d = Phi(x) + x phi(x)
 *   gelu_new: x s, s = sigmoid(2u), u = sqrt(2/pi)(x + 0.044715 x^3);
 *             d = s + x s (1 - s) 2 u'
 *   relu:     max(x, 0); d = 1[x > 0] */
__global__ static void k_act_fwd(float *y, float *h, size_t n, int act, int keep_grad) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float x = h[i], out, d;
        if (act == LPE_ACT_GELU) {
            float p = 0.5f * erfcf(-x * INV_SQRT2);
            out = x * p;
            d = p + x * INV_SQRT_2PI * expf(-0.5f * x * x);
        } else if (act == LPE_ACT_GELU_NEW) {
            float u = SQRT2_PI * (x + GELU_C * x * x * x);
            float sg = 1.0f / (1.0f + expf(-2.0f * u));
            out = x * sg;
            d = sg + x * sg * (1.0f - sg) * 2.0f * SQRT2_PI * (1.0f + 3.0f * GELU_C * x * x);
        } else {
            out = x > 0 ? x : 0.0f;
            d = x > 0 ? 1.0f : 0.0f;
        }
        y[i] = out;
        if (keep_grad) h[i] = d;
    }
}

void cuda_act_fwd(float *y, float *h, size_t n, int act, int keep_grad) {
    if (n == 0) return;
    k_act_fwd<<<cuda_blocks(n, THREADS), THREADS>>>(y, h, n, act, keep_grad);
    CU_LAUNCH_CHECK();
}

__global__ static void k_mul(float *y, const float *d, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] *= d[i];
}

void cuda_mul(float *y, const float *d, size_t n) {
    if (n == 0) return;
    k_mul<<<cuda_blocks(n, THREADS), THREADS>>>(y, d, n);
    CU_LAUNCH_CHECK();
}

/* ---- embedding and gathers ----------------------------------------------------------------- */

__global__ static void k_embed(float *X0, const int32_t *tok, const float *W_E,
                               const float *W_pos, int B, int k, int D) {
    size_t total = (size_t)B * k * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t row = i / D, d = i % D; /* row = b*k + position */
        int pos = (int)(row % k);
        X0[i] = W_E[(size_t)tok[row] * D + d] + W_pos[(size_t)pos * D + d];
    }
}

void cuda_embed(float *X0, const int32_t *tok, const float *W_E, const float *W_pos, int B, int k,
                int D) {
    k_embed<<<cuda_blocks((size_t)B * k * D, THREADS), THREADS>>>(X0, tok, W_E, W_pos, B, k, D);
    CU_LAUNCH_CHECK();
}

__global__ static void k_gather_cols(float *out, const float *W_U, const int32_t *targets, int B,
                                     int D, int V) {
    size_t total = (size_t)B * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t b = i / D, d = i % D;
        out[i] = W_U[d * V + targets[b]];
    }
}

void cuda_gather_cols(float *out, const float *W_U, const int32_t *targets, int B, int D, int V) {
    k_gather_cols<<<cuda_blocks((size_t)B * D, THREADS), THREADS>>>(out, W_U, targets, B, D, V);
    CU_LAUNCH_CHECK();
}

__global__ static void k_gather_rows(float *out, const float *src, const int32_t *idx, int n,
                                     int D) {
    size_t total = (size_t)n * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / D, d = i % D;
        out[i] = src[(size_t)idx[r] * D + d];
    }
}

void cuda_gather_rows(float *out, const float *src, const int32_t *idx, int n, int D) {
    if (n <= 0) return;
    k_gather_rows<<<cuda_blocks((size_t)n * D, THREADS), THREADS>>>(out, src, idx, n, D);
    CU_LAUNCH_CHECK();
}
