// Internal to src/uring/. A provided buffer ring (buffer group 0 of one io_uring ring): the few
// liburing calls that register it, add buffers, publish them to the kernel and take them all
// back. What goes in is BufferShares' decision; this only does it.
//
// Ownership: the ring's memory is ours (mmap'd here, unmapped by destroy(), after the io_uring
// ring is gone); a buffer added belongs to the kernel until a completion names it (consumed())
// or take_back() returns it. Shard thread only.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>

namespace myriad::detail::uring {

class BufferRing {
 public:
  // Maps a ring of `entries` buffers (a power of two) and registers it with ring. Throws
  // std::runtime_error naming the failure.
  void create(io_uring& ring, uint32_t entries);
  // Unmaps the memory; the io_uring ring must be gone (or the buffer ring unregistered).
  void destroy();

  // Queues a buffer; the kernel sees it once publish() runs.
  void add(void* address, uint32_t length, uint16_t bid) {
    io_uring_buf_ring_add(br_, address, length, bid, static_cast<int>(mask_),
                          static_cast<int>(pending_));
    ++pending_;
  }
  // Makes the queued buffers visible to the kernel.
  void publish() {
    if (pending_ == 0) return;
    io_uring_buf_ring_advance(br_, static_cast<int>(pending_));
    provided_ += pending_;
    pending_ = 0;
  }
  // A completion named one of this ring's buffers: the kernel took it.
  void consumed() { --provided_; }

  // Takes back every published buffer the kernel has not taken: unregisters the ring, calls
  // back(bid) for each, and registers it again, empty. Safe only while the kernel can pick no
  // buffer and every completion naming one has been seen (with DEFER_TASKRUN the kernel picks
  // buffers only inside our own io_uring_enter). Returns false, changing nothing, if the
  // kernel refused to unregister. Queued buffers are published first.
  template <class Back>
  bool take_back(io_uring& ring, Back&& back);

  // Published buffers the kernel has not taken yet.
  uint32_t provided() const { return provided_; }

 private:
  void reregister(io_uring& ring);

  io_uring_buf_ring* br_ = nullptr;
  std::size_t bytes_ = 0;
  uint32_t entries_ = 0;
  uint32_t mask_ = 0;
  uint32_t provided_ = 0;  // published, not yet taken by the kernel
  uint32_t pending_ = 0;   // added, not yet published
};

template <class Back>
bool BufferRing::take_back(io_uring& ring, Back&& back) {
  publish();
  if (io_uring_unregister_buf_ring(&ring, 0) < 0) return false;
  uint16_t tail = IO_URING_READ_ONCE(br_->tail);
  for (uint32_t i = 0; i < provided_; ++i) {
    uint32_t index = (static_cast<uint32_t>(tail) - provided_ + i) & mask_;
    back(br_->bufs[index].bid);
  }
  provided_ = 0;
  reregister(ring);
  return true;
}

}  // namespace myriad::detail::uring
