// Public. The WebSocket wire format (RFC 6455) and permessage-deflate (RFC 7692) as pure codecs:
// no connection, no allocation on the hot path, usable from any thread on values the caller
// owns. The server in <myriad/websocket.hpp> is built on these; tests, fuzz targets and clients
// may use them directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace myriad::ws {

enum class Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// The close codes of RFC 6455 section 7.4.1 that this library sends.
namespace close_code {
constexpr uint16_t kNormal = 1000;
constexpr uint16_t kGoingAway = 1001;
constexpr uint16_t kProtocolError = 1002;
constexpr uint16_t kUnsupportedData = 1003;
constexpr uint16_t kNoStatus = 1005;  // reported locally for a close frame without a code
constexpr uint16_t kAbnormal = 1006;  // reported locally: the TCP connection ended without one
constexpr uint16_t kInvalidPayload = 1007;
constexpr uint16_t kPolicyViolation = 1008;
constexpr uint16_t kMessageTooBig = 1009;
constexpr uint16_t kMandatoryExtension = 1010;
constexpr uint16_t kInternalError = 1011;
constexpr uint16_t kServiceRestart = 1012;
constexpr uint16_t kTryAgainLater = 1013;
}  // namespace close_code

// Whether a code may appear in a close frame on the wire (RFC 6455 7.4 and the IANA registry):
// 1000-1003, 1007-1014 and 3000-4999. 1012 (service restart), 1013 (try again later) and 1014
// (bad gateway) were registered after RFC 6455 (old Autobahn suites still call them invalid);
// servers send 1012 when they drain, so a client's echo of it must be accepted. 1004-1006, 1015
// and everything else are protocol errors.
bool valid_close_code(uint16_t code);

// ---- UTF-8 (RFC 3629) ----

// An incremental validator: feed a message's bytes in any number of pieces, split anywhere.
// feed() fails at the first byte that no valid UTF-8 text can contain at that point (an
// overlong form, a surrogate, a code point above U+10FFFF, a stray continuation byte), so a
// bad text message is rejected as soon as the bad byte arrives, not at its end. complete()
// says whether what was fed ends on a character boundary. One byte of state; a value type.
class Utf8Validator {
 public:
  Utf8Validator() = default;
  explicit Utf8Validator(uint8_t state) : state_(state) {}

  // False once the input is invalid (and from then on).
  bool feed(std::span<const std::byte> data);
  bool feed(std::string_view data) {
    return feed(std::as_bytes(std::span(data.data(), data.size())));
  }
  bool complete() const { return state_ == 0; }
  bool failed() const { return state_ == kReject; }
  uint8_t state() const { return state_; }
  void reset() { state_ = 0; }

  static constexpr uint8_t kReject = 8;

 private:
  uint8_t state_ = 0;
};

bool valid_utf8(std::span<const std::byte> data);
inline bool valid_utf8(std::string_view data) {
  return valid_utf8(std::as_bytes(std::span(data.data(), data.size())));
}

// ---- Frames ----

// The largest frame header: 2 bytes, a 64-bit length, a masking key.
constexpr std::size_t kMaxHeaderSize = 14;
constexpr std::size_t kMaxControlPayload = 125;

// Writes the header of an unmasked (server-to-client) frame into out and returns its size
// (2, 4 or 10 bytes). rsv1 marks a compressed message (permessage-deflate, first frame only).
std::size_t encode_header(std::byte* out, Opcode opcode, uint64_t payload_size, bool fin = true,
                          bool rsv1 = false);
// A complete unmasked frame: header + payload, appended to out.
void append_frame(std::vector<std::byte>& out, Opcode opcode, std::span<const std::byte> payload,
                  bool fin = true, bool rsv1 = false);
// The payload of a close frame: the code in network order, then the reason.
std::vector<std::byte> close_payload(uint16_t code, std::string_view reason);

// XORs data with the 4-byte masking key, starting at key byte `phase` (offset % 4 within the
// frame's payload). Masking and unmasking are the same operation.
void mask(std::span<std::byte> data, uint32_t key, unsigned phase);

// What a close frame's payload says, checked against RFC 6455 5.5.1 and 7.4.
struct CloseInfo {
  uint16_t code = close_code::kNoStatus;  // kNoStatus when the payload was empty
  std::string_view reason;                // points into the payload
  uint16_t error = 0;                     // 0, or the code to fail the connection with
};
CloseInfo parse_close_payload(std::span<const std::byte> payload);

// An incremental parser of client-to-server frames, for one connection.
//
// decode() takes bytes as they arrive, in pieces split anywhere, and unmasks payloads in place
// (so the input is mutable), then reports what it found to a FrameSink:
//   on_data(piece, message_end)
//       a piece of the current data message's payload (unmasked). Pieces come in order; a
//       message whose frames all lie in one decode() call and that is not fragmented arrives
//       as one piece with message_end set, pointing into the caller's input (no copy).
//       message_type() and message_compressed() describe the message.
//   on_control(opcode, payload)
//       a whole ping, pong or close frame (payload at most 125 bytes; a control frame split
//       across calls is gathered in the decoder's own 125-byte buffer).
// A sink returns false to stop decoding (decode() then returns at once).
//
// The protocol's rules are checked as the bytes arrive, and the first broken one ends decoding
// with a close code: 1002 for an unmasked frame, reserved bits (RSV1 is allowed on the first
// frame of a data message only when permessage-deflate was negotiated), an unknown opcode, a
// fragmented or oversized control frame, a continuation with no message or a new message
// inside a fragmented one, a 64-bit length with its top bit set; 1009 for a message whose
// payload passes max_message_size (checked on each frame header, before its payload comes);
// 1007 for text that is not UTF-8 (checked on each piece as it arrives, uncompressed text
// only: compressed text is the inflater's caller's to check).
//
// State: about 180 bytes while a frame or a fragmented message is in progress; idle() says
// when there is nothing worth keeping (the next byte starts a new message), so a connection
// need keep no decoder between messages. Not thread-safe; a plain value, copyable.
class FrameDecoder;

class FrameSink {
 public:
  virtual bool on_data(std::span<const std::byte> piece, bool message_end) = 0;
  virtual bool on_control(Opcode opcode, std::span<const std::byte> payload) = 0;

 protected:
  ~FrameSink() = default;
};

class FrameDecoder {
 public:
  struct Limits {
    uint64_t max_message_size = uint64_t{1} << 20;
    bool deflate = false;  // permessage-deflate negotiated: RSV1 means compressed
  };
  struct Result {
    std::size_t consumed = 0;   // bytes of the input used (all of it unless stopped or failed)
    uint16_t error = 0;         // a close code when the input broke the protocol, else 0
    const char* why = nullptr;  // a short reason for the close frame and the logs
    bool stopped = false;       // a sink asked to stop
  };

  FrameDecoder() = default;

  Result decode(std::span<std::byte> data, const Limits& limits, FrameSink& sink);

  // Nothing in progress: no partial header, no partial frame, no fragmented message.
  bool idle() const { return stage_ == Stage::kHeader && header_have_ == 0 && message_ == 0; }
  // The data message in progress (kText or kBinary), valid in on_data.
  Opcode message_type() const { return static_cast<Opcode>(message_); }
  bool message_compressed() const { return compressed_; }
  // Payload bytes of the current data message received so far.
  uint64_t message_size() const { return message_size_; }

 private:
  enum class Stage : uint8_t { kHeader, kPayload };

  // Parses header_[0..header_have_); 0 when more bytes are needed, else the header size.
  std::size_t header_size() const;
  // Validates a complete header and moves to kPayload. Returns a close code or 0.
  uint16_t begin_frame(const Limits& limits, const char** why);

  uint64_t remaining_ = 0;     // payload bytes left in the current frame
  uint64_t message_size_ = 0;  // payload bytes of the current data message so far
  uint32_t mask_key_ = 0;
  uint8_t phase_ = 0;  // payload offset % 4, for the masking key
  Stage stage_ = Stage::kHeader;
  uint8_t header_have_ = 0;
  uint8_t opcode_ = 0;   // of the current frame
  bool fin_ = false;     // of the current frame
  uint8_t message_ = 0;  // opcode of the data message in progress, 0 when none
  bool compressed_ = false;
  Utf8Validator utf8_;
  uint8_t control_have_ = 0;
  std::byte header_[kMaxHeaderSize]{};
  std::byte control_[kMaxControlPayload]{};
};

// ---- The opening handshake (RFC 6455 4.2) ----

// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: base64(SHA-1(key + the RFC's GUID)).
std::string accept_key(std::string_view client_key);
// Whether a Sec-WebSocket-Key is the base64 encoding of 16 bytes.
bool valid_client_key(std::string_view key);
// Whether a comma-separated header value holds token (case-insensitive), as Connection: keep-
// alive, Upgrade and Upgrade: websocket do.
bool header_has_token(std::string_view value, std::string_view token);

// permessage-deflate negotiation (RFC 7692 7.1). This server keeps no compression state per
// connection, so it accepts an offer only on these terms: it answers server_no_context_takeover
// (allowed whether or not offered, 7.1.1.1) and client_no_context_takeover (allowed whether or
// not offered, 7.1.1.2; the client must then compress each message on its own, so one inflater
// per shard, reset per message, can read every connection's messages). It declines an offer
// whose server_max_window_bits is below 15 (its shared compressor uses a 32 KiB window) and one
// with an unknown or malformed parameter, and takes the first acceptable offer.
// client_max_window_bits is accepted and left unanswered: the inflater reads any window size.
struct DeflateOffer {
  bool accepted = false;
  std::string response;  // the Sec-WebSocket-Extensions value to answer with, when accepted
};
// extension_headers: every Sec-WebSocket-Extensions value of the request, in order.
DeflateOffer negotiate_deflate(std::span<const std::string_view> extension_headers);

// ---- permessage-deflate (RFC 7692 7.2) ----

// One compressor, meant to be one per shard: compresses whole messages, each on its own (no
// context takeover), into what goes on the wire (the deflate stream, less its 00 00 ff ff tail).
// About 256 KiB of zlib state. Not thread-safe.
class Deflater {
 public:
  explicit Deflater(int level = 6);
  ~Deflater();
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;
  // Appends the compressed form of message to out.
  void compress(std::span<const std::byte> message, std::vector<std::byte>& out);

 private:
  void* stream_;  // z_stream
};

// One decompressor, meant to be one per shard: inflates whole messages, each on its own (the
// client was told client_no_context_takeover). About 40 KiB of zlib state. Not thread-safe.
class Inflater {
 public:
  enum class Status : uint8_t { kOk, kTooBig, kCorrupt };
  Inflater();
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  // Replaces out's contents with the inflated message. kTooBig as soon as it would pass
  // max_size (out is then incomplete); kCorrupt when the bytes are not a deflate stream.
  Status inflate(std::span<const std::byte> compressed, std::size_t max_size,
                 std::vector<std::byte>& out);

 private:
  void* stream_;  // z_stream
};

}  // namespace myriad::ws
