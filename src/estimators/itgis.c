/* itgis.c: independent token gradient importance sampling (methods.md §4, ITGIS).
 *
 * Dimension legend: T targets, TC targets in one chunk, B = ITGIS batch (samples per target per
 * round), R = backend rows per call, k positions, NSP = sum_j n_{f(j)} (every position's support,
 * position-major: entry pos_off[j] + y is token y of position j).
 *
 * Per target t, with a score table S_t[NSP] (0 at start), decay beta and temperature T:
 *   round r:  T_r = T (1 - beta^r) / (1 - beta)  (r > 0; r = 0 uses 1, S is 0 then anyway)
 *             q_j(y) = p_j(y) exp(S_t[j][y] / T_r) / Z_j
 *             x ~ prod_j q_j;   log w(x) = sum_j log Z_j - S_t[j][x_j] / T_r
 *             contribution c = w(x) 1[M(x) = t]
 *             S_t <- beta S_t + (1/B) sum_batch g(x)     (g: gradient scores of l_t, methods.md §3;
 *                                                          score = logprob: of log softmax_t, §10)
 *   estimate = mean of all n contributions (unbiased for any T); std_error from their variance.
 *
 * All targets advance together: one round draws B samples for every target of a chunk, and the
 * rows of all of them go through the backend in batches of R mixed rows. The whole inner loop
 * runs in the backend (backend.h, "ITGIS operations"): the tilted laws, the draws and their
 * log-weights, the moments, the per-target gradient sums and the score-table update; the host
 * only sequences the calls and reads the moments at the end of a chunk. Targets are chunked
 * only so that the score tables (TC x NSP doubles, twice; the backend adds the cdf, a third)
 * fit the memory budget.
 *
 * Randomness: sample i of round r of target t is number n = r B + i of stream
 * lpe_stream(LPE_STREAM_ITGIS, t's token id); position j uses sub = j. A target's samples depend
 * on neither the other targets nor the batching, so results are reproducible across backends and
 * batch sizes, and a temperature sweep uses common random numbers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/estimator.h"
#include "lpe/itgis_moments.h"

static const lpe_param_spec itgis_params[] = {
    {"batch", LPE_P_INT, "256", 1, 1 << 20, 1, "samples per target per round (score update)"},
    {"temperature", LPE_P_DOUBLE, "1.0", 1e-6, 1e6, 1, "T; a list runs a sweep"},
    {"decay", LPE_P_DOUBLE, "0.9", 0, 0.999999, 1, "beta: score table decay per round"},
    {"memory_mb", LPE_P_INT, "512", 1, 1 << 20, 0, "bound on the score tables (targets chunked)"},
    {"score", LPE_P_STRING, "logit", 1, 0, 1,
     "what the gradient scores differentiate: logit (l_t, the paper's) | logprob (log softmax_t)"},
    {NULL, 0, NULL, 0, 0, 0, NULL},
};

typedef struct { /* the section, typed (parsed once at load time) */
    int batch;          /* B */
    double temperature; /* T */
    double decay;       /* beta */
    double memory_mb;
    int grad_of;        /* score: LPE_GRAD_LOGIT or LPE_GRAD_LOGPROB (backend.h) */
} itgis_opts;

static void itgis_parse(void *opts, const lpe_params *p) {
    itgis_opts *o = opts;
    o->batch = (int)lpe_param_int(p, "batch");
    o->temperature = lpe_param_double(p, "temperature");
    o->decay = lpe_param_double(p, "decay");
    o->memory_mb = (double)lpe_param_int(p, "memory_mb");
    const char *sc = lpe_param_str(p, "score");
    if (!strcmp(sc, "logit")) o->grad_of = LPE_GRAD_LOGIT;
    else if (!strcmp(sc, "logprob")) o->grad_of = LPE_GRAD_LOGPROB;
    else lpe_params_fail(p, "score", "score must be logit or logprob, not '%s'", sc);
}

/* One ITGIS run: options, sizes and the host's small per-call arrays. The score tables, the
 * tilted laws, the log-weights and the moments live in the backend (backend.h, "ITGIS
 * operations"); per call only the rows' target ids go to the backend (forward's argument). */
typedef struct {
    const lpe_est_ctx *ctx;
    lpe_backend *be;
    int T, R, B, TC;
    long long n;
    double temp, beta;
    int32_t *row_t;           /* [R] target token per row of a call */
    lpe_itgis_moments *mom;   /* [T] */
} itgis_state;

static void itgis_init(itgis_state *s, const lpe_est_ctx *ctx) {
    const itgis_opts *opt = ctx->opts;
    const lpe_dist *d = ctx->dist;
    memset(s, 0, sizeof *s);
    s->ctx = ctx, s->be = ctx->be;
    s->T = ctx->n_targets, s->R = ctx->be->max_batch, s->n = ctx->budget;
    s->B = opt->batch, s->temp = opt->temperature, s->beta = opt->decay;
    LPE_ASSERT(s->n >= 1); /* the budget key's range */
    int64_t NSP = 0;
    for (int j = 0; j < d->k; j++) NSP += lpe_dist_support(d, j);
    /* memory_mb bounds the score tables S and G ([TC, NSP] float64 each), as before issue 10,
     * so that the chunking, and with it every result, is unchanged; the backend holds a third
     * such table, the tilted cdf, so it uses 1.5 x memory_mb */
    int TC = (int)(opt->memory_mb * 1048576.0 / (2.0 * NSP * sizeof(double)));
    s->TC = TC < 1 ? 1 : TC > s->T ? s->T : TC;
    s->row_t = lpe_calloc((size_t)s->R, sizeof *s->row_t);
    s->mom = lpe_calloc((size_t)s->T, sizeof *s->mom);
    s->be->itgis_tables(s->be, s->TC);
    s->be->grad_of = opt->grad_of;
}

/* Rows r0 .. r0 + nr of the round (row a*Br + i) in one backend call, which may span several
 * targets: draw, forward with gradient, hits and weights into the moments, G per target. */
static void itgis_call(itgis_state *s, int t0, int Br, long long r0, int nr) {
    lpe_backend *be = s->be;
    for (int q = 0; q < nr; q++) s->row_t[q] = s->ctx->targets[t0 + (r0 + q) / Br];
    be->itgis_draw(be, r0, nr);
    be->forward(be, NULL, s->row_t, nr, 1);
    be->itgis_accumulate(be);
}

/* One round of a chunk: the tilted laws, calls of at most R rows, the score-table update.
 *   T_r = T (1 - beta^r) / (1 - beta)  (r > 0; r = 0 uses 1, S is 0 then anyway) */
static void itgis_round(itgis_state *s, int t0, int tc, long long r) {
    const int B = s->B;
    const int Br = (int)(s->n - r * B < B ? s->n - r * B : B);
    const double Tr = r == 0 ? 1.0 : s->temp * (1 - pow(s->beta, (double)r)) / (1 - s->beta);
    s->be->itgis_round(s->be, r, Br, 1.0 / Tr);
    const long long total = (long long)tc * Br;
    for (long long r0 = 0; r0 < total; r0 += s->R)
        itgis_call(s, t0, Br, r0, (int)(total - r0 < s->R ? total - r0 : s->R));
    s->be->itgis_update(s->be, s->beta);
}

static void itgis_finish(itgis_state *s, lpe_est_out *out, long long rounds) {
    double *ess = lpe_est_out_diag(out, "ess");
    double *hits = lpe_est_out_diag(out, "hits");
    double *rounds_out = lpe_est_out_diag(out, "rounds");
    for (int t = 0; t < s->T; t++) {
        const lpe_itgis_moments *m = &s->mom[t];
        out->estimate[t] = m->mean;
        out->std_error[t] = m->n > 1 ? sqrt(m->m2 / (m->n - 1) / m->n) : NAN;
        out->model_calls[t] = (double)s->n;
        ess[t] = m->sum_w2 > 0 ? m->sum_w * m->sum_w / m->sum_w2 : 0;
        hits[t] = m->hits;
        rounds_out[t] = (double)rounds;
    }
    s->be->itgis_tables(s->be, 0);
    s->be->grad_of = LPE_GRAD_LOGIT;
    free(s->row_t);
    free(s->mom);
}

static void itgis_run(lpe_est_out *out, const lpe_est_ctx *ctx) {
    itgis_state s;
    itgis_init(&s, ctx);
    /* the diagnostics exist from the start, in this order (the results list them so) */
    lpe_est_out_diag(out, "ess");
    lpe_est_out_diag(out, "hits");
    lpe_est_out_diag(out, "rounds");
    lpe_progress prog;
    lpe_progress_begin(&prog, "itgis");
    const long long n = s.n, rounds = (n + s.B - 1) / s.B;
    for (int t0 = 0; t0 < s.T; t0 += s.TC) {
        const int tc = s.T - t0 < s.TC ? s.T - t0 : s.TC;
        s.be->itgis_reset(s.be, ctx->targets + t0, tc, ctx->seed, s.B);
        for (long long r = 0; r < rounds; r++) {
            itgis_round(&s, t0, tc, r);
            const int Br = (int)(n - r * s.B < s.B ? n - r * s.B : s.B);
            lpe_progress_update(&prog, (double)t0 * n + (double)tc * (r * s.B + Br),
                                (double)s.T * n, "samples");
        }
        s.be->itgis_read(s.be, s.mom + t0, LPE_ITGIS_MOMENTS);
    }
    lpe_progress_end(&prog);
    itgis_finish(&s, out, rounds);
}

const lpe_estimator lpe_est_itgis = {
    .name = "itgis",
    .summary = "independent token gradient importance sampling (Wu & Hilton 2024)",
    .params = itgis_params,
    .backend_flags = LPE_BE_GRAD,
    .opts_size = sizeof(itgis_opts),
    .parse = itgis_parse,
    .run = itgis_run,
};
