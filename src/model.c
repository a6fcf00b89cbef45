/* model.c: model files (methods.md §8): load with full validation, save atomically, random init.
 *
 * Dimension legend: L layers, D d_model, H heads, Dh d_head, F d_mlp, V d_vocab, C n_ctx.
 *
 * One tensor table (tensor_table) lists every float tensor of a config: its dataset name, its
 * shape, its init scale and where its pointer lives in lpe_model. Load, save and init all walk
 * that table, so the three can never disagree on names or shapes; the tensors are carved from
 * one allocation in table order.
 */
#include "lpe/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/h5io.h"
#include "lpe/philox.h"

typedef enum { INIT_NORMAL, INIT_ZERO, INIT_ONE } init_kind;

typedef struct {
    char name[64];
    int rank;
    int64_t dims[3];
    float **slot;
    init_kind init;
    double std; /* for INIT_NORMAL */
} tensor_spec;

#define MAX_TENSORS (8 + 20 * 64)

static int add(tensor_spec *t, int n, float **slot, init_kind init, double std, const char *name,
               int rank, int64_t d0, int64_t d1, int64_t d2) {
    LPE_ASSERT(n < MAX_TENSORS);
    snprintf(t[n].name, sizeof t[n].name, "%s", name);
    t[n].rank = rank;
    t[n].dims[0] = d0;
    t[n].dims[1] = d1;
    t[n].dims[2] = d2;
    t[n].slot = slot;
    t[n].init = init;
    t[n].std = std;
    return n + 1;
}

/* The table for m->cfg; m->layers must be allocated. Returns the number of tensors. */
static int tensor_table(tensor_spec *t, lpe_model *m) {
    const lpe_model_config *c = &m->cfg;
    int64_t D = c->d_model, H = c->n_heads, Dh = c->d_head, F = c->d_mlp, V = c->d_vocab;
    double s_in = 1.0 / sqrt((double)D), s_pos = 1.0 / sqrt(4.0 * D);
    double s_o = 1.0 / sqrt((double)H * Dh * c->n_layers), s_out = 1.0 / sqrt((double)F * c->n_layers);
    int n = 0;
    n = add(t, n, &m->W_E, INIT_NORMAL, s_in, "embed/W_E", 2, V, D, 0);
    n = add(t, n, &m->W_pos, INIT_NORMAL, s_pos, "pos_embed/W_pos", 2, c->n_ctx, D, 0);
    for (int l = 0; l < c->n_layers; l++) {
        lpe_layer *y = &m->layers[l];
        char p[64];
#define NAME(suffix) (snprintf(p, sizeof p, "blocks/%d/%s", l, suffix), p)
        n = add(t, n, &y->ln1_w, INIT_ONE, 0, NAME("ln1/w"), 1, D, 0, 0);
        n = add(t, n, &y->ln1_b, INIT_ZERO, 0, NAME("ln1/b"), 1, D, 0, 0);
        n = add(t, n, &y->W_Q, INIT_NORMAL, s_in, NAME("attn/W_Q"), 3, H, D, Dh);
        n = add(t, n, &y->W_K, INIT_NORMAL, s_in, NAME("attn/W_K"), 3, H, D, Dh);
        n = add(t, n, &y->W_V, INIT_NORMAL, s_in, NAME("attn/W_V"), 3, H, D, Dh);
        n = add(t, n, &y->W_O, INIT_NORMAL, s_o, NAME("attn/W_O"), 3, H, Dh, D);
        n = add(t, n, &y->b_Q, INIT_ZERO, 0, NAME("attn/b_Q"), 2, H, Dh, 0);
        n = add(t, n, &y->b_K, INIT_ZERO, 0, NAME("attn/b_K"), 2, H, Dh, 0);
        n = add(t, n, &y->b_V, INIT_ZERO, 0, NAME("attn/b_V"), 2, H, Dh, 0);
        n = add(t, n, &y->b_O, INIT_ZERO, 0, NAME("attn/b_O"), 1, D, 0, 0);
        if (!c->attn_only) {
            n = add(t, n, &y->ln2_w, INIT_ONE, 0, NAME("ln2/w"), 1, D, 0, 0);
            n = add(t, n, &y->ln2_b, INIT_ZERO, 0, NAME("ln2/b"), 1, D, 0, 0);
            n = add(t, n, &y->W_in, INIT_NORMAL, s_in, NAME("mlp/W_in"), 2, D, F, 0);
            n = add(t, n, &y->b_in, INIT_ZERO, 0, NAME("mlp/b_in"), 1, F, 0, 0);
            n = add(t, n, &y->W_out, INIT_NORMAL, s_out, NAME("mlp/W_out"), 2, F, D, 0);
            n = add(t, n, &y->b_out, INIT_ZERO, 0, NAME("mlp/b_out"), 1, D, 0, 0);
        }
#undef NAME
    }
    n = add(t, n, &m->lnf_w, INIT_ONE, 0, "ln_final/w", 1, D, 0, 0);
    n = add(t, n, &m->lnf_b, INIT_ZERO, 0, "ln_final/b", 1, D, 0, 0);
    n = add(t, n, &m->W_U, INIT_NORMAL, s_in, "unembed/W_U", 2, D, V, 0);
    if (c->has_b_U) n = add(t, n, &m->b_U, INIT_ZERO, 0, "unembed/b_U", 1, V, 0, 0);
    return n;
}

static size_t tensor_size(const tensor_spec *t) {
    size_t s = 1;
    for (int i = 0; i < t->rank; i++) s *= (size_t)t->dims[i];
    return s;
}

/* Allocate layers and the one float block; point every tensor into it. */
static int allocate(lpe_model *m, tensor_spec *t) {
    m->layers = lpe_calloc((size_t)m->cfg.n_layers, sizeof(lpe_layer));
    int n = tensor_table(t, m);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (tensor_size(&t[i]) + 15) / 16 * 16; /* 64-byte aligned */
    m->mem = lpe_alloc_aligned(total * sizeof(float));
    m->n_floats = total;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        *t[i].slot = m->mem + off;
        off += (tensor_size(&t[i]) + 15) / 16 * 16;
    }
    return n;
}

const char *lpe_act_name(lpe_act a) {
    switch (a) {
    case LPE_ACT_GELU: return "gelu";
    case LPE_ACT_GELU_NEW: return "gelu_new";
    case LPE_ACT_RELU: return "relu";
    }
    return "?";
}

static int act_from_name(const char *s, lpe_act *a) {
    if (!strcmp(s, "gelu")) *a = LPE_ACT_GELU;
    else if (!strcmp(s, "gelu_new")) *a = LPE_ACT_GELU_NEW;
    else if (!strcmp(s, "relu")) *a = LPE_ACT_RELU;
    else return 0;
    return 1;
}

void lpe_model_config_check(const lpe_model_config *c, const char *where) {
    const struct { const char *name; int v; int max; } f[] = {
        {"n_layers", c->n_layers, 64},      {"d_model", c->d_model, 1 << 16},
        {"n_heads", c->n_heads, 1024},      {"d_head", c->d_head, 1 << 14},
        {"d_mlp", c->d_mlp, 1 << 18},       {"d_vocab", c->d_vocab, 1 << 24},
        {"n_ctx", c->n_ctx, 1 << 20},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (!strcmp(f[i].name, "d_mlp") && c->attn_only) continue;
        if (f[i].v < 1 || f[i].v > f[i].max)
            lpe_fail_input("%s: %s = %d, expected 1 .. %d", where, f[i].name, f[i].v, f[i].max);
    }
    if (!(c->ln_eps > 0 && c->ln_eps < 1))
        lpe_fail_input("%s: ln_eps = %g, expected 0 < ln_eps < 1", where, c->ln_eps);
    if (c->act != LPE_ACT_GELU && c->act != LPE_ACT_GELU_NEW && c->act != LPE_ACT_RELU)
        lpe_fail_input("%s: unknown activation", where);
}

static int get_int_attr(hid_t f, const char *path, const char *name) {
    long long v = lpe_h5_get_attr_int(f, path, name);
    if (v < INT32_MIN || v > INT32_MAX) lpe_fail_input("%s: attribute %s out of range", path, name);
    return (int)v;
}

void lpe_model_load(lpe_model *m, const char *path) {
    memset(m, 0, sizeof *m);
    hid_t f = lpe_h5_open_read(path);
    lpe_model_config *c = &m->cfg;
    if (!lpe_h5_has_attr(f, "d_model"))
        lpe_fail_input("%s: not a model file (no root attribute d_model)", path);
    long long ver = lpe_h5_has_attr(f, "format_version") ? lpe_h5_get_attr_int(f, path, "format_version") : -1;
    if (ver != LPE_MODEL_FORMAT_VERSION)
        lpe_fail_input("%s: attribute format_version = %lld, expected %d", path, ver,
                       LPE_MODEL_FORMAT_VERSION);
    c->n_layers = get_int_attr(f, path, "n_layers");
    c->d_model = get_int_attr(f, path, "d_model");
    c->n_heads = get_int_attr(f, path, "n_heads");
    c->d_head = get_int_attr(f, path, "d_head");
    c->d_mlp = get_int_attr(f, path, "d_mlp");
    c->d_vocab = get_int_attr(f, path, "d_vocab");
    c->n_ctx = get_int_attr(f, path, "n_ctx");
    c->attn_only = get_int_attr(f, path, "attn_only");
    if (c->attn_only != 0 && c->attn_only != 1)
        lpe_fail_input("%s: attribute attn_only = %d, expected 0 or 1", path, c->attn_only);
    c->ln_eps = lpe_h5_get_attr_double(f, path, "ln_eps");
    char *act = lpe_h5_get_attr_str(f, path, "act_fn");
    if (!act_from_name(act, &c->act))
        lpe_fail_input("%s: attribute act_fn = '%s', expected gelu, gelu_new or relu", path, act);
    free(act);
    c->has_b_U = lpe_h5_exists(f, "unembed/b_U");
    lpe_model_config_check(c, path);

    tensor_spec *t = lpe_calloc(MAX_TENSORS, sizeof *t);
    int n = allocate(m, t);
    for (int i = 0; i < n; i++) {
        lpe_h5_read_into(*t[i].slot, f, path, t[i].name, H5T_NATIVE_FLOAT, t[i].rank, t[i].dims);
        const float *x = *t[i].slot;
        size_t sz = tensor_size(&t[i]);
        for (size_t e = 0; e < sz; e++)
            if (!isfinite(x[e]))
                lpe_fail_input("%s: dataset %s: non-finite value at flat index %zu", path, t[i].name, e);
    }
    free(t);

    if (lpe_h5_exists(f, "tokenizer/offsets") || lpe_h5_exists(f, "tokenizer/bytes")) {
        int64_t od[1] = {c->d_vocab + 1}, bd[1] = {-1}, nb[1];
        m->vocab_offsets = lpe_h5_read(f, path, "tokenizer/offsets", H5T_NATIVE_INT64, 1, od, NULL);
        m->vocab_bytes = lpe_h5_read(f, path, "tokenizer/bytes", H5T_NATIVE_UINT8, 1, bd, nb);
        if (m->vocab_offsets[0] != 0 || m->vocab_offsets[c->d_vocab] != nb[0])
            lpe_fail_input("%s: tokenizer/offsets must start at 0 and end at len(tokenizer/bytes) = %lld",
                           path, (long long)nb[0]);
        for (int v = 0; v < c->d_vocab; v++)
            if (m->vocab_offsets[v + 1] < m->vocab_offsets[v])
                lpe_fail_input("%s: tokenizer/offsets decreases at token %d", path, v);
    }
    lpe_h5_close(f);
    lpe_model_content_sha256(m, m->sha256);
    snprintf(m->path, sizeof m->path, "%s", path);
}

/* The model's identity (issue 13): sha256 of a canonical serialisation of what it computes, not
 * of the file's bytes (HDF5 writes timestamps and free space, so two saves of one model differ):
 * a tag, the configuration (int64 values, ln_eps's IEEE bits, the activation's name), then every
 * tensor in table order with its name, rank and dims (int64) and its floats' IEEE bits, all
 * little-endian whatever the machine. The tokenizer, a label, is not part of it. */
static void put_le(lpe_sha256_ctx *c, uint64_t v, int bytes) {
    uint8_t b[8];
    for (int i = 0; i < bytes; i++) b[i] = (uint8_t)(v >> (8 * i));
    lpe_sha256_update(c, b, (size_t)bytes);
}

static void put_floats(lpe_sha256_ctx *c, const float *x, size_t n) {
    uint8_t buf[4096];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; k + 4 <= sizeof buf && i < n; i++, k += 4) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            for (int j = 0; j < 4; j++) buf[k + (size_t)j] = (uint8_t)(u >> (8 * j));
        }
        lpe_sha256_update(c, buf, k);
    }
}

void lpe_model_content_sha256(const lpe_model *m_in, char out[65]) {
    lpe_model *m = (lpe_model *)m_in; /* the table needs slots; nothing is written through them */
    const lpe_model_config *g = &m->cfg;
    lpe_sha256_ctx c;
    lpe_sha256_init(&c);
    static const char tag[] = "lpe-model-content-v1";
    lpe_sha256_update(&c, tag, sizeof tag); /* with its NUL */
    const int64_t cfg[] = {g->n_layers, g->d_model, g->n_heads, g->d_head, g->d_mlp,
                           g->d_vocab,  g->n_ctx,   g->attn_only, g->has_b_U};
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) put_le(&c, (uint64_t)cfg[i], 8);
    uint64_t eps;
    memcpy(&eps, &g->ln_eps, 8);
    put_le(&c, eps, 8);
    const char *act = lpe_act_name(g->act);
    lpe_sha256_update(&c, act, strlen(act) + 1);
    tensor_spec *t = lpe_calloc(MAX_TENSORS, sizeof *t);
    int n = tensor_table(t, m);
    for (int i = 0; i < n; i++) {
        lpe_sha256_update(&c, t[i].name, strlen(t[i].name) + 1);
        put_le(&c, (uint64_t)t[i].rank, 8);
        for (int r = 0; r < t[i].rank; r++) put_le(&c, (uint64_t)t[i].dims[r], 8);
        put_floats(&c, *t[i].slot, tensor_size(&t[i]));
    }
    free(t);
    lpe_sha256_final(&c, out);
}

/* Standard normal pair from one Philox call (Box-Muller on two 53-bit uniforms). */
static void normal2(double out[2], uint64_t seed, uint32_t stream, uint64_t idx) {
    uint32_t w[4];
    lpe_rng4(w, seed, stream, idx, 0);
    double u1 = 1.0 - lpe_u01_53(w[0], w[1]); /* (0, 1] */
    double u2 = lpe_u01_53(w[2], w[3]);
    double r = sqrt(-2.0 * log(u1));
    out[0] = r * cos(2 * M_PI * u2);
    out[1] = r * sin(2 * M_PI * u2);
}

void lpe_model_init_random(lpe_model *m, const lpe_model_config *cfg, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    lpe_model_config_check(cfg, "model init");
    tensor_spec *t = lpe_calloc(MAX_TENSORS, sizeof *t);
    int n = allocate(m, t);
    for (int i = 0; i < n; i++) {
        float *x = *t[i].slot;
        size_t sz = tensor_size(&t[i]);
        uint32_t stream = lpe_stream(LPE_STREAM_INIT, (uint32_t)i);
        for (size_t e = 0; e < sz; e += 2) {
            if (t[i].init == INIT_NORMAL) {
                double z[2];
                normal2(z, seed, stream, e / 2);
                x[e] = (float)(t[i].std * z[0]);
                if (e + 1 < sz) x[e + 1] = (float)(t[i].std * z[1]);
            } else {
                float v = t[i].init == INIT_ONE ? 1.0f : 0.0f;
                x[e] = v;
                if (e + 1 < sz) x[e + 1] = v;
            }
        }
    }
    free(t);
}

void lpe_model_save(const lpe_model *m_in, const char *path, int force) {
    lpe_model *m = (lpe_model *)m_in; /* the table needs slots; nothing is written through them */
    lpe_h5_out o;
    lpe_h5_create(&o, path, force);
    const lpe_model_config *c = &m->cfg;
    lpe_h5_attr_int(o.file, "format_version", LPE_MODEL_FORMAT_VERSION);
    lpe_h5_attr_int(o.file, "n_layers", c->n_layers);
    lpe_h5_attr_int(o.file, "d_model", c->d_model);
    lpe_h5_attr_int(o.file, "n_heads", c->n_heads);
    lpe_h5_attr_int(o.file, "d_head", c->d_head);
    lpe_h5_attr_int(o.file, "d_mlp", c->d_mlp);
    lpe_h5_attr_int(o.file, "d_vocab", c->d_vocab);
    lpe_h5_attr_int(o.file, "n_ctx", c->n_ctx);
    lpe_h5_attr_int(o.file, "attn_only", c->attn_only);
    lpe_h5_attr_double(o.file, "ln_eps", c->ln_eps);
    lpe_h5_attr_str(o.file, "act_fn", lpe_act_name(c->act));
    tensor_spec *t = lpe_calloc(MAX_TENSORS, sizeof *t);
    int n = tensor_table(t, m);
    for (int i = 0; i < n; i++)
        lpe_h5_write(o.file, t[i].name, H5T_NATIVE_FLOAT, t[i].rank, t[i].dims, *t[i].slot, 0);
    free(t);
    if (m->vocab_offsets && m->vocab_bytes) {
        int64_t no = c->d_vocab + 1, nb = m->vocab_offsets[c->d_vocab];
        lpe_h5_write(o.file, "tokenizer/offsets", H5T_NATIVE_INT64, 1, &no, m->vocab_offsets, 0);
        lpe_h5_write(o.file, "tokenizer/bytes", H5T_NATIVE_UINT8, 1, &nb, m->vocab_bytes, 0);
    }
    lpe_h5_commit(&o);
}

void lpe_model_free(lpe_model *m) {
    lpe_free_aligned(m->mem);
    free(m->layers);
    free(m->vocab_bytes);
    free(m->vocab_offsets);
    memset(m, 0, sizeof *m);
}
