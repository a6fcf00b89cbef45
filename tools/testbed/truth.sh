#!/usr/bin/env bash
# truth.sh: ground truth (lpe truth, docs/methods.md §5) for every (model, distribution) of the testbed:
# experiments/testbed/truth/{model}/{dist}.h5 with N samples (seed 0). Resumable: a run killed
# midway continues from its checkpoint (OUT.h5.ckpt); a file holding N0 samples, N0 dividing N,
# is extended by the missing shards (samples [N0, N)), which are merged into it, so that counts
# add up across sessions and machines.
# Usage: tools/testbed/truth.sh [-j JOBS] [-n N] [-b cpu|cuda|auto] [MODEL ...]
#   MODEL: gelu-1l gelu-2l gelu-4l (default all); JOBS pairs run at once (default 1), each on
#   one CPU thread (OMP_NUM_THREADS=1) unless the environment says otherwise.
set -eu
cd "$(dirname "$0")/../.."
T=experiments/testbed
B=build/testbed/shards
jobs=1; N=4194304; backend=cpu
while getopts "j:n:b:" o; do
  case $o in j) jobs=$OPTARG ;; n) N=$OPTARG ;; b) backend=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
models=${*:-gelu-1l gelu-2l gelu-4l}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=1
[ -x bin/lpe ] || make -j2
names=$(python3 -c "import h5py,sys; print(' '.join(h5py.File(sys.argv[1],'r').keys()))" "$T/dists.h5")
mkdir -p "$B"

one() {  # model dist: bring truth/{model}/{dist}.h5 to N samples
  local m=$1 d=$2 out="$T/truth/$1/$2.h5" have=0
  mkdir -p "$T/truth/$m"
  [ -f "$out" ] && have=$(python3 -c "import h5py,sys; print(int(h5py.File(sys.argv[1],'r').attrs['n_samples']))" "$out")
  [ "$have" -ge "$N" ] && { echo "truth: $m/$d has $have samples"; return 0; }
  local common=(--model "$T/models/$m.h5" --dist "$T/dists.h5" --name "$d" --seed 0 --backend "$backend")
  if [ "$have" -eq 0 ]; then
    bin/lpe --quiet truth "${common[@]}" --samples "$N" --out "$out"
    return
  fi
  if [ $((N % have)) -ne 0 ]; then
    echo "truth: $out holds $have samples, which does not divide $N" >&2; return 2
  fi
  local n=$((N / have)) shards=("$out")
  for ((i = 1; i < n; i++)); do
    local s="$B/$m.$d.$N.$i.h5"
    [ -f "$s" ] || bin/lpe --quiet truth "${common[@]}" --samples "$N" --shard "$i/$n" --out "$s"
    shards+=("$s")
  done
  bin/lpe truth merge "$out.merged" "${shards[@]}" --force && mv "$out.merged" "$out"
  rm -f "${shards[@]:1}"
}
export -f one; export T B N backend
for m in $models; do for d in $names; do echo "$m $d"; done; done |
  xargs -r -P "$jobs" -L 1 bash -c 'one "$@"' _
