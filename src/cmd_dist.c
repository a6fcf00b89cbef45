/* cmd_dist.c: `lpe dist random` (a seeded random distribution, for tests and experiments on
 * random models) and `lpe dist show` (what a distribution file holds).
 *
 * Dimension legend: V = vocabulary, k = positions, NF = factors, S = support size per factor.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/cmd.h"
#include "lpe/common.h"
#include "lpe/dist.h"
#include "lpe/philox.h"

static const char *random_usage =
    "usage: lpe dist random --out F.h5 --name NAME --vocab V --k K --support S\n"
    "                       [--factors NF] [--zipf A] [--seed SEED] [--const-first TOKEN]\n"
    "                       [--description TEXT]\n"
    "\n"
    "Adds a random distribution /NAME to F.h5 (created when missing; an existing NAME is an\n"
    "error). NF factors (default 1), each with S distinct tokens drawn without replacement from\n"
    "[0, V) (Philox stream DISTGEN, slot = factor), weighted like Zipf: the i-th token drawn has\n"
    "weight i^-A (A = 1 by default; 0 gives uniform weights). Positions cycle over the factors.\n"
    "--const-first TOKEN makes position 0 the constant TOKEN (like BOS), as one more factor.\n";

static const char *show_usage =
    "usage: lpe dist show F.h5 [NAME] [--vocab V]\n"
    "\n"
    "Summary of the distribution NAME (every one in the file when NAME is left out): positions,\n"
    "factors, support sizes, entropies, the number of distinct inputs, sha256. --vocab checks the\n"
    "tokens against a vocabulary of V tokens.\n";

static const char *dist_usage =
    "usage: lpe dist random ...   write a random distribution (lpe dist random --help)\n"
    "       lpe dist show F.h5    summarise a distribution file (lpe dist show --help)\n";

/* ---- show -------------------------------------------------------------------------------- */

static double factor_entropy(const lpe_dist *d, int f) { /* nats */
    double h = 0;
    for (int64_t i = d->offsets[f]; i < d->offsets[f + 1]; i++)
        if (d->probs[i] > 0) h -= d->probs[i] * d->log_probs[i];
    return h;
}

/* "0, 2-5, 9" */
static void print_positions(const lpe_dist *d, int f) {
    int first = 1;
    for (int j = 0; j < d->k; j++) {
        if (d->positions[j] != f) continue;
        int e = j;
        while (e + 1 < d->k && d->positions[e + 1] == f) e++;
        printf(first ? "%d" : ", %d", j);
        if (e > j) printf("-%d", e);
        first = 0;
        j = e;
    }
    if (first) printf("none (unused)");
}

static void show_one(const lpe_dist *d, const char *path) {
    double h = 0, log2n = 0;
    for (int j = 0; j < d->k; j++) {
        h += factor_entropy(d, d->positions[j]);
        log2n += log2((double)lpe_dist_support(d, j));
    }
    uint64_t n = lpe_dist_enum_size(d);
    printf("distribution '%s' in %s%s%s\n", d->name, path, d->description[0] ? ": " : "",
           d->description);
    printf("  positions k = %d, factors = %d, support entries = %lld\n", d->k, d->n_factors,
           (long long)d->offsets[d->n_factors]);
    if (n == UINT64_MAX) printf("  distinct inputs: more than 2^64 (2^%.1f)\n", log2n);
    else printf("  distinct inputs: %llu (2^%.1f)\n", (unsigned long long)n, log2n);
    printf("  entropy: %.4f nats (%.4f bits)\n", h, h / log(2));
    for (int f = 0; f < d->n_factors; f++) {
        int64_t a = d->offsets[f], s = d->offsets[f + 1] - a;
        int64_t top = a;
        for (int64_t i = a; i < a + s; i++) top = d->probs[i] > d->probs[top] ? i : top;
        printf("  factor %d: support %lld, entropy %.4f nats, most likely token %d (p = %.4g), "
               "positions ", f, (long long)s, factor_entropy(d, f), d->values[top], d->probs[top]);
        print_positions(d, f);
        printf("\n");
    }
    printf("  sha256: %s\n", d->sha256);
}

static int cmd_show(int argc, char **argv) {
    const char *path = NULL, *name = NULL;
    int vocab = 0;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            fputs(show_usage, stdout);
            return 0;
        } else if (!strcmp(argv[a], "--vocab") && a + 1 < argc) {
            long long v = lpe_parse_ll(argv[++a], "--vocab");
            if (v < 1 || v > INT32_MAX) lpe_fail_input("--vocab: expected a positive size, got %lld", v);
            vocab = (int)v;
        } else if (argv[a][0] == '-') {
            fprintf(stderr, "lpe dist show: unknown option '%s'\n%s", argv[a], show_usage);
            return LPE_EXIT_INPUT;
        } else if (!path) {
            path = argv[a];
        } else if (!name) {
            name = argv[a];
        } else {
            fprintf(stderr, "lpe dist show: unexpected argument '%s'\n%s", argv[a], show_usage);
            return LPE_EXIT_INPUT;
        }
    }
    if (!path) {
        fprintf(stderr, "lpe dist show: expected a file\n%s", show_usage);
        return LPE_EXIT_INPUT;
    }
    int n = 1;
    char **names = NULL;
    if (!name) {
        names = lpe_dist_names(path, &n);
        if (n == 0) lpe_fail_input("%s: no distribution groups in the file", path);
    }
    for (int i = 0; i < n; i++) {
        lpe_dist d;
        lpe_dist_load(&d, path, name ? name : names[i], vocab);
        show_one(&d, path);
        lpe_dist_free(&d);
        if (names) free(names[i]);
    }
    free(names);
    return 0;
}

/* ---- random ------------------------------------------------------------------------------ */

/* `dist random` options. */
typedef struct {
    const char *out, *name, *desc;
    long long V, k, S, NF, seed, cfirst;
    double zipf;
} random_args;

/* Options into r, checked; returns -1 to go on, else the exit code (help, bad usage). */
static int random_parse(random_args *r, int argc, char **argv) {
    for (int a = 1; a < argc; a++) {
        const char *o = argv[a];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            fputs(random_usage, stdout);
            return 0;
        }
        if (o[0] != '-' || a + 1 >= argc) {
            fprintf(stderr, "lpe dist random: %s '%s'\n%s",
                    o[0] != '-' ? "unexpected argument" : "missing value for", o, random_usage);
            return LPE_EXIT_INPUT;
        }
        const char *v = argv[++a];
        if (!strcmp(o, "--out")) r->out = v;
        else if (!strcmp(o, "--name")) r->name = v;
        else if (!strcmp(o, "--description")) r->desc = v;
        else if (!strcmp(o, "--vocab")) r->V = lpe_parse_ll(v, "--vocab");
        else if (!strcmp(o, "--k")) r->k = lpe_parse_ll(v, "--k");
        else if (!strcmp(o, "--support")) r->S = lpe_parse_ll(v, "--support");
        else if (!strcmp(o, "--factors")) r->NF = lpe_parse_ll(v, "--factors");
        else if (!strcmp(o, "--seed")) r->seed = lpe_parse_ll(v, "--seed");
        else if (!strcmp(o, "--const-first")) r->cfirst = lpe_parse_ll(v, "--const-first");
        else if (!strcmp(o, "--zipf")) r->zipf = lpe_parse_double(v, "--zipf");
        else {
            fprintf(stderr, "lpe dist random: unknown option '%s'\n%s", o, random_usage);
            return LPE_EXIT_INPUT;
        }
    }
    if (!r->out || !r->name || r->V < 0 || r->k < 0 || r->S < 0) {
        fprintf(stderr, "lpe dist random: --out, --name, --vocab, --k and --support are required\n%s",
                random_usage);
        return LPE_EXIT_INPUT;
    }
    const long long V = r->V, k = r->k, S = r->S, NF = r->NF, cfirst = r->cfirst;
    LPE_CHECK_INPUT(V >= 1 && V <= INT32_MAX, "--vocab: expected a positive size, got %lld", V);
    LPE_CHECK_INPUT(S >= 1 && S <= V, "--support: expected 1 .. vocab (%lld), got %lld", V, S);
    LPE_CHECK_INPUT(r->seed >= 0, "--seed: expected an integer >= 0, got %lld", r->seed);
    LPE_CHECK_INPUT(isfinite(r->zipf) && r->zipf >= 0, "--zipf: expected a number >= 0, got %g",
                    r->zipf);
    int nc = cfirst >= 0 ? 1 : 0; /* constant factors in front */
    LPE_CHECK_INPUT(cfirst >= -1 && cfirst < V,
                    "--const-first: expected a token in [0, %lld), got %lld", V, cfirst);
    LPE_CHECK_INPUT(k >= 1 + nc && k <= (1 << 20), "--k: expected %d .. 2^20 positions, got %lld",
                    1 + nc, k);
    LPE_CHECK_INPUT(NF >= 1 && NF <= k - nc,
                    "--factors: expected 1 .. %lld (every factor used by a position), got %lld",
                    k - nc, NF);
    LPE_CHECK_INPUT((double)NF * (double)S <= 1e9,
                    "--factors x --support: too large (%lld x %lld)", NF, S);
    return -1;
}

/* Factor nc + f: S distinct tokens drawn without replacement (partial Fisher-Yates: draw i
 * picks among the V - i tokens not drawn yet), with Zipf probabilities by draw order. */
static void random_factor(const random_args *r, int f, int64_t a, int32_t *values, double *probs,
                          int32_t *perm /* [V] */) {
    for (int64_t v = 0; v < r->V; v++) perm[v] = (int32_t)v;
    uint32_t stream = lpe_stream(LPE_STREAM_DISTGEN, (uint32_t)f);
    for (int64_t i = 0; i < r->S; i++) {
        uint32_t w[4];
        lpe_rng4(w, (uint64_t)r->seed, stream, (uint64_t)i, 0);
        int64_t j = i + (int64_t)lpe_below(w[0], (uint32_t)(r->V - i));
        int32_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
        values[a + i] = perm[i];
        probs[a + i] = pow((double)(i + 1), -r->zipf);
    }
}

static int cmd_random(int argc, char **argv) {
    random_args r = {.V = -1, .k = -1, .S = -1, .NF = 1, .cfirst = -1, .zipf = 1.0};
    int rc = random_parse(&r, argc, argv);
    if (rc >= 0) return rc;
    const long long V = r.V, k = r.k, S = r.S, NF = r.NF;
    int nc = r.cfirst >= 0 ? 1 : 0; /* constant factors in front */
    int nf = (int)NF + nc;
    int64_t NS = nc + NF * S;
    int64_t *offsets = lpe_calloc((size_t)nf + 1, sizeof(int64_t)); /* [NF + 1] */
    int32_t *values = lpe_calloc((size_t)NS, sizeof(int32_t));      /* [NS] */
    double *probs = lpe_calloc((size_t)NS, sizeof(double));         /* [NS] */
    int32_t *positions = lpe_calloc((size_t)k, sizeof(int32_t));    /* [k] */
    int32_t *perm = lpe_calloc((size_t)V, sizeof(int32_t));         /* [V] */
    if (nc) {
        values[0] = (int32_t)r.cfirst;
        probs[0] = 1;
        offsets[1] = 1;
    }
    for (int f = 0; f < (int)NF; f++) {
        random_factor(&r, f, offsets[nc + f], values, probs, perm);
        offsets[nc + f + 1] = offsets[nc + f] + S;
    }
    for (int j = 0; j < k; j++) positions[j] = j < nc ? 0 : nc + (j - nc) % (int)NF;
    char descbuf[256];
    if (!r.desc) {
        snprintf(descbuf, sizeof descbuf,
                 "random: vocab %lld, k %lld, %lld factor(s) of support %lld, zipf %g, seed %lld%s",
                 V, k, NF, S, r.zipf, r.seed, nc ? ", constant first token" : "");
        r.desc = descbuf;
    }
    lpe_dist d;
    lpe_dist_from_arrays(&d, r.name, r.desc, nf, offsets, values, probs, (int)k, positions, (int)V);
    lpe_dist_save(&d, r.out);
    show_one(&d, r.out);
    lpe_dist_free(&d);
    free(offsets);
    free(values);
    free(probs);
    free(positions);
    free(perm);
    return 0;
}

int lpe_cmd_dist(int argc, char **argv) {
    if (argc < 2) {
        fputs(dist_usage, stderr);
        return LPE_EXIT_INPUT;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(dist_usage, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "random")) return cmd_random(argc - 1, argv + 1);
    if (!strcmp(argv[1], "show")) return cmd_show(argc - 1, argv + 1);
    fprintf(stderr, "lpe dist: unknown subcommand '%s'\n%s", argv[1], dist_usage);
    return LPE_EXIT_INPUT;
}
