#!/usr/bin/env bash
# Installs the built myriad into a temporary prefix, then builds and runs a tiny consumer
# against it twice: with find_package(myriad) + myriad::myriad, and with pkg-config. Last, it
# configures a project that vendors myriad with add_subdirectory and checks that it gets the
# library alone (no tests, apps, benchmarks, examples; no ctest entries of ours).
# Usage: install_test.sh BUILD_DIR SOURCE_DIR CXX GENERATOR [EXTRA_FLAGS]
# EXTRA_FLAGS: compile/link flags the installed library needs (its sanitizers).
set -euo pipefail
build=$1 source=$2 cxx=$3 generator=$4 flags=${5:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/myriad/myriad.hpp include/myriad/shared_buffer.hpp include/myriad/framing.hpp; do
  [ -f "$prefix/$f" ] || { echo "install: $f missing"; exit 1; }
done
if [ -n "$(find "$prefix" -name '*_impl.hpp')" ]; then echo "install: private headers installed"; exit 1; fi

echo "== find_package(myriad)"
cmake -S "$source/tests/install/consumer" -B "$tmp/cmake" -G "$generator" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$tmp/cmake" >/dev/null
"$tmp/cmake/consumer"

echo "== pkg-config --cflags --libs myriad"
pc=$(dirname "$(find "$prefix" -name myriad.pc | head -n 1)")
[ -n "$pc" ] || { echo "install: myriad.pc missing"; exit 1; }
export PKG_CONFIG_PATH=$pc
echo "pkg-config: $(pkg-config --modversion myriad): $(pkg-config --cflags --libs myriad)"
# shellcheck disable=SC2046,SC2086
"$cxx" -std=c++20 $flags "$source/tests/install/consumer/main.cpp" -o "$tmp/pc-consumer" \
  $(pkg-config --cflags --libs myriad)
"$tmp/pc-consumer"

echo "== add_subdirectory(myriad)"
cmake -S "$source/tests/install/subdirectory" -B "$tmp/subdirectory" -G "$generator" \
  -DCMAKE_CXX_COMPILER="$cxx" -DMYRIAD_SOURCE="$source" >/dev/null
tests=$(ctest --test-dir "$tmp/subdirectory" -N | sed -n 's/^Total Tests: //p')
[ "$tests" = "0" ] || { echo "add_subdirectory: the consumer's ctest lists $tests tests of ours"; exit 1; }
echo "add_subdirectory: the library alone, no tests"
