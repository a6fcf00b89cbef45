/* common.h: error reporting, exit codes, small helpers shared by every module.
 *
 * Error policy (one rule for the whole program):
 *   - bad input (usage, INI, model/distribution files, token ids) -> lpe_fail_input(): message
 *     naming the file/line/dataset and what was expected, exit code 2;
 *   - failure at run time (out of memory, I/O error, CUDA error)   -> lpe_fail(): exit code 1.
 * Both run the registered cleanups first (temporary output files are removed), so no
 * half-written output survives an error. Library code therefore never returns error codes up
 * the stack for these cases: it reports where the failure is known best and exits.
 */
#ifndef LPE_COMMON_H
#define LPE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus /* the CUDA backend (kernels/, C++) includes this header */
extern "C" {
#endif

#define LPE_EXIT_OK 0
#define LPE_EXIT_RUNTIME 1
#define LPE_EXIT_INPUT 2

#if defined(__GNUC__)
#define LPE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define LPE_NORETURN __attribute__((noreturn))
#else
#define LPE_PRINTF(a, b)
#define LPE_NORETURN
#endif

/* Print "lpe: error: <msg>" and exit 2 (bad input) / 1 (run-time failure). */
LPE_NORETURN void lpe_fail_input(const char *fmt, ...) LPE_PRINTF(1, 2);
LPE_NORETURN void lpe_fail(const char *fmt, ...) LPE_PRINTF(1, 2);
void lpe_warn(const char *fmt, ...) LPE_PRINTF(1, 2);

/* Hooks a file library registers (src/h5fail.c for HDF5): on an error exit, explain() may write
 * the underlying I/O cause ("FILE: no space left on device") into buf and return 1, which makes
 * the exit a run-time failure whatever the caller thought; close_all(io_failed) then closes the
 * library's open handles (skipping the flush of files whose writes failed). */
typedef struct {
    int (*explain)(char *buf, size_t n);
    void (*close_all)(int io_failed);
    void (*escape)(int code); /* instead of _exit (tools/fuzz: longjmp back); must not return */
} lpe_fail_hooks;
void lpe_set_fail_hooks(const lpe_fail_hooks *h);
/* Only the escape hook (the others kept): tools/fuzz turns error exits into a longjmp. */
void lpe_set_fail_escape(void (*escape)(int code));
/* "no space left on device" for ENOSPC (EDQUOT, EFBIG, EIO, EROFS alike); NULL for an errno
 * that is not about the disk. */
const char *lpe_io_errno_text(int err);

/* Internal invariant (a bug, not bad input): reports statement, function, file, line; exit 1. */
#define LPE_ASSERT(cond)                                                                         \
    do {                                                                                         \
        if (!(cond))                                                                             \
            lpe_fail("internal check failed: %s (in %s, %s:%d)", #cond, __func__, __FILE__,       \
                     __LINE__);                                                                  \
    } while (0)

/* Check of user input (options, file contents): when cond fails, the formatted message that
 * names what was given and what was expected goes out through lpe_fail_input (exit 2). Not for
 * internal invariants: those are LPE_ASSERT (exit 1). */
#define LPE_CHECK_INPUT(cond, ...)                                                               \
    do {                                                                                         \
        if (!(cond)) lpe_fail_input(__VA_ARGS__);                                                \
    } while (0)

/* Checked allocation (aborts with exit 1 and the requested size on failure). Zero-filled. */
void *lpe_calloc(size_t n, size_t size);
void *lpe_realloc(void *p, size_t size);
char *lpe_strdup(const char *s);
/* 64-byte aligned, zero-filled; free with lpe_free_aligned. */
void *lpe_alloc_aligned(size_t bytes);
void lpe_free_aligned(void *p);

/* Cleanup registry: files removed if the program exits through lpe_fail*, a signal, or
 * without lpe_cleanup_forget() having been called for them (e.g. a temporary result file). */
void lpe_cleanup_remove_on_fail(const char *path);
void lpe_cleanup_forget(const char *path);

/* Wall clock in seconds (monotonic). */
double lpe_now(void);

/* Progress line on stderr when it is a terminal: "label: done/total (rate/s, ETA)". Rate-limited;
 * lpe_progress_end() finishes the line. No output when stderr is not a terminal or quiet. */
typedef struct {
    const char *label;
    double t0, t_last;
    int active;
} lpe_progress;
void lpe_progress_begin(lpe_progress *p, const char *label);
void lpe_progress_update(lpe_progress *p, double done, double total, const char *unit);
void lpe_progress_end(lpe_progress *p);
void lpe_set_quiet(int quiet); /* --quiet: no progress lines */
int lpe_is_quiet(void);         /* `lpe --quiet COMMAND` as well as `lpe COMMAND --quiet` */

/* Version string (git describe at build time). */
const char *lpe_version(void);

/* Command-line option argv[*i] takes a value: returns argv[*i + 1] and advances *i past it;
 * exit 2 with "CMD: OPTION needs a value" when there is none (cmd: e.g. "bench"). */
const char *lpe_arg_value(int argc, char **argv, int *i, const char *cmd);

/* Parse helpers for command-line values: exit 2 naming `what` on a bad value. */
long long lpe_parse_ll(const char *s, const char *what);
double lpe_parse_double(const char *s, const char *what);

#ifdef __cplusplus
}
#endif

#endif
