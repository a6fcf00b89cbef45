/* eval.h: scoring estimates the paper's way (methods.md §6), and the evaluation of results files.
 *
 * Dimension legend: T = targets of a (model, distribution), NM = methods, ND = distributions.
 *
 * Loss: Itakura-Saito D(p, q) = p/q - ln(p/q) - 1 (>= 0, 0 iff q = p).
 * Fit:  per (distribution, method), ln q' = a ln q + b minimising the mean loss over the targets
 *       with a positive estimate (convex in (a, b); Newton; b in closed form given a).
 * Zero rule (estimates that are 0, negative or not finite: "zero estimates"):
 *   const (default): they get one more fitted constant c0, the loss minimiser over them, i.e.
 *                    their mean true probability; all zero -> exactly the optimal constant;
 *   drop:            they are left out of every mean (n_zero says how many);
 *   floor:           they are replaced by half the smallest positive estimate of the method, then
 *                    fitted like the others (all zero -> as const).
 * Metrics per (distribution, method): fitted (mean D(p, q')), unfitted (mean D(p, q), zero
 * estimates taken by the zero rule: c0 / the floor / left out), logsq (mean (ln q' - ln p)^2),
 * cv (leave-one-out: each target scored by the fit made on the others).
 * Targets whose true probability is not positive and finite are not scored (they have no loss).
 */
#ifndef LPE_EVAL_H
#define LPE_EVAL_H

#include <stdint.h>

typedef enum { LPE_ZERO_CONST = 0, LPE_ZERO_DROP = 1, LPE_ZERO_FLOOR = 2 } lpe_zero_rule;

const char *lpe_zero_rule_name(lpe_zero_rule r);
/* "const" | "drop" | "floor" -> 0, else -1. */
int lpe_zero_rule_parse(lpe_zero_rule *out, const char *s);

/* D(p, q) for p, q > 0 (accurate for q near p: no cancellation); +inf for q <= 0. */
double lpe_is_loss(double p, double q);

/* Mean loss of ln q' = a ln q + b over n pairs with p, q > 0; grad [2] = (dL/da, dL/db) when
 * not NULL. */
double lpe_eval_fit_loss(double *grad, double a, double b, const double *p, const double *q, int n);
/* The minimiser (a, b) over n >= 1 pairs with p, q > 0. When all q are equal a is not
 * identified: a = 1 and b such that q' = mean p (the best constant). */
void lpe_eval_fit(double *a, double *b, const double *p, const double *q, int n);

typedef struct {
    int n;         /* targets scored */
    int n_zero;    /* of them (or, with drop, besides them) with a zero estimate */
    double a, b;   /* ln q' = a ln q + b (NaN when no target has a positive estimate) */
    double c0;     /* zero estimates' value (const rule; floor rule: the floor) or NaN */
    double fitted, unfitted, logsq, cv;
} lpe_eval_score;

/* Score T targets: p [T] true probabilities, q [T] estimates; qfit [T] (may be NULL) receives the
 * fitted estimates (NaN where a target is not scored). */
void lpe_eval_score_targets(lpe_eval_score *s, double *qfit, const double *p, const double *q,
                            int T, lpe_zero_rule rule);

/* ---- results files (methods.md §8 layout: /{dist}/targets, /{dist}/true_prob, /{dist}/{method}/estimate;
 * method groups may be named "method@key=value" for sweeps) ------------------------------ */

typedef struct {
    char name[256];     /* group name, e.g. "itgis@temperature=0.45" */
    double *estimate;   /* [T] */
    double *qfit;       /* [T] fitted estimate, NaN where not scored */
    lpe_eval_score s;
    int from_truth;     /* 1: "const" computed here from the truth (the file had no such group) */
} lpe_eval_method;

typedef struct {
    char name[256];
    int T;
    int32_t *targets;   /* [T] */
    double *true_prob;  /* [T] */
    int n_methods;
    lpe_eval_method *m; /* [NM] in canonical order (const, naive, itgis, mhis, qld, gld, others) */
} lpe_eval_dist;

typedef struct {
    char name[256];
    int n_dists;        /* distributions where the method was scored */
    double fitted, unfitted, logsq, cv; /* means over those distributions */
} lpe_eval_mean;

typedef struct {
    char path[1024];
    char label[256];    /* the model file's stem (root attribute `model`), else the file's stem */
    lpe_zero_rule rule;
    int n_dists;        /* ND: distributions with ground truth */
    lpe_eval_dist *d;   /* [ND] */
    int n_no_truth;     /* distributions skipped for want of true_prob */
    int n_means;
    lpe_eval_mean *means; /* per method over distributions, canonical order */
} lpe_eval_file;

/* Read and score every distribution of an open results file (`file` is an hid_t; path names it
 * in messages). Exit 2 on a malformed file, naming the dataset. */
void lpe_eval_load(lpe_eval_file *f, int64_t file, const char *path, lpe_zero_rule rule);
/* Write /{dist}/eval/{method} (attributes fitted, unfitted, logsq, cv, a, b, c0, n, n_zero;
 * datasets fitted_estimate [T], loss [T]) and /eval/{method} (means, n_dists), replacing any
 * earlier evaluation. */
void lpe_eval_write(int64_t file, const lpe_eval_file *f);
/* (Re)compute f->means from f->d (after distributions were added to f). */
void lpe_eval_means(lpe_eval_file *f);
void lpe_eval_free(lpe_eval_file *f);

/* Load, score and write into an open results file (the runner calls this before committing). */
void lpe_eval_results(int64_t file, const char *path, lpe_zero_rule rule);
/* The same on a closed file, in place, with the const zero rule. */
void lpe_eval_results_file(const char *path);

/* Canonical order of method names (by the part before '@', then by name). */
int lpe_eval_method_cmp(const char *a, const char *b);

#endif
