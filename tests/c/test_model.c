/* test_model.c: random init (scales, determinism), save/load round trip, config checks, the
 * content hash (model identity). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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

/* Exit status of lpe_model_config_check(c) run in a child (it exits 2 on a bad config). */
static int config_check_status(lpe_model_config c) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        lpe_model_config_check(&c, "test");
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_config_checks(lpe_model_config ok) {
    CHECK(config_check_status(ok) == 0, "a valid config passes");
    struct { const char *what; lpe_model_config c; } bad[12];
    int n = 0;
#define BAD(field, value) (bad[n].what = #field " = " #value, bad[n].c = ok, bad[n].c.field = value, n++)
    BAD(n_layers, 0);
    BAD(n_layers, 65);
    BAD(d_model, 0);
    BAD(n_heads, -1);
    BAD(d_head, 0);
    BAD(d_mlp, 0);
    BAD(d_vocab, (1 << 24) + 1);
    BAD(n_ctx, 0);
    BAD(ln_eps, 0.0);
    BAD(ln_eps, 1.0);
    BAD(ln_eps, NAN);
    BAD(act, (lpe_act)99);
#undef BAD
    for (int i = 0; i < n; i++)
        CHECK(config_check_status(bad[i].c) == 2, "%s must be refused with exit 2", bad[i].what);
    lpe_model_config attn = ok;
    attn.attn_only = 1;
    attn.d_mlp = 0;
    CHECK(config_check_status(attn) == 0, "d_mlp is not checked for an attention-only model");
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
    /* identity by content: the in-memory model's hash, the same after a second save (whose
     * bytes differ: HDF5 stamps times), another for one changed weight */
    char mem_sha[65];
    lpe_model_content_sha256(&a, mem_sha);
    CHECK(!strcmp(mem_sha, b.sha256), "loaded %s, in memory %s", b.sha256, mem_sha);
    lpe_model_free(&b);
    sleep(1);
    lpe_model_save(&a, path, 1);
    lpe_model_load(&b, path);
    CHECK(!strcmp(mem_sha, b.sha256), "a second save of the model: %s", b.sha256);
    b.layers[1].W_V[7] = nextafterf(b.layers[1].W_V[7], 1.0f);
    char changed[65];
    lpe_model_content_sha256(&b, changed);
    CHECK(strcmp(changed, mem_sha) != 0, "one weight changed by one ulp: the same hash");
    lpe_model_free(&b);
    unlink(path);
    test_config_checks(c);
    lpe_model_free(&a);
    return check_summary("test_model");
}
