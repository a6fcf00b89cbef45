/* walkers.c: Metropolis-Hastings walkers on the backend's walker state (walkers.h).
 * Dimension legend: see walkers.h. */
#include "walkers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/philox.h"

/* The settings arrays of w (host) and their element sizes, in a fixed order. */
enum { N_SETTINGS = 7 };
static void settings_of(const lpe_walkers *w, void **p, size_t *size) {
    void *a[N_SETTINGS] = {w->target, w->beta, w->energy, w->tilt, w->level, w->stream, w->index};
    size_t z[N_SETTINGS] = {sizeof *w->target, sizeof *w->beta, sizeof *w->energy, sizeof *w->tilt,
                            sizeof *w->level, sizeof *w->stream, sizeof *w->index};
    memcpy(p, a, sizeof a);
    memcpy(size, z, sizeof z);
}

void lpe_walkers_init(lpe_walkers *w, lpe_backend *be, int n) {
    const lpe_dist *d = be->dist;
    LPE_ASSERT(d && be->with_grad && be->with_state && n >= 1 && n <= be->max_batch);
    memset(w, 0, sizeof *w);
    w->be = be, w->n = w->cap = n, w->k = d->k, w->mirror = 1;
    const size_t N = (size_t)n, k = (size_t)d->k;
    for (int j = 0; j < d->k; j++) w->n_mov += lpe_dist_support(d, j) > 1;
    if (w->n_mov == 0) w->n_mov = 1; /* one input: every proposal repeats it */
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
    w->gtmp = lpe_calloc(N * (k > 2 ? k : 2), sizeof *w->gtmp); /* also fits one 8-byte array */
    void *p[N_SETTINGS];
    size_t size[N_SETTINGS], row = 0;
    settings_of(w, p, size);
    for (int i = 0; i < N_SETTINGS; i++) row += size[i];
    w->shadow = lpe_calloc(N, row);
    for (int q = 0; q < n; q++) w->level[q] = -INFINITY, w->index[q] = (uint64_t)q;
}

void lpe_walkers_free(lpe_walkers *w) {
    void *p[] = {w->target, w->beta, w->energy, w->tilt, w->level, w->stream, w->index, w->tok,
                 w->score, w->margin, w->hit, w->accept, w->gtmp, w->shadow};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
    memset(w, 0, sizeof *w);
}

/* Compares the settings of rows < n with the shadow (copy = 0) or copies them into it (1);
 * returns 1 when they differ. */
static int shadow_pass(lpe_walkers *w, int n, int copy) {
    void *p[N_SETTINGS];
    size_t size[N_SETTINGS];
    settings_of(w, p, size);
    char *sh = w->shadow;
    int differ = 0;
    for (int i = 0; i < N_SETTINGS; i++) {
        const size_t bytes = (size_t)n * size[i];
        if (copy) memcpy(sh, p[i], bytes);
        else differ = differ || memcmp(sh, p[i], bytes) != 0;
        sh += (size_t)w->cap * size[i];
    }
    return differ;
}

/* The settings of rows < n, and with tok their new states, to the backend. */
static void upload(lpe_walkers *w, int n, const int32_t *tok) {
    const lpe_walker_rows r = {.target = w->target, .beta = w->beta, .energy = w->energy,
                               .tilt = w->tilt, .level = w->level, .stream = w->stream,
                               .index = w->index, .tok = tok};
    w->be->walkers_set(w->be, &r, n);
    shadow_pass(w, n, 1);
    if (tok) w->uploaded = n;
}

void lpe_walkers_sync(lpe_walkers *w) {
    LPE_ASSERT(w->uploaded > 0); /* eval made the states */
    const int n = w->n < w->uploaded ? w->n : w->uploaded;
    if (shadow_pass(w, n, 0)) upload(w, n, NULL);
}

/* The results of rows < n (and with tokens their states) back into the mirror. */
static void read_back(lpe_walkers *w, int n, int tokens) {
    const lpe_walker_view v = {.score = w->score, .margin = w->margin, .hit = w->hit,
                               .accept = w->accept};
    w->be->walkers_read(w->be, &v, n);
    if (tokens) w->be->get_tokens(w->be, w->tok, LPE_BUF_STATE, n);
}

void lpe_walkers_eval(lpe_walkers *w) {
    upload(w, w->n, w->tok);
    read_back(w, w->n, 0);
}

int lpe_walkers_step(lpe_walkers *w, int rows, uint64_t seed, long long st) {
    LPE_ASSERT(rows >= 0 && rows <= w->n && rows <= w->uploaded);
    if (rows == 0) return 0;
    lpe_walkers_sync(w);
    w->be->walkers_step(w->be, rows, seed, st);
    if (!w->mirror) return 0;
    read_back(w, rows, 1);
    int n_acc = 0;
    for (int q = 0; q < rows; q++) n_acc += w->accept[q];
    return n_acc;
}

/* out[q] = in[src[q]] for q < rows, elements of `size` bytes (through the scratch `tmp`) */
static void gather_rows(void *a, void *tmp, const int32_t *src, int rows, size_t size) {
    char *x = a, *t = tmp;
    for (int q = 0; q < rows; q++) memcpy(t + q * size, x + (size_t)src[q] * size, size);
    memcpy(x, t, (size_t)rows * size);
}

/* The backend gathers its rows (state, settings, results); the mirror and the shadow follow. */
void lpe_walkers_gather(lpe_walkers *w, const int32_t *src, int rows) {
    LPE_ASSERT(rows >= 0 && rows <= w->n);
    if (rows == 0) return;
    for (int q = 0; q < rows; q++) LPE_ASSERT(src[q] >= 0 && src[q] < w->uploaded);
    w->be->gather_state(w->be, src, rows);
    void *tmp = w->gtmp;
    gather_rows(w->tok, tmp, src, rows, sizeof(int32_t) * w->k);
    gather_rows(w->score, tmp, src, rows, sizeof *w->score);
    gather_rows(w->margin, tmp, src, rows, sizeof *w->margin);
    gather_rows(w->hit, tmp, src, rows, sizeof *w->hit);
    gather_rows(w->accept, tmp, src, rows, sizeof *w->accept);
    void *p[N_SETTINGS];
    size_t size[N_SETTINGS];
    settings_of(w, p, size);
    char *sh = w->shadow;
    for (int i = 0; i < N_SETTINGS; i++) {
        gather_rows(p[i], tmp, src, rows, size[i]);
        gather_rows(sh, tmp, src, rows, size[i]);
        sh += (size_t)w->cap * size[i];
    }
    if (rows > w->uploaded) w->uploaded = rows;
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
