/* cuda_walkers.cu: the CUDA backend's walker operations (backend.h, issue 10), the contracts of
 * src/cpu/cpu_walkers.c (the reference) with every per-walker number on the device.
 *
 * Dimension legend: Bm = max_batch, B = rows of a step, k positions, D = d_model, MS = largest
 *   support of the distribution in use, NS its support entries, NF its factors, n = support of
 *   one row's chosen position, T = CUDA_SCORE_TILE, P = THREADS per block.
 *
 * One step (walkers_step), all on the default stream, no host synchronisation:
 *   k_choose     thread per row: Philox (seed, stream, index, 2 step) -> position, uniform;
 *   scores       g_j(y) of the state gradient at the chosen positions: the rows' gradient rows
 *                gathered into sc_grad [B, D], then per factor used by a movable position and
 *                per tile of its support one sgemm sc_grad @ W_E[S_f]^T (cuda_scores.cu's
 *                layout, support ids from the device copy of the distribution) and k_place
 *                keeps the rows whose position is of that factor. Every row is multiplied by
 *                every used factor's support: NF-fold work when positions differ in factor, in
 *                exchange for no host round trip (the CPU groups rows by factor on the host);
 *   k_propose    block per row: the tilted law over the support in float64 (tilted.h's maths:
 *                max, then sums of exp; here per-thread contiguous chunks whose sums thread 0
 *                adds in order), the pick u < cdf[y], the current token's local index, log
 *                phi(y | x), the proposal tokens into the batch and the targets;
 *   forward, epilogue, backward of the proposals (cuda_forward.cu ...);
 *   scores       as above, of the batch gradient (the reverse proposal);
 *   k_decide     block per row: log phi(x_j | x'), the energy difference, the Metropolis test
 *                with Philox (.., 2 step + 1), the level; accepted rows take the proposal's
 *                score, margin and hit; a non-finite proposal is flagged (bad);
 *   k_commit     accepted rows' tokens and gradient into the state.
 * The float64 sums differ from the CPU's sequential ones in rounding only (last bits), so a
 * decision or a pick can differ from the CPU's only where a uniform falls within ~1e-15 of a
 * threshold: the documented near-ties of tests/c/test_cuda_backend.c.
 *
 * Non-finite logits: forward fails at once naming the row; a step cannot (that needs a host
 * sync), so k_decide flags the row and walkers_read / walkers_stats fail naming it.
 *
 * Memory, one device allocation per lifetime class (made on first use, not in batch_bytes, as
 * use_dist's tables): rows (settings, results, statistics, step scratch [Bm]; the snapshot
 * [Bm, k] on the device and in pinned host memory) and dist (log p [NS], movable positions [k],
 * scores sc [Bm, MS]).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "lpe/common.h"
#include "lpe/size_table.h"
#include "lpe/tilted.h"

#define THREADS 256
#define ALIGN 256
#define ADD(p, count) LPE_SLOT(t, nt, p, count)

/* per-row device arrays, passed to the kernels by value */
typedef struct {
    int32_t *target;  /* [Bm] */
    double *beta;     /* [Bm] */
    uint8_t *energy;  /* [Bm] */
    double *tilt;     /* [Bm] */
    double *level;    /* [Bm] */
    uint32_t *stream; /* [Bm] */
    uint64_t *index;  /* [Bm] */
    float *score, *margin; /* [Bm] of the state */
    uint8_t *hit, *accept; /* [Bm] */
    int32_t *bad;     /* [Bm] a proposal's logits were not finite */
    lpe_walker_stats *stats; /* [Bm] */
    int32_t *pos, *yloc, *xloc, *grow; /* [Bm] position, local y and x, gradient row q k + j */
    double *u, *lphi; /* [Bm] the proposal's uniform; log phi(y | x) */
    float *sc;        /* [Bm, MS] scores of the chosen position (dist lifetime) */
    int MS;
} walk_rows;

typedef struct cuda_walk {
    int n; /* rows set */
    walk_rows r;
    void *rmem, *dmem; /* device: rows, dist lifetimes */
    uint8_t *gtmp;     /* device [Bm, sizeof(lpe_walker_stats)] gather scratch */
    int32_t *snap_tok; /* device [Bm, k] */
    float *snap_score; /* device [Bm] */
    uint8_t *snap_accept; /* device [Bm] */
    void *hmem;        /* pinned host: the snapshot's copies */
    int32_t *h_tok;    /* host [Bm, k] */
    float *h_score;    /* host [Bm] */
    uint8_t *h_accept; /* host [Bm] */
    int32_t *h_bad;    /* host [Bm] */
    cudaStream_t copy; /* non-blocking: snapshot copies overlap the next steps */
    cudaEvent_t ev_state, ev_copy;
    int snap_rows, snap_pending;
    /* dist lifetime */
    const lpe_dist *d;
    char sha[65];
    double *log_probs; /* device [NS] */
    int32_t *movable;  /* device [k] */
    int n_mov;
    int *h_used;       /* host [NF] factor of a movable position */
} cuda_walk;

/* ---- kernels ------------------------------------------------------------------------------- */

/* thread per row: position and proposal uniform from (seed, stream, index, sub) */
__global__ static void k_choose(walk_rows r, const int32_t *movable, int n_mov, uint64_t seed,
                                uint32_t sub, int B, int k) {
    for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < B; q += gridDim.x * blockDim.x) {
        uint32_t w[4];
        lpe_rng4(w, seed, r.stream[q], r.index[q], sub);
        const int j = movable[lpe_below(w[0], (uint32_t)n_mov)];
        r.pos[q] = j;
        r.u[q] = lpe_u01_53(w[1], w[2]);
        r.grow[q] = q * k + j;
    }
}

/* sc[q, s0 + i] = prod[q, i] (row stride T) for rows q whose position is of factor f */
__global__ static void k_place(walk_rows r, const float *prod, const int32_t *positions, int f,
                               int s0, int nt, int B) {
    const size_t total = (size_t)B * nt;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const int q = (int)(i / nt), e = (int)(i % nt);
        if (positions[r.pos[q]] == f) r.sc[(size_t)q * r.MS + s0 + e] = prod[(size_t)q * CUDA_SCORE_TILE + e];
    }
}

/* The block's tilted sums over e_y = log p(y) + g(y) tilt, y < n: thread t owns the contiguous
 * chunk [lo, hi); *mx = max_y e_y, *S = sum_y exp(e_y - mx) (chunk sums added in order by
 * thread 0), *ex = the sum over the chunks before t's. Every thread must call it (barriers). */
__device__ static void tilted_sums(double *mx, double *S, double *ex, int *lo, int *hi,
                                   const double *lp, const float *g, double tilt, int n,
                                   double *s_a /* [P] shared */, double *s_tot /* shared */) {
    const int t = threadIdx.x, C = (n + THREADS - 1) / THREADS;
    *lo = t * C < n ? t * C : n;
    *hi = *lo + C < n ? *lo + C : n;
    double m = -INFINITY;
    for (int y = *lo; y < *hi; y++) m = fmax(m, lp[y] + (double)g[y] * tilt);
    s_a[t] = m;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (t < s) s_a[t] = fmax(s_a[t], s_a[t + s]);
        __syncthreads();
    }
    *mx = s_a[0];
    __syncthreads();
    double cs = 0;
    for (int y = *lo; y < *hi; y++) cs += exp(lp[y] + (double)g[y] * tilt - *mx);
    s_a[t] = cs;
    __syncthreads();
    if (t == 0) { /* exclusive prefix of the chunk sums, in order (as a sequential sum) */
        double acc = 0;
        for (int i = 0; i < THREADS; i++) {
            const double v = s_a[i];
            s_a[i] = acc;
            acc += v;
        }
        *s_tot = acc;
    }
    __syncthreads();
    *ex = s_a[t];
    *S = *s_tot;
    __syncthreads(); /* s_a is free again */
}

/* block per row: the tilted pick, x's local index, log phi(y | x); the proposal into tok */
__global__ static void k_propose(int32_t *tok /* [B, k] */, int32_t *targets /* [B] */,
                                 walk_rows r, const int32_t *state_tok /* [B, k] */,
                                 const double *log_probs, const int32_t *values,
                                 const int64_t *offsets, const int32_t *positions, int k) {
    __shared__ double s_a[THREADS], s_tot;
    __shared__ int s_y[THREADS], s_x;
    const int q = blockIdx.x, t = threadIdx.x, j = r.pos[q], f = positions[j];
    const int64_t off = offsets[f];
    const int n = (int)(offsets[f + 1] - off);
    const double *lp = log_probs + off, tilt = r.tilt[q]; /* [n] */
    const float *g = r.sc + (size_t)q * r.MS;             /* [n] */
    const int32_t xt = state_tok[(size_t)q * k + j];
    if (t == 0) s_x = 0;
    double mx, S, run;
    int lo, hi, cand = n;
    tilted_sums(&mx, &S, &run, &lo, &hi, lp, g, tilt, n, s_a, &s_tot);
    const double u = r.u[q];
    for (int y = lo; y < hi; y++) {
        run += exp(lp[y] + (double)g[y] * tilt - mx);
        const double cdf = y == n - 1 ? 1.0 : run / S; /* tilted.h: no gap above the last */
        if (u < cdf) {
            cand = y;
            break;
        }
    }
    for (int y = lo; y < hi; y++)
        if (values[off + y] == xt) s_x = y; /* one writer: the ids of a support are distinct */
    s_y[t] = cand;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) { /* the first y with u < cdf[y] */
        if (t < s && s_y[t + s] < s_y[t]) s_y[t] = s_y[t + s];
        __syncthreads();
    }
    const int y = s_y[0] < n ? s_y[0] : n - 1;
    if (t == 0) {
        r.yloc[q] = y;
        r.xloc[q] = s_x;
        r.lphi[q] = lpe_tilted_logq(lp[y], g[y], tilt, mx + log(S));
        targets[q] = r.target[q];
    }
    for (int i = t; i < k; i += THREADS)
        tok[(size_t)q * k + i] = i == j ? values[off + y] : state_tok[(size_t)q * k + i];
}

/* block per row: reverse proposal from the batch scores, the Metropolis test, the level */
__global__ static void k_decide(walk_rows r, const float *tl, const float *mg, const int32_t *am,
                                const int32_t *o_bad, const double *log_probs,
                                const int64_t *offsets, const int32_t *positions, uint64_t seed,
                                uint32_t sub) {
    __shared__ double s_a[THREADS], s_tot;
    const int q = blockIdx.x, f = positions[r.pos[q]];
    const int64_t off = offsets[f];
    const int n = (int)(offsets[f + 1] - off);
    const double *lp = log_probs + off, tilt = r.tilt[q]; /* [n] */
    const float *g = r.sc + (size_t)q * r.MS;             /* [n] */
    double mx, S, ex;
    int lo, hi;
    tilted_sums(&mx, &S, &ex, &lo, &hi, lp, g, tilt, n, s_a, &s_tot);
    if (threadIdx.x != 0) return; /* after the last barrier */
    const int x = r.xloc[q], y = r.yloc[q], e = r.energy[q];
    const double lphi_rev = lpe_tilted_logq(lp[x], g[x], tilt, mx + log(S));
    const double de = lpe_walker_energy(e, tl[q], mg[q]) - lpe_walker_energy(e, r.score[q], r.margin[q]);
    const double log_ratio = de * r.beta[q] + lp[y] - lp[x] + lphi_rev - r.lphi[q];
    uint32_t w[4];
    lpe_rng4(w, seed, r.stream[q], r.index[q], sub);
    const double u = lpe_u01_53(w[0], w[1]);
    const uint8_t acc = mg[q] > r.level[q] && log(u) < log_ratio;
    r.accept[q] = acc;
    r.bad[q] |= o_bad[q];
    if (!acc) return;
    r.score[q] = tl[q];
    r.margin[q] = mg[q];
    r.hit[q] = am[q] == r.target[q];
}

/* rows b with flag[b] (all rows when flag is NULL): dst row = src row (width w) */
template <typename T>
__global__ static void k_commit(T *dst, const T *src, const uint8_t *flag, int B, size_t w) {
    const size_t total = (size_t)B * w;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        if (!flag || flag[i / w]) dst[i] = src[i];
}

/* thread per row: new chains' results from the epilogue; statistics reset */
__global__ static void k_init_rows(walk_rows r, const float *tl, const float *mg, const int32_t *am,
                                   int B) {
    for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < B; q += gridDim.x * blockDim.x) {
        r.score[q] = tl[q], r.margin[q] = mg[q];
        r.hit[q] = am[q] == r.target[q];
        r.accept[q] = 1, r.bad[q] = 0;
        lpe_walker_stats_reset(&r.stats[q]);
    }
}

__global__ static void k_accum(walk_rows r, int first, int B) {
    for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < B; q += gridDim.x * blockDim.x)
        lpe_walker_stats_add(&r.stats[q], r.score[q], r.hit[q], r.accept[q], r.beta[q], first);
}

/* dst row b = a row src[b] of `size` bytes */
__global__ static void k_gather_bytes(uint8_t *dst, const uint8_t *a, const int32_t *src, int B,
                                      size_t size) {
    const size_t total = (size_t)B * size;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = a[(size_t)src[i / size] * size + i % size];
}

/* ---- memory -------------------------------------------------------------------------------- */

static int rows_table(lpe_slot *t, cuda_walk *w, size_t Bm, size_t k) {
    int nt = 0;
    walk_rows *r = &w->r;
    ADD(r->target, Bm), ADD(r->beta, Bm), ADD(r->energy, Bm), ADD(r->tilt, Bm);
    ADD(r->level, Bm), ADD(r->stream, Bm), ADD(r->index, Bm);
    ADD(r->score, Bm), ADD(r->margin, Bm), ADD(r->hit, Bm), ADD(r->accept, Bm), ADD(r->bad, Bm);
    ADD(r->stats, Bm);
    ADD(r->pos, Bm), ADD(r->yloc, Bm), ADD(r->xloc, Bm), ADD(r->grow, Bm);
    ADD(r->u, Bm), ADD(r->lphi, Bm);
    ADD(w->gtmp, Bm * sizeof(lpe_walker_stats));
    ADD(w->snap_tok, Bm * k), ADD(w->snap_score, Bm), ADD(w->snap_accept, Bm);
    return nt;
}

static int host_table(lpe_slot *t, cuda_walk *w, size_t Bm, size_t k) {
    int nt = 0;
    ADD(w->h_tok, Bm * k), ADD(w->h_score, Bm), ADD(w->h_accept, Bm);
    return nt;
}

static int dist_table(lpe_slot *t, cuda_walk *w, size_t Bm, size_t k, size_t NS) {
    int nt = 0;
    ADD(w->log_probs, NS), ADD(w->movable, k), ADD(w->r.sc, Bm * (size_t)w->r.MS);
    return nt;
}

static void *dev_table(lpe_slot *t, int n) {
    size_t bytes = lpe_carve(t, n, NULL, ALIGN);
    char *base = NULL;
    CU_CHECK(cudaMalloc((void **)&base, bytes));
    CU_CHECK(cudaMemset(base, 0, bytes));
    lpe_carve(t, n, base, ALIGN);
    return base;
}

static void make_rows(cuda_impl *c) {
    cuda_walk *w = (cuda_walk *)lpe_calloc(1, sizeof *w);
    lpe_slot t[32];
    w->rmem = dev_table(t, rows_table(t, w, (size_t)c->Bm, (size_t)c->k));
    int nt = host_table(t, w, (size_t)c->Bm, (size_t)c->k);
    char *h = NULL;
    CU_CHECK(cudaHostAlloc((void **)&h, lpe_carve(t, nt, NULL, ALIGN), cudaHostAllocDefault));
    lpe_carve(t, nt, h, ALIGN);
    w->hmem = h;
    w->h_bad = (int32_t *)lpe_calloc((size_t)c->Bm, sizeof *w->h_bad);
    CU_CHECK(cudaStreamCreateWithFlags(&w->copy, cudaStreamNonBlocking));
    CU_CHECK(cudaEventCreateWithFlags(&w->ev_state, cudaEventDisableTiming));
    CU_CHECK(cudaEventCreateWithFlags(&w->ev_copy, cudaEventDisableTiming));
    c->walk = w;
}

/* the dist lifetime for c->d: log p, movable positions, the factors they use, the score table */
static void make_dist(cuda_impl *c, cuda_walk *w) {
    const lpe_dist *d = c->d;
    if (w->dmem) CU_CHECK(cudaFree(w->dmem));
    free(w->h_used);
    w->r.MS = 1;
    for (int j = 0; j < d->k; j++) w->r.MS = lpe_dist_support(d, j) > w->r.MS ? lpe_dist_support(d, j) : w->r.MS;
    const size_t NS = (size_t)d->offsets[d->n_factors];
    lpe_slot t[4];
    w->dmem = dev_table(t, dist_table(t, w, (size_t)c->Bm, (size_t)c->k, NS));
    int *mov = (int *)lpe_calloc((size_t)d->k, sizeof *mov);
    w->h_used = (int *)lpe_calloc((size_t)d->n_factors, sizeof *w->h_used);
    w->n_mov = 0;
    for (int j = 0; j < d->k; j++)
        if (lpe_dist_support(d, j) > 1) mov[w->n_mov++] = j;
    if (w->n_mov == 0) mov[w->n_mov++] = 0; /* one input: every proposal repeats it */
    for (int i = 0; i < w->n_mov; i++) w->h_used[d->positions[mov[i]]] = 1;
    int32_t *m32 = (int32_t *)lpe_calloc((size_t)d->k, sizeof *m32);
    for (int i = 0; i < w->n_mov; i++) m32[i] = mov[i];
    CU_CHECK(cudaMemcpy(w->movable, m32, (size_t)d->k * sizeof *m32, cudaMemcpyHostToDevice));
    CU_CHECK(cudaMemcpy(w->log_probs, d->log_probs, NS * sizeof(double), cudaMemcpyHostToDevice));
    free(mov), free(m32);
    w->d = d;
    snprintf(w->sha, sizeof w->sha, "%s", d->sha256);
}

static cuda_walk *walk_of(lpe_backend *be, const char *op) {
    cuda_impl *c = (cuda_impl *)be->impl;
    if (!c->keep || !c->state_tok)
        lpe_fail("cuda backend %s: walkers need a backend with LPE_BE_GRAD | LPE_BE_STATE", op);
    if (!c->d) lpe_fail("cuda backend %s: no distribution (use_dist) given", op);
    if (!c->walk) make_rows(c);
    cuda_walk *w = c->walk;
    if (w->d != c->d || strcmp(w->sha, c->d->sha256) != 0) make_dist(c, w);
    return w;
}

static void check_n(const cuda_impl *c, const cuda_walk *w, int rows, const char *op) {
    if (rows < 1 || rows > w->n)
        lpe_fail("cuda backend %s: %d rows, %d walker rows are set (backend rows %d)", op, rows,
                 w->n, c->Bm);
}

/* a row flagged by k_decide fails here, as forward would have at once */
static void check_bad(cuda_impl *c, cuda_walk *w, int rows) {
    CU_CHECK(cudaMemcpy(w->h_bad, w->r.bad, (size_t)rows * sizeof *w->h_bad, cudaMemcpyDeviceToHost));
    for (int q = 0; q < rows; q++)
        if (w->h_bad[q])
            lpe_fail("walkers: the logits of a proposal of walker row %d were not finite (NaN or "
                     "inf in the model's activations)", q);
}

/* ---- operations ---------------------------------------------------------------------------- */

/* scores of the chosen positions from grad [B, k, D] (the state's or the batch's) into r.sc */
static void walk_scores(cuda_impl *c, cuda_walk *w, const float *grad, int B) {
    const lpe_dist *d = w->d;
    const int D = c->D;
    cuda_gather_rows(c->sc_grad, grad, w->r.grow, B, D); /* [B, D] */
    for (int f = 0; f < d->n_factors; f++) {
        if (!w->h_used[f]) continue;
        const int64_t off = d->offsets[f];
        const int nf = (int)(d->offsets[f + 1] - off);
        for (int s0 = 0; s0 < nf; s0 += CUDA_SCORE_TILE) {
            const int nt = nf - s0 < CUDA_SCORE_TILE ? nf - s0 : CUDA_SCORE_TILE;
            const int32_t *vals = d->values + off + s0; /* [nt] host, for the check only */
            int consecutive = 1;
            for (int i = 1; i < nt && consecutive; i++) consecutive = vals[i] == vals[0] + i;
            const float *W = c->w->W_E + (size_t)vals[0] * D; /* [nt, D] device */
            if (!consecutive) {
                cuda_gather_rows(c->sc_emb, c->w->W_E, c->d_values + off + s0, nt, D);
                W = c->sc_emb;
            }
            cuda_gemm(c->blas, c->sc_prod, CUDA_SCORE_TILE, c->sc_grad, D, W, D, B, nt, D, 1, 0.0f);
            k_place<<<cuda_blocks((size_t)B * nt, THREADS), THREADS>>>(w->r, c->sc_prod,
                                                                       c->d_positions, f, s0, nt, B);
            CU_LAUNCH_CHECK();
        }
    }
}

static void commit(cuda_impl *c, const uint8_t *flag, int B) {
    const size_t k = (size_t)c->k, kD = k * c->D;
    k_commit<int32_t><<<cuda_blocks(B * k, THREADS), THREADS>>>(c->state_tok, c->tok, flag, B, k);
    CU_LAUNCH_CHECK();
    k_commit<float><<<cuda_blocks(B * kD, THREADS), THREADS>>>(c->state_grad, c->grad, flag, B, kD);
    CU_LAUNCH_CHECK();
}

static void up(void *dst, const void *src, size_t bytes) {
    CU_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

static void op_walkers_set(lpe_backend *be, const lpe_walker_rows *r, int n) {
    cuda_impl *c = (cuda_impl *)be->impl;
    cuda_walk *w = walk_of(be, "walkers_set");
    if (n < 1 || n > c->Bm) lpe_fail("cuda backend walkers_set: %d rows, the backend holds 1..%d", n, c->Bm);
    for (int q = 0; q < n; q++)
        if (r->target[q] < 0 || r->target[q] >= c->V)
            lpe_fail_input("walker row %d: target token %d is outside the vocabulary [0, %d)", q,
                           (int)r->target[q], c->V);
    if (!r->tok && n > w->n) lpe_fail("cuda backend walkers_set: settings of %d rows, %d have states", n, w->n);
    const size_t N = (size_t)n;
    up(w->r.target, r->target, N * sizeof *r->target), up(w->r.beta, r->beta, N * sizeof *r->beta);
    up(w->r.energy, r->energy, N), up(w->r.tilt, r->tilt, N * sizeof *r->tilt);
    up(w->r.level, r->level, N * sizeof *r->level), up(w->r.stream, r->stream, N * sizeof *r->stream);
    up(w->r.index, r->index, N * sizeof *r->index);
    if (!r->tok) return;
    w->n = n;
    be->load_tokens(be, r->tok, n);
    be->forward(be, NULL, r->target, n, 1); /* fails at once on non-finite logits */
    k_init_rows<<<cuda_blocks(N, THREADS), THREADS>>>(w->r, c->o_target, c->o_margin, c->o_argmax, n);
    CU_LAUNCH_CHECK();
    commit(c, NULL, n);
}

static void op_walkers_step(lpe_backend *be, int B, uint64_t seed, long long st) {
    cuda_impl *c = (cuda_impl *)be->impl;
    cuda_walk *w = walk_of(be, "walkers_step");
    check_n(c, w, B, "walkers_step");
    k_choose<<<cuda_blocks((size_t)B, THREADS), THREADS>>>(w->r, w->movable, w->n_mov, seed,
                                                           (uint32_t)(2 * st), B, c->k);
    CU_LAUNCH_CHECK();
    walk_scores(c, w, c->state_grad, B);
    k_propose<<<B, THREADS>>>(c->tok, c->targets, w->r, c->state_tok, w->log_probs, c->d_values,
                              c->d_offsets, c->d_positions, c->k);
    CU_LAUNCH_CHECK();
    c->grad_valid = 0;
    cuda_forward(c, B, 1);
    c->B_last = B;
    cuda_epilogue(c, B, 1);
    cuda_backward(c, B, be->grad_of);
    c->grad_valid = 1;
    walk_scores(c, w, c->grad, B);
    k_decide<<<B, THREADS>>>(w->r, c->o_target, c->o_margin, c->o_argmax, c->o_bad, w->log_probs,
                             c->d_offsets, c->d_positions, seed, (uint32_t)(2 * st + 1));
    CU_LAUNCH_CHECK();
    commit(c, w->r.accept, B);
}

static void op_walkers_accum(lpe_backend *be, int B, int first) {
    cuda_impl *c = (cuda_impl *)be->impl;
    cuda_walk *w = walk_of(be, "walkers_accum");
    check_n(c, w, B, "walkers_accum");
    k_accum<<<cuda_blocks((size_t)B, THREADS), THREADS>>>(w->r, first, B);
    CU_LAUNCH_CHECK();
}

static void op_walkers_stats(lpe_backend *be, lpe_walker_stats *out, int B) {
    cuda_impl *c = (cuda_impl *)be->impl;
    cuda_walk *w = walk_of(be, "walkers_stats");
    check_n(c, w, B, "walkers_stats");
    check_bad(c, w, B);
    CU_CHECK(cudaMemcpy(out, w->r.stats, (size_t)B * sizeof *out, cudaMemcpyDeviceToHost));
}

static void op_walkers_read(lpe_backend *be, const lpe_walker_view *v, int B) {
    cuda_impl *c = (cuda_impl *)be->impl;
    cuda_walk *w = walk_of(be, "walkers_read");
    check_n(c, w, B, "walkers_read");
    check_bad(c, w, B);
    const size_t N = (size_t)B;
    cudaMemcpyKind dh = cudaMemcpyDeviceToHost;
    if (v->score) CU_CHECK(cudaMemcpy(v->score, w->r.score, N * sizeof(float), dh));
    if (v->margin) CU_CHECK(cudaMemcpy(v->margin, w->r.margin, N * sizeof(float), dh));
    if (v->hit) CU_CHECK(cudaMemcpy(v->hit, w->r.hit, N, dh));
    if (v->accept) CU_CHECK(cudaMemcpy(v->accept, w->r.accept, N, dh));
}

/* device copies on the default stream (ordered after the step), then to pinned host memory on
 * the copy stream, which waits for them by an event only: the next steps run meanwhile */
static void op_walkers_snapshot(lpe_backend *be, int B) {
    cuda_impl *c = (cuda_impl *)be->impl;
    cuda_walk *w = walk_of(be, "walkers_snapshot");
    check_n(c, w, B, "walkers_snapshot");
    if (w->snap_pending) lpe_fail("cuda backend walkers_snapshot: the last snapshot was not taken");
    const size_t tk = (size_t)B * c->k * sizeof(int32_t), N = (size_t)B;
    CU_CHECK(cudaStreamWaitEvent(0, w->ev_copy, 0)); /* the last copy out has read the buffers */
    CU_CHECK(cudaMemcpyAsync(w->snap_tok, c->state_tok, tk, cudaMemcpyDeviceToDevice, 0));
    CU_CHECK(cudaMemcpyAsync(w->snap_score, w->r.score, N * sizeof(float), cudaMemcpyDeviceToDevice, 0));
    CU_CHECK(cudaMemcpyAsync(w->snap_accept, w->r.accept, N, cudaMemcpyDeviceToDevice, 0));
    CU_CHECK(cudaEventRecord(w->ev_state, 0));
    CU_CHECK(cudaStreamWaitEvent(w->copy, w->ev_state, 0));
    CU_CHECK(cudaMemcpyAsync(w->h_tok, w->snap_tok, tk, cudaMemcpyDeviceToHost, w->copy));
    CU_CHECK(cudaMemcpyAsync(w->h_score, w->snap_score, N * sizeof(float), cudaMemcpyDeviceToHost, w->copy));
    CU_CHECK(cudaMemcpyAsync(w->h_accept, w->snap_accept, N, cudaMemcpyDeviceToHost, w->copy));
    CU_CHECK(cudaEventRecord(w->ev_copy, w->copy));
    w->snap_rows = B, w->snap_pending = 1;
}

static void op_walkers_snapshot_get(lpe_backend *be, lpe_walker_snap *out) {
    cuda_walk *w = walk_of(be, "walkers_snapshot_get");
    if (!w->snap_pending) lpe_fail("cuda backend walkers_snapshot_get: no snapshot was started");
    CU_CHECK(cudaEventSynchronize(w->ev_copy));
    out->rows = w->snap_rows, out->tok = w->h_tok, out->score = w->h_score, out->accept = w->h_accept;
    w->snap_pending = 0;
}

static void gather_bytes(cuda_walk *w, void *a, const int32_t *src, int B, size_t size) {
    k_gather_bytes<<<cuda_blocks((size_t)B * size, THREADS), THREADS>>>(w->gtmp, (const uint8_t *)a,
                                                                        src, B, size);
    CU_LAUNCH_CHECK();
    CU_CHECK(cudaMemcpy(a, w->gtmp, (size_t)B * size, cudaMemcpyDeviceToDevice));
}

void cuda_walkers_gather(cuda_impl *c, const int32_t *src, int B) {
    cuda_walk *w = c->walk;
    if (!w) return; /* no walker rows yet: nothing but the state to gather */
    walk_rows *r = &w->r;
    gather_bytes(w, r->target, src, B, sizeof *r->target);
    gather_bytes(w, r->beta, src, B, sizeof *r->beta);
    gather_bytes(w, r->energy, src, B, sizeof *r->energy);
    gather_bytes(w, r->tilt, src, B, sizeof *r->tilt);
    gather_bytes(w, r->level, src, B, sizeof *r->level);
    gather_bytes(w, r->stream, src, B, sizeof *r->stream);
    gather_bytes(w, r->index, src, B, sizeof *r->index);
    gather_bytes(w, r->score, src, B, sizeof *r->score);
    gather_bytes(w, r->margin, src, B, sizeof *r->margin);
    gather_bytes(w, r->hit, src, B, sizeof *r->hit);
    gather_bytes(w, r->accept, src, B, sizeof *r->accept);
    gather_bytes(w, r->bad, src, B, sizeof *r->bad);
    gather_bytes(w, r->stats, src, B, sizeof *r->stats);
    if (B > w->n) w->n = B;
}

void cuda_walkers_free(cuda_impl *c) {
    cuda_walk *w = c->walk;
    if (!w) return;
    CU_CHECK(cudaEventSynchronize(w->ev_copy));
    CU_CHECK(cudaEventDestroy(w->ev_state));
    CU_CHECK(cudaEventDestroy(w->ev_copy));
    CU_CHECK(cudaStreamDestroy(w->copy));
    CU_CHECK(cudaFree(w->rmem));
    if (w->dmem) CU_CHECK(cudaFree(w->dmem));
    CU_CHECK(cudaFreeHost(w->hmem));
    free(w->h_bad), free(w->h_used), free(w);
    c->walk = NULL;
}

void cuda_walkers_install(lpe_backend *be) {
    be->walkers_set = op_walkers_set;
    be->walkers_step = op_walkers_step;
    be->walkers_accum = op_walkers_accum;
    be->walkers_stats = op_walkers_stats;
    be->walkers_read = op_walkers_read;
    be->walkers_snapshot = op_walkers_snapshot;
    be->walkers_snapshot_get = op_walkers_snapshot_get;
}
