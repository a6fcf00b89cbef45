/* backend.h: the one interface through which all model math goes (CPU and CUDA alike).
 *
 * Dimension legend: B = batch rows (<= max_batch), k = positions, D = d_model, V = d_vocab,
 *   W = walker-state rows (<= max_batch), n_f = support size of a factor (dist.h),
 *   n = rows given by the host (activations), T = targets.
 *
 * Three lifetimes, three objects:
 *   lpe_backend_kind  one entry per backend in the table of backend.c: name, whether it is
 *                     usable here, how to upload weights, make a workspace and size a batch;
 *   lpe_weights       a model uploaded once (repacked on the CPU, copied to the device on a
 *                     GPU); it outlives every workspace made on it, so a new k reloads nothing;
 *   lpe_backend       a workspace for one (k, max_batch, flags): a batch of token sequences and
 *                     everything computed from it, resident in the backend (on the GPU: device
 *                     memory) so that estimators never move per-sequence data through the host
 *                     inside inner loops. Estimators do not know which backend they talk to.
 *
 * Life of a batch:
 *   use_dist(d)                  -> the distribution that sampling and scores refer to, uploaded
 *                                    once per distribution (alias tables, supports)
 *   load_tokens / sample_tokens  -> the batch's tokens [B, k]
 *   forward(targets, want_grad)  -> per row: argmax, target logit s(x), max logit, optionally the
 *                                    final-LN activation at the last position [B, D]; with
 *                                    want_grad the gradient ds/dr0 [B, k, D] stays in the backend
 *   scores_at / scores_sum       -> gradient scores g_j(y) = W_E[y] . ds/dr0_j   (methods.md §3)
 *   commit_state(accept)         -> for Markov chains: rows b with accept[b] replace walker b's
 *                                    kept tokens and gradient (the "state" buffer)
 *   walkers_set / walkers_step   -> the whole Metropolis-Hastings step of MHIS, ams and smc
 *                                    (src/estimators/walkers.h) inside the backend, with the
 *                                    walkers' settings, results and MHIS's statistics (issue 10)
 * Products of host-given activations with the unembedding (QLD's pair count, GLD's target
 * logits) are backend operations too, so that no method multiplies by W_U itself.
 *
 * Only the last position's logits are computed; the last block is pruned to what they need.
 * Numerics: float32 storage and products; float64 for LayerNorm statistics, softmax normalisers
 * and every reduction that is summed over many terms.
 */
#ifndef LPE_BACKEND_H
#define LPE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "lpe/dist.h"
#include "lpe/model.h"
#include "lpe/qld_core.h"
#include "lpe/walker_ops.h" /* walker operations (issue 10) */

#ifdef __cplusplus /* the CUDA backend (kernels/, C++) includes this header */
extern "C" {
#endif

typedef struct {
    int32_t *argmax;     /* [B] argmax_v l_v (ties: lowest index), or NULL */
    float *target_logit; /* [B] l_{t_b}, or NULL (requires targets) */
    float *max_logit;    /* [B] max_v l_v, or NULL */
    float *act;          /* [B, D] final LayerNorm output at the last position, or NULL */
    float *margin;       /* [B] l_{t_b} - max_{v != t_b} l_v, or NULL (requires targets): >= 0
                            where t_b is the argmax up to ties (splitting's level function) */
} lpe_fwd_out;

enum { LPE_BUF_BATCH = 0, LPE_BUF_STATE = 1 }; /* which buffer: the batch or the walker state */
enum { LPE_BE_GRAD = 1, LPE_BE_STATE = 2 };   /* workspace flags: gradients, walker state */
/* what forward(want_grad) differentiates (lpe_backend.grad_of): the target logit s = l_t (the
 * paper's score, methods.md §3), or the target's log-probability l_t - logsumexp_v l_v, whose
 * gradient W_U[:, t] - sum_v softmax_v W_U[:, v] discounts directions that raise every logit */
enum { LPE_GRAD_LOGIT = 0, LPE_GRAD_LOGPROB = 1 };

typedef struct lpe_backend lpe_backend;
typedef struct lpe_weights lpe_weights;
typedef struct lpe_backend_kind lpe_backend_kind;

/* One row of the backend table (backend.c). */
struct lpe_backend_kind {
    const char *name;                        /* "cpu", "cuda" */
    int (*available)(void);                  /* usable in this build on this machine */
    lpe_weights *(*upload)(const lpe_model *m);
    void (*free_weights)(lpe_weights *w);
    lpe_backend *(*create)(lpe_weights *w, int max_batch, int k, int flags);
    /* bytes of a workspace's buffers (weights not counted); create allocates exactly this */
    size_t (*batch_bytes)(const lpe_model_config *cfg, int max_batch, int k, int flags);
    double (*default_budget)(void);          /* bytes a workspace may use when none is given */
};

struct lpe_weights {
    const lpe_backend_kind *kind;
    const lpe_model *model; /* the host model (it must outlive the weights) */
    void *impl;             /* the backend's copy: repacked matrices, device pointers */
};

struct lpe_backend {
    const char *name;   /* "cpu" or "cuda" */
    char device[256];   /* e.g. "CPU: 2 threads, OpenBLAS 0.3.21" or "NVIDIA H100 80GB HBM3" */
    const lpe_model *model;
    lpe_weights *weights;
    int owns_weights;   /* made by lpe_backend_create: the weights go with the workspace */
    const lpe_dist *dist; /* set by use_dist (host view; the backend may hold its own copy) */
    int max_batch, k;
    int with_grad;      /* buffers for gradients allocated */
    int with_state;     /* walker-state buffers allocated */
    int grad_of;        /* LPE_GRAD_LOGIT (0, at creation) or LPE_GRAD_LOGPROB: set by the caller
                           before forward(want_grad), read by the backward; a caller that sets
                           it restores LPE_GRAD_LOGIT when done */
    void *impl;

    void (*destroy)(lpe_backend *be); /* the workspace only; see lpe_backend_destroy */
    /* the distribution that sample_tokens, scores_at and scores_sum use from now on; exit 2 when
     * its k or vocabulary does not match the workspace. d must outlive its use. */
    void (*use_dist)(lpe_backend *be, const lpe_dist *d);
    /* tokens [B, k] from the host; ids are checked against V (exit 2 naming the row) */
    void (*load_tokens)(lpe_backend *be, const int32_t *tokens, int B);
    /* draw the batch from D: rows are samples first .. first+B-1 of (seed, stream) (dist.h) */
    void (*sample_tokens)(lpe_backend *be, uint64_t seed, uint32_t stream, uint64_t first, int B);
    /* tokens [B, k] of the batch (LPE_BUF_BATCH) or walker state (LPE_BUF_STATE) to the host */
    void (*get_tokens)(lpe_backend *be, int32_t *tokens, int which, int B);
    /* targets [B] (may be NULL when no target_logit and no grad is wanted) */
    void (*forward)(lpe_backend *be, lpe_fwd_out *out, const int32_t *targets, int B,
                    int want_grad);
    /* out[b, 0 .. n_f) (row stride ld) = g_{pos[b]}(y) over the support of position pos[b],
     * from the batch gradient or the walker-state gradient (which). */
    void (*scores_at)(lpe_backend *be, float *out, int ld, const int32_t *pos, int which, int B);
    /* out[g, s] = sum over rows b in [group_off[g], group_off[g+1]) of g_j(y) for every position j
     * and every y in its support, s running over positions then support (sum_j n_{f(j)} entries
     * per group). Linear in the gradient, so it is one small product per group. */
    void (*scores_sum)(lpe_backend *be, double *out, const int32_t *group_off, int n_groups);
    /* walker rows b with accept[b] != 0 take the batch row's tokens (and gradient, when kept) */
    void (*commit_state)(lpe_backend *be, const uint8_t *accept, int B);
    /* walker state tokens from the host (initialisation) */
    void (*load_state)(lpe_backend *be, const int32_t *tokens, int B);
    /* walker rows b < B take the tokens and gradient of row src[b] (a gather: rows may repeat;
     * resampling in splitting and SMC). The batch buffer's contents are lost. */
    void (*gather_state)(lpe_backend *be, const int32_t *src, int B);
    /* out [n, T] = act [n, D] . W_U[:, targets] + b_U[targets] in float64 (GLD's target logits) */
    void (*target_logits)(lpe_backend *be, double *out, const float *act, const int32_t *targets,
                          long long n, int T);
    /* count [T]: QLD's pair count of a prepared job (qld_core.h), all targets together */
    void (*qld_pairs)(lpe_backend *be, int64_t *count, const lpe_qld_pairs *job);
    /* Optional (NULL when a backend lacks them; for tests, `lpe forward` and debugging, never
     * in inner loops): the last forward's full logits [B, V], and the gradient ds/dr0 [B, k, D]
     * of the batch or walker state (which) to the host. */
    void (*get_logits)(lpe_backend *be, float *logits, int B);
    void (*get_grad)(lpe_backend *be, float *grad, int which, int B);

    /* ---- ITGIS operations (issue 10) ----------------------------------------------------
     * ITGIS's inner loop on the backend (methods.md §4; src/estimators/itgis.c), so that no
     * per-sample data crosses the host: the score tables S and the round's gradient sums G
     * ([TC, NSP] float64 each, NSP = sum_j n_{f(j)}, position-major as scores_sum's groups),
     * the tilted laws q_j(y) = p_j(y) exp(S[j][y] / T_r) / Z_j of every (target, position)
     * (cdf [TC, NSP] and log Z [TC, k], made once per round), the log-weights of the drawn
     * rows and the per-target moments live in the backend, in one allocation of their own.
     * A round r of tc targets has tc * Br rows, row a * Br + i being sample i of chunk-local
     * target a; it goes through the batch buffer in calls of at most max_batch rows:
     *   itgis_tables(TC) once; per chunk itgis_reset; per round itgis_round, then per call
     *   itgis_draw -> forward(row targets, want_grad = 1) -> itgis_accumulate; itgis_update;
     *   at the chunk's end itgis_read(LPE_ITGIS_MOMENTS).
     * Sample i of round r of target t is draw number r * B + i of stream
     * lpe_stream(LPE_STREAM_ITGIS, t), position j using sub = j (tilted.h picks the token), so
     * results depend neither on the chunking of the rows nor on the backend. */
    /* the ITGIS allocation for up to TC targets of the distribution in use (use_dist first);
     * TC = 0 frees it (destroy frees it too) */
    void (*itgis_tables)(lpe_backend *be, int TC);
    /* a chunk of tc <= TC targets (token ids targets [tc]): S and the moments set to 0; seed and
     * B (samples per target per full round) fix the draws' numbering */
    void (*itgis_reset)(lpe_backend *be, const int32_t *targets, int tc, uint64_t seed, int B);
    /* round r with Br <= B samples per target and 1 / T_r = inv_T: the tilted laws from S, and
     * G set to 0 */
    void (*itgis_round)(lpe_backend *be, long long r, int Br, double inv_T);
    /* rows r0 .. r0 + nr of the round (nr <= max_batch) drawn into the batch buffer; their
     * log-weights log w = sum_j (log Z_j - S[j][x_j] / T_r) kept in the backend */
    void (*itgis_draw)(lpe_backend *be, long long r0, int nr);
    /* after forward(targets of the drawn rows, want_grad = 1) of the drawn rows: per target,
     * in row order, the Welford moments of c = w 1[argmax = target] (and sum w, sum w^2, hits),
     * and G += the sum of the rows' gradient scores (scores_sum's products) */
    void (*itgis_accumulate)(lpe_backend *be);
    /* S <- beta S + G / Br for the chunk's targets (the end of a round) */
    void (*itgis_update)(lpe_backend *be, double beta);
    /* to the host (what: include/lpe/itgis_moments.h): LPE_ITGIS_MOMENTS lpe_itgis_moments
     * [tc]; LPE_ITGIS_S double [tc, NSP]; LPE_ITGIS_LOGW double [nr] of the last draw (the
     * last two for tests) */
    void (*itgis_read)(lpe_backend *be, void *out, int what);
    /* ---- end of ITGIS operations (issue 10) ---------------------------------------------- */

    /* ---- argmax histogram (issue 9 item 3; branch qld-dev) ---------------------------------- */
    /* The workspace keeps a histogram [V] of argmax values, zero at creation, so that ground
     * truth and naive sampling count on the backend instead of copying argmax to the host per
     * batch. add: hist[v] += #{rows b in [r0, r1) of the last forward with argmax v}
     * (0 <= r0 <= r1 <= its rows). take: counts [V] += hist, then hist = 0. A caller takes
     * everything it added before it returns, so the next caller finds the histogram at zero. */
    void (*argmax_hist_add)(lpe_backend *be, int r0, int r1);
    void (*argmax_hist_take)(lpe_backend *be, uint64_t *counts);
    /* ---- end argmax histogram ---- */

    /* ---- walker operations (issue 10) ------------------------------------------------------
     * The Metropolis-Hastings step of src/estimators/walkers.h as backend operations, so that no
     * per-walker data crosses the host inside a chain's loop. The backend keeps, per walker row,
     * the settings (lpe_walker_rows), the state (tokens and gradient: LPE_BUF_STATE), its score,
     * margin and hit, the last decision, and MHIS's statistics (lpe_walker_stats). Needs
     * LPE_BE_GRAD | LPE_BE_STATE and a distribution (use_dist). gather_state carries all of it.
     * The batch buffer is scratch for every one of them. */
    /* rows 0 .. n-1 take the settings; with rows->tok, their states become those tokens: one
     * forward and backward (n model calls), every row committed, accept 1, statistics reset. */
    void (*walkers_set)(lpe_backend *be, const lpe_walker_rows *rows, int n);
    /* one step of rows 0 .. rows-1 (rows model calls): walkers.h's move with Philox draws
     * lpe_rng4(seed, stream, index, 2 step) (position, proposal) and (.., 2 step + 1) (accept) */
    void (*walkers_step)(lpe_backend *be, int rows, uint64_t seed, long long step);
    /* MHIS: every row q < rows adds its current state to its statistics (walker_ops.h's
     * lpe_walker_stats_add with its beta; first: the step is in the first half of the record) */
    void (*walkers_accum)(lpe_backend *be, int rows, int first);
    /* statistics of rows 0 .. rows-1 to the host */
    void (*walkers_stats)(lpe_backend *be, lpe_walker_stats *out, int rows);
    /* per-row score, margin, hit, accept to the host (the view's non-NULL arrays) */
    void (*walkers_read)(lpe_backend *be, const lpe_walker_view *out, int rows);
    /* thinned chains: start copying rows' state tokens, scores and decisions out (on a GPU
     * asynchronously, while the next steps run); walkers_snapshot_get waits for the copy and
     * points at it. Every snapshot is taken by one get before the next snapshot. */
    void (*walkers_snapshot)(lpe_backend *be, int rows);
    void (*walkers_snapshot_get)(lpe_backend *be, lpe_walker_snap *out);
    /* ---- end walker operations (issue 10) ---- */
};

/* The table: entries in order of preference for "auto" (the first available one wins). */
int lpe_backend_kind_count(void);
const lpe_backend_kind *lpe_backend_kind_at(int i);
/* name: a table entry's name or "auto". Exit 2 when unknown, or when the named backend is not
 * usable in this build or on this machine. */
const lpe_backend_kind *lpe_backend_kind_find(const char *name);
/* 1 when `name` is in this build's table and usable on this machine (never exits). */
int lpe_backend_available(const char *name);

/* Weights: upload once, make any number of workspaces on them, free after the last. */
lpe_weights *lpe_weights_upload(const char *name, const lpe_model *m);
void lpe_weights_free(lpe_weights *w);
lpe_backend *lpe_backend_create_on(lpe_weights *w, int max_batch, int k, int flags);

/* Weights and workspace in one call (the workspace owns the weights): for one-shot commands. */
lpe_backend *lpe_backend_create(const char *name, const lpe_model *m, int max_batch, int k,
                                int flags);
void lpe_backend_destroy(lpe_backend *be);
/* For backends: exit 2 naming row and position when a token id of tokens [B, k] is outside
 * [0, V) (`what` names the tokens in the message). */
void lpe_backend_check_tokens(const int32_t *tokens, int B, int k, int V, const char *what);
/* Rows that fit a memory budget in bytes (0 = the backend's default budget). */
int lpe_backend_batch_for_budget(const char *name, const lpe_model_config *cfg, int k, int flags,
                                 double bytes);

/* The table's entries (src/cpu/, kernels/ when built with CUDA). */
extern const lpe_backend_kind lpe_cpu_backend_kind;
#ifdef LPE_HAVE_CUDA
extern const lpe_backend_kind lpe_cuda_backend_kind;
#endif

#ifdef __cplusplus
}
#endif

#endif
