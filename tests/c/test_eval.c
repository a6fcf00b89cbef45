/* test_eval.c: the paper's scoring (src/eval.c) against hand-computed values.
 *
 * Dimension legend: T = targets.
 *
 *   loss       D(p, q) = p/q - ln(p/q) - 1 at hand values, near q = p (series branch), q = 0
 *   fit        an exactly representable truth (ln p = 2 ln q + b) is recovered with loss 0; on
 *              noisy data the gradient vanishes at the optimum and no perturbation does better;
 *              e^b = mean(p / q^a) holds there
 *   zero rule  const / drop / floor, the unfitted, log-squared and leave-one-out numbers of a
 *              four-target case worked out by hand; all-zero estimates score as the optimal
 *              constant; targets without a positive truth are not scored
 *   file       lpe_eval_results_file on a results file written here: /{dist}/eval/{method} and
 *              /eval/{method} hold the numbers lpe_eval_score_targets gives; a rerun replaces them
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>
#include <unistd.h>

#include "check.h"
#include "lpe/eval.h"
#include "lpe/h5io.h"
#include "lpe/philox.h"

static double Dx(double x) { return x - log(x) - 1; } /* D as a function of x = p / q */

static void test_loss(void) {
    CHECK_CLOSE(lpe_is_loss(1, 2), 0.5 - log(0.5) - 1, 0, 1e-15);
    CHECK_CLOSE(lpe_is_loss(2, 1), 1 - log(2), 0, 1e-15);
    CHECK_CLOSE(lpe_is_loss(3e-9, 1e-9), 2 - log(3), 0, 1e-14);
    CHECK(lpe_is_loss(1e-7, 1e-7) == 0, "D(p, p) = 0");
    CHECK(isinf(lpe_is_loss(1e-7, 0)), "zero estimate: infinite loss");
    /* near q = p: D = r^2/2 + r^3/6 + ... with r = ln(p/q); a difference of logs would lose
     * ~8 digits at p ~ 1e-7. Reference: the series in long double from the exact ratio of the
     * two doubles (q - p is exact: Sterbenz). */
    const double pp[] = {1.0, 3e-7}, qq[] = {1 + 1e-6, 3e-7 * (1 - 2e-7)};
    for (int k = 0; k < 2; k++) {
        long double r = -log1pl((long double)(qq[k] - pp[k]) / pp[k]);
        long double want = r * r / 2 + r * r * r / 6 + r * r * r * r / 24;
        CHECK_CLOSE(lpe_is_loss(pp[k], qq[k]), (double)want, 0, 1e-12);
    }
    CHECK(lpe_is_loss(1, 1 + 1e-6) > 0, "positive near the minimum");
}

static void test_fit(void) {
    enum { T = 60 };
    double p[T], q[T], a, b, g[2];
    uint64_t ctr = 0;
    /* exact: p = e^{-3} q^2 -> a = 2, b = -3, loss 0 */
    for (int i = 0; i < T; i++) {
        uint32_t w[4];
        lpe_rng4(w, 5, lpe_stream(LPE_STREAM_TEST, 31), ctr++, 0);
        q[i] = pow(10, -2 - 3 * lpe_u01_53(w[0], w[1]));
        p[i] = exp(-3) * q[i] * q[i];
    }
    lpe_eval_fit(&a, &b, p, q, T);
    CHECK_CLOSE(a, 2, 1e-9, 0);
    CHECK_CLOSE(b, -3, 1e-8, 0);
    CHECK(lpe_eval_fit_loss(NULL, a, b, p, q, T) < 1e-18, "exact case has loss 0");

    /* noisy: p ~ 1e-9..1e-5, q = 40 p^0.7 e^{N(0, 1)} */
    for (int i = 0; i < T; i++) {
        uint32_t w[4];
        lpe_rng4(w, 5, lpe_stream(LPE_STREAM_TEST, 32), ctr++, 0);
        double u = lpe_u01_53(w[0], w[1]), v = lpe_u01_53(w[2], w[3]);
        double gauss = sqrt(-2 * log(1 - u)) * cos(2 * M_PI * v);
        p[i] = pow(10, -9 + 4 * lpe_u01_53(w[1], w[2]));
        q[i] = 40 * pow(p[i], 0.7) * exp(gauss);
    }
    lpe_eval_fit(&a, &b, p, q, T);
    double L = lpe_eval_fit_loss(g, a, b, p, q, T);
    /* gradient of an O(1) loss at its optimum: zero to float64 rounding of the sums */
    CHECK(fabs(g[0]) < 1e-9 && fabs(g[1]) < 1e-9, "gradient at the optimum (%g, %g)", g[0], g[1]);
    for (int k = 0; k < 8; k++) {
        double da = 1e-3 * cos(k * M_PI / 4), db = 1e-3 * sin(k * M_PI / 4);
        double Lp = lpe_eval_fit_loss(NULL, a + da, b + db, p, q, T);
        CHECK(Lp > L, "perturbation %d: loss %.17g not above the optimum %.17g", k, Lp, L);
    }
    for (int k = 0; k < 4; k++) { /* larger steps, including along the a-b valley */
        double s = k < 2 ? 0.05 : -0.05, da = s, db = k % 2 ? -s * 16 : s;
        CHECK(lpe_eval_fit_loss(NULL, a + da, b + db, p, q, T) > L, "far perturbation %d", k);
    }
    double m = 0;
    for (int i = 0; i < T; i++) m += p[i] / pow(q[i], a) / T;
    CHECK_CLOSE(exp(b), m, 0, 1e-12);
    printf("noisy fit: a = %.6f, b = %.6f, loss %.6f\n", a, b, L);
}

static void test_zero_rule(void) {
    const double p[4] = {1e-6, 2e-6, 4e-6, 3e-6};
    const double q[4] = {2e-6, 0, 8e-6, 0};
    double qf[4];
    lpe_eval_score s;

    /* const: the positive estimates are exactly p * 2 -> a = 1, b = -ln 2, loss 0 on them;
     * the zero ones get c0 = (2e-6 + 3e-6) / 2 */
    lpe_eval_score_targets(&s, qf, p, q, 4, LPE_ZERO_CONST);
    CHECK(s.n == 4 && s.n_zero == 2, "n %d n_zero %d", s.n, s.n_zero);
    CHECK_CLOSE(s.a, 1, 1e-9, 0);
    CHECK_CLOSE(s.b, -log(2), 1e-9, 0);
    CHECK_CLOSE(s.c0, 2.5e-6, 0, 1e-15);
    CHECK_CLOSE(qf[0], 1e-6, 0, 1e-9);
    CHECK_CLOSE(qf[1], 2.5e-6, 0, 1e-15);
    double fitted = (Dx(2.0 / 2.5) + Dx(3.0 / 2.5)) / 4;
    CHECK_CLOSE(s.fitted, fitted, 1e-15, 1e-9);
    CHECK_CLOSE(s.unfitted, (2 * Dx(0.5) + Dx(2.0 / 2.5) + Dx(3.0 / 2.5)) / 4, 0, 1e-12);
    CHECK_CLOSE(s.logsq, (pow(log(2.5 / 2), 2) + pow(log(2.5 / 3), 2)) / 4, 0, 1e-12);
    /* leave-one-out: a held-out positive estimate is fitted on the other one (exact again: 0);
     * a held-out zero gets the other zero target's truth */
    CHECK_CLOSE(s.cv, (Dx(2.0 / 3) + Dx(3.0 / 2)) / 4, 1e-15, 1e-9);

    /* drop: only the positive estimates count */
    lpe_eval_score_targets(&s, qf, p, q, 4, LPE_ZERO_DROP);
    CHECK(s.n == 2 && s.n_zero == 2 && isnan(qf[1]) && isnan(s.c0), "drop: n %d n_zero %d", s.n,
          s.n_zero);
    CHECK(s.fitted < 1e-15 && fabs(s.unfitted - Dx(0.5)) < 1e-12, "drop: fitted %g unfitted %g",
          s.fitted, s.unfitted);

    /* floor: zeros become 1e-6 (half of 2e-6), then all four are fitted together */
    lpe_eval_score_targets(&s, qf, p, q, 4, LPE_ZERO_FLOOR);
    CHECK(s.n == 4 && s.n_zero == 2, "floor: n %d", s.n);
    CHECK_CLOSE(s.c0, 1e-6, 0, 1e-15);
    CHECK_CLOSE(qf[1], exp(s.a * log(1e-6) + s.b), 0, 1e-12);
    CHECK_CLOSE(qf[1], qf[3], 0, 1e-15);
    CHECK_CLOSE(s.unfitted, (2 * Dx(0.5) + Dx(2.0) + Dx(3.0)) / 4, 0, 1e-12);

    /* all zero: exactly the optimal constant's score */
    const double z[4] = {0, 0, -1, NAN}, mean = 2.5e-6, cst[4] = {mean, mean, mean, mean};
    lpe_eval_score so;
    lpe_eval_score_targets(&s, qf, p, z, 4, LPE_ZERO_CONST);
    lpe_eval_score_targets(&so, NULL, p, cst, 4, LPE_ZERO_CONST);
    double want = (Dx(1 / 2.5) + Dx(2 / 2.5) + Dx(4 / 2.5) + Dx(3 / 2.5)) / 4;
    CHECK_CLOSE(s.fitted, want, 0, 1e-12);
    CHECK_CLOSE(so.fitted, want, 0, 1e-12);
    CHECK_CLOSE(s.unfitted, want, 0, 1e-12);
    CHECK(s.n_zero == 4 && isnan(s.a), "all zero: n_zero %d", s.n_zero);

    /* targets with no positive truth are not scored */
    const double pbad[4] = {1e-6, 0, 4e-6, NAN};
    lpe_eval_score_targets(&s, qf, pbad, q, 4, LPE_ZERO_CONST);
    CHECK(s.n == 2 && isnan(qf[1]) && isnan(qf[3]), "invalid truth: n %d", s.n);
    CHECK(s.fitted < 1e-15, "the two valid targets are fitted exactly (%g)", s.fitted);
}

static void test_results_file(void) {
    char path[] = "/tmp/lpe_test_eval_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    const double p1[4] = {1e-6, 2e-6, 4e-6, 3e-6}, q1[4] = {2e-6, 0, 8e-6, 0};
    const double q2[4] = {1e-6, 1e-6, 1e-6, 1e-6};
    const double p3[3] = {1e-7, 3e-7, 2e-8}, q3[3] = {2e-7, 1e-6, 1e-8};
    const int32_t tg[4] = {5, 6, 7, 8};
    lpe_h5_out o;
    lpe_h5_create(&o, path, 1);
    lpe_h5_attr_str(o.file, "model", "some/dir/gelu-1l.h5");
    lpe_h5_write_i32(o.file, "x/targets", tg, 4);
    lpe_h5_write_f64(o.file, "x/true_prob", p1, 4);
    lpe_h5_write_f64(o.file, "x/naive/estimate", q1, 4);
    lpe_h5_write_f64(o.file, "x/qld@variant=arc/estimate", q2, 4);
    lpe_h5_write_i32(o.file, "y/targets", tg, 3);
    lpe_h5_write_f64(o.file, "y/true_prob", p3, 3);
    lpe_h5_write_f64(o.file, "y/naive/estimate", q3, 3);
    lpe_h5_write_i32(o.file, "z/targets", tg, 2); /* no truth: skipped */
    lpe_h5_commit(&o);
    for (int pass = 0; pass < 2; pass++) lpe_eval_results_file(path); /* second pass replaces */

    lpe_eval_score s1, s3;
    lpe_eval_score_targets(&s1, NULL, p1, q1, 4, LPE_ZERO_CONST);
    lpe_eval_score_targets(&s3, NULL, p3, q3, 3, LPE_ZERO_CONST);
    hid_t f = lpe_h5_open_read(path);
    hid_t g = H5Gopen2(f, "x/eval/naive", H5P_DEFAULT);
    CHECK(g >= 0, "x/eval/naive written");
    if (g >= 0) {
        CHECK_CLOSE(lpe_h5_get_attr_double(g, path, "fitted"), s1.fitted, 0, 1e-15);
        CHECK_CLOSE(lpe_h5_get_attr_double(g, path, "cv"), s1.cv, 0, 1e-15);
        CHECK_CLOSE(lpe_h5_get_attr_double(g, path, "c0"), 2.5e-6, 0, 1e-15);
        CHECK(lpe_h5_get_attr_int(g, path, "n_zero") == 2, "n_zero");
        H5Gclose(g);
    }
    int64_t dims[1] = {4};
    double *qf = lpe_h5_read(f, path, "x/eval/naive/fitted_estimate", H5T_NATIVE_DOUBLE, 1, dims, NULL);
    CHECK_CLOSE(qf[1], 2.5e-6, 0, 1e-15);
    CHECK_CLOSE(qf[0], 1e-6, 0, 1e-9);
    free(qf);
    CHECK(lpe_h5_exists(f, "x/eval/const") && lpe_h5_exists(f, "x/eval/qld@variant=arc"),
          "const (from the truth) and the sweep-named method evaluated");
    CHECK(!lpe_h5_exists(f, "z/eval"), "a distribution without truth is not evaluated");
    g = H5Gopen2(f, "eval/naive", H5P_DEFAULT);
    CHECK(g >= 0, "/eval/naive written");
    if (g >= 0) {
        CHECK_CLOSE(lpe_h5_get_attr_double(g, path, "fitted"), 0.5 * (s1.fitted + s3.fitted), 0,
                    1e-15);
        CHECK(lpe_h5_get_attr_int(g, path, "n_dists") == 2, "naive in 2 distributions");
        H5Gclose(g);
    }
    g = H5Gopen2(f, "eval/qld@variant=arc", H5P_DEFAULT);
    CHECK(g >= 0 && lpe_h5_get_attr_int(g, path, "n_dists") == 1, "qld in 1 distribution");
    if (g >= 0) H5Gclose(g);
    lpe_eval_file ef;
    lpe_eval_load(&ef, f, path, LPE_ZERO_CONST);
    CHECK(!strcmp(ef.label, "gelu-1l") && ef.n_dists == 2 && ef.n_no_truth == 1,
          "label %s, %d dists, %d without truth", ef.label, ef.n_dists, ef.n_no_truth);
    CHECK(ef.n_dists == 2 && ef.d[0].n_methods == 3 && !strcmp(ef.d[0].m[0].name, "const") &&
              ef.d[0].m[0].from_truth && !strcmp(ef.d[0].m[1].name, "naive"),
          "canonical order const, naive, qld");
    lpe_eval_free(&ef);
    lpe_h5_close(f);
    unlink(path);
}

int main(void) {
    test_results_file();
    test_loss();
    test_fit();
    test_zero_rule();
    return check_summary("test_eval");
}
