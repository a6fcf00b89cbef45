/* run_ckpt.h: checkpoints of `lpe run`: every completed (distribution, method run) is kept in
 * OUT.h5.ckpt/ until the results file is committed, so a killed experiment resumes where it was
 * (layout and rules atop src/run_ckpt.c).
 *
 * Dimension legend: T = targets of a distribution.
 */
#ifndef LPE_RUN_CKPT_H
#define LPE_RUN_CKPT_H

#include <stdint.h>

typedef struct {
    char dir[1100]; /* OUT.h5.ckpt */
    int resumed;    /* 1: an earlier run's checkpoint of the same experiment was found */
    /* the manifest's content: written with the first completed run (a run that fails to start,
     * e.g. without CUDA, leaves no checkpoint) */
    const char *config_text; /* not owned: must outlive the checkpoint */
    uint64_t seed;
    char model_sha256[65];
} lpe_run_ckpt;

/* Open (create, or find the earlier run's) checkpoint of results file `output`. Exit 2 when the
 * checkpoint belongs to another experiment, unless force (which discards it). */
void lpe_run_ckpt_open(lpe_run_ckpt *k, const char *output, const char *config_text, uint64_t seed,
                       const char *model_sha256, int force);
/* When run `run` of `dist` is checkpointed: copy it to dist_group/run (an hid_t) and return 1. The
 * targets [T] must be those it was run on (exit 2 otherwise). */
int lpe_run_ckpt_restore(const lpe_run_ckpt *k, int64_t dist_group, const char *dist,
                         const char *run, const int32_t *targets, int T);
/* Keep dist_group/run (complete, closed) with its targets [T]. */
void lpe_run_ckpt_save(const lpe_run_ckpt *k, int64_t dist_group, const char *dist,
                       const char *run, const int32_t *targets, int T);
/* Remove the checkpoint (after the results file is committed). */
void lpe_run_ckpt_remove(const lpe_run_ckpt *k);

#endif
