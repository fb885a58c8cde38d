// The open-loop schedule: a fixed rate spread evenly over a shard's connections.
//
// Message j is due at start + j / rate, on connection j % connections, whatever happened to the
// earlier ones: a stalled server cannot slow the schedule down, and latency is measured from
// the time a message was due, not from when it could be sent (no coordinated omission). The
// clock is passed in, so tests drive it by hand.
#pragma once

#include <cstdint>

namespace myriad::load {

class OpenLoopSchedule {
 public:
  OpenLoopSchedule() = default;
  // rate in messages per second (> 0), times in nanoseconds.
  OpenLoopSchedule(double rate, uint32_t connections, uint64_t start_ns)
      : interval_ns_(1e9 / rate), connections_(connections), start_ns_(start_ns) {}

  uint64_t due_at(uint64_t message) const {
    return start_ns_ + static_cast<uint64_t>(static_cast<double>(message) * interval_ns_);
  }
  uint64_t next_due() const { return due_at(next_); }
  uint64_t sent() const { return next_; }

  // Calls send(connection, due_ns) for every message due at or before now, in order; returns
  // how many. At most `limit` per call, so a generator that fell far behind still yields.
  template <class Send>
  uint64_t run_due(uint64_t now_ns, Send&& send, uint64_t limit = UINT64_MAX) {
    uint64_t n = 0;
    while (n < limit && due_at(next_) <= now_ns) {
      send(static_cast<uint32_t>(next_ % connections_), due_at(next_));
      ++next_;
      ++n;
    }
    return n;
  }

 private:
  double interval_ns_ = 0;
  uint32_t connections_ = 1;
  uint64_t start_ns_ = 0;
  uint64_t next_ = 0;
};

}  // namespace myriad::load
