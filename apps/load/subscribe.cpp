// subscribe: N subscribers over the targets, one publisher at a fixed rate over the same
// protocol, every delivery checked; latency from when each message was due to its receipt, the
// time until the last subscriber had each message, and the server's CPU per delivery and RSS per
// subscriber from /proc.
#include <myriad/myriad.hpp>

#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "fanout_shard.hpp"
#include "proc_stats.hpp"
#include "runs.hpp"

namespace myriad::load {

namespace {

using Clock = std::chrono::steady_clock;

template <class F>
void on_every_shard(Runtime& rt, F fn) {
  std::vector<std::promise<void>> done(rt.shard_count());
  for (unsigned i = 0; i < rt.shard_count(); ++i) {
    rt.shard(i).post([&fn, &done, i] {
      fn(i);
      done[i].set_value();
    });
  }
  for (auto& d : done) d.get_future().wait();
}

template <class F>
void on_shard(Runtime& rt, unsigned i, F fn) {
  std::promise<void> done;
  rt.shard(i).post([&] {
    fn();
    done.set_value();
  });
  done.get_future().wait();
}

struct Outcome {
  BackendInfo info;
  unsigned shards = 0;
  std::string protocol;
  uint64_t subscribers = 0;  // asked for
  uint64_t established = 0;
  uint64_t subscribed = 0;
  uint64_t connect_failed = 0;
  double subscribe_s = 0;
  bool publisher_ready = false;
  uint64_t published = 0;
  uint64_t published_in_window = 0;
  uint64_t expected = 0;  // deliveries every subscriber should have had
  uint64_t received = 0;
  uint64_t gaps = 0, missing = 0, duplicates = 0, corrupt = 0;
  uint64_t protocol_errors = 0, closed_unexpectedly = 0, publisher_errors = 0;
  double window_s = 0;
  uint64_t window_deliveries = 0;
  double drain_s = 0;
  Histogram latency;
  uint64_t measured_deliveries = 0;
  Histogram last_subscriber;  // per measured message: due -> its last subscriber's receipt
  uint64_t incomplete = 0;    // measured messages some subscriber never got
  uint64_t late_publishes = 0;
  uint64_t max_publish_lag_ns = 0;
  std::optional<ProcessSample> server_before, server_subscribed, cpu_start, cpu_end;
  bool wave = false;
  uint64_t wave_closed = 0, wave_back = 0, wave_retries = 0;
  double wave_s = 0;
};

struct Totals {
  uint64_t subscribed = 0, established = 0, failed = 0, closed = 0, errors = 0, received = 0,
           published = 0, publisher_errors = 0, wave_closed = 0, resubscribed = 0, wave_retries = 0,
           wave_failed = 0;
};

Outcome run(const Cli& cli) {
  const Options& opt = cli.opt;
  const FanoutOptions& fan = cli.fanout;
  Outcome out;
  out.subscribers = opt.connections;
  std::unique_ptr<FanoutProtocol> protocol = make_fanout_protocol(fan.protocol);
  out.protocol = protocol->name();
  bool tty = !cli.quiet && ::isatty(2);

  Runtime rt(cli.config);
  const unsigned n = rt.shard_count();
  std::vector<std::unique_ptr<FanoutShard>> shards;
  for (unsigned i = 0; i < n; ++i) {
    shards.push_back(std::make_unique<FanoutShard>(opt, fan, *protocol, i, n));
  }
  rt.start();
  out.info = rt.backend();
  out.shards = n;

  auto totals = [&] {
    Totals t;
    for (auto& s : shards) {
      FanoutCounts& c = s->counts();
      t.subscribed += c.subscribed.get();
      t.established += c.established.get();
      t.failed += c.connect_failed.get();
      t.closed += c.closed_unexpectedly.get();
      t.errors += c.protocol_errors.get();
      t.received += c.received.get();
      t.published += c.published.get();
      t.publisher_errors += c.publisher_errors.get();
      t.wave_closed += c.wave_closed.get();
      t.resubscribed += c.resubscribed.get();
      t.wave_retries += c.wave_retries.get();
      t.wave_failed += c.wave_failed.get();
    }
    return t;
  };
  auto server = [&]() -> std::optional<ProcessSample> {
    return cli.server_pid > 0 ? sample_process(cli.server_pid) : std::nullopt;
  };
  auto status = [&](const char* phase) {
    if (!tty) return;
    Totals t = totals();
    std::fprintf(stderr, "\r\033[K[%s] subscribed %s/%s  failed %s  published %s  received %s",
                 phase, with_commas(t.subscribed).c_str(), with_commas(opt.connections).c_str(),
                 with_commas(t.failed + t.closed + t.errors).c_str(),
                 with_commas(t.published).c_str(), with_commas(t.received).c_str());
    std::fflush(stderr);
  };

  // ---- Subscribe everyone ----
  out.server_before = server();
  auto ramp_start = Clock::now();
  on_every_shard(rt, [&](unsigned i) {
    uint64_t mine = opt.connections / n + (i < opt.connections % n ? 1 : 0);
    shards[i]->start_ramp(rt.shard(i), mine);
  });
  auto deadline = ramp_start + opt.ramp_timeout;
  for (;;) {
    Totals t = totals();
    if (t.subscribed + t.failed + t.closed + t.errors >= opt.connections) break;
    if (Clock::now() > deadline || interrupted()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    status("subscribe");
  }
  out.subscribe_s = seconds(Clock::now() - ramp_start);
  out.server_subscribed = server();

  // ---- The publisher ----
  on_shard(rt, 0, [&] { shards[0]->open_publisher(rt.shard(0)); });
  auto publisher_deadline = Clock::now() + std::chrono::seconds(10);
  while (shards[0]->counts().publisher_ready.get() == 0 &&
         shards[0]->counts().publisher_errors.get() == 0 && Clock::now() < publisher_deadline &&
         !interrupted()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  out.publisher_ready = shards[0]->counts().publisher_ready.get() != 0;

  // ---- Publish: warm-up, then the measured window ----
  uint64_t start_ns = 0, window_from = 0, window_until = 0;
  if (out.publisher_ready && !interrupted()) {
    uint64_t start = now_ns() + 20'000'000;
    uint64_t from = start + static_cast<uint64_t>(opt.warmup.count());
    uint64_t until = from + static_cast<uint64_t>(opt.duration.count());
    start_ns = start;
    window_from = from;
    window_until = until;
    on_every_shard(rt, [&](unsigned i) { shards[i]->set_window(from, until); });
    on_shard(rt, 0, [&] { shards[0]->start_publishing(rt.shard(0), start); });
    auto wait_until = [&](uint64_t t, const char* phase) {
      while (now_ns() < t && !interrupted()) {
        std::this_thread::sleep_for(
            std::chrono::nanoseconds(std::min<uint64_t>(t - now_ns(), 100'000'000)));
        status(phase);
      }
    };
    wait_until(from, "warm-up");
    out.cpu_start = server();
    uint64_t r0 = totals().received, p0 = totals().published;
    uint64_t t0 = now_ns();
    wait_until(until, "measure");
    out.cpu_end = server();
    uint64_t t1 = now_ns();
    out.window_deliveries = totals().received - r0;
    out.published_in_window = totals().published - p0;
    out.window_s = static_cast<double>(t1 - t0) / 1e9;
    if (fan.reconnect_wave && !interrupted()) {
      // Everyone goes and comes back while the publisher goes on.
      out.wave = true;
      auto wave_start = Clock::now();
      on_every_shard(rt, [&](unsigned i) { shards[i]->start_wave(rt.shard(i)); });
      Totals w = totals();
      auto wave_deadline = wave_start + opt.ramp_timeout;
      while (w.resubscribed + w.wave_failed < w.wave_closed && Clock::now() < wave_deadline &&
             !interrupted()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (tty) {
          std::fprintf(stderr, "\r\033[K[reconnect wave] back %s/%s",
                       with_commas(w.resubscribed).c_str(), with_commas(w.wave_closed).c_str());
        }
        w = totals();
      }
      out.wave_s = seconds(Clock::now() - wave_start);
      out.wave_closed = w.wave_closed;
      out.wave_back = w.resubscribed;
      out.wave_retries = w.wave_retries;
      // Live messages after the resume are checked too.
      wait_until(now_ns() + 1'000'000'000, "after the wave");
    }
    on_shard(rt, 0, [&] { shards[0]->stop_publishing(); });
  }
  out.published = totals().published;

  // What every subscriber should end up with: every message of its topic. Each shard counts
  // its own (its subscriber table is its thread's).
  std::vector<uint64_t> expected_on(n, 0);
  on_every_shard(rt, [&](unsigned i) {
    for (uint32_t k = 0; k < fan.topics; ++k) {
      uint64_t of_k = out.published / fan.topics + (k < out.published % fan.topics ? 1 : 0);
      expected_on[i] += of_k * shards[i]->subscribed_on(k);
    }
  });
  for (uint64_t e : expected_on) out.expected += e;
  auto drain_start = Clock::now();
  auto drain_end = drain_start + fan.drain;
  while (Clock::now() < drain_end && interrupts() < 2) {
    if (totals().received >= out.expected) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    status("drain");
  }
  out.drain_s = seconds(Clock::now() - drain_start);
  std::vector<uint64_t> subscribers_of(fan.topics, 0);
  std::mutex mutex;
  on_every_shard(rt, [&](unsigned i) {
    shards[i]->finish(out.published);
    std::lock_guard lock(mutex);
    for (uint32_t k = 0; k < fan.topics; ++k) subscribers_of[k] += shards[i]->subscribed_on(k);
  });
  if (tty) std::fprintf(stderr, "\r\033[K");
  rt.stop();
  rt.wait();

  // ---- Collect (the shards have stopped) ----
  Totals t = totals();
  out.established = t.established;
  out.subscribed = t.subscribed;
  out.connect_failed = t.failed;
  out.received = t.received;
  out.closed_unexpectedly = t.closed;
  out.protocol_errors = t.errors;
  out.publisher_errors = t.publisher_errors;
  std::vector<uint64_t> last;
  std::vector<uint64_t> count;
  for (auto& s : shards) {
    const FanoutResults& r = s->results();
    FanoutCounts& c = s->counts();
    out.gaps += c.gaps.get();
    out.duplicates += c.duplicates.get();
    out.corrupt += c.corrupt.get();
    out.missing += r.missing;
    out.latency.merge(r.latency);
    out.measured_deliveries += r.measured_deliveries;
    out.late_publishes += r.late_publishes;
    out.max_publish_lag_ns = std::max(out.max_publish_lag_ns, r.max_publish_lag_ns);
    if (last.size() < r.receipts.size()) {
      last.resize(r.receipts.size(), 0);
      count.resize(r.receipts.size(), 0);
    }
    for (std::size_t i = 0; i < r.receipts.size(); ++i) {
      count[i] += r.receipts[i];
      last[i] = std::max(last[i], r.last_receipt_ns[i]);
    }
  }
  // The time until the last subscriber had each measured message. Message j was due when the
  // publisher's schedule said: the same computation gives the same time.
  if (start_ns != 0) {
    OpenLoopSchedule schedule(opt.rate, 1, start_ns);
    for (uint64_t j = 0; j < out.published; ++j) {
      uint64_t due = schedule.due_at(j);
      if (due < window_from || due >= window_until) continue;
      uint64_t want = subscribers_of[j % fan.topics];
      if (j >= count.size() || count[j] < want) {
        ++out.incomplete;
        continue;
      }
      out.last_subscriber.record(last[j] > due ? last[j] - due : 0);
    }
  }
  return out;
}

std::string percentiles_us(const Histogram& h) {
  auto us = [](uint64_t ns) { return std::to_string(static_cast<double>(ns) / 1000.0); };
  return "{\"p50\": " + us(h.percentile(50)) + ", \"p90\": " + us(h.percentile(90)) +
         ", \"p99\": " + us(h.percentile(99)) + ", \"p999\": " + us(h.percentile(99.9)) +
         ", \"max\": " + us(h.max()) + ", \"mean\": " + std::to_string(h.mean() / 1000.0) +
         ", \"count\": " + std::to_string(h.count()) + "}";
}

int report(const Cli& cli, const Outcome& o, Json& json) {
  const Options& opt = cli.opt;
  const FanoutOptions& fan = cli.fanout;
  auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
  auto ms = [](uint64_t ns) { return static_cast<double>(ns) / 1e6; };
  std::printf("myriad-load subscribe: %s against %s (%s), %u shard%s, targets %s%s\n",
              o.protocol.c_str(), o.info.name.c_str(), o.info.features.c_str(), o.shards,
              o.shards == 1 ? "" : "s", opt.targets.front().to_string().c_str(),
              opt.targets.size() > 1
                  ? (" +" + std::to_string(opt.targets.size() - 1) + " more").c_str()
                  : "");
  std::printf(
      "  subscribed %s/%s to %u topic%s in %.2f s; connect failed %s, closed %s, "
      "protocol errors %s\n",
      with_commas(o.subscribed).c_str(), with_commas(o.subscribers).c_str(), fan.topics,
      fan.topics == 1 ? "" : "s", o.subscribe_s, with_commas(o.connect_failed).c_str(),
      with_commas(o.closed_unexpectedly).c_str(), with_commas(o.protocol_errors).c_str());
  if (!o.publisher_ready)
    std::printf("  PUBLISHER: could not connect to %s\n", fan.publish_target.to_string().c_str());
  uint64_t lost = o.gaps + o.missing;
  std::printf(
      "  published %s messages of %u bytes at %.0f/s; deliveries %s of %s expected: lost "
      "%s, duplicated or reordered %s, corrupt %s\n",
      with_commas(o.published).c_str(), opt.size, opt.rate, with_commas(o.received).c_str(),
      with_commas(o.expected).c_str(), with_commas(lost).c_str(), with_commas(o.duplicates).c_str(),
      with_commas(o.corrupt).c_str());
  double dps = static_cast<double>(o.window_deliveries) / std::max(o.window_s, 1e-9);
  std::printf("  window %.2f s: %s deliveries, %s/s\n", o.window_s,
              with_commas(o.window_deliveries).c_str(),
              with_commas(static_cast<uint64_t>(dps)).c_str());
  const Histogram& h = o.latency;
  std::printf(
      "  publish to receipt, ms: p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f "
      "(from when each message was due)\n",
      ms(h.percentile(50)), ms(h.percentile(90)), ms(h.percentile(99)), ms(h.percentile(99.9)),
      ms(h.max()));
  const Histogram& l = o.last_subscriber;
  std::printf(
      "  until the last subscriber had it, ms: p50 %.2f  p99 %.2f  max %.2f (%s measured "
      "messages, %s that some subscriber never got)\n",
      ms(l.percentile(50)), ms(l.percentile(99)), ms(l.max()), with_commas(l.count()).c_str(),
      with_commas(o.incomplete).c_str());
  if (o.wave) {
    std::printf(
        "  reconnect wave: %s subscribers closed and came back in %.2f s (%s back, %s connects "
        "retried; each resumed from its last offset where the protocol can)\n",
        with_commas(o.wave_closed).c_str(), o.wave_s, with_commas(o.wave_back).c_str(),
        with_commas(o.wave_retries).c_str());
    json.num("wave_retries", static_cast<double>(o.wave_retries));
    json.num("wave_closed", static_cast<double>(o.wave_closed));
    json.num("wave_back", static_cast<double>(o.wave_back));
    json.num("wave_s", o.wave_s);
  }
  if (o.late_publishes > 0) {
    std::printf("  schedule: %s publishes more than 1 ms late (max lag %.1f us)\n",
                with_commas(o.late_publishes).c_str(), us(o.max_publish_lag_ns));
  }
  json.str("mode", "subscribe");
  json.str("protocol", o.protocol);
  json.str("backend", o.info.name);
  json.num("shards", o.shards);
  json.num("subscribers", static_cast<double>(o.subscribers));
  json.num("subscribed", static_cast<double>(o.subscribed));
  json.num("topics", fan.topics);
  json.num("size", opt.size);
  json.num("rate_target", opt.rate);
  json.num("duration_s", std::chrono::duration<double>(opt.duration).count());
  json.num("warmup_s", std::chrono::duration<double>(opt.warmup).count());
  json.num("subscribe_s", o.subscribe_s);
  json.num("connect_failed", static_cast<double>(o.connect_failed));
  json.num("closed_unexpectedly", static_cast<double>(o.closed_unexpectedly));
  json.num("protocol_errors", static_cast<double>(o.protocol_errors));
  json.num("publisher_errors", static_cast<double>(o.publisher_errors));
  json.num("published", static_cast<double>(o.published));
  json.num("published_in_window", static_cast<double>(o.published_in_window));
  json.num("deliveries_expected", static_cast<double>(o.expected));
  json.num("deliveries", static_cast<double>(o.received));
  json.num("lost", static_cast<double>(lost));
  json.num("duplicates", static_cast<double>(o.duplicates));
  json.num("corrupt", static_cast<double>(o.corrupt));
  json.num("window_s", o.window_s);
  json.num("window_deliveries", static_cast<double>(o.window_deliveries));
  json.num("deliveries_per_s", dps);
  json.num("drain_s", o.drain_s);
  json.raw("latency_us", percentiles_us(o.latency));
  json.raw("last_subscriber_us", percentiles_us(o.last_subscriber));
  json.num("incomplete_messages", static_cast<double>(o.incomplete));
  json.num("late_publishes", static_cast<double>(o.late_publishes));
  json.num("max_publish_lag_us", us(o.max_publish_lag_ns));
  if (o.server_before && o.server_subscribed) {
    double growth = static_cast<double>(o.server_subscribed->rss_bytes) -
                    static_cast<double>(o.server_before->rss_bytes);
    double per = o.subscribed == 0 ? 0 : growth / static_cast<double>(o.subscribed);
    std::printf(
        "  server pid %d: RSS %.1f MiB -> %.1f MiB subscribed, %.1f bytes per "
        "subscriber\n",
        cli.server_pid, static_cast<double>(o.server_before->rss_bytes) / 1048576.0,
        static_cast<double>(o.server_subscribed->rss_bytes) / 1048576.0, per);
    json.num("server_rss_before_bytes", static_cast<double>(o.server_before->rss_bytes));
    json.num("server_rss_subscribed_bytes", static_cast<double>(o.server_subscribed->rss_bytes));
    json.num("server_rss_bytes_per_subscriber", per);
    if (o.cpu_end) {
      // After the traffic too: what delivering cost beyond the subscriptions (output queues,
      // pooled per-connection state) shows here.
      double after = (static_cast<double>(o.cpu_end->rss_bytes) -
                      static_cast<double>(o.server_before->rss_bytes)) /
                     static_cast<double>(std::max<uint64_t>(o.subscribed, 1));
      std::printf(
          "  server pid %d: RSS %.1f MiB at the end of the window, %.1f bytes per "
          "subscriber\n",
          cli.server_pid, static_cast<double>(o.cpu_end->rss_bytes) / 1048576.0, after);
      json.num("server_rss_after_traffic_bytes", static_cast<double>(o.cpu_end->rss_bytes));
      json.num("server_rss_bytes_per_subscriber_after_traffic", after);
    }
  }
  if (o.cpu_start && o.cpu_end && o.window_deliveries > 0) {
    double cpu = static_cast<double>(o.cpu_end->cpu_ns - o.cpu_start->cpu_ns);
    double per = cpu / static_cast<double>(o.window_deliveries);
    std::printf(
        "  server pid %d: %.3f s CPU in the window = %.0f ns per delivery (%.0f%% of a "
        "core)\n",
        cli.server_pid, cpu / 1e9, per, 100.0 * cpu / 1e9 / o.window_s);
    json.num("server_cpu_s", cpu / 1e9);
    json.num("server_cpu_ns_per_delivery", per);
  }
  bool ok = o.publisher_ready && o.subscribed == o.subscribers && lost == 0 && o.duplicates == 0 &&
            o.corrupt == 0 && o.protocol_errors == 0 && o.closed_unexpectedly == 0 &&
            o.publisher_errors == 0 && o.received == o.expected &&
            (!o.wave || o.wave_back == o.wave_closed);
  if (!ok) std::printf("  FAILED: not every subscriber got every message exactly once, in order\n");
  int exit_code = ok ? 0 : 1;
  json.num("ok", ok ? 1 : 0);
  json.num("interrupted", interrupted() ? 1 : 0);
  if (interrupted()) {
    std::printf("  INTERRUPTED: stopped early by a signal; the figures cover what ran\n");
    if (exit_code == 0) exit_code = 130;
  }
  return exit_code;
}

}  // namespace

int subscribe_mode(const Cli& cli, Json& json) {
  return report(cli, run(cli), json);
}

}  // namespace myriad::load
