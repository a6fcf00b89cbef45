/* h5io.h: checked HDF5 helpers: open for reading, atomic writing, typed datasets and attributes.
 *
 * Reading: every reader checks the dataset's existence, type class and shape and exits 2 with
 * "FILE: dataset NAME: expected ..., found ..." on a mismatch (bad input, not a crash).
 * Writing: files are created under a temporary name in the same directory and renamed when
 * complete (lpe_h5_commit); the temporary file is removed if the program fails first. An existing
 * file is never overwritten unless `force` is set.
 * Paths to datasets may contain '/', intermediate groups are created on write.
 */
#ifndef LPE_H5IO_H
#define LPE_H5IO_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "lpe/common.h"

/* HDF5 call that must not fail (negative return): reports the statement, function, file, line. */
#define H5_CHECK(call)                                                                           \
    do {                                                                                         \
        if ((call) < 0)                                                                          \
            lpe_fail("HDF5 call failed: %s (in %s, %s:%d)", #call, __func__, __FILE__, __LINE__); \
    } while (0)

/* Open an existing HDF5 file read-only; exit 2 "FILE: not found" / "FILE: not an HDF5 file". */
hid_t lpe_h5_open_read(const char *path);
/* Open read-write (for appending groups); created when missing. */
hid_t lpe_h5_open_append(const char *path);
void lpe_h5_close(hid_t file);

typedef struct {
    hid_t file;
    char path[1024]; /* final name */
    char tmp[1100];  /* temporary name, renamed to path on commit */
} lpe_h5_out;

/* Create `path` atomically. Exit 2 if it exists and !force. */
void lpe_h5_create(lpe_h5_out *o, const char *path, int force);
/* Flush, close and rename the temporary file to its final name. */
void lpe_h5_commit(lpe_h5_out *o);

int lpe_h5_exists(hid_t loc, const char *path); /* a link (dataset or group) exists at path */
hid_t lpe_h5_group(hid_t loc, const char *path); /* open, or create with parents; close with H5Gclose */

/* Read dataset `name` (relative to loc) as memtype (H5T_NATIVE_FLOAT, _DOUBLE, _INT32, _INT64,
 * _UINT64, _UINT8). The stored type class must match (float vs integer). `rank` is required;
 * dims[i] >= 0 are required extents, -1 means any; the found extents go to dims_out (may be NULL).
 * Returns a malloc'd buffer (free()). `file` names the file in messages. */
#define LPE_H5_READ_MAX_BYTES 1099511627776.0 /* 1 TiB: a larger dataset is a corrupt extent */
void *lpe_h5_read(hid_t loc, const char *file, const char *name, hid_t memtype, int rank,
                  const int64_t *dims, int64_t *dims_out);
/* Read into a caller buffer of exactly the given dims. */
void lpe_h5_read_into(void *buf, hid_t loc, const char *file, const char *name, hid_t memtype,
                      int rank, const int64_t *dims);

/* Write a dataset (parents created). compress: chunked + deflate(4) + shuffle. */
void lpe_h5_write(hid_t loc, const char *name, hid_t memtype, int rank, const int64_t *dims,
                  const void *data, int compress);
void lpe_h5_write_f64(hid_t loc, const char *name, const double *v, int64_t n);
void lpe_h5_write_i32(hid_t loc, const char *name, const int32_t *v, int64_t n);

/* Copy the group or dataset src_name (with attributes, recursively) to dst_loc/dst_name, which
 * must not exist. Used instead of H5Ocopy, which crashes HDF5 1.10 when a write fails. */
void lpe_h5_copy(hid_t src_loc, const char *src_name, hid_t dst_loc, const char *dst_name);

/* Extendible 1-D / 2-D datasets for streams (chains): create with 0 rows, append rows. */
hid_t lpe_h5_stream_create(hid_t loc, const char *name, hid_t memtype, int64_t row_len,
                           int64_t chunk_rows);
void lpe_h5_stream_append(hid_t dset, hid_t memtype, int64_t row_len, int64_t n_rows,
                          const void *rows);

/* Attributes on a file, group or dataset (loc may be the file id for root attributes). */
void lpe_h5_attr_int(hid_t loc, const char *name, long long v);
void lpe_h5_attr_double(hid_t loc, const char *name, double v);
void lpe_h5_attr_str(hid_t loc, const char *name, const char *v);
int lpe_h5_has_attr(hid_t loc, const char *name);
/* Readers: exit 2 naming file and attribute when missing or of the wrong type. */
long long lpe_h5_get_attr_int(hid_t loc, const char *file, const char *name);
double lpe_h5_get_attr_double(hid_t loc, const char *file, const char *name);
char *lpe_h5_get_attr_str(hid_t loc, const char *file, const char *name); /* malloc'd */

/* Silence HDF5's own error stack printing (we report errors ourselves); installs the hooks below. */
void lpe_h5_quiet(void);
/* Error exits name a full disk (or quota, file-size limit) found on HDF5's error stack, and close
 * HDF5's handles safely (src/h5fail.c). */
void lpe_h5_fail_hooks_install(void);
/* Remember `file`'s name for such a message (HDF5 names no file when a close fails). */
void lpe_h5_note_file(hid_t file);


/* SHA-256 of a file's bytes / of a memory buffer, as 64 hex chars + NUL. */
void lpe_sha256_file(char out[65], const char *path);
void lpe_sha256_buf(char out[65], const void *data, size_t n);
/* Incremental form. */
typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t fill;
} lpe_sha256_ctx;
void lpe_sha256_init(lpe_sha256_ctx *c);
void lpe_sha256_update(lpe_sha256_ctx *c, const void *data, size_t n);
void lpe_sha256_final(lpe_sha256_ctx *c, char out[65]);

#endif
