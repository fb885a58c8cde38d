// One shard's share of the load: its connections, its schedule, its counts.
//
// Each shard of myriad-load's runtime gets one LoadShard as the handler of the connections it
// opens. The main thread steers it only by posting to the shard (start a ramp, start traffic,
// verify) and reads its progress through atomics; the detailed results (histogram, totals) are
// read after the runtime has stopped.
#pragma once

#include <myriad/myriad.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "histogram.hpp"
#include "pattern.hpp"
#include "schedule.hpp"

namespace myriad::load {

enum class Mode { kHold, kEcho, kRate, kSubscribe };

struct Options {
  Mode mode = Mode::kHold;
  std::vector<Address> targets;
  uint64_t connections = 1;  // active connections (echo, rate) or held ones (hold)
  uint64_t idle = 0;         // extra idle connections held beside active ones
  Duration duration = std::chrono::seconds(10);
  Duration warmup = std::chrono::seconds(1);
  uint32_t size = 64;              // message size
  uint32_t depth = 1;              // messages in flight per connection (echo)
  double rate = 1000;              // messages per second over all connections (rate)
  double connect_rate = 20000;     // new connections per second
  uint32_t connect_window = 4096;  // connects in flight at once, over all shards
  Duration ramp_timeout{0};        // 0: derived from the count and the connect rate
  Duration verify_timeout = std::chrono::seconds(30);
  uint32_t probe_window = 4096;  // probes in flight at once, per shard
};

// Counts the main thread reads while the run goes on.
struct Progress {
  std::atomic<uint64_t> connects_started{0};
  std::atomic<uint64_t> established{0};
  std::atomic<uint64_t> failed_refused{0};
  std::atomic<uint64_t> failed_timeout{0};
  std::atomic<uint64_t> failed_reset{0};
  std::atomic<uint64_t> failed_ports{0};  // EADDRNOTAVAIL: no ephemeral port left
  std::atomic<uint64_t> failed_other{0};
  std::atomic<uint64_t> closed_unexpectedly{0};  // by the server, after opening
  std::atomic<uint64_t> verified{0};
  std::atomic<uint64_t> verify_failed{0};
  std::atomic<uint64_t> messages{0};
  std::atomic<uint64_t> corrupt{0};
  std::atomic<uint64_t> outstanding{0};  // messages sent and not yet fully echoed
  std::atomic<uint64_t> verify_done_shards{0};
  uint64_t failed() const {
    return failed_refused + failed_timeout + failed_reset + failed_ports + failed_other;
  }
};

// What a shard hands back once the runtime has stopped.
struct Results {
  Histogram latency;
  uint64_t window_messages = 0;
  uint64_t window_bytes = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t messages_sent = 0;
  uint64_t late_sends = 0;  // rate: sent more than 1 ms after they were due
  uint64_t max_lag_ns = 0;
  uint64_t probes_unanswered = 0;
};

class LoadShard final : public Handler {
 public:
  LoadShard(const Options& options, const Pattern& pattern, Progress& progress,
            std::atomic<bool>& measuring, unsigned index, unsigned shard_count);

  // All of these run on the shard's thread (post them).
  void start_ramp(Shard& shard, uint64_t held, uint64_t active);
  void start_traffic(Shard& shard);
  void stop_traffic();
  void start_verify(Shard& shard);
  void finish();  // counts what never answered

  const Results& results() const { return results_; }

  void on_open(Connection c) override;
  void on_data(Connection c, Chunk data) override;
  void on_close(Connection c, CloseReason reason, int error) override;

 private:
  enum class State : uint8_t { kConnecting, kOpen, kProbing, kVerified, kFailed };
  struct Active {
    Connection connection;
    uint64_t stream = 0;           // pattern stream number
    uint64_t sent = 0;             // bytes sent
    uint64_t received = 0;         // bytes echoed back and checked
    std::deque<uint64_t> started;  // per message in flight: send time (echo) or due time (rate)
  };

  static void* tag(bool active, uint64_t index) {
    return reinterpret_cast<void*>(static_cast<uintptr_t>((index << 2) | (active ? 3u : 1u)));
  }
  void ramp_tick(Shard& shard);
  void send_message(Active& a, uint64_t started_ns);
  void on_active_data(Active& a, const Chunk& data);
  void on_probe_data(uint64_t index, const Chunk& data);
  void send_probes();
  void schedule_tick(Shard& shard);
  void count_connect_failure(int error);

  const Options& opt_;
  const Pattern& pattern_;
  Progress& progress_;
  std::atomic<bool>& measuring_;
  unsigned index_;
  unsigned shards_;

  // Held connections (hold mode, and --idle), by local index.
  std::vector<Connection> held_;
  std::vector<State> held_state_;
  std::vector<uint8_t> probe_got_;
  uint64_t held_target_ = 0;
  uint64_t next_probe_ = 0;
  uint64_t probes_in_flight_ = 0;
  bool verifying_ = false;

  std::vector<std::unique_ptr<Active>> active_;
  uint64_t active_target_ = 0;
  uint64_t issued_ = 0;  // connects issued, held first, then active
  uint64_t local_open_ = 0;
  uint64_t local_failed_ = 0;
  std::chrono::steady_clock::time_point ramp_start_{};
  double connect_rate_ = 0;
  uint64_t window_ = 0;
  bool traffic_ = false;
  OpenLoopSchedule schedule_;
  std::vector<std::byte> scratch_;
  Results results_;
};

uint64_t now_ns();

}  // namespace myriad::load
