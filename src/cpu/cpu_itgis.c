/* cpu_itgis.c: the CPU backend's ITGIS operations (backend.h, "ITGIS operations"; methods.md §4):
 * tilted draws from the score tables, log-weights, per-target moments and the score-table
 * update, all inside the backend. The reference for kernels/cuda_itgis.cu, and bit for bit the
 * host loop that src/estimators/itgis.c ran before (tests/c/test_itgis.c keeps that loop as its
 * oracle): the same functions (tilted.h, itgis_moments.h), the same order of every sum.
 *
 * Dimension legend: TC targets the tables hold, tc targets of the chunk, k positions,
 *   NSP = sum_j n_{f(j)} (position-major: entry pos_off[j] + y is support entry y of position j),
 *   B samples per target per full round, Br this round's, Bm = max_batch, nr rows of a draw.
 *
 * Memory: one allocation (lifetime: itgis_tables to itgis_tables(0) or destroy), carved from a
 * size table; the gradient products use the batch class's score scratch (scores.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"
#include "lpe/common.h"
#include "lpe/itgis_moments.h"
#include "lpe/philox.h"
#include "lpe/size_table.h"
#include "lpe/tilted.h"

typedef struct cpu_itgis {
    void *mem;
    const lpe_dist *d;  /* the distribution the tables were made for */
    int TC, tc, B, Br, nr, ngm;
    int64_t NSP;
    uint64_t seed;
    long long r, r0;    /* round; first row of the last draw */
    double inv_T;       /* 1 / T_r of the round */
    int64_t *pos_off;   /* [k + 1] */
    double *S, *G;      /* [TC, NSP] score tables, round gradient sums */
    double *cdf;        /* [TC, NSP] tilted cdf of every (target, position) */
    double *logZ;       /* [TC, k] */
    double *logw;       /* [Bm] log-weights of the last draw */
    int32_t *targets;   /* [TC] token ids of the chunk */
    int32_t *goff;      /* [ngm + 1] row groups (one per target) of a call */
    uint8_t *hit;       /* [Bm] argmax == target, per row of the last forward */
    lpe_itgis_moments *mom; /* [TC] */
} cpu_itgis;

static cpu_itgis *tables_of(lpe_backend *be, const char *op) {
    cpu_itgis *s = ((cpu_impl *)be->impl)->itgis;
    if (!s) lpe_fail("cpu backend %s: no ITGIS tables (itgis_tables first)", op);
    if (s->d != ((cpu_impl *)be->impl)->d)
        lpe_fail("cpu backend %s: the distribution changed since itgis_tables", op);
    return s;
}

void cpu_itgis_free(cpu_impl *c) {
    if (!c->itgis) return;
    lpe_free_aligned(c->itgis->mem);
    free(c->itgis);
    c->itgis = NULL;
}

static void op_tables(lpe_backend *be, int TC) {
    cpu_impl *c = be->impl;
    cpu_itgis_free(c);
    if (TC <= 0) return;
    if (!c->d) lpe_fail("cpu backend itgis_tables: no distribution (use_dist) given");
    if (!c->keep) lpe_fail("cpu backend itgis_tables: the workspace has no gradient (LPE_BE_GRAD)");
    cpu_itgis *s = lpe_calloc(1, sizeof *s);
    s->d = c->d, s->TC = TC;
    s->ngm = TC < c->Bm ? TC : c->Bm; /* a call's rows span at most this many targets */
    const size_t T = (size_t)TC, k = (size_t)c->k;
    int64_t NSP = 0;
    for (int j = 0; j < c->k; j++) NSP += lpe_dist_support(c->d, j);
    s->NSP = NSP;
    lpe_slot t[16];
    int n = 0;
    LPE_SLOT(t, n, s->pos_off, k + 1);
    LPE_SLOT(t, n, s->S, T * NSP);
    LPE_SLOT(t, n, s->G, T * NSP);
    LPE_SLOT(t, n, s->cdf, T * NSP);
    LPE_SLOT(t, n, s->logZ, T * k);
    LPE_SLOT(t, n, s->logw, c->Bm);
    LPE_SLOT(t, n, s->targets, T);
    LPE_SLOT(t, n, s->goff, (size_t)s->ngm + 1);
    LPE_SLOT(t, n, s->hit, c->Bm);
    LPE_SLOT(t, n, s->mom, T);
    s->mem = lpe_alloc_aligned(lpe_carve(t, n, NULL, 64));
    lpe_carve(t, n, s->mem, 64);
    for (int j = 0; j < c->k; j++) s->pos_off[j + 1] = s->pos_off[j] + lpe_dist_support(c->d, j);
    c->itgis = s;
}

static void op_reset(lpe_backend *be, const int32_t *targets, int tc, uint64_t seed, int B) {
    cpu_itgis *s = tables_of(be, "itgis_reset");
    if (tc < 1 || tc > s->TC || B < 1)
        lpe_fail("cpu backend itgis_reset: %d targets (tables for %d), B = %d", tc, s->TC, B);
    memcpy(s->targets, targets, (size_t)tc * sizeof *targets);
    memset(s->S, 0, (size_t)tc * s->NSP * sizeof *s->S);
    memset(s->mom, 0, (size_t)tc * sizeof *s->mom);
    s->tc = tc, s->seed = seed, s->B = B, s->Br = 0, s->nr = 0;
}

/* the tilted law of every (target, position): cdf and log Z, from S at 1 / T_r */
static void op_round(lpe_backend *be, long long r, int Br, double inv_T) {
    cpu_impl *c = be->impl;
    cpu_itgis *s = tables_of(be, "itgis_round");
    if (Br < 1 || Br > s->B || s->tc < 1 || r < 0)
        lpe_fail("cpu backend itgis_round: round %lld of %d samples (B = %d, %d targets)", r, Br,
                 s->B, s->tc);
    const lpe_dist *d = s->d;
    const int k = c->k, pairs = s->tc * k;
    const int64_t NSP = s->NSP;
#pragma omp parallel for schedule(dynamic, 1) CPU_PAR((size_t)s->tc * NSP)
    for (int p = 0; p < pairs; p++) {
        const int a = p / k, j = p % k, f = d->positions[j];
        const int64_t o = (int64_t)a * NSP + s->pos_off[j];
        s->logZ[p] = lpe_tilted_cdf(s->cdf + o, d->log_probs + d->offsets[f], NULL, s->S + o,
                                    inv_T, lpe_dist_support(d, j));
    }
    memset(s->G, 0, (size_t)s->tc * NSP * sizeof *s->G);
    s->r = r, s->Br = Br, s->inv_T = inv_T, s->nr = 0;
}

/* rows r0 .. r0 + nr: row a*Br + i is sample i of target a; Philox draw r*B + i, sub = j */
static void op_draw(lpe_backend *be, long long r0, int nr) {
    cpu_impl *c = be->impl;
    cpu_itgis *s = tables_of(be, "itgis_draw");
    if (s->Br < 1 || nr < 1 || nr > c->Bm || r0 < 0 || r0 + nr > (long long)s->tc * s->Br)
        lpe_fail("cpu backend itgis_draw: rows [%lld, %lld) of a round of %d x %d (batch %d)", r0,
                 r0 + nr, s->tc, s->Br, c->Bm);
    const lpe_dist *d = s->d;
    const int k = c->k;
    const int64_t NSP = s->NSP, *pos_off = s->pos_off;
#pragma omp parallel for schedule(static) CPU_PAR((size_t)nr * k * 64)
    for (int q = 0; q < nr; q++) {
        const int a = (int)((r0 + q) / s->Br), i = (int)((r0 + q) % s->Br);
        const double *St = s->S + (size_t)a * NSP, *cdf = s->cdf + (size_t)a * NSP; /* [NSP] */
        const double *logZ = s->logZ + (size_t)a * k;                              /* [k] */
        const uint32_t stream = lpe_stream(LPE_STREAM_ITGIS, (uint32_t)s->targets[a]);
        int32_t *x = c->tok + (size_t)q * k; /* [k] */
        double lw = 0;
        for (int j = 0; j < k; j++) {
            uint32_t w[4];
            lpe_rng4(w, s->seed, stream, (uint64_t)(s->r * s->B + i), (uint32_t)j);
            const int f = d->positions[j], nj = lpe_dist_support(d, j);
            const int y = lpe_tilted_pick(cdf + pos_off[j], nj, lpe_u01_53(w[0], w[1]));
            x[j] = d->values[d->offsets[f] + y];
            lw += logZ[j] - St[pos_off[j] + y] * s->inv_T;
        }
        s->logw[q] = lw;
    }
    s->r0 = r0, s->nr = nr;
}

/* argmax of row b of the last forward's logits, as op_forward (strict '>': lowest index) */
static int row_argmax(const cpu_impl *c, int b) {
    const float *lg = c->logits + (size_t)b * c->V; /* [V] */
    int am = 0;
    float mx = lg[0];
    for (int v = 0; v < c->V; v++)
        if (lg[v] > mx) mx = lg[v], am = v;
    return am;
}

/* moments in row order, then G += each target's summed gradient scores (one group per target) */
static void op_accumulate(lpe_backend *be) {
    cpu_impl *c = be->impl;
    cpu_itgis *s = tables_of(be, "itgis_accumulate");
    if (s->nr < 1 || c->B_last != s->nr || !c->grad_valid)
        lpe_fail("cpu backend itgis_accumulate: needs a forward with gradient of the %d drawn rows",
                 s->nr);
    const int Br = s->Br, a0 = (int)(s->r0 / Br);
#pragma omp parallel for schedule(static) CPU_PAR((size_t)s->nr * c->V)
    for (int q = 0; q < s->nr; q++)
        s->hit[q] = row_argmax(c, q) == s->targets[(s->r0 + q) / Br];
    for (int q = 0; q < s->nr; q++) { /* in row order: Welford's sums depend on it */
        const double w = exp(s->logw[q]);
        lpe_itgis_moments_add(&s->mom[(s->r0 + q) / Br], s->hit[q] ? w : 0.0, w, s->hit[q]);
    }
    const int a1 = (int)((s->r0 + s->nr - 1) / Br), ng = a1 - a0 + 1;
    LPE_ASSERT(ng <= s->ngm);
    for (int g = 0; g < ng; g++) {
        const long long lo = (long long)(a0 + g) * Br - s->r0;
        s->goff[g] = lo < 0 ? 0 : (int32_t)lo;
    }
    s->goff[ng] = s->nr;
    cpu_scores_sum_into(c, s->G + (size_t)a0 * s->NSP, s->goff, ng, 1);
}

static void op_update(lpe_backend *be, double beta) {
    cpu_itgis *s = tables_of(be, "itgis_update");
    if (s->Br < 1) lpe_fail("cpu backend itgis_update: no round (itgis_round first)");
    const size_t n = (size_t)s->tc * s->NSP;
    const int Br = s->Br;
#pragma omp parallel for schedule(static) CPU_PAR(n)
    for (size_t i = 0; i < n; i++) s->S[i] = beta * s->S[i] + s->G[i] / Br;
}

static void op_read(lpe_backend *be, void *out, int what) {
    cpu_itgis *s = tables_of(be, "itgis_read");
    if (what == LPE_ITGIS_MOMENTS) memcpy(out, s->mom, (size_t)s->tc * sizeof *s->mom);
    else if (what == LPE_ITGIS_S) memcpy(out, s->S, (size_t)s->tc * s->NSP * sizeof *s->S);
    else if (what == LPE_ITGIS_LOGW) memcpy(out, s->logw, (size_t)s->nr * sizeof *s->logw);
    else lpe_fail("cpu backend itgis_read: unknown table %d", what);
}

void cpu_itgis_install(lpe_backend *be) {
    be->itgis_tables = op_tables;
    be->itgis_reset = op_reset;
    be->itgis_round = op_round;
    be->itgis_draw = op_draw;
    be->itgis_accumulate = op_accumulate;
    be->itgis_update = op_update;
    be->itgis_read = op_read;
}
