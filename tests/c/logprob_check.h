/* logprob_check.h: the gradient of the target's log-probability (grad_of = LPE_GRAD_LOGPROB,
 * backend.h) against its definition composed from the same backend's target-logit gradients:
 *
 *   d(l_t - logsumexp_v l_v)/dr0 = g_t - sum_v p_v g_v,   g_v = dl_v/dr0,  p = softmax(l),
 *
 * summed in float64 (the target-logit gradient itself is checked against the float64 reference
 * in tests/python/test_forward.py). Rows: NSEQ distinct inputs cycling, targets spread over the
 * vocabulary, more rows than one chunk of the CPU's seed (CPU_SEED_ROWS = 256), so that a row
 * offset or a chunk boundary error shows. Then grad_of = LPE_GRAD_LOGIT again gives the target
 * logit's gradient bit for bit (the mode leaves nothing behind).
 * Tolerance: the backward runs in float32 (products of length <= max(V, D, F)); relative to the
 * scale of the terms (|g_t| + sum_v p_v |g_v|), 2e-4 is ~100 times float32's unit roundoff
 * times the depth, far below any error in the seed (a missing or doubled p_v term moves the
 * result by the term's size, ~1 of the scale).
 */
#ifndef LPE_TEST_LOGPROB_CHECK_H
#define LPE_TEST_LOGPROB_CHECK_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lpe/backend.h"
#include "lpe/philox.h"

enum { LPC_NSEQ = 3, LPC_ROWS = 300 };

static void check_logprob_grad(const char *backend, const lpe_model *m, const char *label) {
    const int V = m->cfg.d_vocab, D = m->cfg.d_model, k = 4;
    const size_t kD = (size_t)k * D;
    const int Bm = LPC_ROWS > LPC_NSEQ * V ? LPC_ROWS : LPC_NSEQ * V;
    lpe_backend *be = lpe_backend_create(backend, m, Bm, k, LPE_BE_GRAD);
    int32_t *tok = calloc((size_t)Bm * k, sizeof *tok), *tg = calloc((size_t)Bm, sizeof *tg);
    float *g = calloc((size_t)Bm * kD, sizeof *g), *lg = calloc((size_t)Bm * V, sizeof *lg);
    float *g0 = calloc((size_t)LPC_ROWS * kD, sizeof *g0);
    float *gl = calloc((size_t)LPC_ROWS * kD, sizeof *gl);
    int32_t seq[LPC_NSEQ][4];
    for (int s = 0; s < LPC_NSEQ; s++)
        for (int j = 0; j < k; j++) {
            uint32_t w[4];
            lpe_rng4(w, 11, lpe_stream(LPE_STREAM_TEST, 41), (uint64_t)s, (uint32_t)j);
            seq[s][j] = (int32_t)lpe_below(w[0], (uint32_t)V);
        }
    /* the definition's terms: g_v for every v of every input, and the logits */
    for (int s = 0; s < LPC_NSEQ; s++)
        for (int v = 0; v < V; v++) memcpy(tok + ((size_t)s * V + v) * k, seq[s], sizeof seq[s]), tg[s * V + v] = v;
    be->load_tokens(be, tok, LPC_NSEQ * V);
    be->forward(be, NULL, tg, LPC_NSEQ * V, 1);
    be->get_grad(be, g, LPE_BUF_BATCH, LPC_NSEQ * V);
    be->get_logits(be, lg, LPC_NSEQ * V);
    /* the rows under test: input b % NSEQ, target 7 b % V; first the logit's gradient */
    for (int b = 0; b < LPC_ROWS; b++) memcpy(tok + (size_t)b * k, seq[b % LPC_NSEQ], sizeof seq[0]), tg[b] = (7 * b) % V;
    be->load_tokens(be, tok, LPC_ROWS);
    be->forward(be, NULL, tg, LPC_ROWS, 1);
    be->get_grad(be, g0, LPE_BUF_BATCH, LPC_ROWS);
    be->grad_of = LPE_GRAD_LOGPROB;
    be->forward(be, NULL, tg, LPC_ROWS, 1);
    be->get_grad(be, gl, LPE_BUF_BATCH, LPC_ROWS);
    double worst = 0, moved = 0;
    for (int b = 0; b < LPC_ROWS; b++) {
        const int s = b % LPC_NSEQ, t = tg[b];
        const float *l = lg + (size_t)s * V * V; /* row s V of the first batch: input s */
        double mx = -INFINITY, Z = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, l[v]);
        for (int v = 0; v < V; v++) Z += exp(l[v] - mx);
        for (size_t i = 0; i < kD; i++) {
            double ref = g[((size_t)s * V + t) * kD + i], scale = fabs(ref);
            for (int v = 0; v < V; v++) {
                const double p = exp(l[v] - mx) / Z, gv = g[((size_t)s * V + v) * kD + i];
                ref -= p * gv, scale += p * fabs(gv);
            }
            worst = check_nanmax(worst, fabs(gl[(size_t)b * kD + i] - ref) / (scale + 1e-30));
            moved = fmax(moved, fabs(gl[(size_t)b * kD + i] - g0[(size_t)b * kD + i]) / (scale + 1e-30));
        }
    }
    CHECK(worst <= 2e-4, "%s %s: log-probability gradient off its definition by %.3g of the scale",
          backend, label, worst);
    CHECK(moved > 1e-2, "%s %s: the log-probability gradient equals the logit's", backend, label);
    be->grad_of = LPE_GRAD_LOGIT;
    be->forward(be, NULL, tg, LPC_ROWS, 1);
    be->get_grad(be, gl, LPE_BUF_BATCH, LPC_ROWS);
    CHECK(!memcmp(gl, g0, (size_t)LPC_ROWS * kD * sizeof *g0), "%s %s: grad_of = LOGIT not restored",
          backend, label);
    lpe_backend_destroy(be);
    free(tok), free(tg), free(g), free(lg), free(g0), free(gl);
}

#endif
