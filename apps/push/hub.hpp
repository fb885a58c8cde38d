// The channel model of myriad-push, shared by its three transports (WebSocket, SSE, plain TCP):
// topics with offsets, an epoch, a server-wide sequence number, a bounded history per topic, a
// retained last value, and publish/subscribe/resume on top of myriad::PubSub. docs/PUSH.md
// describes the model as a client sees it.
//
// How a message travels: publish() takes the hub's lock, gives the message the topic's next
// offset and the next server-wide sequence number, stores it (history, retained value) as one
// SharedBuffer holding a 24-byte header and the payload, and hands that same buffer to
// PubSub::publish() before the lock goes. PubSub calls the transport's encoder once per message
// per shard (the encoders read the header: offset and sequence), and queues that one frame on
// every subscriber of that transport there. Replays (history, retained value) use frames
// encoded once per message per transport and cached with the message.
//
// Exactness: publishes and subscribes take the same lock, and PubSub delivers to a subscription
// exactly the messages published after it was made. So a subscriber is sent, in this order:
// the subscribe reply, what it missed (or the retained value), then the live messages, with no
// gap and no duplicate between the replay and the live stream. Publishes are serialised by that
// lock, which also keeps the server-wide sequence in delivery order on every connection (what
// an SSE stream of several topics resumes from).
//
// Threads: publish(), stats(), trim() from any thread. subscribe(), unsubscribe() and
// unsubscribe_all() on the connection's shard thread. Encoders run on shard threads.
#pragma once

#include <myriad/myriad.hpp>
#include <myriad/pubsub.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace push {

using Clock = std::chrono::steady_clock;
int64_t now_ns();

// How a subscriber's messages are framed: one PubSub encoding each.
enum class Transport : uint8_t { kTcp, kWs, kWsDeflate, kSse };
constexpr unsigned kTransports = 4;
const char* to_string(Transport t);

// Why a resume could not give exactly what was missed.
enum class Lost : uint8_t {
  kNone,
  kEpoch,    // the offsets are from another epoch (the server restarted)
  kHistory,  // some of the missed messages are no longer held
  kAhead,    // the client claims an offset this topic never reached
};
const char* to_string(Lost l);

// What a subscriber asks to resume from.
struct Resume {
  enum class Kind : uint8_t { kNone, kOffset, kSeq };
  Kind kind = Kind::kNone;
  uint64_t value = 0;  // the last offset (kOffset) or sequence number (kSeq) it has
  uint64_t epoch = 0;
};

struct HubConfig {
  // History per topic: the newest messages, at most this many, this many bytes of payload, and
  // this old (0: no age limit); over all topics at most history_total bytes (oldest first).
  std::size_t history_count = 1000;
  std::size_t history_bytes = std::size_t{1} << 20;
  myriad::Duration history_age = std::chrono::minutes(10);
  std::size_t history_total = std::size_t{256} << 20;
  // Topics known at once (each keeps its offsets for the life of the epoch).
  std::size_t max_topics = 100000;
  std::size_t max_message = std::size_t{256} << 10;
  // Slow-consumer policy per topic: the longest matching prefix wins, else `policy`.
  std::vector<std::pair<std::string, myriad::OverflowPolicy>> policies;
  myriad::OverflowPolicy policy = myriad::OverflowPolicy::kLatest;
  // Topics whose last value is retained (given at once to a new subscriber): prefixes, "" for
  // every topic.
  std::vector<std::string> retain = {""};
  uint64_t epoch = 0;  // 0: the start time in microseconds since 1970
};

// A valid topic: 1..255 bytes of [A-Za-z0-9._~:/@!$+=-]. Topics starting with '$' are the
// server's own (clients may subscribe, not publish).
bool valid_topic(std::string_view topic);
// Splits "a,b,c" into valid topics; false (and out partly filled) if one is not valid, or if
// there are more than max.
bool split_topics(std::string_view list, std::vector<std::string_view>& out, std::size_t max);

// The topics one connection is subscribed to, by the hub's topic ids: one inline, more on the
// heap. Owned by the connection's session; used by the hub on the connection's shard thread.
class TopicSet {
 public:
  bool contains(uint32_t id) const;
  void add(uint32_t id);
  bool remove(uint32_t id);
  std::size_t size() const { return (first_ != kNone) + more_.size(); }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  uint32_t first_ = kNone;
  std::vector<uint32_t> more_;
};

// Figures the hub keeps; the metrics endpoint reads them.
struct HubStats {
  uint64_t topics = 0;
  uint64_t published = 0;
  uint64_t history_messages = 0;
  uint64_t history_bytes = 0;   // payload + header bytes held by histories
  uint64_t retained_bytes = 0;  // retained values not also in a history
  uint64_t evicted_count = 0, evicted_bytes = 0, evicted_age = 0, evicted_total = 0;
  uint64_t resumes_recovered = 0, resumes_lost_epoch = 0, resumes_lost_history = 0,
           resumes_lost_ahead = 0;
  uint64_t replayed = 0;  // messages sent from history or as retained values
  uint64_t refused_bad_topic = 0, refused_too_large = 0, refused_too_many_topics = 0;
};

// The fan-out time of each publish: from publish() until the last shard that had subscribers
// of its topic had offered it to every one of them (queued on their connections). Lock-free.
class FanoutTimes {
 public:
  static constexpr std::size_t kBuckets = 18;
  // Upper bounds in seconds (Prometheus "le"); the last bucket is +Inf.
  static const std::array<double, kBuckets - 1> kBounds;
  void record(int64_t ns);
  struct Snapshot {
    std::array<uint64_t, kBuckets> counts{};  // not cumulative
    uint64_t count = 0;
    double sum_s = 0;
  };
  Snapshot snapshot() const;
  // Since the last call: the largest and the mean, in nanoseconds, and how many.
  void take_window(int64_t& max_ns, int64_t& mean_ns, uint64_t& n);

 private:
  std::array<std::atomic<uint64_t>, kBuckets> counts_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
  std::atomic<int64_t> window_max_{0};
  std::atomic<uint64_t> window_sum_{0};
  std::atomic<uint64_t> window_n_{0};
};

class Hub {
 public:
  Hub(myriad::Runtime& runtime, HubConfig config, myriad::PubSubConfig pubsub_config);
  ~Hub();
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  uint64_t epoch() const { return epoch_; }
  const HubConfig& config() const { return config_; }
  myriad::PubSub& pubsub() { return *pubsub_; }
  myriad::EncodingId encoding(Transport t) const { return encodings_[static_cast<unsigned>(t)]; }

  enum class Status : uint8_t { kOk, kBadTopic, kTooLarge, kTooManyTopics, kRefused };
  static const char* to_string(Status s);

  struct Published {
    Status status = Status::kOk;
    uint64_t offset = 0;
    uint64_t seq = 0;
    std::size_t subscribers = 0;  // subscribed when it was published
  };
  // Any thread. The payload is copied once.
  Published publish(std::string_view topic, std::span<const std::byte> payload);
  Published publish(std::string_view topic, std::string_view payload) {
    return publish(topic, std::as_bytes(std::span(payload.data(), payload.size())));
  }

  struct Subscribed {
    Status status = Status::kOk;
    uint64_t last = 0;   // the topic's newest offset when subscribed (0: none yet)
    uint64_t first = 0;  // the oldest offset still held (0: none)
    Lost lost = Lost::kNone;
    bool resumed = false;  // a resume was asked for and everything missed follows
    bool again = false;    // it was subscribed already
    std::vector<myriad::SharedBuffer> frames;  // to send after the reply, in order
  };
  // On c's shard thread: subscribes c to topic with transport t's framing and fills out. The
  // caller sends its reply, then out.frames, before returning to the loop (live messages
  // come from the loop). `mine` is c's set of topics: subscribing again to one it has gives kOk
  // with `again` set and nothing to send.
  void subscribe(myriad::Connection c, Transport t, std::string_view topic, const Resume& resume,
                 TopicSet& mine, Subscribed& out);
  bool unsubscribe(myriad::Connection c, std::string_view topic, TopicSet& mine);
  // Every subscription of c goes (on_close).
  void unsubscribe_all(myriad::Connection c) { pubsub_->unsubscribe_all(c); }

  // Any thread: the topics published to since the last call (not the server's own), busiest
  // first, at most n.
  struct Active {
    std::string topic;
    uint64_t offset = 0;
    uint64_t published = 0;  // since the last call
    std::size_t subscribers = 0;
  };
  std::vector<Active> take_active(std::size_t n);

  // Any thread: drops history past its age limit (publish() trims as it goes; a quiet topic
  // needs this).
  void trim();
  HubStats stats() const;
  FanoutTimes& fanout_times() { return fanout_; }

  // The frame a transport sends for one message (a copy of the payload, once).
  myriad::SharedBuffer encode(Transport t, std::string_view topic, uint64_t offset, uint64_t seq,
                              std::span<const std::byte> payload) const;
  // The SSE id of a message: "<topic>/<offset>/<seq>/<epoch>".
  std::string sse_id(std::string_view topic, uint64_t offset, uint64_t seq) const;
  // Parses an SSE id back (Last-Event-ID); false if it is not one.
  static bool parse_sse_id(std::string_view id, uint64_t& seq, uint64_t& epoch);

 private:
  struct Entry {
    uint64_t offset = 0;
    uint64_t seq = 0;
    int64_t time_ns = 0;
    myriad::SharedBuffer message;                          // header + payload
    std::array<myriad::SharedBuffer, kTransports> frames;  // for replays, made on first use
  };
  struct Topic {
    std::string name;
    uint32_t id = 0;
    myriad::OverflowPolicy policy;
    bool retain = false;
    uint64_t last_offset = 0;
    uint64_t last_seq = 0;
    std::deque<Entry> history;
    std::size_t history_bytes = 0;
    uint64_t evicted_offset = 0;  // the newest offset no longer held (0: none)
    uint64_t evicted_seq = 0;
    Entry retained;       // the newest message, when retain (kept when history lets it go)
    uint64_t window = 0;  // publishes since the last take_active()
  };

  myriad::OverflowPolicy policy_for(std::string_view topic) const;
  bool retains(std::string_view topic) const;
  Topic* find_or_create(std::string_view name, Status& status);                  // under mutex_
  void evict_front(Topic& t);                                                    // under mutex_
  void trim_locked(int64_t now);                                                 // under mutex_
  const myriad::SharedBuffer& frame_of(Entry& e, const Topic& t, Transport tr);  // under mutex_
  void on_delivered(const myriad::Message& m, unsigned shards);

  myriad::Runtime& runtime_;
  HubConfig config_;
  uint64_t epoch_;
  std::string epoch_text_;
  std::unique_ptr<myriad::PubSub> pubsub_;
  std::array<myriad::EncodingId, kTransports> encodings_{};

  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::unique_ptr<Topic>> topics_;
  // Every held message in publish order, for the total bound and the age limit.
  std::deque<std::pair<Topic*, uint64_t>> order_;
  uint64_t seq_ = 0;
  std::vector<Topic*> touched_;  // window > 0
  HubStats stats_;               // under mutex_

  // Fan-out timing: one slot per recent sequence number.
  struct Track {
    std::atomic<uint64_t> seq{0};
    std::atomic<uint32_t> done{0};
  };
  static constexpr std::size_t kTracks = 8192;
  std::unique_ptr<Track[]> tracks_;
  FanoutTimes fanout_;
};

}  // namespace push
