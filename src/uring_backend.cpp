// The io_uring backend.
//
// Practices it follows, and why:
// - Connections live in direct (fixed) descriptors: accept and socket allocate a slot in a
//   sparse fixed-file table, so no connection enters the process fd table and no operation pays
//   for fget/fput. RLIMIT_NOFILE caps each ring's table when it is registered, so a shard drives
//   as many rings as its capacity needs (20,000 slots each here), created when the previous ones
//   fill. Connection id = ring * slots_per_ring + slot.
// - Ring 0 is where the shard sleeps. Every other ring signals the shard's eventfd, which ring 0
//   reads. The rings in use lately ("hot") are looked at every busy turn, so their signalling is
//   disabled (IORING_CQ_EVENTFD_DISABLED) while the shard is awake and re-enabled, with a
//   re-check, just before it sleeps; a ring leaves the hot set the same way (enable, then
//   re-check). Cold rings always signal, so work on one of them wakes the shard or, while it is
//   awake, makes it look at every ring once. No wakeup is lost, and neither a busy turn nor a
//   sleep costs anything per cold ring: with a million idle connections on 50 rings, the loop
//   pays for the few rings that carry traffic. As a safety net, a sleep lasts at most 100 ms
//   and one that ends with nothing to do enters every other ring once (stray_wakeups counts
//   what that finds). A multishot poll would not do: the kernel
//   downgrades a poll on an io_uring-signalled eventfd to one-shot.
// - SINGLE_ISSUER + DEFER_TASKRUN (+ TASKRUN_FLAG so a ring with pending work shows it in shared
//   memory), probed once, older flags tried on EINVAL. One io_uring_enter per ring per loop turn
//   submits everything queued in that turn and waits; the ring fd is registered.
// - Multishot accept and multishot receive. Receive buffers come from a provided buffer ring fed
//   from the shard's slice of the pool, so an idle connection holds no buffer: the kernel picks a
//   chunk when data arrives. A chunk goes back to the ring it came from when the handler lets go
//   of it, or to the shard's free list when that ring holds its share.
// - ENOBUFS is flow control: the receive ended because the ring ran dry; the connection waits in
//   its ring's starved queue and is re-armed, first come first served, as chunks come back. The
//   ring's share grows while it starves and decays when it does not (never below twice its
//   largest burst, never above an equal part of the slice among the rings in use); chunks freed
//   while several rings starve are dealt out to them in turn. The socket keeps the bytes.
// - An operation owns its memory until its last completion: a record is not reused, and its
//   output queue not freed, until every operation on it has completed (ops counter); closing is
//   cancel-all-on-descriptor, wait for the completions, then close the direct descriptor.
// - Completion queues are four times the submission queues and overflow is flushed, not lost
//   (IORING_FEAT_NODROP): the loop reaps until the ring has no deferred work or overflow left.
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend.hpp"
#include "shard_impl.hpp"

#ifndef IORING_ACCEPT_DONTWAIT
#define IORING_ACCEPT_DONTWAIT (1U << 1)  // Linux 6.10: complete with -EAGAIN, never wait
#endif

namespace myriad::detail {
namespace {

// Not in liburing 2.3's headers; stable kernel ABI values.
#ifndef IORING_CQ_EVENTFD_DISABLED
#define IORING_CQ_EVENTFD_DISABLED (1U << 0)
#endif
#ifndef IORING_SQ_TASKRUN
#define IORING_SQ_TASKRUN (1U << 2)
#endif
constexpr uint32_t kSocketCmdSetsockopt = 3;  // SOCKET_URING_OP_SETSOCKOPT (Linux 6.7)

constexpr unsigned kSqEntries = 1024;
constexpr unsigned kCqEntries = 4 * kSqEntries;
// Slots left free in a ring before accepting moves to the next one: a multishot accept that
// finds the table full loses that connection (the kernel closes it), and the shard sees accepts
// only between rounds of deferred work: at most about 20 task-work items of up to 32 accepts
// each, 640, arrive before it can move on. So 1,024 on full-size rings: no connection is lost.
// (accept_margin() in backend.hpp: 1,024, or a quarter of a small ring.)
// Chunks a ring keeps provided when it is one of several and not busy.
constexpr uint32_t kMinRingShare = 8;
// Busy turns a hot ring may sit idle before it is no longer looked at every turn.
constexpr uint32_t kQuietTurns = 64;
// Busy turns between looks at every ring: a safety net only, since a cold ring signals the
// eventfd when work comes (see the header).
constexpr uint32_t kScanEvery = 256;
// With several rings, a sleep lasts at most this long; a sleep that ends with nothing to do
// enters every ring once. A safety net against a wakeup that does not come (none is
// expected: see the header; Counters::stray_wakeups counts what it finds).
constexpr int64_t kSweepNs = 100'000'000;
// Chunks one connection's multishot receive may fill in one pass over the ring's work.
constexpr uint32_t kChunksPerPass = 4;

enum Op : uint8_t {
  kOpAccept = 1,
  kOpRecv,
  kOpSend,
  kOpCancel,
  kOpClose,
  kOpShutdown,
  kOpSocket,
  kOpConnect,
  kOpSockopt,
  kOpEvent,
  kOpCancelAccept,
  kOpAcceptOnce,
};

uint64_t pack(Op op, uint32_t high16, uint32_t low32) {
  return (uint64_t{op} << 56) | (uint64_t{high16 & 0xffff} << 32) | low32;
}
Op op_of(uint64_t ud) {
  return static_cast<Op>(ud >> 56);
}
uint32_t high_of(uint64_t ud) {
  return static_cast<uint32_t>(ud >> 32) & 0xffff;
}
uint32_t low_of(uint64_t ud) {
  return static_cast<uint32_t>(ud);
}

namespace io {
constexpr uint8_t kArmed = 1 << 0;       // a multishot receive is in flight
constexpr uint8_t kCancelling = 1 << 1;  // its cancel is in flight
constexpr uint8_t kStarved = 1 << 2;     // waiting in its ring's starved queue
constexpr uint8_t kClosing = 1 << 3;
constexpr uint8_t kCloseSent = 1 << 4;
constexpr uint8_t kSending = 1 << 5;  // a send is in flight (one at a time)
}  // namespace io

void prep_setsockopt(io_uring_sqe* sqe, uint32_t slot, int level, int name, const void* value,
                     uint32_t length) {
  io_uring_prep_rw(IORING_OP_URING_CMD, sqe, static_cast<int>(slot), nullptr, 0, 0);
  sqe->off = kSocketCmdSetsockopt;  // cmd_op shares the off field
  sqe->addr = static_cast<uint32_t>(level) | (uint64_t{static_cast<uint32_t>(name)} << 32);
  sqe->file_index = length;  // optlen
  sqe->addr3 = reinterpret_cast<uint64_t>(value);
  sqe->flags |= IOSQE_FIXED_FILE;
}

const int kOne = 1;
const linger kResetLinger{1, 0};

struct Ring {
  io_uring ring{};
  bool initialized = false;
  uint32_t index = 0;
  uint32_t first_id = 0;
  uint32_t used = 0;  // slots holding a connection (or about to)
  io_uring_buf_ring* br = nullptr;
  std::size_t br_bytes = 0;
  uint32_t br_mask = 0;
  uint32_t provided = 0;  // chunks in the buffer ring not yet consumed by the kernel
  uint32_t adds = 0;      // chunks added to the buffer ring but not yet published
  uint32_t share = 0;     // how many chunks this ring may hold
  bool starved_lately = false;
  uint64_t taken_turn = 0;  // the loop turn `taken` counts
  uint32_t taken = 0;       // chunks the kernel took from this ring in that turn
  uint32_t peak_taken = 0;  // the most in one turn since the last decay
  std::deque<uint32_t> starved;
  bool hot = false;          // checked every turn, eventfd signalling off (rings > 0)
  uint32_t quiet_turns = 0;  // busy turns in a row with nothing to do
  bool publish_queued = false;
  bool maybe_more = false;  // completed something last time: deferred work may remain
};

class UringBackend final : public Backend {
 public:
  UringBackend(ShardImpl& shard, const BackendChoice& choice, uint32_t capacity, int event_fd)
      : shard_(shard),
        choice_(choice),
        slots_(choice.slots_per_ring),
        max_rings_((capacity + choice.slots_per_ring - 1) / choice.slots_per_ring),
        event_fd_(event_fd),
        socket_commands_(choice.socket_commands),
        chunk_ring_(shard.pool().count()) {
    chunks_ = shard.pool().count();
    br_entries_ = 1;
    while (br_entries_ < chunks_) br_entries_ <<= 1;
    rings_.reserve(max_rings_);
    add_ring();
    last_decay_ = std::chrono::steady_clock::now();
  }

  ~UringBackend() override { close_all(); }

  uint32_t capacity() const override { return max_rings_ * slots_; }

  std::string describe() const override {
    return "io_uring, " + std::to_string(rings_.size()) + " of up to " +
           std::to_string(max_rings_) + " rings x " + std::to_string(slots_) +
           " direct descriptors";
  }

  // ---- Listening ----

  void add_listener(int fd, uint16_t listener) override {
    if (listeners_.size() <= listener) listeners_.resize(listener + 1);
    listeners_[listener] = Listener{fd, true, -1, 0};
    arm_accept(listener);
  }

  void stop_accepting() override {
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
      Listener& l = listeners_[i];
      if (!l.active) continue;
      l.active = false;
      if (l.ring >= 0) {
        cancel_accept(static_cast<uint16_t>(i));
      }
    }
  }

  // ---- Receiving ----

  void start_receive(uint32_t id) override {
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

  void stop_receive(uint32_t id) override {
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

  // ---- Sending and closing ----

  void send(uint32_t id, msghdr* msg) override {
    Record& rec = shard_.record(id);
    Ring& r = ring_of(id);
    io_uring_sqe* sqe = get_sqe(r);
    uint32_t slot = id - r.first_id;
    if (msg->msg_iovlen == 1) {
      io_uring_prep_send(sqe, static_cast<int>(slot), msg->msg_iov[0].iov_base,
                         msg->msg_iov[0].iov_len, MSG_NOSIGNAL);
    } else {
      io_uring_prep_sendmsg(sqe, static_cast<int>(slot), msg, MSG_NOSIGNAL);
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    sqe->user_data = pack(kOpSend, rec.gen, id);
    ++rec.ops;
    rec.io |= io::kSending;
  }

  void shutdown_write(uint32_t id) override {
    Record& rec = shard_.record(id);
    Ring& r = ring_of(id);
    io_uring_sqe* sqe = get_sqe(r);
    io_uring_prep_shutdown(sqe, static_cast<int>(id - r.first_id), SHUT_WR);
    sqe->flags |= IOSQE_FIXED_FILE;
    sqe->user_data = pack(kOpShutdown, rec.gen, id);
    ++rec.ops;
  }

  void close(uint32_t id, bool reset) override {
    Record& rec = shard_.record(id);
    if ((rec.io & io::kClosing) != 0) return;
    rec.io |= io::kClosing;
    rec.io &= ~io::kStarved;
    Ring& r = ring_of(id);
    uint32_t slot = id - r.first_id;
    if (reset && socket_commands_) {
      io_uring_sqe* sqe = get_sqe(r);
      prep_setsockopt(sqe, slot, SOL_SOCKET, SO_LINGER, &kResetLinger, sizeof(kResetLinger));
      sqe->user_data = pack(kOpSockopt, rec.gen, id);
      ++rec.ops;
    }
    // What is in flight that we know of: the receive and its cancel (stop_receive() came first),
    // a send, the setsockopt just queued. Those are cancelled by their user_data, a hash lookup
    // in the kernel; cancelling by descriptor walks every request of the ring, so closing n
    // connections that way costs O(n^2) (a reconnect storm of 100,000 spent its time there).
    // Anything else (a connect, a shutdown, a second send): by descriptor, as before.
    uint32_t known = ((rec.io & io::kArmed) != 0) + ((rec.io & io::kCancelling) != 0) +
                     ((rec.io & io::kSending) != 0) + (reset && socket_commands_ ? 1u : 0u);
    if (rec.ops > known) {
      io_uring_sqe* sqe = get_sqe(r);
      io_uring_prep_cancel_fd(sqe, static_cast<int>(slot),
                              IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD_FIXED);
      sqe->user_data = pack(kOpCancel, rec.gen, id);
      ++rec.ops;
    } else {
      if ((rec.io & io::kArmed) != 0 && (rec.io & io::kCancelling) == 0) {
        io_uring_sqe* sqe = get_sqe(r);
        io_uring_prep_cancel64(sqe, pack(kOpRecv, rec.gen, id), 0);
        sqe->user_data = pack(kOpCancel, rec.gen, id);
        ++rec.ops;
        rec.io |= io::kCancelling;
      }
      if ((rec.io & io::kSending) != 0) {
        io_uring_sqe* sqe = get_sqe(r);
        io_uring_prep_cancel64(sqe, pack(kOpSend, rec.gen, id), 0);
        sqe->user_data = pack(kOpCancel, rec.gen, id);
        ++rec.ops;
      }
    }
    finish_close(id);
  }

  // ---- Connecting ----

  void connect(uint32_t token, const Address& to) override {
    Ring* r = ring_with_room();
    if (r == nullptr) {
      shard_.post_task([this, token] { shard_.on_connect_failed(token, ENFILE); });
      return;
    }
    ++r->used;
    io_uring_sqe* sqe = get_sqe(*r);
    io_uring_prep_socket_direct_alloc(sqe, to.family(), SOCK_STREAM, 0, 0);
    sqe->user_data = pack(kOpSocket, r->index, token);
    connect_to_[token] = to;
  }

  // ---- Buffers ----

  void recycle(uint32_t chunk) override {
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

  // ---- The loop's wait ----

  void poll(int64_t timeout_ns) override {
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
    decay_shares();
    ++turns_;
  }

  void close_all() override {
    for (auto& r : rings_) {
      if (!r->initialized) continue;
      io_uring_queue_exit(&r->ring);  // closes every direct descriptor of the ring
      r->initialized = false;
      if (r->br != nullptr) ::munmap(r->br, r->br_bytes);
      r->br = nullptr;
    }
  }

 private:
  struct Listener {
    int fd = -1;
    bool active = false;
    int ring = -1;  // where its multishot accept is armed; -1: not armed
    uint32_t errors = 0;
    bool once_pending = false;  // a plain accept (accept_once) is in flight
  };

  Ring& ring_of(uint32_t id) { return *rings_[id / slots_]; }
  // Slots a ring keeps free before accepting moves on (a quarter of a small ring).
  uint32_t margin() const { return accept_margin(slots_); }

  io_uring_sqe* get_sqe(Ring& r) {
    heat(r);  // its submission and completions are seen to from now on
    io_uring_sqe* sqe = io_uring_get_sqe(&r.ring);
    while (sqe == nullptr) {  // the submission queue is full: hand it to the kernel now
      io_uring_submit(&r.ring);
      sqe = io_uring_get_sqe(&r.ring);
    }
    return sqe;
  }

  static unsigned sq_flags(const Ring& r) { return IO_URING_READ_ONCE(*r.ring.sq.kflags); }

  // Clears IORING_SQ_TASKRUN just before an io_uring_enter that runs the ring's deferred work.
  // The kernel sets the flag after queueing work and clears it when it starts running work, so
  // the two can interleave and leave the flag set over an empty list; nothing clears it then
  // until new work comes, and a loop that trusts it enters the ring for nothing every turn (a
  // shard holding idle connections spun at 100% of a CPU that way). Clearing it here, with the
  // enter right after, loses nothing: work queued before the clear runs in this enter, work
  // queued after it sets the flag again.
  static void clear_taskrun(Ring& r) {
    __atomic_fetch_and(r.ring.sq.kflags, ~static_cast<unsigned>(IORING_SQ_TASKRUN),
                       __ATOMIC_SEQ_CST);
  }

  static bool ring_has_work(const Ring& r) {
    return (sq_flags(r) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) != 0 ||
           io_uring_cq_ready(&r.ring) > 0;
  }

  bool hot_work_pending() const {
    if (ring_has_work(*rings_[0])) return true;
    for (const Ring* r : hot_) {
      if (ring_has_work(*r)) return true;
    }
    return false;
  }

  // Whether ring r (> 0) signals the shard's eventfd: always when cold, only while the shard
  // sleeps when hot.
  static void set_signalling(Ring& r, bool on) {
    unsigned* flags = r.ring.cq.kflags;
    unsigned value = IO_URING_READ_ONCE(*flags);
    value = on ? (value & ~IORING_CQ_EVENTFD_DISABLED) : (value | IORING_CQ_EVENTFD_DISABLED);
    IO_URING_WRITE_ONCE(*flags, value);
  }

  // Enters every ring but ring 0 once (after a quiet sleep): whatever completes there was
  // missed, whether the ring was cold or hot.
  void sweep_rings() {
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
  bool scan_all() {
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
  void heat(Ring& r) {
    if (r.index == 0 || r.hot) return;
    r.hot = true;
    r.quiet_turns = 0;
    set_signalling(r, false);
    hot_.push_back(&r);
  }

  // Rings quiet for a while stop being looked at every turn and signal again: signalling is
  // turned on first and the ring looked at after, so work that came in between is not missed.
  void drop_quiet() {
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

  void add_ring() {
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
    r.br_bytes = std::size_t{br_entries_} * sizeof(io_uring_buf);
    void* mem =
        ::mmap(nullptr, r.br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw std::runtime_error("buffer ring: out of memory");
    r.br = static_cast<io_uring_buf_ring*>(mem);
    r.br_mask = br_entries_ - 1;
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(r.br);
    reg.ring_entries = br_entries_;
    reg.bgid = 0;
    rc = io_uring_register_buf_ring(&r.ring, &reg, 0);
    if (rc < 0)
      throw std::runtime_error(std::string("io_uring register buffer ring: ") + std::strerror(-rc));
    io_uring_buf_ring_init(r.br);
    if (r.index > 0) {
      rc = io_uring_register_eventfd(&r.ring, event_fd_);
      if (rc < 0)
        throw std::runtime_error(std::string("io_uring register eventfd: ") + std::strerror(-rc));
      heat(r);  // the shard is awake while it adds a ring: hot, not signalling (see the header)
    }
    // The first ring may hold the whole slice; later ones start small and grow on demand.
    r.share = r.index == 0 ? chunks_ : std::min(chunks_, share_floor());
    if (r.index > 0 && rings_[0]->share == chunks_)
      rings_[0]->share = std::max(kMinRingShare, chunks_ / 2);
    top_up(r);
  }

  // The lowest ring with room for one more connection, adding a ring if all are full.
  Ring* ring_with_room() {
    for (auto& r : rings_) {
      if (r->used + margin() < slots_) return r.get();
    }
    if (rings_.size() >= max_rings_) return nullptr;
    add_ring();
    return rings_.back().get();
  }

  void arm_event() {
    Ring& r = *rings_[0];
    io_uring_sqe* sqe = get_sqe(r);
    io_uring_prep_read(sqe, event_fd_, &event_value_, sizeof(event_value_), 0);
    sqe->user_data = pack(kOpEvent, 0, 0);
    event_armed_ = true;
  }

  void arm_accept(uint16_t index) {
    Listener& l = listeners_[index];
    if (!l.active || l.ring >= 0) return;
    Ring* r = ring_with_room();
    if (r == nullptr) return;  // full: re-armed when a slot frees
    io_uring_sqe* sqe = get_sqe(*r);
    io_uring_prep_multishot_accept_direct(sqe, l.fd, nullptr, nullptr, 0);
    sqe->user_data = pack(kOpAccept, r->index, index);
    l.ring = static_cast<int>(r->index);
  }

  void accept_once(uint16_t index) {
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

  void on_accept_once(uint32_t ring_index, uint16_t index, int res) {
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
  void adopt_accepted(Ring& r, int slot, uint16_t index) {
    ++r.used;
    uint32_t id = r.first_id + static_cast<uint32_t>(slot);
    Record& rec = shard_.record(id);
    rec.ops = 0;
    rec.io = 0;
    shard_.on_accepted(id, index);
  }

  void cancel_accept(uint16_t index) {
    Listener& l = listeners_[index];
    Ring& r = *rings_[static_cast<uint32_t>(l.ring)];
    io_uring_sqe* sqe = get_sqe(r);
    io_uring_prep_cancel64(sqe, pack(kOpAccept, r.index, index), 0);
    sqe->user_data = pack(kOpCancelAccept, r.index, index);
    l.ring = -1;
  }

  void arm_receive(Ring& r, uint32_t id) {
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

  void starve(Ring& r, uint32_t id) {
    Record& rec = shard_.record(id);
    if ((rec.io & io::kStarved) != 0) return;
    rec.io |= io::kStarved;
    if (r.starved.empty()) ++starving_;
    r.starved.push_back(id);
  }

  void finish_close(uint32_t id) {
    Record& rec = shard_.record(id);
    if ((rec.io & io::kClosing) == 0 || (rec.io & io::kCloseSent) != 0 || rec.ops != 0) return;
    Ring& r = ring_of(id);
    io_uring_sqe* sqe = get_sqe(r);
    io_uring_prep_close_direct(sqe, id - r.first_id);
    sqe->user_data = pack(kOpClose, rec.gen, id);
    ++rec.ops;
    rec.io |= io::kCloseSent;
  }

  // ---- Buffers ----

  void provide(Ring& r, uint32_t chunk) {
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

  void publish(Ring& r) {
    if (r.adds == 0) return;
    io_uring_buf_ring_advance(r.br, static_cast<int>(r.adds));
    r.provided += r.adds;
    r.adds = 0;
  }

  void publish_all() {
    for (Ring* r : to_publish_) {
      r->publish_queued = false;
      publish(*r);
    }
    to_publish_.clear();
  }

  void top_up(Ring& r) {
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
  void refill() {
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
  bool reclaim_for(const Ring& hungry) {
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
  uint32_t share_cap() const {
    uint32_t busy = std::max({1u, busy_rings_, busy_rings_before_});
    return std::max(share_floor(), chunks_ / busy);
  }

  // What a ring starts with (after ring 0), and the least decay leaves it.
  uint32_t share_floor() const { return std::max(kMinRingShare, chunks_ / 16); }

  // One more ring became busy: no ring keeps more than its part, from now on.
  void clamp_shares() {
    uint32_t cap = share_cap();
    for (auto& r : rings_) r->share = std::min(r->share, cap);
  }

  // Once a second, a ring that did not starve gives up a quarter of its share, but not below
  // twice the most chunks the kernel took from it in one loop turn (its bursts), and no ring
  // keeps more than share_cap().
  void decay_shares() {
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

  // ---- Completions ----

  // Handles what the ring completed. The kernel runs at most about 20 deferred items per
  // io_uring_enter and may keep the rest on a retry list without setting IORING_SQ_TASKRUN, so
  // a ring that completed anything may have more (maybe_more): busy turns pick it up with the
  // next work, and before sleeping the ring is entered once more, until an entry yields nothing.
  unsigned reap(Ring& r) {
    unsigned total = 0;
    for (int round = 0; round < 64; ++round) {
      unsigned head;
      unsigned seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&r.ring, head, cqe) {
        handle(r, cqe->user_data, cqe->res, cqe->flags);
        ++seen;
      }
      io_uring_cq_advance(&r.ring, seen);
      total += seen;
      if ((sq_flags(r) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) == 0) break;
      clear_taskrun(r);
      io_uring_get_events(&r.ring);
    }
    r.maybe_more = total > 0;
    return total;
  }

  void handle(Ring& r, uint64_t ud, int res, unsigned flags) {
    switch (op_of(ud)) {
      case kOpRecv:
        on_recv(r, low_of(ud), res, flags);
        break;
      case kOpSend: {
        uint32_t id = low_of(ud);
        --shard_.record(id).ops;
        shard_.record(id).io &= ~io::kSending;
        shard_.on_sent(id, res);
        finish_close(id);
        break;
      }
      case kOpAccept:
        on_accept(high_of(ud), static_cast<uint16_t>(low_of(ud)), res, flags);
        break;
      case kOpClose:
        on_close_done(r, low_of(ud));
        break;
      case kOpCancel: {
        uint32_t id = low_of(ud);
        Record& rec = shard_.record(id);
        --rec.ops;
        rec.io &= ~io::kCancelling;
        finish_close(id);
        break;
      }
      case kOpShutdown:
      case kOpSockopt: {
        uint32_t id = low_of(ud);
        if (op_of(ud) == kOpSockopt && (res == -EOPNOTSUPP || res == -EINVAL))
          socket_commands_ = false;
        --shard_.record(id).ops;
        finish_close(id);
        break;
      }
      case kOpSocket:
        on_socket(high_of(ud), low_of(ud), res);
        break;
      case kOpConnect: {
        uint32_t id = low_of(ud);
        Record& rec = shard_.record(id);
        --rec.ops;
        connect_to_.erase(id | ShardImpl::kPendingConnect);
        if ((rec.io & io::kClosing) == 0) shard_.on_connected(id, res);
        finish_close(id);
        break;
      }
      case kOpEvent:
        event_armed_ = false;
        scan_cold_ = true;  // a ring may have signalled just as we woke
        break;
      case kOpCancelAccept:
        break;
      case kOpAcceptOnce:
        on_accept_once(high_of(ud), static_cast<uint16_t>(low_of(ud)), res);
        break;
    }
  }

  void on_recv(Ring& r, uint32_t id, int res, unsigned flags) {
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
      r.share =
          std::min(share_cap(),
                   std::max(r.share * 2, r.share + static_cast<uint32_t>(r.starved.size()) + 1));
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

  void on_accept(uint32_t ring_index, uint16_t index, int res, unsigned flags) {
    Listener& l = listeners_[index];
    bool current = l.ring == static_cast<int>(ring_index);
    if (res >= 0) {
      Ring& r = *rings_[ring_index];
      adopt_accepted(r, res, index);
      l.errors = 0;
      if (current && (flags & IORING_CQE_F_MORE) != 0 && r.used + margin() >= slots_) {
        cancel_accept(index);  // this ring is nearly full: accept on the next one
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

  void on_socket(uint32_t ring_index, uint32_t token, int res) {
    Ring& r = *rings_[ring_index];
    auto it = connect_to_.find(token);
    Address to = it->second;
    connect_to_.erase(it);
    if (res < 0) {
      --r.used;
      shard_.on_connect_failed(token, -res);
      return;
    }
    uint32_t slot = static_cast<uint32_t>(res);
    uint32_t id = r.first_id + slot;
    Record& rec = shard_.record(id);
    rec.ops = 0;
    rec.io = 0;
    shard_.on_connect_slot(token, id);
    if (socket_commands_) {
      io_uring_sqe* sqe = get_sqe(r);
      prep_setsockopt(sqe, slot, IPPROTO_TCP, TCP_NODELAY, &kOne, sizeof(kOne));
      sqe->user_data = pack(kOpSockopt, rec.gen, id);
      ++rec.ops;
    }
    // The address must outlive the submission: it is kept until the connect completes.
    auto& stored = connect_to_[id | ShardImpl::kPendingConnect];
    stored = to;
    io_uring_sqe* sqe = get_sqe(r);
    io_uring_prep_connect(sqe, static_cast<int>(slot), stored.sockaddr_ptr(), stored.length());
    sqe->flags |= IOSQE_FIXED_FILE;
    sqe->user_data = pack(kOpConnect, rec.gen, id);
    ++rec.ops;
  }

  void on_close_done(Ring& r, uint32_t id) {
    Record& rec = shard_.record(id);
    rec.ops = 0;
    rec.io = 0;
    --r.used;
    shard_.on_closed(id);
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
      if (listeners_[i].active && listeners_[i].ring < 0) arm_accept(static_cast<uint16_t>(i));
    }
  }

  ShardImpl& shard_;
  BackendChoice choice_;
  uint32_t slots_;
  uint32_t max_rings_;
  int event_fd_;
  bool socket_commands_;
  uint32_t chunks_ = 0;
  uint32_t br_entries_ = 1;
  std::vector<std::unique_ptr<Ring>> rings_;
  std::vector<uint16_t> chunk_ring_;
  std::vector<Listener> listeners_;
  // Connect addresses: by token until the socket exists, then by (id | kPendingConnect).
  std::unordered_map<uint32_t, Address> connect_to_;
  bool accept_dontwait_ = true;     // IORING_ACCEPT_DONTWAIT works (see accept_once)
  uint64_t turns_ = 0;              // loop turns, for Ring::taken
  uint32_t busy_rings_ = 0;         // rings the kernel took chunks from since the last decay
  uint32_t busy_rings_before_ = 0;  // ... and in the second before
  uint32_t starving_ = 0;           // rings with connections waiting for chunks
  bool more_starved_ = false;       // refill left starved connections on rings that have chunks
  std::vector<Ring*> hot_;          // rings other than 0 looked at every busy turn
  uint32_t turns_since_scan_ = 0;
  bool scan_cold_ = false;  // the eventfd fired: look at the cold rings
  std::vector<Ring*> to_publish_;
  std::vector<Ring*> hungry_;  // refill's list of starving rings (kept to reuse its memory)
  uint64_t reclaims_ = 0;
  uint64_t event_value_ = 0;
  bool event_armed_ = false;
  std::chrono::steady_clock::time_point last_decay_;
};

// ---------------------------------------------------------------------------------------------
// Choosing at start-up

int read_io_uring_disabled() {
  std::ifstream in("/proc/sys/kernel/io_uring_disabled");
  int value = 0;
  if (in >> value) return value;
  return 0;
}

std::string setup_failure(int error) {
  std::string what = std::string("io_uring_setup failed: ") + std::strerror(error);
  if (error == EPERM) {
    int disabled = read_io_uring_disabled();
    if (disabled == 2) {
      return what +
             " (kernel.io_uring_disabled=2 turns io_uring off for everyone; fix: "
             "sysctl -w kernel.io_uring_disabled=0)";
    }
    if (disabled == 1) {
      return what +
             " (kernel.io_uring_disabled=1 allows only kernel.io_uring_group; fix: "
             "sysctl -w kernel.io_uring_disabled=0, or run in that group)";
    }
    return what +
           " (blocked by a seccomp filter, as Docker's default profile does; fix: run with "
           "a seccomp profile that allows io_uring_setup, io_uring_enter and "
           "io_uring_register)";
  }
  if (error == ENOSYS)
    return what + " (this kernel has no io_uring; myriad needs Linux 6.0 or later)";
  if (error == ENOMEM) return what + " (out of memory, or RLIMIT_MEMLOCK too low on an old kernel)";
  return what;
}

// Raises the soft RLIMIT_NOFILE to the hard one: each ring's direct-descriptor table is capped
// by it, and so is the epoll backend's capacity.
uint32_t raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  return static_cast<uint32_t>(std::min<rlim_t>(rl.rlim_cur, 1u << 20));
}

// Whether a multishot receive honours sqe->len (bytes per pass) and optlen (bytes in all):
// newer kernels end the receive once the total is reached; older ones reject len with EINVAL.
bool probe_receive_limits(io_uring& ring, void* br_memory) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return false;
  auto* br = static_cast<io_uring_buf_ring*>(br_memory);
  static char buffers[8][64];
  io_uring_buf_ring_init(br);
  for (int i = 0; i < 8; ++i)
    io_uring_buf_ring_add(br, buffers[i], 64, static_cast<unsigned short>(i), 7, i);
  io_uring_buf_ring_advance(br, 8);
  char data[256] = {};
  ssize_t wrote = ::write(sv[1], data, sizeof(data));
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_recv_multishot(sqe, sv[0], nullptr, 64, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = 0;
  sqe->file_index = 128;
  sqe->user_data = 7;
  io_uring_submit_and_wait(&ring, 1);
  bool ended = false, rejected = false;
  int received = 0;
  for (int round = 0; round < 4 && !ended && !rejected; ++round) {
    io_uring_cqe* cqe;
    __kernel_timespec ts{0, 50'000'000};
    if (io_uring_wait_cqe_timeout(&ring, &cqe, &ts) != 0) break;
    if (cqe->user_data == 7) {
      if (cqe->res < 0) rejected = true;
      if (cqe->res > 0) received += cqe->res;
      if ((cqe->flags & IORING_CQE_F_MORE) == 0) ended = true;
    }
    io_uring_cqe_seen(&ring, cqe);
  }
  ::close(sv[0]);
  ::close(sv[1]);
  (void)wrote;
  // Supported: it stopped by itself after the total, with bytes still unread.
  return ended && !rejected && received > 0 && received < 256;
}

}  // namespace

uint32_t fd_limit() {
  return raise_fd_limit();
}

BackendChoice choose_backend(BackendKind wanted) {
  uint32_t limit = raise_fd_limit();
  BackendChoice choice;
  if (wanted == BackendKind::kEpoll) {
    choice.kind = BackendKind::kEpoll;
    choice.reason = "chosen by configuration";
    choice.features = "edge-triggered";
    return choice;
  }
  std::string failure;
  const unsigned candidates[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
          IORING_SETUP_SUBMIT_ALL,
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
      IORING_SETUP_SUBMIT_ALL,
      0,
  };
  io_uring ring{};
  unsigned flags = 0;
  int rc = -EINVAL;
  io_uring_params p{};
  for (unsigned candidate : candidates) {
    p = io_uring_params{};
    p.flags = candidate | IORING_SETUP_CQSIZE;
    p.cq_entries = 64;
    rc = io_uring_queue_init_params(16, &ring, &p);
    if (rc == 0) {
      flags = candidate;
      break;
    }
    if (rc != -EINVAL) break;  // EINVAL: an older kernel, try fewer flags
  }
  if (rc != 0) {
    failure = setup_failure(-rc);
  } else {
    std::string missing;
    io_uring_probe* probe = io_uring_get_probe_ring(&ring);
    const std::pair<int, const char*> required[] = {
        {IORING_OP_ACCEPT, "accept"},       {IORING_OP_RECV, "recv"},
        {IORING_OP_SEND, "send"},           {IORING_OP_SENDMSG, "sendmsg"},
        {IORING_OP_ASYNC_CANCEL, "cancel"}, {IORING_OP_CLOSE, "close"},
        {IORING_OP_SOCKET, "socket"},       {IORING_OP_CONNECT, "connect"},
        {IORING_OP_SHUTDOWN, "shutdown"},   {IORING_OP_READ, "read"},
    };
    for (const auto& [op, name] : required) {
      if (probe == nullptr || !io_uring_opcode_supported(probe, op))
        missing += std::string(" ") + name;
    }
    if (probe != nullptr) io_uring_free_probe(probe);
    if (!missing.empty()) failure = "io_uring lacks required operations:" + missing;
    if (failure.empty() && (p.features & IORING_FEAT_EXT_ARG) == 0) {
      failure = "io_uring lacks IORING_FEAT_EXT_ARG (needs Linux 5.11+)";
    }
    if (failure.empty() && io_uring_register_files_sparse(&ring, 4) < 0) {
      failure = "io_uring cannot register a sparse direct-descriptor table (needs Linux 5.19+)";
    }
    void* br = nullptr;
    if (failure.empty()) {
      br = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      io_uring_buf_reg reg{};
      reg.ring_addr = reinterpret_cast<uint64_t>(br);
      reg.ring_entries = 8;
      reg.bgid = 0;
      if (br == MAP_FAILED || io_uring_register_buf_ring(&ring, &reg, 0) < 0) {
        failure = "io_uring has no provided buffer rings (needs Linux 6.0+)";
      }
    }
    if (failure.empty()) {
      choice.register_ring_fd = io_uring_register_ring_fd(&ring) >= 0;
      // Socket commands: create a socket in slot 0 and set TCP_NODELAY on it through the ring.
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      io_uring_prep_socket_direct(sqe, AF_INET, SOCK_STREAM, 0, 0, 0);
      sqe->user_data = 1;
      sqe->flags |= IOSQE_IO_LINK;
      sqe = io_uring_get_sqe(&ring);
      prep_setsockopt(sqe, 0, IPPROTO_TCP, TCP_NODELAY, &kOne, sizeof(kOne));
      sqe->user_data = 2;
      io_uring_submit_and_wait(&ring, 2);
      int results[3] = {-1, -1, -1};
      io_uring_cqe* cqe;
      while (io_uring_peek_cqe(&ring, &cqe) == 0) {
        if (cqe->user_data <= 2) results[cqe->user_data] = cqe->res;
        io_uring_cqe_seen(&ring, cqe);
      }
      choice.socket_commands = results[1] >= 0 && results[2] == 0;
      choice.receive_limits = probe_receive_limits(ring, br);
    }
    io_uring_queue_exit(&ring);
    if (br != nullptr && br != MAP_FAILED) ::munmap(br, 4096);
  }
  if (!failure.empty()) {
    if (wanted == BackendKind::kUring) throw std::runtime_error("--backend uring: " + failure);
    choice.kind = BackendKind::kEpoll;
    choice.reason = "io_uring unavailable: " + failure;
    choice.features = "edge-triggered";
    return choice;
  }
  choice.kind = BackendKind::kUring;
  choice.ring_flags = flags;
  choice.slots_per_ring = std::max<uint32_t>(limit, 64);
  choice.fd_limit = limit;
  choice.reason = wanted == BackendKind::kUring ? "chosen by configuration" : "available";
  std::string f;
  if ((flags & IORING_SETUP_DEFER_TASKRUN) != 0) {
    f = "SINGLE_ISSUER DEFER_TASKRUN";
  } else if ((flags & IORING_SETUP_COOP_TASKRUN) != 0) {
    f = "COOP_TASKRUN";
  } else {
    f = "plain task work";
  }
  f += ", multishot accept+recv, direct descriptors, provided buffer rings";
  if (choice.register_ring_fd) f += ", registered ring fd";
  f += choice.socket_commands ? ", socket commands"
                              : ", no socket commands (Nagle stays on outbound)";
  if (choice.receive_limits) f += ", bounded multishot receives";
  choice.features = f;
  return choice;
}

std::unique_ptr<Backend> make_uring_backend(ShardImpl& shard, const BackendChoice& choice,
                                            uint32_t capacity, int event_fd) {
  return std::make_unique<UringBackend>(shard, choice, capacity, event_fd);
}

}  // namespace myriad::detail
