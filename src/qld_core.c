/* qld_core.c: the mathematics of QLD and GLD (methods.md §4), see qld.h for the notation.
 *
 * Dimension legend: n = activation samples, D = d_model, V = d_vocab, T = targets,
 *   nb = rows of a logits block, m = constraints in the Hildreth working set, a = active ones.
 *
 * Pure functions over host arrays: no backend, no files. float64 wherever an error would move a
 * count; OpenBLAS (cblas) for the products, OpenMP for the pair count.
 */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/philox.h"
#include "lpe/qld_core.h"
#include "lpe/qld_count.h"

/* ======================================================================================== */
/* whitening                                                                                  */
/* ======================================================================================== */

/* Cholesky-Banachiewicz, row by row: L[i][j] = (S[i][j] - sum_{k<j} L[i][k] L[j][k]) / L[j][j].
 * D^3 / 3 flops: 45 Mflop at D = 512, nothing next to the covariance itself. */
int lpe_qld_cholesky(double *L, const double *S, int D) {
    memset(L, 0, (size_t)D * D * sizeof *L);
    for (int i = 0; i < D; i++) {
        double *Li = L + (size_t)i * D;
        for (int j = 0; j <= i; j++) {
            const double *Lj = L + (size_t)j * D;
            double s = S[(size_t)i * D + j];
            for (int k = 0; k < j; k++) s -= Li[k] * Lj[k];
            if (i == j) {
                if (!(s > 0)) return -1; /* also catches NaN */
                Li[i] = sqrt(s);
            } else {
                Li[j] = s / Lj[j];
            }
        }
    }
    return 0;
}

/* Two passes (mean, then centred second moments) so that the covariance of activations with a
 * large common offset keeps its digits; the centred rows are converted to float64 in blocks and
 * accumulated with dsyrk (n D^2 flops, the dominant cost of whitening). */
void lpe_qld_whiten(double *mu, double *A, const float *v, int n, int D, double ridge) {
    LPE_ASSERT(n >= 1 && D >= 1);
    enum { RB = 256 };
    size_t DD = (size_t)D * D;
    double *mem = lpe_calloc(DD + (size_t)RB * D, sizeof *mem);
    double *S = mem;          /* [D, D] lower triangle: sum of centred outer products */
    double *blk = mem + DD;   /* [RB, D] centred rows */
    memset(mu, 0, (size_t)D * sizeof *mu);
    for (int i = 0; i < n; i++)
        for (int d = 0; d < D; d++) mu[d] += v[(size_t)i * D + d];
    for (int d = 0; d < D; d++) mu[d] /= n;
    for (int r0 = 0; r0 < n; r0 += RB) {
        int nb = n - r0 < RB ? n - r0 : RB;
        for (int i = 0; i < nb; i++)
            for (int d = 0; d < D; d++) blk[(size_t)i * D + d] = v[(size_t)(r0 + i) * D + d] - mu[d];
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, D, nb, 1.0, blk, D, 1.0, S, D);
    }
    for (int i = 0; i < D; i++) {
        for (int j = 0; j <= i; j++) {
            double s = S[(size_t)i * D + j] / n;
            S[(size_t)i * D + j] = S[(size_t)j * D + i] = s;
        }
        S[(size_t)i * D + i] += ridge;
    }
    if (lpe_qld_cholesky(A, S, D) != 0)
        lpe_fail("qld: the activation covariance plus %g I is not positive definite (NaN in the "
                 "activations?)", ridge);
    free(mem);
}

/* z = (v - mu) A^{-T} is the triangular solve z A^T = v - mu (dtrsm, right side, A^T upper).
 * The arc form subtracts the solved mean instead: u = v - (mu A^{-T}). */
void lpe_qld_rows(double *z, const float *v, const double *mu, const double *A, int n, int D,
                  int variant) {
    if (variant == LPE_QLD_PAPER) {
        for (size_t i = 0; i < (size_t)n; i++)
            for (int d = 0; d < D; d++) z[i * D + d] = v[i * D + d] - mu[d];
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, n, D, 1.0, A, D,
                    z, D);
    } else {
        double *w = lpe_calloc((size_t)D, sizeof *w); /* [D] mu A^{-T} */
        memcpy(w, mu, (size_t)D * sizeof *w);
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, 1, D, 1.0, A, D,
                    w, D);
        for (size_t i = 0; i < (size_t)n; i++)
            for (int d = 0; d < D; d++) z[i * D + d] = v[i * D + d] - w[d];
        free(w);
    }
}

/* P = W_U^T A, c = W_U^T mu + b_U, by blocks of vocabulary columns converted to float64. */
void lpe_qld_pullback(double *P, double *c, const float *W_U, const float *b_U, const double *mu,
                      const double *A, int D, int V) {
    enum { VB = 512 };
    double *Wd = lpe_calloc((size_t)D * VB, sizeof *Wd); /* [D, vb] a block of W_U's columns */
    for (int v0 = 0; v0 < V; v0 += VB) {
        int vb = V - v0 < VB ? V - v0 : VB;
        for (int d = 0; d < D; d++)
            for (int j = 0; j < vb; j++) Wd[(size_t)d * vb + j] = W_U[(size_t)d * V + v0 + j];
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, vb, D, D, 1.0, Wd, vb, A, D, 0.0,
                    P + (size_t)v0 * D, D);
        cblas_dgemv(CblasRowMajor, CblasTrans, D, vb, 1.0, Wd, vb, mu, 1, 0.0, c + v0, 1);
        if (b_U)
            for (int j = 0; j < vb; j++) c[v0 + j] += b_U[v0 + j];
    }
    free(Wd);
}

/* ======================================================================================== */
/* the direction                                                                              */
/* ======================================================================================== */

/* m_v = q_t - q_v + c_t - c_v with q = P z: one dgemv (V D flops, memory bound on P). */
void lpe_qld_margins(double *m, const double *z, const double *P, const double *c, int t, int V,
                     int D) {
    cblas_dgemv(CblasRowMajor, CblasNoTrans, V, D, 1.0, P, D, z, 1, 0.0, m, 1);
    double qt = m[t] + c[t];
    for (int v = 0; v < V; v++) m[v] = qt - m[v] - c[v];
    m[t] = INFINITY;
}

static double dot(const double *a, const double *b, int D) {
    double s = 0;
    for (int d = 0; d < D; d++) s += a[d] * b[d];
    return s;
}

/* The diagnostics both direction searches report: margins at the final z, the worst one, |z|.
   m: [V] margins (written); z: [D]; P: [V, D]; c: [V]. */
static void finish_info(lpe_qld_dir *info, double *m, const double *z, const double *P,
                        const double *c, int t, int V, int D, int status) {
    lpe_qld_margins(m, z, P, c, t, V, D);
    info->worst_margin = INFINITY;
    for (int v = 0; v < V; v++)
        if (m[v] < info->worst_margin) info->worst_margin = m[v];
    info->norm = sqrt(dot(z, z, D));
    info->status = status;
}

static void constraint_row(double *g, const double *P, int t, int v, int D) {
    const double *pt = P + (size_t)t * D, *pv = P + (size_t)v * D;
    for (int d = 0; d < D; d++) g[d] = pt[d] - pv[d];
}

/* Working set of constraints g_w . z + h_w >= 0 with their multipliers lambda_w >= 0. */
typedef struct {
    int D, m, cap;
    int32_t *idx; /* [cap] vocabulary index of each row */
    double *G;    /* [cap, D] rows g_w = P_t - P_w */
    double *h;    /* [cap] c_t - c_w */
    double *nn;   /* [cap] |g_w|^2 */
    double *lam;  /* [cap] */
} wset;

static void wset_add(wset *w, const double *P, const double *c, int t, int v) {
    if (w->m == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->idx = lpe_realloc(w->idx, (size_t)w->cap * sizeof *w->idx);
        w->G = lpe_realloc(w->G, (size_t)w->cap * w->D * sizeof *w->G);
        w->h = lpe_realloc(w->h, (size_t)w->cap * sizeof *w->h);
        w->nn = lpe_realloc(w->nn, (size_t)w->cap * sizeof *w->nn);
        w->lam = lpe_realloc(w->lam, (size_t)w->cap * sizeof *w->lam);
    }
    int k = w->m++;
    double *g = w->G + (size_t)k * w->D;
    constraint_row(g, P, t, v, w->D);
    w->idx[k] = v;
    w->h[k] = c[t] - c[v];
    w->nn[k] = dot(g, g, w->D);
    w->lam[k] = 0;
}

static void wset_free(wset *w) {
    free(w->idx);
    free(w->G);
    free(w->h);
    free(w->nn);
    free(w->lam);
}

/* Exact solve on the current support A = {w : lambda_w > 0}: the minimum-norm point of the
 * equalities g_w . z + h_w = 0 (w in A) is z = G_A^T mu with (G_A G_A^T) mu = -h_A. If mu >= 0
 * and every working-set margin is >= -tol, (z, mu) satisfies the KKT conditions of the working
 * set's problem exactly (stationarity z = G^T lambda, lambda >= 0, feasibility, complementary
 * slackness), so it is its optimum: take it. Otherwise leave everything as it was (return 0).
 * Hildreth alone converges only linearly when constraints are nearly parallel (they share P_t);
 * this turns "the right support, roughly the right multipliers" into the exact answer. */
static int polish(double *z, wset *w, double tol) {
    int D = w->D, a = 0;
    for (int k = 0; k < w->m; k++) a += w->lam[k] > 0;
    if (a > D) return 0; /* dependent by count: leave it to Hildreth */
    size_t aa = (size_t)a * a;
    double *mem = lpe_calloc(2 * aa + 2 * (size_t)a + D + 1, sizeof *mem);
    double *K = mem;                   /* [a, a] Gram matrix of the active rows */
    double *Lc = K + aa;               /* [a, a] its Cholesky factor */
    double *muv = Lc + aa;             /* [a] multipliers */
    int *act = (int *)(muv + a);       /* [a] working-set positions (a doubles of room) */
    double *zn = muv + 2 * (size_t)a;  /* [D] candidate point */
    int ok = 0;
    for (int k = 0, j = 0; k < w->m; k++)
        if (w->lam[k] > 0) act[j++] = k;
    for (int i = 0; i < a; i++)
        for (int j = 0; j <= i; j++)
            K[(size_t)i * a + j] = K[(size_t)j * a + i] =
                dot(w->G + (size_t)act[i] * D, w->G + (size_t)act[j] * D, D);
    if (a > 0 && lpe_qld_cholesky(Lc, K, a) != 0) goto done;
    /* forward then back substitution: Lc Lc^T mu = -h_A */
    for (int i = 0; i < a; i++) {
        double s = -w->h[act[i]];
        for (int k = 0; k < i; k++) s -= Lc[(size_t)i * a + k] * muv[k];
        muv[i] = s / Lc[(size_t)i * a + i];
    }
    for (int i = a - 1; i >= 0; i--) {
        double s = muv[i];
        for (int k = i + 1; k < a; k++) s -= Lc[(size_t)k * a + i] * muv[k];
        muv[i] = s / Lc[(size_t)i * a + i];
    }
    for (int i = 0; i < a; i++)
        if (!(muv[i] >= 0)) goto done;
    memset(zn, 0, (size_t)D * sizeof *zn);
    for (int i = 0; i < a; i++) {
        const double *g = w->G + (size_t)act[i] * D;
        for (int d = 0; d < D; d++) zn[d] += muv[i] * g[d];
    }
    for (int k = 0; k < w->m; k++)
        if (dot(w->G + (size_t)k * D, zn, D) + w->h[k] < -tol) goto done;
    for (int k = 0; k < w->m; k++) w->lam[k] = 0;
    for (int i = 0; i < a; i++) w->lam[act[i]] = muv[i];
    memcpy(z, zn, (size_t)D * sizeof *z);
    ok = 1;
done:
    free(mem);
    return ok;
}

/* Hildreth (1957): coordinate ascent on the dual of min |z|^2 / 2 s.t. G z + h >= 0,
 *   max_{lambda >= 0}  -|G^T lambda|^2 / 2 - h . lambda,   z = G^T lambda.
 * The coordinate step for constraint w is exact: lambda_w <- max(0, lambda_w - m_w(z) / |g_w|^2),
 * z moves along g_w by the change. Returns 1 when the working set's problem is solved, 0 when a
 * Farkas certificate shows it infeasible within LPE_QLD_RADIUS (for lambda >= 0 and |z'| <= R:
 * lambda . (G z' + h) <= |G^T lambda| R + h . lambda, so if that is < 0 some constraint fails at
 * every such z'), -1 when the sweep budget ran out. On an infeasible set lambda grows without
 * bound while z stays bounded, so the certificate appears after about radius |z| / (growth of
 * -h . lambda per sweep) sweeps: a small radius is certified fast. */
static int hildreth(double *z, wset *w, double tol, double radius, long long *sweeps,
                    long long max_sweeps) {
    int D = w->D;
    for (long long s = 1; *sweeps < max_sweeps; s++) {
        ++*sweeps;
        double step = 0;
        for (int k = 0; k < w->m; k++) {
            const double *g = w->G + (size_t)k * D;
            if (w->nn[k] == 0) continue; /* g = 0: h >= 0 always holds, h < 0 caught by caller */
            double mk = dot(g, z, D) + w->h[k];
            double dl = -mk / w->nn[k];
            if (w->lam[k] + dl < 0) dl = -w->lam[k];
            if (dl == 0) continue;
            w->lam[k] += dl;
            for (int d = 0; d < D; d++) z[d] += dl * g[d];
            double sz = fabs(dl) * sqrt(w->nn[k]);
            if (sz > step) step = sz;
        }
        double zn = sqrt(dot(z, z, D));
        int small = step <= 1e-13 * (1 + zn);
        if ((s % 8 == 0 || small) && polish(z, w, tol)) return 1;
        if (small) return 1; /* converged to rounding without an exact polish (degenerate set) */
        if (s % 16 == 0) {
            double hl = 0, sl = 0;
            for (int k = 0; k < w->m; k++) hl += w->h[k] * w->lam[k], sl += w->lam[k];
            if (sl > 0 && zn * radius + hl < 0) return 0;
        }
    }
    return -1;
}

/* Cutting planes around Hildreth: the working set starts empty; each round checks every
 * constraint with one dgemv, adds the (up to) K_ADD most violated ones, and solves the working
 * set's problem. A relaxation's minimum-norm point that violates nothing is the true one; each
 * round adds a constraint the current point violates, so rounds are finite. For a rare target
 * most of the vocabulary is violated at z = 0, but only the few constraints that end up active
 * (at most D) ever need to be handled: a round costs V D + (m D) x sweeps, not V D x sweeps. */
void lpe_qld_direction(double *z, lpe_qld_dir *info, const double *P, const double *c, int t,
                       int V, int D, double radius) {
    enum { K_ADD = 32, MAX_ROUNDS = 2000 };
    const long long max_sweeps = 200000;
    double *mem = lpe_calloc((size_t)V + K_ADD, sizeof *mem);
    double *m = mem;               /* [V] margins at z */
    double *best = m + V;          /* [K_ADD] the most violated margins of a round */
    int32_t bidx[K_ADD];
    uint8_t *in = lpe_calloc((size_t)V, 1); /* [V] in the working set */
    wset w = {.D = D};
    memset(info, 0, sizeof *info);
    memset(z, 0, (size_t)D * sizeof *z);

    double scale = 1;
    for (int v = 0; v < V; v++)
        if (v != t && fabs(c[t] - c[v]) > scale) scale = fabs(c[t] - c[v]);
    const double tol = 1e-11 * scale; /* margins are differences of logits of size `scale` */
    if (!(radius > 0)) radius = LPE_QLD_RADIUS;

    int status = LPE_QLD_NOT_CONVERGED;
    lpe_qld_margins(m, z, P, c, t, V, D);
    for (int round = 0; round < MAX_ROUNDS; round++) {
        info->rounds = round + 1;
        int nb = 0;
        for (int v = 0; v < V; v++) { /* keep the K_ADD smallest margins below -tol, sorted */
            if (in[v] || !(m[v] < -tol)) continue;
            if (nb == K_ADD && m[v] >= best[nb - 1]) continue;
            int k = nb < K_ADD ? nb++ : nb - 1;
            while (k > 0 && best[k - 1] > m[v]) best[k] = best[k - 1], bidx[k] = bidx[k - 1], k--;
            best[k] = m[v], bidx[k] = v;
        }
        double worst = INFINITY;
        for (int v = 0; v < V; v++)
            if (m[v] < worst) worst = m[v];
        if (worst >= -tol) {
            status = LPE_QLD_OPTIMAL;
            break;
        }
        if (nb == 0) break; /* violated only inside the working set: Hildreth gave up */
        for (int k = 0; k < nb; k++) {
            int v = bidx[k];
            in[v] = 1;
            wset_add(&w, P, c, t, v);
            if (w.nn[w.m - 1] == 0 && w.h[w.m - 1] < 0) status = LPE_QLD_INFEASIBLE;
        }
        if (status == LPE_QLD_INFEASIBLE) break; /* l_v = l_t + positive constant everywhere */
        int r = hildreth(z, &w, tol, radius, &info->iterations, max_sweeps);
        if (r == 0) {
            status = LPE_QLD_INFEASIBLE;
            break;
        }
        lpe_qld_margins(m, z, P, c, t, V, D);
        if (r < 0) break;
    }
    finish_info(info, m, z, P, c, t, V, D, status);
    for (int k = 0; k < w.m; k++) info->n_active += w.lam[k] > 0;
    wset_free(&w);
    free(in);
    free(mem);
}

/* The public code's search, step by step (methods.md §4 (iii)): from x = 0, at step it
 *   1. margins m = G x + h, the target's own row given the value 100 (it is identically 0);
 *   2. the "unsatisfied" set {v : m_v < 1e-9}; pick one uniformly (Philox word of draw it);
 *   3. project x onto that constraint's hyperplane: x += (-m_r / |g_r|^2) g_r;
 *   4. if now every margin is >= 0: while it < 200 shrink x by 0.95 and go on, else return x.
 * Up to 200 x 100 steps (the public code then asserts; we report NOT_CONVERGED and keep x).
 * The margins after step 3 are also the next step's margins (or, after a shrink,
 * 0.95 m + 0.05 h exactly, m being affine in x), so a step costs one dgemv. */
void lpe_qld_direction_arc(double *z, lpe_qld_dir *info, const double *P, const double *c, int t,
                           int V, int D, uint64_t seed, uint32_t stream) {
    enum { N_REPS = 200, MAX_STEPS = 200 * 100 };
    const double factor = 0.95, tol = 1e-9, own = 100;
    double *mem = lpe_calloc((size_t)V + (size_t)D, sizeof *mem);
    double *m = mem;          /* [V] margins at z */
    double *g = m + V;        /* [D] the chosen constraint's row */
    memset(info, 0, sizeof *info);
    memset(z, 0, (size_t)D * sizeof *z);
    lpe_qld_margins(m, z, P, c, t, V, D);
    m[t] = own;
    int status = LPE_QLD_NOT_CONVERGED;
    long long it;
    for (it = 0; it < MAX_STEPS; it++) {
        int n_unsat = 0;
        for (int v = 0; v < V; v++) n_unsat += m[v] < tol;
        if (n_unsat > 0) {
            uint32_t wds[4];
            lpe_rng4(wds, seed, stream, (uint64_t)it, 0);
            int pick = (int)lpe_below(wds[0], (uint32_t)n_unsat), r = -1;
            for (int v = 0; v < V; v++)
                if (m[v] < tol && pick-- == 0) {
                    r = v;
                    break;
                }
            constraint_row(g, P, t, r, D);
            double nn = dot(g, g, D);
            if (nn > 0) {
                double al = -m[r] / nn;
                for (int d = 0; d < D; d++) z[d] += al * g[d];
            } else if (m[r] < 0) {
                status = LPE_QLD_INFEASIBLE; /* l_r - l_t is a positive constant */
                break;
            }
            lpe_qld_margins(m, z, P, c, t, V, D);
            m[t] = own;
        }
        int feasible = 1;
        for (int v = 0; v < V && feasible; v++) feasible = m[v] >= 0;
        if (feasible) {
            if (it < N_REPS) {
                for (int d = 0; d < D; d++) z[d] *= factor;
                for (int v = 0; v < V; v++)
                    if (v != t) m[v] = factor * m[v] + (1 - factor) * (c[t] - c[v]);
            } else {
                status = LPE_QLD_OPTIMAL;
                break;
            }
        }
    }
    info->iterations = it < MAX_STEPS ? it + 1 : it;
    finish_info(info, m, z, P, c, t, V, D, status);
    free(mem);
}

void lpe_qld_unit_direction(double *d, const double *z, const double *P, const double *c, int t,
                            int V, int D) {
    double nz = sqrt(dot(z, z, D));
    if (nz > 0) {
        for (int k = 0; k < D; k++) d[k] = z[k] / nz;
        return;
    }
    int best = -1;
    double bm = INFINITY;
    for (int v = 0; v < V; v++) {
        if (v == t) continue;
        double h = c[t] - c[v];
        constraint_row(d, P, t, v, D);
        if (h < bm && dot(d, d, D) > 0) bm = h, best = v;
    }
    memset(d, 0, (size_t)D * sizeof *d);
    if (best < 0) {
        d[0] = 1;
        return;
    }
    constraint_row(d, P, t, best, D);
    double nd = sqrt(dot(d, d, D));
    for (int k = 0; k < D; k++) d[k] /= nd;
}

/* ======================================================================================== */
/* the pair count                                                                             */
/* ======================================================================================== */

void lpe_qld_slopes(double *e, const double *P, const double *d, int t, int V, int D) {
    cblas_dgemv(CblasRowMajor, CblasNoTrans, V, D, 1.0, P, D, d, 1, 0.0, e, 1);
    double et = e[t];
    for (int v = 0; v < V; v++) e[v] = et - e[v];
    e[t] = 0;
}

void lpe_qld_split_coef(double *y, double *y0, const double *mu, const double *A, const double *d,
                        int D, int variant) {
    double *w = lpe_calloc((size_t)D, sizeof *w); /* [D] A^{-T} d: back substitution on A^T */
    for (int i = D - 1; i >= 0; i--) {
        double s = d[i];
        for (int k = i + 1; k < D; k++) s -= A[(size_t)k * D + i] * w[k];
        w[i] = s / A[(size_t)i * D + i];
    }
    *y0 = dot(mu, w, D);
    memcpy(y, variant == LPE_QLD_PAPER ? w : d, (size_t)D * sizeof *y);
    free(w);
}

/* For row i, t is the argmax of l_i + s e' (e' = d P^T) iff for every v != t
 *   (l_it - l_iv) + s e_v >= 0,   e_v = e'_t - e'_v,
 * i.e. s >= (l_iv - l_it) / e_v when e_v > 0 and s <= (l_iv - l_it) / e_v when e_v < 0: an
 * interval. This is the inner loop of the whole method (n V per target), and memory bound if
 * done one (target, row) at a time: a tile of up to TT targets x RT rows walks the vocabulary in
 * chunks of VC columns so that the tile's logits and slopes stay in cache, each read once per
 * tile instead of once per pair. The loop runs over LANES independent accumulators so that the
 * compiler vectorises the selects (a max-reduction alone would need -ffast-math). */
enum { B_LANES = 16, B_VC = 1024, B_TT = 8, B_RT = 16 };

/* lo, hi [nt, nr]; L [nr, ld] logits rows; rinv[k] [V]; tg [nt] target tokens (nt <= B_TT,
 * nr <= B_RT). Zero slopes are left to the caller. */
static void bounds_tile(float *lo, float *hi, const float *L, long ld, int nr,
                        const float *const *rinv, const int32_t *tg, int nt, int V) {
    float la[B_TT][B_RT][B_LANES], ha[B_TT][B_RT][B_LANES], lt[B_TT][B_RT];
    for (int k = 0; k < nt; k++)
        for (int r = 0; r < nr; r++) {
            lt[k][r] = L[(size_t)r * ld + tg[k]];
            for (int q = 0; q < B_LANES; q++) la[k][r][q] = -INFINITY, ha[k][r][q] = INFINITY;
        }
    const int vfull = V / B_LANES * B_LANES;
    for (int v0 = 0; v0 < vfull; v0 += B_VC) {
        const int v1 = v0 + B_VC < vfull ? v0 + B_VC : vfull;
        for (int k = 0; k < nt; k++) {
            const float *rk = rinv[k];
            for (int r = 0; r < nr; r++) {
                const float *lr = L + (size_t)r * ld;
                const float ltk = lt[k][r];
                float *a = la[k][r], *h = ha[k][r];
                for (int v = v0; v < v1; v += B_LANES)
                    for (int q = 0; q < B_LANES; q++) {
                        float rv = rk[v + q], x = (lr[v + q] - ltk) * rv;
                        float cl = rv > 0 ? x : -INFINITY, ch = rv < 0 ? x : INFINITY;
                        a[q] = cl > a[q] ? cl : a[q];
                        h[q] = ch < h[q] ? ch : h[q];
                    }
            }
        }
    }
    for (int k = 0; k < nt; k++)
        for (int r = 0; r < nr; r++) {
            float lo_i = -INFINITY, hi_i = INFINITY;
            for (int q = 0; q < B_LANES; q++) {
                lo_i = la[k][r][q] > lo_i ? la[k][r][q] : lo_i;
                hi_i = ha[k][r][q] < hi_i ? ha[k][r][q] : hi_i;
            }
            const float *lr = L + (size_t)r * ld, *rk = rinv[k];
            for (int v = vfull; v < V; v++) {
                float rv = rk[v], x = (lr[v] - lt[k][r]) * rv;
                if (rv > 0 && x > lo_i) lo_i = x;
                if (rv < 0 && x < hi_i) hi_i = x;
            }
            lo[k * nr + r] = lo_i;
            hi[k * nr + r] = hi_i;
        }
}

/* empty interval where a zero-slope constraint is violated: it cannot be repaired by s */
static void bounds_zero(float *lo, float *hi, const float *l, const int32_t *zero_e, int n_zero,
                        int t) {
    for (int k = 0; k < n_zero; k++)
        if (l[zero_e[k]] > l[t]) *lo = INFINITY, *hi = -INFINITY;
}

void lpe_qld_row_bounds(float *lo, float *hi, const float *l, long ld, const float *rinv,
                        const int32_t *zero_e, int n_zero, int t, int nb, int V) {
    for (int r0 = 0; r0 < nb; r0 += B_RT) {
        int nr = nb - r0 < B_RT ? nb - r0 : B_RT;
        bounds_tile(lo + r0, hi + r0, l + (size_t)r0 * ld, ld, nr, &rinv, &t, 1, V);
        for (int r = 0; r < nr; r++)
            bounds_zero(lo + r0 + r, hi + r0 + r, l + (size_t)(r0 + r) * ld, zero_e, n_zero, t);
    }
}

int64_t lpe_qld_count_range(const double *a, int n, double lo, double hi) {
    return lpe_qld_count_sorted(a, n, lo, hi); /* qld_count.h: the fused CUDA kernel's too */
}

int64_t lpe_qld_count_brute(const double *z, const double *d, const double *P, const double *c,
                            int t, int n, int V, int D, int variant) {
    double *mem = lpe_calloc((size_t)n + D, sizeof *mem);
    double *a = mem;      /* [n] a_i = z_i . d */
    double *x = a + n;    /* [D] the tested point */
    for (int i = 0; i < n; i++) a[i] = dot(z + (size_t)i * D, d, D);
    int64_t cnt = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            const double *zj = z + (size_t)j * D, *zi = z + (size_t)i * D;
            for (int k = 0; k < D; k++)
                x[k] = variant == LPE_QLD_PAPER ? a[i] * d[k] + (zj[k] - a[j] * d[k])
                                                : zi[k] + a[j] * d[k];
            int am = 0;
            double best = -INFINITY;
            for (int v = 0; v < V; v++) {
                double l = dot(P + (size_t)v * D, x, D) + c[v];
                if (l > best) best = l, am = v;
            }
            cnt += am == t;
        }
    free(mem);
    return cnt;
}

/* ======================================================================================== */
/* the whole method                                                                           */
/* ======================================================================================== */

void lpe_qld_opts_default(lpe_qld_opts *o) {
    memset(o, 0, sizeof *o);
    o->variant = LPE_QLD_PAPER;
    o->block_rows = 512;
    o->ridge = 1e-5;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Every tested pair point a_i d + b_j has norm <= |a_i| + |b_j| <= 2 max_i |z_i|, so a target
 * certified infeasible within that radius has a count of exactly 0. */
static double pair_radius(const float *act, const double *mu, const double *A, int n, int D,
                          int nb_max) {
    double *z = lpe_calloc((size_t)nb_max * D, sizeof *z); /* [nb, D] */
    double zmax = 0;
    for (int r0 = 0; r0 < n; r0 += nb_max) {
        int nb = n - r0 < nb_max ? n - r0 : nb_max;
        lpe_qld_rows(z, act + (size_t)r0 * D, mu, A, nb, D, LPE_QLD_PAPER);
        for (int j = 0; j < nb; j++) {
            double s = sqrt(dot(z + (size_t)j * D, z + (size_t)j * D, D));
            if (s > zmax) zmax = s;
        }
    }
    free(z);
    return 2 * zmax * (1 + 1e-9) + 1e-9;
}

/* Target i's row of the job: reciprocal slopes, zero-slope list, split coefficients and the
 * sorted a_j = v_j . Y_i - y0_i. P, c from the pullback; e [V], z, d [D] scratch. */
static void prepare_target(lpe_qld_pairs *job, int i, lpe_qld_dir *info, double *dirs,
                           const double *mu, const double *P, const double *c, double *e,
                           double *z, double *d, double radius, const lpe_qld_opts *o) {
    const int D = job->D, V = job->V, n = job->n, t = job->targets[i];
    LPE_ASSERT(t >= 0 && t < V);
    if (job->variant == LPE_QLD_PAPER)
        lpe_qld_direction(z, info, P, c, t, V, D, radius);
    else
        lpe_qld_direction_arc(z, info, P, c, t, V, D, o->seed,
                              lpe_stream(LPE_STREAM_QLD, (uint32_t)t));
    job->skip[i] = info->status == LPE_QLD_INFEASIBLE;
    lpe_qld_unit_direction(d, z, P, c, t, V, D);
    if (dirs) memcpy(dirs + (size_t)i * D, d, (size_t)D * sizeof *d);
    lpe_qld_slopes(e, P, d, t, V, D);
    float *ri = job->rinv + (size_t)i * V;
    for (int v = 0; v < V; v++) {
        ri[v] = e[v] != 0 ? (float)(1.0 / e[v]) : 0.0f;
        if (e[v] == 0 && v != t) {
            job->zero_e[i] = lpe_realloc(job->zero_e[i], (size_t)(job->n_zero[i] + 1) * sizeof(int32_t));
            job->zero_e[i][job->n_zero[i]++] = v;
        }
    }
    double *Yi = job->Y + (size_t)i * D, *ai = job->asort + (size_t)i * n;
    lpe_qld_split_coef(Yi, &job->y0[i], mu, job->A, d, D, job->variant);
    for (int j = 0; j < n; j++) {
        double s = -job->y0[i];
        const float *vj = job->act + (size_t)j * D;
        for (int k = 0; k < D; k++) s += vj[k] * Yi[k];
        ai[j] = s;
    }
    qsort(ai, (size_t)n, sizeof *ai, cmp_double);
}

void lpe_qld_prepare(lpe_qld_pairs *job, lpe_qld_dir *dir, double *dirs, const float *act,
                     const float *W_U, const float *b_U, const int32_t *targets, int T, int n,
                     int D, int V, const lpe_qld_opts *o) {
    LPE_ASSERT(n >= 1 && T >= 0 && D >= 1 && V >= 2);
    memset(job, 0, sizeof *job);
    *job = (lpe_qld_pairs){.variant = o->variant, .T = T, .n = n, .D = D, .V = V,
                           .block_rows = o->block_rows > 0 ? o->block_rows : 512,
                           .act = act, .targets = targets};
    job->A = lpe_calloc((size_t)D * D, sizeof *job->A);
    job->rinv = lpe_calloc((size_t)T * V + 1, sizeof *job->rinv);
    job->zero_e = lpe_calloc((size_t)T + 1, sizeof *job->zero_e);
    job->n_zero = lpe_calloc((size_t)T + 1, sizeof *job->n_zero);
    job->asort = lpe_calloc((size_t)T * n + 1, sizeof *job->asort);
    job->Y = lpe_calloc((size_t)T * D + 1, sizeof *job->Y);
    job->y0 = lpe_calloc((size_t)T + 1, sizeof *job->y0);
    job->skip = lpe_calloc((size_t)T + 1, sizeof *job->skip);

    /* scratch: mu [D], P [V, D], c [V], e [V], z [D], d [D] */
    double *mem = lpe_calloc((size_t)D * 3 + (size_t)V * (D + 2), sizeof *mem);
    double *mu = mem, *P = mu + D, *c = P + (size_t)V * D, *e = c + V, *z = e + V, *d = z + D;
    lpe_qld_whiten(mu, job->A, act, n, D, o->ridge);
    lpe_qld_pullback(P, c, W_U, b_U, mu, job->A, D, V);
    double radius = pair_radius(act, mu, job->A, n, D, job->block_rows);
    for (int i = 0; i < T; i++)
        prepare_target(job, i, &dir[i], dirs, mu, P, c, e, z, d, radius, o);
    free(mem);
}

void lpe_qld_pairs_free(lpe_qld_pairs *job) {
    for (int i = 0; i < job->T; i++) free(job->zero_e[i]);
    free(job->zero_e);
    free(job->n_zero);
    free(job->A);
    free(job->rinv);
    free(job->asort);
    free(job->Y);
    free(job->y0);
    free(job->skip);
    memset(job, 0, sizeof *job);
}

/* X [nb, D] float32 rows of block r0 whose logits the count needs; shift [nb, T] (paper). */
static void block_rows(float *X, double *shift, double *vblk, const lpe_qld_pairs *job, int r0,
                       int nb) {
    const int D = job->D, T = job->T;
    const float *v = job->act + (size_t)r0 * D; /* [nb, D] */
    for (size_t q = 0; q < (size_t)nb * D; q++) vblk[q] = v[q];
    if (job->variant == LPE_QLD_PAPER) {
        for (size_t q = 0; q < (size_t)nb * D; q++) X[q] = v[q];
        /* shift[j, i] = v_j . Y_i - y0_i */
        if (T > 0)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, T, D, 1.0, vblk, D, job->Y, D,
                        0.0, shift, T);
        for (int j = 0; j < nb; j++)
            for (int i = 0; i < T; i++) shift[(size_t)j * T + i] -= job->y0[i];
    } else {
        /* arc logits: (v A^T) W_U + b_U; v A^T in float64 (dtrmm in place), then float32 */
        cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, nb, D, 1.0,
                    job->A, D, vblk, D);
        for (size_t q = 0; q < (size_t)nb * D; q++) X[q] = (float)vblk[q];
    }
}

/* cnt [T] += the block's pairs: tiles of B_TT targets x B_RT rows of logits L [nb, V]. */
static void count_block(int64_t *cnt, const lpe_qld_pairs *job, const float *L,
                        const double *shift, int nb) {
    const int T = job->T, V = job->V, n = job->n, paper = job->variant == LPE_QLD_PAPER;
    const int rch = (nb + B_RT - 1) / B_RT, tch = (T + B_TT - 1) / B_TT;
    const long items = (long)rch * tch;
#pragma omp parallel for schedule(dynamic)
    for (long it = 0; it < items; it++) {
        const int i0 = (int)(it / rch) * B_TT, j0 = (int)(it % rch) * B_RT;
        const int nt = T - i0 < B_TT ? T - i0 : B_TT, nr = nb - j0 < B_RT ? nb - j0 : B_RT;
        const float *rk[B_TT];
        int32_t tg[B_TT];
        float lo[B_TT * B_RT], hi[B_TT * B_RT];
        for (int k = 0; k < nt; k++)
            rk[k] = job->rinv + (size_t)(i0 + k) * V, tg[k] = job->targets[i0 + k];
        bounds_tile(lo, hi, L + (size_t)j0 * V, V, nr, rk, tg, nt, V);
        for (int k = 0; k < nt; k++) {
            const int i = i0 + k;
            if (job->skip[i]) continue;
            int64_t local = 0;
            for (int r = 0; r < nr; r++) {
                float l_ = lo[k * nr + r], h_ = hi[k * nr + r];
                bounds_zero(&l_, &h_, L + (size_t)(j0 + r) * V, job->zero_e[i], job->n_zero[i],
                            tg[k]);
                double s = paper ? shift[(size_t)(j0 + r) * T + i] : 0.0;
                local += lpe_qld_count_range(job->asort + (size_t)i * n, n, s + (double)l_,
                                             s + (double)h_);
            }
#pragma omp atomic
            cnt[i] += local;
        }
    }
}

/* All targets share the activation samples, hence the logits. Since l_j = z_j P^T + c holds
 * exactly, the interval of a row needs only the row's logits (target independent) and the
 * target's slopes e: one float32 sgemm per block of rows serves every target, and the per-target
 * work is a fused select-max/min over the block (n V per target, no n V D product per target).
 *   paper: row j, shift s = a - a_j:  count i with a_i in [a_j + lo_j, a_j + hi_j];
 *   arc:   row i (arc logits u_i P^T + c = v_i A^T W_U + b_U), shift s = a_j: count j with a_j in
 *          [lo_i, hi_i].
 * Precision: the logits are float32 (relative error ~1e-7 of |v||W_U|), the slopes, shifts and
 * a_i float64. A bound off by delta moves only the samples within delta of it, a relative
 * change of the count of about |bound| x delta for tail intervals: ~1e-5, far below the method's
 * statistical error, while a float64 product would cost 2-4x the time of the dominant step. */
void lpe_qld_count_pairs(int64_t *count, const lpe_qld_pairs *job, const float *W_U,
                         const float *b_U) {
    const int D = job->D, V = job->V, T = job->T, n = job->n, nb_max = job->block_rows;
    double *dmem = lpe_calloc((size_t)nb_max * (D + T) + 1, sizeof *dmem);
    double *vblk = dmem;                     /* [nb, D] a block of activations in float64 */
    double *shift = dmem + (size_t)nb_max * D; /* [nb, T] a_j of the block's rows (paper) */
    float *fmem = lpe_calloc((size_t)nb_max * (V + D), sizeof *fmem);
    float *L = fmem;                         /* [nb, V] logits of a block */
    float *X = fmem + (size_t)nb_max * V;    /* [nb, D] the block's (transformed) activations */
    memset(count, 0, (size_t)T * sizeof *count);
    for (int r0 = 0; r0 < n; r0 += nb_max) {
        int nb = n - r0 < nb_max ? n - r0 : nb_max;
        block_rows(X, shift, vblk, job, r0, nb);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, V, D, 1.0f, X, D, W_U, V, 0.0f,
                    L, V);
        if (b_U)
            for (int j = 0; j < nb; j++)
                for (int v = 0; v < V; v++) L[(size_t)j * V + v] += b_U[v];
        count_block(count, job, L, shift, nb);
    }
    free(fmem);
    free(dmem);
}

void lpe_qld_finish(double *est, int64_t *count, const lpe_qld_pairs *job) {
    for (int i = 0; i < job->T; i++) {
        if (job->skip[i]) count[i] = 0;
        est[i] = (double)count[i] / ((double)job->n * (double)job->n);
    }
}

void lpe_qld_estimate(double *est, int64_t *count, lpe_qld_dir *dir, double *dirs,
                      const float *act, const float *W_U, const float *b_U,
                      const int32_t *targets, int T, int n, int D, int V, const lpe_qld_opts *o) {
    lpe_qld_dir *info = dir ? dir : lpe_calloc((size_t)T + 1, sizeof *info);
    int64_t *cnt = count ? count : lpe_calloc((size_t)T + 1, sizeof *cnt);
    lpe_qld_pairs job;
    lpe_qld_prepare(&job, info, dirs, act, W_U, b_U, targets, T, n, D, V, o);
    lpe_qld_count_pairs(cnt, &job, W_U, b_U);
    lpe_qld_finish(est, cnt, &job);
    lpe_qld_pairs_free(&job);
    if (!dir) free(info);
    if (!count) free(cnt);
}

/* ======================================================================================== */
/* GLD                                                                                        */
/* ======================================================================================== */

/* Phi(x) = erfc(-x / sqrt 2) / 2. For x > 0, ln Phi = log1p(-Phi(-x)) keeps the digits of a
 * number near 1. Down to x = -10 erfc is accurate in relative terms and far from underflow
 * (Phi(-10) ~ 7.6e-24). Below, Phi(x) = phi(x) R(u), u = -x, with Laplace's continued fraction
 * for the Mills ratio R(u) = 1 / (u + 1 / (u + 2 / (u + 3 / (u + ...)))), evaluated bottom-up;
 * for u >= 10 sixty levels are far more than float64 needs, and ln phi(x) = -x^2/2 - ln sqrt(2 pi)
 * never underflows. */
double lpe_log_ndtr(double x) {
    if (isnan(x)) return NAN;
    if (x > 0) return log1p(-0.5 * erfc(x / M_SQRT2));
    if (x > -10) return log(0.5 * erfc(-x / M_SQRT2));
    if (isinf(x)) return -INFINITY;
    double u = -x, f = u;
    for (int k = 60; k >= 1; k--) f = u + k / f;
    return -0.5 * u * u - 0.5 * log(2 * M_PI) - log(f);
}

void lpe_gld_fit(double *mu, double *sigma, const double *m, int n) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += m[i];
    *mu = n > 0 ? s / n : NAN;
    for (int i = 0; i < n; i++) ss += (m[i] - *mu) * (m[i] - *mu);
    *sigma = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

double lpe_gld_log_estimate(double mu, double sigma) {
    if (!(sigma > 0)) return mu >= 0 ? 0.0 : -INFINITY;
    return lpe_log_ndtr(mu / sigma);
}
