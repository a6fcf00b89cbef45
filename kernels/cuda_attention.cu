/* cuda_attention.cu: causal self-attention on the GPU, forward and backward, with the contracts
 * of src/cpu/attention.c. q is already scaled by 1/sqrt(Dh) (weights repack), so a score is a
 * plain dot product.
 *
 * Dimension legend: B sequences, k positions, H heads, Dh = d_head, HD = H*Dh, Q3 = 3*HD.
 *   qkv [B, k, Q3]: row (b, i) holds q | k | v, head h at columns h*Dh within each third.
 *   attn_out [B, k, HD], att [B, H, k, k] (row i: probabilities over j <= i, zeros above).
 *   Last-query variants: last_attn_out [B, HD], last_att [B, H, k].
 *
 * First version, written for clarity: one thread per (sequence, head, query) computes that
 * query's scores, softmax (normaliser in float64) and output, using its row of att as scratch.
 * The backward is split so that no two threads write the same value (no atomics, deterministic):
 *   ds_ij = p_ij (dz_i . v_j - sum_l p_il dz_i . v_l)      (one thread per query row, into d_att)
 *   dq_i = sum_{j <= i} ds_ij k_j,  dk_j = sum_{i >= j} ds_ij q_i,  dv_j = sum_{i >= j} p_ij dz_i
 *                                                           (one thread per (b, h, row, e))
 */
#include <math.h>

#include "cuda_internal.cuh"

#define THREADS 128

__device__ static float dotf(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* scores p[0..n) = q . k_j, softmax in place (float64 normaliser), z [Dh] = sum_j p_j v_j */
__device__ static void attend(float *z, float *p, const float *q, const float *base, int n,
                              int HD, int Q3, int Dh) {
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        p[j] = dotf(q, base + (size_t)j * Q3 + HD, Dh);
        mx = p[j] > mx ? p[j] : mx;
    }
    double sum = 0;
    for (int j = 0; j < n; j++) {
        p[j] = expf(p[j] - mx);
        sum += p[j];
    }
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < n; j++) p[j] *= inv;
    for (int e = 0; e < Dh; e++) {
        float acc = 0;
        for (int j = 0; j < n; j++) acc += p[j] * base[(size_t)j * Q3 + 2 * HD + e];
        z[e] = acc;
    }
}

/* thread = (b, h, i) */
__global__ static void k_attn_fwd_full(float *attn_out, float *att, const float *qkv, int B,
                                       int k, int H, int Dh) {
    int HD = H * Dh, Q3 = 3 * HD;
    size_t total = (size_t)B * H * k;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(t % k);
        size_t bh = t / k;
        int h = (int)(bh % H), b = (int)(bh / H);
        const float *base = qkv + (size_t)b * k * Q3 + h * Dh; /* q of row 0, head h */
        float *p = att + t * k;                                 /* [k] row i of (b, h) */
        attend(attn_out + ((size_t)b * k + i) * HD + h * Dh, p, base + (size_t)i * Q3, base,
               i + 1, HD, Q3, Dh);
        for (int j = i + 1; j < k; j++) p[j] = 0;
    }
}

/* thread = (b, h): the last query only */
__global__ static void k_attn_fwd_last(float *last_attn_out, float *last_att, const float *qkv,
                                       int B, int k, int H, int Dh) {
    int HD = H * Dh, Q3 = 3 * HD;
    size_t total = (size_t)B * H;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        int h = (int)(t % H), b = (int)(t / H);
        const float *base = qkv + (size_t)b * k * Q3 + h * Dh;
        attend(last_attn_out + (size_t)b * HD + h * Dh, last_att + t * k,
               base + (size_t)(k - 1) * Q3, base, k, HD, Q3, Dh);
    }
}

void cuda_attn_fwd_full(float *attn_out, float *att, const float *qkv, int B, int k, int H,
                        int Dh) {
    size_t n = (size_t)B * H * k;
    k_attn_fwd_full<<<cuda_blocks(n, THREADS), THREADS>>>(attn_out, att, qkv, B, k, H, Dh);
    CU_LAUNCH_CHECK();
}

void cuda_attn_fwd_last(float *last_attn_out, float *last_att, const float *qkv, int B, int k,
                        int H, int Dh) {
    size_t n = (size_t)B * H;
    k_attn_fwd_last<<<cuda_blocks(n, THREADS), THREADS>>>(last_attn_out, last_att, qkv, B, k, H,
                                                          Dh);
    CU_LAUNCH_CHECK();
}

/* ds [n] of one query: p [n] its probabilities, dz [Dh] the gradient of its output */
__device__ static void softmax_bwd(float *ds, const float *p, const float *dz, const float *base,
                                   int n, int HD, int Q3, int Dh) {
    double sdp = 0;
    for (int j = 0; j < n; j++) {
        ds[j] = dotf(dz, base + (size_t)j * Q3 + 2 * HD, Dh); /* dz . v_j */
        sdp += (double)p[j] * ds[j];
    }
    for (int j = 0; j < n; j++) ds[j] = p[j] * (ds[j] - (float)sdp);
}

/* thread = (b, h, i): d_att row i = ds_i. (zeros above the diagonal) */
__global__ static void k_attn_ds_full(float *d_att, const float *d_attn_out, const float *att,
                                      const float *qkv, int B, int k, int H, int Dh) {
    int HD = H * Dh, Q3 = 3 * HD;
    size_t total = (size_t)B * H * k;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(t % k);
        size_t bh = t / k;
        int h = (int)(bh % H), b = (int)(bh / H);
        const float *base = qkv + (size_t)b * k * Q3 + h * Dh;
        float *ds = d_att + t * k; /* [k] */
        softmax_bwd(ds, att + t * k, d_attn_out + ((size_t)b * k + i) * HD + h * Dh, base, i + 1,
                    HD, Q3, Dh);
        for (int j = i + 1; j < k; j++) ds[j] = 0;
    }
}

/* thread = (b, h, r, e): dq_r[e], dk_r[e], dv_r[e] of row r from the ds and p matrices of (b, h) */
__global__ static void k_attn_dqkv_full(float *d_qkv, const float *d_att, const float *d_attn_out,
                                        const float *att, const float *qkv, int B, int k, int H,
                                        int Dh) {
    int HD = H * Dh, Q3 = 3 * HD;
    size_t total = (size_t)B * H * k * Dh;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        int e = (int)(t % Dh);
        size_t q = t / Dh;
        int r = (int)(q % k);
        size_t bh = q / k;
        int h = (int)(bh % H), b = (int)(bh / H);
        const float *base = qkv + (size_t)b * k * Q3 + h * Dh + e; /* q_0[e] of head h */
        const float *P = att + bh * k * k, *S = d_att + bh * k * k; /* [k, k] */
        const float *dz = d_attn_out + (size_t)b * k * HD + h * Dh + e; /* dz_0[e] */
        float dq = 0, dk = 0, dv = 0;
        for (int j = 0; j <= r; j++) dq += S[(size_t)r * k + j] * base[(size_t)j * Q3 + HD];
        for (int i = r; i < k; i++) {
            dk += S[(size_t)i * k + r] * base[(size_t)i * Q3];
            dv += P[(size_t)i * k + r] * dz[(size_t)i * HD];
        }
        float *out = d_qkv + ((size_t)b * k + r) * Q3 + h * Dh + e;
        out[0] = dq;
        out[HD] = dk;
        out[2 * HD] = dv;
    }
}

void cuda_attn_bwd_full(float *d_qkv, float *d_att, const float *d_attn_out, const float *att,
                        const float *qkv, int B, int k, int H, int Dh) {
    size_t n = (size_t)B * H * k;
    k_attn_ds_full<<<cuda_blocks(n, THREADS), THREADS>>>(d_att, d_attn_out, att, qkv, B, k, H,
                                                         Dh);
    CU_LAUNCH_CHECK();
    k_attn_dqkv_full<<<cuda_blocks(n * Dh, THREADS), THREADS>>>(d_qkv, d_att, d_attn_out, att,
                                                                qkv, B, k, H, Dh);
    CU_LAUNCH_CHECK();
}

/* thread = (b, h): ds [k] of the last query into d_att [B, H, k] */
__global__ static void k_attn_ds_last(float *d_att, const float *d_last_attn_out,
                                      const float *last_att, const float *qkv, int B, int k,
                                      int H, int Dh) {
    int HD = H * Dh, Q3 = 3 * HD;
    size_t total = (size_t)B * H;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        int h = (int)(t % H), b = (int)(t / H);
        softmax_bwd(d_att + t * k, last_att + t * k, d_last_attn_out + (size_t)b * HD + h * Dh,
                    qkv + (size_t)b * k * Q3 + h * Dh, k, HD, Q3, Dh);
    }
}

/* thread = (b, h, j, e): dk_j[e] = ds_j q[e], dv_j[e] = p_j dz[e]; row k-1 also
 * dq[e] = sum_j ds_j k_j[e]. The q part of rows j < k-1 is left untouched (as the CPU). */
__global__ static void k_attn_dqkv_last(float *d_qkv, const float *d_att,
                                        const float *d_last_attn_out, const float *last_att,
                                        const float *qkv, int B, int k, int H, int Dh) {
    int HD = H * Dh, Q3 = 3 * HD;
    size_t total = (size_t)B * H * k * Dh;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total;
         t += (size_t)gridDim.x * blockDim.x) {
        int e = (int)(t % Dh);
        size_t q = t / Dh;
        int j = (int)(q % k);
        size_t bh = q / k;
        int h = (int)(bh % H), b = (int)(bh / H);
        const float *base = qkv + (size_t)b * k * Q3 + h * Dh + e; /* q_0[e] of head h */
        const float *S = d_att + bh * k, *P = last_att + bh * k;     /* [k] */
        float qe = base[(size_t)(k - 1) * Q3], dz = d_last_attn_out[(size_t)b * HD + h * Dh + e];
        float *out = d_qkv + ((size_t)b * k + j) * Q3 + h * Dh + e;
        out[HD] = S[j] * qe;
        out[2 * HD] = P[j] * dz;
        if (j == k - 1) {
            float dq = 0;
            for (int i = 0; i < k; i++) dq += S[i] * base[(size_t)i * Q3 + HD];
            out[0] = dq;
        }
    }
}

void cuda_attn_bwd_last(float *d_qkv, float *d_att, const float *d_last_attn_out,
                        const float *last_att, const float *qkv, int B, int k, int H, int Dh) {
    size_t n = (size_t)B * H;
    k_attn_ds_last<<<cuda_blocks(n, THREADS), THREADS>>>(d_att, d_last_attn_out, last_att, qkv,
                                                         B, k, H, Dh);
    CU_LAUNCH_CHECK();
    k_attn_dqkv_last<<<cuda_blocks(n * k * Dh, THREADS), THREADS>>>(
        d_qkv, d_att, d_last_attn_out, last_att, qkv, B, k, H, Dh);
    CU_LAUNCH_CHECK();
}
