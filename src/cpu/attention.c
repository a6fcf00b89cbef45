/* attention.c: causal self-attention of the CPU backend, forward and backward, one OpenMP task
 * per (sequence, head). The q|k|v rows come from one product (cpu_internal.h); q is already
 * scaled by 1/sqrt(Dh), so a score is a plain dot product.
 *
 * Dimension legend: B sequences, k positions, H heads, Dh = d_head, HD = H*Dh, Q3 = 3*HD.
 *   qkv [B, k, Q3]: row (b, i) holds q | k | v, head h at columns h*Dh within each third.
 *   attn_out [B, k, HD], att [B, H, k, k] (row i: probabilities over j <= i, zeros above the diagonal).
 *   Last-query variants: last_attn_out [B, HD], last_att [B, H, k].
 */
#include <math.h>
#include <string.h>

#include "cpu_internal.h"

static inline float dot(const float *a, const float *b, int n) {
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline void axpy(float *y, float a, const float *x, int n) {
#pragma omp simd
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* softmax of s[0..n) in place; the normaliser in float64 */
static inline void softmax(float *s, int n) {
    float mx = s[0];
    for (int j = 1; j < n; j++) mx = s[j] > mx ? s[j] : mx;
    double sum = 0;
    for (int j = 0; j < n; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < n; j++) s[j] *= inv;
}

void cpu_attn_fwd_full(float *attn_out, float *att, const float *qkv, int B, int k, int H, int Dh) {
    int HD = H * Dh, Q3 = 3 * HD;
#pragma omp parallel for collapse(2) schedule(static) CPU_PAR((size_t)B * k * HD * 4)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *base = qkv + (size_t)b * k * Q3 + h * Dh; /* q of row 0 */
            for (int i = 0; i < k; i++) {
                const float *q = base + (size_t)i * Q3;              /* [Dh] */
                float *p = att + (((size_t)b * H + h) * k + i) * k;   /* [k] */
                for (int j = 0; j <= i; j++) p[j] = dot(q, base + (size_t)j * Q3 + HD, Dh);
                softmax(p, i + 1);
                for (int j = i + 1; j < k; j++) p[j] = 0;
                float *z = attn_out + ((size_t)b * k + i) * HD + h * Dh; /* [Dh] */
                memset(z, 0, (size_t)Dh * sizeof *z);
                for (int j = 0; j <= i; j++) axpy(z, p[j], base + (size_t)j * Q3 + 2 * HD, Dh);
            }
        }
}

void cpu_attn_fwd_last(float *last_attn_out, float *last_att, const float *qkv, int B, int k, int H, int Dh) {
    int HD = H * Dh, Q3 = 3 * HD;
#pragma omp parallel for collapse(2) schedule(static) CPU_PAR((size_t)B * k * HD * 4)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *base = qkv + (size_t)b * k * Q3 + h * Dh;
            const float *q = base + (size_t)(k - 1) * Q3; /* [Dh] */
            float *p = last_att + ((size_t)b * H + h) * k;      /* [k] */
            for (int j = 0; j < k; j++) p[j] = dot(q, base + (size_t)j * Q3 + HD, Dh);
            softmax(p, k);
            float *z = last_attn_out + (size_t)b * HD + h * Dh; /* [Dh] */
            memset(z, 0, (size_t)Dh * sizeof *z);
            for (int j = 0; j < k; j++) axpy(z, p[j], base + (size_t)j * Q3 + 2 * HD, Dh);
        }
}

/* One query's backward: dz [Dh] -> dq [Dh] (written), dk_j and dv_j (added) for j < n.
 * ds_j = p_j (dz.v_j - sum_i p_i dz.v_i) is the softmax Jacobian applied to dz.v. */
static inline void query_bwd(float *dq, float *dkv0, const float *dz, const float *p,
                             const float *q, const float *kv0, float *dp, int n, int HD, int Q3,
                             int Dh) {
    double sdp = 0;
    for (int j = 0; j < n; j++) {
        dp[j] = dot(dz, kv0 + (size_t)j * Q3 + HD, Dh); /* dz . v_j */
        sdp += (double)p[j] * dp[j];
    }
    memset(dq, 0, (size_t)Dh * sizeof *dq);
    for (int j = 0; j < n; j++) {
        float ds = p[j] * (dp[j] - (float)sdp);
        axpy(dq, ds, kv0 + (size_t)j * Q3, Dh);                 /* k_j */
        axpy(dkv0 + (size_t)j * Q3, ds, q, Dh);                  /* dk_j */
        axpy(dkv0 + (size_t)j * Q3 + HD, p[j], dz, Dh);          /* dv_j */
    }
}

/* Each (b, h) task owns the dk and dv slices of its head: clear them before accumulating.
   dbase: [k, 3*H*Dh] rows of d_qkv, offset to this head (the q slice is written, not summed). */
static void clear_dkv(float *dbase, int k, int HD, int Q3, int Dh) {
    for (int j = 0; j < k; j++) {
        memset(dbase + (size_t)j * Q3 + HD, 0, (size_t)Dh * sizeof(float));
        memset(dbase + (size_t)j * Q3 + 2 * HD, 0, (size_t)Dh * sizeof(float));
    }
}

void cpu_attn_bwd_full(float *d_qkv, const float *d_attn_out, const float *att, const float *qkv, int B,
                       int k, int H, int Dh) {
    int HD = H * Dh, Q3 = 3 * HD;
#pragma omp parallel for collapse(2) schedule(static) CPU_PAR((size_t)B * k * HD * 4)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            float dp[k];
            const float *base = qkv + (size_t)b * k * Q3 + h * Dh; /* q of row 0 */
            float *dbase = d_qkv + (size_t)b * k * Q3 + h * Dh;
            clear_dkv(dbase, k, HD, Q3, Dh);
            for (int i = 0; i < k; i++)
                query_bwd(dbase + (size_t)i * Q3, dbase + HD,
                          d_attn_out + ((size_t)b * k + i) * HD + h * Dh,
                          att + (((size_t)b * H + h) * k + i) * k, base + (size_t)i * Q3, base + HD,
                          dp, i + 1, HD, Q3, Dh);
        }
}

void cpu_attn_bwd_last(float *d_qkv, const float *d_last_attn_out, const float *last_att, const float *qkv, int B,
                       int k, int H, int Dh) {
    int HD = H * Dh, Q3 = 3 * HD;
#pragma omp parallel for collapse(2) schedule(static) CPU_PAR((size_t)B * k * HD * 4)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            float dp[k];
            const float *base = qkv + (size_t)b * k * Q3 + h * Dh;
            float *dbase = d_qkv + (size_t)b * k * Q3 + h * Dh;
            clear_dkv(dbase, k, HD, Q3, Dh);
            query_bwd(dbase + (size_t)(k - 1) * Q3, dbase + HD, d_last_attn_out + (size_t)b * HD + h * Dh,
                      last_att + ((size_t)b * H + h) * k, base + (size_t)(k - 1) * Q3, base + HD, dp,
                      k, HD, Q3, Dh);
        }
}
