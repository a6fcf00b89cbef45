#!/usr/bin/env bash
# The embedded default experiment (experiments/quickstart.ini): every method on the testbed's
# 2-layer language model and two of the paper's input families (hex, english) against their
# ground truth, all shipped under experiments/testbed/; prints the table of estimates against
# the truth, then the paper-style loss table (lpe report). About a minute on 2 cores.
# Usage: tools/quickstart.sh [extra `lpe run` options, e.g. --backend cpu]
set -eu
cd "$(dirname "$0")/.."
[ -x bin/lpe ] || make -j2
for f in experiments/testbed/models/gelu-2l.h5 experiments/testbed/dists.h5 \
         experiments/testbed/truth/gelu-2l/hex.h5 experiments/testbed/truth/gelu-2l/english.h5; do
  [ -f "$f" ] || { echo "quickstart: $f is missing (the testbed: tools/testbed/build.sh)" >&2; exit 2; }
done
mkdir -p results
bin/lpe run --force experiments/quickstart.ini "$@"
echo
bin/lpe report results/quickstart.h5
