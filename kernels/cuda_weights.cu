/* cuda_weights.cu: the model's weights on the device, uploaded once per model (lpe_weights) and
 * shared by every workspace made on them.
 *
 * Dimension legend: L layers, D = d_model, H heads, Dh = d_head, Q3 = 3*H*Dh, V = d_vocab.
 *
 * One device allocation: the host model's float block (model.h: every float tensor lives in
 * m->mem) copied as is, so each device tensor sits at its host offset, followed by the q|k|v
 * projection repacked per layer into one [D, Q3] matrix (column (p*H + h)*Dh + e is
 * W_{Q,K,V}[h][:, e], q scaled by 1/sqrt(Dh)): the layout of the CPU backend (cpu_internal.h),
 * so that q|k|v is one product.
 */
#include <math.h>
#include <stdlib.h>

#include "cuda_internal.cuh"
#include "lpe/common.h"

/* host [D, Q3] and [Q3] of layer l in the repacked layout */
static void repack_layer(float *W, float *bq, const lpe_layer *w, int D, int H, int Dh) {
    int Q3 = 3 * H * Dh;
    float qscale = (float)(1.0 / sqrt((double)Dh));
    const float *Ws[3] = {w->W_Q, w->W_K, w->W_V}; /* [H, D, Dh] each */
    const float *bs[3] = {w->b_Q, w->b_K, w->b_V}; /* [H, Dh] each */
    for (int p = 0; p < 3; p++) {
        float s = p == 0 ? qscale : 1.0f;
        for (int h = 0; h < H; h++)
            for (int e = 0; e < Dh; e++) {
                int col = (p * H + h) * Dh + e;
                bq[col] = s * bs[p][h * Dh + e];
                for (int dd = 0; dd < D; dd++)
                    W[(size_t)dd * Q3 + col] = s * Ws[p][((size_t)h * D + dd) * Dh + e];
            }
    }
}

/* the device address of a host tensor of the model (NULL stays NULL) */
static const float *dev(const cuda_weights *cw, const lpe_model *m, const float *host) {
    return host ? cw->mem + (host - m->mem) : NULL;
}

lpe_weights *cuda_upload(const lpe_model *m) {
    const lpe_model_config *cfg = &m->cfg;
    int L = cfg->n_layers, D = cfg->d_model, H = cfg->n_heads, Dh = cfg->d_head;
    size_t Q3 = 3 * (size_t)H * Dh, per_layer = (size_t)D * Q3 + Q3;
    cuda_weights *cw = (cuda_weights *)lpe_calloc(1, sizeof *cw);
    CU_CHECK(cudaMalloc((void **)&cw->mem, (m->n_floats + L * per_layer) * sizeof(float)));
    CU_CHECK(cudaMemcpy(cw->mem, m->mem, m->n_floats * sizeof(float), cudaMemcpyHostToDevice));
    float *host = (float *)lpe_calloc(per_layer, sizeof(float)); /* [D, Q3] then [Q3] */
    cw->layers = (cuda_layer *)lpe_calloc((size_t)L, sizeof *cw->layers);
    for (int l = 0; l < L; l++) {
        const lpe_layer *w = &m->layers[l];
        cuda_layer *cl = &cw->layers[l];
        float *dq = cw->mem + m->n_floats + l * per_layer; /* [D, Q3] then [Q3] */
        repack_layer(host, host + (size_t)D * Q3, w, D, H, Dh);
        CU_CHECK(cudaMemcpy(dq, host, per_layer * sizeof(float), cudaMemcpyHostToDevice));
        cl->Wqkv = dq;
        cl->bqkv = dq + (size_t)D * Q3;
        cl->ln1_w = dev(cw, m, w->ln1_w), cl->ln1_b = dev(cw, m, w->ln1_b);
        cl->W_O = dev(cw, m, w->W_O), cl->b_O = dev(cw, m, w->b_O);
        cl->ln2_w = dev(cw, m, w->ln2_w), cl->ln2_b = dev(cw, m, w->ln2_b);
        cl->W_in = dev(cw, m, w->W_in), cl->b_in = dev(cw, m, w->b_in);
        cl->W_out = dev(cw, m, w->W_out), cl->b_out = dev(cw, m, w->b_out);
    }
    free(host);
    cw->W_E = dev(cw, m, m->W_E);
    cw->W_pos = dev(cw, m, m->W_pos);
    cw->lnf_w = dev(cw, m, m->lnf_w), cw->lnf_b = dev(cw, m, m->lnf_b);
    cw->W_U = dev(cw, m, m->W_U);
    cw->b_U = dev(cw, m, m->b_U);
    CUBLAS_CHECK(cublasCreate(&cw->blas));
    /* the default: FP32 products (no TF32), the precision the CPU reference uses */
    CUBLAS_CHECK(cublasSetMathMode(cw->blas, CUBLAS_DEFAULT_MATH));
    lpe_weights *lw = (lpe_weights *)lpe_calloc(1, sizeof *lw);
    lw->impl = cw;
    return lw;
}

void cuda_free_weights(lpe_weights *w) {
    cuda_weights *cw = (cuda_weights *)w->impl;
    CUBLAS_CHECK(cublasDestroy(cw->blas));
    CU_CHECK(cudaFree(cw->mem));
    free(cw->layers);
    free(cw);
    free(w);
}
