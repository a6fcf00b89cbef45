/* tilted.c: see tilted.h. */
#include "tilted.h"

#include <math.h>

double lpe_tilted_cdf(double *cdf, const double *log_p, const float *gf, const double *gd,
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

int lpe_tilted_pick(const double *cdf, int n, double u) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (u < cdf[mid]) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}
