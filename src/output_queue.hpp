// Internal. A connection's queued output: pool chunks, heap blocks and shared buffers, sent in
// order.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include <myriad/shared_buffer.hpp>

namespace myriad::detail {

// Owned by a connection's extension record, on its shard's thread. A segment is a pool chunk
// (handed over by a zero-copy send), a heap block (a copying send) or a reference to a
// SharedBuffer (a zero-copy send of bytes many connections share). While a send is in flight
// the kernel reads the first bytes of the queue, so nothing queued is moved or freed until
// consume() says the kernel is done with it; appending past the in-flight range is safe.
class OutputQueue {
 public:
  static constexpr uint32_t kHeap = UINT32_MAX;
  // A shared buffer's bytes, never written: the queue holds one reference per segment. base is
  // SharedBlock::bytes() + capacity * kSharedPiece (buffers past 4 GiB take several segments).
  static constexpr uint32_t kShared = UINT32_MAX - 1;
  static constexpr std::size_t kSharedPiece = std::size_t{1} << 31;
  // Copies smaller than this fold into the tail segment's free room instead of a new segment.
  static constexpr std::size_t kFoldLimit = 2048;
  // A copy's heap block is sized to the bytes, rounded up to kBlockGrain, and at least as large
  // as what is queued already, up to kHeapBlock: one small send to an idle connection costs a
  // block about its own size, while a run of small sends fills blocks that double up to 4 KiB.
  static constexpr std::size_t kBlockGrain = 64;
  static constexpr std::size_t kHeapBlock = 4096;

  struct Segment {
    std::byte* base;
    uint32_t begin;
    uint32_t end;
    uint32_t capacity;
    uint32_t chunk;  // pool chunk id, kHeap or kShared
  };

  OutputQueue() = default;
  OutputQueue(const OutputQueue&) = delete;
  OutputQueue& operator=(const OutputQueue&) = delete;
  ~OutputQueue();

  bool empty() const { return bytes_ == 0; }
  std::size_t bytes() const { return bytes_; }
  std::size_t segments() const { return segs_.size() - head_; }

  // Queues a chunk's bytes [begin, end) of a capacity-byte chunk; the queue owns the chunk until
  // the bytes are consumed or the queue is cleared.
  void push_chunk(std::byte* base, uint32_t begin, uint32_t end, uint32_t capacity, uint32_t chunk);
  // Queues a shared block's bytes, taking one reference per segment (one below 2 GiB) and
  // dropping each once its bytes are consumed or the queue is cleared.
  void push_shared(SharedBlock* block);
  // Copies len bytes into the tail's free room, if they fit and are small. Returns whether done.
  bool fold(const void* data, std::size_t len);
  // Copies len bytes, into the tail's room first and then new heap blocks.
  void append_copy(const void* data, std::size_t len);

  // Bytes of heap blocks the queue holds (their capacity, not their use). Walks the queue: for
  // tests and diagnostics.
  std::size_t heap_capacity() const;
  // The capacity append_copy gives a new block for len more bytes.
  std::size_t block_capacity(std::size_t len) const;

  // Describes up to max segments from the head; returns how many.
  unsigned fill(iovec* iov, unsigned max) const;

  // The kernel took n bytes from the head. release(chunk) is called for each chunk emptied.
  template <class Release>
  void consume(std::size_t n, Release&& release);
  // Drops everything, releasing chunks and freeing blocks.
  template <class Release>
  void clear(Release&& release);

 private:
  static SharedBlock* block_of(const Segment& s) {
    return reinterpret_cast<SharedBlock*>(s.base - std::size_t{s.capacity} * kSharedPiece) - 1;
  }
  // Free room after a segment's bytes (none in a shared one).
  static std::size_t room(const Segment& s) { return s.chunk == kShared ? 0 : s.capacity - s.end; }
  // Frees what a segment holds: a heap block, a shared reference, or (release) a pool chunk.
  template <class Release>
  static void drop(const Segment& s, Release& release) {
    if (s.chunk == kHeap) {
      delete[] s.base;
    } else if (s.chunk == kShared) {
      SharedBlock::release(block_of(s));
    } else {
      release(s.chunk);
    }
  }
  void compact();

  std::vector<Segment> segs_;
  std::size_t head_ = 0;
  std::size_t bytes_ = 0;
};

template <class Release>
void OutputQueue::consume(std::size_t n, Release&& release) {
  bytes_ -= n;
  while (n > 0) {
    Segment& s = segs_[head_];
    std::size_t len = s.end - s.begin;
    if (n < len) {
      s.begin += static_cast<uint32_t>(n);
      return;
    }
    n -= len;
    drop(s, release);
    ++head_;
  }
  // A drained queue keeps its vector's storage for the next burst.
  if (head_ == segs_.size()) {
    segs_.clear();
    head_ = 0;
  } else if (head_ >= 16 && head_ * 2 >= segs_.size()) {
    compact();
  }
}

template <class Release>
void OutputQueue::clear(Release&& release) {
  for (std::size_t i = head_; i < segs_.size(); ++i) drop(segs_[i], release);
  segs_.clear();
  head_ = 0;
  bytes_ = 0;
}

}  // namespace myriad::detail
