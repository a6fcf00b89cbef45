/* dist.c: input distributions D = D_1 x ... x D_k (methods.md §1, §8): load and validate, normalise,
 * Walker alias tables, sampling with the shared Philox layout, log p(x), exact enumeration,
 * canonical sha256, save.
 *
 * Dimension legend (as dist.h):
 *   k   = positions, NF = factors, NS = offsets[NF] = total support entries,
 *   n_f = support size of factor f, V = vocabulary size the distribution is checked against.
 *
 * Memory: every array of an lpe_dist lives in one allocation carved from a size table
 * (dist_alloc); `probs` is its base, so lpe_dist_free frees `probs` (and `description`).
 *
 * Normalisation is idempotent on purpose: a factor whose probabilities already sum to 1 within
 * rounding is left bit-for-bit untouched. So a distribution saved by lpe_dist_save and loaded
 * again has the very same probabilities and the same sha256 (which hashes the normalised
 * values) as the one in memory that was saved.
 */
#include "lpe/dist.h"

#include <float.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lpe/common.h"
#include "lpe/h5io.h"
#include "lpe/dist_draw.h"
#include "lpe/philox.h"

/* Token ids are checked against this bound when no vocabulary size is given (d_vocab <= 0, e.g.
 * `lpe dist show` without a model): local_of is then [NF, max token + 1]. */
#define LPE_DIST_MAX_VOCAB (1 << 24)

/* ---- allocation -------------------------------------------------------------------------- */

/* Carve all arrays from one zero-filled block; 8-byte types first so that alignment holds. */
static void dist_alloc(lpe_dist *d, int64_t NS, int NF, int k, int V) {
    size_t sizes[] = {
        (size_t)NS * sizeof(double),           /* probs */
        (size_t)NS * sizeof(double),           /* log_probs */
        (size_t)NS * sizeof(double),           /* alias_prob */
        (size_t)(NF + 1) * sizeof(int64_t),    /* offsets */
        (size_t)NS * sizeof(int32_t),          /* values */
        (size_t)k * sizeof(int32_t),           /* positions */
        (size_t)NS * sizeof(int32_t),          /* alias_idx */
        (size_t)NF * (size_t)V * sizeof(int32_t), /* local_of */
    };
    enum { N_ARR = sizeof sizes / sizeof sizes[0] };
    size_t total = 0, off[N_ARR];
    for (int i = 0; i < N_ARR; i++) {
        off[i] = total;
        total += (sizes[i] + 7) / 8 * 8;
    }
    char *mem = lpe_calloc(total ? total : 1, 1);
    d->probs = (double *)(mem + off[0]);
    d->log_probs = (double *)(mem + off[1]);
    d->alias_prob = (double *)(mem + off[2]);
    d->offsets = (int64_t *)(mem + off[3]);
    d->values = (int32_t *)(mem + off[4]);
    d->positions = (int32_t *)(mem + off[5]);
    d->alias_idx = (int32_t *)(mem + off[6]);
    d->local_of = (int32_t *)(mem + off[7]);
}

void lpe_dist_free(lpe_dist *d) {
    free(d->probs); /* the base of the one allocation */
    free(d->description);
    memset(d, 0, sizeof *d);
}

/* ---- validation -------------------------------------------------------------------------- */

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Messages read "<where>values: ...", "<where>probs: ...": `where` names the file and group
 * ("F.h5: /hex/") or the in-memory distribution ("distribution 'hex': "). */
static void dist_validate(const char *where, int n_factors, const int64_t *offsets, int64_t NS,
                          const int32_t *values /* [NS] */, const double *probs /* [NS] */,
                          int k, const int32_t *positions /* [k] */, int d_vocab) {
    if (k < 1) lpe_fail_input("%spositions: expected at least one position (k >= 1), found %d", where, k);
    if (n_factors < 1)
        lpe_fail_input("%soffsets: expected at least 2 entries (one factor), found %d", where,
                       n_factors + 1);
    if (offsets[0] != 0)
        lpe_fail_input("%soffsets: expected offsets[0] = 0, found %lld", where, (long long)offsets[0]);
    for (int f = 0; f < n_factors; f++) {
        if (offsets[f + 1] == offsets[f])
            lpe_fail_input("%soffsets: factor %d is empty (offsets[%d] = offsets[%d] = %lld)", where, f,
                           f, f + 1, (long long)offsets[f]);
        if (offsets[f + 1] < offsets[f])
            lpe_fail_input("%soffsets: expected increasing offsets, found offsets[%d] = %lld > "
                           "offsets[%d] = %lld", where, f, (long long)offsets[f], f + 1,
                           (long long)offsets[f + 1]);
    }
    if (offsets[n_factors] != NS)
        lpe_fail_input("%soffsets: expected the last offset to equal len(values) = %lld, found %lld",
                       where, (long long)NS, (long long)offsets[n_factors]);
    if (NS > INT32_MAX) lpe_fail_input("%svalues: too many entries (%lld)", where, (long long)NS);
    for (int64_t i = 0; i < NS; i++) {
        if (values[i] < 0 || values[i] >= (d_vocab > 0 ? d_vocab : LPE_DIST_MAX_VOCAB))
            lpe_fail_input("%svalues: entry %lld is token %d, outside the vocabulary [0, %d)", where,
                           (long long)i, values[i], d_vocab > 0 ? d_vocab : LPE_DIST_MAX_VOCAB);
        if (!isfinite(probs[i]) || probs[i] < 0)
            lpe_fail_input("%sprobs: entry %lld (token %d) is %g: expected a finite number >= 0",
                           where, (long long)i, values[i], probs[i]);
    }
    for (int j = 0; j < k; j++)
        if (positions[j] < 0 || positions[j] >= n_factors)
            lpe_fail_input("%spositions: position %d uses factor %d, expected 0 .. %d", where, j,
                           positions[j], n_factors - 1);
    /* duplicates: sort each factor's tokens (a copy) and compare neighbours */
    int64_t nmax = 0;
    for (int f = 0; f < n_factors; f++)
        nmax = offsets[f + 1] - offsets[f] > nmax ? offsets[f + 1] - offsets[f] : nmax;
    int32_t *sorted = lpe_calloc((size_t)nmax, sizeof(int32_t)); /* [n_f] */
    for (int f = 0; f < n_factors; f++) {
        int64_t a = offsets[f], n = offsets[f + 1] - a;
        memcpy(sorted, values + a, (size_t)n * sizeof(int32_t));
        qsort(sorted, (size_t)n, sizeof(int32_t), cmp_i32);
        for (int64_t i = 1; i < n; i++)
            if (sorted[i] == sorted[i - 1])
                lpe_fail_input("%svalues: token %d appears twice in factor %d", where, sorted[i], f);
        double s = 0;
        for (int64_t i = a; i < a + n; i++) s += probs[i];
        if (!(s > 0) || !isfinite(s))
            lpe_fail_input("%sprobs: factor %d has total probability %g, expected > 0", where, f, s);
    }
    free(sorted);
}

/* ---- derived tables ---------------------------------------------------------------------- */

/* Compensated (Neumaier) sum: the normalisation test below needs the sum to a few ulps. */
static double sum_neumaier(const double *x, int64_t n) {
    double s = 0, c = 0;
    for (int64_t i = 0; i < n; i++) {
        double t = s + x[i];
        c += fabs(s) >= fabs(x[i]) ? (s - t) + x[i] : (x[i] - t) + s;
        s = t;
    }
    return s + c;
}

static void normalise(lpe_dist *d) {
    for (int f = 0; f < d->n_factors; f++) {
        int64_t a = d->offsets[f], n = d->offsets[f + 1] - a;
        double s = sum_neumaier(d->probs + a, n);
        /* leave already-normalised factors untouched (idempotence, see the file comment) */
        if (fabs(s - 1.0) <= 4.0 * (double)n * DBL_EPSILON) continue;
        for (int64_t i = 0; i < n; i++) d->probs[a + i] /= s;
    }
    for (int64_t i = 0; i < d->offsets[d->n_factors]; i++)
        d->log_probs[i] = d->probs[i] > 0 ? log(d->probs[i]) : -INFINITY;
}

/* Vose's alias method, per factor, in float64. Column c of a factor keeps its own entry with
 * probability alias_prob[c] and otherwise takes entry alias_idx[c] (a local index). */
static void build_alias(lpe_dist *d) {
    int64_t nmax = 0;
    for (int f = 0; f < d->n_factors; f++)
        if (d->offsets[f + 1] - d->offsets[f] > nmax) nmax = d->offsets[f + 1] - d->offsets[f];
    double *q = lpe_calloc((size_t)nmax, sizeof(double));   /* [n_f] scaled probabilities */
    int32_t *work = lpe_calloc((size_t)nmax, sizeof(int32_t)); /* small stack from the front, large from the back */
    for (int f = 0; f < d->n_factors; f++) {
        int64_t a = d->offsets[f];
        int32_t n = (int32_t)(d->offsets[f + 1] - a);
        double *ap = d->alias_prob + a;
        int32_t *ai = d->alias_idx + a;
        int32_t ns = 0, nl = 0; /* sizes of the small and large stacks */
        for (int32_t i = 0; i < n; i++) {
            q[i] = d->probs[a + i] * (double)n;
            if (q[i] < 1.0) work[ns++] = i;
            else work[n - 1 - nl++] = i;
        }
        while (ns > 0 && nl > 0) {
            int32_t s = work[--ns], l = work[n - nl]; /* top of each stack */
            ap[s] = q[s];
            ai[s] = l;
            q[l] = (q[l] + q[s]) - 1.0; /* Vose: this form loses the least precision */
            if (q[l] < 1.0) { nl--; work[ns++] = l; }
        }
        /* what is left has q = 1 up to rounding: it keeps its own column */
        while (nl > 0) { int32_t l = work[n - nl--]; ap[l] = 1.0; ai[l] = l; }
        while (ns > 0) { int32_t s = work[--ns]; ap[s] = 1.0; ai[s] = s; }
    }
    free(q);
    free(work);
}

static void build_local_of(lpe_dist *d) {
    int V = d->d_vocab;
    for (int64_t i = 0; i < (int64_t)d->n_factors * V; i++) d->local_of[i] = -1;
    for (int f = 0; f < d->n_factors; f++)
        for (int64_t i = d->offsets[f]; i < d->offsets[f + 1]; i++)
            d->local_of[(int64_t)f * V + d->values[i]] = (int32_t)(i - d->offsets[f]);
}

/* sha256 of the canonical serialisation: a tag, NF, k (int64), offsets (int64), values
 * (int32), normalised probs (IEEE bits), positions (int32), all little-endian. Name and
 * description are not part of it: the hash identifies the distribution, not its label. */
static void put_le(lpe_sha256_ctx *c, uint64_t v, int bytes) {
    uint8_t b[8];
    for (int i = 0; i < bytes; i++) b[i] = (uint8_t)(v >> (8 * i));
    lpe_sha256_update(c, b, (size_t)bytes);
}

static void dist_hash(lpe_dist *d) {
    lpe_sha256_ctx c;
    lpe_sha256_init(&c);
    static const char tag[] = "lpe-dist-v1";
    lpe_sha256_update(&c, tag, sizeof tag); /* with its NUL */
    int64_t NS = d->offsets[d->n_factors];
    put_le(&c, (uint64_t)d->n_factors, 8);
    put_le(&c, (uint64_t)d->k, 8);
    for (int f = 0; f <= d->n_factors; f++) put_le(&c, (uint64_t)d->offsets[f], 8);
    for (int64_t i = 0; i < NS; i++) put_le(&c, (uint32_t)d->values[i], 4);
    for (int64_t i = 0; i < NS; i++) {
        uint64_t bits;
        memcpy(&bits, &d->probs[i], 8);
        put_le(&c, bits, 8);
    }
    for (int j = 0; j < d->k; j++) put_le(&c, (uint32_t)d->positions[j], 4);
    lpe_sha256_final(&c, d->sha256);
}

/* Everything once the validated arrays are in place. */
static void dist_finish(lpe_dist *d) {
    normalise(d);
    build_alias(d);
    build_local_of(d);
    dist_hash(d);
}

/* V used for local_of: the model's vocabulary, or (unknown, d_vocab <= 0) the largest token + 1 */
static int vocab_for(const int32_t *values, int64_t NS, int d_vocab) {
    if (d_vocab > 0) return d_vocab;
    int32_t vmax = 0;
    for (int64_t i = 0; i < NS; i++) vmax = values[i] > vmax ? values[i] : vmax;
    return vmax + 1;
}

static void check_name(const char *name, const char *where) {
    if (!name || !name[0] || strchr(name, '/') || strlen(name) >= sizeof(((lpe_dist *)0)->name))
        lpe_fail_input("%sdistribution name '%s': expected a non-empty name without '/' of at most "
                       "255 characters", where, name ? name : "");
    const char *why = lpe_dist_name_reserved(name);
    if (why) lpe_fail_input("%sdistribution name '%s' is reserved: %s", where, name, why);
}

/* A distribution's name becomes a group of the results file and a directory of its checkpoint:
 * it may not be one of their own names. */
const char *lpe_dist_name_reserved(const char *name) {
    static const struct { const char *name, *why; } r[] = {
        {"eval", "a results file keeps its overall evaluation in /eval"},
        {".", "it names the current group (HDF5) and directory"},
        {"..", "it names the parent directory of a checkpoint"},
        {"manifest.h5", "a checkpoint directory holds its manifest under that name"},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (!strcmp(name, r[i].name)) return r[i].why;
    return NULL;
}

void lpe_dist_from_arrays(lpe_dist *d, const char *name, const char *description, int n_factors,
                          const int64_t *offsets, const int32_t *values, const double *probs,
                          int k, const int32_t *positions, int d_vocab) {
    char where[300];
    snprintf(where, sizeof where, "distribution '%s': ", name ? name : "");
    check_name(name, "");
    LPE_CHECK_INPUT(n_factors >= 1, "%soffsets: expected at least one factor, found %d", where,
                    n_factors);
    int64_t NS = offsets[n_factors];
    LPE_CHECK_INPUT(NS >= 0, "%soffsets: last offset %lld is negative", where, (long long)NS);
    dist_validate(where, n_factors, offsets, NS, values, probs, k, positions, d_vocab);
    memset(d, 0, sizeof *d);
    int V = vocab_for(values, NS, d_vocab);
    dist_alloc(d, NS, n_factors, k, V);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->description = lpe_strdup(description ? description : "");
    d->k = k;
    d->n_factors = n_factors;
    d->d_vocab = V;
    memcpy(d->offsets, offsets, (size_t)(n_factors + 1) * sizeof(int64_t));
    memcpy(d->values, values, (size_t)NS * sizeof(int32_t));
    memcpy(d->probs, probs, (size_t)NS * sizeof(double));
    memcpy(d->positions, positions, (size_t)k * sizeof(int32_t));
    dist_finish(d);
}

/* ---- files ------------------------------------------------------------------------------- */

typedef struct {
    char **names;
    int n, cap;
} name_list;

static herr_t collect_group(hid_t loc, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    name_list *l = data;
    hid_t o = H5Oopen(loc, name, H5P_DEFAULT);
    if (o < 0) return 0;
    int is_group = H5Iget_type(o) == H5I_GROUP;
    H5Oclose(o);
    if (!is_group) return 0;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->names = lpe_realloc(l->names, (size_t)l->cap * sizeof(char *));
    }
    l->names[l->n++] = lpe_strdup(name);
    return 0;
}

static char **names_in(hid_t file, int *n_out) {
    name_list l = {0};
    hsize_t idx = 0;
    H5_CHECK(H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_group, &l));
    *n_out = l.n;
    return l.names;
}

char **lpe_dist_names(const char *path, int *n_out) {
    hid_t file = lpe_h5_open_read(path);
    char **names = names_in(file, n_out);
    lpe_h5_close(file);
    return names;
}

void lpe_dist_load(lpe_dist *d, const char *path, const char *name, int d_vocab) {
    char where[1400];
    snprintf(where, sizeof where, "%s: ", path);
    check_name(name, where);
    hid_t file = lpe_h5_open_read(path);
    if (!lpe_h5_exists(file, name)) {
        int n = 0;
        char **names = names_in(file, &n);
        char avail[512] = "";
        for (int i = 0; i < n; i++) {
            size_t len = strlen(avail);
            if (len + strlen(names[i]) + 3 < sizeof avail)
                snprintf(avail + len, sizeof avail - len, "%s%s", i ? ", " : "", names[i]);
            free(names[i]);
        }
        free(names);
        lpe_fail_input("%s: no distribution group /%s (groups in the file: %s)", path, name,
                       n ? avail : "none");
    }
    snprintf(where, sizeof where, "%s: /%s/", path, name);
    hid_t g = H5Gopen2(file, name, H5P_DEFAULT);
    if (g < 0) lpe_fail_input("%s: /%s is not a group", path, name);
    hid_t vlocs[2] = {file, g}; /* the version may be on the file, the group, or both */
    for (int i = 0; i < 2; i++)
        if (lpe_h5_has_attr(vlocs[i], "format_version")) {
            long long v = lpe_h5_get_attr_int(vlocs[i], path, "format_version");
            if (v < 1 || v > LPE_DIST_FORMAT_VERSION)
                lpe_fail_input("%s: %s%s: format_version %lld is not supported (this build reads 1 "
                               ".. %d)", path, i ? "/" : "root", i ? name : "", v,
                               LPE_DIST_FORMAT_VERSION);
        }
    char ds[600];
    int64_t dims[1] = {-1}, n_values, n_offsets, n_positions;
    snprintf(ds, sizeof ds, "/%s/values", name);
    int32_t *values = lpe_h5_read(file, path, ds, H5T_NATIVE_INT32, 1, dims, &n_values);
    dims[0] = n_values; /* probs must match values */
    snprintf(ds, sizeof ds, "/%s/probs", name);
    double *probs = lpe_h5_read(file, path, ds, H5T_NATIVE_DOUBLE, 1, dims, NULL);
    dims[0] = -1;
    snprintf(ds, sizeof ds, "/%s/offsets", name);
    int64_t *offsets = lpe_h5_read(file, path, ds, H5T_NATIVE_INT64, 1, dims, &n_offsets);
    snprintf(ds, sizeof ds, "/%s/positions", name);
    int32_t *positions = lpe_h5_read(file, path, ds, H5T_NATIVE_INT32, 1, dims, &n_positions);
    if (n_offsets < 2)
        lpe_fail_input("%soffsets: expected at least 2 entries (one factor), found %lld", where,
                       (long long)n_offsets);
    if (n_positions > INT32_MAX || n_offsets > INT32_MAX)
        lpe_fail_input("%spositions: too many entries", where);
    char *desc = lpe_h5_has_attr(g, "description") ? lpe_h5_get_attr_str(g, path, "description")
                                                  : lpe_strdup("");
    H5Gclose(g);
    lpe_h5_close(file);

    int NF = (int)(n_offsets - 1), k = (int)n_positions;
    dist_validate(where, NF, offsets, n_values, values, probs, k, positions, d_vocab);
    memset(d, 0, sizeof *d);
    int V = vocab_for(values, n_values, d_vocab);
    dist_alloc(d, n_values, NF, k, V);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->description = desc;
    d->k = k;
    d->n_factors = NF;
    d->d_vocab = V;
    memcpy(d->offsets, offsets, (size_t)n_offsets * sizeof(int64_t));
    memcpy(d->values, values, (size_t)n_values * sizeof(int32_t));
    memcpy(d->probs, probs, (size_t)n_values * sizeof(double));
    memcpy(d->positions, positions, (size_t)k * sizeof(int32_t));
    free(values);
    free(probs);
    free(offsets);
    free(positions);
    dist_finish(d);
}

static void write_group(hid_t file, const lpe_dist *d) {
    hid_t g = lpe_h5_group(file, d->name);
    int64_t NS = d->offsets[d->n_factors], n_off = d->n_factors + 1, k = d->k;
    lpe_h5_write(g, "values", H5T_NATIVE_INT32, 1, &NS, d->values, 0);
    lpe_h5_write(g, "probs", H5T_NATIVE_DOUBLE, 1, &NS, d->probs, 0);
    lpe_h5_write(g, "offsets", H5T_NATIVE_INT64, 1, &n_off, d->offsets, 0);
    lpe_h5_write(g, "positions", H5T_NATIVE_INT32, 1, &k, d->positions, 0);
    lpe_h5_attr_str(g, "description", d->description ? d->description : "");
    lpe_h5_attr_int(g, "format_version", LPE_DIST_FORMAT_VERSION);
    lpe_h5_attr_str(g, "sha256", d->sha256);
    H5Gclose(g);
}

static void copy_file(const char *dst, const char *src) {
    FILE *in = fopen(src, "rb");
    if (!in) lpe_fail("%s: cannot open for reading", src);
    FILE *out = fopen(dst, "wb");
    if (!out) lpe_fail("%s: cannot create", dst);
    char buf[1 << 16];
    size_t n;
    /* a full disk is named as such, with the file the user asked for (src: it is appended to) */
#define WRITE_FAILED() lpe_fail("%s: %s (writing its copy %s)", src, \
        lpe_io_errno_text(errno) ? lpe_io_errno_text(errno) : strerror(errno), dst)
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) WRITE_FAILED();
    if (ferror(in)) lpe_fail("%s: read failed", src);
    fclose(in);
    if (fclose(out) != 0) WRITE_FAILED();
#undef WRITE_FAILED
}

/* Appending must not leave a half-written group behind: a new file is written under a temporary
 * name; an existing one is copied, the copy extended, and renamed over the original. */
void lpe_dist_save(const lpe_dist *d, const char *path) {
    check_name(d->name, "");
    if (access(path, F_OK) != 0) {
        lpe_h5_out o;
        lpe_h5_create(&o, path, 0);
        lpe_h5_attr_int(o.file, "format_version", LPE_DIST_FORMAT_VERSION);
        write_group(o.file, d);
        lpe_h5_commit(&o);
        return;
    }
    hid_t f = lpe_h5_open_read(path);
    int exists = lpe_h5_exists(f, d->name);
    lpe_h5_close(f);
    if (exists)
        lpe_fail_input("%s: a distribution named '%s' exists already (choose another --name)", path,
                       d->name);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    lpe_cleanup_remove_on_fail(tmp);
    copy_file(tmp, path);
    hid_t file = lpe_h5_open_append(tmp);
    write_group(file, d);
    lpe_h5_close(file);
    if (rename(tmp, path) != 0) lpe_fail("%s: cannot rename %s to it", path, tmp);
    lpe_cleanup_forget(tmp);
}

/* ---- sampling, probabilities, enumeration ------------------------------------------------ */

void lpe_dist_sample(int32_t *tokens /* [B, k] */, const lpe_dist *d, uint64_t seed,
                     uint32_t stream, uint64_t first, int B) {
    int k = d->k;
#pragma omp parallel for schedule(static) if (B * k >= 4096)
    for (int b = 0; b < B; b++) {
        int32_t *row = tokens + (int64_t)b * k; /* [k] */
        for (int j = 0; j < k; j++) {
            int f = d->positions[j];
            int64_t a = d->offsets[f];
            uint32_t n = (uint32_t)(d->offsets[f + 1] - a);
            row[j] = lpe_alias_draw(d->values + a, d->alias_prob + a, d->alias_idx + a, n, seed,
                                    stream, first + (uint64_t)b, (uint32_t)j);
        }
    }
}

double lpe_dist_log_prob(const lpe_dist *d, const int32_t *x /* [k] */) {
    double lp = 0;
    for (int j = 0; j < d->k; j++) {
        int f = d->positions[j];
        if (x[j] < 0 || x[j] >= d->d_vocab) return -INFINITY;
        int32_t local = d->local_of[(int64_t)f * d->d_vocab + x[j]];
        if (local < 0) return -INFINITY;
        lp += d->log_probs[d->offsets[f] + local];
    }
    return lp;
}

uint64_t lpe_dist_enum_size(const lpe_dist *d) {
    uint64_t n = 1;
    for (int j = 0; j < d->k; j++) {
        uint64_t s = (uint64_t)lpe_dist_support(d, j);
        if (n > UINT64_MAX / s) return UINT64_MAX;
        n *= s;
    }
    return n;
}

double lpe_dist_log2_space(const lpe_dist *d) {
    double l = 0; /* a sum of logs: spaces far above 2^64 (lpe_dist_enum_size saturates) */
    for (int j = 0; j < d->k; j++) l += log2((double)lpe_dist_support(d, j));
    return l;
}

double lpe_dist_enum_decode(const lpe_dist *d, uint64_t idx, int32_t *tokens /* [k] */) {
    double lp = 0;
    for (int j = d->k - 1; j >= 0; j--) { /* last position fastest */
        int f = d->positions[j];
        uint64_t n = (uint64_t)(d->offsets[f + 1] - d->offsets[f]);
        int64_t e = d->offsets[f] + (int64_t)(idx % n);
        idx /= n;
        tokens[j] = d->values[e];
        lp += d->log_probs[e];
    }
    LPE_ASSERT(idx == 0); /* idx < lpe_dist_enum_size(d) */
    return lp;
}
