/* dist.h: input distributions D = D_1 x ... x D_k of independent positions (methods.md §1, §8).
 *
 * Dimension legend:
 *   k   = number of positions (sequence length)
 *   NF  = number of distinct factors; position j uses factor positions[j]
 *   NS  = total support size over factors = offsets[NF]
 *   n_f = offsets[f+1] - offsets[f], the support size of factor f
 *   V   = vocabulary size of the model the distribution is checked against
 *
 * Factor f's support is values[offsets[f] .. offsets[f+1]) with probabilities probs[...]
 * (normalised on load). Sampling uses Walker alias tables and the Philox layout of philox.h:
 * token j of sample n is drawn from lpe_rng4(seed, stream, n, j): word 0 picks the column,
 * words 1-2 the 53-bit coin. Hence a sample is a pure function of (seed, stream, n).
 */
#ifndef LPE_DIST_H
#define LPE_DIST_H

#include <stdint.h>

#ifdef __cplusplus /* the CUDA backend (kernels/, C++) includes this header */
extern "C" {
#endif

#define LPE_DIST_FORMAT_VERSION 1

typedef struct {
    char name[256];
    char *description;
    int k;              /* positions */
    int n_factors;      /* NF */
    int32_t *values;    /* [NS] token ids */
    double *probs;      /* [NS] normalised per factor */
    double *log_probs;  /* [NS] */
    int64_t *offsets;   /* [NF + 1] */
    int32_t *positions; /* [k] factor of each position */
    double *alias_prob; /* [NS] Walker alias: keep column with this probability */
    int32_t *alias_idx; /* [NS] else take this local index */
    int32_t *local_of;  /* [NF, V] local index of token v in factor f, or -1 */
    int d_vocab;        /* V the distribution was checked against */
    char sha256[65];    /* of the group's canonical content (values, probs, offsets, positions) */
} lpe_dist;

/* Load /{name} from an HDF5 distribution file and validate it against a vocabulary of size
 * d_vocab: negative, NaN, empty, duplicate or out-of-vocabulary entries exit 2 naming the file,
 * group and dataset. Probabilities are normalised per factor. d_vocab <= 0: no model at hand
 * (e.g. `lpe dist show`): tokens need only lie in [0, 2^24) and d->d_vocab = max token + 1. */
void lpe_dist_load(lpe_dist *d, const char *path, const char *name, int d_vocab);
/* Names of the groups in a distribution file (caller frees each and the array). */
char **lpe_dist_names(const char *path, int *n_out);
/* Why `name` may not name a distribution (NULL when it may): "eval", ".", "..", "manifest.h5"
 * are the results file's and checkpoint's own names. */
const char *lpe_dist_name_reserved(const char *name);
/* Build from arrays (copies them; validates like load; probs need not be normalised). */
void lpe_dist_from_arrays(lpe_dist *d, const char *name, const char *description, int n_factors,
                          const int64_t *offsets, const int32_t *values, const double *probs,
                          int k, const int32_t *positions, int d_vocab);
/* Append /{name} to a distribution file (created when missing). Exit 2 if it exists already. */
void lpe_dist_save(const lpe_dist *d, const char *path);
void lpe_dist_free(lpe_dist *d);

/* tokens [B, k] for samples first .. first + B - 1. */
void lpe_dist_sample(int32_t *tokens, const lpe_dist *d, uint64_t seed, uint32_t stream,
                     uint64_t first, int B);
/* log p(x) of one sequence x [k]; -INFINITY when a token is outside its support. */
double lpe_dist_log_prob(const lpe_dist *d, const int32_t *x);
/* Support size of position j. */
static inline int lpe_dist_support(const lpe_dist *d, int j) {
    int f = d->positions[j];
    return (int)(d->offsets[f + 1] - d->offsets[f]);
}

/* Exact enumeration: the number of distinct inputs (product of support sizes; saturates at
 * UINT64_MAX), and decoding of input number idx (mixed radix, last position fastest) into
 * tokens [k], returning its log probability. */
uint64_t lpe_dist_enum_size(const lpe_dist *d);
/* log2 of the number of inputs, exact in double precision far above 2^64. */
double lpe_dist_log2_space(const lpe_dist *d);
double lpe_dist_enum_decode(const lpe_dist *d, uint64_t idx, int32_t *tokens);

#ifdef __cplusplus
}
#endif

#endif
