// Public. Server-Sent Events (the WHATWG HTML "text/event-stream" format) on an http::Server
// streaming response: an encoder that turns one event into bytes once, and a stream that sends
// events, comments and heartbeats.
//
// The encoder is separate from sending, so one encoded event can be written to any number of
// streams unchanged: event streams are framed until close (no chunk framing per connection), so
// the bytes on the wire are exactly encode()'s. encode() writes into a std::string today;
// encoded_size() + encode_into() fill a buffer the caller owns (e.g. a shared, reference-counted
// one for fan-out).
//
// Threads: encode*() are pure functions, callable from any thread. An sse::Stream is a value
// handle like http::Stream: use it on its connection's shard thread (post there from elsewhere).
// Heartbeats are driven by one timer per shard (http::Options::heartbeat_interval), not by a
// timer per stream; a stream holds no state of its own beyond the http streaming state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include <myriad/http.hpp>

namespace myriad::sse {

struct Event {
  // The payload: one "data:" line per line, split at CRLF, LF or CR (the client joins them with
  // LF). Empty data still sends one empty "data:" line, so the client dispatches the event.
  std::string_view data;
  // "event:" (the client's event type); empty: none ("message").
  std::string_view event;
  // "id:" (the client's lastEventId, sent back as Last-Event-ID on reconnect); empty: none.
  std::string_view id;
  // "retry:" in milliseconds (the client's reconnection delay); negative: none.
  int64_t retry_ms = -1;
};

// Appends the encoded event to out: retry, id, event, then data lines, then a blank line. CR,
// LF (and, in id, NUL) are removed from id and event, where they would end the field or make
// the client ignore it.
void encode(const Event& event, std::string& out);
std::string encode(const Event& event);
// Exactly what encode() would append.
std::size_t encoded_size(const Event& event);
// Writes encode()'s bytes into dst (at least encoded_size() bytes); returns the count.
std::size_t encode_into(const Event& event, std::span<char> dst);
// A comment (": text\n\n", text's line breaks turned into more comment lines): clients ignore
// it; proxies and clients see the stream is alive.
void encode_comment(std::string_view text, std::string& out);

// What a heartbeat writes: an empty comment.
inline constexpr std::string_view kHeartbeat = ":\n\n";

// The Last-Event-ID the client resumes from (the request header), or empty.
std::string_view last_event_id(const http::Request& request);

class Stream;
using StreamCallback = std::function<void(Stream&, http::StreamEvent)>;

struct StreamOptions {
  // Sent first as "retry:" when >= 0.
  int64_t retry_ms = -1;
  // A comment line after each http::Options::heartbeat_interval without a write.
  bool heartbeat = true;
  // kWritable (drained below the low watermark) and kEnded (closed: the last call).
  StreamCallback on_event;
};

// An event stream in progress. A value handle; every call on a stream that has ended does
// nothing and returns false. Shard thread only.
class Stream {
 public:
  Stream() = default;
  explicit Stream(http::Stream stream) : stream_(stream) {}

  bool open() const { return stream_.open(); }
  // Encodes and sends one event.
  bool send(const Event& event);
  // Sends bytes from encode() (or encode_comment()) as they are: the fan-out form.
  bool send_encoded(std::string_view bytes) { return stream_.write(bytes); }
  bool comment(std::string_view text);
  // Ends the stream: the connection closes after its queued output.
  void close() { stream_.end(); }
  bool writable() const { return stream_.writable(); }
  Connection connection() const { return stream_.connection(); }
  const http::Stream& http_stream() const { return stream_; }

 private:
  http::Stream stream_;
};

// Answers `response` with 200, Content-Type: text/event-stream, Cache-Control: no-cache and a
// body framed until close, and returns the stream (not open for HEAD). Headers the handler set
// on the response before (e.g. Access-Control-Allow-Origin) are kept.
Stream start(http::Response& response, StreamOptions options = {});

}  // namespace myriad::sse
