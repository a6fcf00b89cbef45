/* backend.h: the one interface through which all model math goes (CPU and CUDA alike).
 *
 * Dimension legend: B = batch rows (<= max_batch), k = positions, D = d_model, V = d_vocab,
 *   W = walker-state rows (<= max_batch), n_f = support size of a factor (dist.h).
 *
 * A backend owns a batch of token sequences and everything computed from it: it keeps them
 * resident (on the GPU: in device memory) so that estimators never move per-sequence data
 * through the host inside inner loops. Estimators do not know which backend they talk to.
 *
 * Life of a batch:
 *   load_tokens / sample_tokens  -> the batch's tokens [B, k]
 *   forward(targets, want_grad)  -> per row: argmax, target logit s(x), max logit, optionally the
 *                                    final-LN activation at the last position [B, D]; with
 *                                    want_grad the gradient ds/dr0 [B, k, D] stays in the backend
 *   scores_at / scores_sum       -> gradient scores g_j(y) = W_E[y] . ds/dr0_j   (SPEC 3)
 *   commit_state(accept)         -> for Markov chains: rows b with accept[b] replace walker b's
 *                                    kept tokens and gradient (the "state" buffer)
 *
 * Only the last position's logits are computed; the last block is pruned to what they need.
 * Numerics: float32 storage and products; float64 for LayerNorm statistics, softmax normalisers
 * and every reduction that is summed over many terms.
 */
#ifndef LPE_BACKEND_H
#define LPE_BACKEND_H

#include <stdint.h>

#include "lpe/dist.h"
#include "lpe/model.h"

typedef struct {
    int32_t *argmax;     /* [B] argmax_v l_v (ties: lowest index), or NULL */
    float *target_logit; /* [B] l_{t_b}, or NULL (requires targets) */
    float *max_logit;    /* [B] max_v l_v, or NULL */
    float *act;          /* [B, D] final LayerNorm output at the last position, or NULL */
} lpe_fwd_out;

enum { LPE_BUF_BATCH = 0, LPE_BUF_STATE = 1 }; /* which buffer: the batch or the walker state */

typedef struct lpe_backend lpe_backend;
struct lpe_backend {
    const char *name;   /* "cpu" or "cuda" */
    char device[256];   /* e.g. "CPU: 2 threads, OpenBLAS 0.3.21" or "NVIDIA H100 80GB HBM3" */
    const lpe_model *model;
    int max_batch, k;
    int with_grad;      /* buffers for gradients allocated */
    int with_state;     /* walker-state buffers allocated */
    void *impl;

    void (*destroy)(lpe_backend *be);
    /* tokens [B, k] from the host; ids are checked against V (exit 2 naming the row) */
    void (*load_tokens)(lpe_backend *be, const int32_t *tokens, int B);
    /* draw the batch from D: rows are samples first .. first+B-1 of (seed, stream) (dist.h) */
    void (*sample_tokens)(lpe_backend *be, const lpe_dist *d, uint64_t seed, uint32_t stream,
                          uint64_t first, int B);
    /* tokens [B, k] of the batch (LPE_BUF_BATCH) or walker state (LPE_BUF_STATE) to the host */
    void (*get_tokens)(lpe_backend *be, int32_t *tokens, int which, int B);
    /* targets [B] (may be NULL when no target_logit and no grad is wanted) */
    void (*forward)(lpe_backend *be, lpe_fwd_out *out, const int32_t *targets, int B,
                    int want_grad);
    /* out[b, 0 .. n_f) (row stride ld) = g_{pos[b]}(y) over the support of position pos[b],
     * from the batch gradient or the walker-state gradient (which). */
    void (*scores_at)(lpe_backend *be, float *out, int ld, const lpe_dist *d, const int32_t *pos,
                      int which, int B);
    /* out[g, s] = sum over rows b in [group_off[g], group_off[g+1]) of g_j(y) for every position j
     * and every y in its support, s running over positions then support (sum_j n_{f(j)} entries
     * per group). Linear in the gradient, so it is one small product per group. */
    void (*scores_sum)(lpe_backend *be, double *out, const lpe_dist *d, const int32_t *group_off,
                       int n_groups);
    /* walker rows b with accept[b] != 0 take the batch row's tokens (and gradient, when kept) */
    void (*commit_state)(lpe_backend *be, const uint8_t *accept, int B);
    /* walker state tokens from the host (initialisation) */
    void (*load_state)(lpe_backend *be, const int32_t *tokens, int B);
    /* Optional (NULL when a backend lacks them; for tests, `lpe forward` and debugging, never
     * in inner loops): the last forward's full logits [B, V], and the gradient ds/dr0 [B, k, D]
     * of the batch or walker state (which) to the host. */
    void (*get_logits)(lpe_backend *be, float *logits, int B);
    void (*get_grad)(lpe_backend *be, float *grad, int which, int B);
};

enum { LPE_BE_GRAD = 1, LPE_BE_STATE = 2 };

/* name: "cpu", "cuda" or "auto" (cuda when built and a device exists, else cpu). flags: LPE_BE_*.
 * Exit 2 when the named backend is not available in this build or on this machine. */
lpe_backend *lpe_backend_create(const char *name, const lpe_model *m, int max_batch, int k,
                                int flags);
void lpe_backend_destroy(lpe_backend *be);
/* Rows that fit a memory budget in bytes (0 = the backend's default budget). */
int lpe_backend_batch_for_budget(const char *name, const lpe_model_config *cfg, int k, int flags,
                                 double bytes);

/* The CPU backend (src/cpu/) and the CUDA backend (kernels/, when built). */
lpe_backend *lpe_cpu_backend_create(const lpe_model *m, int max_batch, int k, int flags);
lpe_backend *lpe_cuda_backend_create(const lpe_model *m, int max_batch, int k, int flags);
int lpe_cuda_available(void); /* 1 when built with CUDA and a device is present */

#endif
