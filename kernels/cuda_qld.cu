/* cuda_qld.cu: QLD's pair count (methods.md §4; backend.h: qld_pairs) as one fused kernel: the
 * logits of a tile of rows are formed in shared memory, reduced at once to one interval per
 * (target, row), and the sorted a_i are counted in it by binary search on the device. No n x V
 * (nor nb x V) logits matrix is ever stored: per block, one RB x VC tile at a time.
 *
 * Dimension legend: n = activation rows (j), D = d_model, V = d_vocab, T = targets,
 *   NZ = zero-slope entries of all targets; tiles: RB rows x VC columns of the logits, KC the
 *   inner (d_model) chunk of the product, TG targets per launch.
 *
 * The job (qld_core.h, lpe_qld_pairs) is prepared on the host by lpe_qld_prepare, exactly as for
 * the host reference lpe_qld_count_pairs (qld_core.c), which stays the CPU backend's qld_pairs
 * and the reference this kernel is tested against (tests/c/test_cuda_backend.c).
 *
 * Precision and equality with the host reference. Every step is the reference's, in the same
 * precision: float32 logits (products accumulated in float32), float32 bounds
 * (l_v - l_t) * rinv_v, float64 shifts and float64 comparisons in the count (qld_count.h, the
 * same function). The one difference is the order in which a logit's D products are summed
 * (OpenBLAS's sgemm tiles there, k = 0 .. D-1 with fmaf here), so a logit may differ by a few
 * float32 ulps, and a count differs only if some a_i lies within that distance of a bound: the
 * counts are equal exactly when the products are exact (the test's dyadic job), and equal on
 * random problems unless a sample sits within ~1e-6 relative of a bound. Within the kernel every
 * logit of a row is the same function of (row, column) (qld_logit's order is the tile's), so
 * the target's own logit and the zero-slope logits agree with the tile's bit for bit.
 * The shifts a_j (paper) are float64 sums of D products here, a dgemm there: they agree to
 * ~1e-16 relative. The arc variant's rows v A^T are float64 sums rounded to float32 (a dtrmm
 * there): equal except when a float64 result lies within an ulp of a float32 rounding boundary.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "lpe/common.h"
#include "lpe/qld_count.h"
#include "lpe/size_table.h"

#define QLD_THREADS 256
#define QLD_RB 32 /* rows per block: one warp's lanes in the count step */
#define QLD_VC 64 /* logit columns per tile */
#define QLD_KC 16 /* inner chunk of the product */
#define QLD_TG 32 /* targets per launch: the running bounds of TG x RB pairs live in shared memory */

typedef struct {
    const float *X;              /* [n, D] rows whose logits the count needs (paper v_j, arc v_j A^T) */
    const float *W_U;            /* [D, V] */
    const float *b_U;            /* [V] or NULL */
    const float *rinv;           /* [T, V] 1 / e_v (0 where e_v = 0) */
    const int32_t *tg;           /* [T] target tokens */
    const int32_t *zoff;         /* [T + 1] target i's zero slopes: zlist[zoff[i] .. zoff[i+1]) */
    const int32_t *zlist;        /* [NZ] */
    const double *asort;         /* [T, n] a ascending, per target */
    const double *Y, *y0;        /* [T, D], [T] split coefficients (paper) */
    const uint8_t *skip;         /* [T] certified infeasible: counts 0 */
    unsigned long long *count;   /* [T] */
    int n, D, V, T, paper;
} qld_args;

/* One logit l_v of row x in the tile's order: k = 0 .. D-1, fmaf, then + b_U[v]. */
__device__ static float qld_logit(const float *x /* [D] */, const float *W_U, const float *b_U,
                                  int v, int D, int V) {
    float acc = 0.0f;
    for (int k = 0; k < D; k++) acc = fmaf(x[k], W_U[(size_t)k * V + v], acc);
    return b_U ? acc + b_U[v] : acc;
}

/* In place, X [n, D] = float32(X A^T) with A [D, D] lower, in float64: x_k = sum_{m <= k} v_m
 * A[k, m]. Descending k, so every x_k reads v_0 .. v_k before they are overwritten. */
__global__ static void k_qld_arc_rows(float *X, const double *A, int n, int D) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    float *x = X + (size_t)j * D; /* [D] */
    for (int k = D - 1; k >= 0; k--) {
        double s = 0;
        for (int m = 0; m <= k; m++) s = fma((double)x[m], A[(size_t)k * D + m], s);
        x[k] = (float)s;
    }
}

/* The epilogue (CUTLASS style: what the tile loop computes per output, then what it keeps).
 *
 *   For rows j of the block and columns v of a tile:  l_jv = sum_k X_jk W_U[k, v] + b_U[v]
 *   (float32; the RB x VC tile in shared memory). For each target i of the launch (t = tg[i])
 *   and row j, t is the argmax of l_j + s e (e = d P^T, the slopes of the margins, rinv = 1/e)
 *   iff for every v != t:  (l_jt - l_jv) + s e_v >= 0, i.e.
 *       s >= (l_jv - l_jt) / e_v   where e_v > 0,      s <= (l_jv - l_jt) / e_v   where e_v < 0,
 *   so the tile updates the running interval of (i, j):
 *       lo_ij = max(lo_ij, max_{v in tile, rinv_v > 0} (l_jv - l_jt) rinv_v)
 *       hi_ij = min(hi_ij, min_{v in tile, rinv_v < 0} (l_jv - l_jt) rinv_v)
 *   (v = t has rinv 0; NaN products are dropped by the selects, as in the host's bounds_tile).
 *   After the last tile: the interval is empty when a zero-slope v (e_v = 0) has l_jv > l_jt;
 *   then the count of (i, j) is #{a in asort_i : s_j + lo_ij <= a <= s_j + hi_ij} with
 *   s_j = X_j . Y_i - y0_i (paper) or 0 (arc), summed over the block's rows with a warp
 *   reduction and added to count[i] (one atomic per warp).
 * Keeps: lo, hi, l_t for TG x RB pairs (shared); nothing of the logits beyond the tile. */
__global__ static void k_qld_count(qld_args a, int i0) {
    __shared__ float Xs[QLD_RB][QLD_KC];
    __shared__ float Ws[QLD_KC][QLD_VC];
    __shared__ float Ls[QLD_RB][QLD_VC + 1]; /* +1: the scan's lanes read distinct banks */
    __shared__ float s_ri[QLD_TG][QLD_VC];
    __shared__ float s_lo[QLD_TG][QLD_RB], s_hi[QLD_TG][QLD_RB], s_lt[QLD_TG][QLD_RB];
    const int tid = threadIdx.x, r0 = blockIdx.x * QLD_RB, n = a.n, D = a.D, V = a.V;
    const int nt = a.T - i0 < QLD_TG ? a.T - i0 : QLD_TG;
    for (int p = tid; p < QLD_TG * QLD_RB; p += QLD_THREADS) {
        int i = p / QLD_RB, r = p % QLD_RB, j = r0 + r;
        s_lt[i][r] = i < nt && j < n
                         ? qld_logit(a.X + (size_t)j * D, a.W_U, a.b_U, a.tg[i0 + i], D, V)
                         : 0.0f;
        s_lo[i][r] = -INFINITY, s_hi[i][r] = INFINITY;
    }
    const int ty = tid / 16, tx = tid % 16; /* outputs: rows ty, ty + 16; columns tx + 16 b */
    for (int v0 = 0; v0 < V; v0 += QLD_VC) {
        float acc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
        for (int k0 = 0; k0 < D; k0 += QLD_KC) { /* zero padding adds fmaf(0, 0, acc) = acc */
            for (int e = tid; e < QLD_RB * QLD_KC; e += QLD_THREADS) {
                int r = e / QLD_KC, kk = e % QLD_KC, j = r0 + r, k = k0 + kk;
                Xs[r][kk] = j < n && k < D ? a.X[(size_t)j * D + k] : 0.0f;
            }
            for (int e = tid; e < QLD_KC * QLD_VC; e += QLD_THREADS) {
                int kk = e / QLD_VC, c = e % QLD_VC, k = k0 + kk, v = v0 + c;
                Ws[kk][c] = k < D && v < V ? a.W_U[(size_t)k * V + v] : 0.0f;
            }
            __syncthreads();
            for (int kk = 0; kk < QLD_KC; kk++) {
                float x0 = Xs[ty][kk], x1 = Xs[ty + 16][kk];
                for (int b = 0; b < 4; b++) {
                    float w = Ws[kk][tx + 16 * b];
                    acc[0][b] = fmaf(x0, w, acc[0][b]);
                    acc[1][b] = fmaf(x1, w, acc[1][b]);
                }
            }
            __syncthreads();
        }
        for (int h = 0; h < 2; h++)
            for (int b = 0; b < 4; b++) {
                int c = tx + 16 * b, v = v0 + c;
                Ls[ty + 16 * h][c] = a.b_U && v < V ? acc[h][b] + a.b_U[v] : acc[h][b];
            }
        for (int e = tid; e < nt * QLD_VC; e += QLD_THREADS) {
            int i = e / QLD_VC, c = e % QLD_VC, v = v0 + c; /* 0 outside: no constraint */
            s_ri[i][c] = v < V ? a.rinv[(size_t)(i0 + i) * V + v] : 0.0f;
        }
        __syncthreads();
        for (int p = tid; p < nt * QLD_RB; p += QLD_THREADS) { /* the launch's targets only */
            int i = p / QLD_RB, r = p % QLD_RB;
            float lo = s_lo[i][r], hi = s_hi[i][r], lt = s_lt[i][r];
            for (int c = 0; c < QLD_VC; c++) {
                float rv = s_ri[i][c], x = (Ls[r][c] - lt) * rv;
                float cl = rv > 0 ? x : -INFINITY, ch = rv < 0 ? x : INFINITY;
                lo = cl > lo ? cl : lo;
                hi = ch < hi ? ch : hi;
            }
            s_lo[i][r] = lo, s_hi[i][r] = hi;
        }
        __syncthreads();
    }
    /* the count: the RB lanes of a warp hold one target's rows (QLD_RB = 32 = warp size) */
    for (int p = tid; p < QLD_TG * QLD_RB; p += QLD_THREADS) {
        int i = p / QLD_RB, r = p % QLD_RB, j = r0 + r, ti = i0 + i;
        long long cnt = 0;
        if (i < nt && j < n && !a.skip[ti]) {
            const float *x = a.X + (size_t)j * D; /* [D] */
            float lo = s_lo[i][r], hi = s_hi[i][r], lt = s_lt[i][r];
            for (int z = a.zoff[ti]; z < a.zoff[ti + 1]; z++)
                if (qld_logit(x, a.W_U, a.b_U, a.zlist[z], D, V) > lt) lo = INFINITY, hi = -INFINITY;
            double s = 0;
            if (a.paper) {
                const double *y = a.Y + (size_t)ti * D; /* [D] */
                for (int k = 0; k < D; k++) s = fma((double)x[k], y[k], s);
                s -= a.y0[ti];
            }
            cnt = lpe_qld_count_sorted(a.asort + (size_t)ti * n, n, s + (double)lo,
                                       s + (double)hi);
        }
        for (int o = 16; o > 0; o >>= 1) cnt += __shfl_xor_sync(0xffffffffu, cnt, o);
        if (r == 0 && cnt) atomicAdd(a.count + ti, (unsigned long long)cnt);
    }
}

/* The job's arrays to the device (one allocation for the call), the launches, the counts back. */
void cuda_qld_pairs(lpe_backend *be, int64_t *count, const lpe_qld_pairs *job) {
    const cuda_impl *c = (const cuda_impl *)be->impl;
    const lpe_model *m = be->model;
    LPE_ASSERT(job->D == m->cfg.d_model && job->V == m->cfg.d_vocab);
    const int T = job->T, n = job->n, D = job->D, V = job->V, paper = job->variant == LPE_QLD_PAPER;
    memset(count, 0, (size_t)T * sizeof *count);
    if (T == 0 || n == 0) return;
    int32_t *h_zoff = (int32_t *)lpe_calloc((size_t)T + 1, sizeof(int32_t)); /* [T + 1] */
    for (int i = 0; i < T; i++) h_zoff[i + 1] = h_zoff[i] + job->n_zero[i];
    const int NZ = h_zoff[T];

    float *X = NULL, *rinv = NULL;
    double *asort = NULL, *Y = NULL, *y0 = NULL, *A = NULL;
    int32_t *tg = NULL, *zoff = NULL, *zlist = NULL;
    uint8_t *skip = NULL;
    unsigned long long *cnt = NULL;
    lpe_slot t[16];
    int ns = 0;
    LPE_SLOT(t, ns, asort, (size_t)T * n);
    LPE_SLOT(t, ns, Y, (size_t)T * D);
    LPE_SLOT(t, ns, y0, T);
    LPE_SLOT(t, ns, A, paper ? 0 : (size_t)D * D);
    LPE_SLOT(t, ns, cnt, T);
    LPE_SLOT(t, ns, X, (size_t)n * D);
    LPE_SLOT(t, ns, rinv, (size_t)T * V);
    LPE_SLOT(t, ns, tg, T);
    LPE_SLOT(t, ns, zoff, T + 1);
    LPE_SLOT(t, ns, zlist, NZ);
    LPE_SLOT(t, ns, skip, T);
    char *base = NULL;
    CU_CHECK(cudaMalloc((void **)&base, lpe_carve(t, ns, NULL, 256)));
    lpe_carve(t, ns, base, 256);

    cudaMemcpyKind up = cudaMemcpyHostToDevice;
    CU_CHECK(cudaMemcpy(asort, job->asort, (size_t)T * n * sizeof *asort, up));
    CU_CHECK(cudaMemcpy(Y, job->Y, (size_t)T * D * sizeof *Y, up));
    CU_CHECK(cudaMemcpy(y0, job->y0, (size_t)T * sizeof *y0, up));
    CU_CHECK(cudaMemset(cnt, 0, (size_t)T * sizeof *cnt));
    CU_CHECK(cudaMemcpy(X, job->act, (size_t)n * D * sizeof *X, up));
    CU_CHECK(cudaMemcpy(rinv, job->rinv, (size_t)T * V * sizeof *rinv, up));
    CU_CHECK(cudaMemcpy(tg, job->targets, (size_t)T * sizeof *tg, up));
    CU_CHECK(cudaMemcpy(zoff, h_zoff, (size_t)(T + 1) * sizeof *zoff, up));
    for (int i = 0; i < T; i++)
        if (job->n_zero[i])
            CU_CHECK(cudaMemcpy(zlist + h_zoff[i], job->zero_e[i],
                                (size_t)job->n_zero[i] * sizeof *zlist, up));
    CU_CHECK(cudaMemcpy(skip, job->skip, (size_t)T, up));
    if (!paper) {
        CU_CHECK(cudaMemcpy(A, job->A, (size_t)D * D * sizeof *A, up));
        k_qld_arc_rows<<<cuda_blocks((size_t)n, 128), 128>>>(X, A, n, D);
        CU_LAUNCH_CHECK();
    }
    qld_args a = {X, c->w->W_U, c->w->b_U, rinv, tg, zoff, zlist, asort, Y, y0, skip, cnt,
                  n, D, V, T, paper};
    for (int i0 = 0; i0 < T; i0 += QLD_TG) { /* every launch forms the logits again */
        k_qld_count<<<(unsigned)((n + QLD_RB - 1) / QLD_RB), QLD_THREADS>>>(a, i0);
        CU_LAUNCH_CHECK();
    }
    unsigned long long *h_cnt = (unsigned long long *)lpe_calloc((size_t)T, sizeof *h_cnt);
    CU_CHECK(cudaMemcpy(h_cnt, cnt, (size_t)T * sizeof *cnt, cudaMemcpyDeviceToHost));
    for (int i = 0; i < T; i++) count[i] = (int64_t)h_cnt[i];
    free(h_cnt);
    free(h_zoff);
    CU_CHECK(cudaFree(base));
}
