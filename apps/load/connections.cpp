// hold, echo and rate: open connections at a bounded rate, then hold them or drive echo traffic
// closed- or open-loop, verify, and report.
#include <myriad/myriad.hpp>

#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "load_shard.hpp"
#include "proc_stats.hpp"
#include "runs.hpp"

namespace myriad::load {

namespace {

using Clock = std::chrono::steady_clock;

// Runs fn(shard index) on every shard's thread and waits for all.
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

// Everything a connections run measured, for the report.
struct Outcome {
  BackendInfo info;
  unsigned shards = 0;
  uint64_t held_total = 0;
  uint64_t total = 0;
  double ramp_s = 0;
  uint64_t established = 0;
  uint64_t ramp_timed_out = 0;
  uint64_t failed_refused = 0, failed_timeout = 0, failed_reset = 0, failed_ports = 0,
           failed_other = 0;
  uint64_t unexpected = 0;
  uint64_t corrupt = 0;
  uint64_t verified = 0;
  uint64_t verify_failed = 0;
  uint64_t messages_completed = 0;
  double verify_s = 0;
  double window_s = 0;
  uint64_t drained_outstanding = 0;
  KernelSample kernel_before, kernel_after;
  std::optional<ProcessSample> server_before, server_after, cpu_start, cpu_end;
  Results all;
};

Outcome run(const Cli& cli) {
  const Options& opt = cli.opt;
  Outcome out;
  out.held_total = opt.mode == Mode::kHold ? opt.connections : opt.idle;
  uint64_t active_total = opt.mode == Mode::kHold ? 0 : opt.connections;
  out.total = out.held_total + active_total;
  const uint64_t total = out.total;

  bool tty = !cli.quiet && ::isatty(2);
  Pattern pattern;
  Progress progress;
  std::atomic<bool> measuring{false};
  std::vector<std::unique_ptr<LoadShard>> shards;
  Runtime rt(cli.config);
  for (unsigned i = 0; i < rt.shard_count(); ++i) {
    shards.push_back(
        std::make_unique<LoadShard>(opt, pattern, progress, measuring, i, rt.shard_count()));
  }
  rt.start();
  out.info = rt.backend();
  const unsigned n = rt.shard_count();
  out.shards = n;

  auto server = [&]() -> std::optional<ProcessSample> {
    return cli.server_pid > 0 ? sample_process(cli.server_pid) : std::nullopt;
  };
  auto status = [&](const char* phase, const std::string& extra) {
    if (!tty) return;
    std::fprintf(stderr, "\r\033[K[%s] established %s/%s  failed %s  %s", phase,
                 with_commas(progress.established).c_str(), with_commas(total).c_str(),
                 with_commas(progress.failed() + progress.closed_unexpectedly).c_str(),
                 extra.c_str());
    std::fflush(stderr);
  };

  // ---- Ramp ----
  out.kernel_before = sample_kernel();
  out.server_before = server();
  auto ramp_start = Clock::now();
  on_every_shard(rt, [&](unsigned i) {
    uint64_t held = out.held_total / n + (i < out.held_total % n ? 1 : 0);
    uint64_t active = active_total / n + (i < active_total % n ? 1 : 0);
    shards[i]->start_ramp(rt.shard(i), held, active);
  });
  auto ramp_deadline = ramp_start + opt.ramp_timeout;
  uint64_t last_established = 0;
  auto last_tick = ramp_start;
  while (progress.established + progress.failed() < total && Clock::now() < ramp_deadline &&
         !interrupted()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto now = Clock::now();
    uint64_t e = progress.established;
    double rate_now = static_cast<double>(e - last_established) / seconds(now - last_tick);
    last_established = e;
    last_tick = now;
    status("ramp", with_commas(static_cast<uint64_t>(rate_now)) + "/s");
  }
  out.ramp_s = seconds(Clock::now() - ramp_start);
  out.established = progress.established;
  // Not established by the end of an interrupted ramp: neither failed nor timed out.
  out.ramp_timed_out =
      interrupted() ? 0 : total - std::min(total, out.established + progress.failed());
  out.kernel_after = sample_kernel();
  out.server_after = server();

  // ---- Traffic, or holding ----
  if (opt.mode == Mode::kHold) {
    auto end = Clock::now() + opt.duration;
    while (Clock::now() < end && !interrupted()) {
      std::this_thread::sleep_for(
          std::min<Clock::duration>(std::chrono::milliseconds(200), end - Clock::now()));
      status("hold", "closed " + with_commas(progress.closed_unexpectedly));
    }
  } else {
    on_every_shard(rt, [&](unsigned i) { shards[i]->start_traffic(rt.shard(i)); });
    auto warm_end = Clock::now() + opt.warmup;
    while (Clock::now() < warm_end && !interrupted()) {
      std::this_thread::sleep_for(
          std::min<Clock::duration>(std::chrono::milliseconds(100), warm_end - Clock::now()));
      status("warm-up", with_commas(progress.messages) + " messages");
    }
    out.cpu_start = server();
    auto t0 = Clock::now();
    measuring.store(true);
    auto end = t0 + opt.duration;
    uint64_t last_messages = progress.messages;
    while (Clock::now() < end && !interrupted()) {
      std::this_thread::sleep_for(
          std::min<Clock::duration>(std::chrono::milliseconds(250), end - Clock::now()));
      uint64_t m = progress.messages;
      status("measure", with_commas((m - last_messages) * 4) + " msg/s");
      last_messages = m;
    }
    measuring.store(false);
    auto t1 = Clock::now();
    out.cpu_end = server();
    out.window_s = seconds(t1 - t0);
    on_every_shard(rt, [&](unsigned i) { shards[i]->stop_traffic(); });
    // Let what is in flight come back, so byte counts can be compared with the server's.
    auto drain_end = Clock::now() + std::chrono::seconds(5);
    while (progress.outstanding > 0 && Clock::now() < drain_end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    out.drained_outstanding = progress.outstanding;
  }

  // ---- Verify held connections ----
  if (out.held_total > 0) {
    auto v0 = Clock::now();
    on_every_shard(rt, [&](unsigned i) { shards[i]->start_verify(rt.shard(i)); });
    auto deadline = v0 + opt.verify_timeout;
    while (progress.verify_done_shards < n && Clock::now() < deadline && interrupts() < 2) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      status("verify", with_commas(progress.verified) + " verified");
    }
    out.verify_s = seconds(Clock::now() - v0);
  }
  on_every_shard(rt, [&](unsigned i) { shards[i]->finish(); });
  if (tty) std::fprintf(stderr, "\r\033[K");
  rt.stop();
  rt.wait();

  for (auto& s : shards) {
    const Results& r = s->results();
    out.all.latency.merge(r.latency);
    out.all.window_messages += r.window_messages;
    out.all.window_bytes += r.window_bytes;
    out.all.bytes_sent += r.bytes_sent;
    out.all.bytes_received += r.bytes_received;
    out.all.messages_sent += r.messages_sent;
    out.all.late_sends += r.late_sends;
    out.all.max_lag_ns = std::max(out.all.max_lag_ns, r.max_lag_ns);
    out.all.probes_unanswered += r.probes_unanswered;
  }
  out.failed_refused = progress.failed_refused;
  out.failed_timeout = progress.failed_timeout;
  out.failed_reset = progress.failed_reset;
  out.failed_ports = progress.failed_ports;
  out.failed_other = progress.failed_other;
  out.unexpected = progress.closed_unexpectedly;
  out.corrupt = progress.corrupt;
  out.verified = progress.verified;
  out.verify_failed = progress.verify_failed + out.all.probes_unanswered;
  out.messages_completed = progress.messages;
  return out;
}

int report(const Cli& cli, const Outcome& o, Json& json) {
  const Options& opt = cli.opt;
  const unsigned n = o.shards;
  uint64_t failed = o.failed_refused + o.failed_timeout + o.failed_reset + o.failed_ports +
                    o.failed_other + o.ramp_timed_out;
  std::printf("myriad-load %s: %s (%s), %u shard%s, targets %s%s\n", cli.mode_name.c_str(),
              o.info.name.c_str(), o.info.features.c_str(), n, n == 1 ? "" : "s",
              opt.targets.front().to_string().c_str(),
              opt.targets.size() > 1
                  ? (" +" + std::to_string(opt.targets.size() - 1) + " more").c_str()
                  : "");
  std::printf(
      "  established %s/%s in %.2f s (%s per second); failed: refused %" PRIu64
      ", timed out %" PRIu64 ", reset %" PRIu64 ", no port %" PRIu64 ", other %" PRIu64 "\n",
      with_commas(o.established).c_str(), with_commas(o.total).c_str(), o.ramp_s,
      with_commas(
          static_cast<uint64_t>(static_cast<double>(o.established) / std::max(o.ramp_s, 1e-9)))
          .c_str(),
      o.failed_refused, o.failed_timeout + o.ramp_timed_out, o.failed_reset, o.failed_ports,
      o.failed_other);
  if (o.unexpected > 0)
    std::printf("  closed by the server while held: %s\n", with_commas(o.unexpected).c_str());
  if (o.held_total > 0) {
    std::printf("  verified alive: %s/%s in %.2f s (%s failed or unanswered)\n",
                with_commas(o.verified).c_str(), with_commas(o.held_total).c_str(), o.verify_s,
                with_commas(o.verify_failed).c_str());
  }
  json.str("mode", cli.mode_name);
  json.str("backend", o.info.name);
  json.num("shards", n);
  json.num("connections", static_cast<double>(opt.connections));
  json.num("idle", static_cast<double>(opt.idle));
  json.num("size", opt.size);
  json.num("depth", opt.depth);
  json.num("rate_target", opt.mode == Mode::kRate ? opt.rate : 0);
  json.num("duration_s", std::chrono::duration<double>(opt.duration).count());
  json.num("warmup_s", std::chrono::duration<double>(opt.warmup).count());
  json.num("established", static_cast<double>(o.established));
  json.num("establish_s", o.ramp_s);
  json.num("establish_per_s", static_cast<double>(o.established) / std::max(o.ramp_s, 1e-9));
  json.raw("failed", "{\"refused\": " + std::to_string(o.failed_refused) +
                         ", \"timed_out\": " + std::to_string(o.failed_timeout + o.ramp_timed_out) +
                         ", \"reset\": " + std::to_string(o.failed_reset) +
                         ", \"no_port\": " + std::to_string(o.failed_ports) +
                         ", \"other\": " + std::to_string(o.failed_other) +
                         ", \"closed_while_held\": " + std::to_string(o.unexpected) +
                         ", \"verify\": " + std::to_string(o.verify_failed) + "}");
  json.num("verified", static_cast<double>(o.verified));
  json.num("verify_s", o.verify_s);
  json.num("corrupt", static_cast<double>(o.corrupt));
  json.num("bytes_sent", static_cast<double>(o.all.bytes_sent));
  json.num("bytes_received", static_cast<double>(o.all.bytes_received));
  json.num("messages_sent", static_cast<double>(o.all.messages_sent));
  json.num("messages_completed", static_cast<double>(o.messages_completed));
  double slab_growth = static_cast<double>(o.kernel_after.slab_bytes) -
                       static_cast<double>(o.kernel_before.slab_bytes);
  json.num("kernel_slab_growth_bytes", slab_growth);
  json.num("kernel_tcp_mem_growth_bytes", static_cast<double>(o.kernel_after.tcp_mem_bytes) -
                                              static_cast<double>(o.kernel_before.tcp_mem_bytes));
  json.num("kernel_tcp_sockets", static_cast<double>(o.kernel_after.tcp_inuse));
  // Memory per connection means something only where the connections were idle: hold, and the
  // idle ones held beside echo or rate traffic (measured after the ramp, before any traffic).
  bool idle_figures = o.held_total > 0 && o.established > 0;
  if (idle_figures) {
    double slab = slab_growth / static_cast<double>(o.established);
    json.num("kernel_slab_bytes_per_connection", slab);
    std::printf(
        "  kernel: slab %+.1f MiB, %.0f bytes per connection (both ends on this machine); TCP "
        "sockets in use %s\n",
        slab_growth / 1048576.0, slab, with_commas(o.kernel_after.tcp_inuse).c_str());
  }
  if (o.server_before && o.server_after) {
    double growth = static_cast<double>(o.server_after->rss_bytes) -
                    static_cast<double>(o.server_before->rss_bytes);
    json.num("server_rss_before_bytes", static_cast<double>(o.server_before->rss_bytes));
    json.num("server_rss_after_bytes", static_cast<double>(o.server_after->rss_bytes));
    if (idle_figures) {
      double per = growth / static_cast<double>(o.established);
      std::printf("  server pid %d: RSS %.1f MiB -> %.1f MiB, %.1f bytes per idle connection\n",
                  cli.server_pid, static_cast<double>(o.server_before->rss_bytes) / 1048576.0,
                  static_cast<double>(o.server_after->rss_bytes) / 1048576.0, per);
      json.num("server_rss_bytes_per_connection", per);
    }
  }
  if (opt.mode != Mode::kHold) {
    double mps = static_cast<double>(o.all.window_messages) / std::max(o.window_s, 1e-9);
    double mbps = static_cast<double>(o.all.window_bytes) / std::max(o.window_s, 1e-9) / 1e6;
    const Histogram& h = o.all.latency;
    auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
    std::printf("  %s: %s messages in %.2f s measured: %s/s, %.2f MB/s each way; corrupt %s\n",
                opt.mode == Mode::kEcho ? "closed loop" : "open loop",
                with_commas(o.all.window_messages).c_str(), o.window_s,
                with_commas(static_cast<uint64_t>(mps)).c_str(), mbps,
                with_commas(o.corrupt).c_str());
    std::printf("  latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f%s\n",
                us(h.percentile(50)), us(h.percentile(90)), us(h.percentile(99)),
                us(h.percentile(99.9)), us(h.max()),
                opt.mode == Mode::kRate ? " (from when each message was due)" : "");
    json.num("window_s", o.window_s);
    json.num("messages", static_cast<double>(o.all.window_messages));
    json.num("messages_per_s", mps);
    json.num("mb_per_s", mbps);
    json.raw("latency_us", "{\"p50\": " + std::to_string(us(h.percentile(50))) +
                               ", \"p90\": " + std::to_string(us(h.percentile(90))) +
                               ", \"p99\": " + std::to_string(us(h.percentile(99))) +
                               ", \"p999\": " + std::to_string(us(h.percentile(99.9))) +
                               ", \"max\": " + std::to_string(us(h.max())) +
                               ", \"mean\": " + std::to_string(h.mean() / 1000.0) + "}");
    json.num("lost_messages", static_cast<double>(o.drained_outstanding));
    if (o.drained_outstanding > 0) {
      std::printf(
          "  LOST: %s messages were never echoed back (waited 5 s after the traffic stopped)\n",
          with_commas(o.drained_outstanding).c_str());
    }
    if (opt.mode == Mode::kRate) {
      double late = o.all.messages_sent == 0 ? 0
                                             : static_cast<double>(o.all.late_sends) /
                                                   static_cast<double>(o.all.messages_sent);
      json.num("late_sends", static_cast<double>(o.all.late_sends));
      json.num("max_lag_us", us(o.all.max_lag_ns));
      std::printf("  schedule: %s of %s sends more than 1 ms late (max lag %.1f us)%s\n",
                  with_commas(o.all.late_sends).c_str(), with_commas(o.all.messages_sent).c_str(),
                  us(o.all.max_lag_ns),
                  late > 0.01 ? "; WARNING: the generator could not keep the schedule, latencies "
                                "include its own lag"
                              : "");
    }
    if (o.cpu_start && o.cpu_end && o.all.window_messages > 0) {
      double cpu = static_cast<double>(o.cpu_end->cpu_ns - o.cpu_start->cpu_ns);
      double per = cpu / static_cast<double>(o.all.window_messages);
      std::printf(
          "  server pid %d: %.3f s CPU in the window = %.0f ns per message (%.0f%% of a core)\n",
          cli.server_pid, cpu / 1e9, per, 100.0 * cpu / 1e9 / o.window_s);
      json.num("server_cpu_s", cpu / 1e9);
      json.num("server_cpu_ns_per_message", per);
    }
  }
  int exit_code = 0;
  if (failed + o.unexpected + o.corrupt + o.verify_failed > 0 || o.drained_outstanding > 0)
    exit_code = 1;
  json.num("ok", exit_code == 0 ? 1 : 0);
  json.num("interrupted", interrupted() ? 1 : 0);
  if (interrupted()) {
    std::printf("  INTERRUPTED: stopped early by a signal; the figures cover what ran\n");
    if (exit_code == 0) exit_code = 130;
  }
  return exit_code;
}

}  // namespace

int connections_mode(const Cli& cli, Json& json) {
  return report(cli, run(cli), json);
}

}  // namespace myriad::load
