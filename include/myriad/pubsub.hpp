// Public. Topics and fan-out: publish a message once, from any thread, and deliver it to every
// connection subscribed to its topic, on every shard, with bounded memory per subscriber.
//
//   myriad::PubSub pubsub(runtime);
//   myriad::EncodingId line = pubsub.add_encoding(myriad::line_encoding());
//   // in a handler, on the connection's shard:
//   pubsub.subscribe(connection, "prices/eur", line);
//   // in on_close:            pubsub.on_close(connection);
//   // in on_write_watermark:  if (!above_high) pubsub.on_writable(connection);
//   // anywhere, any thread:
//   pubsub.publish("prices/eur", bytes);
//
// How a message travels: publish() copies the payload once into a SharedBuffer, takes the next
// offset of its topic and hands one reference to each shard that has subscribers of that topic
// (none at all when nobody listens: then publish() costs one hash lookup under a lock and
// allocates nothing). Each shard encodes the message once per encoding its subscribers of that
// topic use (a raw frame, a text line, later a WebSocket frame or an SSE event), and queues a
// reference to that one encoded buffer on every subscriber's connection: no copy per subscriber.
// Messages that reach a subscriber in the same loop turn leave in one gathered send.
//
// Slow subscribers: while a subscriber's connection has fewer than PubSubConfig::max_queued bytes
// queued, messages go straight to it. Past that, its topic's OverflowPolicy decides: kClose
// closes it as a slow consumer (after a last "goodbye" frame its encoding may define), kDrop
// holds up to max_held bytes and drops the oldest beyond that (the subscriber sees the gap in the
// offsets), kLatest holds only the newest message per topic (conflation). What is held is fed
// to the connection as its queue drains. So a subscriber costs at most max_queued plus max_held
// (kDrop) or one message per subscribed topic (kLatest), whatever it does.
//
// Order: offsets of a topic start at 1 when the topic comes into being (its first subscriber)
// and increase by one per publish that reached a subscriber. Publishes to one topic are
// serialised (one lock per topic's bucket), so every subscriber receives a topic's messages in
// offset order, whichever threads published them; the order of two publishes from one thread is
// their offset order. Across different topics there is no order. A topic with no subscribers
// left is forgotten, and its offsets start again at 1 when it is subscribed to again.
//
// A subscription gets exactly the messages published after it was made: those whose publish()
// took its offset after subscribe() took the topic's lock (on the subscriber's shard, so when
// subscribe() returns there). Messages published just before, perhaps still on their way to
// that shard, are not delivered to it. So a caller that serialises its publishes and
// subscribes of a topic under a lock of its own knows exactly where a new subscription starts
// (e.g. to replay a history up to there first).
//
// Memory: a subscription costs 16 bytes in its topic's member list (24 with growth slack); a
// subscribed connection costs a 40-byte slot in a per-shard table; nothing else while it keeps
// up. Held messages exist only while a subscriber is backlogged. A new subscription also has a
// 16-byte entry in its topic's list of fresh ones until the topic's next message reaches the
// shard.
//
// Thread rules: publish(), subscribers(), topics(), counters() and add_encoding() are safe from
// any thread. subscribe(), unsubscribe(), unsubscribe_all(), on_close(), on_writable() and
// subscriber() belong on the connection's shard thread (the mutating ones are posted there when
// called from elsewhere, e.g. with Config::handlers_on_workers). Encoders run on shard threads,
// several at once: they must be thread-safe.
//
// Lifetime: construct after the Runtime, with it running or not. Destroying the PubSub stops the
// runtime and waits for its shards (shards call into it until they end).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <myriad/config.hpp>
#include <myriad/connection.hpp>
#include <myriad/shared_buffer.hpp>

namespace myriad {

class Runtime;
class PubSubImpl;

// What happens to a subscriber whose connection has max_queued bytes queued.
enum class OverflowPolicy : uint8_t {
  kClose,   // close it as a slow consumer (its encoding's goodbye frame first), counted
  kDrop,    // hold up to max_held bytes; beyond that drop the oldest held message, counted
  kLatest,  // hold only the newest message of each topic; older held ones are replaced, counted
};
const char* to_string(OverflowPolicy policy);
// "close", "drop", "latest"; throws std::invalid_argument otherwise.
OverflowPolicy parse_overflow_policy(std::string_view text);

// Index of an encoding registered with PubSub::add_encoding(); PubSub::kRaw is built in.
using EncodingId = uint8_t;

// What an encoder sees: valid only during the call. payload may be returned as it is.
struct Message {
  std::string_view topic;
  uint64_t offset;
  const SharedBuffer& payload;
};

// How messages are framed for one kind of connection. encode is called once per message per
// shard that has subscribers using this encoding (several shards at once: thread-safe, please);
// an empty result sends nothing. goodbye, if set, makes the last frame a slow consumer gets
// before it is closed, carrying a reason a client can show ("slow consumer").
struct Encoding {
  std::string name;
  std::function<SharedBuffer(const Message&)> encode;
  std::function<SharedBuffer(std::string_view reason)> goodbye;
};

// Built-in encodings, for plain TCP clients:
// frame: binary, big-endian: u32 length of the rest | u8 kind (1 message, 2 goodbye) | u8 topic
//        length | topic | u64 offset | payload. A goodbye has topic length 0, offset 0 and the
//        reason as its payload.
// line:  text header, binary-safe body: "MSG <topic> <offset> <length>\n<payload>\n"; the goodbye
//        is "ERR <reason>\n". Topics must not contain spaces or newlines for this one to parse.
Encoding frame_encoding();
Encoding line_encoding();

struct PubSubConfig {
  // A subscriber's connection may have this many bytes queued (Connection::queued()) before
  // its topics' overflow policy applies. Keep it at or above Config::write_high_watermark so
  // the drain edge (on_writable) resumes delivery at once, and well below max_write_queue.
  std::size_t max_queued = std::size_t{256} << 10;
  // kDrop: bytes a backlogged subscriber may hold beyond max_queued (at least the newest
  // message is always kept).
  std::size_t max_held = std::size_t{256} << 10;
  // The policy of a topic, chosen once when the topic comes into being: policy_for(topic) if
  // set (called under a lock: quick, and no calls into the PubSub), else `policy`.
  OverflowPolicy policy = OverflowPolicy::kDrop;
  std::function<OverflowPolicy(std::string_view topic)> policy_for;
  // While a shard has backlogged subscribers it checks them this often, in case their drain
  // edge is not forwarded (on_writable) or never comes because max_queued is below the high
  // watermark.
  Duration drain_check = std::chrono::milliseconds(5);
  // A slow consumer is closed gracefully (its queued output and goodbye first) and reset if it
  // has not read them within this.
  Duration close_grace = std::chrono::seconds(2);
  // A shard queues a message on at most this many subscribers per loop turn, then lets the loop
  // send (and the connections give their output memory back) before it goes on: so a broadcast
  // to a million subscribers never holds a million output queues at once.
  std::size_t deliveries_per_turn = 4096;
  // Messages waiting for a shard that has not delivered them yet. Past it, that shard misses
  // the message (counted in inbox_overflows; subscribers see a gap in the offsets).
  std::size_t max_inbox = 65536;
  // Called on a shard's thread once that shard has offered a message to every subscriber of its
  // topic there (or found none left), once per shard the message was handed to; `shards` says
  // how many it was handed to, so the last of those calls ends the message's fan-out (a shard
  // whose inbox was full is counted but never calls). Quick, thread-safe, and no calls into the
  // PubSub. Not set: nothing is called.
  std::function<void(const Message& message, unsigned shards)> on_delivered;

  // Throws std::invalid_argument naming the field and the value.
  void validate() const;
};

// A snapshot summed over shards. The "now" ones are gauges.
struct PubSubCounters {
  uint64_t published = 0;             // publishes that reached at least one shard
  uint64_t unheard = 0;               // publishes to a topic with no subscriber
  uint64_t deliveries = 0;            // messages queued on subscribers' connections
  uint64_t encodes = 0;               // encoder calls (message x encoding x shard)
  uint64_t dropped = 0;               // kDrop: held messages dropped
  uint64_t conflated = 0;             // kLatest: held messages replaced by a newer one
  uint64_t slow_consumer_closes = 0;  // kClose: subscribers closed as slow consumers
  uint64_t dead_subscribers = 0;      // subscriptions removed because the connection was gone
  uint64_t inbox_overflows = 0;       // messages a shard missed because its inbox was full
  uint64_t subscriptions = 0;         // now
  uint64_t topics = 0;                // now: topics with subscribers, counted once per shard
  uint64_t backlogged = 0;            // now: subscribers holding messages back
  uint64_t held_bytes = 0;            // now: bytes those hold (references to shared buffers)
  uint64_t memory_bytes = 0;          // now: what the per-shard tables and lists occupy

  PubSubCounters& operator+=(const PubSubCounters& other);
  // One line, "key=value ..." in field order.
  std::string to_string() const;
};

// One subscriber, as its shard sees it.
struct SubscriberInfo {
  uint32_t subscriptions = 0;
  std::size_t queued = 0;      // bytes in the connection's output queue
  std::size_t held = 0;        // bytes held back while backlogged
  uint32_t held_messages = 0;  // messages held back
  uint64_t dropped = 0;        // messages it lost to kDrop or kLatest
  bool backlogged = false;
};

struct SlowSubscriber {
  Connection connection;
  SubscriberInfo info;
};

class PubSub {
 public:
  static constexpr EncodingId kRaw = 0;  // the payload as it is, no framing
  static constexpr unsigned kMaxEncodings = 16;
  static constexpr std::size_t kMaxTopicLength = 255;

  explicit PubSub(Runtime& runtime, PubSubConfig config = {});
  ~PubSub();
  PubSub(const PubSub&) = delete;
  PubSub& operator=(const PubSub&) = delete;

  // Thread-safe. Registers an encoding and returns its id; throws std::length_error past
  // kMaxEncodings. Register before subscribing anyone with it.
  EncodingId add_encoding(Encoding encoding);

  // Subscribes c to topic (1..kMaxTopicLength bytes), its messages framed by encoding. True
  // when subscribed (also when it already was; the first encoding stays); false for a bad topic
  // or encoding or a closed connection. From another thread: posted to c's shard, and true
  // when the arguments are valid.
  bool subscribe(Connection c, std::string_view topic, EncodingId encoding = kRaw);
  // True when c was subscribed to topic (held messages of that topic are dropped too).
  bool unsubscribe(Connection c, std::string_view topic);
  void unsubscribe_all(Connection c);
  // Forward from the connection's handler: on_close (every time: subscriptions go away when the
  // connection does; a connection that closed without it is found and removed at its next
  // delivery), and on_write_watermark(c, false), which feeds a backlogged subscriber at once.
  void on_close(Connection c) { unsubscribe_all(c); }
  void on_writable(Connection c);

  // On c's shard thread.
  SubscriberInfo subscriber(Connection c) const;
  // On a shard thread: that shard's backlogged subscribers, most bytes pending first, at most n.
  std::vector<SlowSubscriber> slowest(std::size_t n) const;

  // Thread-safe. Publishes a copy of payload (one copy, shared by every shard and subscriber).
  // Returns the message's offset, or 0 when nobody was subscribed (then nothing is copied).
  uint64_t publish(std::string_view topic, std::span<const std::byte> payload);
  uint64_t publish(std::string_view topic, std::string_view payload) {
    return publish(topic, std::as_bytes(std::span(payload.data(), payload.size())));
  }
  // The same without the copy: the buffer itself is shared.
  uint64_t publish(std::string_view topic, SharedBuffer payload);

  // Thread-safe. Subscribers of topic on every shard, now.
  std::size_t subscribers(std::string_view topic) const;
  // Thread-safe. Topics with at least one subscriber, now.
  std::size_t topics() const;
  PubSubCounters counters() const;
  const PubSubConfig& config() const;

 private:
  std::unique_ptr<PubSubImpl> impl_;
};

}  // namespace myriad
