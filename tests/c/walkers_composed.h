/* walkers_composed.h: the walker step as src/estimators/walkers.c composed it before issue 10,
 * from the backend's general operations (scores_at on the state and the batch, load_tokens,
 * forward with gradient, commit_state), with the host deciding. Kept as the reference that the
 * backend's fused walkers_step must reproduce bit for bit on the CPU (test_walkers.c) and that
 * the GPU's is compared with (test_cuda_backend.c).
 *
 * Dimension legend: n walker rows, k positions, MS largest support.
 */
#ifndef LPE_WALKERS_COMPOSED_H
#define LPE_WALKERS_COMPOSED_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/backend.h"
#include "lpe/philox.h"
#include "lpe/tilted.h"

typedef struct {
    lpe_backend *be;
    int n, k, MS, n_mov;
    int *movable;                 /* [k] */
    int32_t *target;              /* [n] per-row settings, as lpe_walkers */
    double *beta, *tilt, *level;  /* [n] */
    uint8_t *energy;              /* [n] */
    uint32_t *stream;             /* [n] */
    uint64_t *index;              /* [n] */
    int32_t *tok;                 /* [n, k] the state (mirror) */
    float *score, *margin;        /* [n] */
    uint8_t *hit, *accept;        /* [n] */
    int32_t *prop, *pos, *yloc, *xloc, *argmax; /* scratch */
    float *sc, *tl, *mg;
    double *lphi_fwd, *cdf;
} wcomp;

static void wcomp_init(wcomp *w, lpe_backend *be, int n) {
    const lpe_dist *d = be->dist;
    memset(w, 0, sizeof *w);
    w->be = be, w->n = n, w->k = d->k;
    const size_t N = (size_t)n, k = (size_t)d->k;
    w->movable = calloc(k, sizeof *w->movable);
    w->MS = 1;
    for (int j = 0; j < d->k; j++) {
        int nj = lpe_dist_support(d, j);
        if (nj > 1) w->movable[w->n_mov++] = j;
        w->MS = nj > w->MS ? nj : w->MS;
    }
    if (w->n_mov == 0) w->movable[w->n_mov++] = 0;
    const size_t MS = (size_t)w->MS;
    w->target = calloc(N, 4), w->beta = calloc(N, 8), w->tilt = calloc(N, 8), w->level = calloc(N, 8);
    w->energy = calloc(N, 1), w->stream = calloc(N, 4), w->index = calloc(N, 8);
    w->tok = calloc(N * k, 4), w->score = calloc(N, 4), w->margin = calloc(N, 4);
    w->hit = calloc(N, 1), w->accept = calloc(N, 1);
    w->prop = calloc(N * k, 4), w->pos = calloc(N, 4), w->yloc = calloc(N, 4);
    w->xloc = calloc(N, 4), w->argmax = calloc(N, 4);
    w->sc = calloc(N * MS, 4), w->tl = calloc(N, 4), w->mg = calloc(N, 4);
    w->lphi_fwd = calloc(N, 8), w->cdf = calloc(N * MS, 8);
}

static void wcomp_free(wcomp *w) {
    void *p[] = {w->movable, w->target, w->beta, w->tilt, w->level, w->energy, w->stream,
                 w->index, w->tok, w->score, w->margin, w->hit, w->accept, w->prop, w->pos,
                 w->yloc, w->xloc, w->argmax, w->sc, w->tl, w->mg, w->lphi_fwd, w->cdf};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
}

static void wcomp_eval(wcomp *w) {
    lpe_backend *be = w->be;
    be->load_tokens(be, w->tok, w->n);
    lpe_fwd_out fo = {.argmax = w->argmax, .target_logit = w->score, .margin = w->margin};
    be->forward(be, &fo, w->target, w->n, 1);
    memset(w->accept, 1, (size_t)w->n);
    be->commit_state(be, w->accept, w->n);
    for (int q = 0; q < w->n; q++) w->hit[q] = w->argmax[q] == w->target[q];
}

static void wcomp_propose(wcomp *w, int n, uint64_t seed, long long st) {
    const lpe_dist *d = w->be->dist;
    const int k = w->k, MS = w->MS, V = d->d_vocab;
    for (int q = 0; q < n; q++) {
        uint32_t r[4];
        lpe_rng4(r, seed, w->stream[q], w->index[q], (uint32_t)(2 * st));
        w->pos[q] = w->movable[lpe_below(r[0], (uint32_t)w->n_mov)];
        w->lphi_fwd[q] = lpe_u01_53(r[1], r[2]);
    }
    w->be->scores_at(w->be, w->sc, MS, w->pos, LPE_BUF_STATE, n);
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

static int wcomp_accept(wcomp *w, int n, uint64_t seed, long long st) {
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
        const double de = lpe_walker_energy(w->energy[q], w->tl[q], w->mg[q]) -
                          lpe_walker_energy(w->energy[q], w->score[q], w->margin[q]);
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

static int wcomp_step(wcomp *w, int rows, uint64_t seed, long long st) {
    lpe_backend *be = w->be;
    if (rows == 0) return 0;
    wcomp_propose(w, rows, seed, st);
    be->load_tokens(be, w->prop, rows);
    lpe_fwd_out fo = {.argmax = w->argmax, .target_logit = w->tl, .margin = w->mg};
    be->forward(be, &fo, w->target, rows, 1);
    be->scores_at(be, w->sc, w->MS, w->pos, LPE_BUF_BATCH, rows);
    int n_acc = wcomp_accept(w, rows, seed, st);
    be->commit_state(be, w->accept, rows);
    return n_acc;
}

#endif
