/* test_qld.c: QLD and GLD mathematics (src/qld_core.c) against independent references.
 *
 * Dimension legend: n = samples, D = d_model, V = vocabulary, nc = constraints (V - 1).
 *
 *   whitening     A A^T = Sigma + ridge I against a float64 covariance; z P^T + c = v W_U + b_U
 *   direction     Hildreth against exhaustive enumeration of active sets (every KKT point of a
 *                 convex problem is its optimum) on tiny cases; feasibility and "not longer than
 *                 the public heuristic" on larger ones; an infeasible target certified
 *   pair count    the O(n log n) count equal to the O(n^2 V) definition, both variants, every
 *                 target of small random problems
 *   GLD           log Phi against tabulated values, the erfc formula and the asymptotic series
 *                 at -40; the fit against hand-computed moments
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lpe/common.h"
#include "lpe/philox.h"
#include "lpe/qld_core.h"

static uint64_t g_ctr;
static double unif(void) {
    uint32_t w[4];
    lpe_rng4(w, 12345, lpe_stream(LPE_STREAM_TEST, 9), g_ctr++, 0);
    return lpe_u01_53(w[0], w[1]);
}
static double gauss(void) {
    double u = unif(), v = unif();
    return sqrt(-2 * log(1 - u)) * cos(2 * M_PI * v);
}

static double dotd(const double *a, const double *b, int D) {
    double s = 0;
    for (int k = 0; k < D; k++) s += a[k] * b[k];
    return s;
}

/* ---- whitening --------------------------------------------------------------------------- */

static void test_whitening(void) {
    enum { n = 300, D = 5, V = 7 };
    static float v[n * D], W[D * V], bU[V];
    double mix[D * D];
    for (int k = 0; k < D * D; k++) mix[k] = gauss();
    for (int i = 0; i < n; i++) /* correlated rows with an offset: v = 3 + g M */
        for (int k = 0; k < D; k++) {
            double s = 3;
            for (int q = 0; q < D; q++) s += gauss() * mix[q * D + k];
            v[i * D + k] = (float)s;
        }
    for (int k = 0; k < D * V; k++) W[k] = (float)gauss();
    for (int k = 0; k < V; k++) bU[k] = (float)gauss();
    double mu[D], A[D * D], Sg[D * D] = {0}, mref[D] = {0};
    const double ridge = 1e-5;
    lpe_qld_whiten(mu, A, v, n, D, ridge);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < D; k++) mref[k] += v[i * D + k] / (double)n;
    for (int i = 0; i < n; i++)
        for (int a = 0; a < D; a++)
            for (int b = 0; b < D; b++)
                Sg[a * D + b] += (v[i * D + a] - mref[a]) * (v[i * D + b] - mref[b]) / n;
    /* float64 sums of float32 data in different orders: agree to ~1e-14 relative */
    for (int k = 0; k < D; k++) CHECK_CLOSE(mu[k], mref[k], 1e-12, 1e-12);
    for (int a = 0; a < D; a++)
        for (int b = 0; b < D; b++) {
            double s = 0;
            for (int q = 0; q < D; q++) s += A[a * D + q] * A[b * D + q];
            CHECK_CLOSE(s, Sg[a * D + b] + (a == b ? ridge : 0), 1e-11, 1e-11);
            if (b > a) CHECK(A[a * D + b] == 0, "A not lower triangular at %d,%d", a, b);
        }
    /* the decomposition's logits are the model's logits, in both directions of the identity */
    static double z[n * D], P[V * D], c[V];
    lpe_qld_rows(z, v, mu, A, n, D, LPE_QLD_PAPER);
    lpe_qld_pullback(P, c, W, bU, mu, A, D, V);
    double err = 0, cov00 = 0;
    for (int i = 0; i < n; i++) {
        cov00 += z[i * D] * z[i * D] / n;
        for (int u = 0; u < V; u++) {
            double l1 = dotd(z + i * D, P + u * D, D) + c[u], l2 = bU[u];
            for (int k = 0; k < D; k++) l2 += (double)v[i * D + k] * W[k * V + u];
            if (fabs(l1 - l2) > err) err = fabs(l1 - l2);
        }
    }
    CHECK(err < 1e-10, "z P^T + c differs from v W_U + b_U by %g", err);
    /* whitened variance 1 - ridge (A^{-1} A^{-T})_00: within 1e-3 for this spread */
    CHECK_CLOSE(cov00, 1.0, 1e-3, 0);
    /* arc rows: u = v - mu A^{-T}, so u - z = (v - mu A^{-T}) - (v - mu) A^{-T} = v - v A^{-T} */
    static double u[n * D], vz[n * D];
    lpe_qld_rows(u, v, mu, A, n, D, LPE_QLD_ARC);
    double mz[D] = {0};
    lpe_qld_rows(vz, v, mz, A, n, D, LPE_QLD_PAPER); /* v A^{-T} */
    err = 0;
    for (int q = 0; q < n * D; q++) err = check_nanmax(err, fabs((u[q] - z[q]) - (v[q] - vz[q])));
    CHECK(err < 1e-9, "arc rows off by %g", err);
}

/* ---- direction: brute force -------------------------------------------------------------- */

/* Solve the k x k system M x = r (k <= 3) by Gaussian elimination with pivoting; -1 if singular. */
static int solve_small(double *x, double *M, double *r, int k) {
    for (int col = 0; col < k; col++) {
        int piv = col;
        for (int i = col + 1; i < k; i++)
            if (fabs(M[i * k + col]) > fabs(M[piv * k + col])) piv = i;
        if (fabs(M[piv * k + col]) < 1e-12) return -1;
        for (int j = 0; j < k; j++) {
            double tmp = M[col * k + j];
            M[col * k + j] = M[piv * k + j];
            M[piv * k + j] = tmp;
        }
        double tmp = r[col];
        r[col] = r[piv];
        r[piv] = tmp;
        for (int i = col + 1; i < k; i++) {
            double f = M[i * k + col] / M[col * k + col];
            for (int j = col; j < k; j++) M[i * k + j] -= f * M[col * k + j];
            r[i] -= f * r[col];
        }
    }
    for (int i = k - 1; i >= 0; i--) {
        double s = r[i];
        for (int j = i + 1; j < k; j++) s -= M[i * k + j] * x[j];
        x[i] = s / M[i * k + i];
    }
    return 0;
}

/* Minimum-norm feasible point by enumerating active sets S (|S| <= D <= 3): the KKT point with
 * active set S is z = G_S^T mu, G_S G_S^T mu = -h_S, valid when mu >= 0 and every constraint
 * holds. Returns the smallest valid norm, or -1 when no active set is valid (infeasible). */
static double brute_min_norm(double *zbest, const double *P, const double *c, int t, int V, int D) {
    int nc = 0, cidx[16];
    for (int v = 0; v < V; v++)
        if (v != t) cidx[nc++] = v;
    double best = -1;
    for (int mask = 0; mask < (1 << nc); mask++) {
        int S[3], k = 0;
        for (int q = 0; q < nc; q++)
            if (mask >> q & 1) {
                if (k == D) goto next;
                S[k++] = cidx[q];
            }
        {
            double G[3][3], M[9], r[3], muv[3], z[3] = {0, 0, 0};
            for (int a = 0; a < k; a++)
                for (int q = 0; q < D; q++) G[a][q] = P[t * D + q] - P[S[a] * D + q];
            for (int a = 0; a < k; a++) {
                for (int b = 0; b < k; b++) M[a * k + b] = dotd(G[a], G[b], D);
                r[a] = -(c[t] - c[S[a]]);
            }
            if (k > 0 && solve_small(muv, M, r, k) != 0) goto next;
            for (int a = 0; a < k; a++) {
                if (muv[a] < -1e-12) goto next;
                for (int q = 0; q < D; q++) z[q] += muv[a] * G[a][q];
            }
            for (int v = 0; v < V; v++) {
                if (v == t) continue;
                double m = c[t] - c[v];
                for (int q = 0; q < D; q++) m += (P[t * D + q] - P[v * D + q]) * z[q];
                if (m < -1e-9) goto next;
            }
            double nz = sqrt(dotd(z, z, D));
            if (best < 0 || nz < best) {
                best = nz;
                memcpy(zbest, z, (size_t)D * sizeof *z);
            }
        }
    next:;
    }
    return best;
}

static void test_direction_brute(void) {
    int n_feasible = 0, n_infeasible = 0, n_nonzero = 0;
    for (int rep = 0; rep < 400; rep++) {
        int D = rep % 3 == 2 ? 3 : 2, V = 3 + rep % 3; /* V in 3..5, D in 2..3 */
        double P[5 * 3], c[5], z[3], zb[3];
        for (int q = 0; q < V * D; q++) P[q] = gauss();
        for (int v = 0; v < V; v++) c[v] = 2 * gauss();
        int t = (int)(unif() * V);
        double want = brute_min_norm(zb, P, c, t, V, D);
        lpe_qld_dir info;
        lpe_qld_direction(z, &info, P, c, t, V, D, 100.0);
        if (want < 0) { /* infeasible: must be certified within the radius asked for */
            n_infeasible++;
            CHECK(info.status == LPE_QLD_INFEASIBLE, "rep %d: infeasible but status %d (worst %g)",
                  rep, info.status, info.worst_margin);
            continue;
        }
        n_feasible++;
        n_nonzero += want > 0;
        CHECK(info.status == LPE_QLD_OPTIMAL, "rep %d: status %d", rep, info.status);
        /* exact KKT solves on both sides: agreement to rounding of O(1) quantities */
        CHECK_CLOSE(info.norm, want, 1e-9, 1e-9);
        for (int q = 0; q < D; q++) CHECK_CLOSE(z[q], zb[q], 1e-8, 1e-8);
        CHECK(info.worst_margin >= -1e-9, "rep %d: worst margin %g", rep, info.worst_margin);
    }
    CHECK(n_infeasible >= 5 && n_nonzero >= 100, "too few interesting cases: %d infeasible, %d "
          "nonzero of %d feasible", n_infeasible, n_nonzero, n_feasible);
    printf("direction vs enumeration: %d feasible (%d with z* != 0), %d infeasible\n", n_feasible,
           n_nonzero, n_infeasible);
}

/* Larger random problems: a rare target (lowest bias, small unembedding row), so that most of
 * the vocabulary is violated at z = 0 and the working set must grow. */
static void test_direction_vs_arc(void) {
    enum { D = 12, V = 400 };
    static double P[V * D], c[V], z[D], za[D];
    int n_arc_ok = 0;
    for (int rep = 0; rep < 8; rep++) {
        for (int q = 0; q < V * D; q++) P[q] = gauss();
        for (int v = 0; v < V; v++) c[v] = gauss();
        int t = rep * 7 % V;
        c[t] = -3 - rep;
        for (int q = 0; q < D; q++) P[t * D + q] *= 2.5; /* far out: a vertex of the hull */
        lpe_qld_dir h, a;
        lpe_qld_direction(z, &h, P, c, t, V, D, 0);
        lpe_qld_direction_arc(za, &a, P, c, t, V, D, 7, lpe_stream(LPE_STREAM_QLD, (uint32_t)t));
        CHECK(h.status == LPE_QLD_OPTIMAL, "rep %d: hildreth status %d", rep, h.status);
        CHECK(h.worst_margin >= -1e-9, "rep %d: hildreth worst margin %g", rep, h.worst_margin);
        /* The heuristic stops only when a projection lands every margin on the right side of 0,
         * which in float64 may never happen within its 20000 steps when several constraints are
         * active (it then keeps its last, nearly feasible point): compare lengths only when it
         * stopped, and require most runs to stop. */
        if (a.status == LPE_QLD_OPTIMAL) {
            n_arc_ok++;
            CHECK(a.worst_margin >= 0, "rep %d: arc worst margin %g", rep, a.worst_margin);
            CHECK(h.norm <= a.norm * (1 + 1e-12) + 1e-12, "rep %d: hildreth |z| %.12g > arc %.12g",
                  rep, h.norm, a.norm);
        } else {
            CHECK(a.status == LPE_QLD_NOT_CONVERGED && a.worst_margin > -1e-6,
                  "rep %d: arc status %d, worst margin %g", rep, a.status, a.worst_margin);
        }
        /* optimality without enumeration: no feasible point on the segment towards the arc
         * point is shorter, and shrinking z* by 1e-6 breaks feasibility */
        double m[V], zs[D];
        for (int q = 0; q < D; q++) zs[q] = z[q] * (1 - 1e-6);
        lpe_qld_margins(m, zs, P, c, t, V, D);
        double worst = INFINITY;
        for (int v = 0; v < V; v++) worst = fmin(worst, m[v]);
        CHECK(worst < 0, "rep %d: 0.999999 z* still feasible (margin %g)", rep, worst);
        printf("rep %d: |z*| %.6f (%d rounds, %lld sweeps, %d active) | arc |z| %.6f (%lld steps)\n",
               rep, h.norm, h.rounds, h.iterations, h.n_active, a.norm, a.iterations);
    }
    CHECK(n_arc_ok >= 4, "the heuristic stopped in only %d of 8 runs", n_arc_ok);
}

/* P_t = (P_1 + P_2) / 2 and c_t below the mean of c_1, c_2: l_t < max(l_1, l_2) everywhere. */
static void test_infeasible(void) {
    enum { D = 3, V = 5 };
    double P[V * D], c[V] = {0.5, 1, 2, -1, 0.3}, z[D];
    for (int q = 0; q < V * D; q++) P[q] = gauss();
    int t = 0;
    for (int q = 0; q < D; q++) P[t * D + q] = 0.5 * (P[1 * D + q] + P[2 * D + q]);
    c[t] = 0.5 * (c[1] + c[2]) - 0.01;
    lpe_qld_dir info;
    lpe_qld_direction(z, &info, P, c, t, V, D, 50.0);
    CHECK(info.status == LPE_QLD_INFEASIBLE, "status %d, worst %g", info.status, info.worst_margin);
}

/* ---- the pair count ---------------------------------------------------------------------- */

static void test_count_vs_brute(int variant) {
    enum { n = 48, D = 3, V = 9 };
    static float v[n * D], W[D * V], bU[V];
    static double z[n * D], P[V * D], c[V], dirs[V * D], est[V], mu[D], A[D * D];
    int64_t cnt[V];
    int32_t targets[V];
    lpe_qld_dir info[V];
    int64_t total = 0, n_mid = 0;
    for (int rep = 0; rep < 4; rep++) {
        for (int i = 0; i < n * D; i++) v[i] = (float)(gauss() * (1 + i % D) + 0.5);
        for (int q = 0; q < D * V; q++) W[q] = (float)gauss();
        for (int u = 0; u < V; u++) bU[u] = (float)(0.5 * gauss()), targets[u] = u;
        lpe_qld_opts o;
        lpe_qld_opts_default(&o);
        o.variant = variant;
        o.block_rows = 20; /* several blocks, one partial */
        o.seed = 99;
        lpe_qld_estimate(est, cnt, info, dirs, v, W, bU, targets, V, n, D, V, &o);
        lpe_qld_whiten(mu, A, v, n, D, o.ridge);
        lpe_qld_rows(z, v, mu, A, n, D, variant);
        lpe_qld_pullback(P, c, W, bU, mu, A, D, V);
        for (int t = 0; t < V; t++) {
            int64_t want = lpe_qld_count_brute(z, dirs + t * D, P, c, t, n, V, D, variant);
            CHECK(cnt[t] == want, "variant %d rep %d target %d: count %lld, definition %lld", variant,
                  rep, t, (long long)cnt[t], (long long)want);
            CHECK_CLOSE(est[t], (double)want / (n * n), 0, 1e-15);
            total += want;
            n_mid += want > 0 && want < n * n;
        }
    }
    CHECK(n_mid >= 8, "variant %d: only %lld targets with a nontrivial count", variant,
          (long long)n_mid);
    printf("count vs definition (variant %d): %lld pairs accepted in total, %lld nontrivial\n",
           variant, (long long)total, (long long)n_mid);
}

static void test_count_range(void) {
    double a[] = {-2, -1, -1, 0, 0.5, 0.5, 3};
    CHECK(lpe_qld_count_range(a, 7, -1, 0.5) == 5, "closed interval with ties");
    CHECK(lpe_qld_count_range(a, 7, -INFINITY, INFINITY) == 7, "everything");
    CHECK(lpe_qld_count_range(a, 7, 1, 0) == 0, "empty interval");
    CHECK(lpe_qld_count_range(a, 7, 3.5, INFINITY) == 0, "above all");
    CHECK(lpe_qld_count_range(a, 7, NAN, 1) == 0, "NaN bound counts nothing");
}

/* ---- GLD ------------------------------------------------------------------------------------ */

static void test_gld(void) {
    /* Phi to 20 digits (mpmath, 40-digit arithmetic); glibc's erfc is good to a few ulps, so
     * relative 1e-13 on ln Phi */
    struct { double x, phi; } tab[] = {
        {0, 0.5}, {-1, 0.15865525393145705141}, {1, 0.84134474606854294859},
        {-5, 2.8665157187919391167e-7}, {-10, 7.619853024160526066e-24},
        {3, 0.99865010196836990547},
    };
    for (size_t i = 0; i < sizeof tab / sizeof *tab; i++)
        CHECK_CLOSE(lpe_log_ndtr(tab[i].x), log(tab[i].phi), 1e-15, 1e-13);
    /* continued-fraction branch against erfc (still representable down to -37) */
    double xs[] = {-10.0000001, -11, -15, -20, -30, -37};
    for (size_t i = 0; i < sizeof xs / sizeof *xs; i++)
        CHECK_CLOSE(lpe_log_ndtr(xs[i]), log(0.5 * erfc(-xs[i] / sqrt(2))), 0, 1e-13);
    /* x = -40: Phi underflows nowhere near, yet erfc would be 1e-350; asymptotic series
     * Phi(x) = phi(x)/|x| sum_k (-1)^k (2k-1)!! / x^(2k), twelve terms (error < 1e-40) */
    double x = -40, s = 0, term = 1;
    for (int k = 0; k < 12; k++) {
        s += term;
        term *= -(2.0 * k + 1) / (x * x);
    }
    double want = -0.5 * x * x - 0.5 * log(2 * M_PI) - log(-x) + log(s);
    CHECK_CLOSE(lpe_log_ndtr(-40), want, 0, 1e-14);
    CHECK_CLOSE(lpe_log_ndtr(-40), -804.6084420137537881666068, 0, 1e-14); /* mpmath, 40 digits */
    CHECK_CLOSE(lpe_gld_log_estimate(-40, 1) / log(10), want / log(10), 0, 1e-14);
    CHECK_CLOSE(lpe_gld_log_estimate(-80, 2), want, 0, 1e-14);
    CHECK(lpe_gld_log_estimate(-1, 0) == -INFINITY, "point mass below 0");
    CHECK(lpe_gld_log_estimate(0, 0) == 0, "point mass at 0");
    CHECK(lpe_log_ndtr(-1e200) == -INFINITY || lpe_log_ndtr(-1e200) < -1e300, "far tail");

    /* fit: m = (-1, -2, -3, -6): mean -3, sample variance (4 + 1 + 0 + 9) / 3 */
    double m[] = {-1, -2, -3, -6}, mu, sg;
    lpe_gld_fit(&mu, &sg, m, 4);
    CHECK_CLOSE(mu, -3, 0, 1e-15);
    CHECK_CLOSE(sg, sqrt(14.0 / 3), 0, 1e-15);
    CHECK_CLOSE(lpe_gld_log_estimate(mu, sg), log(0.5 * erfc(3 / sqrt(14.0 / 3) / sqrt(2))), 0,
                1e-14);
    lpe_gld_fit(&mu, &sg, m, 1);
    CHECK(mu == -1 && sg == 0, "one sample: sigma 0");
}

int main(void) {
    test_whitening();
    test_direction_brute();
    test_direction_vs_arc();
    test_infeasible();
    test_count_range();
    test_count_vs_brute(LPE_QLD_PAPER);
    test_count_vs_brute(LPE_QLD_ARC);
    test_gld();
    return check_summary("test_qld");
}
