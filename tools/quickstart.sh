#!/usr/bin/env bash
# The embedded default experiment (experiments/quickstart.ini): creates, when missing, a small
# random model and two random distributions under results/quickstart/, then runs the experiment
# (exact ground truth by enumeration, every method) and prints the table of estimates against
# the truth, then the paper-style loss table (lpe report). A few minutes on 2 cores.
# Usage: tools/quickstart.sh [extra `lpe run` options, e.g. --backend cpu]
set -eu
cd "$(dirname "$0")/.."
[ -x bin/lpe ] || make -j2
dir=results/quickstart
mkdir -p "$dir"
if [ ! -f "$dir/model.h5" ]; then
  bin/lpe model init --out "$dir/model.h5" --layers 2 --d-model 64 --heads 4 --d-head 16 \
    --d-mlp 256 --vocab 512 --ctx 16 --act gelu --seed 1
fi
if [ ! -f "$dir/dists.h5" ]; then
  # built under a temporary name: an interrupted run leaves no half-made file behind
  tmp="$dir/dists.h5.tmp.$$"
  rm -f "$tmp"
  trap 'rm -f "$tmp"' EXIT
  bin/lpe dist random --out "$tmp" --name zipf --vocab 512 --k 6 --support 12 --zipf 1 \
    --const-first 0 --seed 11 --description "BOS + 5 positions, one Zipf factor of 12 tokens"
  bin/lpe dist random --out "$tmp" --name mixed --vocab 512 --k 5 --support 20 --factors 4 \
    --zipf 0.5 --const-first 0 --seed 12 --description "BOS + 4 positions, each its own factor of 20 tokens"
  mv "$tmp" "$dir/dists.h5"
fi
bin/lpe run --force experiments/quickstart.ini "$@"
echo
bin/lpe report results/quickstart.h5
