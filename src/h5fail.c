/* h5fail.c: what an error exit needs from HDF5 (the hooks of lpe_set_fail_hooks, common.h).
 *
 * explain: HDF5 reports a failed write(2) or open(2) on its error stack with the file name and
 * errno in the text ("filename = '...', ... errno = 28"); a full disk, a quota or the file-size
 * limit is then named as such, with the file (its final name, not the temporary one), so that a
 * user never has to guess why "H5Dwrite failed". The stack holds the last failed API call only
 * (each call clears it on entry), so an error found there belongs to the failure being reported.
 *
 * close_all: closes what HDF5 still holds, objects before their files, each id once, so that a
 * file opened for appending is left consistent on an input error. After a failed write nothing
 * is closed: closing flushes, the flush fails again, and HDF5 1.10 has crashed doing so.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/h5io.h"

typedef struct {
    int err;          /* errno found, 0 if none */
    char file[1024];  /* file named beside it */
} io_cause;

/* "key = 'value'" inside desc -> value (quotes stripped); 0 if absent. */
static int quoted_after(const char *desc, const char *key, char *out, size_t n) {
    const char *p = strstr(desc, key);
    if (!p) return 0;
    p += strlen(key);
    const char *q = strchr(p, '\'');
    if (!q) return 0;
    snprintf(out, n, "%.*s", (int)(q - p), p);
    return 1;
}

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    io_cause *c = data;
    if (c->err || !e->desc) return 0;
    const char *p = strstr(e->desc, "errno = ");
    if (!p) return 0;
    c->err = atoi(p + 8);
    if (!quoted_after(e->desc, "filename = '", c->file, sizeof c->file))
        quoted_after(e->desc, "name = '", c->file, sizeof c->file);
    return 0;
}

/* PATH.tmp.PID (lpe_h5_create) or PATH.tmpPID (dist appends) -> PATH */
static void final_name(char *path) {
    char *t = strstr(path, ".tmp");
    if (!t) return;
    const char *d = t + 4 + (t[4] == '.');
    if (!*d) return;
    for (const char *q = d; *q; q++)
        if (*q < '0' || *q > '9') return;
    *t = 0;
}

/* The file being flushed or closed (lpe_h5_note_file): a failed close names no file on the
 * stack. */
static char noted[1024];

void lpe_h5_note_file(hid_t file) {
    noted[0] = 0; /* file < 0: forget */
    if (file >= 0 && H5Fget_name(file, noted, sizeof noted) < 0) noted[0] = 0;
}

/* Otherwise the one file open for writing, if there is just one. */
static void only_writable_file(char *out, size_t n) {
    hid_t ids[2];
    ssize_t k = H5Fget_obj_ids(H5F_OBJ_ALL, H5F_OBJ_FILE, 2, ids);
    int found = 0;
    for (ssize_t i = 0; i < k; i++) {
        unsigned intent = 0;
        if (H5Fget_intent(ids[i], &intent) >= 0 && (intent & H5F_ACC_RDWR) && !found++)
            if (H5Fget_name(ids[i], out, n) < 0) out[0] = 0;
    }
    if (found != 1) out[0] = 0;
}

static int h5_explain(char *buf, size_t n) {
    io_cause c = {0};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &c);
    const char *why = lpe_io_errno_text(c.err);
    if (!why) return 0;
    if (!c.file[0]) snprintf(c.file, sizeof c.file, "%s", noted);
    if (!c.file[0]) only_writable_file(c.file, sizeof c.file);
    final_name(c.file);
    snprintf(buf, n, "%s: %s", c.file[0] ? c.file : "(an HDF5 file)", why);
    return 1;
}

static void close_kind(unsigned kind) {
    ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, kind);
    if (n <= 0) return;
    hid_t *ids = calloc((size_t)n, sizeof *ids);
    if (!ids) return;
    n = H5Fget_obj_ids(H5F_OBJ_ALL, kind, (size_t)n, ids);
    for (ssize_t i = 0; i < n; i++) {
        switch (H5Iget_type(ids[i])) {
        case H5I_ATTR: H5Aclose(ids[i]); break;
        case H5I_DATASET: H5Dclose(ids[i]); break;
        case H5I_GROUP: H5Gclose(ids[i]); break;
        case H5I_DATATYPE: H5Tclose(ids[i]); break;
        case H5I_FILE: H5Fclose(ids[i]); break;
        default: break;
        }
    }
    free(ids);
}

static void h5_close_all(int io_failed) {
    if (io_failed) return;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    close_kind(H5F_OBJ_ATTR);
    close_kind(H5F_OBJ_DATASET);
    close_kind(H5F_OBJ_GROUP);
    close_kind(H5F_OBJ_DATATYPE);
    close_kind(H5F_OBJ_FILE);
}

void lpe_h5_fail_hooks_install(void) {
    static int done;
    if (done) return;
    done = 1;
    lpe_fail_hooks h = {h5_explain, h5_close_all, NULL};
    lpe_set_fail_hooks(&h);
}
