/* itgis.c: independent token gradient importance sampling (SPEC 4, ITGIS).
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
 *             S_t <- beta S_t + (1/B) sum_batch g(x)     (g: gradient scores of l_t, SPEC 3)
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
#include "tilted.h"

static const lpe_param_spec itgis_params[] = {
    {"batch", LPE_P_INT, "256", 1, 1 << 20, 0, "samples per target per round (score update)"},
    {"temperature", LPE_P_DOUBLE, "1.0", 1e-6, 1e6, 1, "T; a list runs a sweep"},
    {"decay", LPE_P_DOUBLE, "0.9", 0, 0.999999, 0, "beta: score table decay per round"},
    {"memory_mb", LPE_P_INT, "512", 1, 1 << 20, 0, "bound on the score tables (targets chunked)"},
    {NULL, 0, NULL, 0, 0, 0, NULL},
};

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

static void itgis_run(lpe_est_out *out, const lpe_est_ctx *ctx) {
    const lpe_dist *d = ctx->dist;
    lpe_backend *be = ctx->be;
    const int T = ctx->n_targets, k = d->k, R = be->max_batch;
    const long long n = ctx->budget;
    const int B = (int)lpe_param_int(ctx->params, "batch");
    const double temp = lpe_param_double(ctx->params, "temperature");
    const double beta = lpe_param_double(ctx->params, "decay");
    const double mem = (double)lpe_param_int(ctx->params, "memory_mb") * 1048576.0;
    LPE_REQUIRE(n >= 1, "itgis: budget must be >= 1");

    int64_t *pos_off = lpe_calloc((size_t)k + 1, sizeof *pos_off); /* [k + 1] */
    for (int j = 0; j < k; j++) pos_off[j + 1] = pos_off[j] + lpe_dist_support(d, j);
    const int64_t NSP = pos_off[k];
    int TC = (int)(mem / (2.0 * NSP * sizeof(double)));
    TC = TC < 1 ? 1 : TC > T ? T : TC;

    double *S = lpe_calloc((size_t)TC * NSP, sizeof *S);       /* [TC, NSP] score tables */
    double *G = lpe_calloc((size_t)TC * NSP, sizeof *G);       /* [TC, NSP] round gradient sums */
    double *cdf = lpe_calloc((size_t)NSP, sizeof *cdf);        /* [NSP] one target's q_j */
    double *logZ = lpe_calloc((size_t)k, sizeof *logZ);        /* [k] */
    int32_t *tok = lpe_calloc((size_t)TC * B * k, sizeof *tok);/* [tc*Br, k] a round's samples */
    double *logw = lpe_calloc((size_t)TC * B, sizeof *logw);   /* [tc*Br] their log-weights */
    int32_t *row_t = lpe_calloc((size_t)R, sizeof *row_t);     /* [R] target token per row */
    int32_t *argmax = lpe_calloc((size_t)R, sizeof *argmax);   /* [R] */
    int32_t *goff = lpe_calloc((size_t)R + 2, sizeof *goff);   /* group offsets within a call */
    int32_t *gtgt = lpe_calloc((size_t)R + 1, sizeof *gtgt);   /* chunk-local target of a group */
    double *gsum = NULL;                                       /* [groups, NSP] from the backend */
    size_t gsum_rows = 0;
    moments *mom = lpe_calloc((size_t)T, sizeof *mom);
    double *ess = lpe_est_out_diag(out, "ess");
    double *hits = lpe_est_out_diag(out, "hits");
    double *rounds_out = lpe_est_out_diag(out, "rounds");
    lpe_progress prog;
    lpe_progress_begin(&prog, "itgis");

    const long long rounds = (n + B - 1) / B;
    for (int t0 = 0; t0 < T; t0 += TC) {
        const int tc = T - t0 < TC ? T - t0 : TC;
        memset(S, 0, sizeof(double) * (size_t)tc * NSP);
        for (long long r = 0; r < rounds; r++) {
            const int Br = (int)(n - r * B < B ? n - r * B : B);
            const double Tr = r == 0 ? 1.0 : temp * (1 - pow(beta, (double)r)) / (1 - beta);
            const double inv_T = 1.0 / Tr;
            /* draw the round's samples of every target of the chunk, with their log-weights */
            for (int a = 0; a < tc; a++) {
                const int32_t target = ctx->targets[t0 + a];
                const double *St = S + (size_t)a * NSP;
                for (int j = 0; j < k; j++) {
                    const int f = d->positions[j];
                    logZ[j] = lpe_tilted_cdf(cdf + pos_off[j], d->log_probs + d->offsets[f], NULL,
                                             St + pos_off[j], inv_T, lpe_dist_support(d, j));
                }
                const uint32_t stream = lpe_stream(LPE_STREAM_ITGIS, (uint32_t)target);
                for (int i = 0; i < Br; i++) {
                    int32_t *x = tok + ((size_t)a * Br + i) * k;
                    double lw = 0;
                    for (int j = 0; j < k; j++) {
                        uint32_t w[4];
                        lpe_rng4(w, ctx->seed, stream, (uint64_t)(r * B + i), (uint32_t)j);
                        const int f = d->positions[j], nj = lpe_dist_support(d, j);
                        int y = lpe_tilted_pick(cdf + pos_off[j], nj, lpe_u01_53(w[0], w[1]));
                        x[j] = d->values[d->offsets[f] + y];
                        lw += logZ[j] - St[pos_off[j] + y] * inv_T;
                    }
                    logw[(size_t)a * Br + i] = lw;
                }
            }
            memset(G, 0, sizeof(double) * (size_t)tc * NSP);
            /* rows a*Br + i, in backend calls of at most R rows; a call may span several targets */
            const long long total = (long long)tc * Br;
            for (long long r0 = 0; r0 < total; r0 += R) {
                const int nr = (int)(total - r0 < R ? total - r0 : R);
                int ng = 0;
                for (int q = 0; q < nr; q++) {
                    const int a = (int)((r0 + q) / Br);
                    row_t[q] = ctx->targets[t0 + a];
                    if (q == 0 || gtgt[ng - 1] != a) {
                        goff[ng] = q;
                        gtgt[ng++] = a;
                    }
                }
                goff[ng] = nr;
                be->load_tokens(be, tok + (size_t)r0 * k, nr);
                lpe_fwd_out fo = {.argmax = argmax};
                be->forward(be, &fo, row_t, nr, 1);
                if (gsum_rows < (size_t)ng) {
                    free(gsum);
                    gsum = lpe_calloc((size_t)ng * NSP, sizeof *gsum);
                    gsum_rows = (size_t)ng;
                }
                be->scores_sum(be, gsum, goff, ng);
                for (int g = 0; g < ng; g++) {
                    double *Ga = G + (size_t)gtgt[g] * NSP;
                    const double *src = gsum + (size_t)g * NSP;
                    for (int64_t s = 0; s < NSP; s++) Ga[s] += src[s];
                }
                for (int q = 0; q < nr; q++) {
                    const double w = exp(logw[r0 + q]);
                    const int hit = argmax[q] == row_t[q];
                    moments_add(&mom[t0 + (r0 + q) / Br], hit ? w : 0.0, w, hit);
                }
            }
            for (int a = 0; a < tc; a++) {
                double *Sa = S + (size_t)a * NSP;
                const double *Ga = G + (size_t)a * NSP;
                for (int64_t s = 0; s < NSP; s++) Sa[s] = beta * Sa[s] + Ga[s] / Br;
            }
            lpe_progress_update(&prog, (double)t0 * n + (double)tc * (r * B + Br), (double)T * n,
                                "samples");
        }
    }
    lpe_progress_end(&prog);

    for (int t = 0; t < T; t++) {
        const moments *m = &mom[t];
        out->estimate[t] = m->mean;
        out->std_error[t] = m->n > 1 ? sqrt(m->m2 / (m->n - 1) / m->n) : NAN;
        out->model_calls[t] = (double)n;
        ess[t] = m->sum_w2 > 0 ? m->sum_w * m->sum_w / m->sum_w2 : 0;
        hits[t] = m->hits;
        rounds_out[t] = (double)rounds;
    }
    free(pos_off); free(S); free(G); free(cdf); free(logZ); free(tok); free(logw);
    free(row_t); free(argmax); free(goff); free(gtgt); free(gsum); free(mom);
}

const lpe_estimator lpe_est_itgis = {
    .name = "itgis",
    .summary = "independent token gradient importance sampling (Wu & Hilton 2024)",
    .params = itgis_params,
    .backend_flags = LPE_BE_GRAD,
    .run = itgis_run,
};
