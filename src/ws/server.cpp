// The WebSocket server: the handshake on the HTTP upgrade hook, then every frame of the
// connection (RFC 6455 5-7), with permessage-deflate (RFC 7692) and no state per idle
// connection beyond a 32-byte record.
//
// How the pieces fit:
// - Records live in per-shard slab blocks of 64 KiB, aligned to their size, so a record's
//   address finds its block's header and through it the shard's state and the server: no
//   pointer back per record. Connection::user() points at the record.
// - A receive is decoded straight from the pool chunk (unmasked in place). A message complete
//   in it goes to the handler as a view into the chunk. Otherwise the decoder's state moves to
//   a small heap object (Partial) and the message's payload so far to the connection's spill
//   buffer until the message completes; both go away with it.
// - Timers: one periodic timer per shard walks the shard's records for server pings, pong,
//   idle and close timeouts. No timer object per connection.
// - A protocol error sends the close frame, shuts down our side (FIN after it) and discards
//   input until the peer closes or close_timeout passes, so the peer reads our close frame
//   instead of a reset.
#include <myriad/websocket.hpp>

#include <myriad/runtime.hpp>
#include <myriad/shard.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#include <sys/mman.h>

namespace myriad::ws {

namespace {

namespace flag {
constexpr uint8_t kUsed = 1 << 0;
constexpr uint8_t kOpened = 1 << 1;      // on_open delivered
constexpr uint8_t kReported = 1 << 2;    // on_close delivered (no more callbacks)
constexpr uint8_t kDeflate = 1 << 3;     // permessage-deflate negotiated
constexpr uint8_t kCloseSent = 1 << 4;   // our close frame is queued
constexpr uint8_t kFailed = 1 << 5;      // a protocol error: discard all input
constexpr uint8_t kPingOut = 1 << 6;     // a server ping awaits an answer (any input)
constexpr uint8_t kTcpClosing = 1 << 7;  // close()/abort() asked of the core
}  // namespace flag

constexpr uint8_t kNoSubprotocol = 0xFF;
constexpr unsigned kMaxShards = 256;
constexpr std::size_t kBlockBytes = std::size_t{64} << 10;
// Payloads up to this are copied into the output queue; larger ones go out as one shared
// buffer (one allocation, and the queue holds a reference).
constexpr std::size_t kCopyLimit = 4096;

struct ShardState;

}  // namespace

// One per WebSocket connection, for its life: 32 bytes.
struct Record {
  void* user;             // the application's (WebSocket::user())
  Connection connection;  // for the sweep, which acts on connections it was not called for
  // Shard clock (ms): the last receive; or, while kPingOut, when our ping left (nothing has
  // been received since); or, once kCloseSent, when our close frame left.
  uint32_t stamp;
  uint16_t close_code;  // what we sent in our close frame
  uint8_t flags;
  uint8_t subprotocol;
};
static_assert(sizeof(Record) == 32, "the idle WebSocket budget (64 bytes over a raw connection)");

// What a frame or message in progress needs; exists only while one is. Meanwhile
// Connection::user() points at it, tagged in bit 0, instead of at the record.
// The shard keeps them on a list, so that the sweep can end messages that take too long.
struct Partial {
  FrameDecoder decoder;
  Record* record;
  uint32_t started;  // shard clock (ms) of the receive that left the message incomplete
  Partial* prev;
  Partial* next;
};

namespace {

Partial* partial_of(Connection c) {
  auto p = reinterpret_cast<uintptr_t>(c.user());
  return (p & 1) != 0 ? reinterpret_cast<Partial*>(p & ~uintptr_t{1}) : nullptr;
}

Record* record_of(Connection c) {
  auto p = reinterpret_cast<uintptr_t>(c.user());
  if ((p & 1) != 0) return reinterpret_cast<Partial*>(p & ~uintptr_t{1})->record;
  return reinterpret_cast<Record*>(p);
}

void set_partial(Record* r, Partial* partial) {
  r->connection.set_user(partial != nullptr
                             ? reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(partial) | 1)
                             : static_cast<void*>(r));
}

}  // namespace

namespace {

struct alignas(64) BlockHeader {
  ShardState* shard;
  uint32_t used;  // records handed out from this block so far (a high-water mark)
};
constexpr std::size_t kPerBlock = (kBlockBytes - sizeof(BlockHeader)) / sizeof(Record);

Record* block_records(BlockHeader* b) {
  return reinterpret_cast<Record*>(b + 1);
}
BlockHeader* block_of(const Record* r) {
  return reinterpret_cast<BlockHeader*>(reinterpret_cast<uintptr_t>(r) & ~(kBlockBytes - 1));
}

// A gauge or count written by its shard only, readable anywhere.
using Counter = ShardCounter;

struct ShardCounters {
  Counter handshakes, handshakes_refused, open, messages_in, messages_out, bytes_in, bytes_out,
      compressed_in, compressed_out, zero_copy_in, pings_in, pings_out, pongs_in, closes_in,
      protocol_errors, invalid_payload, too_big, idle_timeouts, pong_timeouts, close_timeouts,
      abnormal_closes, partial_now, message_timeouts;
};

// The calling thread's compressor and inflater, made on first use: one per shard thread.
Deflater& thread_deflater(int level) {
  thread_local std::unique_ptr<Deflater> deflater;
  thread_local int made_level = -2;
  if (!deflater || made_level != level) {
    deflater = std::make_unique<Deflater>(level);
    made_level = level;
  }
  return *deflater;
}
Inflater& thread_inflater() {
  thread_local std::unique_ptr<Inflater> inflater;
  if (!inflater) inflater = std::make_unique<Inflater>();
  return *inflater;
}
// Compressed output and inflated input; separate, since a handler may send while it holds
// an inflated message.
std::vector<std::byte>& deflate_scratch() {
  thread_local std::vector<std::byte> scratch;
  return scratch;
}
std::vector<std::byte>& inflate_scratch() {
  thread_local std::vector<std::byte> scratch;
  return scratch;
}

}  // namespace

// ---- Per-shard state ----

namespace {

struct ShardState {
  Server::Impl* server = nullptr;
  Shard* shard = nullptr;
  std::chrono::steady_clock::time_point epoch;
  std::vector<BlockHeader*> blocks;
  std::vector<Record*> free_records;
  std::size_t records = 0;      // in use
  std::size_t closing = 0;      // records waiting out close_timeout
  Partial* partials = nullptr;  // frames or messages in progress
  bool sweeping = false;        // the periodic timer is armed
  uint64_t max_wire_message = 0;
  ShardCounters counters;

  ~ShardState() {
    for (BlockHeader* b : blocks) ::munmap(b, kBlockBytes);
  }

  // A block from the kernel, aligned to its size (map twice the size, trim both ends): its
  // resident memory is exactly the records touched, and no heap fragments sit between blocks.
  static void* map_block() {
    void* p = ::mmap(nullptr, 2 * kBlockBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    auto base = reinterpret_cast<uintptr_t>(p);
    uintptr_t aligned = (base + kBlockBytes - 1) & ~(kBlockBytes - 1);
    if (aligned > base) ::munmap(p, aligned - base);
    uintptr_t end = base + 2 * kBlockBytes;
    if (end > aligned + kBlockBytes) {
      ::munmap(reinterpret_cast<void*>(aligned + kBlockBytes), end - aligned - kBlockBytes);
    }
    return reinterpret_cast<void*>(aligned);
  }

  uint32_t now_ms() const {
    return static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(shard->now() - epoch).count());
  }

  Record* allocate() {
    Record* r;
    if (!free_records.empty()) {
      r = free_records.back();
      free_records.pop_back();
    } else {
      if (blocks.empty() || blocks.back()->used == kPerBlock) {
        auto* b = new (map_block()) BlockHeader{this, 0};
        blocks.push_back(b);
      }
      BlockHeader* b = blocks.back();
      r = block_records(b) + b->used++;
    }
    std::memset(static_cast<void*>(r), 0, sizeof(Record));
    ++records;
    counters.open.add();
    return r;
  }

  void release(Record* r) {
    r->flags = 0;
    --records;
    counters.open.sub();
    free_records.push_back(r);
  }
};

}  // namespace

struct Server::Impl {
  Impl(Server& owner, WebSocketHandler& handler) : owner(owner), handler(handler) {}
  Server& owner;
  WebSocketHandler& handler;
  const Options& options() const { return owner.options_; }
  std::array<std::atomic<ShardState*>, kMaxShards> shards{};
  Duration sweep_period{0};

  ~Impl() {
    for (auto& s : shards) delete s.load();
  }

  // The calling shard's state, made on first use (on that shard's thread).
  ShardState& state(Shard& shard) {
    unsigned i = shard.index();
    if (i >= kMaxShards) throw std::runtime_error("ws::Server: more than 256 shards");
    // The state is per shard, not per connection: handlers on workers would race on it.
    if (shard.runtime().config().handlers_on_workers) {
      throw std::logic_error("ws::Server does not run with Config::handlers_on_workers");
    }
    ShardState* s = shards[i].load(std::memory_order_acquire);
    if (s == nullptr) {
      s = new ShardState;
      s->server = this;
      s->shard = &shard;
      s->epoch = shard.now();
      std::size_t spill = shard.runtime().config().max_spill;
      s->max_wire_message = std::min<uint64_t>(options().max_message_size, spill);
      shards[i].store(s, std::memory_order_release);
    }
    return *s;
  }

  static ShardState& state_of(const Record* r) { return *block_of(r)->shard; }

  // ---- sending ----

  bool send_frame(Record* r, Opcode opcode, std::span<const std::byte> payload, bool rsv1) {
    std::byte header[kMaxHeaderSize];
    std::size_t n = encode_header(header, opcode, payload.size(), true, rsv1);
    Connection c = r->connection;
    if (payload.size() <= kCopyLimit) {
      if (payload.empty()) return c.send(std::span<const std::byte>(header, n));
      std::byte frame[kMaxHeaderSize + kCopyLimit];
      std::memcpy(frame, header, n);
      std::memcpy(frame + n, payload.data(), payload.size());
      return c.send(std::span<const std::byte>(frame, n + payload.size()));
    }
    SharedBuffer buffer = SharedBuffer::make(n + payload.size(), [&](std::span<std::byte> out) {
      std::memcpy(out.data(), header, n);
      std::memcpy(out.data() + n, payload.data(), payload.size());
    });
    return c.send(buffer);
  }

  bool send_message(Record* r, MessageType type, std::span<const std::byte> payload) {
    if (r->flags & (flag::kCloseSent | flag::kFailed | flag::kTcpClosing)) return false;
    ShardState& s = state_of(r);
    auto opcode = static_cast<Opcode>(type);
    bool ok;
    if ((r->flags & flag::kDeflate) && payload.size() >= options().compression_threshold) {
      std::vector<std::byte>& z = deflate_scratch();
      z.clear();
      thread_deflater(options().compression_level).compress(payload, z);
      if (z.size() < payload.size()) {
        s.counters.compressed_out.add();
        ok = send_frame(r, opcode, z, true);
      } else {
        ok = send_frame(r, opcode, payload, false);
      }
    } else {
      ok = send_frame(r, opcode, payload, false);
    }
    if (ok) {
      s.counters.messages_out.add();
      s.counters.bytes_out.add(payload.size());
    }
    return ok;
  }

  bool send_prepared(Record* r, const PreparedMessage& m) {
    if (r->flags & (flag::kCloseSent | flag::kFailed | flag::kTcpClosing)) return false;
    ShardState& s = state_of(r);
    bool deflated = (r->flags & flag::kDeflate) && !m.deflated().empty();
    bool ok = r->connection.send(deflated ? m.deflated() : m.plain());
    if (ok) {
      s.counters.messages_out.add();
      s.counters.bytes_out.add(m.payload_size());
      if (deflated) s.counters.compressed_out.add();
    }
    return ok;
  }

  // Queues our close frame (once) and starts waiting for the peer's.
  void send_close(Record* r, uint16_t code, std::string_view reason) {
    if (r->flags & flag::kCloseSent) return;
    ShardState& s = state_of(r);
    // The reason must be valid UTF-8 and fit: cut it at a character boundary.
    reason = reason.substr(0, kMaxControlPayload - 2);
    while (!reason.empty() && !valid_utf8(reason)) reason.remove_suffix(1);
    std::vector<std::byte> payload = close_payload(code, reason);
    send_frame(r, Opcode::kClose, payload, false);
    r->flags |= flag::kCloseSent;
    r->close_code = code == close_code::kNoStatus ? close_code::kNormal : code;
    r->stamp = s.now_ms();
    ++s.closing;
    ensure_sweep(s);
  }

  // Fail the WebSocket connection (RFC 6455 7.1.7): our close frame, then FIN, and from now on
  // input is read and dropped until the peer closes (or close_timeout).
  void fail(Record* r, uint16_t code, const char* why) {
    ShardState& s = state_of(r);
    switch (code) {
      case close_code::kProtocolError:
        s.counters.protocol_errors.add();
        break;
      case close_code::kInvalidPayload:
        s.counters.invalid_payload.add();
        break;
      case close_code::kMessageTooBig:
        s.counters.too_big.add();
        break;
      default:
        break;
    }
    if (!(r->flags & flag::kCloseSent)) send_close(r, code, why ? why : "");
    r->flags |= flag::kFailed;
    drop_partial(r);
    r->connection.shutdown_write();
  }

  void add_partial(Record* r, const FrameDecoder& decoder) {
    ShardState& s = state_of(r);
    auto* p = new Partial{decoder, r, s.now_ms(), nullptr, s.partials};
    if (s.partials != nullptr) s.partials->prev = p;
    s.partials = p;
    set_partial(r, p);
    s.counters.partial_now.add();
    ensure_sweep(s);
  }

  // Frees the partial state (unlinks it) and, with drop_spill, the bytes gathered so far.
  void free_partial(Record* r, Partial* p) {
    ShardState& s = state_of(r);
    if (p->prev != nullptr) p->prev->next = p->next;
    if (p->next != nullptr) p->next->prev = p->prev;
    if (s.partials == p) s.partials = p->next;
    delete p;
    s.counters.partial_now.sub();
  }

  void drop_partial(Record* r) {
    Partial* partial = partial_of(r->connection);
    if (partial == nullptr) return;
    set_partial(r, nullptr);
    free_partial(r, partial);
    Connection c = r->connection;
    if (std::size_t n = c.spill().size()) c.spill_consume(n);
  }

  void report_close(Record* r, uint16_t code, std::string_view reason) {
    if (r->flags & flag::kReported) return;
    r->flags |= flag::kReported;
    if (r->flags & flag::kOpened) handler.on_close(WebSocket(r->connection), code, reason);
  }

  // ---- timers ----

  void ensure_sweep(ShardState& s) {
    if (s.sweeping) return;
    s.sweeping = true;
    s.shard->after(sweep_period, [this, &s] { sweep(s); });
  }

  void sweep(ShardState& s) {
    s.sweeping = false;
    if (s.records == 0) return;  // the next WebSocket arms it again
    const Options& o = options();
    if (o.message_timeout.count() > 0 && s.partials != nullptr) {
      // Frames or messages that stay incomplete too long (a client trickling bytes).
      const uint32_t now = s.now_ms();
      const auto limit = static_cast<uint32_t>(std::max<int64_t>(
          1, std::chrono::duration_cast<std::chrono::milliseconds>(o.message_timeout).count()));
      for (Partial* p = s.partials; p != nullptr;) {
        Partial* next = p->next;
        if (now - p->started >= limit) {
          s.counters.message_timeouts.add();
          fail(p->record, close_code::kPolicyViolation, "message too slow");
        }
        p = next;
      }
    }
    bool timing = o.ping_interval.count() > 0 || o.idle_timeout.count() > 0;
    if (timing || s.closing > 0) {
      using std::chrono::duration_cast;
      using std::chrono::milliseconds;
      auto ms = [](Duration d) {
        return static_cast<uint32_t>(std::max<int64_t>(1, duration_cast<milliseconds>(d).count()));
      };
      const uint32_t now = s.now_ms();
      const uint32_t ping = o.ping_interval.count() > 0 ? ms(o.ping_interval) : 0;
      const uint32_t idle = o.idle_timeout.count() > 0 ? ms(o.idle_timeout) : 0;
      const uint32_t pong = ms(o.pong_timeout);
      const uint32_t close_wait = ms(o.close_timeout);
      for (BlockHeader* b : s.blocks) {
        Record* records = block_records(b);
        for (uint32_t i = 0; i < b->used; ++i) {
          Record* r = records + i;
          uint16_t f = r->flags;
          if (!(f & flag::kUsed) || (f & flag::kTcpClosing)) continue;
          if (f & flag::kCloseSent) {
            if (now - r->stamp >= close_wait) {
              s.counters.close_timeouts.add();
              close_tcp(r);
            }
            continue;
          }
          if (!timing) continue;
          if (idle != 0 && !(f & flag::kPingOut) && now - r->stamp >= idle) {
            s.counters.idle_timeouts.add();
            send_close(r, close_code::kGoingAway, "idle timeout");
            continue;
          }
          if (ping == 0) continue;
          if (f & flag::kPingOut) {
            if (now - r->stamp >= pong) {
              s.counters.pong_timeouts.add();
              r->flags |= flag::kTcpClosing;
              r->connection.abort();
            }
          } else if (now - r->stamp >= ping) {
            send_frame(r, Opcode::kPing, {}, false);
            s.counters.pings_out.add();
            r->flags |= flag::kPingOut;
            r->stamp = now;
          }
        }
      }
    }
    ensure_sweep(s);
  }

  void close_tcp(Record* r) {
    if (r->flags & flag::kTcpClosing) return;
    r->flags |= flag::kTcpClosing;
    r->connection.close();
  }
};

namespace {

// The decoder's sink for one receive on one connection.
class ConnectionSink final : public FrameSink {
 public:
  ConnectionSink(Server::Impl& server, Record* r, FrameDecoder& decoder)
      : server_(server), r_(r), decoder_(decoder), s_(Server::Impl::state_of(r)) {}

  bool on_data(std::span<const std::byte> piece, bool end) override {
    if (r_->flags & flag::kCloseSent) return true;  // closing: messages are dropped
    Connection c = r_->connection;
    std::span<const std::byte> spilled = c.spill();
    if (end && spilled.empty()) {
      s_.counters.zero_copy_in.add();
      return deliver(piece);
    }
    if (!piece.empty() && !c.spill_append(piece)) return false;  // the core closes it
    if (!end) return true;
    spilled = c.spill();
    bool go_on = deliver(spilled);
    if (c.valid() && !c.spill().empty()) c.spill_consume(c.spill().size());
    return go_on;
  }

  bool on_control(Opcode opcode, std::span<const std::byte> payload) override {
    switch (opcode) {
      case Opcode::kPing:
        s_.counters.pings_in.add();
        if (!(r_->flags & flag::kCloseSent)) server_.send_frame(r_, Opcode::kPong, payload, false);
        return true;
      case Opcode::kPong:
        s_.counters.pongs_in.add();
        return true;
      case Opcode::kClose: {
        s_.counters.closes_in.add();
        CloseInfo info = parse_close_payload(payload);
        if (info.error != 0) {
          error_ = info.error;
          why_ = info.error == close_code::kInvalidPayload ? "close reason is not UTF-8"
                                                           : "invalid close frame";
          return false;
        }
        // Echo the code (or an empty close for none), then close TCP once it is sent.
        server_.send_close(r_, info.code, {});
        server_.report_close(r_, info.code, info.reason);
        server_.close_tcp(r_);
        return false;
      }
      default:
        return true;
    }
  }

  uint16_t error() const { return error_; }
  const char* why() const { return why_; }

 private:
  bool deliver(std::span<const std::byte> payload) {
    MessageType type =
        decoder_.message_type() == Opcode::kText ? MessageType::kText : MessageType::kBinary;
    if (decoder_.message_compressed()) {
      s_.counters.compressed_in.add();
      std::vector<std::byte>& out = inflate_scratch();
      switch (thread_inflater().inflate(payload, server_.options().max_message_size, out)) {
        case Inflater::Status::kOk:
          break;
        case Inflater::Status::kTooBig:
          error_ = close_code::kMessageTooBig;
          why_ = "message too big";
          return false;
        case Inflater::Status::kCorrupt:
          error_ = close_code::kInvalidPayload;
          why_ = "corrupt deflate data";
          return false;
      }
      if (type == MessageType::kText && !valid_utf8(out)) {
        error_ = close_code::kInvalidPayload;
        why_ = "invalid UTF-8 text";
        return false;
      }
      bool go_on = hand_over(type, out);
      // Keep the buffer for the next message, unless this one was unusually large.
      if (out.capacity() > (std::size_t{1} << 20)) std::vector<std::byte>().swap(out);
      return go_on;
    }
    return hand_over(type, payload);
  }

  bool hand_over(MessageType type, std::span<const std::byte> payload) {
    s_.counters.messages_in.add();
    s_.counters.bytes_in.add(payload.size());
    server_.handler.on_message(WebSocket(r_->connection), Message{type, payload});
    // The handler may have closed it.
    return r_->connection.valid() &&
           !(r_->flags & (flag::kFailed | flag::kTcpClosing | flag::kReported));
  }

  Server::Impl& server_;
  Record* r_;
  FrameDecoder& decoder_;
  ShardState& s_;
  uint16_t error_ = 0;
  const char* why_ = nullptr;
};

}  // namespace

// ---- Server ----

Server::Server(WebSocketHandler& handler, Options options)
    : impl_(std::make_unique<Impl>(*this, handler)), options_(std::move(options)) {
  if (options_.subprotocols.size() >= kNoSubprotocol) {
    throw std::invalid_argument("ws::Options::subprotocols: at most 254");
  }
  Duration shortest = options_.close_timeout;
  for (Duration d : {options_.ping_interval, options_.idle_timeout}) {
    if (d.count() > 0) shortest = std::min(shortest, d);
  }
  if (options_.ping_interval.count() > 0) shortest = std::min(shortest, options_.pong_timeout);
  if (options_.message_timeout.count() > 0) shortest = std::min(shortest, options_.message_timeout);
  impl_->sweep_period =
      std::clamp<Duration>(shortest / 4, std::chrono::milliseconds(5), std::chrono::seconds(1));
}

Server::~Server() = default;

http::Upgrade Server::upgrade(const http::Request& request, http::Response& response) {
  if (!request.has_token("upgrade", "websocket")) return http::Upgrade::pass();
  ShardState& s = impl_->state(request.connection().shard());
  auto refuse = [&](int status, std::string_view why) {
    s.counters.handshakes_refused.add();
    response.status(status).close();
    if (status == 426) response.header("Sec-WebSocket-Version", "13");
    response.send(status == 426 ? "WebSocket version 13 only\n" : std::string(why) + "\n");
    return http::Upgrade::refused();
  };
  if (request.method() != "GET") return refuse(400, "a WebSocket handshake is a GET");
  if (request.version_minor() < 1) return refuse(400, "a WebSocket handshake needs HTTP/1.1");
  if (!request.has_header("host")) return refuse(400, "no Host");
  if (!request.has_token("connection", "upgrade")) return refuse(400, "no Connection: upgrade");
  std::string_view version = request.header("sec-websocket-version");
  if (version != "13") return refuse(426, "");
  std::string_view key = request.header("sec-websocket-key");
  if (!valid_client_key(key)) return refuse(400, "bad Sec-WebSocket-Key");
  if (options_.check_origin && !options_.check_origin(request.header("origin"))) {
    return refuse(403, "origin not allowed");
  }

  uint8_t subprotocol = kNoSubprotocol;
  std::vector<std::string_view> extensions;
  std::vector<std::string_view> offered;
  for (const http::Header& h : request.headers()) {
    if (http::iequals(h.name, "sec-websocket-extensions")) extensions.push_back(h.value);
    if (http::iequals(h.name, "sec-websocket-protocol")) offered.push_back(h.value);
  }
  for (std::size_t i = 0; i < options_.subprotocols.size() && subprotocol == kNoSubprotocol; ++i) {
    for (std::string_view value : offered) {
      if (header_has_token(value, options_.subprotocols[i])) {
        subprotocol = static_cast<uint8_t>(i);
        break;
      }
    }
  }
  DeflateOffer deflate;
  if (options_.compression) deflate = negotiate_deflate(extensions);

  response.status(101);
  response.header("Upgrade", "websocket");
  response.header("Sec-WebSocket-Accept", accept_key(key));
  if (subprotocol != kNoSubprotocol) {
    response.header("Sec-WebSocket-Protocol", options_.subprotocols[subprotocol]);
  }
  if (deflate.accepted) response.header("Sec-WebSocket-Extensions", deflate.response);

  Record* r = s.allocate();
  r->connection = request.connection();
  r->flags = flag::kUsed | (deflate.accepted ? flag::kDeflate : 0);
  r->subprotocol = subprotocol;
  r->stamp = s.now_ms();
  request.connection().set_user(r);
  s.counters.handshakes.add();
  impl_->ensure_sweep(s);
  return http::Upgrade::to(*this);
}

PreparedMessage Server::prepare(MessageType type, std::span<const std::byte> payload) const {
  return ws::prepare(type, payload,
                     options_.compression ? options_.compression_threshold : SIZE_MAX,
                     options_.compression_level);
}

void Server::on_open(Connection c) {
  Record* r = record_of(c);
  if (r == nullptr) return;
  r->flags |= flag::kOpened;
  impl_->handler.on_open(WebSocket(c));
}

void Server::on_data(Connection c, Chunk data) {
  Record* r = record_of(c);
  if (r == nullptr || (r->flags & (flag::kFailed | flag::kTcpClosing))) return;  // dropped
  ShardState& s = Impl::state_of(r);
  if (!(r->flags & flag::kCloseSent)) r->stamp = s.now_ms();
  r->flags &= ~flag::kPingOut;  // anything at all answers a ping

  FrameDecoder local;
  Partial* partial = partial_of(c);
  FrameDecoder& decoder = partial != nullptr ? partial->decoder : local;
  FrameDecoder::Limits limits;
  limits.max_message_size = s.max_wire_message;
  limits.deflate = (r->flags & flag::kDeflate) != 0;
  ConnectionSink sink(*impl_, r, decoder);
  FrameDecoder::Result result =
      decoder.decode(std::span<std::byte>(data.data(), data.size()), limits, sink);
  data.release();  // the chunk goes back to the pool before anything else happens

  if (!c.valid() || record_of(c) != r) return;
  uint16_t error = result.error != 0 ? result.error : sink.error();
  if (error != 0) {
    impl_->fail(r, error, result.error != 0 ? result.why : sink.why());
    return;
  }
  if (r->flags & (flag::kTcpClosing | flag::kReported)) {
    impl_->drop_partial(r);
    return;
  }
  if (decoder.idle()) {
    if (partial != nullptr) impl_->drop_partial(r);
  } else if (partial == nullptr) {
    impl_->add_partial(r, local);
  }
}

void Server::on_peer_closed(Connection c) {
  // The peer's FIN. With a close handshake done or under way that is the expected end;
  // otherwise the TCP connection ended without one (on_close reports 1006).
  c.close();
}

void Server::on_write_watermark(Connection c, bool above_high) {
  Record* r = record_of(c);
  if (r == nullptr || !(r->flags & flag::kOpened) || (r->flags & flag::kReported)) return;
  impl_->handler.on_write_watermark(WebSocket(c), above_high);
}

void Server::on_close(Connection c, CloseReason /*reason*/, int /*error*/) {
  Record* r = record_of(c);
  if (r == nullptr) return;
  ShardState& s = Impl::state_of(r);
  if (!(r->flags & flag::kReported)) {
    if (r->flags & flag::kCloseSent) {
      impl_->report_close(r, r->close_code, {});
    } else {
      s.counters.abnormal_closes.add();
      impl_->report_close(r, close_code::kAbnormal, {});
    }
  }
  if (Partial* partial = partial_of(c)) impl_->free_partial(r, partial);
  if (r->flags & flag::kCloseSent) --s.closing;
  c.set_user(nullptr);
  s.release(r);
}

Stats Server::stats() const {
  Stats total;
  for (const auto& slot : impl_->shards) {
    const ShardState* s = slot.load(std::memory_order_acquire);
    if (s == nullptr) continue;
    const ShardCounters& k = s->counters;
    Stats one;
    one.handshakes = k.handshakes.get();
    one.handshakes_refused = k.handshakes_refused.get();
    one.open = k.open.get();
    one.messages_in = k.messages_in.get();
    one.messages_out = k.messages_out.get();
    one.bytes_in = k.bytes_in.get();
    one.bytes_out = k.bytes_out.get();
    one.compressed_in = k.compressed_in.get();
    one.compressed_out = k.compressed_out.get();
    one.zero_copy_in = k.zero_copy_in.get();
    one.pings_in = k.pings_in.get();
    one.pings_out = k.pings_out.get();
    one.pongs_in = k.pongs_in.get();
    one.closes_in = k.closes_in.get();
    one.protocol_errors = k.protocol_errors.get();
    one.invalid_payload = k.invalid_payload.get();
    one.too_big = k.too_big.get();
    one.idle_timeouts = k.idle_timeouts.get();
    one.pong_timeouts = k.pong_timeouts.get();
    one.close_timeouts = k.close_timeouts.get();
    one.abnormal_closes = k.abnormal_closes.get();
    one.partial_now = k.partial_now.get();
    one.message_timeouts = k.message_timeouts.get();
    total += one;
  }
  return total;
}

Stats& Stats::operator+=(const Stats& o) {
  handshakes += o.handshakes;
  handshakes_refused += o.handshakes_refused;
  open += o.open;
  messages_in += o.messages_in;
  messages_out += o.messages_out;
  bytes_in += o.bytes_in;
  bytes_out += o.bytes_out;
  compressed_in += o.compressed_in;
  compressed_out += o.compressed_out;
  zero_copy_in += o.zero_copy_in;
  pings_in += o.pings_in;
  pings_out += o.pings_out;
  pongs_in += o.pongs_in;
  closes_in += o.closes_in;
  protocol_errors += o.protocol_errors;
  invalid_payload += o.invalid_payload;
  too_big += o.too_big;
  idle_timeouts += o.idle_timeouts;
  pong_timeouts += o.pong_timeouts;
  close_timeouts += o.close_timeouts;
  abnormal_closes += o.abnormal_closes;
  partial_now += o.partial_now;
  message_timeouts += o.message_timeouts;
  return *this;
}

std::string Stats::to_string() const {
  std::string out;
  auto field = [&](const char* name, uint64_t value) {
    if (!out.empty()) out += ' ';
    out += name;
    out += '=';
    out += std::to_string(value);
  };
  field("ws_handshakes", handshakes);
  field("ws_handshakes_refused", handshakes_refused);
  field("ws_open", open);
  field("ws_messages_in", messages_in);
  field("ws_messages_out", messages_out);
  field("ws_bytes_in", bytes_in);
  field("ws_bytes_out", bytes_out);
  field("ws_compressed_in", compressed_in);
  field("ws_compressed_out", compressed_out);
  field("ws_zero_copy_in", zero_copy_in);
  field("ws_pings_in", pings_in);
  field("ws_pings_out", pings_out);
  field("ws_pongs_in", pongs_in);
  field("ws_closes_in", closes_in);
  field("ws_protocol_errors", protocol_errors);
  field("ws_invalid_payload", invalid_payload);
  field("ws_too_big", too_big);
  field("ws_idle_timeouts", idle_timeouts);
  field("ws_pong_timeouts", pong_timeouts);
  field("ws_close_timeouts", close_timeouts);
  field("ws_abnormal_closes", abnormal_closes);
  field("ws_partial_now", partial_now);
  field("ws_message_timeouts", message_timeouts);
  return out;
}

// ---- Prepared messages ----

PreparedMessage prepare(MessageType type, std::span<const std::byte> payload,
                        std::size_t compress_at, int level) {
  PreparedMessage m;
  m.type_ = type;
  m.payload_size_ = payload.size();
  auto frame = [&](std::span<const std::byte> body, bool rsv1) {
    std::byte header[kMaxHeaderSize];
    std::size_t n = encode_header(header, static_cast<Opcode>(type), body.size(), true, rsv1);
    return SharedBuffer::make(n + body.size(), [&](std::span<std::byte> out) {
      std::memcpy(out.data(), header, n);
      if (!body.empty()) std::memcpy(out.data() + n, body.data(), body.size());
    });
  };
  m.plain_ = frame(payload, false);
  if (payload.size() >= compress_at) {
    std::vector<std::byte> z;
    thread_deflater(level).compress(payload, z);
    if (z.size() < payload.size()) m.deflated_ = frame(z, true);
  }
  return m;
}

// ---- WebSocket ----

namespace {
Record* live_record(Connection c) {
  if (!c.valid()) return nullptr;
  Record* r = record_of(c);
  if (r == nullptr || (r->flags & flag::kReported)) return nullptr;
  return r;
}
}  // namespace

bool WebSocket::valid() const {
  return live_record(connection_) != nullptr;
}

bool WebSocket::send_text(std::string_view text) {
  return send(MessageType::kText, std::as_bytes(std::span(text.data(), text.size())));
}

bool WebSocket::send_binary(std::span<const std::byte> data) {
  return send(MessageType::kBinary, data);
}

bool WebSocket::send(MessageType type, std::span<const std::byte> payload) {
  Record* r = live_record(connection_);
  return r != nullptr && Server::Impl::state_of(r).server->send_message(r, type, payload);
}

bool WebSocket::send(const PreparedMessage& message) {
  Record* r = live_record(connection_);
  return r != nullptr && Server::Impl::state_of(r).server->send_prepared(r, message);
}

bool WebSocket::ping(std::span<const std::byte> payload) {
  Record* r = live_record(connection_);
  if (r == nullptr || payload.size() > kMaxControlPayload ||
      (r->flags & (flag::kCloseSent | flag::kFailed | flag::kTcpClosing))) {
    return false;
  }
  ShardState& s = Server::Impl::state_of(r);
  s.counters.pings_out.add();
  return s.server->send_frame(r, Opcode::kPing, payload, false);
}

void WebSocket::close(uint16_t code, std::string_view reason) {
  Record* r = live_record(connection_);
  if (r == nullptr || (r->flags & flag::kTcpClosing)) return;
  Server::Impl::state_of(r).server->send_close(r, code, reason);
}

std::string_view WebSocket::subprotocol() const {
  Record* r = live_record(connection_);
  if (r == nullptr || r->subprotocol == kNoSubprotocol) return {};
  return Server::Impl::state_of(r).server->options().subprotocols[r->subprotocol];
}

bool WebSocket::compression() const {
  Record* r = live_record(connection_);
  return r != nullptr && (r->flags & flag::kDeflate) != 0;
}

// Not live_record(): the application reads (and clears) its pointer in on_close, which runs
// with kReported set and perhaps on a connection that is closed already; record_of() is null
// once the record is released (the connection's user slot is cleared, or the handle is stale).
void* WebSocket::user() const {
  Record* r = record_of(connection_);
  return r == nullptr ? nullptr : r->user;
}

void WebSocket::set_user(void* user) {
  if (Record* r = record_of(connection_)) r->user = user;
}

}  // namespace myriad::ws
