/* run_shard.c: one share of an experiment's targets (run_shard.h). Dimension legend: T = all
 * targets of a distribution, TS = the shard's share. */
#include "lpe/run_shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpe/common.h"
#include "lpe/h5io.h"
#include "lpe/truth.h"

void lpe_shard_parse(lpe_shard *s, const char *text, const char *what) {
    uint64_t i, N;
    lpe_truth_parse_shard(text, what, &i, &N);
    if (N > 65536) lpe_fail_input("%s: at most 65536 shards, got '%s'", what, text);
    s->index = (int)i;
    s->count = (int)N;
}

void lpe_shard_output(char *path, size_t n, const lpe_shard *s, int explicit_output) {
    if (!s->count || explicit_output) return;
    char base[1024];
    snprintf(base, sizeof base, "%s", path);
    size_t len = strlen(base);
    if (len > 3 && !strcmp(base + len - 3, ".h5")) base[len - 3] = 0;
    if ((size_t)snprintf(path, n, "%s.shard-%d-of-%d.h5", base, s->index, s->count) >= n)
        lpe_fail_input("%s: results path too long for a shard's name", base);
}

/* sha256 of the full target list and its truth: what every shard of one experiment shares */
static void fingerprint(char out[65], const int32_t *targets, const double *true_prob, int T) {
    lpe_sha256_ctx c;
    lpe_sha256_init(&c);
    lpe_sha256_update(&c, targets, sizeof *targets * (size_t)T);
    if (true_prob) lpe_sha256_update(&c, true_prob, sizeof *true_prob * (size_t)T);
    lpe_sha256_final(&c, out);
}

/* at most 16 blocks (the finest sharding), at least 8 targets each (batches across targets) */
int lpe_shard_block(int T) {
    int by_count = (T + 15) / 16, least = T < 8 ? T : 8;
    return by_count > least ? by_count : least > 0 ? least : 1;
}

static void *dup_bytes(const void *src, size_t n) {
    void *d = lpe_calloc(n + 1, 1);
    memcpy(d, src, n);
    return d;
}

void lpe_shard_take(lpe_shard_part *p, const lpe_shard *s, int32_t *targets, double *true_prob,
                    int *T) {
    memset(p, 0, sizeof *p);
    int total = *T;
    p->total = total;
    if (!s->count) return;
    int G = lpe_shard_block(total), nb = (total + G - 1) / G, q = nb / s->count, r = nb % s->count;
    int b0 = s->index * q + (s->index < r ? s->index : r), b1 = b0 + q + (s->index < r);
    p->first = b0 * G < total ? b0 * G : total;
    int end = b1 * G < total ? b1 * G : total;
    fingerprint(p->fingerprint, targets, true_prob, total);
    p->all_targets = dup_bytes(targets, sizeof *targets * (size_t)total);
    if (true_prob) p->all_true_prob = dup_bytes(true_prob, sizeof *true_prob * (size_t)total);
    memmove(targets, targets + p->first, sizeof *targets * (size_t)(end - p->first));
    if (true_prob) memmove(true_prob, true_prob + p->first, sizeof *true_prob * (size_t)(end - p->first));
    *T = end - p->first;
}

void lpe_shard_part_free(lpe_shard_part *p) {
    free(p->all_targets);
    free(p->all_true_prob);
    p->all_targets = NULL;
    p->all_true_prob = NULL;
}

void lpe_shard_root_attrs(hid_t file, const lpe_shard *s) {
    if (!s->count) return;
    char text[64];
    snprintf(text, sizeof text, "%d/%d", s->index, s->count);
    lpe_h5_attr_str(file, "shard", text);
}

void lpe_shard_dist_attrs(hid_t g, const lpe_shard *s, const lpe_shard_part *p) {
    if (!s->count) return;
    lpe_h5_attr_int(g, "shard_first", p->first);
    lpe_h5_attr_int(g, "shard_total", p->total);
    lpe_h5_attr_str(g, "shard_fingerprint", p->fingerprint);
}
