/* test_rng.c: Philox4x32-10 against the Random123 known-answer vectors, and the helpers. */
#include <stdint.h>

#include "check.h"
#include "lpe/philox.h"

static void kat(uint32_t k0, uint32_t k1, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                uint32_t e0, uint32_t e1, uint32_t e2, uint32_t e3) {
    uint32_t key[2] = {k0, k1}, ctr[4] = {c0, c1, c2, c3}, out[4];
    lpe_philox4x32_10(out, key, ctr);
    CHECK(out[0] == e0 && out[1] == e1 && out[2] == e2 && out[3] == e3,
          "got %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
}

int main(void) {
    /* Random123 kat_vectors, philox4x32 10 rounds */
    kat(0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8);
    kat(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
        0x41c83b0e, 0xa20bc7c6, 0x6d5451fd);
    kat(0xa4093822, 0x299f31d0, 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xd16cfe09,
        0x94fdcceb, 0x5001e420, 0x24126ea1);

    /* lpe_rng4 lays out (seed, stream, index, sub) as documented */
    uint32_t a[4], b[4];
    lpe_rng4(a, 0x299f31d0a4093822ull, 0x85a308d3, 0x0370734413198a2eull, 0x243f6a88);
    CHECK(a[0] == 0xd16cfe09 && a[3] == 0x24126ea1, "layout mismatch %08x", a[0]);

    /* uniform helpers: mean and range of many draws (fixed seed; bounds ~6 standard errors) */
    double s = 0, mn = 1, mx = 0;
    long hist[10] = {0};
    const int n = 1 << 20;
    for (int i = 0; i < n; i++) {
        lpe_rng4(b, 42, lpe_stream(LPE_STREAM_TEST, 0), (uint64_t)i, 0);
        double u = lpe_u01_53(b[1], b[2]);
        s += u;
        mn = u < mn ? u : mn;
        mx = u > mx ? u : mx;
        hist[lpe_below(b[0], 10)]++;
    }
    CHECK(mn >= 0.0 && mx < 1.0, "range [%g, %g]", mn, mx);
    CHECK(fabs(s / n - 0.5) < 6 * sqrt(1.0 / 12 / n), "mean %g", s / n);
    for (int c = 0; c < 10; c++)
        CHECK(fabs(hist[c] - n / 10.0) < 6 * sqrt(n * 0.1 * 0.9), "bin %d: %ld", c, hist[c]);
    return check_summary("test_rng");
}
