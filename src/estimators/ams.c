/* ams.c: adaptive multilevel splitting on the margin (methods.md §10; Cérou & Guyader 2007, in
 * the unbiased form of Bréhier, Lelièvre & Rousset 2016 that handles ties).
 *
 * Dimension legend: T targets, N particles per target, G targets per group (G N <= the
 * backend's batch), n = G N walker rows, K = particles killed at one iteration.
 *
 * The margin m(x) = s(x) - max_{v != t} l_v(x) is >= 0 exactly where t is the argmax (ties
 * aside), so P = Pr_D[m(x) >= 0] is the probability of a level set, and splitting estimates it
 * as a product of conditional probabilities that are not small:
 *   start: N particles from D;
 *   iteration i: z_i = the k-th smallest margin. If z_i >= 0, stop. Otherwise kill EVERY particle
 *     with m <= z_i (K_i >= k of them: ties on a discrete space are common, and killing all of
 *     them is what keeps the estimator unbiased); if K_i = N, the system is extinct (P_hat = 0).
 *     Each killed particle is replaced by a copy of a survivor drawn uniformly, and each copy
 *     makes `moves` Metropolis-Hastings steps that leave D restricted to {m > z_i} invariant
 *     (walkers.h: proposals tilted by the gradient scores at 1/temperature; a move to m <= z_i
 *     is rejected);
 *   P_hat = prod_i (1 - K_i / N) x (1/N) #{particles with argmax = t}.
 * E[P_hat] = P for any N >= 2 and k (the 2016 paper's theorem; it needs the moves to leave the
 * restricted law invariant, not to mix).
 *
 * Budget: model calls per target: N for the start, K moves per iteration. When the next
 * iteration would pass the budget, the run stops and reports the estimate of the level reached:
 * the product so far times the fraction of particles that already hit (often 0). That is
 * biased low; the diagnostic `reached` says whether the level reached 0 (1) or not (0).
 *
 * Randomness (stream lpe_stream(LPE_STREAM_AMS, t), so a target's result does not depend on the
 * other targets): start particle i is input sample 2^62 + i; at iteration i, copy j picks its
 * survivor with draw (index 2^61 + i, sub j), and moves with walker index i N + j, sub 2 s and
 * 2 s + 1 for step s. A target's rows keep their relative order in every layout, so the draws
 * and the result are the same whatever targets share the batch.
 *
 * Diagnostics: iterations, final_level (the last z, or the level stopped at), acceptance_rate
 * of the moves, ancestors (distinct start particles with descendants at the end), reached,
 * extinct. No standard error is defined per run (NaN).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/estimator.h"
#include "lpe/philox.h"
#include "walkers.h"

static const lpe_param_spec ams_params[] = {
    {"particles", LPE_P_INT, "128", 2, 1 << 24, 1, "N: particles per target"},
    {"kill", LPE_P_DOUBLE, "0.1", 1e-9, 1, 1,
     "k / N: the level is the k-th smallest margin, k = max(1, round(kill N))"},
    {"moves", LPE_P_INT, "3", 1, 1 << 20, 1, "MH steps of each copy per iteration"},
    {"temperature", LPE_P_DOUBLE, "1.0", 1e-6, 1e6, 1,
     "T of the proposals' gradient tilt (the target law is D restricted; a list runs a sweep)"},
    {NULL, 0, NULL, 0, 0, 0, NULL},
};

typedef struct { /* the section, typed (parsed once at load time) */
    int particles;      /* N */
    double kill;
    int moves;
    double temperature;
} ams_opts;

static void ams_parse(void *opts, const lpe_params *p) {
    ams_opts *o = opts;
    o->particles = (int)lpe_param_int(p, "particles");
    o->kill = lpe_param_double(p, "kill");
    o->moves = (int)lpe_param_int(p, "moves");
    o->temperature = lpe_param_double(p, "temperature");
}

typedef struct {
    double log_w;      /* sum_i log(1 - K_i / N) */
    double level;      /* the current z */
    long long calls;
    double accepts, proposals;
    int iters, done, reached, extinct;
} ams_target;

typedef struct {
    int N, k, moves, G;
    double tilt;
    long long budget;
    uint64_t seed;
    lpe_walkers w;
    ams_target *tg;    /* [G] */
    int *own;          /* [n] target of each row (local index) */
    int *anc;          /* [n] start particle each row descends from */
    int *cp;           /* [n] copy number (rows of this iteration's copies) */
    int *tmp;          /* [n] scratch for gathering own and anc */
    int32_t *src;      /* [n] the next layout: row r takes row src[r] */
    uint8_t *killed;   /* [n] */
    int *surv;         /* [N] one target's survivors, in row order */
    float *mg;         /* [N] one target's margins */
} ams_sys;

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Group rows g N .. g N + N - 1 start as target g's particles, sampled from D and evaluated. */
static void group_start(ams_sys *s, const lpe_est_ctx *ctx, int t0, int G) {
    lpe_walkers *w = &s->w;
    lpe_walkers_start(w, ctx, t0, G, s->N, LPE_STREAM_AMS);
    for (int g = 0; g < G; g++) s->tg[g] = (ams_target){.level = -INFINITY, .calls = s->N};
    for (int r = 0; r < w->n; r++) w->tilt[r] = s->tilt, s->own[r] = r / s->N, s->anc[r] = r % s->N;
    lpe_walkers_eval(w);
}

/* Target g's level and kills for this iteration: marks killed rows, fills s->surv; returns K
 * (0 when the target stops now). */
static int target_kills(ams_sys *s, int g) {
    lpe_walkers *w = &s->w;
    ams_target *a = &s->tg[g];
    int m = 0, ns = 0, K = 0;
    for (int r = 0; r < w->n; r++)
        if (s->own[r] == g) s->mg[m++] = w->margin[r];
    qsort(s->mg, (size_t)m, sizeof *s->mg, cmp_float);
    const double z = s->mg[s->k - 1];
    for (int r = 0; r < w->n; r++)
        if (s->own[r] == g) {
            s->killed[r] = w->margin[r] <= z;
            if (s->killed[r]) K++;
            else s->surv[ns++] = r;
        }
    if (z >= 0) a->reached = 1;
    else if (K == s->N) a->extinct = 1;
    else if (a->calls + (long long)K * s->moves > s->budget) a->done = 1; /* out of budget */
    if (z >= 0 || K == s->N || a->done) {
        a->done = 1;
        for (int r = 0; r < w->n; r++)
            if (s->own[r] == g) s->killed[r] = 0;
        return 0;
    }
    a->log_w += log1p(-(double)K / s->N);
    a->level = z;
    a->calls += (long long)K * s->moves;
    a->iters++;
    return K;
}

/* The copies of target g's killed rows, appended to the layout at *r; survivors drawn uniformly. */
static void target_copies(ams_sys *s, int g, int K, int *r) {
    const int ns = s->N - K;
    const ams_target *a = &s->tg[g];
    for (int j = 0; j < K; j++) {
        uint32_t u[4];
        lpe_rng4(u, s->seed, s->w.stream[s->surv[0]], (1ull << 61) + (uint64_t)(a->iters - 1),
                 (uint32_t)j);
        s->src[*r] = s->surv[lpe_below(u[0], (uint32_t)ns)];
        s->cp[*r] = j;
        (*r)++;
    }
}

/* One iteration of every live target of the group; returns the rows moved (0: all done). */
static int iterate(ams_sys *s) {
    lpe_walkers *w = &s->w;
    const int n = w->n;
    int r = 0;
    memset(s->killed, 0, (size_t)n);
    for (int g = 0; g < s->G; g++) {
        if (s->tg[g].done) continue;
        int K = target_kills(s, g);
        if (K) target_copies(s, g, K, &r);
    }
    const int copies = r;
    if (copies == 0) return 0;
    for (int q = 0; q < n; q++)
        if (!s->killed[q]) s->src[r++] = q;
    LPE_ASSERT(r == n);
    /* own and anc follow the rows */
    int *tmp = s->tmp;
    for (int q = 0; q < n; q++) tmp[q] = s->own[s->src[q]];
    memcpy(s->own, tmp, (size_t)n * sizeof *tmp);
    for (int q = 0; q < n; q++) tmp[q] = s->anc[s->src[q]];
    memcpy(s->anc, tmp, (size_t)n * sizeof *tmp);
    lpe_walkers_gather(w, s->src, n);
    for (int q = 0; q < n; q++) {
        const ams_target *a = &s->tg[s->own[q]];
        w->level[q] = a->level;
        if (q < copies) w->index[q] = (uint64_t)(a->iters - 1) * s->N + (uint64_t)s->cp[q];
    }
    for (int mv = 0; mv < s->moves; mv++) {
        lpe_walkers_step(w, copies, s->seed, mv);
        for (int q = 0; q < copies; q++) {
            s->tg[s->own[q]].accepts += w->accept[q];
            s->tg[s->own[q]].proposals += 1;
        }
    }
    return copies;
}

static void group_finish(ams_sys *s, lpe_est_out *out, int t0) {
    lpe_walkers *w = &s->w;
    double *it = lpe_est_out_diag(out, "iterations"), *lv = lpe_est_out_diag(out, "final_level");
    double *ar = lpe_est_out_diag(out, "acceptance_rate"), *na = lpe_est_out_diag(out, "ancestors");
    double *re = lpe_est_out_diag(out, "reached"), *ex = lpe_est_out_diag(out, "extinct");
    uint8_t *seen = lpe_calloc((size_t)s->N, 1);
    for (int g = 0; g < s->G; g++) {
        const ams_target *a = &s->tg[g];
        int hits = 0, distinct = 0;
        memset(seen, 0, (size_t)s->N);
        for (int r = 0; r < w->n; r++)
            if (s->own[r] == g) {
                hits += w->hit[r];
                distinct += !seen[s->anc[r]];
                seen[s->anc[r]] = 1;
            }
        const int t = t0 + g;
        out->estimate[t] = a->extinct ? 0.0 : exp(a->log_w) * hits / s->N;
        out->std_error[t] = NAN;
        out->model_calls[t] = (double)a->calls;
        it[t] = a->iters, lv[t] = a->level, na[t] = distinct;
        ar[t] = a->proposals > 0 ? a->accepts / a->proposals : NAN;
        re[t] = a->reached, ex[t] = a->extinct;
    }
    free(seen);
}

static void ams_run(lpe_est_out *out, const lpe_est_ctx *ctx) {
    ams_sys s = {0};
    const ams_opts *opt = ctx->opts;
    s.N = opt->particles;
    const double kf = opt->kill;
    s.k = (int)fmax(1.0, fmin((double)s.N - 1, round(kf * s.N)));
    s.moves = opt->moves;
    s.tilt = 1.0 / opt->temperature;
    s.budget = ctx->budget, s.seed = ctx->seed;
    const int Gmax = lpe_walkers_groups(ctx, s.N);
    lpe_walkers_init(&s.w, ctx->be, Gmax * s.N);
    s.tg = lpe_calloc((size_t)Gmax, sizeof *s.tg);
    const size_t n = (size_t)Gmax * s.N;
    s.own = lpe_calloc(n, sizeof *s.own), s.anc = lpe_calloc(n, sizeof *s.anc);
    s.cp = lpe_calloc(n, sizeof *s.cp), s.src = lpe_calloc(n, sizeof *s.src);
    s.tmp = lpe_calloc(n, sizeof *s.tmp);
    s.killed = lpe_calloc(n, 1);
    s.surv = lpe_calloc((size_t)s.N, sizeof *s.surv), s.mg = lpe_calloc((size_t)s.N, sizeof *s.mg);
    lpe_progress prog;
    lpe_progress_begin(&prog, "ams");
    for (int t0 = 0; t0 < ctx->n_targets; t0 += Gmax) {
        s.G = ctx->n_targets - t0 < Gmax ? ctx->n_targets - t0 : Gmax;
        group_start(&s, ctx, t0, s.G);
        while (iterate(&s) > 0) {
        }
        group_finish(&s, out, t0);
        lpe_progress_update(&prog, t0 + s.G, ctx->n_targets, "targets");
    }
    lpe_progress_end(&prog);
    lpe_walkers_free(&s.w);
    free(s.tg), free(s.own), free(s.anc), free(s.cp), free(s.src), free(s.tmp), free(s.killed), free(s.surv),
        free(s.mg);
}

const lpe_estimator lpe_est_ams = {
    .name = "ams",
    .summary = "adaptive multilevel splitting on the margin (unbiased, ties killed together)",
    .params = ams_params,
    .backend_flags = LPE_BE_GRAD | LPE_BE_STATE,
    .opts_size = sizeof(ams_opts),
    .parse = ams_parse,
    .run = ams_run,
};
