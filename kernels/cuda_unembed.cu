/* cuda_unembed.cu: products of host-given activations with the unembedding: GLD's target logits
 * and QLD's pair count (backend.h: target_logits, qld_pairs).
 *
 * Dimension legend: n = activation rows, D = d_model, V = d_vocab, T = targets.
 *
 * Part 1 of the CUDA backend (issue 9) runs both on the host, through the CPU backend's float64
 * target-logit product and the host pair count lpe_qld_count_pairs (qld_core.c), which is the
 * reference itself: the activations arrive from the host anyway, and the results are then
 * identical on both backends. Part 2 (issue 10) fuses them into device kernels.
 */
#include "cuda_internal.cuh"
#include "lpe/common.h"

/* float64 throughout, as the CPU backend's (src/cpu/unembed.c): out [n, T]. */
void cuda_target_logits(lpe_backend *be, double *out, const float *act, const int32_t *targets,
                        long long n, int T) {
    const lpe_model *m = be->model;
    const int D = m->cfg.d_model, V = m->cfg.d_vocab;
    for (int t = 0; t < T; t++)
        if (targets[t] < 0 || targets[t] >= V)
            lpe_fail("target_logits: target %d is outside the vocabulary [0, %d)", targets[t], V);
    for (long long i = 0; i < n; i++) {
        const float *a = act + (size_t)i * D; /* [D] */
        for (int t = 0; t < T; t++) {
            double s = m->b_U ? (double)m->b_U[targets[t]] : 0.0;
            for (int d = 0; d < D; d++) s += (double)a[d] * m->W_U[(size_t)d * V + targets[t]];
            out[(size_t)i * T + t] = s;
        }
    }
}

void cuda_qld_pairs(lpe_backend *be, int64_t *count, const lpe_qld_pairs *job) {
    const lpe_model *m = be->model;
    LPE_ASSERT(job->D == m->cfg.d_model && job->V == m->cfg.d_vocab);
    lpe_qld_count_pairs(count, job, m->W_U, m->b_U);
}
