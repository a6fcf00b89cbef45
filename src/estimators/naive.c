/* naive.c: naive sampling (methods.md §4): n = budget inputs from D per target; estimate hits / n.
 *
 * Dimension legend: T = targets, n = budget (samples per target), B = rows of one backend call
 *   (<= be->max_batch), k = positions.
 *
 * Honest budgets: every target gets its own n independent samples (one model call each), even
 * though all targets share D and one common sample set would be cheaper; the point is to measure
 * what n calls buy one target. Target i draws samples 0 .. n-1 of stream
 * lpe_stream(LPE_STREAM_INPUT, 1 + targets[i]) (slot 0 is the ground truth's stream), so its
 * estimate depends on the seed and its own token id only, not on the other targets.
 *
 * All targets advance together: the T*n (target, sample) rows are cut into batches of B rows in
 * target-major order, so one batch may carry the tails and heads of several targets. A batch
 * within one target is drawn by the backend itself (on a GPU: on the device); a batch spanning
 * targets is drawn on the host, one contiguous sample range per target, and uploaded.
 *
 * std_error = sqrt(p (1 - p) / n) (binomial; 0 when there are no hits: see diagnostic `hits`).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/estimator.h"
#include "lpe/philox.h"

static uint32_t naive_stream(int32_t target) { return lpe_stream(LPE_STREAM_INPUT, 1u + (uint32_t)target); }

/* Rows r0 .. r0+B-1 of the T*n (target-major) rows were the last forward's: their argmax goes to
 * the backend's histogram one target's stretch at a time, and when a target's last row is in,
 * the histogram comes to the host (argmax_hist_take; hist [V] scratch) and hits[t] is its bin
 * of targets[t]. One copy of V counts per target instead of B argmax per batch. */
static void count_hits(double *hits, uint64_t *hist, lpe_backend *be, const lpe_est_ctx *ctx,
                       uint64_t r0, int B, uint64_t n) {
    for (uint64_t r = r0; r < r0 + (uint64_t)B;) {
        int t = (int)(r / n);
        uint64_t stop = (uint64_t)(t + 1) * n; /* the target's rows end here */
        uint64_t e = stop < r0 + (uint64_t)B ? stop : r0 + (uint64_t)B;
        be->argmax_hist_add(be, (int)(r - r0), (int)(e - r0));
        if (e == stop) {
            memset(hist, 0, (size_t)be->model->cfg.d_vocab * sizeof *hist);
            be->argmax_hist_take(be, hist);
            hits[t] = (double)hist[ctx->targets[t]];
        }
        r = e;
    }
}

static void naive_run(lpe_est_out *out, const lpe_est_ctx *ctx) {
    lpe_backend *be = ctx->be;
    const lpe_dist *d = ctx->dist;
    int T = ctx->n_targets, k = d->k, Bmax = be->max_batch;
    uint64_t n = (uint64_t)ctx->budget;
    LPE_ASSERT(be->k == k && Bmax > 0);

    int32_t *tokens = lpe_calloc((size_t)Bmax * (size_t)k, sizeof *tokens); /* [B, k] host draws */
    uint64_t *hist = lpe_calloc((size_t)be->model->cfg.d_vocab, sizeof *hist); /* [V] */
    double *hits = lpe_est_out_diag(out, "hits");                            /* [T] */

    char label[300];
    snprintf(label, sizeof label, "naive %s", d->name);
    lpe_progress prog;
    lpe_progress_begin(&prog, label);
    uint64_t total = (uint64_t)T * n;
    for (uint64_t r0 = 0; r0 < total; r0 += (uint64_t)Bmax) {
        int B = (int)(total - r0 < (uint64_t)Bmax ? total - r0 : (uint64_t)Bmax);
        int t0 = (int)(r0 / n), t1 = (int)((r0 + (uint64_t)B - 1) / n); /* targets in the batch */
        if (t0 == t1) {
            be->sample_tokens(be, ctx->seed, naive_stream(ctx->targets[t0]), r0 % n, B);
        } else {
            for (uint64_t r = r0; r < r0 + (uint64_t)B;) {
                int t = (int)(r / n);
                uint64_t first = r % n, len = n - first;
                if (len > r0 + (uint64_t)B - r) len = r0 + (uint64_t)B - r;
                lpe_dist_sample(tokens + (size_t)(r - r0) * (size_t)k, d, ctx->seed,
                                naive_stream(ctx->targets[t]), first, (int)len);
                r += len;
            }
            be->load_tokens(be, tokens, B);
        }
        be->forward(be, NULL, NULL, B, 0);
        count_hits(hits, hist, be, ctx, r0, B, n);
        lpe_progress_update(&prog, (double)(r0 + (uint64_t)B), (double)total, "calls");
    }
    lpe_progress_end(&prog);

    for (int t = 0; t < T; t++) {
        double p = hits[t] / (double)n;
        out->estimate[t] = p;
        out->std_error[t] = sqrt(p * (1 - p) / (double)n);
        out->model_calls[t] = (double)n;
    }
    free(tokens);
    free(hist);
}

static const lpe_param_spec naive_params[] = {{NULL}};

const lpe_estimator lpe_est_naive = {
    .name = "naive",
    .summary = "naive sampling: hits / n over n = budget inputs from D per target",
    .params = naive_params,
    .backend_flags = 0,
    .run = naive_run,
};
