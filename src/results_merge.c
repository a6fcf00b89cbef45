/* results_merge.c: shards of an experiment joined into one results file (results_merge.h).
 *
 * Dimension legend: NS = shard files, T = all targets of a distribution, TS = one shard's share,
 *   rows = a dataset's first axis.
 */
#include "lpe/results_merge.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/eval.h"
#include "lpe/h5io.h"
#include "lpe/results.h"

typedef struct {
    hid_t f;
    const char *path;
} shard_file;

typedef struct { /* one shard's part of one distribution */
    const shard_file *sf;
    hid_t g;        /* /{dist} */
    int first, ts;  /* its block [first, first + ts) */
} part;

/* ---- names and attributes ------------------------------------------------------------------ */

typedef struct {
    char **v;
    int n;
} names;

static herr_t add_name(hid_t loc, const char *name, const H5L_info_t *info, void *data) {
    names *s = data;
    s->v = lpe_realloc(s->v, (size_t)(s->n + 1) * sizeof *s->v);
    s->v[s->n] = lpe_calloc(strlen(name) + 1, 1);
    memcpy(s->v[s->n++], name, strlen(name));
    return 0;
}

/* child groups of g holding `member` (a dataset), in name order, "eval" left out */
static names groups_with(hid_t g, const char *member) {
    names all = {0}, out = {0};
    hsize_t idx = 0;
    H5_CHECK(H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, add_name, &all));
    for (int i = 0; i < all.n; i++) {
        char sub[600];
        snprintf(sub, sizeof sub, "%s/%s", all.v[i], member);
        H5O_info_t oi;
        int is_group = H5Oget_info_by_name(g, all.v[i], &oi, H5P_DEFAULT) >= 0 &&
                       oi.type == H5O_TYPE_GROUP;
        if (strcmp(all.v[i], "eval") && is_group && lpe_h5_exists(g, sub))
            add_name(g, all.v[i], NULL, &out);
        free(all.v[i]);
    }
    free(all.v);
    return out;
}

static void names_free(names *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
}

/* an attribute as text (strings as they are, numbers printed exactly); NULL when absent */
static char *attr_text(hid_t loc, const char *file, const char *name) {
    if (!lpe_h5_has_attr(loc, name)) return NULL;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = H5Aget_type(a);
    H5T_class_t c = H5Tget_class(t);
    H5Tclose(t);
    H5Aclose(a);
    if (c == H5T_STRING) return lpe_h5_get_attr_str(loc, file, name);
    char *s = lpe_calloc(64, 1);
    if (c == H5T_INTEGER)
        snprintf(s, 64, "%lld", lpe_h5_get_attr_int(loc, file, name));
    else
        snprintf(s, 64, "%.17g", lpe_h5_get_attr_double(loc, file, name));
    return s;
}

/* exit 2 unless every key has the same value (or is absent) at a and b */
static void require_same(hid_t a, const char *fa, hid_t b, const char *fb, const char *where,
                         const char *const *keys) {
    for (const char *const *k = keys; *k; k++) {
        char *x = attr_text(a, fa, *k), *y = attr_text(b, fb, *k);
        int same = (!x && !y) || (x && y && !strcmp(x, y));
        free(x);
        free(y);
        if (!same)
            lpe_fail_input("%s and %s: shards of different experiments (%s%s differs); "
                           "merge only the shards of one `lpe run --shard` experiment",
                           fa, fb, where, *k);
    }
}

typedef struct {
    const char *const *skip;
    hid_t dst;
} copy_ctx;

static herr_t copy_one_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
    copy_ctx *c = data;
    for (const char *const *k = c->skip; k && *k; k++)
        if (!strcmp(*k, name)) return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    size_t bytes = H5Tget_size(t) * (size_t)(np > 0 ? np : 1);
    void *buf = lpe_calloc(bytes, 1);
    H5_CHECK(H5Aread(a, t, buf));
    if (H5Aexists(c->dst, name) > 0) H5_CHECK(H5Adelete(c->dst, name));
    hid_t b = H5Acreate2(c->dst, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (b < 0) lpe_fail("HDF5: cannot create attribute %s", name);
    H5_CHECK(H5Awrite(b, t, buf));
    if (H5Tdetect_class(t, H5T_VLEN) > 0 || H5Tis_variable_str(t) > 0)
        H5Dvlen_reclaim(t, sp, H5P_DEFAULT, buf);
    free(buf);
    H5Aclose(b);
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
    return 0;
}

static void copy_attrs(hid_t dst, hid_t src, const char *const *skip) {
    copy_ctx c = {skip, dst};
    hsize_t idx = 0;
    H5_CHECK(H5Aiterate2(src, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_one_attr, &c));
}

/* ---- datasets of a run ------------------------------------------------------------------- */

enum { JOIN_TARGETS, JOIN_ROWS, JOIN_SHARED };

static int join_mode(const char *rel) {
    if (!strcmp(rel, "activations")) return JOIN_SHARED; /* QLD/GLD: one sample set for all */
    if (!strncmp(rel, "chains/", 7)) return JOIN_ROWS;   /* MHIS records, any count per shard */
    return JOIN_TARGETS;                                  /* [TS, ...] per target */
}

/* /{dist}/{run}/{rel} of every part joined along the first axis (or, shared, checked equal) */
static void join_dataset(hid_t dst_run, const char *run, const char *rel, const part *p, int np) {
    const int mode = join_mode(rel);
    hid_t d0 = -1, ftype = -1, mtype = -1;
    hsize_t dims[8], maxd[8], rows = 0;
    int rank = 0;
    size_t row_bytes = 0;
    char *buf = NULL;
    for (int i = 0; i < np; i++) {
        char path[800];
        snprintf(path, sizeof path, "%s/%s", run, rel);
        hid_t d = H5Dopen2(p[i].g, path, H5P_DEFAULT);
        if (d < 0) lpe_fail_input("%s: dataset %s missing in this shard", p[i].sf->path, path);
        hid_t sp = H5Dget_space(d);
        hsize_t di[8], mi[8]; /* [rank]: ranks above 8 are refused before they are read */
        const int nd = H5Sget_simple_extent_ndims(sp);
        if (nd < 1 || nd > 8)
            lpe_fail_input("%s: %s: unexpected shape (rank %d; shards of different experiments?)",
                           p[i].sf->path, path, nd);
        int r = H5Sget_simple_extent_dims(sp, di, mi);
        if (i == 0) {
            d0 = d;
            rank = r;
            memcpy(maxd, mi, sizeof mi);
            memcpy(dims, di, sizeof di);
            ftype = H5Dget_type(d);
            if (H5Tget_class(ftype) == H5T_STRING || H5Tdetect_class(ftype, H5T_VLEN) > 0)
                lpe_fail("%s: %s: variable-length data cannot be merged", p[0].sf->path, path);
            mtype = H5Tget_native_type(ftype, H5T_DIR_ASCEND);
            row_bytes = H5Tget_size(mtype);
            for (int j = 1; j < rank; j++) row_bytes *= (size_t)dims[j];
        }
        int shape_ok = r == rank && r >= 1;
        for (int j = 1; shape_ok && j < r; j++) shape_ok = di[j] == dims[j];
        if (mode == JOIN_TARGETS) shape_ok = shape_ok && di[0] == (hsize_t)p[i].ts;
        if (mode == JOIN_SHARED) shape_ok = shape_ok && di[0] == dims[0];
        if (!shape_ok)
            lpe_fail_input("%s: %s: unexpected shape (shards of different experiments?)",
                           p[i].sf->path, path);
        size_t n = (size_t)di[0] * row_bytes;
        if (mode != JOIN_SHARED || i == 0) {
            buf = lpe_realloc(buf, (size_t)(rows + di[0]) * row_bytes + 1);
            if (n) H5_CHECK(H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf + rows * row_bytes));
            rows += di[0];
        } else { /* shared: must be the first shard's, byte for byte */
            char *other = lpe_calloc(n + 1, 1);
            if (n) H5_CHECK(H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, other));
            int same = !memcmp(other, buf, n);
            free(other);
            if (!same)
                lpe_fail_input("%s and %s: %s differs (shards of different experiments)",
                               p[0].sf->path, p[i].sf->path, path);
        }
        H5Sclose(sp);
        if (i > 0) H5Dclose(d);
    }
    dims[0] = rows;
    if (maxd[0] != H5S_UNLIMITED) maxd[0] = rows;
    hid_t sp = H5Screate_simple(rank, dims, maxd), dcpl = H5Dget_create_plist(d0);
    const char *slash = strrchr(rel, '/');
    if (slash) { /* parents, e.g. chains/ */
        char parent[600];
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - rel), rel);
        H5Gclose(lpe_h5_group(dst_run, parent));
    }
    hid_t out = H5Dcreate2(dst_run, rel, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (out < 0) lpe_fail("HDF5: cannot create dataset %s/%s", run, rel);
    if (rows) H5_CHECK(H5Dwrite(out, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf));
    copy_attrs(out, d0, NULL);
    H5Dclose(out);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Tclose(mtype);
    H5Tclose(ftype);
    H5Dclose(d0);
    free(buf);
}

static herr_t add_dataset(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
    if (info->type == H5O_TYPE_DATASET) add_name(obj, name, NULL, data);
    return 0;
}

/* one run (/{dist}/{run}) of every part into dst_dist */
static void join_run(hid_t dst_dist, const char *run, const part *p, int np, int T) {
    hid_t src = H5Gopen2(p[0].g, run, H5P_DEFAULT);
    names ds = {0};
    H5_CHECK(H5Ovisit(src, H5_INDEX_NAME, H5_ITER_INC, add_dataset, &ds));
    hid_t dst = lpe_h5_group(dst_dist, run);
    static const char *const timing[] = {"seconds", "seconds_per_target", NULL};
    copy_attrs(dst, src, timing);
    double sec = 0;
    for (int i = 0; i < np; i++) {
        hid_t g = H5Gopen2(p[i].g, run, H5P_DEFAULT);
        if (lpe_h5_has_attr(g, "seconds")) sec += lpe_h5_get_attr_double(g, p[i].sf->path, "seconds");
        H5Gclose(g);
    }
    lpe_h5_attr_double(dst, "seconds", sec);
    lpe_h5_attr_double(dst, "seconds_per_target", T > 0 ? sec / T : 0.0);
    for (int i = 0; i < ds.n; i++) join_dataset(dst, run, ds.v[i], p, np);
    names_free(&ds);
    H5Gclose(dst);
    H5Gclose(src);
}

/* ---- distributions (out < 0: check only) ------------------------------------------------------------------------- */

static int cmp_part(const void *a, const void *b) {
    const part *x = a, *y = b;
    return (x->first > y->first) - (x->first < y->first);
}

/* the parts of /{dist}: same experiment, sorted, no overlap, no gap; returns T */
static int gather_parts(part *p, const shard_file *sf, int ns, const char *dist) {
    static const char *const same[] = {
        "distribution_sha256", "k", "input_space", "truth", "truth_path", "truth_n_samples",
        "truth_exact", "p_min", "p_max", "target_seed", "n_candidates", "shard_total",
        "shard_fingerprint", NULL};
    char where[300];
    snprintf(where, sizeof where, "/%s attribute ", dist);
    for (int i = 0; i < ns; i++) {
        p[i].sf = &sf[i];
        p[i].g = H5Gopen2(sf[i].f, dist, H5P_DEFAULT);
        if (p[i].g < 0)
            lpe_fail_input("%s and %s: shards of different experiments (/%s missing in the second)",
                           sf[0].path, sf[i].path, dist);
        if (!lpe_h5_has_attr(p[i].g, "shard_first"))
            lpe_fail_input("%s: /%s has no shard_first attribute (not made by `lpe run --shard`)",
                           sf[i].path, dist);
        require_same(p[0].g, sf[0].path, p[i].g, sf[i].path, where, same);
        p[i].first = (int)lpe_h5_get_attr_int(p[i].g, sf[i].path, "shard_first");
        p[i].ts = (int)lpe_h5_get_attr_int(p[i].g, sf[i].path, "n_targets");
    }
    int T = (int)lpe_h5_get_attr_int(p[0].g, sf[0].path, "shard_total");
    for (int i = 0; i < ns; i++) /* the checks below assume blocks inside [0, T) */
        if (p[i].first < 0 || p[i].ts < 0 || p[i].first > T - p[i].ts)
            lpe_fail_input("%s: /%s holds targets [%d, %d), not inside the %d of the experiment",
                           p[i].sf->path, dist, p[i].first, p[i].first + p[i].ts, T);
    qsort(p, (size_t)ns, sizeof *p, cmp_part);
    int next = 0;
    const part *prev = NULL;
    for (int i = 0; i < ns; i++) {
        if (p[i].ts == 0) continue;
        if (p[i].first < next)
            lpe_fail_input("%s and %s: overlapping shards (both hold target %d of /%s); merge "
                           "each shard once", prev->sf->path, p[i].sf->path, p[i].first, dist);
        if (p[i].first > next)
            lpe_fail_input("%s: missing shard: targets %d..%d of %d of /%s are in none of the "
                           "files given", p[i].sf->path, next, p[i].first - 1, T, dist);
        next = p[i].first + p[i].ts;
        prev = &p[i];
    }
    if (next != T)
        lpe_fail_input("%s: missing shard: targets %d..%d of %d of /%s are in none of the files "
                       "given", sf[0].path, next, T - 1, T, dist);
    return T;
}

static void merge_dist(hid_t out, const shard_file *sf, int ns, const char *dist) {
    part *p = lpe_calloc((size_t)ns, sizeof *p);
    int T = gather_parts(p, sf, ns, dist);
    int np = 0; /* the parts holding targets, first to last (or one empty part when T = 0) */
    for (int i = 0; i < ns; i++)
        if (p[i].ts > 0 || (i == ns - 1 && np == 0)) p[np++] = p[i];
        else H5Gclose(p[i].g);
    names runs = T > 0 ? groups_with(p[0].g, "estimate") : (names){0};
    for (int i = 1; i < np; i++) {
        names r = groups_with(p[i].g, "estimate");
        int same = r.n == runs.n;
        for (int j = 0; same && j < r.n; j++) same = !strcmp(r.v[j], runs.v[j]);
        names_free(&r);
        if (!same)
            lpe_fail_input("%s and %s: shards of different experiments (the runs of /%s differ)",
                           p[0].sf->path, p[i].sf->path, dist);
    }
    if (out >= 0) { /* out < 0: the checks only */
        hid_t g = lpe_h5_group(out, dist);
        static const char *const skip[] = {"shard_first", "shard_total", "shard_fingerprint",
                                           "n_targets", NULL};
        copy_attrs(g, p[0].g, skip);
        lpe_h5_attr_int(g, "n_targets", T);
        join_dataset(g, ".", "targets", p, np);
        if (lpe_h5_exists(p[0].g, "true_prob")) join_dataset(g, ".", "true_prob", p, np);
        for (int j = 0; j < runs.n; j++) join_run(g, runs.v[j], p, np, T);
        H5Gclose(g);
    }
    names_free(&runs);
    for (int i = 0; i < np; i++) H5Gclose(p[i].g);
    free(p);
}

/* ---- the file ------------------------------------------------------------------------------ */

void lpe_results_merge(const char *out_path, const char *const *in, int n_in, int force) {
    static const char *const same[] = {"config", "model", "model_sha256", "distributions", "seed",
                                       "format_version", "backend", NULL};
    lpe_h5_quiet();
    shard_file *sf = lpe_calloc((size_t)n_in, sizeof *sf);
    char **tags = lpe_calloc((size_t)n_in, sizeof *tags);
    for (int i = 0; i < n_in; i++) {
        sf[i].path = in[i];
        sf[i].f = lpe_h5_open_read(in[i]);
        tags[i] = attr_text(sf[i].f, in[i], "shard");
        if (!tags[i])
            lpe_fail_input("%s: not a shard (no `shard` attribute; made by `lpe run --shard i/N`)",
                           in[i]);
        require_same(sf[0].f, in[0], sf[i].f, in[i], "root attribute ", same);
        for (int j = 0; j < i; j++)
            if (!strcmp(tags[i], tags[j]))
                lpe_fail_input("%s and %s: overlapping shards (both are shard %s)", in[j], in[i],
                               tags[i]);
    }
    names dists = groups_with(sf[0].f, "targets");
    for (int i = 1; i < n_in; i++) {
        names d = groups_with(sf[i].f, "targets");
        int ok = d.n == dists.n;
        for (int j = 0; ok && j < d.n; j++) ok = !strcmp(d.v[j], dists.v[j]);
        names_free(&d);
        if (!ok)
            lpe_fail_input("%s and %s: shards of different experiments (their distributions "
                           "differ)", in[0], in[i]);
    }
    for (int d = 0; d < dists.n; d++) merge_dist(-1, sf, n_in, dists.v[d]); /* all checks first */
    lpe_h5_out out;
    lpe_results_create(&out, out_path, force);
    static const char *const skip[] = {"shard", NULL};
    copy_attrs(out.file, sf[0].f, skip);
    for (int d = 0; d < dists.n; d++) merge_dist(out.file, sf, n_in, dists.v[d]);
    lpe_eval_results((int64_t)out.file, out.tmp, LPE_ZERO_CONST);
    lpe_h5_commit(&out);
    for (int i = 0; i < n_in; i++) {
        free(tags[i]);
        lpe_h5_close(sf[i].f);
    }
    names_free(&dists);
    free(tags);
    free(sf);
}
