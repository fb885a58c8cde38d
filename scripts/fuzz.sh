#!/usr/bin/env bash
# Builds the libFuzzer targets (the fuzz preset: clang 14, ASan + UBSan) and runs each for a
# given time, from its seed corpus (fuzz/corpus/<target>/) plus a working corpus kept in the
# build tree (build/fuzz/fuzz/work/<target>/), so a later run goes on from where this one ended.
#
#   scripts/fuzz.sh [-t SECONDS] [-j JOBS] [TARGET...]     default: 60 s, every target
#   scripts/fuzz.sh -l                                      lists the targets
#
# A crash is written to build/fuzz/fuzz/crash-* (reproduce: build/fuzz/fuzz/<target>_fuzz FILE)
# and makes the script exit non-zero. New inputs worth keeping as seeds can be minimised into
# fuzz/corpus/<target>/ with: <target>_fuzz -merge=1 fuzz/corpus/<target> build/fuzz/fuzz/work/<target>
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
jobs=1
list=0
while getopts "t:j:lh" opt; do
  case $opt in
    t) seconds=$OPTARG ;;
    j) jobs=$OPTARG ;;
    l) list=1 ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
all=$(sed -n 's/^myriad_fuzz_target(\([a-z0-9_]*\) .*/\1/p' fuzz/CMakeLists.txt)
if [ "$list" = 1 ]; then echo "$all"; exit 0; fi
targets=${*:-$all}

./scripts/deps.sh
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc)"

status=0
for t in $targets; do
  bin=build/fuzz/fuzz/${t}_fuzz
  [ -x "$bin" ] || { echo "fuzz: no target '$t' (known: $(echo $all))" >&2; exit 2; }
  work=build/fuzz/fuzz/work/$t
  mkdir -p "$work"
  echo "== fuzz: $t for ${seconds}s =="
  # With several jobs libFuzzer writes fuzz-N.log into the current directory: the build tree.
  parallel=()
  [ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")
  if ! (cd build/fuzz/fuzz && ASAN_OPTIONS=detect_leaks=1 \
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "./${t}_fuzz" -max_total_time="$seconds" "${parallel[@]}" -max_len=4096 \
      -print_final_stats=1 -artifact_prefix=./ "work/$t" "../../../fuzz/corpus/$t"); then
    echo "fuzz: $t FAILED (see build/fuzz/fuzz/crash-*)" >&2
    status=1
  fi
done
exit $status
