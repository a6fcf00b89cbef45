/* test_itgis.c: the CPU backend's ITGIS operations (backend.h, issue 10) against the host loop
 * they replaced (itgis_ref.h: src/estimators/itgis.c before issue 10), bit for bit:
 *   - the drawn tokens (get_tokens) and their log-weights (itgis_read LOGW) of every call;
 *   - the score tables S after every round, the moments at the end of a chunk;
 *   - a second chunk on the same tables (reset clears S and the moments), tables for more
 *     targets than the chunk has, calls whose rows span several targets, a short last round;
 *   - the estimator (lpe_est_itgis) against the reference run of the same chunking: estimates,
 *     standard errors, ESS and hits identical;
 *   - misuse (a draw without tables) exits 1.
 * Exact equality is the claim: the backend runs the same functions (tilted.h, itgis_moments.h)
 * in the same order on the same floats; the gradient sums come from the same products
 * (scores_sum's, added into G with one addition per entry as the host did).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "itgis_ref.h"
#include "lpe/backend.h"
#include "lpe/estimator.h"
#include "lpe/model.h"

/* three factors: consecutive ids, scattered ids (W_E rows gathered), a single token; Zipf-like
 * probabilities so that the tilt matters */
static void make_dist(lpe_dist *d, int V, int k) {
    int64_t off[4] = {0, 9, 9 + V / 2, 9 + V / 2 + 1};
    int32_t *vals = calloc(off[3], sizeof *vals);
    double *pr = calloc(off[3], sizeof *pr);
    for (int i = 0; i < 9; i++) vals[i] = 3 + i;
    for (int i = 0; i < V / 2; i++) vals[9 + i] = (int32_t)((7 * i + 1) % V);
    vals[off[2]] = V - 1;
    for (int i = 0; i < off[3]; i++) pr[i] = 1.0 / (1 + i % 7);
    int32_t pos_f[16];
    for (int j = 0; j < k; j++) pos_f[j] = j == 0 ? 2 : 1 + (j % 2 == 0);
    pos_f[1] = 0;
    lpe_dist_from_arrays(d, "t", "test", 3, off, vals, pr, k, pos_f, V);
    free(vals), free(pr);
}

static const lpe_model_config cfg = {.n_layers = 2, .d_model = 16, .n_heads = 2, .d_head = 8,
                                     .d_mlp = 32, .d_vocab = 41, .n_ctx = 8,
                                     .act = LPE_ACT_GELU, .ln_eps = 1e-5};

/* one chunk of tc targets, `rounds` rounds (the last of Blast samples), calls of R rows: every
 * draw, log-weight, S and the moments against the reference */
static void check_chunk(lpe_backend *be, lpe_backend *ref_be, const lpe_dist *d,
                        const int32_t *targets, int tc, int B, int Blast, int rounds, double temp,
                        double beta, const char *label) {
    const int k = d->k, R = be->max_batch;
    itgis_ref ref;
    ref_init(&ref, d, targets, tc, 31, B);
    be->itgis_reset(be, targets, tc, 31, B);
    int32_t *tok = calloc((size_t)R * k, sizeof *tok), *row_t = calloc(R, sizeof *row_t);
    double *lw = calloc(R, sizeof *lw), *S = calloc((size_t)tc * ref.NSP, sizeof *S);
    int bad_tok = 0, bad_lw = 0, bad_S = 0, calls = 0;
    for (int r = 0; r < rounds; r++) {
        const int Br = r == rounds - 1 ? Blast : B;
        const double Tr = r == 0 ? 1.0 : temp * (1 - pow(beta, r)) / (1 - beta);
        ref_draw(&ref, ref.S, r, Br, 1.0 / Tr);
        be->itgis_round(be, r, Br, 1.0 / Tr);
        for (long long r0 = 0; r0 < (long long)tc * Br; r0 += R, calls++) {
            const int nr = (int)((long long)tc * Br - r0 < R ? (long long)tc * Br - r0 : R);
            be->itgis_draw(be, r0, nr);
            be->get_tokens(be, tok, LPE_BUF_BATCH, nr);
            be->itgis_read(be, lw, LPE_ITGIS_LOGW);
            bad_tok += memcmp(tok, ref.tok + r0 * k, (size_t)nr * k * sizeof *tok) != 0;
            bad_lw += memcmp(lw, ref.logw + r0, (size_t)nr * sizeof *lw) != 0;
            for (int q = 0; q < nr; q++) row_t[q] = targets[(r0 + q) / Br];
            be->forward(be, NULL, row_t, nr, 1);
            be->itgis_accumulate(be);
            ref_call(&ref, ref_be, Br, r0, nr);
        }
        be->itgis_update(be, beta);
        ref_update(&ref, Br, beta);
        be->itgis_read(be, S, LPE_ITGIS_S);
        bad_S += memcmp(S, ref.S, (size_t)tc * ref.NSP * sizeof *S) != 0;
    }
    lpe_itgis_moments *m = calloc(tc, sizeof *m);
    be->itgis_read(be, m, LPE_ITGIS_MOMENTS);
    double smax = 0;
    for (size_t i = 0; i < (size_t)tc * ref.NSP; i++) smax = check_nanmax(smax, fabs(ref.S[i]));
    int hits = 0;
    for (int a = 0; a < tc; a++) hits += (int)ref.mom[a].hits;
    printf("  %-12s %d calls, %d rounds: |S| <= %.3g, %d hits\n", label, calls, rounds, smax, hits);
    CHECK(bad_tok == 0, "%s: tokens differ from the host draw in %d calls", label, bad_tok);
    CHECK(bad_lw == 0, "%s: log-weights differ from the host's in %d calls", label, bad_lw);
    CHECK(bad_S == 0, "%s: S differs from the host update after %d rounds", label, bad_S);
    CHECK(!memcmp(m, ref.mom, (size_t)tc * sizeof *m), "%s: moments differ", label);
    CHECK(smax > 0 && isfinite(smax), "%s: the scores must move S (|S| max %g)", label, smax);
    CHECK(ref.mom[0].n == (double)(rounds - 1) * B + Blast, "%s: %g samples counted", label,
          ref.mom[0].n);
    free(m), free(tok), free(row_t), free(lw), free(S);
    ref_free(&ref);
}

static void test_ops(void) {
    lpe_model m;
    lpe_model_init_random(&m, &cfg, 7);
    const int k = 6;
    lpe_dist d;
    make_dist(&d, cfg.d_vocab, k);
    /* 9 rows per call: calls cut rounds of 7 samples per target across targets */
    lpe_backend *be = lpe_backend_create("cpu", &m, 9, k, LPE_BE_GRAD);
    lpe_backend *rb = lpe_backend_create("cpu", &m, 64, k, LPE_BE_GRAD);
    be->use_dist(be, &d);
    rb->use_dist(rb, &d);
    be->itgis_tables(be, 6);
    int32_t t1[5] = {4, 17, 30, 40, 9}, t2[3] = {12, 4, 25};
    check_chunk(be, rb, &d, t1, 5, 7, 4, 4, 0.5, 0.9, "chunk 1");
    check_chunk(be, rb, &d, t2, 3, 7, 7, 3, 2.0, 0.5, "chunk 2");
    be->itgis_tables(be, 0);
    be->itgis_tables(be, 2); /* again, smaller; freed by destroy */
    check_chunk(be, rb, &d, t1, 2, 1, 1, 5, 1.0, 0.9, "B = 1");
    lpe_backend_destroy(be);
    lpe_backend_destroy(rb);
    lpe_dist_free(&d);
    lpe_model_free(&m);
}

/* the old estimator's whole run, on the reference loop: estimates per target */
static void ref_run(double *est, double *se, double *ess, double *hits, lpe_backend *be,
                    const lpe_dist *d, const int32_t *targets, int T, int TC, long long n, int B,
                    double temp, double beta, uint64_t seed) {
    for (int t0 = 0; t0 < T; t0 += TC) {
        const int tc = T - t0 < TC ? T - t0 : TC;
        itgis_ref ref;
        ref_init(&ref, d, targets + t0, tc, seed, B);
        for (long long r = 0; r * B < n; r++) {
            const int Br = (int)(n - r * B < B ? n - r * B : B);
            const double Tr = r == 0 ? 1.0 : temp * (1 - pow(beta, (double)r)) / (1 - beta);
            ref_draw(&ref, ref.S, r, Br, 1.0 / Tr);
            for (long long r0 = 0; r0 < (long long)tc * Br; r0 += be->max_batch) {
                long long left = (long long)tc * Br - r0;
                ref_call(&ref, be, Br, r0, (int)(left < be->max_batch ? left : be->max_batch));
            }
            ref_update(&ref, Br, beta);
        }
        for (int a = 0; a < tc; a++) {
            const lpe_itgis_moments *m = &ref.mom[a];
            est[t0 + a] = m->mean;
            se[t0 + a] = m->n > 1 ? sqrt(m->m2 / (m->n - 1) / m->n) : NAN;
            ess[t0 + a] = m->sum_w2 > 0 ? m->sum_w * m->sum_w / m->sum_w2 : 0;
            hits[t0 + a] = m->hits;
        }
        ref_free(&ref);
    }
}

/* the T most frequent argmax tokens over 256 inputs from d (targets with hits, so that the
 * comparison of estimates is not one of zeros) */
static void common_targets(int32_t *targets, int T, lpe_backend *be, const lpe_dist *d, int V) {
    int32_t *tok = calloc((size_t)256 * d->k, sizeof *tok), *am = calloc(256, sizeof *am);
    int *count = calloc(V, sizeof *count);
    lpe_dist_sample(tok, d, 9, lpe_stream(LPE_STREAM_TEST, 3), 0, 256);
    for (int b0 = 0; b0 < 256; b0 += be->max_batch) {
        int nb = 256 - b0 < be->max_batch ? 256 - b0 : be->max_batch;
        be->load_tokens(be, tok + (size_t)b0 * d->k, nb);
        lpe_fwd_out o = {.argmax = am + b0};
        be->forward(be, &o, NULL, nb, 0);
    }
    for (int b = 0; b < 256; b++) count[am[b]]++;
    for (int t = 0; t < T; t++) {
        int best = 0;
        for (int v = 1; v < V; v++)
            if (count[v] > count[best]) best = v;
        targets[t] = best;
        count[best] = -1;
    }
    free(tok), free(am), free(count);
}

static void test_estimator(void) {
    /* a vocabulary of 60000: NSP ~ 30000, so memory_mb = 1 holds the tables of 2 targets and
     * the run has 3 chunks */
    lpe_model_config big = cfg;
    big.d_vocab = 60000;
    lpe_model m;
    lpe_model_init_random(&m, &big, 3);
    const int k = 5, T = 5;
    lpe_dist d;
    make_dist(&d, big.d_vocab, k);
    lpe_backend *be = lpe_backend_create("cpu", &m, 50, k, LPE_BE_GRAD);
    be->use_dist(be, &d);
    int64_t NSP = 0;
    for (int j = 0; j < k; j++) NSP += lpe_dist_support(&d, j);
    /* memory_mb = 1: TC = 2^20 / (2 NSP 8) targets per chunk (S and G) */
    const int TC = (int)(1048576.0 / (2.0 * NSP * sizeof(double)));
    CHECK(TC >= 2 && TC < T, "the test wants several chunks of several targets (TC = %d)", TC);
    int32_t targets[5];
    common_targets(targets, T, be, &d, big.d_vocab);
    const lpe_estimator *e = lpe_estimator_find("itgis");
    lpe_params p;
    lpe_params_init(&p, e->params, "test", "itgis");
    lpe_params_set(&p, "batch", "24", 0);
    lpe_params_set(&p, "temperature", "0.7", 0);
    lpe_params_set(&p, "memory_mb", "1", 0);
    void *opts = lpe_calloc(1, e->opts_size + 1);
    e->parse(opts, &p);
    lpe_est_ctx ctx = {.model = &m, .dist = &d, .be = be, .targets = targets, .n_targets = T,
                       .seed = 5, .budget = 100, .opts = opts, .out_group = -1};
    lpe_est_out o;
    lpe_est_out_init(&o, T);
    e->run(&o, &ctx);
    double est[5], se[5], ess[5], hits[5];
    ref_run(est, se, ess, hits, be, &d, targets, T, TC < T ? TC : T, 100, 24, 0.7, 0.9, 5);
    CHECK(!memcmp(est, o.estimate, sizeof est), "estimates differ from the host loop's");
    CHECK(!memcmp(se, o.std_error, sizeof se), "standard errors differ from the host loop's");
    CHECK(!memcmp(ess, o.diag[0].v, sizeof ess) && !memcmp(hits, o.diag[1].v, sizeof hits),
          "ESS or hits differ from the host loop's");
    double hsum = 0;
    for (int t = 0; t < T; t++) hsum += hits[t];
    printf("  estimator    %d targets in chunks of %d, 100 samples each: %g hits, estimate[0] %.4g\n",
           T, TC, hsum, est[0]);
    CHECK(hsum > 0, "no hits at all: the comparison would be vacuous");
    lpe_est_out_free(&o);
    free(opts);
    lpe_backend_destroy(be);
    lpe_dist_free(&d);
    lpe_model_free(&m);
}

/* a draw without tables must fail (exit 1), not read freed or unset memory */
static int draw_without_tables(void) {
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(99);
        lpe_model m;
        lpe_model_init_random(&m, &cfg, 1);
        lpe_backend *be = lpe_backend_create("cpu", &m, 4, 3, LPE_BE_GRAD);
        be->itgis_draw(be, 0, 2);
        _exit(0);
    }
    int st;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void) {
    test_ops();
    test_estimator();
    CHECK(draw_without_tables() == 1, "itgis_draw without tables must exit 1");
    return check_summary("test_itgis");
}
