/* itgis_ref.h: ITGIS's inner loop on the host, as src/estimators/itgis.c ran it before issue 10
 * moved it into the backend: the tests' oracle for the backends' itgis_* operations
 * (test_itgis.c: the CPU bit for bit; test_cuda_backend.c: the CUDA draws from its own tables).
 *
 * Dimension legend: tc targets, k positions, NSP = sum_j n_{f(j)} (position-major), B samples
 *   per target per full round, Br this round's.
 *
 * It uses only the backend's generic operations: load_tokens, forward (argmax), scores_sum.
 * Round r: ref_draw (all tc * Br rows from the tilted laws of S), ref_call per call of rows,
 * ref_update. The moments are lpe_itgis_moments_add in row order.
 */
#ifndef LPE_ITGIS_REF_H
#define LPE_ITGIS_REF_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/backend.h"
#include "lpe/common.h"
#include "lpe/itgis_moments.h"
#include "lpe/philox.h"
#include "lpe/tilted.h"

typedef struct {
    const lpe_dist *d;
    int k, tc, B;
    int64_t NSP;
    uint64_t seed;
    const int32_t *targets;   /* [tc] */
    int64_t *pos_off;         /* [k + 1] */
    double *S, *G;            /* [tc, NSP] */
    double *cdf;              /* [NSP] one target's */
    double *logZ;             /* [k] */
    int32_t *tok;             /* [tc * B, k] a round's samples */
    double *logw;             /* [tc * B] */
    double *lwmag;            /* [tc * B] sum_j (n_j + 4)(1 + |log Z_j| + |S_j(x_j)| / T_r): the
                                 scale of a log-weight's rounding (test_cuda_backend.c) */
    int32_t *row_t, *argmax;  /* [tc * B] */
    int32_t *goff;            /* [tc * B + 1] */
    double *gsum;             /* [tc, NSP] */
    lpe_itgis_moments *mom;   /* [tc] */
} itgis_ref;

static inline void ref_init(itgis_ref *s, const lpe_dist *d, const int32_t *targets, int tc,
                            uint64_t seed, int B) {
    memset(s, 0, sizeof *s);
    s->d = d, s->k = d->k, s->tc = tc, s->B = B, s->seed = seed, s->targets = targets;
    s->pos_off = calloc((size_t)d->k + 1, sizeof *s->pos_off);
    for (int j = 0; j < d->k; j++) s->pos_off[j + 1] = s->pos_off[j] + lpe_dist_support(d, j);
    const int64_t NSP = s->NSP = s->pos_off[d->k];
    s->S = calloc((size_t)tc * NSP, sizeof *s->S);
    s->G = calloc((size_t)tc * NSP, sizeof *s->G);
    s->gsum = calloc((size_t)tc * NSP, sizeof *s->gsum);
    s->cdf = calloc((size_t)NSP, sizeof *s->cdf);
    s->logZ = calloc((size_t)d->k, sizeof *s->logZ);
    s->tok = calloc((size_t)tc * B * d->k, sizeof *s->tok);
    s->logw = calloc((size_t)tc * B, sizeof *s->logw);
    s->lwmag = calloc((size_t)tc * B, sizeof *s->lwmag);
    s->row_t = calloc((size_t)tc * B, sizeof *s->row_t);
    s->argmax = calloc((size_t)tc * B, sizeof *s->argmax);
    s->goff = calloc((size_t)tc * B + 1, sizeof *s->goff);
    s->mom = calloc((size_t)tc, sizeof *s->mom);
}

static inline void ref_free(itgis_ref *s) {
    free(s->pos_off), free(s->S), free(s->G), free(s->gsum), free(s->cdf), free(s->logZ);
    free(s->tok), free(s->logw), free(s->lwmag), free(s->row_t), free(s->argmax), free(s->goff), free(s->mom);
}

/* round r: Br samples of every target from its tilted law at 1 / T_r = inv_T, with log-weights;
 * S: the tables to draw from (s->S, or another backend's, read back) */
static inline void ref_draw(itgis_ref *s, const double *S, long long r, int Br, double inv_T) {
    const lpe_dist *d = s->d;
    const int k = s->k;
    for (int a = 0; a < s->tc; a++) {
        const double *St = S + (size_t)a * s->NSP;
        for (int j = 0; j < k; j++) {
            const int f = d->positions[j];
            s->logZ[j] = lpe_tilted_cdf(s->cdf + s->pos_off[j], d->log_probs + d->offsets[f],
                                        NULL, St + s->pos_off[j], inv_T, lpe_dist_support(d, j));
        }
        const uint32_t stream = lpe_stream(LPE_STREAM_ITGIS, (uint32_t)s->targets[a]);
        for (int i = 0; i < Br; i++) {
            int32_t *x = s->tok + ((size_t)a * Br + i) * k;
            double lw = 0, mag = 0;
            for (int j = 0; j < k; j++) {
                uint32_t w[4];
                lpe_rng4(w, s->seed, stream, (uint64_t)(r * s->B + i), (uint32_t)j);
                const int f = d->positions[j], nj = lpe_dist_support(d, j);
                int y = lpe_tilted_pick(s->cdf + s->pos_off[j], nj, lpe_u01_53(w[0], w[1]));
                x[j] = d->values[d->offsets[f] + y];
                lw += s->logZ[j] - St[s->pos_off[j] + y] * inv_T;
                mag += (nj + 4) * (1 + fabs(s->logZ[j]) + fabs(St[s->pos_off[j] + y] * inv_T));
            }
            s->logw[(size_t)a * Br + i] = lw;
            s->lwmag[(size_t)a * Br + i] = mag;
        }
    }
}

/* rows r0 .. r0 + nr of the round through be: moments, and G += per-target score sums */
static inline void ref_call(itgis_ref *s, lpe_backend *be, int Br, long long r0, int nr) {
    int ng = 0, gtgt0 = (int)(r0 / Br);
    for (int q = 0; q < nr; q++) {
        const int a = (int)((r0 + q) / Br);
        s->row_t[q] = s->targets[a];
        if (q == 0 || a != gtgt0 + ng - 1) s->goff[ng++] = q;
    }
    s->goff[ng] = nr;
    be->load_tokens(be, s->tok + (size_t)r0 * s->k, nr);
    lpe_fwd_out fo = {.argmax = s->argmax};
    be->forward(be, &fo, s->row_t, nr, 1);
    be->scores_sum(be, s->gsum, s->goff, ng);
    for (int g = 0; g < ng; g++) {
        double *Ga = s->G + (size_t)(gtgt0 + g) * s->NSP;
        const double *src = s->gsum + (size_t)g * s->NSP;
        for (int64_t i = 0; i < s->NSP; i++) Ga[i] += src[i];
    }
    for (int q = 0; q < nr; q++) {
        const double w = exp(s->logw[r0 + q]);
        const int hit = s->argmax[q] == s->row_t[q];
        lpe_itgis_moments_add(&s->mom[(r0 + q) / Br], hit ? w : 0.0, w, hit);
    }
}

static inline void ref_update(itgis_ref *s, int Br, double beta) {
    for (size_t i = 0; i < (size_t)s->tc * s->NSP; i++) {
        s->S[i] = beta * s->S[i] + s->G[i] / Br;
        s->G[i] = 0;
    }
}

#endif
