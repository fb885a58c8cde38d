// Fan-out on every backend: every subscriber gets every message once and in order, whoever
// joins, leaves or closes meanwhile and however many threads publish; shards stop cleanly with
// deliveries in flight; each overflow policy bounds a subscriber that never reads while the
// others keep receiving; a subscription's memory stays within its budget.
#include <myriad/myriad.hpp>
#include <myriad/pubsub.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "client.hpp"
#include "topic_support.hpp"

namespace {

using namespace std::chrono_literals;
using test::BackendTest;
using topic_test::Frame;
using topic_test::Kind;
using topic_test::Subscriber;
using topic_test::TopicServer;

class FanoutTest : public BackendTest {};

std::vector<Subscriber*> pointers(std::vector<Subscriber>& subs) {
  std::vector<Subscriber*> out;
  for (auto& s : subs) out.push_back(&s);
  return out;
}

// Offsets of one topic's frames, in arrival order.
std::vector<uint64_t> offsets_of(const Subscriber& s, const std::string& topic) {
  std::vector<uint64_t> out;
  for (const Frame& f : s.frames) {
    if (f.kind == 1 && f.topic == topic) out.push_back(f.offset);
  }
  return out;
}

// True when v is first, first+1, ..., last.
bool consecutive(const std::vector<uint64_t>& v) {
  for (std::size_t i = 1; i < v.size(); ++i) {
    if (v[i] != v[i - 1] + 1) return false;
  }
  return true;
}

// A small budget per loop turn, so that deliveries pause and resume many times mid-topic.
myriad::PubSubConfig paced() {
  myriad::PubSubConfig pc;
  pc.deliveries_per_turn = 7;
  return pc;
}

TEST_P(FanoutTest, EverySubscriberGetsEveryMessageOnceAndInOrder) {
  TopicServer server(config(), paced());
  constexpr int kSubs = 80;
  constexpr uint64_t kMessages = 300;
  std::vector<Subscriber> subs;
  for (int i = 0; i < kSubs; ++i) {
    Kind kind = i % 2 == 0 ? Kind::kFrame : Kind::kLine;
    subs.push_back(topic_test::connect(server.address(), kind));
    ASSERT_TRUE(subs.back().send(topic_test::sub_command("news", kind)));
  }
  Subscriber raw = topic_test::connect(server.address(), Kind::kRaw);
  ASSERT_TRUE(raw.send(topic_test::sub_command("news", Kind::kRaw)));
  ASSERT_TRUE(test::eventually([&] { return server.pubsub().subscribers("news") == kSubs + 1; }));

  std::vector<std::string> sent;
  std::string all_raw;
  for (uint64_t i = 1; i <= kMessages; ++i) {
    sent.push_back(topic_test::payload_for(i, 1 + (i * 37) % 3000));
    all_raw += sent.back();
    EXPECT_EQ(server.pubsub().publish("news", sent.back()), i) << "offsets count publishes";
  }
  std::vector<Subscriber*> all = pointers(subs);
  ASSERT_TRUE(topic_test::pump_frames(all, kMessages));
  ASSERT_TRUE(topic_test::pump({&raw}, [&] { return raw.raw.size() >= all_raw.size(); }));
  for (int i = 0; i < kSubs; ++i) {
    const Subscriber& s = subs[static_cast<std::size_t>(i)];
    ASSERT_FALSE(s.bad) << "subscriber " << i << " got bytes that do not parse";
    ASSERT_EQ(s.frames.size(), kMessages) << "subscriber " << i;
    for (uint64_t k = 0; k < kMessages; ++k) {
      const Frame& f = s.frames[k];
      ASSERT_EQ(f.topic, "news");
      ASSERT_EQ(f.offset, k + 1) << "subscriber " << i << ": out of order or duplicated";
      ASSERT_TRUE(f.payload == sent[k]) << "subscriber " << i << " message " << k + 1;
    }
  }
  EXPECT_TRUE(raw.raw == all_raw) << "the raw encoding sends the payloads as they are";

  myriad::PubSubCounters c = server.pubsub().counters();
  EXPECT_EQ(c.published, kMessages);
  EXPECT_EQ(c.deliveries, kMessages * (kSubs + 1));
  // Encoded once per message per encoding per shard, never per subscriber: 3 encodings here.
  EXPECT_LE(c.encodes, kMessages * 3 * server.runtime().shard_count());
  EXPECT_GE(c.encodes, kMessages * 3);
  EXPECT_EQ(c.dropped + c.conflated + c.slow_consumer_closes, 0u);
}

TEST_P(FanoutTest, NobodyListeningCostsNothingAndOffsetsRestartWithTheTopic) {
  TopicServer server(config());
  myriad::PubSub& ps = server.pubsub();
  EXPECT_EQ(ps.publish("nobody", "x"), 0u);
  EXPECT_EQ(ps.topics(), 0u) << "publishing must not create topics";
  EXPECT_EQ(ps.counters().unheard, 1u);

  Subscriber a = topic_test::connect(server.address(), Kind::kLine);
  ASSERT_TRUE(a.send("NAME a\n" + topic_test::sub_command("t", Kind::kLine)));
  ASSERT_TRUE(test::eventually([&] { return ps.subscribers("t") == 1; }));
  EXPECT_EQ(ps.topics(), 1u);
  EXPECT_EQ(ps.publish("t", "one"), 1u);
  EXPECT_EQ(ps.publish("t", "two"), 2u);
  ASSERT_TRUE(topic_test::pump_frames({&a}, 2));
  ASSERT_TRUE(a.send("UNSUB t\n"));
  ASSERT_TRUE(test::eventually([&] { return ps.subscribers("t") == 0 && ps.topics() == 0; }));
  EXPECT_EQ(ps.publish("t", "unheard"), 0u);
  EXPECT_EQ(ps.counters().subscriptions, 0u);
  // Forgotten, so it starts again.
  ASSERT_TRUE(a.send(topic_test::sub_command("t", Kind::kLine)));
  ASSERT_TRUE(test::eventually([&] { return ps.subscribers("t") == 1; }));
  EXPECT_EQ(ps.publish("t", "again"), 1u);
  ASSERT_TRUE(topic_test::pump_frames({&a}, 3));
  EXPECT_EQ(a.frames[2].payload, "again");
  EXPECT_EQ(a.frames[2].offset, 1u);
}

TEST_P(FanoutTest, SubscribersJoinLeaveAndCloseDuringABroadcast) {
  TopicServer server(config(), paced());
  myriad::PubSub& ps = server.pubsub();
  auto make = [&](std::vector<Subscriber>& into, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      into.push_back(topic_test::connect(server.address(), Kind::kLine));
      ASSERT_TRUE(into.back().send(topic_test::sub_command("live", Kind::kLine)));
    }
  };
  std::vector<Subscriber> stable, leavers, closers, joiners;
  make(stable, 30);
  make(leavers, 10);
  make(closers, 10);
  ASSERT_TRUE(test::eventually([&] { return ps.subscribers("live") == 50; }));

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> last{0};
  std::thread publisher([&] {
    uint64_t i = 0;
    while (!stop.load() || i < 200) {
      ++i;
      uint64_t off = ps.publish("live", topic_test::payload_for(i, 100));
      if (off != 0) last.store(off);
      std::this_thread::sleep_for(300us);  // pacing, so the churn happens mid-broadcast
    }
  });
  std::vector<Subscriber*> reading;
  auto refresh = [&] {
    reading.clear();
    for (auto* group : {&stable, &leavers, &joiners}) {
      for (auto& s : *group) reading.push_back(&s);
    }
  };
  refresh();
  auto read_a_while = [&] {
    topic_test::pump(
        reading, [] { return false; }, 30ms);
  };
  ASSERT_TRUE(test::eventually([&] { return last.load() >= 20; }));
  read_a_while();
  make(joiners, 10);
  refresh();
  read_a_while();
  for (auto& s : leavers) ASSERT_TRUE(s.send("UNSUB live\n"));
  for (std::size_t i = 0; i < closers.size(); ++i) {
    if (i % 2 == 0) {
      closers[i].socket.reset();
    } else {
      closers[i].socket.reset_hard();
    }
  }
  // Subscribe and close at once, over and over.
  for (int i = 0; i < 20; ++i) {
    Subscriber brief = topic_test::connect(server.address(), Kind::kLine);
    brief.send(topic_test::sub_command("live", Kind::kLine));
    if (i % 2 == 0) brief.socket.reset_hard();
  }
  make(joiners, 10);
  refresh();
  ASSERT_TRUE(test::eventually(
      [&] {
        topic_test::pump(
            reading, [] { return false; }, 5ms);
        return ps.subscribers("live") == 50;  // 30 stable + 20 joiners
      },
      30s));
  // Whatever reached a leaver was published before this: the publisher's next store is at
  // least the offset of anything pushed before the unsubscribes were seen.
  uint64_t seen = last.load();
  ASSERT_TRUE(test::eventually([&] { return last.load() > seen; }));
  uint64_t after_leaving = last.load();
  ASSERT_TRUE(test::eventually([&] {
    topic_test::pump(
        reading, [] { return false; }, 5ms);
    return last.load() > after_leaving + 100;
  }));
  stop.store(true);
  publisher.join();
  uint64_t total = last.load();
  ASSERT_TRUE(topic_test::pump(reading, [&] {
    for (auto* group : {&stable, &joiners}) {
      for (auto& s : *group) {
        if (s.frames.empty() || s.frames.back().offset < total) return false;
      }
    }
    return true;
  }));
  for (auto& s : stable) {
    std::vector<uint64_t> got = offsets_of(s, "live");
    ASSERT_EQ(got.size(), total);
    ASSERT_EQ(got.front(), 1u);
    ASSERT_TRUE(consecutive(got)) << "a stable subscriber missed or repeated a message";
  }
  for (auto& s : joiners) {
    std::vector<uint64_t> got = offsets_of(s, "live");
    ASSERT_FALSE(got.empty());
    ASSERT_EQ(got.back(), total);
    ASSERT_TRUE(consecutive(got)) << "a joiner's run has a gap or a duplicate";
  }
  for (auto& s : leavers) {
    std::vector<uint64_t> got = offsets_of(s, "live");
    ASSERT_FALSE(got.empty());
    EXPECT_EQ(got.front(), 1u);
    EXPECT_TRUE(consecutive(got));
    EXPECT_LE(got.back(), after_leaving) << "a subscriber got messages after it left";
  }
  myriad::PubSubCounters c = ps.counters();
  EXPECT_EQ(c.subscriptions, 50u);
  EXPECT_EQ(c.backlogged, 0u);
  stable.clear();
  joiners.clear();
  leavers.clear();
  EXPECT_TRUE(test::eventually([&] {
    myriad::PubSubCounters now = ps.counters();
    return now.subscriptions == 0 && now.topics == 0 && ps.topics() == 0;
  })) << ps.counters().to_string();
}

TEST_P(FanoutTest, ManyThreadsPublishAtOnceAndOffsetsTellTheOrder) {
  TopicServer server(config(), paced());
  myriad::PubSub& ps = server.pubsub();
  std::vector<Subscriber> subs;
  for (int i = 0; i < 40; ++i) {
    Kind kind = i % 2 == 0 ? Kind::kFrame : Kind::kLine;
    subs.push_back(topic_test::connect(server.address(), kind));
    ASSERT_TRUE(
        subs.back().send(topic_test::sub_command("t", kind) + topic_test::sub_command("u", kind)));
  }
  ASSERT_TRUE(
      test::eventually([&] { return ps.subscribers("t") == 40 && ps.subscribers("u") == 40; }));

  constexpr int kThreads = 6;
  constexpr int kEach = 300;
  std::atomic<bool> go{false};
  // Per thread: (topic, offset, payload) in its own publishing order.
  struct Sent {
    std::string topic;
    uint64_t offset;
    std::string payload;
  };
  std::vector<std::vector<Sent>> sent(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < kEach; ++i) {
        std::string topic = (t == 0 && i % 2 == 1) ? "u" : "t";
        std::string payload = "thread " + std::to_string(t) + " seq " + std::to_string(i) + " " +
                              std::string(static_cast<std::size_t>(i % 50), 'x');
        uint64_t off = ps.publish(topic, payload);
        sent[static_cast<std::size_t>(t)].push_back(Sent{topic, off, payload});
      }
    });
  }
  go.store(true);
  for (auto& th : threads) th.join();

  std::map<std::string, std::map<uint64_t, std::string>> by_offset;
  for (int t = 0; t < kThreads; ++t) {
    uint64_t last_t = 0, last_u = 0;
    for (const Sent& s : sent[static_cast<std::size_t>(t)]) {
      ASSERT_NE(s.offset, 0u);
      uint64_t& last = s.topic == "t" ? last_t : last_u;
      EXPECT_GT(s.offset, last) << "one thread's publishes must get increasing offsets";
      last = s.offset;
      EXPECT_TRUE(by_offset[s.topic].emplace(s.offset, s.payload).second) << "offset given twice";
    }
  }
  std::size_t total_t = by_offset["t"].size(), total_u = by_offset["u"].size();
  ASSERT_EQ(total_t + total_u, std::size_t{kThreads} * kEach);
  ASSERT_EQ(by_offset["t"].rbegin()->first, total_t) << "offsets of t are 1..n without holes";
  ASSERT_EQ(by_offset["u"].rbegin()->first, total_u);

  std::vector<Subscriber*> all = pointers(subs);
  ASSERT_TRUE(topic_test::pump_frames(all, total_t + total_u));
  for (auto& s : subs) {
    ASSERT_FALSE(s.bad);
    ASSERT_EQ(s.frames.size(), total_t + total_u);
    for (const std::string topic : {"t", "u"}) {
      std::vector<uint64_t> got = offsets_of(s, topic);
      ASSERT_EQ(got.size(), by_offset[topic].size());
      ASSERT_EQ(got.front(), 1u);
      ASSERT_TRUE(consecutive(got)) << "topic " << topic << " arrived out of offset order";
    }
    for (const Frame& f : s.frames) {
      ASSERT_EQ(f.payload, by_offset[f.topic][f.offset]) << f.topic << " offset " << f.offset;
    }
  }
}

TEST_P(FanoutTest, AShardStoppingWithDeliveriesInFlightLosesNothingItSent) {
  myriad::Config cfg = config();
  cfg.drain_timeout = 300ms;
  myriad::PubSubConfig pc;
  pc.max_queued = 2 << 20;  // the whole burst fits: nothing is dropped, so what arrives is a prefix
  TopicServer server(cfg, pc);
  myriad::PubSub& ps = server.pubsub();
  std::vector<Subscriber> subs;
  for (int i = 0; i < 40; ++i) {
    subs.push_back(topic_test::connect(server.address(), Kind::kFrame, 8192));
    ASSERT_TRUE(subs.back().send(topic_test::sub_command("s", Kind::kFrame)));
  }
  ASSERT_TRUE(test::eventually([&] { return ps.subscribers("s") == 40; }));
  std::vector<std::string> sent;
  for (uint64_t i = 1; i <= 200; ++i) {
    sent.push_back(topic_test::payload_for(i, 4096));
    ps.publish("s", sent.back());
  }
  // A publisher still going while the runtime stops.
  std::atomic<bool> done{false};
  std::thread late([&] {
    for (uint64_t i = 201; i < 20000 && !done.load(); ++i) ps.publish("s", "late");
  });
  server.runtime().stop();
  server.runtime().wait();
  done.store(true);
  late.join();
  EXPECT_EQ(ps.counters().subscriptions, 0u) << "shutdown closes every subscriber";
  EXPECT_EQ(ps.counters().dropped, 0u);
  EXPECT_EQ(ps.topics(), 0u);
  EXPECT_EQ(ps.publish("s", "after"), 0u);
  std::vector<Subscriber*> all = pointers(subs);
  topic_test::pump(all, [&] {
    return std::all_of(subs.begin(), subs.end(), [](const Subscriber& s) { return s.eof; });
  });
  for (auto& s : subs) {
    ASSERT_TRUE(s.eof) << "every subscriber is closed by the shutdown";
    ASSERT_FALSE(s.bad);
    // What arrived is a prefix: offsets 1, 2, ... with intact payloads (a frame cut by the
    // drain deadline stays in buffer, unparsed).
    for (std::size_t k = 0; k < s.frames.size(); ++k) {
      ASSERT_EQ(s.frames[k].offset, k + 1);
      if (k < sent.size()) {
        ASSERT_TRUE(s.frames[k].payload == sent[k]);
      } else {
        ASSERT_EQ(s.frames[k].payload, "late");
      }
    }
  }
}

TEST_P(FanoutTest, ASubscriberThatClosedUnnoticedIsRemovedAtItsNextDelivery) {
  TopicServer server(config());
  myriad::PubSub& ps = server.pubsub();
  server.handler().forward_close.store(false);
  std::vector<Subscriber> subs;
  for (int i = 0; i < 6; ++i) {
    subs.push_back(topic_test::connect(server.address(), Kind::kLine));
    ASSERT_TRUE(subs.back().send(topic_test::sub_command("d", Kind::kLine)));
  }
  ASSERT_TRUE(test::eventually([&] { return ps.subscribers("d") == 6; }));
  subs[0].socket.reset();
  subs[1].socket.reset_hard();
  ASSERT_TRUE(test::eventually([&] { return server.handler().closed() == 2; }));
  EXPECT_EQ(ps.subscribers("d"), 6u) << "nobody told the PubSub";
  ps.publish("d", "x");
  ASSERT_TRUE(test::eventually([&] { return ps.subscribers("d") == 4; }));
  EXPECT_EQ(ps.counters().dead_subscribers, 2u);
  std::vector<Subscriber*> rest = {&subs[2], &subs[3], &subs[4], &subs[5]};
  ASSERT_TRUE(topic_test::pump_frames(rest, 1));
  for (auto* s : rest) EXPECT_EQ(s->frames.at(0).payload, "x");
}

TEST_P(FanoutTest, PublishingFromAShardThreadReachesEveryShard) {
  TopicServer server(config());
  myriad::PubSub& ps = server.pubsub();
  std::vector<Subscriber> subs;
  for (int i = 0; i < 20; ++i) {
    subs.push_back(topic_test::connect(server.address(), Kind::kFrame));
    ASSERT_TRUE(subs.back().send(topic_test::sub_command("p", Kind::kFrame)));
  }
  ASSERT_TRUE(test::eventually([&] { return ps.subscribers("p") == 20; }));
  Subscriber publisher = topic_test::connect(server.address(), Kind::kLine);
  std::string binary("a\0b\nc", 5);
  ASSERT_TRUE(publisher.send("PUB p 5\n" + binary + "PUB p 3\nxyz"));
  std::vector<Subscriber*> all = pointers(subs);
  ASSERT_TRUE(topic_test::pump_frames(all, 2));
  for (auto& s : subs) {
    ASSERT_EQ(s.frames.size(), 2u);
    EXPECT_EQ(s.frames[0].payload, binary);
    EXPECT_EQ(s.frames[1].payload, "xyz");
    EXPECT_EQ(s.frames[1].offset, 2u);
  }
}

MYRIAD_CONFORMANCE_SUITE(FanoutTest);

}  // namespace
