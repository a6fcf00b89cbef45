/* run_ckpt.c: checkpoints of an experiment, so that a killed `lpe run` resumes where it was.
 *
 * Dimension legend: T = targets of a distribution.
 *
 * Layout: next to the results file OUT.h5, a directory OUT.h5.ckpt/ holding
 *   manifest.h5            attributes config (the INI text), seed, model_sha256
 *   {dist}/{run}.h5        one completed method run: group /run as the results file holds it
 *                          (/{dist}/{run}), plus /targets int32 [T] it was run on
 * Each file is written atomically (temporary name, renamed), so a kill leaves only complete
 * runs. A resumed experiment copies those runs into its results instead of running them again;
 * since every run is a pure function of the config and the seed, the results file equals an
 * uninterrupted run's apart from timing attributes. The directory is removed once the results
 * file is committed. A checkpoint of a different experiment (config text, seed or model file
 * changed) is an error unless --force discards it. The directory and manifest are made when the
 * first run is saved, so a run that fails before any work leaves no checkpoint; a directory
 * without a manifest and without completed runs (a run stopped while writing it) is discarded.
 */
#include "lpe/run_ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lpe/common.h"
#include "lpe/h5io.h"

/* dist and run names become file names: '/' is the only byte a name cannot hold */
static void path_of(char *out, size_t n, const lpe_run_ckpt *k, const char *dist, const char *run) {
    char a[256], b[256];
    snprintf(a, sizeof a, "%s", dist);
    snprintf(b, sizeof b, "%s", run ? run : "");
    for (char *p = a; *p; p++) if (*p == '/') *p = '_';
    for (char *p = b; *p; p++) if (*p == '/') *p = '_';
    if (run)
        snprintf(out, n, "%s/%s/%s.h5", k->dir, a, b);
    else
        snprintf(out, n, "%s/%s", k->dir, a);
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[2200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Completed run files (NAME.h5, not temporaries) below dir. */
static int count_runs(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[2200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        size_t len = strlen(e->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            n += count_runs(p);
        else if (len > 3 && !strcmp(e->d_name + len - 3, ".h5"))
            n++;
    }
    closedir(d);
    return n;
}

static void manifest_path(char *out, size_t n, const lpe_run_ckpt *k) {
    snprintf(out, n, "%s/manifest.h5", k->dir);
}

void lpe_run_ckpt_open(lpe_run_ckpt *k, const char *output, const char *config_text, uint64_t seed,
                       const char *model_sha256, int force) {
    memset(k, 0, sizeof *k);
    snprintf(k->dir, sizeof k->dir, "%s.ckpt", output);
    k->config_text = config_text;
    k->seed = seed;
    snprintf(k->model_sha256, sizeof k->model_sha256, "%s", model_sha256);
    char manifest[sizeof k->dir + 16];
    manifest_path(manifest, sizeof manifest, k);
    struct stat st;
    if (stat(k->dir, &st) != 0) return;
    if (force) {
        remove_tree(k->dir);
        return;
    }
    if (stat(manifest, &st) != 0) {
        /* a run stopped (full disk, kill) before its manifest was complete: nothing to lose */
        if (count_runs(k->dir) == 0) {
            remove_tree(k->dir);
            return;
        }
        lpe_fail_input("%s: a checkpoint directory without manifest.h5 (remove it, or use "
                       "--force to discard it)", k->dir);
    }
    hid_t f = lpe_h5_open_read(manifest);
    char *cfg = lpe_h5_get_attr_str(f, manifest, "config");
    char *sha = lpe_h5_get_attr_str(f, manifest, "model_sha256");
    uint64_t s = (uint64_t)lpe_h5_get_attr_int(f, manifest, "seed");
    lpe_h5_close(f);
    int same = !strcmp(cfg, config_text) && !strcmp(sha, model_sha256) && s == seed;
    free(cfg);
    free(sha);
    if (!same)
        lpe_fail_input("%s: checkpoint of a different experiment (its config, seed or model "
                       "differs); use --force to discard it", k->dir);
    k->resumed = 1;
}

/* The directory and its manifest, when the first run is saved. */
static void ensure_manifest(const lpe_run_ckpt *k) {
    char manifest[sizeof k->dir + 16];
    manifest_path(manifest, sizeof manifest, k);
    struct stat st;
    if (stat(manifest, &st) == 0) return;
    if (mkdir(k->dir, 0777) != 0 && errno != EEXIST)
        lpe_fail("%s: cannot create checkpoint directory: %s", k->dir, strerror(errno));
    lpe_h5_out o;
    lpe_h5_create(&o, manifest, 1);
    lpe_h5_attr_str(o.file, "config", k->config_text);
    lpe_h5_attr_str(o.file, "model_sha256", k->model_sha256);
    lpe_h5_attr_int(o.file, "seed", (long long)k->seed);
    lpe_h5_commit(&o);
}

int lpe_run_ckpt_restore(const lpe_run_ckpt *k, int64_t dist_group, const char *dist,
                         const char *run, const int32_t *targets, int T) {
    char p[2200];
    path_of(p, sizeof p, k, dist, run);
    struct stat st;
    if (stat(p, &st) != 0) return 0;
    hid_t f = lpe_h5_open_read(p);
    int64_t dims[1] = {T};
    int32_t *saved = lpe_h5_read(f, p, "targets", H5T_NATIVE_INT32, 1, dims, NULL);
    int same = !memcmp(saved, targets, sizeof(int32_t) * (size_t)T);
    free(saved);
    if (!same)
        lpe_fail_input("%s: checkpoint made for other targets (did a ground-truth file change?); "
                       "use --force to discard the checkpoint", p);
    lpe_h5_copy(f, "run", (hid_t)dist_group, run);
    lpe_h5_close(f);
    return 1;
}

/* For the tests of resumption: LPE_TEST_KILL_AFTER_SAVES=N kills the process (SIGKILL, as a
 * power cut would) right after its N-th saved run, at a point the test can rely on, instead of
 * racing a poll against a run that may finish first. */
static void test_kill_point(void) {
    static int saves;
    const char *n = getenv("LPE_TEST_KILL_AFTER_SAVES");
    if (n && ++saves == atoi(n)) raise(SIGKILL);
}

void lpe_run_ckpt_save(const lpe_run_ckpt *k, int64_t dist_group, const char *dist,
                       const char *run, const int32_t *targets, int T) {
    char d[2200], p[2200];
    ensure_manifest(k);
    path_of(d, sizeof d, k, dist, NULL);
    if (mkdir(d, 0777) != 0 && errno != EEXIST)
        lpe_fail("%s: cannot create checkpoint directory: %s", d, strerror(errno));
    path_of(p, sizeof p, k, dist, run);
    H5_CHECK(H5Fflush((hid_t)dist_group, H5F_SCOPE_GLOBAL));
    lpe_h5_out o;
    lpe_h5_create(&o, p, 1);
    lpe_h5_copy((hid_t)dist_group, run, o.file, "run");
    lpe_h5_write_i32(o.file, "targets", targets, T);
    lpe_h5_commit(&o);
    test_kill_point();
}

void lpe_run_ckpt_remove(const lpe_run_ckpt *k) { remove_tree(k->dir); }
