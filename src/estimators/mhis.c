/* mhis.c: Metropolis-Hastings importance sampling (methods.md §4, MHIS).
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
 * Across-walker agreement: Gelman-Rubin R-hat of s(x) over the walkers of a target, over all
 * recorded steps (rhat_score) and over their first half (rhat_score_first_half): its trend. A
 * first-half R-hat well above the full one says the chains were still leaving their start from
 * D when recording began: lengthen the burn-in (burn_in_sweeps).
 *
 * All targets advance together: walker rows of many targets share each backend call, and the
 * walker state (tokens and gradient) stays in the backend (LPE_BUF_STATE), with the statistics
 * above (walkers_accum): nothing per walker comes to the host inside a chunk's loop but the
 * thinned chains, when saved (walkers_snapshot: on a GPU copied out while the next steps run).
 * The step is walkers.h's (shared with ams and smc), with the proposal tilt equal to the
 * target's 1/T and no level. Walker rows beyond the backend's batch are run in chunks, one after
 * another (walkers are independent).
 *
 * Randomness: walker w of target t uses stream lpe_stream(LPE_STREAM_MHIS, token id of t),
 * index w; step s draws with sub = 2s (position, proposal) and 2s + 1 (acceptance); the initial
 * state is sample 2^62 + w of the same stream drawn from D.
 *
 * Burn-in: `burn_in` steps, or `burn_in_sweeps` S: ceil(S m) steps for the m positions a step can
 * change, so that inputs of any length get the same number of proposals per position (the
 * paper's 2^10 steps over 33 positions are S = 31).
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
#include "walkers.h"

static const lpe_param_spec mhis_params[] = {
    {"temperature", LPE_P_DOUBLE, "1.0", 1e-6, 1e6, 1, "T; a list runs a sweep"},
    {"walkers", LPE_P_INT, "32", 2, 1 << 24, 0, "independent chains per target"},
    {"burn_in", LPE_P_INT, "1024", 0, 1 << 30, 0, "steps per walker before recording"},
    {"burn_in_sweeps", LPE_P_DOUBLE, "", 0, 1e6, 0,
     "burn-in in sweeps: this many proposals per movable position (the paper: 2^10 steps over 33 "
     "positions, 31); replaces burn_in"},
    {"save_chains", LPE_P_BOOL, "false", 1, 0, 0, "write walker states, scores, accepts"},
    {"chain_stride", LPE_P_INT, "16", 1, 1 << 30, 0, "record every n-th recorded step"},
    {NULL, 0, NULL, 0, 0, 0, NULL},
};

typedef struct { /* the section, typed (parsed once at load time) */
    double temperature;
    int walkers;             /* W */
    long long burn_in;
    double burn_in_sweeps;   /* < 0: not given */
    int save_chains;
    long long chain_stride;
} mhis_opts;

static void mhis_parse(void *opts, const lpe_params *p) {
    mhis_opts *o = opts;
    o->temperature = lpe_param_double(p, "temperature");
    o->walkers = (int)lpe_param_int(p, "walkers");
    o->burn_in = lpe_param_int(p, "burn_in");
    o->burn_in_sweeps = lpe_param_is_set(p, "burn_in_sweeps") ? lpe_param_double(p, "burn_in_sweeps") : -1;
    if (o->burn_in_sweeps >= 0 && lpe_param_line(p, "burn_in") > 0)
        lpe_params_fail(p, "burn_in_sweeps", "give the burn-in once: burn_in (steps) or "
                        "burn_in_sweeps (per movable position), not both");
    o->save_chains = lpe_param_bool(p, "save_chains");
    o->chain_stride = lpe_param_int(p, "chain_stride");
}

/* the per-walker statistics: lpe_walker_stats (lpe/walker_ops.h), kept in the backend during a
 * chunk (walkers_accum) and read once at its end */
typedef lpe_walker_stats walker_stats;
typedef lpe_moments moments;

typedef struct { /* the chain datasets, when saved */
    hid_t tokens, score, accept, target, walker, step;
} chain_out;

static void chain_open(chain_out *c, hid_t g, int k) {
    if (lpe_h5_exists(g, "chains/tokens")) { /* a later block of targets (run_blocks.h): append */
        c->tokens = H5Dopen2(g, "chains/tokens", H5P_DEFAULT);
        c->score = H5Dopen2(g, "chains/score", H5P_DEFAULT);
        c->accept = H5Dopen2(g, "chains/accept", H5P_DEFAULT);
        c->target = H5Dopen2(g, "chains/target", H5P_DEFAULT);
        c->walker = H5Dopen2(g, "chains/walker", H5P_DEFAULT);
        c->step = H5Dopen2(g, "chains/step", H5P_DEFAULT);
        return;
    }
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

/* One MHIS run: its options, the walkers of one chunk of R rows (walkers.h: the step itself),
 * and every walker's statistics. */
typedef struct {
    const lpe_est_ctx *ctx;
    lpe_backend *be;
    int T, k, R, W, save;
    double inv_T;
    long long burn, stride, steps;
    lpe_walkers w;       /* R rows: walker state, proposals, acceptance */
    int32_t *ibuf;       /* [3, R] chain columns */
    walker_stats *ws;    /* [T, W] */
    chain_out chains;
    int snap;            /* a snapshot of the chains is on its way (walkers_snapshot) */
    long long snap_c0, snap_st; /* its chunk and step */
} mhis_state;

static void mhis_init(mhis_state *s, const lpe_est_ctx *ctx) {
    const mhis_opts *o = ctx->opts;
    memset(s, 0, sizeof *s);
    s->ctx = ctx, s->be = ctx->be;
    s->T = ctx->n_targets, s->k = ctx->dist->k, s->R = ctx->be->max_batch;
    s->inv_T = 1.0 / o->temperature;
    s->W = o->walkers, s->burn = o->burn_in, s->save = o->save_chains, s->stride = o->chain_stride;
    LPE_ASSERT(ctx->budget >= 1); /* the budget key's range */
    LPE_ASSERT(s->be->with_state && s->be->with_grad); /* asked for by backend_flags */
    LPE_ASSERT(s->be->dist == ctx->dist);
    lpe_walkers_init(&s->w, s->be, s->R);
    if (o->burn_in_sweeps >= 0) /* sweeps over the positions a step can change */
        s->burn = (long long)ceil(o->burn_in_sweeps * s->w.n_mov);
    s->steps = s->burn + (ctx->budget + s->W - 1) / s->W;
    s->ibuf = lpe_calloc((size_t)s->R * 3, sizeof *s->ibuf);
    s->ws = lpe_calloc((size_t)s->T * s->W, sizeof *s->ws);
    for (long long i = 0; i < (long long)s->T * s->W; i++) lpe_walker_stats_reset(&s->ws[i]);
    if (s->save) chain_open(&s->chains, (hid_t)ctx->out_group, s->k);
}

/* Rows c0 .. c0 + nr: walker g = c0 + q of target g / W, stream lpe_stream(MHIS, target), index
 * g % W, tilted at 1/T; initial states from D, evaluated once and committed. */
static void mhis_chunk_start(mhis_state *s, long long c0, int nr) {
    lpe_walkers *w = &s->w;
    for (int q = 0; q < nr; q++) {
        const long long g = c0 + q;
        w->target[q] = s->ctx->targets[g / s->W];
        w->stream[q] = lpe_stream(LPE_STREAM_MHIS, (uint32_t)w->target[q]);
        w->index[q] = (uint64_t)(g % s->W);
        w->beta[q] = w->tilt[q] = s->inv_T;
        lpe_dist_sample(w->tok + (size_t)q * s->k, s->ctx->dist, s->ctx->seed, w->stream[q],
                        (1ull << 62) + w->index[q], 1);
    }
    w->n = nr;
    w->mirror = 0; /* the statistics are kept in the backend */
    lpe_walkers_eval(w); /* also resets the rows' statistics */
}

/* The snapshot on its way into the chain datasets (rows of chunk snap_c0 at step snap_st). */
static void chains_flush(mhis_state *s) {
    if (!s->snap) return;
    lpe_walker_snap sn;
    s->be->walkers_snapshot_get(s->be, &sn);
    s->snap = 0;
    const int R = s->R, nr = sn.rows;
    for (int q = 0; q < nr; q++) {
        s->ibuf[q] = s->w.target[q];
        s->ibuf[R + q] = (int32_t)((s->snap_c0 + q) % s->W);
        s->ibuf[2 * R + q] = (int32_t)(s->snap_st - s->burn);
    }
    lpe_h5_stream_append(s->chains.tokens, H5T_NATIVE_INT32, s->k, nr, sn.tok);
    lpe_h5_stream_append(s->chains.score, H5T_NATIVE_FLOAT, 0, nr, sn.score);
    lpe_h5_stream_append(s->chains.accept, H5T_NATIVE_UINT8, 0, nr, sn.accept);
    lpe_h5_stream_append(s->chains.target, H5T_NATIVE_INT32, 0, nr, s->ibuf);
    lpe_h5_stream_append(s->chains.walker, H5T_NATIVE_INT32, 0, nr, s->ibuf + R);
    lpe_h5_stream_append(s->chains.step, H5T_NATIVE_INT32, 0, nr, s->ibuf + 2 * R);
}

/* After burn-in: every walker's step into its statistics (in the backend); every stride-th step
 * into the chains (the previous snapshot, copied out during the steps since, is written first). */
static void mhis_record(mhis_state *s, long long c0, int nr, long long st) {
    if (st < s->burn) return;
    s->be->walkers_accum(s->be, nr, 2 * (st - s->burn) < s->steps - s->burn);
    if (!s->save || (st - s->burn) % s->stride != 0) return;
    chains_flush(s);
    s->be->walkers_snapshot(s->be, nr);
    s->snap = 1, s->snap_c0 = c0, s->snap_st = st;
}

/* Gelman-Rubin R-hat of s over W walkers: between-walker variance of the means against the mean
 * within-walker variance; over all recorded steps or (first) their first half. */
static double rhat_of(const walker_stats *s, int W, int first) {
    double mean = 0, wv = 0, bv = 0, n = (first ? s[0].first : s[0].all).n;
    for (int w = 0; w < W; w++) mean += (first ? s[w].first : s[w].all).mean / W;
    for (int w = 0; w < W; w++) {
        const moments *m = first ? &s[w].first : &s[w].all;
        wv += (m->n > 1 ? m->m2 / (m->n - 1) : 0) / W;
        bv += (m->mean - mean) * (m->mean - mean) / (W - 1);
    }
    return wv > 0 && n > 1 ? sqrt(((n - 1) / n * wv + bv) / wv) : NAN;
}

/* Target t's estimate, standard error across walkers and diagnostics from its walkers' stats. */
static void mhis_finish_target(const mhis_state *st, lpe_est_out *out, int t, double *acc_rate,
                               double *rhat, double *rhat_first, double *hitfrac, double *hits) {
    const int W = st->W;
    const walker_stats *s = st->ws + (size_t)t * W;
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
    out->model_calls[t] = (double)W * (1 + st->steps);
    acc_rate[t] = np > 0 ? na / np : NAN;
    hitfrac[t] = nh / W;
    hits[t] = h;
    rhat[t] = rhat_of(s, W, 0);
    rhat_first[t] = rhat_of(s, W, 1);
}

static void mhis_finish(mhis_state *s, lpe_est_out *out) {
    if (s->save) chains_flush(s), chain_close(&s->chains);
    double *acc_rate = lpe_est_out_diag(out, "acceptance_rate");
    double *rhat = lpe_est_out_diag(out, "rhat_score");
    double *rhat_first = lpe_est_out_diag(out, "rhat_score_first_half");
    double *hitfrac = lpe_est_out_diag(out, "walkers_with_hits");
    double *hits = lpe_est_out_diag(out, "hits");
    for (int t = 0; t < s->T; t++)
        mhis_finish_target(s, out, t, acc_rate, rhat, rhat_first, hitfrac, hits);
    lpe_walkers_free(&s->w);
    free(s->ibuf), free(s->ws);
}

static void mhis_run(lpe_est_out *out, const lpe_est_ctx *ctx) {
    mhis_state s;
    mhis_init(&s, ctx);
    lpe_progress prog;
    lpe_progress_begin(&prog, "mhis");
    const long long rows_total = (long long)s.T * s.W;
    /* walker rows beyond the backend's batch run in chunks, one after another */
    for (long long c0 = 0; c0 < rows_total; c0 += s.R) {
        const int nr = (int)(rows_total - c0 < s.R ? rows_total - c0 : s.R);
        mhis_chunk_start(&s, c0, nr);
        for (long long st = 0; st < s.steps; st++) {
            lpe_walkers_step(&s.w, nr, ctx->seed, st);
            mhis_record(&s, c0, nr, st);
            lpe_progress_update(&prog, (double)c0 * s.steps + (double)nr * (st + 1),
                                (double)rows_total * s.steps, "walker steps");
        }
        if (s.save) chains_flush(&s); /* before the next chunk's rows replace these */
        s.be->walkers_stats(s.be, s.ws + c0, nr);
    }
    lpe_progress_end(&prog);
    mhis_finish(&s, out);
}

const lpe_estimator lpe_est_mhis = {
    .name = "mhis",
    .summary = "Metropolis-Hastings importance sampling (Wu & Hilton 2024)",
    .params = mhis_params,
    .backend_flags = LPE_BE_GRAD | LPE_BE_STATE,
    .opts_size = sizeof(mhis_opts),
    .parse = mhis_parse,
    .run = mhis_run,
};
