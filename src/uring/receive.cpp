// The io_uring backend's receive path: multishot receives into the ring's provided buffers,
// connections that wait when their ring runs dry (ENOBUFS), and where each chunk goes when the
// shard lets go of it: back into its ring, or to the shard's free list for a starving ring.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

#include "uring/uring_backend.hpp"

namespace myriad::detail::uring {

void UringBackend::start_receive(uint32_t id) {
  Record& rec = shard_.record(id);
  if ((rec.io & (io::kArmed | io::kStarved | io::kClosing)) != 0) return;
  Ring& r = ring_of(id);
  if (r.provided == 0) top_up(r);
  if (r.provided == 0) {
    starve(r, id);
    return;
  }
  arm_receive(r, id);
}

void UringBackend::stop_receive(uint32_t id) {
  Record& rec = shard_.record(id);
  rec.io &= ~io::kStarved;  // its queue entry is skipped
  if ((rec.io & io::kArmed) == 0 || (rec.io & io::kCancelling) != 0) return;
  Ring& r = ring_of(id);
  io_uring_sqe* sqe = get_sqe(r);
  io_uring_prep_cancel64(sqe, pack(kOpRecv, rec.gen, id), 0);
  sqe->user_data = pack(kOpCancel, rec.gen, id);
  ++rec.ops;
  rec.io |= io::kCancelling;
}

void UringBackend::arm_receive(Ring& r, uint32_t id) {
  Record& rec = shard_.record(id);
  io_uring_sqe* sqe = get_sqe(r);
  io_uring_prep_recv_multishot(sqe, static_cast<int>(id - r.first_id), nullptr, 0, 0);
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
}

void UringBackend::starve(Ring& r, uint32_t id) {
  Record& rec = shard_.record(id);
  if ((rec.io & io::kStarved) != 0) return;
  rec.io |= io::kStarved;
  if (r.starved.empty()) ++starving_;
  r.starved.push_back(id);
}

void UringBackend::on_recv(Ring& r, uint32_t id, int res, unsigned flags) {
  if ((flags & IORING_CQE_F_BUFFER) != 0) {
    uint32_t chunk = flags >> IORING_CQE_BUFFER_SHIFT;
    --r.provided;
    if (r.taken_turn != turns_) {
      r.taken_turn = turns_;
      r.taken = 0;
      if (r.peak_taken == 0 && ++busy_rings_ > busy_rings_before_) clamp_shares();
    }
    r.peak_taken = std::max(r.peak_taken, ++r.taken);
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
  if ((rec.io & io::kClosing) != 0) {
    finish_close(id);
    return;
  }
  if (res == -ENOBUFS) {
    shard_.on_buffer_starved();
    r.starved_lately = true;
    r.share = std::min(
        share_cap(), std::max(r.share * 2, r.share + static_cast<uint32_t>(r.starved.size()) + 1));
    if (shard_.wants_receive(id)) starve(r, id);
    return;
  }
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
  Ring& r = *rings_[chunk_ring_[chunk]];
  // While another ring starves, chunks go to the shard's free list, where refill() hands
  // them to the starving ring; otherwise back to where they came from, up to its share.
  bool others_starve = starving_ > (r.starved.empty() ? 0u : 1u);
  if (!others_starve && r.provided + r.adds < r.share) {
    provide(r, chunk);
  } else {
    shard_.pool().give(chunk);
  }
}

void UringBackend::provide(Ring& r, uint32_t chunk) {
  BufferPool& pool = shard_.pool();
  io_uring_buf_ring_add(r.br, pool.address(chunk), pool.chunk_size(),
                        static_cast<unsigned short>(chunk), static_cast<int>(r.br_mask),
                        static_cast<int>(r.adds));
  chunk_ring_[chunk] = static_cast<uint16_t>(r.index);
  ++r.adds;
  if (!r.publish_queued) {
    r.publish_queued = true;
    to_publish_.push_back(&r);
  }
}

void UringBackend::publish(Ring& r) {
  if (r.adds == 0) return;
  io_uring_buf_ring_advance(r.br, static_cast<int>(r.adds));
  r.provided += r.adds;
  r.adds = 0;
}

void UringBackend::publish_all() {
  for (Ring* r : to_publish_) {
    r->publish_queued = false;
    publish(*r);
  }
  to_publish_.clear();
}

void UringBackend::top_up(Ring& r) {
  BufferPool& pool = shard_.pool();
  uint32_t chunk;
  while (r.provided + r.adds < r.share && pool.take(chunk)) provide(r, chunk);
  publish(r);
}

// Gives starving rings chunks from the shard's free list and re-arms their starved
// connections, one per chunk provided, oldest first. The free list is dealt out a chunk to
// each starving ring in turn: filled in ring order, the first ring (its share grown by its
// own ENOBUFS) would take it all while the others starve, and two busy rings would take
// turns at an ENOBUFS storm.
void UringBackend::refill() {
  more_starved_ = false;
  publish_all();
  if (starving_ == 0) return;
  hungry_.clear();
  for (auto& owned : rings_) {
    if (!owned->starved.empty()) hungry_.push_back(owned.get());
  }
  BufferPool& pool = shard_.pool();
  for (bool gave = true; gave && pool.free_count() > 0;) {
    gave = false;
    for (Ring* r : hungry_) {
      uint32_t chunk;
      if (r->provided + r->adds < r->share && pool.take(chunk)) {
        provide(*r, chunk);
        gave = true;
      }
    }
  }
  for (Ring* r : hungry_) {
    publish(*r);
    if (r->provided == 0 && pool.free_count() == 0 && reclaim_for(*r)) top_up(*r);
    uint32_t budget = r->provided;
    while (budget > 0 && !r->starved.empty()) {
      uint32_t id = r->starved.front();
      r->starved.pop_front();
      Record& rec = shard_.record(id);
      if ((rec.io & io::kStarved) == 0) continue;
      rec.io &= ~io::kStarved;
      if ((rec.io & (io::kArmed | io::kClosing)) != 0 || !shard_.wants_receive(id)) continue;
      arm_receive(*r, id);
      --budget;
    }
    // One connection per chunk per turn, so a ring with few chunks does not turn a long
    // queue into a storm of ENOBUFS; the rest go next turn, without waiting for a completion
    // (the ones just armed may be idle and never complete).
    if (!r->starved.empty() && r->provided > 0) more_starved_ = true;
    if (r->starved.empty()) --starving_;
  }
}

// A ring starves while the shard's free list is empty: take back the chunks a quiet ring
// holds. Its buffer ring is unregistered, what the kernel had not consumed returns to the
// free list, and an empty ring is registered in its place; its connections, if data comes,
// see ENOBUFS and wait their turn like everyone else. Safe because with DEFER_TASKRUN the
// kernel picks buffers only inside our own io_uring_enter, and we hold every completion.
bool UringBackend::reclaim_for(const Ring& hungry) {
  Ring* victim = nullptr;
  for (auto& owned : rings_) {
    Ring& r = *owned;
    if (&r == &hungry || !r.starved.empty() || r.provided + r.adds == 0) continue;
    if (io_uring_cq_ready(&r.ring) > 0 || (sq_flags(r) & IORING_SQ_CQ_OVERFLOW) != 0) continue;
    if (victim == nullptr || r.provided > victim->provided) victim = &r;
  }
  if (victim == nullptr) return false;
  publish(*victim);
  if (io_uring_unregister_buf_ring(&victim->ring, 0) < 0) return false;
  uint16_t tail = IO_URING_READ_ONCE(victim->br->tail);
  for (uint32_t i = 0; i < victim->provided; ++i) {
    uint32_t index = (static_cast<uint32_t>(tail) - victim->provided + i) & victim->br_mask;
    shard_.pool().give(victim->br->bufs[index].bid);
  }
  victim->provided = 0;
  io_uring_buf_ring_init(victim->br);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(victim->br);
  reg.ring_entries = br_entries_;
  reg.bgid = 0;
  int rc = io_uring_register_buf_ring(&victim->ring, &reg, 0);
  if (rc < 0)
    throw std::runtime_error(std::string("io_uring re-register buffer ring: ") +
                             std::strerror(-rc));
  victim->share = share_floor();
  ++reclaims_;
  return true;
}

// The most a ring may hold while `busy` rings take chunks: an equal part of the slice. Shares
// that could each grow to the whole slice let whichever busy ring was not starving at the
// moment take back every chunk as its reserve while the other starved, and the two took turns.
uint32_t UringBackend::share_cap() const {
  uint32_t busy = std::max({1u, busy_rings_, busy_rings_before_});
  return std::max(share_floor(), chunks_ / busy);
}

// What a ring starts with (after ring 0), and the least decay leaves it.
uint32_t UringBackend::share_floor() const {
  return std::max(kMinRingShare, chunks_ / 16);
}

// One more ring became busy: no ring keeps more than its part, from now on.
void UringBackend::clamp_shares() {
  uint32_t cap = share_cap();
  for (auto& r : rings_) r->share = std::min(r->share, cap);
}

// Once a second, a ring that did not starve gives up a quarter of its share, but not below
// twice the most chunks the kernel took from it in one loop turn (its bursts), and no ring
// keeps more than share_cap().
void UringBackend::decay_shares() {
  if (rings_.size() < 2) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_decay_ < std::chrono::seconds(1)) return;
  last_decay_ = now;
  busy_rings_before_ = busy_rings_;
  busy_rings_ = 0;
  uint32_t cap = share_cap();
  for (auto& r : rings_) {
    uint32_t keep = std::min(cap, std::max(share_floor(), 2 * r->peak_taken));
    if (r->share > cap) {
      r->share = cap;
    } else if (!r->starved_lately && r->share > keep) {
      r->share = std::max(keep, r->share - r->share / 4);
    }
    r->starved_lately = false;
    r->peak_taken = 0;
  }
}

}  // namespace myriad::detail::uring
