// Internal. One shard's slice of the receive pool: fixed-size chunks addressed by a dense id.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace myriad::detail {

// The memory belongs to the runtime (one mapping for all shards, made once at start-up); this
// object only hands out chunk ids. Used from its shard's thread only, by its backend (the
// io_uring backend through BufferShares). The free list is LIFO so that the chunks in use stay
// few and warm in cache.
class BufferPool {
 public:
  BufferPool() = default;
  BufferPool(std::byte* base, uint32_t chunk_size, uint32_t count);

  std::byte* address(uint32_t id) const { return base_ + std::size_t{id} * chunk_size_; }
  uint32_t chunk_size() const { return chunk_size_; }
  uint32_t count() const { return count_; }
  uint32_t free_count() const { return static_cast<uint32_t>(free_.size()); }

  // Takes a free chunk; false when none is left.
  bool take(uint32_t& id) {
    if (free_.empty()) return false;
    id = free_.back();
    free_.pop_back();
    return true;
  }
  void give(uint32_t id) { free_.push_back(id); }

 private:
  std::byte* base_ = nullptr;
  uint32_t chunk_size_ = 0;
  uint32_t count_ = 0;
  std::vector<uint32_t> free_;
};

}  // namespace myriad::detail
