/* smc.c: tempered sequential Monte Carlo for the tilted law (methods.md §10).
 *
 * Dimension legend: T targets, N particles per target, G targets per group (G N <= the
 * backend's batch), n = G N walker rows; target g's particles are one block of N rows.
 *
 * MHIS's law pi(x) ∝ p(x) e^{s(x)/T} has the normaliser Z = E_p[e^{s/T}], and
 *   P = Pr_p[M(x) = t] = Z E_pi[1[M(x) = t] e^{-s/T}].
 * MHIS estimates 1/Z by a harmonic mean over its chain, which has a large variance. Tempered SMC
 * estimates Z without bias by annealing beta from 0 (p itself) to 1/T:
 *   start: N particles from p, weights 1/N, log Z_hat = 0;
 *   stage: the next beta' is the largest in (beta, 1/T] whose incremental weights
 *     G_i = e^{(beta' - beta) s_i} keep ESS = (sum G)^2 / sum G^2 >= ess N (bisection);
 *     log Z_hat += log mean_i G_i; the weights become W_i ∝ G_i; resample (systematic) and move
 *     each particle `moves` Metropolis-Hastings steps invariant for p e^{beta' s} (walkers.h,
 *     proposals tilted at beta');
 *   at beta = 1/T the rest of the budget samples the final law: every population after a move
 *     (and the weighted one that reached it) is recorded, and
 *       P_hat = mean over recorded populations of Z_hat sum_i W_i 1[argmax_i = t] e^{-s_i/T}.
 * For a fixed schedule, Z_hat_beta sum W h e^{-beta s} is an unbiased estimate of E_p[h] at
 * every stage (Del Moral's unbiasedness of the SMC normalising constant) and after any number of
 * invariant moves, so the mean over populations is unbiased too. The schedule here is chosen
 * from the particles (the ESS rule), which adds a bias of order 1/N (Beskos, Jasra, Kantas &
 * Thiery 2016): small beside the spread at the N used, and bounded by the tests against exact
 * enumeration. When the budget ends before 1/T the weighted population of the last stage is the
 * estimate (`final_beta` says where it stopped). This is MHIS's estimator with the harmonic mean
 * replaced by Z_hat and burn-in replaced by annealing.
 *
 * Budget: model calls per target: N at the start, N moves per stage.
 * Randomness (stream lpe_stream(LPE_STREAM_SMC, t)): start particle i is input sample 2^62 + i;
 * stage s resamples with draw (index 2^61 + s, sub 0); moves use walker index s N + i, sub 2 m
 * and 2 m + 1 for step m. A target's result does not depend on the other targets.
 * Diagnostics: stages, final_beta (1/T when reached), min_ess (over stages, as a fraction of N),
 * acceptance_rate, log10_Z. No per-run standard error (NaN).
 *
 * energy = margin (issue 12): the same algorithm with s replaced by the energy e = min(m, 0), m
 * the margin l_t - max_{v != t} l_v, so pi_beta ∝ p e^{beta min(m, 0)}: splitting with soft levels
 * (Cérou, Del Moral, Furon & Guyader 2012). e = 0 exactly on the event (m >= 0), so the final
 * factor e^{-beta e} is 1 there and P_hat = Z_hat x the weighted hit fraction: no score
 * correction, and as beta grows pi_beta tends to D restricted to the event. The incremental
 * weights e^{db e} are <= 1. The proposals' tilt is min(beta, tilt_max) on the gradient scores of
 * s (there are no margin scores): a sharp final law on the margin (1/T of 10 or more) is far
 * hotter than a useful proposal tilt. Sharp laws also mix poorly (methods.md §10); the
 * testbed's held-out tuning chose a mild 1/T = 0.5.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/estimator.h"
#include "lpe/philox.h"
#include "walkers.h"

static const lpe_param_spec smc_params[] = {
    {"particles", LPE_P_INT, "256", 2, 1 << 24, 1, "N: particles per target"},
    {"temperature", LPE_P_DOUBLE, "1.0", 1e-6, 1e6, 1, "T of the final law p e^{e/T} (e: the energy); a list runs a sweep"},
    {"ess", LPE_P_DOUBLE, "0.5", 0.01, 0.99, 1, "ESS kept at each stage, as a fraction of N"},
    {"moves", LPE_P_INT, "2", 1, 1 << 20, 1, "MH steps of every particle per stage"},
    {"energy", LPE_P_STRING, "score", 1, 0, 1,
     "score: anneal p e^{beta s} (MHIS's law) | margin: anneal p e^{beta min(m, 0)} (soft levels)"},
    {"tilt_max", LPE_P_DOUBLE, "1e6", 0, 1e6, 1,
     "the proposals' tilt is min(beta, tilt_max) (gradient scores of s; default: beta)"},
    {NULL, 0, NULL, 0, 0, 0, NULL},
};

typedef struct { /* the section, typed (parsed once at load time) */
    int particles;      /* N */
    double temperature;
    double ess;
    int moves;
    int energy;         /* LPE_ENERGY_SCORE or LPE_ENERGY_MARGIN */
    double tilt_max;
} smc_opts;

static void smc_parse(void *opts, const lpe_params *p) {
    smc_opts *o = opts;
    o->particles = (int)lpe_param_int(p, "particles");
    o->temperature = lpe_param_double(p, "temperature");
    o->ess = lpe_param_double(p, "ess");
    o->moves = (int)lpe_param_int(p, "moves");
    o->tilt_max = lpe_param_double(p, "tilt_max");
    const char *e = lpe_param_str(p, "energy");
    if (!strcmp(e, "score")) o->energy = LPE_ENERGY_SCORE;
    else if (!strcmp(e, "margin")) o->energy = LPE_ENERGY_MARGIN;
    else lpe_params_fail(p, "energy", "energy must be score or margin, not '%s'", e);
}

typedef struct {
    double beta, log_Z, min_ess, accepts, proposals;
    double sum;        /* sum over recorded populations of sum_i W_i h_i e^{log Z - beta s_i} */
    long long calls;
    int stages, n_rec, done;
} smc_target;

typedef struct {
    int N, moves, G, energy;
    double beta_max, ess, tilt_max;
    long long budget;
    uint64_t seed;
    lpe_walkers w;
    smc_target *tg; /* [G] */
    int *blk;       /* [G] target g's block (rows blk N .. blk N + N - 1) */
    int32_t *src;   /* [n] */
    double *lw;     /* [N] log incremental weights of one target */
    double *e;      /* [N] energies e(x) of one target's particles */
} smc_sys;

/* ESS fraction of the incremental weights e^{db e_i}, and log mean of them (shifted by max) */
static double ess_of(const double *s, int N, double db, double *log_mean) {
    double mx = -INFINITY, a = 0, b = 0;
    for (int i = 0; i < N; i++) mx = fmax(mx, db * s[i]);
    for (int i = 0; i < N; i++) {
        const double g = exp(db * s[i] - mx);
        a += g, b += g * g;
    }
    if (log_mean) *log_mean = mx + log(a / N);
    return a * a / (b * N);
}

/* The next beta for a block of energies s [N]: the largest in (beta, beta_max] with ESS >= ess. */
static double next_beta(const double *s, int N, double beta, double beta_max, double ess) {
    if (ess_of(s, N, beta_max - beta, NULL) >= ess) return beta_max;
    double lo = 0, hi = beta_max - beta; /* ESS(lo) = 1 >= ess > ESS(hi) */
    for (int it = 0; it < 60; it++) {
        const double mid = 0.5 * (lo + hi);
        if (ess_of(s, N, mid, NULL) >= ess) lo = mid;
        else hi = mid;
    }
    return beta + (lo > 0 ? lo : hi); /* never stall: a zero step would repeat the stage */
}

static void group_start(smc_sys *s, const lpe_est_ctx *ctx, int t0) {
    lpe_walkers_start(&s->w, ctx, t0, s->G, s->N, LPE_STREAM_SMC);
    for (int r = 0; r < s->w.n; r++) s->w.energy[r] = (uint8_t)s->energy;
    for (int g = 0; g < s->G; g++) s->tg[g] = (smc_target){.calls = s->N, .min_ess = 1}, s->blk[g] = g;
    lpe_walkers_eval(&s->w);
}

/* Target g's energies into s->e [N] */
static void energies(smc_sys *s, int g) {
    const lpe_walkers *w = &s->w;
    const int r0 = s->blk[g] * s->N;
    for (int i = 0; i < s->N; i++)
        s->e[i] = lpe_walkers_energy(s->energy, w->score[r0 + i], w->margin[r0 + i]);
}

/* Target g at the final law: add sum_i W_i h_i e^{log Z - beta e_i} (W: lw normalised by sum,
 * or uniform when lw is NULL) to its running sum. */
static void record(smc_sys *s, int g, const double *lw, double sum) {
    const lpe_walkers *w = &s->w;
    smc_target *a = &s->tg[g];
    const int N = s->N, r0 = s->blk[g] * N;
    double acc = 0;
    for (int i = 0; i < N; i++) /* margin energy: e = 0 on the event, the factor is Z_hat */
        if (w->hit[r0 + i])
            acc += (lw ? lw[i] / sum : 1.0 / N) *
                   exp(a->log_Z - a->beta * lpe_walkers_energy(s->energy, w->score[r0 + i],
                                                                w->margin[r0 + i]));
    a->sum += acc, a->n_rec++;
}

/* Reweight target g to its next beta (at the final law: nothing to reweight); returns 1 when it
 * goes on (resample, move), 0 when the budget is spent. Resampling indices into src [N]. */
static int target_stage(smc_sys *s, int g, int32_t *src) {
    lpe_walkers *w = &s->w;
    smc_target *a = &s->tg[g];
    const int N = s->N, r0 = s->blk[g] * N, annealing = a->beta < s->beta_max;
    for (int i = 0; i < N; i++) src[i] = r0 + i;
    if (annealing) {
        energies(s, g);
        const double *sc = s->e; /* [N] */
        const double nb = next_beta(sc, N, a->beta, s->beta_max, s->ess);
        double log_mean, mx = -INFINITY, sum = 0;
        a->min_ess = fmin(a->min_ess, ess_of(sc, N, nb - a->beta, &log_mean));
        a->log_Z += log_mean;
        for (int i = 0; i < N; i++) mx = fmax(mx, (s->lw[i] = (nb - a->beta) * sc[i]));
        for (int i = 0; i < N; i++) sum += (s->lw[i] = exp(s->lw[i] - mx)); /* unnormalised W */
        a->beta = nb;
        a->stages++;
        if (nb >= s->beta_max || a->calls + (long long)N * s->moves > s->budget)
            record(s, g, s->lw, sum);
        if (a->calls + (long long)N * s->moves > s->budget) return 0;
        uint32_t u[4]; /* systematic: points (u + i) / N against the cumulative weights */
        lpe_rng4(u, s->seed, w->stream[r0], (1ull << 61) + (uint64_t)a->stages, 0);
        const double u0 = lpe_u01_53(u[0], u[1]);
        double cum = s->lw[0] / sum;
        for (int i = 0, j = 0; i < N; i++) {
            const double pt = (u0 + i) / N;
            while (cum < pt && j < N - 1) cum += s->lw[++j] / sum;
            src[i] = r0 + j;
        }
    } else {
        if (a->calls + (long long)N * s->moves > s->budget) return 0;
        a->stages++; /* a sampling stage: moves at the final law, no resampling */
    }
    a->calls += (long long)N * s->moves;
    return 1;
}

/* One stage of every live target; live blocks first in the new layout. Returns live targets. */
static int stage(smc_sys *s) {
    lpe_walkers *w = &s->w;
    const int N = s->N;
    int live = 0, *order = lpe_calloc((size_t)s->G, sizeof *order), *go = lpe_calloc((size_t)s->G, sizeof *go);
    for (int g = 0; g < s->G; g++)
        if (!s->tg[g].done && target_stage(s, g, s->src + (size_t)g * N)) go[g] = 1;
        else s->tg[g].done = 1;
    for (int g = 0; g < s->G; g++)
        if (go[g]) order[live++] = g;
    for (int g = 0, m = live; g < s->G; g++)
        if (!go[g]) order[m++] = g;
    for (int b = 0; b < s->G; b++) { /* block b of the new layout is target order[b] */
        const int g = order[b], r0 = s->blk[g] * N;
        for (int i = 0; i < N; i++)
            s->src[(size_t)s->G * N + b * N + i] = go[g] ? s->src[g * N + i] : r0 + i;
    }
    lpe_walkers_gather(w, s->src + (size_t)s->G * N, s->G * N);
    for (int b = 0; b < s->G; b++) {
        const int g = order[b];
        s->blk[g] = b;
        for (int i = 0; i < N; i++) {
            const int r = b * N + i;
            w->beta[r] = s->tg[g].beta;
            w->tilt[r] = fmin(s->tg[g].beta, s->tilt_max);
            w->index[r] = (uint64_t)s->tg[g].stages * N + i;
        }
    }
    for (int mv = 0; mv < s->moves && live; mv++) {
        lpe_walkers_step(w, live * N, s->seed, mv);
        for (int r = 0; r < live * N; r++) {
            s->tg[order[r / N]].accepts += w->accept[r];
            s->tg[order[r / N]].proposals += 1;
        }
        for (int b = 0; b < live; b++) /* populations at the final law are recorded */
            if (s->tg[order[b]].beta >= s->beta_max) record(s, order[b], NULL, 0);
    }
    free(order), free(go);
    return live;
}

static void group_finish(smc_sys *s, lpe_est_out *out, int t0) {
    double *st = lpe_est_out_diag(out, "stages"), *fb = lpe_est_out_diag(out, "final_beta");
    double *me = lpe_est_out_diag(out, "min_ess"), *ar = lpe_est_out_diag(out, "acceptance_rate");
    double *lz = lpe_est_out_diag(out, "log10_Z");
    for (int g = 0; g < s->G; g++) {
        const smc_target *a = &s->tg[g];
        const int t = t0 + g;
        out->estimate[t] = a->n_rec ? a->sum / a->n_rec : 0.0;
        out->std_error[t] = NAN;
        out->model_calls[t] = (double)a->calls;
        st[t] = a->stages, fb[t] = a->beta, me[t] = a->min_ess, lz[t] = a->log_Z / log(10.0);
        ar[t] = a->proposals > 0 ? a->accepts / a->proposals : NAN;
    }
}

static void smc_run(lpe_est_out *out, const lpe_est_ctx *ctx) {
    smc_sys s = {0};
    const smc_opts *opt = ctx->opts;
    s.N = opt->particles;
    s.beta_max = 1.0 / opt->temperature;
    s.ess = opt->ess;
    s.moves = opt->moves;
    s.energy = opt->energy, s.tilt_max = opt->tilt_max;
    s.budget = ctx->budget, s.seed = ctx->seed;
    const int Gmax = lpe_walkers_groups(ctx, s.N);
    lpe_walkers_init(&s.w, ctx->be, Gmax * s.N);
    s.tg = lpe_calloc((size_t)Gmax, sizeof *s.tg);
    s.blk = lpe_calloc((size_t)Gmax, sizeof *s.blk);
    s.src = lpe_calloc((size_t)2 * Gmax * s.N, sizeof *s.src); /* [2, n]: per target, layout */
    s.lw = lpe_calloc((size_t)s.N, sizeof *s.lw);
    s.e = lpe_calloc((size_t)s.N, sizeof *s.e);
    lpe_progress prog;
    lpe_progress_begin(&prog, "smc");
    for (int t0 = 0; t0 < ctx->n_targets; t0 += Gmax) {
        s.G = ctx->n_targets - t0 < Gmax ? ctx->n_targets - t0 : Gmax;
        group_start(&s, ctx, t0);
        while (stage(&s) > 0) {
        }
        group_finish(&s, out, t0);
        lpe_progress_update(&prog, t0 + s.G, ctx->n_targets, "targets");
    }
    lpe_progress_end(&prog);
    lpe_walkers_free(&s.w);
    free(s.tg), free(s.blk), free(s.src), free(s.lw), free(s.e);
}

const lpe_estimator lpe_est_smc = {
    .name = "smc",
    .summary = "tempered SMC to p e^{s/T}: an unbiased Z in place of MHIS's harmonic mean",
    .params = smc_params,
    .backend_flags = LPE_BE_GRAD | LPE_BE_STATE,
    .opts_size = sizeof(smc_opts),
    .parse = smc_parse,
    .run = smc_run,
};
