/* main.c: `lpe` subcommand dispatch, nothing else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lpe/cmd.h"
#include "lpe/common.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"run", lpe_cmd_run, "run an experiment (INI file) and write its results file"},
    {"merge", lpe_cmd_merge, "one results file from the shards of `lpe run --shard i/N`"},
    {"truth", lpe_cmd_truth, "ground truth: argmax counts by sampling (shards, resume) or exact"},
    {"forward", lpe_cmd_forward, "one input through the model: argmax, top logits, scores (JSON)"},
    {"model", lpe_cmd_model, "model files: init (random model of any shape)"},
    {"dist", lpe_cmd_dist, "distribution files: random, show"},
    {"info", lpe_cmd_info, "describe a model, distribution, ground-truth or results file"},
    {"report", lpe_cmd_report, "evaluation tables from results files (markdown or CSV)"},
    {"bench", lpe_cmd_bench, "throughput of the backends beside this machine's sgemm rate"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "lpe %s: low-probability estimation for small transformers\n\n", lpe_version());
    fprintf(f, "usage: lpe [--quiet] COMMAND [ARGS]   (lpe COMMAND --help for details)\n\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nexit codes: 0 success, 1 failure at run time, 2 bad usage or input\n");
}

int main(int argc, char **argv) {
    /* OpenMP threads that spin while waiting lose whole scheduler slices when the cores are
     * shared (CI, a busy workstation: measured 30x slower on a small model); sleeping costs
     * little when they are not. libgomp reads the policy when it is loaded, before main, so the
     * default is set by running ourselves again once. OMP_WAIT_POLICY=active restores spinning.
     * LPE_NO_REEXEC=1 (or any OMP_WAIT_POLICY) skips the re-exec: valgrind cannot follow it. */
    if (!getenv("OMP_WAIT_POLICY") && !getenv("LPE_NO_REEXEC")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv); /* returns only on failure: then carry on as we are */
    }
    int a = 1;
    for (; a < argc && argv[a][0] == '-'; a++) {
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[a], "--version")) {
            printf("lpe %s\n", lpe_version());
            return 0;
        } else if (!strcmp(argv[a], "--quiet") || !strcmp(argv[a], "-q")) {
            lpe_set_quiet(1);
        } else {
            fprintf(stderr, "lpe: unknown option '%s'\n", argv[a]);
            usage(stderr);
            return LPE_EXIT_INPUT;
        }
    }
    if (a >= argc) {
        usage(stderr);
        return LPE_EXIT_INPUT;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[a], commands[i].name)) return commands[i].fn(argc - a, argv + a);
    fprintf(stderr, "lpe: unknown command '%s'\n", argv[a]);
    usage(stderr);
    return LPE_EXIT_INPUT;
}
