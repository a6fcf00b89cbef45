/* qld.c: quadratic logit decomposition (methods.md §4, QLD) as a method; the mathematics is in
 * src/qld_core.c (qld_core.h); the pair count runs on the backend (qld_pairs).
 *
 * Dimension legend: T = targets, n = activation samples (= budget), D = d_model, V = d_vocab.
 *
 * One set of n activation samples per (model, distribution), shared by all targets as in the
 * paper (act_samples.h); each target is charged n model calls. Per target: the direction (the
 * shortest accepting vector by Hildreth for `paper`, the public code's randomised projections
 * for `arc`), then the pair count over the n^2 (a_i, b_j) pairs; all targets' counts share one
 * logits product (see lpe_qld_estimate).
 *
 * Diagnostics: d_norm (|z*|, the accepting vector's length in standard deviations), feasible
 * (0: infeasibility certified, estimate 0), converged (the direction search met its stopping
 * rule), worst_margin (min over v != t of the logit margin at z*, >= 0 up to rounding when
 * feasible), iterations (Hildreth sweeps / heuristic steps), pair_count. No standard error is
 * defined for QLD (NaN). With save_activations, also `activations` [n, D] and `directions`
 * [T, D] (the unit directions d in whitened coordinates): enough to redo every count offline.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "act_samples.h"
#include "lpe/common.h"
#include "lpe/estimator.h"
#include "lpe/h5io.h"
#include "lpe/qld_core.h"

typedef struct { /* the section, typed (parsed once at load time) */
    char variant[16];   /* paper | arc, as written (the note names it) */
    int variant_id;     /* LPE_QLD_PAPER | LPE_QLD_ARC */
    int batch, count_batch, save_activations;
} qld_opts;

static void qld_parse(void *opts, const lpe_params *p) {
    qld_opts *o = opts;
    const char *variant = lpe_param_str(p, "variant");
    const long long n = lpe_param_int(p, "budget");
    if (!strcmp(variant, "paper")) o->variant_id = LPE_QLD_PAPER;
    else if (!strcmp(variant, "arc")) o->variant_id = LPE_QLD_ARC;
    else lpe_params_fail(p, "variant", "expected paper or arc, got '%s'", variant);
    if (n < 2 || n > 1ll << 30) lpe_params_fail(p, "budget", "qld needs 2 <= budget <= 2^30 activation samples, got %lld", n);
    snprintf(o->variant, sizeof o->variant, "%s", variant);
    o->batch = (int)lpe_param_int(p, "batch");
    o->count_batch = (int)lpe_param_int(p, "count_batch");
    o->save_activations = lpe_param_bool(p, "save_activations");
}

static void qld_run(lpe_est_out *out, const lpe_est_ctx *ctx) {
    const int T = ctx->n_targets, D = ctx->model->cfg.d_model, V = ctx->model->cfg.d_vocab;
    const long long n = ctx->budget;
    const qld_opts *opt = ctx->opts;
    const char *variant = opt->variant;
    LPE_ASSERT(n >= 2 && n <= 1ll << 30); /* qld_parse checked the budget */
    lpe_qld_opts o;
    lpe_qld_opts_default(&o);
    o.variant = opt->variant_id;
    o.block_rows = opt->count_batch;
    o.seed = ctx->seed;

    float *act = lpe_calloc((size_t)n * D, sizeof *act); /* [n, D] */
    char label[300];
    snprintf(label, sizeof label, "qld %s: activations", ctx->dist->name);
    lpe_act_samples(act, NULL, ctx, n, opt->batch, label);
    if (opt->save_activations) lpe_act_save(ctx, act, n);

    const int save = opt->save_activations;
    int64_t *count = lpe_calloc((size_t)T + 1, sizeof *count);   /* [T] */
    lpe_qld_dir *dir = lpe_calloc((size_t)T + 1, sizeof *dir);   /* [T] */
    double *dirs = save ? lpe_calloc((size_t)T * D + 1, sizeof *dirs) : NULL; /* [T, D] */
    /* directions etc. on the host (small next to the count); the pair count on the backend */
    lpe_qld_pairs job;
    lpe_qld_prepare(&job, dir, dirs, act, ctx->model->W_U, ctx->model->b_U, ctx->targets, T,
                    (int)n, D, V, &o);
    ctx->be->qld_pairs(ctx->be, count, &job);
    lpe_qld_finish(out->estimate, count, &job);
    lpe_qld_pairs_free(&job);
    if (save && ctx->out_group > 0) { /* with the activations, enough to redo the count */
        int64_t dims[2] = {T, D};
        lpe_h5_write((hid_t)ctx->out_group, "directions", H5T_NATIVE_DOUBLE, 2, dims, dirs, 1);
    }
    free(dirs);

    double *d_norm = lpe_est_out_diag(out, "d_norm");
    double *feasible = lpe_est_out_diag(out, "feasible");
    double *converged = lpe_est_out_diag(out, "converged");
    double *worst = lpe_est_out_diag(out, "worst_margin");
    double *iters = lpe_est_out_diag(out, "iterations");
    double *pairs = lpe_est_out_diag(out, "pair_count");
    for (int t = 0; t < T; t++) {
        out->std_error[t] = NAN;
        out->model_calls[t] = (double)n;
        d_norm[t] = dir[t].norm;
        feasible[t] = dir[t].status != LPE_QLD_INFEASIBLE;
        converged[t] = dir[t].status == LPE_QLD_OPTIMAL;
        worst[t] = dir[t].worst_margin;
        iters[t] = (double)dir[t].iterations;
        pairs[t] = (double)count[t];
    }
    snprintf(out->note, sizeof out->note,
             "variant=%s; one set of %lld activation samples shared by all targets (as in the "
             "paper), each target charged %lld model calls",
             variant, n, n);
    free(dir);
    free(count);
    free(act);
}

static const lpe_param_spec qld_params[] = {
    {"variant", LPE_P_STRING, "paper", 1, 0, 1,
     "paper: methods.md §4's definition | arc: the public code's three deviations"},
    {"batch", LPE_P_INT, "0", 0, 1 << 24, 0,
     "rows per backend call for the activation samples (0: the backend's batch)"},
    {"count_batch", LPE_P_INT, "512", 1, 1 << 20, 0, "logits rows per block of the pair count"},
    {"save_activations", LPE_P_BOOL, "false", 1, 0, 0,
     "write the activation samples [n, d_model] (chunked, compressed) into the results"},
    {NULL, 0, NULL, 0, 0, 0, NULL},
};

const lpe_estimator lpe_est_qld = {
    .name = "qld",
    .summary = "quadratic logit decomposition over budget activation samples (variant paper|arc)",
    .params = qld_params,
    .backend_flags = 0,
    .opts_size = sizeof(qld_opts),
    .parse = qld_parse,
    .run = qld_run,
};
