/* common.c: error exits with cleanup of temporary outputs, allocation, time, progress. */
#include "lpe/common.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLEANUP 64
static char *cleanup_paths[MAX_CLEANUP];
static int quiet;

static void run_cleanups(void) {
    for (int i = 0; i < MAX_CLEANUP; i++)
        if (cleanup_paths[i]) {
            unlink(cleanup_paths[i]);
            free(cleanup_paths[i]);
            cleanup_paths[i] = NULL;
        }
}

static void on_signal(int sig) {
    /* unlink is async-signal-safe; the paths were set before the handler was installed */
    for (int i = 0; i < MAX_CLEANUP; i++)
        if (cleanup_paths[i]) unlink(cleanup_paths[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

void lpe_cleanup_remove_on_fail(const char *path) {
    static int installed;
    if (!installed) {
        atexit(run_cleanups);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        installed = 1;
    }
    for (int i = 0; i < MAX_CLEANUP; i++)
        if (!cleanup_paths[i]) {
            cleanup_paths[i] = lpe_strdup(path);
            return;
        }
    lpe_fail("too many temporary files registered (%s)", path);
}

void lpe_cleanup_forget(const char *path) {
    for (int i = 0; i < MAX_CLEANUP; i++)
        if (cleanup_paths[i] && strcmp(cleanup_paths[i], path) == 0) {
            free(cleanup_paths[i]);
            cleanup_paths[i] = NULL;
        }
}

static void vreport(const char *kind, const char *fmt, va_list ap) {
    fflush(stdout);
    fprintf(stderr, "lpe: %s: ", kind);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static lpe_fail_hooks hooks;

void lpe_set_fail_hooks(const lpe_fail_hooks *h) {
    void (*escape)(int) = hooks.escape;
    hooks = *h;
    if (!hooks.escape) hooks.escape = escape;
}

void lpe_set_fail_escape(void (*escape)(int code)) { hooks.escape = escape; }

/* The one way out on an error. The I/O cause (a full disk) is named first when a library knows
 * it; then open handles are closed while the files are still there, temporary files removed, and
 * the process ends with _exit: library exit handlers (HDF5's closes every file it still holds)
 * would write to a file whose last write just failed, which crashes HDF5 1.10. */
static LPE_NORETURN void fail_exit(int code, const char *fmt, va_list ap) {
    static int failing;
    if (failing) _exit(code); /* a failure inside the hooks themselves */
    failing = 1;
    char why[1200] = "";
    if (hooks.explain && hooks.explain(why, sizeof why)) {
        fflush(stdout);
        fprintf(stderr, "lpe: error: %s\n", why);
        vreport("detail", fmt, ap);
        code = LPE_EXIT_RUNTIME; /* the disk, not the input */
    } else {
        vreport("error", fmt, ap);
    }
    if (hooks.close_all) hooks.close_all(why[0] != 0);
    run_cleanups();
    fflush(NULL);
    failing = 0;
    if (hooks.escape) hooks.escape(code); /* does not return (the fuzz harness longjmps) */
    _exit(code);
}

void lpe_fail_input(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fail_exit(LPE_EXIT_INPUT, fmt, ap);
}

void lpe_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fail_exit(LPE_EXIT_RUNTIME, fmt, ap);
}

const char *lpe_io_errno_text(int err) {
    switch (err) {
    case ENOSPC: return "no space left on device";
    case EDQUOT: return "disk quota exceeded (no space left on device for this user)";
    case EFBIG: return "file too large: the file-size limit (ulimit -f) is reached";
    case EIO: return "input/output error (a failing disk?)";
    case EROFS: return "read-only file system";
    default: return NULL;
    }
}

void lpe_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport("warning", fmt, ap);
    va_end(ap);
}

void *lpe_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) lpe_fail("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *lpe_realloc(void *p, size_t size) {
    void *q = realloc(p, size ? size : 1);
    if (!q) lpe_fail("out of memory reallocating %zu bytes", size);
    return q;
}

char *lpe_strdup(const char *s) {
    char *d = strdup(s ? s : "");
    if (!d) lpe_fail("out of memory");
    return d;
}

void *lpe_alloc_aligned(size_t bytes) {
    void *p = NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0)
        lpe_fail("out of memory allocating %zu bytes", bytes);
    memset(p, 0, rounded ? rounded : 64);
    return p;
}

void lpe_free_aligned(void *p) { free(p); }

double lpe_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void lpe_set_quiet(int q) { quiet = q; }

int lpe_is_quiet(void) { return quiet; }

void lpe_progress_begin(lpe_progress *p, const char *label) {
    p->label = label;
    p->t0 = p->t_last = lpe_now();
    p->active = !quiet && isatty(STDERR_FILENO);
}

void lpe_progress_update(lpe_progress *p, double done, double total, const char *unit) {
    if (!p->active) return;
    double t = lpe_now();
    if (t - p->t_last < 0.25 && done < total) return;
    p->t_last = t;
    double el = t - p->t0, rate = el > 0 ? done / el : 0;
    double eta = rate > 0 ? (total - done) / rate : 0;
    fprintf(stderr, "\r%s: %.0f/%.0f %s (%.3g %s/s, %.0f s left)   ", p->label, done, total, unit,
            rate, unit, eta);
    fflush(stderr);
}

void lpe_progress_end(lpe_progress *p) {
    if (p->active) fprintf(stderr, "\r\033[K");
    p->active = 0;
}

const char *lpe_arg_value(int argc, char **argv, int *i, const char *cmd) {
    if (*i + 1 >= argc) lpe_fail_input("%s: %s needs a value", cmd, argv[*i]);
    return argv[++*i];
}

long long lpe_parse_ll(const char *s, const char *what) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || end == s || *end) lpe_fail_input("%s: expected an integer, got '%s'", what, s);
    return v;
}

double lpe_parse_double(const char *s, const char *what) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) lpe_fail_input("%s: expected a number, got '%s'", what, s);
    return v;
}
