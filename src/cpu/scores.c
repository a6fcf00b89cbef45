/* scores.c: gradient scores g_j(y) = W_E[y] . ds/dr0_j over a distribution's supports (methods.md §3).
 *
 * Dimension legend: B rows, k positions, D = d_model, NF factors, n_f support size of factor f,
 *   T = CPU_SCORE_TILE support rows per product, S = sum_j n_{f(j)} (scores of one group).
 *
 * Never a k x V gradient: rows that need the same factor's support are gathered into one
 * matrix A [r, D] (gradient rows, or per-group sums of them), and the support's embedding rows
 * are taken T at a time (pointed at directly when the ids are consecutive, else gathered), so
 * each score block is one sgemm A @ W_E[S_f]^T.
 */
#include <string.h>

#include "cpu_internal.h"
#include "lpe/common.h"

/* W_E rows of vals[0..n): into W_E itself when the ids are consecutive, else gathered. */
static const float *support_tile(cpu_impl *c, const int32_t *vals, int n) {
    int D = c->D, consecutive = 1;
    for (int t = 1; t < n && consecutive; t++) consecutive = vals[t] == vals[0] + t;
    if (consecutive) return c->m->W_E + (size_t)vals[0] * D;
#pragma omp parallel for schedule(static) CPU_PAR((size_t)n * D)
    for (int t = 0; t < n; t++)
        memcpy(c->sc_emb + (size_t)t * D, c->m->W_E + (size_t)vals[t] * D, (size_t)D * sizeof(float));
    return c->sc_emb;
}

static const lpe_dist *dist_of(const cpu_impl *c, const char *op) {
    if (!c->d) lpe_fail("%s: no distribution (use_dist) given to the backend", op);
    return c->d;
}

void cpu_scores_at(lpe_backend *be, float *out, int ld, const int32_t *pos, int which, int B) {
    cpu_impl *c = (cpu_impl *)be->impl;
    const lpe_dist *d = dist_of(c, "scores_at");
    int k = c->k, D = c->D, NF = d->n_factors;
    if (B < 1 || B > c->Bm) lpe_fail("scores_at: %d rows, the backend holds 1..%d", B, c->Bm);
    const float *grad = which == LPE_BUF_STATE ? c->state_grad : c->grad; /* [B, k, D] */
    if (!grad) lpe_fail("scores_at: no %s gradient (backend flags)", which ? "state" : "batch");
    if (which == LPE_BUF_BATCH && !c->grad_valid)
        lpe_fail("scores_at: the last forward did not compute a gradient");
    for (int b = 0; b < B; b++)
        if (pos[b] < 0 || pos[b] >= k) lpe_fail("scores_at: position %d of row %d", pos[b], b);

    /* rows in factor order (counting sort), so each factor's rows form one matrix */
    int start[NF + 1];
    memset(start, 0, sizeof start);
    for (int b = 0; b < B; b++) start[d->positions[pos[b]] + 1]++;
    for (int f = 0; f < NF; f++) start[f + 1] += start[f];
    int fill[NF];
    memcpy(fill, start, sizeof fill);
    for (int b = 0; b < B; b++) c->sc_order[fill[d->positions[pos[b]]]++] = b;

    for (int f = 0; f < NF; f++) {
        int r0 = start[f], nr = start[f + 1] - r0;
        if (nr == 0) continue;
        const int32_t *rows = c->sc_order + r0; /* [nr] */
#pragma omp parallel for schedule(static) CPU_PAR((size_t)nr * D)
        for (int i = 0; i < nr; i++)
            memcpy(c->sc_grad + (size_t)i * D, grad + ((size_t)rows[i] * k + pos[rows[i]]) * D,
                   (size_t)D * sizeof(float));
        const int32_t *vals = d->values + d->offsets[f]; /* [n_f] */
        int nf = (int)(d->offsets[f + 1] - d->offsets[f]);
        /* all rows in order (one factor for every row): the product writes `out` directly */
        int direct = nr == B;
        for (int s0 = 0; s0 < nf; s0 += CPU_SCORE_TILE) {
            int nt = nf - s0 < CPU_SCORE_TILE ? nf - s0 : CPU_SCORE_TILE;
            const float *W = support_tile(c, vals + s0, nt); /* [nt, D] */
            if (direct) {
                cpu_gemm(out + s0, ld, c->sc_grad, D, W, D, nr, nt, D, 1, 0.0f);
                continue;
            }
            cpu_gemm(c->sc_prod, CPU_SCORE_TILE, c->sc_grad, D, W, D, nr, nt, D, 1, 0.0f);
#pragma omp parallel for schedule(static) CPU_PAR((size_t)nr * nt)
            for (int i = 0; i < nr; i++)
                memcpy(out + (size_t)rows[i] * ld + s0, c->sc_prod + (size_t)i * CPU_SCORE_TILE,
                       (size_t)nt * sizeof *out);
        }
    }
}

void cpu_scores_sum(lpe_backend *be, double *out, const int32_t *group_off, int n_groups) {
    cpu_scores_sum_into((cpu_impl *)be->impl, out, group_off, n_groups, 0);
}

/* add = 1: out += the sums (ITGIS's round sums, cpu_itgis.c), each entry with one addition */
void cpu_scores_sum_into(cpu_impl *c, double *out, const int32_t *group_off, int n_groups,
                         int add) {
    const lpe_dist *d = dist_of(c, "scores_sum");
    int k = c->k, D = c->D, Bm = c->Bm;
    if (!c->grad || !c->grad_valid) lpe_fail("scores_sum: the last forward did not compute a gradient");
    if (n_groups < 1) return;
    for (int g = 0; g < n_groups; g++)
        if (group_off[g] < 0 || group_off[g + 1] < group_off[g] || group_off[g + 1] > c->B_last)
            lpe_fail("scores_sum: group %d spans rows [%d, %d), the last batch has %d", g,
                     group_off[g], group_off[g + 1], c->B_last);
    int64_t soff[k + 1]; /* offset of position j's scores within a group's S */
    soff[0] = 0;
    for (int j = 0; j < k; j++) soff[j + 1] = soff[j] + lpe_dist_support(d, j);
    int64_t S = soff[k];

    for (int f = 0; f < d->n_factors; f++) {
        int js[k], nj = 0; /* positions using factor f */
        for (int j = 0; j < k; j++)
            if (d->positions[j] == f) js[nj++] = j;
        const int32_t *vals = d->values + d->offsets[f]; /* [n_f] */
        int nf = (int)(d->offsets[f + 1] - d->offsets[f]);
        int64_t npairs = (int64_t)nj * n_groups; /* (position, group) rows, Bm at a time */
        for (int64_t p0 = 0; p0 < npairs; p0 += Bm) {
            int np = npairs - p0 < Bm ? (int)(npairs - p0) : Bm;
#pragma omp parallel for schedule(static) CPU_PAR((size_t)np * D * (group_off[n_groups] - group_off[0] + 1) / n_groups)
            for (int i = 0; i < np; i++) {
                int j = js[(p0 + i) / n_groups], g = (int)((p0 + i) % n_groups);
                double acc[D];
                memset(acc, 0, sizeof acc);
                for (int b = group_off[g]; b < group_off[g + 1]; b++) {
                    const float *gr = c->grad + ((size_t)b * k + j) * D; /* [D] */
                    for (int e = 0; e < D; e++) acc[e] += gr[e];
                }
                for (int e = 0; e < D; e++) c->sc_grad[(size_t)i * D + e] = (float)acc[e];
            }
            for (int s0 = 0; s0 < nf; s0 += CPU_SCORE_TILE) {
                int nt = nf - s0 < CPU_SCORE_TILE ? nf - s0 : CPU_SCORE_TILE;
                const float *W = support_tile(c, vals + s0, nt); /* [nt, D] */
                cpu_gemm(c->sc_prod, CPU_SCORE_TILE, c->sc_grad, D, W, D, np, nt, D, 1, 0.0f);
#pragma omp parallel for schedule(static) CPU_PAR((size_t)np * nt)
                for (int i = 0; i < np; i++) {
                    int j = js[(p0 + i) / n_groups], g = (int)((p0 + i) % n_groups);
                    double *o = out + (size_t)g * S + soff[j] + s0; /* [nt] */
                    const float *src = c->sc_prod + (size_t)i * CPU_SCORE_TILE; /* [nt] */
                    if (add)
                        for (int t = 0; t < nt; t++) o[t] += src[t];
                    else
                        for (int t = 0; t < nt; t++) o[t] = src[t];
                }
            }
        }
    }
}
