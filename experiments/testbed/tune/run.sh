#!/bin/sh
# run.sh MODEL TAG [RUN_SEED]: the held-out tuning runs of experiments/testbed/tune/TAG.frag on MODEL's
# tuning families (tools/testbed/heldout_targets.py writes the INIs), one after the other at
# nice 5, then the table of fitted losses on the held-out targets. RUN_SEED (default 1) is the
# runs' [experiment] seed; use one TAG per seed.
set -e
cd "$(dirname "$0")/../../.."
model=$1 tag=$2 run_seed=${3:-1}
for ini in $(python3 tools/testbed/heldout_targets.py --model "$model" --tag "$tag" --run-seed "$run_seed" \
             --methods "experiments/testbed/tune/$tag.frag"); do
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive nice -n 5 bin/lpe run "$ini" --force
done
python3 tools/testbed/heldout_targets.py --model "$model" --table "$tag"
