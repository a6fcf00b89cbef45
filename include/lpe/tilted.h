/* tilted.h: categoricals tilted by gradient scores, one implementation for the host (ITGIS,
 * MHIS, ams, smc) and the device (kernels/), so that both backends draw the same proposals.
 *
 *   q(y) = p(y) exp(g(y) / T) / Z,   Z = sum_y p(y) exp(g(y) / T),   y over a support of size n.
 *
 * Dimension legend: n = support size of one position.
 *
 * All in float64 and log space: exp(g/T) overflows float for large scores at small T. The
 * shift by max_y (log p(y) + g(y)/T) keeps every exponent <= 0.
 */
#ifndef LPE_TILTED_H
#define LPE_TILTED_H

#include <math.h>
#include <stdint.h>

#include "lpe/philox.h" /* LPE_HD */

/* log Z and the normalised cumulative distribution cdf[n] (cdf[n-1] == 1). scores may be float
 * (gf) or double (gd); exactly one is non-NULL. */
LPE_HD double lpe_tilted_cdf(double *cdf /* [n] */, const double *log_p /* [n] */,
                             const float *gf /* [n] or NULL */, const double *gd /* [n] or NULL */,
                             double inv_T, int n) {
    double mx = -INFINITY;
    for (int y = 0; y < n; y++) {
        double e = log_p[y] + (gf ? (double)gf[y] : gd[y]) * inv_T;
        cdf[y] = e;
        if (e > mx) mx = e;
    }
    double s = 0;
    for (int y = 0; y < n; y++) {
        s += exp(cdf[y] - mx);
        cdf[y] = s;
    }
    for (int y = 0; y < n; y++) cdf[y] /= s;
    cdf[n - 1] = 1.0; /* rounding must not leave a gap above the last entry */
    return mx + log(s);
}

/* Index y with cdf[y-1] <= u < cdf[y] (binary search; u in [0, 1)). */
LPE_HD int lpe_tilted_pick(const double *cdf /* [n] */, int n, double u) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (u < cdf[mid]) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* log q(y) = log p(y) + g(y)/T - log Z. */
LPE_HD double lpe_tilted_logq(double log_p, double g, double inv_T, double log_Z) {
    return log_p + g * inv_T - log_Z;
}

#endif
