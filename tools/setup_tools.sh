#!/usr/bin/env bash
# Installs the heavy Python dependencies of the testbed tools (tools/requirements-tools.txt, the
# project's one pinned list: torch, tokenizers, ...; tools/setup.sh installs it too).
# Idempotent. The PyPI torch wheel pulls CUDA libraries (several GB) even though the testbed
# trains on the CPU; set TORCH_CPU_INDEX to a CPU wheel index (e.g.
# https://download.pytorch.org/whl/cpu) where one is reachable.
set -eu
cd "$(dirname "$0")/.."
missing=$(python3 - <<'PY'
import importlib.util
print(" ".join(m for m in ("torch", "tokenizers") if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
  echo "setup_tools: installing $missing"
  if [ -n "${TORCH_CPU_INDEX:-}" ] && [[ " $missing " == *" torch "* ]]; then
    python3 -m pip install -q torch --index-url "$TORCH_CPU_INDEX"
  fi
  python3 -m pip install -q -r tools/requirements-tools.txt
fi
echo "setup_tools: ok"
