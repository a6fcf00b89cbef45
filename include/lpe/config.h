/* config.h: an experiment's INI file -> typed structs, every key checked, with its line.
 *
 * Dimension legend: NN = number of distributions to run, NM = number of [method NAME] sections,
 *   TL = number of explicit targets ([targets] list).
 *
 * The INI format is documented atop src/config.c (and in docs/). Loading checks everything that
 * can be checked without the model's weights: sections, keys, values, that the files exist, that
 * the named distributions are in the distribution file, that each method is registered and
 * the methods' own checks of their options (their parse(), run for every run and distribution).
 * Checks that need the model (target ids against d_vocab) are made by the runner, which reports
 * them with the line kept here (list_line).
 */
#ifndef LPE_CONFIG_H
#define LPE_CONFIG_H

#include <stdint.h>

#include "lpe/estimator.h"
#include "lpe/params.h"

enum { LPE_TRUTH_FILE = 0, LPE_TRUTH_EXACT = 1, LPE_TRUTH_NONE = 2 };

#define LPE_PATH_MAX 1024
#define LPE_NAME_MAX 256

typedef struct {              /* `key[dist] = value`: this method's value for one distribution */
    char dist[LPE_NAME_MAX];
    char key[64];
    char value[256];
    int line;
    lpe_param_value val;      /* the value as parsed (the results record it) */
} lpe_param_override;

typedef struct {
    char name[128];           /* NAME of [method NAME]: the estimator's name */
    const lpe_estimator *est; /* from the registry */
    lpe_params params;        /* the estimator's keys + the common `budget` */
    int line;                 /* line of the section header */
    int n_over;
    lpe_param_override *over; /* [n_over] per-distribution values */
} lpe_method_cfg;

/* One run: a method section, or one combination of its swept values (src/config_runs.c).
 * Every key is resolved at load time, once per distribution, into the method's typed options. */
typedef struct {
    const lpe_method_cfg *mc;
    lpe_params params;        /* the section with swept keys reduced to this run's values */
    char group[400];          /* results group name: NAME or NAME@key=value[,key=value] */
    char sweep[256];          /* "key=value,..." or "" */
    long long *budget;        /* [NN] model calls per target, per distribution */
    unsigned char *opts;      /* [NN, mc->est->opts_size] typed options, per distribution */
} lpe_run_cfg;

typedef struct {
    char ini_path[LPE_PATH_MAX]; /* as given */
    char ini_dir[LPE_PATH_MAX];  /* directory relative paths in the file are resolved against */
    char *text;                  /* the INI text, verbatim (recorded in the results) */
    lpe_params exp, tgt;         /* [experiment] and [targets] as parsed (values with lines) */

    /* [experiment], resolved */
    char model[LPE_PATH_MAX];
    char dists[LPE_PATH_MAX];
    int n_names;                  /* NN */
    char (*names)[LPE_NAME_MAX];  /* [NN] distribution groups to run, in order */
    int truth_kind;               /* LPE_TRUTH_* */
    char truth[LPE_PATH_MAX];     /* truth file pattern ({dist} substituted per distribution) */
    char output[LPE_PATH_MAX];    /* results file */
    uint64_t seed;
    char backend[16];             /* cpu | cuda | auto */
    long long batch;              /* rows per backend call; 0: from memory_gb */
    double memory_gb;

    /* [targets] */
    int count;                    /* per distribution (when no list) */
    double p_min, p_max;
    int n_list;                   /* TL; 0: choose at random */
    int32_t *list;                /* [TL] explicit targets, as written (sorted by the runner) */
    int list_line;                /* INI line of `list` (for errors found later) */
    uint64_t target_seed;

    int n_methods;                /* NM */
    lpe_method_cfg *methods;      /* [NM] in file order */
    int n_runs;                   /* NR */
    lpe_run_cfg *runs;            /* [NR] methods' runs, in file order, last swept key fastest */

    /* storage the params keep pointers into: the common budget key */
    lpe_param_spec budget_spec[2];
    char budget_def[64];
} lpe_config;

/* Parse and check `path`, down to every run's typed options per distribution. Fill c in place
 * and do not copy it afterwards: the methods' params point into it (budget_spec), the runs into
 * c->methods. output_override (may be NULL): --output, relative to the current
 * directory. Exit 2 with "FILE:LINE: ..." on any problem. */
void lpe_config_load(lpe_config *c, const char *path, const char *output_override);
void lpe_config_free(lpe_config *c);

/* The truth file of distribution `name` (the pattern with {dist} substituted). */
void lpe_config_truth_path(char *out, int n, const lpe_config *c, const char *name);

/* (src/config_runs.c) Expand the methods into runs and resolve every (run, distribution):
 * exit 2 "FILE:LINE: ..." on too many combinations or a method's own check (its parse). Called
 * by lpe_config_load. */
void lpe_config_runs(lpe_config *c);
void lpe_config_runs_free(lpe_config *c);
/* Run r's typed options for distribution d (NULL when the method has none). */
const void *lpe_run_cfg_opts(const lpe_run_cfg *r, int d);
/* Run r's parameters with distribution `dist`'s `key[dist]` values applied into *out (26 KB:
 * for error reports, not the hot path). */
void lpe_run_params_for(lpe_params *out, const lpe_run_cfg *r, const char *dist);
/* The value of parameter i of r->params for distribution `dist` (its `key[dist]` value when
 * there is one). */
const lpe_param_value *lpe_run_param_value(const lpe_run_cfg *r, int i, const char *dist);

#endif
