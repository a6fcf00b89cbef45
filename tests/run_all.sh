#!/usr/bin/env bash
# Runs every test: the C unit-test programs (bin/tests/test_*), then the Python tests
# (tests/python, pytest). Ends with one line "tests: N passed, N failed" counting C programs and
# pytest cases together; exits non-zero when anything failed or nothing ran.
# Usage: tests/run_all.sh [c|py] [extra pytest args]
set -u
cd "$(dirname "$0")/.."
which=${1:-all}; shift || true
# OpenMP threads that spin while waiting lose whole scheduler slices when the cores are shared
# (CI, a busy workstation); sleeping is as fast when they are not.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
passed=0; failed=0; skipped=0; failed_names=(); skipped_names=()

if [ "$which" = all ] || [ "$which" = c ]; then
  for t in bin/tests/test_*; do
    [ -x "$t" ] || continue
    echo "== $t"
    # a program that prints "SKIP: reason" (a capability truly absent, e.g. no GPU) and exits 0
    # is counted as skipped, not passed
    out=$(mktemp)
    if "$t" | tee "$out"; rc=${PIPESTATUS[0]}; [ "$rc" -eq 0 ]; then
      if grep -q '^SKIP:' "$out"; then skipped=$((skipped + 1)); skipped_names+=("$t")
      else passed=$((passed + 1)); fi
    else failed=$((failed + 1)); failed_names+=("$t"); fi
    rm -f "$out"
  done
fi

if [ "$which" = all ] || [ "$which" = py ]; then
  if ls tests/python/test_*.py >/dev/null 2>&1; then
    echo "== pytest tests/python"
    log=$(mktemp)
    python3 -m pytest -q -p no:cacheprovider tests/python "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    summary=$(grep -E '[0-9]+ (passed|failed|error)' "$log" | tail -n 1)
    p=$(echo "$summary" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)
    f=$(echo "$summary" | grep -oE '[0-9]+ (failed|error|errors)' | grep -oE '[0-9]+' | paste -sd+ | bc 2>/dev/null || echo 0)
    rm -f "$log"
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
    if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then failed=$((failed + 1)); failed_names+=("pytest (exit $rc)"); fi
  fi
fi

[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]}"
[ ${#skipped_names[@]} -gt 0 ] && echo "skipped (see their SKIP line): ${skipped_names[*]}"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
