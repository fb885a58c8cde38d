#include "hub.hpp"

#include <myriad/sse.hpp>
#include <myriad/websocket.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace push {

namespace {

// What PubSub carries and the history holds: this header, then the payload.
struct Header {
  uint64_t offset;
  uint64_t seq;
  int64_t publish_ns;
};
constexpr std::size_t kHeader = sizeof(Header);
static_assert(kHeader == 24);

Header header_of(const myriad::SharedBuffer& message) {
  Header h{};
  std::memcpy(&h, message.bytes().data(), kHeader);
  return h;
}

std::span<const std::byte> payload_of(const myriad::SharedBuffer& message) {
  return message.bytes().subspan(kHeader);
}

bool topic_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '.':
    case '_':
    case '~':
    case ':':
    case '/':
    case '@':
    case '!':
    case '$':
    case '+':
    case '=':
    case '-':
      return true;
    default:
      return false;
  }
}

template <class T>
bool parse_number(std::string_view s, T& v) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

std::byte* put(std::byte* out, std::string_view s) {
  if (!s.empty()) std::memcpy(out, s.data(), s.size());
  return out + s.size();
}
std::byte* put(std::byte* out, std::span<const std::byte> s) {
  if (!s.empty()) std::memcpy(out, s.data(), s.size());
  return out + s.size();
}

// "MSG <topic> <offset> <length>\n<payload>\n": a TCP delivery, and a WebSocket message body.
std::size_t line_size(std::string_view topic, std::string_view numbers, std::size_t payload) {
  return 4 + topic.size() + 1 + numbers.size() + 1 + payload + 1;
}
std::byte* put_line(std::byte* p, std::string_view topic, std::string_view numbers,
                    std::span<const std::byte> payload) {
  p = put(p, "MSG ");
  p = put(p, topic);
  *p++ = std::byte{' '};
  p = put(p, numbers);
  *p++ = std::byte{'\n'};
  p = put(p, payload);
  *p++ = std::byte{'\n'};
  return p;
}

// Goodbyes for slow consumers, one per transport.
myriad::SharedBuffer ws_close_frame(uint16_t code, std::string_view reason) {
  std::vector<std::byte> frame;
  myriad::ws::append_frame(frame, myriad::ws::Opcode::kClose,
                           myriad::ws::close_payload(code, reason));
  return myriad::SharedBuffer::copy(frame);
}

}  // namespace

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

const char* to_string(Transport t) {
  switch (t) {
    case Transport::kTcp:
      return "tcp";
    case Transport::kWs:
      return "ws";
    case Transport::kWsDeflate:
      return "ws-deflate";
    case Transport::kSse:
      return "sse";
  }
  return "?";
}

const char* to_string(Lost l) {
  switch (l) {
    case Lost::kNone:
      return "none";
    case Lost::kEpoch:
      return "epoch";
    case Lost::kHistory:
      return "history";
    case Lost::kAhead:
      return "ahead";
  }
  return "?";
}

const char* Hub::to_string(Status s) {
  switch (s) {
    case Status::kOk:
      return "ok";
    case Status::kBadTopic:
      return "bad topic";
    case Status::kTooLarge:
      return "message too large";
    case Status::kTooManyTopics:
      return "too many topics";
    case Status::kRefused:
      return "refused";
  }
  return "?";
}

bool valid_topic(std::string_view topic) {
  if (topic.empty() || topic.size() > myriad::PubSub::kMaxTopicLength) return false;
  return std::all_of(topic.begin(), topic.end(), topic_char);
}

bool split_topics(std::string_view list, std::vector<std::string_view>& out, std::size_t max) {
  out.clear();
  std::size_t at = 0;
  for (;;) {
    std::size_t comma = list.find(',', at);
    std::string_view t = list.substr(at, comma == std::string_view::npos ? comma : comma - at);
    if (!valid_topic(t) || out.size() >= max) return false;
    if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
    if (comma == std::string_view::npos) return true;
    at = comma + 1;
  }
}

// ---- FanoutTimes ----

const std::array<double, FanoutTimes::kBuckets - 1> FanoutTimes::kBounds = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10};

void FanoutTimes::record(int64_t ns) {
  if (ns < 0) ns = 0;
  double s = static_cast<double>(ns) / 1e9;
  std::size_t i = 0;
  while (i < kBounds.size() && s > kBounds[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
  int64_t seen = window_max_.load(std::memory_order_relaxed);
  while (ns > seen && !window_max_.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
  }
  window_sum_.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
  window_n_.fetch_add(1, std::memory_order_relaxed);
}

FanoutTimes::Snapshot FanoutTimes::snapshot() const {
  Snapshot s;
  for (std::size_t i = 0; i < kBuckets; ++i)
    s.counts[i] = counts_[i].load(std::memory_order_relaxed);
  // The count is the buckets' sum, so the exposition is consistent whatever raced.
  for (uint64_t c : s.counts) s.count += c;
  s.sum_s = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
  return s;
}

void FanoutTimes::take_window(int64_t& max_ns, int64_t& mean_ns, uint64_t& n) {
  max_ns = window_max_.exchange(0, std::memory_order_relaxed);
  uint64_t sum = window_sum_.exchange(0, std::memory_order_relaxed);
  n = window_n_.exchange(0, std::memory_order_relaxed);
  mean_ns = n == 0 ? 0 : static_cast<int64_t>(sum / n);
}

// ---- Hub ----

Hub::Hub(myriad::Runtime& runtime, HubConfig config, myriad::PubSubConfig pubsub_config)
    : runtime_(runtime), config_(std::move(config)), tracks_(new Track[kTracks]) {
  epoch_ = config_.epoch;
  if (epoch_ == 0) {
    epoch_ = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
  }
  epoch_text_ = std::to_string(epoch_);
  pubsub_config.policy = config_.policy;
  pubsub_config.policy_for = [this](std::string_view topic) { return policy_for(topic); };
  pubsub_config.on_delivered = [this](const myriad::Message& m, unsigned shards) {
    on_delivered(m, shards);
  };
  pubsub_ = std::make_unique<myriad::PubSub>(runtime_, std::move(pubsub_config));
  for (unsigned i = 0; i < kTransports; ++i) {
    auto t = static_cast<Transport>(i);
    myriad::Encoding e;
    e.name = std::string("push-") + push::to_string(t);
    e.encode = [this, t](const myriad::Message& m) {
      Header h = header_of(m.payload);
      return encode(t, m.topic, h.offset, h.seq, payload_of(m.payload));
    };
    switch (t) {
      case Transport::kTcp:
        e.goodbye = [](std::string_view reason) {
          return myriad::SharedBuffer::copy("ERR " + std::string(reason) + "\n");
        };
        break;
      case Transport::kWs:
      case Transport::kWsDeflate:
        // 4008: the application's "slow consumer" (4000-4999 are for applications).
        e.goodbye = [](std::string_view reason) { return ws_close_frame(4008, reason); };
        break;
      case Transport::kSse:
        e.goodbye = [](std::string_view reason) {
          return myriad::SharedBuffer::copy(
              myriad::sse::encode({.data = reason, .event = "close"}));
        };
        break;
    }
    encodings_[i] = pubsub_->add_encoding(std::move(e));
  }
}

Hub::~Hub() {
  // The PubSub stops the runtime (its shards call into us until they end).
  pubsub_.reset();
}

myriad::OverflowPolicy Hub::policy_for(std::string_view topic) const {
  std::size_t best = 0;
  bool found = false;
  myriad::OverflowPolicy p = config_.policy;
  for (const auto& [prefix, policy] : config_.policies) {
    if (topic.substr(0, prefix.size()) != prefix) continue;
    if (!found || prefix.size() >= best) {
      best = prefix.size();
      p = policy;
      found = true;
    }
  }
  return p;
}

bool Hub::retains(std::string_view topic) const {
  for (const std::string& prefix : config_.retain) {
    if (topic.substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

Hub::Topic* Hub::find_or_create(std::string_view name, Status& status) {
  auto it = topics_.find(std::string(name));
  if (it != topics_.end()) return it->second.get();
  if (topics_.size() >= config_.max_topics) {
    status = Status::kTooManyTopics;
    ++stats_.refused_too_many_topics;
    return nullptr;
  }
  auto t = std::make_unique<Topic>();
  t->name = std::string(name);
  t->id = static_cast<uint32_t>(topics_.size());
  t->policy = policy_for(name);
  t->retain = retains(name);
  Topic* raw = t.get();
  topics_.emplace(t->name, std::move(t));
  return raw;
}

myriad::SharedBuffer Hub::encode(Transport t, std::string_view topic, uint64_t offset, uint64_t seq,
                                 std::span<const std::byte> payload) const {
  char numbers[48];
  char* end = std::to_chars(numbers, numbers + 20, offset).ptr;
  *end++ = ' ';
  end = std::to_chars(end, numbers + sizeof(numbers), payload.size()).ptr;
  std::string_view nums(numbers, static_cast<std::size_t>(end - numbers));
  std::size_t size = line_size(topic, nums, payload.size());
  switch (t) {
    case Transport::kTcp:
      return myriad::SharedBuffer::make(
          size, [&](std::span<std::byte> out) { put_line(out.data(), topic, nums, payload); });
    case Transport::kWs: {
      // One binary frame holding exactly the TCP delivery.
      std::byte head[myriad::ws::kMaxHeaderSize];
      std::size_t hn = myriad::ws::encode_header(head, myriad::ws::Opcode::kBinary, size);
      return myriad::SharedBuffer::make(hn + size, [&](std::span<std::byte> out) {
        std::memcpy(out.data(), head, hn);
        put_line(out.data() + hn, topic, nums, payload);
      });
    }
    case Transport::kWsDeflate: {
      std::vector<std::byte> body(size);
      put_line(body.data(), topic, nums, payload);
      myriad::ws::PreparedMessage m =
          myriad::ws::prepare(myriad::ws::MessageType::kBinary, body, 512);
      return m.deflated().empty() ? m.plain() : m.deflated();
    }
    case Transport::kSse: {
      std::string id = sse_id(topic, offset, seq);
      std::string_view data(reinterpret_cast<const char*>(payload.data()), payload.size());
      myriad::sse::Event ev{.data = data, .event = {}, .id = id};
      std::size_t n = myriad::sse::encoded_size(ev);
      return myriad::SharedBuffer::make(n, [&](std::span<std::byte> out) {
        myriad::sse::encode_into(ev, std::span(reinterpret_cast<char*>(out.data()), n));
      });
    }
  }
  return {};
}

std::string Hub::sse_id(std::string_view topic, uint64_t offset, uint64_t seq) const {
  std::string id;
  id.reserve(topic.size() + 48);
  id += topic;
  id += '/';
  id += std::to_string(offset);
  id += '/';
  id += std::to_string(seq);
  id += '/';
  id += epoch_text_;
  return id;
}

bool Hub::parse_sse_id(std::string_view id, uint64_t& seq, uint64_t& epoch) {
  // "<topic>/<offset>/<seq>/<epoch>", the topic possibly holding '/': read from the end.
  std::size_t e = id.rfind('/');
  if (e == std::string_view::npos || e == 0) return false;
  std::size_t s = id.rfind('/', e - 1);
  if (s == std::string_view::npos || s == 0) return false;
  std::size_t o = id.rfind('/', s - 1);
  if (o == std::string_view::npos || o == 0) return false;
  uint64_t offset = 0;
  return parse_number(id.substr(e + 1), epoch) && parse_number(id.substr(s + 1, e - s - 1), seq) &&
         parse_number(id.substr(o + 1, s - o - 1), offset) && valid_topic(id.substr(0, o));
}

const myriad::SharedBuffer& Hub::frame_of(Entry& e, const Topic& t, Transport tr) {
  myriad::SharedBuffer& f = e.frames[static_cast<unsigned>(tr)];
  if (f.empty()) f = encode(tr, t.name, e.offset, e.seq, payload_of(e.message));
  return f;
}

Hub::Published Hub::publish(std::string_view name, std::span<const std::byte> payload) {
  Published out;
  if (!valid_topic(name)) {
    std::lock_guard lock(mutex_);
    ++stats_.refused_bad_topic;
    out.status = Status::kBadTopic;
    return out;
  }
  if (payload.size() > config_.max_message) {
    std::lock_guard lock(mutex_);
    ++stats_.refused_too_large;
    out.status = Status::kTooLarge;
    return out;
  }
  const int64_t now = now_ns();
  std::lock_guard lock(mutex_);
  Topic* t = find_or_create(name, out.status);
  if (t == nullptr) return out;
  Header h{t->last_offset + 1, seq_ + 1, now};
  myriad::SharedBuffer message =
      myriad::SharedBuffer::make(kHeader + payload.size(), [&](std::span<std::byte> bytes) {
        std::memcpy(bytes.data(), &h, kHeader);
        put(bytes.data() + kHeader, payload);
      });
  t->last_offset = h.offset;
  t->last_seq = h.seq;
  if (t->window++ == 0 && t->name.front() != '$') touched_.push_back(t);
  seq_ = h.seq;
  ++stats_.published;
  out.offset = h.offset;
  out.seq = h.seq;

  Entry e;
  e.offset = h.offset;
  e.seq = h.seq;
  e.time_ns = now;
  e.message = message;
  if (t->retain) {
    if (!t->retained.message.empty()) stats_.retained_bytes -= t->retained.message.size();
    t->retained = e;
    stats_.retained_bytes += message.size();
  }
  if (config_.history_count > 0 && payload.size() <= config_.history_bytes) {
    t->history.push_back(std::move(e));
    t->history_bytes += message.size();
    stats_.history_bytes += message.size();
    ++stats_.history_messages;
    order_.emplace_back(t, h.offset);
    while (t->history.size() > config_.history_count) {
      ++stats_.evicted_count;
      evict_front(*t);
    }
    while (t->history_bytes > config_.history_bytes) {
      ++stats_.evicted_bytes;
      evict_front(*t);
    }
  } else {
    // Not held: a resume across it must say so, and what came before is no use for one.
    while (!t->history.empty()) evict_front(*t);
    t->evicted_offset = h.offset;
    t->evicted_seq = h.seq;
  }
  trim_locked(now);

  // Fan-out timing: the shards report back through on_delivered.
  Track& track = tracks_[h.seq % kTracks];
  track.done.store(0, std::memory_order_relaxed);
  track.seq.store(h.seq, std::memory_order_release);
  out.subscribers = pubsub_->subscribers(name);
  // Under the lock: publishes reach every shard in sequence order, and a subscription made
  // under this lock starts exactly after the message it saw last.
  pubsub_->publish(name, message);
  return out;
}

void Hub::on_delivered(const myriad::Message& m, unsigned shards) {
  Header h = header_of(m.payload);
  Track& track = tracks_[h.seq % kTracks];
  if (track.seq.load(std::memory_order_acquire) != h.seq) return;  // too old to track
  if (track.done.fetch_add(1, std::memory_order_acq_rel) + 1 != shards) return;
  fanout_.record(now_ns() - h.publish_ns);
}

void Hub::evict_front(Topic& t) {
  Entry& e = t.history.front();
  t.evicted_offset = e.offset;
  t.evicted_seq = e.seq;
  t.history_bytes -= e.message.size();
  stats_.history_bytes -= e.message.size();
  --stats_.history_messages;
  t.history.pop_front();
}

void Hub::trim_locked(int64_t now) {
  const auto age = static_cast<int64_t>(config_.history_age.count());
  while (!order_.empty()) {
    auto [t, offset] = order_.front();
    if (t->history.empty() || t->history.front().offset != offset) {
      order_.pop_front();  // already gone by the topic's own limits
      continue;
    }
    bool too_old = age > 0 && now - t->history.front().time_ns > age;
    bool too_much = stats_.history_bytes > config_.history_total;
    if (!too_old && !too_much) break;
    ++(too_old ? stats_.evicted_age : stats_.evicted_total);
    evict_front(*t);
    order_.pop_front();
  }
}

void Hub::trim() {
  std::lock_guard lock(mutex_);
  trim_locked(now_ns());
}

void Hub::subscribe(myriad::Connection c, Transport tr, std::string_view name, const Resume& resume,
                    TopicSet& mine, Subscribed& out) {
  out = Subscribed{};
  if (!valid_topic(name)) {
    out.status = Status::kBadTopic;
    return;
  }
  std::lock_guard lock(mutex_);
  Topic* t = find_or_create(name, out.status);
  if (t == nullptr) return;
  if (mine.contains(t->id)) {
    out.again = true;
    out.last = t->last_offset;
    return;
  }
  out.last = t->last_offset;
  out.first = t->history.empty() ? 0 : t->history.front().offset;
  auto replay_from = [&](std::size_t i) {
    for (; i < t->history.size(); ++i) out.frames.push_back(frame_of(t->history[i], *t, tr));
  };
  auto retained = [&] {
    if (t->retain && !t->retained.message.empty()) {
      out.frames.push_back(frame_of(t->retained, *t, tr));
    }
  };
  switch (resume.kind) {
    case Resume::Kind::kNone:
      retained();
      break;
    case Resume::Kind::kOffset: {
      uint64_t since = resume.value;
      if (resume.epoch != epoch_) {
        out.lost = Lost::kEpoch;
      } else if (since > t->last_offset) {
        out.lost = Lost::kAhead;
      } else if (since < t->evicted_offset) {
        out.lost = Lost::kHistory;
      } else {
        // Everything after `since` is held: history[k] has offset front + k.
        std::size_t i = t->history.empty() ? 0 : static_cast<std::size_t>(since + 1 - out.first);
        if (since + 1 < out.first) i = 0;
        replay_from(i);
        out.resumed = true;
      }
      break;
    }
    case Resume::Kind::kSeq: {
      uint64_t since = resume.value;
      if (resume.epoch != epoch_) {
        out.lost = Lost::kEpoch;
      } else if (since > seq_) {
        out.lost = Lost::kAhead;
      } else if (since < t->evicted_seq) {
        out.lost = Lost::kHistory;
      } else {
        auto it = std::upper_bound(t->history.begin(), t->history.end(), since,
                                   [](uint64_t s, const Entry& e) { return s < e.seq; });
        replay_from(static_cast<std::size_t>(it - t->history.begin()));
        out.resumed = true;
      }
      break;
    }
  }
  if (out.lost != Lost::kNone) retained();
  if (!pubsub_->subscribe(c, name, encodings_[static_cast<unsigned>(tr)])) {
    out.status = Status::kRefused;
    out.frames.clear();
    return;
  }
  mine.add(t->id);
  switch (out.lost) {
    case Lost::kNone:
      if (out.resumed) ++stats_.resumes_recovered;
      break;
    case Lost::kEpoch:
      ++stats_.resumes_lost_epoch;
      break;
    case Lost::kHistory:
      ++stats_.resumes_lost_history;
      break;
    case Lost::kAhead:
      ++stats_.resumes_lost_ahead;
      break;
  }
  stats_.replayed += out.frames.size();
}

bool Hub::unsubscribe(myriad::Connection c, std::string_view topic, TopicSet& mine) {
  {
    std::lock_guard lock(mutex_);
    auto it = topics_.find(std::string(topic));
    if (it == topics_.end() || !mine.remove(it->second->id)) return false;
  }
  pubsub_->unsubscribe(c, topic);  // false if PubSub let it go already (a slow consumer)
  return true;
}

bool TopicSet::contains(uint32_t id) const {
  return first_ == id || std::find(more_.begin(), more_.end(), id) != more_.end();
}

void TopicSet::add(uint32_t id) {
  if (first_ == kNone) {
    first_ = id;
  } else {
    more_.push_back(id);
  }
}

bool TopicSet::remove(uint32_t id) {
  if (first_ == id) {
    if (more_.empty()) {
      first_ = kNone;
    } else {
      first_ = more_.back();
      more_.pop_back();
    }
    return true;
  }
  auto it = std::find(more_.begin(), more_.end(), id);
  if (it == more_.end()) return false;
  *it = more_.back();
  more_.pop_back();
  return true;
}

std::vector<Hub::Active> Hub::take_active(std::size_t n) {
  std::vector<Active> out;
  {
    std::lock_guard lock(mutex_);
    std::sort(touched_.begin(), touched_.end(),
              [](const Topic* a, const Topic* b) { return a->window > b->window; });
    for (Topic* t : touched_) {
      if (out.size() < n) out.push_back(Active{t->name, t->last_offset, t->window, 0});
      t->window = 0;
    }
    touched_.clear();
  }
  for (Active& a : out) a.subscribers = pubsub_->subscribers(a.topic);
  return out;
}

HubStats Hub::stats() const {
  std::lock_guard lock(mutex_);
  HubStats s = stats_;
  s.topics = topics_.size();
  return s;
}

}  // namespace push
