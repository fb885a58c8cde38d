#!/usr/bin/env bash
# echo-client-epoll --ws (the WebSocket client bench/compare-echo uses for myriad-ws) against
# myriad-server --protocol ws-echo: every connection upgrades, every echoed frame is verified
# byte for byte, for payloads with 7-, 16- and 64-bit lengths. And two negative controls, so the
# check can fail: the raw client against ws-echo, and the ws client against the raw echo (which
# sends the masked frame back, mask bit and all) must both report corrupt bytes.
# usage: ws_echo_client.sh MYRIAD_SERVER ECHO_CLIENT_EPOLL
set -u
server_bin=$1 client_bin=$2
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

start() { # protocol
  "$server_bin" --protocol "$1" --listen 127.0.0.1:0 --shards 1 >"$tmp/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do
    port=$(sed -n 's/.* on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$tmp/server.log" | head -1)
    [ -n "$port" ] && return 0
    kill -0 "$pid" 2>/dev/null || fail "server ($1) exited: $(cat "$tmp/server.log")"
    sleep 0.05
  done
  fail "server ($1) printed no listening line"
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null; pid=; }
field() { sed -n "s/^  \"$1\": \([0-9.]*\).*/\1/p" "$tmp/out.json"; }

start ws-echo
for shape in "64 1" "200 16" "70000 2"; do
  set -- $shape
  "$client_bin" --ws --target "127.0.0.1:$port" --connections 20 --size "$1" --depth "$2" \
    --warmup 100ms --duration 300ms --json "$tmp/out.json" --quiet || fail "ws client, size $1 depth $2: exit $?"
  [ "$(field ok)" = 1 ] || fail "size $1: ok != 1"
  [ "$(field corrupt)" = 0 ] || fail "size $1: corrupt bytes"
  [ "$(field established)" = 20 ] || fail "size $1: not every connection upgraded"
  [ "$(field lost_messages)" = 0 ] || fail "size $1: messages lost"
  msgs=$(field messages)
  [ "${msgs:-0}" -gt 0 ] || fail "size $1: no messages"
  # Every byte of every message in flight came back: what was received is whole frames only.
  hdr=$(( $1 <= 125 ? 2 : ($1 <= 65535 ? 4 : 10) ))
  sent=$(field messages_sent) recv=$(field bytes_received)
  [ "$recv" = $(( sent * (hdr + $1) )) ] || fail "size $1: received $recv bytes, want $sent frames of $((hdr + $1))"
  echo "ok: ws size $1 depth $2: $msgs messages in the window, $sent frames verified"
done
"$client_bin" --target "127.0.0.1:$port" --connections 2 --size 64 --depth 1 --warmup 50ms \
  --duration 100ms --json "$tmp/out.json" --quiet 2>/dev/null && fail "raw client against ws-echo passed"
[ "$(field corrupt)" != 0 ] || fail "raw client against ws-echo: no corrupt bytes reported"
stop

start echo
"$client_bin" --ws --target "127.0.0.1:$port" --connections 2 --size 64 --depth 1 --warmup 50ms \
  --duration 100ms --json "$tmp/out.json" --quiet 2>/dev/null && fail "ws client against raw echo passed"
stop
echo "ok: both negative controls fail"
