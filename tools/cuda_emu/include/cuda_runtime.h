/* cuda_runtime.h (CPU emulation): just enough of the CUDA runtime for the lpe CUDA backend
 * (kernels/) to compile with a host C++ compiler and run on the CPU, so that its indexing and
 * logic can be tested on a machine without a GPU (tools/cuda_emu/run.sh). Not a general
 * emulator: 1-D grids and blocks, blocks run one after another; the threads of a block are
 * fibers (ucontext) switched only at __syncthreads and warp shuffles, which is enough for
 * kernels whose threads meet at barriers the same number of times (CUDA's own rule).
 * "Device" memory is host memory from calloc: out-of-range accesses show under ASan/valgrind.
 */
#ifndef LPE_CUDA_EMU_RUNTIME_H
#define LPE_CUDA_EMU_RUNTIME_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static /* blocks run one at a time: one copy per kernel is per block */

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    dim3() {}
    dim3(unsigned a) : x(a) {}
};

typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
} cudaError_t;
typedef enum {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
} cudaMemcpyKind;

struct cudaDeviceProp {
    char name[256];
    int major, minor;
    size_t totalGlobalMem;
};
typedef double *cudaEvent_t;

inline const char *cudaGetErrorName(cudaError_t e) { return e ? "cudaErrorEmulated" : "cudaSuccess"; }
inline const char *cudaGetErrorString(cudaError_t e) { return e ? "emulated error" : "no error"; }
inline cudaError_t cudaGetLastError(void) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int *n) {
    const char *s = getenv("LPE_CUDA_EMU_DEVICES"); /* "0": behave as a machine without one */
    *n = s ? atoi(s) : 1;
    return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int *d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
    snprintf(p->name, sizeof p->name, "CPU emulation of CUDA (tools/cuda_emu)");
    p->major = 9, p->minor = 0, p->totalGlobalMem = (size_t)24 << 30;
    return cudaSuccess;
}
inline cudaError_t cudaDriverGetVersion(int *v) { *v = 13000; return cudaSuccess; }
inline cudaError_t cudaRuntimeGetVersion(int *v) { *v = 13000; return cudaSuccess; }
inline cudaError_t cudaMemGetInfo(size_t *f, size_t *t) {
    *t = (size_t)24 << 30, *f = (size_t)16 << 30; /* an H100-like card: batch sizes as on a GPU */
    return cudaSuccess;
}
inline cudaError_t cudaMalloc(void **p, size_t n) {
    /* filled with a NaN pattern, as device memory is not zeroed: reads of unset values show */
    *p = malloc(n ? n : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xff, n);
    return cudaSuccess;
}
inline cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
inline cudaError_t cudaMemset(void *p, int v, size_t n) { memset(p, v, n); return cudaSuccess; }
inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) {
    memmove(d, s, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpy2D(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t h,
                                cudaMemcpyKind) {
    if (w > dp || w > sp) return cudaErrorInvalidValue;
    for (size_t r = 0; r < h; r++) memcpy((char *)d + r * dp, (const char *)s + r * sp, w);
    return cudaSuccess;
}
inline double emu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
inline cudaError_t cudaEventCreate(cudaEvent_t *e) { *e = (double *)calloc(1, sizeof(double)); return cudaSuccess; }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) { free(e); return cudaSuccess; }
inline cudaError_t cudaEventRecord(cudaEvent_t e, int = 0) { *e = emu_now(); return cudaSuccess; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = (float)((*b - *a) * 1e3);
    return cudaSuccess;
}

/* ---- ITGIS (issue 10): rounding intrinsics (the host rounds every operation to nearest and
 * does not contract a*b + c into an FMA in ISO C++ mode, so these are the plain operations) -- */
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
/* ---- end ITGIS (issue 10) ----------------------------------------------------------------- */

/* ---- walker operations (issue 10): streams, async copies, pinned memory ----------------------
 * Work runs at once on the host, so a stream is only a name, a copy is done when its call
 * returns, and waiting on an event has nothing to wait for. */
typedef struct emu_stream_s *cudaStream_t;
enum { cudaStreamNonBlocking = 1, cudaEventDisableTiming = 2, cudaHostAllocDefault = 0 };
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) {
    *s = (cudaStream_t)calloc(1, 16);
    return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t s) { free(s); return cudaSuccess; }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned = 0) { return cudaSuccess; }
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) { return cudaEventCreate(e); }
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) { *e = emu_now(); return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k,
                                   cudaStream_t = 0) {
    return cudaMemcpy(d, s, n, k);
}
inline cudaError_t cudaHostAlloc(void **p, size_t n, unsigned) { return cudaMalloc(p, n); }
inline cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }
/* ---- end walker operations ---- */

/* ---- kernels: launch, thread indices, barriers, shuffles ----------------------------------- */

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

struct emu_sched {
    int n = 0, cur = 0;              /* threads of the block, the running one */
    ucontext_t main;
    ucontext_t *ctx = nullptr;       /* [n] */
    char *stacks = nullptr;          /* [cap, STACK] */
    int cap = 0;
    int *done = nullptr;             /* [n] */
    int *nshfl = nullptr;            /* [n] shuffles done by each thread (double buffering) */
    uint64_t slot[2][1024];          /* shuffle exchange, by parity */
    void (*body)(void *) = nullptr;
    void *arg = nullptr;
    int yielded = 0;                 /* a barrier or shuffle was met in this launch */
    int direct = 0;                  /* threads run as plain calls (no fibers) */
};
inline emu_sched emu;
enum { EMU_STACK = 256 * 1024 };

inline void emu_fiber(int tid) {
    emu.body(emu.arg);
    emu.done[tid] = 1;
    swapcontext(&emu.ctx[tid], &emu.main);
}

/* back to the scheduler until every live thread of the block got here */
inline void emu_yield(void) {
    if (emu.direct) { fprintf(stderr, "emu: a barrier in a kernel whose first launch had none\n"); abort(); }
    emu.yielded = 1;
    swapcontext(&emu.ctx[emu.cur], &emu.main);
}
inline void __syncthreads(void) { emu_yield(); }

template <typename T> inline T emu_shfl_xor(T v, int o) {
    int tid = (int)threadIdx.x, par = emu.nshfl[tid]++ & 1;
    uint64_t w = 0;
    memcpy(&w, &v, sizeof v);
    emu.slot[par][tid] = w;
    emu_yield(); /* every live thread of the block has written its value */
    w = emu.slot[par][tid ^ o];
    memcpy(&v, &w, sizeof v);
    return v;
}
#define __shfl_xor_sync(mask, v, o) emu_shfl_xor((v), (o))

/* ---- atomics (qld-dev: the argmax histogram, QLD's pair counts) ---------------------------- */
/* Threads switch only at barriers and shuffles, so a plain read-modify-write is atomic here. */
inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) {
    unsigned long long old = *p;
    *p = old + v;
    return old;
}
/* ---- end atomics (qld-dev) ---- */

template <typename F> inline void emu_call(void *f) { (*(F *)f)(); }

/* run body for every (block, thread): blocks in order, a block's threads as fibers. A launch
 * site (F, one lambda type each) whose first launch met no barrier runs its threads as plain
 * calls from then on (much faster; the kernels here use barriers always or never). */
template <typename F> inline void emu_launch(dim3 grid, dim3 block, F f) {
    static int uses_barriers = -1; /* unknown until the first launch of this site */
    int n = (int)block.x;
    if (n > 1024 || grid.x == 0) { fprintf(stderr, "emu_launch: bad configuration\n"); abort(); }
    gridDim = grid, blockDim = block;
    if (uses_barriers == 0) {
        emu.direct = 1;
        for (unsigned b = 0; b < grid.x; b++) {
            blockIdx.x = b;
            for (int t = 0; t < n; t++) threadIdx.x = (unsigned)t, f();
        }
        emu.direct = 0;
        return;
    }
    emu.yielded = 0;
    if (emu.cap < n) {
        free(emu.stacks), free(emu.ctx), free(emu.done), free(emu.nshfl);
        emu.stacks = (char *)malloc((size_t)n * EMU_STACK);
        emu.ctx = (ucontext_t *)calloc(n, sizeof(ucontext_t));
        emu.done = (int *)calloc(n, sizeof(int));
        emu.nshfl = (int *)calloc(n, sizeof(int));
        emu.cap = n;
    }
    emu.n = n, emu.body = emu_call<F>, emu.arg = &f;
    gridDim = grid, blockDim = block;
    for (unsigned b = 0; b < grid.x; b++) {
        blockIdx.x = b;
        for (int t = 0; t < n; t++) {
            emu.done[t] = 0, emu.nshfl[t] = 0;
            getcontext(&emu.ctx[t]);
            emu.ctx[t].uc_stack.ss_sp = emu.stacks + (size_t)t * EMU_STACK;
            emu.ctx[t].uc_stack.ss_size = EMU_STACK;
            emu.ctx[t].uc_link = nullptr;
            makecontext(&emu.ctx[t], (void (*)())emu_fiber, 1, t);
        }
        for (int live = n; live > 0;) { /* rounds: each live thread runs to its next barrier */
            live = 0;
            for (int t = 0; t < n; t++) {
                if (emu.done[t]) continue;
                emu.cur = t, threadIdx.x = (unsigned)t;
                swapcontext(&emu.main, &emu.ctx[t]);
                live += !emu.done[t];
            }
        }
    }
    uses_barriers = emu.yielded;
}

#endif
