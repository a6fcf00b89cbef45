/* cmd_info.c: `lpe info FILE.h5...`: what a file holds, told from its contents.
 *
 * Kinds, checked in this order: results (root attribute `config`), model (root attribute
 * `d_model`), ground truth (root `counts` or `probs` with attribute `n_samples`), distributions
 * (groups holding `values` and `probs`). Anything else, or a file that is not HDF5: exit 2.
 *
 * Dimension legend: V = d_vocab, T = targets, NF = factors, k = positions.
 */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/cmd.h"
#include "lpe/common.h"
#include "lpe/dist.h"
#include "lpe/h5io.h"
#include "lpe/model.h"
#include "lpe/truth.h"

/* ---- children of a group --------------------------------------------------------------- */

typedef struct {
    char **names;
    int n, cap, want_groups;
} children;

static herr_t collect(hid_t loc, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    children *c = data;
    H5O_info_t oi;
    if (H5Oget_info_by_name(loc, name, &oi, H5P_DEFAULT) < 0) return 0;
    if ((oi.type == H5O_TYPE_GROUP) != (c->want_groups != 0)) return 0;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 8;
        c->names = lpe_realloc(c->names, (size_t)c->cap * sizeof *c->names);
    }
    c->names[c->n++] = lpe_strdup(name);
    return 0;
}

/* Groups (want_groups) or datasets directly under loc, by name. */
static children list_children(hid_t loc, int want_groups) {
    children c = {.want_groups = want_groups};
    hsize_t idx = 0;
    H5_CHECK(H5Literate(loc, H5_INDEX_NAME, H5_ITER_INC, &idx, collect, &c));
    return c;
}

static void free_children(children *c) {
    for (int i = 0; i < c->n; i++) free(c->names[i]);
    free(c->names);
}

static void print_str_attr(hid_t loc, const char *file, const char *name, const char *label) {
    if (!lpe_h5_has_attr(loc, name)) return;
    char *s = lpe_h5_get_attr_str(loc, file, name);
    printf("  %-16s %s\n", label, s);
    free(s);
}

/* ---- kinds --------------------------------------------------------------------------------- */

static void info_model(const char *path) {
    lpe_model m;
    lpe_model_load(&m, path);
    const lpe_model_config *c = &m.cfg;
    printf("%s: model\n", path);
    printf("  layers %d, d_model %d, heads %d x %d, d_mlp %d, vocab %d, ctx %d\n", c->n_layers,
           c->d_model, c->n_heads, c->d_head, c->attn_only ? 0 : c->d_mlp, c->d_vocab, c->n_ctx);
    printf("  act %s, ln_eps %g%s%s\n", lpe_act_name(c->act), c->ln_eps,
           c->attn_only ? ", attention only" : "", c->has_b_U ? ", with b_U" : "");
    printf("  parameters       %zu (%.1f MB float32)\n", m.n_floats, m.n_floats * 4.0 / 1e6);
    printf("  vocabulary bytes %s\n", m.vocab_offsets ? "present" : "absent");
    printf("  sha256           %s\n", m.sha256);
    lpe_model_free(&m);
}

static void info_dists(const char *path, const children *groups) {
    printf("%s: distributions (%d)\n", path, groups->n);
    for (int i = 0; i < groups->n; i++) {
        lpe_dist d;
        lpe_dist_load(&d, path, groups->names[i], 0);
        double l2 = lpe_dist_log2_space(&d); /* not the saturating uint64 count: spaces > 2^64 */
        printf("  %s: k %d, %d factor%s, input space %.4g (2^%.1f)%s%s\n", d.name, d.k,
               d.n_factors, d.n_factors == 1 ? "" : "s", exp2(l2), l2,
               d.description && d.description[0] ? ", " : "", d.description ? d.description : "");
        printf("    supports per position:");
        for (int j = 0; j < d.k; j++) printf(" %d", lpe_dist_support(&d, j));
        printf("\n    sha256 %s\n", d.sha256);
        lpe_dist_free(&d);
    }
}

static int cmp_desc(const void *a, const void *b, void *ctx) {
    const double *p = ctx;
    double x = p[*(const int *)a], y = p[*(const int *)b];
    return (x < y) - (x > y);
}

static void info_truth(const char *path) {
    lpe_truth t;
    lpe_truth_read(&t, path);
    int V = t.d_vocab;
    printf("%s: ground truth (%s)\n", path, t.exact ? "exact" : "sampled");
    printf("  distribution     %s (sha256 %.16s...)\n", t.dist_name, t.dist_sha256);
    printf("  model sha256     %s\n", t.model_sha256);
    printf("  %-16s %llu\n", t.exact ? "inputs" : "samples", (unsigned long long)t.n_samples);
    if (!t.exact) printf("  seed             %llu, %d range%s\n", (unsigned long long)t.seed, t.n_ranges,
                         t.n_ranges == 1 ? "" : "s");
    printf("  vocab %d, k %d\n", V, t.k);
    int nz = 0, rare = 0;
    for (int v = 0; v < V; v++) {
        nz += t.probs[v] > 0;
        rare += t.probs[v] >= 1e-9 && t.probs[v] <= 1e-5;
    }
    printf("  tokens ever argmax %d; with p in [1e-9, 1e-5]: %d\n", nz, rare);
    int *order = lpe_calloc((size_t)V, sizeof *order); /* [V] by descending probability */
    for (int v = 0; v < V; v++) order[v] = v;
    qsort_r(order, (size_t)V, sizeof *order, cmp_desc, t.probs);
    printf("  top tokens:");
    for (int i = 0; i < V && i < 10 && t.probs[order[i]] > 0; i++)
        printf(" %d (%.3g)", order[i], t.probs[order[i]]);
    printf("\n");
    free(order);
    lpe_truth_free(&t);
}

static void info_results(const char *path, hid_t f) {
    printf("%s: results\n", path);
    print_str_attr(f, path, "lpe_version", "lpe version");
    print_str_attr(f, path, "created", "created");
    print_str_attr(f, path, "backend", "backend");
    print_str_attr(f, path, "device", "device");
    print_str_attr(f, path, "model", "model");
    print_str_attr(f, path, "model_sha256", "model sha256");
    print_str_attr(f, path, "distributions", "distributions");
    if (lpe_h5_has_attr(f, "seed")) printf("  %-16s %lld\n", "seed", lpe_h5_get_attr_int(f, path, "seed"));
    children dists = list_children(f, 1);
    for (int i = 0; i < dists.n; i++) {
        if (!strcmp(dists.names[i], "eval")) continue;
        hid_t g = H5Gopen2(f, dists.names[i], H5P_DEFAULT);
        if (g < 0 || !lpe_h5_exists(g, "targets")) {
            if (g >= 0) H5Gclose(g);
            continue;
        }
        int64_t T = 0;
        int32_t *targets = lpe_h5_read(g, path, "targets", H5T_NATIVE_INT32, 1, (int64_t[]){-1}, &T);
        char *truth = lpe_h5_has_attr(g, "truth") ? lpe_h5_get_attr_str(g, path, "truth") : NULL;
        printf("  /%s: %lld targets, truth %s", dists.names[i], (long long)T, truth ? truth : "?");
        if (T > 0 && lpe_h5_exists(g, "true_prob")) {
            double *p = lpe_h5_read(g, path, "true_prob", H5T_NATIVE_DOUBLE, 1, (int64_t[]){T}, NULL);
            double lo = INFINITY, hi = -INFINITY;
            for (int64_t t = 0; t < T; t++) lo = fmin(lo, p[t]), hi = fmax(hi, p[t]);
            printf(", true p in [%.3g, %.3g]", lo, hi);
            free(p);
        }
        printf("\n");
        children runs = list_children(g, 1);
        for (int r = 0; r < runs.n; r++) {
            hid_t mg = H5Gopen2(g, runs.names[r], H5P_DEFAULT);
            if (mg < 0) continue;
            if (lpe_h5_exists(mg, "estimate")) {
                children ds = list_children(mg, 0);
                double sec = lpe_h5_has_attr(mg, "seconds") ? lpe_h5_get_attr_double(mg, path, "seconds") : NAN;
                printf("    %-28s %.3g s; datasets:", runs.names[r], sec);
                for (int j = 0; j < ds.n; j++) printf(" %s", ds.names[j]);
                printf("\n");
                free_children(&ds);
            }
            H5Gclose(mg);
        }
        free_children(&runs);
        free(truth);
        free(targets);
        H5Gclose(g);
    }
    free_children(&dists);
}

static int info_one(const char *path) {
    hid_t f = lpe_h5_open_read(path);
    if (lpe_h5_has_attr(f, "config")) {
        info_results(path, f);
        lpe_h5_close(f);
        return 0;
    }
    if (lpe_h5_has_attr(f, "d_model")) {
        lpe_h5_close(f);
        info_model(path);
        return 0;
    }
    if ((lpe_h5_exists(f, "counts") || lpe_h5_exists(f, "probs")) && lpe_h5_has_attr(f, "n_samples")) {
        lpe_h5_close(f);
        info_truth(path);
        return 0;
    }
    children groups = list_children(f, 1), dists = {0};
    for (int i = 0; i < groups.n; i++) {
        char a[1100], b[1100];
        snprintf(a, sizeof a, "%s/values", groups.names[i]);
        snprintf(b, sizeof b, "%s/probs", groups.names[i]);
        if (lpe_h5_exists(f, a) && lpe_h5_exists(f, b)) {
            if (dists.n == dists.cap) {
                dists.cap = dists.cap ? 2 * dists.cap : 8;
                dists.names = lpe_realloc(dists.names, (size_t)dists.cap * sizeof *dists.names);
            }
            dists.names[dists.n++] = lpe_strdup(groups.names[i]);
        }
    }
    lpe_h5_close(f);
    free_children(&groups);
    if (!dists.n)
        lpe_fail_input("%s: not a file lpe knows (no model, distribution, ground-truth or results "
                       "layout)", path);
    info_dists(path, &dists);
    free_children(&dists);
    return 0;
}

int lpe_cmd_info(int argc, char **argv) {
    int n = 0;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            printf("usage: lpe info FILE.h5...\n\n"
                   "Describes each file: a model (shape, parameter count, sha256), a distribution\n"
                   "file (groups, k, support sizes, input space), a ground-truth file (samples,\n"
                   "exact or not, top tokens, tokens with p in [1e-9, 1e-5]) or a results file\n"
                   "(version, backend, device, distributions, targets, methods).\n"
                   "Exit 2 for a file that is not HDF5 or of none of these kinds.\n");
            return LPE_EXIT_OK;
        }
        if (argv[a][0] == '-' && argv[a][1]) {
            fprintf(stderr, "lpe info: unknown option '%s'\n", argv[a]);
            return LPE_EXIT_INPUT;
        }
    }
    for (int a = 1; a < argc; a++) {
        if (n++) printf("\n");
        info_one(argv[a]);
    }
    if (!n) {
        fprintf(stderr, "usage: lpe info FILE.h5...\n");
        return LPE_EXIT_INPUT;
    }
    return LPE_EXIT_OK;
}
