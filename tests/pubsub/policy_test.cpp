// Overflow policies on every backend, each with a subscriber that never reads: the others keep
// receiving everything, the slow one costs a bounded amount, and what it finally reads shows
// what the policy did (offsets with gaps, only the newest per topic, or a goodbye and a close).
#include <myriad/myriad.hpp>
#include <myriad/pubsub.hpp>

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "client.hpp"
#include "topic_support.hpp"

namespace {

using namespace std::chrono_literals;
using myriad::OverflowPolicy;
using test::BackendTest;
using topic_test::Frame;
using topic_test::Kind;
using topic_test::Subscriber;
using topic_test::TopicServer;

constexpr std::size_t kMessage = 4096;
constexpr std::size_t kLimit = 64 << 10;
constexpr std::size_t kFrameBytes = kMessage + 64;  // a message with its frame header, at most
constexpr uint64_t kMaxMessages = 4000;

class PolicyTest : public BackendTest {
 protected:
  myriad::PubSubConfig pubsub_config(OverflowPolicy policy) const {
    myriad::PubSubConfig pc;
    pc.max_queued = kLimit;
    pc.max_held = kLimit;
    pc.policy = policy;
    pc.drain_check = 2ms;
    return pc;
  }
};

struct Flood {
  std::vector<Subscriber> fast;
  Subscriber slow;
  std::map<std::string, uint64_t> last;  // last offset published per topic
  uint64_t published = 0;
};

// Fast readers and a slow one that never reads, on `topics`.
void start(TopicServer& server, Flood& run, const std::vector<std::string>& topics) {
  run.slow = topic_test::connect(server.address(), Kind::kFrame, 4096);
  std::string subs = "NAME slow\n";
  for (const auto& t : topics) subs += topic_test::sub_command(t, Kind::kFrame);
  ASSERT_TRUE(run.slow.send(subs));
  for (int i = 0; i < 4; ++i) {
    run.fast.push_back(topic_test::connect(server.address(), Kind::kLine));
    std::string cmd;
    for (const auto& t : topics) cmd += topic_test::sub_command(t, Kind::kLine);
    ASSERT_TRUE(run.fast.back().send(cmd));
  }
  ASSERT_TRUE(test::eventually([&] {
    for (const auto& t : topics) {
      if (server.pubsub().subscribers(t) != 5) return false;
    }
    return true;
  }));
}

// Publishes (round robin over topics) while the fast readers keep up, until `enough` or the cap.
void flood(TopicServer& server, Flood& run, const std::vector<std::string>& topics,
           const std::function<bool(const myriad::PubSubCounters&)>& enough) {
  std::vector<Subscriber*> fast;
  for (auto& s : run.fast) fast.push_back(&s);
  while (run.published < kMaxMessages && !enough(server.pubsub().counters())) {
    for (int i = 0; i < 16; ++i) {
      const std::string& t = topics[run.published % topics.size()];
      uint64_t off = server.pubsub().publish(t, topic_test::payload_for(run.published, kMessage));
      ASSERT_NE(off, 0u);
      run.last[t] = off;
      ++run.published;
    }
    ASSERT_TRUE(topic_test::pump_frames(fast, run.published)) << "a fast reader fell behind";
  }
  ASSERT_TRUE(enough(server.pubsub().counters()))
      << "the slow subscriber never overflowed: " << server.pubsub().counters().to_string();
}

// Every fast reader has every message of every topic, in order.
void expect_fast_complete(Flood& run) {
  for (auto& s : run.fast) {
    ASSERT_FALSE(s.bad);
    ASSERT_EQ(s.frames.size(), run.published);
    std::map<std::string, uint64_t> next;
    for (const Frame& f : s.frames) {
      uint64_t& n = next[f.topic];
      ASSERT_EQ(f.offset, n + 1) << "a fast reader missed a message of " << f.topic;
      n = f.offset;
    }
  }
}

myriad::SubscriberInfo slow_info(TopicServer& server) {
  myriad::SubscriberInfo info;
  server.on_connection("slow", [&](myriad::Connection c) { info = server.pubsub().subscriber(c); });
  return info;
}

class PolicyDropTest : public PolicyTest {};

TEST_P(PolicyDropTest, TheOldestHeldMessagesGoAndTheGapShowsInTheOffsets) {
  TopicServer server(config(), pubsub_config(OverflowPolicy::kDrop));
  Flood run;
  start(server, run, {"q"});
  flood(server, run, {"q"}, [](const myriad::PubSubCounters& c) { return c.dropped >= 100; });
  expect_fast_complete(run);

  myriad::SubscriberInfo info = slow_info(server);
  EXPECT_TRUE(info.backlogged);
  EXPECT_LE(info.queued, kLimit + kFrameBytes) << "the connection's queue passed max_queued";
  EXPECT_LE(info.held, kLimit + kFrameBytes) << "held messages passed max_held";
  EXPECT_GE(info.dropped, 100u);
  EXPECT_LE(server.pubsub().counters().held_bytes, kLimit + kFrameBytes);
  EXPECT_EQ(server.pubsub().counters().backlogged, 1u);

  // Now it reads: offsets only go up, the newest message is there, and the holes are exactly
  // what was dropped.
  uint64_t final_offset = run.last["q"];
  ASSERT_TRUE(topic_test::pump({&run.slow}, [&] {
    return !run.slow.frames.empty() && run.slow.frames.back().offset == final_offset;
  }));
  ASSERT_FALSE(run.slow.bad);
  uint64_t previous = 0;
  bool gap = false;
  for (const Frame& f : run.slow.frames) {
    ASSERT_GT(f.offset, previous);
    if (f.offset != previous + 1) gap = true;
    previous = f.offset;
  }
  EXPECT_TRUE(gap);
  info = slow_info(server);
  EXPECT_EQ(run.slow.frames.size() + info.dropped, run.published);
  EXPECT_TRUE(test::eventually([&] { return server.pubsub().counters().backlogged == 0; }));
}

class PolicyLatestTest : public PolicyTest {};

TEST_P(PolicyLatestTest, OnlyTheNewestMessagePerTopicIsHeld) {
  myriad::PubSubConfig pc = pubsub_config(OverflowPolicy::kDrop);
  pc.policy_for = [](std::string_view topic) {
    return topic.starts_with("status/") ? OverflowPolicy::kLatest : OverflowPolicy::kDrop;
  };
  TopicServer server(config(), pc);
  Flood run;
  std::vector<std::string> topics = {"status/a", "status/b"};
  start(server, run, topics);
  flood(server, run, topics, [](const myriad::PubSubCounters& c) { return c.conflated >= 100; });
  expect_fast_complete(run);
  EXPECT_EQ(server.pubsub().counters().dropped, 0u) << "policy_for chose latest";

  myriad::SubscriberInfo info = slow_info(server);
  EXPECT_TRUE(info.backlogged);
  EXPECT_LE(info.held_messages, 2u) << "one per topic";
  EXPECT_LE(info.held, 2 * kFrameBytes);
  EXPECT_LE(info.queued, kLimit + kFrameBytes);

  ASSERT_TRUE(topic_test::pump({&run.slow}, [&] {
    std::map<std::string, uint64_t> seen;
    for (const Frame& f : run.slow.frames) seen[f.topic] = f.offset;
    return seen["status/a"] == run.last["status/a"] && seen["status/b"] == run.last["status/b"];
  })) << "the newest value of each topic must arrive";
  std::map<std::string, uint64_t> previous;
  for (const Frame& f : run.slow.frames) {
    ASSERT_GT(f.offset, previous[f.topic]);
    previous[f.topic] = f.offset;
  }
  info = slow_info(server);
  EXPECT_EQ(run.slow.frames.size() + info.dropped, run.published);
}

class PolicyCloseTest : public PolicyTest {};

TEST_P(PolicyCloseTest, ASlowConsumerIsToldWhyAndClosed) {
  myriad::PubSubConfig pc = pubsub_config(OverflowPolicy::kClose);
  pc.close_grace = 60s;  // long enough for the test to read the goodbye
  TopicServer server(config(), pc);
  Flood run;
  start(server, run, {"q"});
  flood(server, run, {"q"},
        [](const myriad::PubSubCounters& c) { return c.slow_consumer_closes == 1; });
  expect_fast_complete(run);
  EXPECT_EQ(server.pubsub().subscribers("q"), 4u);
  EXPECT_EQ(server.pubsub().counters().backlogged, 0u) << "kClose holds nothing";

  ASSERT_TRUE(topic_test::pump({&run.slow}, [&] { return run.slow.eof; }));
  ASSERT_FALSE(run.slow.bad);
  ASSERT_FALSE(run.slow.frames.empty());
  const Frame& last = run.slow.frames.back();
  EXPECT_EQ(last.kind, 2) << "the last frame is the goodbye";
  EXPECT_EQ(last.payload, "slow consumer");
  for (std::size_t k = 0; k + 1 < run.slow.frames.size(); ++k) {
    ASSERT_EQ(run.slow.frames[k].offset, k + 1) << "before the close, nothing is skipped";
  }
  EXPECT_TRUE(test::eventually([&] { return server.handler().closed() == 1; }));
  // Publishing goes on for the others.
  EXPECT_NE(server.pubsub().publish("q", "more"), 0u);
}

MYRIAD_CONFORMANCE_SUITE(PolicyDropTest);
MYRIAD_CONFORMANCE_SUITE(PolicyLatestTest);
MYRIAD_CONFORMANCE_SUITE(PolicyCloseTest);

}  // namespace
