/* cpu_walkers.c: the CPU backend's walker operations (backend.h, issue 10): the
 * Metropolis-Hastings step of src/estimators/walkers.h with the walkers' settings, results and
 * MHIS statistics kept in the backend. The reference for the GPU's kernels/cuda_walkers.cu.
 *
 * Dimension legend: Bm = max_batch, n = walker rows set, k positions, V = d_vocab, MS = largest
 *   support of the distribution in use, NT = OpenMP threads.
 *
 * A step is the composition of the backend's own operations that walkers.c made before issue 10
 * (scores_at on the state, forward with gradient of the proposals, scores_at on the batch,
 * commit_state), now inside the backend: the same calls on the same numbers, so the chains are
 * bit for bit those of the composed step (tests/c/test_walkers.c keeps the composition and
 * checks it).
 *
 * Memory, one allocation per lifetime class, made on first use:
 *   rows  per-row settings, results, statistics and step scratch, [Bm] each, and the snapshot
 *         [Bm, k] (lifetime: the backend);
 *   dist  the movable positions, the score table sc [Bm, MS] and NT cdf rows [NT, MS]
 *         (lifetime: the distribution in use; remade when it changes).
 * Neither is counted by batch_bytes: they are small next to the batch (rows), or depend on the
 * distribution, as the tables of use_dist.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_internal.h"
#include "lpe/common.h"
#include "lpe/philox.h"
#include "lpe/size_table.h"
#include "lpe/tilted.h"

#define ALIGN 64
#define ADD(p, count) LPE_SLOT(t, nt, p, count)

typedef struct cpu_walk {
    int n; /* rows set (walkers_set) */
    /* rows lifetime */
    void *rmem;
    int32_t *target;  /* [Bm] */
    double *beta;     /* [Bm] */
    uint8_t *energy;  /* [Bm] */
    double *tilt;     /* [Bm] */
    double *level;    /* [Bm] */
    uint32_t *stream; /* [Bm] */
    uint64_t *index;  /* [Bm] */
    float *score, *margin; /* [Bm] of the state */
    uint8_t *hit, *accept; /* [Bm] */
    lpe_walker_stats *stats; /* [Bm] */
    int32_t *pos, *yloc, *xloc, *argmax; /* [Bm] step scratch */
    float *tl, *mg;   /* [Bm] the proposals' score and margin */
    double *lphi;     /* [Bm] log phi(y | x); the proposal's uniform until the scores are in */
    lpe_walker_stats *tmp; /* [Bm] gather scratch (the widest per-row element) */
    int32_t *snap_tok;     /* [Bm, k] */
    float *snap_score;     /* [Bm] */
    uint8_t *snap_accept;  /* [Bm] */
    int snap_rows, snap_pending;
    /* dist lifetime */
    void *dmem;
    const lpe_dist *d;
    char sha[65];
    int *movable; /* [k] positions whose support has more than one token */
    int n_mov, MS, NT;
    float *sc;    /* [Bm, MS] scores of the chosen position */
    double *cdf;  /* [NT, MS] one tilted table per thread */
} cpu_walk;

static int rows_table(lpe_slot *t, cpu_walk *w, size_t Bm, size_t k) {
    int nt = 0;
    ADD(w->target, Bm), ADD(w->beta, Bm), ADD(w->energy, Bm), ADD(w->tilt, Bm);
    ADD(w->level, Bm), ADD(w->stream, Bm), ADD(w->index, Bm);
    ADD(w->score, Bm), ADD(w->margin, Bm), ADD(w->hit, Bm), ADD(w->accept, Bm);
    ADD(w->stats, Bm);
    ADD(w->pos, Bm), ADD(w->yloc, Bm), ADD(w->xloc, Bm), ADD(w->argmax, Bm);
    ADD(w->tl, Bm), ADD(w->mg, Bm), ADD(w->lphi, Bm), ADD(w->tmp, Bm);
    ADD(w->snap_tok, Bm * k), ADD(w->snap_score, Bm), ADD(w->snap_accept, Bm);
    return nt;
}

static int dist_table(lpe_slot *t, cpu_walk *w, size_t Bm, size_t k) {
    int nt = 0;
    ADD(w->movable, k);
    ADD(w->sc, Bm * (size_t)w->MS);
    ADD(w->cdf, (size_t)w->NT * w->MS);
    return nt;
}

static void *alloc_table(lpe_slot *t, int n) {
    size_t bytes = lpe_carve(t, n, NULL, ALIGN);
    char *base = bytes ? lpe_alloc_aligned(bytes) : NULL;
    if (base) memset(base, 0, bytes);
    lpe_carve(t, n, base, ALIGN);
    return base;
}

/* the walker rows, made on first use; fails without gradient, state or distribution */
static cpu_walk *walk_of(lpe_backend *be, const char *op) {
    cpu_impl *c = (cpu_impl *)be->impl;
    if (!c->keep || !c->state_tok)
        lpe_fail("cpu backend %s: walkers need a backend with LPE_BE_GRAD | LPE_BE_STATE", op);
    if (!c->d) lpe_fail("cpu backend %s: no distribution (use_dist) given", op);
    if (!c->walk) {
        c->walk = lpe_calloc(1, sizeof *c->walk);
        lpe_slot t[32];
        c->walk->rmem = alloc_table(t, rows_table(t, c->walk, (size_t)c->Bm, (size_t)c->k));
    }
    cpu_walk *w = c->walk;
    if (w->d != c->d || strcmp(w->sha, c->d->sha256) != 0) { /* the dist lifetime */
        const lpe_dist *d = c->d;
        lpe_free_aligned(w->dmem);
        w->MS = 1;
        for (int j = 0; j < d->k; j++) {
            int nj = lpe_dist_support(d, j);
            w->MS = nj > w->MS ? nj : w->MS;
        }
        w->NT = 1;
#ifdef _OPENMP
        w->NT = omp_get_max_threads();
#endif
        lpe_slot t[4];
        w->dmem = alloc_table(t, dist_table(t, w, (size_t)c->Bm, (size_t)c->k));
        w->n_mov = 0;
        for (int j = 0; j < d->k; j++)
            if (lpe_dist_support(d, j) > 1) w->movable[w->n_mov++] = j;
        if (w->n_mov == 0) w->movable[w->n_mov++] = 0; /* one input: every proposal repeats it */
        w->d = d;
        snprintf(w->sha, sizeof w->sha, "%s", d->sha256);
    }
    return w;
}

/* the calling OpenMP thread's number (0 without OpenMP): its row of cdf. The cdf has NT rows
 * (omp_get_max_threads() when the distribution came), and the regions that use it ask for at
 * most NT threads (num_threads), so a thread count raised later cannot index past it. */
static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static void check_n(const cpu_impl *c, const cpu_walk *w, int rows, const char *op) {
    if (rows < 1 || rows > w->n)
        lpe_fail("cpu backend %s: %d rows, %d walker rows are set (backend rows %d)", op, rows,
                 w->n, c->Bm);
}

static void op_walkers_set(lpe_backend *be, const lpe_walker_rows *r, int n) {
    cpu_impl *c = (cpu_impl *)be->impl;
    cpu_walk *w = walk_of(be, "walkers_set");
    if (n < 1 || n > c->Bm) lpe_fail("cpu backend walkers_set: %d rows, the backend holds 1..%d", n, c->Bm);
    for (int q = 0; q < n; q++)
        if (r->target[q] < 0 || r->target[q] >= c->V)
            lpe_fail_input("walker row %d: target token %d is outside the vocabulary [0, %d)", q,
                           (int)r->target[q], c->V);
    const size_t N = (size_t)n;
    memcpy(w->target, r->target, N * sizeof *w->target);
    memcpy(w->beta, r->beta, N * sizeof *w->beta);
    memcpy(w->energy, r->energy, N * sizeof *w->energy);
    memcpy(w->tilt, r->tilt, N * sizeof *w->tilt);
    memcpy(w->level, r->level, N * sizeof *w->level);
    memcpy(w->stream, r->stream, N * sizeof *w->stream);
    memcpy(w->index, r->index, N * sizeof *w->index);
    if (!r->tok) {
        if (n > w->n) lpe_fail("cpu backend walkers_set: settings of %d rows, %d have states", n, w->n);
        return;
    }
    w->n = n;
    be->load_tokens(be, r->tok, n);
    lpe_fwd_out fo = {.argmax = w->argmax, .target_logit = w->score, .margin = w->margin};
    be->forward(be, &fo, w->target, n, 1);
    memset(w->accept, 1, N);
    be->commit_state(be, w->accept, n);
    for (int q = 0; q < n; q++) {
        w->hit[q] = w->argmax[q] == w->target[q];
        lpe_walker_stats_reset(&w->stats[q]);
    }
}

/* Position and proposal of rows q < n from the state's scores: pos, yloc, xloc, lphi (log
 * phi(y | x)); the proposals into the batch tokens. */
static void propose(lpe_backend *be, cpu_walk *w, int n, uint64_t seed, long long st) {
    cpu_impl *c = (cpu_impl *)be->impl;
    const lpe_dist *d = w->d;
    const int k = c->k, MS = w->MS, V = d->d_vocab;
    for (int q = 0; q < n; q++) {
        uint32_t r[4];
        lpe_rng4(r, seed, w->stream[q], w->index[q], (uint32_t)(2 * st));
        w->pos[q] = w->movable[lpe_below(r[0], (uint32_t)w->n_mov)];
        w->lphi[q] = lpe_u01_53(r[1], r[2]); /* the proposal's uniform, until scores are in */
    }
    cpu_scores_at(be, w->sc, MS, w->pos, LPE_BUF_STATE, n);
#pragma omp parallel for schedule(static) num_threads(w->NT)
    for (int q = 0; q < n; q++) {
        const int tid = thread_id();
        const int j = w->pos[q], f = d->positions[j], nj = lpe_dist_support(d, j);
        const double *lp = d->log_probs + d->offsets[f];
        const float *sq = w->sc + (size_t)q * MS; /* [nj] */
        double *cq = w->cdf + (size_t)tid * MS;    /* [nj] */
        const double logZ = lpe_tilted_cdf(cq, lp, sq, NULL, w->tilt[q], nj);
        const int y = lpe_tilted_pick(cq, nj, w->lphi[q]);
        const int32_t *x = c->state_tok + (size_t)q * k; /* [k] */
        w->yloc[q] = y;
        w->xloc[q] = d->local_of[(size_t)f * V + x[j]];
        w->lphi[q] = lpe_tilted_logq(lp[y], sq[y], w->tilt[q], logZ);
        memcpy(c->tok + (size_t)q * k, x, sizeof(int32_t) * k);
        c->tok[(size_t)q * k + j] = d->values[d->offsets[f] + y];
    }
}

/* Accept or reject rows q < n from the proposals' evaluation (tl, mg, argmax) and their scores
 * (sc, for the reverse proposal); accepted rows take the proposal's score, margin and hit. */
static void decide(cpu_walk *w, int n, uint64_t seed, long long st) {
    const lpe_dist *d = w->d;
    const int MS = w->MS;
#pragma omp parallel for schedule(static) num_threads(w->NT) CPU_PAR((size_t)n * MS)
    for (int q = 0; q < n; q++) {
        const int tid = thread_id();
        const int j = w->pos[q], f = d->positions[j], nj = lpe_dist_support(d, j);
        const double *lp = d->log_probs + d->offsets[f], tilt = w->tilt[q];
        const float *sq = w->sc + (size_t)q * MS; /* [nj] */
        const double logZr = lpe_tilted_cdf(w->cdf + (size_t)tid * MS, lp, sq, NULL, tilt, nj);
        const int x = w->xloc[q], y = w->yloc[q];
        const double lphi_rev = lpe_tilted_logq(lp[x], sq[x], tilt, logZr);
        const double de = lpe_walker_energy(w->energy[q], w->tl[q], w->mg[q]) -
                          lpe_walker_energy(w->energy[q], w->score[q], w->margin[q]);
        const double log_ratio = de * w->beta[q] + lp[y] - lp[x] + lphi_rev - w->lphi[q];
        uint32_t r[4];
        lpe_rng4(r, seed, w->stream[q], w->index[q], (uint32_t)(2 * st + 1));
        const double u = lpe_u01_53(r[0], r[1]);
        w->accept[q] = w->mg[q] > w->level[q] && log(u) < log_ratio;
        if (!w->accept[q]) continue;
        w->score[q] = w->tl[q];
        w->margin[q] = w->mg[q];
        w->hit[q] = w->argmax[q] == w->target[q];
    }
}

static void op_walkers_step(lpe_backend *be, int rows, uint64_t seed, long long st) {
    cpu_impl *c = (cpu_impl *)be->impl;
    cpu_walk *w = walk_of(be, "walkers_step");
    check_n(c, w, rows, "walkers_step");
    propose(be, w, rows, seed, st);
    lpe_fwd_out fo = {.argmax = w->argmax, .target_logit = w->tl, .margin = w->mg};
    be->forward(be, &fo, w->target, rows, 1);
    cpu_scores_at(be, w->sc, w->MS, w->pos, LPE_BUF_BATCH, rows);
    decide(w, rows, seed, st);
    be->commit_state(be, w->accept, rows);
}

static void op_walkers_accum(lpe_backend *be, int rows, int first) {
    cpu_impl *c = (cpu_impl *)be->impl;
    cpu_walk *w = walk_of(be, "walkers_accum");
    check_n(c, w, rows, "walkers_accum");
    for (int q = 0; q < rows; q++)
        lpe_walker_stats_add(&w->stats[q], w->score[q], w->hit[q], w->accept[q], w->beta[q], first);
}

static void op_walkers_stats(lpe_backend *be, lpe_walker_stats *out, int rows) {
    cpu_impl *c = (cpu_impl *)be->impl;
    cpu_walk *w = walk_of(be, "walkers_stats");
    check_n(c, w, rows, "walkers_stats");
    memcpy(out, w->stats, (size_t)rows * sizeof *out);
}

static void op_walkers_read(lpe_backend *be, const lpe_walker_view *v, int rows) {
    cpu_impl *c = (cpu_impl *)be->impl;
    cpu_walk *w = walk_of(be, "walkers_read");
    check_n(c, w, rows, "walkers_read");
    const size_t N = (size_t)rows;
    if (v->score) memcpy(v->score, w->score, N * sizeof *v->score);
    if (v->margin) memcpy(v->margin, w->margin, N * sizeof *v->margin);
    if (v->hit) memcpy(v->hit, w->hit, N);
    if (v->accept) memcpy(v->accept, w->accept, N);
}

/* synchronous here: the copy is made at once, get only points at it */
static void op_walkers_snapshot(lpe_backend *be, int rows) {
    cpu_impl *c = (cpu_impl *)be->impl;
    cpu_walk *w = walk_of(be, "walkers_snapshot");
    check_n(c, w, rows, "walkers_snapshot");
    if (w->snap_pending) lpe_fail("cpu backend walkers_snapshot: the last snapshot was not taken");
    memcpy(w->snap_tok, c->state_tok, (size_t)rows * c->k * sizeof *w->snap_tok);
    memcpy(w->snap_score, w->score, (size_t)rows * sizeof *w->snap_score);
    memcpy(w->snap_accept, w->accept, (size_t)rows);
    w->snap_rows = rows, w->snap_pending = 1;
}

static void op_walkers_snapshot_get(lpe_backend *be, lpe_walker_snap *out) {
    cpu_walk *w = walk_of(be, "walkers_snapshot_get");
    if (!w->snap_pending) lpe_fail("cpu backend walkers_snapshot_get: no snapshot was started");
    *out = (lpe_walker_snap){.rows = w->snap_rows, .tok = w->snap_tok, .score = w->snap_score,
                             .accept = w->snap_accept};
    w->snap_pending = 0;
}

/* out[q] = a[src[q]] for q < B, elements of `size` bytes, through tmp */
static void gather_rows(void *a, void *tmp, const int32_t *src, int B, size_t size) {
    char *x = a, *t = tmp;
    for (int q = 0; q < B; q++) memcpy(t + q * size, x + (size_t)src[q] * size, size);
    memcpy(x, t, (size_t)B * size);
}

void cpu_walkers_gather(cpu_impl *c, const int32_t *src, int B) {
    cpu_walk *w = c->walk;
    if (!w) return; /* no walker rows yet: nothing but the state to gather */
    void *t = w->tmp;
    gather_rows(w->target, t, src, B, sizeof *w->target);
    gather_rows(w->beta, t, src, B, sizeof *w->beta);
    gather_rows(w->energy, t, src, B, sizeof *w->energy);
    gather_rows(w->tilt, t, src, B, sizeof *w->tilt);
    gather_rows(w->level, t, src, B, sizeof *w->level);
    gather_rows(w->stream, t, src, B, sizeof *w->stream);
    gather_rows(w->index, t, src, B, sizeof *w->index);
    gather_rows(w->score, t, src, B, sizeof *w->score);
    gather_rows(w->margin, t, src, B, sizeof *w->margin);
    gather_rows(w->hit, t, src, B, sizeof *w->hit);
    gather_rows(w->accept, t, src, B, sizeof *w->accept);
    gather_rows(w->stats, t, src, B, sizeof *w->stats);
    if (B > w->n) w->n = B; /* rows beyond the old count took set rows' states */
}

void cpu_walkers_free(cpu_impl *c) {
    if (!c->walk) return;
    lpe_free_aligned(c->walk->rmem);
    lpe_free_aligned(c->walk->dmem);
    free(c->walk);
    c->walk = NULL;
}

void cpu_walkers_install(lpe_backend *be) {
    be->walkers_set = op_walkers_set;
    be->walkers_step = op_walkers_step;
    be->walkers_accum = op_walkers_accum;
    be->walkers_stats = op_walkers_stats;
    be->walkers_read = op_walkers_read;
    be->walkers_snapshot = op_walkers_snapshot;
    be->walkers_snapshot_get = op_walkers_snapshot_get;
}
