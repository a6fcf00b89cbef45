/* mhis.c: Metropolis-Hastings importance sampling (SPEC 4, MHIS).
 *
 * Dimension legend: T targets, W walkers per target, R = backend rows per call (walker rows of a
 * chunk), k positions, NS = support size of the chosen position, MS = largest support.
 *
 * Stationary law pi(x) ∝ p(x) exp(s(x)/T), s = target logit. Each step, every walker:
 *   j ~ uniform over the positions whose support has more than one token (a constant position
 *       can only propose its current token: a wasted model call; this is our one deviation from
 *       "uniform over all positions", and it leaves pi unchanged);
 *   y ~ phi(y | x) ∝ p_j(y) exp(g_j^x(y) / T)           (gradient scores at the current state)
 *   x' = x with x_j = y; evaluate s(x') and g^{x'};
 *   accept when log u < (s(x') - s(x))/T + log p_j(y) - log p_j(x_j)
 *                       + log phi(x_j | x') - log phi(y | x).
 * After burn_in steps, every step of every walker is recorded (repeats count):
 *   P_hat = sum 1[M(x)=t] e^{-s/T} / sum e^{-s/T}        (E_pi[e^{-s/T}] = 1 / E_p[e^{s/T}])
 * kept per walker in log space (log-sum-exp), so no exponent can overflow.
 * Standard error: walkers are independent replicates, so the ratio estimator's variance is taken
 * across walkers (delta method): SE^2 = W/(W-1) sum_w (A_w - P B_w)^2 / (sum_w B_w)^2.
 * Across-walker agreement: Gelman-Rubin R-hat of s(x) over the walkers of a target.
 *
 * All targets advance together: walker rows of many targets share each backend call, and the
 * walker state (tokens and gradient) stays in the backend (LPE_BUF_STATE); only the chosen
 * position's scores come back to the host. Walker rows beyond the backend's batch are run in
 * chunks, one after another (walkers are independent).
 *
 * Randomness: walker w of target t uses stream lpe_stream(LPE_STREAM_MHIS, token id of t),
 * index w; step s draws with sub = 2s (position, proposal) and 2s + 1 (acceptance); the initial
 * state is sample 2^62 + w of the same stream drawn from D.
 *
 * Budget: `budget` recorded samples per target, i.e. ceil(budget / W) recorded steps per walker;
 * model_calls = W (1 + burn_in + steps) counts the burn-in and the initial evaluation too (the
 * paper's accounting gives MHIS its burn-in on top of the budget).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/estimator.h"
#include "lpe/h5io.h"
#include "lpe/philox.h"
#include "tilted.h"

static const lpe_param_spec mhis_params[] = {
    {"temperature", LPE_P_DOUBLE, "1.0", 1e-6, 1e6, 1, "T; a list runs a sweep"},
    {"walkers", LPE_P_INT, "32", 2, 1 << 24, 0, "independent chains per target"},
    {"burn_in", LPE_P_INT, "1024", 0, 1 << 30, 0, "steps per walker before recording"},
    {"save_chains", LPE_P_BOOL, "false", 1, 0, 0, "write walker states, scores, accepts"},
    {"chain_stride", LPE_P_INT, "16", 1, 1 << 30, 0, "record every n-th recorded step"},
    {NULL, 0, NULL, 0, 0, 0, NULL},
};

static inline double lse_add(double acc, double x) {
    if (x == -INFINITY) return acc;
    if (acc == -INFINITY) return x;
    return acc > x ? acc + log1p(exp(x - acc)) : x + log1p(exp(acc - x));
}

typedef struct {
    double log_a, log_b;      /* log sum 1[hit] e^{-s/T}, log sum e^{-s/T} over recorded steps */
    double n, s_mean, s_m2;   /* Welford moments of s over recorded steps (for R-hat) */
    double accepts, proposals;
    double hits;
} walker_stats;

typedef struct { /* the chain datasets, when saved */
    hid_t tokens, score, accept, target, walker, step;
} chain_out;

static void chain_open(chain_out *c, hid_t g, int k) {
    c->tokens = lpe_h5_stream_create(g, "chains/tokens", H5T_NATIVE_INT32, k, 4096);
    c->score = lpe_h5_stream_create(g, "chains/score", H5T_NATIVE_FLOAT, 0, 65536);
    c->accept = lpe_h5_stream_create(g, "chains/accept", H5T_NATIVE_UINT8, 0, 65536);
    c->target = lpe_h5_stream_create(g, "chains/target", H5T_NATIVE_INT32, 0, 65536);
    c->walker = lpe_h5_stream_create(g, "chains/walker", H5T_NATIVE_INT32, 0, 65536);
    c->step = lpe_h5_stream_create(g, "chains/step", H5T_NATIVE_INT32, 0, 65536);
}

static void chain_close(chain_out *c) {
    H5Dclose(c->tokens); H5Dclose(c->score); H5Dclose(c->accept);
    H5Dclose(c->target); H5Dclose(c->walker); H5Dclose(c->step);
}

static void mhis_run(lpe_est_out *out, const lpe_est_ctx *ctx) {
    const lpe_dist *d = ctx->dist;
    lpe_backend *be = ctx->be;
    const int T = ctx->n_targets, k = d->k, R = be->max_batch, V = d->d_vocab;
    const double temp = lpe_param_double(ctx->params, "temperature"), inv_T = 1.0 / temp;
    const int W = (int)lpe_param_int(ctx->params, "walkers");
    const long long burn = lpe_param_int(ctx->params, "burn_in");
    const int save = lpe_param_bool(ctx->params, "save_chains");
    const long long stride = lpe_param_int(ctx->params, "chain_stride");
    const long long rec_steps = (ctx->budget + W - 1) / W, steps = burn + rec_steps;
    LPE_REQUIRE(ctx->budget >= 1, "mhis: budget must be >= 1");
    LPE_REQUIRE(be->with_state && be->with_grad, "mhis: backend lacks walker-state buffers");

    /* positions that can move */
    int *movable = lpe_calloc((size_t)k, sizeof *movable), n_mov = 0;
    int MS = 1;
    for (int j = 0; j < k; j++) {
        int nj = lpe_dist_support(d, j);
        if (nj > 1) movable[n_mov++] = j;
        MS = nj > MS ? nj : MS;
    }
    if (n_mov == 0) movable[n_mov++] = 0; /* a single input: proposals repeat it, all accepted */

    int32_t *cur = lpe_calloc((size_t)R * k, sizeof *cur);    /* [R, k] walker states (host copy) */
    int32_t *prop = lpe_calloc((size_t)R * k, sizeof *prop);  /* [R, k] proposals */
    double *cur_s = lpe_calloc((size_t)R, sizeof *cur_s);     /* [R] s(x) */
    int32_t *cur_hit = lpe_calloc((size_t)R, sizeof *cur_hit);/* [R] 1[M(x) = t] */
    int32_t *pos = lpe_calloc((size_t)R, sizeof *pos);        /* [R] chosen position */
    int32_t *yloc = lpe_calloc((size_t)R, sizeof *yloc);      /* [R] proposed local index */
    int32_t *xloc = lpe_calloc((size_t)R, sizeof *xloc);      /* [R] current local index */
    double *lphi_fwd = lpe_calloc((size_t)R, sizeof *lphi_fwd); /* [R] log phi(y | x) */
    float *sc = lpe_calloc((size_t)R * MS, sizeof *sc);       /* [R, MS] scores at pos */
    double *cdf = lpe_calloc((size_t)R * MS, sizeof *cdf);    /* [R, MS] (one per row: OpenMP) */
    uint8_t *acc = lpe_calloc((size_t)R, sizeof *acc);        /* [R] accepted */
    int32_t *row_t = lpe_calloc((size_t)R, sizeof *row_t);    /* [R] target token */
    int32_t *argmax = lpe_calloc((size_t)R, sizeof *argmax);  /* [R] */
    float *tl = lpe_calloc((size_t)R, sizeof *tl);            /* [R] */
    int32_t *ibuf = lpe_calloc((size_t)R * 3, sizeof *ibuf);  /* [3, R] chain columns */
    float *scol = lpe_calloc((size_t)R, sizeof *scol);        /* [R] chain score column */
    walker_stats *ws = lpe_calloc((size_t)T * W, sizeof *ws); /* [T, W] */
    for (long long i = 0; i < (long long)T * W; i++) ws[i].log_a = ws[i].log_b = -INFINITY;
    chain_out chains = {0};
    if (save) chain_open(&chains, (hid_t)ctx->out_group, k);

    lpe_progress prog;
    lpe_progress_begin(&prog, "mhis");
    const long long rows_total = (long long)T * W;
    for (long long c0 = 0; c0 < rows_total; c0 += R) {
        const int nr = (int)(rows_total - c0 < R ? rows_total - c0 : R);
        /* initial states from D, evaluated once and committed as the walker state */
        for (int q = 0; q < nr; q++) {
            const long long g = c0 + q;
            row_t[q] = ctx->targets[g / W];
            lpe_dist_sample(cur + (size_t)q * k, d, ctx->seed,
                            lpe_stream(LPE_STREAM_MHIS, (uint32_t)row_t[q]),
                            (1ull << 62) + (uint64_t)(g % W), 1);
        }
        be->load_tokens(be, cur, nr);
        lpe_fwd_out fo = {.argmax = argmax, .target_logit = tl};
        be->forward(be, &fo, row_t, nr, 1);
        memset(acc, 1, (size_t)nr);
        be->commit_state(be, acc, nr);
        for (int q = 0; q < nr; q++) {
            cur_s[q] = tl[q];
            cur_hit[q] = argmax[q] == row_t[q];
        }

        for (long long st = 0; st < steps; st++) {
            /* propose from the state's scores at a random movable position */
            for (int q = 0; q < nr; q++) {
                uint32_t w[4];
                lpe_rng4(w, ctx->seed, lpe_stream(LPE_STREAM_MHIS, (uint32_t)row_t[q]),
                         (uint64_t)((c0 + q) % W), (uint32_t)(2 * st));
                pos[q] = movable[lpe_below(w[0], (uint32_t)n_mov)];
                acc[q] = 0;
                /* keep the proposal's uniform in yloc's slot until scores are back */
                lphi_fwd[q] = lpe_u01_53(w[1], w[2]);
            }
            be->scores_at(be, sc, MS, pos, LPE_BUF_STATE, nr);
            #pragma omp parallel for schedule(static)
            for (int q = 0; q < nr; q++) {
                const int j = pos[q], f = d->positions[j], nj = lpe_dist_support(d, j);
                const double *lp = d->log_probs + d->offsets[f];
                double *cq = cdf + (size_t)q * MS;
                const double logZ = lpe_tilted_cdf(cq, lp, sc + (size_t)q * MS, NULL, inv_T, nj);
                const int y = lpe_tilted_pick(cq, nj, lphi_fwd[q]);
                yloc[q] = y;
                xloc[q] = d->local_of[(size_t)f * V + cur[(size_t)q * k + j]];
                lphi_fwd[q] = lpe_tilted_logq(lp[y], sc[(size_t)q * MS + y], inv_T, logZ);
                memcpy(prop + (size_t)q * k, cur + (size_t)q * k, sizeof(int32_t) * k);
                prop[(size_t)q * k + j] = d->values[d->offsets[f] + y];
            }
            be->load_tokens(be, prop, nr);
            be->forward(be, &fo, row_t, nr, 1);
            be->scores_at(be, sc, MS, pos, LPE_BUF_BATCH, nr);
            const int record = st >= burn;
            for (int q = 0; q < nr; q++) {
                const int j = pos[q], f = d->positions[j], nj = lpe_dist_support(d, j);
                const double *lp = d->log_probs + d->offsets[f];
                const double logZr = lpe_tilted_cdf(cdf + (size_t)q * MS, lp, sc + (size_t)q * MS,
                                                     NULL, inv_T, nj);
                const double lphi_rev =
                    lpe_tilted_logq(lp[xloc[q]], sc[(size_t)q * MS + xloc[q]], inv_T, logZr);
                const double log_ratio = ((double)tl[q] - cur_s[q]) * inv_T + lp[yloc[q]] -
                                         lp[xloc[q]] + lphi_rev - lphi_fwd[q];
                uint32_t w[4];
                lpe_rng4(w, ctx->seed, lpe_stream(LPE_STREAM_MHIS, (uint32_t)row_t[q]),
                         (uint64_t)((c0 + q) % W), (uint32_t)(2 * st + 1));
                const double u = lpe_u01_53(w[0], w[1]);
                acc[q] = log(u) < log_ratio;
                walker_stats *s = &ws[c0 + q];
                if (acc[q]) {
                    memcpy(cur + (size_t)q * k, prop + (size_t)q * k, sizeof(int32_t) * k);
                    cur_s[q] = tl[q];
                    cur_hit[q] = argmax[q] == row_t[q];
                }
                if (record) {
                    s->accepts += acc[q];
                    s->proposals += 1;
                    const double e = -cur_s[q] * inv_T;
                    s->log_b = lse_add(s->log_b, e);
                    if (cur_hit[q]) s->log_a = lse_add(s->log_a, e);
                    s->hits += cur_hit[q];
                    s->n += 1;
                    const double dlt = cur_s[q] - s->s_mean;
                    s->s_mean += dlt / s->n;
                    s->s_m2 += dlt * (cur_s[q] - s->s_mean);
                }
            }
            be->commit_state(be, acc, nr);
            if (save && record && (st - burn) % stride == 0) {
                for (int q = 0; q < nr; q++) {
                    scol[q] = (float)cur_s[q];
                    ibuf[q] = row_t[q];
                    ibuf[R + q] = (int32_t)((c0 + q) % W);
                    ibuf[2 * R + q] = (int32_t)(st - burn);
                }
                lpe_h5_stream_append(chains.tokens, H5T_NATIVE_INT32, k, nr, cur);
                lpe_h5_stream_append(chains.score, H5T_NATIVE_FLOAT, 0, nr, scol);
                lpe_h5_stream_append(chains.accept, H5T_NATIVE_UINT8, 0, nr, acc);
                lpe_h5_stream_append(chains.target, H5T_NATIVE_INT32, 0, nr, ibuf);
                lpe_h5_stream_append(chains.walker, H5T_NATIVE_INT32, 0, nr, ibuf + R);
                lpe_h5_stream_append(chains.step, H5T_NATIVE_INT32, 0, nr, ibuf + 2 * R);
            }
            lpe_progress_update(&prog, (double)c0 * steps + (double)nr * (st + 1),
                                (double)rows_total * steps, "walker steps");
        }
    }
    lpe_progress_end(&prog);
    if (save) chain_close(&chains);

    double *acc_rate = lpe_est_out_diag(out, "acceptance_rate");
    double *rhat = lpe_est_out_diag(out, "rhat_score");
    double *hitfrac = lpe_est_out_diag(out, "walkers_with_hits");
    double *hits = lpe_est_out_diag(out, "hits");
    for (int t = 0; t < T; t++) {
        const walker_stats *s = ws + (size_t)t * W;
        double m = -INFINITY, A = 0, Bsum = 0, na = 0, np = 0, nh = 0, h = 0;
        for (int w = 0; w < W; w++) m = s[w].log_b > m ? s[w].log_b : m;
        for (int w = 0; w < W; w++) {
            A += exp(s[w].log_a - m);
            Bsum += exp(s[w].log_b - m);
            na += s[w].accepts;
            np += s[w].proposals;
            nh += s[w].hits > 0;
            h += s[w].hits;
        }
        const double P = A / Bsum;
        double v = 0;
        for (int w = 0; w < W; w++) {
            const double r = exp(s[w].log_a - m) - P * exp(s[w].log_b - m);
            v += r * r;
        }
        out->estimate[t] = P;
        out->std_error[t] = sqrt(v * W / (W - 1.0)) / Bsum;
        out->model_calls[t] = (double)W * (1 + steps);
        acc_rate[t] = np > 0 ? na / np : NAN;
        hitfrac[t] = nh / W;
        hits[t] = h;
        /* R-hat: between-walker variance of the means against the mean within-walker variance */
        double mean = 0, wv = 0, bv = 0, n = s[0].n;
        for (int w = 0; w < W; w++) mean += s[w].s_mean / W;
        for (int w = 0; w < W; w++) {
            wv += (s[w].n > 1 ? s[w].s_m2 / (s[w].n - 1) : 0) / W;
            bv += (s[w].s_mean - mean) * (s[w].s_mean - mean) / (W - 1);
        }
        rhat[t] = wv > 0 && n > 1 ? sqrt(((n - 1) / n * wv + bv) / wv) : NAN;
    }
    free(movable); free(cur); free(prop); free(cur_s); free(cur_hit); free(pos); free(yloc);
    free(xloc); free(lphi_fwd); free(sc); free(cdf); free(acc); free(row_t); free(argmax);
    free(tl); free(ibuf); free(scol); free(ws);
}

const lpe_estimator lpe_est_mhis = {
    .name = "mhis",
    .summary = "Metropolis-Hastings importance sampling (Wu & Hilton 2024)",
    .params = mhis_params,
    .backend_flags = LPE_BE_GRAD | LPE_BE_STATE,
    .run = mhis_run,
};
