// myriad-server: a TCP server built on myriad. Protocols: echo, and topics (publish/subscribe).
//
// Uses only the public API. SIGINT or SIGTERM starts a graceful shutdown: stop accepting, let
// queued output drain for --drain-timeout, close everything, print the counters, exit 0.
// Shard 0 runs on the main thread (Runtime::run), so one shard and no workers make a process of
// one thread.
#include <myriad/http.hpp>
#include <myriad/myriad.hpp>
#include <myriad/websocket.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "http_mode.hpp"
#include "topic_protocol.hpp"

namespace {

const char* kUsage = R"(usage: myriad-server [options]
  --protocol echo|http|ws-echo|topics  what to serve (echo: every byte back, in order;
                            http: see below, and /ws upgrades to ws-echo; ws-echo: WebSocket on
                            every path, each message echoed back as it came, text as text;
                            topics: pub/sub, see below)
  --ws-max-message SIZE     WebSocket: largest message accepted, else close 1009 (default 1MiB)
  --ws-ping DUR             WebSocket: ping connections idle this long (default 0: never)
  --ws-no-compression       WebSocket: decline permessage-deflate
  --coroutines              write the handler as a coroutine per connection (costs a frame each)
  --listen HOST:PORT        address to listen on (default 0.0.0.0:7000)
  --shards N                event-loop threads (default: online CPUs)
  --backend auto|uring|epoll  kernel interface (default auto: io_uring, else epoll)
  --buffer-pool SIZE        receive pool, allocated once (default 64MiB)
  --buffer-size SIZE        one receive chunk (default 16KiB)
  --max-connections N       open at once over all shards (default 1048576)
  --idle-timeout DUR        close connections idle this long (default 0: never)
  --drain-timeout DUR       graceful-shutdown deadline (default 5s)
  --workers N               offload worker threads (default 0)
  --handlers-on-workers     run every handler call on the worker pool (needs --workers)
  --write-high SIZE         high write watermark per connection (default 64KiB)
  --write-low SIZE          low write watermark (default 16KiB)
  --max-write-queue SIZE    close a slow reader past this much queued output (default 4MiB)
  --cpu N                   pin shard i to CPU N+i
  --stats DUR               print the counters every DUR
  --max-spill SIZE          bytes a connection may keep across receives (default 1MiB)
  --help                    this text
)";
const char* kUsageTopics = server::TopicOptions::usage();

class Echo final : public myriad::Handler {
 public:
  void on_data(myriad::Connection c, myriad::Chunk data) override { c.send(std::move(data)); }
};

// ws-echo: every WebSocket message back, text as text, binary as binary (what conformance
// suites drive).
class WsEcho final : public myriad::ws::WebSocketHandler {
 public:
  void on_message(myriad::ws::WebSocket ws, const myriad::ws::Message& m) override {
    ws.send(m.type, m.payload);
  }
};

// The same protocol in the coroutine form, for comparing what each form costs.
myriad::Task echo_session(myriad::Stream& s) {
  while (myriad::Chunk data = co_await s.receive()) {
    if (!co_await s.send(std::move(data))) break;
  }
}

// What the signal handler may touch: the runtime (Runtime::stop is async-signal-safe) and the
// line it writes, formatted before the signal can come.
std::atomic<myriad::Runtime*> g_runtime{nullptr};
std::string g_draining[2];  // for SIGINT, SIGTERM

void on_signal(int sig) {
  const std::string& line = g_draining[sig == SIGINT ? 0 : 1];
  ssize_t n = ::write(STDOUT_FILENO, line.data(), line.size());
  (void)n;
  if (myriad::Runtime* runtime = g_runtime.load()) runtime->stop();
}

// The HTTP mode, when it runs (its counters are printed with the runtime's).
std::unique_ptr<myriad_server::HttpMode> g_http;
const myriad::ws::Server* g_ws = nullptr;  // --protocol http or ws-echo

void print_counters(const char* what, const myriad::Runtime& runtime) {
  std::printf("myriad-server: %s %s\n", what, runtime.counters().to_string().c_str());
  if (g_http) std::printf("myriad-server: http %s\n", g_http->server().stats().to_string().c_str());
  if (g_ws) std::printf("myriad-server: ws %s\n", g_ws->stats().to_string().c_str());
  std::fflush(stdout);
}

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "myriad-server: %s\n%s%s%s", message.c_str(), kUsage,
               myriad_server::kHttpModeUsage, kUsageTopics);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  myriad::Config config;
  config.max_connections = 1 << 20;
  std::string listen = "0.0.0.0:7000";
  std::string protocol = "echo";
  myriad::Duration stats{0};
  bool coroutines = false;
  myriad_server::HttpModeOptions http_options;
  server::TopicOptions topic_options;
  myriad::ws::Options ws_options;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      auto value = [&]() -> std::string_view {
        if (i + 1 >= argc) usage_error(std::string(arg) + " needs a value");
        return argv[++i];
      };
      if (arg == "--help" || arg == "-h") {
        std::fputs(kUsage, stdout);
        std::fputs(myriad_server::kHttpModeUsage, stdout);
        std::fputs(kUsageTopics, stdout);
        return 0;
      } else if (arg == "--protocol") {
        protocol = value();
      } else if (arg == "--ws-max-message") {
        ws_options.max_message_size = myriad::parse_size(value());
        config.max_spill = std::max(config.max_spill, ws_options.max_message_size);
      } else if (arg == "--ws-ping") {
        ws_options.ping_interval = myriad::parse_duration(value());
      } else if (arg == "--ws-no-compression") {
        ws_options.compression = false;
      } else if (arg == "--coroutines") {
        coroutines = true;
      } else if (arg == "--listen") {
        listen = value();
      } else if (arg == "--shards") {
        config.shards = static_cast<unsigned>(std::stoul(std::string(value())));
      } else if (arg == "--backend") {
        config.backend = myriad::parse_backend(value());
      } else if (arg == "--buffer-pool") {
        config.buffer_pool_bytes = myriad::parse_size(value());
      } else if (arg == "--buffer-size") {
        config.buffer_size = myriad::parse_size(value());
      } else if (arg == "--max-connections") {
        config.max_connections = std::stoull(std::string(value()));
      } else if (arg == "--idle-timeout") {
        config.idle_timeout = myriad::parse_duration(value());
      } else if (arg == "--drain-timeout") {
        config.drain_timeout = myriad::parse_duration(value());
      } else if (arg == "--workers") {
        config.workers = static_cast<unsigned>(std::stoul(std::string(value())));
      } else if (arg == "--handlers-on-workers") {
        config.handlers_on_workers = true;
      } else if (arg == "--write-high") {
        config.write_high_watermark = myriad::parse_size(value());
      } else if (arg == "--write-low") {
        config.write_low_watermark = myriad::parse_size(value());
      } else if (arg == "--max-write-queue") {
        config.max_write_queue = myriad::parse_size(value());
      } else if (arg == "--cpu") {
        config.first_cpu = std::stoi(std::string(value()));
      } else if (arg == "--stats") {
        stats = myriad::parse_duration(value());
      } else if (arg == "--max-spill") {
        config.max_spill = myriad::parse_size(value());
      } else if (arg == "--static") {
        http_options.static_dir = value();
      } else if (arg == "--sse-interval") {
        http_options.sse_interval = myriad::parse_duration(value());
      } else if (arg == "--max-header") {
        http_options.http.limits.max_header_bytes = myriad::parse_size(value());
      } else if (arg == "--max-body") {
        http_options.http.limits.max_body_bytes = myriad::parse_size(value());
      } else if (arg == "--request-timeout") {
        http_options.http.limits.request_timeout = myriad::parse_duration(value());
      } else if (arg == "--heartbeat") {
        http_options.http.heartbeat_interval = myriad::parse_duration(value());
      } else if (topic_options.parse(arg, value)) {
      } else {
        usage_error("unknown option " + std::string(arg));
      }
    }
    if (protocol != "echo" && protocol != "http" && protocol != "ws-echo" && protocol != "topics") {
      usage_error("unknown protocol '" + protocol + "' (known: echo, http, ws-echo, topics)");
    }
    if (protocol != "echo" && coroutines) usage_error("--coroutines is for --protocol echo");
    if (protocol != "echo" && config.handlers_on_workers) {
      usage_error(
          "--handlers-on-workers is for --protocol echo (the others answer on their shard)");
    }
    topic_options.pubsub.validate();
  } catch (const std::invalid_argument& e) {
    usage_error(e.what());
  }

  ::signal(SIGPIPE, SIG_IGN);
  for (int sig : {SIGINT, SIGTERM}) {
    g_draining[sig == SIGINT ? 0 : 1] = std::string("myriad-server: ") + strsignal(sig) +
                                        ", draining (up to " +
                                        myriad::format_duration(config.drain_timeout) + ")\n";
  }

  Echo echo;
  myriad::CoroutineHandler echo_coroutines(echo_session);
  server::TopicProtocol topics(topic_options.max_message);
  myriad::Handler* handler = protocol == "topics" ? static_cast<myriad::Handler*>(&topics)
                             : coroutines         ? static_cast<myriad::Handler*>(&echo_coroutines)
                                                  : &echo;
  if (protocol == "topics") {
    // A PUB waits whole in the spill buffer.
    config.max_spill = std::max(config.max_spill, topic_options.max_message + 1024);
  }
  WsEcho ws_echo;
  myriad::ws::Server ws_server(ws_echo, ws_options);  // outlives the runtime
  if (coroutines && config.handlers_on_workers)
    usage_error("--coroutines cannot go with --handlers-on-workers");
  try {
    if (protocol == "http" || protocol == "ws-echo") {
      g_http = std::make_unique<myriad_server::HttpMode>(http_options);
      handler = &g_http->server();
      g_ws = &ws_server;
      // ws-echo upgrades on every path; http on /ws only.
      bool any_path = protocol == "ws-echo";
      g_http->server().set_upgrade_hook(
          [&ws_server, any_path](const myriad::http::Request& req, myriad::http::Response& res) {
            if (!any_path && req.path() != "/ws") return myriad::http::Upgrade::pass();
            return ws_server.upgrade(req, res);
          });
    }
    myriad::Runtime runtime(config);
    myriad::Address bound = runtime.listen(myriad::Address::parse(listen), *handler);
    std::unique_ptr<myriad::PubSub> pubsub;
    if (protocol == "topics") {
      pubsub = std::make_unique<myriad::PubSub>(runtime, topic_options.pubsub);
      topics.attach(*pubsub);
    }
    g_runtime.store(&runtime);
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);

    // Runs on shard 0 (the main thread) every `stats`.
    std::function<void()> print_stats = [&] {
      print_counters("stats", runtime);
      if (pubsub) std::printf("myriad-server: pubsub %s\n", pubsub->counters().to_string().c_str());
      myriad::Shard::current()->after(stats, print_stats);
    };
    runtime.run([&] {
      myriad::BackendInfo info = runtime.backend();
      std::printf(
          "myriad-server: %s%s on %s | %u shards | %s (%s) | capacity %zu connections | pool %s "
          "in %s chunks\n",
          protocol.c_str(), coroutines ? " (coroutines)" : "", bound.to_string().c_str(),
          info.shards, info.name.c_str(), info.features.c_str(), info.capacity,
          myriad::format_size(config.buffer_pool_bytes).c_str(),
          myriad::format_size(config.buffer_size).c_str());
      if (info.reason != "available" && info.reason != "chosen by configuration") {
        std::printf("myriad-server: backend %s: %s\n", info.name.c_str(), info.reason.c_str());
      }
      std::fflush(stdout);
      if (stats.count() > 0) myriad::Shard::current()->after(stats, print_stats);
    });
    // Back to the default actions before the runtime goes.
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    g_runtime.store(nullptr);
    print_counters("stopped:", runtime);
    if (pubsub) {
      std::printf("myriad-server: pubsub %s protocol_errors=%llu\n",
                  pubsub->counters().to_string().c_str(),
                  static_cast<unsigned long long>(topics.errors()));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "myriad-server: %s\n", e.what());
    return 1;
  }
  return 0;
}
