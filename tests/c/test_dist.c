/* test_dist.c: distributions: normalisation, alias tables (exactly and by sampling), the Philox
 * sampling contract, determinism across batch splits, enumeration, log p(x), sha256, save/load.
 *
 * Statistical checks use fixed seeds and bounds of 5 standard errors per cell (a correct
 * sampler fails one of the ~100 cells with probability < 1e-4) plus a chi-square bound of
 * df + 6 sqrt(2 df) (about 6 standard deviations of the chi-square statistic).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "lpe/dist.h"
#include "lpe/philox.h"

/* Factors: 0 = constant {5}; 1 = 6 tokens with unnormalised weights and one zero; 2 = 3 tokens.
 * Positions: 0 -> f0, 1 -> f1, 2 -> f2, 3 -> f1 (a repeated factor). V = 40. */
static void make_small(lpe_dist *d, const char *name) {
    int64_t offsets[] = {0, 1, 7, 10};
    int32_t values[] = {5, 3, 17, 0, 39, 8, 21, 30, 31, 2};
    double probs[] = {7.0, 1.0, 2.0, 0.0, 4.0, 0.5, 0.5, 1.0, 1.0, 2.0};
    int32_t positions[] = {0, 1, 2, 1};
    lpe_dist_from_arrays(d, name, "test", 3, offsets, values, probs, 4, positions, 40);
}

/* Probability that the alias table of factor f yields local entry e: its own column keeps it
 * with alias_prob, and every column whose alias is e gives 1 - alias_prob. */
static void alias_implied(double *out /* [n_f] */, const lpe_dist *d, int f) {
    int64_t a = d->offsets[f];
    int n = (int)(d->offsets[f + 1] - a);
    for (int i = 0; i < n; i++) out[i] = 0;
    for (int c = 0; c < n; c++) {
        out[c] += d->alias_prob[a + c] / n;
        if (d->alias_idx[a + c] != c) out[d->alias_idx[a + c]] += (1 - d->alias_prob[a + c]) / n;
    }
}

static void test_normalise_and_alias(void) {
    lpe_dist d;
    make_small(&d, "small");
    CHECK(d.k == 4 && d.n_factors == 3 && d.d_vocab == 40, "shape");
    /* weights 1 2 0 4 .5 .5 sum to 8 */
    double want1[] = {1 / 8.0, 2 / 8.0, 0, 4 / 8.0, 0.5 / 8, 0.5 / 8};
    for (int i = 0; i < 6; i++) CHECK_CLOSE(d.probs[1 + i], want1[i], 0, 1e-15);
    CHECK(d.probs[0] == 1.0, "constant factor p = %g", d.probs[0]);
    CHECK(isinf(d.log_probs[3]) && d.log_probs[3] < 0, "log 0 = -inf");
    CHECK_CLOSE(d.log_probs[4], log(0.5), 1e-15, 0);
    /* the alias tables reproduce the probabilities to rounding (float64 throughout) */
    for (int f = 0; f < d.n_factors; f++) {
        double implied[8];
        alias_implied(implied, &d, f);
        for (int64_t i = d.offsets[f]; i < d.offsets[f + 1]; i++)
            CHECK_CLOSE(implied[i - d.offsets[f]], d.probs[i], 1e-15, 1e-12);
    }
    /* a bigger skewed factor: Zipf weights over 1000 tokens */
    enum { N = 1000 };
    int64_t off[] = {0, N};
    int32_t vals[N];
    double pr[N], implied[N];
    for (int i = 0; i < N; i++) { vals[i] = (i * 7919) % 5000; pr[i] = pow(i + 1.0, -1.3); }
    int32_t pos[] = {0};
    lpe_dist z;
    lpe_dist_from_arrays(&z, "zipf", "", 1, off, vals, pr, 1, pos, 5000);
    alias_implied(implied, &z, 0);
    double worst = 0;
    for (int i = 0; i < N; i++) worst = check_nanmax(worst, fabs(implied[i] - z.probs[i]) / z.probs[i]);
    CHECK(worst < 1e-12, "alias implied vs probs: worst relative error %g", worst);
    lpe_dist_free(&z);
    lpe_dist_free(&d);
}

static void test_sampling_frequencies(void) {
    lpe_dist d;
    make_small(&d, "small");
    enum { N = 200000, K = 4 };
    int32_t *tok = malloc(sizeof(int32_t) * N * K); /* [N, k] */
    lpe_dist_sample(tok, &d, 12345, lpe_stream(LPE_STREAM_TEST, 1), 0, N);
    /* per position: counts per support entry within 5 standard errors; chi-square */
    for (int j = 0; j < K; j++) {
        int f = d.positions[j];
        int64_t a = d.offsets[f];
        int n = (int)(d.offsets[f + 1] - a);
        long cnt[8] = {0}, outside = 0;
        for (int s = 0; s < N; s++) {
            int32_t l = d.local_of[(int64_t)f * d.d_vocab + tok[s * K + j]];
            if (l < 0) outside++;
            else cnt[l]++;
        }
        CHECK(outside == 0, "position %d: %ld tokens outside the support", j, outside);
        double chi2 = 0;
        int df = -1;
        for (int i = 0; i < n; i++) {
            double p = d.probs[a + i], e = N * p, se = sqrt(N * p * (1 - p));
            if (p == 0) {
                CHECK(cnt[i] == 0, "zero-probability token drawn %ld times", cnt[i]);
                continue;
            }
            CHECK(fabs(cnt[i] - e) <= 5 * se + 1e-9, "position %d entry %d: count %ld, expected %.1f +- %.1f",
                  j, i, cnt[i], e, se);
            chi2 += (cnt[i] - e) * (cnt[i] - e) / e;
            df++;
        }
        if (df > 0) CHECK(chi2 <= df + 6 * sqrt(2.0 * df), "position %d: chi2 %.2f with %d df", j, chi2, df);
    }
    /* independence: positions 1 and 3 share factor 1; the pair table against the product law */
    {
        int64_t a = d.offsets[1];
        long pair[6][6] = {{0}};
        for (int s = 0; s < N; s++)
            pair[d.local_of[1 * d.d_vocab + tok[s * K + 1]]][d.local_of[1 * d.d_vocab + tok[s * K + 3]]]++;
        double chi2 = 0;
        int cells = 0;
        for (int x = 0; x < 6; x++)
            for (int y = 0; y < 6; y++) {
                double e = N * d.probs[a + x] * d.probs[a + y];
                if (e == 0) { CHECK(pair[x][y] == 0, "impossible pair drawn"); continue; }
                chi2 += (pair[x][y] - e) * (pair[x][y] - e) / e;
                cells++;
            }
        int df = cells - 1;
        CHECK(chi2 <= df + 6 * sqrt(2.0 * df), "pair (1, 3): chi2 %.2f with %d df", chi2, df);
    }
    free(tok);
    lpe_dist_free(&d);
}

/* The contract of dist.h, written out independently: token j of sample n from
 * lpe_rng4(seed, stream, n, j): word 0 picks the column, words 1-2 the 53-bit coin. */
static int32_t contract_token(const lpe_dist *d, uint64_t seed, uint32_t stream, uint64_t n, int j) {
    int f = d->positions[j];
    int64_t a = d->offsets[f];
    uint32_t size = (uint32_t)(d->offsets[f + 1] - a), w[4];
    lpe_rng4(w, seed, stream, n, (uint32_t)j);
    uint32_t col = lpe_below(w[0], size);
    double u = lpe_u01_53(w[1], w[2]);
    return d->values[a + (u < d->alias_prob[a + col] ? (int32_t)col : d->alias_idx[a + col])];
}

static void test_determinism(void) {
    lpe_dist d;
    make_small(&d, "small");
    enum { N = 5000, K = 4 };
    uint64_t seed = 0xfeedface12345ull, first = (1ull << 33) - 1000; /* crosses a 32-bit boundary */
    uint32_t stream = lpe_stream(LPE_STREAM_INPUT, 7);
    int32_t *whole = malloc(sizeof(int32_t) * N * K), *parts = malloc(sizeof(int32_t) * N * K);
    lpe_dist_sample(whole, &d, seed, stream, first, N);
    int splits[] = {1, 7, 100, 1, 2000, 891, 2000};
    int done = 0;
    for (int i = 0; done < N; i++) {
        int b = splits[i % 7] < N - done ? splits[i % 7] : N - done;
        lpe_dist_sample(parts + done * K, &d, seed, stream, first + (uint64_t)done, b);
        done += b;
    }
    CHECK(memcmp(whole, parts, sizeof(int32_t) * N * K) == 0, "batch split changes samples");
    long mism = 0;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < K; j++)
            mism += whole[n * K + j] != contract_token(&d, seed, stream, first + (uint64_t)n, j);
    CHECK(mism == 0, "%ld tokens differ from the documented Philox contract", mism);
    /* a different seed or stream gives different samples */
    lpe_dist_sample(parts, &d, seed + 1, stream, first, N);
    CHECK(memcmp(whole, parts, sizeof(int32_t) * N * K) != 0, "seed ignored");
    lpe_dist_sample(parts, &d, seed, stream + 1, first, N);
    CHECK(memcmp(whole, parts, sizeof(int32_t) * N * K) != 0, "stream ignored");
    free(whole);
    free(parts);
    lpe_dist_free(&d);
}

static void test_enumeration(void) {
    lpe_dist d;
    make_small(&d, "small");
    uint64_t n = lpe_dist_enum_size(&d);
    CHECK(n == 1 * 6 * 3 * 6, "enum size %llu", (unsigned long long)n);
    /* every index decodes to a distinct input; re-encoding (mixed radix, last fastest) gives
     * the index back; log p agrees with lpe_dist_log_prob; probabilities sum to 1 */
    char *seen = calloc(n, 1);
    double sum = 0;
    int32_t x[4];
    long bad_code = 0, bad_lp = 0;
    for (uint64_t idx = 0; idx < n; idx++) {
        double lp = lpe_dist_enum_decode(&d, idx, x);
        uint64_t code = 0;
        for (int j = 0; j < d.k; j++) {
            int f = d.positions[j];
            code = code * (uint64_t)lpe_dist_support(&d, j) + (uint64_t)d.local_of[f * d.d_vocab + x[j]];
        }
        bad_code += code != idx;
        if (code < n) seen[code]++;
        double lp2 = lpe_dist_log_prob(&d, x);
        bad_lp += !(lp == lp2 || fabs(lp - lp2) <= 1e-13 * fabs(lp));
        sum += exp(lp);
    }
    long dup = 0;
    for (uint64_t i = 0; i < n; i++) dup += seen[i] != 1;
    CHECK(bad_code == 0 && dup == 0, "%ld indices re-encode wrongly, %ld inputs not seen once", bad_code, dup);
    CHECK(bad_lp == 0, "%ld log p(x) differ between decode and log_prob", bad_lp);
    /* 108 terms, each exp(lp) within a few ulps: 1e-12 leaves ample room */
    CHECK_CLOSE(sum, 1.0, 1e-12, 0);
    /* last position fastest: idx 1 changes position 3 only */
    int32_t x0[4], x1[4];
    lpe_dist_enum_decode(&d, 0, x0);
    lpe_dist_enum_decode(&d, 1, x1);
    CHECK(x0[0] == x1[0] && x0[1] == x1[1] && x0[2] == x1[2] && x0[3] != x1[3], "radix order");
    /* log p outside the support or vocabulary */
    int32_t y[4] = {5, 3, 30, 17};
    CHECK_CLOSE(lpe_dist_log_prob(&d, y), log(1 / 8.0) + log(1 / 4.0) + log(2 / 8.0), 1e-14, 0);
    y[2] = 3; /* token 3 is not in factor 2 */
    CHECK(isinf(lpe_dist_log_prob(&d, y)), "outside support");
    y[2] = 40; /* outside the vocabulary */
    CHECK(isinf(lpe_dist_log_prob(&d, y)), "outside vocabulary");
    y[2] = 30; y[1] = 0; /* probability 0 entry */
    CHECK(isinf(lpe_dist_log_prob(&d, y)), "zero-probability entry");
    free(seen);
    lpe_dist_free(&d);

    /* saturation: 20 positions of 10000 tokens = 10^80 inputs */
    enum { S = 10000 };
    int64_t off[] = {0, S};
    int32_t *vals = malloc(sizeof(int32_t) * S);
    double *pr = malloc(sizeof(double) * S);
    for (int i = 0; i < S; i++) { vals[i] = i; pr[i] = 1; }
    int32_t pos[20] = {0};
    lpe_dist big;
    lpe_dist_from_arrays(&big, "big", "", 1, off, vals, pr, 20, pos, S);
    CHECK(lpe_dist_enum_size(&big) == UINT64_MAX, "saturation");
    lpe_dist_free(&big);
    lpe_dist_from_arrays(&big, "big", "", 1, off, vals, pr, 4, pos, S);
    CHECK(lpe_dist_enum_size(&big) == 10000ull * 10000 * 10000 * 10000, "10^16 inputs");
    lpe_dist_free(&big);
    free(vals);
    free(pr);
}

static void test_sha_and_files(void) {
    lpe_dist a, b, c;
    make_small(&a, "one");
    make_small(&b, "two"); /* same content, another name */
    CHECK(strcmp(a.sha256, b.sha256) == 0, "sha depends on the name");
    CHECK(strlen(a.sha256) == 64, "sha length");
    /* weights scaled by 2 normalise to the very same probabilities */
    int64_t offsets[] = {0, 1, 7, 10};
    int32_t values[] = {5, 3, 17, 0, 39, 8, 21, 30, 31, 2};
    double probs2[] = {14.0, 2.0, 4.0, 0.0, 8.0, 1.0, 1.0, 2.0, 2.0, 4.0};
    int32_t positions[] = {0, 1, 2, 1};
    lpe_dist_from_arrays(&c, "three", "", 3, offsets, values, probs2, 4, positions, 40);
    CHECK(strcmp(a.sha256, c.sha256) == 0, "sha after scaling the weights");
    lpe_dist_free(&c);
    probs2[1] = 2.5; /* other weights */
    lpe_dist_from_arrays(&c, "three", "", 3, offsets, values, probs2, 4, positions, 40);
    CHECK(strcmp(a.sha256, c.sha256) != 0, "sha ignores the probabilities");
    lpe_dist_free(&c);
    int32_t positions2[] = {0, 1, 1, 2};
    lpe_dist_from_arrays(&c, "four", "", 3, offsets, values, probs2, 4, positions2, 40);
    CHECK(strcmp(a.sha256, c.sha256) != 0, "sha ignores the positions");
    lpe_dist_free(&c);

    /* save two groups, list, load: identical arrays and sha (normalisation is idempotent) */
    char path[64];
    snprintf(path, sizeof path, "/tmp/lpe_test_dist_%ld.h5", (long)getpid());
    unlink(path);
    lpe_dist_save(&a, path);
    lpe_dist_save(&b, path);
    int n = 0;
    char **names = lpe_dist_names(path, &n);
    CHECK(n == 2 && !strcmp(names[0], "one") && !strcmp(names[1], "two"), "names (%d)", n);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    lpe_dist_load(&c, path, "two", 40);
    int64_t NS = a.offsets[a.n_factors];
    CHECK(!strcmp(c.sha256, a.sha256), "sha after save/load");
    CHECK(c.k == a.k && c.n_factors == a.n_factors && !strcmp(c.description, "test"), "header");
    CHECK(!memcmp(c.probs, a.probs, NS * sizeof(double)) && !memcmp(c.values, a.values, NS * 4) &&
              !memcmp(c.alias_prob, a.alias_prob, NS * sizeof(double)) &&
              !memcmp(c.positions, a.positions, a.k * 4), "arrays after save/load");
    lpe_dist_free(&c);
    /* without a vocabulary the local table spans the largest token */
    lpe_dist_load(&c, path, "one", 0);
    CHECK(c.d_vocab == 40 && !strcmp(c.sha256, a.sha256), "d_vocab %d without a model", c.d_vocab);
    lpe_dist_free(&c);
    unlink(path);
    lpe_dist_free(&a);
    lpe_dist_free(&b);
}

int main(void) {
    test_normalise_and_alias();
    test_sampling_frequencies();
    test_determinism();
    test_enumeration();
    test_sha_and_files();
    return check_summary("test_dist");
}
