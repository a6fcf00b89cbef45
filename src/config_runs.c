/* config_runs.c: an experiment's methods -> its runs, each resolved per distribution into the
 * method's typed options (config.h, lpe_run_cfg), once, at load time.
 *
 * Dimension legend: NN = distributions run, NR = runs, NP = declared keys of a section.
 *
 * Sweeps: in a method section, every key holding several values (a list key, e.g.
 * `temperature = 0.45, 1.0`) is swept: the method runs once per combination (last key fastest),
 * each run seeing single values, stored as /{dist}/{method}@{key}={value}[,{key}={value}] with the
 * values spelled as in the INI. A run's `key[dist] = value` lines then give its values for one
 * distribution (config.c checked that such a key is not swept).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/config.h"

#define MAX_COMBOS 4096

static int count_runs(const lpe_config *c) {
    int cap = 0;
    for (int m = 0; m < c->n_methods; m++) {
        const lpe_params *p = &c->methods[m].params;
        long long combos = 1;
        for (int i = 0; i < p->n; i++) combos *= p->val[i].n > 1 ? p->val[i].n : 1;
        if (combos > MAX_COMBOS)
            lpe_fail_input("%s:%d: [%s]: %lld swept combinations (at most 4096)", c->ini_path,
                           c->methods[m].line, p->section, combos);
        cap += (int)combos;
    }
    return cap;
}

/* Run rs of mc: combination idx[NP] of its swept keys; names the run. */
static void make_run(lpe_run_cfg *rs, const lpe_config *c, const lpe_method_cfg *mc,
                     const int *idx) {
    const lpe_params *p = &mc->params;
    rs->mc = mc;
    rs->params = *p;
    size_t w = 0;
    for (int i = 0; i < p->n; i++) {
        if (p->val[i].n <= 1) continue;
        char text[256];
        lpe_param_text(p, p->spec[i]->key, idx[i], text, sizeof text);
        lpe_params_pick(&rs->params, p->spec[i]->key, idx[i]);
        w += (size_t)snprintf(rs->sweep + w, w < sizeof rs->sweep ? sizeof rs->sweep - w : 0,
                              "%s%s=%s", w ? "," : "", p->spec[i]->key, text);
    }
    if (w >= sizeof rs->sweep)
        lpe_fail_input("%s:%d: [%s]: swept values too long to name", c->ini_path, mc->line,
                       p->section);
    for (const char *s = rs->sweep; *s; s++)
        if (*s == '/')
            lpe_fail_input("%s:%d: [%s]: a swept value may not contain '/'", c->ini_path,
                           mc->line, p->section);
    snprintf(rs->group, sizeof rs->group, "%s%s%s", mc->name, rs->sweep[0] ? "@" : "", rs->sweep);
}

static int has_override(const lpe_method_cfg *mc, const char *dist) {
    for (int i = 0; i < mc->n_over; i++)
        if (!strcmp(mc->over[i].dist, dist)) return 1;
    return 0;
}

void lpe_run_params_for(lpe_params *out, const lpe_run_cfg *r, const char *dist) {
    *out = r->params;
    for (int i = 0; i < r->mc->n_over; i++)
        if (!strcmp(r->mc->over[i].dist, dist))
            lpe_params_override(out, r->mc->over[i].key, r->mc->over[i].value, r->mc->over[i].line);
}

const lpe_param_value *lpe_run_param_value(const lpe_run_cfg *r, int i, const char *dist) {
    const char *key = r->params.spec[i]->key;
    for (int j = 0; j < r->mc->n_over; j++)
        if (!strcmp(r->mc->over[j].dist, dist) && !strcmp(r->mc->over[j].key, key))
            return &r->mc->over[j].val;
    return &r->params.val[i];
}

const void *lpe_run_cfg_opts(const lpe_run_cfg *r, int d) {
    size_t sz = r->mc->est->opts_size;
    return sz ? r->opts + (size_t)d * sz : NULL;
}

/* Budget and typed options of run r for every distribution. The parameters are parsed once for
 * the distributions without `key[dist]` values, and once more for each that has some. */
static void resolve(lpe_run_cfg *r, const lpe_config *c, lpe_params *scratch) {
    const lpe_estimator *e = r->mc->est;
    const size_t sz = e->opts_size;
    r->budget = lpe_calloc((size_t)c->n_names, sizeof *r->budget);
    r->opts = lpe_calloc((size_t)c->n_names * sz + 1, 1);
    int base = -1; /* a distribution resolved from the plain run parameters */
    for (int d = 0; d < c->n_names; d++) {
        const int own = has_override(r->mc, c->names[d]);
        if (!own && base >= 0) {
            r->budget[d] = r->budget[base];
            memcpy(r->opts + (size_t)d * sz, r->opts + (size_t)base * sz, sz);
            continue;
        }
        const lpe_params *p = &r->params;
        if (own) {
            lpe_run_params_for(scratch, r, c->names[d]);
            p = scratch;
        } else {
            base = d;
        }
        r->budget[d] = lpe_param_int(p, "budget");
        if (e->parse) e->parse(r->opts + (size_t)d * sz, p);
    }
}

void lpe_config_runs(lpe_config *c) {
    c->runs = lpe_calloc((size_t)count_runs(c), sizeof *c->runs);
    lpe_params *scratch = lpe_calloc(1, sizeof *scratch);
    int r = 0;
    for (int m = 0; m < c->n_methods; m++) {
        const lpe_method_cfg *mc = &c->methods[m];
        const lpe_params *p = &mc->params;
        int idx[LPE_MAX_PARAMS] = {0};
        for (;;) {
            make_run(&c->runs[r], c, mc, idx);
            resolve(&c->runs[r++], c, scratch);
            /* next combination, last swept key fastest */
            int i = p->n - 1;
            for (; i >= 0; i--) {
                if (p->val[i].n <= 1) continue;
                if (++idx[i] < p->val[i].n) break;
                idx[i] = 0;
            }
            if (i < 0) break;
        }
    }
    c->n_runs = r;
    free(scratch);
}

void lpe_config_runs_free(lpe_config *c) {
    for (int r = 0; r < c->n_runs; r++) {
        free(c->runs[r].budget);
        free(c->runs[r].opts);
    }
    free(c->runs);
    c->runs = NULL;
    c->n_runs = 0;
}
