#!/bin/sh
# run.sh MODEL TAG: the held-out tuning runs of experiments/testbed/tune/TAG.frag on MODEL's
# tuning families (tools/testbed/heldout_targets.py writes the INIs), one after the other at
# nice 5, then the table of fitted losses on the held-out targets.
set -e
cd "$(dirname "$0")/../../.."
model=$1 tag=$2
for ini in $(python3 tools/testbed/heldout_targets.py --model "$model" --tag "$tag" \
             --methods "experiments/testbed/tune/$tag.frag"); do
    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive nice -n 5 bin/lpe run "$ini" --force
done
python3 tools/testbed/heldout_targets.py --model "$model" --table "$tag"
