/* test_model.c: random init (scales, determinism), save/load round trip, config checks. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "lpe/model.h"

static double sample_std(const float *x, size_t n) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        s += x[i];
        s2 += (double)x[i] * x[i];
    }
    double m = s / n;
    return sqrt(s2 / n - m * m);
}

int main(void) {
    lpe_model_config c = {.n_layers = 2, .d_model = 48, .n_heads = 3, .d_head = 5, .d_mlp = 96,
                          .d_vocab = 301, .n_ctx = 12, .act = LPE_ACT_GELU_NEW, .ln_eps = 1e-5,
                          .has_b_U = 1};
    lpe_model a, b;
    lpe_model_init_random(&a, &c, 7);
    lpe_model_init_random(&b, &c, 7);
    CHECK(a.n_floats == b.n_floats && !memcmp(a.mem, b.mem, a.n_floats * sizeof(float)),
          "same seed must give the same weights");
    lpe_model_free(&b);
    lpe_model_init_random(&b, &c, 8);
    CHECK(memcmp(a.W_E, b.W_E, sizeof(float) * c.d_vocab * c.d_model) != 0, "seed ignored");
    lpe_model_free(&b);

    /* init scales: sample std of n normals has relative standard error ~ 1/sqrt(2n); 6 s.e. */
    size_t n = (size_t)c.d_vocab * c.d_model;
    double se = 6.0 / sqrt(2.0 * n);
    CHECK_CLOSE(sample_std(a.W_E, n), 1 / sqrt(48.0), 0, se);
    n = (size_t)c.n_ctx * c.d_model;
    CHECK_CLOSE(sample_std(a.W_pos, n), 1 / sqrt(4 * 48.0), 0, 6.0 / sqrt(2.0 * n));
    n = (size_t)c.n_heads * c.d_head * c.d_model;
    CHECK_CLOSE(sample_std(a.layers[1].W_O, n), 1 / sqrt(3.0 * 5 * 2), 0, 6.0 / sqrt(2.0 * n));
    n = (size_t)c.d_mlp * c.d_model;
    CHECK_CLOSE(sample_std(a.layers[0].W_out, n), 1 / sqrt(96.0 * 2), 0, 6.0 / sqrt(2.0 * n));
    CHECK(a.layers[0].ln1_w[3] == 1.0f && a.layers[0].b_Q[2] == 0.0f && a.b_U[5] == 0.0f,
          "LayerNorm gains 1, biases 0");

    /* round trip through a file is bit exact */
    char path[] = "/tmp/lpe_test_model_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    lpe_model_save(&a, path, 1);
    lpe_model_load(&b, path);
    CHECK(b.cfg.n_layers == 2 && b.cfg.d_head == 5 && b.cfg.act == LPE_ACT_GELU_NEW && b.cfg.has_b_U,
          "config round trip");
    CHECK(b.n_floats == a.n_floats && !memcmp(a.mem, b.mem, a.n_floats * sizeof(float)),
          "weights round trip");
    CHECK(strlen(b.sha256) == 64, "sha256 recorded");
    lpe_model_free(&b);
    unlink(path);
    lpe_model_free(&a);
    return check_summary("test_model");
}
