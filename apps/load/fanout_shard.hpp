// One load shard's part of the subscribe mode: its subscribers (and, on shard 0, the publisher).
//
// The main thread steers it by posting to the shard (ramp, open the publisher, set the measured
// window, publish, stop, finish) and watches its counters (single-writer, readable anywhere);
// the detailed results are read after the runtime has stopped.
//
// Every delivery is checked where it lands: the payload must be exactly what the publisher
// wrote for its sequence number, on the subscriber's topic, and the next one that subscriber
// expects. Anything else counts as a gap (loss), a duplicate or reordering, or corruption.
#pragma once

#include <myriad/myriad.hpp>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "fanout_protocol.hpp"
#include "histogram.hpp"
#include "load_shard.hpp"
#include "schedule.hpp"

namespace myriad::load {

struct FanoutOptions {
  std::string protocol = "myriad";
  std::string topic = "load";
  uint32_t topics = 1;     // NAME.0 .. NAME.K-1 when more than one
  Address publish_target;  // default: the first --target
  Duration drain = std::chrono::seconds(5);
  // After the measured window: every subscriber disconnects and comes back at once (at
  // --connect-rate), resuming from its last offset where the protocol can (push), while the
  // publisher goes on; the usual checks then say whether anything was lost or repeated.
  bool reconnect_wave = false;

  std::string topic_name(uint32_t k) const {
    return topics == 1 ? topic : topic + "." + std::to_string(k);
  }
};

// Written by one shard each, read by the main thread while the run goes on.
struct FanoutCounts {
  ShardCounter connects_started, established, subscribed, connect_failed, closed_unexpectedly,
      protocol_errors, received, corrupt, duplicates, gaps, published, publisher_errors,
      publisher_ready, wave_closed, resubscribed, wave_retries, wave_failed;
};

struct FanoutResults {
  Histogram latency;  // publish due time -> receipt, measured messages only
  uint64_t measured_deliveries = 0;
  // Per sequence number: the latest receipt over this shard's subscribers, and how many got it.
  std::vector<uint64_t> last_receipt_ns;
  std::vector<uint32_t> receipts;
  uint64_t missing = 0;  // expected and never received (counted by finish())
  uint64_t late_publishes = 0;
  uint64_t max_publish_lag_ns = 0;
  uint64_t subscribers_per_topic_total = 0;
};

class FanoutShard final : public Handler {
 public:
  FanoutShard(const Options& options, const FanoutOptions& fanout, const FanoutProtocol& protocol,
              unsigned index, unsigned shard_count);

  // All of these run on the shard's thread (post them).
  // Opens `count` subscribers; global subscriber g = local * shards + index follows topic g % K.
  void start_ramp(Shard& shard, uint64_t count);
  void open_publisher(Shard& shard);
  void set_window(uint64_t from_ns, uint64_t until_ns);
  // Shard 0: publishes at --rate from start_ns on, message j due at start_ns + j / rate.
  void start_publishing(Shard& shard, uint64_t start_ns);
  void stop_publishing();
  // The reconnect wave (FanoutOptions::reconnect_wave): closes every subscribed subscriber and
  // opens it again; counts().resubscribed says how many are back.
  void start_wave(Shard& shard);
  // Counts what each subscriber never received, given how many messages were published.
  void finish(uint64_t published);

  FanoutCounts& counts() { return counts_; }
  const FanoutResults& results() const { return results_; }
  // Subscribers of topic k on this shard that subscribed.
  uint64_t subscribed_on(uint32_t k) const;

  void on_open(Connection c) override;
  void on_data(Connection c, Chunk data) override;
  void on_close(Connection c, CloseReason reason, int error) override;

 private:
  struct Sub {
    Connection connection;
    uint64_t next = 0;  // the sequence number it expects next
    uint32_t topic = 0;
    uint8_t state = 0;  // the protocol parser's
    bool subscribed = false;
    bool gone = false;
    bool reconnecting = false;  // closed by the wave, coming back
    uint8_t wave_retries = 0;   // connects the wave retried (EMFILE: slots not free yet)
    uint64_t offset = 0;        // the server's offset of its last delivery (push)
    std::string partial;        // an incomplete unit between receives
  };
  class SubEvents;
  class PublisherEvents;
  static constexpr uintptr_t kPublisherTag = 1;

  void ramp_tick(Shard& shard);
  void wave_tick(Shard& shard);
  // Queues a wave subscriber whose reconnect failed to try again; false once it has tried
  // too often (it is then counted as failed).
  bool retry_wave(Shard& shard, Sub& s, uint32_t local);
  void connect(Shard& shard, uint64_t local);
  void on_subscriber_data(Sub& s, const Chunk& data);
  void on_message(Sub& s, std::string_view payload, uint64_t now);
  void publish_tick(Shard& shard);

  const Options& opt_;
  const FanoutOptions& fanout_;
  const FanoutProtocol& protocol_;
  unsigned index_;
  unsigned shards_;

  std::vector<Sub> subs_;
  uint64_t issued_ = 0;
  uint64_t done_ = 0;  // opened or failed
  std::chrono::steady_clock::time_point ramp_start_{};
  std::string epoch_;                 // the server's (push), from the first subscribe reply
  std::vector<uint32_t> wave_queue_;  // closed by the wave, to connect again
  std::size_t wave_expected_ = 0, wave_issued_ = 0, wave_done_ = 0;
  bool wave_ticking_ = false;
  std::chrono::steady_clock::time_point wave_start_{};

  Connection publisher_;
  uint8_t publisher_state_ = 0;
  std::string publisher_partial_;
  bool publishing_ = false;
  OpenLoopSchedule schedule_;
  std::vector<std::string> topic_names_;
  std::string batch_;
  std::string payload_;

  uint64_t window_from_ = UINT64_MAX;
  uint64_t window_until_ = 0;
  FanoutCounts counts_;
  FanoutResults results_;
};

}  // namespace myriad::load
