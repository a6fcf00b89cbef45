/* cmd_truth.c: `lpe truth`: ground truth by sampling (shards, checkpoint and resume) or exact
 * enumeration, and `lpe truth merge` of shards. The work is in truth.c; this file is the
 * command line, the checkpoint policy and the order of checks (every input problem is found
 * before any long computation, and nothing is written before the result is complete). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lpe/backend.h"
#include "lpe/cmd.h"
#include "lpe/common.h"
#include "lpe/output_guard.h"
#include "lpe/dist.h"
#include "lpe/model.h"
#include "lpe/truth.h"

static const char *usage_text =
    "usage: lpe truth --model M.h5 --dist F.h5 --name NAME --out OUT.h5\n"
    "                 (--samples N [--shard i/N] [--seed S] | --exact [--exact-limit L])\n"
    "                 [--force] [--backend cpu|cuda|auto] [--batch B] [--checkpoint-seconds T]\n"
    "       lpe truth merge OUT.h5 SHARD.h5 SHARD.h5 ... [--force]\n"
    "\n"
    "Ground truth for a (model, distribution) pair (docs/methods.md §5): the argmax counts of the model over\n"
    "numbered samples of the distribution, or (--exact) the exact probability of every token\n"
    "by enumerating all inputs. Output: a ground-truth HDF5 file (docs/methods.md §8), written atomically.\n"
    "\n"
    "  --model M.h5          model file\n"
    "  --dist F.h5           distribution file; --name picks the group\n"
    "  --out OUT.h5          output (never overwritten unless --force)\n"
    "  --samples N           number of samples (an integer, 1e9 or 2^32)\n"
    "  --shard i/N           only shard i (0 <= i < N) of the N samples: a contiguous range of\n"
    "                        whole blocks of 4096 sample numbers; with a --batch dividing 4096\n"
    "                        (the default does) the counts of all shards add up bit for bit to\n"
    "                        the unsharded run (combine them with `lpe truth merge`)\n"
    "  --seed S              seed of the samples (default 0; sample n depends only on S and n)\n"
    "  --exact               enumerate every input (at most --exact-limit, default 2^24)\n"
    "  --backend NAME        cpu, cuda or auto (default auto)\n"
    "  --batch B             rows per backend call (default 1024)\n"
    "  --checkpoint-seconds T  save counts to OUT.h5.ckpt every T seconds (default 30);\n"
    "                        rerunning the same command resumes from it\n"
    "  --force               overwrite OUT.h5\n"
    "\n"
    "exit codes: 0 success, 1 failure at run time, 2 bad usage or input\n";

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "lpe truth: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(lpe truth --help for usage)\n");
    return LPE_EXIT_INPUT;
}

/* "123", "1e9", "2^32" -> exact integer (exit 2 otherwise) */
static uint64_t parse_count(const char *s, const char *what) {
    const char *caret = strchr(s, '^');
    if (caret) {
        char head[32];
        snprintf(head, sizeof head, "%.*s", (int)(caret - s < 31 ? caret - s : 31), s);
        long long base = lpe_parse_ll(head, what);
        long long e = lpe_parse_ll(caret + 1, what);
        if (base < 1 || e < 0) lpe_fail_input("%s: expected a positive count, got '%s'", what, s);
        uint64_t v = 1;
        for (long long i = 0; i < e; i++) {
            if (v > (uint64_t)INT64_MAX / (uint64_t)base)
                lpe_fail_input("%s: '%s' is too large (at most 2^63 - 1)", what, s);
            v *= (uint64_t)base;
        }
        return v;
    }
    if (strpbrk(s, "eE.")) {
        double d = lpe_parse_double(s, what);
        if (!(d >= 0 && d < 9.2e18) || d != (double)(uint64_t)d)
            lpe_fail_input("%s: expected a whole number of samples, got '%s'", what, s);
        return (uint64_t)d;
    }
    long long v = lpe_parse_ll(s, what);
    if (v < 0) lpe_fail_input("%s: expected a count >= 0, got '%s'", what, s);
    return (uint64_t)v;
}

/* ---- merge ------------------------------------------------------------------------------- */

static int cmd_merge(int argc, char **argv) {
    const char *out = NULL;
    const char **in = lpe_calloc((size_t)argc, sizeof(char *));
    int n_in = 0, force = 0;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(argv[a], "--force")) {
            force = 1;
        } else if (argv[a][0] == '-') {
            return usage_error("merge: unknown option '%s'", argv[a]);
        } else if (!out) {
            out = argv[a];
        } else {
            in[n_in++] = argv[a];
        }
    }
    if (!out || n_in < 1) return usage_error("merge: expected OUT.h5 and at least one shard%s", "");
    lpe_output_guard(out, in, n_in); /* one writer; not a directory, device or shard */
    if (!force && access(out, F_OK) == 0)
        lpe_fail_input("%s exists (use --force to overwrite)", out);
    lpe_truth *parts = lpe_calloc((size_t)n_in, sizeof(lpe_truth));
    for (int i = 0; i < n_in; i++) lpe_truth_read(&parts[i], in[i]);
    lpe_truth merged;
    lpe_truth_merge(&merged, parts, in, n_in);
    lpe_truth_write(&merged, out, force);
    printf("merged %d files: %llu samples in %d range%s -> %s\n", n_in,
           (unsigned long long)merged.n_samples, merged.n_ranges, merged.n_ranges == 1 ? "" : "s", out);
    for (int i = 0; i < n_in; i++) lpe_truth_free(&parts[i]);
    lpe_truth_free(&merged);
    free(parts);
    free(in);
    return 0;
}

/* ---- checkpointing ----------------------------------------------------------------------- */

typedef struct {
    const char *path;
    lpe_truth t; /* header of the run (sha, seed, ...); counts and ranges set per write */
    uint64_t first, end;
} ckpt_ctx;

static void save_ckpt(void *ctx, const uint64_t *counts, uint64_t next) {
    ckpt_ctx *c = ctx;
    uint64_t range[2] = {c->first, next};
    c->t.counts = (uint64_t *)counts;
    c->t.ranges = range;
    c->t.n_ranges = 1;
    c->t.n_samples = next - c->first;
    lpe_truth_ckpt_write(c->path, &c->t, c->end);
    c->t.counts = NULL;
    c->t.ranges = NULL;
}

/* ---- main -------------------------------------------------------------------------------- */

/* The command's options (and the shard they name). */
typedef struct {
    const char *model_path, *dist_path, *name, *out, *shard, *backend;
    uint64_t n_samples, seed, exact_limit, si, sn;
    int have_samples, exact, force, batch;
    double ckpt_s;
} truth_args;

/* One option at argv[*a] into g; returns -1 to go on, else the exit code. */
static int parse_option(truth_args *g, int argc, char **argv, int *a) {
    const char *o = argv[*a];
    if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!strcmp(o, "--exact")) { g->exact = 1; return -1; }
    if (!strcmp(o, "--force")) { g->force = 1; return -1; }
    if (o[0] != '-') return usage_error("unexpected argument '%s'", o);
    if (*a + 1 >= argc) return usage_error("option %s needs a value", o);
    const char *v = argv[++*a];
    if (!strcmp(o, "--model")) g->model_path = v;
    else if (!strcmp(o, "--dist")) g->dist_path = v;
    else if (!strcmp(o, "--name")) g->name = v;
    else if (!strcmp(o, "--out")) g->out = v;
    else if (!strcmp(o, "--shard")) g->shard = v;
    else if (!strcmp(o, "--backend")) g->backend = v;
    else if (!strcmp(o, "--samples")) { g->n_samples = parse_count(v, "--samples"); g->have_samples = 1; }
    else if (!strcmp(o, "--seed")) {
        long long s = lpe_parse_ll(v, "--seed");
        if (s < 0) lpe_fail_input("--seed: expected an integer in [0, 2^63), got '%s'", v);
        g->seed = (uint64_t)s;
    }
    else if (!strcmp(o, "--exact-limit")) g->exact_limit = parse_count(v, "--exact-limit");
    else if (!strcmp(o, "--batch")) {
        long long b = lpe_parse_ll(v, "--batch");
        if (b < 1 || b > (1 << 20)) lpe_fail_input("--batch: expected 1 .. 2^20, got '%s'", v);
        g->batch = (int)b;
    }
    else if (!strcmp(o, "--checkpoint-seconds")) {
        g->ckpt_s = lpe_parse_double(v, "--checkpoint-seconds");
        if (!(g->ckpt_s >= 0)) lpe_fail_input("--checkpoint-seconds: expected a number >= 0, got '%s'", v);
    }
    else return usage_error("unknown option '%s'", o);
    return -1;
}

/* All options, checked together; returns -1 to go on, else the exit code. */
static int parse_args(truth_args *g, int argc, char **argv) {
    for (int a = 1; a < argc; a++) {
        int rc = parse_option(g, argc, argv, &a);
        if (rc >= 0) return rc;
    }
    if (!g->model_path) return usage_error("--model is required%s", "");
    if (!g->dist_path) return usage_error("--dist is required%s", "");
    if (!g->name) return usage_error("--name is required (lpe dist show %s lists the names)", g->dist_path);
    if (!g->out) return usage_error("--out is required%s", "");
    if (g->exact == g->have_samples) return usage_error("give exactly one of --samples N and --exact%s", "");
    if (g->exact && g->shard) return usage_error("--shard applies to --samples only%s", "");
    if (g->have_samples && g->n_samples < 1) return usage_error("--samples: expected at least 1%s", "");
    if (g->shard) lpe_truth_parse_shard(g->shard, "--shard", &g->si, &g->sn);
    const char *inputs[2] = {g->model_path, g->dist_path};
    lpe_output_guard(g->out, inputs, 2); /* one writer; not a directory, device or input */
    if (!g->force && access(g->out, F_OK) == 0)
        lpe_fail_input("%s exists (use --force to overwrite)", g->out);
    return -1;
}

/* --exact: every input of the distribution, enumerated. */
static void run_exact(const truth_args *g, const lpe_model *model, const lpe_dist *dist,
                      lpe_truth *t, double t0) {
    uint64_t size = lpe_dist_enum_size(dist);
    if (size > g->exact_limit)
        lpe_fail_input("%s: distribution '%s' has %s%llu inputs, more than --exact-limit %llu: "
                       "use --samples, or raise the limit", g->dist_path, g->name,
                       size == UINT64_MAX ? ">= " : "", (unsigned long long)size,
                       (unsigned long long)g->exact_limit);
    int B = size < (uint64_t)g->batch ? (int)size : g->batch;
    lpe_backend *be = lpe_backend_create(g->backend, model, B, dist->k, 0);
    t->exact = 1;
    t->n_samples = size;
    t->probs = lpe_calloc((size_t)t->d_vocab, sizeof(double));
    lpe_truth_opts opt = {.batch = B, .progress = "truth (exact)"};
    lpe_truth_exact(t->probs, be, dist, &opt);
    lpe_truth_write(t, g->out, g->force);
    double s = 0;
    for (int v = 0; v < t->d_vocab; v++) s += t->probs[v];
    printf("exact ground truth: %llu inputs in %.2f s (%s), probabilities sum to 1 %+.2e -> %s\n",
           (unsigned long long)size, lpe_now() - t0, be->device, s - 1, g->out);
    lpe_backend_destroy(be);
}

/* A checkpoint of this very run at ckpt_path: its counts into t; returns the next sample. */
static uint64_t resume(lpe_truth *t, const char *ckpt_path, uint64_t seed, uint64_t first,
                       uint64_t end) {
    lpe_truth ck;
    uint64_t ck_end;
    if (!lpe_truth_ckpt_read(&ck, &ck_end, ckpt_path)) return first;
    if (ck.d_vocab != t->d_vocab || strcmp(ck.model_sha256, t->model_sha256) ||
        strcmp(ck.dist_sha256, t->dist_sha256) || ck.seed != seed ||
        ck.ranges[0] != first || ck_end != end)
        lpe_fail_input("%s: checkpoint of a different run (model, distribution, seed or "
                       "sample range [%llu, %llu) differ from this command's [%llu, %llu)): "
                       "delete it, or rerun the command that made it", ckpt_path,
                       (unsigned long long)ck.ranges[0], (unsigned long long)ck_end,
                       (unsigned long long)first, (unsigned long long)end);
    memcpy(t->counts, ck.counts, (size_t)t->d_vocab * sizeof(uint64_t));
    uint64_t next = ck.ranges[1];
    fprintf(stderr, "lpe truth: resuming from %s at sample %llu (%llu of %llu done)\n",
            ckpt_path, (unsigned long long)next, (unsigned long long)(next - first),
            (unsigned long long)(end - first));
    lpe_truth_free(&ck);
    return next;
}

/* --samples: this shard's samples, checkpointed, resumed from a checkpoint of the same run. */
static void run_sampled(const truth_args *g, const lpe_model *model, const lpe_dist *dist,
                        lpe_truth *t, double t0) {
    uint64_t first, end;
    lpe_truth_shard_range(&first, &end, g->n_samples, g->si, g->sn, LPE_TRUTH_SHARD_BLOCK);
    if (end == first)
        lpe_fail_input("--shard %s: shard is empty (%llu samples in %llu shards of whole "
                       "blocks of %u samples)", g->shard, (unsigned long long)g->n_samples,
                       (unsigned long long)g->sn, LPE_TRUTH_SHARD_BLOCK);
    t->seed = g->seed;
    t->counts = lpe_calloc((size_t)t->d_vocab, sizeof(uint64_t));
    char ckpt_path[1100];
    snprintf(ckpt_path, sizeof ckpt_path, "%s.ckpt", g->out);
    uint64_t next = resume(t, ckpt_path, g->seed, first, end);
    uint64_t todo = end - next;
    int B = todo < (uint64_t)g->batch ? (int)(todo ? todo : 1) : g->batch;
    lpe_backend *be = lpe_backend_create(g->backend, model, B, dist->k, 0);
    ckpt_ctx cc = {.path = ckpt_path, .t = *t, .first = first, .end = end};
    cc.t.counts = NULL;
    lpe_truth_opts opt = {.batch = B, .progress = "truth", .checkpoint = save_ckpt, .ctx = &cc,
                          .every_s = g->ckpt_s};
    lpe_truth_sample(t->counts, be, dist, g->seed, next, todo, &opt);
    uint64_t range[2] = {first, end};
    t->ranges = range;
    t->n_ranges = 1;
    t->n_samples = end - first;
    lpe_truth_write(t, g->out, g->force);
    unlink(ckpt_path); /* only once the result is committed */
    t->ranges = NULL;
    double dt = lpe_now() - t0;
    printf("ground truth: samples [%llu, %llu) of seed %llu in %.2f s (%.3g samples/s, %s) -> %s\n",
           (unsigned long long)first, (unsigned long long)end, (unsigned long long)g->seed, dt,
           dt > 0 ? (double)todo / dt : 0.0, be->device, g->out);
    lpe_backend_destroy(be);
}

int lpe_cmd_truth(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "merge")) return cmd_merge(argc - 1, argv + 1);
    truth_args g = {.backend = "auto", .exact_limit = LPE_TRUTH_EXACT_LIMIT, .batch = 1024,
                    .ckpt_s = 30, .sn = 1};
    int rc = parse_args(&g, argc, argv);
    if (rc >= 0) return rc;

    lpe_model model;
    lpe_model_load(&model, g.model_path);
    lpe_dist dist;
    lpe_dist_load(&dist, g.dist_path, g.name, model.cfg.d_vocab);
    if (dist.k > model.cfg.n_ctx)
        lpe_fail_input("%s: distribution '%s' has %d positions, the model's context n_ctx is %d",
                       g.dist_path, g.name, dist.k, model.cfg.n_ctx);

    lpe_truth t;
    memset(&t, 0, sizeof t);
    t.d_vocab = model.cfg.d_vocab;
    t.k = dist.k;
    snprintf(t.model_sha256, sizeof t.model_sha256, "%s", model.sha256);
    snprintf(t.dist_name, sizeof t.dist_name, "%s", dist.name);
    snprintf(t.dist_sha256, sizeof t.dist_sha256, "%s", dist.sha256);
    double t0 = lpe_now();
    if (g.exact) run_exact(&g, &model, &dist, &t, t0);
    else run_sampled(&g, &model, &dist, &t, t0);
    lpe_truth_free(&t);
    lpe_dist_free(&dist);
    lpe_model_free(&model);
    return 0;
}
