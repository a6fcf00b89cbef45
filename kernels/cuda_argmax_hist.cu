/* cuda_argmax_hist.cu: the backend's argmax histogram (backend.h: argmax_hist_add / take) on the
 * device: ground truth and naive sampling count argmax values here and read the counts at
 * checkpoints, instead of copying every batch's argmax to the host (issue 9 item 3).
 *
 * Dimension legend: B = rows of the last forward, V = d_vocab.
 *
 * The histogram am_hist [V] (uint64) is part of the batch allocation (cuda_backend.cu), zeroed
 * at creation and by every take. Counting is integer addition, so the order of the atomics does
 * not matter: the counts are exactly those of a loop over the rows on the host.
 */
#include <stdlib.h>

#include "cuda_internal.cuh"
#include "lpe/common.h"

#define THREADS 256

/* hist[argmax[b]] += 1 for b in [r0, r1) (grid-stride over the rows) */
__global__ static void k_hist_add(unsigned long long *hist, const int32_t *argmax, int r0, int r1) {
    for (int b = r0 + (int)(blockIdx.x * blockDim.x + threadIdx.x); b < r1;
         b += (int)(gridDim.x * blockDim.x))
        atomicAdd(hist + argmax[b], 1ULL);
}

void cuda_argmax_hist_add(lpe_backend *be, int r0, int r1) {
    cuda_impl *c = (cuda_impl *)be->impl;
    if (r0 < 0 || r1 < r0 || r1 > c->B_last)
        lpe_fail("cuda backend argmax_hist_add: rows [%d, %d) of a forward of %d rows", r0, r1,
                 c->B_last);
    if (r1 == r0) return;
    /* o_argmax is in [0, V) by construction (cuda_epilogue.cu: index 0 for a row without a
     * finite maximum, which forward has refused already) */
    k_hist_add<<<cuda_blocks((size_t)(r1 - r0), THREADS), THREADS>>>(c->am_hist, c->o_argmax, r0,
                                                                      r1);
    CU_LAUNCH_CHECK();
}

void cuda_argmax_hist_take(lpe_backend *be, uint64_t *counts) {
    cuda_impl *c = (cuda_impl *)be->impl;
    unsigned long long *h = (unsigned long long *)lpe_calloc((size_t)c->V, sizeof *h); /* [V] */
    CU_CHECK(cudaMemcpy(h, c->am_hist, (size_t)c->V * sizeof *h, cudaMemcpyDeviceToHost));
    CU_CHECK(cudaMemset(c->am_hist, 0, (size_t)c->V * sizeof *h));
    for (int v = 0; v < c->V; v++) counts[v] += (uint64_t)h[v];
    free(h);
}
