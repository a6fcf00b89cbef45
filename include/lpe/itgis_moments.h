/* itgis_moments.h: ITGIS's per-target running moments (methods.md §4), one implementation for
 * the host and the device (kernels/cuda_itgis.cu), so that both backends fold the
 * contributions in with the same operations in the same order; and the names of the tables
 * the backend's itgis_read copies out (backend.h, "ITGIS operations").
 *
 * A target's contributions c = w 1[hit] are folded in one at a time, in row order (Welford:
 * numerically stable for the variance of heavy-tailed weights), together with sum w and
 * sum w^2 (the ESS) and the hit count. The estimate is `mean`, its standard error
 * sqrt(m2 / (n - 1) / n).
 */
#ifndef LPE_ITGIS_MOMENTS_H
#define LPE_ITGIS_MOMENTS_H

#include "lpe/philox.h" /* LPE_HD */

typedef struct {
    double n, mean, m2; /* count, running mean of c, sum of squared deviations of c */
    double sum_w, sum_w2, hits;
} lpe_itgis_moments;

/* what the backend's itgis_read copies out (backend.h) */
enum { LPE_ITGIS_MOMENTS = 0, LPE_ITGIS_S = 1, LPE_ITGIS_LOGW = 2 };

LPE_HD void lpe_itgis_moments_add(lpe_itgis_moments *m, double c, double w, int hit) {
    m->n += 1;
    double d = c - m->mean;
    m->mean += d / m->n;
    m->m2 += d * (c - m->mean);
    m->sum_w += w;
    m->sum_w2 += w * w;
    m->hits += hit;
}

#endif
