/* cuda_gemm.cu: row-major products on cuBLAS (column-major), the error names of cuBLAS, and the
 * sgemm rate that `lpe bench` prints.
 *
 * Dimension legend: M, N, K matrix sizes; ld* row strides in floats.
 *
 * A row-major matrix X [r, c] with row stride ld is, read column-major, X^T [c, r] with leading
 * dimension ld. So C = A op(B) (row-major) is C^T = op(B)^T A^T (column-major): cuBLAS is called
 * with the operands swapped, m = N, n = M, and op(B)^T is B as stored (OP_N) when B is [K, N],
 * or its transpose (OP_T) when B is [N, K] and the product wants B^T.
 */
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.cuh"
#include "lpe/cuda.h"

const char *cuda_cublas_status_name(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
    }
}

int cuda_debug_sync(void) {
    static int v = -1; /* read once */
    if (v < 0) {
        const char *s = getenv("LPE_CUDA_SYNC");
        v = s && strcmp(s, "0") && *s ? 1 : 0;
    }
    return v;
}

void cuda_gemm(cublasHandle_t h, float *C, int ldc, const float *A, int lda, const float *Bm,
               int ldb, int M, int N, int K, int transB, float beta) {
    if (M <= 0 || N <= 0) return;
    const float one = 1.0f;
    CUBLAS_CHECK(cublasSgemm(h, transB ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one,
                             Bm, ldb, A, lda, &beta, C, ldc));
    if (cuda_debug_sync()) CU_CHECK(cudaDeviceSynchronize());
}

double lpe_cuda_sgemm_rate(int M, int N, int K, int reps) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev < 1) return 0;
    cublasHandle_t h;
    CUBLAS_CHECK(cublasCreate(&h));
    CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH)); /* FP32, no TF32 */
    size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
    float *mem;
    CU_CHECK(cudaMalloc((void **)&mem, (na + nb + nc) * sizeof(float)));
    CU_CHECK(cudaMemset(mem, 0, (na + nb + nc) * sizeof(float))); /* rate does not depend on values */
    float *A = mem, *B = mem + na, *C = mem + na + nb; /* [M, K], [K, N], [M, N] */
    cudaEvent_t e0, e1;
    CU_CHECK(cudaEventCreate(&e0));
    CU_CHECK(cudaEventCreate(&e1));
    float best_ms = 1e30f;
    for (int r = 0; r < reps + 1; r++) { /* the first is a warm-up */
        CU_CHECK(cudaEventRecord(e0));
        cuda_gemm(h, C, N, A, K, B, N, M, N, K, 0, 0.0f);
        CU_CHECK(cudaEventRecord(e1));
        CU_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        CU_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (r > 0 && ms < best_ms) best_ms = ms;
    }
    CU_CHECK(cudaEventDestroy(e0));
    CU_CHECK(cudaEventDestroy(e1));
    CU_CHECK(cudaFree(mem));
    CUBLAS_CHECK(cublasDestroy(h));
    return 2.0 * M * N * K / (best_ms * 1e-3) * 1e-9;
}
