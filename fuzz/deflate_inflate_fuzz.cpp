// libFuzzer target: the permessage-deflate inflate path on arbitrary bytes (a hostile client's
// compressed message), and the compress-then-inflate round trip. Checks: no crash, leak or
// overflow; output never grows past the limit by more than the one byte that proves it too big;
// whatever the shared compressor produces inflates back to exactly its input.
//
// Input: byte 0 chooses the size limit, the rest is the message.
#include <myriad/ws_codec.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using myriad::ws::Deflater;
  using myriad::ws::Inflater;
  if (size < 1) return 0;
  static Inflater inflater;  // one per shard in the server: reused across messages here too
  static Deflater deflater;
  static const std::size_t kLimits[4] = {0, 100, 65536, 1 << 20};
  std::size_t limit = kLimits[data[0] & 3];
  std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data + 1), size - 1);

  std::vector<std::byte> out;
  Inflater::Status status = inflater.inflate(input, limit, out);
  if (out.size() > limit + 1) std::abort();
  if (status == Inflater::Status::kOk && out.size() > limit) std::abort();

  std::vector<std::byte> compressed;
  deflater.compress(input, compressed);
  std::vector<std::byte> back;
  if (inflater.inflate(compressed, input.size(), back) != Inflater::Status::kOk) std::abort();
  if (back.size() != input.size() || !std::equal(back.begin(), back.end(), input.begin())) {
    std::abort();
  }
  return 0;
}
