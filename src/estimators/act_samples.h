/* act_samples.h: the activation samples shared by QLD and GLD (methods.md §4).
 *
 * Dimension legend: n = samples (the budget), D = d_model, B = rows per backend call.
 *
 * The paper draws ONE set of activation samples per (model, distribution) and reuses it for
 * every target; so do we: samples 0 .. n-1 of stream lpe_stream(LPE_STREAM_INPUT, LPE_ACT_SLOT)
 * (a slot no target's naive stream uses: those are 1 + token id < 2^24 - 1), identical for QLD
 * and GLD and for any batch size or backend. Each target is charged n model calls: what one
 * target alone would have cost, which is the budget every method gets.
 */
#ifndef LPE_ACT_SAMPLES_H
#define LPE_ACT_SAMPLES_H

#include "lpe/estimator.h"

#define LPE_ACT_SLOT 0xffffffu

/* act [n, D] float32 final-LayerNorm outputs at the last position; max_logit [n] (may be NULL).
 * batch <= 0: the backend's max_batch. label names the progress line. */
void lpe_act_samples(float *act, float *max_logit, const lpe_est_ctx *ctx, long long n, int batch,
                     const char *label);

/* Write act [n, D] as dataset `activations` (chunked, deflate) into ctx->out_group. */
void lpe_act_save(const lpe_est_ctx *ctx, const float *act, long long n);

#endif
