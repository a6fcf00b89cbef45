/* enum_space.h: a small random model whose inputs are enumerated exactly, and seeded repeated
 * runs of an estimator on it, shared by the statistical tests of the particle and
 * importance-sampling methods (test_splitting.c, test_ceis.c).
 *
 * The model: 2 layers, d_model 16, vocabulary 48; inputs BOS + 4 positions x 24 tokens
 * (331 776 inputs, p(token i) ∝ 1 / (1 + i)); P[v] = Pr[argmax = v] summed over all of them.
 * runs(): R runs with seeds 100 .. 100 + R - 1; mean and standard deviation per target, and the
 * mean absolute relative error in mare_.
 */
#ifndef LPE_TEST_ENUM_SPACE_H
#define LPE_TEST_ENUM_SPACE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/backend.h"
#include "lpe/common.h"
#include "lpe/estimator.h"
#include "lpe/model.h"

enum { NPOS = 4, NTOK = 24, NV = 48 };

typedef struct {
    lpe_model m;
    lpe_dist d;
    lpe_backend *be;
    double P[NV];
} space;

static void space_make(space *sp) {
    lpe_model_config c = {.n_layers = 2, .d_model = 16, .n_heads = 2, .d_head = 8, .d_mlp = 32,
                          .d_vocab = NV, .n_ctx = 8, .act = LPE_ACT_GELU, .ln_eps = 1e-5};
    lpe_model_init_random(&sp->m, &c, 5);
    int64_t off[3] = {0, 1, 1 + NTOK};
    int32_t vals[1 + NTOK], positions[1 + NPOS] = {0};
    double pr[1 + NTOK];
    vals[0] = 0, pr[0] = 1;
    for (int i = 0; i < NTOK; i++) vals[1 + i] = 1 + 2 * i, pr[1 + i] = 1.0 / (1 + i);
    for (int j = 1; j <= NPOS; j++) positions[j] = 1;
    lpe_dist_from_arrays(&sp->d, "split", "", 2, off, vals, pr, 1 + NPOS, positions, NV);
    sp->be = lpe_backend_create("cpu", &sp->m, 4096, 1 + NPOS, LPE_BE_GRAD | LPE_BE_STATE);
    sp->be->use_dist(sp->be, &sp->d);
    const uint64_t N = lpe_dist_enum_size(&sp->d);
    int32_t *tok = malloc(sizeof(int32_t) * 4096 * (1 + NPOS)), *am = malloc(sizeof(int32_t) * 4096);
    double *lp = malloc(sizeof(double) * 4096);
    memset(sp->P, 0, sizeof sp->P);
    for (uint64_t i0 = 0; i0 < N; i0 += 4096) {
        int nb = (int)(N - i0 < 4096 ? N - i0 : 4096);
        for (int b = 0; b < nb; b++) lp[b] = lpe_dist_enum_decode(&sp->d, i0 + b, tok + b * (1 + NPOS));
        sp->be->load_tokens(sp->be, tok, nb);
        lpe_fwd_out fo = {.argmax = am};
        sp->be->forward(sp->be, &fo, NULL, nb, 0);
        for (int b = 0; b < nb; b++) sp->P[am[b]] += exp(lp[b]);
    }
    free(tok), free(am), free(lp);
}

static void space_free(space *sp) {
    lpe_backend_destroy(sp->be);
    lpe_dist_free(&sp->d);
    lpe_model_free(&sp->m);
}

static double mare_[8]; /* mean |estimate / P - 1| of the last runs() per target */

/* mean and standard deviation over R seeded runs of method `name` (params kv) per target; the
 * mean absolute relative error into mare_ */
static void runs(double *mean, double *sd, space *sp, const char *name, const int32_t *tg, int T,
                 int R, long long budget, const char **kv, int nkv) {
    const lpe_estimator *e = lpe_estimator_find(name);
    double s1[8] = {0}, s2[8] = {0};
    memset(mare_, 0, sizeof mare_);
    for (int r = 0; r < R; r++) {
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
        lpe_est_ctx ctx = {.model = &sp->m, .dist = &sp->d, .be = sp->be, .targets = tg,
                           .n_targets = T, .seed = 100 + r, .budget = budget, .opts = opts,
                           .out_group = -1};
        lpe_est_out o;
        lpe_est_out_init(&o, T);
        e->run(&o, &ctx);
        for (int t = 0; t < T; t++) {
            s1[t] += o.estimate[t], s2[t] += o.estimate[t] * o.estimate[t];
            mare_[t] += fabs(o.estimate[t] / sp->P[tg[t]] - 1) / R;
        }
        lpe_est_out_free(&o);
        free(opts);
    }
    for (int t = 0; t < T; t++) {
        mean[t] = s1[t] / R;
        sd[t] = sqrt(fmax(0, (s2[t] / R - mean[t] * mean[t]) * R / (R - 1.0)));
    }
}

/* one target per decade from 1e-2 to 1e-5: the one nearest 1.2 x the decade's bottom; returns
 * how many were found */
static int space_targets(int32_t *tg /* [4] */, const space *sp) {
    int T = 0;
    for (int dec = 2; dec <= 5; dec++) {
        double lo = pow(10, -dec), hi = 10 * lo, best = INFINITY;
        int pick = -1;
        for (int v = 0; v < NV; v++)
            if (sp->P[v] >= lo && sp->P[v] < hi && fabs(log(sp->P[v] / (1.2 * lo))) < best)
                best = fabs(log(sp->P[v] / (1.2 * lo))), pick = v;
        if (pick >= 0) tg[T++] = pick;
    }
    return T;
}

#endif
