// The io_uring backend's completions: reaping a ring's completion queue (and the deferred work
// and overflow behind it) and dispatching each completion by the operation it ends.
#include <cerrno>

#include "uring/uring_backend.hpp"

namespace myriad::detail::uring {

// Handles what the ring completed. The kernel runs at most about 20 deferred items per
// io_uring_enter and may keep the rest on a retry list without setting IORING_SQ_TASKRUN, so
// a ring that completed anything may have more (maybe_more): busy turns pick it up with the
// next work, and before sleeping the ring is entered once more, until an entry yields nothing.
// Between rounds, the chunks let go of in the last one are published (see feed_between_rounds).
unsigned UringBackend::reap(Ring& r) {
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
    feed_between_rounds();
    clear_taskrun(r);
    io_uring_get_events(&r.ring);
  }
  r.maybe_more = total > 0;
  return total;
}

void UringBackend::handle(Ring& r, uint64_t ud, int res, unsigned flags) {
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
      if (!io::closing(rec)) shard_.on_connected(id, res);
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

}  // namespace myriad::detail::uring
