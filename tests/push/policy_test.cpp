// Slow consumers, on both backends: a subscriber that never reads, under each policy chosen per
// topic prefix (--topic-policy PREFIX=close|drop|latest), while a reading subscriber of the
// same topic gets every message. What the slow one costs stays bounded, and what it loses is
// counted and shows as a gap in its offsets.
#include <atomic>
#include <thread>

#include "push_support.hpp"

namespace push_test {
namespace {

constexpr int kMessages = 2000;
constexpr std::size_t kSize = 4096;

std::string payload(int i) {
  std::string p = "p" + std::to_string(i) + ":";
  p.resize(kSize, static_cast<char>('a' + i % 26));
  return p;
}

struct Outcome {
  std::vector<Delivery> slow;  // what the never-reader had once it read at last
  bool slow_closed = false;
  std::string slow_last_line;
  double held_max = 0;
};

// Publishes kMessages of kSize bytes to slow/x with one reading and one never-reading subscriber.
Outcome run(PushProcess& push) {
  Outcome out;
  TcpClient never(push.tcp_address(), 4096);
  TcpClient good(push.tcp_address());
  EXPECT_TRUE(never.send("SUB slow/x\n"));
  EXPECT_TRUE(good.send("SUB slow/x\n"));
  EXPECT_EQ(never.line(), "OK SUB slow/x " + push.epoch() + " 0");
  EXPECT_EQ(good.line(), "OK SUB slow/x " + push.epoch() + " 0");
  std::vector<Delivery> got;
  std::atomic<std::size_t> progress{0};
  std::thread reader([&] {
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (got.size() < static_cast<std::size_t>(kMessages) &&
           std::chrono::steady_clock::now() < deadline) {
      TcpClient::Item item = good.next(10s);
      if (!item.ok) break;
      if (!item.is_line) got.push_back(item.delivery);
      progress = got.size();
    }
  });
  TcpClient publisher(push.tcp_address());
  for (int i = 1; i <= kMessages; ++i) {
    std::string p = payload(i);
    EXPECT_TRUE(publisher.send("PUB slow/x " + std::to_string(p.size()) + "\n" + p));
    // Keep the reading subscriber within a few messages of the publisher, so that only the
    // never-reader falls behind (flow control on its progress, not a sleep).
    auto until = std::chrono::steady_clock::now() + 20s;
    while (progress.load() + 8 < static_cast<std::size_t>(i) &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(100us);
    }
  }
  for (int i = 1; i <= kMessages; ++i) {
    if (publisher.line(30s).rfind("OK PUB slow/x ", 0) != 0) {
      ADD_FAILURE() << "publish " << i << " not acknowledged";
      break;
    }
  }
  reader.join();
  // The reading subscriber was not harmed: every message, in order.
  EXPECT_EQ(got.size(), static_cast<std::size_t>(kMessages));
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i].offset != i + 1 || got[i].payload != payload(static_cast<int>(i + 1))) {
      ADD_FAILURE() << "the reading subscriber's delivery " << i << " is " << got[i].offset;
      break;
    }
  }
  out.held_max = metric(push.http_port(), "myriad_push_held_bytes");
  // Now the slow one reads what it has.
  // Until the end (closed), or the newest message (which drop and latest always keep).
  for (;;) {
    TcpClient::Item item = never.next(10s);
    if (!item.ok) break;
    if (item.is_line) {
      out.slow_last_line = item.text;
    } else {
      out.slow.push_back(item.delivery);
      if (item.delivery.offset == static_cast<uint64_t>(kMessages)) break;
    }
  }
  out.slow_closed = never.closed(300ms);
  return out;
}

void expect_increasing(const std::vector<Delivery>& d) {
  for (std::size_t i = 1; i < d.size(); ++i) {
    ASSERT_LT(d[i - 1].offset, d[i].offset) << "at " << i;
    ASSERT_EQ(d[i].payload, payload(static_cast<int>(d[i].offset)));
  }
}

std::vector<std::string> args(const std::string& policy) {
  // Other topics keep the default (latest), to show the rule is per prefix.
  return {"--topic-policy", "slow/=" + policy, "--max-queued", "64KiB", "--max-held", "64KiB"};
}

TEST_P(PushTest, SlowConsumerPolicyCloseDisconnectsItAndCountsIt) {
  PushProcess push(GetParam(), args("close"));
  Outcome o = run(push);
  EXPECT_TRUE(o.slow_closed);
  EXPECT_EQ(o.slow_last_line, "ERR slow consumer");
  EXPECT_LT(o.slow.size(), static_cast<std::size_t>(kMessages));
  expect_increasing(o.slow);
  EXPECT_EQ(metric(push.http_port(), "myriad_push_closes_total{reason=\"slow_consumer\"}"), 1);
  EXPECT_EQ(metric(push.http_port(), "myriad_push_dropped_total{reason=\"drop\"}"), 0);
}

TEST_P(PushTest, SlowConsumerPolicyDropKeepsItAndDropsTheOldest) {
  PushProcess push(GetParam(), args("drop"));
  Outcome o = run(push);
  EXPECT_FALSE(o.slow_closed);
  ASSERT_FALSE(o.slow.empty());
  EXPECT_LT(o.slow.size(), static_cast<std::size_t>(kMessages));
  expect_increasing(o.slow);
  EXPECT_EQ(o.slow.back().offset, static_cast<uint64_t>(kMessages)) << "the newest stays";
  double dropped = metric(push.http_port(), "myriad_push_dropped_total{reason=\"drop\"}");
  EXPECT_GT(dropped, 0);
  // What it did not get is exactly what was counted as dropped (nothing lost silently).
  EXPECT_EQ(dropped + static_cast<double>(o.slow.size()), kMessages);
  EXPECT_LE(o.held_max, 64 * 1024 + 2 * (kSize + 64));
  EXPECT_EQ(metric(push.http_port(), "myriad_push_closes_total{reason=\"slow_consumer\"}"), 0);
}

TEST_P(PushTest, SlowConsumerPolicyLatestKeepsItOnTheNewestValue) {
  PushProcess push(GetParam(), args("latest"));
  Outcome o = run(push);
  EXPECT_FALSE(o.slow_closed);
  ASSERT_FALSE(o.slow.empty());
  EXPECT_LT(o.slow.size(), static_cast<std::size_t>(kMessages));
  expect_increasing(o.slow);
  EXPECT_EQ(o.slow.back().offset, static_cast<uint64_t>(kMessages)) << "conflated to the newest";
  double conflated = metric(push.http_port(), "myriad_push_dropped_total{reason=\"latest\"}");
  EXPECT_GT(conflated, 0);
  EXPECT_EQ(conflated + static_cast<double>(o.slow.size()), kMessages);
  EXPECT_LE(o.held_max, kSize + 64) << "one message held per topic";
}

}  // namespace
}  // namespace push_test
