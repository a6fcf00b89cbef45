/* cmd_model.c: `lpe model init`: a random model of any shape (the paper code's init scales). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/cmd.h"
#include "lpe/common.h"
#include "lpe/model.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lpe model init --out FILE.h5 [--preset NAME] [--layers L] [--d-model D]\n"
            "           [--heads H] [--d-head Dh] [--d-mlp F] [--vocab V] [--ctx C]\n"
            "           [--act gelu|gelu_new|relu] [--attn-only] [--ln-eps E] [--b-U]\n"
            "           [--seed S] [--force]\n\n"
            "Writes a random model in the docs/methods.md §8 layout. Init (as the paper's code): normal with\n"
            "std D^-1/2 for W_E, W_Q, W_K, W_V, W_in, W_U; (4D)^-1/2 for W_pos; (H Dh L)^-1/2 for\n"
            "W_O; (F L)^-1/2 for W_out; zero biases; unit LayerNorm gains. Seeded (Philox).\n"
            "Presets: gelu-1l, gelu-2l, gelu-4l (D 512, H 8 x 64, F 2048, V 48262, C 1024),\n"
            "small (L 2, D 64, H 4 x 16, F 256, V 512, C 64). Later options override a preset.\n");
}

static void preset(lpe_model_config *c, const char *name) {
    if (!strncmp(name, "gelu-", 5) && (!strcmp(name + 5, "1l") || !strcmp(name + 5, "2l") ||
                                       !strcmp(name + 5, "4l"))) {
        *c = (lpe_model_config){.n_layers = name[5] - '0', .d_model = 512, .n_heads = 8,
                                .d_head = 64, .d_mlp = 2048, .d_vocab = 48262, .n_ctx = 1024,
                                .act = LPE_ACT_GELU, .ln_eps = 1e-5};
    } else if (!strcmp(name, "small")) {
        *c = (lpe_model_config){.n_layers = 2, .d_model = 64, .n_heads = 4, .d_head = 16,
                                .d_mlp = 256, .d_vocab = 512, .n_ctx = 64, .act = LPE_ACT_GELU,
                                .ln_eps = 1e-5};
    } else {
        lpe_fail_input("model init: unknown preset '%s' (gelu-1l, gelu-2l, gelu-4l, small)", name);
    }
}

static int model_init(int argc, char **argv) {
    lpe_model_config c;
    preset(&c, "small");
    const char *out = NULL;
    unsigned long long seed = 1;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
#define NEEDV() (v = lpe_arg_value(argc, argv, &i, "model init"))
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--out")) { NEEDV(); out = v; }
        else if (!strcmp(a, "--preset")) { NEEDV(); preset(&c, v); }
        else if (!strcmp(a, "--layers")) { NEEDV(); c.n_layers = (int)lpe_parse_ll(v, a); }
        else if (!strcmp(a, "--d-model")) { NEEDV(); c.d_model = (int)lpe_parse_ll(v, a); }
        else if (!strcmp(a, "--heads")) { NEEDV(); c.n_heads = (int)lpe_parse_ll(v, a); }
        else if (!strcmp(a, "--d-head")) { NEEDV(); c.d_head = (int)lpe_parse_ll(v, a); }
        else if (!strcmp(a, "--d-mlp")) { NEEDV(); c.d_mlp = (int)lpe_parse_ll(v, a); }
        else if (!strcmp(a, "--vocab")) { NEEDV(); c.d_vocab = (int)lpe_parse_ll(v, a); }
        else if (!strcmp(a, "--ctx")) { NEEDV(); c.n_ctx = (int)lpe_parse_ll(v, a); }
        else if (!strcmp(a, "--ln-eps")) { NEEDV(); c.ln_eps = lpe_parse_double(v, a); }
        else if (!strcmp(a, "--seed")) { NEEDV(); seed = (unsigned long long)lpe_parse_ll(v, a); }
        else if (!strcmp(a, "--attn-only")) c.attn_only = 1;
        else if (!strcmp(a, "--b-U")) c.has_b_U = 1;
        else if (!strcmp(a, "--force")) force = 1;
        else if (!strcmp(a, "--act")) {
            NEEDV();
            if (!strcmp(v, "gelu")) c.act = LPE_ACT_GELU;
            else if (!strcmp(v, "gelu_new")) c.act = LPE_ACT_GELU_NEW;
            else if (!strcmp(v, "relu")) c.act = LPE_ACT_RELU;
            else lpe_fail_input("model init: --act '%s': expected gelu, gelu_new or relu", v);
        } else {
            fprintf(stderr, "lpe model init: unknown option '%s'\n", a);
            usage(stderr);
            return LPE_EXIT_INPUT;
        }
#undef NEEDV
    }
    if (!out) {
        usage(stderr);
        lpe_fail_input("model init: --out is required");
    }
    lpe_model m;
    lpe_model_init_random(&m, &c, seed);
    lpe_model_save(&m, out, force);
    printf("wrote %s: %d layers, d_model %d, %d heads x %d, d_mlp %d, vocab %d, ctx %d, %s%s, "
           "%zu floats\n",
           out, c.n_layers, c.d_model, c.n_heads, c.d_head, c.d_mlp, c.d_vocab, c.n_ctx,
           lpe_act_name(c.act), c.attn_only ? ", attention only" : "", m.n_floats);
    lpe_model_free(&m);
    return 0;
}

int lpe_cmd_model(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? LPE_EXIT_INPUT : 0;
    }
    if (!strcmp(argv[1], "init")) return model_init(argc - 1, argv + 1);
    fprintf(stderr, "lpe model: unknown subcommand '%s' (init)\n", argv[1]);
    return LPE_EXIT_INPUT;
}
