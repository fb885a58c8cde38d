// Internal. The pieces behind PubSub: the runtime-wide topic registry (which shards listen to
// which topic, and each topic's offset sequence), and one TopicShard per shard (its members,
// subscriber slots, backlogs and inbox). Uses only the public core API.
//
// Locks, always taken in this order: a registry bucket's mutex (the topic's lifetime, its
// offsets and which shards listen), then a shard's inbox mutex. A shard never takes a bucket
// lock while it holds its inbox lock.
#pragma once

#include <myriad/counters.hpp>
#include <myriad/pubsub.hpp>
#include <myriad/runtime.hpp>
#include <myriad/shard.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace myriad {

class TopicShard;

namespace pubsub {

constexpr uint32_t kNone = UINT32_MAX;

// A topic, runtime-wide. Exists while some shard has subscribers of it, or still holds a
// reference (see TopicShard::release_topic).
struct Topic {
  Topic(std::string n, std::size_t h, OverflowPolicy p, unsigned shards)
      : name(std::move(n)),
        hash(h),
        policy(p),
        local(new uint32_t[shards]),
        in_flight(new std::atomic<uint32_t>[shards]) {
    for (unsigned i = 0; i < shards; ++i) {
      local[i] = kNone;
      in_flight[i].store(0, std::memory_order_relaxed);
    }
  }
  const std::string name;
  const std::size_t hash;
  const OverflowPolicy policy;
  // Guarded by the bucket's mutex:
  uint64_t next_offset = 1;
  uint32_t refs = 0;       // one per shard holding a local topic (until its release marker)
  uint32_t listening = 0;  // shards with members now
  // Per shard: its local topic index, or kNone. Written by that shard under the bucket mutex;
  // read by publishers under it and by that shard alone without it.
  std::unique_ptr<uint32_t[]> local;
  // Per shard: its messages pushed (under the bucket mutex) whose delivery has not begun there
  // (the shard counts them down). A subscription made while this is 0 cannot meet a message
  // published before it.
  std::unique_ptr<std::atomic<uint32_t>[]> in_flight;
  std::atomic<uint64_t> subscribers{0};
};

struct Hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
struct Equal {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};

// Topics by name, in buckets with a mutex each, so publishes to different topics rarely meet.
class Registry {
 public:
  static constexpr std::size_t kBuckets = 64;
  struct Bucket {
    std::mutex mutex;
    std::unordered_map<std::string, Topic*, Hash, Equal> topics;
  };
  ~Registry();
  static std::size_t hash_of(std::string_view name) { return Hash{}(name); }
  Bucket& bucket(std::size_t hash) { return buckets_[(hash >> 7) % kBuckets]; }
  // Under the bucket's mutex.
  static Topic* find(Bucket& b, std::string_view name) {
    auto it = b.topics.find(name);
    return it == b.topics.end() ? nullptr : it->second;
  }

  std::atomic<uint64_t> listened{0};  // topics with listening > 0

 private:
  std::array<Bucket, kBuckets> buckets_;
};

// One message on its way to a shard; offset 0 marks a release of the shard's reference instead.
struct Pending {
  Topic* topic;
  uint64_t offset;
  SharedBuffer payload;
  uint32_t shards;  // how many shards it was handed to (PubSubConfig::on_delivered)
};

struct Encodings {
  std::array<Encoding, PubSub::kMaxEncodings> table;
  std::atomic<unsigned> count{1};
  std::mutex mutex;  // add_encoding
};

}  // namespace pubsub

class PubSubImpl {
 public:
  PubSubImpl(Runtime& runtime, PubSubConfig config);
  ~PubSubImpl();

  Runtime& runtime;
  const PubSubConfig config;
  const unsigned shard_count;
  pubsub::Registry registry;
  pubsub::Encodings encodings;
  std::vector<std::unique_ptr<TopicShard>> shards;
  std::atomic<uint64_t> published{0};
  std::atomic<uint64_t> unheard{0};

  // The shard state of the calling thread's shard, or nullptr off the runtime's shards.
  TopicShard* here();
  TopicShard& of(Connection c) { return *shards[c.shard().index()]; }
  uint64_t publish(std::string_view topic, SharedBuffer payload);
  OverflowPolicy policy_of(std::string_view topic) const {
    return config.policy_for ? config.policy_for(topic) : config.policy;
  }
};

// One shard's view: the topics its connections follow, their members, the subscribers' slots
// and backlogs, and the inbox publishers fill. Everything but the inbox belongs to the shard's
// thread.
class TopicShard {
 public:
  TopicShard(PubSubImpl& owner, unsigned index);
  ~TopicShard();

  bool subscribe(Connection c, std::string_view topic, EncodingId encoding);
  bool unsubscribe(Connection c, std::string_view topic);
  void unsubscribe_all(Connection c);
  void on_writable(Connection c);
  SubscriberInfo info(Connection c) const;
  std::vector<SlowSubscriber> slowest(std::size_t n) const;

  // Any thread, under the topic's bucket mutex: queues a message (or a release marker) and
  // says whether the shard must be woken to drain (a post is needed).
  bool push(pubsub::Topic* topic, uint64_t offset, const SharedBuffer& payload,
            uint32_t shards = 0);
  void delivered(const pubsub::Pending& message);
  // Any thread: posts the drain task.
  void wake();
  PubSubCounters counters() const;

 private:
  // Where the next subscription of a connection is: (local topic, position in its members).
  struct Link {
    uint32_t topic = pubsub::kNone;
    uint32_t pos = 0;
  };
  // One subscription, in its topic's member list.
  struct Member {
    uint32_t conn;  // connection id on this shard, or kDead
    uint8_t encoding;
    uint8_t fresh;    // made since the last message it may have: skipped until activated
    uint16_t serial;  // tells this subscription from a later one of the same connection
    Link next;        // the connection's next subscription
  };
  static_assert(sizeof(Member) == 16, "a subscription's budget");
  static constexpr uint32_t kDead = UINT32_MAX;

  struct Held {
    SharedBuffer frame;
    uint32_t topic;
    OverflowPolicy policy;
  };
  // A subscriber's messages held back while its connection is above max_queued.
  struct Backlog {
    std::vector<Held> items;
    std::size_t head = 0;
    std::size_t bytes = 0;
    uint32_t index = 0;  // in backlogged_
    std::size_t size() const { return items.size() - head; }
  };
  // Per connection id that subscribes. 40 bytes; the connection record is the core's 32.
  struct Slot {
    Connection conn;  // the subscriber (default: slot unused)
    Link head;        // its first subscription
    uint32_t subs;
    uint32_t dropped;
    Backlog* backlog;  // only while backlogged
  };
  static_assert(sizeof(Slot) <= 40, "a subscriber's budget");
  static constexpr uint32_t kPageSlots = 256;
  struct Page {
    Slot slots[kPageSlots];
    uint32_t used = 0;
  };
  // A subscription that must not get the messages published before it was made, which may
  // still be in the inbox: it is activated by the first message with offset >= first.
  struct Fresh {
    uint64_t first;
    uint32_t conn;
    uint16_t serial;
  };
  struct LocalTopic {
    pubsub::Topic* topic;
    std::vector<Member> members;
    std::vector<Fresh> fresh;  // in subscription order, so by first; [fresh_head, end) waiting
    std::size_t fresh_head = 0;
    uint16_t next_serial = 0;
    uint32_t dead = 0;  // members marked kDead during a delivery
    bool delivering = false;
    bool listed = true;  // publishers still send to this shard for it
  };

  Slot* find_slot(Connection c);
  const Slot* find_slot(Connection c) const;
  Slot& slot_at(uint32_t id) { return pages_[id / kPageSlots]->slots[id % kPageSlots]; }
  Slot& claim_slot(Connection c);
  void release_slot(uint32_t id);
  void remove_link(Slot& s, Link* prev);
  void remove_all(uint32_t id, Slot& s);
  void swap_remove(uint32_t topic, uint32_t pos);
  uint32_t local_topic(pubsub::Topic* t);
  // Tells the registry this shard no longer listens (once); the release marker follows.
  void unlist(uint32_t topic);
  void drop_local_topic(uint32_t topic);
  void release_topic(pubsub::Topic* t);
  // Runs the inbox: messages in order, at most deliveries_per_turn members per call.
  void drain();
  void begin_delivery(uint32_t topic, uint64_t offset);
  // Activates the fresh subscriptions of a local topic whose first offset is <= offset.
  void activate_fresh(uint32_t topic, uint64_t offset);
  // Delivers to the current topic's next members; false when the budget ran out first.
  bool deliver_some(const pubsub::Pending& message, std::size_t& budget);
  void end_delivery();
  void offer(uint32_t id, EncodingId encoding, uint32_t topic, OverflowPolicy policy,
             const SharedBuffer& frame);
  void hold(Slot& s, uint32_t topic, OverflowPolicy policy, const SharedBuffer& frame);
  // Sends held messages while there is room; false when the subscriber turned out closed.
  bool feed(uint32_t id, Slot& s);
  void free_backlog(Slot& s);
  void close_slow(uint32_t id, Slot& s, EncodingId encoding);
  void check_backlogs();
  bool send(uint32_t id, Slot& s, const SharedBuffer& frame);
  void add_memory(long long bytes);
  Shard& shard() { return owner_.runtime.shard(index_); }

  PubSubImpl& owner_;
  const unsigned index_;

  std::vector<std::unique_ptr<Page>> pages_;
  std::vector<std::unique_ptr<LocalTopic>> topics_;
  std::vector<uint32_t> free_topics_;
  std::vector<uint32_t> backlogged_;
  bool check_armed_ = false;
  long long memory_ = 0;

  std::mutex inbox_mutex_;
  std::vector<pubsub::Pending> inbox_;
  std::vector<pubsub::Pending> batch_;  // taken from the inbox, delivered in order
  bool drain_posted_ = false;

  // The delivery in progress (one at a time): batch_[batch_pos_] to the members
  // [cursor_, cursor_end_) of local topic current_, with the frames encoded so far.
  std::size_t batch_pos_ = 0;
  uint32_t current_ = pubsub::kNone;
  uint32_t cursor_ = 0;
  uint32_t cursor_end_ = 0;
  uint32_t encoded_ = 0;
  SharedBuffer frames_[PubSub::kMaxEncodings];
  uint64_t inbox_overflows_ = 0;  // under inbox_mutex_

  struct ShardCounters {
    ShardCounter deliveries, encodes, dropped, conflated, slow_consumer_closes, dead_subscribers,
        subscriptions, topics, backlogged, held_bytes, memory_bytes;
  };
  ShardCounters counters_;
};

}  // namespace myriad
