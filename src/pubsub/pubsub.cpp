// PubSub: the facade, the topic registry and publishing. Delivery is in topic_shard.cpp.
#include <myriad/pubsub.hpp>
#include <myriad/runtime.hpp>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "pubsub_impl.hpp"

namespace myriad {

const char* to_string(OverflowPolicy policy) {
  switch (policy) {
    case OverflowPolicy::kClose:
      return "close";
    case OverflowPolicy::kDrop:
      return "drop";
    case OverflowPolicy::kLatest:
      return "latest";
  }
  return "?";
}

OverflowPolicy parse_overflow_policy(std::string_view text) {
  if (text == "close") return OverflowPolicy::kClose;
  if (text == "drop") return OverflowPolicy::kDrop;
  if (text == "latest") return OverflowPolicy::kLatest;
  throw std::invalid_argument("overflow policy '" + std::string(text) +
                              "' (known: close, drop, latest)");
}

void PubSubConfig::validate() const {
  if (max_queued == 0) throw std::invalid_argument("pubsub max_queued 0: must be positive");
  if (drain_check.count() <= 0) {
    throw std::invalid_argument("pubsub drain_check " + format_duration(drain_check) +
                                ": must be positive");
  }
  if (close_grace.count() < 0) {
    throw std::invalid_argument("pubsub close_grace " + format_duration(close_grace) +
                                ": must not be negative");
  }
  if (max_inbox == 0) throw std::invalid_argument("pubsub max_inbox 0: must be positive");
  if (deliveries_per_turn == 0)
    throw std::invalid_argument("pubsub deliveries_per_turn 0: must be positive");
}

PubSubCounters& PubSubCounters::operator+=(const PubSubCounters& o) {
  published += o.published;
  unheard += o.unheard;
  deliveries += o.deliveries;
  encodes += o.encodes;
  dropped += o.dropped;
  conflated += o.conflated;
  slow_consumer_closes += o.slow_consumer_closes;
  dead_subscribers += o.dead_subscribers;
  inbox_overflows += o.inbox_overflows;
  subscriptions += o.subscriptions;
  topics += o.topics;
  backlogged += o.backlogged;
  held_bytes += o.held_bytes;
  memory_bytes += o.memory_bytes;
  return *this;
}

std::string PubSubCounters::to_string() const {
  std::string s;
  auto add = [&s](const char* key, uint64_t v) {
    if (!s.empty()) s += ' ';
    s += key;
    s += '=';
    s += std::to_string(v);
  };
  add("published", published);
  add("unheard", unheard);
  add("deliveries", deliveries);
  add("encodes", encodes);
  add("dropped", dropped);
  add("conflated", conflated);
  add("slow_consumer_closes", slow_consumer_closes);
  add("dead_subscribers", dead_subscribers);
  add("inbox_overflows", inbox_overflows);
  add("subscriptions", subscriptions);
  add("topics", topics);
  add("backlogged", backlogged);
  add("held_bytes", held_bytes);
  add("memory_bytes", memory_bytes);
  return s;
}

namespace pubsub {
Registry::~Registry() {
  for (Bucket& b : buckets_) {
    for (auto& [name, topic] : b.topics) delete topic;
  }
}
}  // namespace pubsub

// ---- PubSubImpl ----

PubSubImpl::PubSubImpl(Runtime& rt, PubSubConfig cfg)
    : runtime(rt), config(std::move(cfg)), shard_count(rt.shard_count()) {
  config.validate();
  if (config.max_queued >= rt.config().max_write_queue) {
    throw std::invalid_argument("pubsub max_queued " + format_size(config.max_queued) +
                                " must stay below the runtime's max_write_queue " +
                                format_size(rt.config().max_write_queue) +
                                ", or subscribers are closed as slow readers first");
  }
  encodings.table[PubSub::kRaw].name = "raw";
  for (unsigned i = 0; i < shard_count; ++i) {
    shards.push_back(std::make_unique<TopicShard>(*this, i));
  }
}

PubSubImpl::~PubSubImpl() = default;

TopicShard* PubSubImpl::here() {
  Shard* s = Shard::current();
  if (s == nullptr || &s->runtime() != &runtime) return nullptr;
  return shards[s->index()].get();
}

uint64_t PubSubImpl::publish(std::string_view name, SharedBuffer payload) {
  std::size_t hash = pubsub::Registry::hash_of(name);
  pubsub::Registry::Bucket& bucket = registry.bucket(hash);
  // Shards to wake once the lock is gone (a post may be a system call).
  constexpr unsigned kInline = 64;
  unsigned inline_wake[kInline];
  std::vector<unsigned> more_wake;
  unsigned wakes = 0;
  uint64_t offset;
  {
    std::lock_guard lock(bucket.mutex);
    pubsub::Topic* topic = pubsub::Registry::find(bucket, name);
    if (topic == nullptr || topic->listening == 0) {
      unheard.fetch_add(1, std::memory_order_relaxed);
      return 0;
    }
    offset = topic->next_offset++;
    uint32_t reach = 0;
    for (unsigned s = 0; s < shard_count; ++s) reach += topic->local[s] != pubsub::kNone;
    for (unsigned s = 0; s < shard_count; ++s) {
      if (topic->local[s] == pubsub::kNone) continue;
      if (!shards[s]->push(topic, offset, payload, reach)) continue;
      if (wakes < kInline) {
        inline_wake[wakes++] = s;
      } else {
        more_wake.push_back(s);
      }
    }
  }
  for (unsigned i = 0; i < wakes; ++i) shards[inline_wake[i]]->wake();
  for (unsigned s : more_wake) shards[s]->wake();
  published.fetch_add(1, std::memory_order_relaxed);
  return offset;
}

// ---- PubSub ----

PubSub::PubSub(Runtime& runtime, PubSubConfig config)
    : impl_(std::make_unique<PubSubImpl>(runtime, std::move(config))) {}

PubSub::~PubSub() {
  // Shards call into us (deliveries, on_close at their shutdown) until they end.
  Runtime& rt = impl_->runtime;
  rt.stop();
  rt.wait();
  while (rt.running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

EncodingId PubSub::add_encoding(Encoding encoding) {
  pubsub::Encodings& e = impl_->encodings;
  std::lock_guard lock(e.mutex);
  unsigned n = e.count.load(std::memory_order_relaxed);
  if (n >= kMaxEncodings) {
    throw std::length_error("pubsub: encoding '" + encoding.name + "' would be number " +
                            std::to_string(n + 1) + "; at most " + std::to_string(kMaxEncodings));
  }
  if (!encoding.encode) {
    throw std::invalid_argument("pubsub: encoding '" + encoding.name + "' has no encode function");
  }
  e.table[n] = std::move(encoding);
  e.count.store(n + 1, std::memory_order_release);
  return static_cast<EncodingId>(n);
}

namespace {
bool valid_topic(std::string_view topic) {
  return !topic.empty() && topic.size() <= PubSub::kMaxTopicLength;
}
}  // namespace

bool PubSub::subscribe(Connection c, std::string_view topic, EncodingId encoding) {
  if (c == Connection() || !valid_topic(topic) ||
      encoding >= impl_->encodings.count.load(std::memory_order_acquire)) {
    return false;
  }
  TopicShard& shard = impl_->of(c);
  if (Shard::current() != &c.shard()) {
    c.shard().post(
        [&shard, c, t = std::string(topic), encoding] { shard.subscribe(c, t, encoding); });
    return true;
  }
  return shard.subscribe(c, topic, encoding);
}

bool PubSub::unsubscribe(Connection c, std::string_view topic) {
  if (c == Connection() || !valid_topic(topic)) return false;
  TopicShard& shard = impl_->of(c);
  if (Shard::current() != &c.shard()) {
    c.shard().post([&shard, c, t = std::string(topic)] { shard.unsubscribe(c, t); });
    return true;
  }
  return shard.unsubscribe(c, topic);
}

void PubSub::unsubscribe_all(Connection c) {
  if (c == Connection()) return;
  TopicShard& shard = impl_->of(c);
  if (Shard::current() != &c.shard()) {
    c.shard().post([&shard, c] { shard.unsubscribe_all(c); });
    return;
  }
  shard.unsubscribe_all(c);
}

void PubSub::on_writable(Connection c) {
  if (c == Connection()) return;
  TopicShard& shard = impl_->of(c);
  if (Shard::current() != &c.shard()) {
    c.shard().post([&shard, c] { shard.on_writable(c); });
    return;
  }
  shard.on_writable(c);
}

SubscriberInfo PubSub::subscriber(Connection c) const {
  if (c == Connection()) return {};
  return impl_->of(c).info(c);
}

std::vector<SlowSubscriber> PubSub::slowest(std::size_t n) const {
  TopicShard* shard = impl_->here();
  return shard == nullptr ? std::vector<SlowSubscriber>() : shard->slowest(n);
}

uint64_t PubSub::publish(std::string_view topic, std::span<const std::byte> payload) {
  {
    // Nobody listening costs a lookup and no copy.
    pubsub::Registry& registry = impl_->registry;
    pubsub::Registry::Bucket& bucket = registry.bucket(pubsub::Registry::hash_of(topic));
    std::lock_guard lock(bucket.mutex);
    pubsub::Topic* t = pubsub::Registry::find(bucket, topic);
    if (t == nullptr || t->listening == 0) {
      impl_->unheard.fetch_add(1, std::memory_order_relaxed);
      return 0;
    }
  }
  return impl_->publish(topic, SharedBuffer::copy(payload));
}

uint64_t PubSub::publish(std::string_view topic, SharedBuffer payload) {
  return impl_->publish(topic, std::move(payload));
}

std::size_t PubSub::subscribers(std::string_view topic) const {
  pubsub::Registry& registry = impl_->registry;
  pubsub::Registry::Bucket& bucket = registry.bucket(pubsub::Registry::hash_of(topic));
  std::lock_guard lock(bucket.mutex);
  pubsub::Topic* t = pubsub::Registry::find(bucket, topic);
  return t == nullptr ? 0
                      : static_cast<std::size_t>(t->subscribers.load(std::memory_order_relaxed));
}

std::size_t PubSub::topics() const {
  return static_cast<std::size_t>(impl_->registry.listened.load(std::memory_order_relaxed));
}

PubSubCounters PubSub::counters() const {
  PubSubCounters sum;
  for (const auto& s : impl_->shards) sum += s->counters();
  sum.published = impl_->published.load(std::memory_order_relaxed);
  sum.unheard = impl_->unheard.load(std::memory_order_relaxed);
  return sum;
}

const PubSubConfig& PubSub::config() const {
  return impl_->config;
}

}  // namespace myriad
