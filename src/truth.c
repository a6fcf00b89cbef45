/* truth.c: ground truth (methods.md §5): argmax counts over numbered samples, exact enumeration, and
 * the ground-truth file (methods.md §8) with its checkpoints and merging of shards. See truth.h.
 *
 * Dimension legend: V = d_vocab, B = batch rows, k = positions, R = sample ranges.
 */
#include "lpe/truth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lpe/common.h"
#include "lpe/h5io.h"
#include "lpe/philox.h"

static int batch_of(const lpe_backend *be, const lpe_truth_opts *opt) {
    int B = opt && opt->batch > 0 ? opt->batch : be->max_batch;
    LPE_ASSERT(B >= 1 && B <= be->max_batch);
    return B;
}

/* ---- runners ----------------------------------------------------------------------------- */

/* The argmax counts stay in the backend (argmax_hist_add: on a GPU no per-batch copy of the
 * argmax) and come to `counts` at checkpoints and at the end; integer counts, so the result is
 * the same as counting row by row on the host. */
void lpe_truth_sample(uint64_t *counts /* [V] */, lpe_backend *be, const lpe_dist *d,
                      uint64_t seed, uint64_t first, uint64_t n, const lpe_truth_opts *opt) {
    int B = batch_of(be, opt), V = be->model->cfg.d_vocab;
    LPE_ASSERT(d->k == be->k);
    be->use_dist(be, d);
    uint32_t stream = lpe_stream(LPE_STREAM_INPUT, LPE_TRUTH_STREAM_SLOT);
    uint64_t before = 0; /* sum of counts on entry: the end checks that n rows were counted */
    for (int v = 0; v < V; v++) before += counts[v];
    lpe_progress pr;
    if (opt && opt->progress) lpe_progress_begin(&pr, opt->progress);
    double t_ckpt = lpe_now();
    uint64_t end = first + n;
    LPE_ASSERT(end >= first); /* no wrap-around of sample numbers */
    for (uint64_t next = first; next < end;) {
        /* batches end at multiples of B in absolute sample numbers (see truth.h) */
        uint64_t stop = (next / (uint64_t)B + 1) * (uint64_t)B;
        if (stop > end || stop < next) stop = end;
        int nb = (int)(stop - next);
        be->sample_tokens(be, seed, stream, next, nb);
        be->forward(be, NULL, NULL, nb, 0);
        be->argmax_hist_add(be, 0, nb);
        next = stop;
        if (opt && opt->progress) lpe_progress_update(&pr, (double)(next - first), (double)n, "samples");
        if (opt && opt->checkpoint && next < end && lpe_now() - t_ckpt >= opt->every_s) {
            be->argmax_hist_take(be, counts);
            opt->checkpoint(opt->ctx, counts, next);
            t_ckpt = lpe_now();
        }
    }
    be->argmax_hist_take(be, counts);
    if (opt && opt->progress) lpe_progress_end(&pr);
    uint64_t after = 0;
    for (int v = 0; v < V; v++) after += counts[v];
    LPE_ASSERT(after - before == n);
}

/* Each token's probability is a sum of up to 2^24 (or more) positive terms. Plain summation
 * can lose up to n*eps relative (2e-9 at 2^24), the size of the rarest targets' relative
 * differences that the evaluation cares about; Neumaier's compensated sum keeps every token's
 * error at a few ulps whatever n, for the cost of one more array. Terms are added in
 * enumeration order, so the result is deterministic for any batch size. */
void lpe_truth_exact(double *probs /* [V] */, lpe_backend *be, const lpe_dist *d,
                     const lpe_truth_opts *opt) {
    int B = batch_of(be, opt), V = be->model->cfg.d_vocab, k = d->k;
    LPE_ASSERT(d->k == be->k);
    uint64_t total = lpe_dist_enum_size(d);
    LPE_ASSERT(total < UINT64_MAX);
    /* one allocation for this run's buffers */
    size_t sz_tok = (size_t)B * k * sizeof(int32_t), sz_w = (size_t)B * sizeof(double),
           sz_am = (size_t)B * sizeof(int32_t), sz_c = (size_t)V * sizeof(double);
    char *mem = lpe_calloc(sz_tok + sz_w + sz_am + sz_c + 64, 1);
    double *w = (double *)mem;                          /* [B] p(x) of each row */
    double *comp = (double *)(mem + sz_w);              /* [V] compensation terms */
    int32_t *tokens = (int32_t *)(mem + sz_w + sz_c);   /* [B, k] */
    int32_t *argmax = (int32_t *)(mem + sz_w + sz_c + sz_tok); /* [B] */
    lpe_fwd_out out = {.argmax = argmax};
    for (int v = 0; v < V; v++) probs[v] = 0;
    lpe_progress pr;
    if (opt && opt->progress) lpe_progress_begin(&pr, opt->progress);
    for (uint64_t next = 0; next < total;) {
        int nb = total - next < (uint64_t)B ? (int)(total - next) : B;
        for (int b = 0; b < nb; b++) {
            /* mixed radix, last position fastest (as lpe_dist_enum_decode), with the product of
             * the probabilities instead of exp(sum of logs): one rounding per factor */
            uint64_t idx = next + (uint64_t)b;
            double p = 1;
            for (int j = k - 1; j >= 0; j--) {
                int f = d->positions[j];
                uint64_t n = (uint64_t)(d->offsets[f + 1] - d->offsets[f]);
                int64_t e = d->offsets[f] + (int64_t)(idx % n);
                idx /= n;
                tokens[(int64_t)b * k + j] = d->values[e];
                p *= d->probs[e];
            }
            w[b] = p;
        }
        be->load_tokens(be, tokens, nb);
        be->forward(be, &out, NULL, nb, 0);
        for (int b = 0; b < nb; b++) {
            int v = argmax[b];
            LPE_ASSERT(v >= 0 && v < V);
            double s = probs[v], t = s + w[b];
            comp[v] += fabs(s) >= fabs(w[b]) ? (s - t) + w[b] : (w[b] - t) + s;
            probs[v] = t;
        }
        next += (uint64_t)nb;
        if (opt && opt->progress) lpe_progress_update(&pr, (double)next, (double)total, "inputs");
    }
    if (opt && opt->progress) lpe_progress_end(&pr);
    for (int v = 0; v < V; v++) probs[v] += comp[v];
    free(mem);
}

/* ---- shards ------------------------------------------------------------------------------ */

void lpe_truth_shard_range(uint64_t *a, uint64_t *b, uint64_t n, uint64_t i, uint64_t N,
                           uint64_t block) {
    LPE_ASSERT(N >= 1 && i < N && block >= 1);
    /* whole blocks, so that shards see the unsharded run's batches (see LPE_TRUTH_SHARD_BLOCK) */
    uint64_t nb = n / block + (n % block != 0);
    uint64_t q = nb / N, r = nb % N; /* the first r shards get one more block */
    uint64_t ba = i * q + (i < r ? i : r), bb = ba + q + (i < r ? 1 : 0);
    *a = ba * block < n ? ba * block : n;
    *b = bb * block < n ? bb * block : n;
}

static int parse_u64(const char *s, const char *end, uint64_t *v) {
    if (s == end) return 0;
    uint64_t x = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9') return 0;
        if (x > (UINT64_MAX - 9) / 10) return 0;
        x = 10 * x + (uint64_t)(*p - '0');
    }
    *v = x;
    return 1;
}

void lpe_truth_parse_shard(const char *s, const char *what, uint64_t *i, uint64_t *N) {
    const char *slash = strchr(s, '/');
    if (!slash || !parse_u64(s, slash, i) || !parse_u64(slash + 1, slash + strlen(slash), N))
        lpe_fail_input("%s: expected i/N with integers 0 <= i < N (e.g. 0/4), got '%s'", what, s);
    if (*N < 1 || *i >= *N)
        lpe_fail_input("%s: expected i/N with 0 <= i < N (shards are numbered from 0), got '%s'",
                       what, s);
}

/* ---- files ------------------------------------------------------------------------------- */

static void write_common(hid_t f, const lpe_truth *t) {
    int64_t V = t->d_vocab;
    if (t->exact) {
        lpe_h5_write(f, "probs", H5T_NATIVE_DOUBLE, 1, &V, t->probs, 0);
    } else {
        lpe_h5_write(f, "counts", H5T_NATIVE_UINT64, 1, &V, t->counts, 0);
        int64_t dims[2] = {t->n_ranges, 2};
        lpe_h5_write(f, "ranges", H5T_NATIVE_UINT64, 2, dims, t->ranges, 0);
    }
    LPE_ASSERT(t->n_samples <= (uint64_t)INT64_MAX && t->seed <= (uint64_t)INT64_MAX);
    lpe_h5_attr_int(f, "n_samples", (long long)t->n_samples);
    lpe_h5_attr_int(f, "exact", t->exact);
    lpe_h5_attr_str(f, "model_sha256", t->model_sha256);
    lpe_h5_attr_str(f, "distribution", t->dist_name);
    lpe_h5_attr_str(f, "distribution_sha256", t->dist_sha256);
    lpe_h5_attr_int(f, "seed", (long long)t->seed);
    lpe_h5_attr_int(f, "stream", lpe_stream(LPE_STREAM_INPUT, LPE_TRUTH_STREAM_SLOT));
    lpe_h5_attr_int(f, "d_vocab", t->d_vocab);
    lpe_h5_attr_int(f, "k", t->k);
    lpe_h5_attr_int(f, "format_version", LPE_TRUTH_FORMAT_VERSION);
    lpe_h5_attr_str(f, "lpe_version", lpe_version());
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    lpe_h5_attr_str(f, "created", when);
}

void lpe_truth_write(const lpe_truth *t, const char *path, int force) {
    lpe_h5_out o;
    lpe_h5_create(&o, path, force);
    write_common(o.file, t);
    lpe_h5_commit(&o);
}

static void get_str(char *dst, size_t cap, hid_t f, const char *path, const char *name) {
    char *s = lpe_h5_get_attr_str(f, path, name);
    if (strlen(s) >= cap) lpe_fail_input("%s: attribute %s: too long", path, name);
    snprintf(dst, cap, "%s", s);
    free(s);
}

static void read_from(lpe_truth *t, hid_t f, const char *path) {
    memset(t, 0, sizeof *t);
    long long ver = lpe_h5_get_attr_int(f, path, "format_version");
    if (ver < 1 || ver > LPE_TRUTH_FORMAT_VERSION)
        lpe_fail_input("%s: format_version %lld is not supported (this build reads 1 .. %d)", path,
                       ver, LPE_TRUTH_FORMAT_VERSION);
    long long exact = lpe_h5_get_attr_int(f, path, "exact");
    long long ns = lpe_h5_get_attr_int(f, path, "n_samples");
    long long seed = lpe_h5_get_attr_int(f, path, "seed");
    if (exact != 0 && exact != 1) lpe_fail_input("%s: attribute exact: expected 0 or 1, found %lld", path, exact);
    if (ns <= 0) lpe_fail_input("%s: attribute n_samples: expected > 0, found %lld", path, ns);
    if (seed < 0) lpe_fail_input("%s: attribute seed: expected >= 0, found %lld", path, seed);
    t->exact = (int)exact;
    t->n_samples = (uint64_t)ns;
    t->seed = (uint64_t)seed;
    t->k = lpe_h5_has_attr(f, "k") ? (int)lpe_h5_get_attr_int(f, path, "k") : 0;
    get_str(t->model_sha256, sizeof t->model_sha256, f, path, "model_sha256");
    get_str(t->dist_name, sizeof t->dist_name, f, path, "distribution");
    get_str(t->dist_sha256, sizeof t->dist_sha256, f, path, "distribution_sha256");
    int64_t dims[2] = {-1, 2}, found[2];
    const char *main_ds = t->exact ? "probs" : "counts";
    if (!lpe_h5_exists(f, main_ds))
        lpe_fail_input("%s: dataset %s missing (exact = %d)", path, main_ds, t->exact);
    if (t->exact) {
        t->probs = lpe_h5_read(f, path, "probs", H5T_NATIVE_DOUBLE, 1, dims, found);
        t->d_vocab = (int)found[0];
        double s = 0;
        for (int v = 0; v < t->d_vocab; v++) {
            if (!(t->probs[v] >= 0 && t->probs[v] <= 1))
                lpe_fail_input("%s: dataset probs: entry %d is %g, expected a probability", path, v,
                               t->probs[v]);
            s += t->probs[v];
        }
        if (fabs(s - 1) > 1e-9) lpe_fail_input("%s: dataset probs: sums to %.17g, expected 1", path, s);
        return;
    }
    t->counts = lpe_h5_read(f, path, "counts", H5T_NATIVE_UINT64, 1, dims, found);
    t->d_vocab = (int)found[0];
    t->ranges = lpe_h5_read(f, path, "ranges", H5T_NATIVE_UINT64, 2, dims, found);
    t->n_ranges = (int)found[0];
    uint64_t sum = 0, covered = 0;
    for (int v = 0; v < t->d_vocab; v++) sum += t->counts[v];
    for (int r = 0; r < t->n_ranges; r++) {
        uint64_t a = t->ranges[2 * r], b = t->ranges[2 * r + 1];
        if (b <= a || (r > 0 && a < t->ranges[2 * r - 1]))
            lpe_fail_input("%s: dataset ranges: row %d [%llu, %llu) is empty or overlaps the one "
                           "before", path, r, (unsigned long long)a, (unsigned long long)b);
        covered += b - a;
    }
    if (sum != t->n_samples || covered != t->n_samples)
        lpe_fail_input("%s: counts sum to %llu and ranges cover %llu samples, attribute n_samples "
                       "is %llu", path, (unsigned long long)sum, (unsigned long long)covered,
                       (unsigned long long)t->n_samples);
    t->probs = lpe_calloc((size_t)t->d_vocab, sizeof(double));
    for (int v = 0; v < t->d_vocab; v++) t->probs[v] = (double)t->counts[v] / (double)t->n_samples;
}

void lpe_truth_read(lpe_truth *t, const char *path) {
    hid_t f = lpe_h5_open_read(path);
    read_from(t, f, path);
    lpe_h5_close(f);
}

/* Ground truth made before models were identified by content (lpe up to issue 13) names the
 * model file's bytes: still accepted for that very file. */
static int legacy_model_match(const lpe_truth *t, const lpe_model *m) {
    if (!m->path[0]) return 0;
    char file_sha[65];
    lpe_sha256_file(file_sha, m->path);
    return !strcmp(file_sha, t->model_sha256);
}

void lpe_truth_load(lpe_truth *t, const char *path, const lpe_model *m, const lpe_dist *d,
                    int allow_mismatch) {
    lpe_truth_read(t, path);
    if (t->d_vocab != m->cfg.d_vocab)
        lpe_fail_input("%s: ground truth over %d tokens, but the model %s has d_vocab = %d", path,
                       t->d_vocab, m->path, m->cfg.d_vocab);
    void (*complain)(const char *, ...) = allow_mismatch ? lpe_warn : lpe_fail_input;
    if (m->sha256[0] && strcmp(t->model_sha256, m->sha256) != 0 && !legacy_model_match(t, m))
        complain("%s: computed for another model (model_sha256 %.12s..., but %s has %.12s...)", path,
                 t->model_sha256, m->path, m->sha256);
    if (strcmp(t->dist_sha256, d->sha256) != 0)
        complain("%s: computed for another distribution (distribution_sha256 %.12s... of '%s', but "
                 "'%s' has %.12s...)", path, t->dist_sha256, t->dist_name, d->name, d->sha256);
    if (t->k && t->k != d->k)
        complain("%s: computed for inputs of %d positions, distribution '%s' has %d", path, t->k,
                 d->name, d->k);
}

void lpe_truth_free(lpe_truth *t) {
    free(t->ranges);
    free(t->counts);
    free(t->probs);
    memset(t, 0, sizeof *t);
}

/* ---- merging ----------------------------------------------------------------------------- */

typedef struct {
    uint64_t a, b;
    int part;
} range_ref;

static int cmp_range(const void *x, const void *y) {
    const range_ref *p = x, *q = y;
    return (p->a > q->a) - (p->a < q->a);
}

void lpe_truth_merge(lpe_truth *out, const lpe_truth *parts, const char *const *names, int n) {
    LPE_CHECK_INPUT(n >= 1, "truth merge: no input files");
    const lpe_truth *p0 = &parts[0];
    int R = 0;
    for (int i = 0; i < n; i++) {
        const lpe_truth *p = &parts[i];
        if (p->exact) lpe_fail_input("%s: an exact ground truth cannot be merged (only sampled shards)", names[i]);
        if (p->d_vocab != p0->d_vocab || strcmp(p->model_sha256, p0->model_sha256) ||
            strcmp(p->dist_sha256, p0->dist_sha256) || p->seed != p0->seed || p->k != p0->k)
            lpe_fail_input("%s and %s: not shards of the same run (model, distribution, seed, "
                           "vocabulary or k differ)", names[0], names[i]);
        R += p->n_ranges;
    }
    range_ref *rr = lpe_calloc((size_t)R, sizeof(range_ref)); /* [R] */
    R = 0;
    for (int i = 0; i < n; i++)
        for (int r = 0; r < parts[i].n_ranges; r++)
            rr[R++] = (range_ref){parts[i].ranges[2 * r], parts[i].ranges[2 * r + 1], i};
    qsort(rr, (size_t)R, sizeof *rr, cmp_range);
    for (int r = 1; r < R; r++)
        if (rr[r].a < rr[r - 1].b)
            lpe_fail_input("%s and %s overlap: samples [%llu, %llu) and [%llu, %llu)",
                           names[rr[r - 1].part], names[rr[r].part], (unsigned long long)rr[r - 1].a,
                           (unsigned long long)rr[r - 1].b, (unsigned long long)rr[r].a,
                           (unsigned long long)rr[r].b);
    memset(out, 0, sizeof *out);
    out->d_vocab = p0->d_vocab;
    out->k = p0->k;
    out->seed = p0->seed;
    memcpy(out->model_sha256, p0->model_sha256, sizeof out->model_sha256);
    memcpy(out->dist_name, p0->dist_name, sizeof out->dist_name);
    memcpy(out->dist_sha256, p0->dist_sha256, sizeof out->dist_sha256);
    out->counts = lpe_calloc((size_t)out->d_vocab, sizeof(uint64_t));
    out->ranges = lpe_calloc((size_t)R * 2, sizeof(uint64_t));
    for (int i = 0; i < n; i++) {
        for (int v = 0; v < out->d_vocab; v++) out->counts[v] += parts[i].counts[v];
        out->n_samples += parts[i].n_samples;
    }
    for (int r = 0; r < R; r++) { /* coalesce touching ranges */
        if (out->n_ranges > 0 && out->ranges[2 * out->n_ranges - 1] == rr[r].a) {
            out->ranges[2 * out->n_ranges - 1] = rr[r].b;
        } else {
            out->ranges[2 * out->n_ranges] = rr[r].a;
            out->ranges[2 * out->n_ranges + 1] = rr[r].b;
            out->n_ranges++;
        }
    }
    free(rr);
}

/* ---- checkpoints ------------------------------------------------------------------------- */

void lpe_truth_ckpt_write(const char *path, const lpe_truth *t, uint64_t end) {
    LPE_ASSERT(!t->exact && t->n_ranges == 1);
    lpe_h5_out o;
    lpe_h5_create(&o, path, 1); /* replaces the previous checkpoint by rename */
    write_common(o.file, t);
    lpe_h5_attr_int(o.file, "checkpoint_end", (long long)end);
    lpe_h5_commit(&o);
}

int lpe_truth_ckpt_read(lpe_truth *t, uint64_t *end, const char *path) {
    if (access(path, F_OK) != 0) return 0;
    hid_t f = lpe_h5_open_read(path);
    read_from(t, f, path);
    long long e = lpe_h5_get_attr_int(f, path, "checkpoint_end");
    lpe_h5_close(f);
    if (t->n_ranges != 1 || e < 0 || (uint64_t)e < t->ranges[1])
        lpe_fail_input("%s: not a checkpoint of a sampled run (one range, checkpoint_end after it)", path);
    *end = (uint64_t)e;
    return 1;
}
