// Internal. The one interface between a shard's loop and the kernel: io_uring or epoll.
//
// The shard never says which backend runs. It tells the backend what it wants (receive on this
// connection, send this message, close that one) and the backend reports what happened by
// calling ShardImpl's on_* methods, from inside poll() or, where the kernel answers at once
// (epoll), from inside the call that asked. Every method is for the shard's thread only.
#pragma once

#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include <myriad/address.hpp>
#include <myriad/config.hpp>

namespace myriad {

class ShardImpl;

namespace detail {

// What Runtime found when it chose a backend; every shard builds its own from it.
struct BackendChoice {
  BackendKind kind = BackendKind::kEpoll;
  std::string reason;
  std::string features;
  unsigned ring_flags = 0;        // io_uring setup flags that work on this kernel
  bool register_ring_fd = false;  // IORING_REGISTER_RING_FD
  bool socket_commands = false;   // SOCKET_URING_OP_SETSOCKOPT on direct descriptors
  bool receive_limits = false;    // multishot receive honours per-pass and total byte limits
  uint32_t slots_per_ring = 0;    // fixed-file table size (RLIMIT_NOFILE caps each ring's)
  uint32_t fd_limit = 0;          // RLIMIT_NOFILE (soft, raised to the hard limit)
};

// RLIMIT_NOFILE after raising its soft limit to the hard one (each io_uring ring's
// direct-descriptor table is capped by it, and so is the epoll backend's capacity).
uint32_t fd_limit();

// Slots of an io_uring ring that accepting leaves free: a ring holds slots - accept_margin(slots)
// accepted connections. A multishot accept that finds the table full loses that connection
// (the kernel closes it), and the shard sees accepts only between rounds of deferred work: at
// most about 20 task-work items of up to 32 accepts each, 640, arrive before it can move the
// accept to the next ring. So 1,024 on full-size rings, a quarter of a small one.
inline uint32_t accept_margin(uint32_t slots) {
  return std::min<uint32_t>(1024, slots / 4);
}

// Probes the kernel: io_uring first unless epoll is forced. A forced io_uring that cannot run
// throws std::runtime_error naming the cause and the fix.
BackendChoice choose_backend(BackendKind wanted);

class Backend {
 public:
  virtual ~Backend() = default;

  // Starts accepting on a listening socket (owned by the shard). listener is echoed back in
  // ShardImpl::on_accepted.
  virtual void add_listener(int fd, uint16_t listener) = 0;
  virtual void stop_accepting() = 0;

  // Receive into pool chunks until stop_receive(). Idempotent. Data that was already on its way
  // when stop_receive() is called may still be delivered.
  virtual void start_receive(uint32_t id) = 0;
  virtual void stop_receive(uint32_t id) = 0;

  // Sends msg (iovecs into the connection's output queue), which stays untouched until
  // ShardImpl::on_sent reports how many bytes went. One send per connection at a time.
  virtual void send(uint32_t id, msghdr* msg) = 0;
  virtual void shutdown_write(uint32_t id) = 0;
  // Cancels what is in flight and closes the socket (with reset: the peer sees RST). Reports
  // ShardImpl::on_closed once the kernel no longer uses anything of the connection's.
  virtual void close(uint32_t id, bool reset) = 0;

  // Opens an outbound connection: ShardImpl::on_connect_slot(token, id) once it has a slot,
  // then on_connected(id, result); or on_connect_failed(token, error) if it never got one.
  virtual void connect(uint32_t token, const Address& to) = 0;

  // A chunk the shard is done with, for the kernel to fill again.
  virtual void recycle(uint32_t chunk) = 0;

  // Submits what is queued, waits up to timeout_ns (-1: until something happens, 0: not at
  // all) and dispatches what completed.
  virtual void poll(int64_t timeout_ns) = 0;

  // At teardown: drop every connection at once, without per-connection work where the kernel
  // allows it (closing an io_uring ring closes all its descriptors).
  virtual void close_all() = 0;

  // One line for the start-up log: e.g. "2 rings x 20000 slots".
  virtual std::string describe() const = 0;
};

// Both are built on the shard's thread (io_uring's SINGLE_ISSUER binds a ring to its creator).
std::unique_ptr<Backend> make_uring_backend(ShardImpl& shard, const BackendChoice& choice,
                                            uint32_t capacity, int event_fd);
std::unique_ptr<Backend> make_epoll_backend(ShardImpl& shard, uint32_t capacity, int event_fd);

}  // namespace detail
}  // namespace myriad
