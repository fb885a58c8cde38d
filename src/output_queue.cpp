#include "output_queue.hpp"

#include <algorithm>

namespace myriad::detail {

OutputQueue::~OutputQueue() {
  // Pool chunks belong to the shard's pool, which is going away with the shard.
  auto ignore_chunk = [](uint32_t) {};
  for (std::size_t i = head_; i < segs_.size(); ++i) drop(segs_[i], ignore_chunk);
}

void OutputQueue::push_chunk(std::byte* base, uint32_t begin, uint32_t end, uint32_t capacity,
                             uint32_t chunk) {
  segs_.push_back(Segment{base, begin, end, capacity, chunk});
  bytes_ += end - begin;
}

void OutputQueue::push_shared(SharedBlock* block) {
  for (std::size_t at = 0, piece = 0; at < block->size; at += kSharedPiece, ++piece) {
    auto len = static_cast<uint32_t>(std::min(block->size - at, kSharedPiece));
    segs_.push_back(Segment{block->bytes() + at, 0, len, static_cast<uint32_t>(piece), kShared});
    SharedBlock::acquire(block);
    bytes_ += len;
  }
}

bool OutputQueue::fold(const void* data, std::size_t len) {
  if (len > kFoldLimit || head_ == segs_.size()) return false;
  Segment& tail = segs_.back();
  if (room(tail) < len) return false;
  std::memcpy(tail.base + tail.end, data, len);
  tail.end += static_cast<uint32_t>(len);
  bytes_ += len;
  return true;
}

void OutputQueue::append_copy(const void* data, std::size_t len) {
  const auto* src = static_cast<const std::byte*>(data);
  if (head_ != segs_.size()) {
    Segment& tail = segs_.back();
    std::size_t take = std::min(room(tail), len);
    if (take != 0) std::memcpy(tail.base + tail.end, src, take);
    tail.end += static_cast<uint32_t>(take);
    bytes_ += take;
    src += take;
    len -= take;
  }
  while (len > 0) {
    std::size_t capacity = block_capacity(len);
    std::size_t take = std::min(len, capacity);
    auto* block = new std::byte[capacity];
    std::memcpy(block, src, take);
    segs_.push_back(
        Segment{block, 0, static_cast<uint32_t>(take), static_cast<uint32_t>(capacity), kHeap});
    bytes_ += take;
    src += take;
    len -= take;
  }
}

std::size_t OutputQueue::block_capacity(std::size_t len) const {
  constexpr std::size_t kLargest = UINT32_MAX / 2;
  if (len >= kHeapBlock) return std::min(len, kLargest);
  std::size_t want = std::max(len, std::min(bytes_, kHeapBlock));
  return std::min((want + kBlockGrain - 1) / kBlockGrain * kBlockGrain, kHeapBlock);
}

std::size_t OutputQueue::heap_capacity() const {
  std::size_t total = 0;
  for (std::size_t i = head_; i < segs_.size(); ++i) {
    if (segs_[i].chunk == kHeap) total += segs_[i].capacity;
  }
  return total;
}

unsigned OutputQueue::fill(iovec* iov, unsigned max) const {
  unsigned n = 0;
  for (std::size_t i = head_; i < segs_.size() && n < max; ++i) {
    const Segment& s = segs_[i];
    if (s.end == s.begin) continue;
    iov[n].iov_base = s.base + s.begin;
    iov[n].iov_len = s.end - s.begin;
    ++n;
  }
  return n;
}

void OutputQueue::compact() {
  segs_.erase(segs_.begin(), segs_.begin() + static_cast<std::ptrdiff_t>(head_));
  head_ = 0;
}

}  // namespace myriad::detail
