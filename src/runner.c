/* runner.c: `lpe run` (runner.h): config -> model -> distributions, truth, targets -> methods ->
 * results file -> table.
 *
 * Dimension legend: V = d_vocab, T = targets of a distribution, ND = distributions run,
 *   NR = runs (a method section, or one value combination of its swept keys: config_runs.c),
 *   k = positions.
 */
#include "lpe/runner.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/backend.h"
#include "lpe/common.h"
#include "lpe/eval.h"
#include "lpe/run_blocks.h"
#include "lpe/run_ckpt.h"
#include "lpe/config.h"
#include "lpe/dist.h"
#include "lpe/estimator.h"
#include "lpe/h5io.h"
#include "lpe/model.h"
#include "lpe/philox.h"
#include "lpe/results.h"
#include "lpe/run_guard.h"
#include "lpe/truth.h"

typedef struct {
    lpe_dist dist;
    lpe_truth truth;    /* when truth = file */
    int have_truth;
    double *prob;       /* [V] true probabilities, or NULL (truth = none) */
    int T, n_cand;
    int32_t *targets;   /* [T] */
    double *true_prob;  /* [T] or NULL */
    double *est;        /* [NR, T] for the table */
    lpe_shard_part part; /* the share of the targets run here (run_shard.h) */
} dist_state;

/* ---- targets ----------------------------------------------------------------------------- */

static uint32_t name_slot(const char *s) { /* FNV-1a, folded to the 24-bit slot */
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return (h ^ (h >> 24)) & 0xffffffu;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int lpe_choose_targets(int32_t *out, int *n_cand, const double *prob, int V, double p_min,
                       double p_max, int count, uint64_t seed, const char *dist) {
    int32_t *cand = lpe_calloc((size_t)V + 1, sizeof *cand); /* [NC] ascending token ids */
    int nc = 0;
    for (int v = 0; v < V; v++)
        if (prob[v] >= p_min && prob[v] <= p_max) cand[nc++] = v;
    *n_cand = nc;
    int T = count < nc ? count : nc;
    /* partial Fisher-Yates: step i swaps a uniform pick of cand[i..nc) into place i */
    uint32_t stream = lpe_stream(LPE_STREAM_TARGETS, name_slot(dist));
    for (int i = 0; i < T && T < nc; i++) {
        uint32_t w[4];
        lpe_rng4(w, seed, stream, (uint64_t)i, 0);
        int j = i + (int)lpe_below(w[0], (uint32_t)(nc - i));
        int32_t x = cand[i];
        cand[i] = cand[j];
        cand[j] = x;
    }
    memcpy(out, cand, (size_t)T * sizeof *out);
    qsort(out, (size_t)T, sizeof *out, cmp_i32);
    free(cand);
    return T;
}

/* ---- the table ---------------------------------------------------------------------------- */

static void fmt_num(char *out, size_t n, double x) {
    if (isnan(x))
        snprintf(out, n, "-");
    else if (x == 0)
        snprintf(out, n, "0");
    else
        snprintf(out, n, "%.3g", x);
}

static void print_table(const lpe_config *c, const dist_state *ds) {
    const lpe_run_cfg *runs = c->runs;
    const int NR = c->n_runs;
    int any_truth = 0;
    for (int d = 0; d < c->n_names; d++) any_truth |= ds[d].true_prob != NULL;
    printf("\n| dist | target | true p |");
    for (int r = 0; r < NR; r++) printf(any_truth ? " %s | ratio |" : " %s |", runs[r].group);
    printf("\n|---|---:|---:|");
    for (int r = 0; r < NR; r++) printf(any_truth ? "---:|---:|" : "---:|");
    printf("\n");
    for (int d = 0; d < c->n_names; d++) {
        const dist_state *s = &ds[d];
        for (int t = 0; t < s->T; t++) {
            char a[32], b[32];
            double p = s->true_prob ? s->true_prob[t] : NAN;
            fmt_num(a, sizeof a, p);
            printf("| %s | %d | %s |", c->names[d], s->targets[t], a);
            for (int r = 0; r < NR; r++) {
                double e = s->est[(size_t)r * (size_t)s->T + (size_t)t];
                fmt_num(a, sizeof a, e);
                fmt_num(b, sizeof b, p > 0 ? e / p : NAN);
                if (any_truth)
                    printf(" %s | %s |", a, b);
                else
                    printf(" %s |", a);
            }
            printf("\n");
        }
    }
    fflush(stdout);
}

/* ---- the experiment ----------------------------------------------------------------------- */

/* An experiment being run: what its steps share. */
typedef struct {
    const lpe_run_opts *o;
    lpe_config c;
    lpe_model model;
    int V;              /* d_vocab */
    int flags;          /* LPE_BE_* any method asked for */
    int T_max;          /* targets per distribution, at most */
    long long max_budget;
    dist_state *ds;     /* [ND] */
    lpe_h5_out out;
    lpe_run_ckpt ck;
    lpe_weights *weights;
    lpe_backend *be;    /* one; re-created when k changes */
    double *exact_prob; /* [ND, V] when truth = exact */
} experiment;

/* Model, explicit targets, every distribution and truth file: checked before any work. */
static void load_inputs(experiment *x) {
    lpe_config *c = &x->c;
    lpe_model_load(&x->model, c->model);
    int V = x->V = x->model.cfg.d_vocab;
    for (int i = 0; i < c->n_list; i++)
        if (c->list[i] >= V)
            lpe_fail_input("%s:%d: [targets] list: token %d is outside the vocabulary of %s "
                           "(d_vocab %d)", c->ini_path, c->list_line, c->list[i], c->model, V);
    if (c->n_list) qsort(c->list, (size_t)c->n_list, sizeof *c->list, cmp_i32);

    x->ds = lpe_calloc((size_t)c->n_names, sizeof *x->ds);
    for (int r = 0; r < c->n_runs; r++) x->flags |= c->runs[r].mc->est->backend_flags;
    for (int d = 0; d < c->n_names; d++) {
        dist_state *s = &x->ds[d];
        lpe_dist_load(&s->dist, c->dists, c->names[d], V);
        if (s->dist.k > x->model.cfg.n_ctx)
            lpe_fail_input("%s: distribution %s has %d positions, more than the model's n_ctx %d",
                           c->dists, c->names[d], s->dist.k, x->model.cfg.n_ctx);
        if (c->truth_kind == LPE_TRUTH_EXACT && lpe_dist_enum_size(&s->dist) > LPE_TRUTH_EXACT_LIMIT)
            lpe_params_fail(&c->exp, "truth", "exact enumeration of %s needs %.3g inputs, more than "
                            "%.3g (use a ground-truth file from `lpe truth`)", c->names[d],
                            (double)lpe_dist_enum_size(&s->dist), (double)LPE_TRUTH_EXACT_LIMIT);
        if (c->truth_kind == LPE_TRUTH_FILE) {
            char path[LPE_PATH_MAX];
            lpe_config_truth_path(path, sizeof path, c, c->names[d]);
            lpe_truth_load(&s->truth, path, &x->model, &s->dist, 0);
            s->have_truth = 1;
            s->prob = s->truth.probs;
        }
    }
}

/* Root attributes, the checkpoint, the largest budget of any (run, distribution), the weights. */
static void begin(experiment *x) {
    const lpe_config *c = &x->c;
    const lpe_run_opts *o = x->o;
    lpe_results_root(x->out.file, c->text, c->ini_path, c->model, x->model.sha256, c->dists, c->seed);
    lpe_shard_root_attrs(x->out.file, &o->shard);
    lpe_run_ckpt_open(&x->ck, c->output, c->text, c->seed, x->model.sha256, o->force);
    if (x->ck.resumed && !o->quiet)
        fprintf(stderr, "lpe run: resuming from the checkpoint %s\n", x->ck.dir);
    if (!o->quiet)
        fprintf(stderr, "lpe run: %s -> %s (%d distribution%s, %d run%s)\n", c->ini_path, c->output,
                c->n_names, c->n_names == 1 ? "" : "s", c->n_runs, c->n_runs == 1 ? "" : "s");
    x->max_budget = 1; /* over runs and distributions: `budget[dist]` may raise it */
    for (int r = 0; r < c->n_runs; r++)
        for (int d = 0; d < c->n_names; d++)
            if (c->runs[r].budget[d] > x->max_budget) x->max_budget = c->runs[r].budget[d];
    x->T_max = c->n_list ? c->n_list : c->count;
    x->weights = lpe_weights_upload(c->backend, &x->model); /* once, for every k */
}

/* The backend for distribution `dist`: kept while k stays, sized for the largest use. */
static void ensure_backend(experiment *x, const lpe_dist *dist) {
    const lpe_config *c = &x->c;
    if (x->be && x->be->k == dist->k) return;
    lpe_backend_destroy(x->be);
    double need = (double)x->max_budget * (double)x->T_max; /* rows any method can use at once */
    if (c->truth_kind == LPE_TRUTH_EXACT && (double)lpe_dist_enum_size(dist) > need)
        need = (double)lpe_dist_enum_size(dist);
    long long B = c->batch > 0 ? c->batch
                               : lpe_backend_batch_for_budget(c->backend, &x->model.cfg, dist->k,
                                                              x->flags, c->memory_gb * 1073741824.0);
    if (c->batch <= 0 && (double)B > need) B = (long long)need;
    if (B < 1) B = 1;
    x->be = lpe_backend_create_on(x->weights, (int)B, dist->k, x->flags);
    lpe_results_backend(x->out.file, x->be);
    if (!x->o->quiet)
        fprintf(stderr, "lpe run: backend %s (%s), batch %d, k %d\n", x->be->name, x->be->device,
                x->be->max_batch, x->be->k);
}

static void exact_truth(experiment *x, int d) {
    dist_state *s = &x->ds[d];
    const lpe_dist *dist = &s->dist;
    if (!x->exact_prob)
        x->exact_prob = lpe_calloc((size_t)x->V * (size_t)x->c.n_names, sizeof *x->exact_prob);
    s->prob = x->exact_prob + (size_t)d * (size_t)x->V;
    char label[300];
    snprintf(label, sizeof label, "exact truth %s", dist->name);
    lpe_truth_opts topt = {.progress = x->o->quiet ? NULL : label};
    double t0 = lpe_now();
    lpe_truth_exact(s->prob, x->be, dist, &topt);
    if (!x->o->quiet)
        fprintf(stderr, "lpe run: %s: exact truth over %llu inputs, %.2f s\n", dist->name,
                (unsigned long long)lpe_dist_enum_size(dist), lpe_now() - t0);
}

/* Distribution d's targets (the list, or chosen by true probability) and their true p. */
static void pick_targets(experiment *x, int d) {
    const lpe_config *c = &x->c;
    dist_state *s = &x->ds[d];
    s->targets = lpe_calloc((size_t)(x->T_max > 0 ? x->T_max : 1), sizeof *s->targets);
    if (c->n_list) {
        s->T = c->n_list;
        memcpy(s->targets, c->list, (size_t)c->n_list * sizeof *c->list);
        s->n_cand = -1;
    } else {
        s->T = lpe_choose_targets(s->targets, &s->n_cand, s->prob, x->V, c->p_min, c->p_max,
                                  c->count, c->target_seed, s->dist.name);
        if (s->T < c->count)
            lpe_warn("%s: only %d token%s with true probability in [%g, %g]; %d targets "
                     "asked for, all taken", s->dist.name, s->n_cand, s->n_cand == 1 ? "" : "s",
                     c->p_min, c->p_max, c->count);
    }
    if (s->prob) {
        s->true_prob = lpe_calloc((size_t)(s->T > 0 ? s->T : 1), sizeof *s->true_prob);
        for (int t = 0; t < s->T; t++) s->true_prob[t] = s->prob[s->targets[t]];
    }
}

/* /{dist} with its targets and attributes (results.h); returns the open group. */
static hid_t dist_group(experiment *x, int d) {
    const lpe_config *c = &x->c;
    const dist_state *s = &x->ds[d];
    lpe_results_dist_info info = {
        .truth = c->truth_kind == LPE_TRUTH_EXACT ? "exact"
                 : c->truth_kind == LPE_TRUTH_NONE ? "none" : "file",
        .p_min = c->p_min, .p_max = c->p_max, .target_seed = c->target_seed,
        .n_candidates = s->n_cand, .truth_n_samples = -1,
    };
    if (s->have_truth) {
        lpe_config_truth_path(info.truth_path, sizeof info.truth_path, c, s->dist.name);
        info.truth_n_samples = (long long)s->truth.n_samples;
        info.truth_exact = s->truth.exact;
    } else if (c->truth_kind == LPE_TRUTH_EXACT) {
        info.truth_n_samples = (long long)lpe_dist_enum_size(&s->dist);
        info.truth_exact = 1;
    }
    return lpe_results_dist(x->out.file, &s->dist, s->targets, s->true_prob, s->T, &info);
}

/* A run's method reports bad input it finds at run time here, with its FILE:LINE. */
typedef struct {
    const lpe_run_cfg *run;
    const char *dist;
} fail_where;

static void run_fail(const void *where, const char *key, const char *msg) {
    const fail_where *w = where;
    lpe_params *p = lpe_calloc(1, sizeof *p);
    lpe_run_params_for(p, w->run, w->dist);
    lpe_params_fail(p, key, "%s", msg);
}

/* Run r on distribution d (or take it from the checkpoint); its estimates into s->est. */
static void run_one(experiment *x, int d, hid_t g, int r) {
    dist_state *s = &x->ds[d];
    const lpe_dist *dist = &s->dist;
    const lpe_run_cfg *rs = &x->c.runs[r];
    double *est = s->est + (size_t)r * (size_t)s->T;
    if (lpe_run_ckpt_restore(&x->ck, (int64_t)g, dist->name, rs->group, s->targets, s->T)) {
        int64_t dims[1] = {s->T};
        char name[600];
        snprintf(name, sizeof name, "%s/estimate", rs->group);
        lpe_h5_read_into(est, g, x->ck.dir, name, H5T_NATIVE_DOUBLE, 1, dims);
        if (!x->o->quiet)
            fprintf(stderr, "lpe run: %s / %s: from the checkpoint\n", dist->name, rs->group);
        return;
    }
    hid_t mg = lpe_h5_group(g, rs->group);
    fail_where where = {rs, dist->name};
    lpe_est_ctx ctx = {
        .model = &x->model, .dist = dist, .be = x->be,
        .targets = s->targets, .true_prob = s->true_prob, .n_targets = s->T,
        .seed = x->c.seed, .budget = rs->budget[d], .opts = lpe_run_cfg_opts(rs, d),
        .out_group = (int64_t)mg, .fail = run_fail, .where = &where,
    };
    lpe_est_out eo;
    lpe_est_out_init(&eo, s->T);
    double t0 = lpe_now();
    lpe_run_blocks(rs->mc->est, &eo, &ctx, &s->part);
    double sec = lpe_now() - t0;
    lpe_results_method(mg, rs, dist->name, &eo, sec);
    memcpy(est, eo.estimate, (size_t)s->T * sizeof(double));
    if (!x->o->quiet) {
        double calls = 0;
        for (int t = 0; t < s->T; t++) calls += eo.model_calls[t];
        fprintf(stderr, "lpe run: %s / %s: %d targets, %.2f s, %.3g model calls/s\n", dist->name,
                rs->group, s->T, sec, sec > 0 ? calls / sec : 0.0);
    }
    lpe_est_out_free(&eo);
    H5Gclose(mg);
    lpe_run_ckpt_save(&x->ck, (int64_t)g, dist->name, rs->group, s->targets, s->T);
}

/* Distribution d: backend, truth when exact, targets, its group, every run. */
static void run_dist(experiment *x, int d) {
    dist_state *s = &x->ds[d];
    ensure_backend(x, &s->dist);
    x->be->use_dist(x->be, &s->dist);
    if (x->c.truth_kind == LPE_TRUTH_EXACT) exact_truth(x, d);
    pick_targets(x, d);
    lpe_shard_take(&s->part, &x->o->shard, s->targets, s->true_prob, &s->T);
    hid_t g = dist_group(x, d);
    lpe_shard_dist_attrs(g, &x->o->shard, &s->part);
    if (s->T == 0) lpe_warn("%s: no targets; its methods are skipped", s->dist.name);
    const int NR = x->c.n_runs;
    s->est = lpe_calloc((size_t)NR * (size_t)(s->T > 0 ? s->T : 1), sizeof *s->est);
    for (int r = 0; r < NR && s->T > 0; r++) run_one(x, d, g, r);
    H5Gclose(g);
}

static void finish(experiment *x) {
    lpe_results_backend(x->out.file, x->be);
    /* scores (methods.md §6) inside the file, so a notebook needs no lpe to read them; `lpe report
     * --zero` can rescore with another zero rule */
    lpe_eval_results((int64_t)x->out.file, x->out.tmp, LPE_ZERO_CONST);
    lpe_h5_commit(&x->out);
    lpe_run_ckpt_remove(&x->ck);
    print_table(&x->c, x->ds);
    if (!x->o->quiet) fprintf(stderr, "lpe run: wrote %s\n", x->c.output);

    lpe_backend_destroy(x->be);
    lpe_weights_free(x->weights);
    for (int d = 0; d < x->c.n_names; d++) {
        dist_state *s = &x->ds[d];
        if (s->have_truth) lpe_truth_free(&s->truth);
        lpe_dist_free(&s->dist);
        free(s->targets);
        free(s->true_prob);
        free(s->est);
        lpe_shard_part_free(&s->part);
    }
    free(x->ds);
    free(x->exact_prob);
    lpe_model_free(&x->model);
    lpe_config_free(&x->c);
}

int lpe_run_experiment(const lpe_run_opts *o) {
    experiment *x = lpe_calloc(1, sizeof *x);
    x->o = o;
    lpe_config *c = &x->c;
    lpe_config_load(c, o->ini, o->output);
    lpe_shard_output(c->output, sizeof c->output, &o->shard, o->output != NULL);
    if (o->backend) snprintf(c->backend, sizeof c->backend, "%s", o->backend);
    if (strcmp(c->backend, "cpu") && strcmp(c->backend, "cuda") && strcmp(c->backend, "auto"))
        lpe_fail_input("--backend: expected cpu, cuda or auto, got '%s'", c->backend);
    /* the output first: an existing file stops us before any work */
    lpe_run_guard(c); /* hardening (issue 13): lock; not a directory, device or input */
    lpe_results_create(&x->out, c->output, o->force);
    load_inputs(x);
    begin(x);
    for (int d = 0; d < c->n_names; d++) run_dist(x, d);
    finish(x);
    free(x);
    return LPE_EXIT_OK;
}
