// Public. The run-time configuration of a myriad Runtime, and parsers for its command-line forms.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace myriad {

using Duration = std::chrono::nanoseconds;

// Which kernel interface drives the shards. Auto tries io_uring and falls back to epoll when
// io_uring is missing, disabled (kernel.io_uring_disabled) or blocked (seccomp: EPERM).
enum class BackendKind : uint8_t { kAuto, kUring, kEpoll };

const char* to_string(BackendKind kind);
// Accepts "auto", "uring" (or "io_uring") and "epoll"; throws std::invalid_argument otherwise.
BackendKind parse_backend(std::string_view text);

// Read once, by the Runtime's constructor (which keeps its own copy and validates it): change a
// Config before constructing the Runtime; Runtime::config() is the copy, safe from any thread.
struct Config {
  // Shard threads, each with its own event loop, connection table, timers and buffers.
  // 0: one per online CPU.
  unsigned shards = 0;
  BackendKind backend = BackendKind::kAuto;

  // The receive pool: allocated once at start-up and split evenly between shards. A receive
  // fills at most one chunk of buffer_size bytes; an idle connection holds none.
  std::size_t buffer_pool_bytes = std::size_t{64} << 20;
  std::size_t buffer_size = std::size_t{16} << 10;
  // How many chunks one connection may hold (received and not released, plus chunks queued for
  // sending) before its receiving pauses; it resumes at half. 0: 1/32 of its shard's chunks,
  // clamped to 4..64 (the default pool on 2 shards: 2,048 chunks each, so 64).
  std::size_t max_connection_buffers = 0;

  // Connections open at once, inbound and outbound, over all shards. Past it, accepted
  // connections are closed at once and counted as rejected.
  std::size_t max_connections = std::size_t{1} << 20;

  // Close a connection that received nothing for this long. Zero: never.
  Duration idle_timeout{0};
  // Graceful shutdown: how long queued output may take to drain before everything is closed.
  Duration drain_timeout = std::chrono::seconds(5);
  // Granularity of the per-shard timing wheel.
  Duration timer_tick = std::chrono::milliseconds(1);

  // Output queue per connection. Above the high watermark the connection stops receiving until
  // it drains below the low one; past max_write_queue it is closed as a slow reader.
  std::size_t write_low_watermark = std::size_t{16} << 10;
  std::size_t write_high_watermark = std::size_t{64} << 10;
  std::size_t max_write_queue = std::size_t{4} << 20;
  // A handler's spill buffer (bytes kept across receives) may not grow past this; a connection
  // that needs more is closed with CloseReason::kInputOverflow.
  std::size_t max_spill = std::size_t{1} << 20;

  // Worker pool for offload(). 0: no pool (offload runs the work inline on the shard).
  unsigned workers = 0;
  // Jobs waiting for a worker, over the whole pool. When full, a connection that offloads stops
  // receiving until its job is taken.
  std::size_t worker_queue = 4096;
  // The founding text's architecture: every handler call runs on the worker pool, each
  // connection's events still in order and one at a time. Needs workers > 0.
  bool handlers_on_workers = false;

  // New connections taken per listener per loop turn, so that accepting cannot starve
  // established connections.
  unsigned accepts_per_turn = 64;
  // io_uring: direct descriptors per ring. A shard adds rings as they fill; the kernel caps each
  // ring's table at RLIMIT_NOFILE. 0: that cap (the fewest rings). Smaller values only make
  // sense for testing the many-ring paths.
  std::size_t ring_slots = 0;
  // Pin shard i to CPU (first_cpu + i) % online CPUs. -1: no pinning.
  int first_cpu = -1;

  // Throws std::invalid_argument naming the field and the value when the configuration is
  // inconsistent (e.g. low watermark above high).
  void validate() const;
};

// "64MiB", "16k", "4096" -> bytes. Throws std::invalid_argument.
std::size_t parse_size(std::string_view text);
// "30s", "250ms", "2m", "1h", "0" -> nanoseconds. Throws std::invalid_argument.
Duration parse_duration(std::string_view text);
std::string format_size(std::size_t bytes);
std::string format_duration(Duration d);

}  // namespace myriad
