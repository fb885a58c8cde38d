#!/usr/bin/env bash
# The main job: builds myriad, starts myriad-server, drives it with myriad-load and prints what
# it achieved: idle connections held past the descriptor limit (every one verified), then echo
# throughput and latency with the server's CPU time per message. Bounded: about a minute.
#   MYRIAD_DEMO_CONNECTIONS (default 100000)  MYRIAD_DEMO_PORT (default 7000)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target myriad-server myriad-load
bin=build/release/apps
port=${MYRIAD_DEMO_PORT:-7000}
connections=${MYRIAD_DEMO_CONNECTIONS:-100000}
log=$(mktemp /tmp/myriad-demo-server.XXXXXX)

# Server on CPU 0, load on CPU 1 (where there is one), so each has its own core.
server_cpu=(--cpu 0)
load_cpu=()
[ "$(nproc)" -ge 2 ] && load_cpu=(--cpu 1)
"$bin/myriad-server" --listen "0.0.0.0:$port" --shards 1 "${server_cpu[@]}" >"$log" 2>&1 &
server=$!
stop_server() {
  if kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server"
    wait "$server" || true
  fi
}
trap stop_server EXIT
for _ in $(seq 100); do grep -q "echo on" "$log" && break; sleep 0.1; done
if ! grep -q "echo on" "$log"; then cat "$log"; echo "demo: myriad-server did not start"; exit 1; fi
head -2 "$log"
fdlimit=$(ulimit -Hn)

echo
echo "== 1/3 hold: $connections idle connections (the descriptor limit here is $fdlimit), each verified alive =="
"$bin/myriad-load" hold --target "127.0.0.1-127.0.0.16:$port" --connections "$connections" \
  --connect-rate 40000 --duration 3s --server-pid "$server" "${load_cpu[@]}"

# The held connections are closed now; let the server finish closing them before measuring.
for _ in $(seq 300); do
  inuse=$(awk '/^TCP:/ {print $3}' /proc/net/sockstat)
  [ "$inuse" -lt 2000 ] && break
  sleep 0.1
done

echo
echo "== 2/3 echo: 1,000 connections, 64-byte messages, closed loop =="
"$bin/myriad-load" echo --target "127.0.0.1:$port" --connections 1000 --size 64 --depth 1 \
  --warmup 2s --duration 8s --server-pid "$server" "${load_cpu[@]}"

echo
echo "== 3/3 rate: open loop, 40,000 messages/s over 1,000 connections (latency from when each was due) =="
"$bin/myriad-load" rate --target "127.0.0.1:$port" --connections 1000 --size 64 --rate 40000 \
  --warmup 1s --duration 8s --server-pid "$server" "${load_cpu[@]}"

echo
stop_server
trap - EXIT
grep "stopped:" "$log" | sed 's/^/  /'
echo "demo: done (server log: $log)"
