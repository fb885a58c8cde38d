// Unit tests for the load generator's latency histogram (apps/load/histogram.hpp).
#include "histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace {

using myriad::load::Histogram;

// The true percentile under the histogram's definition: the smallest recorded value with at
// least `permille_of_percent / 1000` percent of the values at or below it.
uint64_t true_percentile(std::vector<uint64_t> values, uint64_t milli_percent) {
  std::sort(values.begin(), values.end());
  uint64_t n = values.size();
  uint64_t rank = (milli_percent * n + 100'000 - 1) / 100'000;  // ceil(p% of n)
  rank = std::clamp<uint64_t>(rank, 1, n);
  return values[rank - 1];
}

TEST(Histogram, EmptyReportsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
  EXPECT_EQ(h.percentile(50), 0u);
  EXPECT_EQ(h.percentile(100), 0u);
}

TEST(Histogram, UniformDistribution) {
  Histogram h;
  for (uint64_t v = 1; v <= 1'000'000; ++v) h.record(v);
  EXPECT_EQ(h.count(), 1'000'000u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), 1'000'000u);
  EXPECT_NEAR(h.mean(), 500'000.5, 0.01);
  uint64_t p50 = h.percentile(50);
  uint64_t p99 = h.percentile(99);
  EXPECT_GE(p50, 500'000u);
  EXPECT_LE(p50, 505'000u);
  EXPECT_GE(p99, 990'000u);
  EXPECT_LE(p99, 999'900u);
  EXPECT_EQ(h.percentile(100), 1'000'000u);
  EXPECT_LE(h.percentile(99.999), 1'000'000u);
  EXPECT_GE(h.percentile(0.0001), 1u);
  EXPECT_LE(h.percentile(0.0001), 1u);
}

TEST(Histogram, ConstantDistribution) {
  for (uint64_t value : {uint64_t{0}, uint64_t{1}, uint64_t{127}, uint64_t{128}, uint64_t{12'345},
                         uint64_t{987'654'321}}) {
    Histogram h;
    for (int i = 0; i < 1000; ++i) h.record(value);
    for (double p : {0.1, 1.0, 50.0, 99.0, 99.9, 100.0}) {
      EXPECT_EQ(h.percentile(p), value) << "p" << p << " of constant " << value;
    }
    EXPECT_EQ(h.min(), value);
    EXPECT_EQ(h.max(), value);
    EXPECT_EQ(h.mean(), static_cast<double>(value));
  }
}

TEST(Histogram, TwoPointDistributionSeparatesTheModes) {
  // 99.8% fast at 1 ms, 0.2% slow at 1 s: the median sees the fast mode, p99.9 the slow one.
  Histogram h;
  for (int i = 0; i < 9980; ++i) h.record(1'000'000);
  for (int i = 0; i < 20; ++i) h.record(1'000'000'000);
  uint64_t p50 = h.percentile(50);
  uint64_t p99 = h.percentile(99);
  uint64_t p999 = h.percentile(99.9);
  EXPECT_GE(p50, 1'000'000u);
  EXPECT_LT(p50, 1'000'000u + 1'000'000u / 128);
  EXPECT_GE(p99, 1'000'000u);
  EXPECT_LT(p99, 1'000'000u + 1'000'000u / 128);
  EXPECT_EQ(p999, 1'000'000'000u);
  EXPECT_EQ(h.max(), 1'000'000'000u);
  EXPECT_EQ(h.min(), 1'000'000u);
}

TEST(Histogram, PercentilesAreNeverBelowTheTruthNorAboveMax) {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 20; ++trial) {
    Histogram h;
    std::vector<uint64_t> values;
    std::size_t n = 1 + rng() % 5000;
    for (std::size_t i = 0; i < n; ++i) {
      // Log-uniform over 1 ns .. ~1000 s, so every bucket width is exercised.
      int bits = static_cast<int>(rng() % 40);
      uint64_t v = (uint64_t{1} << bits) + rng() % (uint64_t{1} << bits);
      values.push_back(v);
      h.record(v);
    }
    uint64_t max = *std::max_element(values.begin(), values.end());
    ASSERT_EQ(h.max(), max);
    ASSERT_EQ(h.min(), *std::min_element(values.begin(), values.end()));
    for (uint64_t milli : {1'000u, 10'000u, 25'000u, 50'000u, 75'000u, 90'000u, 99'000u, 99'900u,
                           99'990u, 100'000u}) {
      double percent = static_cast<double>(milli) / 1000.0;
      uint64_t truth = true_percentile(values, milli);
      uint64_t got = h.percentile(percent);
      EXPECT_GE(got, truth) << "p" << percent << " of " << n << " values";
      EXPECT_LE(got, max) << "p" << percent;
      EXPECT_LE(static_cast<double>(got - truth), static_cast<double>(truth) / 128.0)
          << "p" << percent << ": " << got << " vs " << truth;
    }
    EXPECT_EQ(h.percentile(100), max);
  }
}

TEST(Histogram, MergeEqualsRecordingEverythingInOne) {
  std::mt19937_64 rng(9);
  Histogram all, a, b, empty;
  for (int i = 0; i < 20000; ++i) {
    uint64_t v = 1 + rng() % (i % 3 == 0 ? 10'000'000 : 50'000);
    all.record(v);
    (i % 4 == 0 ? a : b).record(v);
  }
  Histogram merged;
  merged.merge(a);
  merged.merge(empty);
  merged.merge(b);
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.max(), all.max());
  EXPECT_EQ(merged.min(), all.min());
  EXPECT_NEAR(merged.mean(), all.mean(), all.mean() * 1e-12);
  for (double p = 0.5; p <= 100.0; p += 0.5) {
    EXPECT_EQ(merged.percentile(p), all.percentile(p)) << "p" << p;
  }
  EXPECT_EQ(merged.percentile(99.99), all.percentile(99.99));

  // Merging an empty histogram into one keeps the other's min and max.
  Histogram only_a;
  only_a.merge(a);
  only_a.merge(empty);
  EXPECT_EQ(only_a.min(), a.min());
  EXPECT_EQ(only_a.max(), a.max());
}

TEST(Histogram, IndexAndHighestInRoundTrip) {
  auto check = [](uint64_t v) {
    std::size_t index = Histogram::index_of(v);
    ASSERT_LT(index, Histogram::kBuckets) << v;
    uint64_t high = Histogram::highest_in(index);
    ASSERT_LE(v, high) << v;
    // Relative error strictly under 1/128 (exact below 128).
    if (v < Histogram::kSub) {
      ASSERT_EQ(high, v);
    } else {
      // (high - v) / v < 1/128, in exact integer arithmetic.
      ASSERT_LT(static_cast<unsigned __int128>(high - v) * 128, static_cast<unsigned __int128>(v))
          << v << " lands in a bucket ending at " << high;
    }
    // The bucket's highest value lands in the same bucket.
    ASSERT_EQ(Histogram::index_of(high), index) << v;
  };
  for (uint64_t v = 0; v < (uint64_t{1} << 18); ++v) check(v);
  for (int bit = 0; bit < 64; ++bit) {
    uint64_t p = uint64_t{1} << bit;
    for (uint64_t d : {uint64_t{0}, uint64_t{1}, uint64_t{2}}) {
      check(p + d);
      if (p > d) check(p - d);
    }
  }
  check(std::numeric_limits<uint64_t>::max());
  std::mt19937_64 rng(3);
  for (int i = 0; i < 200000; ++i) check(rng() >> (rng() % 64));
}

TEST(Histogram, BucketsAreOrderedAndContiguous) {
  // Every bucket's highest value is one below the next bucket's lowest: no gaps, no overlaps.
  for (std::size_t i = 0; i + 1 < Histogram::kBuckets; ++i) {
    uint64_t high = Histogram::highest_in(i);
    ASSERT_EQ(Histogram::index_of(high), i) << "bucket " << i;
    ASSERT_EQ(Histogram::index_of(high + 1), i + 1) << "bucket " << i;
  }
  EXPECT_EQ(Histogram::highest_in(Histogram::kBuckets - 1), std::numeric_limits<uint64_t>::max());
}

}  // namespace
