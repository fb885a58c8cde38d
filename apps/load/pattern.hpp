// The bytes myriad-load sends: a deterministic stream per connection, so every echoed byte can
// be checked without keeping a copy of what was sent.
//
// Byte k of connection c's stream is block[(offset(c) + k) mod P], where block is random and P
// is prime (65521): a dropped, duplicated, reordered or corrupted range shifts or changes what
// arrives and no longer matches, unless it is a whole multiple of P bytes, which the byte
// counts (sent = echoed) catch instead.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace myriad::load {

class Pattern {
 public:
  static constexpr std::size_t kPeriod = 65521;

  explicit Pattern(uint64_t seed = 0x6d79726961640001ULL) : block_(2 * kPeriod) {
    std::mt19937_64 rng(seed);
    for (std::size_t i = 0; i < kPeriod; ++i) block_[i] = static_cast<std::byte>(rng());
    std::memcpy(block_.data() + kPeriod, block_.data(), kPeriod);  // windows never wrap
  }

  static std::size_t offset_of(uint64_t connection) {
    return static_cast<std::size_t>((connection * 2654435761ULL) % kPeriod);
  }

  // Writes len bytes of the stream of connection c, starting at stream offset `at`.
  void fill(uint64_t connection, uint64_t at, std::byte* out, std::size_t len) const {
    std::size_t pos = (offset_of(connection) + at) % kPeriod;
    while (len > 0) {
      std::size_t n = std::min(len, kPeriod);
      std::memcpy(out, block_.data() + pos, n);
      out += n;
      len -= n;
    }
  }

  // Whether data equals the stream of connection c at offset `at`.
  bool matches(uint64_t connection, uint64_t at, const std::byte* data, std::size_t len) const {
    std::size_t pos = (offset_of(connection) + at) % kPeriod;
    while (len > 0) {
      std::size_t n = std::min(len, kPeriod);
      if (std::memcmp(data, block_.data() + pos, n) != 0) return false;
      data += n;
      len -= n;
    }
    return true;
  }

 private:
  std::vector<std::byte> block_;
};

}  // namespace myriad::load
