#!/usr/bin/env bash
# gpu_check.sh: the CUDA backend's checks and benchmarks on a GPU machine, from a build made on a
# machine without a GPU (nothing is compiled here). Prints a short table last. Designed to take
# under 6 minutes on one H100/H200 (each step has a timeout, and steps are skipped, marked so,
# once 330 s have passed), so that a rerun fits in 15 minutes of device time.
#
# Exact sequence for a later session (the device tool runs in a copy of the worktree):
#   1. here, in the worktree (no GPU needed):
#        make -j2 CUDA=1 && make -j2 test-c && tools/gpu_bundle.sh
#      (-> .device-bundle/: lpe.tar.gz with bin/ and its libraries, and the compute-sanitizer
#       wheel; /work/shared/device/bundle.sh does the first part but fails in a git worktree)
#   2. one device call:
#        run(command="mkdir -p /tmp/b && tar -xzf .device-bundle/lpe.tar.gz -C /tmp/b &&
#                     tools/gpu_check.sh /tmp/b", carry=[".device-bundle"], timeout_s=480)
#   3. logs: $OUT/gpu_check/*.log (one per step, fetched with the reply); the table is the
#      end of output_tail. Debugging: LPE_CUDA_SYNC=1 makes every launch synchronous, so an
#      error inside a kernel is reported (statement, function, file, line) at its launch.
#
# Usage: tools/gpu_check.sh [BUNDLE_DIR]   (BUNDLE_DIR: the unpacked bundle, default /tmp/b;
#        without one, bin/ of this checkout is used as is)
set -uo pipefail
cd "$(dirname "$0")/.."
B=${1:-/tmp/b}
if [ -d "$B/bin" ]; then
  export LD_LIBRARY_PATH=$B/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-} PATH=$B/bin:/usr/local/cuda/bin:/usr/local/cuda/compute-sanitizer:$PATH
  # the Python tests run ./bin/lpe: point it at the bundle (a real bin/ would be a stale build)
  if [ -L bin ] || [ ! -e bin ]; then ln -sfn "$B/bin" bin; else echo "warning: using ./bin, not $B/bin"; fi
else
  export PATH=/usr/local/cuda/bin:/usr/local/cuda/compute-sanitizer:$PATH
fi
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OMP_WAIT_POLICY=passive
LOG=${OUT:-/tmp}/gpu_check
mkdir -p "$LOG"
T0=$(date +%s)
rows=()

# step NAME TIMEOUT CMD...: runs CMD with output to $LOG/NAME.log; records status and seconds
step() {
  local name=$1 lim=$2; shift 2
  local used=$(( $(date +%s) - T0 ))
  if [ "$used" -gt 330 ]; then rows+=("$name|skipped (time)|-"); return; fi
  echo "== $name: $*"
  local t=$(date +%s)
  timeout -k 5 "$lim" "$@" > "$LOG/$name.log" 2>&1
  local rc=$? dt=$(( $(date +%s) - t ))
  tail -n 15 "$LOG/$name.log"
  local st=ok
  [ $rc -eq 124 ] && st="TIMEOUT (${lim}s)" || { [ $rc -ne 0 ] && st="FAILED (exit $rc)"; }
  rows+=("$name|$st|${dt}s")
}

nvidia-smi -L > "$LOG/device.log" 2>&1; cat "$LOG/device.log"
# compute-sanitizer from the wheel tools/gpu_bundle.sh put in the bundle, when not installed
whl=$(ls .device-bundle/nvidia_cuda_sanitizer_api-*.whl 2>/dev/null | head -n 1)
if ! command -v compute-sanitizer >/dev/null && [ -n "$whl" ]; then
  python3 -m zipfile -e "$whl" /tmp/sanitizer >/dev/null 2>&1 &&
    chmod +x /tmp/sanitizer/nvidia/cu13/bin/compute-sanitizer &&
    export PATH=/tmp/sanitizer/nvidia/cu13/bin:$PATH
fi
step test_cuda_backend 120 bin/tests/test_cuda_backend
if ! command -v compute-sanitizer >/dev/null; then
  echo "compute-sanitizer not found" > "$LOG/memcheck.log"; cp "$LOG/memcheck.log" "$LOG/racecheck.log"
  rows+=("memcheck|skipped (no compute-sanitizer)|-" "racecheck|skipped (no compute-sanitizer)|-")
else
step memcheck 100 env LPE_CUDA_TEST_QUICK=1 compute-sanitizer --tool memcheck --leak-check no \
  --error-exitcode 1 bin/tests/test_cuda_backend
step racecheck 120 env LPE_CUDA_TEST_QUICK=1 compute-sanitizer --tool racecheck \
  --error-exitcode 1 bin/tests/test_cuda_backend
fi
step pytest 100 python3 -m pytest -q -p no:cacheprovider -rs tests/python/test_cuda_backend_cli.py \
  tests/python/test_truth.py tests/python/test_forward.py
step bench_gelu1l 60 bin/lpe bench --backend cuda --batch 4096
W=$LOG/work; mkdir -p "$W"
bin/lpe model init --out "$W/g4.h5" --layers 4 --d-model 512 --heads 8 --d-head 64 --d-mlp 2048 \
  --vocab 48262 --ctx 1024 --seed 4 --force > "$LOG/init.log" 2>&1
step bench_gelu4l 60 bin/lpe bench --backend cuda --batch 4096 --model "$W/g4.h5" --k 33
bin/lpe model init --out "$W/g1.h5" --layers 1 --d-model 512 --heads 8 --d-head 64 --d-mlp 2048 \
  --vocab 48262 --ctx 1024 --seed 1 --force >> "$LOG/init.log" 2>&1
bin/lpe dist random --out "$W/d.h5" --name t --vocab 48262 --k 33 --support 3000 --factors 4 \
  --seed 2 >> "$LOG/init.log" 2>&1
NT=$((1 << 22))
step truth_gelu1l 60 bin/lpe truth --backend cuda --model "$W/g1.h5" --dist "$W/d.h5" --name t \
  --samples $NT --batch 4096 --out "$W/t.h5" --force
# ---- qld-dev: QLD's fused pair count and GLD's target logits at gelu-1l's unembedding shape,
# device against host (seconds and counts); the argmax histogram is in truth_gelu1l above ----
step qld_bench 90 bin/tests/test_cuda_backend --bench-unembed 16384
# ---- end qld-dev ----

# ---- ITGIS on the device (issue 10) --------------------------------------------------------
# itgis_cuda: ITGIS's inner loop on the GPU (kernels/cuda_itgis.cu) on the gelu-1l-shaped model,
# 8 targets x 2^16 samples (the samples/s line below). itgis_cmp: 4 targets x 2^12 on both
# backends, estimates compared: they differ by rounding (log-weights ~1e-6 relative through the
# float32 score products in S) unless a near-tie argmax or a token at a cdf boundary moves one
# sample, so a gross error (a wrong weight, a lost tile) shows as O(1); the step fails beyond 1%.
itgis_ini() { # $1 file, $2 budget, $3 targets (comma list)
  printf '[experiment]\nmodel = %s\ndistributions = %s\nnames = t\ntruth = none\nseed = 1\nbudget = %s\n[targets]\nlist = %s\n[method itgis]\nbatch = 256\ntemperature = 1.0\n' \
    "$W/g1.h5" "$W/d.h5" "$2" "$3" > "$1"
}
# targets with p in about [1e-6, 1e-3] in the truth step's counts (else fixed ids: then the
# estimates may all be 0 and the comparison says little)
tg=$(python3 -c "import h5py, numpy as np
c = h5py.File('$W/t.h5')['counts'][()]; n = c.sum(); i = np.flatnonzero((c >= 4e-6 * n) & (c <= 1e-3 * n))
print(', '.join(map(str, i[np.linspace(0, len(i) - 1, min(8, len(i))).astype(int)])) if len(i) >= 4 else '')" 2>/dev/null)
[ -n "$tg" ] || tg="11, 500, 3000, 9000, 17000, 25000, 33000, 48000"
echo "itgis targets: $tg" > "$LOG/itgis_targets.log"
itgis_ini "$W/itgis.ini" 65536 "$tg"
step itgis_cuda 90 bin/lpe run --force --backend cuda "$W/itgis.ini" --output "$W/itgis_cuda.h5"
itgis_ini "$W/itgis_cmp.ini" 4096 "$(echo "$tg" | cut -d, -f1-4)"
step itgis_cmp 150 bash -c "bin/lpe --quiet run --force --backend cuda '$W/itgis_cmp.ini' --output '$W/ic_gpu.h5' &&
  bin/lpe --quiet run --force --backend cpu '$W/itgis_cmp.ini' --output '$W/ic_cpu.h5' &&
  python3 -c \"import h5py, numpy as np, sys
a = h5py.File('$W/ic_cpu.h5')['t/itgis']; b = h5py.File('$W/ic_gpu.h5')['t/itgis']
ea, eb = a['estimate'][()], b['estimate'][()]
rel = np.abs(ea - eb) / np.maximum(np.abs(ea), 1e-300)
print('itgis cpu', ea, 'hits', a['hits'][()]); print('itgis gpu', eb, 'hits', b['hits'][()])
print('itgis max relative difference cpu vs cuda: %.3g' % rel.max())
sys.exit(0 if np.all(np.isfinite(eb)) and rel.max() <= 1e-2 else 1)\""
# ---- end ITGIS (issue 10) ------------------------------------------------------------------
# ---- walker operations (issue 10): MHIS's fused step on the device, gelu-1l shape ----
# (the CUDA-vs-CPU checks of the step are in test_cuda_backend and test_cuda_backend_cli above;
# targets: the first four of ITGIS's)
printf '%s\n' "[experiment]" "model = $W/g1.h5" "distributions = $W/d.h5" "names = t" \
  "truth = none" "output = $W/mhis.h5" "seed = 1" "backend = cuda" "budget = 2^18" "[targets]" \
  "list = $(echo "$tg" | cut -d, -f1-4)" "[method mhis]" "walkers = 4096" "burn_in = 16" \
  "save_chains = true" "chain_stride = 8" > "$W/mhis.ini"
step mhis_gelu1l 90 bin/lpe run --force "$W/mhis.ini"
# ---- end walker operations ----

echo
echo "==== gpu_check summary ($(head -n 1 "$LOG/device.log"))"
printf '%-18s %-22s %s\n' step status time
for r in "${rows[@]}"; do IFS='|' read -r a b c <<< "$r"; printf '%-18s %-22s %s\n' "$a" "$b" "$c"; done
grep -h 'passed, .* failed\|^SKIP' "$LOG/test_cuda_backend.log" 2>/dev/null | sed 's/^/  test: /'
grep -h 'ERROR SUMMARY\|RACECHECK SUMMARY' "$LOG/memcheck.log" "$LOG/racecheck.log" 2>/dev/null | sed 's/^/  sanitizer: /'
tail -n 1 "$LOG/pytest.log" 2>/dev/null | sed 's/^/  pytest: /'
grep -h 'fwd\|forward\|sgemm 4096\|backend cuda' "$LOG/bench_gelu1l.log" "$LOG/bench_gelu4l.log" 2>/dev/null | sed 's/^/  bench: /'
for r in "${rows[@]}"; do
  case $r in truth_gelu1l\|ok\|*)
    ts=${r##*|}; ts=${ts%s}; [ "$ts" -gt 0 ] || ts=1
    echo "  truth gelu-1l k33: $NT samples in ${ts}s (batch 4096, incl. start-up): $(( NT / ts )) samples/s";;
  esac
done
# ITGIS (issue 10): samples/s of the device loop, and the CPU/CUDA comparison
grep -h 'itgis: .* model calls/s' "$LOG/itgis_cuda.log" 2>/dev/null | sed 's/^/  itgis gelu-1l k33 (cuda): /'
grep -h 'max relative difference' "$LOG/itgis_cmp.log" 2>/dev/null | sed 's/^/  /'
grep -h -e '^bench-unembed: qld_pairs' -e '^bench-unembed: target_logits' "$LOG/qld_bench.log" 2>/dev/null | sed 's/^bench-unembed: /  unembed: /' # qld-dev
grep -h 'mhis:' "$LOG/mhis_gelu1l.log" 2>/dev/null | sed 's/^/  walkers (issue 10): /'
echo "  logs: $LOG   total $(( $(date +%s) - T0 ))s"
