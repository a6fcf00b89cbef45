/* test_walkers.c: the Metropolis-Hastings walkers (src/estimators/walkers.h) against the exact
 * laws they must leave invariant, on a small random model whose inputs are enumerated.
 *
 *   - forward's margin l_t - max_{v != t} l_v equals the one computed from the full logits;
 *   - tilted law pi ∝ p e^{beta s} (MHIS's): total variation of the recorded states from the
 *     exact pi small, and far smaller than from p (so the check can fail);
 *   - restricted law pi ∝ p 1[m > level] (splitting's move, beta = 0) and the tilted restricted
 *     law: the same, and no recorded state below the level;
 *   - the margin energy pi ∝ p e^{beta min(m, 0)} (annealing towards the event): the same;
 *   - a row's chain is a function of its own key: the same rows in another order give the same
 *     states;
 *   - the backend's fused step (walkers_step, issue 10) against the composition it replaced
 *     (walkers_composed.h): bit for bit the same tokens, scores, margins, hits and decisions
 *     over hundreds of steps, with mixed targets, energies, betas, tilts and levels per row,
 *     partial steps, a resampling gather and settings changed after it; MHIS's statistics
 *     (walkers_accum) and snapshots equal to the host's from the composed chains; the same
 *     with 4096 walkers.
 * Seeds are fixed; bounds: 64 walkers x 1500 correlated steps over 216 states, where iid draws
 * would give TV ~ 0.01; 0.04 leaves room for the correlation, and a wrong acceptance ratio or
 * an ignored level gives TV of the order of TV(p, pi) (0.2-0.6 here).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/estimators/walkers.h"
#include "check.h"
#include "walkers_composed.h"
#include "lpe/backend.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#include "lpe/model.h"
#include "lpe/philox.h"

enum { NW = 64 };

typedef struct {
    lpe_model m;
    lpe_dist d;
    lpe_backend *be;
    int N, k, target;
    double *p;     /* [N] p(x) */
    float *s, *mg; /* [N] target logit, margin */
    int32_t *tok;  /* [N, k] */
} space;

/* BOS + 3 positions over 6 tokens each (216 inputs, Zipf-like probabilities) */
static void space_make(space *sp) {
    lpe_model_config c = {.n_layers = 2, .d_model = 16, .n_heads = 2, .d_head = 8, .d_mlp = 32,
                          .d_vocab = 32, .n_ctx = 8, .act = LPE_ACT_GELU, .ln_eps = 1e-5};
    lpe_model_init_random(&sp->m, &c, 23);
    int64_t off[3] = {0, 1, 7};
    int32_t vals[7] = {0, 3, 5, 8, 13, 21, 30};
    double pr[7] = {1, 1, 0.5, 0.33, 0.25, 0.2, 0.17};
    int32_t positions[4] = {0, 1, 1, 1};
    lpe_dist_from_arrays(&sp->d, "w", "", 2, off, vals, pr, 4, positions, c.d_vocab);
    sp->k = 4;
    sp->N = (int)lpe_dist_enum_size(&sp->d);
    sp->be = lpe_backend_create("cpu", &sp->m, 256, sp->k, LPE_BE_GRAD | LPE_BE_STATE);
    sp->be->use_dist(sp->be, &sp->d);
    sp->p = calloc((size_t)sp->N, sizeof *sp->p);
    sp->s = calloc((size_t)sp->N, sizeof *sp->s);
    sp->mg = calloc((size_t)sp->N, sizeof *sp->mg);
    sp->tok = calloc((size_t)sp->N * sp->k, sizeof *sp->tok);
    for (int i = 0; i < sp->N; i++)
        sp->p[i] = exp(lpe_dist_enum_decode(&sp->d, (uint64_t)i, sp->tok + (size_t)i * sp->k));
    /* the target: the token that is the argmax of the fewest inputs, but of at least 4 */
    int count[32] = {0}, am[256];
    lpe_fwd_out fo = {.argmax = am};
    sp->be->load_tokens(sp->be, sp->tok, sp->N);
    sp->be->forward(sp->be, &fo, NULL, sp->N, 0);
    for (int i = 0; i < sp->N; i++) count[am[i]]++;
    sp->target = -1;
    for (int v = 0; v < 32; v++)
        if (count[v] >= 4 && (sp->target < 0 || count[v] < count[sp->target])) sp->target = v;
    int32_t tg[256];
    for (int i = 0; i < sp->N; i++) tg[i] = sp->target;
    fo = (lpe_fwd_out){.target_logit = sp->s, .margin = sp->mg};
    sp->be->forward(sp->be, &fo, tg, sp->N, 0);
}

static void space_free(space *sp) {
    lpe_backend_destroy(sp->be);
    lpe_dist_free(&sp->d);
    lpe_model_free(&sp->m);
    free(sp->p), free(sp->s), free(sp->mg), free(sp->tok);
}

static int index_of(const space *sp, const int32_t *x) {
    int idx = 0;
    for (int j = 0; j < sp->k; j++) {
        int f = sp->d.positions[j];
        idx = idx * lpe_dist_support(&sp->d, j) + sp->d.local_of[(size_t)f * sp->d.d_vocab + x[j]];
    }
    return idx;
}

/* margin from forward against the full logits (the same float32 numbers: exact) */
static void test_margin(space *sp) {
    float *lg = calloc((size_t)sp->N * 32, sizeof *lg);
    int32_t tg[256];
    float mg[256];
    for (int i = 0; i < sp->N; i++) tg[i] = (int32_t)(i % 32);
    sp->be->load_tokens(sp->be, sp->tok, sp->N);
    lpe_fwd_out fo = {.margin = mg};
    sp->be->forward(sp->be, &fo, tg, sp->N, 0);
    sp->be->get_logits(sp->be, lg, sp->N);
    int bad = 0, ties = 0;
    for (int i = 0; i < sp->N; i++) {
        float other = -INFINITY;
        for (int v = 0; v < 32; v++)
            if (v != tg[i] && lg[i * 32 + v] > other) other = lg[i * 32 + v];
        bad += !(mg[i] == lg[i * 32 + tg[i]] - other);
        ties += mg[i] == 0;
    }
    CHECK(bad == 0, "%d of %d margins differ from the logits'", bad, sp->N);
    free(lg);
}

/* Run NW walkers (burn, then rec recorded steps) on target law (beta, level); the TV distance of
 * the recorded states from the exact law, and of p restricted... from the exact law too. */
static double run_tv(space *sp, int energy, double beta, double tilt, double level, int burn, int rec,
                     double *tv_ref, int *below) {
    double *pi = calloc((size_t)sp->N, sizeof *pi), *emp = calloc((size_t)sp->N, sizeof *emp);
    double z = 0, zp = 0;
    for (int i = 0; i < sp->N; i++) {
        pi[i] = sp->mg[i] > level
                    ? sp->p[i] * exp(beta * lpe_walkers_energy(energy, sp->s[i], sp->mg[i])) : 0;
        z += pi[i], zp += sp->p[i];
    }
    lpe_walkers w;
    lpe_walkers_init(&w, sp->be, NW);
    /* start inside the level set: walker q at the q-th admissible input (cyclically) */
    int *adm = calloc((size_t)sp->N, sizeof *adm), na = 0;
    for (int i = 0; i < sp->N; i++)
        if (pi[i] > 0) adm[na++] = i;
    for (int q = 0; q < NW; q++) {
        w.target[q] = sp->target, w.beta[q] = beta, w.tilt[q] = tilt, w.level[q] = level;
        w.energy[q] = (uint8_t)energy;
        w.stream[q] = lpe_stream(LPE_STREAM_TEST, 77);
        memcpy(w.tok + (size_t)q * sp->k, sp->tok + (size_t)adm[q % na] * sp->k, sizeof(int32_t) * sp->k);
    }
    lpe_walkers_eval(&w);
    *below = 0;
    for (int st = 0; st < burn + rec; st++) {
        lpe_walkers_step(&w, NW, 5, st);
        if (st < burn) continue;
        for (int q = 0; q < NW; q++) {
            emp[index_of(sp, w.tok + (size_t)q * sp->k)] += 1.0 / ((double)NW * rec);
            *below += !(w.margin[q] > level);
        }
    }
    double tv = 0;
    *tv_ref = 0;
    for (int i = 0; i < sp->N; i++) {
        tv += 0.5 * fabs(emp[i] - pi[i] / z);
        *tv_ref += 0.5 * fabs(sp->p[i] / zp - pi[i] / z);
    }
    lpe_walkers_free(&w);
    free(pi), free(emp), free(adm);
    return tv;
}

static void test_laws(space *sp) {
    /* level: the margin below which 80% of p's mass lies */
    float *sorted = malloc((size_t)sp->N * sizeof *sorted);
    memcpy(sorted, sp->mg, (size_t)sp->N * sizeof *sorted);
    for (int i = 1; i < sp->N; i++)
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            float t = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = t;
        }
    double level = sorted[(int)(0.8 * sp->N)];
    free(sorted);
    const int S = LPE_ENERGY_SCORE, M = LPE_ENERGY_MARGIN;
    const struct { int energy; double beta, tilt, level; const char *name; } cases[] = {
        {S, 1.0, 1.0, -INFINITY, "tilted (beta 1)"},
        {S, 0.0, 0.0, level, "restricted (beta 0, level at p's 80th percentile)"},
        {S, 0.5, 0.5, level, "tilted and restricted (beta 0.5)"},
        {S, 0.0, 1.0, level, "restricted, proposals tilted (beta 0, tilt 1)"},
        {M, 1.5, 0.5, -INFINITY, "margin energy p e^{1.5 min(m, 0)}, proposals tilted 0.5"},
    };
    for (int c = 0; c < 5; c++) {
        double ref;
        int below;
        double tv = run_tv(sp, cases[c].energy, cases[c].beta, cases[c].tilt, cases[c].level, 64,
                           1500, &ref, &below);
        printf("walkers %s: TV(states, pi) = %.4f, TV(p, pi) = %.4f\n", cases[c].name, tv, ref);
        CHECK(tv < 0.04 && tv < 0.25 * ref, "%s: TV %.4f, TV(p, pi) %.4f", cases[c].name, tv, ref);
        CHECK(below == 0, "%s: %d recorded states at or below the level", cases[c].name, below);
    }
}

/* a row's chain depends on its key only: rows reversed give each row the same states */
/* Row r of w becomes walker q: the space's target at beta = tilt = 1, Philox stream
 * (LPE_STREAM_TEST, id) at index q, starting from input (q * stride) mod N of the space */
static void walker_row(lpe_walkers *w, int r, const space *sp, int q, uint32_t id, int stride) {
    w->target[r] = sp->target;
    w->beta[r] = w->tilt[r] = 1.0;
    w->stream[r] = lpe_stream(LPE_STREAM_TEST, id);
    w->index[r] = (uint64_t)q;
    memcpy(w->tok + (size_t)r * sp->k, sp->tok + (size_t)(q * stride % sp->N) * sp->k,
           sizeof(int32_t) * sp->k);
}

static void test_row_independence(space *sp) {
    lpe_walkers a, b;
    lpe_walkers_init(&a, sp->be, 8);
    lpe_walkers_init(&b, sp->be, 8);
    for (int q = 0; q < 8; q++) {
        walker_row(&a, q, sp, q, 5, 17);
        walker_row(&b, 7 - q, sp, q, 5, 17);
    }
    lpe_walkers_eval(&a);
    int32_t *ta = malloc(sizeof(int32_t) * 8 * sp->k);
    for (int st = 0; st < 20; st++) lpe_walkers_step(&a, 8, 9, st);
    memcpy(ta, a.tok, sizeof(int32_t) * 8 * sp->k);
    lpe_walkers_eval(&b);
    for (int st = 0; st < 20; st++) lpe_walkers_step(&b, 8, 9, st);
    int same = 1;
    for (int q = 0; q < 8; q++)
        same &= !memcmp(ta + q * sp->k, b.tok + (7 - q) * sp->k, sizeof(int32_t) * sp->k);
    CHECK(same, "walker chains depend on the order of the rows");
    lpe_walkers_free(&a);
    lpe_walkers_free(&b);
    free(ta);
}

/* Thread count raised after the walker tables were sized (NT = 1): the chains equal those of the
 * test space's backend (sized at the default count). The regions that index the per-thread cdf
 * rows ask for at most NT threads; without that, threads 1..3 would write past the table (a heap
 * overflow this check sees only if it corrupts a result, a sanitizer always). */
static void test_threads_raised(space *sp) {
#ifdef _OPENMP
    const int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    space one;
    space_make(&one);
    lpe_walkers a, b;
    lpe_walkers_init(&a, one.be, 256);
    lpe_walkers_init(&b, sp->be, 256);
    for (int q = 0; q < 256; q++) {
        walker_row(&a, q, sp, q, 6, 13);
        walker_row(&b, q, sp, q, 6, 13);
    }
    lpe_walkers_eval(&a);
    lpe_walkers_step(&a, 256, 9, 0); /* sizes one's walker tables for 1 thread */
    omp_set_num_threads(nt < 4 ? 4 : nt);
    for (int st = 1; st < 20; st++) lpe_walkers_step(&a, 256, 9, st);
    lpe_walkers_eval(&b);
    for (int st = 0; st < 20; st++) lpe_walkers_step(&b, 256, 9, st);
    CHECK(!memcmp(a.tok, b.tok, sizeof(int32_t) * 256 * sp->k),
          "walker chains differ when the thread count rises after the tables were sized");
    omp_set_num_threads(nt);
    lpe_walkers_free(&a);
    lpe_walkers_free(&b);
    space_free(&one);
#else
    (void)sp;
#endif
}

/* gather: the copied rows' state (tokens and gradient) equals a fresh evaluation of the copies */
static void test_gather(space *sp) {
    lpe_walkers w;
    lpe_walkers_init(&w, sp->be, 6);
    for (int q = 0; q < 6; q++) {
        w.target[q] = sp->target, w.beta[q] = w.tilt[q] = 1.0;
        memcpy(w.tok + q * sp->k, sp->tok + (size_t)(q * 31 % sp->N) * sp->k, sizeof(int32_t) * sp->k);
    }
    lpe_walkers_eval(&w);
    int32_t src[6] = {5, 5, 0, 2, 2, 1};
    lpe_walkers_gather(&w, src, 6);
    const size_t kD = (size_t)sp->k * sp->m.cfg.d_model;
    float *g1 = calloc(6 * kD, sizeof *g1), *g2 = calloc(6 * kD, sizeof *g2);
    float s1[6];
    int32_t t1[6 * 4];
    sp->be->get_grad(sp->be, g1, LPE_BUF_STATE, 6);
    sp->be->get_tokens(sp->be, t1, LPE_BUF_STATE, 6);
    memcpy(s1, w.score, sizeof s1);
    CHECK(!memcmp(t1, w.tok, sizeof(int32_t) * 6 * sp->k), "gathered state tokens differ from the mirror");
    lpe_walkers_eval(&w); /* the copies evaluated afresh */
    sp->be->get_grad(sp->be, g2, LPE_BUF_STATE, 6);
    /* not bit for bit: a row's products may round differently at another place in the batch
     * (BLAS kernels for edge rows); 1e-4 relative is thousands of float32 ulps, far below what a
     * wrong row (another input's gradient, O(1) relative) gives; NaN fails */
    double worst = 0, wscore = 0;
    for (int q = 0; q < 6; q++) { /* per row: largest difference over the row's largest entry */
        double dmax = 0, gmax = 0;
        for (size_t i = q * kD; i < (q + 1) * kD; i++) {
            dmax = fmax(dmax, fabs(g1[i] - g2[i]));
            gmax = fmax(gmax, fabs(g2[i]));
        }
        worst = isnan(dmax) || !(gmax > 0) ? INFINITY : fmax(worst, dmax / gmax);
    }
    for (int q = 0; q < 6; q++) {
        double e = fabs(s1[q] - w.score[q]) / (fabs(w.score[q]) + 1e-3);
        wscore = isnan(e) ? INFINITY : fmax(wscore, e);
    }
    printf("gather: worst relative difference to a fresh evaluation: gradient %.2g, score %.2g\n",
           worst, wscore);
    CHECK(worst < 1e-4, "gathered gradients differ from a fresh evaluation by %.3g", worst);
    CHECK(wscore < 1e-4, "gathered scores differ from a fresh evaluation by %.3g", wscore);
    lpe_walkers_free(&w);
    free(g1), free(g2);
}

/* row q's settings for the fused-vs-composed test: a mix of every kind of row */
static void mixed_row(const space *sp, int q, int32_t *target, double *beta, double *tilt,
                      double *level, uint8_t *energy, uint32_t *stream, uint64_t *index) {
    static const double betas[4] = {0.0, 0.5, 1.5, 3.0}, tilts[3] = {0.0, 0.7, 1.5};
    static const double levels[4] = {-INFINITY, -6.0, -2.0, 0.0};
    *target = q % 3 == 2 ? (sp->target + 7) % 32 : sp->target;
    *beta = betas[q % 4], *tilt = tilts[q % 3], *level = levels[(q / 4) % 4];
    *energy = (uint8_t)(q % 2 ? LPE_ENERGY_MARGIN : LPE_ENERGY_SCORE);
    *stream = lpe_stream(LPE_STREAM_TEST, (uint32_t)(q % 3)), *index = (uint64_t)q;
}

/* rows of the fused walkers (w, its backend) against the composed ones (c): mismatches */
static int compare_rows(const lpe_walkers *w, const wcomp *c, int n, int k) {
    int bad = 0;
    for (int q = 0; q < n; q++)
        bad += memcmp(w->tok + (size_t)q * k, c->tok + (size_t)q * k, sizeof(int32_t) * k) != 0 ||
               memcmp(&w->score[q], &c->score[q], sizeof(float)) != 0 ||
               memcmp(&w->margin[q], &c->margin[q], sizeof(float)) != 0 ||
               w->hit[q] != c->hit[q] || w->accept[q] != c->accept[q];
    return bad;
}

/* gather row q <- src[q] of the composed walkers' host arrays (the backend gathers its own) */
#define WC_GATHER(a, n, src, width)                                                           \
    do {                                                                                      \
        void *t_ = malloc(sizeof *(a) * (size_t)(n) * (width));                                \
        for (int q_ = 0; q_ < (n); q_++)                                                      \
            memcpy((char *)t_ + sizeof *(a) * (size_t)q_ * (width),                            \
                   (a) + (size_t)(src)[q_] * (width), sizeof *(a) * (width));                  \
        memcpy((a), t_, sizeof *(a) * (size_t)(n) * (width));                                  \
        free(t_);                                                                             \
    } while (0)

static void wcomp_gather(wcomp *c, lpe_walker_stats *ref, const int32_t *src, int n) {
    c->be->gather_state(c->be, src, n);
    WC_GATHER(c->tok, n, src, (size_t)c->k);
    WC_GATHER(c->score, n, src, 1);
    WC_GATHER(c->margin, n, src, 1);
    WC_GATHER(c->hit, n, src, 1);
    WC_GATHER(c->accept, n, src, 1);
    WC_GATHER(c->target, n, src, 1);
    WC_GATHER(c->beta, n, src, 1);
    WC_GATHER(c->tilt, n, src, 1);
    WC_GATHER(c->level, n, src, 1);
    WC_GATHER(c->energy, n, src, 1);
    WC_GATHER(c->stream, n, src, 1);
    WC_GATHER(c->index, n, src, 1);
    WC_GATHER(ref, n, src, 1);
}

/* n walkers, `steps` steps: the fused step against the composed one, bit for bit */
static void test_fused(space *sp, int n, int steps) {
    lpe_backend *bf = lpe_backend_create("cpu", &sp->m, n, sp->k, LPE_BE_GRAD | LPE_BE_STATE);
    lpe_backend *bc = lpe_backend_create("cpu", &sp->m, n, sp->k, LPE_BE_GRAD | LPE_BE_STATE);
    bf->use_dist(bf, &sp->d), bc->use_dist(bc, &sp->d);
    lpe_walkers w;
    wcomp c;
    lpe_walkers_init(&w, bf, n);
    wcomp_init(&c, bc, n);
    lpe_walker_stats *ref = calloc((size_t)n, sizeof *ref), *got = calloc((size_t)n, sizeof *got);
    int32_t *src = calloc((size_t)n, sizeof *src);
    for (int q = 0; q < n; q++) {
        mixed_row(sp, q, &w.target[q], &w.beta[q], &w.tilt[q], &w.level[q], &w.energy[q],
                  &w.stream[q], &w.index[q]);
        mixed_row(sp, q, &c.target[q], &c.beta[q], &c.tilt[q], &c.level[q], &c.energy[q],
                  &c.stream[q], &c.index[q]);
        memcpy(w.tok + (size_t)q * sp->k, sp->tok + (size_t)(q * 37 % sp->N) * sp->k, sizeof(int32_t) * sp->k);
        memcpy(c.tok + (size_t)q * sp->k, w.tok + (size_t)q * sp->k, sizeof(int32_t) * sp->k);
        lpe_walker_stats_reset(&ref[q]);
    }
    lpe_walkers_eval(&w);
    wcomp_eval(&c);
    int bad = compare_rows(&w, &c, n, sp->k), bad_steps = 0, acc = 0, snap_bad = 0;
    for (int st = 0; st < steps; st++) {
        if (st == steps / 2) { /* resampling, then new levels and indices (as ams does) */
            for (int q = 0; q < n; q++) {
                uint32_t u[4];
                lpe_rng4(u, 3, lpe_stream(LPE_STREAM_TEST, 99), (uint64_t)q, 0);
                src[q] = (int32_t)lpe_below(u[0], (uint32_t)n);
            }
            lpe_walkers_gather(&w, src, n);
            wcomp_gather(&c, ref, src, n);
            for (int q = 0; q < n; q += 3) {
                w.level[q] = c.level[q] = c.margin[q] - 0.5;
                w.index[q] = c.index[q] = (uint64_t)(n + q);
            }
        }
        const int rows = st % 5 == 4 ? n / 2 + 1 : n; /* partial steps (ams moves its copies) */
        const int a = lpe_walkers_step(&w, rows, 11, st), b = wcomp_step(&c, rows, 11, st);
        const int first = st < steps / 2;
        bf->walkers_accum(bf, n, first);
        for (int q = 0; q < n; q++)
            lpe_walker_stats_add(&ref[q], c.score[q], c.hit[q], c.accept[q], c.beta[q], first);
        const int e = compare_rows(&w, &c, n, sp->k);
        bad += e, bad_steps += e > 0 || a != b, acc += b;
        if (st % 7 == 3) { /* a snapshot equals the composed state */
            lpe_walker_snap sn;
            bf->walkers_snapshot(bf, n);
            bf->walkers_snapshot_get(bf, &sn);
            snap_bad += sn.rows != n || memcmp(sn.tok, c.tok, sizeof(int32_t) * n * sp->k) ||
                        memcmp(sn.score, c.score, sizeof(float) * n) || memcmp(sn.accept, c.accept, n);
        }
    }
    bf->walkers_stats(bf, got, n);
    int stats_bad = 0;
    for (int q = 0; q < n; q++) stats_bad += memcmp(&got[q], &ref[q], sizeof *got) != 0;
    printf("fused vs composed step, %d walkers x %d steps: %d accepted moves, %d rows differ, "
           "%d steps differ, %d snapshots differ, %d statistics differ\n",
           n, steps, acc, bad, bad_steps, snap_bad, stats_bad);
    CHECK(bad == 0 && bad_steps == 0, "the fused step differs from the composed one: %d rows in %d steps",
          bad, bad_steps);
    CHECK(acc > steps * n / 20 && acc < steps * n, "acceptances %d of %d: the test moves too little",
          acc, steps * n);
    CHECK(snap_bad == 0, "%d snapshots differ from the composed state", snap_bad);
    CHECK(stats_bad == 0, "%d walkers' statistics differ from the host's", stats_bad);
    lpe_walkers_free(&w);
    wcomp_free(&c);
    free(ref), free(got), free(src);
    lpe_backend_destroy(bf);
    lpe_backend_destroy(bc);
}

int main(void) {
    space sp;
    space_make(&sp);
    CHECK(sp.target >= 0, "no target in the test space");
    test_margin(&sp);
    test_laws(&sp);
    test_row_independence(&sp);
    test_threads_raised(&sp);
    test_gather(&sp);
    test_fused(&sp, 48, 400);
    test_fused(&sp, 4096, 12);
    space_free(&sp);
    return check_summary("test_walkers");
}
