/* qld_core.h: the mathematics of activation extrapolation (methods.md §4: QLD and GLD), no backend
 * (src/qld_core.c; the methods that use it are src/estimators/qld.c and gld.c).
 *
 * Dimension legend: n = activation samples, D = d_model, V = d_vocab, T = targets,
 *   nb = rows of one logits block, nc = constraints v != t (V - 1).
 *
 * Notation (row vectors, as in methods.md §4): activations v_i [D] (the final LayerNorm output at the
 * last position); logits l_i = v_i W_U + b_U with W_U [D, V]. Whitening:
 *   mu = mean_i v_i,  Sigma = (1/n) sum_i (v_i - mu)^T (v_i - mu),  A A^T = Sigma + ridge I,
 *   z_i = (v_i - mu) A^{-T},  P = W_U^T A [V, D],  c = W_U^T mu + b_U [V],
 * so that l_i = z_i P^T + c exactly (A^{-T} A^T = I). The target t is the argmax at z iff
 * every margin m_v(z) = (P_t - P_v).z + (c_t - c_v), v != t, is >= 0 (ties: measure zero).
 *
 * Everything whose error would move a count (margins, directions, shifts a_i) is float64; the
 * one big product (logits blocks for the pair count, n x V x D) is float32 sgemm: see
 * lpe_qld_estimate for why that is enough.
 */
#ifndef LPE_QLD_H
#define LPE_QLD_H

#include <stdint.h>

#ifdef __cplusplus /* the CUDA backend (kernels/, C++) includes this header */
extern "C" {
#endif

enum { LPE_QLD_PAPER = 0, LPE_QLD_ARC = 1 }; /* methods.md §4: the definition / the public code */

/* Status of a direction search. */
enum {
    LPE_QLD_INFEASIBLE = 0,    /* certified: no z with |z| <= radius accepts t */
    LPE_QLD_OPTIMAL = 1,       /* converged (Hildreth: KKT point; arc: its stopping rule) */
    LPE_QLD_NOT_CONVERGED = 2, /* iteration cap reached; z is the last iterate */
};

/* Default radius of the infeasibility certificate (whitened units, i.e. standard deviations):
 * a feasible point only farther than this from the mean is treated as none. */
#define LPE_QLD_RADIUS 1e6

typedef struct {
    double norm;          /* |z| of the returned point */
    double worst_margin;  /* min over v != t of m_v(z) */
    long long iterations; /* Hildreth: coordinate sweeps; arc: projection steps */
    int status;           /* LPE_QLD_* */
    int rounds;           /* Hildreth: outer rounds (full margin checks) */
    int n_active;         /* Hildreth: constraints with a positive multiplier at the end */
} lpe_qld_dir;

/* ---- whitening ------------------------------------------------------------------------- */

/* L L^T = S for a symmetric positive definite S [D, D]; L [D, D] lower, upper part zeroed.
 * Returns 0, or -1 when S is not positive definite (L is then undefined). */
int lpe_qld_cholesky(double *L, const double *S, int D);

/* mu [D], A [D, D] lower: mean, and Cholesky factor of the 1/n covariance plus ridge I, of the
 * float32 samples v [n, D] (float64 arithmetic; dsyrk on centred blocks). */
void lpe_qld_whiten(double *mu, double *A, const float *v, int n, int D, double ridge);

/* z [n, D]: the rows the method decomposes. paper: z_i = (v_i - mu) A^{-T};
 * arc: u_i = v_i - mu A^{-T} (methods.md §4 (i), the public code's operator precedence). */
void lpe_qld_rows(double *z, const float *v, const double *mu, const double *A, int n, int D,
                  int variant);

/* P [V, D] = W_U^T A and c [V] = W_U^T mu (+ b_U when b_U != NULL); W_U [D, V] float32. */
void lpe_qld_pullback(double *P, double *c, const float *W_U, const float *b_U, const double *mu,
                      const double *A, int D, int V);

/* ---- the direction ----------------------------------------------------------------------- */

/* m [V]: m_v = (P_t - P_v).z + c_t - c_v, and m_t = +inf. */
void lpe_qld_margins(double *m, const double *z, const double *P, const double *c, int t, int V,
                     int D);

/* z [D]: the minimum-norm point of {z : m_v(z) >= 0 for all v != t} (Hildreth's dual coordinate
 * ascent on a working set of constraints, with exact active-set polishing; see qld_core.c).
 * radius (<= 0: LPE_QLD_RADIUS): infeasibility is certified for the ball |z| <= radius (Farkas);
 * lpe_qld_estimate passes the largest norm a tested pair point can have, so that a certified
 * target's count is exactly 0. */
void lpe_qld_direction(double *z, lpe_qld_dir *info, const double *P, const double *c, int t,
                       int V, int D, double radius);

/* z [D]: the public code's randomised projection heuristic (methods.md §4 (iii)), randomness from
 * Philox (seed, stream), draw `it` of step it. */
void lpe_qld_direction_arc(double *z, lpe_qld_dir *info, const double *P, const double *c, int t,
                           int V, int D, uint64_t seed, uint32_t stream);

/* d [D] = z / |z|; when z = 0 (t is the argmax at the mean: no shortest vector to speak of),
 * the direction of the tightest constraint at 0 instead. */
void lpe_qld_unit_direction(double *d, const double *z, const double *P, const double *c, int t,
                            int V, int D);

/* ---- the pair count ---------------------------------------------------------------------- */

/* e [V]: e_v = (P_t - P_v).d, the slope of margin v along d (e_t = 0). */
void lpe_qld_slopes(double *e, const double *P, const double *d, int t, int V, int D);

/* y [D], *y0: the split coefficient as a function of the raw activation, a_i = v_i.y - y0.
 * paper: a_i = z_i.d = (v_i - mu) A^{-T} d^T, so y = A^{-T} d (solve A^T y = d), y0 = mu.y;
 * arc:   a_i = u_i.d = v_i.d - mu A^{-T} d^T, so y = d and the same y0. */
void lpe_qld_split_coef(double *y, double *y0, const double *mu, const double *A, const double *d,
                        int D, int variant);

/* lo [nb], hi [nb]: for logits rows l [nb, ld] and target t, the shifts s for which t is the
 * argmax of l_i + s (d P^T): lo_i = max_{e_v > 0} (l_iv - l_it) / e_v, hi_i = min_{e_v < 0} of
 * the same; empty (lo > hi) when some v with e_v = 0 has l_iv > l_it. rinv [V] = 1 / e_v (0 where
 * e_v = 0); zero_e [n_zero] lists the v != t with e_v = 0. */
void lpe_qld_row_bounds(float *lo, float *hi, const float *l, long ld, const float *rinv,
                        const int32_t *zero_e, int n_zero, int t, int nb, int V);

/* #{i : lo <= a_sorted[i] <= hi} for a_sorted [n] ascending. */
int64_t lpe_qld_count_range(const double *a_sorted, int n, double lo, double hi);

/* The O(n^2 V) definition, for tests. z [n, D] from lpe_qld_rows, d [D] unit.
 * paper: #{(i, j) : argmax_v ((a_i d + b_j) P^T + c)_v = t},  a_i = z_i.d,  b_j = z_j - a_j d;
 * arc:   #{(i, j) : argmax_v ((z_i + a_j d) P^T + c)_v = t}   (methods.md §4 (ii)).
 * argmax ties: the lowest index. */
int64_t lpe_qld_count_brute(const double *z, const double *d, const double *P, const double *c,
                            int t, int n, int V, int D, int variant);

/* ---- the whole method for T targets sharing one activation sample set --------------------- */

typedef struct {
    int variant;      /* LPE_QLD_PAPER | LPE_QLD_ARC */
    int block_rows;   /* nb: logits rows per block of the pair count (memory nb x V floats) */
    double ridge;     /* 1e-5 (methods.md §4) */
    uint64_t seed;    /* arc heuristic's randomness */
    uint32_t stream0; /* arc: target i uses stream lpe_stream(LPE_STREAM_QLD, targets[i]) */
} lpe_qld_opts;

void lpe_qld_opts_default(lpe_qld_opts *o);

/* A prepared pair count (lpe_qld_prepare): everything per target that counting the n^2 pairs
 * needs, so that a backend can count them (backend.h: qld_pairs) without knowing the method.
 * Target i's pairs: for each row j, the logits l_j = x_j W_U + b_U of the row's x_j (paper: the
 * activation v_j; arc: v_j A^T), the interval [lo, hi] of shifts from lpe_qld_row_bounds with
 * rinv [i] and zero_e [i], and the count of sorted a [i] in [s + lo, s + hi], s = v_j . Y_i - y0_i
 * (paper) or 0 (arc). */
typedef struct {
    int variant, T, n, D, V;
    int block_rows;         /* nb: logits rows per block (memory nb x V floats) */
    const float *act;       /* [n, D] activations (the caller's) */
    const int32_t *targets; /* [T] (the caller's) */
    double *A;              /* [D, D] whitening factor, lower (arc rows: v A^T) */
    float *rinv;            /* [T, V] 1 / e_v per target (0 where e_v = 0) */
    int32_t **zero_e;       /* [T] lists of the v != t with e_v = 0 */
    int *n_zero;            /* [T] */
    double *asort;          /* [T, n] a_i ascending, per target */
    double *Y, *y0;         /* [T, D], [T] split coefficients (lpe_qld_split_coef) */
    uint8_t *skip;          /* [T] certified infeasible: count exactly 0 */
} lpe_qld_pairs;

/* The job for T targets: whitening, pullback, direction (dir [T]; dirs [T, D] unit directions in
 * whitened space, may be NULL), slopes, split coefficients and sorted a per target. */
void lpe_qld_prepare(lpe_qld_pairs *job, lpe_qld_dir *dir, double *dirs, const float *act,
                     const float *W_U, const float *b_U, const int32_t *targets, int T, int n,
                     int D, int V, const lpe_qld_opts *o);
void lpe_qld_pairs_free(lpe_qld_pairs *job);
/* count [T]: the pair count with float32 logits blocks x W_U (W_U [D, V], b_U [V] or NULL) on
 * the host: the CPU backend's qld_pairs and the reference a fused kernel is tested against. */
void lpe_qld_count_pairs(int64_t *count, const lpe_qld_pairs *job, const float *W_U,
                         const float *b_U);
/* est [T] = count / n^2; count [T] set to 0 where the direction search certified infeasibility. */
void lpe_qld_finish(double *est, int64_t *count, const lpe_qld_pairs *job);

/* prepare, count on the host, finish. est [T], count [T] (may be NULL), dir [T] (may be NULL),
 * dirs [T, D] (may be NULL). act [n, D] float32 activations, W_U [D, V], b_U [V] or NULL. */
void lpe_qld_estimate(double *est, int64_t *count, lpe_qld_dir *dir, double *dirs,
                      const float *act, const float *W_U, const float *b_U,
                      const int32_t *targets, int T, int n, int D, int V, const lpe_qld_opts *o);

/* ---- GLD ----------------------------------------------------------------------------------- */

/* ln Phi(x), Phi the standard normal CDF, accurate (relative 1e-14) for every finite x: erfc in
 * the body, Laplace's continued fraction for the Mills ratio below x = -10 (no underflow:
 * ln Phi(-40) = -804.608...). */
double lpe_log_ndtr(double x);

/* mu = mean(m), sigma = sample std (n - 1) of m [n]; sigma = 0 when n < 2. */
void lpe_gld_fit(double *mu, double *sigma, const double *m, int n);

/* ln Pr[N(mu, sigma^2) >= 0] = ln Phi(mu / sigma); sigma = 0: 0 (probability 1) when mu >= 0,
 * -inf otherwise (a point mass). */
double lpe_gld_log_estimate(double mu, double sigma);

#ifdef __cplusplus
}
#endif

#endif
