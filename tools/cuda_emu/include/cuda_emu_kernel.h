/* cuda_emu_kernel.h: included first by every kernels/ .cu file rewritten by unlaunch.py. */
#include "cuda_runtime.h"
