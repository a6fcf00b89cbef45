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
 *             S_t <- beta S_t + (1/B) sum_batch g(x)     (g: gradient scores of l_t, methods.md §3)
 *   estimate = mean of all n contributions (unbiased for any T); std_error from their variance.
 *
 * All targets advance together: one round draws B samples for every target of a chunk, and the
 * rows of all of them go through the backend in batches of R mixed rows; the gradient scores are
 * summed per target by the backend (scores_sum), never per sample on the host. Targets are
 * chunked only so that the score tables (TC x NSP doubles, twice) fit the memory budget.
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
#include "lpe/philox.h"
#include "lpe/tilted.h"

static const lpe_param_spec itgis_params[] = {
    {"batch", LPE_P_INT, "256", 1, 1 << 20, 0, "samples per target per round (score update)"},
    {"temperature", LPE_P_DOUBLE, "1.0", 1e-6, 1e6, 1, "T; a list runs a sweep"},
    {"decay", LPE_P_DOUBLE, "0.9", 0, 0.999999, 0, "beta: score table decay per round"},
    {"memory_mb", LPE_P_INT, "512", 1, 1 << 20, 0, "bound on the score tables (targets chunked)"},
    {NULL, 0, NULL, 0, 0, 0, NULL},
};

typedef struct { /* the section, typed (parsed once at load time) */
    int batch;          /* B */
    double temperature; /* T */
    double decay;       /* beta */
    double memory_mb;
} itgis_opts;

static void itgis_parse(void *opts, const lpe_params *p) {
    itgis_opts *o = opts;
    o->batch = (int)lpe_param_int(p, "batch");
    o->temperature = lpe_param_double(p, "temperature");
    o->decay = lpe_param_double(p, "decay");
    o->memory_mb = (double)lpe_param_int(p, "memory_mb");
}

typedef struct { /* Welford running moments of the contributions, plus weight sums for ESS */
    double n, mean, m2, sum_w, sum_w2, hits;
} moments;

static void moments_add(moments *m, double c, double w, int hit) {
    m->n += 1;
    double d = c - m->mean;
    m->mean += d / m->n;
    m->m2 += d * (c - m->mean);
    m->sum_w += w;
    m->sum_w2 += w * w;
    m->hits += hit;
}

/* One ITGIS run: options, the chunk's score tables, a round's samples and the call buffers. */
typedef struct {
    const lpe_est_ctx *ctx;
    const lpe_dist *d;
    lpe_backend *be;
    int T, k, R, B, TC;
    long long n;
    double temp, beta;
    int64_t *pos_off;  /* [k + 1] */
    int64_t NSP;
    double *S;         /* [TC, NSP] score tables */
    double *G;         /* [TC, NSP] round gradient sums */
    double *cdf;       /* [NSP] one target's q_j */
    double *logZ;      /* [k] */
    int32_t *tok;      /* [tc*Br, k] a round's samples */
    double *logw;      /* [tc*Br] their log-weights */
    int32_t *row_t;    /* [R] target token per row */
    int32_t *argmax;   /* [R] */
    int32_t *goff;     /* [R + 2] group offsets within a call */
    int32_t *gtgt;     /* [R + 1] chunk-local target of a group */
    double *gsum;      /* [groups, NSP] from the backend */
    size_t gsum_rows;
    moments *mom;      /* [T] */
} itgis_state;

static void itgis_init(itgis_state *s, const lpe_est_ctx *ctx) {
    const itgis_opts *opt = ctx->opts;
    const lpe_dist *d = ctx->dist;
    memset(s, 0, sizeof *s);
    s->ctx = ctx, s->d = d, s->be = ctx->be;
    s->T = ctx->n_targets, s->k = d->k, s->R = ctx->be->max_batch, s->n = ctx->budget;
    s->B = opt->batch, s->temp = opt->temperature, s->beta = opt->decay;
    const double mem = opt->memory_mb * 1048576.0;
    LPE_ASSERT(s->n >= 1); /* the budget key's range */

    const int k = s->k, R = s->R, B = s->B;
    s->pos_off = lpe_calloc((size_t)k + 1, sizeof *s->pos_off);
    for (int j = 0; j < k; j++) s->pos_off[j + 1] = s->pos_off[j] + lpe_dist_support(d, j);
    const int64_t NSP = s->NSP = s->pos_off[k];
    int TC = (int)(mem / (2.0 * NSP * sizeof(double)));
    s->TC = TC = TC < 1 ? 1 : TC > s->T ? s->T : TC;
    s->S = lpe_calloc((size_t)TC * NSP, sizeof *s->S);
    s->G = lpe_calloc((size_t)TC * NSP, sizeof *s->G);
    s->cdf = lpe_calloc((size_t)NSP, sizeof *s->cdf);
    s->logZ = lpe_calloc((size_t)k, sizeof *s->logZ);
    s->tok = lpe_calloc((size_t)TC * B * k, sizeof *s->tok);
    s->logw = lpe_calloc((size_t)TC * B, sizeof *s->logw);
    s->row_t = lpe_calloc((size_t)R, sizeof *s->row_t);
    s->argmax = lpe_calloc((size_t)R, sizeof *s->argmax);
    s->goff = lpe_calloc((size_t)R + 2, sizeof *s->goff);
    s->gtgt = lpe_calloc((size_t)R + 1, sizeof *s->gtgt);
    s->mom = lpe_calloc((size_t)s->T, sizeof *s->mom);
}

/* Round r of targets t0 .. t0 + tc: Br samples each from its tilted law, with log-weights. */
static void itgis_draw(itgis_state *s, int t0, int tc, long long r, int Br, double inv_T) {
    const lpe_dist *d = s->d;
    const int k = s->k;
    const int64_t *pos_off = s->pos_off;
    for (int a = 0; a < tc; a++) {
        const int32_t target = s->ctx->targets[t0 + a];
        const double *St = s->S + (size_t)a * s->NSP;
        for (int j = 0; j < k; j++) {
            const int f = d->positions[j];
            s->logZ[j] = lpe_tilted_cdf(s->cdf + pos_off[j], d->log_probs + d->offsets[f], NULL,
                                        St + pos_off[j], inv_T, lpe_dist_support(d, j));
        }
        const uint32_t stream = lpe_stream(LPE_STREAM_ITGIS, (uint32_t)target);
        for (int i = 0; i < Br; i++) {
            int32_t *x = s->tok + ((size_t)a * Br + i) * k;
            double lw = 0;
            for (int j = 0; j < k; j++) {
                uint32_t w[4];
                lpe_rng4(w, s->ctx->seed, stream, (uint64_t)(r * s->B + i), (uint32_t)j);
                const int f = d->positions[j], nj = lpe_dist_support(d, j);
                int y = lpe_tilted_pick(s->cdf + pos_off[j], nj, lpe_u01_53(w[0], w[1]));
                x[j] = d->values[d->offsets[f] + y];
                lw += s->logZ[j] - St[pos_off[j] + y] * inv_T;
            }
            s->logw[(size_t)a * Br + i] = lw;
        }
    }
}

/* Rows r0 .. r0 + nr of the round (row a*Br + i) in one backend call, which may span several
 * targets: hits and weights into the moments, gradient sums per target into G. */
static void itgis_call(itgis_state *s, int t0, int Br, long long r0, int nr) {
    lpe_backend *be = s->be;
    const int64_t NSP = s->NSP;
    int ng = 0;
    for (int q = 0; q < nr; q++) {
        const int a = (int)((r0 + q) / Br);
        s->row_t[q] = s->ctx->targets[t0 + a];
        if (q == 0 || s->gtgt[ng - 1] != a) {
            s->goff[ng] = q;
            s->gtgt[ng++] = a;
        }
    }
    s->goff[ng] = nr;
    be->load_tokens(be, s->tok + (size_t)r0 * s->k, nr);
    lpe_fwd_out fo = {.argmax = s->argmax};
    be->forward(be, &fo, s->row_t, nr, 1);
    if (s->gsum_rows < (size_t)ng) {
        free(s->gsum);
        s->gsum = lpe_calloc((size_t)ng * NSP, sizeof *s->gsum);
        s->gsum_rows = (size_t)ng;
    }
    be->scores_sum(be, s->gsum, s->goff, ng);
    for (int g = 0; g < ng; g++) {
        double *Ga = s->G + (size_t)s->gtgt[g] * NSP;
        const double *src = s->gsum + (size_t)g * NSP;
        for (int64_t i = 0; i < NSP; i++) Ga[i] += src[i];
    }
    for (int q = 0; q < nr; q++) {
        const double w = exp(s->logw[r0 + q]);
        const int hit = s->argmax[q] == s->row_t[q];
        moments_add(&s->mom[t0 + (r0 + q) / Br], hit ? w : 0.0, w, hit);
    }
}

/* One round of a chunk: draw, evaluate in calls of at most R rows, update the score tables. */
static void itgis_round(itgis_state *s, int t0, int tc, long long r) {
    const int B = s->B;
    const int Br = (int)(s->n - r * B < B ? s->n - r * B : B);
    const double Tr = r == 0 ? 1.0 : s->temp * (1 - pow(s->beta, (double)r)) / (1 - s->beta);
    itgis_draw(s, t0, tc, r, Br, 1.0 / Tr);
    memset(s->G, 0, sizeof(double) * (size_t)tc * s->NSP);
    const long long total = (long long)tc * Br;
    for (long long r0 = 0; r0 < total; r0 += s->R)
        itgis_call(s, t0, Br, r0, (int)(total - r0 < s->R ? total - r0 : s->R));
    for (int a = 0; a < tc; a++) {
        double *Sa = s->S + (size_t)a * s->NSP;
        const double *Ga = s->G + (size_t)a * s->NSP;
        for (int64_t i = 0; i < s->NSP; i++) Sa[i] = s->beta * Sa[i] + Ga[i] / Br;
    }
}

static void itgis_finish(itgis_state *s, lpe_est_out *out, long long rounds) {
    double *ess = lpe_est_out_diag(out, "ess");
    double *hits = lpe_est_out_diag(out, "hits");
    double *rounds_out = lpe_est_out_diag(out, "rounds");
    for (int t = 0; t < s->T; t++) {
        const moments *m = &s->mom[t];
        out->estimate[t] = m->mean;
        out->std_error[t] = m->n > 1 ? sqrt(m->m2 / (m->n - 1) / m->n) : NAN;
        out->model_calls[t] = (double)s->n;
        ess[t] = m->sum_w2 > 0 ? m->sum_w * m->sum_w / m->sum_w2 : 0;
        hits[t] = m->hits;
        rounds_out[t] = (double)rounds;
    }
    free(s->pos_off); free(s->S); free(s->G); free(s->cdf); free(s->logZ); free(s->tok);
    free(s->logw); free(s->row_t); free(s->argmax); free(s->goff); free(s->gtgt); free(s->gsum);
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
        memset(s.S, 0, sizeof(double) * (size_t)tc * s.NSP);
        for (long long r = 0; r < rounds; r++) {
            itgis_round(&s, t0, tc, r);
            const int Br = (int)(n - r * s.B < s.B ? n - r * s.B : s.B);
            lpe_progress_update(&prog, (double)t0 * n + (double)tc * (r * s.B + Br),
                                (double)s.T * n, "samples");
        }
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
