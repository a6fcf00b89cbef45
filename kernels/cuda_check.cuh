/* cuda_check.cuh: every CUDA runtime and cuBLAS call of the backend goes through one of these
 * macros. A failure exits 1 through lpe_fail (so temporary outputs are removed) with the
 * statement, the error's name and text, the function, file and line: a later session debugging
 * on a GPU sees at once which call failed and where.
 *
 * CU_LAUNCH_CHECK(): after a kernel launch, catches launch-configuration errors at once. With
 * LPE_CUDA_SYNC=1 in the environment it also synchronises, so that an error inside a kernel is
 * reported at the launch that caused it instead of at the next copy (slow; for debugging).
 */
#ifndef LPE_CUDA_CHECK_CUH
#define LPE_CUDA_CHECK_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "lpe/common.h"

const char *cuda_cublas_status_name(cublasStatus_t s);
int cuda_debug_sync(void); /* LPE_CUDA_SYNC=1 */

#define CU_CHECK(stmt)                                                                           \
    do {                                                                                         \
        cudaError_t e_ = (stmt);                                                                 \
        if (e_ != cudaSuccess)                                                                   \
            lpe_fail("CUDA: %s failed: %s (%s) (in %s, %s:%d)", #stmt, cudaGetErrorName(e_),      \
                     cudaGetErrorString(e_), __func__, __FILE__, __LINE__);                      \
    } while (0)

#define CUBLAS_CHECK(stmt)                                                                       \
    do {                                                                                         \
        cublasStatus_t s_ = (stmt);                                                              \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                         \
            lpe_fail("cuBLAS: %s failed: %s (in %s, %s:%d)", #stmt,                               \
                     cuda_cublas_status_name(s_), __func__, __FILE__, __LINE__);                 \
    } while (0)

#define CU_LAUNCH_CHECK()                                                                        \
    do {                                                                                         \
        CU_CHECK(cudaGetLastError());                                                            \
        if (cuda_debug_sync()) CU_CHECK(cudaDeviceSynchronize());                                \
    } while (0)

/* blocks of `threads` covering n items (n > 0) */
static inline unsigned cuda_blocks(size_t n, int threads) {
    size_t b = (n + (size_t)threads - 1) / (size_t)threads;
    return (unsigned)(b < 65535u * 1024u ? b : 65535u * 1024u);
}

#endif
