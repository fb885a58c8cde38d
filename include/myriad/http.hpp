// Public. An HTTP/1.1 server as a myriad::Handler: requests in, responses out, keep-alive and
// pipelining, streaming responses (the base of Server-Sent Events, sse.hpp) and the upgrade hook
// that hands a connection to another protocol (WebSocket).
//
// Threads: a Server is given to Runtime::listen() and serves every shard; its callbacks (the
// request handler, the upgrade hook, stream events) run on the connection's shard thread, several
// shards at once, so they must be safe to call concurrently (or use one Server per shard through
// the factory form of listen()); it does not run with Config::handlers_on_workers (it answers on
// the shard). Request, Response and Stream are used on that thread only; a
// Stream is a small value handle that may be kept and copied, and to write to it from elsewhere
// post to its shard: `s.connection().shard().post([s]() mutable { s.write("..."); })`.
//
// Costs: an idle keep-alive connection holds nothing beyond the core's 32-byte record (its
// Connection::user() is null). A request that does not arrive in one receive keeps its bytes in
// the connection's spill buffer, a 144-byte parse state and a 408 timer on the shard's wheel,
// all freed when it completes. A streaming response holds a 136-byte state while it streams.
// Requests complete in one receive are parsed in place (no copy); their views point into the
// receive buffer and are valid only during the handler call.
//
// Parsing is llhttp 8.1 (Node.js's parser; Debian ships it as node-llhttp) in strict mode, plus
// checks of our own: see docs/PROTOCOLS.md for why, and for what each bad input gets.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <myriad/chunk.hpp>
#include <myriad/config.hpp>
#include <myriad/connection.hpp>
#include <myriad/counters.hpp>
#include <myriad/handler.hpp>

namespace myriad::http {

class Server;
namespace detail {
struct Access;  // the implementation's way in (src/http/server.cpp)
struct ServerShards;
}  // namespace detail

struct Header {
  std::string_view name;   // as sent (compare with iequals)
  std::string_view value;  // without surrounding whitespace
};

// ASCII case-insensitive comparison, for header names and tokens.
bool iequals(std::string_view a, std::string_view b);

// What the server accepts. Each limit has a clear outcome: the status is answered with
// `Connection: close`, the connection closes after it, and a counter in Stats goes up.
struct Limits {
  // Request line plus header fields, up to the blank line: past it 431.
  std::size_t max_header_bytes = 16 << 10;
  // Header fields per request: past it 431.
  std::size_t max_headers = 100;
  // Decoded body bytes (Content-Length, or the sum of chunks): past it 413 (at once for a
  // Content-Length above it; 100-continue is not sent). A request that needs more than one
  // receive lives in the spill buffer, so the effective limit is also capped at
  // Config::max_spill - max_header_bytes.
  std::size_t max_body_bytes = 1 << 20;
  // From the first byte of a request to its last: past it 408 and close (slowloris). A timer
  // exists only while a request is incomplete; idle keep-alive connections are closed by the
  // core's Config::idle_timeout, which costs no per-connection timer object.
  Duration request_timeout = std::chrono::seconds(30);
};

struct Options {
  Limits limits;
  // Streams opened with a heartbeat (SSE's comment lines) get it after this long without a
  // write; one timer per shard drives every stream's heartbeat.
  Duration heartbeat_interval = std::chrono::seconds(15);
  // The Server header; empty: none.
  std::string server_name = "myriad";
};

// Per-shard counts, summed by Server::stats(). Every bad-input outcome has its own.
struct Stats {
  uint64_t requests = 0;             // complete requests given to the handler (or the hook)
  uint64_t responses = 0;            // responses finished (sent whole, or streams begun)
  uint64_t bad_request = 0;          // 400: malformed, smuggling (CL+TE, CL twice), bare LF, ...
  uint64_t header_too_large = 0;     // 431: max_header_bytes or max_headers
  uint64_t body_too_large = 0;       // 413
  uint64_t request_timeout = 0;      // 408
  uint64_t version_unsupported = 0;  // 505
  uint64_t not_implemented = 0;      // 501: CONNECT
  uint64_t handler_errors = 0;       // the handler threw: 500 and close
  uint64_t continues = 0;            // 100 Continue sent
  uint64_t incomplete_at_close = 0;  // the peer closed in the middle of a request
  uint64_t upgrades = 0;             // connections handed to another protocol
  uint64_t upgrades_refused = 0;     // the hook answered instead
  uint64_t partial_requests = 0;     // requests waiting for more bytes now (gauge)
  uint64_t streams_open = 0;         // streaming responses now (gauge)
  uint64_t streams_opened = 0;
  uint64_t heartbeats = 0;  // heartbeat writes

  Stats& operator+=(const Stats& other);
  // One line, "key=value ..." in field order.
  std::string to_string() const;
};

// A parsed request. Views into the receive buffer (or the spill): valid during the call only.
class Request {
 public:
  std::string_view method() const { return method_; }  // "GET", as sent (case-sensitive)
  std::string_view target() const { return target_; }  // "/path?query" (or absolute form)
  std::string_view path() const;                       // target up to '?'
  std::string_view query() const;                      // after '?', empty if none
  unsigned version_minor() const { return minor_; }    // HTTP/1.0 or HTTP/1.1
  std::span<const Header> headers() const { return headers_; }
  // The first field of that name (case-insensitive), or empty.
  std::string_view header(std::string_view name) const;
  bool has_header(std::string_view name) const;
  // Whether the comma-separated field `name` holds `token` (case-insensitive), e.g.
  // has_token("connection", "upgrade").
  bool has_token(std::string_view name, std::string_view token) const;
  // The decoded body (Content-Length or chunked), empty if none.
  std::string_view body() const { return body_; }
  // Whether the connection stays open after the response (HTTP/1.1 without Connection: close,
  // or HTTP/1.0 with keep-alive).
  bool keep_alive() const { return keep_alive_; }
  bool is_head() const { return method_ == "HEAD"; }
  // Carries Upgrade and Connection: upgrade.
  bool upgrade() const { return upgrade_; }
  Connection connection() const { return connection_; }

 private:
  friend struct detail::Access;
  std::string_view method_, target_, body_;
  std::span<const Header> headers_;
  Connection connection_;
  uint8_t minor_ = 1;
  bool keep_alive_ = true;
  bool upgrade_ = false;
};

// How a streaming response's body is framed.
enum class Framing : uint8_t {
  kChunked,     // Transfer-Encoding: chunked; end() sends the last chunk; keep-alive goes on
  kUntilClose,  // no length: the body ends when the connection closes (Connection: close). Each
                // write goes out verbatim, so encoded bytes can be shared by many streams (SSE).
  kLength,      // Content-Length given to stream(); ends by itself after that many bytes
};

enum class StreamEvent : uint8_t {
  kWritable,  // output drained below the low watermark after passing the high one
  kEnded,     // the last call: end() was called, the length was reached, or the connection closed
};

class Stream;
using StreamCallback = std::function<void(Stream&, StreamEvent)>;

struct StreamOptions {
  Framing framing = Framing::kChunked;
  uint64_t length = 0;  // kLength only
  // Bytes written after Options::heartbeat_interval without a write (already framed for the
  // stream: sent verbatim). Must outlive the stream (a literal). Empty: no heartbeat.
  std::string_view heartbeat;
  // Called on the shard thread (see StreamEvent); not called from inside write() or end().
  StreamCallback on_event;
};

// A streaming response in progress: a value handle (connection + serial), cheap to copy. On a
// stream that has ended, or whose connection closed, every call does nothing and returns false.
// Shard thread only.
class Stream {
 public:
  Stream() = default;
  bool open() const;
  // One piece of the body (one chunk with kChunked). False when the stream is not open or the
  // connection is closing (slow reader: see Config::max_write_queue).
  bool write(std::string_view data);
  // Ends the body: the last chunk (kChunked) and the connection carries on with the next
  // request, or closes (kUntilClose). Calls on_event(kEnded) from the loop.
  void end();
  // Whether writes are below the high watermark (see Connection::writable()).
  bool writable() const;
  Connection connection() const { return connection_; }

 private:
  friend struct detail::Access;
  Stream(Server* server, Connection c, uint32_t serial)
      : server_(server), connection_(c), serial_(serial) {}
  Server* server_ = nullptr;
  Connection connection_;
  uint32_t serial_ = 0;
};

// The response writer given with each request. Set status and headers, then finish it with
// send() or start a stream with stream(). If the handler returns without either, the response
// is sent as set so far with an empty body. Framing headers (Content-Length, Transfer-Encoding,
// Connection) and Date and Server are the server's: do not add them.
class Response {
 public:
  Response(const Response&) = delete;
  Response& operator=(const Response&) = delete;

  Response& status(int code);  // default 200; the reason phrase is the standard one
  Response& header(std::string_view name, std::string_view value);
  Response& content_type(std::string_view type) { return header("Content-Type", type); }
  // Ask for the connection to close after this response.
  Response& close();
  // Finishes the response with this body (HEAD: the head only, Content-Length of the body).
  void send(std::string_view body = {});
  void send(int code, std::string_view content_type, std::string_view body);
  // Sends the head now and returns the stream for the body. For HEAD, and statuses without a
  // body, the response ends at once and the returned stream is not open.
  Stream stream(StreamOptions options = {});
  bool finished() const { return finished_; }
  int status_code() const { return status_; }
  Connection connection() const { return connection_; }

 private:
  friend struct detail::Access;
  Response(Server& server, Connection c) : server_(&server), connection_(c) {}
  Server* server_;
  Connection connection_;
  std::string* headers_ = nullptr;  // the shard's scratch for header() lines
  int status_ = 200;
  bool finished_ = false;
  bool close_ = false;    // Connection: close after it
  bool head_ = false;     // the request was HEAD
  bool upgrade_ = false;  // answering an upgrade hook (101 allowed, no framing)
  uint8_t minor_ = 1;
};

// The request handler: answer with `response` (now, or later through response.stream()).
using RequestHandler = std::function<void(const Request&, Response&)>;

// What an upgrade hook decides about a request that asks to change protocols.
class Upgrade {
 public:
  // Not ours: the request goes to the request handler as a normal request.
  static Upgrade pass() { return Upgrade(kPass, nullptr); }
  // Refused: the hook has answered through the Response (e.g. 400, 403 for a bad Origin, 426
  // with Sec-WebSocket-Version); the connection stays HTTP (or closes if the response says so).
  static Upgrade refused() { return Upgrade(kRefused, nullptr); }
  // Switch. The hook has set the 101 response through the Response (status 101 is the default
  // here, and Connection: Upgrade is added; the hook adds Upgrade, Sec-WebSocket-Accept, the
  // subprotocol and extensions); the server sends that head and from then on `handler` gets
  // every event of the connection, with no HTTP code in between:
  //  - handler.on_open(connection) right away (inside this receive), then
  //  - handler.on_data(connection, chunk) with any bytes that arrived after the request in the
  //    same receive (a client may send its first frame right behind the handshake), then
  //    every later on_data, on_peer_closed, on_write_watermark, and on_close as the last call.
  // The handler must outlive the runtime's shards. Connection::user() is null when the hook runs;
  // the hook (or on_open) may set it, and it belongs to the new handler from the switch (set it
  // only when returning to()). The connection's spill buffer is empty at the switch.
  static Upgrade to(Handler& handler) { return Upgrade(kSwitch, &handler); }

  enum Kind : uint8_t { kPass, kRefused, kSwitch };
  Kind kind() const { return kind_; }
  Handler* handler() const { return handler_; }

 private:
  Upgrade(Kind kind, Handler* handler) : kind_(kind), handler_(handler) {}
  Kind kind_;
  Handler* handler_;
};

// Called for every complete request with Upgrade and Connection: upgrade (request.upgrade()),
// before the request handler, on the shard thread.
using UpgradeHook = std::function<Upgrade(const Request&, Response&)>;

// The server. Give it to Runtime::listen(). Construct before, destroy after the runtime has
// stopped.
class Server final : public Handler {
 public:
  explicit Server(RequestHandler handler, Options options = {});
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Set before the runtime starts.
  void set_upgrade_hook(UpgradeHook hook);

  const Options& options() const { return options_; }
  // Thread-safe: the sum over shards.
  Stats stats() const;

  // Handler interface (called by the runtime).
  void on_open(Connection c) override;
  void on_data(Connection c, Chunk data) override;
  void on_peer_closed(Connection c) override;
  void on_write_watermark(Connection c, bool above_high) override;
  void on_close(Connection c, CloseReason reason, int error) override;

 private:
  friend struct detail::Access;
  RequestHandler handler_;
  UpgradeHook upgrade_hook_;
  Options options_;
  std::unique_ptr<detail::ServerShards> shards_;
};

// The standard reason phrase ("Not Found"), or "Unknown".
std::string_view reason_phrase(int status);
// Content-Type for a file name's extension (html, js, css, json, txt, png, ...), or
// application/octet-stream.
std::string_view content_type_for(std::string_view file_name);

}  // namespace myriad::http
