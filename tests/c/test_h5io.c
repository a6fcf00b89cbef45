/* test_h5io.c: SHA-256 against FIPS 180-4 vectors; dataset/attribute round trips; atomic create. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "lpe/h5io.h"

int main(void) {
    char h[65];
    lpe_sha256_buf(h, "abc", 3);
    CHECK(!strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "%s", h);
    lpe_sha256_buf(h, "", 0);
    CHECK(!strcmp(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "%s", h);
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    lpe_sha256_buf(h, two, strlen(two));
    CHECK(!strcmp(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "%s", h);

    char dir[256], path[300];
    check_tmp_path(dir, sizeof dir, path, sizeof path, "h5io", "t.h5");
    lpe_h5_out o;
    lpe_h5_create(&o, path, 0);
    struct stat st;
    CHECK(stat(path, &st) != 0, "final name must not exist before commit");
    double v[5] = {1, 2, 3, 4.5, -1};
    lpe_h5_write_f64(o.file, "a/b/v", v, 5);
    lpe_h5_attr_str(o.file, "config", "[x]\nk = v\n");
    lpe_h5_attr_int(o.file, "n", 1LL << 40);
    hid_t s = lpe_h5_stream_create(o.file, "s/rows", H5T_NATIVE_INT32, 3, 4);
    int32_t rows[6] = {1, 2, 3, 4, 5, 6};
    lpe_h5_stream_append(s, H5T_NATIVE_INT32, 3, 2, rows);
    lpe_h5_stream_append(s, H5T_NATIVE_INT32, 3, 1, rows);
    H5Dclose(s);
    lpe_h5_commit(&o);
    CHECK(stat(path, &st) == 0 && stat(o.tmp, &st) != 0, "renamed on commit");

    hid_t f = lpe_h5_open_read(path);
    int64_t dims[1] = {5}, got[2];
    double *r = lpe_h5_read(f, path, "a/b/v", H5T_NATIVE_DOUBLE, 1, dims, NULL);
    CHECK(!memcmp(r, v, sizeof v), "dataset round trip");
    free(r);
    int64_t any[2] = {-1, 3};
    int32_t *rr = lpe_h5_read(f, path, "s/rows", H5T_NATIVE_INT32, 2, any, got);
    CHECK(got[0] == 3 && rr[6] == 1 && rr[5] == 6, "stream rows %lld", (long long)got[0]);
    free(rr);
    char *c = lpe_h5_get_attr_str(f, path, "config");
    CHECK(!strcmp(c, "[x]\nk = v\n"), "string attribute");
    free(c);
    CHECK(lpe_h5_get_attr_int(f, path, "n") == 1LL << 40, "int attribute");
    CHECK(lpe_h5_exists(f, "a/b/v") && !lpe_h5_exists(f, "a/c/v"), "exists");
    lpe_h5_close(f);
    check_tmp_remove(dir, path);
    return check_summary("test_h5io");
}
