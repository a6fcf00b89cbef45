/* const.c: the optimal-constant baseline (methods.md §4): the same value for every target of a
 * (model, distribution) pair, the one minimising the mean Itakura-Saito loss given the true
 * probabilities, i.e. their mean. A yardstick, not an estimator: it reads the ground truth and
 * makes no model calls. Dimension legend: T = targets. */
#include <math.h>

#include "lpe/common.h"
#include "lpe/estimator.h"

static void const_run(lpe_est_out *out, const lpe_est_ctx *ctx) {
    int T = ctx->n_targets;
    if (!ctx->true_prob) lpe_est_fail(ctx, NULL, "the optimal constant needs ground truth (truth = none)");
    double mean = 0;
    for (int t = 0; t < T; t++) mean += ctx->true_prob[t];
    mean = T > 0 ? mean / T : 0;
    for (int t = 0; t < T; t++) {
        out->estimate[t] = mean;
        out->std_error[t] = NAN;
        out->model_calls[t] = 0;
    }
}

/* declares budget itself so that no budget is demanded of it; the value is unused */
static const lpe_param_spec const_params[] = {
    {"budget", LPE_P_INT, "0", 0, 9007199254740992.0, 0, "unused: the constant makes no model calls"},
    {NULL},
};

const lpe_estimator lpe_est_const = {
    .name = "const",
    .summary = "optimal constant: the mean true probability of the targets (a baseline)",
    .params = const_params,
    .backend_flags = 0,
    .run = const_run,
};
