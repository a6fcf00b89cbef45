/* params.c: typed, declared key = value parameters of one INI section (see params.h).
 *
 * Dimension legend: NP = number of declared keys of a section (<= LPE_MAX_PARAMS),
 *   NL = number of values of a list key (<= LPE_MAX_LIST).
 *
 * Every value keeps its text as written (str, trimmed) besides the parsed numbers, so that the
 * runner can name sweep runs by the user's own spelling ("temperature=0.45", not 0.450000) and
 * record parameters verbatim. Defaults go through the same parser as INI text (line 0), so a
 * default is validated exactly like a user value; a bad default is a bug (exit 1).
 *
 * Accepted spellings:
 *   int:    decimal (-12), 2^16 (powers are common for budgets), or an integral 1e6;
 *   double: anything strtod reads, finite;
 *   bool:   1/0, true/false, yes/no, on/off (any case);
 *   string: the trimmed text, at most 255 bytes.
 * A list is comma-separated, each item parsed alone; only keys declared `list` accept several.
 */
#include "lpe/params.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lpe/common.h"

static const char *type_name(lpe_param_type t) {
    switch (t) {
    case LPE_P_INT: return "an integer";
    case LPE_P_DOUBLE: return "a number";
    case LPE_P_BOOL: return "true or false";
    default: return "a string";
    }
}

/* Location prefix "FILE:LINE: [section] key" (LINE omitted for defaults). */
static void where(char *out, size_t n, const lpe_params *p, const char *key, int line) {
    if (line > 0)
        snprintf(out, n, "%s:%d: [%s] %s", p->file, line, p->section, key);
    else
        snprintf(out, n, "%s: [%s] %s", p->file, p->section, key);
}

static int find(const lpe_params *p, const char *key) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->spec[i]->key, key) == 0) return i;
    return -1;
}

static int find_required(const lpe_params *p, const char *key) {
    int i = find(p, key);
    if (i < 0) lpe_fail("internal: parameter '%s' is not declared in [%s]", key, p->section);
    return i;
}

/* Copy s[0..n) trimmed into out (size cap); returns the trimmed length. */
static size_t trim_copy(char *out, size_t cap, const char *s, size_t n) {
    while (n > 0 && isspace((unsigned char)*s)) s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
    if (n >= cap) n = cap - 1;
    memcpy(out, s, n);
    out[n] = 0;
    return n;
}

/* Parse one scalar item. Returns 0 on success, else writes why into err. */
static int parse_item(double *out, const char *item, lpe_param_type t, char *err, size_t errn) {
    char *end;
    if (!*item) {
        snprintf(err, errn, "empty value");
        return 1;
    }
    if (t == LPE_P_BOOL) {
        static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(item, yes[i]) == 0) return *out = 1, 0;
            if (strcasecmp(item, no[i]) == 0) return *out = 0, 0;
        }
        snprintf(err, errn, "expected true or false, got '%s'", item);
        return 1;
    }
    if (t == LPE_P_INT) {
        const char *caret = strchr(item, '^');
        if (caret) { /* base^exponent, both plain integers */
            errno = 0;
            long long b = strtoll(item, &end, 10);
            if (end != caret || end == item) goto bad_int;
            long long e = strtoll(caret + 1, &end, 10);
            if (*end || end == caret + 1 || errno || e < 0) goto bad_int;
            double v = pow((double)b, (double)e);
            if (!(fabs(v) <= 9007199254740992.0)) goto too_large;
            return *out = v, 0;
        }
        errno = 0;
        long long v = strtoll(item, &end, 10);
        if (*end == 0 && end != item && !errno) {
            if (llabs(v) > 9007199254740992LL) goto too_large; /* stored as double: 2^53 exact */
            return *out = (double)v, 0;
        }
        double d = strtod(item, &end); /* 1e6: allowed when integral */
        if (*end == 0 && end != item && (isinf(d) || (d == floor(d) && fabs(d) > 9007199254740992.0)))
            goto too_large;
        if (*end == 0 && end != item && isfinite(d) && d == floor(d))
            return *out = d, 0;
        goto bad_int;
    too_large: /* integers are kept as doubles, exact up to 2^53 */
        snprintf(err, errn, "'%s' is too large: integers go up to 2^53 = 9007199254740992", item);
        return 1;
    bad_int:
        snprintf(err, errn, "expected an integer, got '%s'", item);
        return 1;
    }
    errno = 0;
    double d = strtod(item, &end);
    if (*end || end == item || !isfinite(d)) {
        snprintf(err, errn, "expected a number, got '%s'", item);
        return 1;
    }
    return *out = d, 0;
}

/* The same for a list of strings (compared trimmed). */
static int repeated_string(const char *list, char *err, size_t errn) {
    char item[LPE_MAX_LIST][256];
    int n = 0;
    for (const char *p = list;; n++) {
        const char *comma = strchr(p, ',');
        trim_copy(item[n], sizeof item[n], p, comma ? (size_t)(comma - p) : strlen(p));
        for (int j = 0; j < n; j++)
            if (!strcmp(item[j], item[n])) {
                snprintf(err, errn, "'%s' listed twice: each value once", item[n]);
                return 1;
            }
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

/* A list naming one value twice (0.5, 0.50 or 2^8, 256: compared as parsed) would run the same
 * sweep point twice under two names, or twice under one: refused while the file is read. */
static int repeated_value(const lpe_param_value *v, char *err, size_t errn) {
    for (int i = 1; i < v->n; i++)
        for (int j = 0; j < i; j++)
            if (v->num[i] == v->num[j]) {
                snprintf(err, errn, "value %d of the list repeats value %d (%.17g): each value once",
                         i + 1, j + 1, v->num[i]);
                return 1;
            }
    return 0;
}

/* Parse `text` for spec s into v. Returns 0 or writes why into err. */
static int parse_value(lpe_param_value *v, const lpe_param_spec *s, const char *text, char *err,
                       size_t errn) {
    char buf[4096];
    size_t len = trim_copy(buf, sizeof buf, text, strlen(text));
    if (len >= sizeof v->str) {
        snprintf(err, errn, "value longer than %d characters", (int)sizeof v->str - 1);
        return 1;
    }
    memcpy(v->str, buf, len + 1);
    v->n = 0;
    if (s->type == LPE_P_STRING) {
        /* a list string (a sweep over, e.g., variant = paper, arc) splits at commas; any other
         * string keeps its commas (names = hex, camel is one value) */
        v->n = 1;
        for (const char *c = buf; s->list && (c = strchr(c, ',')); c++) v->n++;
        if (v->n > LPE_MAX_LIST) {
            snprintf(err, errn, "more than %d values", LPE_MAX_LIST);
            return 1;
        }
        return v->n > 1 ? repeated_string(buf, err, errn) : 0;
    }
    const char *p = buf;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char item[256];
        trim_copy(item, sizeof item, p, n);
        if (v->n >= LPE_MAX_LIST) {
            snprintf(err, errn, "more than %d values", LPE_MAX_LIST);
            return 1;
        }
        double x;
        if (parse_item(&x, item, s->type, err, errn)) return 1;
        if (s->min <= s->max && (x < s->min || x > s->max)) {
            if (s->max >= 9007199254740992.0)
                snprintf(err, errn, "%s out of range (must be >= %.10g)", item, s->min);
            else
                snprintf(err, errn, "%s out of range [%.10g, %.10g]", item, s->min, s->max);
            return 1;
        }
        v->num[v->n++] = x;
        if (!comma) break;
        p = comma + 1;
    }
    if (v->n > 1 && !s->list) {
        snprintf(err, errn, "takes one value, got a list of %d", v->n);
        return 1;
    }
    return repeated_value(v, err, errn);
}

static void add_specs(lpe_params *p, const lpe_param_spec *spec) {
    for (const lpe_param_spec *s = spec; s && s->key; s++) {
        if (find(p, s->key) >= 0) lpe_fail("internal: [%s] declares '%s' twice", p->section, s->key);
        if (p->n >= LPE_MAX_PARAMS) lpe_fail("internal: [%s] has too many parameters", p->section);
        lpe_param_value *v = &p->val[p->n];
        memset(v, 0, sizeof *v);
        v->key = s->key;
        if (s->def && (s->def[0] || s->type == LPE_P_STRING)) {
            char err[512];
            if (parse_value(v, s, s->def, err, sizeof err))
                lpe_fail("internal: bad default for [%s] %s: %s", p->section, s->key, err);
        }
        p->spec[p->n++] = s;
    }
}

void lpe_params_init(lpe_params *p, const lpe_param_spec *spec, const char *file,
                     const char *section) {
    memset(p, 0, sizeof *p);
    snprintf(p->file, sizeof p->file, "%s", file ? file : "(none)");
    snprintf(p->section, sizeof p->section, "%s", section);
    add_specs(p, spec);
}

void lpe_params_add_spec(lpe_params *p, const lpe_param_spec *spec) { add_specs(p, spec); }

void lpe_params_set(lpe_params *p, const char *key, const char *value, int line) {
    int i = find(p, key);
    if (i < 0) {
        char known[1024] = "";
        size_t w = 0;
        for (int j = 0; j < p->n && w < sizeof known; j++)
            w += (size_t)snprintf(known + w, sizeof known - w, "%s%s", j ? ", " : "", p->spec[j]->key);
        lpe_fail_input("%s:%d: [%s]: unknown key '%s' (known keys: %s)", p->file, line, p->section,
                       key, p->n ? known : "none");
    }
    lpe_param_value *v = &p->val[i];
    char loc[1400], err[512];
    where(loc, sizeof loc, p, key, line);
    if (v->line > 0)
        lpe_fail_input("%s: set twice (first at line %d)", loc, v->line);
    lpe_param_value tmp = *v;
    if (parse_value(&tmp, p->spec[i], value, err, sizeof err))
    {
        if (strcmp(err, "empty value") != 0) lpe_fail_input("%s: %s", loc, err);
        lpe_fail_input("%s: %s (expected %s%s)", loc, err, type_name(p->spec[i]->type),
                       p->spec[i]->list ? " or a comma-separated list" : "");
    }
    tmp.line = line;
    *v = tmp;
}

void lpe_params_check_complete(const lpe_params *p) {
    for (int i = 0; i < p->n; i++)
        if (p->val[i].n == 0 && !p->spec[i]->def)
            lpe_fail_input("%s: [%s]: required key '%s' is missing (%s)", p->file, p->section,
                           p->spec[i]->key, p->spec[i]->help ? p->spec[i]->help : "no default");
}

static const lpe_param_value *get(const lpe_params *p, const char *key, lpe_param_type t) {
    int i = find_required(p, key);
    const lpe_param_value *v = &p->val[i];
    if (p->spec[i]->type != t)
        lpe_fail("internal: [%s] %s read as %s, declared %s", p->section, key, type_name(t),
                 type_name(p->spec[i]->type));
    if (v->n != 1)
        lpe_fail("internal: [%s] %s read as one value but holds %d", p->section, key, v->n);
    return v;
}

long long lpe_param_int(const lpe_params *p, const char *key) {
    return (long long)get(p, key, LPE_P_INT)->num[0];
}
double lpe_param_double(const lpe_params *p, const char *key) {
    return get(p, key, LPE_P_DOUBLE)->num[0];
}
const char *lpe_param_str(const lpe_params *p, const char *key) {
    return get(p, key, LPE_P_STRING)->str;
}
int lpe_param_bool(const lpe_params *p, const char *key) {
    return get(p, key, LPE_P_BOOL)->num[0] != 0;
}

int lpe_param_count(const lpe_params *p, const char *key) { return p->val[find_required(p, key)].n; }

double lpe_param_list(const lpe_params *p, const char *key, int i) {
    const lpe_param_value *v = &p->val[find_required(p, key)];
    LPE_ASSERT(i >= 0 && i < v->n);
    return v->num[i];
}

int lpe_param_line(const lpe_params *p, const char *key) { return p->val[find_required(p, key)].line; }

int lpe_param_is_set(const lpe_params *p, const char *key) {
    return p->val[find_required(p, key)].n > 0;
}

const char *lpe_param_text(const lpe_params *p, const char *key, int i, char *buf, int n) {
    int k = find_required(p, key);
    const lpe_param_value *v = &p->val[k];
    LPE_ASSERT(i >= 0 && i < (v->n ? v->n : 1) && n > 0);
    if (p->spec[k]->type == LPE_P_STRING && !p->spec[k]->list) {
        trim_copy(buf, (size_t)n, v->str, strlen(v->str));
        return buf;
    }
    const char *s = v->str;
    for (int j = 0; j < i; j++) {
        s = strchr(s, ',');
        LPE_ASSERT(s);
        s++;
    }
    const char *comma = strchr(s, ',');
    trim_copy(buf, (size_t)n, s, comma ? (size_t)(comma - s) : strlen(s));
    return buf;
}

void lpe_params_pick(lpe_params *p, const char *key, int i) {
    int k = find_required(p, key);
    lpe_param_value *v = &p->val[k];
    LPE_ASSERT(i >= 0 && i < v->n);
    char item[256];
    lpe_param_text(p, key, i, item, sizeof item);
    v->num[0] = v->num[i];
    v->n = 1;
    snprintf(v->str, sizeof v->str, "%s", item);
}

void lpe_params_override(lpe_params *p, const char *key, const char *value, int line) {
    int i = find(p, key);
    if (i >= 0) p->val[i].line = 0; /* replacing is the point: not "set twice" */
    lpe_params_set(p, key, value, line);
}

void lpe_params_fail(const lpe_params *p, const char *key, const char *fmt, ...) {
    char loc[1400], msg[1024];
    where(loc, sizeof loc, p, key ? key : "", key && find(p, key) >= 0 ? lpe_param_line(p, key) : 0);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lpe_fail_input("%s: %s", loc, msg);
}
