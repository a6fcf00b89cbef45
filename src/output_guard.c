/* output_guard.c: output locks and output/input checks made before any work (output_guard.h). */
#include "lpe/output_guard.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lpe/common.h"

static long read_pid(int fd) {
    char buf[32] = {0};
    if (pread(fd, buf, sizeof buf - 1, 0) <= 0) return 0;
    return strtol(buf, NULL, 10);
}

static int pid_alive(long pid) {
    return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* 1: this process now holds the lock on fd; 0: another live process does. */
static int try_lock(int fd, const char *lock) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return 1;
    if (errno == EWOULDBLOCK) return 0;
    /* no flock here (some network file systems): the recorded process decides */
    long pid = read_pid(fd);
    return !(pid_alive(pid) && pid != (long)getpid());
}

void lpe_output_lock(const char *output) {
    static char held[PATH_MAX + 8];
    char lock[PATH_MAX + 8];
    if (snprintf(lock, sizeof lock, "%s.lock", output) >= (int)sizeof lock)
        lpe_fail_input("%s: path too long", output);
    if (!strcmp(held, lock)) return;
    for (int attempt = 0; attempt < 16; attempt++) {
        int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) {
            const char *why = lpe_io_errno_text(errno);
            if (why) lpe_fail("%s: %s", lock, why);
            lpe_fail_input("%s: cannot create the output's lock file: %s (does the directory "
                           "exist?)", lock, strerror(errno));
        }
        if (!try_lock(fd, lock)) {
            long pid = read_pid(fd);
            lpe_fail("%s is in use: process %ld is writing it (lock %s); wait for it to end or "
                     "choose another output", output, pid, lock);
        }
        /* the holder before us may have removed the file between our open and our lock */
        struct stat a, b;
        if (fstat(fd, &a) != 0 || stat(lock, &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
            close(fd);
            continue;
        }
        char text[32];
        int n = snprintf(text, sizeof text, "%ld\n", (long)getpid());
        if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
            const char *why = lpe_io_errno_text(errno);
            lpe_fail("%s: cannot write the lock file: %s", lock, why ? why : strerror(errno));
        }
        snprintf(held, sizeof held, "%s", lock);
        lpe_cleanup_remove_on_fail(lock); /* removed at every exit; fd stays open till then */
        return;
    }
    lpe_fail("%s: the lock file keeps changing (another process?)", lock);
}

void lpe_output_make_parents(const char *path) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) lpe_fail_input("%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            const char *why = lpe_io_errno_text(errno);
            if (why) lpe_fail("%s: cannot create directory %s: %s", path, buf, why);
            lpe_fail_input("%s: cannot create directory %s: %s", path, buf, strerror(errno));
        }
        *p = '/';
    }
}

void lpe_output_check_kind(const char *output) {
    struct stat st;
    if (stat(output, &st) != 0) return;
    if (S_ISDIR(st.st_mode))
        lpe_fail_input("%s: the output is a directory (name a file in it)", output);
    if (!S_ISREG(st.st_mode))
        lpe_fail_input("%s: the output exists and is not a regular file (a device or FIFO?); "
                       "refused even with --force", output);
}

void lpe_output_guard(const char *output, const char *const *inputs, int n) {
    lpe_output_lock(output);
    lpe_output_check_kind(output);
    struct stat o, s;
    if (stat(output, &o) != 0) return; /* a new file cannot be one of the inputs */
    for (int i = 0; i < n; i++) {
        if (!inputs[i] || stat(inputs[i], &s) != 0) continue;
        if (s.st_dev == o.st_dev && s.st_ino == o.st_ino) {
            char real[PATH_MAX];
            const char *shown = realpath(inputs[i], real) ? real : inputs[i];
            lpe_fail_input("%s: the output is one of this command's inputs (%s); refused even "
                           "with --force", output, shown);
        }
    }
}

void lpe_input_check(const char *path, const char *what, long long max_bytes) {
    struct stat st;
    if (stat(path, &st) != 0) lpe_fail_input("%s: cannot open the %s: %s", path, what, strerror(errno));
    if (!S_ISREG(st.st_mode))
        lpe_fail_input("%s: the %s is not a regular file (a directory, device or FIFO?)", path, what);
    if (max_bytes > 0 && (long long)st.st_size > max_bytes)
        lpe_fail_input("%s: the %s has %lld bytes, more than the %lld allowed", path, what,
                       (long long)st.st_size, max_bytes);
}
