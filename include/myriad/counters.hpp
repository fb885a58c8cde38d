// Public. What a shard counts, and a snapshot of those counts.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace myriad {

// A plain snapshot; Runtime::counters() sums the shards' into one.
struct Counters {
  uint64_t accepted = 0;               // inbound connections opened
  uint64_t connected = 0;              // outbound connections opened
  uint64_t connect_failed = 0;         // outbound connections that never opened
  uint64_t rejected = 0;               // accepted past max_connections and closed at once
  uint64_t open = 0;                   // open now
  uint64_t closed_peer = 0;            // peer closed (EOF) and we closed after it
  uint64_t closed_reset = 0;           // peer reset, or a socket error
  uint64_t closed_idle = 0;            // idle timeout
  uint64_t closed_slow_reader = 0;     // output queue passed max_write_queue
  uint64_t closed_input_overflow = 0;  // spill buffer passed max_spill
  uint64_t closed_local = 0;           // closed by a handler
  uint64_t closed_shutdown = 0;        // closed by graceful shutdown
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t receives = 0;           // receive completions that carried data
  uint64_t sends = 0;              // send operations completed
  uint64_t buffers_in_use = 0;     // chunks held by handlers or queued output, now
  uint64_t queued_bytes = 0;       // output queued and not yet taken by the kernel, now
  uint64_t buffer_starved = 0;     // receives that found the pool empty (ENOBUFS), re-armed later
  uint64_t watermark_pauses = 0;   // times a connection crossed its high write watermark
  uint64_t buffer_cap_pauses = 0;  // times a connection hit max_connection_buffers
  uint64_t offloads_queued = 0;
  uint64_t offloads_done = 0;
  uint64_t offload_waits = 0;  // offloads that found the worker queue full
  uint64_t accept_errors = 0;  // EMFILE/ENFILE and other accept failures
  // io_uring, several rings: completions a sleeping shard found only by its periodic look at
  // every ring (a wakeup that did not come). A safety net; it should stay 0.
  uint64_t stray_wakeups = 0;

  Counters& operator+=(const Counters& other);
  uint64_t closed_total() const;
  // One line, "key=value ..." in field order, for logs.
  std::string to_string() const;
};

// A counter written by its shard's thread only and readable from any thread. Increments are a
// relaxed load and store: no locked instruction on the hot path.
class ShardCounter {
 public:
  void add(uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

}  // namespace myriad
