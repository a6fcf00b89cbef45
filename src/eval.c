/* eval.c: the paper's scoring (methods.md §6) and the evaluation of results files; see eval.h.
 *
 * Dimension legend: T = targets of a (model, distribution), n = targets in a fit, NM = methods of
 *   a distribution, ND = distributions of a results file.
 */
#include "lpe/eval.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/h5io.h"

const char *lpe_zero_rule_name(lpe_zero_rule r) {
    return r == LPE_ZERO_DROP ? "drop" : r == LPE_ZERO_FLOOR ? "floor" : "const";
}

int lpe_zero_rule_parse(lpe_zero_rule *out, const char *s) {
    if (!strcmp(s, "const")) *out = LPE_ZERO_CONST;
    else if (!strcmp(s, "drop")) *out = LPE_ZERO_DROP;
    else if (!strcmp(s, "floor")) *out = LPE_ZERO_FLOOR;
    else return -1;
    return 0;
}

/* ======================================================================================== */
/* loss and fit                                                                               */
/* ======================================================================================== */

/* D as a function of r = ln(p / q): e^r - r - 1. For |r| < 1e-3 the two terms cancel to r^2/2:
 * use the series (next term r^6/720, relative 1e-15 there). */
static double is_of_log(double r) {
    if (fabs(r) < 1e-3) return r * r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r / 120)));
    return expm1(r) - r;
}

/* r = ln(p / q): near q = p through log1p of the exactly computed relative difference (p - q is
 * exact there, Sterbenz), so that D ~ r^2 / 2 keeps its digits; elsewhere a difference of logs
 * (no overflow of p / q). */
static double log_ratio(double p, double q) {
    if (p > 0.5 * q && p < 2 * q) return log1p((p - q) / q);
    return log(p) - log(q);
}

double lpe_is_loss(double p, double q) {
    if (!(q > 0)) return INFINITY;
    return is_of_log(log_ratio(p, q));
}

/* With centred x (xc = ln q - mean ln q), y = ln p and r_i = y_i - a xc_i - beta:
 *   L     = mean(e^r - r - 1)
 *   dL/da = -mean(xc (e^r - 1)),   dL/dbeta = -mean(e^r - 1)
 *   H     = mean(e^r [xc^2, xc; xc, 1])   (positive definite unless xc = 0: L is convex)
 * Centring makes H well conditioned (x ~ -16 for p ~ 1e-7 otherwise couples a and b). */
static double fit_eval(double *g, double *H, double a, double be, const double *xc,
                       const double *y, int n) {
    double L = 0, ga = 0, gb = 0, haa = 0, hab = 0, hbb = 0;
    for (int i = 0; i < n; i++) {
        double r = y[i] - a * xc[i] - be, em = expm1(r), e = em + 1;
        L += is_of_log(r);
        ga -= xc[i] * em;
        gb -= em;
        haa += xc[i] * xc[i] * e;
        hab += xc[i] * e;
        hbb += e;
    }
    if (g) g[0] = ga / n, g[1] = gb / n;
    if (H) H[0] = haa / n, H[1] = hab / n, H[2] = hbb / n;
    return L / n;
}

/* beta*(a) = ln mean(exp(y - a xc)): dL/dbeta = 0 in closed form (e^b = mean(p / q^a)). */
static double profile_beta(double a, const double *xc, const double *y, int n) {
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) mx = fmax(mx, y[i] - a * xc[i]);
    for (int i = 0; i < n; i++) s += exp(y[i] - a * xc[i] - mx);
    return mx + log(s / n);
}

double lpe_eval_fit_loss(double *grad, double a, double b, const double *p, const double *q, int n) {
    double L = 0, ga = 0, gb = 0;
    for (int i = 0; i < n; i++) {
        double x = log(q[i]), r = log(p[i]) - a * x - b, em = expm1(r);
        L += is_of_log(r);
        ga -= x * em;
        gb -= em;
    }
    if (grad) grad[0] = ga / n, grad[1] = gb / n;
    return L / n;
}

/* Damped Newton on (a, beta) from a = 1 with beta profiled, Armijo backtracking; stops on a
 * Newton decrement below 1e-26 (the loss is O(1): that is float64 resolution), then profiles
 * beta once more so that dL/db = 0 holds to rounding. */
void lpe_eval_fit(double *a_out, double *b_out, const double *p, const double *q, int n) {
    LPE_ASSERT(n >= 1);
    double *mem = lpe_calloc(2 * (size_t)n, sizeof *mem);
    double *xc = mem, *y = mem + n; /* [n] centred ln q, [n] ln p */
    double xbar = 0, var = 0;
    for (int i = 0; i < n; i++) xbar += log(q[i]) / n;
    for (int i = 0; i < n; i++) {
        xc[i] = log(q[i]) - xbar;
        y[i] = log(p[i]);
        var += xc[i] * xc[i] / n;
    }
    double a = 1, be;
    if (var <= 1e-24 * (1 + xbar * xbar)) { /* all q equal: the best constant */
        be = profile_beta(1, xc, y, n);
    } else {
        be = profile_beta(a, xc, y, n);
        for (int it = 0; it < 200; it++) {
            double g[2], H[3];
            double L = fit_eval(g, H, a, be, xc, y, n);
            double det = H[0] * H[2] - H[1] * H[1];
            if (!(det > 0)) break;
            double da = -(H[2] * g[0] - H[1] * g[1]) / det;
            double db = -(-H[1] * g[0] + H[0] * g[1]) / det;
            double dec = -(g[0] * da + g[1] * db);
            if (!(dec > 1e-26)) break;
            double t = 1;
            for (; t > 1e-14; t *= 0.5) {
                double Ln = fit_eval(NULL, NULL, a + t * da, be + t * db, xc, y, n);
                if (Ln <= L - 1e-4 * t * dec) break;
            }
            if (!(t > 1e-14)) break;
            a += t * da;
            be += t * db;
        }
        be = profile_beta(a, xc, y, n);
    }
    *a_out = a;
    *b_out = be - a * xbar;
    free(mem);
}

/* ======================================================================================== */
/* scoring with the zero rule                                                                 */
/* ======================================================================================== */

static int valid_p(double p) { return p > 0 && isfinite(p); }
static int zero_q(double q) { return !(q > 0) || !isfinite(q); }

/* What a rule learns from a training set of targets (all valid ones but `skip`). */
typedef struct {
    int has_fit;      /* some positive (or floored) estimate: (a, b) fitted */
    double a, b;
    int has_c0;       /* some zero estimate: c0 = their mean true probability */
    double c0;
    int has_floor;    /* floor rule and some positive estimate */
    double floor;
    double pmean;     /* mean true probability of the training set (fallback: the best constant) */
} rulefit;

static void fit_rule(rulefit *f, const double *p, const double *q, int T, lpe_zero_rule rule,
                     int skip, double *wp, double *wq) {
    int n = 0, nz = 0, m = 0;
    double pm = 0, pz = 0, qmin = INFINITY;
    for (int i = 0; i < T; i++) {
        if (i == skip || !valid_p(p[i])) continue;
        n++;
        pm += p[i];
        if (zero_q(q[i])) nz++, pz += p[i];
        else qmin = fmin(qmin, q[i]);
    }
    memset(f, 0, sizeof *f);
    f->pmean = n ? pm / n : NAN;
    f->has_c0 = nz > 0;
    f->c0 = nz ? pz / nz : NAN;
    f->has_floor = rule == LPE_ZERO_FLOOR && qmin < INFINITY;
    f->floor = 0.5 * qmin;
    for (int i = 0; i < T; i++) {
        if (i == skip || !valid_p(p[i])) continue;
        if (!zero_q(q[i])) wp[m] = p[i], wq[m++] = q[i];
        else if (f->has_floor) wp[m] = p[i], wq[m++] = f->floor;
    }
    f->has_fit = m > 0;
    if (m) lpe_eval_fit(&f->a, &f->b, wp, wq, m);
}

/* Fitted value of an estimate q under a learnt rule; NaN: not scored (drop rule, zero q). */
static double predict(const rulefit *f, double q, lpe_zero_rule rule) {
    if (!zero_q(q)) return f->has_fit ? exp(f->a * log(q) + f->b) : f->pmean;
    if (rule == LPE_ZERO_DROP) return NAN;
    if (rule == LPE_ZERO_FLOOR && f->has_floor) return exp(f->a * log(f->floor) + f->b);
    return f->has_c0 ? f->c0 : f->pmean;
}

/* The estimate itself, zero estimates taken by the rule (for the unfitted loss). */
static double unfitted(const rulefit *f, double q, lpe_zero_rule rule) {
    if (!zero_q(q)) return q;
    if (rule == LPE_ZERO_DROP) return NAN;
    if (rule == LPE_ZERO_FLOOR && f->has_floor) return f->floor;
    return f->has_c0 ? f->c0 : f->pmean;
}

void lpe_eval_score_targets(lpe_eval_score *s, double *qfit, const double *p, const double *q,
                            int T, lpe_zero_rule rule) {
    double *mem = lpe_calloc(2 * (size_t)T + 2, sizeof *mem);
    double *wp = mem, *wq = mem + T + 1; /* [T] scratch for fits */
    rulefit full, loo;
    fit_rule(&full, p, q, T, rule, -1, wp, wq);
    memset(s, 0, sizeof *s);
    s->a = full.has_fit ? full.a : NAN;
    s->b = full.has_fit ? full.b : NAN;
    s->c0 = rule == LPE_ZERO_FLOOR && full.has_floor ? full.floor : full.has_c0 ? full.c0 : NAN;
    if (rule == LPE_ZERO_DROP) s->c0 = NAN;
    double fitted = 0, unf = 0, logsq = 0, cv = 0;
    for (int i = 0; i < T; i++) {
        if (qfit) qfit[i] = NAN;
        if (!valid_p(p[i])) continue;
        double qf = predict(&full, q[i], rule);
        if (zero_q(q[i])) s->n_zero++;
        if (isnan(qf)) continue; /* dropped */
        s->n++;
        if (qfit) qfit[i] = qf;
        fitted += lpe_is_loss(p[i], qf);
        logsq += (log(qf) - log(p[i])) * (log(qf) - log(p[i]));
        unf += lpe_is_loss(p[i], unfitted(&full, q[i], rule));
        fit_rule(&loo, p, q, T, rule, i, wp, wq);
        cv += lpe_is_loss(p[i], predict(&loo, q[i], rule));
    }
    double n = s->n;
    s->fitted = n ? fitted / n : NAN;
    s->unfitted = n ? unf / n : NAN;
    s->logsq = n ? logsq / n : NAN;
    s->cv = n ? cv / n : NAN;
    free(mem);
}

/* ======================================================================================== */
/* results files                                                                              */
/* ======================================================================================== */

static int method_rank(const char *name) {
    static const char *order[] = {"const", "naive", "itgis", "mhis", "qld", "gld"};
    size_t len = strcspn(name, "@");
    for (int i = 0; i < 6; i++)
        if (strlen(order[i]) == len && !strncmp(order[i], name, len)) return i;
    return 6;
}

int lpe_eval_method_cmp(const char *a, const char *b) {
    int ra = method_rank(a), rb = method_rank(b);
    return ra != rb ? ra - rb : strcmp(a, b);
}

static int cmp_method(const void *a, const void *b) {
    return lpe_eval_method_cmp(((const lpe_eval_method *)a)->name,
                               ((const lpe_eval_method *)b)->name);
}

static int cmp_mean(const void *a, const void *b) {
    return lpe_eval_method_cmp(((const lpe_eval_mean *)a)->name, ((const lpe_eval_mean *)b)->name);
}

static int is_group(hid_t loc, const char *name) {
    hid_t g = H5Gopen2(loc, name, H5P_DEFAULT);
    if (g < 0) return 0;
    H5Gclose(g);
    return 1;
}

/* Names of the links in group g, in name order (caller frees each and the array). */
static char **children(hid_t g, int *n_out) {
    H5G_info_t info;
    H5_CHECK(H5Gget_info(g, &info));
    char **names = lpe_calloc(info.nlinks + 1, sizeof *names);
    for (hsize_t i = 0; i < info.nlinks; i++) {
        ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
        if (len < 0) lpe_fail("HDF5: cannot list a group");
        names[i] = lpe_calloc((size_t)len + 1, 1);
        H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, names[i], (size_t)len + 1,
                           H5P_DEFAULT);
    }
    *n_out = (int)info.nlinks;
    return names;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* "dir/gelu-1l.h5" -> "gelu-1l" */
static void stem(char *out, size_t n, const char *path) {
    const char *s = strrchr(path, '/');
    s = s ? s + 1 : path;
    snprintf(out, n, "%s", s);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
}

static void load_dist(lpe_eval_dist *d, hid_t file, const char *path, const char *name,
                      lpe_zero_rule rule) {
    char ds[600];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    hid_t g = H5Gopen2(file, name, H5P_DEFAULT);
    if (g < 0) lpe_fail_input("%s: cannot open group /%s", path, name);
    int64_t dims[1] = {-1}, got[1];
    snprintf(ds, sizeof ds, "/%s/targets", name);
    d->targets = lpe_h5_read(file, path, ds, H5T_NATIVE_INT32, 1, dims, got);
    d->T = (int)got[0];
    dims[0] = d->T;
    snprintf(ds, sizeof ds, "/%s/true_prob", name);
    d->true_prob = lpe_h5_read(file, path, ds, H5T_NATIVE_DOUBLE, 1, dims, NULL);
    int nc;
    char **names = children(g, &nc);
    d->m = lpe_calloc((size_t)nc + 1, sizeof *d->m);
    int has_const = 0;
    for (int i = 0; i < nc; i++) {
        char sub[600];
        snprintf(sub, sizeof sub, "%s/estimate", names[i]);
        if (!strcmp(names[i], "eval") || !is_group(g, names[i]) || !lpe_h5_exists(g, sub))
            continue;
        lpe_eval_method *m = &d->m[d->n_methods++];
        snprintf(m->name, sizeof m->name, "%s", names[i]);
        snprintf(ds, sizeof ds, "/%s/%s/estimate", name, names[i]);
        m->estimate = lpe_h5_read(file, path, ds, H5T_NATIVE_DOUBLE, 1, dims, NULL);
        has_const |= !strcmp(names[i], "const");
    }
    free_names(names, nc);
    if (!has_const) { /* the baseline needs only the truth: always have it */
        lpe_eval_method *m = &d->m[d->n_methods++];
        snprintf(m->name, sizeof m->name, "const");
        m->from_truth = 1;
        m->estimate = lpe_calloc((size_t)d->T + 1, sizeof *m->estimate);
        double s = 0;
        int n = 0;
        for (int t = 0; t < d->T; t++)
            if (valid_p(d->true_prob[t])) s += d->true_prob[t], n++;
        for (int t = 0; t < d->T; t++) m->estimate[t] = n ? s / n : 0;
    }
    qsort(d->m, (size_t)d->n_methods, sizeof *d->m, cmp_method);
    for (int i = 0; i < d->n_methods; i++) {
        lpe_eval_method *m = &d->m[i];
        m->qfit = lpe_calloc((size_t)d->T + 1, sizeof *m->qfit);
        lpe_eval_score_targets(&m->s, m->qfit, d->true_prob, m->estimate, d->T, rule);
    }
    H5Gclose(g);
}

/* means over distributions, per method name (replacing any earlier ones) */
void lpe_eval_means(lpe_eval_file *f) {
    free(f->means);
    f->n_means = 0;
    int cap = 0;
    for (int i = 0; i < f->n_dists; i++) cap += f->d[i].n_methods;
    f->means = lpe_calloc((size_t)cap + 1, sizeof *f->means);
    for (int i = 0; i < f->n_dists; i++)
        for (int j = 0; j < f->d[i].n_methods; j++) {
            const lpe_eval_method *m = &f->d[i].m[j];
            if (m->s.n == 0) continue;
            int k = 0;
            while (k < f->n_means && strcmp(f->means[k].name, m->name)) k++;
            lpe_eval_mean *e = &f->means[k];
            if (k == f->n_means) {
                f->n_means++;
                snprintf(e->name, sizeof e->name, "%s", m->name);
            }
            e->n_dists++;
            e->fitted += m->s.fitted;
            e->unfitted += m->s.unfitted;
            e->logsq += m->s.logsq;
            e->cv += m->s.cv;
        }
    for (int k = 0; k < f->n_means; k++) {
        lpe_eval_mean *e = &f->means[k];
        e->fitted /= e->n_dists;
        e->unfitted /= e->n_dists;
        e->logsq /= e->n_dists;
        e->cv /= e->n_dists;
    }
    qsort(f->means, (size_t)f->n_means, sizeof *f->means, cmp_mean);
}

void lpe_eval_load(lpe_eval_file *f, int64_t file_id, const char *path, lpe_zero_rule rule) {
    hid_t file = (hid_t)file_id;
    lpe_h5_quiet();
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    f->rule = rule;
    stem(f->label, sizeof f->label, path);
    if (lpe_h5_has_attr(file, "model")) {
        char *mp = lpe_h5_get_attr_str(file, path, "model");
        if (mp[0]) stem(f->label, sizeof f->label, mp);
        free(mp);
    }
    int nc;
    char **names = children(file, &nc);
    f->d = lpe_calloc((size_t)nc + 1, sizeof *f->d);
    for (int i = 0; i < nc; i++) {
        char sub[600];
        snprintf(sub, sizeof sub, "%s/targets", names[i]);
        if (!strcmp(names[i], "eval") || !is_group(file, names[i]) || !lpe_h5_exists(file, sub))
            continue;
        snprintf(sub, sizeof sub, "%s/true_prob", names[i]);
        if (!lpe_h5_exists(file, sub)) {
            f->n_no_truth++;
            continue;
        }
        load_dist(&f->d[f->n_dists++], file, path, names[i], rule);
    }
    free_names(names, nc);

    lpe_eval_means(f);
}

static void write_score_attrs(hid_t g, const lpe_eval_score *s) {
    lpe_h5_attr_double(g, "fitted", s->fitted);
    lpe_h5_attr_double(g, "unfitted", s->unfitted);
    lpe_h5_attr_double(g, "logsq", s->logsq);
    lpe_h5_attr_double(g, "cv", s->cv);
    lpe_h5_attr_double(g, "a", s->a);
    lpe_h5_attr_double(g, "b", s->b);
    lpe_h5_attr_double(g, "c0", s->c0);
    lpe_h5_attr_int(g, "n", s->n);
    lpe_h5_attr_int(g, "n_zero", s->n_zero);
}

static const char *eval_description =
    "Itakura-Saito loss D(p,q) = p/q - ln(p/q) - 1 per target, mean over targets; fitted: after "
    "ln q' = a ln q + b fitted per (distribution, method); cv: leave-one-out fitted loss; logsq: "
    "mean (ln q' - ln p)^2; unfitted: the raw estimates. zero_rule: what zero estimates become "
    "(const: their mean true probability c0; drop: left out; floor: half the smallest positive "
    "estimate, then fitted).";

void lpe_eval_write(int64_t file_id, const lpe_eval_file *f) {
    hid_t file = (hid_t)file_id;
    char path[600];
    if (lpe_h5_exists(file, "eval")) H5_CHECK(H5Ldelete(file, "eval", H5P_DEFAULT));
    for (int i = 0; i < f->n_dists; i++) {
        const lpe_eval_dist *d = &f->d[i];
        snprintf(path, sizeof path, "%s/eval", d->name);
        if (lpe_h5_exists(file, path)) H5_CHECK(H5Ldelete(file, path, H5P_DEFAULT));
        hid_t g = lpe_h5_group(file, path);
        lpe_h5_attr_str(g, "zero_rule", lpe_zero_rule_name(f->rule));
        lpe_h5_attr_str(g, "description", eval_description);
        double *loss = lpe_calloc((size_t)d->T + 1, sizeof *loss); /* [T] */
        for (int j = 0; j < d->n_methods; j++) {
            const lpe_eval_method *m = &d->m[j];
            hid_t mg = lpe_h5_group(g, m->name);
            write_score_attrs(mg, &m->s);
            lpe_h5_attr_int(mg, "from_truth", m->from_truth);
            for (int t = 0; t < d->T; t++)
                loss[t] = isnan(m->qfit[t]) ? NAN : lpe_is_loss(d->true_prob[t], m->qfit[t]);
            lpe_h5_write_f64(mg, "fitted_estimate", m->qfit, d->T);
            lpe_h5_write_f64(mg, "loss", loss, d->T);
            H5Gclose(mg);
        }
        free(loss);
        H5Gclose(g);
    }
    hid_t g = lpe_h5_group(file, "eval");
    lpe_h5_attr_str(g, "zero_rule", lpe_zero_rule_name(f->rule));
    lpe_h5_attr_str(g, "description", eval_description);
    lpe_h5_attr_int(g, "n_dists", f->n_dists);
    for (int k = 0; k < f->n_means; k++) {
        const lpe_eval_mean *e = &f->means[k];
        hid_t mg = lpe_h5_group(g, e->name);
        lpe_h5_attr_double(mg, "fitted", e->fitted);
        lpe_h5_attr_double(mg, "unfitted", e->unfitted);
        lpe_h5_attr_double(mg, "logsq", e->logsq);
        lpe_h5_attr_double(mg, "cv", e->cv);
        lpe_h5_attr_int(mg, "n_dists", e->n_dists);
        H5Gclose(mg);
    }
    H5Gclose(g);
}

void lpe_eval_free(lpe_eval_file *f) {
    for (int i = 0; i < f->n_dists; i++) {
        lpe_eval_dist *d = &f->d[i];
        for (int j = 0; j < d->n_methods; j++) {
            free(d->m[j].estimate);
            free(d->m[j].qfit);
        }
        free(d->m);
        free(d->targets);
        free(d->true_prob);
    }
    free(f->d);
    free(f->means);
    memset(f, 0, sizeof *f);
}

void lpe_eval_results(int64_t file, const char *path, lpe_zero_rule rule) {
    lpe_eval_file f;
    lpe_eval_load(&f, file, path, rule);
    lpe_eval_write(file, &f);
    lpe_eval_free(&f);
}

void lpe_eval_results_file(const char *path) {
    hid_t file = lpe_h5_open_read(path); /* checks existence and format with a clear message */
    H5Fclose(file);
    file = lpe_h5_open_append(path);
    lpe_eval_results(file, path, LPE_ZERO_CONST);
    lpe_h5_close(file);
}
