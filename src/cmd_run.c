/* cmd_run.c: `lpe run FILE.ini [--force] [--output PATH] [--backend NAME] [--quiet]`. */
#include <stdio.h>
#include <string.h>

#include "lpe/cmd.h"
#include "lpe/common.h"
#include "lpe/estimator.h"
#include "lpe/runner.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lpe run FILE.ini [--force] [--output PATH] [--backend cpu|cuda|auto] [--shard i/N]\n"
            "               [--quiet]\n\n"
            "Runs the experiment described by FILE.ini and writes its results file (HDF5; default\n"
            "results/<FILE stem>.h5, or [experiment] output). Prints a table of the estimates\n"
            "against the truth at the end.\n\n"
            "  --force         overwrite an existing results file\n"
            "  --output PATH   results file (relative to the current directory)\n"
            "  --backend NAME  cpu, cuda or auto (overrides [experiment] backend)\n"
            "  --shard i/N     only shard i (0 <= i < N) of every distribution's chosen targets\n"
            "                  (whole blocks of the sorted list: at most 16, of at least 8\n"
            "                  targets; shards beyond them hold none); output\n"
            "                  NAME.shard-i-of-N.h5 beside the results\n"
            "                  file NAME.h5 unless --output; `lpe merge` joins the shards into\n"
            "                  the unsharded run's file (same estimates bit for bit)\n"
            "  --quiet         no progress or information lines on stderr\n\n"
            "Methods ([method NAME] sections):\n");
    for (int i = 0; i < lpe_estimator_count(); i++) {
        const lpe_estimator *e = lpe_estimator_at(i);
        fprintf(f, "  %-8s %s\n", e->name, e->summary);
        for (const lpe_param_spec *s = e->params; s && s->key; s++)
            fprintf(f, "             %s = %s%s  (%s)\n", s->key, s->def ? s->def : "(required)",
                    s->list ? " [list: sweep]" : "", s->help ? s->help : "");
    }
    fprintf(f, "  every method also takes budget = model calls per target (or [experiment] budget)\n"
               "\nThe INI format is described at the top of src/config.c; the methods in docs/methods.md.\n");
}

int lpe_cmd_run(int argc, char **argv) {
    lpe_run_opts o = {0};
    for (int a = 1; a < argc; a++) {
        const char *s = argv[a];
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            usage(stdout);
            return LPE_EXIT_OK;
        } else if (!strcmp(s, "--force") || !strcmp(s, "-f")) {
            o.force = 1;
        } else if (!strcmp(s, "--quiet") || !strcmp(s, "-q")) {
            o.quiet = 1;
        } else if (!strcmp(s, "--shard") && a + 1 < argc) {
            lpe_shard_parse(&o.shard, argv[++a], "--shard");
        } else if ((!strcmp(s, "--output") || !strcmp(s, "-o") || !strcmp(s, "--backend")) && a + 1 < argc) {
            if (!strcmp(s, "--backend"))
                o.backend = argv[++a];
            else
                o.output = argv[++a];
        } else if (s[0] == '-' && s[1]) {
            fprintf(stderr, "lpe run: unknown or incomplete option '%s'\n", s);
            usage(stderr);
            return LPE_EXIT_INPUT;
        } else if (!o.ini) {
            o.ini = s;
        } else {
            fprintf(stderr, "lpe run: one experiment file at a time ('%s' and '%s')\n", o.ini, s);
            return LPE_EXIT_INPUT;
        }
    }
    if (!o.ini) {
        usage(stderr);
        return LPE_EXIT_INPUT;
    }
    if (lpe_is_quiet()) o.quiet = 1; /* the global `lpe --quiet run` */
    if (o.quiet) lpe_set_quiet(1);
    return lpe_run_experiment(&o);
}
