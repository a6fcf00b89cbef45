/* kernels.c: the CPU backend's products (OpenBLAS sgemm) and elementwise pieces: bias/residual
 * row initialisation, LayerNorm forward/backward with float64 statistics, MLP activations.
 *
 * Dimension legend: M rows, N/K matrix sizes, D = d_model, ld* = row strides (in floats).
 */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "cpu_internal.h"

void cpu_gemm(float *C, int ldc, const float *A, int lda, const float *Bm, int ldb, int M, int N,
              int K, int transB, float beta) {
    if (M <= 0 || N <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                lda, Bm, ldb, beta, C, ldc);
}

void cpu_rows_init(float *out, int ldo, const float *add, int lda, const float *bias, int M,
                   int N) {
#pragma omp parallel for schedule(static) CPU_PAR((size_t)M * N)
    for (int r = 0; r < M; r++) {
        float *o = out + (size_t)r * ldo; /* [N] */
        const float *a = add ? add + (size_t)r * lda : NULL; /* [N] */
        if (a && bias)
            for (int i = 0; i < N; i++) o[i] = a[i] + bias[i];
        else if (a)
            memcpy(o, a, (size_t)N * sizeof *o);
        else if (bias)
            memcpy(o, bias, (size_t)N * sizeof *o);
        else
            memset(o, 0, (size_t)N * sizeof *o);
    }
}

void cpu_ln_fwd(float *y, int ldy, float *mu, float *rs, const float *x, int ldx, const float *w,
                const float *b, int M, int D, double eps) {
#pragma omp parallel for schedule(static) CPU_PAR((size_t)M * D)
    for (int r = 0; r < M; r++) {
        const float *xr = x + (size_t)r * ldx; /* [D] */
        float *yr = y + (size_t)r * ldy;       /* [D] */
        /* two passes in float64: the variance of a residual stream with a large mean would lose
         * digits in a one-pass float formula */
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < D; i++) s += xr[i];
        double m = s / D, v = 0;
#pragma omp simd reduction(+ : v)
        for (int i = 0; i < D; i++) {
            double d = xr[i] - m;
            v += d * d;
        }
        double r_std = 1.0 / sqrt(v / D + eps);
        mu[r] = (float)m;
        rs[r] = (float)r_std;
        for (int i = 0; i < D; i++) yr[i] = (float)((xr[i] - m) * r_std) * w[i] + b[i];
    }
}

void cpu_ln_bwd(float *dx, int ldx, const float *resid, int ldr, const float *dy, int ldy,
                const float *x, int ldxin, const float *mu, const float *rs, const float *w, int M,
                int D) {
    /* dx = rs * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * w,  xhat = (x - mu) * rs */
#pragma omp parallel for schedule(static) CPU_PAR((size_t)M * D)
    for (int r = 0; r < M; r++) {
        const float *xr = x + (size_t)r * ldxin; /* [D] */
        const float *dyr = dy + (size_t)r * ldy; /* [D] */
        float *dxr = dx + (size_t)r * ldx;       /* [D] */
        const float *rr = resid ? resid + (size_t)r * ldr : NULL; /* [D] */
        float m = mu[r], s = rs[r];
        double sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
        for (int i = 0; i < D; i++) {
            float g = dyr[i] * w[i], xh = (xr[i] - m) * s;
            sg += g;
            sgx += (double)g * xh;
        }
        float mg = (float)(sg / D), mgx = (float)(sgx / D);
        for (int i = 0; i < D; i++) {
            float g = dyr[i] * w[i], xh = (xr[i] - m) * s;
            float v = s * (g - mg - xh * mgx);
            dxr[i] = rr ? rr[i] + v : v;
        }
    }
}

/* Activations run over [N, F] values per block: libm's scalar erff/tanhf would cost as much as
 * the block's products, so they are built here from a branch-free expf that the compiler
 * vectorises (omp simd). Accuracy ~2e-7 relative, i.e. float32 level:
 *   fexp: Cody-Waite reduction by ln 2, degree-7 Taylor on |r| <= ln2/2 (truncation 5e-9);
 *   erfc: the Chebyshev fit of Numerical Recipes (erfcc), fractional error < 1.2e-7 for all x;
 *   gelu(x) = x Phi(x) with Phi(x) = erfc(-x/sqrt 2) / 2 (no cancellation for x < 0);
 *   gelu_new(x) = x (1 + tanh u) / 2 = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3). */
#pragma omp declare simd
static inline float fexp(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union {
        int32_t i;
        float f;
    } u = {.i = ((int32_t)n + 127) << 23};
    return p * u.f;
}

/* erfc(z) for z >= 0 */
#pragma omp declare simd
static inline float ferfc_pos(float z) {
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    return t * fexp(p - z * z);
}

/* Phi(x), the standard normal CDF */
#pragma omp declare simd
static inline float fphi(float x) {
    float e = 0.5f * ferfc_pos(fabsf(x) * 0.70710678118654752f);
    return x < 0 ? e : 1.0f - e;
}

#define SQRT2_PI 0.79788456080286535588f     /* sqrt(2/pi) */
#define INV_SQRT_2PI 0.39894228040143267794f /* 1/sqrt(2 pi) */
#define GELU_C 0.044715f

void cpu_act_fwd(float *y, float *h, size_t n, int act, int keep_grad) {
    if (act == LPE_ACT_GELU && !keep_grad) {
#pragma omp parallel for simd schedule(static) CPU_PAR(n)
        for (size_t i = 0; i < n; i++) y[i] = h[i] * fphi(h[i]);
    } else if (act == LPE_ACT_GELU) {
        /* d/dx x Phi(x) = Phi(x) + x phi(x) */
#pragma omp parallel for simd schedule(static) CPU_PAR(n)
        for (size_t i = 0; i < n; i++) {
            float x = h[i], p = fphi(x);
            y[i] = x * p;
            h[i] = p + x * INV_SQRT_2PI * fexp(-0.5f * x * x);
        }
    } else if (act == LPE_ACT_GELU_NEW) {
        /* d/dx x s(2u) = s + x s (1 - s) 2 u',  s = sigmoid(2u) */
#pragma omp parallel for simd schedule(static) CPU_PAR(n)
        for (size_t i = 0; i < n; i++) {
            float x = h[i], u = SQRT2_PI * (x + GELU_C * x * x * x);
            float sg = 1.0f / (1.0f + fexp(-2.0f * u));
            y[i] = x * sg;
            if (keep_grad)
                h[i] = sg + x * sg * (1.0f - sg) * 2.0f * SQRT2_PI * (1.0f + 3.0f * GELU_C * x * x);
        }
    } else {
#pragma omp parallel for simd schedule(static) CPU_PAR(n)
        for (size_t i = 0; i < n; i++) {
            float x = h[i];
            y[i] = x > 0 ? x : 0.0f;
            if (keep_grad) h[i] = x > 0 ? 1.0f : 0.0f;
        }
    }
}

void cpu_mul(float *y, const float *d, size_t n) {
#pragma omp parallel for simd schedule(static) CPU_PAR(n)
    for (size_t i = 0; i < n; i++) y[i] *= d[i];
}
