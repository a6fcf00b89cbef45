/* act_samples.c: drawing and saving the activation samples of QLD and GLD (act_samples.h).
 * Dimension legend: n = samples, D = d_model, B = rows per backend call. */
#include "act_samples.h"

#include <hdf5.h>
#include <stdio.h>

#include "lpe/common.h"
#include "lpe/h5io.h"
#include "lpe/philox.h"

void lpe_act_samples(float *act, float *max_logit, const lpe_est_ctx *ctx, long long n, int batch,
                     const char *label) {
    lpe_backend *be = ctx->be;
    const int D = ctx->model->cfg.d_model;
    int Bmax = batch > 0 && batch < be->max_batch ? batch : be->max_batch;
    LPE_ASSERT(Bmax > 0 && be->k == ctx->dist->k);
    const uint32_t stream = lpe_stream(LPE_STREAM_INPUT, LPE_ACT_SLOT);
    lpe_progress prog;
    lpe_progress_begin(&prog, label);
    for (long long r0 = 0; r0 < n; r0 += Bmax) {
        int B = (int)(n - r0 < Bmax ? n - r0 : Bmax);
        be->sample_tokens(be, ctx->seed, stream, (uint64_t)r0, B);
        lpe_fwd_out fo = {.act = act + (size_t)r0 * D,
                          .max_logit = max_logit ? max_logit + r0 : NULL};
        be->forward(be, &fo, NULL, B, 0);
        lpe_progress_update(&prog, (double)(r0 + B), (double)n, "calls");
    }
    lpe_progress_end(&prog);
}

void lpe_act_save(const lpe_est_ctx *ctx, const float *act, long long n) {
    if (ctx->out_group <= 0) {
        lpe_warn("save_activations: no output group to write to; activations not saved");
        return;
    }
    int64_t dims[2] = {n, ctx->model->cfg.d_model};
    lpe_h5_write((hid_t)ctx->out_group, "activations", H5T_NATIVE_FLOAT, 2, dims, act, 1);
}
