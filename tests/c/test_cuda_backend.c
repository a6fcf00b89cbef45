/* test_cuda_backend.c: the CUDA backend against the CPU backend (its oracle) on random models of
 * several shapes (2 layers gelu, 1 layer gelu_new with b_U, 3 layers relu with d_head 3, attention
 * only, k = 1, and the gelu-1l shape at a small batch):
 *   - logits, max and target logit, final-LN activations, gradients ds/dr0 within the bound
 *     below; argmax identical except at near-ties (counted and printed);
 *   - scores_at / scores_sum against float64 products of the CUDA backend's own gradient;
 *   - sample_tokens identical to lpe_dist_sample (the same Philox draws, bit for bit);
 *   - walker state: load_state, commit_state, gather_state, get_tokens / get_grad of the state;
 *   - the fused walker step (issue 10): decisions, tokens, scores, MHIS statistics, snapshots
 *     (check_walkers, its own comment);
 *   - ground truth (lpe_truth_sample) counts identical except for near-tie rows;
 *   - the ITGIS operations (issue 10) against the host loop on the CUDA backend's own state
 *     (check_itgis: tokens identical, log-weights, S and moments within derived bounds);
 *   - bad token ids exit 2, non-finite logits exit 1 (in a fresh process: a forked child cannot
 *     use the parent's CUDA context).
 * Without a CUDA device (or in a build without CUDA) it prints "SKIP: ..." and exits 0 having
 * counted no check. LPE_CUDA_TEST_QUICK=1 runs the small shapes only (compute-sanitizer).
 *
 * Tolerance. Both backends compute in float32 with the same formulas, but sum products in other
 * orders (cuBLAS tiles vs OpenBLAS kernels, warp reductions vs loops). A float32 sum of n terms
 * t_i in any order has |error| <= (n - 1) eps32 sum |t_i| (eps32 = 2^-24 per rounding, first
 * order). A logit l_v = sum_d lnf_d W_U[d, v] + b_U[v] is one such sum over D terms, on inputs
 * lnf that carry the errors of the layers below; each layer adds products of length at most
 * Kmax = max(D, F, HD, k) whose errors LayerNorm keeps on the scale of the activations. So
 *     |l_cuda - l_cpu| <= C (L + 1) Kmax eps32 S_v,   S_v = sum_d |lnf_d W_U[d, v]| + |b_U[v]|,
 * with C = 2 (two computations, each within the bound). The backward runs the products again
 * (transposed), so gradients get C = 4 against the row's largest component. The worst case is
 * far above the typical error (random signs: ~sqrt(n) eps32), so the test also prints the
 * largest observed error as a fraction of its bound.
 *
 * Near-ties: a row's argmax may differ only when the CPU's top-two logit gap is within the sum
 * of the two logits' bounds; such rows are counted and printed, and the truth counts may differ
 * by at most two per near-tie row.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "logprob_check.h"
#include "lpe/backend.h"
#include "lpe/common.h"
#include "lpe/dist.h"
#include "lpe/model.h"
#include "lpe/philox.h"
#include "lpe/qld_core.h"
#include "lpe/truth.h"

#include "itgis_ref.h" /* ITGIS operations (issue 10) */

#define EPS32 5.9604644775390625e-8 /* 2^-24 */
#define EPS64 1.1102230246251565e-16 /* 2^-53 (ITGIS operations, issue 10) */

static int quick;

static void random_tokens(int32_t *t, int n, int V, uint32_t slot) {
    for (int i = 0; i < n; i++) {
        uint32_t w[4];
        lpe_rng4(w, 77, lpe_stream(LPE_STREAM_TEST, slot), (uint64_t)i, 0);
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

/* C (L + 1) Kmax eps32: the relative factor of the bound (file comment) */
static double bound_factor(const lpe_model_config *c, int k, double C) {
    int K = c->d_model;
    if (!c->attn_only && c->d_mlp > K) K = c->d_mlp;
    if (c->n_heads * c->d_head > K) K = c->n_heads * c->d_head;
    if (k > K) K = k;
    return C * (c->n_layers + 1) * K * EPS32;
}

/* S_v of one row: sum_d |lnf_d W_U[d, v]| + |b_U[v]|, for all v (out [V]) */
static void logit_scale(double *S, const lpe_model *m, const float *lnf) {
    int D = m->cfg.d_model, V = m->cfg.d_vocab;
    for (int v = 0; v < V; v++) S[v] = m->b_U ? fabs(m->b_U[v]) : 0;
    for (int d = 0; d < D; d++)
        for (int v = 0; v < V; v++) S[v] += fabs(lnf[d] * m->W_U[(size_t)d * V + v]);
}

typedef struct {
    int32_t *am;
    float *tl, *ml, *mg, *act, *lg, *gr;
} fwd_res;

static void run_forward(fwd_res *r, lpe_backend *be, const int32_t *tok, const int32_t *tgt,
                        int B, int k) {
    const lpe_model_config *c = &be->model->cfg;
    int D = c->d_model, V = c->d_vocab;
    r->am = calloc(B, sizeof *r->am);
    r->tl = calloc(B, sizeof *r->tl), r->ml = calloc(B, sizeof *r->ml);
    r->mg = calloc(B, sizeof *r->mg);
    r->act = calloc((size_t)B * D, sizeof *r->act);
    r->lg = calloc((size_t)B * V, sizeof *r->lg);
    r->gr = calloc((size_t)B * k * D, sizeof *r->gr);
    be->load_tokens(be, tok, B);
    lpe_fwd_out o = {.argmax = r->am, .target_logit = r->tl, .max_logit = r->ml, .act = r->act,
                     .margin = r->mg};
    be->forward(be, &o, tgt, B, 1);
    be->get_logits(be, r->lg, B);
    be->get_grad(be, r->gr, LPE_BUF_BATCH, B);
}

static void free_res(fwd_res *r) {
    free(r->am), free(r->tl), free(r->ml), free(r->mg), free(r->act), free(r->lg), free(r->gr);
}

/* second largest of a row of logits */
static float second_best(const float *l, int V, int best) {
    float s = -INFINITY;
    for (int v = 0; v < V; v++)
        if (v != best && l[v] > s) s = l[v];
    return s;
}

/* forward outputs of CUDA (g) against CPU (c); returns the number of near-tie rows */
static int compare_forward(const fwd_res *c, const fwd_res *g, const lpe_model *m,
                           const int32_t *tgt, int B, int k, const char *label) {
    int D = m->cfg.d_model, V = m->cfg.d_vocab;
    double f = bound_factor(&m->cfg, k, 2), fg = bound_factor(&m->cfg, k, 4);
    double *S = calloc(V, sizeof *S);
    double worst_lg = 0, worst_act = 0, worst_gr = 0;
    int near = 0, bad_am = 0, bad_stats = 0;
    for (int b = 0; b < B; b++) {
        const float *lc = c->lg + (size_t)b * V, *lgp = g->lg + (size_t)b * V;
        logit_scale(S, m, c->act + (size_t)b * D);
        for (int v = 0; v < V; v++)
            worst_lg = fmax(worst_lg, fabs(lc[v] - lgp[v]) / (f * S[v] + 1e-30));
        if (g->am[b] != c->am[b]) {
            int a = c->am[b];
            double gap = lc[a] - second_best(lc, V, a), tol = f * (S[a] + S[g->am[b]]);
            if (gap <= tol) near++;
            else bad_am++;
        }
        /* the CUDA outputs agree with the CUDA logits exactly (the same floats) */
        int best = 0, t = tgt[b];
        for (int v = 1; v < V; v++)
            if (lgp[v] > lgp[best]) best = v;
        float other = -INFINITY;
        for (int v = 0; v < V; v++)
            if (v != t && lgp[v] > other) other = lgp[v];
        bad_stats += best != g->am[b] || g->ml[b] != lgp[best] || g->tl[b] != lgp[t] ||
                     g->mg[b] != lgp[t] - other;
        if (best != g->am[b] || g->ml[b] != lgp[best] || g->tl[b] != lgp[t] || g->mg[b] != lgp[t] - other)
            fprintf(stderr, "  row %d: argmax %d/%d max %g/%g target %g/%g margin %g/%g\n", b,
                    g->am[b], best, g->ml[b], lgp[best], g->tl[b], lgp[t], g->mg[b], lgp[t] - other);
        worst_lg = fmax(worst_lg, fabs(c->tl[b] - g->tl[b]) / (f * S[t] + 1e-30));
        double sa = 0, sg = 0;
        for (int d = 0; d < D; d++) sa = fmax(sa, fabs(c->act[(size_t)b * D + d]));
        for (int d = 0; d < D; d++)
            worst_act = fmax(worst_act, fabs(c->act[(size_t)b * D + d] - g->act[(size_t)b * D + d]) / (f * sa));
        const float *gc = c->gr + (size_t)b * k * D, *gg = g->gr + (size_t)b * k * D;
        for (int i = 0; i < k * D; i++) sg = fmax(sg, fabs(gc[i]));
        for (int i = 0; i < k * D; i++) worst_gr = fmax(worst_gr, fabs(gc[i] - gg[i]) / (fg * sg));
    }
    printf("  %-16s logits %.3g, act %.3g, grad %.3g of the bound; %d near-tie argmax row(s)\n",
           label, worst_lg, worst_act, worst_gr, near);
    CHECK(worst_lg <= 1, "%s: logits differ by %.3g x the bound", label, worst_lg);
    CHECK(worst_act <= 1, "%s: final-LN activations differ by %.3g x the bound", label, worst_act);
    CHECK(worst_gr <= 1, "%s: gradients differ by %.3g x the bound", label, worst_gr);
    CHECK(bad_am == 0, "%s: %d argmax rows differ beyond a near tie", label, bad_am);
    CHECK(bad_stats == 0, "%s: %d rows' argmax/max disagree with the CUDA logits", label, bad_stats);
    free(S);
    return near;
}

/* scores of the CUDA backend against float64 products of its own gradient with W_E rows:
 * one product of length D, so |err| <= 2 D eps32 sum_d |W_E[y, d] g_d| (+ the float64 sum of
 * group rows in scores_sum, exact to float32 rounding of the sum). */
static void check_scores(lpe_backend *be, const lpe_model *m, const lpe_dist *d, const float *gr,
                         int B, int k, const char *label) {
    int D = m->cfg.d_model;
    int nmax = 0;
    for (int j = 0; j < k; j++) nmax = lpe_dist_support(d, j) > nmax ? lpe_dist_support(d, j) : nmax;
    float *sc = calloc((size_t)B * nmax, sizeof *sc);
    int32_t *pos = calloc(B, sizeof *pos);
    for (int b = 0; b < B; b++) pos[b] = (b * 5 + 1) % k;
    be->scores_at(be, sc, nmax, pos, LPE_BUF_BATCH, B);
    double worst = 0;
    for (int b = 0; b < B; b++) {
        int f = d->positions[pos[b]];
        for (int s = 0; s < lpe_dist_support(d, pos[b]); s++) {
            const float *e = m->W_E + (size_t)d->values[d->offsets[f] + s] * D;
            const float *g = gr + ((size_t)b * k + pos[b]) * D;
            double ref = 0, mag = 0;
            for (int i = 0; i < D; i++) ref += (double)e[i] * g[i], mag += fabs((double)e[i] * g[i]);
            worst = fmax(worst, fabs(sc[(size_t)b * nmax + s] - ref) / (2 * D * EPS32 * mag + 1e-30));
        }
    }
    CHECK(worst <= 1, "%s: scores_at differs from the float64 product by %.3g x the bound", label, worst);
    /* scores_sum: 3 groups of uneven size */
    int32_t goff[4] = {0, 1, B / 2, B};
    int64_t S = 0;
    for (int j = 0; j < k; j++) S += lpe_dist_support(d, j);
    double *ss = calloc((size_t)3 * S, sizeof *ss), worst2 = 0;
    double *gs = calloc((size_t)2 * D, sizeof *gs); /* [D] sum_b g, [D] sum_b |g| of a group */
    be->scores_sum(be, ss, goff, 3);
    for (int gi = 0; gi < 3; gi++) {
        int64_t o = 0;
        for (int j = 0; j < k; j++) {
            int f = d->positions[j], nf = lpe_dist_support(d, j);
            memset(gs, 0, (size_t)2 * D * sizeof *gs);
            for (int b = goff[gi]; b < goff[gi + 1]; b++)
                for (int i = 0; i < D; i++) {
                    double t = gr[((size_t)b * k + j) * D + i];
                    gs[i] += t, gs[D + i] += fabs(t);
                }
            /* large supports: every stride-th entry (the host product would dominate the test) */
            int stride = nf > 1024 ? nf / 1024 : 1;
            for (int s = 0; s < nf; s += stride) {
                const float *e = m->W_E + (size_t)d->values[d->offsets[f] + s] * D;
                double ref = 0, mag = 0;
                for (int i = 0; i < D; i++) ref += e[i] * gs[i], mag += fabs(e[i]) * gs[D + i];
                worst2 = fmax(worst2, fabs(ss[(size_t)gi * S + o + s] - ref) / (2 * (D + B) * EPS32 * mag + 1e-30));
            }
            o += nf;
        }
    }
    free(gs);
    CHECK(worst2 <= 1, "%s: scores_sum differs from the float64 sum by %.3g x the bound", label, worst2);
    free(sc), free(pos), free(ss);
}

/* distribution over the model's vocabulary: position j uses factor j % 3; factor 0 consecutive
 * ids (W_E rows used in place), factor 1 scattered ids (gathered; all V when full), factor 2 one
 * token. full: factor 1 is the whole vocabulary (several score tiles when V > 2048). */
static void make_dist(lpe_dist *d, int V, int k, int full) {
    int n1 = full ? V : V / 2;
    int64_t off[4] = {0, 9, 9 + n1, 9 + n1 + 1};
    int32_t *vals = calloc(off[3], sizeof *vals);
    double *pr = calloc(off[3], sizeof *pr);
    for (int i = 0; i < 9; i++) vals[i] = 3 + i;
    for (int i = 0; i < n1; i++) vals[9 + i] = full ? (V - 1 - i) : (int32_t)((7 * i + 1) % V);
    vals[off[2]] = V - 1;
    for (int i = 0; i < off[3]; i++) pr[i] = 1.0 + (i % 5);
    int32_t *pos_f = calloc(k, sizeof *pos_f);
    for (int j = 0; j < k; j++) pos_f[j] = j % 3;
    lpe_dist_from_arrays(d, "t", "test", 3, off, vals, pr, k, pos_f, V);
    free(vals), free(pr), free(pos_f);
}

/* sampled tokens identical to lpe_dist_sample; walker-state operations as on the CPU */
static void check_sampling_and_state(lpe_backend *g, lpe_backend *c, const lpe_dist *d, int B,
                                     int k, const char *label) {
    int D = g->model->cfg.d_model;
    int32_t *want = calloc((size_t)B * k, sizeof *want), *got = calloc((size_t)B * k, sizeof *got);
    uint32_t stream = lpe_stream(LPE_STREAM_TEST, 9);
    lpe_dist_sample(want, d, 1234567, stream, 1000003, B);
    g->sample_tokens(g, 1234567, stream, 1000003, B);
    g->get_tokens(g, got, LPE_BUF_BATCH, B);
    CHECK(!memcmp(want, got, (size_t)B * k * sizeof *got), "%s: sampled tokens differ", label);

    /* state: load, a forward on new tokens, commit every third row, gather; both backends */
    lpe_backend *be[2] = {c, g};
    int32_t *st[2], *src = calloc(B, sizeof *src), *tg = calloc(B, sizeof *tg);
    float *sg[2];
    uint8_t *acc = calloc(B, 1);
    for (int b = 0; b < B; b++) acc[b] = b % 3 == 0, src[b] = (B - 1 - b) / 2, tg[b] = b % 7;
    for (int i = 0; i < 2; i++) {
        st[i] = calloc((size_t)B * k, sizeof *st[i]);
        sg[i] = calloc((size_t)B * k * D, sizeof *sg[i]);
        be[i]->load_state(be[i], want, B);
        be[i]->sample_tokens(be[i], 99, stream, 0, B);
        lpe_fwd_out o = {0};
        be[i]->forward(be[i], &o, tg, B, 1);
        be[i]->commit_state(be[i], acc, B);
        be[i]->gather_state(be[i], src, B);
        be[i]->get_tokens(be[i], st[i], LPE_BUF_STATE, B);
        be[i]->get_grad(be[i], sg[i], LPE_BUF_STATE, B);
    }
    CHECK(!memcmp(st[0], st[1], (size_t)B * k * sizeof *st[0]), "%s: walker-state tokens differ", label);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < (size_t)B * k * D; i++) scale = fmax(scale, fabs(sg[0][i]));
    for (size_t i = 0; i < (size_t)B * k * D; i++) worst = fmax(worst, fabs(sg[0][i] - sg[1][i]));
    CHECK(worst <= bound_factor(&g->model->cfg, k, 4) * scale,
          "%s: walker-state gradients differ by %.3g (scale %.3g)", label, worst, scale);
    for (int i = 0; i < 2; i++) free(st[i]), free(sg[i]);
    free(want), free(got), free(src), free(tg), free(acc);
}

/* truth counts of both backends over the same samples: equal except near-tie rows */
static void check_truth(lpe_backend *g, lpe_backend *c, const lpe_dist *d, int n,
                        const char *label) {
    int V = g->model->cfg.d_vocab;
    uint64_t *cc = calloc(V, sizeof *cc), *cg = calloc(V, sizeof *cg);
    lpe_truth_opts o = {.batch = g->max_batch < c->max_batch ? g->max_batch : c->max_batch};
    lpe_truth_sample(cc, c, d, 42, 0, (uint64_t)n, &o);
    lpe_truth_sample(cg, g, d, 42, 0, (uint64_t)n, &o);
    uint64_t diff = 0, total = 0;
    for (int v = 0; v < V; v++) diff += cc[v] > cg[v] ? cc[v] - cg[v] : cg[v] - cc[v], total += cg[v];
    /* rows whose argmax moved: each moves one count out of one bin into another */
    printf("  %-16s truth over %d samples: %llu row(s) counted in another bin\n", label, n,
           (unsigned long long)(diff / 2));
    CHECK(total == (uint64_t)n, "%s: CUDA truth counted %llu of %d samples", label,
          (unsigned long long)total, n);
    /* near ties are rare on these models (a few in 1e4 at most); more means a real difference */
    CHECK(diff / 2 <= (uint64_t)n / 1000 + 1, "%s: %llu rows of %d moved bins", label,
          (unsigned long long)(diff / 2), n);
    free(cc), free(cg);
}

/* ---- ITGIS operations (issue 10) ----------------------------------------------------------
 * The CUDA backend's itgis_* operations against the host loop (itgis_ref.h, which test_itgis.c
 * shows equal to the CPU backend bit for bit), fed with the CUDA backend's own state: its S
 * (read back before each round), its log-weights and argmax, its gradients. Round 0 draws from
 * S = 0, so there the tokens are also the CPU backend's. Checks and their bounds:
 *   tokens identical: the device cdf differs from the host's by rounding (~n eps64), so a token
 *     could move only for a uniform within that of a boundary (chance ~ k n eps64 per row);
 *   log w: the device sums each position's normaliser in another order (relative n_j eps64 on
 *     Z_j, absolute on log Z_j) and may contract into FMAs (a few eps64 per term), so
 *     |dlog w| <= eps64 sum_j (n_j + 4)(1 + |log Z_j| + |S_j(x_j)| / T_r)  (itgis_ref's lwmag);
 *   moments from the CUDA log-weights and argmax: n, hits exact; the others relative
 *     8 n eps64 (exp within an ulp or two per term, FMA contraction in Welford's update);
 *   S against S_ref <- beta S_ref + G_ref / Br with G_ref the float64 products of the CUDA
 *     gradient sums with W_E (as check_scores): each call's tile is within
 *     2 (D + rows) eps32 sum |W_E| |g| of its float64 value, and the bound E follows the same
 *     recursion, E <- beta E + E_G / Br. Large supports: every stride-th entry. */
typedef struct {
    double *Sg, *Sr, *Gr, *Er, *Eg; /* [tc, NSP] CUDA S, reference S, G, their bounds */
    double *gs;                     /* [2, D] a group's gradient sum and sum of |g| */
    lpe_itgis_moments *mom;         /* [tc] from the CUDA weights and argmax */
} itgis_chk;

/* G_ref (and its bound) += the float64 scores of the rows of each target in this call */
static void itgis_ref_scores(itgis_chk *x, const itgis_ref *ref, const lpe_model *m,
                             const float *gr, long long r0, int nr, int Br) {
    const lpe_dist *d = ref->d;
    const int D = m->cfg.d_model, k = d->k;
    for (int a = (int)(r0 / Br); a <= (int)((r0 + nr - 1) / Br); a++) {
        const long long lo = a * (long long)Br - r0 < 0 ? 0 : a * (long long)Br - r0;
        const long long hi = (a + 1) * (long long)Br - r0 < nr ? (a + 1) * (long long)Br - r0 : nr;
        for (int j = 0; j < k; j++) {
            const int f = d->positions[j], nf = lpe_dist_support(d, j);
            memset(x->gs, 0, (size_t)2 * D * sizeof *x->gs);
            for (long long b = lo; b < hi; b++)
                for (int e = 0; e < D; e++) {
                    double t = gr[((size_t)b * k + j) * D + e];
                    x->gs[e] += t, x->gs[D + e] += fabs(t);
                }
            const int stride = nf > 1024 ? nf / 1024 : 1;
            for (int y = 0; y < nf; y += stride) {
                const float *w = m->W_E + (size_t)d->values[d->offsets[f] + y] * D;
                double v = 0, mag = 0;
                for (int e = 0; e < D; e++) v += w[e] * x->gs[e], mag += fabs(w[e]) * x->gs[D + e];
                const size_t i = (size_t)a * ref->NSP + ref->pos_off[j] + y;
                x->Gr[i] += v;
                x->Eg[i] += 2 * (D + (hi - lo)) * EPS32 * mag;
            }
        }
    }
}

/* one call of rows r0 .. r0 + nr: tokens and log-weights, forward, accumulate, host moments */
static void itgis_check_call(itgis_chk *x, itgis_ref *ref, lpe_backend *g, const lpe_model *m,
                             long long r0, int nr, int Br, double *worst_lw, int *bad_tok) {
    const int k = ref->k, D = m->cfg.d_model;
    int32_t *tok = calloc((size_t)nr * k, sizeof *tok), *am = calloc(nr, sizeof *am);
    int32_t *row_t = calloc(nr, sizeof *row_t);
    double *lw = calloc(nr, sizeof *lw);
    float *gr = calloc((size_t)nr * k * D, sizeof *gr);
    g->itgis_draw(g, r0, nr);
    g->get_tokens(g, tok, LPE_BUF_BATCH, nr);
    g->itgis_read(g, lw, LPE_ITGIS_LOGW);
    *bad_tok += memcmp(tok, ref->tok + r0 * k, (size_t)nr * k * sizeof *tok) != 0;
    for (int q = 0; q < nr; q++) {
        *worst_lw = check_nanmax(*worst_lw, fabs(lw[q] - ref->logw[r0 + q]) /
                                                (EPS64 * ref->lwmag[r0 + q]));
        row_t[q] = ref->targets[(r0 + q) / Br];
    }
    lpe_fwd_out o = {.argmax = am};
    g->forward(g, &o, row_t, nr, 1);
    g->get_grad(g, gr, LPE_BUF_BATCH, nr);
    g->itgis_accumulate(g);
    for (int q = 0; q < nr; q++) {
        const double w = exp(lw[q]);
        const int hit = am[q] == row_t[q];
        lpe_itgis_moments_add(&x->mom[(r0 + q) / Br], hit ? w : 0.0, w, hit);
    }
    itgis_ref_scores(x, ref, m, gr, r0, nr, Br);
    free(tok), free(am), free(row_t), free(lw), free(gr);
}

/* S of the CUDA backend against the reference recursion, on the entries the reference computed */
static double itgis_check_S(itgis_chk *x, const itgis_ref *ref, lpe_backend *g, int Br,
                            double beta) {
    const size_t n = (size_t)ref->tc * ref->NSP;
    double worst = 0;
    g->itgis_read(g, x->Sg, LPE_ITGIS_S);
    for (size_t i = 0; i < n; i++) {
        x->Sr[i] = beta * x->Sr[i] + x->Gr[i] / Br;
        x->Er[i] = beta * x->Er[i] + x->Eg[i] / Br;
        x->Gr[i] = x->Eg[i] = 0;
        if (x->Er[i] > 0) /* entries the reference computed (strided supports) */
            worst = check_nanmax(worst, fabs(x->Sg[i] - x->Sr[i]) /
                                            (x->Er[i] + 4 * EPS64 * fabs(x->Sr[i])));
    }
    return worst;
}

static void check_itgis(lpe_backend *g, const lpe_model *m, const lpe_dist *d, const char *label) {
    const int tc = 3, B = 16, rounds = 3, Blast = 9, R = g->max_batch, D = m->cfg.d_model;
    const int32_t targets[3] = {1, (int32_t)(m->cfg.d_vocab / 2), (int32_t)(m->cfg.d_vocab - 2)};
    const double temp = 0.8, beta = 0.9;
    itgis_ref ref;
    ref_init(&ref, d, targets, tc, 2024, B);
    itgis_chk x;
    const size_t n = (size_t)tc * ref.NSP;
    x.Sg = calloc(n, sizeof(double)), x.Sr = calloc(n, sizeof(double));
    x.Gr = calloc(n, sizeof(double)), x.Er = calloc(n, sizeof(double));
    x.Eg = calloc(n, sizeof(double)), x.gs = calloc((size_t)2 * D, sizeof(double));
    x.mom = calloc(tc, sizeof *x.mom);
    g->itgis_tables(g, tc + 1);
    g->itgis_reset(g, targets, tc, 2024, B);
    double worst_lw = 0, worst_S = 0;
    int bad_tok = 0;
    for (int r = 0; r < rounds; r++) {
        const int Br = r == rounds - 1 ? Blast : B;
        const double inv_T = r == 0 ? 1.0 : (1 - beta) / (temp * (1 - pow(beta, r)));
        g->itgis_read(g, x.Sg, LPE_ITGIS_S);
        ref_draw(&ref, x.Sg, r, Br, inv_T); /* the host draw from the CUDA backend's tables */
        g->itgis_round(g, r, Br, inv_T);
        for (long long r0 = 0; r0 < (long long)tc * Br; r0 += R) {
            const int nr = (int)((long long)tc * Br - r0 < R ? (long long)tc * Br - r0 : R);
            itgis_check_call(&x, &ref, g, m, r0, nr, Br, &worst_lw, &bad_tok);
        }
        g->itgis_update(g, beta);
        worst_S = check_nanmax(worst_S, itgis_check_S(&x, &ref, g, Br, beta));
    }
    lpe_itgis_moments mg[3];
    g->itgis_read(g, mg, LPE_ITGIS_MOMENTS);
    double worst_m = 0;
    int bad_count = 0;
    for (int a = 0; a < tc; a++) {
        const double *u = &mg[a].n, *v = &x.mom[a].n, tol = 8 * mg[a].n * EPS64;
        bad_count += mg[a].n != v[0] || mg[a].hits != x.mom[a].hits;
        for (int i = 1; i < 5; i++) /* mean, m2, sum_w, sum_w2 */
            worst_m = check_nanmax(worst_m, fabs(u[i] - v[i]) / (tol * fabs(v[i]) + 1e-300));
    }
    printf("  %-16s itgis: log w %.3g, S %.3g, moments %.3g of the bound; %d call(s) with other "
           "tokens\n", label, worst_lw, worst_S, worst_m, bad_tok);
    CHECK(bad_tok == 0, "%s: itgis tokens differ from the host draw in %d calls", label, bad_tok);
    CHECK(worst_lw <= 1, "%s: itgis log-weights differ by %.3g x the bound", label, worst_lw);
    CHECK(worst_S <= 1, "%s: itgis S differs by %.3g x the bound", label, worst_S);
    CHECK(bad_count == 0 && worst_m <= 1, "%s: itgis moments: %d counts differ, %.3g x the bound",
          label, bad_count, worst_m);
    g->itgis_tables(g, 0);
    free(x.Sg), free(x.Sr), free(x.Gr), free(x.Er), free(x.Eg), free(x.gs), free(x.mom);
    ref_free(&ref);
}
/* ---- end ITGIS operations (issue 10) ------------------------------------------------------- */
/* ---- walker operations (issue 10) -----------------------------------------------------------
 * The fused Metropolis-Hastings step (walkers_set / step / accum / stats / read / snapshot, and
 * gather_state carrying the rows' settings) of the CUDA backend against the CPU's, row by row,
 * from the same starts with mixed targets, energies, betas, tilts and levels:
 *   - decisions and state tokens identical, except near-ties: a pick (u < cdf[y]) or a decision
 *     (log u < log ratio) reads float32 scores that differ within the bound above (~1e-5
 *     relative here), so a row may leave the CPU's chain when its uniform falls that close to a
 *     threshold: expected ~1e-5 per row and step, allowed 1 + 2% of the rows (a wrong kernel
 *     moves almost every row off within a few steps). Such rows are left out from then on;
 *   - the score and margin of the states within the logit bound (C = 2, S_v from a CPU forward
 *     of the state; the margin: S_t + max_v S_v), MHIS's counts equal, its log-sum-exps and mean
 *     within beta times / once the largest score bound. */
static void logit_bounds(double *bs, double *bm, lpe_backend *cr, const int32_t *tok,
                         const int32_t *tg, int n, int k) {
    const lpe_model *m = cr->model;
    const int D = m->cfg.d_model, V = m->cfg.d_vocab;
    float *act = calloc((size_t)n * D, sizeof *act);
    double *S = calloc(V, sizeof *S);
    cr->load_tokens(cr, tok, n);
    lpe_fwd_out o = {.act = act};
    cr->forward(cr, &o, tg, n, 0);
    const double f = bound_factor(&m->cfg, k, 2);
    for (int q = 0; q < n; q++) {
        logit_scale(S, m, act + (size_t)q * D);
        double smax = 0;
        for (int v = 0; v < V; v++) smax = fmax(smax, S[v]);
        bs[q] = f * S[tg[q]], bm[q] = f * (S[tg[q]] + smax);
    }
    free(act), free(S);
}

typedef struct {
    int32_t *tg, *tok, *src; /* [n], [n, k] settings' target and start, gather rows */
    double *beta, *tilt, *level;
    uint8_t *energy;
    uint32_t *stream;
    uint64_t *index;
} wk_rows;

static void wk_rows_make(wk_rows *r, const lpe_dist *d, int n, int V, int k) {
    static const double betas[4] = {0.0, 0.5, 1.5, 3.0}, tilts[3] = {0.0, 0.7, 1.5};
    static const double levels[4] = {-INFINITY, -8.0, -3.0, -1.0};
    r->tg = calloc(n, 4), r->tok = calloc((size_t)n * k, 4), r->src = calloc(n, 4);
    r->beta = calloc(n, 8), r->tilt = calloc(n, 8), r->level = calloc(n, 8);
    r->energy = calloc(n, 1), r->stream = calloc(n, 4), r->index = calloc(n, 8);
    lpe_dist_sample(r->tok, d, 5, lpe_stream(LPE_STREAM_TEST, 31), 0, n);
    for (int q = 0; q < n; q++) {
        r->tg[q] = (int32_t)((q * 5 + 1) % V);
        r->beta[q] = betas[q % 4], r->tilt[q] = tilts[q % 3], r->level[q] = levels[(q / 4) % 4];
        r->energy[q] = (uint8_t)(q % 2 ? LPE_ENERGY_MARGIN : LPE_ENERGY_SCORE);
        r->stream[q] = lpe_stream(LPE_STREAM_TEST, (uint32_t)(q % 3)), r->index[q] = (uint64_t)q;
        r->src[q] = (int32_t)((q * 7 + 3) % n);
    }
}

static void wk_rows_free(wk_rows *r) {
    free(r->tg), free(r->tok), free(r->src), free(r->beta), free(r->tilt), free(r->level);
    free(r->energy), free(r->stream), free(r->index);
}

/* both backends gather rows r->src (settings follow), then take new indices by walkers_set
 * without tokens (as ams's copies); r and the left-out flags follow the rows */
static void wk_regather(lpe_backend *be[2], wk_rows *r, uint8_t *off, int n) {
    for (int i = 0; i < 2; i++) be[i]->gather_state(be[i], r->src, n);
    int32_t *t2 = calloc(n, 4);
    double *b2 = calloc(n, 8), *l2 = calloc(n, 8), *u2 = calloc(n, 8);
    uint8_t *e2 = calloc(n, 1), *o2 = calloc(n, 1);
    uint32_t *s2 = calloc(n, 4);
    for (int q = 0; q < n; q++) {
        const int s0 = r->src[q];
        t2[q] = r->tg[s0], b2[q] = r->beta[s0], l2[q] = r->level[s0], u2[q] = r->tilt[s0];
        e2[q] = r->energy[s0], s2[q] = r->stream[s0], o2[q] = off[s0];
        r->index[q] = (uint64_t)(1000 + q);
    }
    lpe_walker_rows w2 = {t2, b2, e2, u2, l2, s2, r->index, NULL};
    for (int i = 0; i < 2; i++) be[i]->walkers_set(be[i], &w2, n);
    memcpy(r->tg, t2, n * 4), memcpy(r->beta, b2, n * 8), memcpy(r->level, l2, n * 8);
    memcpy(r->tilt, u2, n * 8), memcpy(r->energy, e2, n), memcpy(r->stream, s2, n * 4);
    memcpy(off, o2, n);
    free(t2), free(b2), free(l2), free(u2), free(e2), free(s2), free(o2);
}

static void check_walkers(lpe_backend *g, lpe_backend *c, const lpe_dist *d, int n, int k,
                          const char *label) {
    const int V = g->model->cfg.d_vocab, S = quick ? 12 : 40;
    lpe_backend *cr = lpe_backend_create("cpu", g->model, n, k, 0); /* bounds' forwards */
    wk_rows r;
    wk_rows_make(&r, d, n, V, k);
    lpe_walker_rows wr = {r.tg, r.beta, r.energy, r.tilt, r.level, r.stream, r.index, r.tok};
    lpe_backend *be[2] = {c, g};
    float *sc[2], *mg[2];
    uint8_t *hit[2], *acc[2], *off = calloc(n, 1);
    int32_t *tok[2];
    lpe_walker_stats *ws[2];
    for (int i = 0; i < 2; i++) {
        sc[i] = calloc(n, 4), mg[i] = calloc(n, 4), hit[i] = calloc(n, 1), acc[i] = calloc(n, 1);
        tok[i] = calloc((size_t)n * k, 4), ws[i] = calloc(n, sizeof *ws[i]);
        be[i]->walkers_set(be[i], &wr, n);
    }
    double *bs = calloc(n, 8), *bm = calloc(n, 8), worst = 0, tol_s = 0;
    int n_off = 0, moved = 0, snaps_bad = 0, compared = 0;
    for (int st = 0; st <= S; st++) {
        if (st > 0) {
            if (st == S / 2) wk_regather(be, &r, off, n); /* resampling, as ams */
            for (int i = 0; i < 2; i++) {
                be[i]->walkers_step(be[i], st % 4 == 3 ? n / 2 + 1 : n, 17, st);
                be[i]->walkers_accum(be[i], n, st <= S / 2);
            }
        }
        for (int i = 0; i < 2; i++) {
            lpe_walker_view v = {sc[i], mg[i], hit[i], acc[i]};
            be[i]->walkers_read(be[i], &v, n);
            be[i]->get_tokens(be[i], tok[i], LPE_BUF_STATE, n);
        }
        for (int q = 0; q < n; q++) {
            if (off[q]) continue;
            if (acc[0][q] != acc[1][q] || memcmp(tok[0] + (size_t)q * k, tok[1] + (size_t)q * k, 4 * k))
                off[q] = 1, n_off++;
            moved += acc[0][q] && st > 0;
        }
        if (st % 10 == 0 || st == S) { /* scores and margins of the rows still together */
            logit_bounds(bs, bm, cr, tok[0], r.tg, n, k);
            for (int q = 0; q < n; q++) {
                if (off[q]) continue;
                compared++;
                tol_s = fmax(tol_s, bs[q]);
                worst = check_nanmax(worst, fabs(sc[0][q] - sc[1][q]) / bs[q]);
                worst = check_nanmax(worst, fabs(mg[0][q] - mg[1][q]) / bm[q]);
            }
        }
        if (st % 9 == 4) { /* snapshots: the states just read */
            lpe_walker_snap sn;
            g->walkers_snapshot(g, n);
            g->walkers_snapshot_get(g, &sn);
            snaps_bad += sn.rows != n || memcmp(sn.tok, tok[1], (size_t)n * k * 4) ||
                         memcmp(sn.score, sc[1], (size_t)n * 4) || memcmp(sn.accept, acc[1], n);
        }
    }
    int stats_bad = 0;
    for (int i = 0; i < 2; i++) be[i]->walkers_stats(be[i], ws[i], n);
    for (int q = 0; q < n; q++) {
        if (off[q]) continue;
        const lpe_walker_stats *a = &ws[0][q], *b = &ws[1][q];
        /* beta <= 3 times the score bound, x3 for states between the checkpoints */
        const double tl = 3 * 3.0 * tol_s + 1e-12;
        stats_bad += a->accepts != b->accepts || a->proposals != b->proposals || a->hits != b->hits ||
                     a->all.n != b->all.n || a->first.n != b->first.n ||
                     !(fabs(a->all.mean - b->all.mean) <= tol_s * 1.001 + 1e-12) ||
                     !((a->log_b == b->log_b) || fabs(a->log_b - b->log_b) <= tl) ||
                     !((a->log_a == b->log_a) || fabs(a->log_a - b->log_a) <= tl);
    }
    printf("  %-16s walkers: %d rows x %d steps, %d accepted moves; %d row(s) left the CPU's chain "
           "(near-ties); scores/margins at %.3g of their bound over %d row checks\n",
           label, n, S, moved, n_off, worst, compared);
    CHECK(n_off <= 1 + n / 50, "%s: %d of %d walker rows left the CPU's chain", label, n_off, n);
    CHECK(moved > n * S / 20, "%s: %d accepted moves in %d row-steps: the check moves too little",
          label, moved, n * S);
    CHECK(worst <= 1.0, "%s: walker scores or margins at %.3g of their bound", label, worst);
    CHECK(snaps_bad == 0, "%s: %d snapshots differ from the states read", label, snaps_bad);
    CHECK(stats_bad == 0, "%s: %d walkers' statistics differ", label, stats_bad);
    for (int i = 0; i < 2; i++) free(sc[i]), free(mg[i]), free(hit[i]), free(acc[i]), free(tok[i]), free(ws[i]);
    free(off), free(bs), free(bm);
    wk_rows_free(&r);
    lpe_backend_destroy(cr);
}
/* ---- end walker operations ---- */

typedef struct {
    const char *label;
    lpe_model_config cfg;
    int B, k, truth_n;
} shape;

static void test_shape(const shape *s) {
    lpe_model m;
    lpe_model_init_random(&m, &s->cfg, 5);
    perturb(&m);
    int V = s->cfg.d_vocab, B = s->B, k = s->k;
    int32_t *tok = calloc((size_t)B * k, sizeof *tok), *tgt = calloc(B, sizeof *tgt);
    random_tokens(tok, B * k, V, 1);
    random_tokens(tgt, B, V, 2);
    int flags = LPE_BE_GRAD | LPE_BE_STATE;
    lpe_backend *c = lpe_backend_create("cpu", &m, B, k, flags);
    lpe_backend *g = lpe_backend_create("cuda", &m, B + 5, k, flags);
    CHECK(!strcmp(g->name, "cuda") && g->device[0], "device string '%s'", g->device);
    fwd_res rc, rg;
    run_forward(&rc, c, tok, tgt, B, k);
    run_forward(&rg, g, tok, tgt, B, k);
    compare_forward(&rc, &rg, &m, tgt, B, k, s->label);
    /* a second forward on the same batch gives the same floats (deterministic kernels) */
    fwd_res r2;
    run_forward(&r2, g, tok, tgt, B, k);
    CHECK(!memcmp(r2.lg, rg.lg, (size_t)B * V * sizeof *r2.lg) &&
              !memcmp(r2.gr, rg.gr, (size_t)B * k * s->cfg.d_model * sizeof *r2.gr),
          "%s: two forwards of one batch differ", s->label);
    lpe_dist d;
    make_dist(&d, V, k, V > 2048);
    g->use_dist(g, &d);
    c->use_dist(c, &d);
    free_res(&r2);
    run_forward(&r2, g, tok, tgt, B, k); /* the batch gradient again, after use_dist */
    check_scores(g, &m, &d, r2.gr, B, k, s->label);
    check_sampling_and_state(g, c, &d, B, k, s->label);
    check_walkers(g, c, &d, B, k, s->label); /* walker operations (issue 10) */
    if (s->truth_n) check_truth(g, c, &d, s->truth_n, s->label);
    check_itgis(g, &m, &d, s->label); /* ITGIS operations (issue 10) */
    if (V <= 2048) check_logprob_grad("cuda", &m, s->label); /* grad_of = LOGPROB (issue 12) */
    free_res(&rc), free_res(&rg), free_res(&r2);
    lpe_dist_free(&d);
    lpe_backend_destroy(g);
    lpe_backend_destroy(c);
    free(tok), free(tgt);
    lpe_model_free(&m);
}

/* ---- exit codes, in a fresh process ---------------------------------------------------------- */

static lpe_model_config small = {.n_layers = 2, .d_model = 16, .n_heads = 2, .d_head = 8,
                                 .d_mlp = 32, .d_vocab = 41, .n_ctx = 8, .act = LPE_ACT_GELU,
                                 .ln_eps = 1e-5};

static void bad_token(void) {
    lpe_model m;
    lpe_model_init_random(&m, &small, 1);
    lpe_backend *be = lpe_backend_create("cuda", &m, 2, 3, 0);
    int32_t t[6] = {0, 1, 2, 3, 41, 5};
    be->load_tokens(be, t, 2);
}

static void nan_model(void) {
    lpe_model m;
    lpe_model_init_random(&m, &small, 1);
    m.W_U[5] = NAN;
    lpe_backend *be = lpe_backend_create("cuda", &m, 2, 3, 0);
    int32_t t[6] = {0, 1, 2, 3, 4, 5}, am[2];
    be->load_tokens(be, t, 2);
    lpe_fwd_out o = {.argmax = am};
    be->forward(be, &o, NULL, 2, 0);
}

/* exit status of `self --child name` (a new process: CUDA contexts do not survive fork) */
static int child_status(const char *self, const char *name) {
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(99);
        execl(self, self, "--child", name, (char *)NULL);
        _exit(98);
    }
    int st;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- QLD pair count, GLD target logits, argmax histogram (qld-dev: issues 10 and 9) ----------
 *
 * qld_pairs: the fused kernel (kernels/cuda_qld.cu) against the host reference
 * lpe_qld_count_pairs and against definitions, counts compared exactly:
 *   - a dyadic job: activations, W_U, b_U, A, Y, y0 and the sorted a are small multiples of
 *     powers of two and the slopes e_v (rinv = 1 / e_v) powers of two, so every product and sum
 *     of both computations is exact in float32 / float64 whatever its order; the counts must
 *     be equal, and equal to the pair-by-pair definition (t is the argmax of l_j + u e with
 *     ties to t: every margin (l_t - l_v) + u e_v >= 0, u = a - s_j), evaluated exactly. Many
 *     samples fall exactly on interval ends (counted: the intervals are closed), some slopes
 *     are 0 (with violated and satisfied zero-slope constraints), some targets are skipped,
 *     and n, D, V, T are not multiples of the kernel's tiles.
 *   - random problems prepared by lpe_qld_prepare, both variants, every target: equal to the
 *     host count and to the O(n^2 V D) definition lpe_qld_count_brute (float64). The kernel's
 *     logits differ from OpenBLAS's in summation order only (cuda_qld.cu), so a count could
 *     differ only if a sample lay within a few float32 ulps of a bound: with these seeds none
 *     does, as test_qld's host count against the same definition.
 * target_logits: against the CPU backend's (float64 dgemm), within the bound of
 *   kernels/cuda_unembed.cu: 2 (D + 1) 2^-53 (sum_d |act_d W_U[d, t]| + |b_U[t]|).
 * argmax histogram: after forwards on both backends, add over row ranges and take, against
 *   counts of the forward's own argmax output on the host; take leaves zeros. */

static uint64_t qctr;
static uint32_t qrand(uint32_t below) { /* fixed-seed Philox draws */
    uint32_t w[4];
    lpe_rng4(w, 2024, lpe_stream(LPE_STREAM_TEST, 40), qctr++, 0);
    return lpe_below(w[0], below);
}
static double qgauss(void) {
    uint32_t w[4];
    lpe_rng4(w, 2024, lpe_stream(LPE_STREAM_TEST, 41), qctr++, 0);
    double u = lpe_u01_53(w[0], w[1]), v = lpe_u01_53(w[2], w[3]);
    return sqrt(-2 * log(1 - u)) * cos(2 * M_PI * v);
}
static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* a model whose unembedding only matters: d_model D, vocabulary V, with b_U */
static void unembed_model(lpe_model *m, int D, int V) {
    lpe_model_config cfg = {.n_layers = 1, .d_model = D, .n_heads = 1, .d_head = D, .d_mlp = 4,
                            .d_vocab = V, .n_ctx = 4, .act = LPE_ACT_GELU, .ln_eps = 1e-5,
                            .has_b_U = 1};
    lpe_model_init_random(m, &cfg, 11);
}

/* The job-level definition, exact for dyadic jobs: pairs (j, a) with every margin >= 0. L [n, V]
 * the rows' logits (float64, exact), s [n] the rows' shifts. */
static int64_t dyadic_definition(const lpe_qld_pairs *job, int i, const double *L, const double *s) {
    const int n = job->n, V = job->V, t = job->targets[i];
    const float *ri = job->rinv + (size_t)i * V;
    int64_t cnt = 0;
    for (int j = 0; j < n; j++)
        for (int q = 0; q < n; q++) {
            double u = job->asort[(size_t)i * n + q] - s[j];
            int ok = 1;
            for (int v = 0; v < V && ok; v++) {
                if (v == t) continue;
                double e = ri[v] != 0 ? 1.0 / ri[v] : 0.0; /* rinv are powers of two: exact */
                ok = (L[(size_t)j * V + t] - L[(size_t)j * V + v]) + u * e >= 0;
            }
            cnt += ok;
        }
    return cnt;
}

static void qld_dyadic(int variant) {
    enum { n = 70, D = 5, V = 70, T = 37 }; /* 3 row blocks, 2 column tiles, 2 target groups */
    lpe_model m;
    unembed_model(&m, D, V);
    for (int q = 0; q < D * V; q++) m.W_U[q] = (float)((int)qrand(9) - 4) / 4;
    for (int v = 0; v < V; v++) m.b_U[v] = (float)((int)qrand(9) - 4) / 8;
    static float act[n * D];
    static int32_t targets[T];
    for (int q = 0; q < n * D; q++) act[q] = (float)((int)qrand(7) - 3) / 2;
    lpe_qld_pairs job = {.variant = variant, .T = T, .n = n, .D = D, .V = V, .block_rows = 32,
                         .act = act, .targets = targets};
    job.A = calloc((size_t)D * D, sizeof *job.A);
    job.rinv = calloc((size_t)T * V, sizeof *job.rinv);
    job.zero_e = calloc(T, sizeof *job.zero_e);
    job.n_zero = calloc(T, sizeof *job.n_zero);
    job.asort = calloc((size_t)T * n, sizeof *job.asort);
    job.Y = calloc((size_t)T * D, sizeof *job.Y);
    job.y0 = calloc(T, sizeof *job.y0);
    job.skip = calloc(T, sizeof *job.skip);
    for (int r = 0; r < D; r++) /* lower, unit diagonal, halves below */
        for (int q = 0; q <= r; q++) job.A[r * D + q] = r == q ? 1.0 : ((int)qrand(3) - 1) * 0.5;
    for (int i = 0; i < T; i++) {
        int t = targets[i] = (int32_t)((i * 7) % V);
        job.skip[i] = i % 11 == 5;
        job.zero_e[i] = calloc(V, sizeof(int32_t));
        for (int v = 0; v < V; v++) {
            float *r = &job.rinv[(size_t)i * V + v];
            int z = v == t || qrand(60) == 0;
            *r = z ? 0.0f : (qrand(2) ? 1.0f : -1.0f) * ldexpf(1.0f, (int)qrand(5) - 2);
            if (z && v != t) job.zero_e[i][job.n_zero[i]++] = v;
        }
        for (int k = 0; k < D; k++) job.Y[i * D + k] = ((int)qrand(9) - 4) / 4.0;
        job.y0[i] = ((int)qrand(9) - 4) / 8.0;
        for (int q = 0; q < n; q++) job.asort[(size_t)i * n + q] = ((int)qrand(49) - 24) / 8.0;
        qsort(job.asort + (size_t)i * n, n, sizeof(double), cmp_dbl);
    }
    /* exact logits and shifts of the rows, for the definition and the tie count */
    static double X[n * D], L[n * V], s[T][n];
    for (int j = 0; j < n; j++)
        for (int k = 0; k < D; k++) {
            double x = 0;
            if (variant == LPE_QLD_PAPER) x = act[j * D + k];
            else for (int q = 0; q <= k; q++) x += act[j * D + q] * job.A[k * D + q];
            X[j * D + k] = x;
        }
    for (int j = 0; j < n; j++)
        for (int v = 0; v < V; v++) {
            double l = m.b_U[v];
            for (int k = 0; k < D; k++) l += X[j * D + k] * m.W_U[k * V + v];
            L[j * V + v] = l;
        }
    for (int i = 0; i < T; i++)
        for (int j = 0; j < n; j++) {
            double y = -job.y0[i];
            for (int k = 0; k < D; k++) y += act[j * D + k] * job.Y[i * D + k];
            s[i][j] = variant == LPE_QLD_PAPER ? y : 0;
        }
    int64_t host[T], dev[T], ties = 0, total = 0, empty_zero = 0;
    lpe_qld_count_pairs(host, &job, m.W_U, m.b_U);
    lpe_backend *g = lpe_backend_create("cuda", &m, 4, 2, 0);
    g->qld_pairs(g, dev, &job);
    for (int i = 0; i < T; i++) {
        int64_t want = job.skip[i] ? 0 : dyadic_definition(&job, i, L, s[i]);
        CHECK(dev[i] == host[i] && dev[i] == want,
              "dyadic variant %d target %d: device %lld, host %lld, definition %lld", variant, i,
              (long long)dev[i], (long long)host[i], (long long)want);
        total += want;
        /* samples exactly on a bound: the closed-interval rule is exercised */
        float lo[n], hi[n], Lf[n * V];
        for (int q = 0; q < n * V; q++) Lf[q] = (float)L[q];
        lpe_qld_row_bounds(lo, hi, Lf, V, job.rinv + (size_t)i * V, job.zero_e[i], job.n_zero[i],
                           targets[i], n, V);
        for (int j = 0; j < n; j++) {
            empty_zero += lo[j] == INFINITY && hi[j] == -INFINITY;
            for (int q = 0; q < n; q++) {
                double a = job.asort[(size_t)i * n + q];
                ties += !job.skip[i] && lo[j] <= hi[j] && (a == s[i][j] + lo[j] || a == s[i][j] + hi[j]);
            }
        }
    }
    printf("  qld dyadic (variant %d): %lld pairs, %lld samples exactly on an interval end, %lld "
           "rows emptied by a zero slope\n", variant, (long long)total, (long long)ties,
           (long long)empty_zero);
    CHECK(total > 0 && ties > 0 && empty_zero > 0, "dyadic job too easy: %lld %lld %lld",
          (long long)total, (long long)ties, (long long)empty_zero);
    lpe_backend_destroy(g);
    lpe_qld_pairs_free(&job);
    lpe_model_free(&m);
}

/* random problems from lpe_qld_prepare: device = host = definition, every target */
static void qld_random(int variant, int n, int D, int V, int reps, int n_brute) {
    lpe_model m;
    unembed_model(&m, D, V);
    float *act = calloc((size_t)n * D, sizeof *act);
    int32_t *targets = calloc(V, sizeof *targets);
    int64_t *host = calloc(V, sizeof *host), *dev = calloc(V, sizeof *dev);
    double *z = calloc((size_t)n * D, sizeof *z), *P = calloc((size_t)V * D, sizeof *P);
    double *c = calloc(V, sizeof *c), *dirs = calloc((size_t)V * D, sizeof *dirs);
    double *mu = calloc(D, sizeof *mu), *A = calloc((size_t)D * D, sizeof *A);
    lpe_qld_dir *info = calloc(V, sizeof *info);
    int64_t total = 0, n_mid = 0;
    for (int rep = 0; rep < reps; rep++) {
        for (int q = 0; q < n * D; q++) act[q] = (float)(qgauss() * (1 + q % D) + 0.5);
        for (int q = 0; q < D * V; q++) m.W_U[q] = (float)qgauss();
        for (int v = 0; v < V; v++) m.b_U[v] = (float)(0.5 * qgauss()), targets[v] = v;
        lpe_backend *g = lpe_backend_create("cuda", &m, 4, 2, 0);
        lpe_qld_opts o;
        lpe_qld_opts_default(&o);
        o.variant = variant, o.block_rows = 20, o.seed = 99;
        lpe_qld_pairs job;
        lpe_qld_prepare(&job, info, dirs, act, m.W_U, m.b_U, targets, V, n, D, V, &o);
        lpe_qld_count_pairs(host, &job, m.W_U, m.b_U);
        g->qld_pairs(g, dev, &job);
        lpe_qld_whiten(mu, A, act, n, D, o.ridge);
        lpe_qld_rows(z, act, mu, A, n, D, variant);
        lpe_qld_pullback(P, c, m.W_U, m.b_U, mu, A, D, V);
        for (int t = 0; t < V; t++) {
            CHECK(dev[t] == host[t], "variant %d n %d rep %d target %d: device %lld, host %lld",
                  variant, n, rep, t, (long long)dev[t], (long long)host[t]);
            if (t < n_brute) {
                int64_t want = lpe_qld_count_brute(z, dirs + (size_t)t * D, P, c, t, n, V, D, variant);
                CHECK(dev[t] == want, "variant %d n %d rep %d target %d: device %lld, definition %lld",
                      variant, n, rep, t, (long long)dev[t], (long long)want);
            }
            total += dev[t];
            n_mid += dev[t] > 0 && dev[t] < (int64_t)n * n;
        }
        lpe_qld_pairs_free(&job);
        lpe_backend_destroy(g);
    }
    printf("  qld random (variant %d, n %d, D %d, V %d): %lld pairs, %lld nontrivial targets\n",
           variant, n, D, V, (long long)total, (long long)n_mid);
    CHECK(n_mid >= reps, "variant %d: only %lld nontrivial targets", variant, (long long)n_mid);
    free(act), free(targets), free(host), free(dev), free(z), free(P), free(c), free(dirs);
    free(mu), free(A), free(info);
    lpe_model_free(&m);
}

static void gld_target_logits(long long n, int D, int V, int T) {
    lpe_model m;
    unembed_model(&m, D, V);
    for (int v = 0; v < V; v++) m.b_U[v] = (float)(0.3 * qgauss());
    float *act = calloc((size_t)n * D, sizeof *act);
    for (size_t q = 0; q < (size_t)n * D; q++) act[q] = (float)qgauss();
    int32_t *tg = calloc(T, sizeof *tg);
    for (int t = 0; t < T; t++) tg[t] = (int32_t)qrand((uint32_t)V);
    tg[0] = V - 1;
    double *oc = calloc((size_t)n * T, sizeof *oc), *og = calloc((size_t)n * T, sizeof *og);
    lpe_backend *c = lpe_backend_create("cpu", &m, 4, 2, 0);
    lpe_backend *g = lpe_backend_create("cuda", &m, 4, 2, 0);
    c->target_logits(c, oc, act, tg, n, T);
    for (size_t q = 0; q < (size_t)n * T; q++) og[q] = NAN; /* every entry must be written */
    g->target_logits(g, og, act, tg, n, T);
    double worst = 0; /* largest error as a fraction of its bound (NaN-keeping) */
    for (long long i = 0; i < n; i++)
        for (int t = 0; t < T; t++) {
            double S = fabs(m.b_U[tg[t]]);
            for (int d = 0; d < D; d++)
                S += fabs((double)act[(size_t)i * D + d] * m.W_U[(size_t)d * V + tg[t]]);
            double bound = 2.0 * (D + 1) * 0x1p-53 * S + 1e-300;
            worst = check_nanmax(worst, fabs(og[i * T + t] - oc[i * T + t]) / bound);
        }
    printf("  target_logits (n %lld, D %d, T %d): largest error %.3g of its bound\n", n, D, T, worst);
    CHECK(worst <= 1, "target_logits: error %.3g of the bound (or NaN)", worst);
    lpe_backend_destroy(g), lpe_backend_destroy(c);
    free(act), free(tg), free(oc), free(og);
    lpe_model_free(&m);
}

/* both backends: histogram of row ranges of one forward = counts of its argmax output */
static void argmax_hist(void) {
    lpe_model m;
    lpe_model_init_random(&m, &small, 3);
    const int B = 37, k = 5, V = small.d_vocab;
    int32_t *tok = calloc((size_t)B * k, sizeof *tok), am[37];
    random_tokens(tok, B * k, V, 9);
    uint64_t *h = calloc(V, sizeof *h), *want = calloc(V, sizeof *want);
    const char *names[2] = {"cpu", "cuda"};
    for (int w = 0; w < 2; w++) {
        lpe_backend *be = lpe_backend_create(names[w], &m, B, k, 0);
        memset(want, 0, V * sizeof *want);
        for (int rep = 0; rep < 2; rep++) { /* two forwards accumulate */
            be->load_tokens(be, tok + (size_t)rep * 3 * k, B - 3 * rep);
            lpe_fwd_out o = {.argmax = am};
            be->forward(be, &o, NULL, B - 3 * rep, 0);
            be->argmax_hist_add(be, 0, 10);
            be->argmax_hist_add(be, 10, B - 3 * rep);
            be->argmax_hist_add(be, 4, 7); /* rows 4..6 twice */
            for (int b = 0; b < B - 3 * rep; b++) want[am[b]] += 1 + (b >= 4 && b < 7);
        }
        for (int v = 0; v < V; v++) h[v] = 1000; /* take adds */
        be->argmax_hist_take(be, h);
        int same = 1;
        for (int v = 0; v < V; v++) same &= h[v] == 1000 + want[v];
        CHECK(same, "%s: argmax histogram differs from the argmax output's counts", names[w]);
        memset(h, 0, V * sizeof *h);
        be->argmax_hist_take(be, h);
        int zero = 1;
        for (int v = 0; v < V; v++) zero &= h[v] == 0;
        CHECK(zero, "%s: take did not reset the histogram", names[w]);
        lpe_backend_destroy(be);
    }
    free(tok), free(h), free(want);
    lpe_model_free(&m);
}

/* `test_cuda_backend --bench-unembed [n]` (tools/gpu_check.sh): qld_pairs and target_logits at
 * gelu-1l's unembedding shape (D 512, V 48262) on both backends, n activation rows (default
 * 2^14), 8 targets (argmax tokens of the first rows): the seconds of each, and the results
 * compared (counts: equal unless a sample lies within float32 rounding of a bound, see
 * kernels/cuda_qld.cu; exit 1 beyond the allowance below). Prints "bench-unembed: ..." lines. */
static int bench_unembed(long long n) {
    enum { D = 512, V = 48262, T = 8 };
    lpe_model m;
    unembed_model(&m, D, V);
    float *act = calloc((size_t)n * D, sizeof *act);
    for (size_t q = 0; q < (size_t)n * D; q++) act[q] = (float)(qgauss() * (1 + q % 7) * 0.3);
    int32_t tg[T]; /* the argmax of rows 0, 1, ... (distinct): each target has some pairs */
    for (int t = 0, j = 0; t < T && j < n; j++) {
        int best = 0;
        double bl = -INFINITY;
        for (int v = 0; v < V; v++) {
            double l = m.b_U[v];
            for (int d = 0; d < D; d++) l += (double)act[(size_t)j * D + d] * m.W_U[(size_t)d * V + v];
            if (l > bl) bl = l, best = v;
        }
        int dup = 0;
        for (int q = 0; q < t; q++) dup |= tg[q] == best;
        if (!dup) tg[t++] = best;
        if (j == n - 1) while (t < T) tg[t] = (int32_t)(97 + 6007 * t), t++;
    }
    lpe_backend *c = lpe_backend_create("cpu", &m, 4, 2, 0);
    lpe_backend *g = lpe_backend_create("cuda", &m, 4, 2, 0);
    lpe_qld_opts o;
    lpe_qld_opts_default(&o);
    lpe_qld_pairs job;
    lpe_qld_dir info[T];
    double t0 = lpe_now();
    lpe_qld_prepare(&job, info, NULL, act, m.W_U, m.b_U, tg, T, (int)n, D, V, &o);
    double t1 = lpe_now();
    int64_t hc[T], dc[T];
    c->qld_pairs(c, hc, &job);
    double t2 = lpe_now();
    g->qld_pairs(g, dc, &job);
    double t3 = lpe_now();
    g->qld_pairs(g, dc, &job); /* again: without the first call's start-up */
    double t4 = lpe_now();
    /* a count moves only by samples within float32 rounding of a bound: qld_core.c's precision
     * note puts that at ~1e-5 relative; allowed: 1e-4 relative plus 16 pairs */
    int ndiff = 0, nbad = 0;
    long long maxdiff = 0;
    for (int t = 0; t < T; t++) {
        long long d = (long long)(dc[t] > hc[t] ? dc[t] - hc[t] : hc[t] - dc[t]);
        ndiff += d != 0;
        nbad += (double)d > 16 + 1e-4 * (double)hc[t];
        if (d > maxdiff) maxdiff = d;
        printf("bench-unembed: qld target %d: count device %lld host %lld\n", tg[t],
               (long long)dc[t], (long long)hc[t]);
    }
    printf("bench-unembed: qld_pairs n %lld D %d V %d T %d: prepare %.2f s (host), host count "
           "%.2f s, device %.3f s (first call %.3f s); %d target(s) differ, by at most %lld\n",
           n, D, V, T, t1 - t0, t2 - t1, t4 - t3, t3 - t2, ndiff, maxdiff);
    double *oc = calloc((size_t)n * T, sizeof *oc), *og = calloc((size_t)n * T, sizeof *og);
    t0 = lpe_now();
    c->target_logits(c, oc, act, tg, n, T);
    t1 = lpe_now();
    g->target_logits(g, og, act, tg, n, T);
    t2 = lpe_now();
    double worst = 0; /* as a fraction of the bound of kernels/cuda_unembed.cu */
    for (long long i = 0; i < n; i++)
        for (int t = 0; t < T; t++) {
            double S = fabs(m.b_U[tg[t]]);
            for (int d = 0; d < D; d++)
                S += fabs((double)act[(size_t)i * D + d] * m.W_U[(size_t)d * V + tg[t]]);
            double q = fabs(og[i * T + t] - oc[i * T + t]) / (2.0 * (D + 1) * 0x1p-53 * S + 1e-300);
            worst = check_nanmax(worst, q);
        }
    printf("bench-unembed: target_logits n %lld T %d: host %.3f s, device %.3f s, largest "
           "difference %.2g of its bound\n", n, T, t1 - t0, t2 - t1, worst);
    lpe_qld_pairs_free(&job);
    lpe_backend_destroy(g), lpe_backend_destroy(c);
    free(act), free(oc), free(og);
    lpe_model_free(&m);
    /* a few near-boundary samples may move; more means a real difference */
    return nbad == 0 && worst <= 1 ? 0 : 1;
}

static void test_unembed_ops(void) {
    qld_dyadic(LPE_QLD_PAPER);
    qld_dyadic(LPE_QLD_ARC);
    qld_random(LPE_QLD_PAPER, 48, 3, 9, 4, 9);
    qld_random(LPE_QLD_ARC, 48, 3, 9, 4, 9);
    qld_random(LPE_QLD_PAPER, quick ? 100 : 300, 16, 70, 1, 3); /* 3 target groups, partial tiles */
    gld_target_logits(quick ? 2000 : 70000, 24, 53, 5);      /* 70000: two chunks of 65536 */
    argmax_hist();
}
/* ---- end qld-dev block ---- */

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--child")) {
        if (!strcmp(argv[2], "bad_token")) bad_token();
        if (!strcmp(argv[2], "nan_model")) nan_model();
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "--bench-unembed")) { /* qld-dev: tools/gpu_check.sh */
        if (!lpe_backend_available("cuda")) return printf("SKIP: no CUDA device\n"), 0;
        return bench_unembed(argc >= 3 ? atoll(argv[2]) : 1 << 14);
    }
    if (!lpe_backend_available("cuda")) {
#ifdef LPE_HAVE_CUDA
        printf("SKIP: no CUDA device (this build has the CUDA backend; cudaGetDeviceCount found "
               "no usable device)\n");
#else
        printf("SKIP: no CUDA device (this build has no CUDA backend: nvcc was not found)\n");
#endif
        return 0;
    }
    const char *q = getenv("LPE_CUDA_TEST_QUICK");
    quick = q && *q && strcmp(q, "0");
    CHECK(child_status(argv[0], "bad_token") == 2, "a token id >= V must exit 2");
    CHECK(child_status(argv[0], "nan_model") == 1, "non-finite logits must exit 1");

    shape shapes[] = {
        {"2l-gelu", small, 37, 6, 20000},
        {"1l-gelu_new-bU",
         {.n_layers = 1, .d_model = 24, .n_heads = 3, .d_head = 8, .d_mlp = 40, .d_vocab = 53,
          .n_ctx = 8, .act = LPE_ACT_GELU_NEW, .ln_eps = 1e-5, .has_b_U = 1},
         29, 5, 0},
        {"3l-relu-dh3",
         {.n_layers = 3, .d_model = 12, .n_heads = 4, .d_head = 3, .d_mlp = 20, .d_vocab = 29,
          .n_ctx = 6, .act = LPE_ACT_RELU, .ln_eps = 1e-5},
         33, 6, 0},
        {"2l-attn-only",
         {.n_layers = 2, .d_model = 16, .n_heads = 2, .d_head = 8, .d_mlp = 1, .d_vocab = 37,
          .n_ctx = 6, .act = LPE_ACT_GELU, .ln_eps = 1e-5, .attn_only = 1},
         17, 6, 0},
        {"2l-k1", small, 9, 1, 0},
        {"2l-d128-k33",
         {.n_layers = 2, .d_model = 128, .n_heads = 4, .d_head = 32, .d_mlp = 512, .d_vocab = 3001,
          .n_ctx = 40, .act = LPE_ACT_GELU, .ln_eps = 1e-5},
         64, 33, 0},
        /* gelu-1l's shape (d_vocab 48262: 24 score tiles) at a small batch */
        {"gelu-1l-shape",
         {.n_layers = 1, .d_model = 512, .n_heads = 8, .d_head = 64, .d_mlp = 2048,
          .d_vocab = 48262, .n_ctx = 1024, .act = LPE_ACT_GELU, .ln_eps = 1e-5},
         8, 33, 0},
    };
    int n = quick ? 5 : (int)(sizeof shapes / sizeof *shapes);
    if (quick) shapes[0].truth_n = 2000; /* under compute-sanitizer every launch is slow */
    for (int i = 0; i < n; i++) test_shape(&shapes[i]);
    test_unembed_ops(); /* qld-dev: qld_pairs, target_logits, argmax histogram */

    /* batch sizing: the size table grows with the batch; the default budget fits gelu-1l */
    lpe_model_config g1 = shapes[n - 1].cfg;
    int flags = LPE_BE_GRAD | LPE_BE_STATE;
    int nb = lpe_backend_batch_for_budget("cuda", &g1, 33, 0, 0);
    printf("  default batch for gelu-1l (k 33, forward only): %d rows\n", nb);
    CHECK(nb >= 4096 || quick, "default CUDA budget fits only %d rows of gelu-1l", nb);
    CHECK(lpe_backend_batch_for_budget("cuda", &g1, 33, flags, 1e9) <
              lpe_backend_batch_for_budget("cuda", &g1, 33, 0, 1e9),
          "a forward-only workspace must fit more rows");
    return check_summary("test_cuda_backend");
}
