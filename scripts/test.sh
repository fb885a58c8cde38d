#!/usr/bin/env bash
# Runs every test, as CI does: installs what it needs (Debian packages), then builds and runs
# the whole suite twice: the release build, and under AddressSanitizer + UndefinedBehaviorSanitizer.
# MYRIAD_TEST_PRESETS="release asan tsan" picks other presets (see CMakePresets.json).
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
echo "== all tests passed ($presets) =="
