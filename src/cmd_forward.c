/* cmd_forward.c: `lpe forward`: one input through the model, as JSON: argmax, top logits, the
 * target logit, and (with a target) the gradient scores g_j(y) over a distribution's supports,
 * or per-position norms of ds/dr0 when no distribution is given.
 *
 * Dimension legend: k positions, D = d_model, V = d_vocab, n_j = support size of position j.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/backend.h"
#include "lpe/cmd.h"
#include "lpe/common.h"
#include "lpe/dist.h"
#include "lpe/model.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lpe forward --model M.h5 --tokens ID,ID,... [--target T] [--top N]\n"
            "                   [--dist FILE.h5 [--dist-name NAME]] [--backend cpu|cuda|auto]\n"
            "                   [--logits] [--grad]\n\n"
            "Runs one input (k = number of ids) and prints JSON: tokens, argmax, max logit, the\n"
            "top N logits (default 10; ties: lower id first), and with --target the target logit\n"
            "and its gradient: scores g_j(y) = W_E[y] . ds/dr0_j for every position j and every y\n"
            "in the support of position j when --dist is given (the distribution must have k\n"
            "positions; --dist-name may be left out when the file holds one distribution), else\n"
            "the norm of ds/dr0_j per position. For tests and debugging: --logits adds all V\n"
            "logits, --grad the whole gradient ds/dr0 [k][d_model]. Default backend: cpu.\n");
}

static int32_t *parse_tokens(const char *s, int *k_out) {
    int cap = 16, k = 0;
    int32_t *t = lpe_calloc(cap, sizeof *t);
    const char *p = s;
    while (*p) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || (*end && *end != ','))
            lpe_fail_input("forward: --tokens '%s': expected comma-separated integer ids", s);
        if (v < INT32_MIN || v > INT32_MAX)
            lpe_fail_input("forward: --tokens: id %lld is out of range", v);
        if (k == cap) t = lpe_realloc(t, (size_t)(cap *= 2) * sizeof *t);
        t[k++] = (int32_t)v;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) lpe_fail_input("forward: --tokens '%s' ends with a comma", s);
    }
    if (k == 0) lpe_fail_input("forward: --tokens is empty");
    *k_out = k;
    return t;
}

static void json_token_text(const lpe_model *m, int v) {
    if (!m->vocab_offsets) return;
    printf(", \"text\": \"");
    for (int64_t i = m->vocab_offsets[v]; i < m->vocab_offsets[v + 1]; i++) {
        unsigned char ch = m->vocab_bytes[i];
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            printf("\\u%04x", ch); /* a byte, shown as its code point */
        else
            putchar(ch);
    }
    putchar('"');
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        if ((unsigned char)*s < 0x20)
            printf("\\u%04x", (unsigned char)*s);
        else
            putchar(*s);
    }
    putchar('"');
}

/* The command's options and what it computed: shared by the steps below. */
typedef struct {
    const char *model_path, *tokens_s, *dist_path, *dist_name, *backend;
    long long target, top;
    int has_target, want_logits, want_grad_dump;
    int k, V, D, have_dist;
    int32_t *tok;     /* [k] */
    lpe_model m;
    lpe_dist d;
    lpe_backend *be;
    int32_t am;
    float tl, ml;
    float *act;       /* [D] */
    float *logits;    /* [V] */
} fwd;

/* Options into f; returns -1 to go on, else the exit code (help, unknown option). */
static int parse_args(fwd *f, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model")) {
            f->model_path = lpe_arg_value(argc, argv, &i, "forward");
        } else if (!strcmp(a, "--tokens")) {
            f->tokens_s = lpe_arg_value(argc, argv, &i, "forward");
        } else if (!strcmp(a, "--target")) {
            f->target = lpe_parse_ll(lpe_arg_value(argc, argv, &i, "forward"), "--target");
            f->has_target = 1;
        } else if (!strcmp(a, "--top")) {
            f->top = lpe_parse_ll(lpe_arg_value(argc, argv, &i, "forward"), "--top");
            if (f->top < 0) lpe_fail_input("forward: --top %lld must be >= 0", f->top);
        } else if (!strcmp(a, "--dist")) {
            f->dist_path = lpe_arg_value(argc, argv, &i, "forward");
        } else if (!strcmp(a, "--dist-name")) {
            f->dist_name = lpe_arg_value(argc, argv, &i, "forward");
        } else if (!strcmp(a, "--backend")) {
            f->backend = lpe_arg_value(argc, argv, &i, "forward");
        } else if (!strcmp(a, "--logits")) {
            f->want_logits = 1;
        } else if (!strcmp(a, "--grad")) {
            f->want_grad_dump = 1;
        } else {
            fprintf(stderr, "lpe forward: unknown option '%s'\n", a);
            usage(stderr);
            return LPE_EXIT_INPUT;
        }
    }
    if (!f->model_path || !f->tokens_s) {
        usage(stderr);
        lpe_fail_input("forward: --model and --tokens are required");
    }
    if (f->dist_name && !f->dist_path) lpe_fail_input("forward: --dist-name needs --dist");
    if (f->dist_path && !f->has_target) lpe_fail_input("forward: --dist (gradient scores) needs --target");
    if (f->want_grad_dump && !f->has_target) lpe_fail_input("forward: --grad needs --target");
    return -1;
}

/* Tokens, model and distribution, each checked against the others. */
static void load_inputs(fwd *f) {
    f->tok = parse_tokens(f->tokens_s, &f->k);
    lpe_model_load(&f->m, f->model_path);
    const int V = f->V = f->m.cfg.d_vocab, k = f->k;
    f->D = f->m.cfg.d_model;
    if (k > f->m.cfg.n_ctx)
        lpe_fail_input("forward: %d tokens, the model's context is n_ctx = %d", k, f->m.cfg.n_ctx);
    for (int j = 0; j < k; j++)
        if (f->tok[j] < 0 || f->tok[j] >= V)
            lpe_fail_input("forward: --tokens: id %d at position %d is outside the vocabulary "
                           "[0, %d)",
                           (int)f->tok[j], j, V);
    if (f->has_target && (f->target < 0 || f->target >= V))
        lpe_fail_input("forward: --target %lld is outside the vocabulary [0, %d)", f->target, V);
    if (!f->dist_path) return;
    char *chosen = NULL;
    if (!f->dist_name) {
        int n;
        char **names = lpe_dist_names(f->dist_path, &n);
        if (n != 1)
            lpe_fail_input("forward: %s holds %d distributions; name one with --dist-name",
                           f->dist_path, n);
        chosen = names[0];
        free(names);
    }
    lpe_dist_load(&f->d, f->dist_path, f->dist_name ? f->dist_name : chosen, V);
    free(chosen);
    f->have_dist = 1;
    if (f->d.k != k)
        lpe_fail_input("forward: distribution '%s' has %d positions, --tokens has %d", f->d.name,
                       f->d.k, k);
}

/* The forward pass (and backward with a target) on a backend of one row; all V logits. */
static void evaluate(fwd *f) {
    const int V = f->V, D = f->D;
    f->be = lpe_backend_create(f->backend, &f->m, 1, f->k, f->has_target ? LPE_BE_GRAD : 0);
    f->be->load_tokens(f->be, f->tok, 1);
    int32_t t32 = (int32_t)f->target;
    f->tl = NAN;
    f->act = lpe_calloc((size_t)D, sizeof *f->act);
    f->logits = lpe_calloc((size_t)V, sizeof *f->logits);
    lpe_fwd_out out = {.argmax = &f->am, .target_logit = f->has_target ? &f->tl : NULL,
                       .max_logit = &f->ml, .act = f->act};
    f->be->forward(f->be, &out, f->has_target ? &t32 : NULL, 1, f->has_target);
    if (f->be->get_logits) {
        f->be->get_logits(f->be, f->logits, 1);
    } else { /* a backend without the hook: the unembedding of its final activation */
        for (int v = 0; v < V; v++) {
            double s = f->m.b_U ? f->m.b_U[v] : 0;
            for (int e = 0; e < D; e++) s += (double)f->act[e] * f->m.W_U[(size_t)e * V + v];
            f->logits[v] = (float)s;
        }
    }
}

/* model, backend, tokens, argmax, max logit, the top N logits (and all of them on demand) */
static void print_head(const fwd *f) {
    const int V = f->V;
    printf("{\n  \"model\": ");
    json_str(f->model_path);
    printf(",\n  \"backend\": \"%s\",\n  \"device\": ", f->be->name);
    json_str(f->be->device);
    printf(",\n  \"tokens\": [");
    for (int j = 0; j < f->k; j++) printf("%s%d", j ? ", " : "", (int)f->tok[j]);
    printf("],\n  \"argmax\": %d,\n  \"max_logit\": %.9g,\n  \"top\": [", (int)f->am, f->ml);
    /* top N by selection: repeatedly the largest logit not yet taken (ties: lower id) */
    int ntop = f->top < V ? (int)f->top : V;
    uint8_t *taken = lpe_calloc((size_t)V, 1);
    for (int r = 0; r < ntop; r++) {
        int best = -1;
        for (int v = 0; v < V; v++)
            if (!taken[v] && (best < 0 || f->logits[v] > f->logits[best])) best = v;
        taken[best] = 1;
        printf("%s\n    {\"id\": %d, \"logit\": %.9g", r ? "," : "", best, f->logits[best]);
        json_token_text(&f->m, best);
        putchar('}');
    }
    free(taken);
    printf("%s]", ntop ? "\n  " : "");
    if (f->want_logits) {
        printf(",\n  \"logits\": [");
        for (int v = 0; v < V; v++) printf("%s%.9g", v ? ", " : "", f->logits[v]);
        putchar(']');
    }
}

/* the distribution's supports and the gradient scores g_j(y) over them */
static void print_scores(fwd *f) {
    const lpe_dist *d = &f->d;
    const int k = f->k;
    printf(",\n  \"distribution\": ");
    json_str(d->name);
    int nmax = 0;
    f->be->use_dist(f->be, d);
    for (int j = 0; j < k; j++)
        if (lpe_dist_support(d, j) > nmax) nmax = lpe_dist_support(d, j);
    float *sc = lpe_calloc((size_t)nmax, sizeof *sc); /* [n_j] */
    printf(",\n  \"support\": [");
    for (int j = 0; j < k; j++) {
        const int32_t *vals = d->values + d->offsets[d->positions[j]];
        printf("%s\n    [", j ? "," : "");
        for (int s = 0; s < lpe_dist_support(d, j); s++) printf("%s%d", s ? ", " : "", vals[s]);
        putchar(']');
    }
    printf("\n  ],\n  \"scores\": [");
    for (int j = 0; j < k; j++) {
        int32_t pos = j;
        f->be->scores_at(f->be, sc, nmax, &pos, LPE_BUF_BATCH, 1);
        printf("%s\n    [", j ? "," : "");
        for (int s = 0; s < lpe_dist_support(d, j); s++) printf("%s%.9g", s ? ", " : "", sc[s]);
        putchar(']');
    }
    printf("\n  ]");
    free(sc);
}

/* per-position norms of ds/dr0 (and the whole gradient on demand) */
static void print_grad(const fwd *f) {
    const int k = f->k, D = f->D;
    float *g = lpe_calloc((size_t)k * D, sizeof *g); /* [k, D] */
    f->be->get_grad(f->be, g, LPE_BUF_BATCH, 1);
    printf(",\n  \"grad_norms\": [");
    for (int j = 0; j < k; j++) {
        double s = 0;
        for (int e = 0; e < D; e++) s += (double)g[(size_t)j * D + e] * g[(size_t)j * D + e];
        printf("%s%.9g", j ? ", " : "", sqrt(s));
    }
    putchar(']');
    if (f->want_grad_dump) {
        printf(",\n  \"grad\": [");
        for (int j = 0; j < k; j++) {
            printf("%s\n    [", j ? "," : "");
            for (int e = 0; e < D; e++) printf("%s%.9g", e ? ", " : "", g[(size_t)j * D + e]);
            putchar(']');
        }
        printf("\n  ]");
    }
    free(g);
}

int lpe_cmd_forward(int argc, char **argv) {
    fwd f = {.backend = "cpu", .target = -1, .top = 10};
    int rc = parse_args(&f, argc, argv);
    if (rc >= 0) return rc;
    load_inputs(&f);
    evaluate(&f);
    print_head(&f);
    if (f.has_target) {
        printf(",\n  \"target\": %d,\n  \"target_logit\": %.9g", (int)f.target, f.tl);
        if (f.have_dist) print_scores(&f);
        if (f.be->get_grad) print_grad(&f);
    }
    printf("\n}\n");
    fflush(stdout);

    lpe_backend_destroy(f.be);
    if (f.have_dist) lpe_dist_free(&f.d);
    free(f.act);
    free(f.logits);
    free(f.tok);
    lpe_model_free(&f.m);
    return 0;
}
