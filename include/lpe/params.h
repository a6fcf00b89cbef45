/* params.h: typed, declared key = value parameters of an INI section (a method's section).
 *
 * Every section's keys are declared in a table (lpe_param_spec); unknown keys, bad values and
 * out-of-range values are errors naming the INI file and line. Values may be lists
 * ("0.45, 0.67, 1.0") where the spec allows it (temperature sweeps).
 */
#ifndef LPE_PARAMS_H
#define LPE_PARAMS_H

typedef enum { LPE_P_INT, LPE_P_DOUBLE, LPE_P_STRING, LPE_P_BOOL } lpe_param_type;

typedef struct {
    const char *key;
    lpe_param_type type;
    const char *def;   /* default as text (NULL: required; "" for a number: optional, unset) */
    double min, max;   /* inclusive range for numbers (min > max: unchecked) */
    int list;          /* 1: a comma-separated list is allowed */
    const char *help;
} lpe_param_spec;

#define LPE_MAX_PARAMS 32
#define LPE_MAX_LIST 64

typedef struct {
    const char *key;
    int n;                      /* number of values (1 unless a list) */
    double num[LPE_MAX_LIST];   /* numeric values */
    char str[256];              /* string value */
    int line;                   /* INI line (0: default) */
} lpe_param_value;

typedef struct {
    char section[128];
    char file[1024];
    int n;
    const lpe_param_spec *spec[LPE_MAX_PARAMS];
    lpe_param_value val[LPE_MAX_PARAMS];
} lpe_params;

/* Start from the specs' defaults (spec array terminated by a {NULL} entry). */
void lpe_params_init(lpe_params *p, const lpe_param_spec *spec, const char *file,
                     const char *section);
/* Set key from INI text; exit 2 naming file:line on an unknown key or bad value. */
void lpe_params_set(lpe_params *p, const char *key, const char *value, int line);
/* Set key again, replacing its value (per-distribution values of a method). */
void lpe_params_override(lpe_params *p, const char *key, const char *value, int line);
/* After all keys are set: exit 2 naming the section when a required key is missing. */
void lpe_params_check_complete(const lpe_params *p);

long long lpe_param_int(const lpe_params *p, const char *key);
double lpe_param_double(const lpe_params *p, const char *key);
const char *lpe_param_str(const lpe_params *p, const char *key);
int lpe_param_bool(const lpe_params *p, const char *key);
/* List access: number of values and the i-th value. */
int lpe_param_count(const lpe_params *p, const char *key);
double lpe_param_list(const lpe_params *p, const char *key, int i);

/* Added by the runner's author (src/params.c): */
/* Append more accepted keys (e.g. the runner's common `budget`); specs must outlive p. */
void lpe_params_add_spec(lpe_params *p, const lpe_param_spec *spec);
/* INI line where key was set (0: default or unset); whether the key has a value. */
int lpe_param_line(const lpe_params *p, const char *key);
int lpe_param_is_set(const lpe_params *p, const char *key);
/* Text of the i-th value as written in the INI (or the default), trimmed, into buf. */
const char *lpe_param_text(const lpe_params *p, const char *key, int i, char *buf, int n);
/* Reduce a list key to its i-th value (the runner's sweeps hand each run single values). */
void lpe_params_pick(lpe_params *p, const char *key, int i);
/* "FILE:LINE: [section] key: <message>", exit 2: for checks only a method can make. */
#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 3, 4)))
#endif
void lpe_params_fail(const lpe_params *p, const char *key, const char *fmt, ...);

#endif
