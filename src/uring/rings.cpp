// The io_uring backend's ring set: adding rings as the previous ones fill, the loop's wait
// (poll), and the wake-ups between rings. Ring 0 is where the shard sleeps; every other ring
// signals the shard's eventfd. Hot rings (used lately) are looked at every busy turn with their
// signalling off; cold ones always signal (see uring_backend.cpp's header for why no wakeup is
// lost and why a busy turn costs nothing per cold ring).
#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "uring/uring_backend.hpp"

namespace myriad::detail::uring {

void UringBackend::poll(int64_t timeout_ns) {
  // Chunks released since the last turn (timers, offload results) reach starved rings now,
  // before the shard can sleep on them.
  refill();
  if (more_starved_) timeout_ns = 0;
  if (!event_armed_) arm_event();
  bool sleep = timeout_ns != 0 && !hot_work_pending();
  // Before sleeping, rings that completed something last time are entered once more: the
  // kernel may have kept deferred work back (see reap()) without flagging it.
  bool leftovers = false;
  if (sleep && (rings_[0]->maybe_more || std::any_of(hot_.begin(), hot_.end(), [](const Ring* r) {
                  return r->maybe_more;
                }))) {
    sleep = false;
    leftovers = true;
  }
  if (sleep && !hot_.empty()) {
    // What the hot rings queued must reach the kernel before we block on ring 0 (only hot
    // rings have queued anything: get_sqe() heats a ring).
    for (Ring* r : hot_) {
      if (io_uring_sq_ready(&r->ring) > 0) io_uring_submit(&r->ring);
    }
    // Let the hot rings wake us too (cold ones always can), then look at them once more:
    // work that came before this point is seen here, work after it signals the eventfd.
    for (Ring* r : hot_) set_signalling(*r, true);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (hot_work_pending()) {
      sleep = false;
      for (Ring* r : hot_) set_signalling(*r, false);
    }
  }
  Ring& main = *rings_[0];
  bool sweep = false;
  if (sleep && rings_.size() > 1 && (timeout_ns < 0 || timeout_ns > kSweepNs)) {
    timeout_ns = kSweepNs;
    sweep = true;
  }
  if (sleep) {
    io_uring_cqe* cqe = nullptr;
    if (timeout_ns > 0) {
      __kernel_timespec ts{};
      ts.tv_sec = timeout_ns / 1'000'000'000;
      ts.tv_nsec = timeout_ns % 1'000'000'000;
      clear_taskrun(main);
      io_uring_submit_and_wait_timeout(&main.ring, &cqe, 1, &ts, nullptr);
    } else {
      clear_taskrun(main);
      io_uring_submit_and_wait(&main.ring, 1);
    }
    for (Ring* r : hot_) set_signalling(*r, false);  // awake: they are looked at anyway
    if (sweep && !ring_has_work(main) && io_uring_cq_ready(&main.ring) == 0) sweep_rings();
  } else if (io_uring_sq_ready(&main.ring) > 0 || ring_has_work(main) ||
             (leftovers && main.maybe_more)) {
    // Busy: enter a ring only if it has something to submit or to complete.
    clear_taskrun(main);
    io_uring_submit_and_get_events(&main.ring);
  }
  reap(main);
  // Busy turns look at ring 0 and the hot rings (those used lately); at every ring only when
  // the eventfd fired (a cold ring got work, or another thread posted), and rarely otherwise.
  if (rings_.size() > 1 && (scan_cold_ || ++turns_since_scan_ >= kScanEvery)) scan_all();
  bool quiet = false;
  for (std::size_t i = 0; i < hot_.size(); ++i) {  // indexed: reaping may heat more rings
    Ring& r = *hot_[i];
    if (!ring_has_work(r) && io_uring_sq_ready(&r.ring) == 0 && !(leftovers && r.maybe_more)) {
      if (++r.quiet_turns > kQuietTurns) quiet = true;
      continue;
    }
    r.quiet_turns = 0;
    clear_taskrun(r);
    io_uring_submit_and_get_events(&r.ring);
    reap(r);
  }
  if (quiet) drop_quiet();
  refill();
  shares_.end_turn(shard_.loop_now());
}

void UringBackend::close_all() {
  for (auto& r : rings_) {
    if (!r->initialized) continue;
    io_uring_queue_exit(&r->ring);  // closes every direct descriptor of the ring
    r->initialized = false;
    r->buffers.destroy();
  }
}

io_uring_sqe* UringBackend::get_sqe(Ring& r) {
  heat(r);  // its submission and completions are seen to from now on
  io_uring_sqe* sqe = io_uring_get_sqe(&r.ring);
  while (sqe == nullptr) {  // the submission queue is full: hand it to the kernel now
    io_uring_submit(&r.ring);
    sqe = io_uring_get_sqe(&r.ring);
  }
  return sqe;
}

// Clears IORING_SQ_TASKRUN just before an io_uring_enter that runs the ring's deferred work.
// The kernel sets the flag after queueing work and clears it when it starts running work, so
// the two can interleave and leave the flag set over an empty list; nothing clears it then
// until new work comes, and a loop that trusts it enters the ring for nothing every turn (a
// shard holding idle connections spun at 100% of a CPU that way). Clearing it here, with the
// enter right after, loses nothing: work queued before the clear runs in this enter, work
// queued after it sets the flag again.
void UringBackend::clear_taskrun(Ring& r) {
  __atomic_fetch_and(r.ring.sq.kflags, ~static_cast<unsigned>(IORING_SQ_TASKRUN), __ATOMIC_SEQ_CST);
}

bool UringBackend::ring_has_work(const Ring& r) {
  return (sq_flags(r) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) != 0 ||
         io_uring_cq_ready(&r.ring) > 0;
}

bool UringBackend::hot_work_pending() const {
  if (ring_has_work(*rings_[0])) return true;
  for (const Ring* r : hot_) {
    if (ring_has_work(*r)) return true;
  }
  return false;
}

// Whether ring r (> 0) signals the shard's eventfd: always when cold, only while the shard
// sleeps when hot.
void UringBackend::set_signalling(Ring& r, bool on) {
  unsigned* flags = r.ring.cq.kflags;
  unsigned value = IO_URING_READ_ONCE(*flags);
  value = on ? (value & ~IORING_CQ_EVENTFD_DISABLED) : (value | IORING_CQ_EVENTFD_DISABLED);
  IO_URING_WRITE_ONCE(*flags, value);
}

// Enters every ring but ring 0 once (after a quiet sleep): whatever completes there was
// missed, whether the ring was cold or hot.
void UringBackend::sweep_rings() {
  // A connection can also wait in a listener's backlog unseen, when its (exclusive) wakeup
  // went to an accept being cancelled as the listener moved to the next ring: a plain accept
  // takes it (see accept_once).
  for (std::size_t i = 0; i < listeners_.size(); ++i) accept_once(static_cast<uint16_t>(i));
  for (std::size_t k = 1; k < rings_.size(); ++k) {
    Ring& r = *rings_[k];
    clear_taskrun(r);
    io_uring_get_events(&r.ring);
    if (reap(r) > 0) {
      shard_.on_stray_wakeup();
      heat(r);
    }
  }
}

// Looks at every ring; those with work become hot. Returns whether any had work.
bool UringBackend::scan_all() {
  scan_cold_ = false;
  turns_since_scan_ = 0;
  bool any = ring_has_work(*rings_[0]);
  for (std::size_t k = 1; k < rings_.size(); ++k) {
    Ring& r = *rings_[k];
    if (!ring_has_work(r)) continue;
    any = true;
    heat(r);
  }
  return any;
}

// A hot ring is looked at every busy turn, so it need not signal while the shard is awake.
void UringBackend::heat(Ring& r) {
  if (r.index == 0 || r.hot) return;
  r.hot = true;
  r.quiet_turns = 0;
  set_signalling(r, false);
  hot_.push_back(&r);
}

// Rings quiet for a while stop being looked at every turn and signal again: signalling is
// turned on first and the ring looked at after, so work that came in between is not missed.
void UringBackend::drop_quiet() {
  std::size_t kept = 0;
  for (Ring* r : hot_) {
    bool keep = r->quiet_turns <= kQuietTurns || r->maybe_more || io_uring_sq_ready(&r->ring) > 0;
    if (!keep) {
      set_signalling(*r, true);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (ring_has_work(*r)) {
        set_signalling(*r, false);
        keep = true;
      }
    }
    if (keep) {
      hot_[kept++] = r;
    } else {
      r->hot = false;
    }
  }
  hot_.resize(kept);
}

void UringBackend::add_ring() {
  auto owned = std::make_unique<Ring>();
  Ring& r = *owned;
  r.index = static_cast<uint32_t>(rings_.size());
  r.first_id = r.index * slots_;
  io_uring_params p{};
  p.flags = choice_.ring_flags | IORING_SETUP_CQSIZE;
  p.cq_entries = kCqEntries;
  int rc = io_uring_queue_init_params(kSqEntries, &r.ring, &p);
  if (rc < 0) throw std::runtime_error(std::string("io_uring_setup: ") + std::strerror(-rc));
  r.initialized = true;
  rings_.push_back(std::move(owned));
  if (choice_.register_ring_fd) io_uring_register_ring_fd(&r.ring);
  rc = io_uring_register_files_sparse(&r.ring, slots_);
  if (rc < 0) {
    throw std::runtime_error("io_uring register " + std::to_string(slots_) +
                             " direct descriptors: " + std::strerror(-rc));
  }
  r.buffers.create(r.ring, br_entries_);
  if (r.index > 0) {
    rc = io_uring_register_eventfd(&r.ring, event_fd_);
    if (rc < 0)
      throw std::runtime_error(std::string("io_uring register eventfd: ") + std::strerror(-rc));
    heat(r);  // the shard is awake while it adds a ring: hot, not signalling (see the header)
  }
  uint32_t share_index = shares_.add_ring();
  assert(share_index == r.index);
  (void)share_index;
  top_up(r);
}

// The lowest ring with room for one more connection, adding a ring if all are full.
Ring* UringBackend::ring_with_room() {
  for (auto& r : rings_) {
    if (r->used + margin() < slots_) return r.get();
  }
  if (rings_.size() >= max_rings_) return nullptr;
  std::size_t before = rings_.size();
  try {
    add_ring();
  } catch (const std::exception&) {
    // Each ring is a descriptor in the process table (io_uring_setup fails with EMFILE at
    // RLIMIT_NOFILE) and needs memory. Without a new ring the shard goes on with the rings it
    // has: an accept armed on a full one has the kernel close each new connection (ENFILE,
    // counted), so none is left hanging in the backlog and the shard keeps serving. A ring
    // half set up is undone (its share was not added yet: that is add_ring's last step).
    if (rings_.size() > before) {
      io_uring_queue_exit(&rings_.back()->ring);
      rings_.back()->buffers.destroy();
      rings_.pop_back();
    }
  }
  return rings_.back().get();
}

void UringBackend::arm_event() {
  Ring& r = *rings_[0];
  io_uring_sqe* sqe = get_sqe(r);
  io_uring_prep_read(sqe, event_fd_, &event_value_, sizeof(event_value_), 0);
  sqe->user_data = pack(kOpEvent, 0, 0);
  event_armed_ = true;
}

}  // namespace myriad::detail::uring
