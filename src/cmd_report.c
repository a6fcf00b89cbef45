/* cmd_report.c: `lpe report RESULTS.h5 ...`: the paper-style tables (docs/methods.md §6) from results files,
 * one file per model, as markdown or CSV.
 *
 * Dimension legend: NF = results files (models), ND = distributions of a file, NM = methods.
 *
 * Every number is recomputed from the estimates and truths in the files (eval.c), so a report
 * never depends on when or how a file's /eval groups were written, and --zero can change the
 * zero rule after the fact. Tables (markdown):
 *   1. mean over distributions per (model, method): methods as rows, models as columns, the
 *      optimal constant and naive sampling first as baselines (the paper's headline table);
 *   2. per model: methods as rows, distributions as columns, plus their mean.
 * CSV: one row per (model, distribution, method) with every metric, and one per (model, method)
 * with distribution "(mean)".
 */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/cmd.h"
#include "lpe/common.h"
#include "lpe/eval.h"
#include "lpe/h5io.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lpe report RESULTS.h5 ... [--format markdown|csv]\n"
            "                  [--metric fitted|unfitted|logsq|cv] [--zero const|drop|floor]\n\n"
            "Tables of the Itakura-Saito loss D(p, q) = p/q - ln(p/q) - 1, mean over targets, per\n"
            "(model, distribution, method) and the mean over distributions per (model, method);\n"
            "one column per model (labelled by its model file's name): files of one model with\n"
            "disjoint distributions (one per distribution, say) are merged into its column.\n\n"
            "  --format   markdown (default) or csv (every metric, one row per model/dist/method)\n"
            "  --metric   fitted (default): after the per-(distribution, method) fit\n"
            "             ln q' = a ln q + b; unfitted: the raw estimates; logsq: mean\n"
            "             (ln q' - ln p)^2; cv: leave-one-out fitted loss (fit on the other targets)\n"
            "  --zero     what zero estimates become: const (default; their mean true probability,\n"
            "             one more fitted constant), drop (left out), floor (half the smallest\n"
            "             positive estimate, then fitted)\n\n"
            "Method `const` is the optimal constant (computed from the truth when not run); `naive`\n"
            "is naive sampling. Distributions without ground truth are skipped.\n");
}

typedef enum { M_FITTED, M_UNFITTED, M_LOGSQ, M_CV } metric;

static double pick_score(const lpe_eval_score *s, metric m) {
    return m == M_UNFITTED ? s->unfitted : m == M_LOGSQ ? s->logsq : m == M_CV ? s->cv : s->fitted;
}

static double pick_mean(const lpe_eval_mean *e, metric m) {
    return m == M_UNFITTED ? e->unfitted : m == M_LOGSQ ? e->logsq : m == M_CV ? e->cv : e->fitted;
}

static const char *metric_title(metric m) {
    switch (m) {
    case M_UNFITTED: return "unfitted Itakura-Saito loss (raw estimates)";
    case M_LOGSQ: return "log-space squared error (ln q' - ln p)^2 after the fit";
    case M_CV: return "leave-one-out cross-validated fitted Itakura-Saito loss";
    default: return "fitted Itakura-Saito loss (ln q' = a ln q + b per distribution and method)";
    }
}

static void fmt(char *out, size_t n, double v) {
    if (isnan(v)) snprintf(out, n, "nan");
    else if (isinf(v)) snprintf(out, n, "inf");
    else snprintf(out, n, "%.4g", v);
}

/* Sorted union of method names over files (canonical order). */
static int cmp_name(const void *a, const void *b) {
    return lpe_eval_method_cmp(*(char *const *)a, *(char *const *)b);
}

static const lpe_eval_method *find_method(const lpe_eval_dist *d, const char *name) {
    for (int j = 0; j < d->n_methods; j++)
        if (!strcmp(d->m[j].name, name)) return &d->m[j];
    return NULL;
}

static const lpe_eval_mean *find_mean(const lpe_eval_file *f, const char *name) {
    for (int k = 0; k < f->n_means; k++)
        if (!strcmp(f->means[k].name, name)) return &f->means[k];
    return NULL;
}

static void csv_field(const char *s) {
    if (strpbrk(s, ",\"\n")) {
        putchar('"');
        for (; *s; s++) {
            if (*s == '"') putchar('"');
            putchar(*s);
        }
        putchar('"');
    } else {
        fputs(s, stdout);
    }
}

static void csv_row(const lpe_eval_file *f, const char *dist, const char *method, int n, int n_zero,
                    double fi, double un, double ls, double cv, double a, double b, double c0) {
    char v[7][64];
    fmt(v[0], 64, fi), fmt(v[1], 64, un), fmt(v[2], 64, ls), fmt(v[3], 64, cv);
    fmt(v[4], 64, a), fmt(v[5], 64, b), fmt(v[6], 64, c0);
    csv_field(f->label), putchar(','), csv_field(f->path), putchar(','), csv_field(dist);
    putchar(','), csv_field(method);
    printf(",%d,%d,%s,%s,%s,%s,%s,%s,%s,%s\n", n, n_zero, v[0], v[1], v[2], v[3], v[4], v[5], v[6],
           lpe_zero_rule_name(f->rule));
}

/* A report being made: options, the files, and the union of their method names. */
typedef struct {
    const char *format;
    metric met;
    lpe_zero_rule rule;
    const char **paths; /* [NF] */
    int NF;
    lpe_eval_file *F;   /* [NF] */
    char **names;       /* [n_names] method names, canonical order */
    int n_names, cap;
} report;

/* Options and paths into rp; returns -1 to go on, else the exit code (help, bad usage). */
static int parse_args(report *rp, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return LPE_EXIT_OK;
        } else if (!strcmp(a, "--format") || !strcmp(a, "--metric") || !strcmp(a, "--zero")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "lpe report: %s needs a value\n", a);
                return LPE_EXIT_INPUT;
            }
            const char *v = argv[++i];
            int ok = 1;
            if (!strcmp(a, "--format")) {
                ok = !strcmp(v, "markdown") || !strcmp(v, "csv");
                rp->format = v;
            } else if (!strcmp(a, "--metric")) {
                if (!strcmp(v, "fitted")) rp->met = M_FITTED;
                else if (!strcmp(v, "unfitted")) rp->met = M_UNFITTED;
                else if (!strcmp(v, "logsq")) rp->met = M_LOGSQ;
                else if (!strcmp(v, "cv")) rp->met = M_CV;
                else ok = 0;
            } else {
                ok = lpe_zero_rule_parse(&rp->rule, v) == 0;
            }
            if (!ok) {
                fprintf(stderr, "lpe report: bad value '%s' for %s\n\n", v, a);
                usage(stderr);
                return LPE_EXIT_INPUT;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "lpe report: unknown option '%s'\n\n", a);
            usage(stderr);
            return LPE_EXIT_INPUT;
        } else {
            rp->paths[rp->NF++] = a;
        }
    }
    if (rp->NF == 0) {
        fprintf(stderr, "lpe report: no results file given\n\n");
        usage(stderr);
        return LPE_EXIT_INPUT;
    }
    return -1;
}

static void load_files(report *rp) {
    rp->F = lpe_calloc((size_t)rp->NF, sizeof *rp->F);
    for (int i = 0; i < rp->NF; i++) {
        lpe_eval_file *f = &rp->F[i];
        hid_t h = lpe_h5_open_read(rp->paths[i]);
        lpe_eval_load(f, h, rp->paths[i], rp->rule);
        lpe_h5_close(h);
        if (f->n_no_truth)
            fprintf(stderr, "lpe report: %s: %d distribution(s) without ground truth skipped\n",
                    rp->paths[i], f->n_no_truth);
        if (f->n_dists == 0)
            lpe_fail_input("%s: no distribution with targets and true_prob (not a results file "
                           "with ground truth?)", rp->paths[i]);
        rp->cap += f->n_means;
    }
}

/* Files of one model whose distributions are disjoint are one column: the paper's protocol
 * runs one file per (model, distribution) when the tuned parameters differ per distribution.
 * Overlapping files of one model stay apart (two runs to compare). Returns files merged away. */
static int merge_into(lpe_eval_file *F, int NF, int i) {
    int n_in = 1;
    for (int j = i + 1; j < NF; j++) {
        if (!F[j].n_dists || strcmp(F[i].label, F[j].label)) continue;
        int overlap = 0;
        for (int a = 0; a < F[i].n_dists && !overlap; a++)
            for (int b = 0; b < F[j].n_dists && !overlap; b++)
                overlap = !strcmp(F[i].d[a].name, F[j].d[b].name);
        if (overlap) continue;
        F[i].d = lpe_realloc(F[i].d, (size_t)(F[i].n_dists + F[j].n_dists) * sizeof *F[i].d);
        memcpy(F[i].d + F[i].n_dists, F[j].d, (size_t)F[j].n_dists * sizeof *F[j].d);
        F[i].n_dists += F[j].n_dists;
        F[j].n_dists = 0; /* its distributions now belong to F[i] */
        free(F[j].d);
        F[j].d = NULL;
        n_in++;
    }
    if (n_in > 1) {
        lpe_eval_means(&F[i]);
        char tmp[sizeof F[i].path];
        snprintf(tmp, sizeof tmp, "%.900s and %d more files", F[i].path, n_in - 1);
        memcpy(F[i].path, tmp, sizeof tmp);
    }
    return n_in - 1;
}

/* Merge files into columns; label the columns of one model apart by their files' names. */
static void make_columns(report *rp) {
    lpe_eval_file *F = rp->F;
    int n_merged = 0;
    for (int i = 0; i < rp->NF; i++) n_merged += merge_into(F, rp->NF, i);
    if (n_merged) {
        int w = 0;
        for (int i = 0; i < rp->NF; i++) {
            if (F[i].n_dists) {
                if (w != i) rp->paths[w] = rp->paths[i];
                F[w++] = F[i];
            } else {
                lpe_eval_free(&F[i]);
            }
        }
        rp->NF = w;
    }
    const int NF = rp->NF;
    int *dup = lpe_calloc((size_t)NF, sizeof *dup); /* equal labels (two runs of one model) */
    for (int i = 0; i < NF; i++)
        for (int j = 0; j < NF; j++) dup[i] |= i != j && !strcmp(F[i].label, F[j].label);
    for (int i = 0; i < NF; i++)
        if (dup[i]) { /* add the file's name */
            char tmp[sizeof F[i].label];
            const char *s = strrchr(rp->paths[i], '/');
            snprintf(tmp, sizeof tmp, "%.120s:%.120s", F[i].label, s ? s + 1 : rp->paths[i]);
            memcpy(F[i].label, tmp, sizeof tmp);
        }
    free(dup);
}

/* The union of method names over the files, sorted (canonical order). */
static void method_names(report *rp) {
    rp->names = lpe_calloc((size_t)rp->cap + 1, sizeof *rp->names);
    for (int i = 0; i < rp->NF; i++)
        for (int k = 0; k < rp->F[i].n_means; k++) {
            int j = 0;
            while (j < rp->n_names && strcmp(rp->names[j], rp->F[i].means[k].name)) j++;
            if (j == rp->n_names) rp->names[rp->n_names++] = rp->F[i].means[k].name;
        }
    qsort(rp->names, (size_t)rp->n_names, sizeof *rp->names, cmp_name);
}

static void print_csv(const report *rp) {
    printf("model,file,distribution,method,n,n_zero,fitted,unfitted,logsq,cv,a,b,c0,zero_rule\n");
    for (int i = 0; i < rp->NF; i++) {
        const lpe_eval_file *f = &rp->F[i];
        for (int d = 0; d < f->n_dists; d++)
            for (int j = 0; j < f->d[d].n_methods; j++) {
                const lpe_eval_method *m = &f->d[d].m[j];
                csv_row(f, f->d[d].name, m->name, m->s.n, m->s.n_zero, m->s.fitted, m->s.unfitted,
                        m->s.logsq, m->s.cv, m->s.a, m->s.b, m->s.c0);
            }
        for (int k = 0; k < f->n_means; k++) {
            const lpe_eval_mean *e = &f->means[k];
            csv_row(f, "(mean)", e->name, e->n_dists, 0, e->fitted, e->unfitted, e->logsq, e->cv,
                    NAN, NAN, NAN);
        }
    }
}

/* Table 1: methods as rows, models as columns, the mean over distributions. */
static void print_headline(const report *rp) {
    char cell[64];
    printf("## Mean over distributions: %s\n\n", metric_title(rp->met));
    printf("Zero rule: %s. Lower is better; `const` (the optimal constant) and `naive` are the "
           "baselines.\n\n", lpe_zero_rule_name(rp->rule));
    printf("| method |");
    for (int i = 0; i < rp->NF; i++) printf(" %s |", rp->F[i].label);
    printf("\n|---|");
    for (int i = 0; i < rp->NF; i++) printf("---:|");
    printf("\n");
    int partial = 0;
    for (int j = 0; j < rp->n_names; j++) {
        printf("| %s |", rp->names[j]);
        for (int i = 0; i < rp->NF; i++) {
            const lpe_eval_mean *e = find_mean(&rp->F[i], rp->names[j]);
            if (!e) {
                printf(" - |");
                continue;
            }
            fmt(cell, sizeof cell, pick_mean(e, rp->met));
            int part = e->n_dists < rp->F[i].n_dists;
            partial |= part;
            if (part) printf(" %s (%d/%d) |", cell, e->n_dists, rp->F[i].n_dists);
            else printf(" %s |", cell);
        }
        printf("\n");
    }
    if (partial) printf("\n(k/N): mean over the k of N distributions where the method ran.\n");
}

/* Table 2 for file f: methods as rows, distributions as columns, plus their mean. */
static void print_per_model(const report *rp, const lpe_eval_file *f) {
    char cell[64];
    printf("\n## %s (%s): per distribution\n\n| method |", f->label, f->path);
    for (int d = 0; d < f->n_dists; d++) printf(" %s |", f->d[d].name);
    printf(" mean |\n|---|");
    for (int d = 0; d <= f->n_dists; d++) printf("---:|");
    printf("\n");
    int any_zero = 0;
    for (int j = 0; j < rp->n_names; j++) {
        const char *name = rp->names[j];
        const lpe_eval_mean *e = find_mean(f, name);
        if (!e) continue;
        printf("| %s |", name);
        for (int d = 0; d < f->n_dists; d++) {
            const lpe_eval_method *m = find_method(&f->d[d], name);
            if (!m) {
                printf(" - |");
                continue;
            }
            fmt(cell, sizeof cell, pick_score(&m->s, rp->met));
            int z = m->s.n_zero > 0 && strcmp(name, "const") != 0;
            any_zero |= z;
            printf(" %s%s |", cell, z ? "*" : "");
        }
        fmt(cell, sizeof cell, pick_mean(e, rp->met));
        printf(" %s |\n", cell);
    }
    printf("\nTargets per distribution:");
    for (int d = 0; d < f->n_dists; d++)
        printf(" %s %d%s", f->d[d].name, f->d[d].T, d + 1 < f->n_dists ? "," : ".");
    printf("\n");
    if (any_zero) printf("*: some estimates were 0 (zero rule %s).\n", lpe_zero_rule_name(rp->rule));
}

int lpe_cmd_report(int argc, char **argv) {
    report rp = {.format = "markdown", .met = M_FITTED, .rule = LPE_ZERO_CONST};
    rp.paths = lpe_calloc((size_t)argc + 1, sizeof *rp.paths);
    int rc = parse_args(&rp, argc, argv);
    if (rc >= 0) {
        free(rp.paths);
        return rc;
    }
    load_files(&rp);
    make_columns(&rp);
    method_names(&rp);
    if (!strcmp(rp.format, "csv")) {
        print_csv(&rp);
    } else {
        print_headline(&rp);
        for (int i = 0; i < rp.NF; i++) print_per_model(&rp, &rp.F[i]);
    }
    for (int i = 0; i < rp.NF; i++) lpe_eval_free(&rp.F[i]);
    free(rp.F);
    free(rp.names);
    free(rp.paths);
    return LPE_EXIT_OK;
}
