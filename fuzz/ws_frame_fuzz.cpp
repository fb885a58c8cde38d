// libFuzzer target: the WebSocket frame decoder and UTF-8 validation on arbitrary bytes split at
// arbitrary points. Checks, beyond "no crash, no leak, no overflow": the same bytes decoded whole
// and split give the same messages, control frames and close code; every text message that comes
// out complete is valid UTF-8 (by a second, independent walk); no message passes the size limit;
// no control payload passes 125 bytes.
//
// Input: byte 0 chooses the limits (bit 0: deflate negotiated; bits 1-3: the size limit),
// bytes 1-2 seed the split points, the rest is the stream.
#include <myriad/ws_codec.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using namespace myriad::ws;

struct Record final : FrameSink {
  explicit Record(FrameDecoder& d, uint64_t limit) : decoder(d), limit(limit) {}
  bool on_data(std::span<const std::byte> piece, bool end) override {
    current.append(reinterpret_cast<const char*>(piece.data()), piece.size());
    if (current.size() > limit) std::abort();
    if (end) {
      bool text = decoder.message_type() == Opcode::kText;
      if (text && !decoder.message_compressed() && !valid_utf8(current)) std::abort();
      log += text ? 'T' : 'B';
      log += decoder.message_compressed() ? 'z' : '-';
      log += std::to_string(current.size()) + ":" + current + "|";
      current.clear();
    }
    return true;
  }
  bool on_control(Opcode op, std::span<const std::byte> payload) override {
    if (payload.size() > kMaxControlPayload) std::abort();
    log += 'C' + std::to_string(static_cast<int>(op)) + ":" +
           std::string(reinterpret_cast<const char*>(payload.data()), payload.size()) + "|";
    if (op == Opcode::kClose) (void)parse_close_payload(payload);
    return true;
  }
  FrameDecoder& decoder;
  uint64_t limit;
  std::string current;
  std::string log;
};

std::string run(const uint8_t* data, size_t size, const FrameDecoder::Limits& limits, uint32_t seed,
                bool split) {
  std::vector<std::byte> buf(reinterpret_cast<const std::byte*>(data),
                             reinterpret_cast<const std::byte*>(data) + size);
  FrameDecoder decoder;
  Record sink(decoder, limits.max_message_size);
  std::size_t pos = 0;
  while (pos < buf.size()) {
    std::size_t take = buf.size() - pos;
    if (split) {
      seed = seed * 1103515245u + 12345u;
      take = std::min<std::size_t>(take, 1 + (seed >> 16) % 23);
    }
    auto result = decoder.decode(std::span<std::byte>(buf.data() + pos, take), limits, sink);
    if (result.error != 0) {
      if (result.consumed > take) std::abort();
      return sink.log + "E" + std::to_string(result.error);
    }
    if (result.consumed != take) std::abort();
    pos += take;
  }
  return sink.log + (decoder.idle() ? "I" : "P");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  FrameDecoder::Limits limits;
  limits.deflate = (data[0] & 1) != 0;
  static const uint64_t kLimits[8] = {0, 1, 125, 126, 1000, 65536, 1 << 20, UINT64_MAX};
  limits.max_message_size = kLimits[(data[0] >> 1) & 7];
  uint32_t seed = data[1] | (uint32_t{data[2]} << 8);
  std::string whole = run(data + 3, size - 3, limits, seed, false);
  std::string split = run(data + 3, size - 3, limits, seed, true);
  if (whole != split) std::abort();
  return 0;
}
