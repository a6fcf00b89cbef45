/* h5io.c: checked HDF5 helpers (see include/lpe/h5io.h). Errors in what a file holds are bad
 * input (exit 2, naming file and dataset); errors of the library itself are run-time failures. */
#include "lpe/h5io.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lpe/common.h"
#include "lpe/output_guard.h"

void lpe_h5_quiet(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    lpe_h5_fail_hooks_install();
}

hid_t lpe_h5_open_read(const char *path) {
    lpe_h5_quiet();
    struct stat st;
    if (stat(path, &st) != 0) lpe_fail_input("%s: file not found", path);
    if (!S_ISREG(st.st_mode))
        lpe_fail_input("%s: not a regular file (a directory, device or FIFO?)", path);
    if (H5Fis_hdf5(path) <= 0) lpe_fail_input("%s: not an HDF5 file", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) lpe_fail_input("%s: cannot open as HDF5", path);
    return f;
}

hid_t lpe_h5_open_append(const char *path) {
    lpe_h5_quiet();
    struct stat st;
    hid_t f;
    if (stat(path, &st) == 0) {
        if (H5Fis_hdf5(path) <= 0) lpe_fail_input("%s: exists and is not an HDF5 file", path);
        f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    } else {
        f = H5Fcreate(path, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
    }
    if (f < 0) lpe_fail("%s: cannot open for writing", path);
    return f;
}

void lpe_h5_close(hid_t file) {
    if (file < 0) return;
    lpe_h5_note_file(file); /* a failed close is reported with the file's name */
    H5_CHECK(H5Fclose(file));
    lpe_h5_note_file(-1);
}

/* A process killed outright (SIGKILL, power loss) cannot remove its temporary file: remove
 * PATH.tmp.PID files of processes that no longer exist. */
static void remove_stale_tmp(const char *path) {
    char dir[1024], base[1024];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if (slash == path) snprintf(dir, sizeof dir, "/");
    snprintf(base, sizeof base, "%s.tmp.", slash ? slash + 1 : path);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    size_t nb = strlen(base);
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, base, nb)) continue;
        char *end;
        long pid = strtol(e->d_name + nb, &end, 10);
        if (*end || pid <= 0) continue; /* not one of ours */
        if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            char p[2200];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
}

void lpe_h5_create(lpe_h5_out *o, const char *path, int force) {
    lpe_h5_quiet();
    if (strlen(path) >= sizeof o->path) lpe_fail_input("%s: path too long", path);
    lpe_output_check_kind(path); /* never a directory or device, --force or not */
    struct stat st;
    if (stat(path, &st) == 0 && !force)
        lpe_fail_input("%s: exists already (use --force to overwrite)", path);
    snprintf(o->path, sizeof o->path, "%s", path);
    remove_stale_tmp(path);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp.%ld", path, (long)getpid());
    lpe_cleanup_remove_on_fail(o->tmp);
    o->file = H5Fcreate(o->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (o->file < 0) lpe_fail_input("%s: cannot create (does the directory exist?)", o->tmp);
}

void lpe_h5_commit(lpe_h5_out *o) {
    lpe_h5_note_file(o->file);
    H5_CHECK(H5Fflush(o->file, H5F_SCOPE_GLOBAL));
    H5_CHECK(H5Fclose(o->file));
    lpe_h5_note_file(-1);
    o->file = -1;
    if (rename(o->tmp, o->path) != 0)
        lpe_fail("cannot rename %s to %s: %s", o->tmp, o->path, strerror(errno));
    lpe_cleanup_forget(o->tmp);
}

int lpe_h5_exists(hid_t loc, const char *path) {
    /* H5Lexists needs each parent to exist: walk the path component by component */
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (H5Lexists(loc, buf, H5P_DEFAULT) <= 0) return 0;
            if (!c) return 1;
            *p = c;
        }
    }
}

hid_t lpe_h5_group(hid_t loc, const char *path) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (H5Lexists(loc, buf, H5P_DEFAULT) <= 0) {
                hid_t g = H5Gcreate2(loc, buf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
                if (g < 0) lpe_fail("HDF5: cannot create group %s", buf);
                H5Gclose(g);
            }
            if (!c) break;
            *p = c;
        }
    }
    hid_t g = H5Gopen2(loc, path, H5P_DEFAULT);
    if (g < 0) lpe_fail("HDF5: cannot open group %s", path);
    return g;
}

static const char *type_class_name(H5T_class_t c) {
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    default: return "other";
    }
}

static void dims_text(char *out, size_t n, int rank, const int64_t *d) {
    size_t w = (size_t)snprintf(out, n, "[");
    for (int i = 0; i < rank && w < n; i++)
        w += (size_t)snprintf(out + w, n - w, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (w < n) snprintf(out + w, n - w, "]");
}

/* Open and check a dataset; returns the dataset id and fills found dims. */
static hid_t open_checked(hid_t loc, const char *file, const char *name, hid_t memtype, int rank,
                          const int64_t *dims, int64_t *found) {
    if (!lpe_h5_exists(loc, name)) lpe_fail_input("%s: dataset %s is missing", file, name);
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) lpe_fail_input("%s: %s is not a dataset", file, name);
    hid_t ft = H5Dget_type(ds);
    H5T_class_t fc = H5Tget_class(ft), mc = H5Tget_class(memtype);
    H5Tclose(ft);
    if (fc != mc)
        lpe_fail_input("%s: dataset %s: expected %s values, found %s", file, name,
                       type_class_name(mc), type_class_name(fc));
    hid_t sp = H5Dget_space(ds);
    int r = H5Sget_simple_extent_ndims(sp);
    hsize_t hd[16] = {0};
    if (r < 0 || r > 16) lpe_fail_input("%s: dataset %s: unsupported shape", file, name);
    H5Sget_simple_extent_dims(sp, hd, NULL);
    H5Sclose(sp);
    for (int i = 0; i < r; i++) found[i] = (int64_t)hd[i];
    int ok = r == rank;
    for (int i = 0; ok && i < rank; i++)
        if (dims && dims[i] >= 0 && dims[i] != found[i]) ok = 0;
    if (!ok) {
        char want[256], got[256];
        int64_t w[16];
        for (int i = 0; i < rank; i++) w[i] = dims ? dims[i] : -1;
        dims_text(want, sizeof want, rank, w);
        dims_text(got, sizeof got, r, found);
        lpe_fail_input("%s: dataset %s: expected shape %s (-1 = any), found %s", file, name, want,
                       got);
    }
    return ds;
}

void *lpe_h5_read(hid_t loc, const char *file, const char *name, hid_t memtype, int rank,
                  const int64_t *dims, int64_t *dims_out) {
    int64_t found[16];
    hid_t ds = open_checked(loc, file, name, memtype, rank, dims, found);
    /* a corrupt file may declare any extent: refuse what no lpe file holds (and products that
     * would overflow) as bad input, not as a failed allocation (found by tools/fuzz) */
    double elems = 1;
    for (int i = 0; i < rank; i++) elems *= (double)found[i];
    if (elems * (double)H5Tget_size(memtype) > LPE_H5_READ_MAX_BYTES)
        lpe_fail_input("%s: dataset %s: %.4g values, more than a readable file holds", file, name,
                       elems);
    size_t n = (size_t)elems;
    void *buf = lpe_calloc(n ? n : 1, H5Tget_size(memtype));
    if (n && H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        lpe_fail_input("%s: dataset %s: cannot be read as the expected type", file, name);
    H5Dclose(ds);
    if (dims_out)
        for (int i = 0; i < rank; i++) dims_out[i] = found[i];
    return buf;
}

void lpe_h5_read_into(void *buf, hid_t loc, const char *file, const char *name, hid_t memtype,
                      int rank, const int64_t *dims) {
    int64_t found[16];
    hid_t ds = open_checked(loc, file, name, memtype, rank, dims, found);
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)found[i];
    if (n && H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        lpe_fail_input("%s: dataset %s: cannot be read as the expected type", file, name);
    H5Dclose(ds);
}

/* Parent groups of a dataset path must exist before H5Dcreate. */
static void make_parents(hid_t loc, const char *name) {
    const char *slash = strrchr(name, '/');
    if (!slash || slash == name) return;
    char parent[1024];
    snprintf(parent, sizeof parent, "%.*s", (int)(slash - name), name);
    H5Gclose(lpe_h5_group(loc, parent));
}

void lpe_h5_write(hid_t loc, const char *name, hid_t memtype, int rank, const int64_t *dims,
                  const void *data, int compress) {
    make_parents(loc, name);
    hsize_t hd[16], chunk[16];
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        hd[i] = (hsize_t)dims[i];
        n *= (size_t)dims[i];
    }
    hid_t sp = H5Screate_simple(rank, hd, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (compress && n > 0) {
        /* chunks of about 256 KiB: whole trailing rows, as many leading rows as fit */
        size_t row = H5Tget_size(memtype);
        for (int i = 1; i < rank; i++) {
            chunk[i] = hd[i];
            row *= hd[i];
        }
        hsize_t rows = (hsize_t)(262144 / (row ? row : 1));
        chunk[0] = rows < 1 ? 1 : rows > hd[0] ? hd[0] : rows;
        H5_CHECK(H5Pset_chunk(dcpl, rank, chunk));
        H5_CHECK(H5Pset_shuffle(dcpl));
        H5_CHECK(H5Pset_deflate(dcpl, 4));
    }
    hid_t ds = H5Dcreate2(loc, name, memtype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0) lpe_fail("HDF5: cannot create dataset %s (exists already?)", name);
    if (n) H5_CHECK(H5Dwrite(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
}

void lpe_h5_write_f64(hid_t loc, const char *name, const double *v, int64_t n) {
    lpe_h5_write(loc, name, H5T_NATIVE_DOUBLE, 1, &n, v, 0);
}

void lpe_h5_write_i32(hid_t loc, const char *name, const int32_t *v, int64_t n) {
    lpe_h5_write(loc, name, H5T_NATIVE_INT32, 1, &n, v, 0);
}

hid_t lpe_h5_stream_create(hid_t loc, const char *name, hid_t memtype, int64_t row_len,
                           int64_t chunk_rows) {
    make_parents(loc, name);
    int rank = row_len > 0 ? 2 : 1;
    hsize_t dims[2] = {0, (hsize_t)row_len}, maxd[2] = {H5S_UNLIMITED, (hsize_t)row_len};
    hsize_t chunk[2] = {(hsize_t)(chunk_rows > 0 ? chunk_rows : 1024), (hsize_t)row_len};
    hid_t sp = H5Screate_simple(rank, dims, maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5_CHECK(H5Pset_chunk(dcpl, rank, chunk));
    H5_CHECK(H5Pset_shuffle(dcpl));
    H5_CHECK(H5Pset_deflate(dcpl, 4));
    hid_t ds = H5Dcreate2(loc, name, memtype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0) lpe_fail("HDF5: cannot create dataset %s", name);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return ds;
}

void lpe_h5_stream_append(hid_t ds, hid_t memtype, int64_t row_len, int64_t n_rows,
                          const void *rows) {
    if (n_rows <= 0) return;
    int rank = row_len > 0 ? 2 : 1;
    hid_t sp = H5Dget_space(ds);
    hsize_t cur[2] = {0, 0};
    H5Sget_simple_extent_dims(sp, cur, NULL);
    H5Sclose(sp);
    hsize_t newd[2] = {cur[0] + (hsize_t)n_rows, (hsize_t)row_len};
    H5_CHECK(H5Dset_extent(ds, newd));
    hid_t fs = H5Dget_space(ds);
    hsize_t start[2] = {cur[0], 0}, count[2] = {(hsize_t)n_rows, (hsize_t)row_len};
    H5_CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL));
    hid_t ms = H5Screate_simple(rank, count, NULL);
    H5_CHECK(H5Dwrite(ds, memtype, ms, fs, H5P_DEFAULT, rows));
    H5Sclose(ms);
    H5Sclose(fs);
}

/* ---- attributes ------------------------------------------------------------------------ */

static void attr_write(hid_t loc, const char *name, hid_t type, const void *v) {
    if (H5Aexists(loc, name) > 0) H5_CHECK(H5Adelete(loc, name));
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) lpe_fail("HDF5: cannot create attribute %s", name);
    H5_CHECK(H5Awrite(a, type, v));
    H5Aclose(a);
    H5Sclose(sp);
}

void lpe_h5_attr_int(hid_t loc, const char *name, long long v) {
    int64_t x = v;
    attr_write(loc, name, H5T_NATIVE_INT64, &x);
}

void lpe_h5_attr_double(hid_t loc, const char *name, double v) {
    attr_write(loc, name, H5T_NATIVE_DOUBLE, &v);
}

void lpe_h5_attr_str(hid_t loc, const char *name, const char *v) {
    /* variable-length UTF-8 string: what h5py reads back as str */
    hid_t t = H5Tcopy(H5T_C_S1);
    H5_CHECK(H5Tset_size(t, H5T_VARIABLE));
    H5_CHECK(H5Tset_cset(t, H5T_CSET_UTF8));
    const char *p = v ? v : "";
    attr_write(loc, name, t, &p);
    H5Tclose(t);
}

int lpe_h5_has_attr(hid_t loc, const char *name) { return H5Aexists(loc, name) > 0; }

static hid_t attr_open(hid_t loc, const char *file, const char *name, H5T_class_t want) {
    if (H5Aexists(loc, name) <= 0) lpe_fail_input("%s: attribute %s is missing", file, name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    H5T_class_t c = H5Tget_class(t);
    H5Tclose(t);
    int ok = c == want || (want == H5T_FLOAT && c == H5T_INTEGER);
    if (!ok)
        lpe_fail_input("%s: attribute %s: expected %s, found %s", file, name, type_class_name(want),
                       type_class_name(c));
    hid_t sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    if (n != 1) lpe_fail_input("%s: attribute %s: expected a single value", file, name);
    return a;
}

long long lpe_h5_get_attr_int(hid_t loc, const char *file, const char *name) {
    hid_t a = attr_open(loc, file, name, H5T_INTEGER);
    int64_t v = 0;
    H5_CHECK(H5Aread(a, H5T_NATIVE_INT64, &v));
    H5Aclose(a);
    return v;
}

double lpe_h5_get_attr_double(hid_t loc, const char *file, const char *name) {
    hid_t a = attr_open(loc, file, name, H5T_FLOAT);
    double v = 0;
    H5_CHECK(H5Aread(a, H5T_NATIVE_DOUBLE, &v));
    H5Aclose(a);
    return v;
}

char *lpe_h5_get_attr_str(hid_t loc, const char *file, const char *name) {
    hid_t a = attr_open(loc, file, name, H5T_STRING);
    hid_t ft = H5Aget_type(a);
    char *out;
    if (H5Tis_variable_str(ft) > 0) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5Tget_cset(ft));
        char *p = NULL;
        H5_CHECK(H5Aread(a, t, &p));
        out = lpe_strdup(p ? p : "");
        H5free_memory(p);
        H5Tclose(t);
    } else {
        size_t n = H5Tget_size(ft);
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, n + 1);
        out = lpe_calloc(n + 2, 1);
        H5_CHECK(H5Aread(a, t, out));
        H5Tclose(t);
    }
    H5Tclose(ft);
    H5Aclose(a);
    return out;
}

/* ---- SHA-256 (FIPS 180-4) ---------------------------------------------------------------- */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

void lpe_sha256_init(lpe_sha256_ctx *c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->len = 0;
    c->fill = 0;
}

void lpe_sha256_update(lpe_sha256_ctx *c, const void *data, size_t n) {
    const uint8_t *p = data;
    c->len += n;
    while (n > 0) {
        size_t take = 64 - c->fill < n ? 64 - c->fill : n;
        memcpy(c->buf + c->fill, p, take);
        c->fill += take;
        p += take;
        n -= take;
        if (c->fill == 64) {
            sha256_block(c->h, c->buf);
            c->fill = 0;
        }
    }
}

void lpe_sha256_final(lpe_sha256_ctx *c, char out[65]) {
    uint64_t bits = c->len * 8;
    uint8_t pad = 0x80, zero = 0, lenb[8];
    lpe_sha256_update(c, &pad, 1);
    while (c->fill != 56) lpe_sha256_update(c, &zero, 1);
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    lpe_sha256_update(c, lenb, 8);
    for (int i = 0; i < 8; i++) snprintf(out + 8 * i, 9, "%08x", c->h[i]);
}

void lpe_sha256_buf(char out[65], const void *data, size_t n) {
    lpe_sha256_ctx c;
    lpe_sha256_init(&c);
    lpe_sha256_update(&c, data, n);
    lpe_sha256_final(&c, out);
}

void lpe_sha256_file(char out[65], const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) lpe_fail_input("%s: cannot read: %s", path, strerror(errno));
    lpe_sha256_ctx c;
    lpe_sha256_init(&c);
    uint8_t buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) lpe_sha256_update(&c, buf, n);
    fclose(f);
    lpe_sha256_final(&c, out);
}
