/* model.h: the transformer's configuration and weights (methods.md §2, file contract methods.md §8).
 *
 * Dimension legend (used in shape comments across the project):
 *   L = n_layers, D = d_model, H = n_heads, Dh = d_head, F = d_mlp, V = d_vocab, C = n_ctx
 *   k = sequence length of an input (k <= C), B = batch of sequences
 *
 * Weights are stored exactly as the model file holds them (TransformerLens layout, float32).
 * All tensors live in one allocation (`mem`), carved by a size table in model.c. A backend may
 * repack them into its own layout when it is created; this struct is never modified by one.
 */
#ifndef LPE_MODEL_H
#define LPE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus /* the CUDA backend (kernels/, C++) includes this header */
extern "C" {
#endif

#define LPE_MODEL_FORMAT_VERSION 1

typedef enum { LPE_ACT_GELU = 0, LPE_ACT_GELU_NEW = 1, LPE_ACT_RELU = 2 } lpe_act;

typedef struct {
    int n_layers, d_model, n_heads, d_head, d_mlp, d_vocab, n_ctx;
    lpe_act act;
    double ln_eps;
    int attn_only; /* 1: no MLP sublayer (and no ln2) */
    int has_b_U;   /* 1: unembed/b_U present */
} lpe_model_config;

typedef struct {
    float *ln1_w, *ln1_b;          /* [D], [D] */
    float *W_Q, *W_K, *W_V;        /* [H, D, Dh] each */
    float *b_Q, *b_K, *b_V;        /* [H, Dh] each */
    float *W_O;                    /* [H, Dh, D] */
    float *b_O;                    /* [D] */
    float *ln2_w, *ln2_b;          /* [D], [D]; NULL when attn_only */
    float *W_in, *b_in;            /* [D, F], [F]; NULL when attn_only */
    float *W_out, *b_out;          /* [F, D], [D]; NULL when attn_only */
} lpe_layer;

typedef struct {
    lpe_model_config cfg;
    float *W_E;         /* [V, D] */
    float *W_pos;       /* [C, D] */
    lpe_layer *layers;  /* [L] */
    float *lnf_w, *lnf_b; /* [D], [D] */
    float *W_U;         /* [D, V] */
    float *b_U;         /* [V] or NULL */
    float *mem;         /* the one allocation all float tensors point into */
    size_t n_floats;
    /* optional vocabulary: token v is vocab_bytes[vocab_offsets[v] .. vocab_offsets[v+1]) */
    uint8_t *vocab_bytes;   /* [vocab_offsets[V]] or NULL */
    int64_t *vocab_offsets; /* [V + 1] or NULL */
    char sha256[65];        /* identity: lpe_model_content_sha256 ("" for a model made in memory) */
    char path[1024];
} lpe_model;

/* Load and validate a model file (every attribute, shape, dtype, finiteness). Exit 2 with a
 * message naming the file and dataset on any problem. */
void lpe_model_load(lpe_model *m, const char *path);
/* Random model with the paper code's init scales (see model.c), seeded via Philox. */
void lpe_model_init_random(lpe_model *m, const lpe_model_config *cfg, uint64_t seed);
/* Write to `path` atomically (temporary name, then rename). Refuses to overwrite unless force. */
void lpe_model_save(const lpe_model *m, const char *path, int force);
void lpe_model_free(lpe_model *m);
/* sha256 of the model's content (configuration and weights in a canonical little-endian byte
 * order), the same for every file holding this model; model.c says exactly what is hashed. */
void lpe_model_content_sha256(const lpe_model *m, char out[65]);
/* Check a config for consistency (positive sizes, known act); exit 2 naming `where`. */
void lpe_model_config_check(const lpe_model_config *cfg, const char *where);
const char *lpe_act_name(lpe_act a);
/* FLOPs of the pruned forward (last position only where it suffices) for one sequence of
 * length k; and of the backward to the embedding input. Used by benchmarks. */
double lpe_model_forward_flops(const lpe_model_config *cfg, int k);
double lpe_model_backward_flops(const lpe_model_config *cfg, int k);

#ifdef __cplusplus
}
#endif

#endif
