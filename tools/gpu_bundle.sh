#!/usr/bin/env bash
# gpu_bundle.sh: packs this checkout's build for a GPU machine that has CUDA 13 but no HDF5, inih
# or OpenBLAS and no network: bin/ (lpe and the test programs) and the shared libraries they use
# (not glibc's, not CUDA's: the GPU machine has those in /usr/local/cuda/lib64), plus NVIDIA's
# compute-sanitizer (the PyPI wheel nvidia-cuda-sanitizer-api, CUDA 13.0) for gpu_check.sh's
# memcheck and racecheck. Works in a git worktree too (.device-bundle/ is in .gitignore).
#
#   make -j2 CUDA=1 && make -j2 test-c && tools/gpu_bundle.sh
#
# Writes .device-bundle/lpe.tar.gz and .device-bundle/nvidia_cuda_sanitizer_api-*.whl; the device
# call then carries .device-bundle (see tools/gpu_check.sh for the whole sequence).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x bin/lpe ] && [ -x bin/tests/test_cuda_backend ] || { echo "gpu_bundle: build first: make CUDA=1 && make test-c" >&2; exit 1; }
nm -C bin/lpe | grep -q lpe_cuda_backend_kind || { echo "gpu_bundle: bin/lpe has no CUDA backend (make CUDA=1)" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
cp -a bin/. "$stage/bin/"
find "$stage/bin" -type f -perm -u+x | while read -r f; do
  ldd "$f" 2>/dev/null | awk '$3 ~ /^\// {print $3}'
done | sort -u | grep -v -E '/(libc|libm|libpthread|libdl|librt|libresolv|ld-linux[^/]*)\.so' \
  | grep -v -E '/lib(cuda|cudart|cublas|cublasLt|curand|nvrtc|nvJitLink)\.so' \
  | while read -r lib; do cp -L "$lib" "$stage/lib/"; done
strip --strip-unneeded "$stage"/lib/*.so* 2>/dev/null || true
mkdir -p .device-bundle
tar -czf .device-bundle/lpe.tar.gz -C "$stage" bin lib
ls .device-bundle/nvidia_cuda_sanitizer_api-*.whl >/dev/null 2>&1 ||
  python3 -m pip download --no-deps --quiet "nvidia-cuda-sanitizer-api==13.0.*" -d .device-bundle ||
  echo "gpu_bundle: could not fetch compute-sanitizer (gpu_check.sh will skip memcheck/racecheck)" >&2
du -sh .device-bundle/* | sed 's/^/gpu_bundle: /'
