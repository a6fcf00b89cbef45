#!/bin/sh
# run.sh MODEL TAG [RUN_SEED]: the held-out tuning runs of experiments/testbed/tune/TAG.frag on
# MODEL's tuning families (tools/testbed/heldout_targets.py writes the INIs), one after the other
# at nice 5, then the table of fitted losses on the held-out targets. RUN_SEED (default 1) is the
# runs' [experiment] seed; a seed other than 1 runs under the tag TAGsRUN_SEED (p0 2 -> p0s2), so
# that every seed of one fragment keeps its own INIs and results.
set -e
cd "$(dirname "$0")/../../.."
model=$1 tag=$2 run_seed=${3:-1}
out=$tag
[ "$run_seed" = 1 ] || out=${tag}s$run_seed
for ini in $(python3 tools/testbed/heldout_targets.py --model "$model" --tag "$out" --run-seed "$run_seed" \
             --methods "experiments/testbed/tune/$tag.frag"); do
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive nice -n 5 bin/lpe run "$ini" --force
done
python3 tools/testbed/heldout_targets.py --model "$model" --table "$out"
