/* qld_count.h: the last step of QLD's pair count (methods.md §4), shared by the host reference
 * (src/qld_core.c: lpe_qld_count_range, lpe_qld_count_pairs) and the fused CUDA kernel
 * (kernels/cuda_qld.cu), so that both count a row's interval with the same code: the same
 * closed-interval rule (a sample exactly on a bound is counted) and the same NaN rule (a NaN
 * bound counts nothing).
 *
 * Dimension legend: n = samples (the sorted split coefficients a_i of one target).
 */
#ifndef LPE_QLD_COUNT_H
#define LPE_QLD_COUNT_H

#include <stdint.h>

#include "lpe/philox.h" /* LPE_HD */

/* #{i : lo <= a[i] <= hi} for a [n] ascending: two binary searches, O(log n). */
LPE_HD int64_t lpe_qld_count_sorted(const double *a /* [n] */, int n, double lo, double hi) {
    if (!(lo <= hi)) return 0; /* empty, or a NaN bound */
    int l = 0, r = n;          /* first a >= lo */
    while (l < r) {
        int mid = l + (r - l) / 2;
        if (a[mid] < lo) l = mid + 1; else r = mid;
    }
    int first = l;
    r = n; /* first a > hi */
    while (l < r) {
        int mid = l + (r - l) / 2;
        if (a[mid] <= hi) l = mid + 1; else r = mid;
    }
    return (int64_t)(l - first);
}

#endif
