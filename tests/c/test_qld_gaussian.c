/* test_qld_gaussian.c: QLD where its assumption holds (methods.md §4): activations v ~ N(mu, Sigma).
 *
 * Dimension legend: D = d_model, V = vocabulary, n = activation samples per run, R = runs,
 *   N = Monte Carlo samples of the truth.
 *
 * Whitened Gaussian activations have independent coordinates, so a_i and b_j are independent and
 * the pair count is a U-statistic for Pr[t = argmax], whatever the direction: the paper variant
 * must match the true probability (mean of R independent runs within a few standard errors). The
 * arc variant scores the wrong logits (v A^T W_U instead of v W_U, methods.md §4 (i)) and must not.
 * The truth: N = 2^24 float64 Monte Carlo samples of the same Gaussian (relative SE ~1% at the
 * chosen p ~ 1e-3), independent of every QLD code path.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lpe/common.h"
#include "lpe/philox.h"
#include "lpe/qld_core.h"

enum { D = 4, V = 10, R = 8, LOG2_N = 12, LOG2_MC = 24 };

/* standard normal pair from one Philox call (Box-Muller) */
static void gauss2(double *g, uint64_t seed, uint32_t slot, uint64_t idx) {
    uint32_t w[4];
    lpe_rng4(w, seed, lpe_stream(LPE_STREAM_TEST, slot), idx, 0);
    double u = lpe_u01_53(w[0], w[1]), v = lpe_u01_53(w[2], w[3]);
    double r = sqrt(-2 * log(1 - u));
    g[0] = r * cos(2 * M_PI * v);
    g[1] = r * sin(2 * M_PI * v);
}

/* v = mu + g B, g standard normal [D] */
static void draw(double *v, const double *mu, const double *B, uint64_t seed, uint32_t slot,
                 uint64_t idx) {
    double g[D];
    for (int k = 0; k < D; k += 2) gauss2(g + k, seed, slot, idx * (D / 2) + k / 2);
    for (int k = 0; k < D; k++) {
        v[k] = mu[k];
        for (int q = 0; q < D; q++) v[k] += g[q] * B[q * D + k];
    }
}

int main(void) {
    /* the model: W_U, b_U; the activation law: mu, B (Sigma = B^T B), far from white so that
     * the arc variant's logits really differ */
    float W[D * V], bU[V];
    double mu[D], B[D * D], g[2];
    for (int q = 0; q < D * V; q += 2) {
        gauss2(g, 1, 1, (uint64_t)q);
        W[q] = (float)g[0];
        W[q + 1] = (float)g[1];
    }
    for (int q = 0; q < V; q += 2) {
        gauss2(g, 1, 2, (uint64_t)q);
        bU[q] = (float)(0.3 * g[0]);
        bU[q + 1] = (float)(0.3 * g[1]);
    }
    for (int q = 0; q < D; q += 2) {
        gauss2(g, 1, 3, (uint64_t)q);
        mu[q] = g[0];
        mu[q + 1] = g[1];
    }
    const double scale[D] = {0.4, 0.9, 1.6, 2.5};
    for (int q = 0; q < D * D; q += 2) {
        gauss2(g, 1, 4, (uint64_t)q);
        B[q] = g[0] * scale[q / D] * 0.7 + (q % D == q / D ? scale[q / D] : 0);
        B[q + 1] = g[1] * scale[(q + 1) / D] * 0.7 + ((q + 1) % D == (q + 1) / D ? scale[q / D] : 0);
    }

    /* truth by Monte Carlo, float64 */
    const uint64_t N = 1ull << LOG2_MC;
    double hits[V] = {0};
#pragma omp parallel
    {
        double loc[V] = {0}, v[D];
#pragma omp for schedule(static)
        for (long long i = 0; i < (long long)N; i++) {
            draw(v, mu, B, 2, 5, (uint64_t)i);
            int am = 0;
            double best = -INFINITY;
            for (int u = 0; u < V; u++) {
                double l = bU[u];
                for (int k = 0; k < D; k++) l += v[k] * W[k * V + u];
                if (l > best) best = l, am = u;
            }
            loc[am] += 1;
        }
#pragma omp critical
        for (int u = 0; u < V; u++) hits[u] += loc[u];
    }
    int t = -1;
    for (int u = 0; u < V; u++) { /* the token closest to 1e-3 among those in [2e-4, 5e-3] */
        double p = hits[u] / N;
        if (p >= 2e-4 && p <= 5e-3 && (t < 0 || fabs(log(p / 1e-3)) < fabs(log(hits[t] / N / 1e-3))))
            t = u;
    }
    CHECK(t >= 0, "no token with probability in [2e-4, 5e-3] (the test's model needs changing)");
    if (t < 0) return check_summary("test_qld_gaussian");
    const double p = hits[t] / N, p_se = sqrt(p / N);

    /* R independent QLD runs per variant */
    const int n = 1 << LOG2_N;
    float *act = lpe_calloc((size_t)n * D, sizeof *act); /* [n, D] */
    double est[2][R];
    for (int r = 0; r < R; r++) {
        double v[D];
        for (int i = 0; i < n; i++) {
            draw(v, mu, B, 100 + (uint64_t)r, 6, (uint64_t)i);
            for (int k = 0; k < D; k++) act[(size_t)i * D + k] = (float)v[k];
        }
        for (int var = 0; var < 2; var++) {
            lpe_qld_opts o;
            lpe_qld_opts_default(&o);
            o.variant = var;
            o.seed = 7 + (uint64_t)r;
            lpe_qld_dir info;
            int32_t tt = t;
            lpe_qld_estimate(&est[var][r], NULL, &info, NULL, act, W, bU, &tt, 1, n, D, V, &o);
            CHECK(info.status != LPE_QLD_INFEASIBLE, "variant %d run %d: infeasible", var, r);
        }
    }
    double mean[2], se[2];
    for (int var = 0; var < 2; var++) {
        double s = 0, ss = 0;
        for (int r = 0; r < R; r++) s += est[var][r];
        mean[var] = s / R;
        for (int r = 0; r < R; r++) ss += (est[var][r] - mean[var]) * (est[var][r] - mean[var]);
        se[var] = sqrt(ss / (R - 1) / R);
    }
    printf("target %d: truth %.4e (MC SE %.1e) | paper QLD %.4e +- %.1e | arc QLD %.4e +- %.1e\n", t,
           p, p_se, mean[0], se[0], mean[1], se[1]);
    /* paper: within 4 combined standard errors (the finite-n bias of estimating mu, Sigma and d
     * from the same 4096 samples is O(1/n), far inside that) */
    double tol = 4 * sqrt(se[0] * se[0] + p_se * p_se);
    CHECK(fabs(mean[0] - p) <= tol, "paper variant %.4e vs truth %.4e: off by %.2e > %.2e", mean[0], p,
          fabs(mean[0] - p), tol);
    /* arc: far outside (at least 10 combined standard errors and 30% off) */
    double dev = fabs(mean[1] - p), sa = sqrt(se[1] * se[1] + p_se * p_se);
    CHECK(dev > 10 * sa && dev > 0.3 * p, "arc variant %.4e is too close to the truth %.4e", mean[1], p);
    free(act);
    return check_summary("test_qld_gaussian");
}
