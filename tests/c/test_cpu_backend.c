/* test_cpu_backend.c: the CPU backend's batch behaviour and bookkeeping (the numerics of one
 * sequence are checked against the float64 reference in tests/python/test_forward.py):
 *   - batch independence: a row's outputs (argmax, logits, activation, gradient) do not depend
 *     on the other rows: bit for bit at the same batch size, to float32 rounding alone (B = 1);
 *   - scores_at / scores_sum against float64 products of the gradient with W_E rows;
 *   - walker state: load_state, commit_state, get_tokens and scores from the state buffer;
 *   - sample_tokens = lpe_dist_sample; bad token ids exit 2, non-finite logits exit 1;
 *   - batch_for_budget: the largest batch whose buffers fit.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "logprob_check.h"
#include "../../src/cpu/cpu_internal.h"
#include "lpe/backend.h"
#include "lpe/common.h"
#include "lpe/dist.h"
#include "lpe/model.h"
#include "lpe/philox.h"

enum { B = 37, K = 6 };

static void random_tokens(int32_t *t, int n, int V, uint32_t slot) {
    for (int i = 0; i < n; i++) {
        uint32_t w[4];
        lpe_rng4(w, 99, lpe_stream(LPE_STREAM_TEST, slot), (uint64_t)i, 0);
        t[i] = (int32_t)lpe_below(w[0], (uint32_t)V);
    }
}

/* biases and LayerNorm parameters away from 0 / 1, so that every term matters */
static void perturb(lpe_model *m) {
    const lpe_model_config *c = &m->cfg;
    int D = c->d_model, HD = c->n_heads * c->d_head;
    for (int l = 0; l < c->n_layers; l++) {
        lpe_layer *y = &m->layers[l];
        for (int i = 0; i < D; i++) {
            y->ln1_w[i] = 1.0f + 0.1f * sinf((float)i + l);
            y->ln1_b[i] = 0.1f * cosf(3.0f * i);
            y->b_O[i] = 0.05f * sinf(7.0f * i);
            if (y->ln2_w) {
                y->ln2_w[i] = 1.0f - 0.1f * cosf((float)i);
                y->b_out[i] = 0.05f * cosf(5.0f * i);
            }
        }
        for (int i = 0; i < HD; i++) {
            y->b_Q[i] = 0.1f * sinf(2.0f * i);
            y->b_K[i] = 0.1f * cosf(2.0f * i);
            y->b_V[i] = 0.1f * sinf(3.0f * i + 1);
        }
        if (y->b_in)
            for (int i = 0; i < c->d_mlp; i++) y->b_in[i] = 0.1f * sinf(0.5f * i);
    }
}

static void test_model(const lpe_model_config *cfg, const char *label) {
    lpe_model m;
    lpe_model_init_random(&m, cfg, 5);
    perturb(&m);
    int V = cfg->d_vocab, D = cfg->d_model;
    int32_t tok[B * K], tgt[B], am[B], am1;
    float tl[B], ml[B], tl1, ml1;
    float *act = calloc((size_t)B * D, sizeof *act), *act1 = calloc(D, sizeof *act1);
    float *lg = calloc((size_t)B * V, sizeof *lg), *lg1 = calloc(V, sizeof *lg1);
    float *gr = calloc((size_t)B * K * D, sizeof *gr), *gr1 = calloc((size_t)K * D, sizeof *gr1);
    random_tokens(tok, B * K, V, 1);
    random_tokens(tgt, B, V, 2);

    lpe_backend *be = lpe_backend_create("cpu", &m, B + 3, K, LPE_BE_GRAD | LPE_BE_STATE);
    CHECK(!strcmp(be->name, "cpu") && !strncmp(be->device, "CPU:", 4), "%s", be->device);
    be->load_tokens(be, tok, B);
    lpe_fwd_out out = {.argmax = am, .target_logit = tl, .max_logit = ml, .act = act};
    be->forward(be, &out, tgt, B, 1);
    be->get_logits(be, lg, B);
    be->get_grad(be, gr, LPE_BUF_BATCH, B);

    /* The same batch size: a row's outputs are bit-for-bit those of the same row among other
     * rows (its neighbours replaced), in another backend of another max_batch. */
    {
        int32_t tok3[B * K];
        random_tokens(tok3, B * K, V, 4);
        for (int b = 0; b < B; b += 4) memcpy(tok3 + b * K, tok + b * K, K * sizeof *tok3);
        lpe_backend *b3 = lpe_backend_create("cpu", &m, B, K, LPE_BE_GRAD);
        float *lg3 = calloc((size_t)B * V, sizeof *lg3), *gr3 = calloc((size_t)B * K * D, sizeof *gr3);
        int32_t am3[B];
        float tl3[B];
        b3->load_tokens(b3, tok3, B);
        lpe_fwd_out o3 = {.argmax = am3, .target_logit = tl3};
        b3->forward(b3, &o3, tgt, B, 1);
        b3->get_logits(b3, lg3, B);
        b3->get_grad(b3, gr3, LPE_BUF_BATCH, B);
        int same = 1;
        for (int b = 0; b < B; b += 4) {
            same &= am3[b] == am[b] && tl3[b] == tl[b];
            same &= !memcmp(lg3 + (size_t)b * V, lg + (size_t)b * V, V * sizeof *lg);
            same &= !memcmp(gr3 + (size_t)b * K * D, gr + (size_t)b * K * D, (size_t)K * D * sizeof *gr);
        }
        CHECK(same, "%s: a row's outputs depend on the other rows of its batch", label);
        free(lg3), free(gr3);
        lpe_backend_destroy(b3);
    }

    /* Each row alone (B = 1): the same values up to float32 rounding. Not bit for bit: OpenBLAS
     * picks its micro-kernels (and their summation order) by the number of rows of a product,
     * so results differ in the last bits between batch sizes. Bound: 1e-5 of the vector's scale
     * (observed ~1e-6: a few ulps passed through the layers). */
    lpe_backend *b1 = lpe_backend_create("cpu", &m, 1, K, LPE_BE_GRAD);
    double w_act = 0, w_lg = 0, w_gr = 0;
    int argmax_ok = 1, stats_ok = 1;
    for (int b = 0; b < B; b++) {
        b1->load_tokens(b1, tok + b * K, 1);
        lpe_fwd_out o1 = {.argmax = &am1, .target_logit = &tl1, .max_logit = &ml1, .act = act1};
        b1->forward(b1, &o1, tgt + b, 1, 1);
        b1->get_logits(b1, lg1, 1);
        b1->get_grad(b1, gr1, LPE_BUF_BATCH, 1);
        double s_act = 0, s_lg = 0, s_gr = 0, e_act = 0, e_lg = 0, e_gr = 0;
        for (int i = 0; i < D; i++) {
            s_act = check_nanmax(s_act, fabs(act1[i]));
            e_act = check_nanmax(e_act, fabs(act1[i] - act[(size_t)b * D + i]));
        }
        for (int i = 0; i < V; i++) {
            s_lg = check_nanmax(s_lg, fabs(lg1[i]));
            e_lg = check_nanmax(e_lg, fabs(lg1[i] - lg[(size_t)b * V + i]));
        }
        for (int i = 0; i < K * D; i++) {
            s_gr = check_nanmax(s_gr, fabs(gr1[i]));
            e_gr = check_nanmax(e_gr, fabs(gr1[i] - gr[(size_t)b * K * D + i]));
        }
        w_act = check_nanmax(w_act, e_act / s_act);
        w_lg = check_nanmax(w_lg, e_lg / s_lg);
        w_gr = check_nanmax(w_gr, e_gr / s_gr);
        /* the argmax may differ only where the two best logits are that close */
        argmax_ok &= am1 == am[b] || fabs(lg[(size_t)b * V + am1] - ml[b]) <= 1e-5 * s_lg;
        /* argmax / max / target agree with the logits (ties: lowest index) */
        const float *l = lg + (size_t)b * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (l[v] > l[best]) best = v;
        stats_ok &= best == am[b] && ml[b] == l[best] && tl[b] == l[tgt[b]];
    }
    CHECK(w_act <= 1e-5 && w_lg <= 1e-5 && w_gr <= 1e-5,
          "%s: a row alone differs from the batch: act %.3g logits %.3g grad %.3g (of scale)",
          label, w_act, w_lg, w_gr);
    CHECK(argmax_ok, "%s: argmax of a row alone differs beyond a near tie", label);
    CHECK(stats_ok, "%s: argmax/max/target logit disagree with the logits", label);
    lpe_backend_destroy(b1);

    /* a backend made without LPE_BE_GRAD (activation slots reused across layers) gives the
     * very same outputs */
    {
        lpe_backend *b0 = lpe_backend_create("cpu", &m, B, K, 0);
        CHECK(!b0->with_grad && !b0->with_state, "%s: flags", label);
        int32_t am0[B];
        float tl0[B], ml0[B];
        float *lg0 = calloc((size_t)B * V, sizeof *lg0), *act0 = calloc((size_t)B * D, sizeof *act0);
        b0->load_tokens(b0, tok, B);
        lpe_fwd_out o0 = {.argmax = am0, .target_logit = tl0, .max_logit = ml0, .act = act0};
        b0->forward(b0, &o0, tgt, B, 0);
        b0->get_logits(b0, lg0, B);
        CHECK(!memcmp(am0, am, sizeof am0) && !memcmp(tl0, tl, sizeof tl0) &&
                  !memcmp(ml0, ml, sizeof ml0) && !memcmp(lg0, lg, (size_t)B * V * sizeof *lg) &&
                  !memcmp(act0, act, (size_t)B * D * sizeof *act),
              "%s: forward-only backend differs", label);
        free(lg0), free(act0);
        lpe_backend_destroy(b0);
    }

    /* a forward without gradient gives the same outputs */
    int32_t am2[B];
    float tl2[B];
    lpe_fwd_out o2 = {.argmax = am2, .target_logit = tl2};
    be->forward(be, &o2, tgt, B, 0);
    CHECK(!memcmp(am2, am, sizeof am2) && !memcmp(tl2, tl, sizeof tl2), "%s: want_grad changes outputs", label);
    be->forward(be, &out, tgt, B, 1);

    /* distribution: position j uses factor j % 3; factor 0 consecutive ids (direct W_E rows),
     * factor 1 scattered ids, factor 2 a single token. Support sizes > CPU_SCORE_TILE are not
     * needed here: tiles are exercised by a support bigger than the tile in test_tiles. */
    int64_t off[4] = {0, 9, 9 + V / 2, 9 + V / 2 + 1};
    int32_t *vals = calloc(off[3], sizeof *vals);
    double *pr = calloc(off[3], sizeof *pr);
    for (int i = 0; i < 9; i++) vals[i] = 3 + i;
    for (int i = 0; i < V / 2; i++) vals[9 + i] = (int32_t)((7 * i + 1) % V);
    vals[off[2]] = V - 1;
    for (int i = 0; i < off[3]; i++) pr[i] = 1.0 + (i % 5);
    int32_t pos_f[K];
    for (int j = 0; j < K; j++) pos_f[j] = j % 3;
    /* scattered ids must be distinct: 7 is prime to V in the configs used */
    lpe_dist d;
    lpe_dist_from_arrays(&d, "t", "test", 3, off, vals, pr, K, pos_f, V);
    be->use_dist(be, &d);

    /* scores_at: row b at position (b * 5) % K */
    int nmax = V / 2;
    float *sc = calloc((size_t)B * nmax, sizeof *sc);
    int32_t pos[B];
    for (int b = 0; b < B; b++) pos[b] = (b * 5) % K;
    be->scores_at(be, sc, nmax, pos, LPE_BUF_BATCH, B);
    double worst = 0;
    for (int b = 0; b < B; b++) {
        int f = d.positions[pos[b]];
        for (int s = 0; s < lpe_dist_support(&d, pos[b]); s++) {
            const float *e = m.W_E + (size_t)d.values[d.offsets[f] + s] * D;
            const float *g = gr + ((size_t)b * K + pos[b]) * D;
            double ref = 0, mag = 0;
            for (int i = 0; i < D; i++) {
                ref += (double)e[i] * g[i];
                mag += fabs((double)e[i] * g[i]);
            }
            /* a float32 dot product of D terms: error <= ~D * eps * sum |terms| */
            double err = fabs(sc[(size_t)b * nmax + s] - ref) / (mag * D * 1.2e-7 + 1e-30);
            worst = check_nanmax(worst, err);
        }
    }
    CHECK(worst <= 1.0, "%s: scores_at off by %.3g of its float32 bound", label, worst);

    /* scores_sum over 4 groups (one empty) against float64 sums of the same products */
    int32_t goff[5] = {0, 10, 10, 30, B};
    int S = 0;
    for (int j = 0; j < K; j++) S += lpe_dist_support(&d, j);
    double *ss = calloc((size_t)4 * S, sizeof *ss);
    be->scores_sum(be, ss, goff, 4);
    worst = 0;
    for (int g = 0; g < 4; g++) {
        int o = 0;
        for (int j = 0; j < K; j++) {
            int f = d.positions[j];
            for (int s = 0; s < lpe_dist_support(&d, j); s++, o++) {
                const float *e = m.W_E + (size_t)d.values[d.offsets[f] + s] * D;
                double ref = 0, mag = 0;
                for (int b = goff[g]; b < goff[g + 1]; b++)
                    for (int i = 0; i < D; i++) {
                        double t = (double)e[i] * gr[((size_t)b * K + j) * D + i];
                        ref += t;
                        mag += fabs(t);
                    }
                double err = fabs(ss[(size_t)g * S + o] - ref) / (mag * D * 1.2e-7 + 1e-30);
                if (g == 1) err = ss[(size_t)g * S + o] != 0 ? 1e9 : 0; /* the empty group */
                worst = check_nanmax(worst, err);
            }
        }
    }
    CHECK(worst <= 1.0, "%s: scores_sum off by %.3g of its float32 bound", label, worst);

    /* walker state: initialise with the batch tokens reversed, commit every third row */
    int32_t st[B * K], got[B * K];
    for (int b = 0; b < B; b++) memcpy(st + b * K, tok + (B - 1 - b) * K, K * sizeof *st);
    be->load_state(be, st, B);
    uint8_t acc[B];
    for (int b = 0; b < B; b++) acc[b] = b % 3 == 0;
    be->commit_state(be, acc, B);
    be->get_tokens(be, got, LPE_BUF_STATE, B);
    int ok = 1;
    for (int b = 0; b < B; b++) ok &= !memcmp(got + b * K, acc[b] ? tok + b * K : st + b * K, K * sizeof *got);
    CHECK(ok, "%s: commit_state tokens", label);
    /* a new batch must not disturb the state: scores from the state equal the batch ones for
     * committed rows */
    int32_t tok2[B * K];
    random_tokens(tok2, B * K, V, 3);
    be->load_tokens(be, tok2, B);
    be->forward(be, &out, tgt, B, 1);
    float *sc2 = calloc((size_t)B * nmax, sizeof *sc2);
    be->scores_at(be, sc2, nmax, pos, LPE_BUF_STATE, B);
    ok = 1;
    for (int b = 0; b < B; b += 3)
        ok &= !memcmp(sc2 + (size_t)b * nmax, sc + (size_t)b * nmax,
                      lpe_dist_support(&d, pos[b]) * sizeof *sc);
    CHECK(ok, "%s: scores of the walker state after commit", label);
    be->get_tokens(be, got, LPE_BUF_BATCH, B);
    CHECK(!memcmp(got, tok2, sizeof got), "%s: get_tokens(batch)", label);

    /* sample_tokens: the very tokens lpe_dist_sample draws */
    be->sample_tokens(be, 42, 7, 1000, B);
    int32_t want[B * K];
    lpe_dist_sample(want, &d, 42, 7, 1000, B);
    be->get_tokens(be, got, LPE_BUF_BATCH, B);
    CHECK(!memcmp(got, want, sizeof got), "%s: sample_tokens", label);

    lpe_dist_free(&d);
    free(vals);
    free(pr);
    free(sc);
    free(sc2);
    free(ss);
    lpe_backend_destroy(be);
    free(act), free(act1), free(lg), free(lg1), free(gr), free(gr1);
    lpe_model_free(&m);
}

/* A support larger than one tile, not consecutive: scores_at against float64. */
static void test_tiles(void) {
    lpe_model_config c = {.n_layers = 1, .d_model = 8, .n_heads = 2, .d_head = 4, .d_mlp = 16,
                          .d_vocab = 3 * CPU_SCORE_TILE + 17, .n_ctx = 4, .act = LPE_ACT_GELU,
                          .ln_eps = 1e-5};
    lpe_model m;
    lpe_model_init_random(&m, &c, 3);
    int V = c.d_vocab, D = c.d_model, k = 2, n = V - 5;
    int64_t off[2] = {0, n};
    int32_t *vals = calloc(n, sizeof *vals);
    double *pr = calloc(n, sizeof *pr);
    for (int i = 0; i < n; i++) vals[i] = (int32_t)(V - 1 - i), pr[i] = 1; /* descending */
    int32_t posf[2] = {0, 0};
    lpe_dist d;
    lpe_dist_from_arrays(&d, "big", "", 1, off, vals, pr, k, posf, V);
    lpe_backend *be = lpe_backend_create("cpu", &m, 3, k, LPE_BE_GRAD);
    be->use_dist(be, &d);
    int32_t tok[6] = {1, 2, 3, 4, 5, 6}, tgt[3] = {0, 7, 9}, pos[3] = {1, 0, 1};
    be->load_tokens(be, tok, 3);
    lpe_fwd_out out = {0};
    be->forward(be, &out, tgt, 3, 1);
    float *g = calloc((size_t)3 * k * D, sizeof *g), *sc = calloc((size_t)3 * n, sizeof *sc);
    be->get_grad(be, g, LPE_BUF_BATCH, 3);
    be->scores_at(be, sc, n, pos, LPE_BUF_BATCH, 3);
    double worst = 0;
    for (int b = 0; b < 3; b++)
        for (int s = 0; s < n; s++) {
            double ref = 0, mag = 0;
            for (int i = 0; i < D; i++) {
                double t = (double)m.W_E[(size_t)vals[s] * D + i] * g[((size_t)b * k + pos[b]) * D + i];
                ref += t, mag += fabs(t);
            }
            double e = fabs(sc[(size_t)b * n + s] - ref) / (mag * D * 1.2e-7 + 1e-30);
            worst = check_nanmax(worst, e);
        }
    CHECK(worst <= 1.0, "tiled scores off by %.3g of the float32 bound", worst);
    lpe_backend_destroy(be);
    lpe_dist_free(&d);
    free(vals), free(pr), free(g), free(sc);
    lpe_model_free(&m);
}

/* exit status of fn run in a child process (stderr silenced) */
static int child_status(void (*fn)(void)) {
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        freopen("/dev/null", "w", stderr);
        fn();
        _exit(0);
    }
    int st;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static lpe_model_config small = {.n_layers = 2, .d_model = 16, .n_heads = 2, .d_head = 8,
                                 .d_mlp = 32, .d_vocab = 41, .n_ctx = 8, .act = LPE_ACT_GELU,
                                 .ln_eps = 1e-5};

static void bad_token(void) {
    lpe_model m;
    lpe_model_init_random(&m, &small, 1);
    lpe_backend *be = lpe_backend_create("cpu", &m, 2, 3, 0);
    int32_t t[6] = {0, 1, 2, 3, 41, 5};
    be->load_tokens(be, t, 2);
}

static void nan_model(void) {
    lpe_model m;
    lpe_model_init_random(&m, &small, 1);
    m.W_U[5] = NAN;
    lpe_backend *be = lpe_backend_create("cpu", &m, 2, 3, 0);
    int32_t t[6] = {0, 1, 2, 3, 4, 5}, am[2];
    be->load_tokens(be, t, 2);
    lpe_fwd_out o = {.argmax = am};
    be->forward(be, &o, NULL, 2, 0);
}

static void no_cuda(void) {
    lpe_model m;
    lpe_model_init_random(&m, &small, 1);
    lpe_backend_create("cuda", &m, 2, 3, 0);
}

/* ---- argmax histogram (qld-dev): argmax_hist_add over row ranges of two forwards, then take,
 * against the counts of the forwards' argmax outputs; take adds to counts and resets ---- */
static void test_argmax_hist(void) {
    lpe_model m;
    lpe_model_init_random(&m, &small, 3);
    const int V = small.d_vocab;
    int32_t *tok = calloc((size_t)B * K, sizeof *tok), am[B];
    random_tokens(tok, B * K, V, 31);
    uint64_t *h = calloc(V, sizeof *h), *want = calloc(V, sizeof *want);
    lpe_backend *be = lpe_backend_create("cpu", &m, B, K, 0);
    for (int rep = 0; rep < 2; rep++) {
        int nb = B - 3 * rep;
        be->load_tokens(be, tok + (size_t)rep * 3 * K, nb);
        lpe_fwd_out o = {.argmax = am};
        be->forward(be, &o, NULL, nb, 0);
        be->argmax_hist_add(be, 0, 10);
        be->argmax_hist_add(be, 10, nb);
        be->argmax_hist_add(be, 4, 7); /* rows 4..6 twice */
        be->argmax_hist_add(be, 5, 5); /* empty */
        for (int b = 0; b < nb; b++) want[am[b]] += 1 + (b >= 4 && b < 7);
    }
    for (int v = 0; v < V; v++) h[v] = 7;
    be->argmax_hist_take(be, h);
    int same = 1, zero = 1, nz = 0;
    for (int v = 0; v < V; v++) same &= h[v] == 7 + want[v], nz += want[v] > 0;
    CHECK(same && nz >= 2, "argmax histogram differs from the argmax outputs' counts (%d bins)", nz);
    memset(h, 0, V * sizeof *h);
    be->argmax_hist_take(be, h);
    for (int v = 0; v < V; v++) zero &= h[v] == 0;
    CHECK(zero, "take did not reset the histogram");
    lpe_backend_destroy(be);
    free(tok), free(h), free(want);
    lpe_model_free(&m);
}
/* ---- end qld-dev block ---- */

int main(void) {
    lpe_model_config shapes[] = {
        small,
        {.n_layers = 1, .d_model = 24, .n_heads = 3, .d_head = 8, .d_mlp = 40, .d_vocab = 53,
         .n_ctx = 8, .act = LPE_ACT_GELU_NEW, .ln_eps = 1e-5, .has_b_U = 1},
        {.n_layers = 3, .d_model = 12, .n_heads = 4, .d_head = 3, .d_mlp = 20, .d_vocab = 29,
         .n_ctx = 6, .act = LPE_ACT_RELU, .ln_eps = 1e-5},
        {.n_layers = 2, .d_model = 16, .n_heads = 2, .d_head = 8, .d_mlp = 1, .d_vocab = 37,
         .n_ctx = 6, .act = LPE_ACT_GELU, .ln_eps = 1e-5, .attn_only = 1},
        /* big enough that the OpenMP loops and OpenBLAS run threaded */
        {.n_layers = 2, .d_model = 128, .n_heads = 4, .d_head = 32, .d_mlp = 512, .d_vocab = 1031,
         .n_ctx = 8, .act = LPE_ACT_GELU, .ln_eps = 1e-5},
    };
    const char *labels[] = {"2l-gelu", "1l-gelu_new-bU", "3l-relu-dh3", "2l-attn-only", "2l-d128"};
    for (int i = 0; i < 5; i++) test_model(&shapes[i], labels[i]);
    for (int i = 0; i < 4; i++) { /* the log-probability's gradient (issue 12) */
        lpe_model m;
        lpe_model_init_random(&m, &shapes[i], 17);
        check_logprob_grad("cpu", &m, labels[i]);
        lpe_model_free(&m);
    }
    test_tiles();
    test_argmax_hist(); /* qld-dev */

    CHECK(child_status(bad_token) == 2, "a token id >= V must exit 2");
    CHECK(child_status(nan_model) == 1, "non-finite logits must exit 1");
    if (!lpe_backend_available("cuda")) CHECK(child_status(no_cuda) == 2, "cuda in a CPU build must exit 2");

    /* batch_for_budget: the largest batch that fits */
    lpe_model_config g1 = {.n_layers = 1, .d_model = 512, .n_heads = 8, .d_head = 64,
                           .d_mlp = 2048, .d_vocab = 48262, .n_ctx = 1024, .act = LPE_ACT_GELU,
                           .ln_eps = 1e-5};
    double budget = 1e9;
    int flags = LPE_BE_GRAD | LPE_BE_STATE;
    int nb = lpe_backend_batch_for_budget("cpu", &g1, 33, flags, budget);
    CHECK(nb >= 1 && cpu_batch_bytes(&g1, nb, 33, flags) <= budget &&
              cpu_batch_bytes(&g1, nb + 1, 33, flags) > budget,
          "batch_for_budget gave %d", nb);
    CHECK(lpe_backend_batch_for_budget("cpu", &g1, 33, 0, budget) > nb,
          "a forward-only backend must fit more rows");
    CHECK(lpe_backend_batch_for_budget("cpu", &g1, 33, flags, 0) >= 256,
          "default CPU budget below 256 rows of gelu-1l");
    /* FLOP counts of gelu-1l at k = 33, multiply-adds counted by hand (x2):
     * forward: k|v 33*512*1024, q 512*512, scores + values 2*33*512, W_O 512*512,
     *          MLP 2*512*2048, unembedding 512*48262;
     * backward: MLP 2*512*2048, W_O 512*512, attention 4*33*512, k|v 33*1024*512, q 512*512 */
    CHECK(lpe_model_forward_flops(&g1, 33) == 2.0 * 44666880, "forward flops %.0f",
          lpe_model_forward_flops(&g1, 33));
    CHECK(lpe_model_backward_flops(&g1, 33) == 2.0 * 19990528, "backward flops %.0f",
          lpe_model_backward_flops(&g1, 33));
    return check_summary("test_cpu_backend");
}
