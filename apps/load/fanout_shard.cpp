#include "fanout_shard.hpp"

#include <algorithm>

namespace myriad::load {

class FanoutShard::SubEvents final : public FanoutEvents {
 public:
  SubEvents(FanoutShard& shard, Sub& sub, uint64_t now) : shard_(shard), sub_(sub), now_(now) {}
  void subscribed() override {
    if (sub_.reconnecting) {
      sub_.reconnecting = false;
      shard_.counts_.resubscribed.add();
      return;
    }
    if (sub_.subscribed) return;
    sub_.subscribed = true;
    shard_.counts_.subscribed.add();
  }
  void message(std::string_view payload) override { shard_.on_message(sub_, payload, now_); }
  void reply(std::string_view bytes) override { sub_.connection.send(bytes); }
  void epoch(std::string_view e) override {
    if (shard_.epoch_.empty()) shard_.epoch_ = std::string(e);
  }
  void position(uint64_t offset) override { sub_.offset = offset; }

 private:
  FanoutShard& shard_;
  Sub& sub_;
  uint64_t now_;
};

class FanoutShard::PublisherEvents final : public FanoutEvents {
 public:
  explicit PublisherEvents(Connection c) : c_(c) {}
  void subscribed() override {}
  void message(std::string_view) override {}
  void reply(std::string_view bytes) override { c_.send(bytes); }

 private:
  Connection c_;
};

FanoutShard::FanoutShard(const Options& options, const FanoutOptions& fanout,
                         const FanoutProtocol& protocol, unsigned index, unsigned shard_count)
    : opt_(options), fanout_(fanout), protocol_(protocol), index_(index), shards_(shard_count) {
  for (uint32_t k = 0; k < fanout_.topics; ++k) topic_names_.push_back(fanout_.topic_name(k));
  payload_.resize(opt_.size);
}

// ---- Ramp ----

void FanoutShard::start_ramp(Shard& shard, uint64_t count) {
  subs_.resize(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t global = i * shards_ + index_;
    subs_[i].topic = static_cast<uint32_t>(global % fanout_.topics);
    subs_[i].next = subs_[i].topic;
  }
  ramp_start_ = std::chrono::steady_clock::now();
  ramp_tick(shard);
}

void FanoutShard::ramp_tick(Shard& shard) {
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - ramp_start_).count();
  auto allowed = static_cast<uint64_t>(elapsed * opt_.connect_rate / shards_) + 1;
  uint64_t window = std::max<uint64_t>(1, opt_.connect_window / shards_);
  while (issued_ < subs_.size() && issued_ < allowed && issued_ - done_ < window) {
    connect(shard, issued_);
    ++issued_;
    counts_.connects_started.add();
  }
  if (issued_ < subs_.size()) {
    shard.after(std::chrono::milliseconds(1), [this, &shard] { ramp_tick(shard); });
  }
}

void FanoutShard::connect(Shard& shard, uint64_t local) {
  uint64_t global = local * shards_ + index_;
  const Address& to = opt_.targets[global % opt_.targets.size()];
  // Tags are (local + 1) << 1, even; the publisher's is 1.
  shard.connect(to, *this, reinterpret_cast<void*>(static_cast<uintptr_t>((local + 1) << 1)));
}

void FanoutShard::start_wave(Shard& shard) {
  wave_start_ = std::chrono::steady_clock::now();
  wave_ticking_ = true;
  for (Sub& s : subs_) {
    if (!s.subscribed || s.gone || !s.connection.valid()) continue;
    s.reconnecting = true;
    ++wave_expected_;
    counts_.wave_closed.add();
    s.partial.clear();
    s.state = 0;
    // Dropped, as a proxy restart or a network blip drops them; on_close queues it to come
    // back.
    s.connection.abort();
  }
  wave_tick(shard);
}

void FanoutShard::wave_tick(Shard& shard) {
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wave_start_).count();
  auto allowed = static_cast<uint64_t>(elapsed * opt_.connect_rate / shards_) + 1;
  uint64_t window = std::max<uint64_t>(1, opt_.connect_window / shards_);
  while (wave_issued_ < wave_queue_.size() && wave_issued_ < allowed &&
         wave_issued_ - wave_done_ < window) {
    connect(shard, wave_queue_[wave_issued_++]);
    counts_.connects_started.add();
  }
  wave_ticking_ = wave_issued_ < wave_expected_;
  if (wave_ticking_)
    shard.after(std::chrono::milliseconds(1), [this, &shard] { wave_tick(shard); });
}

void FanoutShard::open_publisher(Shard& shard) {
  shard.connect(fanout_.publish_target, *this, reinterpret_cast<void*>(kPublisherTag));
}

uint64_t FanoutShard::subscribed_on(uint32_t k) const {
  uint64_t n = 0;
  for (const Sub& s : subs_) n += s.subscribed && s.topic == k ? 1 : 0;
  return n;
}

// ---- Connections ----

void FanoutShard::on_open(Connection c) {
  auto tag = reinterpret_cast<uintptr_t>(c.user());
  if (tag == kPublisherTag) {
    publisher_ = c;
    std::string hello = protocol_.publisher_hello();
    if (!hello.empty()) c.send(hello);
    counts_.publisher_ready.add();
    return;
  }
  Sub& s = subs_[(tag >> 1) - 1];
  s.connection = c;
  if (s.reconnecting) {
    ++wave_done_;
    // Resume after the last message it had; a protocol without offsets just subscribes again.
    c.send(protocol_.resumes() && !epoch_.empty()
               ? protocol_.resume_request(topic_names_[s.topic], s.offset, epoch_)
               : protocol_.subscribe_request(topic_names_[s.topic]));
    return;
  }
  ++done_;
  counts_.established.add();
  c.send(protocol_.subscribe_request(topic_names_[s.topic]));
}

void FanoutShard::on_close(Connection c, CloseReason reason, int) {
  auto tag = reinterpret_cast<uintptr_t>(c.user());
  bool ours = reason == CloseReason::kShutdown || reason == CloseReason::kLocal;
  if (tag == kPublisherTag) {
    publisher_ = Connection();
    if (!ours) counts_.publisher_errors.add();
    return;
  }
  Sub& s = subs_[(tag >> 1) - 1];
  if (s.reconnecting && !s.gone && s.connection == c && reason == CloseReason::kLocal) {
    // Closed by the wave: it comes back.
    s.connection = Connection();
    wave_queue_.push_back(static_cast<uint32_t>((tag >> 1) - 1));
    return;
  }
  uint32_t local = static_cast<uint32_t>((tag >> 1) - 1);
  if (reason == CloseReason::kConnectFailed) {
    if (s.reconnecting) {
      ++wave_done_;
      // The storm outran the closes that free descriptor slots (EMFILE), or the server's
      // accept queue: a client of a real reconnect storm tries again, and so does this one.
      if (retry_wave(c.shard(), s, local)) return;
    } else {
      ++done_;
    }
    s.reconnecting = false;
    counts_.connect_failed.add();
    s.gone = true;
    return;
  }
  if (s.reconnecting && !s.gone && s.connection == c && !ours) {
    // Back, but dropped before its subscription was confirmed: again, like any client.
    s.connection = Connection();
    s.partial.clear();
    s.state = 0;
    if (retry_wave(c.shard(), s, local)) return;
  }
  if (s.reconnecting && !s.gone) counts_.wave_failed.add();
  s.reconnecting = false;
  if (!ours && !s.gone) counts_.closed_unexpectedly.add();
  s.gone = true;
}

bool FanoutShard::retry_wave(Shard& shard, Sub& s, uint32_t local) {
  if (s.wave_retries >= 200) {
    counts_.wave_failed.add();
    return false;
  }
  ++s.wave_retries;
  counts_.wave_retries.add();
  ++wave_expected_;
  wave_queue_.push_back(local);
  if (!wave_ticking_) {
    wave_ticking_ = true;
    shard.after(std::chrono::milliseconds(5), [this, &shard] { wave_tick(shard); });
  }
  return true;
}

void FanoutShard::on_data(Connection c, Chunk data) {
  auto tag = reinterpret_cast<uintptr_t>(c.user());
  if (tag != kPublisherTag) {
    on_subscriber_data(subs_[(tag >> 1) - 1], data);
    return;
  }
  // The publisher's replies: checked, then dropped.
  std::string_view in = data.view();
  if (!publisher_partial_.empty()) {
    publisher_partial_.append(in);
    in = publisher_partial_;
  }
  PublisherEvents events(c);
  std::size_t used = protocol_.parse_publisher(in, publisher_state_, events);
  if (used == FanoutProtocol::kBad) {
    counts_.publisher_errors.add();
    publisher_partial_.clear();
    c.abort();
    return;
  }
  std::string rest(in.substr(used));
  publisher_partial_ = std::move(rest);
}

void FanoutShard::on_subscriber_data(Sub& s, const Chunk& data) {
  std::string_view in = data.view();
  bool partial = !s.partial.empty();
  if (partial) {
    s.partial.append(in);
    in = s.partial;
  }
  SubEvents events(*this, s, now_ns());
  std::size_t used = protocol_.parse_subscriber(in, s.state, events);
  if (used == FanoutProtocol::kBad) {
    counts_.protocol_errors.add();
    s.gone = true;
    s.partial.clear();
    s.connection.abort();
    return;
  }
  if (partial) {
    s.partial.erase(0, used);
  } else if (used < in.size()) {
    s.partial.assign(in.substr(used));
  }
}

void FanoutShard::on_message(Sub& s, std::string_view payload, uint64_t now) {
  counts_.received.add();
  uint64_t seq = 0, due = 0;
  if (!check_payload(payload, opt_.size, seq, due) || seq % fanout_.topics != s.topic) {
    counts_.corrupt.add();
    return;
  }
  if (seq == s.next) {
    s.next += fanout_.topics;
  } else if (seq > s.next) {
    counts_.gaps.add((seq - s.next) / fanout_.topics);
    s.next = seq + fanout_.topics;
  } else {
    counts_.duplicates.add();  // again, or later than a newer one
    return;
  }
  if (seq >= results_.receipts.size()) {
    std::size_t n = std::max<std::size_t>(seq + 1, results_.receipts.size() * 2);
    results_.receipts.resize(n, 0);
    results_.last_receipt_ns.resize(n, 0);
  }
  ++results_.receipts[seq];
  results_.last_receipt_ns[seq] = std::max(results_.last_receipt_ns[seq], now);
  if (due >= window_from_ && due < window_until_) {
    results_.latency.record(now > due ? now - due : 0);
    ++results_.measured_deliveries;
  }
}

// ---- Publishing ----

void FanoutShard::set_window(uint64_t from_ns, uint64_t until_ns) {
  window_from_ = from_ns;
  window_until_ = until_ns;
}

void FanoutShard::start_publishing(Shard& shard, uint64_t start_ns) {
  schedule_ = OpenLoopSchedule(opt_.rate, 1, start_ns);
  publishing_ = true;
  publish_tick(shard);
}

void FanoutShard::publish_tick(Shard& shard) {
  if (!publishing_) return;
  uint64_t now = now_ns();
  batch_.clear();
  schedule_.run_due(
      now,
      [&](uint32_t, uint64_t due) {
        uint64_t seq = counts_.published.get();
        uint64_t lag = now - due;
        if (lag > 1'000'000) ++results_.late_publishes;
        results_.max_publish_lag_ns = std::max(results_.max_publish_lag_ns, lag);
        make_payload(seq, due, payload_.data(), payload_.size());
        protocol_.publish_request(batch_, topic_names_[seq % fanout_.topics], payload_);
        counts_.published.add();
      },
      10000);
  if (!batch_.empty()) {
    if (!publisher_.send(batch_)) counts_.publisher_errors.add();
  }
  uint64_t next = schedule_.next_due();
  uint64_t wait = next > now ? next - now : 0;
  shard.after(std::chrono::nanoseconds(wait), [this, &shard] { publish_tick(shard); });
}

void FanoutShard::stop_publishing() {
  publishing_ = false;
}

void FanoutShard::finish(uint64_t published) {
  for (const Sub& s : subs_) {
    if (!s.subscribed) continue;
    // Messages of its topic are topic, topic + K, ... below published.
    if (s.next < published) results_.missing += (published - 1 - s.next) / fanout_.topics + 1;
  }
}

}  // namespace myriad::load
