/* run_guard.c: `lpe run`'s output guard (output_guard.h) with the experiment's inputs: the INI,
 * the model, the distribution file and every ground-truth file. */
#include "lpe/run_guard.h"

#include <stdlib.h>

#include "lpe/common.h"
#include "lpe/output_guard.h"

void lpe_run_guard(const lpe_config *c) {
    int n = 3 + (c->truth_kind == LPE_TRUTH_FILE ? c->n_names : 0);
    char (*truth)[LPE_PATH_MAX] = lpe_calloc((size_t)n, sizeof *truth);
    const char **in = lpe_calloc((size_t)n, sizeof *in);
    in[0] = c->ini_path;
    in[1] = c->model;
    in[2] = c->dists;
    for (int i = 3; i < n; i++) {
        lpe_config_truth_path(truth[i], LPE_PATH_MAX, c, c->names[i - 3]);
        in[i] = truth[i];
    }
    lpe_output_make_parents(c->output); /* the default results/ may not exist yet */
    lpe_output_guard(c->output, in, n);
    free(in);
    free(truth);
}
