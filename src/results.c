/* results.c: writing the results file (layout in results.h). Dimension legend: T = targets. */
#include "lpe/results.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "lpe/common.h"
#include "lpe/output_guard.h"

void lpe_results_create(lpe_h5_out *o, const char *path, int force) {
    struct stat st;
    if (stat(path, &st) == 0 && !force)
        lpe_fail_input("%s: exists already (use --force to overwrite)", path);
    lpe_output_make_parents(path);
    lpe_h5_create(o, path, force);
}

void lpe_results_root(hid_t file, const char *config_text, const char *ini_path,
                      const char *model_path, const char *model_sha256, const char *dists_path,
                      uint64_t seed) {
    char created[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    lpe_h5_attr_str(file, "config", config_text);
    lpe_h5_attr_str(file, "ini_path", ini_path);
    lpe_h5_attr_str(file, "lpe_version", lpe_version());
    lpe_h5_attr_str(file, "created", created);
    lpe_h5_attr_int(file, "format_version", LPE_RESULTS_FORMAT_VERSION);
    lpe_h5_attr_str(file, "model", model_path);
    lpe_h5_attr_str(file, "model_sha256", model_sha256);
    lpe_h5_attr_str(file, "distributions", dists_path);
    lpe_h5_attr_int(file, "seed", (long long)seed);
}

void lpe_results_backend(hid_t file, const lpe_backend *be) {
    lpe_h5_attr_str(file, "backend", be->name);
    lpe_h5_attr_str(file, "device", be->device);
}

hid_t lpe_results_dist(hid_t file, const lpe_dist *dist, const int32_t *targets,
                       const double *true_prob, int T, const lpe_results_dist_info *info) {
    hid_t g = lpe_h5_group(file, dist->name);
    lpe_h5_write_i32(g, "targets", targets, T);
    if (true_prob) lpe_h5_write_f64(g, "true_prob", true_prob, T);
    lpe_h5_attr_int(g, "n_targets", T);
    lpe_h5_attr_str(g, "distribution_sha256", dist->sha256);
    lpe_h5_attr_int(g, "k", dist->k);
    lpe_h5_attr_double(g, "input_space", (double)lpe_dist_enum_size(dist));
    lpe_h5_attr_str(g, "truth", info->truth);
    if (info->truth_path[0]) lpe_h5_attr_str(g, "truth_path", info->truth_path);
    if (info->truth_n_samples >= 0) {
        lpe_h5_attr_int(g, "truth_n_samples", info->truth_n_samples);
        lpe_h5_attr_int(g, "truth_exact", info->truth_exact);
    }
    lpe_h5_attr_double(g, "p_min", info->p_min);
    lpe_h5_attr_double(g, "p_max", info->p_max);
    lpe_h5_attr_int(g, "target_seed", (long long)info->target_seed);
    lpe_h5_attr_int(g, "n_candidates", info->n_candidates);
    return g;
}

void lpe_results_method(hid_t g, const lpe_run_cfg *r, const char *dist, const lpe_est_out *o,
                        double seconds) {
    const lpe_params *p = &r->params;
    const char *method = r->mc->name, *sweep = r->sweep;
    int T = o->n_targets;
    lpe_h5_write_f64(g, "estimate", o->estimate, T);
    lpe_h5_write_f64(g, "std_error", o->std_error, T);
    lpe_h5_write_f64(g, "model_calls", o->model_calls, T);
    for (int i = 0; i < o->n_diag; i++) lpe_h5_write_f64(g, o->diag[i].name, o->diag[i].v, T);
    /* resolved parameters, typed */
    for (int i = 0; i < p->n; i++) {
        const lpe_param_spec *s = p->spec[i];
        const lpe_param_value *v = lpe_run_param_value(r, i, dist); /* `key[dist]` applied */
        if (v->n == 0) continue; /* optional, unset */
        if (v->n > 1) { /* a list the method keeps whole (not a sweep): its text */
            lpe_h5_attr_str(g, s->key, v->str);
            continue;
        }
        switch (s->type) {
        case LPE_P_INT:
        case LPE_P_BOOL: lpe_h5_attr_int(g, s->key, (long long)v->num[0]); break;
        case LPE_P_DOUBLE: lpe_h5_attr_double(g, s->key, v->num[0]); break;
        default: lpe_h5_attr_str(g, s->key, v->str); break;
        }
    }
    lpe_h5_attr_str(g, "method", method);
    lpe_h5_attr_str(g, "sweep", sweep ? sweep : "");
    lpe_h5_attr_str(g, "note", o->note);
    lpe_h5_attr_double(g, "seconds", seconds);
    lpe_h5_attr_double(g, "seconds_per_target", T > 0 ? seconds / T : 0.0);
}
