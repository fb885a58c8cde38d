#!/usr/bin/env bash
# Installs, from Debian's packages, what building, testing and benchmarking myriad needs.
# Idempotent: installs only what is missing. Run as root (or with sudo).
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config git liburing-dev libgtest-dev libgmock-dev
          libbenchmark-dev libseccomp-dev libboost-dev libuv1-dev python3 python3-matplotlib procps socat util-linux
          node-llhttp curl clang-14 libclang-rt-14-dev libhttp-parser-dev valgrind
          libssl-dev zlib1g-dev python3-websockets chromium
          redis-server nats-server nginx libnginx-mod-nchan wrk)
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
