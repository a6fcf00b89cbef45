/* walkers.c: Metropolis-Hastings walkers on the backend's walker state (walkers.h).
 * Dimension legend: see walkers.h. */
#include "walkers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/philox.h"
#include "lpe/tilted.h"

void lpe_walkers_init(lpe_walkers *w, lpe_backend *be, int n) {
    const lpe_dist *d = be->dist;
    LPE_ASSERT(d && be->with_grad && be->with_state && n >= 1 && n <= be->max_batch);
    memset(w, 0, sizeof *w);
    w->be = be, w->n = w->cap = n, w->k = d->k;
    const size_t N = (size_t)n, k = (size_t)d->k;
    w->movable = lpe_calloc(k, sizeof *w->movable);
    w->MS = 1;
    for (int j = 0; j < d->k; j++) {
        int nj = lpe_dist_support(d, j);
        if (nj > 1) w->movable[w->n_mov++] = j;
        w->MS = nj > w->MS ? nj : w->MS;
    }
    if (w->n_mov == 0) w->movable[w->n_mov++] = 0; /* one input: every proposal repeats it */
    const size_t MS = (size_t)w->MS;
    w->target = lpe_calloc(N, sizeof *w->target);
    w->beta = lpe_calloc(N, sizeof *w->beta);
    w->energy = lpe_calloc(N, sizeof *w->energy);
    w->tilt = lpe_calloc(N, sizeof *w->tilt);
    w->level = lpe_calloc(N, sizeof *w->level);
    w->stream = lpe_calloc(N, sizeof *w->stream);
    w->index = lpe_calloc(N, sizeof *w->index);
    w->tok = lpe_calloc(N * k, sizeof *w->tok);
    w->score = lpe_calloc(N, sizeof *w->score);
    w->margin = lpe_calloc(N, sizeof *w->margin);
    w->hit = lpe_calloc(N, sizeof *w->hit);
    w->accept = lpe_calloc(N, sizeof *w->accept);
    w->prop = lpe_calloc(N * k, sizeof *w->prop);
    w->pos = lpe_calloc(N, sizeof *w->pos);
    w->yloc = lpe_calloc(N, sizeof *w->yloc);
    w->xloc = lpe_calloc(N, sizeof *w->xloc);
    w->argmax = lpe_calloc(N, sizeof *w->argmax);
    w->sc = lpe_calloc(N * MS, sizeof *w->sc);
    w->tl = lpe_calloc(N, sizeof *w->tl);
    w->mg = lpe_calloc(N, sizeof *w->mg);
    w->lphi_fwd = lpe_calloc(N, sizeof *w->lphi_fwd);
    w->cdf = lpe_calloc(N * MS, sizeof *w->cdf);
    for (int q = 0; q < n; q++) w->level[q] = -INFINITY, w->index[q] = (uint64_t)q;
}

void lpe_walkers_free(lpe_walkers *w) {
    void *p[] = {w->movable, w->target, w->beta, w->energy, w->tilt, w->level, w->stream, w->index, w->tok,
                 w->score, w->margin, w->hit, w->accept, w->prop, w->pos, w->yloc, w->xloc,
                 w->argmax, w->sc, w->tl, w->mg, w->lphi_fwd, w->cdf};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
    memset(w, 0, sizeof *w);
}

void lpe_walkers_eval(lpe_walkers *w) {
    lpe_backend *be = w->be;
    be->load_tokens(be, w->tok, w->n);
    lpe_fwd_out fo = {.argmax = w->argmax, .target_logit = w->score, .margin = w->margin};
    be->forward(be, &fo, w->target, w->n, 1);
    memset(w->accept, 1, (size_t)w->n);
    be->commit_state(be, w->accept, w->n);
    for (int q = 0; q < w->n; q++) w->hit[q] = w->argmax[q] == w->target[q];
}

/* Position and proposal of every row from the state's scores: prop, pos, yloc, xloc, lphi_fwd
 * (log phi(y | x)); cdf keeps each row's forward table. */
static void propose(lpe_walkers *w, int n, uint64_t seed, long long st) {
    const lpe_dist *d = w->be->dist;
    const int k = w->k, MS = w->MS, V = d->d_vocab;
    for (int q = 0; q < n; q++) {
        uint32_t r[4];
        lpe_rng4(r, seed, w->stream[q], w->index[q], (uint32_t)(2 * st));
        w->pos[q] = w->movable[lpe_below(r[0], (uint32_t)w->n_mov)];
        w->lphi_fwd[q] = lpe_u01_53(r[1], r[2]); /* the proposal's uniform, until scores are back */
    }
    w->be->scores_at(w->be, w->sc, MS, w->pos, LPE_BUF_STATE, n);
#pragma omp parallel for schedule(static)
    for (int q = 0; q < n; q++) {
        const int j = w->pos[q], f = d->positions[j], nj = lpe_dist_support(d, j);
        const double *lp = d->log_probs + d->offsets[f];
        double *cq = w->cdf + (size_t)q * MS;
        const double logZ = lpe_tilted_cdf(cq, lp, w->sc + (size_t)q * MS, NULL, w->tilt[q], nj);
        const int y = lpe_tilted_pick(cq, nj, w->lphi_fwd[q]);
        w->yloc[q] = y;
        w->xloc[q] = d->local_of[(size_t)f * V + w->tok[(size_t)q * k + j]];
        w->lphi_fwd[q] = lpe_tilted_logq(lp[y], w->sc[(size_t)q * MS + y], w->tilt[q], logZ);
        memcpy(w->prop + (size_t)q * k, w->tok + (size_t)q * k, sizeof(int32_t) * k);
        w->prop[(size_t)q * k + j] = d->values[d->offsets[f] + y];
    }
}

/* Accept or reject every row from the proposal's evaluation (tl, mg, argmax) and its scores
 * (sc, for the reverse proposal); the host mirror follows. */
static int accept(lpe_walkers *w, int n, uint64_t seed, long long st) {
    const lpe_dist *d = w->be->dist;
    const int k = w->k, MS = w->MS;
    int n_acc = 0;
    for (int q = 0; q < n; q++) {
        const int j = w->pos[q], f = d->positions[j], nj = lpe_dist_support(d, j);
        const double *lp = d->log_probs + d->offsets[f], tilt = w->tilt[q];
        const double logZr =
            lpe_tilted_cdf(w->cdf + (size_t)q * MS, lp, w->sc + (size_t)q * MS, NULL, tilt, nj);
        const int x = w->xloc[q], y = w->yloc[q];
        const double lphi_rev = lpe_tilted_logq(lp[x], w->sc[(size_t)q * MS + x], tilt, logZr);
        const double de = lpe_walkers_energy(w->energy[q], w->tl[q], w->mg[q]) -
                          lpe_walkers_energy(w->energy[q], w->score[q], w->margin[q]);
        const double log_ratio = de * w->beta[q] + lp[y] - lp[x] + lphi_rev - w->lphi_fwd[q];
        uint32_t r[4];
        lpe_rng4(r, seed, w->stream[q], w->index[q], (uint32_t)(2 * st + 1));
        const double u = lpe_u01_53(r[0], r[1]);
        w->accept[q] = w->mg[q] > w->level[q] && log(u) < log_ratio;
        if (!w->accept[q]) continue;
        n_acc++;
        memcpy(w->tok + (size_t)q * k, w->prop + (size_t)q * k, sizeof(int32_t) * k);
        w->score[q] = w->tl[q];
        w->margin[q] = w->mg[q];
        w->hit[q] = w->argmax[q] == w->target[q];
    }
    return n_acc;
}

int lpe_walkers_step(lpe_walkers *w, int rows, uint64_t seed, long long st) {
    lpe_backend *be = w->be;
    LPE_ASSERT(rows >= 0 && rows <= w->n);
    if (rows == 0) return 0;
    propose(w, rows, seed, st);
    be->load_tokens(be, w->prop, rows);
    lpe_fwd_out fo = {.argmax = w->argmax, .target_logit = w->tl, .margin = w->mg};
    be->forward(be, &fo, w->target, rows, 1);
    be->scores_at(be, w->sc, w->MS, w->pos, LPE_BUF_BATCH, rows);
    int n_acc = accept(w, rows, seed, st);
    be->commit_state(be, w->accept, rows);
    return n_acc;
}

/* out[q] = in[src[q]] for q < rows, elements of `size` bytes (through the scratch `tmp`) */
static void gather_rows(void *a, void *tmp, const int32_t *src, int rows, size_t size) {
    char *x = a, *t = tmp;
    for (int q = 0; q < rows; q++) memcpy(t + q * size, x + (size_t)src[q] * size, size);
    memcpy(x, t, (size_t)rows * size);
}

void lpe_walkers_gather(lpe_walkers *w, const int32_t *src, int rows) {
    LPE_ASSERT(rows >= 0 && rows <= w->n);
    if (rows == 0) return;
    for (int q = 0; q < rows; q++) LPE_ASSERT(src[q] >= 0 && src[q] < w->n);
    w->be->gather_state(w->be, src, rows);
    void *tmp = w->prop; /* [n, k] int32: the proposals' room fits any one per-row array */
    gather_rows(w->tok, tmp, src, rows, sizeof(int32_t) * w->k);
    gather_rows(w->target, tmp, src, rows, sizeof *w->target);
    gather_rows(w->score, tmp, src, rows, sizeof *w->score);
    gather_rows(w->margin, tmp, src, rows, sizeof *w->margin);
    gather_rows(w->hit, tmp, src, rows, sizeof *w->hit);
    gather_rows(w->energy, tmp, src, rows, sizeof *w->energy);
    gather_rows(w->stream, tmp, src, rows, sizeof *w->stream);
    /* 8-byte values go through cdf (n x MS doubles) */
    gather_rows(w->beta, w->cdf, src, rows, sizeof *w->beta);
    gather_rows(w->tilt, w->cdf, src, rows, sizeof *w->tilt);
    gather_rows(w->level, w->cdf, src, rows, sizeof *w->level);
    gather_rows(w->index, w->cdf, src, rows, sizeof *w->index);
}

int lpe_walkers_groups(const lpe_est_ctx *ctx, int N) {
    if (N > ctx->be->max_batch)
        lpe_est_fail(ctx, "particles", "%d particles do not fit the backend's batch of %d rows", N,
                     ctx->be->max_batch);
    if (ctx->budget < N)
        lpe_est_fail(ctx, "particles", "the budget (%lld calls) is below the %d start particles",
                     ctx->budget, N);
    return ctx->be->max_batch / N;
}

void lpe_walkers_start(lpe_walkers *w, const lpe_est_ctx *ctx, int t0, int G, int N,
                       uint32_t purpose) {
    const int k = ctx->dist->k;
    LPE_ASSERT(G >= 0 && G * N <= w->cap);
    for (int g = 0; g < G; g++) {
        const int32_t t = ctx->targets[t0 + g];
        const uint32_t stream = lpe_stream(purpose, (uint32_t)t);
        lpe_dist_sample(w->tok + (size_t)g * N * k, ctx->dist, ctx->seed, stream, 1ull << 62, N);
        for (int r = g * N; r < (g + 1) * N; r++) {
            w->target[r] = t, w->stream[r] = stream;
            w->beta[r] = w->tilt[r] = 0, w->level[r] = -INFINITY;
            w->energy[r] = LPE_ENERGY_SCORE;
        }
    }
    w->n = G * N;
}
