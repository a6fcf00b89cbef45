/* backend.c: the backend table, choosing an entry by name, weights and workspaces, and sizing
 * batches to a memory budget. It knows no backend's insides: each entry brings its own
 * functions (src/cpu/cpu_backend.c, kernels/ when built with CUDA).
 */
#include "lpe/backend.h"

#include <string.h>

#include "lpe/common.h"

/* In order of preference for "auto". */
static const lpe_backend_kind *const kinds[] = {
#ifdef LPE_HAVE_CUDA
    &lpe_cuda_backend_kind,
#endif
    &lpe_cpu_backend_kind,
};
enum { N_KINDS = sizeof kinds / sizeof *kinds };

int lpe_backend_kind_count(void) { return N_KINDS; }

const lpe_backend_kind *lpe_backend_kind_at(int i) {
    LPE_ASSERT(i >= 0 && i < N_KINDS);
    return kinds[i];
}

const lpe_backend_kind *lpe_backend_kind_find(const char *name) {
    int automatic = !name || !strcmp(name, "auto");
    for (int i = 0; i < N_KINDS; i++) {
        if (!automatic && strcmp(name, kinds[i]->name)) continue;
        if (kinds[i]->available()) return kinds[i];
        if (!automatic)
            lpe_fail_input("backend '%s': no usable device on this machine%s", kinds[i]->name,
                           strcmp(kinds[i]->name, "cuda") ? "" : " (no CUDA device or driver)");
    }
    if (automatic) lpe_fail_input("backend 'auto': no backend is usable on this machine");
    if (!strcmp(name, "cuda"))
        lpe_fail_input("backend 'cuda': this lpe was built without CUDA (rebuild with nvcc on the "
                       "PATH, see `make help`)");
    lpe_fail_input("unknown backend '%s' (expected cpu, cuda or auto)", name);
}

int lpe_backend_available(const char *name) {
    for (int i = 0; i < N_KINDS; i++)
        if (!strcmp(name, kinds[i]->name)) return kinds[i]->available();
    return 0;
}

lpe_weights *lpe_weights_upload(const char *name, const lpe_model *m) {
    const lpe_backend_kind *kind = lpe_backend_kind_find(name);
    lpe_weights *w = kind->upload(m);
    w->kind = kind;
    w->model = m;
    return w;
}

void lpe_weights_free(lpe_weights *w) {
    if (w) w->kind->free_weights(w);
}

lpe_backend *lpe_backend_create_on(lpe_weights *w, int max_batch, int k, int flags) {
    lpe_backend *be = w->kind->create(w, max_batch, k, flags);
    be->weights = w;
    be->model = w->model;
    return be;
}

lpe_backend *lpe_backend_create(const char *name, const lpe_model *m, int max_batch, int k,
                                int flags) {
    lpe_backend *be = lpe_backend_create_on(lpe_weights_upload(name, m), max_batch, k, flags);
    be->owns_weights = 1;
    return be;
}

void lpe_backend_destroy(lpe_backend *be) {
    if (!be) return;
    lpe_weights *w = be->owns_weights ? be->weights : NULL;
    be->destroy(be);
    lpe_weights_free(w);
}

/* The largest batch whose workspace fits `bytes` (the entry's own size table; weights are not
 * counted). */
int lpe_backend_batch_for_budget(const char *name, const lpe_model_config *cfg, int k, int flags,
                                 double bytes) {
    const lpe_backend_kind *kind = lpe_backend_kind_find(name);
    if (bytes <= 0) bytes = kind->default_budget();
    int lo = 1, hi = 1 << 24; /* largest B in [lo, hi] with size(B) <= bytes (size grows with B) */
    if ((double)kind->batch_bytes(cfg, lo, k, flags) > bytes) return 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if ((double)kind->batch_bytes(cfg, mid, k, flags) <= bytes)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

void lpe_backend_check_tokens(const int32_t *tokens, int B, int k, int V, const char *what) {
    for (int b = 0; b < B; b++)
        for (int i = 0; i < k; i++) {
            int32_t v = tokens[(size_t)b * k + i];
            if (v < 0 || v >= V)
                lpe_fail_input("%s: token id %d at row %d, position %d is outside the vocabulary "
                               "[0, %d)",
                               what, (int)v, b, i, V);
        }
}
