/* cuda_unembed.cu: GLD's target logits (backend.h: target_logits) on the device:
 * out [n, T] = act [n, D] . W_U[:, targets] + b_U[targets], in float64 as the CPU backend's
 * (src/cpu/unembed.c). QLD's pair count is in cuda_qld.cu.
 *
 * Dimension legend: n = activation rows, D = d_model, V = d_vocab, T = targets, NB = rows per
 *   chunk (the activations travel to the device NB rows at a time).
 *
 * Precision: each product act_d W_U[d, t] of two float32 numbers is exact in float64 (24 + 24
 * significant bits < 53), so the result differs from the CPU's dgemm only by the order of the
 * D - 1 float64 additions (and both add b_U last): |out_gpu - out_cpu| <= 2 (D + 1) 2^-53
 * (sum_d |act_d W_U[d, t]| + |b_U[t]|), to first order; the test checks this bound.
 */
#include <stdlib.h>

#include "cuda_internal.cuh"
#include "lpe/common.h"
#include "lpe/size_table.h"

#define THREADS 256

/* Wt [D, T] = W_U[:, tg] and bt [T] = b_U[tg] in float64 (grid-stride over the entries of Wt) */
__global__ static void k_gather_targets(double *Wt, double *bt, const float *W_U, const float *b_U,
                                        const int32_t *tg, int D, int V, int T) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < (size_t)D * T;
         e += (size_t)gridDim.x * blockDim.x) {
        int d = (int)(e / T), t = (int)(e % T);
        Wt[e] = W_U[(size_t)d * V + tg[t]];
        if (d == 0 && b_U) bt[t] = b_U[tg[t]];
    }
}

/* out [nb, T]: thread = one (row, target); the lanes of a warp share a row (broadcast reads of
 * act) and read consecutive targets of Wt (coalesced). Sum over d in order, then + b (as the CPU:
 * the product first, the bias after). */
__global__ static void k_target_logits(double *out, const float *act, const double *Wt,
                                       const double *bt, int nb, int D, int T) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < (size_t)nb * T;
         e += (size_t)gridDim.x * blockDim.x) {
        size_t i = e / T;
        int t = (int)(e % T);
        const float *x = act + i * D; /* [D] */
        double s = 0;
        for (int d = 0; d < D; d++) s = fma((double)x[d], Wt[(size_t)d * T + t], s);
        out[e] = bt ? s + bt[t] : s;
    }
}

void cuda_target_logits(lpe_backend *be, double *out, const float *act, const int32_t *targets,
                        long long n, int T) {
    const cuda_impl *c = (const cuda_impl *)be->impl;
    const int D = c->D, V = c->V;
    for (int t = 0; t < T; t++)
        if (targets[t] < 0 || targets[t] >= V)
            lpe_fail("target_logits: target %d is outside the vocabulary [0, %d)", targets[t], V);
    if (n <= 0 || T <= 0) return;
    const int NB = n < 65536 ? (int)n : 65536;
    double *Wt = NULL, *bt = NULL, *o = NULL;
    float *x = NULL;
    int32_t *tg = NULL;
    lpe_slot s[8];
    int ns = 0;
    LPE_SLOT(s, ns, Wt, (size_t)D * T);
    LPE_SLOT(s, ns, bt, T);
    LPE_SLOT(s, ns, o, (size_t)NB * T);
    LPE_SLOT(s, ns, x, (size_t)NB * D);
    LPE_SLOT(s, ns, tg, T);
    char *base = NULL;
    CU_CHECK(cudaMalloc((void **)&base, lpe_carve(s, ns, NULL, 256)));
    lpe_carve(s, ns, base, 256);
    CU_CHECK(cudaMemcpy(tg, targets, (size_t)T * sizeof *tg, cudaMemcpyHostToDevice));
    const float *b_U = c->w->b_U;
    k_gather_targets<<<cuda_blocks((size_t)D * T, THREADS), THREADS>>>(Wt, bt, c->w->W_U, b_U, tg,
                                                                       D, V, T);
    CU_LAUNCH_CHECK();
    for (long long r0 = 0; r0 < n; r0 += NB) {
        int nb = (int)(n - r0 < NB ? n - r0 : NB);
        CU_CHECK(cudaMemcpy(x, act + (size_t)r0 * D, (size_t)nb * D * sizeof *x,
                            cudaMemcpyHostToDevice));
        k_target_logits<<<cuda_blocks((size_t)nb * T, THREADS), THREADS>>>(o, x, Wt,
                                                                           b_U ? bt : NULL, nb,
                                                                           D, T);
        CU_LAUNCH_CHECK();
        CU_CHECK(cudaMemcpy(out + (size_t)r0 * T, o, (size_t)nb * T * sizeof *o,
                            cudaMemcpyDeviceToHost));
    }
    CU_CHECK(cudaFree(base));
}
