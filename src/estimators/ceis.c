/* ceis.c: cross-entropy importance sampling with levels on the margin (methods.md §10).
 *
 * Dimension legend: T targets, TC targets in one chunk, B = stage size (samples per target per
 * stage), R = backend rows per call, k positions, NSP = sum_j n_{f(j)} (every position's
 * support, position-major: entry pos_off[j] + y is local token y of position j).
 *
 * The best proposal of product form for P = Pr_p[m(x) >= 0] (m: the margin, methods.md §10) is
 * the one closest in KL to p restricted to the event: its factors are the event's conditional
 * marginals q*_j(y) = Pr_p[x_j = y | m >= 0]. ITGIS guesses them from first-order gradient
 * scores; the cross-entropy method (Rubinstein 1999; de Boer, Kroese, Mannor & Rubinstein 2005)
 * estimates them from its own weighted samples, climbing levels of the margin as splitting does.
 * Per target t, with q = p at the start:
 *   stage r:  u_j = (1 - eps) q_j + eps p_j        (defensive: log w <= k log(1 / eps) per
 *                                                    position where q is 0, never infinite)
 *             x ~ prod_j u_j;  log w(x) = sum_j log p_j(x_j) - log u_j(x_j)
 *             level g = the ceil(rho B)-th largest margin of the stage; if g >= 0 the level is
 *             reached: g = 0 and the elite are the hits (argmax = t); else the elite are m >= g
 *             q_j(y) <- alpha qhat_j(y) + (1 - alpha) q_j(y),
 *             qhat_j(y) = sum_elite w 1[x_j = y] / sum_elite w   (the elite's weighted marginals:
 *                                                    p restricted to {m >= g}, self-normalised)
 *   estimate = mean of c = w(x) 1[argmax = t] over the pooled stages: those after the first
 *              stage whose level was reached, or from stage floor(S / 2) on (S stages) when the
 *              level is reached late or never.
 * Every sample is drawn from a law fixed by the stages before it, so each c has mean P given the
 * past; the first pooled stage is a stopping time (decided before its samples are drawn), so the
 * pooled mean is unbiased (the martingale argument of methods.md §10). The standard error is
 * the pooled contributions' (exact for a fixed law, approximate while q still moves).
 * Budget: model calls per target = forward passes (no backward: CE needs no gradient).
 * Randomness: sample i of stage r of target t is index r B + i of stream
 * lpe_stream(LPE_STREAM_CE, t), position j using sub = j; results do not depend on the other
 * targets, the chunking or the backend's batch.
 * The draws are made on the host (tilted.h's pick) and the tokens loaded into the backend; on a
 * GPU that is one host-to-device copy of B x k tokens per call (the laws live on the host).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/estimator.h"
#include "lpe/itgis_moments.h"
#include "lpe/tilted.h"

static const lpe_param_spec ceis_params[] = {
    {"batch", LPE_P_INT, "256", 2, 1 << 20, 1, "B: samples per target per stage"},
    {"elite", LPE_P_DOUBLE, "0.1", 1e-4, 1, 1, "rho: the elite fraction that sets each level"},
    {"smoothing", LPE_P_DOUBLE, "0.3", 1e-4, 1, 1, "alpha: weight of the new marginals"},
    {"defensive", LPE_P_DOUBLE, "0.3", 1e-6, 1, 1, "eps: share of p in every proposal"},
    {"memory_mb", LPE_P_INT, "512", 1, 1 << 20, 0, "bound on the per-target laws (targets chunked)"},
    {NULL, 0, NULL, 0, 0, 0, NULL},
};

typedef struct {
    int batch;
    double elite, smoothing, defensive, memory_mb;
} ceis_opts;

static void ceis_parse(void *opts, const lpe_params *p) {
    ceis_opts *o = opts;
    o->batch = (int)lpe_param_int(p, "batch");
    o->elite = lpe_param_double(p, "elite");
    o->smoothing = lpe_param_double(p, "smoothing");
    o->defensive = lpe_param_double(p, "defensive");
    o->memory_mb = (double)lpe_param_int(p, "memory_mb");
}

typedef struct {
    const lpe_est_ctx *ctx;
    const ceis_opts *o;
    lpe_backend *be;
    int T, TC, R, k, B, S; /* S stages */
    long long n;
    int64_t NSP;
    int64_t *pos_off;  /* [k + 1] */
    int64_t *fac_off;  /* [k] offset of position j's factor in the distribution's arrays */
    double *q;         /* [TC, NSP] adapted laws */
    double *cdf;       /* [TC, NSP] of the proposals u */
    double *logu;      /* [TC, NSP] */
    double *cnt;       /* [NSP] one target's elite weight sums */
    int32_t *tok;      /* [TC B, k] one stage's rows (row a B + i: sample i of target a) */
    int32_t *loc;      /* [TC B, k] their local indices */
    double *logw;      /* [TC B] */
    float *margin;     /* [TC B] */
    int32_t *argmax;   /* [TC B] */
    int32_t *row_t;    /* [TC B] target token of each row */
    float *sorted;     /* [B] */
    int *start;        /* [TC] first pooled stage */
    int *reached;      /* [TC] stage whose level was reached, -1: not yet */
    double *last_level; /* [TC] */
    lpe_itgis_moments *mom; /* [T] the pooled contributions */
} ceis_state;

static void ceis_alloc(ceis_state *s) {
    const int TC = s->TC, B = s->B, k = s->k;
    const size_t tab = (size_t)TC * (size_t)s->NSP, rows = (size_t)TC * B;
    s->q = lpe_calloc(tab, sizeof *s->q);
    s->cdf = lpe_calloc(tab, sizeof *s->cdf);
    s->logu = lpe_calloc(tab, sizeof *s->logu);
    s->cnt = lpe_calloc((size_t)s->NSP, sizeof *s->cnt);
    s->tok = lpe_calloc(rows * k, sizeof *s->tok);
    s->loc = lpe_calloc(rows * k, sizeof *s->loc);
    s->logw = lpe_calloc(rows, sizeof *s->logw);
    s->margin = lpe_calloc(rows, sizeof *s->margin);
    s->argmax = lpe_calloc(rows, sizeof *s->argmax);
    s->row_t = lpe_calloc(rows, sizeof *s->row_t);
    s->sorted = lpe_calloc((size_t)B, sizeof *s->sorted);
    s->start = lpe_calloc((size_t)TC, sizeof *s->start);
    s->reached = lpe_calloc((size_t)TC, sizeof *s->reached);
    s->last_level = lpe_calloc((size_t)TC, sizeof *s->last_level);
    s->mom = lpe_calloc((size_t)s->T, sizeof *s->mom);
}

static void ceis_init(ceis_state *s, const lpe_est_ctx *ctx) {
    const ceis_opts *o = ctx->opts;
    const lpe_dist *d = ctx->dist;
    memset(s, 0, sizeof *s);
    s->ctx = ctx, s->o = o, s->be = ctx->be;
    s->T = ctx->n_targets, s->R = ctx->be->max_batch, s->k = d->k, s->n = ctx->budget;
    s->B = o->batch < s->n ? o->batch : (int)s->n;
    s->S = (int)((s->n + s->B - 1) / s->B);
    s->pos_off = lpe_calloc((size_t)s->k + 1, sizeof *s->pos_off);
    s->fac_off = lpe_calloc((size_t)s->k, sizeof *s->fac_off);
    for (int j = 0; j < s->k; j++) {
        s->fac_off[j] = d->offsets[d->positions[j]];
        s->pos_off[j + 1] = s->pos_off[j] + lpe_dist_support(d, j);
    }
    s->NSP = s->pos_off[s->k];
    /* four tables [TC, NSP] of doubles within memory_mb, and the stage's rows beside them */
    const double per_target = 4.0 * s->NSP * sizeof(double) + (double)s->B * (2 * s->k + 8) * 4;
    int TC = (int)(o->memory_mb * 1048576.0 / per_target);
    s->TC = TC < 1 ? 1 : TC > s->T ? s->T : TC;
    ceis_alloc(s);
}

/* Target a's proposal u = (1 - eps) q + eps p as a cdf and log u per position. */
static void ceis_proposal(ceis_state *s, int a) {
    const lpe_dist *d = s->ctx->dist;
    const double eps = s->o->defensive;
    double *q = s->q + a * s->NSP, *cdf = s->cdf + a * s->NSP, *lu = s->logu + a * s->NSP;
    for (int j = 0; j < s->k; j++) {
        const int64_t o = s->pos_off[j], n = s->pos_off[j + 1] - o;
        const double *p = d->probs + s->fac_off[j];
        double c = 0;
        for (int64_t y = 0; y < n; y++) {
            const double u = (1 - eps) * q[o + y] + eps * p[y];
            lu[o + y] = log(u);
            c += u;
            cdf[o + y] = c;
        }
        for (int64_t y = 0; y < n; y++) cdf[o + y] /= c;
        cdf[o + n - 1] = 1.0; /* rounding must not leave a gap above the last entry */
        for (int64_t y = 0; y < n; y++) lu[o + y] -= log(c);
    }
}

/* Chunk start: q = p for every target, nothing pooled yet. */
static void ceis_reset(ceis_state *s, int tc) {
    const lpe_dist *d = s->ctx->dist;
    for (int a = 0; a < tc; a++) {
        for (int j = 0; j < s->k; j++)
            memcpy(s->q + a * s->NSP + s->pos_off[j], d->probs + s->fac_off[j],
                   (size_t)(s->pos_off[j + 1] - s->pos_off[j]) * sizeof(double));
        ceis_proposal(s, a);
        s->start[a] = s->S / 2, s->reached[a] = -1, s->last_level[a] = -INFINITY;
    }
}

/* Draw sample i of stage r of chunk target a into row a Br + i (tokens, local ids, log w). */
static void ceis_draw(ceis_state *s, int a, int t, int Br, int r, int i) {
    const lpe_dist *d = s->ctx->dist;
    const uint32_t stream = lpe_stream(LPE_STREAM_CE, (uint32_t)t);
    const double *cdf = s->cdf + a * s->NSP, *lu = s->logu + a * s->NSP;
    const size_t row = (size_t)a * Br + i;
    double lw = 0;
    for (int j = 0; j < s->k; j++) {
        uint32_t w[4];
        lpe_rng4(w, s->ctx->seed, stream, (uint64_t)r * s->B + i, (uint32_t)j);
        const int64_t o = s->pos_off[j];
        const int y = lpe_tilted_pick(cdf + o, (int)(s->pos_off[j + 1] - o), lpe_u01_53(w[0], w[1]));
        s->loc[row * s->k + j] = y;
        s->tok[row * s->k + j] = d->values[s->fac_off[j] + y];
        lw += d->log_probs[s->fac_off[j] + y] - lu[o + y];
    }
    s->logw[row] = lw;
    s->row_t[row] = t;
}

/* One stage of tc targets: draws, then forward passes in calls of at most R rows. */
static void ceis_sample(ceis_state *s, int t0, int tc, int r, int Br) {
    for (int a = 0; a < tc; a++)
        for (int i = 0; i < Br; i++) ceis_draw(s, a, s->ctx->targets[t0 + a], Br, r, i);
    const long long total = (long long)tc * Br;
    for (long long r0 = 0; r0 < total; r0 += s->R) {
        const int nr = (int)(total - r0 < s->R ? total - r0 : s->R);
        s->be->load_tokens(s->be, s->tok + r0 * s->k, nr);
        lpe_fwd_out fo = {.argmax = s->argmax + r0, .margin = s->margin + r0};
        s->be->forward(s->be, &fo, s->row_t + r0, nr, 0);
    }
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The stage's level for target a: the ceil(rho Br)-th largest margin, 0 once that is >= 0. */
static double ceis_level(ceis_state *s, int a, int Br) {
    memcpy(s->sorted, s->margin + (size_t)a * Br, (size_t)Br * sizeof(float));
    qsort(s->sorted, (size_t)Br, sizeof(float), cmp_float);
    int ne = (int)ceil(s->o->elite * Br);
    ne = ne < 1 ? 1 : ne > Br ? Br : ne;
    const double g = s->sorted[Br - ne];
    return g >= 0 ? 0 : g;
}

/* row i of the stage is in the elite of level g: margin >= g, or a hit once g = 0 */
static int ceis_elite(const ceis_state *s, size_t i, int t, double g) {
    return g == 0 ? s->argmax[i] == t : s->margin[i] >= g;
}

/* Target a's elite (margin >= g, or the hits when g = 0): q <- alpha qhat + (1 - alpha) q. */
static void ceis_update(ceis_state *s, int a, int t, int Br, double g) {
    const size_t r0 = (size_t)a * Br;
    double mx = -INFINITY;
    for (int i = 0; i < Br; i++) {
        if (ceis_elite(s, r0 + i, t, g) && s->logw[r0 + i] > mx) mx = s->logw[r0 + i];
    }
    if (mx == -INFINITY) return; /* no elite (no hit at level 0): keep q */
    memset(s->cnt, 0, (size_t)s->NSP * sizeof *s->cnt);
    double tot = 0, tot2 = 0;
    int ne = 0;
    for (int i = 0; i < Br; i++) {
        if (!ceis_elite(s, r0 + i, t, g)) continue;
        const double w = exp(s->logw[r0 + i] - mx); /* self-normalised: the scale cancels */
        for (int j = 0; j < s->k; j++) s->cnt[s->pos_off[j] + s->loc[(r0 + i) * s->k + j]] += w;
        tot += w, tot2 += w * w, ne++;
    }
    /* the step shrinks with the elite's effective share: degenerate weights move q little */
    const double al = s->o->smoothing * (tot * tot / tot2) / ne;
    double *q = s->q + a * s->NSP;
    for (int64_t e = 0; e < s->NSP; e++) q[e] = al * s->cnt[e] / tot + (1 - al) * q[e];
    ceis_proposal(s, a);
}

/* Stage r's results for chunk target a: pool its contributions if r >= start, then the level,
 * the update of q and the first pooled stage (a stopping time: decided for later stages only). */
static void ceis_stage_end(ceis_state *s, int t0, int a, int r, int Br) {
    const int t = s->ctx->targets[t0 + a];
    const size_t r0 = (size_t)a * Br;
    if (r >= s->start[a])
        for (int i = 0; i < Br; i++) {
            const int hit = s->argmax[r0 + i] == t;
            const double w = exp(s->logw[r0 + i]);
            lpe_itgis_moments_add(&s->mom[t0 + a], hit ? w : 0, w, hit);
        }
    const double g = ceis_level(s, a, Br);
    s->last_level[a] = g;
    if (g == 0 && s->reached[a] < 0) {
        s->reached[a] = r;
        if (r + 1 < s->start[a]) s->start[a] = r + 1;
    }
    ceis_update(s, a, t, Br, g);
}

static void ceis_free(ceis_state *s) {
    free(s->pos_off), free(s->fac_off), free(s->q), free(s->cdf), free(s->logu), free(s->cnt);
    free(s->tok), free(s->loc), free(s->logw), free(s->margin), free(s->argmax), free(s->row_t);
    free(s->sorted), free(s->start), free(s->reached), free(s->last_level), free(s->mom);
}

static void ceis_run(lpe_est_out *out, const lpe_est_ctx *ctx) {
    ceis_state s;
    ceis_init(&s, ctx);
    double *d_level_stage = lpe_est_out_diag(out, "level_stage");
    double *d_level = lpe_est_out_diag(out, "final_level");
    double *d_pooled = lpe_est_out_diag(out, "pooled");
    double *d_hits = lpe_est_out_diag(out, "hits");
    double *d_ess = lpe_est_out_diag(out, "ess");
    lpe_progress prog;
    lpe_progress_begin(&prog, "ceis");
    for (int t0 = 0; t0 < s.T; t0 += s.TC) {
        const int tc = s.T - t0 < s.TC ? s.T - t0 : s.TC;
        ceis_reset(&s, tc);
        for (int r = 0; r < s.S; r++) {
            const int Br = (int)(s.n - (long long)r * s.B < s.B ? s.n - (long long)r * s.B : s.B);
            ceis_sample(&s, t0, tc, r, Br);
            for (int a = 0; a < tc; a++) ceis_stage_end(&s, t0, a, r, Br);
            lpe_progress_update(&prog, (double)t0 * s.n + (double)tc * ((double)r * s.B + Br),
                                (double)s.T * s.n, "samples");
        }
        for (int a = 0; a < tc; a++) {
            d_level_stage[t0 + a] = s.reached[a];
            d_level[t0 + a] = s.last_level[a];
        }
    }
    lpe_progress_end(&prog);
    for (int t = 0; t < s.T; t++) {
        const lpe_itgis_moments *m = &s.mom[t];
        out->estimate[t] = m->n > 0 ? m->mean : 0;
        out->std_error[t] = m->n > 1 ? sqrt(m->m2 / (m->n - 1) / m->n) : NAN;
        out->model_calls[t] = (double)s.n;
        d_pooled[t] = m->n, d_hits[t] = m->hits;
        d_ess[t] = m->sum_w2 > 0 ? m->sum_w * m->sum_w / m->sum_w2 : 0;
    }
    ceis_free(&s);
}

const lpe_estimator lpe_est_ceis = {
    .name = "ceis",
    .summary = "cross-entropy importance sampling: product proposals fitted on margin levels",
    .params = ceis_params,
    .backend_flags = 0,
    .opts_size = sizeof(ceis_opts),
    .parse = ceis_parse,
    .run = ceis_run,
};
