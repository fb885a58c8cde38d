// http::Server: the Handler that runs the decoder on each receive, answers requests in order,
// streams, and hands upgraded connections over.
//
// Per-connection state, by what Connection::user() holds (its low two bits tag it; heap
// pointers are at least 8-aligned):
//   null            idle between requests, or a request that came whole: nothing else exists
//   Partial* | 1    a request waiting for more bytes (its bytes are in the spill; a 408 timer)
//   StreamState* | 2  a streaming response (input that arrives meanwhile is held, in order)
// An upgraded connection's user() belongs to its new handler; which handler that is, is one
// byte per connection id in the shard's table (ShardState::upgraded), looked at first in every
// callback, so the upgraded protocol pays one byte load per event and nothing else.
#include <myriad/http.hpp>
#include <myriad/runtime.hpp>
#include <myriad/shard.hpp>

#include <array>
#include <atomic>
#include <cassert>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "http/decoder.hpp"

namespace myriad::http {

namespace detail {

namespace {

constexpr uintptr_t kTagMask = 3;
constexpr uintptr_t kTagPartial = 1;
constexpr uintptr_t kTagStream = 2;

void* tag(void* p, uintptr_t t) {
  return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) | t);
}
uintptr_t tag_of(void* u) {
  return reinterpret_cast<uintptr_t>(u) & kTagMask;
}
template <class T>
T* untag(void* u) {
  return reinterpret_cast<T*>(reinterpret_cast<uintptr_t>(u) & ~kTagMask);
}

bool has_no_body(int status) {
  return status < 200 || status == 204 || status == 304;
}

}  // namespace

// The counters, one ShardCounter each, written by the shard alone.
#define MYRIAD_HTTP_STATS(X)                                                                     \
  X(requests)                                                                                    \
  X(responses)                                                                                   \
  X(bad_request)                                                                                 \
  X(header_too_large)                                                                            \
  X(body_too_large)                                                                              \
  X(request_timeout) X(version_unsupported) X(not_implemented) X(handler_errors) X(continues)    \
      X(incomplete_at_close) X(upgrades) X(upgrades_refused) X(partial_requests) X(streams_open) \
          X(streams_opened) X(heartbeats)

struct StatCounters {
#define MYRIAD_FIELD(name) ShardCounter name;
  MYRIAD_HTTP_STATS(MYRIAD_FIELD)
#undef MYRIAD_FIELD
  // Statuses we answer that have no counter of their own (417, 503 ...) count as bad_request.
  void count_error(int status) {
    switch (status) {
      case 408:
        request_timeout.add();
        break;
      case 413:
        body_too_large.add();
        break;
      case 431:
        header_too_large.add();
        break;
      case 501:
        not_implemented.add();
        break;
      case 505:
        version_unsupported.add();
        break;
      case 500:
        handler_errors.add();
        break;
      default:
        bad_request.add();
        break;
    }
  }
};

struct ShardState;

// A streaming response in progress. Heap, only while it streams.
struct StreamState {
  ShardState* shard = nullptr;
  Connection connection;
  StreamCallback on_event;
  std::vector<Chunk> held;  // input that came during the stream, replayed after it, in order
  std::string_view heartbeat;
  uint64_t remaining = 0;       // Framing::kLength
  StreamState* prev = nullptr;  // the shard's heartbeat list
  StreamState* next = nullptr;
  uint32_t serial = 0;
  Framing framing = Framing::kChunked;
  bool keep_alive = true;  // after the end: the next request (true) or close
  bool wrote = false;      // since the last heartbeat sweep
  bool ended = false;      // ended; held input waits for its replay
  bool beating = false;    // in the heartbeat list
};

// What a streaming connection costs (docs/PROTOCOLS.md says it): keep it in view.
static_assert(sizeof(StreamState) <= 136, "a streaming response's state grew");
static_assert(sizeof(Partial) <= 144, "a partial request's state grew");

struct ShardState {
  ShardState(Server& s, Shard& sh, const Limits& limits)
      : server(&s), shard(&sh), decoder(limits) {}
  Server* server;
  Shard* shard;
  Decoder decoder;
  std::string out;      // a response being assembled
  std::string headers;  // Response::header() lines of the response being built
  std::string date;     // "Date: ...\r\n" for date_second
  int64_t date_second = -1;
  StatCounters stats;
  std::vector<uint8_t> upgraded;  // by connection id: 0 HTTP, else 1 + registry index
  StreamState* beats = nullptr;   // streams with a heartbeat
  TimerId beat_timer = 0;
  uint32_t next_serial = 1;

  const std::string& date_line() {
    int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    if (now != date_second) {
      date_second = now;
      std::time_t t = static_cast<std::time_t>(now);
      std::tm tm{};
      gmtime_r(&t, &tm);
      char buf[64];
      std::size_t n = std::strftime(buf, sizeof buf, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
      date.assign(buf, n);
    }
    return date;
  }
};

struct ServerShards {
  std::once_flag once;
  std::atomic<bool> ready{false};  // shards is filled (stats() may read it)
  std::vector<std::unique_ptr<ShardState>> shards;
  // Handlers connections were upgraded to; index + 1 is what ShardState::upgraded holds.
  std::mutex registry_mutex;
  std::array<std::atomic<Handler*>, 255> registry{};
  std::atomic<unsigned> registered{0};
};

// The spill and Partial of one connection, as the decoder wants them.
class ConnectionStore final : public Store {
 public:
  ConnectionStore(Connection c, ShardState& s) : c_(c), s_(s) {}
  std::span<const std::byte> spill() const override { return c_.spill(); }
  bool spill_append(std::span<const std::byte> data) override { return c_.spill_append(data); }
  void spill_consume(std::size_t n) override { c_.spill_consume(n); }
  Partial* partial() const override {
    void* u = c_.user();
    return tag_of(u) == kTagPartial ? untag<Partial>(u) : nullptr;
  }
  void set_partial(Partial* p) override {
    if (Partial* old = partial()) {
      if (old->timer != 0) s_.shard->cancel(old->timer);
      old->timer = 0;
      s_.stats.partial_requests.sub();
    }
    c_.set_user(p != nullptr ? tag(p, kTagPartial) : nullptr);
    if (p != nullptr) {
      p->owner = s_.server;
      s_.stats.partial_requests.add();
    }
  }

 private:
  Connection c_;
  ShardState& s_;
};

struct Access {
  enum class Stop : uint8_t { kNone, kUpgrade, kStream, kClose };

  // One receive's requests, answered as the decoder finds them.
  class Dispatch final : public Sink {
   public:
    Dispatch(Server& server, ShardState& s, Connection c) : server_(server), s_(s), c_(c) {}
    bool on_request(const Message& m) override;
    void on_continue() override {
      c_.send(std::string_view("HTTP/1.1 100 Continue\r\n\r\n"));
      s_.stats.continues.add();
    }
    Stop stop = Stop::kNone;
    Handler* upgrade_to = nullptr;

   private:
    bool after_response(Response& r);
    Server& server_;
    ShardState& s_;
    Connection c_;
  };

  static ShardState& shard_state(Server& server, Connection c) {
    ServerShards& shards = *server.shards_;
    Shard& shard = c.shard();
    std::call_once(shards.once, [&] {
      Runtime& runtime = shard.runtime();
      Limits limits = server.options_.limits;
      // A request that spans receives lives in the spill: it must fit there.
      std::size_t spill = runtime.config().max_spill;
      std::size_t room = spill > limits.max_header_bytes ? spill - limits.max_header_bytes : 0;
      if (limits.max_body_bytes > room) limits.max_body_bytes = room;
      shards.shards.resize(runtime.shard_count());
      for (unsigned i = 0; i < runtime.shard_count(); ++i) {
        shards.shards[i] = std::make_unique<ShardState>(server, runtime.shard(i), limits);
      }
      shards.ready.store(true, std::memory_order_release);
    });
    return *shards.shards[shard.index()];
  }

  static Handler* upgraded(ShardState& s, Connection c) {
    uint32_t id = c.id();
    if (id >= s.upgraded.size() || s.upgraded[id] == 0) return nullptr;
    return s.server->shards_->registry[s.upgraded[id] - 1].load(std::memory_order_acquire);
  }

  // The registry index + 1 of handler (registered on first use), or 0 when it is full.
  static uint8_t register_handler(Server& server, Handler* handler) {
    ServerShards& shards = *server.shards_;
    unsigned n = shards.registered.load(std::memory_order_acquire);
    for (unsigned i = 0; i < n; ++i) {
      if (shards.registry[i].load(std::memory_order_relaxed) == handler)
        return static_cast<uint8_t>(i + 1);
    }
    std::lock_guard lock(shards.registry_mutex);
    n = shards.registered.load(std::memory_order_relaxed);
    for (unsigned i = 0; i < n; ++i) {
      if (shards.registry[i].load(std::memory_order_relaxed) == handler)
        return static_cast<uint8_t>(i + 1);
    }
    if (n == shards.registry.size()) return 0;
    shards.registry[n].store(handler, std::memory_order_release);
    shards.registered.store(n + 1, std::memory_order_release);
    return static_cast<uint8_t>(n + 1);
  }

  static Stream make_stream(Server* server, Connection c, uint32_t serial) {
    return Stream(server, c, serial);
  }
  static StreamState* stream_of(Connection c) {
    void* u = c.user();
    return tag_of(u) == kTagStream ? untag<StreamState>(u) : nullptr;
  }

  // Answers a refused request and closes (after what is queued before it).
  static void fail(ShardState& s, Connection c, int status) {
    s.stats.count_error(status);
    std::string& out = s.out;
    out.clear();
    out += "HTTP/1.1 ";
    out += std::to_string(status);
    out += ' ';
    out += reason_phrase(status);
    out += "\r\n";
    if (!s.server->options_.server_name.empty()) {
      out += "Server: ";
      out += s.server->options_.server_name;
      out += "\r\n";
    }
    out += s.date_line();
    out += "Content-Length: 0\r\nConnection: close\r\n\r\n";
    c.send(out);
    c.close();
  }

  static void process(Server& server, ShardState& s, Connection c, Chunk chunk);
  static void hold(StreamState& st, Connection c, Chunk chunk) {
    if (st.framing == Framing::kUntilClose) return;  // nothing can follow a close-framed body
    st.held.push_back(std::move(chunk));
    c.pause_receiving();
  }
  static void on_request_timeout(Connection c);
  static void arm_request_timeout(ShardState& s, Connection c, Partial& p) {
    Duration d = s.server->options_.limits.request_timeout;
    if (d.count() <= 0) return;
    p.timer = s.shard->after(d, [c] { on_request_timeout(c); });
    if (p.timer == 0) {
      // The shard has no timer left: better refuse than hold a request with no deadline.
      ConnectionStore store(c, s);
      Decoder::discard(store);
      fail(s, c, 503);
    }
  }

  // Response assembly.
  static void write_head(Response& r, ShardState& s, std::string& out, std::string_view framing) {
    out += "HTTP/1.1 ";
    char code[8];
    auto [end, ec] = std::to_chars(code, code + sizeof code, r.status_);
    (void)ec;
    out.append(code, end);
    out += ' ';
    out += reason_phrase(r.status_);
    out += "\r\n";
    const Options& o = s.server->options_;
    if (!o.server_name.empty()) {
      out += "Server: ";
      out += o.server_name;
      out += "\r\n";
    }
    out += s.date_line();
    out += s.headers;
    out += framing;
    if (r.close_) {
      out += "Connection: close\r\n";
    } else if (r.minor_ == 0) {
      out += "Connection: keep-alive\r\n";
    }
    out += "\r\n";
  }
  static void send(Response& r, std::string_view body);
  static Stream stream(Response& r, StreamOptions options);
  static void send_switch(Response& r, ShardState& s) {
    std::string& out = s.out;
    out.clear();
    out += "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n";
    out += s.headers;
    out += "\r\n";
    r.connection_.send(out);
    r.finished_ = true;
    s.stats.responses.add();
  }

  // Streams.
  static StreamState* state(const Stream& st) {
    if (st.server_ == nullptr || !st.connection_.valid()) return nullptr;
    ShardState& s = shard_state(*st.server_, st.connection_);
    if (upgraded(s, st.connection_) != nullptr) return nullptr;
    StreamState* state = stream_of(st.connection_);
    return state != nullptr && state->serial == st.serial_ ? state : nullptr;
  }
  static bool write(const Stream& st, std::string_view data);
  static void end(const Stream& st);
  static void finish(StreamState* st, bool closed);
  static void replay(Server* server, Connection c, uint32_t serial);
  static void unlink_beat(StreamState& st) {
    if (!st.beating) return;
    ShardState& s = *st.shard;
    if (st.prev != nullptr) st.prev->next = st.next;
    if (st.next != nullptr) st.next->prev = st.prev;
    if (s.beats == &st) s.beats = st.next;
    st.prev = st.next = nullptr;
    st.beating = false;
  }
  static void beat(ShardState& s) {
    s.beat_timer = 0;
    for (StreamState* st = s.beats; st != nullptr; st = st->next) {
      if (!st->wrote && !st->ended) {
        st->connection.send(st->heartbeat);
        s.stats.heartbeats.add();
      }
      st->wrote = false;
    }
    arm_beat(s);
  }
  static void arm_beat(ShardState& s) {
    if (s.beat_timer != 0 || s.beats == nullptr) return;
    s.beat_timer = s.shard->after(s.server->options_.heartbeat_interval, [&s] { beat(s); });
  }

  static Stats snapshot(const ShardState& s) {
    Stats out;
#define MYRIAD_COPY(name) out.name = s.stats.name.get();
    MYRIAD_HTTP_STATS(MYRIAD_COPY)
#undef MYRIAD_COPY
    return out;
  }
};

bool Access::Dispatch::on_request(const Message& m) {
  s_.stats.requests.add();
  Request req;
  req.method_ = m.method;
  req.target_ = m.target;
  req.body_ = m.body;
  req.headers_ = m.headers;
  req.connection_ = c_;
  req.minor_ = m.minor;
  req.keep_alive_ = m.keep_alive;
  req.upgrade_ = m.upgrade;

  s_.headers.clear();
  Response resp(server_, c_);
  resp.minor_ = m.minor;
  resp.head_ = req.is_head();
  resp.close_ = !m.keep_alive;

  if (m.upgrade && server_.upgrade_hook_) {
    resp.upgrade_ = true;
    resp.status_ = 101;
    Upgrade decision = Upgrade::pass();
    try {
      decision = server_.upgrade_hook_(req, resp);
    } catch (const std::exception&) {
      c_.set_user(nullptr);
      fail(s_, c_, 500);  // counted as a handler error
      stop = Stop::kClose;
      return false;
    }
    if (decision.kind() == Upgrade::kSwitch) {
      uint8_t index = register_handler(server_, decision.handler());
      if (index == 0) {
        fail(s_, c_, 500);
        stop = Stop::kClose;
        return false;
      }
      if (!resp.finished_) send_switch(resp, s_);
      uint32_t id = c_.id();
      if (id >= s_.upgraded.size()) s_.upgraded.resize(std::max<std::size_t>(id + 1, 64));
      s_.upgraded[id] = index;
      s_.stats.upgrades.add();
      stop = Stop::kUpgrade;
      upgrade_to = decision.handler();
      return false;
    }
    resp.upgrade_ = false;
    // user() is the server's unless the connection switches: a hook that set it and then
    // did not switch broke the contract; reset it rather than misread it later.
    if (c_.user() != nullptr) c_.set_user(nullptr);
    if (decision.kind() == Upgrade::kRefused) {
      s_.stats.upgrades_refused.add();
      if (!resp.finished_) {
        if (resp.status_ == 101) resp.status_ = 400;
        send(resp, {});
      }
      return after_response(resp);
    }
    resp.status_ = 200;  // passed: a normal request
    s_.headers.clear();
  }

  try {
    server_.handler_(req, resp);
  } catch (const std::exception&) {
    if (StreamState* st = stream_of(c_)) {
      s_.stats.handler_errors.add();
      c_.set_user(nullptr);
      finish(st, true);
      c_.close();
    } else if (!resp.finished_) {
      fail(s_, c_, 500);  // counted as a handler error
    } else {
      s_.stats.handler_errors.add();
      c_.close();
    }
    stop = Stop::kClose;
    return false;
  }
  if (!resp.finished_) send(resp, {});
  return after_response(resp);
}

bool Access::Dispatch::after_response(Response& r) {
  if (StreamState* st = stream_of(c_)) {
    (void)st;
    stop = Stop::kStream;
    return false;
  }
  if (r.close_) {
    c_.close();
    stop = Stop::kClose;
    return false;
  }
  return true;
}

void Access::process(Server& server, ShardState& s, Connection c, Chunk chunk) {
  ConnectionStore store(c, s);
  Dispatch dispatch(server, s, c);
  Result r = s.decoder.feed(store, chunk.bytes(), dispatch);
  switch (r.kind) {
    case Result::kNeedMore:
      if (Partial* p = store.partial(); p != nullptr && p->timer == 0) {
        arm_request_timeout(s, c, *p);
      }
      return;
    case Result::kOverflow:
      return;  // the core closes it (kInputOverflow) and counts it
    case Result::kError:
      fail(s, c, r.status);
      return;
    case Result::kStopped:
      break;
  }
  chunk.consume(r.consumed);
  switch (dispatch.stop) {
    case Stop::kUpgrade: {
      Handler* h = dispatch.upgrade_to;
      h->on_open(c);
      if (!chunk.empty() && upgraded(s, c) == h) h->on_data(c, std::move(chunk));
      return;
    }
    case Stop::kStream:
      if (StreamState* st = stream_of(c); st != nullptr && !chunk.empty()) {
        hold(*st, c, std::move(chunk));
      }
      return;
    case Stop::kClose:
    case Stop::kNone:
      return;  // closing: the rest is not read
  }
}

void Access::on_request_timeout(Connection c) {
  if (!c.valid()) return;
  void* u = c.user();
  if (tag_of(u) != kTagPartial) return;
  Partial* p = untag<Partial>(u);
  p->timer = 0;  // it fired: nothing to cancel
  auto* server = static_cast<Server*>(p->owner);
  ShardState& s = shard_state(*server, c);
  ConnectionStore store(c, s);
  Decoder::discard(store);
  std::size_t spilled = c.spill().size();
  if (spilled != 0) c.spill_consume(spilled);
  fail(s, c, 408);
}

void Access::send(Response& r, std::string_view body) {
  if (r.finished_) return;
  r.finished_ = true;
  ShardState& s = shard_state(*r.server_, r.connection_);
  std::string& out = s.out;
  out.clear();
  bool no_body = has_no_body(r.status_);
  char framing[48] = {};
  std::size_t n = 0;
  if (!no_body) {
    n = static_cast<std::size_t>(
        std::snprintf(framing, sizeof framing, "Content-Length: %zu\r\n", body.size()));
  }
  write_head(r, s, out, std::string_view(framing, n));
  if (!r.head_ && !no_body) {
    if (body.size() <= 4096) {
      out += body;
      r.connection_.send(out);
    } else {
      r.connection_.send(out);  // a large body: copied once, into the output queue
      r.connection_.send(body);
    }
  } else {
    r.connection_.send(out);
  }
  s.stats.responses.add();
}

Stream Access::stream(Response& r, StreamOptions options) {
  if (r.finished_) throw std::logic_error("http::Response::stream: the response was already sent");
  r.finished_ = true;
  ShardState& s = shard_state(*r.server_, r.connection_);
  Framing framing = options.framing;
  if (framing == Framing::kChunked && r.minor_ == 0) framing = Framing::kUntilClose;
  char line[48] = {};
  std::size_t n = 0;
  bool no_body = has_no_body(r.status_);
  if (!no_body) {
    switch (framing) {
      case Framing::kChunked:
        n = static_cast<std::size_t>(
            std::snprintf(line, sizeof line, "Transfer-Encoding: chunked\r\n"));
        break;
      case Framing::kLength:
        n = static_cast<std::size_t>(
            std::snprintf(line, sizeof line, "Content-Length: %llu\r\n",
                          static_cast<unsigned long long>(options.length)));
        break;
      case Framing::kUntilClose:
        r.close_ = true;
        break;
    }
  }
  std::string& out = s.out;
  out.clear();
  write_head(r, s, out, std::string_view(line, n));
  r.connection_.send(out);
  s.stats.responses.add();
  if (no_body || r.head_ || (framing == Framing::kLength && options.length == 0)) {
    if (r.close_) r.connection_.close();
    return {};
  }
  auto* st = new StreamState;
  st->shard = &s;
  st->connection = r.connection_;
  st->on_event = std::move(options.on_event);
  st->heartbeat = options.heartbeat;
  st->remaining = options.length;
  st->serial = s.next_serial++;
  if (s.next_serial == 0) s.next_serial = 1;
  st->framing = framing;
  st->keep_alive = !r.close_;
  r.connection_.set_user(tag(st, kTagStream));
  s.stats.streams_open.add();
  s.stats.streams_opened.add();
  if (!st->heartbeat.empty()) {
    st->next = s.beats;
    if (s.beats != nullptr) s.beats->prev = st;
    s.beats = st;
    st->beating = true;
    arm_beat(s);
  }
  return Stream(r.server_, r.connection_, st->serial);
}

bool Access::write(const Stream& stream, std::string_view data) {
  StreamState* st = state(stream);
  if (st == nullptr || st->ended) return false;
  Connection c = stream.connection_;
  st->wrote = true;
  switch (st->framing) {
    case Framing::kChunked: {
      if (data.empty()) return true;  // an empty chunk would end the body
      char size[24];
      int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
      bool ok = c.send(std::string_view(size, static_cast<std::size_t>(n)));
      ok = ok && c.send(data);
      return ok && c.send(std::string_view("\r\n"));
    }
    case Framing::kLength: {
      std::size_t n = std::min<uint64_t>(data.size(), st->remaining);
      bool ok = c.send(data.substr(0, n));
      st->remaining -= n;
      if (st->remaining == 0) end(stream);
      return ok && n == data.size();
    }
    case Framing::kUntilClose:
      return c.send(data);
  }
  return false;
}

void Access::end(const Stream& stream) {
  StreamState* st = state(stream);
  if (st == nullptr || st->ended) return;
  Connection c = stream.connection_;
  if (st->framing == Framing::kChunked) c.send(std::string_view("0\r\n\r\n"));
  st->ended = true;
  ShardState& s = *st->shard;
  unlink_beat(*st);
  s.stats.streams_open.sub();
  if (st->on_event) {
    // Never from inside end(): the application may be in the middle of its own bookkeeping.
    s.shard->post([cb = std::move(st->on_event), stream]() mutable {
      Stream copy = stream;
      cb(copy, StreamEvent::kEnded);
    });
    st->on_event = nullptr;
  }
  if (!st->keep_alive) {
    c.set_user(nullptr);
    delete st;
    c.close();
    return;
  }
  if (st->held.empty()) {
    c.set_user(nullptr);
    delete st;
    c.resume_receiving();
    return;
  }
  // Requests that came during the stream are answered now, in order, from the loop. Until
  // then the state stays, so new input queues behind them.
  s.shard->post([server = stream.server_, c, serial = st->serial] { replay(server, c, serial); });
}

void Access::replay(Server* server, Connection c, uint32_t serial) {
  if (!c.valid()) return;
  StreamState* st = stream_of(c);
  if (st == nullptr || st->serial != serial || !st->ended) return;
  std::vector<Chunk> held = std::move(st->held);
  c.set_user(nullptr);
  delete st;
  ShardState& s = shard_state(*server, c);
  for (Chunk& chunk : held) {
    if (!c.valid()) return;
    if (Handler* h = upgraded(s, c)) {
      h->on_data(c, std::move(chunk));
    } else if (StreamState* again = stream_of(c)) {
      hold(*again, c, std::move(chunk));
    } else {
      process(*server, s, c, std::move(chunk));
    }
  }
  if (c.valid() && stream_of(c) == nullptr) c.resume_receiving();
}

// The connection closed under a stream (or the handler threw).
void Access::finish(StreamState* st, bool closed) {
  ShardState& s = *st->shard;
  unlink_beat(*st);
  if (!st->ended) s.stats.streams_open.sub();
  if (st->on_event) {
    Stream handle(s.server, st->connection, st->serial);
    StreamCallback cb = std::move(st->on_event);
    st->ended = true;
    cb(handle, StreamEvent::kEnded);
  }
  (void)closed;
  delete st;
}

}  // namespace detail

using detail::Access;

// ---- Request

std::string_view Request::path() const {
  std::size_t q = target_.find('?');
  return q == std::string_view::npos ? target_ : target_.substr(0, q);
}

std::string_view Request::query() const {
  std::size_t q = target_.find('?');
  return q == std::string_view::npos ? std::string_view() : target_.substr(q + 1);
}

std::string_view Request::header(std::string_view name) const {
  for (const Header& h : headers_) {
    if (iequals(h.name, name)) return h.value;
  }
  return {};
}

bool Request::has_header(std::string_view name) const {
  for (const Header& h : headers_) {
    if (iequals(h.name, name)) return true;
  }
  return false;
}

bool Request::has_token(std::string_view name, std::string_view token) const {
  for (const Header& h : headers_) {
    if (!iequals(h.name, name)) continue;
    std::string_view v = h.value;
    while (!v.empty()) {
      std::size_t comma = v.find(',');
      std::string_view item = v.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (iequals(item, token)) return true;
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  return false;
}

// ---- Response

Response& Response::status(int code) {
  if (code < 100 || code > 999) {
    throw std::invalid_argument("http::Response::status: " + std::to_string(code));
  }
  status_ = code;
  return *this;
}

Response& Response::header(std::string_view name, std::string_view value) {
  // A CR or LF would let the value start a header (or a body) of its own.
  auto bad = [](std::string_view s) {
    return s.find_first_of("\r\n") != std::string_view::npos || s.find('\0') != s.npos;
  };
  if (name.empty() || bad(name) || bad(value) || name.find(':') != std::string_view::npos) {
    throw std::invalid_argument("http::Response::header: a line break or ':' in '" +
                                std::string(name) + "'");
  }
  std::string& h = Access::shard_state(*server_, connection_).headers;
  h += name;
  h += ": ";
  h += value;
  h += "\r\n";
  return *this;
}

Response& Response::close() {
  close_ = true;
  return *this;
}

void Response::send(std::string_view body) {
  Access::send(*this, body);
}

void Response::send(int code, std::string_view type, std::string_view body) {
  status(code);
  if (!type.empty()) content_type(type);
  Access::send(*this, body);
}

Stream Response::stream(StreamOptions options) {
  return Access::stream(*this, std::move(options));
}

// ---- Stream

bool Stream::open() const {
  detail::StreamState* st = Access::state(*this);
  return st != nullptr && !st->ended;
}

bool Stream::write(std::string_view data) {
  return Access::write(*this, data);
}

void Stream::end() {
  Access::end(*this);
}

bool Stream::writable() const {
  return open() && connection_.writable();
}

// ---- Server

Server::Server(RequestHandler handler, Options options)
    : handler_(std::move(handler)),
      options_(std::move(options)),
      shards_(std::make_unique<detail::ServerShards>()) {
  if (!handler_) throw std::invalid_argument("http::Server: no request handler");
  if (options_.limits.max_header_bytes == 0 || options_.limits.max_header_bytes > (1u << 30)) {
    throw std::invalid_argument("http::Server: max_header_bytes " +
                                std::to_string(options_.limits.max_header_bytes));
  }
  if (options_.limits.max_body_bytes > (std::size_t{1} << 31)) {
    throw std::invalid_argument("http::Server: max_body_bytes " +
                                std::to_string(options_.limits.max_body_bytes));
  }
}

Server::~Server() = default;

void Server::set_upgrade_hook(UpgradeHook hook) {
  upgrade_hook_ = std::move(hook);
}

Stats Server::stats() const {
  Stats total;
  // The shard states are created once (call_once) and never removed; once created, reading
  // their counters from any thread is safe (relaxed atomics).
  const detail::ServerShards& shards = *shards_;
  if (!shards.ready.load(std::memory_order_acquire)) return total;  // no connection yet
  for (const auto& s : shards.shards) {
    if (s) total += Access::snapshot(*s);
  }
  return total;
}

void Server::on_open(Connection c) {
  Access::shard_state(*this, c);
}

void Server::on_data(Connection c, Chunk data) {
  detail::ShardState& s = Access::shard_state(*this, c);
  if (Handler* h = Access::upgraded(s, c)) {
    h->on_data(c, std::move(data));
    return;
  }
  if (detail::StreamState* st = Access::stream_of(c)) {
    Access::hold(*st, c, std::move(data));
    return;
  }
  Access::process(*this, s, c, std::move(data));
}

void Server::on_peer_closed(Connection c) {
  detail::ShardState& s = Access::shard_state(*this, c);
  if (Handler* h = Access::upgraded(s, c)) {
    h->on_peer_closed(c);
    return;
  }
  if (detail::StreamState* st = Access::stream_of(c)) {
    // A body framed by close has no one to read it any more; a chunked or sized one goes on
    // to its end (the client may only have shut its sending side), then the connection closes.
    st->keep_alive = false;
    if (st->framing == Framing::kUntilClose || st->ended) c.close();
    return;
  }
  detail::ConnectionStore store(c, s);
  if (store.partial() != nullptr || !c.spill().empty()) {
    s.stats.incomplete_at_close.add();
    detail::Decoder::discard(store);
  }
  c.close();  // after the responses already queued
}

void Server::on_write_watermark(Connection c, bool above_high) {
  detail::ShardState& s = Access::shard_state(*this, c);
  if (Handler* h = Access::upgraded(s, c)) {
    h->on_write_watermark(c, above_high);
    return;
  }
  detail::StreamState* st = Access::stream_of(c);
  if (st != nullptr && !above_high && !st->ended && st->on_event) {
    Stream handle = Access::make_stream(this, c, st->serial);
    st->on_event(handle, StreamEvent::kWritable);
  }
}

void Server::on_close(Connection c, CloseReason reason, int error) {
  detail::ShardState& s = Access::shard_state(*this, c);
  if (Handler* h = Access::upgraded(s, c)) {
    s.upgraded[c.id()] = 0;
    h->on_close(c, reason, error);
    return;
  }
  void* u = c.user();
  if (u == nullptr) return;
  detail::ConnectionStore store(c, s);
  if (store.partial() != nullptr) {
    detail::Decoder::discard(store);
    return;
  }
  if (detail::StreamState* st = Access::stream_of(c)) {
    c.set_user(nullptr);
    Access::finish(st, true);
  }
}

}  // namespace myriad::http
