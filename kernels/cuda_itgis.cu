/* cuda_itgis.cu: the CUDA backend's ITGIS operations (backend.h, "ITGIS operations"; methods.md
 * §4), the algorithm of src/cpu/cpu_itgis.c on the device: nothing per sample crosses the host
 * (the host sends the round's numbers and reads the moments at a chunk's end).
 *
 * Dimension legend: TC targets the tables hold, tc the chunk's, k positions, NS support entries
 *   of the distribution, NF factors, NSP = sum_j n_{f(j)} (position-major), B samples per target
 *   per full round, Br this round's, Bm = max_batch, nr rows of a draw, ng targets (groups) a
 *   draw's rows span, D = d_model, T = CUDA_SCORE_TILE, np (position, group) pairs.
 *
 * Kernels:
 *   k_cdf       one block per (target, position): e_y = log p(y) + S(y) / T_r, block max,
 *               per-thread prefix sums of exp(e - max) over contiguous slices, a scan of the
 *               slice totals (thread 0, in slice order), cdf = prefix / total, log Z. Float64.
 *   k_draw      one thread per row: for each position the Philox draw of the CPU (tilted.h's
 *               binary search in the cdf), the token, and log w summed in position order.
 *   k_moments   one thread per target of the draw: Welford over its rows in row order
 *               (itgis_moments.h), hit = argmax of the epilogue == target.
 *   k_pair_sums sum over a target's rows of the gradient at one position, in float64 (as
 *               scores_sum); then one sgemm with the support's W_E rows and k_add_tile adds the
 *               product tile into G: scores_sum's maths, accumulated on the device.
 *   k_update    S <- beta S + G / Br.
 * Against the CPU the tokens are identical unless a uniform falls within rounding (~n eps64)
 * of a cdf boundary; log-weights, moments and S differ by rounding (other summation orders, FMA
 * contraction, cuBLAS products): the bounds are derived in tests/c/test_cuda_backend.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "lpe/common.h"
#include "lpe/itgis_moments.h"
#include "lpe/philox.h"
#include "lpe/size_table.h"
#include "lpe/tilted.h"

#define THREADS 256

typedef struct cuda_itgis {
    void *mem;          /* device: the one allocation of the tables below */
    const lpe_dist *d;  /* the distribution the tables were made for */
    int TC, tc, B, Br, nr, ngm;
    int64_t NSP;
    uint64_t seed;
    long long r, r0;
    double inv_T;
    /* device */
    int64_t *pos_off;   /* [k + 1] */
    double *S, *G;      /* [TC, NSP] */
    double *cdf;        /* [TC, NSP] */
    double *logZ;       /* [TC, k] */
    double *logw;       /* [Bm] */
    double *log_p;      /* [NS] the distribution's log-probabilities */
    int32_t *targets;   /* [TC] */
    int32_t *fpos;      /* [k] positions grouped by factor (factor f: h_fstart[f] ..) */
    lpe_itgis_moments *mom; /* [TC] */
    /* host */
    int *h_fstart;      /* [NF + 1] */
    int *h_consec;      /* [NF] 1 when factor f's ids are consecutive (W_E rows used in place) */
} cuda_itgis;

/* ---- kernels ------------------------------------------------------------------------------- */

/* block = (target a, position j) */
__global__ static void k_cdf(double *cdf, double *logZ, const double *S, const double *log_p,
                             const int64_t *offsets, const int32_t *positions,
                             const int64_t *pos_off, int64_t NSP, int k, double inv_T) {
    __shared__ double s_red[THREADS], s_mx, s_tot;
    const int a = blockIdx.x / k, j = blockIdx.x % k, tid = threadIdx.x;
    const int f = positions[j], n = (int)(offsets[f + 1] - offsets[f]);
    const int64_t base = (int64_t)a * NSP + pos_off[j];
    double *c = cdf + base;              /* [n] */
    const double *s = S + base;          /* [n] */
    const double *lp = log_p + offsets[f]; /* [n] */
    const int per = (n + THREADS - 1) / THREADS, lo = tid * per, hi = lo + per < n ? lo + per : n;
    double mx = -INFINITY;
    for (int y = lo; y < hi; y++) {
        c[y] = lp[y] + s[y] * inv_T;
        mx = fmax(mx, c[y]);
    }
    s_red[tid] = mx;
    __syncthreads();
    for (int h = THREADS / 2; h > 0; h >>= 1) {
        if (tid < h) s_red[tid] = fmax(s_red[tid], s_red[tid + h]);
        __syncthreads();
    }
    if (tid == 0) s_mx = s_red[0];
    __syncthreads();
    mx = s_mx;
    double sum = 0;
    for (int y = lo; y < hi; y++) {
        sum += exp(c[y] - mx);
        c[y] = sum;
    }
    s_red[tid] = sum;
    __syncthreads();
    if (tid == 0) { /* exclusive scan of the slice totals, in slice order */
        double run = 0;
        for (int t = 0; t < THREADS; t++) {
            double v = s_red[t];
            s_red[t] = run;
            run += v;
        }
        s_tot = run;
        logZ[(int64_t)a * k + j] = mx + log(run);
    }
    __syncthreads();
    const double off = s_red[tid], tot = s_tot;
    for (int y = lo; y < hi; y++) c[y] = (c[y] + off) / tot;
    if (hi == n && lo < hi) c[n - 1] = 1.0; /* no gap above the last entry (tilted.h) */
}

/* thread = row q of the draw: row r0 + q of the round is sample i of target a */
__global__ static void k_draw(int32_t *tok, double *logw, const double *cdf, const double *S,
                              const double *logZ, const int32_t *targets, const int32_t *values,
                              const int64_t *offsets, const int32_t *positions,
                              const int64_t *pos_off, int64_t NSP, int k, uint64_t seed,
                              long long r, int B, int Br, long long r0, int nr, double inv_T) {
    for (int q = blockIdx.x * blockDim.x + threadIdx.x; q < nr; q += gridDim.x * blockDim.x) {
        const int a = (int)((r0 + q) / Br), i = (int)((r0 + q) % Br);
        const double *St = S + (size_t)a * NSP, *ct = cdf + (size_t)a * NSP; /* [NSP] */
        const uint32_t stream = lpe_stream(LPE_STREAM_ITGIS, (uint32_t)targets[a]);
        double lw = 0;
        for (int j = 0; j < k; j++) {
            uint32_t w[4];
            lpe_rng4(w, seed, stream, (uint64_t)(r * B + i), (uint32_t)j);
            const int f = positions[j], nj = (int)(offsets[f + 1] - offsets[f]);
            const int y = lpe_tilted_pick(ct + pos_off[j], nj, lpe_u01_53(w[0], w[1]));
            tok[(size_t)q * k + j] = values[offsets[f] + y];
            lw += logZ[(size_t)a * k + j] - St[pos_off[j] + y] * inv_T;
        }
        logw[q] = lw;
    }
}

/* rows [lo, hi) of the draw (rows r0 .. r0 + nr of the round) that belong to target a */
__device__ static void group_rows(long long *lo, long long *hi, int a, int Br, long long r0,
                                  int nr) {
    const long long l = (long long)a * Br - r0, h = (long long)(a + 1) * Br - r0;
    *lo = l < 0 ? 0 : l;
    *hi = h < nr ? h : nr;
}

/* thread = group g (target a0 + g): its rows of the draw, in row order */
__global__ static void k_moments(lpe_itgis_moments *mom, const double *logw, const int32_t *argmax,
                                 const int32_t *targets, long long r0, int nr, int Br, int a0,
                                 int ng) {
    const int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= ng) return;
    const int a = a0 + g;
    long long lo, hi;
    group_rows(&lo, &hi, a, Br, r0, nr);
    lpe_itgis_moments m = mom[a];
    for (long long q = lo; q < hi; q++) {
        const double w = exp(logw[q]);
        const int hit = argmax[q] == targets[a];
        lpe_itgis_moments_add(&m, hit ? w : 0.0, w, hit);
    }
    mom[a] = m;
}

/* pair p of a factor's (position, group) pairs, position-major: position j = fpos[p / ng],
 * group g = p % ng (target a0 + g); k_pair_sums and k_add_tile must agree on it */
__device__ static void pair_of(int *j, int *g, const int32_t *fpos, long long p, int ng) {
    *j = fpos[p / ng];
    *g = (int)(p % ng);
}

/* sc_grad[i, :] = sum over the rows of group g of grad[row, j, :] (float64), (j, g) = pair
 * p0 + i (pair_of). thread = (i, e) */
__global__ static void k_pair_sums(float *sc_grad, const float *grad, const int32_t *fpos,
                                   long long p0, int np, int ng, int a0, long long r0, int nr,
                                   int Br, int k, int D) {
    size_t total = (size_t)np * D;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(t / D), e = (int)(t % D);
        int j, g;
        pair_of(&j, &g, fpos, p0 + i, ng);
        long long lo, hi;
        group_rows(&lo, &hi, a0 + g, Br, r0, nr);
        double acc = 0;
        for (long long b = lo; b < hi; b++) acc += grad[((size_t)b * k + j) * D + e];
        sc_grad[t] = (float)acc;
    }
}

/* G[a0 + g, pos_off[j] + s0 + u] += prod[i, u] for pair p0 + i. thread = (i, u) */
__global__ static void k_add_tile(double *G, const float *prod, const int32_t *fpos,
                                  const int64_t *pos_off, long long p0, int np, int ng, int a0,
                                  int64_t NSP, int s0, int nt) {
    size_t total = (size_t)np * nt;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(t / nt), u = (int)(t % nt);
        int j, g;
        pair_of(&j, &g, fpos, p0 + i, ng);
        G[(size_t)(a0 + g) * NSP + pos_off[j] + s0 + u] += prod[(size_t)i * CUDA_SCORE_TILE + u];
    }
}

/* S <- beta S + G / Br, rounded as the CPU's (no contraction into an FMA) */
__global__ static void k_update(double *S, const double *G, size_t n, double beta, int Br) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        S[i] = __dadd_rn(__dmul_rn(beta, S[i]), G[i] / Br);
}

/* ---- operations ---------------------------------------------------------------------------- */

static cuda_itgis *tables_of(lpe_backend *be, const char *op) {
    cuda_impl *c = (cuda_impl *)be->impl;
    if (!c->itgis) lpe_fail("cuda backend %s: no ITGIS tables (itgis_tables first)", op);
    if (c->itgis->d != c->d) lpe_fail("cuda backend %s: the distribution changed since itgis_tables", op);
    return c->itgis;
}

void cuda_itgis_free(cuda_impl *c) {
    if (!c->itgis) return;
    CU_CHECK(cudaFree(c->itgis->mem));
    free(c->itgis->h_fstart);
    free(c->itgis->h_consec);
    free(c->itgis);
    c->itgis = NULL;
}

/* host-side factor tables: positions grouped by factor, consecutive supports */
static void factor_tables(cuda_itgis *s, int32_t *h_fpos, const lpe_dist *d) {
    const int NF = d->n_factors;
    s->h_fstart = (int *)lpe_calloc((size_t)NF + 1, sizeof(int));
    s->h_consec = (int *)lpe_calloc((size_t)NF, sizeof(int));
    int n = 0;
    for (int f = 0; f < NF; f++) {
        s->h_fstart[f] = n;
        for (int j = 0; j < d->k; j++)
            if (d->positions[j] == f) h_fpos[n++] = j;
        const int32_t *v = d->values + d->offsets[f];
        int consec = 1;
        for (int64_t y = 1; y < d->offsets[f + 1] - d->offsets[f] && consec; y++)
            consec = v[y] == v[0] + y;
        s->h_consec[f] = consec;
    }
    s->h_fstart[NF] = n;
}

static void op_tables(lpe_backend *be, int TC) {
    cuda_impl *c = (cuda_impl *)be->impl;
    cuda_itgis_free(c);
    if (TC <= 0) return;
    const lpe_dist *d = c->d;
    if (!d) lpe_fail("cuda backend itgis_tables: no distribution (use_dist) given");
    if (!c->keep) lpe_fail("cuda backend itgis_tables: the workspace has no gradient (LPE_BE_GRAD)");
    cuda_itgis *s = (cuda_itgis *)lpe_calloc(1, sizeof *s);
    s->d = d, s->TC = TC, s->ngm = TC < c->Bm ? TC : c->Bm;
    int64_t *h_pos = (int64_t *)lpe_calloc((size_t)c->k + 1, sizeof(int64_t));
    for (int j = 0; j < c->k; j++) h_pos[j + 1] = h_pos[j] + lpe_dist_support(d, j);
    const int64_t NSP = s->NSP = h_pos[c->k];
    const size_t T = (size_t)TC, NS = (size_t)d->offsets[d->n_factors];
    lpe_slot t[16];
    int n = 0; /* 8-byte arrays first: every slot keeps cudaMalloc's alignment anyway (256) */
    LPE_SLOT(t, n, s->pos_off, (size_t)c->k + 1);
    LPE_SLOT(t, n, s->S, T * NSP);
    LPE_SLOT(t, n, s->G, T * NSP);
    LPE_SLOT(t, n, s->cdf, T * NSP);
    LPE_SLOT(t, n, s->logZ, T * c->k);
    LPE_SLOT(t, n, s->logw, c->Bm);
    LPE_SLOT(t, n, s->log_p, NS);
    LPE_SLOT(t, n, s->mom, T);
    LPE_SLOT(t, n, s->targets, T);
    LPE_SLOT(t, n, s->fpos, c->k);
    char *base = NULL;
    CU_CHECK(cudaMalloc((void **)&base, lpe_carve(t, n, NULL, 256)));
    lpe_carve(t, n, base, 256);
    s->mem = base;
    int32_t *h_fpos = (int32_t *)lpe_calloc((size_t)c->k, sizeof(int32_t));
    factor_tables(s, h_fpos, d);
    CU_CHECK(cudaMemcpy(s->pos_off, h_pos, ((size_t)c->k + 1) * sizeof *h_pos, cudaMemcpyHostToDevice));
    CU_CHECK(cudaMemcpy(s->log_p, d->log_probs, NS * sizeof(double), cudaMemcpyHostToDevice));
    CU_CHECK(cudaMemcpy(s->fpos, h_fpos, (size_t)c->k * sizeof *h_fpos, cudaMemcpyHostToDevice));
    free(h_pos);
    free(h_fpos);
    c->itgis = s;
}

static void op_reset(lpe_backend *be, const int32_t *targets, int tc, uint64_t seed, int B) {
    cuda_itgis *s = tables_of(be, "itgis_reset");
    if (tc < 1 || tc > s->TC || B < 1)
        lpe_fail("cuda backend itgis_reset: %d targets (tables for %d), B = %d", tc, s->TC, B);
    CU_CHECK(cudaMemcpy(s->targets, targets, (size_t)tc * sizeof *targets, cudaMemcpyHostToDevice));
    CU_CHECK(cudaMemset(s->S, 0, (size_t)tc * s->NSP * sizeof *s->S));
    CU_CHECK(cudaMemset(s->mom, 0, (size_t)tc * sizeof *s->mom));
    s->tc = tc, s->seed = seed, s->B = B, s->Br = 0, s->nr = 0;
}

static void op_round(lpe_backend *be, long long r, int Br, double inv_T) {
    cuda_impl *c = (cuda_impl *)be->impl;
    cuda_itgis *s = tables_of(be, "itgis_round");
    if (Br < 1 || Br > s->B || s->tc < 1 || r < 0)
        lpe_fail("cuda backend itgis_round: round %lld of %d samples (B = %d, %d targets)", r, Br,
                 s->B, s->tc);
    k_cdf<<<s->tc * c->k, THREADS>>>(s->cdf, s->logZ, s->S, s->log_p, c->d_offsets,
                                     c->d_positions, s->pos_off, s->NSP, c->k, inv_T);
    CU_LAUNCH_CHECK();
    CU_CHECK(cudaMemset(s->G, 0, (size_t)s->tc * s->NSP * sizeof *s->G));
    s->r = r, s->Br = Br, s->inv_T = inv_T, s->nr = 0;
}

static void op_draw(lpe_backend *be, long long r0, int nr) {
    cuda_impl *c = (cuda_impl *)be->impl;
    cuda_itgis *s = tables_of(be, "itgis_draw");
    if (s->Br < 1 || nr < 1 || nr > c->Bm || r0 < 0 || r0 + nr > (long long)s->tc * s->Br)
        lpe_fail("cuda backend itgis_draw: rows [%lld, %lld) of a round of %d x %d (batch %d)",
                 r0, r0 + nr, s->tc, s->Br, c->Bm);
    k_draw<<<cuda_blocks((size_t)nr, 128), 128>>>(c->tok, s->logw, s->cdf, s->S, s->logZ,
                                                  s->targets, c->d_values, c->d_offsets,
                                                  c->d_positions, s->pos_off, s->NSP, c->k,
                                                  s->seed, s->r, s->B, s->Br, r0, nr, s->inv_T);
    CU_LAUNCH_CHECK();
    s->r0 = r0, s->nr = nr;
}

/* G += the gradient scores of the draw's rows, per target: factor by factor, Bm pairs at a time */
static void accumulate_G(cuda_impl *c, cuda_itgis *s, int a0, int ng) {
    const lpe_dist *d = s->d;
    for (int f = 0; f < d->n_factors; f++) {
        const int32_t *fpos = s->fpos + s->h_fstart[f]; /* [nj] device */
        const long long npairs = (long long)(s->h_fstart[f + 1] - s->h_fstart[f]) * ng;
        const int nf = (int)(d->offsets[f + 1] - d->offsets[f]);
        for (long long p0 = 0; p0 < npairs; p0 += c->Bm) {
            const int np = (int)(npairs - p0 < c->Bm ? npairs - p0 : c->Bm);
            k_pair_sums<<<cuda_blocks((size_t)np * c->D, THREADS), THREADS>>>(
                c->sc_grad, c->grad, fpos, p0, np, ng, a0, s->r0, s->nr, s->Br, c->k, c->D);
            CU_LAUNCH_CHECK();
            for (int s0 = 0; s0 < nf; s0 += CUDA_SCORE_TILE) {
                const int nt = nf - s0 < CUDA_SCORE_TILE ? nf - s0 : CUDA_SCORE_TILE;
                const int32_t *ids = c->d_values + d->offsets[f] + s0; /* [nt] device */
                const float *W = c->w->W_E + (size_t)d->values[d->offsets[f] + s0] * c->D;
                if (!s->h_consec[f]) {
                    cuda_gather_rows(c->sc_emb, c->w->W_E, ids, nt, c->D);
                    W = c->sc_emb;
                }
                cuda_gemm(c->blas, c->sc_prod, CUDA_SCORE_TILE, c->sc_grad, c->D, W, c->D, np, nt,
                          c->D, 1, 0.0f);
                k_add_tile<<<cuda_blocks((size_t)np * nt, THREADS), THREADS>>>(
                    s->G, c->sc_prod, fpos, s->pos_off, p0, np, ng, a0, s->NSP, s0, nt);
                CU_LAUNCH_CHECK();
            }
        }
    }
}

static void op_accumulate(lpe_backend *be) {
    cuda_impl *c = (cuda_impl *)be->impl;
    cuda_itgis *s = tables_of(be, "itgis_accumulate");
    if (s->nr < 1 || c->B_last != s->nr || !c->grad_valid)
        lpe_fail("cuda backend itgis_accumulate: needs a forward with gradient of the %d drawn "
                 "rows", s->nr);
    const int a0 = (int)(s->r0 / s->Br), ng = (int)((s->r0 + s->nr - 1) / s->Br) - a0 + 1;
    LPE_ASSERT(ng <= s->ngm);
    k_moments<<<cuda_blocks((size_t)ng, 64), 64>>>(s->mom, s->logw, c->o_argmax, s->targets,
                                                   s->r0, s->nr, s->Br, a0, ng);
    CU_LAUNCH_CHECK();
    accumulate_G(c, s, a0, ng);
}

static void op_update(lpe_backend *be, double beta) {
    cuda_itgis *s = tables_of(be, "itgis_update");
    if (s->Br < 1) lpe_fail("cuda backend itgis_update: no round (itgis_round first)");
    const size_t n = (size_t)s->tc * s->NSP;
    k_update<<<cuda_blocks(n, THREADS), THREADS>>>(s->S, s->G, n, beta, s->Br);
    CU_LAUNCH_CHECK();
}

static void op_read(lpe_backend *be, void *out, int what) {
    cuda_itgis *s = tables_of(be, "itgis_read");
    const void *src = what == LPE_ITGIS_MOMENTS ? (const void *)s->mom
                      : what == LPE_ITGIS_S     ? (const void *)s->S
                      : what == LPE_ITGIS_LOGW  ? (const void *)s->logw
                                                : NULL;
    if (!src) lpe_fail("cuda backend itgis_read: unknown table %d", what);
    size_t bytes = what == LPE_ITGIS_MOMENTS ? (size_t)s->tc * sizeof *s->mom
                   : what == LPE_ITGIS_S     ? (size_t)s->tc * s->NSP * sizeof *s->S
                                             : (size_t)s->nr * sizeof *s->logw;
    CU_CHECK(cudaMemcpy(out, src, bytes, cudaMemcpyDeviceToHost));
}

void cuda_itgis_install(lpe_backend *be) {
    be->itgis_tables = op_tables;
    be->itgis_reset = op_reset;
    be->itgis_round = op_round;
    be->itgis_draw = op_draw;
    be->itgis_accumulate = op_accumulate;
    be->itgis_update = op_update;
    be->itgis_read = op_read;
}
