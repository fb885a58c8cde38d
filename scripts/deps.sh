#!/usr/bin/env bash
# Installs, from Debian's packages, what building, testing and benchmarking myriad needs.
# Idempotent: installs only what is missing. Run as root (or with sudo).
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config git liburing-dev libgtest-dev libgmock-dev
          libbenchmark-dev libseccomp-dev libboost-dev libuv1-dev python3 python3-matplotlib procps socat util-linux
          node-llhttp curl clang-14 libclang-rt-14-dev libhttp-parser-dev valgrind
          libssl-dev zlib1g-dev python3-websockets
          redis-server nats-server nginx libnginx-mod-nchan)
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
