/* runner.c: `lpe run` (runner.h): config -> model -> distributions, truth, targets -> methods ->
 * results file -> table.
 *
 * Dimension legend: V = d_vocab, T = targets of a distribution, ND = distributions run,
 *   NR = runs (a method section, or one value combination of its swept keys), k = positions.
 *
 * Sweeps: in a method section, every key holding several values (a list key, e.g.
 * `temperature = 0.45, 1.0`) is swept: the method runs once per combination (last key fastest),
 * each run seeing single values, stored as /{dist}/{method}@{key}={value}[,{key}={value}] with the
 * values spelled as in the INI.
 */
#include "lpe/runner.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/backend.h"
#include "lpe/common.h"
#include "lpe/eval.h"
#include "lpe/run_ckpt.h"
#include "lpe/config.h"
#include "lpe/dist.h"
#include "lpe/estimator.h"
#include "lpe/h5io.h"
#include "lpe/model.h"
#include "lpe/philox.h"
#include "lpe/results.h"
#include "lpe/truth.h"

typedef struct {
    const lpe_method_cfg *mc;
    lpe_params params;  /* swept keys reduced to this run's values */
    char group[400];    /* results group name */
    char sweep[256];    /* "key=value,..." or "" */
} run_spec;

/* A run's parameters for one distribution: its own `key[dist] = value` lines applied. */
static lpe_params params_for(const run_spec *rs, const char *dist) {
    lpe_params prm = rs->params;
    for (int i = 0; i < rs->mc->n_over; i++)
        if (!strcmp(rs->mc->over[i].dist, dist))
            lpe_params_override(&prm, rs->mc->over[i].key, rs->mc->over[i].value,
                                rs->mc->over[i].line);
    return prm;
}

typedef struct {
    lpe_dist dist;
    lpe_truth truth;    /* when truth = file */
    int have_truth;
    double *prob;       /* [V] true probabilities, or NULL (truth = none) */
    int T, n_cand;
    int32_t *targets;   /* [T] */
    double *true_prob;  /* [T] or NULL */
    double *est;        /* [NR, T] for the table */
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

/* ---- runs and sweeps ---------------------------------------------------------------------- */

static run_spec *expand_runs(const lpe_config *c, int *n_runs) {
    int cap = 0;
    for (int m = 0; m < c->n_methods; m++) {
        const lpe_params *p = &c->methods[m].params;
        long long combos = 1;
        for (int i = 0; i < p->n; i++) combos *= p->val[i].n > 1 ? p->val[i].n : 1;
        if (combos > 4096)
            lpe_fail_input("%s:%d: [%s]: %lld swept combinations (at most 4096)", c->ini_path,
                           c->methods[m].line, p->section, combos);
        cap += (int)combos;
    }
    run_spec *runs = lpe_calloc((size_t)cap, sizeof *runs);
    int r = 0;
    for (int m = 0; m < c->n_methods; m++) {
        const lpe_method_cfg *mc = &c->methods[m];
        const lpe_params *p = &mc->params;
        int idx[LPE_MAX_PARAMS] = {0};
        for (;;) {
            run_spec *rs = &runs[r++];
            rs->mc = mc;
            rs->params = *p;
            size_t w = 0;
            for (int i = 0; i < p->n; i++) {
                if (p->val[i].n <= 1) continue;
                char text[256];
                lpe_param_text(p, p->spec[i]->key, idx[i], text, sizeof text);
                lpe_params_pick(&rs->params, p->spec[i]->key, idx[i]);
                w += (size_t)snprintf(rs->sweep + w, w < sizeof rs->sweep ? sizeof rs->sweep - w : 0,
                                      "%s%s=%s", w ? "," : "", p->spec[i]->key, text);
            }
            if (w >= sizeof rs->sweep)
                lpe_fail_input("%s:%d: [%s]: swept values too long to name", c->ini_path, mc->line,
                               p->section);
            for (const char *s = rs->sweep; *s; s++)
                if (*s == '/')
                    lpe_fail_input("%s:%d: [%s]: a swept value may not contain '/'", c->ini_path,
                                   mc->line, p->section);
            snprintf(rs->group, sizeof rs->group, "%s%s%s", mc->name, rs->sweep[0] ? "@" : "",
                     rs->sweep);
            /* next combination, last swept key fastest */
            int i = p->n - 1;
            for (; i >= 0; i--) {
                if (p->val[i].n <= 1) continue;
                if (++idx[i] < p->val[i].n) break;
                idx[i] = 0;
            }
            if (i < 0) break;
        }
    }
    *n_runs = r;
    return runs;
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

static void print_table(const lpe_config *c, const dist_state *ds, const run_spec *runs, int NR) {
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

int lpe_run_experiment(const lpe_run_opts *o) {
    lpe_config c;
    lpe_config_load(&c, o->ini, o->output);
    if (o->backend) snprintf(c.backend, sizeof c.backend, "%s", o->backend);
    if (strcmp(c.backend, "cpu") && strcmp(c.backend, "cuda") && strcmp(c.backend, "auto"))
        lpe_fail_input("--backend: expected cpu, cuda or auto, got '%s'", c.backend);
    int NR = 0;
    run_spec *runs = expand_runs(&c, &NR);

    /* the output first: an existing file stops us before any work */
    lpe_h5_out out;
    lpe_results_create(&out, c.output, o->force);

    lpe_model model;
    lpe_model_load(&model, c.model);
    int V = model.cfg.d_vocab;
    for (int i = 0; i < c.n_list; i++)
        if (c.list[i] >= V)
            lpe_fail_input("%s:%d: [targets] list: token %d is outside the vocabulary of %s "
                           "(d_vocab %d)", c.ini_path, c.list_line, c.list[i], c.model, V);
    if (c.n_list) qsort(c.list, (size_t)c.n_list, sizeof *c.list, cmp_i32);

    /* every distribution and truth file checked before any work */
    dist_state *ds = lpe_calloc((size_t)c.n_names, sizeof *ds);
    int flags = 0;
    for (int r = 0; r < NR; r++) flags |= runs[r].mc->est->backend_flags;
    for (int d = 0; d < c.n_names; d++) {
        dist_state *s = &ds[d];
        lpe_dist_load(&s->dist, c.dists, c.names[d], V);
        if (s->dist.k > model.cfg.n_ctx)
            lpe_fail_input("%s: distribution %s has %d positions, more than the model's n_ctx %d",
                           c.dists, c.names[d], s->dist.k, model.cfg.n_ctx);
        if (c.truth_kind == LPE_TRUTH_EXACT && lpe_dist_enum_size(&s->dist) > LPE_TRUTH_EXACT_LIMIT)
            lpe_params_fail(&c.exp, "truth", "exact enumeration of %s needs %.3g inputs, more than "
                            "%.3g (use a ground-truth file from `lpe truth`)", c.names[d],
                            (double)lpe_dist_enum_size(&s->dist), (double)LPE_TRUTH_EXACT_LIMIT);
        if (c.truth_kind == LPE_TRUTH_FILE) {
            char path[LPE_PATH_MAX];
            lpe_config_truth_path(path, sizeof path, &c, c.names[d]);
            lpe_truth_load(&s->truth, path, &model, &s->dist, 0);
            s->have_truth = 1;
            s->prob = s->truth.probs;
        }
    }

    lpe_results_root(out.file, c.text, c.ini_path, c.model, model.sha256, c.dists, c.seed);
    lpe_run_ckpt ck;
    lpe_run_ckpt_open(&ck, c.output, c.text, c.seed, model.sha256, o->force);
    if (ck.resumed && !o->quiet)
        fprintf(stderr, "lpe run: resuming from the checkpoint %s\n", ck.dir);
    if (!o->quiet)
        fprintf(stderr, "lpe run: %s -> %s (%d distribution%s, %d run%s)\n", c.ini_path, c.output,
                c.n_names, c.n_names == 1 ? "" : "s", NR, NR == 1 ? "" : "s");

    long long max_budget = 1; /* over runs and distributions: `budget[dist]` may raise it */
    for (int r = 0; r < NR; r++)
        for (int d = 0; d < c.n_names; d++) {
            lpe_params prm = params_for(&runs[r], c.names[d]);
            long long b = lpe_param_int(&prm, "budget");
            max_budget = b > max_budget ? b : max_budget;
        }
    int T_max = c.n_list ? c.n_list : c.count;
    lpe_weights *weights = lpe_weights_upload(c.backend, &model); /* once, for every k */
    lpe_backend *be = NULL;
    double *exact_prob = NULL;
    for (int d = 0; d < c.n_names; d++) {
        dist_state *s = &ds[d];
        const lpe_dist *dist = &s->dist;
        /* one backend; a new one only when the sequence length changes */
        if (!be || be->k != dist->k) {
            lpe_backend_destroy(be);
            double need = (double)max_budget * (double)T_max; /* rows any method can use at once */
            if (c.truth_kind == LPE_TRUTH_EXACT && (double)lpe_dist_enum_size(dist) > need)
                need = (double)lpe_dist_enum_size(dist);
            long long B = c.batch > 0 ? c.batch
                                      : lpe_backend_batch_for_budget(c.backend, &model.cfg, dist->k,
                                                                     flags, c.memory_gb * 1073741824.0);
            if (c.batch <= 0 && (double)B > need) B = (long long)need;
            if (B < 1) B = 1;
            be = lpe_backend_create_on(weights, (int)B, dist->k, flags);
            lpe_results_backend(out.file, be);
            if (!o->quiet)
                fprintf(stderr, "lpe run: backend %s (%s), batch %d, k %d\n", be->name, be->device,
                        be->max_batch, be->k);
        }
        be->use_dist(be, dist);
        if (c.truth_kind == LPE_TRUTH_EXACT) {
            if (!exact_prob) exact_prob = lpe_calloc((size_t)V * (size_t)c.n_names, sizeof *exact_prob);
            s->prob = exact_prob + (size_t)d * (size_t)V;
            char label[300];
            snprintf(label, sizeof label, "exact truth %s", dist->name);
            lpe_truth_opts topt = {.progress = o->quiet ? NULL : label};
            double t0 = lpe_now();
            lpe_truth_exact(s->prob, be, dist, &topt);
            if (!o->quiet)
                fprintf(stderr, "lpe run: %s: exact truth over %llu inputs, %.2f s\n", dist->name,
                        (unsigned long long)lpe_dist_enum_size(dist), lpe_now() - t0);
        }

        /* targets */
        s->targets = lpe_calloc((size_t)(T_max > 0 ? T_max : 1), sizeof *s->targets);
        if (c.n_list) {
            s->T = c.n_list;
            memcpy(s->targets, c.list, (size_t)c.n_list * sizeof *c.list);
            s->n_cand = -1;
        } else {
            s->T = lpe_choose_targets(s->targets, &s->n_cand, s->prob, V, c.p_min, c.p_max, c.count,
                                      c.target_seed, dist->name);
            if (s->T < c.count)
                lpe_warn("%s: only %d token%s with true probability in [%g, %g]; %d targets "
                         "asked for, all taken", dist->name, s->n_cand, s->n_cand == 1 ? "" : "s",
                         c.p_min, c.p_max, c.count);
        }
        if (s->prob) {
            s->true_prob = lpe_calloc((size_t)(s->T > 0 ? s->T : 1), sizeof *s->true_prob);
            for (int t = 0; t < s->T; t++) s->true_prob[t] = s->prob[s->targets[t]];
        }
        hid_t g = lpe_results_dist(out.file, dist->name, s->targets, s->true_prob, s->T);
        lpe_h5_attr_str(g, "distribution_sha256", dist->sha256);
        lpe_h5_attr_int(g, "k", dist->k);
        lpe_h5_attr_double(g, "input_space", (double)lpe_dist_enum_size(dist));
        lpe_h5_attr_str(g, "truth", c.truth_kind == LPE_TRUTH_EXACT ? "exact"
                                    : c.truth_kind == LPE_TRUTH_NONE ? "none" : "file");
        if (s->have_truth) {
            char path[LPE_PATH_MAX];
            lpe_config_truth_path(path, sizeof path, &c, dist->name);
            lpe_h5_attr_str(g, "truth_path", path);
            lpe_h5_attr_int(g, "truth_n_samples", (long long)s->truth.n_samples);
            lpe_h5_attr_int(g, "truth_exact", s->truth.exact);
        } else if (c.truth_kind == LPE_TRUTH_EXACT) {
            lpe_h5_attr_int(g, "truth_n_samples", (long long)lpe_dist_enum_size(dist));
            lpe_h5_attr_int(g, "truth_exact", 1);
        }
        lpe_h5_attr_double(g, "p_min", c.p_min);
        lpe_h5_attr_double(g, "p_max", c.p_max);
        lpe_h5_attr_int(g, "target_seed", (long long)c.target_seed);
        lpe_h5_attr_int(g, "n_candidates", s->n_cand);
        if (s->T == 0) lpe_warn("%s: no targets; its methods are skipped", dist->name);

        /* methods */
        s->est = lpe_calloc((size_t)NR * (size_t)(s->T > 0 ? s->T : 1), sizeof *s->est);
        for (int r = 0; r < NR && s->T > 0; r++) {
            run_spec *rs = &runs[r];
            if (lpe_run_ckpt_restore(&ck, (int64_t)g, dist->name, rs->group, s->targets, s->T)) {
                int64_t dims[1] = {s->T};
                char name[600];
                snprintf(name, sizeof name, "%s/estimate", rs->group);
                lpe_h5_read_into(s->est + (size_t)r * (size_t)s->T, g, ck.dir, name,
                                 H5T_NATIVE_DOUBLE, 1, dims);
                if (!o->quiet)
                    fprintf(stderr, "lpe run: %s / %s: from the checkpoint\n", dist->name, rs->group);
                continue;
            }
            hid_t mg = lpe_h5_group(g, rs->group);
            lpe_params prm = params_for(rs, dist->name);
            lpe_est_ctx ctx = {
                .model = &model,
                .dist = dist,
                .be = be,
                .targets = s->targets,
                .true_prob = s->true_prob,
                .n_targets = s->T,
                .seed = c.seed,
                .budget = lpe_param_int(&prm, "budget"),
                .params = &prm,
                .out_group = (int64_t)mg,
            };
            lpe_est_out eo;
            lpe_est_out_init(&eo, s->T);
            double t0 = lpe_now();
            rs->mc->est->run(&eo, &ctx);
            double sec = lpe_now() - t0;
            lpe_results_method(mg, rs->mc->name, rs->sweep, &eo, &prm, sec);
            memcpy(s->est + (size_t)r * (size_t)s->T, eo.estimate, (size_t)s->T * sizeof(double));
            if (!o->quiet) {
                double calls = 0;
                for (int t = 0; t < s->T; t++) calls += eo.model_calls[t];
                fprintf(stderr, "lpe run: %s / %s: %d targets, %.2f s, %.3g model calls/s\n",
                        dist->name, rs->group, s->T, sec, sec > 0 ? calls / sec : 0.0);
            }
            lpe_est_out_free(&eo);
            H5Gclose(mg);
            lpe_run_ckpt_save(&ck, (int64_t)g, dist->name, rs->group, s->targets, s->T);
        }
        H5Gclose(g);
    }

    lpe_results_backend(out.file, be);
    /* scores (SPEC 6) inside the file, so a notebook needs no lpe to read them; `lpe report
     * --zero` can rescore with another zero rule */
    lpe_eval_results((int64_t)out.file, out.tmp, LPE_ZERO_CONST);
    lpe_h5_commit(&out);
    lpe_run_ckpt_remove(&ck);
    print_table(&c, ds, runs, NR);
    if (!o->quiet) fprintf(stderr, "lpe run: wrote %s\n", c.output);

    lpe_backend_destroy(be);
    lpe_weights_free(weights);
    for (int d = 0; d < c.n_names; d++) {
        if (ds[d].have_truth) lpe_truth_free(&ds[d].truth);
        lpe_dist_free(&ds[d].dist);
        free(ds[d].targets);
        free(ds[d].true_prob);
        free(ds[d].est);
    }
    free(ds);
    free(exact_prob);
    free(runs);
    lpe_model_free(&model);
    lpe_config_free(&c);
    return LPE_EXIT_OK;
}
