/* model_flops.c: floating-point operations of the pruned forward and of the backward to r0 for one
 * sequence of length k, counting the products the CPU backend performs (2 per multiply-add):
 * every projection, the causal attention scores and value sums (j <= i only). LayerNorm,
 * softmax and activations are elementwise and not counted.
 *
 * Dimension legend: L layers, D, H, Dh, HD = H*Dh, F, V, k.
 */
#include "lpe/model.h"

/* q.k over the causal pairs of one sequence, all heads: k(k+1)/2 pairs of Dh MACs */
static double causal(const lpe_model_config *c, int k) {
    return 2.0 * c->n_heads * c->d_head * (double)k * (k + 1) / 2.0;
}

double lpe_model_forward_flops(const lpe_model_config *c, int k) {
    double D = c->d_model, HD = (double)c->n_heads * c->d_head, F = c->attn_only ? 0 : c->d_mlp;
    double full = 2.0 * k * D * 3 * HD  /* q|k|v */
                  + 2 * causal(c, k)    /* scores, value sums */
                  + 2.0 * k * HD * D    /* W_O */
                  + 2.0 * k * 2 * D * F; /* W_in, W_out */
    double last = 2.0 * k * D * 2 * HD  /* k|v of every position */
                  + 2.0 * D * HD        /* q of the last position */
                  + 2.0 * 2 * k * HD    /* its scores and value sum */
                  + 2.0 * HD * D + 2.0 * 2 * D * F
                  + 2.0 * D * c->d_vocab; /* unembedding, one row */
    return (c->n_layers - 1) * full + last;
}

double lpe_model_backward_flops(const lpe_model_config *c, int k) {
    double D = c->d_model, HD = (double)c->n_heads * c->d_head, F = c->attn_only ? 0 : c->d_mlp;
    double full = 2.0 * k * 2 * D * F   /* through W_out, W_in */
                  + 2.0 * k * HD * D    /* through W_O */
                  + 4 * causal(c, k)    /* dz.v, dq, dk, dv */
                  + 2.0 * k * 3 * HD * D; /* through q|k|v */
    double last = 2.0 * 2 * D * F + 2.0 * HD * D
                  + 4 * 2.0 * k * HD    /* one query: dz.v, dq, dk, dv */
                  + 2.0 * k * 2 * HD * D /* through k|v of every position */
                  + 2.0 * HD * D;       /* through q of the last position */
    return (c->n_layers - 1) * full + last;
}
