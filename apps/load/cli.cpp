#include "cli.hpp"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include "targets.hpp"

namespace myriad::load {

namespace {

std::atomic<int> g_interrupts{0};

void on_interrupt(int) {
  g_interrupts.fetch_add(1, std::memory_order_relaxed);
}

const char* kUsage =
    R"(usage: myriad-load {hold|echo|rate|subscribe} --target HOST[-HOST]:PORT[,...] [options]
modes:
  hold       open --connections, hold them for --duration, then check every one answers a probe
  echo       closed loop: --connections each keep --depth messages of --size bytes in flight
  rate       open loop: --rate messages per second in total over --connections
  subscribe  fan-out: --connections subscribers follow --topics topics, one publisher sends
             --rate messages per second of --size bytes over the same protocol, and every
             subscriber checks every message for loss, duplicates, order and corruption
options:
  --connections N       active (echo, rate), held (hold) or subscribing (subscribe) connections (default 1)
  --duration DUR        hold time, or measured time after the warm-up (default 10s)
  --warmup DUR          echo/rate/subscribe: traffic before measuring starts (default 1s)
  --size BYTES          message size (default 64; subscribe: at least 32)
  --depth D             echo: messages in flight per connection (default 1)
  --rate R              rate: messages per second over all connections; subscribe: published per second
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
subscribe options:
  --protocol myriad|redis|nats|nchan|push  the server's pub/sub protocol (default myriad:
                        myriad-server --protocol topics; redis: SUBSCRIBE/PUBLISH; nats: SUB/PUB;
                        nchan: WebSocket subscribers on /sub/TOPIC, HTTP POST to /pub/TOPIC;
                        push: myriad-push's TCP protocol, with resume)
  --topic NAME          the topic, or the prefix of NAME.0 .. NAME.K-1 with --topics K (default load)
  --topics K            spread subscribers over K topics; the publisher takes them in turn (default 1)
  --publish-target HOST:PORT  where the publisher connects (default: the first --target)
  --drain DUR           once publishing stops, how long every subscriber may take to have every
                        message (default 5s)
  --reconnect-wave      after the measured window, every subscriber disconnects and comes back
                        (at --connect-rate) while publishing goes on, resuming from its last
                        offset where the protocol can (push); nothing may be lost or repeated
exit status: 0 when every connection opened (and, where verified, answered), no byte was
corrupted and (subscribe) every subscriber got every message once and in order; 1 otherwise;
2 for a usage error; 130 when stopped early by SIGINT or SIGTERM (the first ends the running
phase and still verifies and reports; a second cuts verifying short).
)";

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "myriad-load: %s\n%s", message.c_str(), kUsage);
  std::exit(2);
}

}  // namespace

void install_interrupts() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

int interrupts() {
  return g_interrupts.load(std::memory_order_relaxed);
}

Cli parse_cli(int argc, char** argv) {
  if (argc < 2) usage_error("a mode is needed");
  Cli cli;
  cli.mode_name = argv[1];
  if (cli.mode_name == "--help" || cli.mode_name == "-h") {
    std::fputs(kUsage, stdout);
    std::exit(0);
  }
  Options& opt = cli.opt;
  if (cli.mode_name == "hold") {
    opt.mode = Mode::kHold;
  } else if (cli.mode_name == "echo") {
    opt.mode = Mode::kEcho;
  } else if (cli.mode_name == "rate") {
    opt.mode = Mode::kRate;
  } else if (cli.mode_name == "subscribe") {
    opt.mode = Mode::kSubscribe;
  } else {
    usage_error("unknown mode '" + cli.mode_name + "'");
  }
  bool subscribe = opt.mode == Mode::kSubscribe;
  cli.config.shards = 1;
  bool have_rate = false;
  bool have_fanout_option = false;
  try {
    for (int i = 2; i < argc; ++i) {
      std::string_view arg = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) usage_error(std::string(arg) + " needs a value");
        return argv[++i];
      };
      if (arg == "--target") {
        opt.targets = parse_targets(value());
      } else if (arg == "--connections") {
        opt.connections = std::stoull(value());
      } else if (arg == "--duration") {
        opt.duration = parse_duration(value());
      } else if (arg == "--warmup") {
        opt.warmup = parse_duration(value());
      } else if (arg == "--size") {
        opt.size = static_cast<uint32_t>(parse_size(value()));
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
        opt.ramp_timeout = parse_duration(value());
      } else if (arg == "--verify-timeout") {
        opt.verify_timeout = parse_duration(value());
      } else if (arg == "--server-pid") {
        cli.server_pid = static_cast<pid_t>(std::stol(value()));
      } else if (arg == "--json") {
        cli.json_path = value();
      } else if (arg == "--shards") {
        cli.config.shards = static_cast<unsigned>(std::stoul(value()));
      } else if (arg == "--backend") {
        cli.config.backend = parse_backend(value());
      } else if (arg == "--cpu") {
        cli.config.first_cpu = std::stoi(value());
      } else if (arg == "--quiet") {
        cli.quiet = true;
      } else if (arg == "--protocol") {
        cli.fanout.protocol = value();
        have_fanout_option = true;
      } else if (arg == "--topic") {
        cli.fanout.topic = value();
        have_fanout_option = true;
      } else if (arg == "--topics") {
        cli.fanout.topics = static_cast<uint32_t>(std::stoul(value()));
        have_fanout_option = true;
      } else if (arg == "--publish-target") {
        std::vector<Address> to = parse_targets(value());
        if (to.size() != 1) usage_error("--publish-target takes one address");
        cli.fanout.publish_target = to.front();
        have_fanout_option = true;
      } else if (arg == "--drain") {
        cli.fanout.drain = parse_duration(value());
        have_fanout_option = true;
      } else if (arg == "--reconnect-wave") {
        cli.fanout.reconnect_wave = true;
        have_fanout_option = true;
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
  if (opt.connections == 0 && opt.mode != Mode::kHold)
    usage_error("--connections must be at least 1");
  if (opt.size == 0 || opt.depth == 0) usage_error("--size and --depth must be at least 1");
  if ((opt.mode == Mode::kRate || subscribe) && (!have_rate || opt.rate <= 0))
    usage_error(cli.mode_name + " mode needs --rate R > 0");
  if (opt.mode == Mode::kHold && opt.idle != 0) usage_error("--idle goes with echo or rate");
  if (subscribe && opt.idle != 0) usage_error("--idle goes with echo or rate");
  if (!subscribe && have_fanout_option)
    usage_error(
        "--protocol, --topic, --topics, --publish-target, --drain and --reconnect-wave go with "
        "subscribe");
  if (subscribe) {
    if (opt.size < kFanoutMinSize)
      usage_error("subscribe mode needs --size of at least " + std::to_string(kFanoutMinSize));
    if (cli.fanout.topics == 0) usage_error("--topics must be at least 1");
    if (cli.fanout.topic.empty() || cli.fanout.topic.find_first_of(" \r\n") != std::string::npos)
      usage_error("--topic must be a non-empty word");
    try {
      make_fanout_protocol(cli.fanout.protocol);
    } catch (const std::invalid_argument& e) {
      usage_error(e.what());
    }
    if (!cli.fanout.publish_target.valid()) cli.fanout.publish_target = opt.targets.front();
  }
  if (opt.connect_rate <= 0 || opt.connect_window == 0)
    usage_error("--connect-rate and --connect-window must be positive");
  if (cli.config.shards == 0) usage_error("--shards must be at least 1");

  // What follows from the options.
  uint64_t total = opt.connections + opt.idle + (subscribe ? 1 : 0);
  if (opt.ramp_timeout.count() == 0) {
    double ramp_s = static_cast<double>(total) / opt.connect_rate;
    // Generous: the rate asked for is an upper bound, and the kernel may grant less.
    opt.ramp_timeout = std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(std::max(60.0, 4 * ramp_s)));
  }
  Config& config = cli.config;
  config.max_connections = total + 1024;
  config.buffer_pool_bytes = std::size_t{16} << 20;
  config.write_high_watermark = std::size_t{64} << 20;
  config.write_low_watermark = std::size_t{16} << 20;
  config.max_write_queue = std::size_t{1} << 30;
  if (opt.mode == Mode::kRate || subscribe) config.timer_tick = std::chrono::microseconds(50);
  return cli;
}

}  // namespace myriad::load
