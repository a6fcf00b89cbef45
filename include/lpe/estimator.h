/* estimator.h: the method interface. Adding a method = one file in src/estimators/ and one
 * entry in src/estimators/registry.c.
 *
 * Dimension legend: T = number of targets of a distribution, B = batch rows.
 *
 * A method gets ALL targets of one (model, distribution) at once and advances them together
 * through the backend in large batches (rows of one batch may belong to different targets).
 * It fills one estimate per target plus named per-target diagnostics; the runner writes them to
 * /{dist}/{method}/ of the results file. Large optional outputs (chains, activations) are written
 * by the method itself into `out_group` (an HDF5 group id, chunked and compressed via h5io.h).
 *
 * Options: a method declares its keys (lpe_param_spec: validation, defaults and --help) and its
 * own typed options struct; parse() reads the keys into that struct ONCE per (run, distribution)
 * when the experiment is loaded (config_runs.c), and run() reads only ctx->opts: no key is looked
 * up by name while a method runs.
 */
#ifndef LPE_ESTIMATOR_H
#define LPE_ESTIMATOR_H

#include <stddef.h>
#include <stdint.h>

#include "lpe/backend.h"
#include "lpe/dist.h"
#include "lpe/model.h"
#include "lpe/params.h"

#define LPE_MAX_DIAG 16

typedef struct {
    const lpe_model *model;
    const lpe_dist *dist;
    lpe_backend *be;          /* created by the runner with the flags the method asked for */
    const int32_t *targets;   /* [T] */
    const double *true_prob;  /* [T] or NULL (only the optimal constant may use it) */
    int n_targets;            /* T */
    uint64_t seed;            /* the experiment seed (streams separate methods and targets) */
    long long budget;         /* model calls per target */
    const void *opts;         /* the method's typed options for this run and distribution: what
                               * its parse() made of its section at load time (NULL: none) */
    int64_t out_group;        /* HDF5 group for optional large outputs (hid_t) */
    /* Bad input that shows only at run time (it needs the backend, or the truth): the caller
     * reports "FILE:LINE: [section] key: msg" and exits 2. NULL: "key: msg", exit 2. */
    void (*fail)(const void *where, const char *key, const char *msg);
    const void *where;
} lpe_est_ctx;

typedef struct {
    const char *name;  /* dataset name under /{dist}/{method}/ */
    double *v;         /* [T] */
} lpe_diag;

typedef struct {
    int n_targets;
    double *estimate;     /* [T] */
    double *std_error;    /* [T]; NaN where not defined */
    double *model_calls;  /* [T] forward (+backward) passes spent on each target */
    int n_diag;
    lpe_diag diag[LPE_MAX_DIAG];
    char note[256];       /* free text recorded as an attribute (e.g. "variant=arc") */
} lpe_est_out;

typedef struct {
    const char *name;               /* section [method NAME] and results group name */
    const char *summary;            /* one line for --help */
    const lpe_param_spec *params;   /* accepted keys; terminated by {NULL} */
    int backend_flags;              /* LPE_BE_GRAD / LPE_BE_STATE needed */
    size_t opts_size;               /* bytes of the method's typed options (0: none) */
    /* Once per (run, distribution), at load time: the section's resolved single values (sweeps
     * picked, `key[dist]` applied) into opts. May exit 2 through lpe_params_fail for checks only
     * the method can make, so they name FILE:LINE before any work. NULL when opts_size is 0. */
    void (*parse)(void *opts, const lpe_params *p);
    void (*run)(lpe_est_out *out, const lpe_est_ctx *ctx);
} lpe_estimator;

/* Registry (src/estimators/registry.c). */
const lpe_estimator *lpe_estimator_find(const char *name);
int lpe_estimator_count(void);
const lpe_estimator *lpe_estimator_at(int i);

/* Result helpers: allocate for T targets; add a named diagnostic (returns its array [T]). */
void lpe_est_out_init(lpe_est_out *o, int n_targets);
double *lpe_est_out_diag(lpe_est_out *o, const char *name);
void lpe_est_out_free(lpe_est_out *o);
/* Exit 2 through ctx->fail: "FILE:LINE: [section] key: <message>" (key may be NULL). */
#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 3, 4)))
#endif
void lpe_est_fail(const lpe_est_ctx *ctx, const char *key, const char *fmt, ...);

#endif
