/* cpu_argmax_hist.c: the backend's argmax histogram (backend.h: argmax_hist_add / take): the
 * counts of argmax values over the rows of successive forwards, kept in the workspace, which
 * ground truth (src/truth.c) and naive sampling read at checkpoints instead of per batch.
 *
 * Dimension legend: Bm = max rows, V = d_vocab.
 *
 * The forward stores each row's argmax (ties: lowest index) in am_last [Bm]; the histogram
 * am_hist [V] is part of the batch allocation (cpu_backend.c), zero at creation.
 */
#include "cpu_internal.h"
#include "lpe/common.h"

void cpu_argmax_hist_add(lpe_backend *be, int r0, int r1) {
    cpu_impl *c = be->impl;
    if (r0 < 0 || r1 < r0 || r1 > c->B_last)
        lpe_fail("cpu backend argmax_hist_add: rows [%d, %d) of a forward of %d rows", r0, r1,
                 c->B_last);
    for (int b = r0; b < r1; b++) {
        int32_t v = c->am_last[b];
        LPE_ASSERT(v >= 0 && v < c->V);
        c->am_hist[v]++;
    }
}

void cpu_argmax_hist_take(lpe_backend *be, uint64_t *counts) {
    cpu_impl *c = be->impl;
    for (int v = 0; v < c->V; v++) {
        counts[v] += c->am_hist[v];
        c->am_hist[v] = 0;
    }
}
