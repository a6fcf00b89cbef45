/* fuzz_target.c: libFuzzer targets for lpe's readers of untrusted files (tools/fuzz/run.sh).
 *
 * One source, one target per build: -DFUZZ_INI (the experiment INI loader), -DFUZZ_MODEL,
 * -DFUZZ_DIST, -DFUZZ_TRUTH, -DFUZZ_RESULTS (the HDF5 readers). Each input is written to a file
 * and read as lpe reads it. lpe reports bad input by exiting; here the exit becomes a longjmp
 * back to the harness (lpe_set_fail_escape, after HDF5's handles and temporary files are
 * cleaned up as on a real exit), so a clean rejection is a normal outcome and only a crash, a
 * hang or a sanitizer report is a finding. Run from a directory holding model.h5 and dists.h5
 * (the INI target refers to them; run.sh makes them).
 */
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lpe/common.h"
#include "lpe/config.h"
#include "lpe/dist.h"
#include "lpe/eval.h"
#include "lpe/h5io.h"
#include "lpe/model.h"
#include "lpe/truth.h"

static jmp_buf back;
static char path[64];

static void escape(int code) { longjmp(back, code ? code : 1); }

static void write_input(const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

static void read_it(void) {
#if defined(FUZZ_INI)
    lpe_config c;
    lpe_config_load(&c, path, NULL);
    lpe_config_free(&c);
#elif defined(FUZZ_MODEL)
    lpe_model m;
    lpe_model_load(&m, path);
    lpe_model_free(&m);
#elif defined(FUZZ_DIST)
    int n = 0;
    char **names = lpe_dist_names(path, &n);
    for (int i = 0; i < n; i++) {
        lpe_dist d;
        lpe_dist_load(&d, path, names[i], 0);
        lpe_dist_free(&d);
        free(names[i]);
    }
    free(names);
#elif defined(FUZZ_TRUTH)
    lpe_truth t;
    lpe_truth_read(&t, path);
    lpe_truth_free(&t);
#elif defined(FUZZ_RESULTS)
    hid_t f = lpe_h5_open_read(path);
    lpe_eval_file e;
    lpe_eval_load(&e, (int64_t)f, path, LPE_ZERO_CONST);
    lpe_eval_free(&e);
    lpe_h5_close(f);
#else
#error "define one of FUZZ_INI, FUZZ_MODEL, FUZZ_DIST, FUZZ_TRUTH, FUZZ_RESULTS"
#endif
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    lpe_h5_quiet();
    lpe_set_fail_escape(escape);
    const char *dir = getenv("LPE_FUZZ_DIR");
    if (dir && chdir(dir) != 0) {
        perror(dir);
        abort();
    }
    snprintf(path, sizeof path, "fuzz_input_%ld%s", (long)getpid(),
#if defined(FUZZ_INI)
             ".ini"
#else
             ".h5"
#endif
    );
    /* every rejected input prints its (expected) error message: lpe's messages go to /dev/null;
     * fd 2 stays open for the sanitizers' and libFuzzer's reports */
    stderr = fopen("/dev/null", "w");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    write_input(data, n);
    if (setjmp(back) == 0) read_it();
    unlink(path);
    return 0;
}
