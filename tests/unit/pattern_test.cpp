// Unit tests for the load generator's per-connection byte streams (apps/load/pattern.hpp).
#include "pattern.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace {

using myriad::load::Pattern;

std::vector<std::byte> stream(const Pattern& p, uint64_t connection, uint64_t at, std::size_t len) {
  std::vector<std::byte> out(len);
  p.fill(connection, at, out.data(), len);
  return out;
}

TEST(Pattern, FillAndMatchesAgree) {
  Pattern p;
  std::mt19937_64 rng(1);
  const std::size_t lengths[] = {0,
                                 1,
                                 2,
                                 63,
                                 64,
                                 1000,
                                 16384,
                                 Pattern::kPeriod - 1,
                                 Pattern::kPeriod,
                                 Pattern::kPeriod + 1,
                                 2 * Pattern::kPeriod + 17,
                                 200'000};
  for (std::size_t len : lengths) {
    for (int i = 0; i < 8; ++i) {
      uint64_t connection = rng() % 2'000'000;
      uint64_t at = i == 0 ? 0 : rng() % (uint64_t{1} << (rng() % 40));
      auto bytes = stream(p, connection, at, len);
      EXPECT_TRUE(p.matches(connection, at, bytes.data(), len))
          << "connection " << connection << " at " << at << " len " << len;
    }
  }
}

TEST(Pattern, StreamsAreContinuous) {
  // Filling a range in two pieces gives the same bytes as filling it at once, and the stream
  // repeats with the period, so offsets past it (and long fills) stay consistent.
  Pattern p;
  const uint64_t connection = 42;
  const std::size_t total = 3 * Pattern::kPeriod + 5;
  auto whole = stream(p, connection, 100, total);
  for (std::size_t cut : {std::size_t{1}, std::size_t{4096}, Pattern::kPeriod - 100,
                          Pattern::kPeriod, 2 * Pattern::kPeriod + 1}) {
    auto first = stream(p, connection, 100, cut);
    auto second = stream(p, connection, 100 + cut, total - cut);
    first.insert(first.end(), second.begin(), second.end());
    EXPECT_EQ(first, whole) << "cut at " << cut;
  }
  for (std::size_t k = 0; k + Pattern::kPeriod < total; k += 997) {
    ASSERT_EQ(whole[k], whole[k + Pattern::kPeriod]) << k;
  }
  EXPECT_EQ(stream(p, connection, 7, 500), stream(p, connection, 7 + 5 * Pattern::kPeriod, 500));
}

TEST(Pattern, AFlippedByteDoesNotMatch) {
  Pattern p;
  std::mt19937_64 rng(2);
  for (std::size_t len : {std::size_t{1}, std::size_t{64}, std::size_t{5000}, Pattern::kPeriod + 10,
                          std::size_t{150'000}}) {
    for (int i = 0; i < 20; ++i) {
      uint64_t connection = rng() % 100'000;
      uint64_t at = rng() % 10'000'000;
      auto bytes = stream(p, connection, at, len);
      std::size_t where = rng() % len;
      bytes[where] ^= static_cast<std::byte>(1u << (rng() % 8));
      EXPECT_FALSE(p.matches(connection, at, bytes.data(), len))
          << "len " << len << " flipped at " << where;
    }
  }
}

TEST(Pattern, ADroppedByteDoesNotMatch) {
  Pattern p;
  std::mt19937_64 rng(3);
  for (std::size_t len :
       {std::size_t{64}, std::size_t{4096}, Pattern::kPeriod + 3, std::size_t{140'000}}) {
    for (int i = 0; i < 20; ++i) {
      uint64_t connection = rng() % 100'000;
      uint64_t at = rng() % 10'000'000;
      // One byte lost somewhere: what arrives is the stream shifted from there on.
      auto bytes = stream(p, connection, at, len + 1);
      std::size_t where = rng() % (len / 2);
      bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(where));
      EXPECT_FALSE(p.matches(connection, at, bytes.data(), len)) << "dropped at " << where;
      // A stream that starts one byte late is a shift too.
      auto late = stream(p, connection, at + 1, len);
      EXPECT_FALSE(p.matches(connection, at, late.data(), len));
    }
  }
}

TEST(Pattern, AnotherConnectionsStreamDoesNotMatch) {
  Pattern p;
  for (uint64_t c = 0; c < 500; ++c) {
    auto bytes = stream(p, c, 1000, 64);
    EXPECT_FALSE(p.matches(c + 1, 1000, bytes.data(), 64)) << c;
    EXPECT_FALSE(p.matches(c + 1000, 1000, bytes.data(), 64)) << c;
  }
  // Different connections start at different offsets of the block.
  EXPECT_NE(Pattern::offset_of(0), Pattern::offset_of(1));
  EXPECT_NE(stream(p, 1, 0, 64), stream(p, 2, 0, 64));
}

TEST(Pattern, SeedsGiveDifferentStreamsAndTheSameSeedTheSame) {
  Pattern a(1), b(2), a2(1);
  EXPECT_NE(stream(a, 5, 0, 256), stream(b, 5, 0, 256));
  EXPECT_EQ(stream(a, 5, 0, 256), stream(a2, 5, 0, 256));
}

}  // namespace
