/* runner.h: `lpe run`: an experiment from its INI file to its results file.
 *
 * Dimension legend: V = d_vocab, T = targets of a distribution, NC = candidate tokens.
 *
 * Order of work (cheap checks first, so bad input fails in seconds with nothing written):
 *   config (every key, files exist) -> results file created under a temporary name (exit 2 when
 *   it exists, before any work) -> model -> all distributions and truth files loaded and checked
 *   -> per distribution: backend (one; re-created only when k changes), exact truth when asked,
 *   targets, every method run (each sweep value a run of its own) -> commit -> table on stdout.
 */
#ifndef LPE_RUNNER_H
#define LPE_RUNNER_H

#include <stdint.h>

#include "lpe/run_shard.h"

typedef struct {
    const char *ini;     /* experiment file */
    const char *output;  /* --output (NULL: from the INI) */
    const char *backend; /* --backend (NULL: from the INI) */
    int force;           /* overwrite an existing results file */
    int quiet;           /* no progress or info lines on stderr */
    lpe_shard shard;     /* --shard i/N (count 0: all targets; run_shard.h) */
} lpe_run_opts;

/* Run the experiment; returns the exit code (0). Errors exit through lpe_fail*. */
int lpe_run_experiment(const lpe_run_opts *o);

/* Targets (methods.md §5): `count` tokens uniformly at random without replacement among those with
 * prob in [p_min, p_max] (all of them when fewer), from stream LPE_STREAM_TARGETS with the
 * distribution's name hashed into the slot, so a distribution's targets do not depend on which
 * others run. out [min(count, NC)] sorted ascending; returns that number; *n_cand = NC. */
int lpe_choose_targets(int32_t *out, int *n_cand, const double *prob /* [V] */, int V,
                       double p_min, double p_max, int count, uint64_t seed, const char *dist);

#endif
