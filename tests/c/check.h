/* check.h: minimal C test harness. Each test binary ends with check_summary(), which prints
 * "NAME: N passed, N failed" and returns non-zero when any check failed. */
#ifndef LPE_CHECK_H
#define LPE_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int check_pass_, check_fail_;

#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        if (cond) {                                                                              \
            check_pass_++;                                                                       \
        } else {                                                                                 \
            check_fail_++;                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                       \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fputc('\n', stderr);                                                                 \
        }                                                                                        \
    } while (0)

/* |got - want| <= atol + rtol * |want| */
#define CHECK_CLOSE(got, want, atol, rtol)                                                       \
    CHECK(fabs((double)(got) - (double)(want)) <= (atol) + (rtol)*fabs((double)(want)),          \
          "got %.17g want %.17g (atol %g rtol %g)", (double)(got), (double)(want),               \
          (double)(atol), (double)(rtol))

/* max(a, b) that keeps a NaN (fmax and `x > worst` drop it, so a NaN error would pass a bound):
 * accumulate worst-case errors with it and CHECK(worst <= bound) fails on NaN. */
static inline double check_nanmax(double a, double b) {
    return (isnan(a) || isnan(b)) ? NAN : (a > b ? a : b);
}

/* A fresh private directory /tmp/lpe_test_TAG_XXXXXX (mkdtemp) and the path of FILE in it:
 * concurrent test runs on one machine never share a file. Remove with check_tmp_remove. */
static inline void check_tmp_path(char *dir, size_t ndir, char *path, size_t npath,
                                  const char *tag, const char *file) {
    snprintf(dir, ndir, "/tmp/lpe_test_%s_XXXXXX", tag);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(path, npath, "%s/%s", dir, file);
}

static inline void check_tmp_remove(const char *dir, const char *path) {
    unlink(path);
    rmdir(dir);
}

static inline int check_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, check_pass_, check_fail_);
    return check_fail_ ? 1 : 0;
}

#endif
