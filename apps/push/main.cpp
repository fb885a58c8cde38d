// myriad-push: the status-push server (docs/PUSH.md). Uses only the public API.
//
// Start-up: parse the options, make the runtime, the hub (topics, history, PubSub), the fronts
// (one per listener), listen, and run with shard 0 on this thread. Shard 0 also drives the $sys
// topic, the --stats line, history trimming and the drain.
//
// SIGTERM or SIGINT: drain. New connections and subscriptions are refused (503, BYE, NO SUB
// draining) and /healthz says 503, so a load balancer stops sending clients; every shard tells
// its sessions to come back later in batches spread over --drain-timeout (WebSocket close 1012,
// SSE retry: then the end of the stream, TCP BYE), each with a jittered retry hint; once all are
// gone, or at the deadline, the runtime stops (its own drain flushes what is queued). A second
// signal stops at once.
#include <myriad/myriad.hpp>

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "http_front.hpp"
#include "metrics.hpp"
#include "options.hpp"
#include "server.hpp"
#include "tcp_front.hpp"

namespace {

std::atomic<int> g_signals{0};
std::atomic<myriad::Runtime*> g_runtime{nullptr};

void on_signal(int) {
  // The shard-0 timer sees the first one; a second one stops at once.
  if (g_signals.fetch_add(1) >= 1) {
    if (myriad::Runtime* rt = g_runtime.load()) rt->stop();
  }
}

constexpr auto kDrainTick = std::chrono::milliseconds(100);

// On each shard: tell up to its batch of sessions to go.
void drain_tick(push::Server& server, unsigned shard) {
  push::ShardState& st = server.shard_state(shard);
  std::size_t told = 0;
  // From the back: sessions that opened last go first (and the list is not reordered by this).
  for (std::size_t i = st.sessions.size(); i-- > 0 && told < st.drain_batch;) {
    push::Session* s = st.sessions[i];
    if (s->draining) continue;
    s->draining = true;
    ++told;
    server.figures().drained[static_cast<unsigned>(s->kind)].fetch_add(1);
    switch (s->kind) {
      case push::Kind::kTcp:
        push::TcpFront::goodbye(server, *s, "restart");
        break;
      case push::Kind::kWs:
        push::WsFront::goodbye(server, *s, "restart");
        break;
      case push::Kind::kSse:
        push::HttpFront::goodbye(server, *s, "restart");
        break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  push::Cli cli;
  try {
    cli = push::parse_cli(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "myriad-push: %s\n", e.what());
    return 2;
  }
  if (cli.help) {
    std::fputs(push::usage(), stdout);
    return 0;
  }
  if (!cli.make_token.empty()) {
    std::printf("%s\n", push::Auth::sign(cli.make_token, cli.options.subscribe_secret).c_str());
    return 0;
  }
  const push::Options& o = cli.options;
  try {
    myriad::Runtime runtime(o.core);
    push::Server server(runtime, o);

    myriad::ws::Options wo;
    wo.compression = o.ws_compression;
    wo.ping_interval = o.ws_ping;
    wo.max_message_size = o.ws_max_message;
    push::WsFront ws(server, wo);
    std::vector<std::unique_ptr<push::HttpFront>> https;
    std::vector<std::unique_ptr<push::TcpFront>> tcps;
    std::unique_ptr<push::Metrics> metrics;
    std::vector<myriad::http::Server*> http_servers;
    auto render = [&metrics] { return metrics->prometheus(); };
    std::vector<std::string> lines;
    for (const myriad::Address& a : o.listen) {
      https.push_back(std::make_unique<push::HttpFront>(server, ws, push::is_loopback(a), render));
      http_servers.push_back(&https.back()->http());
      myriad::Address bound = runtime.listen(a, https.back()->http());
      lines.push_back("http " + bound.to_string() +
                      (push::is_loopback(a) ? " (loopback: publishing open)" : ""));
    }
    for (const myriad::Address& a : o.tcp_listen) {
      tcps.push_back(std::make_unique<push::TcpFront>(server, push::is_loopback(a)));
      myriad::Address bound = runtime.listen(a, *tcps.back());
      lines.push_back("tcp " + bound.to_string() +
                      (push::is_loopback(a) ? " (loopback: publishing open)" : ""));
    }
    metrics = std::make_unique<push::Metrics>(server, http_servers, ws.ws());

    g_runtime.store(&runtime);
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    int64_t drain_deadline = 0;
    bool stopping = false;
    runtime.run([&] {
      myriad::BackendInfo info = runtime.backend();
      std::printf("myriad-push: epoch %llu | %u shards | %s (%s) | capacity %zu connections\n",
                  static_cast<unsigned long long>(server.hub().epoch()), info.shards,
                  info.name.c_str(), info.features.c_str(), info.capacity);
      if (info.reason != "available" && info.reason != "chosen by configuration") {
        std::printf("myriad-push: backend %s: %s\n", info.name.c_str(), info.reason.c_str());
      }
      for (const std::string& l : lines) std::printf("myriad-push: listening %s\n", l.c_str());
      std::fflush(stdout);
      myriad::Shard& shard0 = *myriad::Shard::current();
      if (o.sys_interval.count() > 0) {
        shard0.every(o.sys_interval, [&] { server.hub().publish("$sys", metrics->sys_json()); });
      }
      if (o.stats.count() > 0) {
        shard0.every(o.stats, [&] {
          std::printf("%s\n", metrics->stats_line().c_str());
          std::fflush(stdout);
        });
      }
      shard0.every(std::chrono::seconds(1), [&] { server.hub().trim(); });
      shard0.every(std::chrono::milliseconds(20), [&] {
        if (g_signals.load() == 0 || stopping) return;
        int64_t now = push::now_ns();
        if (!server.draining()) {
          server.start_draining();
          drain_deadline = now + static_cast<int64_t>(o.drain_timeout.count());
          // Spread the goodbyes over most of the timeout, leaving time for the last closes.
          auto ticks = static_cast<std::size_t>(
              std::max<int64_t>(1, static_cast<int64_t>(o.drain_timeout.count()) * 7 / 10 /
                                       std::chrono::nanoseconds(kDrainTick).count()));
          std::printf("myriad-push: draining %llu sessions within %s\n",
                      static_cast<unsigned long long>(server.sessions()),
                      myriad::format_duration(o.drain_timeout).c_str());
          std::fflush(stdout);
          runtime.post_all([&server, ticks](myriad::Shard& shard) {
            push::ShardState& st = server.shard_state(shard.index());
            st.drain_batch = std::max<std::size_t>(1, (st.sessions.size() + ticks - 1) / ticks);
            unsigned index = shard.index();
            drain_tick(server, index);
            shard.every(kDrainTick, [&server, index] { drain_tick(server, index); });
          });
          return;
        }
        if (server.sessions() == 0 || now >= drain_deadline) {
          std::printf("myriad-push: drained (%llu sessions left); stopping\n",
                      static_cast<unsigned long long>(server.sessions()));
          std::fflush(stdout);
          stopping = true;
          runtime.stop();
        }
      });
    });
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    g_runtime.store(nullptr);
    std::printf("%s\n", metrics->stats_line().c_str());
    std::printf("myriad-push: stopped\n");
    std::fflush(stdout);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "myriad-push: %s\n", e.what());
    return 1;
  }
  return 0;
}
