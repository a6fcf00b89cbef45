/* unembed.c: products of host-given activations with the unembedding: GLD's target logits and
 * QLD's pair count (backend.h: target_logits, qld_pairs).
 *
 * Dimension legend: n = activation rows, D = d_model, V = d_vocab, T = targets, nb = rows of a
 *   block.
 */
#include <cblas.h>
#include <stdlib.h>

#include "cpu_internal.h"
#include "lpe/common.h"

/* float64 throughout: GLD subtracts the forward's float32 max logit from these, and its fit
 * averages n differences, so the target logit should carry no error of its own. The target
 * columns of W_U are gathered once ([D, T]); rows go through dgemm NB at a time. */
void cpu_target_logits(lpe_backend *be, double *out, const float *act, const int32_t *targets,
                       long long n, int T) {
    const lpe_model *m = be->model;
    const int D = m->cfg.d_model, V = m->cfg.d_vocab;
    enum { NB = 1024 };
    double *mem = lpe_calloc((size_t)D * T + (size_t)NB * D + 1, sizeof *mem);
    double *Wt = mem;                /* [D, T] the targets' columns of W_U */
    double *vb = mem + (size_t)D * T; /* [nb, D] a block of activations */
    for (int t = 0; t < T; t++)
        if (targets[t] < 0 || targets[t] >= V)
            lpe_fail("target_logits: target %d is outside the vocabulary [0, %d)", targets[t], V);
    for (int d = 0; d < D; d++)
        for (int t = 0; t < T; t++) Wt[(size_t)d * T + t] = m->W_U[(size_t)d * V + targets[t]];
    for (long long r0 = 0; r0 < n; r0 += NB) {
        int nb = (int)(n - r0 < NB ? n - r0 : NB);
        for (size_t q = 0; q < (size_t)nb * D; q++) vb[q] = act[(size_t)r0 * D + q];
        double *o = out + (size_t)r0 * T; /* [nb, T] */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, T, D, 1.0, vb, D, Wt, T, 0.0, o, T);
        if (m->b_U)
            for (int i = 0; i < nb; i++)
                for (int t = 0; t < T; t++) o[(size_t)i * T + t] += m->b_U[targets[t]];
    }
    free(mem);
}

/* The host reference itself (qld_core.c): blocked float32 sgemm with W_U, counts in float64. */
void cpu_qld_pairs(lpe_backend *be, int64_t *count, const lpe_qld_pairs *job) {
    const lpe_model *m = be->model;
    LPE_ASSERT(job->D == m->cfg.d_model && job->V == m->cfg.d_vocab);
    lpe_qld_count_pairs(count, job, m->W_U, m->b_U);
}
