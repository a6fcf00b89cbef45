#!/usr/bin/env bash
# build.sh: regenerates the whole testbed under experiments/testbed/ (README.md there says what
# each file is). Stages, in order; name some to run only those (default: all):
#   corpus     Debian packages -> build/testbed/corpus/{code,english,spanish}.jsonl (+ apt-get)
#   tokenizer  byte-level BPE, 4096 tokens -> experiments/testbed/tokenizer.json
#   train      gelu-1l, gelu-2l, gelu-4l -> experiments/testbed/models/*.h5, losses.json,
#              heldout_sample.h5 (PyTorch, one thread; about 20 minutes per model on a free core)
#   dists      the eight docs/methods.md §7 families -> experiments/testbed/dists.h5
#   truth      lpe truth (tools/testbed/truth.sh), TRUTH_SAMPLES (default 2^22) per (model,
#              distribution), JOBS pairs at a time -> experiments/testbed/truth/{model}/{dist}.h5
# Needs: tools/setup_tools.sh (torch, tokenizers) and a built bin/lpe. Long: run it with
#   nice -n 19 tools/testbed/build.sh > /tmp/testbed.log 2>&1 &
# Environment: JOBS (parallel truth shards, default 1), TRUTH_SAMPLES, STEPS_1L/2L/4L.
set -eu
cd "$(dirname "$0")/../.."
B=build/testbed
T=experiments/testbed
PY=${PYTHON:-python3}
JOBS=${JOBS:-1}
TRUTH_SAMPLES=${TRUTH_SAMPLES:-4194304}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
stages=${*:-corpus tokenizer train dists truth}
has() { case " $stages " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
mkdir -p "$B" "$T/models" "$T/truth"
[ -x bin/lpe ] || make -j2

if has corpus; then
  $PY tools/testbed/corpus.py --out "$B/corpus" --install
  cp "$B/corpus/manifest.json" "$T/corpus_manifest.json"
fi
if has tokenizer; then
  $PY tools/testbed/tokenizer.py --corpus "$B/corpus" --out "$T/tokenizer.json" --vocab 4096
fi
if has train; then
  for L in 1 2 4; do
    eval steps=\${STEPS_${L}L:-$([ $L = 4 ] && echo 5000 || echo 6000)}
    $PY tools/testbed/train.py --corpus "$B/corpus" --tokenizer "$T/tokenizer.json" \
      --layers $L --steps "$steps" --threads 1 --cache "$B" \
      --out "$T/models/gelu-${L}l.h5" --report "$T/losses.json"
  done
  $PY tools/testbed/heldout_check.py --corpus "$B/corpus" --tokenizer "$T/tokenizer.json" \
    --models "$T"/models/gelu-{1,2,4}l.h5 --losses "$T/losses.json" --cache "$B" \
    --out "$T/heldout_sample.h5"
fi
if has dists; then
  $PY tools/testbed/build_dists.py --corpus "$B/corpus" --tokenizer "$T/tokenizer.json" \
    --out "$T/dists.h5"
fi
if has truth; then
  tools/testbed/truth.sh -j "$JOBS" -n "$TRUTH_SAMPLES"
fi
echo "build.sh: done ($stages)"
