#!/usr/bin/env bash
# fetch_sanitizer.sh: puts NVIDIA's compute-sanitizer (the PyPI wheel nvidia-cuda-sanitizer-api,
# ~14 MB, CUDA 13.0) into .device-bundle/, so that tools/gpu_check.sh can run memcheck and
# racecheck on a GPU machine whose CUDA installation lacks it (that machine has no network).
# Run on the build machine after /work/shared/device/bundle.sh (or any time before the device
# call); gpu_check.sh unpacks it when compute-sanitizer is not on the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device-bundle
python3 -m pip download --no-deps --quiet "nvidia-cuda-sanitizer-api==13.0.*" -d .device-bundle
ls -la .device-bundle/nvidia_cuda_sanitizer_api-*.whl
