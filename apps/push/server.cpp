#include "server.hpp"

#include <chrono>

namespace push {

static_assert(sizeof(Session) <= 104, "a session's budget (docs/PUSH.md, Memory)");

const char* to_string(Kind k) {
  switch (k) {
    case Kind::kTcp:
      return "tcp";
    case Kind::kWs:
      return "ws";
    case Kind::kSse:
      return "sse";
  }
  return "?";
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Server::Server(myriad::Runtime& runtime, Options options)
    : runtime_(runtime),
      options_(std::move(options)),
      hub_(runtime, options_.hub, options_.pubsub),
      auth_(options_.subscribe_secret, options_.publish_secret),
      rate_(options_.connect_rate, options_.connect_rate_per_source),
      started_ns_(now_ns()) {
  for (unsigned i = 0; i < runtime.shard_count(); ++i) {
    shards_.push_back(std::make_unique<ShardState>());
  }
}

Session* Server::open_session(myriad::Connection c, Kind kind, bool publisher) {
  auto* s = new Session{};
  s->conn = c;
  s->kind = kind;
  s->publisher = publisher;
  ShardState& st = shard_state(c);
  s->index = static_cast<uint32_t>(st.sessions.size());
  st.sessions.push_back(s);
  figures_.opened[static_cast<unsigned>(kind)].fetch_add(1, std::memory_order_relaxed);
  figures_.open[static_cast<unsigned>(kind)].fetch_add(1, std::memory_order_relaxed);
  return s;
}

void Server::close_session(Session* s) {
  hub_.unsubscribe_all(s->conn);
  figures_.subscriptions[static_cast<unsigned>(s->kind)].fetch_sub(s->topics.size(),
                                                                   std::memory_order_relaxed);
  figures_.open[static_cast<unsigned>(s->kind)].fetch_sub(1, std::memory_order_relaxed);
  ShardState& st = shard_state(s->conn);
  Session* last = st.sessions.back();
  st.sessions[s->index] = last;
  last->index = s->index;
  st.sessions.pop_back();
  delete s;
}

uint64_t Server::sessions() const {
  uint64_t n = 0;
  for (const auto& c : figures_.open) n += c.load(std::memory_order_relaxed);
  return n;
}

Server::SubscribeCheck Server::may_subscribe(const Session& s, std::string_view topic) {
  if (draining()) return SubscribeCheck::kDraining;
  if (auth_.subscribe_needs_token()) {
    if (!s.grant) {
      figures_.auth_failures[static_cast<unsigned>(AuthError::kMissing)].fetch_add(1);
      return SubscribeCheck::kUnauthorized;
    }
    if (s.grant->expires <= unix_now()) {
      figures_.auth_failures[static_cast<unsigned>(AuthError::kExpired)].fetch_add(1);
      return SubscribeCheck::kUnauthorized;
    }
    if (!s.grant->allows(topic)) {
      figures_.auth_failures[static_cast<unsigned>(AuthError::kForbidden)].fetch_add(1);
      return SubscribeCheck::kForbidden;
    }
  }
  if (s.topics.size() >= options_.max_topics_per_connection) {
    figures_.subscribe_refused.fetch_add(1, std::memory_order_relaxed);
    return SubscribeCheck::kTooMany;
  }
  return SubscribeCheck::kOk;
}

void Server::subscribe(Session& s, std::string_view topic, const Resume& resume,
                       Hub::Subscribed& out) {
  hub_.subscribe(s.conn, s.transport, topic, resume, s.topics, out);
  if (out.status == Hub::Status::kOk && !out.again) {
    figures_.subscriptions[static_cast<unsigned>(s.kind)].fetch_add(1, std::memory_order_relaxed);
  } else if (out.status != Hub::Status::kOk) {
    figures_.subscribe_refused.fetch_add(1, std::memory_order_relaxed);
  }
}

bool Server::unsubscribe(Session& s, std::string_view topic) {
  if (!hub_.unsubscribe(s.conn, topic, s.topics)) return false;
  figures_.subscriptions[static_cast<unsigned>(s.kind)].fetch_sub(1, std::memory_order_relaxed);
  return true;
}

std::string Server::sender_of(const Session& s) const {
  if (s.grant && !s.grant->subject.empty()) return s.grant->subject;
  return std::string(to_string(s.kind)) + ":" + std::to_string(s.conn.shard().index()) + ":" +
         std::to_string(s.conn.id()) + ":" + std::to_string(s.conn.generation());
}

bool Server::forward_command(const Session& s, std::span<const std::byte> payload,
                             uint64_t& offset) {
  if (options_.command_topic.empty()) {
    figures_.commands_refused.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  std::string message = sender_of(s);
  message += '\n';
  message.append(reinterpret_cast<const char*>(payload.data()), payload.size());
  Hub::Published p = hub_.publish(options_.command_topic, message);
  if (p.status != Hub::Status::kOk) {
    figures_.commands_refused.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  figures_.commands_forwarded.fetch_add(1, std::memory_order_relaxed);
  offset = p.offset;
  return true;
}

int64_t Server::retry_ms() {
  // xorshift: a different hint for each client, no lock.
  uint64_t x = jitter_.load(std::memory_order_relaxed);
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  jitter_.store(x, std::memory_order_relaxed);
  int64_t base =
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.retry_after).count();
  if (base <= 0) return 0;
  return base + static_cast<int64_t>(x % static_cast<uint64_t>(base + 1));
}

}  // namespace push
