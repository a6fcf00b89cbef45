/* walkers.h: Metropolis-Hastings walkers on the backend's walker state, the move that MHIS, the
 * splitting estimator (ams) and tempered SMC (smc) share.
 *
 * Dimension legend: n = walker rows (<= the backend's max_batch), k = positions.
 *
 * Row q targets pi_q(x) ∝ p(x) exp(beta_q e_q(x)) 1[m_q(x) > level_q], s_q the logit of the
 * row's target t_q, m_q(x) = s_q(x) - max_{v != t_q} l_v(x) its margin (level_q = -inf: no
 * restriction; beta_q = 0: D itself, restricted), and the energy e_q = s_q (LPE_ENERGY_SCORE, MHIS
 * and smc) or e_q = min(m_q, 0) (LPE_ENERGY_MARGIN: as beta grows, pi_q tends to D restricted to
 * the event M(x) = t_q; annealing on it is splitting with soft levels). One step, every row:
 *   j ~ uniform over the positions whose support has more than one token;
 *   y ~ phi(y | x) ∝ p_j(y) exp(tilt g_j^x(y))        (gradient scores at the current state;
 *                                                       MHIS: tilt = beta);
 *   x' = x with x_j = y; evaluate s(x'), m(x') and g^{x'};
 *   accept when m(x') > level and
 *       log u < beta (e(x') - e(x)) + log p_j(y) - log p_j(x_j) + log phi(x_j | x') - log phi(y | x).
 * The proposal's reverse probability uses the scores at x', so the ratio is exact and pi_q is
 * invariant (detailed balance); a rejected move below the level keeps x, which is the
 * Metropolis rule for the restricted law.
 *
 * Randomness: row q's step `st` draws lpe_rng4(seed, stream[q], index[q], 2 st) for the
 * position and proposal and (.., 2 st + 1) for the acceptance: a row's chain depends only on its
 * own key, never on which rows share the batch.
 *
 * The step is one backend operation (walkers_step, backend.h: issue 10): positions, proposals,
 * the model calls, the reverse proposals, the decisions and the commits stay in the backend,
 * with the per-row settings and results. The host arrays below are mirrors: the settings are
 * uploaded when they differ from the last ones uploaded (compared on the host: no transfer when
 * nothing changed), and with `mirror` set (the default) every step reads the rows' results and
 * state tokens back; MHIS clears it and keeps its statistics in the backend (walkers_accum).
 */
#ifndef LPE_WALKERS_H
#define LPE_WALKERS_H

#include <stdint.h>

#include "lpe/backend.h"
#include "lpe/estimator.h"

/* LPE_ENERGY_SCORE, LPE_ENERGY_MARGIN: lpe/walker_ops.h (backend.h includes it) */

/* e(x) of a row from its score s(x) and margin m(x) */
static inline double lpe_walkers_energy(int kind, double score, double margin) {
    return lpe_walker_energy(kind, score, margin);
}

typedef struct {
    lpe_backend *be; /* with LPE_BE_GRAD | LPE_BE_STATE and a distribution (use_dist) */
    int n, k;        /* n: rows in use (<= cap) */
    int cap;         /* rows allocated (lpe_walkers_init's n) */
    /* per row, set by the caller */
    int32_t *target;   /* [n] target token */
    double *beta;      /* [n] inverse temperature of the target law */
    uint8_t *energy;   /* [n] LPE_ENERGY_SCORE or LPE_ENERGY_MARGIN: what beta tilts */
    double *tilt;      /* [n] inverse temperature of the proposal (MHIS: beta) */
    double *level;     /* [n] a move to margin <= level is rejected (-inf: none) */
    uint32_t *stream;  /* [n] Philox stream */
    uint64_t *index;   /* [n] Philox index */
    /* the walker state (host mirror of the backend's): set by eval and gather, and by every
     * step while `mirror` is set; tok is also the input of eval */
    int32_t *tok;      /* [n, k] */
    float *score;      /* [n] s(x) */
    float *margin;     /* [n] m(x) */
    uint8_t *hit;      /* [n] argmax = target */
    uint8_t *accept;   /* [n] the last step's decision */
    int mirror;        /* 1 (init): steps read results and tokens back; 0: they read nothing */

    int n_mov;         /* positions a step can change (support > 1; 1 when there are none) */
    void *shadow;      /* the settings as last uploaded: [n] of each settings array, packed */
    int32_t *gtmp;     /* [n, k] gather scratch */
    int uploaded;      /* rows whose settings are in the backend (0: none yet) */
} lpe_walkers;

/* n rows on be (be->dist is D); rows start with beta 0, energy SCORE, tilt 0, level -inf, stream 0, index q. */
void lpe_walkers_init(lpe_walkers *w, lpe_backend *be, int n);
void lpe_walkers_free(lpe_walkers *w);
/* The rows' tokens w->tok become the walker state: one forward and backward of all n rows
 * (n model calls), score, margin and hit set, every row committed, the backend's statistics
 * of the rows reset (walkers_accum). */
void lpe_walkers_eval(lpe_walkers *w);
/* One step of rows 0 .. rows-1 (rows model calls); returns the number of accepted moves (0
 * when `mirror` is clear: the decisions stay in the backend). */
int lpe_walkers_step(lpe_walkers *w, int rows, uint64_t seed, long long step);
/* The particle methods' layout (ams, smc): G <= Gmax targets of N rows each. Checks N against
 * the backend's batch and the budget (errors name the INI line of `particles`); returns Gmax. */
int lpe_walkers_groups(const lpe_est_ctx *ctx, int N);
/* Rows g N .. g N + N - 1 (g < G): target t0 + g's start particles, inputs 2^62 + i of stream
 * lpe_stream(purpose, target) drawn from D; target and stream set, beta and tilt 0, level -inf,
 * w->n = G N. Not evaluated (lpe_walkers_eval). */
void lpe_walkers_start(lpe_walkers *w, const lpe_est_ctx *ctx, int t0, int G, int N,
                       uint32_t purpose);
/* Row q < rows becomes a copy of row src[q] (state in the backend, mirror and per-row settings;
 * resampling): no model call. */
void lpe_walkers_gather(lpe_walkers *w, const int32_t *src, int rows);
/* Uploads the rows' settings when they differ from the last uploaded (steps do it themselves). */
void lpe_walkers_sync(lpe_walkers *w);

#endif
