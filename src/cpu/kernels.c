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
#pragma omp parallel for schedule(static)
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
#pragma omp parallel for schedule(static)
    for (int r = 0; r < M; r++) {
        const float *xr = x + (size_t)r * ldx; /* [D] */
        float *yr = y + (size_t)r * ldy;       /* [D] */
        /* two passes in float64: the variance of a residual stream with a large mean would lose
         * digits in a one-pass float formula */
        double s = 0;
        for (int i = 0; i < D; i++) s += xr[i];
        double m = s / D, v = 0;
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
#pragma omp parallel for schedule(static)
    for (int r = 0; r < M; r++) {
        const float *xr = x + (size_t)r * ldxin; /* [D] */
        const float *dyr = dy + (size_t)r * ldy; /* [D] */
        float *dxr = dx + (size_t)r * ldx;       /* [D] */
        const float *rr = resid ? resid + (size_t)r * ldr : NULL; /* [D] */
        float m = mu[r], s = rs[r];
        double sg = 0, sgx = 0;
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

#define SQRT1_2 0.70710678118654752440f
#define SQRT2_PI 0.79788456080286535588f   /* sqrt(2/pi) */
#define INV_SQRT_2PI 0.39894228040143267794f /* 1/sqrt(2 pi) */

void cpu_act_fwd(float *y, const float *h, size_t n, int act) {
    if (act == LPE_ACT_GELU) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) y[i] = 0.5f * h[i] * (1.0f + erff(h[i] * SQRT1_2));
    } else if (act == LPE_ACT_GELU_NEW) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            float x = h[i];
            y[i] = 0.5f * x * (1.0f + tanhf(SQRT2_PI * (x + 0.044715f * x * x * x)));
        }
    } else {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) y[i] = h[i] > 0 ? h[i] : 0.0f;
    }
}

void cpu_act_bwd(float *dy, const float *h, size_t n, int act) {
    if (act == LPE_ACT_GELU) {
        /* d/dx x Phi(x) = Phi(x) + x phi(x) */
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            float x = h[i];
            float d = 0.5f * (1.0f + erff(x * SQRT1_2)) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
            dy[i] *= d;
        }
    } else if (act == LPE_ACT_GELU_NEW) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            float x = h[i];
            float t = tanhf(SQRT2_PI * (x + 0.044715f * x * x * x));
            float d = 0.5f * (1.0f + t) +
                      0.5f * x * (1.0f - t * t) * SQRT2_PI * (1.0f + 3.0f * 0.044715f * x * x);
            dy[i] *= d;
        }
    } else {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++)
            if (!(h[i] > 0)) dy[i] = 0.0f;
    }
}
