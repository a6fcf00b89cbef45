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

static void *read_buf(hid_t type, hid_t space) {
    hssize_t n = H5Sget_select_npoints(space);
    LPE_ASSERT(n >= 0);
    return lpe_calloc((size_t)(n ? n : 1), H5Tget_size(type));
}

static void reclaim(hid_t type, hid_t space, void *buf) {
    if (H5Tdetect_class(type, H5T_VLEN) > 0 || H5Tis_variable_str(type) > 0)
        H5Dvlen_reclaim(type, space, H5P_DEFAULT, buf);
    free(buf);
}

static herr_t copy_attr(hid_t src, const char *name, const H5A_info_t *info, void *dst_p) {
    hid_t dst = *(hid_t *)dst_p;
    hid_t a = H5Aopen(src, name, H5P_DEFAULT);
    if (a < 0) lpe_fail("HDF5: cannot open attribute %s to copy it", name);
    hid_t ft = H5Aget_type(a), mt = H5Tget_native_type(ft, H5T_DIR_DEFAULT), sp = H5Aget_space(a);
    void *buf = read_buf(mt, sp);
    H5_CHECK(H5Aread(a, mt, buf));
    hid_t b = H5Acreate2(dst, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (b < 0) lpe_fail("HDF5: cannot create attribute %s", name);
    H5_CHECK(H5Awrite(b, mt, buf));
    H5_CHECK(H5Aclose(b));
    reclaim(mt, sp, buf);
    H5Sclose(sp);
    H5Tclose(mt);
    H5Tclose(ft);
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
    hid_t ft = H5Dget_type(d), mt = H5Tget_native_type(ft, H5T_DIR_DEFAULT);
    hid_t sp = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
    void *buf = read_buf(mt, sp);
    hssize_t n = H5Sget_select_npoints(sp);
    if (n > 0) H5_CHECK(H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf));
    hid_t e = H5Dcreate2(dst_loc, dst_name, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (e < 0) lpe_fail("HDF5: cannot create dataset %s", dst_name);
    if (n > 0) H5_CHECK(H5Dwrite(e, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf));
    copy_attrs(d, e);
    H5_CHECK(H5Dclose(e));
    reclaim(mt, sp, buf);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Tclose(mt);
    H5Tclose(ft);
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
