/* walkers.c: Metropolis-Hastings walkers on the backend's walker state (walkers.h).
 * Dimension legend: see walkers.h. */
#include "walkers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/philox.h"
#include "tilted.h"

void lpe_walkers_init(lpe_walkers *w, lpe_backend *be, int n) {
    const lpe_dist *d = be->dist;
    LPE_ASSERT(d && be->with_grad && be->with_state && n >= 1 && n <= be->max_batch);
    memset(w, 0, sizeof *w);
    w->be = be, w->n = n, w->k = d->k;
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
    void *p[] = {w->movable, w->target, w->beta, w->level, w->stream, w->index, w->tok,
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
static void propose(lpe_walkers *w, uint64_t seed, long long st) {
    const lpe_dist *d = w->be->dist;
    const int n = w->n, k = w->k, MS = w->MS, V = d->d_vocab;
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
        const double logZ = lpe_tilted_cdf(cq, lp, w->sc + (size_t)q * MS, NULL, w->beta[q], nj);
        const int y = lpe_tilted_pick(cq, nj, w->lphi_fwd[q]);
        w->yloc[q] = y;
        w->xloc[q] = d->local_of[(size_t)f * V + w->tok[(size_t)q * k + j]];
        w->lphi_fwd[q] = lpe_tilted_logq(lp[y], w->sc[(size_t)q * MS + y], w->beta[q], logZ);
        memcpy(w->prop + (size_t)q * k, w->tok + (size_t)q * k, sizeof(int32_t) * k);
        w->prop[(size_t)q * k + j] = d->values[d->offsets[f] + y];
    }
}

/* Accept or reject every row from the proposal's evaluation (tl, mg, argmax) and its scores
 * (sc, for the reverse proposal); the host mirror follows. */
static int accept(lpe_walkers *w, uint64_t seed, long long st) {
    const lpe_dist *d = w->be->dist;
    const int n = w->n, k = w->k, MS = w->MS;
    int n_acc = 0;
    for (int q = 0; q < n; q++) {
        const int j = w->pos[q], f = d->positions[j], nj = lpe_dist_support(d, j);
        const double *lp = d->log_probs + d->offsets[f], beta = w->beta[q];
        const double logZr =
            lpe_tilted_cdf(w->cdf + (size_t)q * MS, lp, w->sc + (size_t)q * MS, NULL, beta, nj);
        const int x = w->xloc[q], y = w->yloc[q];
        const double lphi_rev = lpe_tilted_logq(lp[x], w->sc[(size_t)q * MS + x], beta, logZr);
        const double log_ratio = ((double)w->tl[q] - w->score[q]) * beta + lp[y] - lp[x] +
                                 lphi_rev - w->lphi_fwd[q];
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

int lpe_walkers_step(lpe_walkers *w, uint64_t seed, long long st) {
    lpe_backend *be = w->be;
    propose(w, seed, st);
    be->load_tokens(be, w->prop, w->n);
    lpe_fwd_out fo = {.argmax = w->argmax, .target_logit = w->tl, .margin = w->mg};
    be->forward(be, &fo, w->target, w->n, 1);
    be->scores_at(be, w->sc, w->MS, w->pos, LPE_BUF_BATCH, w->n);
    int n_acc = accept(w, seed, st);
    be->commit_state(be, w->accept, w->n);
    return n_acc;
}
