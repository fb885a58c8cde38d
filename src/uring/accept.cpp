// The io_uring backend's listeners: one multishot accept per listener, armed on the lowest ring
// with room and moved to the next ring when that one is nearly full (a full table loses the
// connection), and the plain accepts that follow a move, because the kernel may have given an
// incoming connection's only wakeup to the accept being cancelled.
#include <algorithm>
#include <cerrno>

#include "uring/uring_backend.hpp"

namespace myriad::detail::uring {

void UringBackend::add_listener(int fd, uint16_t listener) {
  if (listeners_.size() <= listener) listeners_.resize(listener + 1);
  listeners_[listener] = Listener{fd, true, -1, 0};
  arm_accept(listener);
}

void UringBackend::stop_accepting() {
  for (std::size_t i = 0; i < listeners_.size(); ++i) {
    Listener& l = listeners_[i];
    if (!l.active) continue;
    l.active = false;
    if (l.ring >= 0) {
      cancel_accept(static_cast<uint16_t>(i));
    }
  }
}

void UringBackend::arm_accept(uint16_t index) {
  Listener& l = listeners_[index];
  if (!l.active || l.ring >= 0) return;
  Ring* r = ring_with_room();
  if (r == nullptr) return;  // full: re-armed when a slot frees
  io_uring_sqe* sqe = get_sqe(*r);
  io_uring_prep_multishot_accept_direct(sqe, l.fd, nullptr, nullptr, 0);
  sqe->user_data = pack(kOpAccept, r->index, index);
  l.ring = static_cast<int>(r->index);
}

void UringBackend::accept_once(uint16_t index) {
  Listener& l = listeners_[index];
  if (!l.active || l.once_pending) return;
  Ring* r = ring_with_room();
  if (r == nullptr) return;
  io_uring_sqe* sqe = get_sqe(*r);
  io_uring_prep_accept_direct(sqe, l.fd, nullptr, nullptr, 0, IORING_FILE_INDEX_ALLOC - 1);
  // Take what is in the backlog now and never wait: a plain accept that waits is one more
  // exclusive waiter, and a connection whose wakeup went elsewhere (to an accept being
  // cancelled) would sit in the backlog behind it, unseen by the sweep, which only issues a
  // plain accept when none is in flight. Kernels before 6.10 refuse the flag (EINVAL): then
  // the accept waits for the next connection, as before.
  if (accept_dontwait_) sqe->ioprio |= IORING_ACCEPT_DONTWAIT;
  sqe->user_data = pack(kOpAcceptOnce, r->index, index);
  l.once_pending = true;
}

void UringBackend::on_accept_once(uint32_t ring_index, uint16_t index, int res) {
  listeners_[index].once_pending = false;
  if (res == -EINVAL && accept_dontwait_) {
    accept_dontwait_ = false;
    accept_once(index);
    return;
  }
  if (res < 0) return;  // empty backlog (EAGAIN), the listener closed, or a failure
  // One, not a loop until the backlog is empty: chained plain accepts would race the
  // multishot accept through a burst of connects and spread the new connections over two
  // rings, whose buffer shares then starve each other. What one leaves, the sweep takes.
  adopt_accepted(*rings_[ring_index], res, index);
}

// A connection accepted into the ring's direct-descriptor slot: a fresh record, counted.
void UringBackend::adopt_accepted(Ring& r, int slot, uint16_t index) {
  ++r.used;
  uint32_t id = r.first_id + static_cast<uint32_t>(slot);
  Record& rec = shard_.record(id);
  rec.ops = 0;
  rec.io = 0;
  shard_.on_accepted(id, index);
}

void UringBackend::cancel_accept(uint16_t index) {
  Listener& l = listeners_[index];
  Ring& r = *rings_[static_cast<uint32_t>(l.ring)];
  io_uring_sqe* sqe = get_sqe(r);
  io_uring_prep_cancel64(sqe, pack(kOpAccept, r.index, index), 0);
  sqe->user_data = pack(kOpCancelAccept, r.index, index);
  l.ring = -1;
}

void UringBackend::on_accept(uint32_t ring_index, uint16_t index, int res, unsigned flags) {
  Listener& l = listeners_[index];
  bool current = l.ring == static_cast<int>(ring_index);
  if (res >= 0) {
    Ring& r = *rings_[ring_index];
    adopt_accepted(r, res, index);
    l.errors = 0;
    // This ring is nearly full: accept on the next one, if there is one (see ring_with_room:
    // when no ring can be added, the accept stays here rather than be re-armed in its place).
    if (current && (flags & IORING_CQE_F_MORE) != 0 && r.used + margin() >= slots_ &&
        ring_with_room() != &r) {
      cancel_accept(index);
      arm_accept(index);
    }
  } else if (res != -ECANCELED) {
    shard_.on_accept_error(-res);
    ++l.errors;
  }
  if (!current && res == -ECANCELED && l.active) {
    // The accept this listener moved away from is gone. The kernel wakes one accept per
    // incoming connection (accept polls are exclusive), and the wakeup may have gone to the
    // request being cancelled: that connection would wait in the backlog, unseen by the new
    // accept, until another arrives. A plain accept on the current ring takes it (see
    // accept_once); should the backlog hold more, the sweep of a quiet shard takes the rest.
    accept_once(index);
    return;
  }
  if ((flags & IORING_CQE_F_MORE) != 0 || !current) return;
  l.ring = -1;
  if (!l.active) return;
  if (res == -ENFILE) {
    // The table filled before we moved on: make sure the next arm skips this ring.
    rings_[ring_index]->used = std::max(rings_[ring_index]->used, slots_ - margin());
  }
  // A listener failing again and again is re-armed from the next turn, not in a tight loop.
  if (l.errors > 16) {
    shard_.post_task([this, index] { arm_accept(index); });
    l.errors = 0;
    return;
  }
  arm_accept(index);
}

}  // namespace myriad::detail::uring
