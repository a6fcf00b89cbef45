/* truth.h: ground truth for a (model, distribution) pair (methods.md §5, file contract methods.md §8).
 *
 * Dimension legend: V = d_vocab, B = batch rows, k = positions, R = sample ranges.
 *
 * Sampled truth: sample number n is the pure function of (seed, LPE_TRUTH_STREAM, n) drawn by
 * backend->sample_tokens (dist.h, philox.h), and its argmax is counted. So any set of disjoint
 * sample ranges can be computed separately (shards, a resumed checkpoint) and the counts add up
 * bit for bit to one run over their union. Batches are aligned to multiples of the batch size
 * in absolute sample numbers, so a shard or a resumed run feeds the backend the same batches as
 * an uninterrupted run wherever the ranges allow it.
 *
 * Exact truth: every input of D is enumerated (lpe_dist_enum_decode order) and its probability
 * p(x) = prod_j p_j(x_j) is added to the probability of its argmax, with compensated summation.
 *
 * Ground-truth file (HDF5, methods.md §8):
 *   counts   uint64 [V]       argmax counts (sampled files only)
 *   probs    float64 [V]      exact probabilities (exact files only)
 *   ranges   uint64 [R, 2]    sample numbers [a, b) counted, sorted and disjoint (sampled files)
 *   root attributes: n_samples (samples counted, or inputs enumerated when exact), exact (0/1),
 *   model_sha256, distribution (name), distribution_sha256, seed, stream, d_vocab, k,
 *   format_version, lpe_version, created.
 * A checkpoint file (OUT.h5.ckpt) is a sampled ground-truth file with one range [first, next)
 * and the attribute checkpoint_end: the end of the range the run was asked for.
 */
#ifndef LPE_TRUTH_H
#define LPE_TRUTH_H

#include <stdint.h>

#include "lpe/backend.h"
#include "lpe/dist.h"
#include "lpe/model.h"

#define LPE_TRUTH_FORMAT_VERSION 1
#define LPE_TRUTH_EXACT_LIMIT (1ull << 24) /* default largest input space enumerated */
#define LPE_TRUTH_STREAM_SLOT 0            /* stream = lpe_stream(LPE_STREAM_INPUT, 0) */
/* Shard boundaries are multiples of this many samples. A backend row is bit-identical across
 * runs only for the same batch size and row position (BLAS kernels are chosen by shape), so
 * shards run with a batch size dividing it (any power of two up to it; the default 1024) feed
 * the backend exactly the unsharded run's batches, and their counts add up to it bit for bit.
 * Other batch sizes can differ by float rounding, which moves an argmax only at exact near-ties. */
#define LPE_TRUTH_SHARD_BLOCK 4096u

typedef struct {
    int d_vocab;            /* V */
    int k;                  /* positions of the distribution */
    int exact;              /* 1: probs are exact; counts and ranges absent */
    uint64_t n_samples;     /* samples counted, or inputs enumerated (exact) */
    uint64_t seed;          /* < 2^63 (stored as a signed 64-bit attribute); 0 for exact */
    char model_sha256[65];
    char dist_name[256];
    char dist_sha256[65];
    int n_ranges;           /* R */
    uint64_t *ranges;       /* [R, 2] sample numbers [a, b), sorted, disjoint; NULL when exact */
    uint64_t *counts;       /* [V] argmax counts; NULL when exact */
    double *probs;          /* [V] exact probabilities, or counts / n_samples (filled by read) */
} lpe_truth;

/* Options of the two runners. Zero-initialised means: batch = be->max_batch, no progress line,
 * no checkpoints. */
typedef struct {
    int batch;              /* rows per backend call, <= be->max_batch */
    const char *progress;   /* label of the progress line (stderr on a terminal), or NULL */
    /* sampled runs only: called after a batch once every_s seconds have passed since the start
     * or the previous call, with the counts so far and the next sample number to do */
    void (*checkpoint)(void *ctx, const uint64_t *counts /* [V] */, uint64_t next);
    void *ctx;
    double every_s;
} lpe_truth_opts;

/* counts[v] += #{n in [first, first + n) : argmax M(x_n) = v}: counts are ADDED to (zero them
 * for a fresh run; a resumed run passes the checkpoint's counts). opt may be NULL. */
void lpe_truth_sample(uint64_t *counts /* [V] */, lpe_backend *be, const lpe_dist *d,
                      uint64_t seed, uint64_t first, uint64_t n, const lpe_truth_opts *opt);
/* probs[v] = sum of p(x) over all inputs x with argmax v (overwritten). The caller checks that
 * lpe_dist_enum_size(d) is small enough (LPE_TRUTH_EXACT_LIMIT by default). opt may be NULL. */
void lpe_truth_exact(double *probs /* [V] */, lpe_backend *be, const lpe_dist *d,
                     const lpe_truth_opts *opt);

/* Shard i of N (0 <= i < N) of [0, n): [*a, *b), contiguous, made of whole blocks of `block`
 * samples (LPE_TRUTH_SHARD_BLOCK), shard sizes differing by at most one block. */
void lpe_truth_shard_range(uint64_t *a, uint64_t *b, uint64_t n, uint64_t i, uint64_t N,
                           uint64_t block);
/* Parse "i/N" (exit 2 naming `what` on bad syntax or i >= N). */
void lpe_truth_parse_shard(const char *s, const char *what, uint64_t *i, uint64_t *N);

/* Write atomically (temporary name, rename); exit 2 if path exists and !force. */
void lpe_truth_write(const lpe_truth *t, const char *path, int force);
/* Read and check a ground-truth file for internal consistency (shapes, counts summing to
 * n_samples, ranges disjoint, probabilities finite and in [0, 1]); fills probs. Exit 2 naming the
 * file and dataset on a problem. */
void lpe_truth_read(lpe_truth *t, const char *path);
/* lpe_truth_read, then check it belongs to model m and distribution d: vocabulary size always
 * (exit 2); model and distribution sha256 exit 2 on mismatch unless allow_mismatch (then a
 * warning). A model made in memory (empty sha256) is not checked. */
void lpe_truth_load(lpe_truth *t, const char *path, const lpe_model *m, const lpe_dist *d,
                    int allow_mismatch);
void lpe_truth_free(lpe_truth *t);

/* Sum sampled ground truths of the same model, distribution and seed over disjoint ranges
 * (exit 2 naming the files otherwise). out is allocated; ranges are coalesced. */
void lpe_truth_merge(lpe_truth *out, const lpe_truth *parts, const char *const *names, int n);

/* Checkpoints (sampled runs): counts over [first, next) of a run asked for [first, end). Written
 * atomically over the previous one. read returns 0 when path does not exist. */
void lpe_truth_ckpt_write(const char *path, const lpe_truth *t, uint64_t end);
int lpe_truth_ckpt_read(lpe_truth *t, uint64_t *end, const char *path);

#endif
