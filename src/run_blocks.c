/* run_blocks.c: a method run block by block (run_blocks.h). Dimension legend: TS = the run's
 * targets, n = one block's targets. */
#include "lpe/run_blocks.h"

#include <stdio.h>
#include <string.h>

#include "lpe/common.h"

/* one call's results [n] into out at target offset t0 */
static void put(lpe_est_out *out, const lpe_est_out *o, int t0) {
    size_t n = sizeof(double) * (size_t)o->n_targets;
    memcpy(out->estimate + t0, o->estimate, n);
    memcpy(out->std_error + t0, o->std_error, n);
    memcpy(out->model_calls + t0, o->model_calls, n);
    for (int i = 0; i < o->n_diag; i++)
        memcpy(lpe_est_out_diag(out, o->diag[i].name) + t0, o->diag[i].v, n);
    snprintf(out->note, sizeof out->note, "%s", o->note);
}

/* est on targets [t0, t0 + n) of ctx's */
static void run_part(const lpe_estimator *est, lpe_est_out *out, const lpe_est_ctx *ctx, int t0,
                     int n) {
    lpe_est_ctx sub = *ctx;
    sub.targets = ctx->targets + t0;
    sub.true_prob = ctx->true_prob ? ctx->true_prob + t0 : NULL;
    sub.n_targets = n;
    lpe_est_out o;
    lpe_est_out_init(&o, n);
    est->run(&o, &sub);
    put(out, &o, t0);
    lpe_est_out_free(&o);
}

void lpe_run_blocks(const lpe_estimator *est, lpe_est_out *out, const lpe_est_ctx *ctx,
                    const lpe_shard_part *p) {
    const int TS = ctx->n_targets;
    const int whole = !strcmp(est->name, "qld") || !strcmp(est->name, "gld") ||
                      (!strcmp(est->name, "const") && !p->all_targets);
    if (whole || TS == 0) {
        est->run(out, ctx);
        return;
    }
    if (!strcmp(est->name, "const") && p->all_targets) { /* over all targets, then the share */
        lpe_est_ctx all = *ctx;
        all.targets = p->all_targets;
        all.true_prob = p->all_true_prob;
        all.n_targets = p->total;
        lpe_est_out o;
        lpe_est_out_init(&o, p->total);
        est->run(&o, &all);
        o.n_targets = TS; /* the share: entries [first, first + TS) */
        lpe_est_out shifted = o;
        shifted.estimate = o.estimate + p->first;
        shifted.std_error = o.std_error + p->first;
        shifted.model_calls = o.model_calls + p->first;
        for (int i = 0; i < o.n_diag; i++) shifted.diag[i].v = o.diag[i].v + p->first;
        put(out, &shifted, 0);
        o.n_targets = p->total;
        lpe_est_out_free(&o);
        return;
    }
    const int G = lpe_shard_block(p->total);
    for (int t0 = 0; t0 < TS;) {
        int g = p->first + t0; /* index in the full list; a block ends at a multiple of G */
        int n = G - g % G;
        if (n > TS - t0) n = TS - t0;
        run_part(est, out, ctx, t0, n);
        t0 += n;
    }
}
