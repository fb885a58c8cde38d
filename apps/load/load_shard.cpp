#include "load_shard.hpp"

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace myriad::load {

namespace {
constexpr char kProbeMagic[8] = {'m', 'y', 'r', 'i', 'a', 'd', 'p', 'r'};
constexpr std::size_t kProbeSize = 16;

void make_probe(unsigned shard, uint64_t index, std::byte* out) {
  std::memcpy(out, kProbeMagic, 8);
  uint32_t s = shard, i = static_cast<uint32_t>(index);
  std::memcpy(out + 8, &s, 4);
  std::memcpy(out + 12, &i, 4);
}
}  // namespace

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

LoadShard::LoadShard(const Options& options, const Pattern& pattern, Progress& progress,
                     std::atomic<bool>& measuring, unsigned index, unsigned shard_count)
    : opt_(options),
      pattern_(pattern),
      progress_(progress),
      measuring_(measuring),
      index_(index),
      shards_(shard_count) {
  scratch_.resize(std::max<std::size_t>(opt_.size, kProbeSize));
}

// ---- Ramp: open connections at a bounded rate and with a bounded number in flight ----

void LoadShard::start_ramp(Shard& shard, uint64_t held, uint64_t active) {
  held_target_ = held;
  active_target_ = active;
  held_.resize(held);
  held_state_.assign(held, State::kConnecting);
  probe_got_.assign(held, 0);
  active_.resize(active);
  connect_rate_ = opt_.connect_rate / shards_;
  window_ = std::max<uint64_t>(1, opt_.connect_window / shards_);
  ramp_start_ = std::chrono::steady_clock::now();
  ramp_tick(shard);
}

void LoadShard::ramp_tick(Shard& shard) {
  uint64_t total = held_target_ + active_target_;
  double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - ramp_start_).count();
  auto allowed = static_cast<uint64_t>(elapsed * connect_rate_) + 1;
  uint64_t done = local_open_ + local_failed_;
  while (issued_ < total && issued_ < allowed && issued_ - done < window_) {
    uint64_t global = issued_ * shards_ + index_;  // spreads shards over the targets
    const Address& to = opt_.targets[global % opt_.targets.size()];
    bool active = issued_ >= held_target_;
    uint64_t local = active ? issued_ - held_target_ : issued_;
    shard.connect(to, *this, tag(active, local));
    ++issued_;
    progress_.connects_started.fetch_add(1, std::memory_order_relaxed);
  }
  if (issued_ < total) {
    shard.after(std::chrono::milliseconds(1), [this, &shard] { ramp_tick(shard); });
  }
}

void LoadShard::count_connect_failure(int error) {
  ++local_failed_;
  switch (error) {
    case ECONNREFUSED:
      progress_.failed_refused.fetch_add(1, std::memory_order_relaxed);
      break;
    case ETIMEDOUT:
      progress_.failed_timeout.fetch_add(1, std::memory_order_relaxed);
      break;
    case ECONNRESET:
    case EPIPE:
      progress_.failed_reset.fetch_add(1, std::memory_order_relaxed);
      break;
    case EADDRNOTAVAIL:
      progress_.failed_ports.fetch_add(1, std::memory_order_relaxed);
      break;
    default:
      progress_.failed_other.fetch_add(1, std::memory_order_relaxed);
      break;
  }
}

void LoadShard::on_open(Connection c) {
  auto t = reinterpret_cast<uintptr_t>(c.user());
  uint64_t local = t >> 2;
  ++local_open_;
  progress_.established.fetch_add(1, std::memory_order_relaxed);
  if ((t & 3u) == 1) {
    held_[local] = c;
    held_state_[local] = State::kOpen;
    return;
  }
  auto a = std::make_unique<Active>();
  a->connection = c;
  a->stream = (uint64_t{index_} << 40) | local;
  Active& ref = *a;
  active_[local] = std::move(a);
  if (traffic_ && opt_.mode == Mode::kEcho) {
    for (uint32_t i = 0; i < opt_.depth; ++i) send_message(ref, now_ns());
  }
}

void LoadShard::on_close(Connection c, CloseReason reason, int error) {
  auto t = reinterpret_cast<uintptr_t>(c.user());
  uint64_t local = t >> 2;
  if (reason == CloseReason::kConnectFailed) {
    count_connect_failure(error);
    if ((t & 3u) == 1 && local < held_state_.size()) held_state_[local] = State::kFailed;
    return;
  }
  if (reason == CloseReason::kShutdown || reason == CloseReason::kLocal) return;  // ours
  // The server closed or reset a connection it should have kept.
  progress_.closed_unexpectedly.fetch_add(1, std::memory_order_relaxed);
  if ((t & 3u) == 1 && local < held_state_.size()) {
    if (held_state_[local] == State::kProbing) {
      --probes_in_flight_;
      progress_.verify_failed.fetch_add(1, std::memory_order_relaxed);
      if (verifying_) send_probes();
    }
    held_state_[local] = State::kFailed;
  } else if ((t & 3u) == 3 && local < active_.size() && active_[local]) {
    progress_.outstanding.fetch_sub(active_[local]->started.size(), std::memory_order_relaxed);
    active_[local].reset();
  }
}

void LoadShard::on_data(Connection c, Chunk data) {
  auto t = reinterpret_cast<uintptr_t>(c.user());
  uint64_t local = t >> 2;
  if ((t & 3u) == 1) {
    on_probe_data(local, data);
  } else if (local < active_.size() && active_[local]) {
    on_active_data(*active_[local], data);
  }
}

// ---- Echo and rate: messages, verification, latency ----

void LoadShard::send_message(Active& a, uint64_t started_ns) {
  pattern_.fill(a.stream, a.sent, scratch_.data(), opt_.size);
  a.started.push_back(started_ns);
  a.sent += opt_.size;
  results_.bytes_sent += opt_.size;
  ++results_.messages_sent;
  progress_.outstanding.fetch_add(1, std::memory_order_relaxed);
  a.connection.send(std::span<const std::byte>(scratch_.data(), opt_.size));
}

void LoadShard::on_active_data(Active& a, const Chunk& data) {
  std::size_t len = data.size();
  results_.bytes_received += len;
  if (a.received + len > a.sent || !pattern_.matches(a.stream, a.received, data.data(), len)) {
    // More than we sent, or not what we sent: the server dropped, reordered or changed bytes.
    progress_.corrupt.fetch_add(1, std::memory_order_relaxed);
    progress_.outstanding.fetch_sub(a.started.size(), std::memory_order_relaxed);
    a.started.clear();
    a.connection.abort();
    return;
  }
  a.received += len;
  bool measuring = measuring_.load(std::memory_order_relaxed);
  uint64_t completed_end = (a.sent - a.started.size() * opt_.size) + opt_.size;
  uint64_t now = 0;
  while (!a.started.empty() && a.received >= completed_end) {
    if (now == 0) now = now_ns();
    uint64_t began = a.started.front();
    a.started.pop_front();
    progress_.outstanding.fetch_sub(1, std::memory_order_relaxed);
    progress_.messages.fetch_add(1, std::memory_order_relaxed);
    if (measuring) {
      results_.latency.record(now > began ? now - began : 0);
      ++results_.window_messages;
      results_.window_bytes += opt_.size;
    }
    completed_end += opt_.size;
    if (opt_.mode == Mode::kEcho && traffic_) send_message(a, now);
  }
}

void LoadShard::start_traffic(Shard& shard) {
  traffic_ = true;
  if (opt_.mode == Mode::kEcho) {
    uint64_t now = now_ns();
    for (auto& a : active_) {
      if (!a) continue;
      for (uint32_t i = 0; i < opt_.depth; ++i) send_message(*a, now);
    }
    return;
  }
  if (opt_.mode == Mode::kRate) {
    uint32_t n = static_cast<uint32_t>(active_.size());
    if (n == 0) return;
    schedule_ = OpenLoopSchedule(opt_.rate / shards_, n, now_ns());
    schedule_tick(shard);
  }
}

void LoadShard::schedule_tick(Shard& shard) {
  if (!traffic_) return;
  uint64_t now = now_ns();
  schedule_.run_due(
      now,
      [&](uint32_t conn, uint64_t due) {
        uint64_t lag = now - due;
        if (lag > 1'000'000) ++results_.late_sends;
        results_.max_lag_ns = std::max(results_.max_lag_ns, lag);
        if (active_[conn]) send_message(*active_[conn], due);
      },
      100'000);
  uint64_t next = schedule_.next_due();
  uint64_t wait = next > now ? next - now : 0;
  shard.after(std::chrono::nanoseconds(wait), [this, &shard] { schedule_tick(shard); });
}

void LoadShard::stop_traffic() {
  traffic_ = false;
}

// ---- Verification of held connections: a probe each, echoed intact ----

void LoadShard::start_verify(Shard&) {
  verifying_ = true;
  next_probe_ = 0;
  send_probes();
}

void LoadShard::send_probes() {
  std::byte probe[kProbeSize];
  while (probes_in_flight_ < opt_.probe_window && next_probe_ < held_.size()) {
    uint64_t i = next_probe_++;
    if (held_state_[i] != State::kOpen) continue;
    make_probe(index_, i, probe);
    held_state_[i] = State::kProbing;
    ++probes_in_flight_;
    held_[i].send(std::span<const std::byte>(probe, kProbeSize));
  }
  if (verifying_ && probes_in_flight_ == 0 && next_probe_ >= held_.size()) {
    verifying_ = false;
    progress_.verify_done_shards.fetch_add(1, std::memory_order_relaxed);
  }
}

void LoadShard::on_probe_data(uint64_t index, const Chunk& data) {
  if (index >= held_state_.size() || held_state_[index] != State::kProbing) {
    progress_.corrupt.fetch_add(1, std::memory_order_relaxed);  // bytes nobody asked for
    return;
  }
  std::byte expected[kProbeSize];
  make_probe(index_, index, expected);
  std::size_t got = probe_got_[index];
  bool ok =
      got + data.size() <= kProbeSize && std::memcmp(expected + got, data.data(), data.size()) == 0;
  if (!ok) {
    progress_.corrupt.fetch_add(1, std::memory_order_relaxed);
    progress_.verify_failed.fetch_add(1, std::memory_order_relaxed);
    held_state_[index] = State::kFailed;
    --probes_in_flight_;
    send_probes();
    return;
  }
  probe_got_[index] = static_cast<uint8_t>(got + data.size());
  if (probe_got_[index] < kProbeSize) return;
  held_state_[index] = State::kVerified;
  progress_.verified.fetch_add(1, std::memory_order_relaxed);
  --probes_in_flight_;
  send_probes();
}

void LoadShard::finish() {
  traffic_ = false;
  for (State s : held_state_) {
    if (s == State::kProbing || (s == State::kOpen && next_probe_ > 0))
      ++results_.probes_unanswered;
  }
}

}  // namespace myriad::load
