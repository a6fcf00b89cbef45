/* cuda.h: what the CUDA backend (kernels/) offers besides its lpe_backend_kind entry. Declared
 * only in builds with LPE_HAVE_CUDA.
 */
#ifndef LPE_CUDA_H
#define LPE_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

/* GFLOP/s of cuBLAS sgemm (FP32) at row-major M x N x K, best of reps after one warm-up, on
 * device 0 (`lpe bench --backend cuda` prints it beside the forward rate). 0 without a device. */
double lpe_cuda_sgemm_rate(int M, int N, int K, int reps);

#ifdef __cplusplus
}
#endif

#endif
