#!/usr/bin/env bash
# Installs, from Debian's packages, what building, testing and benchmarking myriad needs.
# Idempotent: installs only what is missing. Run as root (or with sudo).
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config git liburing-dev libgtest-dev libgmock-dev
          libbenchmark-dev libseccomp-dev libboost-dev libuv1-dev python3 python3-matplotlib procps socat util-linux
          node-llhttp curl clang-14 libclang-rt-14-dev libhttp-parser-dev valgrind
          libssl-dev zlib1g-dev python3-websockets chromium)
# The tests: a JSON parser for myriad-load's reports, strace to count an idle server's calls.
packages+=(nlohmann-json3-dev strace)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The reference servers and clients of bench/ (compare-fanout, compare-http): not needed by the
# tests. Their packages would start system services on install; a policy-rc.d keeps them from it
# (the benchmarks start their own, on loopback ports, and stop them by PID).
bench_packages=(redis-server nats-server nginx libnginx-mod-nchan wrk)
bench_missing=()
for p in "${bench_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || bench_missing+=("$p")
done
if [ ${#bench_missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "deps: installing ${bench_missing[*]} (benchmarks), with service start-up blocked"
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && added_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${bench_missing[@]}" >/dev/null ||
    echo "deps: WARNING: could not install ${bench_missing[*]}; the benchmarks that need them will say so"
  [ "$added_policy" = 1 ] && $SUDO rm -f "$policy"
fi

# promtool (Debian's prometheus package) checks myriad-push's /metrics; the package is large and
# optional: without it that check skips, loudly. Its service is not started (no init here).
if ! command -v promtool >/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "deps: installing prometheus (for promtool)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
    echo "deps: WARNING: prometheus could not be installed; the promtool check will skip"
fi

# The browser test drives Debian's chromium with puppeteer-core (npm, pinned in
# tests/browser/package-lock.json; it never downloads a browser). node and npm: Debian's, unless
# the machine already has them (a nodesource nodejs carries its own npm and conflicts with
# Debian's npm package). A failed npm install leaves the browser test skipping, loudly.
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  command -v node >/dev/null || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs >/dev/null
  command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null || true
fi
if [ ! -d "$root/tests/browser/node_modules/puppeteer-core" ] && command -v npm >/dev/null; then
  echo "deps: npm ci in tests/browser (puppeteer-core)"
  (cd "$root/tests/browser" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) ||
    echo "deps: WARNING: npm could not install puppeteer-core; the Chromium test will skip"
fi
