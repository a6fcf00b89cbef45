/* est_out.c: the per-target result of a method (estimator.h): estimate, standard error, model
 * calls, and up to LPE_MAX_DIAG named diagnostics, each an array over the T targets.
 *
 * Dimension legend: T = number of targets.
 * One allocation per result: 3 + LPE_MAX_DIAG arrays of T doubles, carved in order. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/estimator.h"

void lpe_est_out_init(lpe_est_out *o, int n_targets) {
    memset(o, 0, sizeof *o);
    o->n_targets = n_targets;
    size_t T = n_targets > 0 ? (size_t)n_targets : 1;
    double *mem = lpe_calloc((3 + LPE_MAX_DIAG) * T, sizeof *mem); /* [3 + LPE_MAX_DIAG, T] */
    o->estimate = mem;
    o->std_error = mem + T;
    o->model_calls = mem + 2 * T;
    /* not defined until a method says so */
    for (int t = 0; t < n_targets; t++) o->std_error[t] = NAN;
}

double *lpe_est_out_diag(lpe_est_out *o, const char *name) {
    for (int i = 0; i < o->n_diag; i++)
        if (strcmp(o->diag[i].name, name) == 0) return o->diag[i].v;
    if (o->n_diag >= LPE_MAX_DIAG) lpe_fail("internal: more than %d diagnostics (%s)", LPE_MAX_DIAG, name);
    size_t T = o->n_targets > 0 ? (size_t)o->n_targets : 1;
    lpe_diag *d = &o->diag[o->n_diag];
    d->name = name;
    d->v = o->estimate + (3 + (size_t)o->n_diag) * T;
    o->n_diag++;
    return d->v;
}

void lpe_est_out_free(lpe_est_out *o) {
    free(o->estimate);
    memset(o, 0, sizeof *o);
}

void lpe_est_fail(const lpe_est_ctx *ctx, const char *key, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ctx->fail) ctx->fail(ctx->where, key, msg); /* does not return */
    lpe_fail_input("%s%s%s", key ? key : "", key ? ": " : "", msg);
}
