#!/usr/bin/env bash
# Builds Distri with AddressSanitizer + UndefinedBehaviorSanitizer (clang) and
# runs every test: unit tests (ctest), the linearizability checker's Go tests,
# integration tests against the real binary (pytest, the fault suite included),
# the dashboard in headless Chromium (Playwright), the Python client's tests,
# and a short libFuzzer run of each fuzz target.
#
#   scripts/test.sh                 everything
#   FUZZ_SECONDS=0 scripts/test.sh  skip fuzzing
#   DISTRI_FAULT_SECONDS=600 scripts/test.sh   a long fault run (default 60 s)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build/test"
fuzz_seconds="${FUZZ_SECONDS:-30}"
"$root/scripts/install-deps.sh" --test

echo "== build (clang, ASan+UBSan) =="
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DDISTRI_SANITIZE=ON -DDISTRI_FUZZ=ON -DDISTRI_TESTS=ON >/dev/null
ninja -C "$build" -j"$(nproc)"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

echo "== unit tests =="
ctest --test-dir "$build" --output-on-failure -j"$(nproc)"

echo "== linearizability checker (tests/linearizability: go test, go build) =="
(cd "$root/tests/linearizability" && go test ./... && go build -o "$build/linearizability" .)

echo "== integration tests (the fault suite: DISTRI_FAULT_SECONDS, default 60) =="
DISTRI_BIN="$build/distri" DISTRI_LINCHECK="$build/linearizability" \
  "$root/build/venv/bin/python" -m pytest "$root/tests" -q

echo "== browser tests (Playwright + chromium; screenshots in build/test-artifacts) =="
(cd "$root/tests/browser" && DISTRI_BIN="$build/distri" PYTHON="$root/build/venv/bin/python" \
  DISTRI_ARTIFACTS="$root/build/test-artifacts" node --test --test-concurrency=1 dashboard.test.mjs)

echo "== Python client tests =="
DISTRI_BIN="$build/distri" "$root/build/venv/bin/python" -m pytest "$root/clients/python/tests" -q

if [[ "$fuzz_seconds" != 0 ]]; then
  echo "== fuzzing (${fuzz_seconds}s per target) =="
  for target in "$build"/fuzz/*_fuzz; do
    name="$(basename "$target" _fuzz)"
    corpus_copy="$(mktemp -d)"
    cp -r "$root/fuzz/corpus/$name/." "$corpus_copy/" 2>/dev/null || true
    "$target" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$corpus_copy" 2>&1 | tail -3
    rm -rf "$corpus_copy"
  done
fi
echo "== all tests passed =="
