/* run_shard.h: `lpe run --shard i/N`: one share of an experiment's targets (run_shard.c).
 *
 * Dimension legend: T = targets of a distribution (all chosen), TS = the shard's share.
 *
 * The targets are chosen as in an unsharded run (seeded, from the truth) and cut into NB blocks of
 * G = lpe_shard_block(T) = max(ceil(T / 16), min(T, 8)) consecutive targets (NB <= 16; e.g. 256
 * targets: 16 blocks of 16; 22 targets: 8, 8, 6); shard i of N keeps blocks
 * [i*q + min(i, r), ...) with q = NB / N, r = NB % N (the first r shards get one more), i.e. a
 * contiguous range [first, first + TS) of the sorted list (empty when N > NB). Every method's
 * random streams are keyed by the target's token id, and every method runs block by block
 * (run_blocks.h), so a shard's estimates equal the unsharded run's for the same targets bit for
 * bit; `lpe merge` (results_merge.h) puts the shards back together.
 *
 * A shard's results file is an ordinary results file for its targets, plus
 *   /                attrs: shard ("i/N")
 *   /{dist}          attrs: shard_first (first), shard_total (T), shard_fingerprint (sha256 of
 *                    all T targets and their true probabilities: shards made from different
 *                    truth files cannot be merged)
 */
#ifndef LPE_RUN_SHARD_H
#define LPE_RUN_SHARD_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int index, count; /* count 0: not sharded */
} lpe_shard;

typedef struct { /* one distribution's share (also filled, first 0, when not sharded) */
    int first, total;
    int32_t *all_targets; /* [T] copies of the full list (NULL when not sharded) */
    double *all_true_prob; /* [T] or NULL */
    char fingerprint[65];
} lpe_shard_part;

/* Targets per block: a distribution's T targets run in blocks of consecutive targets (of the full
 * list), each block through a method on its own (run_blocks.h), so that a target's batches
 * never depend on which targets a shard holds; shards are whole blocks. */
int lpe_shard_block(int T);

/* "i/N" with 0 <= i < N <= 65536; exit 2 naming `what` otherwise. */
void lpe_shard_parse(lpe_shard *s, const char *text, const char *what);
/* The default results path of a shard: "X.h5" -> "X.shard-i-of-N.h5" (only when no --output). */
void lpe_shard_output(char *path, size_t n, const lpe_shard *s, int explicit_output);
/* Keep the shard's share (whole blocks) of targets[T] (and true_prob[T], may be NULL) in place; *T becomes TS. */
void lpe_shard_take(lpe_shard_part *p, const lpe_shard *s, int32_t *targets, double *true_prob,
                    int *T);
void lpe_shard_part_free(lpe_shard_part *p);
void lpe_shard_root_attrs(hid_t file, const lpe_shard *s);
void lpe_shard_dist_attrs(hid_t dist_group, const lpe_shard *s, const lpe_shard_part *p);

#endif
