#!/usr/bin/env bash
# The main job, end to end: builds myriad, starts myriad-push, holds 100,000 subscribers with
# myriad-load (past the 20,000 descriptor limit: io_uring direct descriptors on both sides, and
# loopback addresses 127.0.0.1-16 for the ports), publishes status updates at a steady rate and
# prints what it measured: deliveries per second, publish-to-receipt latency, time until the last
# subscriber had each update, the server's CPU per delivery and memory per subscriber; then a
# reconnect wave: every subscriber drops and comes back at once, resuming from its last offset,
# and every delivery is checked (nothing lost, nothing twice). Every figure is measured in this
# run. Bounded: about two minutes after the build.
#   MYRIAD_PUSH_DEMO_SUBSCRIBERS (default 100000)  MYRIAD_PUSH_DEMO_TOPICS (default 100)
#   MYRIAD_PUSH_DEMO_RATE (updates per second over all topics, default 50)
#   MYRIAD_PUSH_DEMO_PORT (default 7400: TCP subscribers; +1: the publisher; +2: HTTP)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target myriad-push myriad-load
bin=build/release/apps
port=${MYRIAD_PUSH_DEMO_PORT:-7400}
subscribers=${MYRIAD_PUSH_DEMO_SUBSCRIBERS:-100000}
topics=${MYRIAD_PUSH_DEMO_TOPICS:-100}
rate=${MYRIAD_PUSH_DEMO_RATE:-50}
log=$(mktemp /tmp/myriad-push-demo.XXXXXX)
json=$(mktemp /tmp/myriad-push-demo-load.XXXXXX)

# Server on CPU 0, load on CPU 1 (where there is one), so each has its own core.
server_cpu=(--cpu 0)
load_cpu=()
[ "$(nproc)" -ge 2 ] && load_cpu=(--cpu 1)
# Subscribers on every address (spread over 127.0.0.1-16), the publisher on a loopback-only
# listener (where publishing needs no secret), HTTP (metrics, the live page) on loopback.
"$bin/push/myriad-push" --tcp-listen "0.0.0.0:$port" --tcp-listen "127.0.0.1:$((port + 1))" \
  --listen "127.0.0.1:$((port + 2))" --shards 1 "${server_cpu[@]}" --topic-policy latest \
  --drain-timeout 5s >"$log" 2>&1 &
server=$!
stop_server() {
  if kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server"
    wait "$server" || true
  fi
}
trap stop_server EXIT
for _ in $(seq 100); do grep -q "listening http" "$log" && break; sleep 0.1; done
if ! grep -q "listening http" "$log"; then cat "$log"; echo "push-demo: myriad-push did not start"; exit 1; fi
sed 's/^/  /' "$log"
if grep -q "| epoll" "$log"; then
  # Without io_uring the server's capacity is the descriptor limit.
  limit=$(( $(ulimit -Hn) - 2000 ))
  if [ "$subscribers" -gt "$limit" ]; then
    echo "push-demo: io_uring is not available here, so the server is on epoll and holds at most"
    echo "           RLIMIT_NOFILE connections: $subscribers subscribers become $limit"
    subscribers=$limit
  fi
fi
metrics() { curl -s --max-time 30 --retry 3 "http://127.0.0.1:$((port + 2))/metrics" || true; }

echo
echo "== $subscribers subscribers over $topics status topics, $rate updates/s, then a reconnect wave =="
echo "   (the live page meanwhile: http://127.0.0.1:$((port + 2))/ ; descriptor limit here: $(ulimit -Hn))"
"$bin/myriad-load" subscribe --protocol push --target "127.0.0.1-127.0.0.16:$port" \
  --publish-target "127.0.0.1:$((port + 1))" --connections "$subscribers" --topics "$topics" \
  --topic status --rate "$rate" --size 64 --connect-rate 40000 --warmup 2s --duration 8s \
  --drain 10s --reconnect-wave --server-pid "$server" --json "$json" "${load_cpu[@]}" || status=$?
status=${status:-0}

echo
echo "== what the server counted (GET /metrics) =="
m=$(metrics)
pick() { echo "$m" | awk -v k="$1" '$1 == k { print $2 }'; }
echo "  published $(pick myriad_push_messages_published_total), deliveries $(pick myriad_push_deliveries_total)" \
     "(replayed on resume $(pick myriad_push_replayed_total)), dropped $(pick 'myriad_push_dropped_total{reason="drop"}')" \
     "+ conflated $(pick 'myriad_push_dropped_total{reason="latest"}'), slow-consumer closes $(pick 'myriad_push_closes_total{reason="slow_consumer"}')"
echo "  resumes: recovered $(pick 'myriad_push_resumes_total{outcome="recovered"}'), lost (history)" \
     "$(pick 'myriad_push_resumes_total{outcome="lost_history"}'), lost (epoch) $(pick 'myriad_push_resumes_total{outcome="lost_epoch"}')"
echo "$m" | awk '
  /^myriad_push_time_to_last_subscriber_seconds_bucket/ {
    split($1, a, "\""); le[n] = a[2]; c[n] = $2; n++ }
  /^myriad_push_time_to_last_subscriber_seconds_count/ { total = $2 }
  /^myriad_push_time_to_last_subscriber_seconds_sum/ { sum = $2 }
  END {
    if (total == 0) { print "  time to last subscriber: no publish measured"; exit }
    for (i = 0; i < n; i++) if (c[i] >= total * 0.5) { p50 = le[i]; break }
    for (i = 0; i < n; i++) if (c[i] >= total * 0.99) { p99 = le[i]; break }
    printf "  time to last subscriber, server side (queued on every subscriber): mean %.2f ms, p50 <= %s s, p99 <= %s s over %d publishes\n", sum / total * 1000, p50, p99, total }'
echo "  history held $(pick myriad_push_history_bytes) bytes in $(pick myriad_push_history_messages) messages"

echo
stop_server
trap - EXIT
grep -E "draining|drained|stats" "$log" | sed 's/^/  /'
echo "push-demo: $( [ "$status" -eq 0 ] && echo "done: every subscriber got every update once, in order, across the reconnect wave" || echo "FAILED (myriad-load exit $status): see above")"
echo "push-demo: server log $log, load figures $json"
exit "$status"
