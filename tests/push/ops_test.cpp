// Operations, on both backends: /metrics in the Prometheus text format (checked by promtool
// where Debian's prometheus package is installed), the figures it reports, the $sys topic,
// the --stats line, /healthz, and the graceful drain on SIGTERM (WebSocket close 1012, SSE
// retry: then the end, TCP BYE), in batches, within --drain-timeout.
#include <signal.h>
#include <sys/stat.h>

#include <fstream>

#include "push_support.hpp"

namespace push_test {
namespace {

bool installed(const char* path) {
  struct stat st {};
  return ::stat(path, &st) == 0;
}

TEST_P(PushTest, MetricsPassPromtoolAndCountWhatHappened) {
  PushProcess push(GetParam());
  const uint16_t port = push.http_port();
  auto ws = ExternalSubscriber::websocket("ws://127.0.0.1:" + std::to_string(port) + "/ws/m,n");
  ASSERT_TRUE(ws->wait_subscribed(2));
  TcpClient tcp(push.tcp_address());
  ASSERT_TRUE(tcp.send("SUB m\n"));
  ASSERT_EQ(tcp.line(), "OK SUB m " + push.epoch() + " 0");
  for (int i = 0; i < 5; ++i) ASSERT_EQ(publish(port, "m", "v" + std::to_string(i)).status, 200);
  ASSERT_EQ(tcp.deliveries(5).size(), 5u);
  ASSERT_EQ(ws->deliveries(5).size(), 5u);

  HttpReply r = http(port, "GET", "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(metric(port, "myriad_push_connections{transport=\"ws\"}"), 1);
  EXPECT_EQ(metric(port, "myriad_push_connections{transport=\"tcp\"}"), 1);
  EXPECT_EQ(metric(port, "myriad_push_subscriptions{transport=\"ws\"}"), 2);
  EXPECT_EQ(metric(port, "myriad_push_subscriptions{transport=\"tcp\"}"), 1);
  EXPECT_EQ(metric(port, "myriad_push_messages_published_total"), 5);
  EXPECT_EQ(metric(port, "myriad_push_deliveries_total"), 10);
  EXPECT_EQ(metric(port, "myriad_push_topics"), 2);
  EXPECT_EQ(metric(port, "myriad_push_history_messages"), 5);
  EXPECT_GT(metric(port, "myriad_push_history_bytes"), 0);
  // Every publish that had subscribers on some shard has its fan-out time recorded.
  ASSERT_TRUE(test::eventually(
      [&] { return metric(port, "myriad_push_time_to_last_subscriber_seconds_count") == 5; }));
  EXPECT_EQ(metric(port, "myriad_push_time_to_last_subscriber_seconds_bucket{le=\"+Inf\"}"), 5);

  if (!installed("/usr/bin/promtool")) {
    GTEST_SKIP() << "promtool is not installed (Debian package prometheus; scripts/deps.sh "
                    "installs it): the exposition format was not checked by it";
  }
  std::string file = ::testing::TempDir() + "/push-metrics.txt";
  {
    std::ofstream out(file, std::ios::binary);
    out << r.body;
  }
  test::Process check({"/bin/sh", "-c", "/usr/bin/promtool check metrics < " + file});
  int rc = check.wait(30s);
  EXPECT_EQ(rc, 0) << check.out() << check.err();
  EXPECT_EQ(check.out() + check.err(), "") << "promtool found problems";
}

TEST_P(PushTest, SysTopicStatsLineAndHealth) {
  PushProcess push(GetParam(), {"--sys-interval", "100ms", "--stats", "100ms"});
  EXPECT_EQ(http(push.http_port(), "GET", "/healthz").body, "ok\n");
  TcpClient tcp(push.tcp_address());
  ASSERT_TRUE(tcp.send("SUB $sys\n"));
  // The server's own figures, once every interval; this subscriber shows in a later one.
  bool seen_self = false;
  for (int i = 0; i < 20 && !seen_self; ++i) {
    std::vector<Delivery> d = tcp.deliveries(1, 5s);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].topic, "$sys");
    EXPECT_NE(d[0].payload.find("\"epoch\":" + push.epoch()), std::string::npos) << d[0].payload;
    seen_self = d[0].payload.find("\"tcp\":1") != std::string::npos &&
                d[0].payload.find("\"subscriptions\":1") != std::string::npos;
  }
  EXPECT_TRUE(seen_self);
  bool stats = false;
  for (int i = 0; i < 50 && !stats; ++i) {
    stats = push.process().read_line(2s).rfind("myriad-push: stats ws=", 0) == 0;
  }
  EXPECT_TRUE(stats) << push.process().out();
}

TEST_P(PushTest, DrainOnSigtermTellsEveryClientToComeBackLater) {
  PushProcess push(GetParam(), {"--drain-timeout", "4s", "--retry-after", "500ms"});
  const uint16_t port = push.http_port();
  auto ws = ExternalSubscriber::websocket("ws://127.0.0.1:" + std::to_string(port) + "/ws/d");
  auto sse = ExternalSubscriber::sse("http://127.0.0.1:" + std::to_string(port) + "/sse/d");
  ASSERT_TRUE(ws->wait_subscribed());
  ASSERT_TRUE(sse->wait_subscribed());
  constexpr int kTcp = 40;
  std::vector<std::unique_ptr<TcpClient>> tcps;
  for (int i = 0; i < kTcp; ++i) {
    tcps.push_back(std::make_unique<TcpClient>(push.tcp_address()));
    ASSERT_TRUE(tcps.back()->send("SUB d\n"));
    ASSERT_EQ(tcps.back()->line(), "OK SUB d " + push.epoch() + " 0");
  }
  push.process().signal(SIGTERM);
  // While draining: not healthy, no new subscribers.
  ASSERT_TRUE(test::eventually([&] { return http(port, "GET", "/healthz").status == 503; }));
  EXPECT_EQ(http_head(port, "GET", "/sse/d").status, 503);
  {
    TcpClient late(push.tcp_address());
    std::string bye = late.line();
    EXPECT_EQ(bye.rfind("BYE ", 0), 0u) << bye;
    EXPECT_NE(bye.find(" draining"), std::string::npos) << bye;
  }
  // Everyone is told to go, with a retry hint between retry-after and twice that.
  for (auto& t : tcps) {
    std::string bye = t->line(10s);
    ASSERT_EQ(bye.rfind("BYE ", 0), 0u) << bye;
    int retry_hint_ms = std::stoi(bye.substr(4));
    EXPECT_GE(retry_hint_ms, 500);
    EXPECT_LE(retry_hint_ms, 1000);
    EXPECT_EQ(bye.substr(bye.rfind(' ') + 1), "restart");
    EXPECT_TRUE(t->closed());
  }
  std::string close;
  ASSERT_TRUE(ws->wait_line("CLOSE", &close, 10s));
  EXPECT_EQ(close.rfind("CLOSE 1012 retry ", 0), 0u) << close;
  std::string retry;
  ASSERT_TRUE(sse->wait_line("RETRY ", &retry, 10s));
  EXPECT_GE(std::stoi(retry.substr(6)), 500);
  EXPECT_TRUE(sse->wait_line("CTL close restart", nullptr, 10s));
  EXPECT_EQ(sse->process().wait(10s), 0) << "curl: the stream ended cleanly";
  EXPECT_EQ(push.process().wait(30s), 0);
  const std::string& log = push.process().out();
  EXPECT_NE(log.find("myriad-push: draining 42 sessions within 4s"), std::string::npos) << log;
  EXPECT_NE(log.find("myriad-push: drained (0 sessions left); stopping"), std::string::npos) << log;
}

}  // namespace
}  // namespace push_test
