#include "metrics.hpp"

#include <cstdio>

namespace push {

namespace {

// Writes Prometheus families: a HELP and a TYPE line once per name, then its samples.
class Exposition {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(const char* name, double v, std::string_view labels = {}) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    char buf[64];
    if (v >= 0 && v < 1e18 && v == static_cast<double>(static_cast<uint64_t>(v))) {
      std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(v));
    } else {
      std::snprintf(buf, sizeof buf, "%.9g", v);
    }
    out_ += buf;
    out_ += '\n';
  }
  void one(const char* name, const char* type, const char* help, double v) {
    family(name, type, help);
    sample(name, v);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string label(const char* key, const char* value) {
  return std::string(key) + "=\"" + value + "\"";
}

}  // namespace

Snapshot Metrics::snapshot() const {
  Snapshot s;
  s.core = server_.runtime().counters();
  s.pubsub = server_.hub().pubsub().counters();
  s.hub = server_.hub().stats();
  for (const myriad::http::Server* h : https_) s.http += h->stats();
  s.ws = ws_.stats();
  s.fanout = server_.hub().fanout_times().snapshot();
  Figures& f = server_.figures();
  for (unsigned k = 0; k < kKinds; ++k) {
    s.open[k] = f.open[k].load(std::memory_order_relaxed);
    s.opened[k] = f.opened[k].load(std::memory_order_relaxed);
    s.subscriptions[k] = f.subscriptions[k].load(std::memory_order_relaxed);
  }
  return s;
}

std::string Metrics::prometheus() const {
  Snapshot s = snapshot();
  Figures& f = server_.figures();
  Exposition e;
  auto per_kind = [&](const char* name, const char* type, const char* help,
                      const std::array<uint64_t, kKinds>& v) {
    e.family(name, type, help);
    for (unsigned k = 0; k < kKinds; ++k) {
      e.sample(name, static_cast<double>(v[k]),
               label("transport", to_string(static_cast<Kind>(k))));
    }
  };
  auto load = [](const std::array<std::atomic<uint64_t>, kKinds>& a) {
    std::array<uint64_t, kKinds> v{};
    for (unsigned k = 0; k < kKinds; ++k) v[k] = a[k].load(std::memory_order_relaxed);
    return v;
  };

  e.family("myriad_push_info", "gauge", "The server: its epoch (offsets are valid within it).");
  e.sample("myriad_push_info", 1,
           "epoch=\"" + std::to_string(server_.hub().epoch()) + "\",backend=\"" +
               server_.runtime().backend().name + "\"");
  e.one("myriad_push_uptime_seconds", "gauge", "Seconds since the server started.",
        static_cast<double>(now_ns() - server_.started_ns()) / 1e9);
  e.one("myriad_push_draining", "gauge", "1 while draining (after SIGTERM).",
        server_.draining() ? 1 : 0);

  per_kind("myriad_push_connections", "gauge", "Subscriber and publisher sessions open now.",
           s.open);
  per_kind("myriad_push_connections_opened_total", "counter", "Sessions opened.", s.opened);
  per_kind("myriad_push_subscriptions", "gauge", "Subscriptions now.", s.subscriptions);
  per_kind("myriad_push_protocol_errors_total", "counter",
           "Connections failed for a malformed command.", load(f.protocol_errors));
  per_kind("myriad_push_drained_total", "counter", "Sessions told to go while draining.",
           load(f.drained));
  e.one("myriad_push_tcp_connections", "gauge", "TCP connections open now (every kind).",
        static_cast<double>(s.core.open));

  e.one("myriad_push_topics", "gauge", "Topics known (each keeps its offsets for the epoch).",
        static_cast<double>(s.hub.topics));
  e.one("myriad_push_messages_published_total", "counter", "Messages published.",
        static_cast<double>(s.hub.published));
  e.family("myriad_push_publishes_total", "counter", "Publishes by where they came from.");
  e.sample("myriad_push_publishes_total", static_cast<double>(f.publish_http.load()),
           label("via", "http"));
  e.sample("myriad_push_publishes_total", static_cast<double>(f.publish_tcp.load()),
           label("via", "tcp"));
  e.sample("myriad_push_publishes_total", static_cast<double>(f.publish_ws.load()),
           label("via", "ws"));
  e.family("myriad_push_publish_refused_total", "counter", "Publishes refused, by reason.");
  e.sample("myriad_push_publish_refused_total", static_cast<double>(f.publish_refused_auth.load()),
           label("reason", "unauthorized"));
  e.sample("myriad_push_publish_refused_total",
           static_cast<double>(f.publish_refused_reserved.load()), label("reason", "reserved"));
  e.sample("myriad_push_publish_refused_total",
           static_cast<double>(f.publish_refused_malformed.load()), label("reason", "malformed"));
  e.sample("myriad_push_publish_refused_total", static_cast<double>(s.hub.refused_bad_topic),
           label("reason", "bad_topic"));
  e.sample("myriad_push_publish_refused_total", static_cast<double>(s.hub.refused_too_large),
           label("reason", "too_large"));
  e.sample("myriad_push_publish_refused_total", static_cast<double>(s.hub.refused_too_many_topics),
           label("reason", "too_many_topics"));

  e.one("myriad_push_deliveries_total", "counter",
        "Messages queued on subscribers' connections (live and replayed).",
        static_cast<double>(s.pubsub.deliveries + s.hub.replayed));
  e.one("myriad_push_replayed_total", "counter",
        "Messages sent from history or as the retained value.",
        static_cast<double>(s.hub.replayed));
  e.one("myriad_push_encodes_total", "counter", "Frames encoded (message x transport x shard).",
        static_cast<double>(s.pubsub.encodes));
  e.family("myriad_push_dropped_total", "counter",
           "Messages a subscriber did not get, by reason (it sees the gap in the offsets).");
  e.sample("myriad_push_dropped_total", static_cast<double>(s.pubsub.dropped),
           label("reason", "drop"));
  e.sample("myriad_push_dropped_total", static_cast<double>(s.pubsub.conflated),
           label("reason", "latest"));
  e.sample("myriad_push_dropped_total", static_cast<double>(s.pubsub.inbox_overflows),
           label("reason", "inbox_full"));
  e.family("myriad_push_closes_total", "counter", "Connections closed, by reason.");
  const std::pair<const char*, uint64_t> closes[] = {
      {"slow_consumer", s.pubsub.slow_consumer_closes},
      {"write_queue_full", s.core.closed_slow_reader},
      {"input_overflow", s.core.closed_input_overflow},
      {"idle", s.core.closed_idle},
      {"peer", s.core.closed_peer},
      {"reset", s.core.closed_reset},
      {"local", s.core.closed_local},
      {"shutdown", s.core.closed_shutdown},
  };
  for (const auto& [why, n] : closes) {
    e.sample("myriad_push_closes_total", static_cast<double>(n), label("reason", why));
  }
  e.one("myriad_push_queued_bytes", "gauge", "Output queued on connections, not yet sent.",
        static_cast<double>(s.core.queued_bytes));
  e.one("myriad_push_held_bytes", "gauge",
        "Messages held back for slow subscribers (drop and latest policies).",
        static_cast<double>(s.pubsub.held_bytes));
  e.one("myriad_push_backlogged_subscribers", "gauge", "Subscribers holding messages back now.",
        static_cast<double>(s.pubsub.backlogged));
  e.one("myriad_push_pubsub_memory_bytes", "gauge", "The fan-out tables (per-shard lists).",
        static_cast<double>(s.pubsub.memory_bytes));

  e.one("myriad_push_history_messages", "gauge", "Messages held for resumes.",
        static_cast<double>(s.hub.history_messages));
  e.one("myriad_push_history_bytes", "gauge", "Bytes of history (payloads and headers).",
        static_cast<double>(s.hub.history_bytes));
  e.one("myriad_push_retained_bytes", "gauge",
        "Bytes of retained last values (shared with the history while it holds them).",
        static_cast<double>(s.hub.retained_bytes));
  e.family("myriad_push_history_evicted_total", "counter", "History let go, by the limit.");
  e.sample("myriad_push_history_evicted_total", static_cast<double>(s.hub.evicted_count),
           label("limit", "count"));
  e.sample("myriad_push_history_evicted_total", static_cast<double>(s.hub.evicted_bytes),
           label("limit", "bytes"));
  e.sample("myriad_push_history_evicted_total", static_cast<double>(s.hub.evicted_age),
           label("limit", "age"));
  e.sample("myriad_push_history_evicted_total", static_cast<double>(s.hub.evicted_total),
           label("limit", "total"));
  e.family("myriad_push_resumes_total", "counter", "Resume requests, by outcome.");
  e.sample("myriad_push_resumes_total", static_cast<double>(s.hub.resumes_recovered),
           label("outcome", "recovered"));
  e.sample("myriad_push_resumes_total", static_cast<double>(s.hub.resumes_lost_epoch),
           label("outcome", "lost_epoch"));
  e.sample("myriad_push_resumes_total", static_cast<double>(s.hub.resumes_lost_history),
           label("outcome", "lost_history"));
  e.sample("myriad_push_resumes_total", static_cast<double>(s.hub.resumes_lost_ahead),
           label("outcome", "lost_ahead"));

  e.family("myriad_push_time_to_last_subscriber_seconds", "histogram",
           "Per publish: until the last subscriber had it queued on its connection.");
  uint64_t cumulative = 0;
  for (std::size_t i = 0; i < FanoutTimes::kBuckets; ++i) {
    cumulative += s.fanout.counts[i];
    char le[32];
    if (i + 1 < FanoutTimes::kBuckets) {
      std::snprintf(le, sizeof le, "%g", FanoutTimes::kBounds[i]);
    } else {
      std::snprintf(le, sizeof le, "+Inf");
    }
    e.sample("myriad_push_time_to_last_subscriber_seconds_bucket", static_cast<double>(cumulative),
             label("le", le));
  }
  e.sample("myriad_push_time_to_last_subscriber_seconds_sum", s.fanout.sum_s);
  e.sample("myriad_push_time_to_last_subscriber_seconds_count",
           static_cast<double>(s.fanout.count));

  e.family("myriad_push_auth_failures_total", "counter", "Subscribe tokens refused, by reason.");
  for (unsigned i = 1; i < kAuthErrors; ++i) {
    e.sample("myriad_push_auth_failures_total",
             static_cast<double>(f.auth_failures[i].load(std::memory_order_relaxed)),
             label("reason", to_string(static_cast<AuthError>(i))));
  }
  e.family("myriad_push_rate_limited_total", "counter",
           "New connections refused by the connection rate limits.");
  e.sample("myriad_push_rate_limited_total", static_cast<double>(f.rate_limited_overall.load()),
           label("scope", "overall"));
  e.sample("myriad_push_rate_limited_total", static_cast<double>(f.rate_limited_source.load()),
           label("scope", "source"));
  e.one("myriad_push_refused_draining_total", "counter",
        "Connections and subscriptions refused while draining.",
        static_cast<double>(f.refused_draining.load()));
  e.one("myriad_push_subscribe_refused_total", "counter",
        "Subscriptions refused (bad topic, too many topics).",
        static_cast<double>(f.subscribe_refused.load()));
  e.family("myriad_push_commands_total", "counter", "Client commands, by outcome.");
  e.sample("myriad_push_commands_total", static_cast<double>(f.commands_forwarded.load()),
           label("outcome", "forwarded"));
  e.sample("myriad_push_commands_total", static_cast<double>(f.commands_refused.load()),
           label("outcome", "refused"));

  e.family("myriad_push_http_bad_requests_total", "counter", "HTTP requests refused, by status.");
  const std::pair<const char*, uint64_t> http_bad[] = {
      {"400", s.http.bad_request},     {"408", s.http.request_timeout},
      {"413", s.http.body_too_large},  {"431", s.http.header_too_large},
      {"501", s.http.not_implemented}, {"505", s.http.version_unsupported},
  };
  for (const auto& [status, n] : http_bad) {
    e.sample("myriad_push_http_bad_requests_total", static_cast<double>(n),
             label("status", status));
  }
  e.one("myriad_push_http_requests_total", "counter", "HTTP requests.",
        static_cast<double>(s.http.requests));
  e.family("myriad_push_websocket_errors_total", "counter",
           "WebSocket connections failed, by close code.");
  e.sample("myriad_push_websocket_errors_total", static_cast<double>(s.ws.protocol_errors),
           label("code", "1002"));
  e.sample("myriad_push_websocket_errors_total", static_cast<double>(s.ws.invalid_payload),
           label("code", "1007"));
  e.sample("myriad_push_websocket_errors_total", static_cast<double>(s.ws.too_big),
           label("code", "1009"));
  e.one("myriad_push_websocket_pong_timeouts_total", "counter",
        "WebSocket connections dropped: no answer to a ping.",
        static_cast<double>(s.ws.pong_timeouts));
  e.one("myriad_push_bytes_out_total", "counter", "Bytes sent on every connection.",
        static_cast<double>(s.core.bytes_out));
  e.one("myriad_push_bytes_in_total", "counter", "Bytes received on every connection.",
        static_cast<double>(s.core.bytes_in));
  return e.take();
}

std::string Metrics::stats_line() const {
  Snapshot s = snapshot();
  char buf[512];
  std::snprintf(
      buf, sizeof buf,
      "myriad-push: stats ws=%llu sse=%llu tcp=%llu subscriptions=%llu topics=%llu "
      "published=%llu deliveries=%llu dropped=%llu conflated=%llu slow_closes=%llu "
      "history=%lluB queued=%lluB",
      static_cast<unsigned long long>(s.open[1]), static_cast<unsigned long long>(s.open[2]),
      static_cast<unsigned long long>(s.open[0]),
      static_cast<unsigned long long>(s.subscriptions[0] + s.subscriptions[1] + s.subscriptions[2]),
      static_cast<unsigned long long>(s.hub.topics),
      static_cast<unsigned long long>(s.hub.published),
      static_cast<unsigned long long>(s.pubsub.deliveries + s.hub.replayed),
      static_cast<unsigned long long>(s.pubsub.dropped),
      static_cast<unsigned long long>(s.pubsub.conflated),
      static_cast<unsigned long long>(s.pubsub.slow_consumer_closes),
      static_cast<unsigned long long>(s.hub.history_bytes),
      static_cast<unsigned long long>(s.core.queued_bytes));
  return buf;
}

std::string Metrics::sys_json() {
  Snapshot s = snapshot();
  int64_t now = now_ns();
  uint64_t deliveries = s.pubsub.deliveries + s.hub.replayed;
  double dt = last_ns_ == 0 ? 0 : static_cast<double>(now - last_ns_) / 1e9;
  double dps = dt > 0 ? static_cast<double>(deliveries - last_deliveries_) / dt : 0;
  double pps = dt > 0 ? static_cast<double>(s.hub.published - last_published_) / dt : 0;
  last_ns_ = now;
  last_deliveries_ = deliveries;
  last_published_ = s.hub.published;
  int64_t max_ns = 0, mean_ns = 0;
  uint64_t n = 0;
  server_.hub().fanout_times().take_window(max_ns, mean_ns, n);
  std::vector<Hub::Active> active = server_.hub().take_active(8);
  char head[1024];
  std::snprintf(
      head, sizeof head,
      "{\"epoch\":%llu,\"uptime_s\":%.1f,\"connections\":{\"ws\":%llu,\"sse\":%llu,\"tcp\":%llu},"
      "\"subscriptions\":%llu,\"topics\":%llu,\"published\":%llu,\"deliveries\":%llu,"
      "\"published_per_s\":%.1f,\"deliveries_per_s\":%.1f,"
      "\"time_to_last_subscriber_ms\":{\"max\":%.3f,\"mean\":%.3f,\"publishes\":%llu},"
      "\"dropped\":%llu,\"conflated\":%llu,\"slow_consumer_closes\":%llu,"
      "\"history_bytes\":%llu,\"queued_bytes\":%llu,\"draining\":%s,\"active\":[",
      static_cast<unsigned long long>(server_.hub().epoch()),
      static_cast<double>(now - server_.started_ns()) / 1e9,
      static_cast<unsigned long long>(s.open[1]), static_cast<unsigned long long>(s.open[2]),
      static_cast<unsigned long long>(s.open[0]),
      static_cast<unsigned long long>(s.subscriptions[0] + s.subscriptions[1] + s.subscriptions[2]),
      static_cast<unsigned long long>(s.hub.topics),
      static_cast<unsigned long long>(s.hub.published), static_cast<unsigned long long>(deliveries),
      pps, dps, static_cast<double>(max_ns) / 1e6, static_cast<double>(mean_ns) / 1e6,
      static_cast<unsigned long long>(n), static_cast<unsigned long long>(s.pubsub.dropped),
      static_cast<unsigned long long>(s.pubsub.conflated),
      static_cast<unsigned long long>(s.pubsub.slow_consumer_closes),
      static_cast<unsigned long long>(s.hub.history_bytes),
      static_cast<unsigned long long>(s.core.queued_bytes), server_.draining() ? "true" : "false");
  std::string out = head;
  for (std::size_t i = 0; i < active.size(); ++i) {
    if (i) out += ',';
    // Topic names are [A-Za-z0-9._~:/@!$+=-]: nothing to escape in JSON.
    out += "{\"topic\":\"" + active[i].topic + "\",\"offset\":" + std::to_string(active[i].offset) +
           ",\"published\":" + std::to_string(active[i].published) +
           ",\"subscribers\":" + std::to_string(active[i].subscribers) + "}";
  }
  out += "]}";
  return out;
}

}  // namespace push
