/* walker_ops.h: the types of the backend's walker operations (backend.h, "walker operations
 * (issue 10)") and the per-walker statistics that MHIS keeps in the backend, one definition for
 * the host (src/cpu/cpu_walkers.c, src/estimators/) and the device (kernels/cuda_walkers.cu).
 *
 * Dimension legend: n = walker rows (<= the backend's max_batch), k = positions.
 *
 * The maths of a step is src/estimators/walkers.h's (methods.md §4); the statistics are those of
 * src/estimators/mhis.c (log-sum-exp accumulators and Welford moments), here so that the CPU and
 * the GPU add a step to them with the same code.
 */
#ifndef LPE_WALKER_OPS_H
#define LPE_WALKER_OPS_H

#include <math.h>
#include <stdint.h>

#include "lpe/philox.h" /* LPE_HD */

enum { LPE_ENERGY_SCORE = 0, LPE_ENERGY_MARGIN = 1 }; /* what a row's beta tilts */

/* Per-row settings given to walkers_set (host arrays, row q at [q]); walkers.h explains them. */
typedef struct {
    const int32_t *target;  /* [n] target token */
    const double *beta;     /* [n] inverse temperature of the target law */
    const uint8_t *energy;  /* [n] LPE_ENERGY_SCORE or LPE_ENERGY_MARGIN */
    const double *tilt;     /* [n] inverse temperature of the proposal */
    const double *level;    /* [n] a move to margin <= level is rejected (-inf: none) */
    const uint32_t *stream; /* [n] Philox stream */
    const uint64_t *index;  /* [n] Philox index */
    const int32_t *tok;     /* [n, k] new chains' states (evaluated, statistics reset), or NULL:
                               the settings change, the states stay */
} lpe_walker_rows;

/* Per-row results read back by walkers_read; any pointer may be NULL (not read). */
typedef struct {
    float *score;    /* [n] s(x) of the state */
    float *margin;   /* [n] m(x) of the state */
    uint8_t *hit;    /* [n] argmax(x) = target */
    uint8_t *accept; /* [n] the last step's decision (1 after walkers_set with tokens) */
} lpe_walker_view;

/* A snapshot of the states (walkers_snapshot / walkers_snapshot_get): backend-held host memory,
 * valid until the next walkers_snapshot. */
typedef struct {
    int rows;
    const int32_t *tok;    /* [rows, k] */
    const float *score;    /* [rows] */
    const uint8_t *accept; /* [rows] */
} lpe_walker_snap;

/* e(x) of a row from its score s(x) and margin m(x) */
LPE_HD double lpe_walker_energy(int kind, double score, double margin) {
    return kind == LPE_ENERGY_MARGIN ? (margin < 0 ? margin : 0.0) : score;
}

typedef struct { /* Welford moments of s */
    double n, mean, m2;
} lpe_moments;

/* MHIS's statistics of one walker over its recorded steps (walkers_accum). */
typedef struct {
    double log_a, log_b; /* log sum 1[hit] e^{-beta s}, log sum e^{-beta s} */
    lpe_moments all, first; /* s over the recorded steps, and over their first half (R-hat) */
    double accepts, proposals;
    double hits;
} lpe_walker_stats;

LPE_HD double lpe_lse_add(double acc, double x) {
    if (x == -INFINITY) return acc;
    if (acc == -INFINITY) return x;
    return acc > x ? acc + log1p(exp(x - acc)) : x + log1p(exp(acc - x));
}

LPE_HD void lpe_moments_add(lpe_moments *m, double x) {
    m->n += 1;
    const double d = x - m->mean;
    m->mean += d / m->n;
    m->m2 += d * (x - m->mean);
}

LPE_HD void lpe_walker_stats_reset(lpe_walker_stats *w) {
    const lpe_moments z = {0, 0, 0};
    w->log_a = w->log_b = -INFINITY;
    w->all = w->first = z;
    w->accepts = w->proposals = w->hits = 0;
}

/* One recorded step of a walker at score s (float, as the backend keeps it), its hit and accept
 * flags and inverse temperature beta; first: the step lies in the first half of the recording. */
LPE_HD void lpe_walker_stats_add(lpe_walker_stats *w, float s, int hit, int accept, double beta,
                                 int first) {
    const double c = s;
    w->accepts += accept;
    w->proposals += 1;
    const double e = -c * beta;
    w->log_b = lpe_lse_add(w->log_b, e);
    if (hit) w->log_a = lpe_lse_add(w->log_a, e);
    w->hits += hit;
    lpe_moments_add(&w->all, c);
    if (first) lpe_moments_add(&w->first, c);
}

#endif
