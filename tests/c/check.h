/* check.h: minimal C test harness. Each test binary ends with check_summary(), which prints
 * "NAME: N passed, N failed" and returns non-zero when any check failed. */
#ifndef LPE_CHECK_H
#define LPE_CHECK_H

#include <math.h>
#include <stdio.h>

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

static inline int check_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, check_pass_, check_fail_);
    return check_fail_ ? 1 : 0;
}

#endif
