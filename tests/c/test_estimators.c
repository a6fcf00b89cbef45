/* test_estimators.c: statistical correctness of the sampling estimators against exact
 * enumeration (issue 3), on a small random model whose input space can be enumerated.
 *
 *   naive, ITGIS: unbiased. R independent seeded runs; their mean must lie within 4 standard
 *     errors (from the spread of the runs) of the exact P, for several temperatures.
 *   MHIS: the recorded chain states follow pi(x) ∝ p(x) exp(s(x)/T): total variation from the
 *     exact pi small, and much smaller than from p itself (so the check can fail); estimates
 *     converge to the exact P as chains lengthen (within 4 standard errors at the longest).
 * Seeds are fixed, so the test is deterministic; the bounds are in standard errors, so it is
 * meaningful: a biased weight or a wrong acceptance ratio moves the mean by many of them.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "lpe/backend.h"
#include "lpe/estimator.h"
#include "lpe/h5io.h"
#include "lpe/model.h"

typedef struct {
    lpe_model m;
    lpe_dist d;
    lpe_backend *be;
    uint64_t n_inputs;
    double *P;     /* [V] exact Pr[M(x) = v] */
} world;

/* BOS + positions over two factors; exact P of every token by enumeration. */
static void world_make(world *w, int n_a, int n_b, int pos_a, int pos_b, int flags) {
    lpe_model_config c = {.n_layers = 2, .d_model = 16, .n_heads = 2, .d_head = 8, .d_mlp = 32,
                          .d_vocab = 40, .n_ctx = 8, .act = LPE_ACT_GELU, .ln_eps = 1e-5};
    lpe_model_init_random(&w->m, &c, 11);
    int k = 1 + pos_a + pos_b;
    int64_t off[4] = {0, 1, 1 + n_a, 1 + n_a + n_b};
    int32_t vals[64];
    double pr[64];
    vals[0] = 0;
    pr[0] = 1;
    for (int i = 0; i < n_a; i++) {
        vals[1 + i] = 1 + i;
        pr[1 + i] = 1.0 / (1 + i); /* Zipf-like: the support is not uniform */
    }
    for (int i = 0; i < n_b; i++) {
        vals[1 + n_a + i] = 20 + i;
        pr[1 + n_a + i] = 1.0 + (i % 3);
    }
    int32_t positions[16];
    positions[0] = 0;
    for (int j = 0; j < pos_a; j++) positions[1 + j] = 1;
    for (int j = 0; j < pos_b; j++) positions[1 + pos_a + j] = 2;
    lpe_dist_from_arrays(&w->d, "test", "", 3, off, vals, pr, k, positions, c.d_vocab);
    w->be = lpe_backend_create("cpu", &w->m, 256, k, flags);
    w->be->use_dist(w->be, &w->d);
    w->n_inputs = lpe_dist_enum_size(&w->d);
    w->P = calloc((size_t)c.d_vocab, sizeof(double));
    int32_t tok[256 * 16], am[256];
    double lp[256];
    for (uint64_t i0 = 0; i0 < w->n_inputs; i0 += 256) {
        int nb = (int)(w->n_inputs - i0 < 256 ? w->n_inputs - i0 : 256);
        for (int b = 0; b < nb; b++) lp[b] = lpe_dist_enum_decode(&w->d, i0 + b, tok + b * k);
        w->be->load_tokens(w->be, tok, nb);
        lpe_fwd_out fo = {.argmax = am};
        w->be->forward(w->be, &fo, NULL, nb, 0);
        for (int b = 0; b < nb; b++) w->P[am[b]] += exp(lp[b]);
    }
}

static void world_free(world *w) {
    lpe_backend_destroy(w->be);
    lpe_dist_free(&w->d);
    lpe_model_free(&w->m);
    free(w->P);
}

/* Up to `max` targets with exact P in [lo, hi], in token order. */
static int pick_targets(int32_t *t, int max, const world *w, double lo, double hi) {
    int n = 0;
    for (int v = 0; v < w->m.cfg.d_vocab && n < max; v++)
        if (w->P[v] >= lo && w->P[v] <= hi) t[n++] = v;
    return n;
}

/* Run a method once on all targets; params given as "key=value" strings. */
static void run_method(lpe_est_out *o, world *w, const char *name, const int32_t *targets, int T,
                       uint64_t seed, long long budget, int64_t group, const char **kv, int nkv) {
    const lpe_estimator *e = lpe_estimator_find(name);
    LPE_ASSERT(e != NULL);
    lpe_params p;
    lpe_params_init(&p, e->params, "test", name);
    for (int i = 0; i < nkv; i++) {
        char key[64];
        const char *eq = strchr(kv[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - kv[i]), kv[i]);
        lpe_params_set(&p, key, eq + 1, 0);
    }
    void *opts = lpe_calloc(1, e->opts_size + 1); /* the method's typed options */
    if (e->parse) e->parse(opts, &p);
    lpe_est_ctx ctx = {.model = &w->m, .dist = &w->d, .be = w->be, .targets = targets,
                       .n_targets = T, .seed = seed, .budget = budget, .opts = opts,
                       .out_group = group};
    lpe_est_out_init(o, T);
    e->run(o, &ctx);
    free(opts);
}

/* Mean of R seeded runs within 4 standard errors of the exact P, for every target. */
static void check_unbiased(world *w, const char *name, const int32_t *targets, int T, int R,
                           long long budget, const char **kv, int nkv) {
    double sum[8] = {0}, sum2[8] = {0};
    for (int r = 0; r < R; r++) {
        lpe_est_out o;
        run_method(&o, w, name, targets, T, 1000 + r, budget, -1, kv, nkv);
        for (int t = 0; t < T; t++) {
            sum[t] += o.estimate[t];
            sum2[t] += o.estimate[t] * o.estimate[t];
        }
        lpe_est_out_free(&o);
    }
    for (int t = 0; t < T; t++) {
        double m = sum[t] / R, var = (sum2[t] / R - m * m) * R / (R - 1.0), se = sqrt(var / R);
        double P = w->P[targets[t]];
        CHECK(se > 0 && fabs(m - P) <= 4 * se, "%s %s target %d: mean %.4g, exact %.4g, se %.3g (%.1f se)",
              name, nkv ? kv[0] : "", targets[t], m, P, se, se > 0 ? (m - P) / se : INFINITY);
    }
}

static void test_unbiased(void) {
    world w;
    world_make(&w, 12, 8, 2, 2, LPE_BE_GRAD); /* 12^2 8^2 = 9216 inputs */
    int32_t targets[4];
    int T = pick_targets(targets, 4, &w, 2e-4, 2e-2);
    CHECK(T >= 2, "need rare targets in the test model, found %d", T);
    check_unbiased(&w, "naive", targets, T, 24, 4096, NULL, 0);
    const char *temps[] = {"temperature=0.5", "temperature=1.0", "temperature=2.0"};
    for (int i = 0; i < 3; i++) {
        const char *kv[2] = {temps[i], "batch=128"};
        check_unbiased(&w, "itgis", targets, T, 24, 1024, kv, 2);
    }
    /* gradient scores of the log-probability (issue 12): other proposals, the same weights */
    const char *kv_lp[3] = {"temperature=0.5", "batch=128", "score=logprob"};
    check_unbiased(&w, "itgis", targets, T, 24, 1024, kv_lp, 3);
    world_free(&w);
}

/* MHIS: chain states against the exact stationary law; convergence of the estimate. */
static void test_mhis(void) {
    world w;
    world_make(&w, 6, 6, 2, 1, LPE_BE_GRAD | LPE_BE_STATE); /* 6^3 = 216 inputs */
    const int k = w.d.k, N = (int)w.n_inputs;
    int32_t targets[1];
    /* the rarest token with P >= 2e-3 (a real rare-event target on this small space) */
    double best = 1;
    targets[0] = -1;
    for (int v = 0; v < w.m.cfg.d_vocab; v++)
        if (w.P[v] >= 2e-3 && w.P[v] < best) best = w.P[v], targets[0] = v;
    CHECK(targets[0] >= 0, "no target");
    if (targets[0] < 0) return;
    const double T = 1.0;

    /* exact pi over the enumerated inputs, and p itself */
    double *pi = calloc((size_t)N, sizeof *pi), *p = calloc((size_t)N, sizeof *p);
    int32_t *tok = calloc((size_t)N * k, sizeof *tok), tg[256];
    float tl[256];
    for (int i = 0; i < N; i++) p[i] = exp(lpe_dist_enum_decode(&w.d, (uint64_t)i, tok + i * k));
    for (int i0 = 0; i0 < N; i0 += 256) {
        int nb = N - i0 < 256 ? N - i0 : 256;
        for (int b = 0; b < nb; b++) tg[b] = targets[0];
        w.be->load_tokens(w.be, tok + (size_t)i0 * k, nb);
        lpe_fwd_out fo = {.target_logit = tl};
        w.be->forward(w.be, &fo, tg, nb, 0);
        for (int b = 0; b < nb; b++) pi[i0 + b] = p[i0 + b] * exp(tl[b] / T);
    }
    double z = 0;
    for (int i = 0; i < N; i++) z += pi[i];
    for (int i = 0; i < N; i++) pi[i] /= z;

    /* a long run with chains saved, read back from the file */
    char dir[256], path[300];
    check_tmp_path(dir, sizeof dir, path, sizeof path, "mhis", "chains.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = lpe_h5_group(f, "mhis");
    const char *kv[] = {"temperature=1.0", "walkers=64", "burn_in=64", "save_chains=true",
                        "chain_stride=1"};
    lpe_est_out o;
    run_method(&o, &w, "mhis", targets, 1, 7, 64 * 1500, g, kv, 5);
    double acc = lpe_est_out_diag(&o, "acceptance_rate")[0];
    CHECK(acc > 0.05 && acc <= 1.0, "acceptance rate %g", acc);
    lpe_est_out_free(&o);
    H5Gclose(g);
    H5Fclose(f);
    f = lpe_h5_open_read(path);
    int64_t dims[2] = {-1, k}, got[2];
    int32_t *ch = lpe_h5_read(f, path, "mhis/chains/tokens", H5T_NATIVE_INT32, 2, dims, got);
    lpe_h5_close(f);
    check_tmp_remove(dir, path);
    CHECK(got[0] == 64 * 1500, "recorded rows %lld", (long long)got[0]);
    /* index of a chain state in the enumeration: mixed radix, last position fastest */
    double *emp = calloc((size_t)N, sizeof *emp);
    for (int64_t r = 0; r < got[0]; r++) {
        uint64_t idx = 0;
        for (int j = 0; j < k; j++) {
            int fj = w.d.positions[j];
            idx = idx * (uint64_t)lpe_dist_support(&w.d, j) +
                  (uint64_t)w.d.local_of[(size_t)fj * w.d.d_vocab + ch[r * k + j]];
        }
        emp[idx] += 1.0 / (double)got[0];
    }
    double tv = 0, tv_p = 0;
    for (int i = 0; i < N; i++) {
        tv += 0.5 * fabs(emp[i] - pi[i]);
        tv_p += 0.5 * fabs(p[i] - pi[i]);
    }
    printf("MHIS chains: TV(chains, pi) = %.4f, TV(p, pi) = %.4f over %d states\n", tv, tv_p, N);
    /* 96000 correlated draws over 216 states: TV of iid draws would be ~0.01 */
    CHECK(tv < 0.04 && tv < 0.25 * tv_p, "TV(chains, pi) = %.4f, TV(p, pi) = %.4f", tv, tv_p);

    /* convergence: the standard error shrinks like 1/sqrt(length) and the longest run is within
     * 4 of its standard errors, and 25%, of the exact P */
    double P = w.P[targets[0]], se_prev = INFINITY;
    const long long lens[3] = {32 * 64, 32 * 512, 32 * 4096};
    for (int i = 0; i < 3; i++) {
        const char *kv2[] = {"temperature=1.0", "walkers=32", "burn_in=32"};
        run_method(&o, &w, "mhis", targets, 1, 99, lens[i], -1, kv2, 3);
        double err = fabs(o.estimate[0] - P), se = o.std_error[0];
        printf("MHIS %lld recorded: %.4g (se %.2g), exact %.4g\n", lens[i], o.estimate[0], se, P);
        CHECK(se < 0.6 * se_prev, "MHIS standard error did not shrink: %.3g then %.3g", se_prev, se);
        if (i == 2) {
            CHECK(err <= 4 * se, "MHIS %lld: %.4g vs exact %.4g (se %.3g)", lens[i], o.estimate[0], P, se);
            CHECK(err < 0.25 * P, "MHIS relative error %.3f at the longest chains", err / P);
        }
        se_prev = se;
        lpe_est_out_free(&o);
    }
    free(pi); free(p); free(tok); free(emp); free(ch);
    world_free(&w);
}

int main(void) {
    lpe_h5_quiet();
    test_unbiased();
    test_mhis();
    return check_summary("test_estimators");
}
