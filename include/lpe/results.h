/* results.h: the results file of an experiment (methods.md §8), written atomically; every group,
 * dataset and attribute below is written by src/results.c (the runner hands it the values).
 *
 * Dimension legend: T = targets of a distribution.
 *
 * Layout (format_version LPE_RESULTS_FORMAT_VERSION):
 *   /                      attrs: config (INI text, verbatim), ini_path, lpe_version, backend,
 *                          device, created (ISO 8601 UTC), format_version, model_sha256, model,
 *                          distributions, seed
 *   /{dist}/targets        int32 [T], sorted
 *   /{dist}/true_prob      float64 [T] (absent when truth = none)
 *   /{dist}                attrs: distribution_sha256, k, input_space, truth (file, exact or
 *                          none), truth_n_samples, truth_exact, p_min, p_max, target_seed,
 *                          n_candidates (tokens with truth in [p_min, p_max]), n_targets
 *   /{dist}/{run}/         run = method name, or "method@key=value[,key=value]" for a sweep
 *     estimate, std_error, model_calls    float64 [T]
 *     <diagnostic>                        float64 [T] each (method-defined names)
 *     attrs: method, sweep ("" or "key=value,..."), note, every resolved parameter under its
 *            own key, and timing: seconds (wall, all targets together), seconds_per_target.
 * Timing lives only in the attributes whose names start with "seconds" (and root `created`):
 * everything else is a pure function of the inputs and the seed.
 */
#ifndef LPE_RESULTS_H
#define LPE_RESULTS_H

#include <hdf5.h>
#include <stdint.h>

#include "lpe/backend.h"
#include "lpe/config.h"
#include "lpe/dist.h"
#include "lpe/estimator.h"
#include "lpe/h5io.h"
#include "lpe/params.h"

#define LPE_RESULTS_FORMAT_VERSION 1

/* Create the file under a temporary name (parent directories made). Exit 2 if it exists and
 * !force: call this before any expensive work. */
void lpe_results_create(lpe_h5_out *o, const char *path, int force);
/* Root attributes that do not depend on the backend. */
void lpe_results_root(hid_t file, const char *config_text, const char *ini_path,
                      const char *model_path, const char *model_sha256, const char *dists_path,
                      uint64_t seed);
void lpe_results_backend(hid_t file, const lpe_backend *be);
/* How a distribution's targets and truth were found: the attributes of /{dist}. */
typedef struct {
    const char *truth;         /* file | exact | none */
    char truth_path[1024];     /* "" unless truth = file */
    long long truth_n_samples; /* -1: not recorded (truth = none) */
    int truth_exact;
    double p_min, p_max;
    uint64_t target_seed;
    int n_candidates;          /* -1 for an explicit list */
} lpe_results_dist_info;

/* /{dist} with its targets (and true_prob when not NULL) and every attribute of the layout
 * above; returns the open group. */
hid_t lpe_results_dist(hid_t file, const lpe_dist *dist, const int32_t *targets /* [T] */,
                       const double *true_prob /* [T] or NULL */, int T,
                       const lpe_results_dist_info *info);
/* Write run r's result for distribution `dist` into its group (created by the caller, who gave
 * it to the method as out_group): datasets, the resolved parameters and timing attributes. */
void lpe_results_method(hid_t group, const lpe_run_cfg *r, const char *dist, const lpe_est_out *o,
                        double seconds);

#endif
