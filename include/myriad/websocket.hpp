// Public. A WebSocket server (RFC 6455) with permessage-deflate (RFC 7692), on the HTTP/1.1
// server's upgrade hook.
//
//   myriad::ws::Server ws(my_handler, ws_options);
//   myriad::http::Server http(serve_page);
//   http.set_upgrade_hook([&](const auto& req, auto& res) { return ws.upgrade(req, res); });
//   runtime.listen(address, http);
//
// Threads: one ws::Server serves every shard; its callbacks run on the connection's shard
// thread, several shards at once. WebSocket handles are for their connection's shard thread
// (post to it from elsewhere, as with Connection). PreparedMessage is immutable once made and
// may be shared by any threads.
//
// Costs: a connection that finished its handshake and is idle holds one 32-byte record in its
// shard's slab (the core's 32-byte record aside) and nothing on the heap: no parser, no
// compressor, no timer object. A frame or fragmented message in progress adds a ~200-byte
// decoder state and keeps the message's bytes so far in the connection's spill buffer, both
// freed when the message completes. A message whose frames arrive whole in one receive is
// unmasked in place and handed over without a copy. Server pings, pong timeouts, idle timeouts
// and close timeouts come from one periodic timer per shard that looks at every record.
// Compression keeps no state per connection: one zlib compressor and one inflater per thread
// that uses them (so one per shard), every message on its own (see ws_codec.hpp for the
// negotiation this takes).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <myriad/config.hpp>
#include <myriad/connection.hpp>
#include <myriad/counters.hpp>
#include <myriad/handler.hpp>
#include <myriad/http.hpp>
#include <myriad/shared_buffer.hpp>
#include <myriad/ws_codec.hpp>

namespace myriad::ws {

enum class MessageType : uint8_t { kText = 1, kBinary = 2 };

// A whole received message. The payload points into the receive buffer (or the spill buffer,
// or the inflater's output) and is valid only during the on_message call: copy what you keep.
struct Message {
  MessageType type;
  std::span<const std::byte> payload;
  std::string_view view() const {
    return {reinterpret_cast<const char*>(payload.data()), payload.size()};
  }
};

struct Options {
  // A received message larger than this (after inflating) fails the connection with 1009. The
  // connection's spill buffer holds a message that spans receives, so Config::max_spill caps
  // it too (the smaller wins; keep max_spill at least this large).
  std::size_t max_message_size = std::size_t{1} << 20;
  // Accept permessage-deflate offers (Chromium and python3-websockets make one by default).
  bool compression = true;
  // Outgoing messages at least this long are compressed (when negotiated and when it helps).
  std::size_t compression_threshold = 512;
  int compression_level = 6;
  // Ping a connection after this long without receiving anything; 0: never.
  Duration ping_interval{0};
  // A ping unanswered (nothing received) for this long: the connection is dropped.
  Duration pong_timeout = std::chrono::seconds(10);
  // Close (1001) a connection that received nothing for this long; 0: never.
  Duration idle_timeout{0};
  // A frame or fragmented message still incomplete this long after it began (measured from the
  // receive that left it incomplete) fails the connection with 1008: a client that trickles a
  // byte a second cannot hold a decoder state and a spill buffer forever. 0: no limit.
  Duration message_timeout = std::chrono::seconds(30);
  // After our close frame, how long to wait for the peer's before closing TCP anyway.
  Duration close_timeout = std::chrono::seconds(5);
  // Subprotocols the server speaks, most preferred first. The first of these that the client
  // offered (Sec-WebSocket-Protocol) is chosen; none in common: no subprotocol (the client
  // decides whether that is acceptable). Empty: never answer one.
  std::vector<std::string> subprotocols;
  // Called with the Origin header (empty when the request has none, as from non-browsers);
  // false refuses the handshake with 403. Not set: every origin is accepted.
  std::function<bool(std::string_view origin)> check_origin;
};

// Per-shard counts, summed by Server::stats().
struct Stats {
  uint64_t handshakes = 0;          // upgrades accepted (101 sent)
  uint64_t handshakes_refused = 0;  // 400, 403, 426 answered instead
  uint64_t open = 0;                // WebSocket connections now (gauge)
  uint64_t messages_in = 0;
  uint64_t messages_out = 0;
  uint64_t bytes_in = 0;        // message payload bytes received (after inflating)
  uint64_t bytes_out = 0;       // message payload bytes sent (before compressing)
  uint64_t compressed_in = 0;   // messages that arrived compressed
  uint64_t compressed_out = 0;  // messages sent compressed (by this connection's choice)
  uint64_t zero_copy_in = 0;    // messages handed over in place, without a copy
  uint64_t pings_in = 0;
  uint64_t pings_out = 0;  // server pings (ping_interval) and WebSocket::ping()
  uint64_t pongs_in = 0;
  uint64_t closes_in = 0;         // close frames received
  uint64_t protocol_errors = 0;   // failed with 1002
  uint64_t invalid_payload = 0;   // failed with 1007 (UTF-8, or a corrupt deflate stream)
  uint64_t too_big = 0;           // failed with 1009
  uint64_t idle_timeouts = 0;     // closed with 1001 by Options::idle_timeout
  uint64_t pong_timeouts = 0;     // dropped: no answer to a ping
  uint64_t close_timeouts = 0;    // the peer never answered our close frame
  uint64_t abnormal_closes = 0;   // TCP ended with no close frame (1006)
  uint64_t partial_now = 0;       // connections with a frame or message in progress (gauge)
  uint64_t message_timeouts = 0;  // failed with 1008: a message took past message_timeout

  Stats& operator+=(const Stats& other);
  std::string to_string() const;
};

class Server;

// An outgoing message framed once and shared: the complete frame, unmasked, as the server
// sends it, and (when compression is enabled, the message reaches the threshold and
// compressing shrinks it) the same message compressed. WebSocket::send(prepared) queues a
// reference to whichever the connection negotiated, never a copy, so one PreparedMessage sent
// to 100,000 connections costs one or two buffers. Immutable; any thread.
class PreparedMessage {
 public:
  PreparedMessage() = default;
  MessageType type() const { return type_; }
  std::size_t payload_size() const { return payload_size_; }
  const SharedBuffer& plain() const { return plain_; }
  // Empty when the message is sent uncompressed to every connection.
  const SharedBuffer& deflated() const { return deflated_; }

 private:
  friend class Server;
  friend PreparedMessage prepare(MessageType, std::span<const std::byte>, std::size_t, int);
  MessageType type_ = MessageType::kBinary;
  std::size_t payload_size_ = 0;
  SharedBuffer plain_;
  SharedBuffer deflated_;
};

// Frames payload once for any number of connections. compress_at: make the compressed variant
// when the payload is at least this long (SIZE_MAX: never). Uses the calling thread's
// compressor (one per thread, made on first use). Any thread.
PreparedMessage prepare(MessageType type, std::span<const std::byte> payload,
                        std::size_t compress_at = 512, int level = 6);
inline PreparedMessage prepare_text(std::string_view text, std::size_t compress_at = 512) {
  return prepare(MessageType::kText, std::as_bytes(std::span(text.data(), text.size())),
                 compress_at);
}

// A handle to one WebSocket connection: 16 bytes, cheap to copy and safe to keep. Shard thread
// only. Once the WebSocket has closed (after on_close) every call does nothing and returns
// false (valid() says which).
class WebSocket {
 public:
  WebSocket() = default;
  explicit WebSocket(Connection c) : connection_(c) {}

  bool valid() const;
  Connection connection() const { return connection_; }

  // Sends one message as one frame (compressed when negotiated and at least the threshold).
  // False when nothing was queued: the WebSocket is closing, or the connection is (a slow
  // reader past Config::max_write_queue).
  bool send_text(std::string_view text);
  bool send_binary(std::span<const std::byte> data);
  bool send(MessageType type, std::span<const std::byte> payload);
  // The encode-once form: queues a reference to the prepared frame, no copy.
  bool send(const PreparedMessage& message);
  // A ping (payload at most 125 bytes); the peer's pong counts as activity.
  bool ping(std::span<const std::byte> payload = {});
  // Starts the closing handshake: sends a close frame with code and reason (code
  // close_code::kNoStatus: an empty close frame), then waits up to Options::close_timeout
  // for the peer's close frame and closes the TCP connection. Messages that arrive meanwhile
  // are dropped.
  void close(uint16_t code = close_code::kNormal, std::string_view reason = {});

  // Whether writes are below the high watermark (see Connection::writable()).
  bool writable() const { return connection_.writable(); }
  // The negotiated subprotocol, or empty.
  std::string_view subprotocol() const;
  // Whether permessage-deflate was negotiated.
  bool compression() const;

  // Per-connection state for the application; the handler owns what it points to and frees it
  // in on_close.
  void* user() const;
  void set_user(void* user);

 private:
  Connection connection_;
};

// The application's side. Called on the connection's shard thread.
class WebSocketHandler {
 public:
  virtual ~WebSocketHandler() = default;
  // The handshake completed (the 101 is queued); messages may be sent.
  virtual void on_open(WebSocket /*ws*/) {}
  // One whole message: text is valid UTF-8, compressed messages arrive inflated.
  virtual void on_message(WebSocket ws, const Message& message) = 0;
  // Output passed the high watermark (true) or drained below the low one (false).
  virtual void on_write_watermark(WebSocket /*ws*/, bool /*above_high*/) {}
  // The last call for this WebSocket, once: code and reason are the peer's close frame's when
  // it sent one (kNoStatus for an empty one), else the code this side closed or failed with,
  // else close_code::kAbnormal (the TCP connection ended without a close frame). The reason is
  // valid during the call only. After it, every call on the handle does nothing.
  virtual void on_close(WebSocket /*ws*/, uint16_t /*code*/, std::string_view /*reason*/) {}
};

// The server: the upgrade hook and the myriad::Handler that connections switch to. Construct
// before the runtime starts; destroy after it stopped.
class Server final : public myriad::Handler {
 public:
  explicit Server(WebSocketHandler& handler, Options options = {});
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // For http::Server::set_upgrade_hook. Checks the request (RFC 6455 4.2.1): GET, HTTP/1.1,
  // Host, Upgrade: websocket, Connection: upgrade, Sec-WebSocket-Version: 13 (else 426 with
  // the version we speak), a Sec-WebSocket-Key of 16 bytes in base64; then Options::
  // check_origin (403), the subprotocol and permessage-deflate. Bad requests get 400 and the
  // connection closes. A request whose Upgrade does not name websocket is passed on.
  http::Upgrade upgrade(const http::Request& request, http::Response& response);

  // prepare() with this server's compression threshold and level (no compressed variant when
  // compression is off).
  PreparedMessage prepare(MessageType type, std::span<const std::byte> payload) const;

  const Options& options() const { return options_; }
  // Thread-safe: the sum over shards.
  Stats stats() const;

  // myriad::Handler (called by the runtime after the switch).
  void on_open(Connection c) override;
  void on_data(Connection c, Chunk data) override;
  void on_peer_closed(Connection c) override;
  void on_write_watermark(Connection c, bool above_high) override;
  void on_close(Connection c, CloseReason reason, int error) override;

  struct Impl;  // internal (src/ws/server.cpp)

 private:
  friend class WebSocket;
  std::unique_ptr<Impl> impl_;
  Options options_;
};

}  // namespace myriad::ws
