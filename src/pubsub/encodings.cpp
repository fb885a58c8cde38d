// The built-in encodings for plain TCP subscribers: a binary length-prefixed frame and a text
// line with a length. Each encodes straight into the shared buffer (one allocation, no copy
// beyond the payload's own).
#include <myriad/pubsub.hpp>

#include <charconv>
#include <cstring>

namespace myriad {

namespace {

constexpr uint8_t kFrameMessage = 1;
constexpr uint8_t kFrameGoodbye = 2;

std::byte* put_u32(std::byte* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) *out++ = static_cast<std::byte>(v >> (8 * i));
  return out;
}
std::byte* put_u64(std::byte* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) *out++ = static_cast<std::byte>(v >> (8 * i));
  return out;
}
std::byte* put(std::byte* out, std::string_view s) {
  if (s.empty()) return out;  // memcpy wants a non-null source even for nothing
  std::memcpy(out, s.data(), s.size());
  return out + s.size();
}
std::byte* put(std::byte* out, std::span<const std::byte> s) {
  if (s.empty()) return out;
  std::memcpy(out, s.data(), s.size());
  return out + s.size();
}

SharedBuffer frame(uint8_t kind, std::string_view topic, uint64_t offset,
                   std::span<const std::byte> payload) {
  std::size_t rest = 1 + 1 + topic.size() + 8 + payload.size();
  return SharedBuffer::make(4 + rest, [&](std::span<std::byte> out) {
    std::byte* p = put_u32(out.data(), static_cast<uint32_t>(rest));
    *p++ = static_cast<std::byte>(kind);
    *p++ = static_cast<std::byte>(topic.size());
    p = put(p, topic);
    p = put_u64(p, offset);
    put(p, payload);
  });
}

}  // namespace

Encoding frame_encoding() {
  Encoding e;
  e.name = "frame";
  e.encode = [](const Message& m) {
    return frame(kFrameMessage, m.topic, m.offset, m.payload.bytes());
  };
  e.goodbye = [](std::string_view reason) {
    return frame(kFrameGoodbye, {}, 0, std::as_bytes(std::span(reason.data(), reason.size())));
  };
  return e;
}

Encoding line_encoding() {
  Encoding e;
  e.name = "line";
  e.encode = [](const Message& m) {
    char numbers[48];
    char* end = std::to_chars(numbers, numbers + 20, m.offset).ptr;
    *end++ = ' ';
    end = std::to_chars(end, numbers + sizeof(numbers), m.payload.size()).ptr;
    std::string_view nums(numbers, static_cast<std::size_t>(end - numbers));
    std::size_t size = 4 + m.topic.size() + 1 + nums.size() + 1 + m.payload.size() + 1;
    return SharedBuffer::make(size, [&](std::span<std::byte> out) {
      std::byte* p = put(out.data(), "MSG ");
      p = put(p, m.topic);
      *p++ = std::byte{' '};
      p = put(p, nums);
      *p++ = std::byte{'\n'};
      p = put(p, m.payload.bytes());
      *p = std::byte{'\n'};
    });
  };
  e.goodbye = [](std::string_view reason) {
    return SharedBuffer::make(4 + reason.size() + 1, [&](std::span<std::byte> out) {
      std::byte* p = put(out.data(), "ERR ");
      p = put(p, reason);
      *p = std::byte{'\n'};
    });
  };
  return e;
}

}  // namespace myriad
