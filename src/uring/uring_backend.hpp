// Internal to src/uring/. The io_uring backend's class, its rings and its operation tags.
//
// The class is declared here and defined by concern across the folder (see uring_backend.cpp for
// the practices it follows):
//   uring_backend.cpp   per-connection operations the shard asks for: send, close, connect
//   probe.cpp           start-up: which io_uring features this kernel has (choose_backend)
//   rings.cpp           the ring set, the loop's wait and the wake-ups between rings
//   receive.cpp         multishot receives, starved connections, where freed chunks go
//   buffer_shares.*     the policy: how many chunks each ring may hold (no liburing in it)
//   buffer_ring.*       the provided-buffer-ring calls: register, add, publish, take back
//   accept.cpp          listeners: multishot accept, moving between rings, plain accepts
//   completions.cpp     reaping completion queues and dispatching each completion
// Everything here runs on the shard's thread (the rings are SINGLE_ISSUER where the kernel has
// it, bound to the thread that created them).
#pragma once

#include <liburing.h>
#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend.hpp"
#include "shard_impl.hpp"
#include "uring/buffer_ring.hpp"
#include "uring/buffer_shares.hpp"

#ifndef IORING_ACCEPT_DONTWAIT
#define IORING_ACCEPT_DONTWAIT (1U << 1)  // Linux 6.10: complete with -EAGAIN, never wait
#endif
// Not in liburing 2.3's headers; stable kernel ABI values.
#ifndef IORING_CQ_EVENTFD_DISABLED
#define IORING_CQ_EVENTFD_DISABLED (1U << 0)
#endif
#ifndef IORING_SQ_TASKRUN
#define IORING_SQ_TASKRUN (1U << 2)
#endif

namespace myriad::detail::uring {

constexpr uint32_t kSocketCmdSetsockopt = 3;  // SOCKET_URING_OP_SETSOCKOPT (Linux 6.7)

constexpr unsigned kSqEntries = 1024;
constexpr unsigned kCqEntries = 4 * kSqEntries;
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

// What a completion is for: the top byte of its user_data.
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

// user_data: op (8 bits) | high16 (a generation or a ring index) | low32 (an id or a token).
inline uint64_t pack(Op op, uint32_t high16, uint32_t low32) {
  return (uint64_t{op} << 56) | (uint64_t{high16 & 0xffff} << 32) | low32;
}
inline Op op_of(uint64_t ud) {
  return static_cast<Op>(ud >> 56);
}
inline uint32_t high_of(uint64_t ud) {
  return static_cast<uint32_t>(ud >> 32) & 0xffff;
}
inline uint32_t low_of(uint64_t ud) {
  return static_cast<uint32_t>(ud);
}

// The backend's own bits in Record::io.
namespace io {
constexpr uint8_t kArmed = 1 << 0;       // a multishot receive is in flight
constexpr uint8_t kCancelling = 1 << 1;  // its cancel is in flight
constexpr uint8_t kStarved = 1 << 2;     // waiting in its ring's starved queue
constexpr uint8_t kClosing = 1 << 3;
constexpr uint8_t kCloseSent = 1 << 4;
constexpr uint8_t kSending = 1 << 5;  // a send is in flight (one at a time)

inline bool armed(const Record& r) {
  return (r.io & kArmed) != 0;
}
inline bool starved(const Record& r) {
  return (r.io & kStarved) != 0;
}
inline bool closing(const Record& r) {
  return (r.io & kClosing) != 0;
}
}  // namespace io

void prep_setsockopt(io_uring_sqe* sqe, uint32_t slot, int level, int name, const void* value,
                     uint32_t length);

// Option values the kernel reads when it runs a socket command: static, so they outlive it.
inline const int kOne = 1;
inline const linger kResetLinger{1, 0};

struct Ring {
  io_uring ring{};
  bool initialized = false;
  uint32_t index = 0;
  uint32_t first_id = 0;
  uint32_t used = 0;  // slots holding a connection (or about to)
  BufferRing buffers;
  bool publish_queued = false;   // in to_publish_
  std::deque<uint32_t> starved;  // connections waiting for a chunk, oldest first
  bool hot = false;              // checked every turn, eventfd signalling off (rings > 0)
  uint32_t quiet_turns = 0;      // busy turns in a row with nothing to do
  bool maybe_more = false;       // completed something last time: deferred work may remain
};

class UringBackend final : public Backend {
 public:
  UringBackend(ShardImpl& shard, const BackendChoice& choice, uint32_t capacity, int event_fd);
  ~UringBackend() override;

  std::string describe() const override;

  void add_listener(int fd, uint16_t listener) override;
  void stop_accepting() override;
  void start_receive(uint32_t id) override;
  void stop_receive(uint32_t id) override;
  void send(uint32_t id, msghdr* msg) override;
  void shutdown_write(uint32_t id) override;
  void close(uint32_t id, bool reset) override;
  void connect(uint32_t token, const Address& to) override;
  void recycle(uint32_t chunk) override;
  void poll(int64_t timeout_ns) override;
  void close_all() override;

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

  // ---- The ring set and wake-ups (rings.cpp) ----
  io_uring_sqe* get_sqe(Ring& r);
  static unsigned sq_flags(const Ring& r) { return IO_URING_READ_ONCE(*r.ring.sq.kflags); }
  static void clear_taskrun(Ring& r);
  static bool ring_has_work(const Ring& r);
  bool hot_work_pending() const;
  static void set_signalling(Ring& r, bool on);
  void sweep_rings();
  bool scan_all();
  void heat(Ring& r);
  void drop_quiet();
  void add_ring();
  Ring* ring_with_room();
  void arm_event();

  // ---- Listeners (accept.cpp) ----
  void arm_accept(uint16_t index);
  void accept_once(uint16_t index);
  void on_accept_once(uint32_t ring_index, uint16_t index, int res);
  void adopt_accepted(Ring& r, int slot, uint16_t index);
  void cancel_accept(uint16_t index);
  void on_accept(uint32_t ring_index, uint16_t index, int res, unsigned flags);

  // ---- Receiving and its buffers (receive.cpp) ----
  // poll_first: wait for data before picking a buffer (for a ring with none provided).
  void arm_receive(Ring& r, uint32_t id, bool poll_first = false);
  void starve(Ring& r, uint32_t id);
  void provide(Ring& r, uint32_t chunk);
  void publish(Ring& r);
  void publish_all();
  void top_up(Ring& r);
  void feed_between_rounds();
  void refill();
  bool reclaim_for(const Ring& hungry);
  void on_recv(Ring& r, uint32_t id, int res, unsigned flags);

  // ---- Closing and connecting (uring_backend.cpp) ----
  void finish_close(uint32_t id);
  void on_close_done(Ring& r, uint32_t id);
  void on_socket(uint32_t ring_index, uint32_t token, int res);

  // ---- Completions (completions.cpp) ----
  unsigned reap(Ring& r);
  void handle(Ring& r, uint64_t ud, int res, unsigned flags);

  ShardImpl& shard_;
  BackendChoice choice_;
  uint32_t slots_;
  uint32_t max_rings_;
  int event_fd_;
  bool socket_commands_;
  uint32_t br_entries_ = 1;  // each buffer ring's size: the slice's chunk count, rounded up
  std::vector<std::unique_ptr<Ring>> rings_;
  BufferShares shares_;  // what each ring's buffer ring may hold
  std::vector<Listener> listeners_;
  // Connect addresses: by token until the socket exists, then by (id | kPendingConnect).
  std::unordered_map<uint32_t, Address> connect_to_;
  bool accept_dontwait_ = true;  // IORING_ACCEPT_DONTWAIT works (see accept_once)
  bool more_starved_ = false;    // refill left starved connections on rings that have chunks
  std::vector<Ring*> hot_;       // rings other than 0 looked at every busy turn
  uint32_t turns_since_scan_ = 0;
  bool scan_cold_ = false;  // the eventfd fired: look at the cold rings
  std::vector<Ring*> to_publish_;
  std::vector<Ring*> hungry_;  // refill's list of starving rings (kept to reuse its memory)
  uint64_t event_value_ = 0;
  bool event_armed_ = false;
};

}  // namespace myriad::detail::uring
