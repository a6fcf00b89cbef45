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

int lpe_cmd_forward(int argc, char **argv) {
    const char *model_path = NULL, *tokens_s = NULL, *dist_path = NULL, *dist_name = NULL;
    const char *backend = "cpu";
    long long target = -1, top = 10;
    int has_target = 0, want_logits = 0, want_grad_dump = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV()                                                                                  \
    do {                                                                                         \
        if (!v) lpe_fail_input("forward: %s needs a value", a);                                 \
        i++;                                                                                     \
    } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model")) {
            NEEDV();
            model_path = v;
        } else if (!strcmp(a, "--tokens")) {
            NEEDV();
            tokens_s = v;
        } else if (!strcmp(a, "--target")) {
            NEEDV();
            target = lpe_parse_ll(v, "--target");
            has_target = 1;
        } else if (!strcmp(a, "--top")) {
            NEEDV();
            top = lpe_parse_ll(v, "--top");
            if (top < 0) lpe_fail_input("forward: --top %lld must be >= 0", top);
        } else if (!strcmp(a, "--dist")) {
            NEEDV();
            dist_path = v;
        } else if (!strcmp(a, "--dist-name")) {
            NEEDV();
            dist_name = v;
        } else if (!strcmp(a, "--backend")) {
            NEEDV();
            backend = v;
        } else if (!strcmp(a, "--logits")) {
            want_logits = 1;
        } else if (!strcmp(a, "--grad")) {
            want_grad_dump = 1;
        } else {
            fprintf(stderr, "lpe forward: unknown option '%s'\n", a);
            usage(stderr);
            return LPE_EXIT_INPUT;
        }
#undef NEEDV
    }
    if (!model_path || !tokens_s) {
        usage(stderr);
        lpe_fail_input("forward: --model and --tokens are required");
    }
    if (dist_name && !dist_path) lpe_fail_input("forward: --dist-name needs --dist");
    if (dist_path && !has_target) lpe_fail_input("forward: --dist (gradient scores) needs --target");
    if (want_grad_dump && !has_target) lpe_fail_input("forward: --grad needs --target");

    int k;
    int32_t *tok = parse_tokens(tokens_s, &k); /* [k] */
    lpe_model m;
    lpe_model_load(&m, model_path);
    int V = m.cfg.d_vocab, D = m.cfg.d_model;
    if (k > m.cfg.n_ctx)
        lpe_fail_input("forward: %d tokens, the model's context is n_ctx = %d", k, m.cfg.n_ctx);
    for (int j = 0; j < k; j++)
        if (tok[j] < 0 || tok[j] >= V)
            lpe_fail_input("forward: --tokens: id %d at position %d is outside the vocabulary "
                           "[0, %d)",
                           (int)tok[j], j, V);
    if (has_target && (target < 0 || target >= V))
        lpe_fail_input("forward: --target %lld is outside the vocabulary [0, %d)", target, V);

    lpe_dist d;
    int have_dist = 0;
    if (dist_path) {
        char *chosen = NULL;
        if (!dist_name) {
            int n;
            char **names = lpe_dist_names(dist_path, &n);
            if (n != 1)
                lpe_fail_input("forward: %s holds %d distributions; name one with --dist-name",
                               dist_path, n);
            chosen = names[0];
            free(names);
        }
        lpe_dist_load(&d, dist_path, dist_name ? dist_name : chosen, V);
        free(chosen);
        have_dist = 1;
        if (d.k != k)
            lpe_fail_input("forward: distribution '%s' has %d positions, --tokens has %d", d.name,
                           d.k, k);
    }

    lpe_backend *be = lpe_backend_create(backend, &m, 1, k, has_target ? LPE_BE_GRAD : 0);
    be->load_tokens(be, tok, 1);
    int32_t am, t32 = (int32_t)target;
    float tl = NAN, ml;
    float *act = lpe_calloc((size_t)D, sizeof *act);  /* [D] */
    float *logits = lpe_calloc((size_t)V, sizeof *logits); /* [V] */
    lpe_fwd_out out = {.argmax = &am, .target_logit = has_target ? &tl : NULL, .max_logit = &ml,
                       .act = act};
    be->forward(be, &out, has_target ? &t32 : NULL, 1, has_target);
    if (be->get_logits) {
        be->get_logits(be, logits, 1);
    } else { /* a backend without the hook: the unembedding of its final activation */
        for (int v = 0; v < V; v++) {
            double s = m.b_U ? m.b_U[v] : 0;
            for (int e = 0; e < D; e++) s += (double)act[e] * m.W_U[(size_t)e * V + v];
            logits[v] = (float)s;
        }
    }

    printf("{\n  \"model\": ");
    json_str(model_path);
    printf(",\n  \"backend\": \"%s\",\n  \"device\": ", be->name);
    json_str(be->device);
    printf(",\n  \"tokens\": [");
    for (int j = 0; j < k; j++) printf("%s%d", j ? ", " : "", (int)tok[j]);
    printf("],\n  \"argmax\": %d,\n  \"max_logit\": %.9g,\n  \"top\": [", (int)am, ml);
    /* top N by selection: repeatedly the largest logit not yet taken (ties: lower id) */
    int ntop = top < V ? (int)top : V;
    uint8_t *taken = lpe_calloc((size_t)V, 1);
    for (int r = 0; r < ntop; r++) {
        int best = -1;
        for (int v = 0; v < V; v++)
            if (!taken[v] && (best < 0 || logits[v] > logits[best])) best = v;
        taken[best] = 1;
        printf("%s\n    {\"id\": %d, \"logit\": %.9g", r ? "," : "", best, logits[best]);
        json_token_text(&m, best);
        putchar('}');
    }
    free(taken);
    printf("%s]", ntop ? "\n  " : "");
    if (want_logits) {
        printf(",\n  \"logits\": [");
        for (int v = 0; v < V; v++) printf("%s%.9g", v ? ", " : "", logits[v]);
        putchar(']');
    }
    if (has_target) {
        printf(",\n  \"target\": %d,\n  \"target_logit\": %.9g", (int)target, tl);
        if (have_dist) {
            printf(",\n  \"distribution\": ");
            json_str(d.name);
            int nmax = 0;
            be->use_dist(be, &d);
            for (int j = 0; j < k; j++)
                if (lpe_dist_support(&d, j) > nmax) nmax = lpe_dist_support(&d, j);
            float *sc = lpe_calloc((size_t)nmax, sizeof *sc); /* [n_j] */
            printf(",\n  \"support\": [");
            for (int j = 0; j < k; j++) {
                const int32_t *vals = d.values + d.offsets[d.positions[j]];
                printf("%s\n    [", j ? "," : "");
                for (int s = 0; s < lpe_dist_support(&d, j); s++) printf("%s%d", s ? ", " : "", vals[s]);
                putchar(']');
            }
            printf("\n  ],\n  \"scores\": [");
            for (int j = 0; j < k; j++) {
                int32_t pos = j;
                be->scores_at(be, sc, nmax, &pos, LPE_BUF_BATCH, 1);
                printf("%s\n    [", j ? "," : "");
                for (int s = 0; s < lpe_dist_support(&d, j); s++) printf("%s%.9g", s ? ", " : "", sc[s]);
                putchar(']');
            }
            printf("\n  ]");
            free(sc);
        }
        if (be->get_grad) {
            float *g = lpe_calloc((size_t)k * D, sizeof *g); /* [k, D] */
            be->get_grad(be, g, LPE_BUF_BATCH, 1);
            printf(",\n  \"grad_norms\": [");
            for (int j = 0; j < k; j++) {
                double s = 0;
                for (int e = 0; e < D; e++) s += (double)g[(size_t)j * D + e] * g[(size_t)j * D + e];
                printf("%s%.9g", j ? ", " : "", sqrt(s));
            }
            putchar(']');
            if (want_grad_dump) {
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
    }
    printf("\n}\n");
    fflush(stdout);

    lpe_backend_destroy(be);
    if (have_dist) lpe_dist_free(&d);
    free(act);
    free(logits);
    free(tok);
    lpe_model_free(&m);
    return 0;
}
