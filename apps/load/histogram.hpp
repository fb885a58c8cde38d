// A log-linear latency histogram: 128 linear sub-buckets per power of two, so every recorded
// value is kept to within 1/128 (0.8%) of itself, from 1 ns to hours, in a fixed 59 KiB.
// Single writer; merge() combines per-shard histograms after the run.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <vector>

namespace myriad::load {

class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  static constexpr std::size_t kBuckets = (64 - kSubBits + 1) * kSub;

  Histogram() : counts_(kBuckets, 0) {}

  static std::size_t index_of(uint64_t value) {
    if (value < kSub) return static_cast<std::size_t>(value);
    int msb = 63 - std::countl_zero(value);
    int shift = msb - kSubBits;
    return static_cast<std::size_t>((shift + 1) * kSub + ((value >> shift) & (kSub - 1)));
  }
  // The highest value that lands in bucket index (what a percentile reports: never optimistic).
  static uint64_t highest_in(std::size_t index) {
    if (index < kSub) return index;
    uint64_t shift = index / kSub - 1;
    uint64_t low = (kSub + index % kSub) << shift;
    return low + (uint64_t{1} << shift) - 1;
  }

  void record(uint64_t value) {
    ++counts_[index_of(value)];
    ++total_;
    max_ = std::max(max_, value);
    min_ = std::min(min_, value);
    sum_ += static_cast<double>(value);
  }

  void merge(const Histogram& other) {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    max_ = std::max(max_, other.max_);
    min_ = std::min(min_, other.min_);
    sum_ += other.sum_;
  }

  uint64_t count() const { return total_; }
  uint64_t max() const { return total_ == 0 ? 0 : max_; }
  uint64_t min() const { return total_ == 0 ? 0 : min_; }
  double mean() const { return total_ == 0 ? 0 : sum_ / static_cast<double>(total_); }

  // The value below or at which `percent` of the recorded values lie (0 < percent <= 100),
  // as the upper edge of its bucket, capped by the exact maximum.
  uint64_t percentile(double percent) const {
    if (total_ == 0) return 0;
    auto rank = static_cast<uint64_t>(percent / 100.0 * static_cast<double>(total_) + 0.999999);
    rank = std::clamp<uint64_t>(rank, 1, total_);
    uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(highest_in(i), max_);
    }
    return max_;
  }

 private:
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  uint64_t max_ = 0;
  uint64_t min_ = UINT64_MAX;
  double sum_ = 0;
};

}  // namespace myriad::load
