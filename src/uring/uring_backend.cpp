// The io_uring backend: construction and the per-connection operations the shard asks for
// (send, shutdown, close, outbound connect). The other concerns have a file each in this folder;
// uring_backend.hpp lists them.
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
//   chunk when data arrives. A receive is armed even on an empty ring (only data waiting makes a
//   ring starve). A chunk goes back to the ring it came from when the handler lets go of it, or
//   to the shard's free list when that ring holds its share; freed chunks are published between
//   the rounds of deferred work within a turn, so a burst's later rounds can use them.
// - ENOBUFS is flow control: the receive ended because the ring ran dry; the connection waits in
//   its ring's starved queue and is re-armed, first come first served, as chunks come back. The
//   ring's share grows while it starves and decays when it does not (never below twice its
//   largest burst, never above an equal part of the slice among the rings taking chunks now);
//   chunks freed while several rings starve are dealt out to them in turn. The socket keeps the
//   bytes. A chunk in a buffer ring comes back only when the kernel takes it, so when a ring
//   starves and the free list is empty, a ring that does not need its chunks (no receive armed,
//   quiet, or far above its share) gives them back: its buffer ring is unregistered and
//   registered again, empty. The rules are BufferShares' (buffer_shares.hpp, no liburing in it,
//   unit-tested), the calls BufferRing's.
// - An operation owns its memory until its last completion: a record is not reused, and its
//   output queue not freed, until every operation on it has completed (ops counter); closing is
//   cancel-all-on-descriptor, wait for the completions, then close the direct descriptor.
// - Completion queues are four times the submission queues and overflow is flushed, not lost
//   (IORING_FEAT_NODROP): the loop reaps until the ring has no deferred work or overflow left.
#include "uring/uring_backend.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <chrono>
#include <memory>
#include <string>

namespace myriad::detail {
namespace uring {

void prep_setsockopt(io_uring_sqe* sqe, uint32_t slot, int level, int name, const void* value,
                     uint32_t length) {
  io_uring_prep_rw(IORING_OP_URING_CMD, sqe, static_cast<int>(slot), nullptr, 0, 0);
  sqe->off = kSocketCmdSetsockopt;  // cmd_op shares the off field
  sqe->addr = static_cast<uint32_t>(level) | (uint64_t{static_cast<uint32_t>(name)} << 32);
  sqe->file_index = length;  // optlen
  sqe->addr3 = reinterpret_cast<uint64_t>(value);
  sqe->flags |= IOSQE_FIXED_FILE;
}

UringBackend::UringBackend(ShardImpl& shard, const BackendChoice& choice, uint32_t capacity,
                           int event_fd)
    : shard_(shard),
      choice_(choice),
      slots_(choice.slots_per_ring),
      max_rings_((capacity + choice.slots_per_ring - 1) / choice.slots_per_ring),
      event_fd_(event_fd),
      socket_commands_(choice.socket_commands),
      shares_(shard.pool(), std::chrono::steady_clock::now()) {
  while (br_entries_ < shard.pool().count()) br_entries_ <<= 1;
  rings_.reserve(max_rings_);
  add_ring();
}

UringBackend::~UringBackend() {
  close_all();
}

std::string UringBackend::describe() const {
  return "io_uring, " + std::to_string(rings_.size()) + " of up to " + std::to_string(max_rings_) +
         " rings x " + std::to_string(slots_) + " direct descriptors";
}

// ---- Sending and closing ----

void UringBackend::send(uint32_t id, msghdr* msg) {
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

void UringBackend::shutdown_write(uint32_t id) {
  Record& rec = shard_.record(id);
  Ring& r = ring_of(id);
  io_uring_sqe* sqe = get_sqe(r);
  io_uring_prep_shutdown(sqe, static_cast<int>(id - r.first_id), SHUT_WR);
  sqe->flags |= IOSQE_FIXED_FILE;
  sqe->user_data = pack(kOpShutdown, rec.gen, id);
  ++rec.ops;
}

void UringBackend::close(uint32_t id, bool reset) {
  Record& rec = shard_.record(id);
  if (io::closing(rec)) return;
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
  // Anything else (a connect, a shutdown): by descriptor, as before.
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

void UringBackend::finish_close(uint32_t id) {
  Record& rec = shard_.record(id);
  if (!io::closing(rec) || (rec.io & io::kCloseSent) != 0 || rec.ops != 0) return;
  Ring& r = ring_of(id);
  io_uring_sqe* sqe = get_sqe(r);
  io_uring_prep_close_direct(sqe, id - r.first_id);
  sqe->user_data = pack(kOpClose, rec.gen, id);
  ++rec.ops;
  rec.io |= io::kCloseSent;
}

void UringBackend::on_close_done(Ring& r, uint32_t id) {
  Record& rec = shard_.record(id);
  rec.ops = 0;
  rec.io = 0;
  --r.used;
  shard_.on_closed(id);
  for (std::size_t i = 0; i < listeners_.size(); ++i) {
    Listener& l = listeners_[i];
    if (!l.active) continue;
    if (l.ring < 0) {
      arm_accept(static_cast<uint16_t>(i));
    } else if (rings_[static_cast<uint32_t>(l.ring)]->used + margin() >= slots_ &&
               r.used + margin() < slots_) {
      // Armed on a full ring because no ring could be added (see ring_with_room): move to
      // the room just freed rather than have the kernel close the next connection.
      cancel_accept(static_cast<uint16_t>(i));
      arm_accept(static_cast<uint16_t>(i));
    }
  }
}

// ---- Connecting ----

void UringBackend::connect(uint32_t token, const Address& to) {
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

void UringBackend::on_socket(uint32_t ring_index, uint32_t token, int res) {
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

}  // namespace uring

std::unique_ptr<Backend> make_uring_backend(ShardImpl& shard, const BackendChoice& choice,
                                            uint32_t capacity, int event_fd) {
  return std::make_unique<uring::UringBackend>(shard, choice, capacity, event_fd);
}

}  // namespace myriad::detail
