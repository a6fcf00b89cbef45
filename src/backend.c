/* backend.c: choosing a backend by name, destroying it, sizing batches to a memory budget, and
 * the CUDA stand-ins of a build without CUDA.
 */
#include "lpe/backend.h"

#include <string.h>

#include "cpu/cpu_internal.h"
#include "lpe/common.h"

#define CPU_DEFAULT_BUDGET (2.0 * 1024 * 1024 * 1024)
#define CUDA_DEFAULT_BUDGET (16.0 * 1024 * 1024 * 1024)

static const char *resolve(const char *name) {
    if (!name || !strcmp(name, "auto")) return lpe_cuda_available() ? "cuda" : "cpu";
    if (!strcmp(name, "cpu") || !strcmp(name, "cuda")) return name;
    lpe_fail_input("unknown backend '%s' (expected cpu, cuda or auto)", name);
}

lpe_backend *lpe_backend_create(const char *name, const lpe_model *m, int max_batch, int k,
                                int flags) {
    const char *r = resolve(name);
    if (!strcmp(r, "cuda")) return lpe_cuda_backend_create(m, max_batch, k, flags);
    return lpe_cpu_backend_create(m, max_batch, k, flags);
}

void lpe_backend_destroy(lpe_backend *be) {
    if (be) be->destroy(be);
}

/* The largest batch whose buffers fit `bytes`. The CUDA backend keeps the same buffers as the
 * CPU one (activations for the backward, gradients, state), so the CPU size table is the
 * estimate for both; the model's own weights are not counted. */
int lpe_backend_batch_for_budget(const char *name, const lpe_model_config *cfg, int k, int flags,
                                 double bytes) {
    const char *r = resolve(name);
    if (bytes <= 0) bytes = !strcmp(r, "cuda") ? CUDA_DEFAULT_BUDGET : CPU_DEFAULT_BUDGET;
    int lo = 1, hi = 1 << 24; /* largest B in [lo, hi] with size(B) <= bytes (size grows with B) */
    if ((double)cpu_batch_bytes(cfg, lo, k, flags) > bytes) return 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if ((double)cpu_batch_bytes(cfg, mid, k, flags) <= bytes)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

#ifndef LPE_HAVE_CUDA
int lpe_cuda_available(void) { return 0; }

lpe_backend *lpe_cuda_backend_create(const lpe_model *m, int max_batch, int k, int flags) {
    (void)m;
    (void)max_batch;
    (void)k;
    (void)flags;
    lpe_fail_input("backend 'cuda': this lpe was built without CUDA (rebuild with nvcc on the "
                   "PATH, see `make help`)");
}
#endif
