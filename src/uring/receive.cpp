// The io_uring backend's receive path: multishot receives into the ring's provided buffers,
// connections that wait when their ring runs dry (ENOBUFS), and where each chunk goes when the
// shard lets go of it: back into its ring, or to the shard's free list for a starving ring.
#include <algorithm>
#include <cerrno>

#include "uring/uring_backend.hpp"

namespace myriad::detail::uring {

void UringBackend::start_receive(uint32_t id) {
  Record& rec = shard_.record(id);
  if (io::armed(rec) || io::starved(rec) || io::closing(rec)) return;
  Ring& r = ring_of(id);
  // Armed even when the ring is empty, waiting for data first (the kernel picks a buffer before
  // it tries a receive, so without POLL_FIRST an empty ring ends it with ENOBUFS at once): a
  // connection with nothing to say costs nothing, and one whose data finds the ring still empty
  // ends with ENOBUFS and waits in the starved queue. So only data waiting in a socket makes a
  // ring starve (and take an idle ring's chunks back), never a connection just accepted.
  if (r.buffers.provided() == 0) top_up(r);
  arm_receive(r, id, r.buffers.provided() == 0);
}

void UringBackend::stop_receive(uint32_t id) {
  Record& rec = shard_.record(id);
  rec.io &= ~io::kStarved;  // its queue entry is skipped
  if (!io::armed(rec) || (rec.io & io::kCancelling) != 0) return;
  Ring& r = ring_of(id);
  io_uring_sqe* sqe = get_sqe(r);
  io_uring_prep_cancel64(sqe, pack(kOpRecv, rec.gen, id), 0);
  sqe->user_data = pack(kOpCancel, rec.gen, id);
  ++rec.ops;
  rec.io |= io::kCancelling;
}

void UringBackend::arm_receive(Ring& r, uint32_t id, bool poll_first) {
  Record& rec = shard_.record(id);
  io_uring_sqe* sqe = get_sqe(r);
  io_uring_prep_recv_multishot(sqe, static_cast<int>(id - r.first_id), nullptr, 0, 0);
  if (poll_first) sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
  if (choice_.receive_limits) {
    // At most a few chunks per pass, for fairness between connections, and in all no more
    // than the connection's remaining share of the pool: the receive then ends by itself and
    // is re-armed only if the share allows. Without these, a busy socket can fill dozens of
    // chunks before a pause (a cancel) takes effect.
    sqe->len = kChunksPerPass * shard_.pool().chunk_size();
    sqe->file_index = shard_.receive_budget(id);  // the optlen field: total byte limit
  }
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  sqe->buf_group = 0;
  sqe->user_data = pack(kOpRecv, rec.gen, id);
  ++rec.ops;
  rec.io |= io::kArmed;
  shares_.receive_armed(r.index);
}

void UringBackend::starve(Ring& r, uint32_t id) {
  Record& rec = shard_.record(id);
  if (io::starved(rec)) return;
  rec.io |= io::kStarved;
  if (r.starved.empty()) shares_.starving(r.index);
  r.starved.push_back(id);
}

void UringBackend::on_recv(Ring& r, uint32_t id, int res, unsigned flags) {
  if ((flags & IORING_CQE_F_BUFFER) != 0) {
    uint32_t chunk = flags >> IORING_CQE_BUFFER_SHIFT;
    r.buffers.consumed();
    shares_.taken(r.index, chunk);
    if (res > 0) {
      shard_.on_received(id, chunk, static_cast<uint32_t>(res));
    } else {
      recycle(chunk);
    }
  }
  if ((flags & IORING_CQE_F_MORE) != 0) return;
  Record& rec = shard_.record(id);  // after on_received, which may have closed it
  --rec.ops;
  rec.io &= ~io::kArmed;
  bool closing = io::closing(rec);
  bool dry = res == -ENOBUFS && !closing;
  if (dry) {
    shard_.on_buffer_starved();
    shares_.ran_dry(r.index, static_cast<uint32_t>(r.starved.size()));
    if (shard_.wants_receive(id)) starve(r, id);
  }
  shares_.receive_ended(r.index);  // after starve(): a ring with a connection waiting is in use
  if (closing) {
    finish_close(id);
    return;
  }
  if (dry) return;
  if (res == 0) {
    shard_.on_receive_end(id, 0);
    return;
  }
  if (res < 0 && res != -ECANCELED) {
    shard_.on_receive_end(id, res);
    return;
  }
  // Cancelled by a pause, or ended for the kernel's own reasons: go on if still wanted.
  if (shard_.wants_receive(id)) start_receive(id);
}

void UringBackend::recycle(uint32_t chunk) {
  uint32_t ring = shares_.released(chunk);
  if (ring != BufferShares::kNone) provide(*rings_[ring], chunk);
}

// Puts a chunk the shares have counted in r into its buffer ring; the kernel sees it once the
// ring is published (at the latest when the turn's refill() runs).
void UringBackend::provide(Ring& r, uint32_t chunk) {
  BufferPool& pool = shard_.pool();
  r.buffers.add(pool.address(chunk), pool.chunk_size(), static_cast<uint16_t>(chunk));
  if (!r.publish_queued) {
    r.publish_queued = true;
    to_publish_.push_back(&r);
  }
}

void UringBackend::publish(Ring& r) {
  r.buffers.publish();
}

void UringBackend::publish_all() {
  for (Ring* r : to_publish_) {
    r->publish_queued = false;
    publish(*r);
  }
  to_publish_.clear();
}

// Fills r up to its share from the shard's free list.
void UringBackend::top_up(Ring& r) {
  uint32_t chunk;
  while (shares_.fill(r.index, chunk)) provide(r, chunk);
  publish(r);
}

// Within a turn, between two rounds of a ring's deferred work: the chunks the last round let go
// of (echoes sent) go to the kernel now, and free ones to starving rings, not at the end of the
// turn. A burst of receives is run in rounds within one turn, and without this the later rounds
// find the ring dry (ENOBUFS) while the chunks the earlier rounds freed wait for the next turn.
void UringBackend::feed_between_rounds() {
  if (shares_.any_starving() && shares_.free_count() > 0)
    shares_.deal([this](uint32_t ring, uint32_t chunk) { provide(*rings_[ring], chunk); });
  publish_all();
}

// Gives starving rings chunks from the shard's free list (dealt out in turn: see
// BufferShares::deal), takes an idle ring's hoard back when the free list is empty, and re-arms
// the starved connections, one per chunk provided, oldest first. Costs nothing per ring that
// does not starve.
void UringBackend::refill() {
  more_starved_ = false;
  publish_all();
  if (!shares_.any_starving()) return;
  hungry_.clear();
  for (uint32_t k : shares_.starving_rings()) hungry_.push_back(rings_[k].get());
  for (Ring* r : hungry_) {
    // Connections that stopped receiving or closed while they waited leave their entries
    // behind; a ring whose queue holds only those starves no more.
    while (!r->starved.empty() && !io::starved(shard_.record(r->starved.front())))
      r->starved.pop_front();
    if (r->starved.empty()) shares_.fed(r->index);
  }
  shares_.deal([this](uint32_t ring, uint32_t chunk) { provide(*rings_[ring], chunk); });
  for (Ring* r : hungry_) {
    if (r->starved.empty()) continue;
    publish(*r);
    if (shares_.free_count() == 0 && reclaim_for(*r)) top_up(*r);
    uint32_t budget = r->buffers.provided();
    while (budget > 0 && !r->starved.empty()) {
      uint32_t id = r->starved.front();
      r->starved.pop_front();
      Record& rec = shard_.record(id);
      if (!io::starved(rec)) continue;
      rec.io &= ~io::kStarved;
      if (io::armed(rec) || io::closing(rec) || !shard_.wants_receive(id)) continue;
      arm_receive(*r, id);
      --budget;
    }
    // One connection per chunk per turn, so a ring with few chunks does not turn a long
    // queue into a storm of ENOBUFS; the rest go next turn, without waiting for a completion
    // (the ones just armed may be idle and never complete).
    if (!r->starved.empty() && r->buffers.provided() > 0) more_starved_ = true;
    if (r->starved.empty()) shares_.fed(r->index);
  }
}

// A ring starves while the shard's free list is empty: take back the chunks an idle ring holds
// (BufferShares::victim_for says which, and rules out doing it again and again). Its buffer ring
// is unregistered, what the kernel had not consumed returns to the free list, and an empty ring
// is registered in its place; its connections, if data comes, see ENOBUFS and wait their turn
// like everyone else. Only with DEFER_TASKRUN, where the kernel picks buffers only inside our
// own io_uring_enter, and only once every completion of that ring has been handled (none waits
// in its queue or overflow list): then the kernel holds no chunk of it the shares do not know.
// A submission queue that filled up this turn was submitted at once, and that ran the ring's
// deferred work, so the ring may have completions since it was reaped: they are handled first.
bool UringBackend::reclaim_for(const Ring& hungry) {
  if ((choice_.ring_flags & IORING_SETUP_DEFER_TASKRUN) == 0) return false;
  uint32_t index = shares_.victim_for(hungry.index);
  if (index == BufferShares::kNone) return false;
  Ring& victim = *rings_[index];
  auto quiescent = [&victim] {
    return io_uring_cq_ready(&victim.ring) == 0 && (sq_flags(victim) & IORING_SQ_CQ_OVERFLOW) == 0;
  };
  if (!quiescent()) {
    reap(victim);
    if (!quiescent() || !shares_.may_take_back(index)) return false;
  }
  bool taken = victim.buffers.take_back(
      victim.ring, [this, index](uint16_t bid) { shares_.reclaimed(index, bid); });
  if (!taken) return false;
  shares_.taken_back(index);
  top_up(victim);  // the few it keeps, if its connections are still there
  return true;
}

}  // namespace myriad::detail::uring
