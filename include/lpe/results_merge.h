/* results_merge.h: `lpe merge OUT.h5 SHARD.h5...`: one results file from the shards of a sharded
 * experiment (`lpe run --shard i/N`, run_shard.h), equal to the unsharded run's file apart from
 * timing attributes (seconds, seconds_per_target: summed over the shards; created: the first
 * shard's) and the order of MHIS chain records (the same records, shard after shard).
 *
 * Dimension legend: T = all targets of a distribution, TS = one shard's share.
 *
 * Checks, each an input error (exit 2) naming the files, before anything is written:
 *   same experiment: root config, model, model_sha256, distributions, seed, format_version, and
 *     per distribution distribution_sha256, truth attributes, shard_total and shard_fingerprint
 *     (the full target list and its truth) agree; every shard holds the same runs;
 *   no overlap: no shard given twice, no target in two shards;
 *   no gap: the shards' blocks cover all T targets of every distribution.
 * Per run, datasets are joined along their first axis in target order ([TS, ...] each), except
 * `activations` (QLD/GLD: one sample set shared by all targets, identical in every shard: checked
 * and copied once) and chains/... (concatenated). The evaluation (eval.h) is recomputed over all
 * targets. The output is written under a temporary name and renamed; an existing OUT.h5 is an
 * error unless force.
 */
#ifndef LPE_RESULTS_MERGE_H
#define LPE_RESULTS_MERGE_H

void lpe_results_merge(const char *out_path, const char *const *in, int n_in, int force);

#endif
