// myriad-load: opens and holds many connections, drives echo traffic closed- or open-loop, and
// measures honestly: every echoed byte is checked, latency in open loop counts from the time a
// message was due, and the server's own CPU time and memory are read from /proc.
//
// Built on myriad's engine (outbound connections on its shards), so one process passes the
// RLIMIT_NOFILE limit the way the server does. Every mode is bounded in time and stops by itself.
#include <myriad/myriad.hpp>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "load_shard.hpp"
#include "proc_stats.hpp"
#include "targets.hpp"

namespace ml = myriad::load;
using myriad::Duration;
using Clock = std::chrono::steady_clock;

namespace {

// SIGINT/SIGTERM: the first ends the phase that is running (ramp, hold, warm-up or measuring)
// early; the verification of held connections and the report still run, and the exit status is
// 130. A second one also cuts the verification short.
std::atomic<int> interrupts{0};

void on_interrupt(int) {
  interrupts.fetch_add(1, std::memory_order_relaxed);
}

bool interrupted() {
  return interrupts.load(std::memory_order_relaxed) > 0;
}

const char* kUsage =
    R"(usage: myriad-load {hold|echo|rate} --target HOST[-HOST]:PORT[,...] [options]
modes:
  hold   open --connections, hold them for --duration, then check every one answers a probe
  echo   closed loop: --connections each keep --depth messages of --size bytes in flight
  rate   open loop: --rate messages per second in total over --connections
options:
  --connections N       active (echo, rate) or held (hold) connections (default 1)
  --duration DUR        hold time, or measured time after the warm-up (default 10s)
  --warmup DUR          echo/rate: traffic before measuring starts (default 1s)
  --size BYTES          message size (default 64)
  --depth D             echo: messages in flight per connection (default 1)
  --rate R              rate: messages per second over all connections
  --idle N              echo/rate: also hold N idle connections (verified at the end)
  --connect-rate R      new connections per second (default 20000)
  --connect-window N    connects in flight at once (default 4096)
  --ramp-timeout DUR    give up establishing after this (default: 4x the ramp at --connect-rate, >= 60s)
  --verify-timeout DUR  give up on probes after this (default 30s)
  --server-pid PID      read the server's RSS and CPU time from /proc
  --json FILE           write every figure as JSON
  --shards N            load threads (default 1)
  --backend auto|uring|epoll  (default auto)
  --cpu N               pin load shard i to CPU N+i
  --quiet               no progress line
exit status: 0 when every connection opened (and, where verified, answered) and no byte was
corrupted; 1 otherwise; 2 for a usage error; 130 when stopped early by SIGINT or SIGTERM (the
first ends the running phase and still verifies and reports; a second cuts verifying short).
)";

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "myriad-load: %s\n%s", message.c_str(), kUsage);
  std::exit(2);
}

std::string with_commas(uint64_t v) {
  std::string digits = std::to_string(v);
  std::string s;
  s.reserve(digits.size() + digits.size() / 3);
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) s.push_back(',');
    s.push_back(digits[i]);
  }
  return s;
}

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Runs fn(shard index) on every shard's thread and waits for all.
template <class F>
void on_every_shard(myriad::Runtime& rt, F fn) {
  std::vector<std::promise<void>> done(rt.shard_count());
  for (unsigned i = 0; i < rt.shard_count(); ++i) {
    rt.shard(i).post([&fn, &done, i] {
      fn(i);
      done[i].set_value();
    });
  }
  for (auto& d : done) d.get_future().wait();
}

struct Json {
  std::string text = "{";
  bool first = true;
  void key(const char* k) {
    text += first ? "\n  " : ",\n  ";
    first = false;
    text += "\"";
    text += k;
    text += "\": ";
  }
  void num(const char* k, double v) {
    key(k);
    char buf[64];
    if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) {
      std::snprintf(buf, sizeof(buf), "%.0f", v);
    } else {
      std::snprintf(buf, sizeof(buf), "%.6g", std::isfinite(v) ? v : 0.0);
    }
    text += buf;
  }
  void str(const char* k, const std::string& v) {
    key(k);
    text += "\"" + v + "\"";
  }
  void raw(const char* k, const std::string& v) {
    key(k);
    text += v;
  }
  std::string done() { return text + "\n}\n"; }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) usage_error("a mode is needed");
  std::string mode_name = argv[1];
  if (mode_name == "--help" || mode_name == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  ml::Options opt;
  if (mode_name == "hold") {
    opt.mode = ml::Mode::kHold;
  } else if (mode_name == "echo") {
    opt.mode = ml::Mode::kEcho;
  } else if (mode_name == "rate") {
    opt.mode = ml::Mode::kRate;
  } else {
    usage_error("unknown mode '" + mode_name + "'");
  }
  myriad::Config config;
  config.shards = 1;
  pid_t server_pid = 0;
  std::string json_path;
  bool quiet = false;
  bool have_rate = false;
  try {
    for (int i = 2; i < argc; ++i) {
      std::string_view arg = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) usage_error(std::string(arg) + " needs a value");
        return argv[++i];
      };
      if (arg == "--target") {
        opt.targets = ml::parse_targets(value());
      } else if (arg == "--connections") {
        opt.connections = std::stoull(value());
      } else if (arg == "--duration") {
        opt.duration = myriad::parse_duration(value());
      } else if (arg == "--warmup") {
        opt.warmup = myriad::parse_duration(value());
      } else if (arg == "--size") {
        opt.size = static_cast<uint32_t>(myriad::parse_size(value()));
      } else if (arg == "--depth") {
        opt.depth = static_cast<uint32_t>(std::stoul(value()));
      } else if (arg == "--rate") {
        opt.rate = std::stod(value());
        have_rate = true;
      } else if (arg == "--idle") {
        opt.idle = std::stoull(value());
      } else if (arg == "--connect-rate") {
        opt.connect_rate = std::stod(value());
      } else if (arg == "--connect-window") {
        opt.connect_window = static_cast<uint32_t>(std::stoul(value()));
      } else if (arg == "--ramp-timeout") {
        opt.ramp_timeout = myriad::parse_duration(value());
      } else if (arg == "--verify-timeout") {
        opt.verify_timeout = myriad::parse_duration(value());
      } else if (arg == "--server-pid") {
        server_pid = static_cast<pid_t>(std::stol(value()));
      } else if (arg == "--json") {
        json_path = value();
      } else if (arg == "--shards") {
        config.shards = static_cast<unsigned>(std::stoul(value()));
      } else if (arg == "--backend") {
        config.backend = myriad::parse_backend(value());
      } else if (arg == "--cpu") {
        config.first_cpu = std::stoi(value());
      } else if (arg == "--quiet") {
        quiet = true;
      } else {
        usage_error("unknown option " + std::string(arg));
      }
    }
  } catch (const std::invalid_argument& e) {
    usage_error(e.what());
  } catch (const std::out_of_range& e) {
    usage_error(std::string("number out of range: ") + e.what());
  }
  if (opt.targets.empty()) usage_error("--target is needed");
  if (opt.connections == 0 && opt.mode != ml::Mode::kHold)
    usage_error("--connections must be at least 1");
  if (opt.size == 0 || opt.depth == 0) usage_error("--size and --depth must be at least 1");
  if (opt.mode == ml::Mode::kRate && (!have_rate || opt.rate <= 0))
    usage_error("rate mode needs --rate R > 0");
  if (opt.mode == ml::Mode::kHold && opt.idle != 0) usage_error("--idle goes with echo or rate");
  if (opt.connect_rate <= 0 || opt.connect_window == 0)
    usage_error("--connect-rate and --connect-window must be positive");
  if (config.shards == 0) usage_error("--shards must be at least 1");

  uint64_t held_total = opt.mode == ml::Mode::kHold ? opt.connections : opt.idle;
  uint64_t active_total = opt.mode == ml::Mode::kHold ? 0 : opt.connections;
  uint64_t total = held_total + active_total;
  if (opt.ramp_timeout.count() == 0) {
    double ramp_s = static_cast<double>(total) / opt.connect_rate;
    // Generous: the rate asked for is an upper bound, and the kernel may grant less.
    opt.ramp_timeout = std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(std::max(60.0, 4 * ramp_s)));
  }
  config.max_connections = total + 1024;
  config.buffer_pool_bytes = std::size_t{16} << 20;
  config.write_high_watermark = std::size_t{64} << 20;
  config.write_low_watermark = std::size_t{16} << 20;
  config.max_write_queue = std::size_t{1} << 30;
  if (opt.mode == ml::Mode::kRate) config.timer_tick = std::chrono::microseconds(50);
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  bool tty = !quiet && ::isatty(2);
  ml::Pattern pattern;
  ml::Progress progress;
  std::atomic<bool> measuring{false};
  std::vector<std::unique_ptr<ml::LoadShard>> shards;
  int exit_code = 0;
  Json json;
  try {
    myriad::Runtime rt(config);
    for (unsigned i = 0; i < rt.shard_count(); ++i) {
      shards.push_back(
          std::make_unique<ml::LoadShard>(opt, pattern, progress, measuring, i, rt.shard_count()));
    }
    rt.start();
    myriad::BackendInfo info = rt.backend();
    unsigned n = rt.shard_count();

    auto server = [&]() -> std::optional<ml::ProcessSample> {
      return server_pid > 0 ? ml::sample_process(server_pid) : std::nullopt;
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
    ml::KernelSample kernel_before = ml::sample_kernel();
    auto server_before = server();
    auto ramp_start = Clock::now();
    on_every_shard(rt, [&](unsigned i) {
      uint64_t held = held_total / n + (i < held_total % n ? 1 : 0);
      uint64_t active = active_total / n + (i < active_total % n ? 1 : 0);
      shards[i]->start_ramp(rt.shard(i), held, active);
    });
    auto ramp_deadline = ramp_start + opt.ramp_timeout;
    uint64_t last_established = 0;
    auto last_tick = ramp_start;
    double rate_now = 0;
    while (progress.established + progress.failed() < total && Clock::now() < ramp_deadline &&
           !interrupted()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      auto now = Clock::now();
      uint64_t e = progress.established;
      rate_now = static_cast<double>(e - last_established) / seconds(now - last_tick);
      last_established = e;
      last_tick = now;
      status("ramp", with_commas(static_cast<uint64_t>(rate_now)) + "/s");
    }
    auto ramp_end = Clock::now();
    double ramp_s = seconds(ramp_end - ramp_start);
    uint64_t established = progress.established;
    // Not established by the end of an interrupted ramp: neither failed nor timed out.
    uint64_t ramp_timed_out =
        interrupted() ? 0 : total - std::min(total, established + progress.failed());
    ml::KernelSample kernel_after = ml::sample_kernel();
    auto server_after = server();

    // ---- Traffic, or holding ----
    double window_s = 0;
    std::optional<ml::ProcessSample> cpu_start, cpu_end;
    uint64_t drained_outstanding = 0;
    if (opt.mode == ml::Mode::kHold) {
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
      cpu_start = server();
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
      cpu_end = server();
      window_s = seconds(t1 - t0);
      on_every_shard(rt, [&](unsigned i) { shards[i]->stop_traffic(); });
      // Let what is in flight come back, so byte counts can be compared with the server's.
      auto drain_end = Clock::now() + std::chrono::seconds(5);
      while (progress.outstanding > 0 && Clock::now() < drain_end) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      drained_outstanding = progress.outstanding;
    }

    // ---- Verify held connections ----
    double verify_s = 0;
    if (held_total > 0) {
      auto v0 = Clock::now();
      on_every_shard(rt, [&](unsigned i) { shards[i]->start_verify(rt.shard(i)); });
      auto deadline = v0 + opt.verify_timeout;
      while (progress.verify_done_shards < n && Clock::now() < deadline &&
             interrupts.load(std::memory_order_relaxed) < 2) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        status("verify", with_commas(progress.verified) + " verified");
      }
      verify_s = seconds(Clock::now() - v0);
    }
    on_every_shard(rt, [&](unsigned i) { shards[i]->finish(); });
    if (tty) std::fprintf(stderr, "\r\033[K");
    rt.stop();
    rt.wait();

    // ---- Results ----
    ml::Results all;
    for (auto& s : shards) {
      const ml::Results& r = s->results();
      all.latency.merge(r.latency);
      all.window_messages += r.window_messages;
      all.window_bytes += r.window_bytes;
      all.bytes_sent += r.bytes_sent;
      all.bytes_received += r.bytes_received;
      all.messages_sent += r.messages_sent;
      all.late_sends += r.late_sends;
      all.max_lag_ns = std::max(all.max_lag_ns, r.max_lag_ns);
      all.probes_unanswered += r.probes_unanswered;
    }
    uint64_t failed = progress.failed() + ramp_timed_out;
    uint64_t unexpected = progress.closed_unexpectedly;
    uint64_t corrupt = progress.corrupt;
    uint64_t verified = progress.verified;
    uint64_t verify_failed = progress.verify_failed + all.probes_unanswered;

    std::printf(
        "myriad-load %s: %s (%s), %u shard%s, targets %s%s\n", mode_name.c_str(), info.name.c_str(),
        info.features.c_str(), n, n == 1 ? "" : "s", opt.targets.front().to_string().c_str(),
        opt.targets.size() > 1 ? (" +" + std::to_string(opt.targets.size() - 1) + " more").c_str()
                               : "");
    std::printf(
        "  established %s/%s in %.2f s (%s per second); failed: refused %" PRIu64
        ", timed out %" PRIu64 ", reset %" PRIu64 ", no port %" PRIu64 ", other %" PRIu64 "\n",
        with_commas(established).c_str(), with_commas(total).c_str(), ramp_s,
        with_commas(
            static_cast<uint64_t>(static_cast<double>(established) / std::max(ramp_s, 1e-9)))
            .c_str(),
        progress.failed_refused.load(), progress.failed_timeout.load() + ramp_timed_out,
        progress.failed_reset.load(), progress.failed_ports.load(), progress.failed_other.load());
    if (unexpected > 0)
      std::printf("  closed by the server while held: %s\n", with_commas(unexpected).c_str());
    if (held_total > 0) {
      std::printf("  verified alive: %s/%s in %.2f s (%s failed or unanswered)\n",
                  with_commas(verified).c_str(), with_commas(held_total).c_str(), verify_s,
                  with_commas(verify_failed).c_str());
    }
    json.str("mode", mode_name);
    json.str("backend", info.name);
    json.num("shards", n);
    json.num("connections", static_cast<double>(opt.connections));
    json.num("idle", static_cast<double>(opt.idle));
    json.num("size", opt.size);
    json.num("depth", opt.depth);
    json.num("rate_target", opt.mode == ml::Mode::kRate ? opt.rate : 0);
    json.num("duration_s", std::chrono::duration<double>(opt.duration).count());
    json.num("warmup_s", std::chrono::duration<double>(opt.warmup).count());
    json.num("established", static_cast<double>(established));
    json.num("establish_s", ramp_s);
    json.num("establish_per_s", static_cast<double>(established) / std::max(ramp_s, 1e-9));
    json.raw("failed", "{\"refused\": " + std::to_string(progress.failed_refused.load()) +
                           ", \"timed_out\": " +
                           std::to_string(progress.failed_timeout.load() + ramp_timed_out) +
                           ", \"reset\": " + std::to_string(progress.failed_reset.load()) +
                           ", \"no_port\": " + std::to_string(progress.failed_ports.load()) +
                           ", \"other\": " + std::to_string(progress.failed_other.load()) +
                           ", \"closed_while_held\": " + std::to_string(unexpected) +
                           ", \"verify\": " + std::to_string(verify_failed) + "}");
    json.num("verified", static_cast<double>(verified));
    json.num("verify_s", verify_s);
    json.num("corrupt", static_cast<double>(corrupt));
    json.num("bytes_sent", static_cast<double>(all.bytes_sent));
    json.num("bytes_received", static_cast<double>(all.bytes_received));
    json.num("messages_sent", static_cast<double>(all.messages_sent));
    json.num("messages_completed", static_cast<double>(progress.messages.load()));
    json.num("kernel_slab_growth_bytes", static_cast<double>(kernel_after.slab_bytes) -
                                             static_cast<double>(kernel_before.slab_bytes));
    json.num("kernel_tcp_mem_growth_bytes", static_cast<double>(kernel_after.tcp_mem_bytes) -
                                                static_cast<double>(kernel_before.tcp_mem_bytes));
    json.num("kernel_tcp_sockets", static_cast<double>(kernel_after.tcp_inuse));
    // Memory per connection means something only where the connections were idle: hold, and the
    // idle ones held beside echo or rate traffic (measured after the ramp, before any traffic).
    bool idle_figures = held_total > 0 && established > 0;
    if (idle_figures) {
      double slab = (static_cast<double>(kernel_after.slab_bytes) -
                     static_cast<double>(kernel_before.slab_bytes)) /
                    static_cast<double>(established);
      json.num("kernel_slab_bytes_per_connection", slab);
      std::printf(
          "  kernel: slab %+.1f MiB, %.0f bytes per connection (both ends on this machine); TCP "
          "sockets in use %s\n",
          (static_cast<double>(kernel_after.slab_bytes) -
           static_cast<double>(kernel_before.slab_bytes)) /
              1048576.0,
          slab, with_commas(kernel_after.tcp_inuse).c_str());
    }
    if (server_before && server_after) {
      double growth = static_cast<double>(server_after->rss_bytes) -
                      static_cast<double>(server_before->rss_bytes);
      json.num("server_rss_before_bytes", static_cast<double>(server_before->rss_bytes));
      json.num("server_rss_after_bytes", static_cast<double>(server_after->rss_bytes));
      if (idle_figures) {
        double per = growth / static_cast<double>(established);
        std::printf("  server pid %d: RSS %.1f MiB -> %.1f MiB, %.1f bytes per idle connection\n",
                    server_pid, static_cast<double>(server_before->rss_bytes) / 1048576.0,
                    static_cast<double>(server_after->rss_bytes) / 1048576.0, per);
        json.num("server_rss_bytes_per_connection", per);
      }
    }
    if (opt.mode != ml::Mode::kHold) {
      double mps = static_cast<double>(all.window_messages) / std::max(window_s, 1e-9);
      double mbps = static_cast<double>(all.window_bytes) / std::max(window_s, 1e-9) / 1e6;
      const ml::Histogram& h = all.latency;
      auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
      std::printf("  %s: %s messages in %.2f s measured: %s/s, %.2f MB/s each way; corrupt %s\n",
                  opt.mode == ml::Mode::kEcho ? "closed loop" : "open loop",
                  with_commas(all.window_messages).c_str(), window_s,
                  with_commas(static_cast<uint64_t>(mps)).c_str(), mbps,
                  with_commas(corrupt).c_str());
      std::printf("  latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f%s\n",
                  us(h.percentile(50)), us(h.percentile(90)), us(h.percentile(99)),
                  us(h.percentile(99.9)), us(h.max()),
                  opt.mode == ml::Mode::kRate ? " (from when each message was due)" : "");
      json.num("window_s", window_s);
      json.num("messages", static_cast<double>(all.window_messages));
      json.num("messages_per_s", mps);
      json.num("mb_per_s", mbps);
      json.raw("latency_us", "{\"p50\": " + std::to_string(us(h.percentile(50))) +
                                 ", \"p90\": " + std::to_string(us(h.percentile(90))) +
                                 ", \"p99\": " + std::to_string(us(h.percentile(99))) +
                                 ", \"p999\": " + std::to_string(us(h.percentile(99.9))) +
                                 ", \"max\": " + std::to_string(us(h.max())) +
                                 ", \"mean\": " + std::to_string(h.mean() / 1000.0) + "}");
      json.num("lost_messages", static_cast<double>(drained_outstanding));
      if (drained_outstanding > 0) {
        std::printf(
            "  LOST: %s messages were never echoed back (waited 5 s after the traffic stopped)\n",
            with_commas(drained_outstanding).c_str());
      }
      if (opt.mode == ml::Mode::kRate) {
        double late = all.messages_sent == 0 ? 0
                                             : static_cast<double>(all.late_sends) /
                                                   static_cast<double>(all.messages_sent);
        json.num("late_sends", static_cast<double>(all.late_sends));
        json.num("max_lag_us", us(all.max_lag_ns));
        std::printf("  schedule: %s of %s sends more than 1 ms late (max lag %.1f us)%s\n",
                    with_commas(all.late_sends).c_str(), with_commas(all.messages_sent).c_str(),
                    us(all.max_lag_ns),
                    late > 0.01 ? "; WARNING: the generator could not keep the schedule, latencies "
                                  "include its own lag"
                                : "");
      }
      if (cpu_start && cpu_end && all.window_messages > 0) {
        double cpu = static_cast<double>(cpu_end->cpu_ns - cpu_start->cpu_ns);
        double per = cpu / static_cast<double>(all.window_messages);
        std::printf(
            "  server pid %d: %.3f s CPU in the window = %.0f ns per message (%.0f%% of a core)\n",
            server_pid, cpu / 1e9, per, 100.0 * cpu / 1e9 / window_s);
        json.num("server_cpu_s", cpu / 1e9);
        json.num("server_cpu_ns_per_message", per);
      }
    }
    if (failed + unexpected + corrupt + verify_failed > 0 || drained_outstanding > 0) exit_code = 1;
    json.num("ok", exit_code == 0 ? 1 : 0);
    json.num("interrupted", interrupted() ? 1 : 0);
    if (interrupted()) {
      std::printf("  INTERRUPTED: stopped early by a signal; the figures cover what ran\n");
      if (exit_code == 0) exit_code = 130;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "myriad-load: %s\n", e.what());
    return 1;
  }
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "myriad-load: cannot write %s: %s\n", json_path.c_str(),
                   std::strerror(errno));
      return 1;
    }
    std::string text = json.done();
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
  return exit_code;
}
