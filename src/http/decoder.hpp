// Internal. The HTTP/1.1 request decoder: llhttp (strict mode) plus our own limits and checks,
// fed one receive at a time. The server and the fuzzer both drive it through this interface.
//
// How it keeps memory small:
//  - A request that is complete in the bytes given is parsed in place: the views handed to the
//    sink point into those bytes, nothing is copied (a chunked body is the exception: its pieces
//    are joined in a scratch string).
//  - A request that is not complete leaves its bytes in the Store's spill and a Partial (the
//    llhttp state and our counters) behind. The next feed() goes on from there, parsing only
//    the new bytes; when the request completes, its bytes are re-parsed once from the spill to
//    build the views. Nothing else lives between receives.
//  - Bytes after a request that the sink stops at (an upgrade, a streaming response) are never
//    copied into the spill: they stay in the input, at Result::consumed.
//
// Determinism: the outcome depends only on the byte stream, not on how it is split into
// receives (the fuzzer checks this). llhttp is given at most max_header_bytes of a request
// until its head is complete, and at most max_header_bytes + max_body_bytes of it in all
// (chunk framing counts), so a request that is too long is 431 or 413 at the same byte
// whatever the splits; every check that looks across pieces works on request offsets.
//
// One Decoder per shard (it has scratch space); not thread-safe.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <myriad/http.hpp>

namespace myriad::http::detail {

// The parse state of a request that needs more bytes. Heap, only while the request is incomplete.
struct Partial {
  llhttp_t parser;
  uint64_t body_bytes = 0;    // decoded body so far
  uint32_t bytes = 0;         // bytes of the request given to the parser so far
  uint32_t header_count = 0;  // header fields so far
  uint32_t value_end = 0;     // where the header value being read ends (obs-fold check)
  uint32_t name_bytes = 0;    // of the header name being read (an empty one is refused)
  bool in_value = false;
  bool headers_complete = false;
  bool continue_checked = false;  // Expect: 100-continue considered
  // For the owner (the server's 408 timer); the decoder does not touch them.
  uint64_t timer = 0;
  void* owner = nullptr;
};

// Where a connection keeps what outlives a receive: the spill bytes and the Partial.
class Store {
 public:
  virtual std::span<const std::byte> spill() const = 0;
  // False when the spill would pass its cap (the caller's connection is then closing).
  virtual bool spill_append(std::span<const std::byte> data) = 0;
  virtual void spill_consume(std::size_t n) = 0;
  virtual Partial* partial() const = 0;
  // Called with the new Partial when a request becomes partial, and with nullptr just before
  // the decoder deletes it.
  virtual void set_partial(Partial* partial) = 0;

 protected:
  ~Store() = default;
};

// A complete request, as the sink sees it. Views valid during Sink::on_request only.
struct Message {
  std::string_view method;
  std::string_view target;
  std::string_view body;
  std::span<const Header> headers;
  uint8_t minor = 1;
  bool keep_alive = true;
  bool upgrade = false;  // Upgrade + Connection: upgrade
};

class Sink {
 public:
  // A complete request. True: go on with the bytes that follow; false: stop (they are the
  // caller's, from Result::consumed).
  virtual bool on_request(const Message& message) = 0;
  // The head of a request with Expect: 100-continue is in and its body is still to come.
  virtual void on_continue() = 0;

 protected:
  ~Sink() = default;
};

struct Result {
  enum Kind : uint8_t {
    kNeedMore,  // every byte used; a request may be partial (Store::partial())
    kStopped,   // the sink stopped; `consumed` bytes of the input were used
    kError,     // answer `status` and close; the Partial and the spill are gone
    kOverflow,  // the Store refused to spill (its cap): the connection is closing
  };
  Kind kind = kNeedMore;
  int status = 0;
  std::size_t consumed = 0;
  const char* reason = nullptr;  // kError: why, for tests and logs
};

class Decoder {
 public:
  explicit Decoder(const Limits& limits);
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  Result feed(Store& store, std::span<const std::byte> data, Sink& sink);
  // Frees the connection's Partial, if any (the connection is closing).
  static void discard(Store& store);

  const Limits& limits() const { return limits_; }

  struct Context;  // the callbacks' view of one llhttp_execute (decoder.cpp)

 private:
  enum class Step : uint8_t { kComplete, kNeedMore, kError };
  // Runs the parser over [p, end) for one message, under the head cap. Sets ctx's outcome.
  Step run(Context& ctx, llhttp_t& parser, const char* p, const char* end, const char*& stop);
  // Parses a complete message in `bytes` again, collecting its views, and dispatches it.
  bool collect_and_dispatch(std::string_view bytes, Sink& sink, Result& result);
  bool dispatch(Context& ctx, const char* base, llhttp_t& parser, Sink& sink, Result& result);
  // Whether the head in `bytes` (a complete head, possibly more) asks for 100-continue.
  bool head_expects_continue(std::string_view bytes);
  Result fail(Store& store, const Context& ctx);

  Limits limits_;
  std::size_t max_body_;
  std::size_t max_request_;  // head + body + chunk framing
  llhttp_settings_t settings_;
  // Scratch, reused by every request on this shard.
  struct Span {
    uint32_t offset = 0;
    uint32_t length = 0;
  };
  struct FieldSpans {
    Span name, value;
  };
  std::vector<FieldSpans> fields_;
  std::vector<Header> headers_;
  std::string body_;
  friend struct Context;
  friend struct Callbacks;
};

// Maps llhttp's error to the status we answer (400, or 505 for a version llhttp refuses).
int status_for(llhttp_errno_t err, const char* reason);

}  // namespace myriad::http::detail
