/* cuda_sample.cu: token sampling on the device from the alias tables uploaded by use_dist. The
 * draw itself is lpe_alias_draw (include/lpe/dist_draw.h), the very function src/dist.c calls,
 * so a (seed, stream, sample, position) gives the same token on both backends.
 *
 * Dimension legend: B rows, k positions, NS support entries, NF factors.
 */
#include "cuda_internal.cuh"
#include "lpe/dist_draw.h"

#define THREADS 256

/* thread = (b, j): tok[b, j] of sample first + b */
__global__ static void k_sample(int32_t *tok, const int32_t *values, const double *alias_prob,
                                const int32_t *alias_idx, const int64_t *offsets,
                                const int32_t *positions, uint64_t seed, uint32_t stream,
                                uint64_t first, int B, int k) {
    size_t total = (size_t)B * k;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        int b = (int)(i / k), j = (int)(i % k);
        int f = positions[j];
        int64_t a = offsets[f];
        uint32_t n = (uint32_t)(offsets[f + 1] - a);
        tok[i] = lpe_alias_draw(values + a, alias_prob + a, alias_idx + a, n, seed, stream,
                                first + (uint64_t)b, (uint32_t)j);
    }
}

void cuda_sample(cuda_impl *c, uint64_t seed, uint32_t stream, uint64_t first, int B) {
    size_t n = (size_t)B * c->k;
    k_sample<<<cuda_blocks(n, THREADS), THREADS>>>(c->tok, c->d_values, c->d_alias_prob,
                                                   c->d_alias_idx, c->d_offsets, c->d_positions,
                                                   seed, stream, first, B, c->k);
    CU_LAUNCH_CHECK();
}
