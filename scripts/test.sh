#!/usr/bin/env bash
# Runs every test, as CI does: installs what it needs (Debian packages), then builds and runs
# the whole suite twice: the release build, and under AddressSanitizer + UndefinedBehaviorSanitizer.
# MYRIAD_TEST_PRESETS="release asan tsan" picks other presets (see CMakePresets.json).
# Then the libFuzzer targets (clang, the fuzz preset), each for a short fixed number of inputs;
# MYRIAD_TEST_FUZZ=0 leaves them out (scripts/fuzz.sh runs them for longer).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
presets=${MYRIAD_TEST_PRESETS:-release asan}
for preset in $presets; do
  echo "== tests: $preset build =="
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$(nproc)"
  ctest --preset "$preset"
done
if [ "${MYRIAD_TEST_FUZZ:-1}" != 0 ]; then
  echo "== tests: fuzz build (libFuzzer targets, a fixed number of inputs each) =="
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz -j "$(nproc)"
  ctest --preset fuzz
  presets="$presets fuzz"
fi
echo "== all tests passed ($presets) =="
