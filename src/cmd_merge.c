/* cmd_merge.c: `lpe merge OUT.h5 SHARD.h5... [--force]`: the shards of `lpe run --shard i/N`
 * joined into one results file (the work and its checks: results_merge.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/cmd.h"
#include "lpe/common.h"
#include "lpe/results_merge.h"

static const char *usage_text =
    "usage: lpe merge OUT.h5 SHARD.h5 [SHARD.h5 ...] [--force]\n"
    "\n"
    "Joins the results files of `lpe run FILE.ini --shard i/N` (i = 0 .. N-1) into one results\n"
    "file equal to the unsharded run's, apart from timing attributes (seconds: summed) and the\n"
    "order of MHIS chain records; the evaluation is recomputed over all targets. Refuses (exit 2)\n"
    "shards of different experiments (config, model, distributions, truth or seed differ),\n"
    "overlapping shards and missing ones. OUT.h5 is written atomically and never overwritten\n"
    "unless --force. (Ground-truth shards: `lpe truth merge`.)\n";

int lpe_cmd_merge(int argc, char **argv) {
    const char *out = NULL;
    const char **in = lpe_calloc((size_t)argc + 1, sizeof *in);
    int n_in = 0, force = 0;
    for (int a = 1; a < argc; a++) {
        const char *s = argv[a];
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            fputs(usage_text, stdout);
            free(in);
            return LPE_EXIT_OK;
        } else if (!strcmp(s, "--force") || !strcmp(s, "-f")) {
            force = 1;
        } else if (s[0] == '-' && s[1]) {
            fprintf(stderr, "lpe merge: unknown option '%s'\n%s", s, usage_text);
            free(in);
            return LPE_EXIT_INPUT;
        } else if (!out) {
            out = s;
        } else {
            in[n_in++] = s;
        }
    }
    if (!out || n_in < 1) {
        fprintf(stderr, "lpe merge: expected OUT.h5 and at least one shard\n%s", usage_text);
        free(in);
        return LPE_EXIT_INPUT;
    }
    for (int i = 0; i < n_in; i++)
        if (!strcmp(in[i], out))
            lpe_fail_input("lpe merge: %s is both the output and a shard", out);
    lpe_results_merge(out, in, n_in, force);
    printf("merged %d shard%s -> %s\n", n_in, n_in == 1 ? "" : "s", out);
    free(in);
    return LPE_EXIT_OK;
}
