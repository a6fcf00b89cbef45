/* h5copy.c: copy a group or dataset, with its attributes, between HDF5 files (h5io.h).
 *
 * Why not H5Ocopy: when a write fails inside it (a full disk), HDF5 1.10 crashes in its own
 * clean-up (H5T_close_real under H5O_copy_header_map). Here every read and write is a plain API
 * call whose failure is reported by H5_CHECK, so a full disk is an error message, not a SIGSEGV.
 * Each object is read whole into memory: what is copied (one method run of a results file) is
 * small. Datasets keep their type, shape, maximum shape and creation properties (chunks,
 * filters).
 */
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/h5io.h"

/* An attribute's or a dataset's contents, read whole: file type, native memory type, space and
 * buffer. One open and one close for both, so that every handle is checked and freed alike. */
typedef struct {
    hid_t ft, mt, sp;
    void *buf;
} h5_value;

/* takes ft and sp (from H5Aget_type / H5Dget_type and ..._space); the buffer is zeroed, with
 * room for one element when the space is empty */
static h5_value value_open(hid_t ft, hid_t sp, const char *name) {
    if (ft < 0 || sp < 0) lpe_fail("HDF5: cannot read the type or shape of %s to copy it", name);
    h5_value v = {.ft = ft, .mt = H5Tget_native_type(ft, H5T_DIR_DEFAULT), .sp = sp};
    if (v.mt < 0) lpe_fail("HDF5: %s has a type with no native equivalent", name);
    hssize_t n = H5Sget_select_npoints(sp);
    LPE_ASSERT(n >= 0);
    v.buf = lpe_calloc((size_t)(n ? n : 1), H5Tget_size(v.mt));
    return v;
}

static void value_close(h5_value *v) {
    if (H5Tdetect_class(v->mt, H5T_VLEN) > 0 || H5Tis_variable_str(v->mt) > 0)
        H5Dvlen_reclaim(v->mt, v->sp, H5P_DEFAULT, v->buf);
    free(v->buf);
    H5Sclose(v->sp);
    H5Tclose(v->mt);
    H5Tclose(v->ft);
}

static herr_t copy_attr(hid_t src, const char *name, const H5A_info_t *info, void *dst_p) {
    hid_t dst = *(hid_t *)dst_p;
    hid_t a = H5Aopen(src, name, H5P_DEFAULT);
    if (a < 0) lpe_fail("HDF5: cannot open attribute %s to copy it", name);
    h5_value v = value_open(H5Aget_type(a), H5Aget_space(a), name);
    H5_CHECK(H5Aread(a, v.mt, v.buf));
    hid_t b = H5Acreate2(dst, name, v.ft, v.sp, H5P_DEFAULT, H5P_DEFAULT);
    if (b < 0) lpe_fail("HDF5: cannot create attribute %s", name);
    H5_CHECK(H5Awrite(b, v.mt, v.buf));
    H5_CHECK(H5Aclose(b));
    value_close(&v);
    H5Aclose(a);
    return 0;
}

static void copy_attrs(hid_t src, hid_t dst) {
    H5_CHECK(H5Aiterate2(src, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_attr, &dst));
}

static void copy_object(hid_t src_loc, const char *src_name, hid_t dst_loc, const char *dst_name);

static herr_t copy_link(hid_t g, const char *name, const H5L_info_t *info, void *dst_p) {
    copy_object(g, name, *(hid_t *)dst_p, name);
    return 0;
}

static void copy_dataset(hid_t d, hid_t dst_loc, const char *dst_name) {
    h5_value v = value_open(H5Dget_type(d), H5Dget_space(d), dst_name);
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl < 0) lpe_fail("HDF5: cannot read the creation properties of %s to copy it", dst_name);
    const hssize_t n = H5Sget_select_npoints(v.sp);
    if (n > 0) H5_CHECK(H5Dread(d, v.mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.buf));
    hid_t e = H5Dcreate2(dst_loc, dst_name, v.ft, v.sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (e < 0) lpe_fail("HDF5: cannot create dataset %s", dst_name);
    if (n > 0) H5_CHECK(H5Dwrite(e, v.mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.buf));
    copy_attrs(d, e);
    H5_CHECK(H5Dclose(e));
    H5Pclose(dcpl);
    value_close(&v);
}

static void copy_object(hid_t src_loc, const char *src_name, hid_t dst_loc, const char *dst_name) {
    hid_t o = H5Oopen(src_loc, src_name, H5P_DEFAULT);
    if (o < 0) lpe_fail("HDF5: cannot open %s to copy it", src_name);
    H5I_type_t kind = H5Iget_type(o);
    if (kind == H5I_GROUP) {
        hid_t g = H5Gcreate2(dst_loc, dst_name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) lpe_fail("HDF5: cannot create group %s", dst_name);
        copy_attrs(o, g);
        H5_CHECK(H5Literate(o, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_link, &g));
        H5_CHECK(H5Gclose(g));
    } else if (kind == H5I_DATASET) {
        copy_dataset(o, dst_loc, dst_name);
    } else {
        lpe_fail("HDF5: %s: only groups and datasets are copied", src_name);
    }
    H5Oclose(o);
}

void lpe_h5_copy(hid_t src_loc, const char *src_name, hid_t dst_loc, const char *dst_name) {
    copy_object(src_loc, src_name, dst_loc, dst_name);
}
