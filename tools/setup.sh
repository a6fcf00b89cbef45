#!/usr/bin/env bash
# Installs everything lpe needs on a fresh Debian machine (idempotent, quick when done already):
#   Debian: build tools, HDF5 C library + tools, inih, OpenBLAS (OpenMP build), bc;
#           Slurm and munge (tools/setup_slurm.sh: lpe-sbatch and its tests)
#   PyPI:   numpy, h5py, pytest (tests and tools), matplotlib (plots);
#           tools/requirements-tools.txt (torch, transformers, transformer-lens, tokenizers,
#           safetensors: the checkpoint converters, the testbed builder and their tests;
#           about 6 GB and 2 minutes on a fresh machine, skipped when already importable)
set -eu
need_apt=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in build-essential pkg-config libhdf5-dev hdf5-tools libinih-dev libopenblas-openmp-dev bc; do
  have_pkg "$p" || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "setup: installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
"$(dirname "$0")/setup_slurm.sh"
py_missing=$(python3 - <<'PY'
import importlib.util
mods = {"numpy": "numpy", "h5py": "h5py", "pytest": "pytest", "matplotlib": "matplotlib"}
print(" ".join(p for m, p in mods.items() if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$py_missing" ]; then
  echo "setup: installing Python packages: $py_missing"
  python3 -m pip install -q $py_missing 2>&1 | grep -v -i 'warning: running pip as' || true
fi
tools_missing=$(python3 - <<'PY'
import importlib.util
mods = ["torch", "transformers", "transformer_lens", "tokenizers", "safetensors"]
print(" ".join(m for m in mods if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$tools_missing" ]; then
  echo "setup: installing the tools' Python packages (missing: $tools_missing)"
  python3 -m pip install -q -r "$(dirname "$0")/requirements-tools.txt" 2>&1 | grep -v -i 'warning: running pip as' || true
fi
echo "setup: ok"
