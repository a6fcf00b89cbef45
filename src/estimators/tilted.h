/* tilted.h: categoricals tilted by gradient scores, shared by ITGIS and MHIS.
 *
 *   q(y) = p(y) exp(g(y) / T) / Z,   Z = sum_y p(y) exp(g(y) / T),   y over a support of size n.
 *
 * All in float64 and log space: exp(g/T) overflows float for large scores at small T. The
 * shift by max_y (log p(y) + g(y)/T) keeps every exponent <= 0.
 */
#ifndef LPE_TILTED_H
#define LPE_TILTED_H

#include <stdint.h>

/* log Z and the normalised cumulative distribution cdf[n] (cdf[n-1] == 1). scores may be float
 * (gf) or double (gd); exactly one is non-NULL. */
double lpe_tilted_cdf(double *cdf, const double *log_p, const float *gf, const double *gd,
                      double inv_T, int n);
/* Index y with cdf[y-1] <= u < cdf[y] (binary search; u in [0, 1)). */
int lpe_tilted_pick(const double *cdf, int n, double u);
/* log q(y) = log p(y) + g(y)/T - log Z. */
static inline double lpe_tilted_logq(double log_p, double g, double inv_T, double log_Z) {
    return log_p + g * inv_T - log_Z;
}

#endif
