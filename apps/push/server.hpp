// myriad-push's shared state: options, the hub, auth, counters, and the sessions of every
// shard (for drain). The three fronts (tcp_front, http_front: WebSocket and SSE) build on it.
//
// Threads: Server is made before the runtime starts and outlives its shards. Counters are
// relaxed atomics (any thread). A Session belongs to its connection's shard thread, and so does
// that shard's ShardState.
#pragma once

#include <myriad/http.hpp>
#include <myriad/myriad.hpp>
#include <myriad/sse.hpp>
#include <myriad/websocket.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "auth.hpp"
#include "hub.hpp"

namespace push {

struct Options {
  std::vector<myriad::Address> listen;      // HTTP: WebSocket, SSE, publish, metrics, page
  std::vector<myriad::Address> tcp_listen;  // the plain TCP protocol
  myriad::Config core;
  HubConfig hub;
  myriad::PubSubConfig pubsub;
  std::string subscribe_secret;
  std::string publish_secret;
  double connect_rate = 0;             // new connections per second overall (0: no limit)
  double connect_rate_per_source = 0;  // per X-Forwarded-For source (0: no limit)
  bool trust_proxy = false;            // believe X-Forwarded-For / X-Real-IP
  std::size_t max_topics_per_connection = 64;
  std::string command_topic;  // where client commands go (empty: refused, counted)
  myriad::Duration ws_ping = std::chrono::seconds(30);
  bool ws_compression = true;
  std::size_t ws_max_message = std::size_t{1} << 20;
  myriad::Duration sse_retry = std::chrono::seconds(2);
  myriad::Duration heartbeat = std::chrono::seconds(15);
  myriad::Duration drain_timeout = std::chrono::seconds(10);
  myriad::Duration retry_after = std::chrono::seconds(2);   // told to drained clients (+ jitter)
  myriad::Duration sys_interval = std::chrono::seconds(1);  // $sys stats topic (0: off)
  myriad::Duration stats = myriad::Duration(0);             // --stats line period (0: off)
  std::string www_dir;  // serve the page from here instead of the built-in copy
};

enum class Kind : uint8_t { kTcp, kWs, kSse };
constexpr unsigned kKinds = 3;
const char* to_string(Kind k);

// One subscriber or publisher connection, on its shard. Costs this struct (104 bytes, 112 with
// its allocation) plus an 8-byte entry in its shard's list; the topics it follows beyond the
// first add 4 bytes each.
struct Session {
  myriad::Connection conn;
  Kind kind;
  Transport transport = Transport::kTcp;
  bool publisher = false;  // may publish (loopback listener, or showed the publish secret)
  bool draining = false;   // told to go; subscriptions are gone
  uint32_t index = 0;      // in ShardState::sessions
  TopicSet topics;
  std::shared_ptr<const Grant> grant;  // the token it showed, if any
  myriad::sse::Stream sse;             // kSse only
};

// Counters the fronts keep (relaxed atomics; summed nowhere else).
struct Figures {
  using C = std::atomic<uint64_t>;
  std::array<C, kKinds> opened{}, open{}, subscriptions{}, protocol_errors{}, drained{};
  std::array<C, kAuthErrors> auth_failures{};
  C rate_limited_overall{0}, rate_limited_source{0}, refused_draining{0};
  C subscribe_refused{0};  // bad topic, too many topics, too many per connection
  C publish_http{0}, publish_tcp{0}, publish_ws{0};
  C publish_refused_auth{0}, publish_refused_reserved{0}, publish_refused_malformed{0};
  C commands_forwarded{0}, commands_refused{0};
};

struct ShardState {
  std::vector<Session*> sessions;
  // WebSocket handshakes accepted by the upgrade hook, waiting for on_open (same receive).
  struct PendingWs {
    std::vector<std::string> topics;
    std::vector<Resume> resumes;
    std::shared_ptr<const Grant> grant;
    bool publisher = false;
  };
  std::unordered_map<myriad::Connection, PendingWs> pending_ws;
  std::size_t drain_batch = 0;  // sessions to close per drain tick (set when draining starts)
};

class Server {
 public:
  Server(myriad::Runtime& runtime, Options options);

  const Options& options() const { return options_; }
  Hub& hub() { return hub_; }
  const Auth& auth() const { return auth_; }
  ConnectRate& connect_rate() { return rate_; }
  Figures& figures() { return figures_; }
  myriad::Runtime& runtime() { return runtime_; }
  ShardState& shard_state(myriad::Connection c) { return *shards_[c.shard().index()]; }
  ShardState& shard_state(unsigned i) { return *shards_[i]; }

  // Shard thread: a new session for c, listed on its shard.
  Session* open_session(myriad::Connection c, Kind kind, bool publisher);
  // Shard thread: unsubscribes everything and unlists it; deletes it.
  void close_session(Session* s);
  bool draining() const { return draining_.load(std::memory_order_acquire); }
  void start_draining() { draining_.store(true, std::memory_order_release); }
  // Sessions open now, over every shard.
  uint64_t sessions() const;
  int64_t started_ns() const { return started_ns_; }

  // Outcome of a subscribe request, for the fronts' replies.
  enum class SubscribeCheck : uint8_t { kOk, kUnauthorized, kForbidden, kTooMany, kDraining };
  SubscribeCheck may_subscribe(const Session& s, std::string_view topic);
  // Shard thread: the hub's subscribe and unsubscribe for a session, counted.
  void subscribe(Session& s, std::string_view topic, const Resume& resume, Hub::Subscribed& out);
  bool unsubscribe(Session& s, std::string_view topic);

  // Publishes a client's command to the command topic: its sender first, then a newline, then
  // the command's bytes. False (counted) when there is no command topic.
  bool forward_command(const Session& s, std::span<const std::byte> payload, uint64_t& offset);
  std::string sender_of(const Session& s) const;

  // Retry hint for a client told to go: retry_after plus up to as much again, so a drained
  // crowd does not come back at the same instant.
  int64_t retry_ms();

 private:
  myriad::Runtime& runtime_;
  Options options_;
  Hub hub_;
  Auth auth_;
  ConnectRate rate_;
  Figures figures_;
  std::vector<std::unique_ptr<ShardState>> shards_;
  std::atomic<bool> draining_{false};
  int64_t started_ns_;
  std::atomic<uint64_t> jitter_{0x9e3779b97f4a7c15ULL};
};

// Seconds since 1970, for token expiry.
int64_t unix_now();

}  // namespace push
