/* config.c: an experiment's INI file -> lpe_config (config.h), every key checked with its line.
 *
 * The format (comments start with ; or #, also after a value when preceded by a space):
 *
 *   [experiment]
 *   model = path/to/model.h5          ; paths are relative to the INI file's directory
 *   distributions = path/to/dists.h5  ; methods.md §8 distribution file
 *   names = hex, camel                ; groups to run (default: all in the file, in file order)
 *   truth = path/truth_{dist}.h5      ; ground-truth file per distribution ({dist} = its name;
 *                                     ; required when several run), `exact` (enumerate during the
 *                                     ; run; input space <= 2^24) or `none` (needs [targets] list)
 *   output = ../results/name.h5       ; default results/<INI stem>.h5 relative to the current
 *                                     ; directory; `lpe run --output` overrides
 *   seed = 1                          ; every random choice derives from it (0 .. 2^53)
 *   backend = auto                    ; cpu | cuda | auto (`lpe run --backend` overrides)
 *   batch = 0                         ; rows per backend call (0: from memory_gb)
 *   memory_gb = 2                     ; memory budget of the backend's batch buffers
 *   budget = 2^16                     ; default model calls per target for every method
 *
 *   [targets]
 *   count = 16                        ; per distribution, uniformly among tokens whose true
 *   p_min = 1e-9                      ; probability lies in [p_min, p_max] (methods.md §5)
 *   p_max = 1e-5
 *   list = 5, 17                      ; explicit targets instead (any length; continue a long
 *                                     ; list on indented lines)
 *   seed = 1                          ; target selection seed (default: the experiment's)
 *
 *   [method naive]                    ; one section per method; NAME is a registered estimator
 *   budget = 65536                    ; model calls per target (default: [experiment] budget;
 *                                     ; a list sweeps budgets)
 *   temperature = 0.45, 1.0           ; a list where the method allows one: a sweep, one run
 *                                     ; per value, stored as /{dist}/{method}@{key}={value}
 *   temperature[hex] = 5.0            ; the value for one distribution (any key; one value; the
 *                                     ; key is then not swept): the results record it
 *
 * Integers may be written 65536, 2^16 or 6.5536e4; booleans true/false/yes/no/on/off/1/0.
 * Errors: unknown sections or keys, bad or out-of-range values, a key set twice, missing files,
 * unknown distribution names or methods: "FILE:LINE: ..." and exit 2.
 *
 * How: libinih parses the text through our own line reader (ini_parse_stream). The reader counts
 * lines (this inih has no line numbers in its handler), sees section headers (inih does not
 * report empty sections) and catches lines too long for inih's buffer. All key/values are first
 * collected, then applied section by section, so that [experiment] budget may come after the
 * methods that default to it.
 */
#include "lpe/config.h"

#include <ctype.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lpe/common.h"
#include "lpe/dist.h"
#include "lpe/output_guard.h"

/* ---- the declared keys of [experiment] and [targets] ---------------------------------------- */

static const lpe_param_spec exp_spec[] = {
    {"model", LPE_P_STRING, NULL, 1, 0, 0, "model file (HDF5)"},
    {"distributions", LPE_P_STRING, NULL, 1, 0, 0, "distribution file (HDF5)"},
    {"names", LPE_P_STRING, "", 1, 0, 0, "distributions to run (default: all)"},
    {"truth", LPE_P_STRING, NULL, 1, 0, 0, "ground-truth file pattern, exact or none"},
    {"output", LPE_P_STRING, "", 1, 0, 0, "results file"},
    {"seed", LPE_P_INT, "1", 0, 9007199254740992.0, 0, "experiment seed"},
    {"backend", LPE_P_STRING, "auto", 1, 0, 0, "cpu, cuda or auto"},
    {"batch", LPE_P_INT, "0", 0, 1 << 30, 0, "rows per backend call (0: from memory_gb)"},
    {"memory_gb", LPE_P_DOUBLE, "2", 1e-3, 1e6, 0, "memory budget for batch buffers"},
    {"budget", LPE_P_INT, "", 1, 9007199254740992.0, 0, "default model calls per target"},
    {NULL},
};

static const lpe_param_spec tgt_spec[] = {
    {"count", LPE_P_INT, "16", 1, 1 << 24, 0, "targets per distribution"},
    {"p_min", LPE_P_DOUBLE, "1e-9", 1e-300, 1, 0, "lowest true probability of a target"},
    {"p_max", LPE_P_DOUBLE, "1e-5", 1e-300, 1, 0, "highest true probability of a target"},
    {"list", LPE_P_STRING, "", 1, 0, 0, "explicit targets"},
    {"seed", LPE_P_INT, "", 0, 9007199254740992.0, 0, "target selection seed"},
    {NULL},
};

/* ---- collecting the file ----------------------------------------------------------------- */

typedef struct {
    char section[128]; /* trimmed */
    char key[128];
    char *value;       /* malloc'd */
    int line;
} entry;

typedef struct {
    char name[128];
    int line;
} header;

typedef struct {
    const char *path;
    const char *text; /* [len] */
    size_t pos, len;
    int line;          /* number of the line last handed to inih */
    const char *raw;   /* that line, raw */
    size_t raw_len;
    int too_long;      /* first line too long for inih's buffer */
    int max_line;
    entry *e;
    int n_e, cap_e;
    header *h;
    int n_h, cap_h;
    int outside;       /* first line with a key before any section */
    char last_sec[128], last_name[128]; /* what inih passed last (it repeats it for continuations) */
    int last_line;
} collector;

static void trim(char *s) {
    size_t n = strlen(s), a = 0;
    while (a < n && isspace((unsigned char)s[a])) a++;
    while (n > a && isspace((unsigned char)s[n - 1])) n--;
    memmove(s, s + a, n - a);
    s[n - a] = 0;
}

/* fgets over the text, counting lines and noting headers. */
static char *reader(char *str, int num, void *stream) {
    collector *c = stream;
    if (c->pos >= c->len) return NULL;
    const char *s = c->text + c->pos;
    const char *nl = memchr(s, '\n', c->len - c->pos);
    size_t n = nl ? (size_t)(nl - s) + 1 : c->len - c->pos;
    c->pos += n;
    c->line++;
    c->raw = s;
    c->raw_len = n;
    c->max_line = num;
    /* inih needs room for the text, "\r\n" and NUL; a longer line would be split in two */
    size_t keep = n;
    if (n + 2 > (size_t)num) {
        if (!c->too_long) c->too_long = c->line;
        keep = (size_t)num - 3;
    }
    memcpy(str, s, keep);
    if (keep < n) str[keep++] = '\n';
    str[keep] = 0;
    /* section header? (inih reports none for a section without keys) */
    size_t a = 0;
    while (a < n && (s[a] == ' ' || s[a] == '\t')) a++;
    if (a < n && s[a] == '[') {
        const char *close = memchr(s + a, ']', n - a);
        if (close) {
            if (c->n_h == c->cap_h) {
                c->cap_h = c->cap_h ? 2 * c->cap_h : 8;
                c->h = lpe_realloc(c->h, (size_t)c->cap_h * sizeof *c->h);
            }
            header *h = &c->h[c->n_h++];
            size_t len = (size_t)(close - (s + a + 1));
            if (len >= sizeof h->name) len = sizeof h->name - 1;
            memcpy(h->name, s + a + 1, len);
            h->name[len] = 0;
            trim(h->name);
            h->line = c->line;
        }
    }
    return str;
}

static entry *push(collector *c) {
    if (c->n_e == c->cap_e) {
        c->cap_e = c->cap_e ? 2 * c->cap_e : 32;
        c->e = lpe_realloc(c->e, (size_t)c->cap_e * sizeof *c->e);
    }
    entry *e = &c->e[c->n_e++];
    memset(e, 0, sizeof *e);
    return e;
}

static int handler(void *user, const char *section, const char *name, const char *value) {
    collector *c = user;
    char sec[128];
    snprintf(sec, sizeof sec, "%s", section);
    trim(sec);
    if (!sec[0]) {
        if (!c->outside) c->outside = c->line;
        return 1;
    }
    entry *prev = c->n_e ? &c->e[c->n_e - 1] : NULL;
    int indented = c->raw_len && (c->raw[0] == ' ' || c->raw[0] == '\t');
    int cont = indented && prev && c->last_line < c->line && !strcmp(c->last_sec, sec) &&
               !strcmp(c->last_name, name);
    snprintf(c->last_sec, sizeof c->last_sec, "%s", sec);
    snprintf(c->last_name, sizeof c->last_name, "%.127s", name);
    c->last_line = c->line;
    if (cont) {
        /* inih's continuation line. An indented "key = value" is a key of its own (an indented
         * file is not a multi-line value); anything else continues the previous value. */
        char raw[4096];
        size_t n = c->raw_len < sizeof raw - 1 ? c->raw_len : sizeof raw - 1;
        memcpy(raw, c->raw, n);
        raw[n] = 0;
        for (char *p = raw + 1; *p; p++) /* inline comment: ';' after whitespace */
            if (*p == ';' && isspace((unsigned char)p[-1])) {
                *p = 0;
                break;
            }
        char *eq = strchr(raw, '=');
        if (eq) {
            *eq = 0;
            entry *e = push(c);
            snprintf(e->section, sizeof e->section, "%s", sec);
            snprintf(e->key, sizeof e->key, "%.127s", raw);
            trim(e->key);
            trim(eq + 1);
            e->value = lpe_strdup(eq + 1);
            e->line = c->line;
            return 1;
        }
        /* join list continuations: "1, 2," + "3" and "1, 2" + "3" both become "1, 2, 3" */
        size_t a = strlen(prev->value), b = strlen(value);
        prev->value = lpe_realloc(prev->value, a + b + 3);
        int comma = a > 0 && prev->value[a - 1] == ',';
        sprintf(prev->value + a, "%s%s", comma ? " " : (a ? ", " : ""), value);
        return 1;
    }
    entry *e = push(c);
    snprintf(e->section, sizeof e->section, "%s", sec);
    snprintf(e->key, sizeof e->key, "%s", name);
    e->value = lpe_strdup(value);
    e->line = c->line;
    return 1;
}

/* ---- paths --------------------------------------------------------------------------------- */

/* Lexical clean-up: "experiments/../results/x.h5" -> "results/x.h5" (drops "." components and
 * "name/.." pairs; leading ".." stay). Messages and the results file then name paths plainly. */
static void normalize(char *path) {
    char *comp[512];
    int n = 0, abs = path[0] == '/';
    char buf[LPE_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "/"); tok && n < 512; tok = strtok(NULL, "/")) {
        if (!strcmp(tok, ".")) continue;
        if (!strcmp(tok, "..") && n > 0 && strcmp(comp[n - 1], "..")) {
            n--;
            continue;
        }
        if (!strcmp(tok, "..") && abs) continue; /* /.. is / */
        comp[n++] = tok;
    }
    size_t w = 0;
    if (abs) path[w++] = '/';
    for (int i = 0; i < n; i++) {
        size_t len = strlen(comp[i]);
        if (i) path[w++] = '/';
        memcpy(path + w, comp[i], len);
        w += len;
    }
    if (w == 0) path[w++] = '.';
    path[w] = 0;
}

static void resolve(char *out, size_t n, const char *dir, const char *p) {
    int rel = p[0] != '/' && dir[0] && strcmp(dir, ".");
    size_t need = (rel ? strlen(dir) + 1 : 0) + strlen(p) + 1;
    if (need > n) lpe_fail_input("path too long: %s", p);
    if (rel) {
        memcpy(out, dir, strlen(dir));
        out[strlen(dir)] = '/';
        memcpy(out + strlen(dir) + 1, p, strlen(p) + 1);
    } else {
        memcpy(out, p, strlen(p) + 1);
    }
    normalize(out);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void need_file(const lpe_params *p, const char *key, const char *path) {
    if (!is_file(path)) lpe_params_fail(p, key, "file not found: %s", path);
}

void lpe_config_truth_path(char *out, int n, const lpe_config *c, const char *name) {
    const char *at = strstr(c->truth, "{dist}");
    if (!at) {
        snprintf(out, (size_t)n, "%s", c->truth);
        return;
    }
    snprintf(out, (size_t)n, "%.*s%s%s", (int)(at - c->truth), c->truth, name, at + 6);
}

/* ---- sections ------------------------------------------------------------------------------ */

/* "method NAME" -> NAME (NULL when the section is not a method section) */
static const char *method_name(const char *section) {
    if (strncmp(section, "method", 6) != 0 || !isspace((unsigned char)section[6])) return NULL;
    const char *s = section + 6;
    while (isspace((unsigned char)*s)) s++;
    return s;
}

static void list_estimators(char *out, size_t n) {
    size_t w = 0;
    out[0] = 0;
    for (int i = 0; i < lpe_estimator_count() && w < n; i++)
        w += (size_t)snprintf(out + w, n - w, "%s%s", i ? ", " : "", lpe_estimator_at(i)->name);
}

static void parse_names(lpe_config *c, const char *names) {
    int n_file = 0;
    char **in_file = lpe_dist_names(c->dists, &n_file);
    char known[2048] = "";
    for (int i = 0, w = 0; i < n_file && w < (int)sizeof known; i++)
        w += snprintf(known + w, sizeof known - (size_t)w, "%s%s", i ? ", " : "", in_file[i]);
    if (!names[0]) { /* all of them */
        if (n_file == 0) lpe_fail_input("%s: no distributions in %s", c->ini_path, c->dists);
        c->n_names = n_file;
        c->names = lpe_calloc((size_t)n_file, sizeof *c->names);
        for (int i = 0; i < n_file; i++) snprintf(c->names[i], LPE_NAME_MAX, "%s", in_file[i]);
    } else {
        int cap = 1;
        for (const char *s = names; *s; s++) cap += *s == ',';
        c->names = lpe_calloc((size_t)cap, sizeof *c->names);
        const char *s = names;
        for (;;) {
            const char *comma = strchr(s, ',');
            size_t len = comma ? (size_t)(comma - s) : strlen(s);
            char nm[LPE_NAME_MAX];
            snprintf(nm, sizeof nm, "%.*s", (int)len, s);
            trim(nm);
            if (!nm[0]) lpe_params_fail(&c->exp, "names", "empty name in '%s'", names);
            int found = 0;
            for (int i = 0; i < n_file; i++) found |= !strcmp(in_file[i], nm);
            if (!found)
                lpe_params_fail(&c->exp, "names", "distribution '%s' not in %s (it has: %s)", nm,
                                c->dists, n_file ? known : "none");
            for (int i = 0; i < c->n_names; i++)
                if (!strcmp(c->names[i], nm)) lpe_params_fail(&c->exp, "names", "'%s' named twice", nm);
            snprintf(c->names[c->n_names++], LPE_NAME_MAX, "%s", nm);
            if (!comma) break;
            s = comma + 1;
        }
    }
    for (int i = 0; i < n_file; i++) free(in_file[i]);
    free(in_file);
}

static void parse_target_list(lpe_config *c, const char *text, int line) {
    int cap = 1;
    for (const char *s = text; *s; s++) cap += *s == ',';
    c->list = lpe_calloc((size_t)cap, sizeof *c->list);
    c->list_line = line;
    const char *s = text;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        char item[64], *end;
        snprintf(item, sizeof item, "%.*s", (int)(len < 63 ? len : 63), s);
        trim(item);
        long long v = strtoll(item, &end, 10);
        if (!item[0] || *end || v < 0 || v > INT32_MAX)
            lpe_fail_input("%s:%d: [targets] list: expected token ids (integers >= 0), got '%s'",
                           c->ini_path, line, item);
        for (int i = 0; i < c->n_list; i++)
            if (c->list[i] == v)
                lpe_fail_input("%s:%d: [targets] list: token %lld listed twice", c->ini_path, line, v);
        c->list[c->n_list++] = (int32_t)v;
        if (!comma) break;
        s = comma + 1;
    }
}

/* `key[dist] = value` in a method section: the value of `key` for distribution `dist` only
 * (the paper tuned temperatures per model, method and distribution). Checked here like any
 * value; one value, not a list, and the key may not be swept. */
static void add_override(lpe_config *c, lpe_method_cfg *mc, const char *path, const char *section,
                         const char *key, const char *value, int line) {
    const char *lb = strchr(key, '['), *rb = strchr(key, ']');
    if (!rb || rb < lb || rb[1] || rb == lb + 1 || lb == key)
        lpe_fail_input("%s:%d: [%s] %s: expected key[distribution]", path, line, section, key);
    lpe_param_override o = {.line = line};
    snprintf(o.key, sizeof o.key, "%.*s", (int)(lb - key), key);
    snprintf(o.dist, sizeof o.dist, "%.*s", (int)(rb - lb - 1), lb + 1);
    snprintf(o.value, sizeof o.value, "%s", value);
    int known = 0;
    for (int i = 0; i < c->n_names; i++) known |= !strcmp(c->names[i], o.dist);
    if (!known)
        lpe_fail_input("%s:%d: [%s] %s: '%s' is not one of the distributions run", path, line,
                       section, key, o.dist);
    for (int i = 0; i < mc->n_over; i++)
        if (!strcmp(mc->over[i].key, o.key) && !strcmp(mc->over[i].dist, o.dist))
            lpe_fail_input("%s:%d: [%s] %s: set twice (first at line %d)", path, line, section, key,
                           mc->over[i].line);
    lpe_params probe = mc->params; /* validates the key and the value */
    lpe_params_override(&probe, o.key, value, line);
    if (lpe_param_count(&probe, o.key) > 1)
        lpe_fail_input("%s:%d: [%s] %s: a per-distribution value is one value, not a list", path,
                       line, section, key);
    if (lpe_param_count(&mc->params, o.key) > 1)
        lpe_fail_input("%s:%d: [%s] %s: %s is swept in this section; a swept key cannot also have "
                       "per-distribution values", path, line, section, key, o.key);
    for (int i = 0; i < probe.n; i++)
        if (!strcmp(probe.spec[i]->key, o.key)) o.val = probe.val[i];
    mc->over = lpe_realloc(mc->over, (size_t)(mc->n_over + 1) * sizeof *mc->over);
    mc->over[mc->n_over++] = o;
}

/* The file's text, verbatim, into c->text; returns its length. */
static size_t read_text(lpe_config *c, const char *path) {
    lpe_input_check(path, "experiment file", LPE_INI_MAX_BYTES); /* not /dev/zero, a FIFO, > 16 MiB */
    FILE *f = fopen(path, "rb");
    if (!f) lpe_fail_input("%s: cannot open the experiment file", path);
    size_t cap = 4096, len = 0, r;
    c->text = lpe_calloc(cap, 1);
    while ((r = fread(c->text + len, 1, cap - len - 1, f)) > 0) {
        len += r;
        if (len > LPE_INI_MAX_BYTES) /* it grew since it was checked */
            lpe_fail_input("%s: experiment file larger than %d bytes", path, LPE_INI_MAX_BYTES);
        if (len + 1 == cap) {
            cap *= 2;
            c->text = lpe_realloc(c->text, cap);
        }
    }
    fclose(f);
    c->text[len] = 0;
    if (strlen(c->text) != len) lpe_fail_input("%s: not a text file (contains NUL bytes)", path);
    return len;
}

/* Every key = value and section header of the text, with lines, into col. */
static void collect(collector *col, const lpe_config *c, const char *path, size_t len) {
    *col = (collector){.path = path, .text = c->text, .len = len};
    int err = ini_parse_stream(reader, col, handler, col);
    if (col->too_long && (err <= 0 || col->too_long <= err))
        lpe_fail_input("%s:%d: line longer than %d characters (continue a long value on indented "
                       "lines)", path, col->too_long, col->max_line - 3);
    if (err > 0)
        lpe_fail_input("%s:%d: syntax error (expected `[section]`, `key = value` or a comment)",
                       path, err);
    if (err < 0) lpe_fail("%s: INI parser failed (%d)", path, err);
    if (col->outside)
        lpe_fail_input("%s:%d: key outside any section (start with [experiment])", path, col->outside);
}

/* Sections: known, not repeated, [experiment] present, at least one method (counted). */
static void check_sections(lpe_config *c, const collector *col, const char *path) {
    int exp_line = 0;
    for (int i = 0; i < col->n_h; i++) {
        const header *h = &col->h[i];
        for (int j = 0; j < i; j++)
            if (!strcmp(col->h[j].name, h->name))
                lpe_fail_input("%s:%d: section [%s] repeated (first at line %d)", path, h->line,
                               h->name, col->h[j].line);
        const char *mn = method_name(h->name);
        if (!strcmp(h->name, "experiment")) {
            exp_line = h->line;
        } else if (!strcmp(h->name, "targets")) {
        } else if (mn) {
            if (!lpe_estimator_find(mn)) {
                char known[1024];
                list_estimators(known, sizeof known);
                lpe_fail_input("%s:%d: [%s]: unknown method '%s' (known: %s)", path, h->line,
                               h->name, mn, known);
            }
            c->n_methods++;
        } else {
            lpe_fail_input("%s:%d: unknown section [%s] (expected [experiment], [targets] or "
                           "[method NAME])", path, h->line, h->name);
        }
    }
    if (!exp_line) lpe_fail_input("%s: no [experiment] section", path);
    if (!c->n_methods) lpe_fail_input("%s: no [method NAME] section: nothing to run", path);
}

/* [experiment] and [targets] keys into c->exp and c->tgt; the targets' list text (any length:
 * parsed by parse_target_list, not held in a 255-byte value) and its line come back apart. */
static const char *set_exp_targets(lpe_config *c, const collector *col, const char *path,
                                   int *list_line) {
    lpe_params_init(&c->exp, exp_spec, path, "experiment");
    lpe_params_init(&c->tgt, tgt_spec, path, "targets");
    const char *list_text = NULL;
    *list_line = 0;
    for (int i = 0; i < col->n_e; i++) {
        const entry *e = &col->e[i];
        if (!strcmp(e->section, "experiment")) {
            lpe_params_set(&c->exp, e->key, e->value, e->line);
        } else if (!strcmp(e->section, "targets")) {
            if (!strcmp(e->key, "list")) {
                if (*list_line)
                    lpe_fail_input("%s:%d: [targets] list: set twice (first at line %d)", path,
                                   e->line, *list_line);
                list_text = e->value;
                *list_line = e->line;
            } else {
                lpe_params_set(&c->tgt, e->key, e->value, e->line);
            }
        }
    }
    lpe_params_check_complete(&c->exp);
    lpe_params_check_complete(&c->tgt);
    return list_text;
}

/* The files of [experiment]: model, distributions (and the names run), truth, output. */
static void resolve_files(lpe_config *c, const char *path, const char *output_override) {
    char tmp[LPE_PATH_MAX];
    resolve(c->model, sizeof c->model, c->ini_dir, lpe_param_str(&c->exp, "model"));
    need_file(&c->exp, "model", c->model);
    resolve(c->dists, sizeof c->dists, c->ini_dir, lpe_param_str(&c->exp, "distributions"));
    need_file(&c->exp, "distributions", c->dists);
    parse_names(c, lpe_param_str(&c->exp, "names"));

    const char *truth = lpe_param_str(&c->exp, "truth");
    if (!strcmp(truth, "exact")) {
        c->truth_kind = LPE_TRUTH_EXACT;
    } else if (!strcmp(truth, "none")) {
        c->truth_kind = LPE_TRUTH_NONE;
    } else {
        c->truth_kind = LPE_TRUTH_FILE;
        resolve(c->truth, sizeof c->truth, c->ini_dir, truth);
        if (c->n_names > 1 && !strstr(c->truth, "{dist}"))
            lpe_params_fail(&c->exp, "truth", "%d distributions run but the path has no {dist} "
                            "(one ground-truth file per distribution)", c->n_names);
        for (int i = 0; i < c->n_names; i++) {
            lpe_config_truth_path(tmp, sizeof tmp, c, c->names[i]);
            need_file(&c->exp, "truth", tmp);
        }
    }

    const char *out = lpe_param_str(&c->exp, "output");
    const char *slash = strrchr(path, '/');
    if (output_override && output_override[0]) {
        snprintf(c->output, sizeof c->output, "%s", output_override);
    } else if (out[0]) {
        resolve(c->output, sizeof c->output, c->ini_dir, out);
    } else {
        const char *base = slash ? slash + 1 : path;
        size_t n = strlen(base);
        if (n > 4 && !strcmp(base + n - 4, ".ini")) n -= 4;
        snprintf(c->output, sizeof c->output, "results/%.*s.h5", (int)n, base);
    }
}

/* The scalars of [experiment] and [targets]. */
static void resolve_scalars(lpe_config *c, const char *list_text, int list_line) {
    c->seed = (uint64_t)lpe_param_int(&c->exp, "seed");
    snprintf(c->backend, sizeof c->backend, "%s", lpe_param_str(&c->exp, "backend"));
    if (strcmp(c->backend, "cpu") && strcmp(c->backend, "cuda") && strcmp(c->backend, "auto"))
        lpe_params_fail(&c->exp, "backend", "expected cpu, cuda or auto, got '%s'", c->backend);
    c->batch = lpe_param_int(&c->exp, "batch");
    c->memory_gb = lpe_param_double(&c->exp, "memory_gb");

    c->count = (int)lpe_param_int(&c->tgt, "count");
    c->p_min = lpe_param_double(&c->tgt, "p_min");
    c->p_max = lpe_param_double(&c->tgt, "p_max");
    if (c->p_min > c->p_max)
        lpe_params_fail(&c->tgt, "p_max", "p_max %g is below p_min %g", c->p_max, c->p_min);
    c->target_seed =
        lpe_param_is_set(&c->tgt, "seed") ? (uint64_t)lpe_param_int(&c->tgt, "seed") : c->seed;
    if (list_text) parse_target_list(c, list_text, list_line);
    if (c->truth_kind == LPE_TRUTH_NONE && !c->n_list)
        lpe_params_fail(&c->exp, "truth", "`none` needs explicit targets ([targets] list)");
}

/* [method NAME] sections: the estimator's keys + budget (default: [experiment] budget). */
static void load_methods(lpe_config *c, const collector *col, const char *path) {
    char btext[64] = "";
    lpe_param_text(&c->exp, "budget", 0, btext, sizeof btext);
    snprintf(c->budget_def, sizeof c->budget_def, "%s", btext);
    /* a list of budgets is a sweep like any other (convergence studies) */
    c->budget_spec[0] = (lpe_param_spec){"budget", LPE_P_INT, btext[0] ? c->budget_def : NULL, 1,
                                         9007199254740992.0, 1,
                                         "model calls per target (or [experiment] budget)"};
    c->budget_spec[1] = (lpe_param_spec){NULL};
    c->methods = lpe_calloc((size_t)c->n_methods, sizeof *c->methods);
    int m = 0;
    for (int i = 0; i < col->n_h; i++) {
        const char *mn = method_name(col->h[i].name), *sec = col->h[i].name;
        if (!mn) continue;
        lpe_method_cfg *mc = &c->methods[m++];
        snprintf(mc->name, sizeof mc->name, "%s", mn);
        mc->est = lpe_estimator_find(mn);
        mc->line = col->h[i].line;
        lpe_params_init(&mc->params, mc->est->params, path, sec);
        int has_budget = 0;
        for (int j = 0; j < mc->params.n; j++) has_budget |= !strcmp(mc->params.spec[j]->key, "budget");
        if (!has_budget) lpe_params_add_spec(&mc->params, c->budget_spec);
        const entry *e = col->e;
        for (int j = 0; j < col->n_e; j++)
            if (!strcmp(e[j].section, sec) && !strchr(e[j].key, '['))
                lpe_params_set(&mc->params, e[j].key, e[j].value, e[j].line);
        for (int j = 0; j < col->n_e; j++)
            if (!strcmp(e[j].section, sec) && strchr(e[j].key, '['))
                add_override(c, mc, path, sec, e[j].key, e[j].value, e[j].line);
        if (!lpe_param_is_set(&mc->params, "budget"))
            lpe_fail_input("%s:%d: [%s]: no budget (set `budget` here or in [experiment])", path,
                           mc->line, sec);
        lpe_params_check_complete(&mc->params);
    }
}

void lpe_config_load(lpe_config *c, const char *path, const char *output_override) {
    memset(c, 0, sizeof *c);
    snprintf(c->ini_path, sizeof c->ini_path, "%s", path);
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(c->ini_dir, sizeof c->ini_dir, "%.*s", (int)(slash - path), path);
    if (slash == path) snprintf(c->ini_dir, sizeof c->ini_dir, "/");

    collector col;
    collect(&col, c, path, read_text(c, path));
    check_sections(c, &col, path);
    int list_line;
    const char *list_text = set_exp_targets(c, &col, path, &list_line);
    resolve_files(c, path, output_override);
    resolve_scalars(c, list_text, list_line);
    load_methods(c, &col, path);
    lpe_config_runs(c); /* sweeps and per-distribution values -> typed options, per run */

    for (int i = 0; i < col.n_e; i++) free(col.e[i].value);
    free(col.e);
    free(col.h);
}

void lpe_config_free(lpe_config *c) {
    lpe_config_runs_free(c);
    free(c->text);
    free(c->names);
    free(c->list);
    for (int m = 0; m < c->n_methods; m++) free(c->methods[m].over);
    free(c->methods);
    memset(c, 0, sizeof *c);
}
