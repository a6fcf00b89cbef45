#!/usr/bin/env bash
# run.sh: builds the CUDA backend against the CPU emulation (tools/cuda_emu/include) in a copy of
# the tree and runs tests/c/test_cuda_backend there: the kernels' indexing, the backend's
# bookkeeping and the comparisons with the CPU backend, on a machine without a GPU. It checks
# logic, not the GPU: no races between real threads, no warp-level timing, no cuBLAS.
#   tools/cuda_emu/run.sh            quick shapes (LPE_CUDA_TEST_QUICK=1)
#   tools/cuda_emu/run.sh full       every shape (slow: the gelu-1l shape's unembedding)
#   tools/cuda_emu/run.sh py         tests/python/test_cuda_backend_cli.py on the emulated lpe
#   EMU_ASAN=1 tools/cuda_emu/run.sh AddressSanitizer on the backend and the tests
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
work=${EMU_DIR:-/tmp/lpe-cuda-emu-$(id -u)-$(printf %s "$top" | md5sum | cut -c1-8)}  # one per checkout
mkdir -p "$work/root/lib64"
echo 'int lpe_cuda_emu_placeholder;' | cc -x c -c - -o "$work/root/empty.o"
for l in cudart cublas; do  # stand-ins: the emulation is header-only
  rm -f "$work/root/lib64/lib$l.a" && ar rcs "$work/root/lib64/lib$l.a" "$work/root/empty.o"
done
mkdir -p "$work/tree"
for d in Makefile include src kernels tests tools; do  # the sources (build outputs kept)
  rm -rf "$work/tree/$d"
  cp -a "$top/$d" "$work/tree/$d"
done
cd "$work/tree"
rm -rf build/kernels  # the Makefile does not see the emulation headers change: recompile
san=
if [ "${EMU_ASAN:-0}" = 1 ]; then san="-fsanitize=address -fno-omit-frame-pointer"; fi
export EMU_CXXFLAGS="$san"
make -s -j2 CUDA=1 NVCC="$work/tree/tools/cuda_emu/nvcc" CUDA_HOME="$work/root" OPT="-O1" \
  CFLAGS="$san" LDFLAGS="$san" bin/lpe bin/tests/test_cuda_backend >/dev/null
if [ "${1:-}" = py ]; then
  exec python3 -m pytest -q -p no:cacheprovider -rs tests/python/test_cuda_backend_cli.py
fi
quick=1; [ "${1:-}" = full ] && quick=0
ASAN_OPTIONS=detect_leaks=0:detect_stack_use_after_return=0 LPE_CUDA_TEST_QUICK=$quick \
  OMP_NUM_THREADS=1 bin/tests/test_cuda_backend
