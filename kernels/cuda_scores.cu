/* cuda_scores.cu: gradient scores g_j(y) = W_E[y] . ds/dr0_j over a distribution's supports on
 * the GPU (SPEC 3), the algorithm of src/cpu/scores.c: rows that need the same factor's support
 * are gathered into one matrix A [r, D] (gradient rows, or per-group sums of them), the support's
 * W_E rows are taken CUDA_SCORE_TILE at a time (pointed at directly when the ids are
 * consecutive, else gathered), and each score tile is one sgemm A @ W_E[S_f]^T, copied to the
 * host and placed into the caller's array.
 *
 * Dimension legend: B rows, k positions, D = d_model, NF factors, n_f support size of factor f,
 *   T = CUDA_SCORE_TILE, S = sum_j n_{f(j)} (scores of one group), np pairs (position, group).
 */
#include <string.h>

#include "cuda_internal.cuh"
#include "lpe/common.h"

#define THREADS 256

/* W_E rows of vals[0..n) (host ids): W_E itself when consecutive, else gathered to sc_emb */
static const float *support_tile(cuda_impl *c, const int32_t *vals, int n) {
    int consecutive = 1;
    for (int t = 1; t < n && consecutive; t++) consecutive = vals[t] == vals[0] + t;
    if (consecutive) return c->w->W_E + (size_t)vals[0] * c->D;
    CU_CHECK(cudaMemcpy(c->sc_idx, vals, (size_t)n * sizeof *vals, cudaMemcpyHostToDevice));
    cuda_gather_rows(c->sc_emb, c->w->W_E, c->sc_idx, n, c->D);
    return c->sc_emb;
}

/* the product tile sc_prod [nr, nt] (row stride T) to the host staging buffer [nr, T] */
static void tile_to_host(cuda_impl *c, int nr, int nt) {
    size_t pitch = CUDA_SCORE_TILE * sizeof(float);
    CU_CHECK(cudaMemcpy2D(c->h_stage, pitch, c->sc_prod, pitch, (size_t)nt * sizeof(float), nr,
                          cudaMemcpyDeviceToHost));
}

static const lpe_dist *dist_of(const cuda_impl *c, const char *op) {
    if (!c->d) lpe_fail("%s: no distribution (use_dist) given to the backend", op);
    return c->d;
}

/* rows of the batch in factor order (counting sort): h_order[start[f] .. start[f+1]) */
static void order_by_factor(cuda_impl *c, int *start, const lpe_dist *d, const int32_t *pos,
                            int B) {
    int NF = d->n_factors;
    memset(start, 0, (size_t)(NF + 1) * sizeof *start);
    for (int b = 0; b < B; b++) start[d->positions[pos[b]] + 1]++;
    for (int f = 0; f < NF; f++) start[f + 1] += start[f];
    int fill[NF];
    memcpy(fill, start, sizeof fill);
    for (int b = 0; b < B; b++) c->h_order[fill[d->positions[pos[b]]]++] = b;
}

void cuda_scores_at(lpe_backend *be, float *out, int ld, const int32_t *pos, int which, int B) {
    cuda_impl *c = (cuda_impl *)be->impl;
    const lpe_dist *d = dist_of(c, "scores_at");
    int k = c->k, D = c->D, NF = d->n_factors;
    if (B < 1 || B > c->Bm) lpe_fail("scores_at: %d rows, the backend holds 1..%d", B, c->Bm);
    const float *grad = which == LPE_BUF_STATE ? c->state_grad : c->grad; /* [B, k, D] device */
    if (!grad) lpe_fail("scores_at: no %s gradient (backend flags)", which ? "state" : "batch");
    if (which == LPE_BUF_BATCH && !c->grad_valid)
        lpe_fail("scores_at: the last forward did not compute a gradient");
    for (int b = 0; b < B; b++)
        if (pos[b] < 0 || pos[b] >= k) lpe_fail("scores_at: position %d of row %d", pos[b], b);
    int start[NF + 1];
    order_by_factor(c, start, d, pos, B);
    int32_t *grow = c->h_order + c->Bm; /* [B] gradient row b*k + pos[b], in factor order */
    for (int i = 0; i < B; i++) grow[i] = c->h_order[i] * k + pos[c->h_order[i]];
    CU_CHECK(cudaMemcpy(c->sc_rows, grow, (size_t)B * sizeof *grow, cudaMemcpyHostToDevice));

    for (int f = 0; f < NF; f++) {
        int r0 = start[f], nr = start[f + 1] - r0;
        if (nr == 0) continue;
        cuda_gather_rows(c->sc_grad, grad, c->sc_rows + r0, nr, D); /* [nr, D] */
        const int32_t *vals = d->values + d->offsets[f];           /* [n_f] host */
        int nf = (int)(d->offsets[f + 1] - d->offsets[f]);
        for (int s0 = 0; s0 < nf; s0 += CUDA_SCORE_TILE) {
            int nt = nf - s0 < CUDA_SCORE_TILE ? nf - s0 : CUDA_SCORE_TILE;
            const float *W = support_tile(c, vals + s0, nt); /* [nt, D] device */
            cuda_gemm(c->blas, c->sc_prod, CUDA_SCORE_TILE, c->sc_grad, D, W, D, nr, nt, D, 1,
                      0.0f);
            tile_to_host(c, nr, nt);
            for (int i = 0; i < nr; i++)
                memcpy(out + (size_t)c->h_order[r0 + i] * ld + s0,
                       c->h_stage + (size_t)i * CUDA_SCORE_TILE, (size_t)nt * sizeof *out);
        }
    }
}

/* sc_grad[i, :] = sum over rows b in [pairs[i].lo, pairs[i].hi) of grad[b, pairs[i].j, :],
 * accumulated in float64 (as the CPU). thread = (i, e) */
__global__ static void k_group_sums(float *sc_grad, const float *grad, const int32_t *pairs,
                                    int np, int k, int D) {
    size_t total = (size_t)np * D;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(t / D), e = (int)(t % D);
        int j = pairs[3 * i], lo = pairs[3 * i + 1], hi = pairs[3 * i + 2];
        double acc = 0;
        for (int b = lo; b < hi; b++) acc += grad[((size_t)b * k + j) * D + e];
        sc_grad[t] = (float)acc;
    }
}

/* one chunk of np (position, group) pairs of factor f: sums, products, placement into out */
static void sum_chunk(cuda_impl *c, double *out, const int32_t *group_off, int n_groups,
                      const int *js, int64_t p0, int np, int f, const int64_t *soff, int64_t S) {
    const lpe_dist *d = c->d;
    int32_t *pr = c->h_order; /* [np, 3] */
    for (int i = 0; i < np; i++) {
        int j = js[(p0 + i) / n_groups], g = (int)((p0 + i) % n_groups);
        pr[3 * i] = j, pr[3 * i + 1] = group_off[g], pr[3 * i + 2] = group_off[g + 1];
    }
    CU_CHECK(cudaMemcpy(c->sc_pairs, pr, (size_t)np * 3 * sizeof *pr, cudaMemcpyHostToDevice));
    k_group_sums<<<cuda_blocks((size_t)np * c->D, THREADS), THREADS>>>(c->sc_grad, c->grad,
                                                                       c->sc_pairs, np, c->k,
                                                                       c->D);
    CU_LAUNCH_CHECK();
    const int32_t *vals = d->values + d->offsets[f]; /* [n_f] host */
    int nf = (int)(d->offsets[f + 1] - d->offsets[f]);
    for (int s0 = 0; s0 < nf; s0 += CUDA_SCORE_TILE) {
        int nt = nf - s0 < CUDA_SCORE_TILE ? nf - s0 : CUDA_SCORE_TILE;
        const float *W = support_tile(c, vals + s0, nt); /* [nt, D] device */
        cuda_gemm(c->blas, c->sc_prod, CUDA_SCORE_TILE, c->sc_grad, c->D, W, c->D, np, nt, c->D,
                  1, 0.0f);
        tile_to_host(c, np, nt);
        for (int i = 0; i < np; i++) {
            int j = js[(p0 + i) / n_groups], g = (int)((p0 + i) % n_groups);
            double *o = out + (size_t)g * S + soff[j] + s0; /* [nt] */
            const float *src = c->h_stage + (size_t)i * CUDA_SCORE_TILE;
            for (int t = 0; t < nt; t++) o[t] = src[t];
        }
    }
}

void cuda_scores_sum(lpe_backend *be, double *out, const int32_t *group_off, int n_groups) {
    cuda_impl *c = (cuda_impl *)be->impl;
    const lpe_dist *d = dist_of(c, "scores_sum");
    int k = c->k, Bm = c->Bm;
    if (!c->grad || !c->grad_valid) lpe_fail("scores_sum: the last forward did not compute a gradient");
    if (n_groups < 1) return;
    for (int g = 0; g < n_groups; g++)
        if (group_off[g] < 0 || group_off[g + 1] < group_off[g] || group_off[g + 1] > c->B_last)
            lpe_fail("scores_sum: group %d spans rows [%d, %d), the last batch has %d", g,
                     group_off[g], group_off[g + 1], c->B_last);
    int64_t soff[k + 1]; /* offset of position j's scores within a group's S */
    soff[0] = 0;
    for (int j = 0; j < k; j++) soff[j + 1] = soff[j] + lpe_dist_support(d, j);
    for (int f = 0; f < d->n_factors; f++) {
        int js[k], nj = 0; /* positions using factor f */
        for (int j = 0; j < k; j++)
            if (d->positions[j] == f) js[nj++] = j;
        int64_t npairs = (int64_t)nj * n_groups; /* (position, group) rows, Bm at a time */
        for (int64_t p0 = 0; p0 < npairs; p0 += Bm) {
            int np = npairs - p0 < Bm ? (int)(npairs - p0) : Bm;
            sum_chunk(c, out, group_off, n_groups, js, p0, np, f, soff, soff[k]);
        }
    }
}
