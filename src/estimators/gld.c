/* gld.c: Gaussian logit difference (methods.md §4, GLD) as a method.
 *
 * Dimension legend: T = targets, n = activation samples (= budget), D = d_model, nb = rows of a
 *   block of the target-logit product.
 *
 * For each activation sample i and target t, m_i = l_t - max_v l_v <= 0; fit mu = mean(m),
 * sigma = std(m) (n - 1); estimate Phi(mu / sigma), computed as ln Phi (qld_core.h: lpe_log_ndtr) so
 * that it never underflows: diagnostic log10_estimate holds it even where `estimate` is 0.
 * The samples are the ones QLD uses (act_samples.h; shared by all targets, each charged n model
 * calls). max_v l_v comes from the backend's forward; l_t from the activations in float64
 * (the backend's target_logits). The two agree to float32 rounding of the logits, so m is
 * clamped at 0 where t itself is the argmax.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "act_samples.h"
#include "lpe/common.h"
#include "lpe/estimator.h"
#include "lpe/qld_core.h"

typedef struct { /* the section, typed (parsed once at load time) */
    int batch;
    int save_activations;
} gld_opts;

static void gld_parse(void *opts, const lpe_params *p) {
    gld_opts *o = opts;
    const long long n = lpe_param_int(p, "budget");
    if (n < 2 || n > 1ll << 30) lpe_params_fail(p, "budget", "gld needs 2 <= budget <= 2^30 activation samples, got %lld", n);
    o->batch = (int)lpe_param_int(p, "batch");
    o->save_activations = lpe_param_bool(p, "save_activations");
}

static void gld_run(lpe_est_out *out, const lpe_est_ctx *ctx) {
    const int T = ctx->n_targets, D = ctx->model->cfg.d_model;
    const long long n = ctx->budget;
    enum { NB = 1024 };
    const gld_opts *opt = ctx->opts;
    LPE_ASSERT(n >= 2 && n <= 1ll << 30); /* gld_parse checked the budget */

    float *act = lpe_calloc((size_t)n * D, sizeof *act);  /* [n, D] */
    float *mx = lpe_calloc((size_t)n, sizeof *mx);        /* [n] max logit */
    char label[300];
    snprintf(label, sizeof label, "gld %s: activations", ctx->dist->name);
    lpe_act_samples(act, mx, ctx, n, opt->batch, label);
    if (opt->save_activations) lpe_act_save(ctx, act, n);

    double *mem = lpe_calloc((size_t)NB * T + (size_t)n * T, sizeof *mem);
    double *lt = mem;                  /* [nb, T] target logits of a block */
    double *m = mem + (size_t)NB * T;  /* [T, n] logit differences, target-major */
    for (long long r0 = 0; r0 < n; r0 += NB) {
        int nb = (int)(n - r0 < NB ? n - r0 : NB);
        ctx->be->target_logits(ctx->be, lt, act + (size_t)r0 * D, ctx->targets, nb, T);
        for (int i = 0; i < nb; i++)
            for (int t = 0; t < T; t++) {
                double diff = lt[(size_t)i * T + t] - mx[r0 + i];
                m[(size_t)t * n + r0 + i] = diff < 0 ? diff : 0;
            }
    }

    double *dmu = lpe_est_out_diag(out, "mu");
    double *dsg = lpe_est_out_diag(out, "sigma");
    double *dl10 = lpe_est_out_diag(out, "log10_estimate");
    for (int t = 0; t < T; t++) {
        double mu, sg;
        lpe_gld_fit(&mu, &sg, m + (size_t)t * n, (int)n);
        double lg = lpe_gld_log_estimate(mu, sg);
        out->estimate[t] = exp(lg);
        out->std_error[t] = NAN;
        out->model_calls[t] = (double)n;
        dmu[t] = mu;
        dsg[t] = sg;
        dl10[t] = lg / log(10.0);
    }
    snprintf(out->note, sizeof out->note,
             "one set of %lld activation samples shared by all targets (as in the paper), each "
             "target charged %lld model calls",
             n, n);
    free(mem);
    free(mx);
    free(act);
}

static const lpe_param_spec gld_params[] = {
    {"batch", LPE_P_INT, "0", 0, 1 << 24, 0,
     "rows per backend call for the activation samples (0: the backend's batch)"},
    {"save_activations", LPE_P_BOOL, "false", 1, 0, 0,
     "write the activation samples [n, d_model] (chunked, compressed) into the results"},
    {NULL, 0, NULL, 0, 0, 0, NULL},
};

const lpe_estimator lpe_est_gld = {
    .name = "gld",
    .summary = "Gaussian logit difference: Phi(mu / sigma) of l_t - max l over budget activation samples",
    .params = gld_params,
    .backend_flags = 0,
    .opts_size = sizeof(gld_opts),
    .parse = gld_parse,
    .run = gld_run,
};
