#!/usr/bin/env bash
# tools/fuzz/run.sh: fuzz lpe's readers of untrusted files with libFuzzer (clang) + ASan/UBSan.
#
#   tools/fuzz/run.sh [SECONDS] [TARGET...]     default 600 s shared by all targets:
#                                               ini model dist truth results
# Builds build-fuzz/fuzz_TARGET from tools/fuzz/fuzz_target.c and lpe's sources (with
# -fsanitize=fuzzer,address,undefined; HDF5 itself is not instrumented), makes a seed corpus
# from the files the tests make (valid and invalid: tests/python's INIs, models, distribution,
# truth and results files from bin/lpe), then runs each target for its share of the time.
# Findings (crash-*, timeout-*, oom-*) land in build-fuzz/findings/TARGET/; turn each into a
# regression test. Not part of `make test`. Needs clang with libFuzzer (apt-get install clang).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TOTAL=${1:-600}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(ini model dist truth results)
B=build-fuzz
mkdir -p "$B"
command -v clang >/dev/null || { echo "clang not found: apt-get install clang"; exit 2; }
make -s bin/lpe >/dev/null

# ---- build -----------------------------------------------------------------------------------
HDF5_CFLAGS=$(pkg-config --cflags hdf5 2>/dev/null || echo -I/usr/include/hdf5/serial)
HDF5_LIBS=$(pkg-config --libs hdf5 2>/dev/null || echo "-L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5")
BLAS_DIR=/usr/lib/x86_64-linux-gnu/openblas-openmp
CFLAGS="-std=c11 -O1 -g -fno-omit-frame-pointer -D_GNU_SOURCE -Iinclude $HDF5_CFLAGS -I/usr/include/x86_64-linux-gnu/openblas-openmp"
SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
LIBS="$HDF5_LIBS -linih -L$BLAS_DIR -Wl,-rpath,$BLAS_DIR -lopenblas -lm -lpthread"
SRCS=$(ls src/*.c src/*/*.c | grep -v '^src/main.c$')
mkdir -p "$B/obj"
OBJS=()
for s in $SRCS; do
  o="$B/obj/$(echo "$s" | tr / _).o"
  if [ ! -f "$o" ] || [ "$s" -nt "$o" ]; then clang $CFLAGS $SAN -c "$s" -o "$o"; fi
  OBJS+=("$o")
done
echo 'const char *lpe_version(void) { return "fuzz"; }' > "$B/version.c"
clang $CFLAGS -c "$B/version.c" -o "$B/obj/version.o"
for t in "${TARGETS[@]}"; do
  T=$(echo "$t" | tr a-z A-Z)
  clang $CFLAGS -fsanitize=fuzzer,address,undefined -DFUZZ_$T tools/fuzz/fuzz_target.c \
    "${OBJS[@]}" "$B/obj/version.o" $LIBS -o "$B/fuzz_$t"
done

# ---- seed corpus: valid files from bin/lpe, invalid ones from the tests' own cases ------------
W=$B/work
rm -rf "$W" && mkdir -p "$W"
L=bin/lpe
$L model init --out "$W/model.h5" --layers 1 --d-model 16 --heads 2 --d-head 8 --d-mlp 32 \
   --vocab 64 --ctx 8 --seed 7 >/dev/null
$L dist random --out "$W/dists.h5" --name a --vocab 64 --k 4 --support 8 --seed 2 >/dev/null
$L dist random --out "$W/dists.h5" --name b --vocab 64 --k 4 --support 6 --factors 2 --seed 3 >/dev/null
$L truth --model "$W/model.h5" --dist "$W/dists.h5" --name a --exact --out "$W/truth_a.h5" >/dev/null
$L truth --model "$W/model.h5" --dist "$W/dists.h5" --name b --samples 5000 --out "$W/truth_b.h5" >/dev/null
cat > "$W/e.ini" <<'INI'
[experiment]
model = model.h5
distributions = dists.h5
truth = truth_{dist}.h5
budget = 2^8
[targets]
count = 2
p_min = 1e-9
p_max = 0.5
[method naive]
budget[b] = 2^7
[method itgis]
temperature = 0.5, 1.0
INI
(cd "$W" && OMP_NUM_THREADS=1 ../../$L --quiet run e.ini --output results.h5 >/dev/null)
for t in "${TARGETS[@]}"; do mkdir -p "$B/corpus/$t" "$B/findings/$t"; done
cp_seed() { [ -d "$B/corpus/$1" ] && cp "$2" "$B/corpus/$1/" 2>/dev/null || true; }
cp_seed ini "$W/e.ini"
cp experiments/quickstart.ini experiments/testbed/*.ini "$B/corpus/ini/" 2>/dev/null || true
# the INI cases of the Python tests (bad and good), as written in their sources
python3 - "$B/corpus/ini" <<'PY' || true
import re, sys, pathlib
out = pathlib.Path(sys.argv[1])
for p in pathlib.Path("tests/python").glob("test_*.py"):
    for i, m in enumerate(re.findall(r'"""(\s*\[experiment\].*?)"""', p.read_text(), re.S)):
        (out / f"{p.stem}_{i}.ini").write_text(m)
PY
cp_seed model "$W/model.h5"
cp_seed dist "$W/dists.h5"
cp_seed truth "$W/truth_a.h5"
cp_seed truth "$W/truth_b.h5"
cp_seed results "$W/results.h5"
for f in experiments/testbed/truth/*/*.h5; do cp_seed truth "$f"; break; done
for f in experiments/testbed/results/*.h5; do cp_seed results "$f"; break; done
# truncated copies: invalid inputs that reach deeper than random bytes do
for t in model dist truth results; do
  [ -d "$B/corpus/$t" ] || continue
  for f in "$B"/corpus/$t/*.h5; do head -c 2048 "$f" > "$f.head"; done
done

# ---- run ---------------------------------------------------------------------------------------
per=$(( SECONDS_TOTAL / ${#TARGETS[@]} ))
[ "$per" -ge 1 ] || per=1
status=0
for t in "${TARGETS[@]}"; do
  echo "== fuzz_$t: $per s"
  # Fork mode: the harness leaks what an input's rejection leaves allocated (lpe frees nothing
  # on its error exits, and the exit is a longjmp here), so each short job starts afresh and a
  # job that grows past the RSS limit is restarted (-ignore_ooms) rather than stopping the run;
  # crashes and timeouts are kept as findings and the run goes on.
  # A genuine runaway allocation is still caught: each oom-* input is rerun alone below.
  LPE_FUZZ_DIR="$PWD/$W" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 OMP_NUM_THREADS=1 \
    "$PWD/$B/fuzz_$t" "$PWD/$B/corpus/$t" -fork=1 -ignore_ooms=1 -ignore_crashes=1 -ignore_timeouts=1 -max_total_time="$per" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -artifact_prefix="$PWD/$B/findings/$t/" \
    > "$B/fuzz_$t.log" 2>&1 || status=1
  for f in "$B"/findings/$t/oom-*; do
    [ -e "$f" ] || continue
    if LPE_FUZZ_DIR="$PWD/$W" ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 "$PWD/$B/fuzz_$t" -rss_limit_mb=2048 \
         "$PWD/$f" >/dev/null 2>&1; then
      mv "$f" "$B/findings/$t/leak-of-the-harness-$(basename "$f")"  # not an OOM on its own
    fi
  done
  grep -E "^#[0-9]+: cov|ERROR|Done" "$B/fuzz_$t.log" | tail -n 2 || true
  ls "$B/findings/$t" | grep -v '^leak-of-the-harness' | sed "s|^|  finding: $B/findings/$t/|" || true
done
exit $status
