/* dist_draw.h: one token of one sample from a factor's Walker alias table (dist.h), the single
 * implementation that the CPU (src/dist.c) and the GPU (kernels/cuda_sample.cu) both call, so
 * that a given (seed, stream, sample, position) gives the same token on every backend.
 *
 * Dimension legend: n_f = support size of the factor; the three arrays point at the factor's
 *   first entry (values + offsets[f], ...), each [n_f].
 *
 * Philox layout (philox.h): word 0 of lpe_rng4(seed, stream, index, j) picks the column, words
 * 1-2 the 53-bit coin that keeps the column (u < alias_prob) or takes its alias.
 */
#ifndef LPE_DIST_DRAW_H
#define LPE_DIST_DRAW_H

#include <stdint.h>

#include "lpe/philox.h"

LPE_HD int32_t lpe_alias_draw(const int32_t *values /* [n_f] */,
                              const double *alias_prob /* [n_f] */,
                              const int32_t *alias_idx /* [n_f] */, uint32_t n_f, uint64_t seed,
                              uint32_t stream, uint64_t index, uint32_t j) {
    if (n_f == 1) return values[0]; /* constant position: the draw would be discarded anyway */
    uint32_t w[4];
    lpe_rng4(w, seed, stream, index, j);
    uint32_t col = lpe_below(w[0], n_f);
    double u = lpe_u01_53(w[1], w[2]);
    int32_t local = u < alias_prob[col] ? (int32_t)col : alias_idx[col];
    return values[local];
}

#endif
