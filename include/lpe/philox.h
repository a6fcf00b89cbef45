/* philox.h: Philox4x32-10 (Salmon et al., SC'11), the project's one random number generator.
 *
 * Header-only so that the CPU (C11) and the GPU (CUDA) compile the very same code: a draw is a
 * pure function of (seed, stream, index, sub), so the same seed gives the same samples on any
 * backend, any batch size, any shard split, and after a resume.
 *
 * Counter layout (the contract every backend follows):
 *   key     = { seed & 0xffffffff, seed >> 32 }
 *   counter = { sub, stream, index & 0xffffffff, index >> 32 }
 *   stream  = lpe_stream(purpose, slot): purpose in the top 8 bits (LPE_STREAM_*), a slot (target
 *             number, shard-independent) in the low 24 bits;
 *   index   = the sample / walker number (64 bits);
 *   sub     = what is drawn for that sample: the position j for input sampling, or a
 *             step-and-kind number for Markov chains (documented where used).
 * Each call yields four 32-bit words.
 */
#ifndef LPE_PHILOX_H
#define LPE_PHILOX_H

#include <stdint.h>

#ifdef __CUDACC__
#define LPE_HD __host__ __device__ __forceinline__
#else
#define LPE_HD static inline
#endif

/* Purposes (top 8 bits of the stream word). Append only: changing a value changes results. */
enum {
    LPE_STREAM_INPUT = 1,   /* inputs drawn from D (truth, naive, activations) */
    LPE_STREAM_TARGETS = 2, /* target selection */
    LPE_STREAM_INIT = 3,    /* random model initialisation */
    LPE_STREAM_ITGIS = 4,
    LPE_STREAM_MHIS = 5,
    LPE_STREAM_QLD = 6,
    LPE_STREAM_TEST = 7,
    LPE_STREAM_DISTGEN = 8, /* random distribution generation */
    LPE_STREAM_AMS = 9,
    LPE_STREAM_SMC = 10,
    LPE_STREAM_CE = 11 /* cross-entropy importance sampling (ceis) */
};

LPE_HD uint32_t lpe_stream(uint32_t purpose, uint32_t slot) {
    return (purpose << 24) | (slot & 0xffffffu);
}

LPE_HD void lpe_philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

/* out[4] = Philox4x32-10(key, ctr). */
LPE_HD void lpe_philox4x32_10(uint32_t out[4], const uint32_t key_in[2], const uint32_t ctr[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key_in[0], k1 = key_in[1];
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, lo0, hi1, lo1;
        lpe_philox_mulhilo(0xD2511F53u, c0, &hi0, &lo0);
        lpe_philox_mulhilo(0xCD9E8D57u, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* The four words for (seed, stream, index, sub). */
LPE_HD void lpe_rng4(uint32_t out[4], uint64_t seed, uint32_t stream, uint64_t index, uint32_t sub) {
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t ctr[4] = {sub, stream, (uint32_t)index, (uint32_t)(index >> 32)};
    lpe_philox4x32_10(out, key, ctr);
}

/* Uniform double in [0, 1) with 53 random bits from two words. */
LPE_HD double lpe_u01_53(uint32_t a, uint32_t b) {
    uint64_t x = ((uint64_t)(a >> 5) << 26) | (uint64_t)(b >> 6);
    return (double)x * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n) from one word (Lemire's multiply; bias <= n / 2^32). */
LPE_HD uint32_t lpe_below(uint32_t w, uint32_t n) {
    return (uint32_t)(((uint64_t)w * (uint64_t)n) >> 32);
}

#endif
