// The WebSocket wire format: UTF-8 validation, frame headers, masking, close payloads and the
// incremental frame decoder (RFC 6455 section 5). Pure functions on caller-owned bytes.
#include <myriad/ws_codec.hpp>

#include <algorithm>
#include <array>
#include <cstring>

namespace myriad::ws {

bool valid_close_code(uint16_t code) {
  if (code >= 1000 && code <= 1003) return true;
  if (code >= 1007 && code <= 1014) return true;
  return code >= 3000 && code <= 4999;
}

// ---- UTF-8 ----
//
// A DFA over byte classes, from the well-formed byte sequences of RFC 3629 section 4 (the
// Unicode standard's table 3-7):
//   00..7F
//   C2..DF 80..BF
//   E0 A0..BF 80..BF | E1..EC 80..BF 80..BF | ED 80..9F 80..BF | EE..EF 80..BF 80..BF
//   F0 90..BF 80..BF 80..BF | F1..F3 80..BF 80..BF 80..BF | F4 80..8F 80..BF 80..BF
// Anything else (C0, C1, F5..FF, a stray 80..BF, an overlong E0 80..9F or F0 80..8F, a surrogate
// ED A0..BF, above U+10FFFF via F4 90..BF) leads to the reject state at once.
namespace {

// Byte classes.
enum : uint8_t {
  kAscii,   // 00..7F
  kCont8,   // 80..8F
  kCont9,   // 90..9F
  kContA,   // A0..BF
  kBad,     // C0, C1, F5..FF
  kLead2,   // C2..DF
  kLeadE0,  // E0
  kLead3,   // E1..EC, EE, EF
  kLeadED,  // ED
  kLeadF0,  // F0
  kLead4,   // F1..F3
  kLeadF4,  // F4
  kClasses
};

// States: 0 accept; 1, 2, 3: that many continuation bytes (80..BF) to come; 4: after E0 (A0..BF
// next); 5: after ED (80..9F next); 6: after F0 (90..BF next); 7: after F4 (80..8F next);
// 8: reject.
constexpr uint8_t R = Utf8Validator::kReject;

constexpr std::array<uint8_t, 256> make_classes() {
  std::array<uint8_t, 256> c{};
  for (int b = 0; b < 256; ++b) {
    uint8_t k = kBad;
    if (b <= 0x7F)
      k = kAscii;
    else if (b <= 0x8F)
      k = kCont8;
    else if (b <= 0x9F)
      k = kCont9;
    else if (b <= 0xBF)
      k = kContA;
    else if (b <= 0xC1)
      k = kBad;
    else if (b <= 0xDF)
      k = kLead2;
    else if (b == 0xE0)
      k = kLeadE0;
    else if (b == 0xED)
      k = kLeadED;
    else if (b <= 0xEF)
      k = kLead3;
    else if (b == 0xF0)
      k = kLeadF0;
    else if (b <= 0xF3)
      k = kLead4;
    else if (b == 0xF4)
      k = kLeadF4;
    c[b] = k;
  }
  return c;
}
constexpr std::array<uint8_t, 256> kClass = make_classes();

// kNext[state][class]
constexpr uint8_t kNext[9][kClasses] = {
    //        ascii 80-8F 90-9F A0-BF bad C2-DF E0 E1-EF ED F0 F1-F3 F4
    /* 0 */ {0, R, R, R, R, 1, 4, 2, 5, 6, 3, 7},
    /* 1 */ {R, 0, 0, 0, R, R, R, R, R, R, R, R},
    /* 2 */ {R, 1, 1, 1, R, R, R, R, R, R, R, R},
    /* 3 */ {R, 2, 2, 2, R, R, R, R, R, R, R, R},
    /* 4 */ {R, R, R, 1, R, R, R, R, R, R, R, R},
    /* 5 */ {R, 1, 1, R, R, R, R, R, R, R, R, R},
    /* 6 */ {R, R, 2, 2, R, R, R, R, R, R, R, R},
    /* 7 */ {R, 2, R, R, R, R, R, R, R, R, R, R},
    /* 8 */ {R, R, R, R, R, R, R, R, R, R, R, R},
};

}  // namespace

bool Utf8Validator::feed(std::span<const std::byte> data) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  const auto* end = p + data.size();
  uint8_t state = state_;
  while (p < end) {
    if (state == 0) {
      // Between characters: skip ASCII eight bytes at a time.
      while (end - p >= 8) {
        uint64_t word;
        std::memcpy(&word, p, 8);
        if ((word & 0x8080808080808080ull) != 0) break;
        p += 8;
      }
      if (p == end) break;
    }
    state = kNext[state][kClass[*p++]];
    if (state == R) break;
  }
  state_ = state;
  return state != R;
}

bool valid_utf8(std::span<const std::byte> data) {
  Utf8Validator v;
  return v.feed(data) && v.complete();
}

// ---- Frames ----

std::size_t encode_header(std::byte* out, Opcode opcode, uint64_t payload_size, bool fin,
                          bool rsv1) {
  out[0] =
      static_cast<std::byte>((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | static_cast<uint8_t>(opcode));
  if (payload_size < 126) {
    out[1] = static_cast<std::byte>(payload_size);
    return 2;
  }
  if (payload_size <= 0xFFFF) {
    out[1] = std::byte{126};
    out[2] = static_cast<std::byte>(payload_size >> 8);
    out[3] = static_cast<std::byte>(payload_size);
    return 4;
  }
  out[1] = std::byte{127};
  for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<std::byte>(payload_size >> (56 - 8 * i));
  return 10;
}

void append_frame(std::vector<std::byte>& out, Opcode opcode, std::span<const std::byte> payload,
                  bool fin, bool rsv1) {
  std::byte header[kMaxHeaderSize];
  std::size_t n = encode_header(header, opcode, payload.size(), fin, rsv1);
  out.insert(out.end(), header, header + n);
  out.insert(out.end(), payload.begin(), payload.end());
}

std::vector<std::byte> close_payload(uint16_t code, std::string_view reason) {
  std::vector<std::byte> out;
  if (code == close_code::kNoStatus) return out;  // an empty close frame says "no code"
  reason = reason.substr(0, kMaxControlPayload - 2);
  out.reserve(2 + reason.size());
  out.push_back(static_cast<std::byte>(code >> 8));
  out.push_back(static_cast<std::byte>(code));
  for (char c : reason) out.push_back(static_cast<std::byte>(c));
  return out;
}

void mask(std::span<std::byte> data, uint32_t key, unsigned phase) {
  unsigned char k[4];
  std::memcpy(k, &key, 4);
  // The key as it lines up with data[0], repeated to eight bytes.
  unsigned char pattern[8];
  for (unsigned i = 0; i < 8; ++i) pattern[i] = k[(phase + i) & 3];
  uint64_t word_key;
  std::memcpy(&word_key, pattern, 8);
  auto* p = reinterpret_cast<unsigned char*>(data.data());
  std::size_t n = data.size();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    std::memcpy(&word, p + i, 8);
    word ^= word_key;
    std::memcpy(p + i, &word, 8);
  }
  for (; i < n; ++i) p[i] ^= pattern[i & 7];
}

CloseInfo parse_close_payload(std::span<const std::byte> payload) {
  CloseInfo info;
  if (payload.empty()) return info;
  if (payload.size() == 1 || payload.size() > kMaxControlPayload) {
    info.error = close_code::kProtocolError;
    return info;
  }
  info.code = static_cast<uint16_t>((std::to_integer<uint16_t>(payload[0]) << 8) |
                                    std::to_integer<uint16_t>(payload[1]));
  auto reason = payload.subspan(2);
  info.reason = std::string_view(reinterpret_cast<const char*>(reason.data()), reason.size());
  if (!valid_close_code(info.code)) {
    info.error = close_code::kProtocolError;
  } else if (!valid_utf8(reason)) {
    info.error = close_code::kInvalidPayload;
  }
  return info;
}

// ---- The decoder ----

namespace {
constexpr uint8_t kFin = 0x80, kRsv1 = 0x40, kRsv23 = 0x30, kMasked = 0x80;

bool is_control(uint8_t opcode) {
  return (opcode & 0x8) != 0;
}
bool known_opcode(uint8_t opcode) {
  return opcode <= 0x2 || (opcode >= 0x8 && opcode <= 0xA);
}
}  // namespace

std::size_t FrameDecoder::header_size() const {
  if (header_have_ < 2) return 0;
  uint8_t len7 = std::to_integer<uint8_t>(header_[1]) & 0x7F;
  std::size_t size = 2 + ((std::to_integer<uint8_t>(header_[1]) & kMasked) ? 4 : 0);
  if (len7 == 126) size += 2;
  if (len7 == 127) size += 8;
  return size;
}

uint16_t FrameDecoder::begin_frame(const Limits& limits, const char** why) {
  uint8_t b0 = std::to_integer<uint8_t>(header_[0]);
  uint8_t b1 = std::to_integer<uint8_t>(header_[1]);
  uint8_t len7 = b1 & 0x7F;
  uint64_t length = len7;
  std::size_t at = 2;
  if (len7 == 126) {
    length = (std::to_integer<uint64_t>(header_[2]) << 8) | std::to_integer<uint64_t>(header_[3]);
    at = 4;
  } else if (len7 == 127) {
    length = 0;
    for (int i = 0; i < 8; ++i) length = (length << 8) | std::to_integer<uint64_t>(header_[2 + i]);
    at = 10;
    if (length >> 63) {
      *why = "64-bit length with the top bit set";
      return close_code::kProtocolError;
    }
  }
  std::memcpy(&mask_key_, header_ + at, 4);
  opcode_ = b0 & 0x0F;
  fin_ = (b0 & kFin) != 0;
  remaining_ = length;
  phase_ = 0;
  stage_ = Stage::kPayload;
  header_have_ = 0;
  if (is_control(opcode_)) {
    control_have_ = 0;
    return 0;
  }
  if (opcode_ != 0) {  // the first frame of a data message
    message_ = opcode_;
    compressed_ = (b0 & kRsv1) != 0;
    utf8_.reset();
    message_size_ = 0;
  }
  if (length > limits.max_message_size - std::min(limits.max_message_size, message_size_)) {
    *why = "message too big";
    return close_code::kMessageTooBig;
  }
  message_size_ += length;
  return 0;
}

FrameDecoder::Result FrameDecoder::decode(std::span<std::byte> data, const Limits& limits,
                                          FrameSink& sink) {
  Result result;
  std::size_t pos = 0;
  const std::size_t n = data.size();
  auto fail = [&](uint16_t code, const char* why) {
    result.consumed = pos;
    result.error = code;
    result.why = why;
    return result;
  };
  for (;;) {
    if (stage_ == Stage::kHeader) {
      if (pos == n) break;
      // Gather the header; the first two bytes say how long it is and most of what is wrong.
      if (header_have_ < 2) {
        std::size_t take = std::min<std::size_t>(2 - header_have_, n - pos);
        std::memcpy(header_ + header_have_, data.data() + pos, take);
        header_have_ = static_cast<uint8_t>(header_have_ + take);
        pos += take;
        if (header_have_ < 2) break;
        uint8_t b0 = std::to_integer<uint8_t>(header_[0]);
        uint8_t b1 = std::to_integer<uint8_t>(header_[1]);
        uint8_t opcode = b0 & 0x0F;
        if (b0 & kRsv23) return fail(close_code::kProtocolError, "reserved bits set");
        if (!known_opcode(opcode)) return fail(close_code::kProtocolError, "unknown opcode");
        if (b0 & kRsv1) {
          if (!limits.deflate) return fail(close_code::kProtocolError, "reserved bit 1 set");
          if (opcode == 0 || is_control(opcode)) {
            return fail(close_code::kProtocolError, "RSV1 on a control or continuation frame");
          }
        }
        if (is_control(opcode)) {
          if (!(b0 & kFin)) return fail(close_code::kProtocolError, "fragmented control frame");
          if ((b1 & 0x7F) > kMaxControlPayload) {
            return fail(close_code::kProtocolError, "control frame over 125 bytes");
          }
        } else if (opcode == 0 && message_ == 0) {
          return fail(close_code::kProtocolError, "continuation without a message");
        } else if (opcode != 0 && message_ != 0) {
          return fail(close_code::kProtocolError, "new message inside a fragmented one");
        }
        if (!(b1 & kMasked)) return fail(close_code::kProtocolError, "unmasked client frame");
      }
      std::size_t size = header_size();
      std::size_t take = std::min<std::size_t>(size - header_have_, n - pos);
      std::memcpy(header_ + header_have_, data.data() + pos, take);
      header_have_ = static_cast<uint8_t>(header_have_ + take);
      pos += take;
      if (header_have_ < size) break;
      const char* why = nullptr;
      if (uint16_t error = begin_frame(limits, &why)) return fail(error, why);
    }

    // The payload, possibly empty.
    std::size_t take = static_cast<std::size_t>(std::min<uint64_t>(remaining_, n - pos));
    std::span<std::byte> piece = data.subspan(pos, take);
    mask(piece, mask_key_, phase_);
    phase_ = static_cast<uint8_t>((phase_ + take) & 3);
    remaining_ -= take;
    pos += take;
    bool frame_end = remaining_ == 0;
    if (is_control(opcode_)) {
      std::memcpy(control_ + control_have_, piece.data(), take);
      control_have_ = static_cast<uint8_t>(control_have_ + take);
      if (!frame_end) break;
      stage_ = Stage::kHeader;
      std::span<const std::byte> payload(control_, control_have_);
      control_have_ = 0;
      if (!sink.on_control(static_cast<Opcode>(opcode_), payload)) {
        result.consumed = pos;
        result.stopped = true;
        return result;
      }
      continue;
    }
    bool message_end = frame_end && fin_;
    if (message_ == static_cast<uint8_t>(Opcode::kText) && !compressed_) {
      if (!utf8_.feed(piece)) return fail(close_code::kInvalidPayload, "invalid UTF-8 text");
      if (message_end && !utf8_.complete()) {
        return fail(close_code::kInvalidPayload, "text ends inside a UTF-8 sequence");
      }
    }
    bool go_on = true;
    if (take != 0 || message_end) go_on = sink.on_data(piece, message_end);
    if (frame_end) {
      stage_ = Stage::kHeader;
      if (message_end) {
        message_ = 0;
        message_size_ = 0;
        compressed_ = false;
        utf8_.reset();
      }
    }
    if (!go_on) {
      result.consumed = pos;
      result.stopped = true;
      return result;
    }
    if (!frame_end) break;
  }
  result.consumed = pos;
  return result;
}

}  // namespace myriad::ws
