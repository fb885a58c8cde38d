#include "output_queue.hpp"

#include <algorithm>

namespace myriad::detail {

OutputQueue::~OutputQueue() {
  for (std::size_t i = head_; i < segs_.size(); ++i) {
    if (segs_[i].chunk == kHeap) delete[] segs_[i].base;
  }
}

void OutputQueue::push_chunk(std::byte* base, uint32_t begin, uint32_t end, uint32_t capacity,
                             uint32_t chunk) {
  segs_.push_back(Segment{base, begin, end, capacity, chunk});
  bytes_ += end - begin;
}

bool OutputQueue::fold(const void* data, std::size_t len) {
  if (len > kFoldLimit || head_ == segs_.size()) return false;
  Segment& tail = segs_.back();
  if (tail.capacity - tail.end < len) return false;
  std::memcpy(tail.base + tail.end, data, len);
  tail.end += static_cast<uint32_t>(len);
  bytes_ += len;
  return true;
}

void OutputQueue::append_copy(const void* data, std::size_t len) {
  const auto* src = static_cast<const std::byte*>(data);
  if (head_ != segs_.size()) {
    Segment& tail = segs_.back();
    std::size_t room = std::min<std::size_t>(tail.capacity - tail.end, len);
    std::memcpy(tail.base + tail.end, src, room);
    tail.end += static_cast<uint32_t>(room);
    bytes_ += room;
    src += room;
    len -= room;
  }
  while (len > 0) {
    std::size_t capacity = std::max(kHeapBlock, std::min<std::size_t>(len, UINT32_MAX / 2));
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
