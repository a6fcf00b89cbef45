/* cuda_epilogue.cu: the unembedding epilogue. This first version reads the logits [B, V] that
 * the unembedding product wrote to global memory (a fused product + reduction is issue 10's).
 *
 * Dimension legend: B rows, V = d_vocab.
 *
 * One block per row; each thread scans a strided subset of the row, then the block combines:
 *   argmax: the largest value, ties to the lowest index (as the CPU's strict '>' scan);
 *   max logit, target logit l_t, margin l_t - max_{v != t} l_v;
 *   bad: 1 when any logit is NaN or infinite (the caller fails naming the first such row).
 */
#include <math.h>

#include "cuda_internal.cuh"

#define THREADS 256

/* (value, index) pairs: a beats b when larger, or equal with a lower index */
__device__ static bool beats(float va, int ia, float vb, int ib) {
    return va > vb || (va == vb && ia < ib);
}

__global__ static void k_epilogue(int32_t *argmax, float *maxl, float *tl, float *margin,
                                  int32_t *bad, const float *logits, const int32_t *targets,
                                  int V) {
    __shared__ float s_v[THREADS], s_o[THREADS]; /* best value, best value over v != t */
    __shared__ int s_i[THREADS], s_bad[THREADS];
    int b = blockIdx.x, tid = threadIdx.x;
    const float *lg = logits + (size_t)b * V; /* [V] */
    int t = targets ? targets[b] : -1;
    float best = -INFINITY, other = -INFINITY;
    int bi = V, nonfinite = 0; /* bi = V: "no index yet", loses every tie */
    for (int v = tid; v < V; v += THREADS) {
        float x = lg[v];
        if (!isfinite(x)) nonfinite = 1;
        if (beats(x, v, best, bi)) {
            best = x;
            bi = v;
        }
        if (v != t && x > other) other = x;
    }
    s_v[tid] = best, s_i[tid] = bi, s_o[tid] = other, s_bad[tid] = nonfinite;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (tid < s) {
            if (beats(s_v[tid + s], s_i[tid + s], s_v[tid], s_i[tid])) {
                s_v[tid] = s_v[tid + s];
                s_i[tid] = s_i[tid + s];
            }
            s_o[tid] = fmaxf(s_o[tid], s_o[tid + s]);
            s_bad[tid] |= s_bad[tid + s];
        }
        __syncthreads();
    }
    if (tid == 0) {
        argmax[b] = s_i[0] < V ? s_i[0] : 0; /* all -inf/NaN: index 0, and bad is set */
        maxl[b] = s_v[0];
        bad[b] = s_bad[0];
        if (targets) {
            tl[b] = lg[t];
            margin[b] = lg[t] - s_o[0];
        }
    }
}

void cuda_epilogue(cuda_impl *c, int B, int with_targets) {
    k_epilogue<<<B, THREADS>>>(c->o_argmax, c->o_max, c->o_target, c->o_margin, c->o_bad,
                               c->logits, with_targets ? c->targets : NULL, c->V);
    CU_LAUNCH_CHECK();
}
