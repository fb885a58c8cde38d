// What subscriptions cost, on every backend, counted in bytes: by the PubSub's own account of
// its tables (memory_bytes) and, where the allocator can say (glibc malloc, not under a
// sanitizer), by the heap bytes in use. The budget: a subscription at most 32 bytes, an idle
// connection subscribed to one topic at most 128 bytes including the core's 32-byte record.
#include <myriad/myriad.hpp>
#include <myriad/pubsub.hpp>

#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <vector>

#include "client.hpp"
#include "topic_support.hpp"

namespace {

using namespace std::chrono_literals;
using test::BackendTest;
using topic_test::Kind;
using topic_test::Subscriber;
using topic_test::TopicServer;

constexpr std::size_t kRecordBytes = 32;  // the core's per-connection record (docs/ARCHITECTURE.md)
constexpr std::size_t kConnectionBudget = 128;
constexpr std::size_t kSubscriptionBudget = 32;

// Whether heap_in_use() sees allocations (it does not where a sanitizer owns malloc).
bool heap_measurable() {
  std::size_t before = topic_test::heap_in_use();
  auto* block = new std::vector<char>(1 << 20, 1);
  std::size_t after = topic_test::heap_in_use();
  delete block;
  return after >= before + (1 << 20);
}

class MemoryTest : public BackendTest {};

TEST_P(MemoryTest, SubscriptionsStayWithinTheirByteBudget) {
  myriad::Config cfg = config();
  cfg.shards = 1;
  TopicServer server(cfg);
  myriad::PubSub& ps = server.pubsub();
  constexpr std::size_t kN = 2000;
  std::vector<Subscriber> subs;
  subs.reserve(kN);
  for (std::size_t i = 0; i < kN; ++i) {
    // Client descriptors far from the server's, so that epoll's ids (descriptors) stay dense
    // as they would with the clients in another process.
    subs.push_back(topic_test::connect(server.address(), Kind::kLine, 0, true));
  }
  ASSERT_TRUE(test::eventually([&] { return server.handler().open() == kN; }));
  bool heap = heap_measurable();
  if (!heap) std::cout << "[ note ] malloc is not glibc's here: checking memory_bytes only\n";

  auto subscribe_all = [&](const std::string& topic) {
    for (auto& s : subs) ASSERT_TRUE(s.send(topic_test::sub_command(topic, Kind::kLine)));
    ASSERT_TRUE(test::eventually([&] { return ps.subscribers(topic) == kN; }));
  };
  std::size_t h0 = topic_test::heap_in_use();
  uint64_t m0 = ps.counters().memory_bytes;
  subscribe_all("a");
  std::size_t h1 = topic_test::heap_in_use();
  uint64_t m1 = ps.counters().memory_bytes;
  double table_per_connection = static_cast<double>(m1 - m0) / kN;
  EXPECT_LE(table_per_connection + kRecordBytes, kConnectionBudget)
      << "a connection subscribed to one topic costs " << table_per_connection
      << " bytes of pub/sub tables";
  if (heap) {
    double heap_per_connection = (static_cast<double>(h1) - static_cast<double>(h0)) / kN;
    EXPECT_LE(heap_per_connection + kRecordBytes, kConnectionBudget)
        << "the heap grew " << heap_per_connection << " bytes per subscribed connection";
    std::cout << "[ note ] one topic: " << table_per_connection << " table bytes, "
              << heap_per_connection << " heap bytes per connection\n";
  }

  subscribe_all("b");
  subscribe_all("c");
  subscribe_all("d");
  std::size_t h2 = topic_test::heap_in_use();
  uint64_t m2 = ps.counters().memory_bytes;
  EXPECT_EQ(ps.counters().subscriptions, 4 * kN);
  double table_per_subscription = static_cast<double>(m2 - m1) / (3 * kN);
  EXPECT_LE(table_per_subscription, kSubscriptionBudget);
  if (heap) {
    double heap_per_subscription = (static_cast<double>(h2) - static_cast<double>(h1)) / (3 * kN);
    EXPECT_LE(heap_per_subscription, kSubscriptionBudget)
        << "the heap grew " << heap_per_subscription << " bytes per further subscription";
    std::cout << "[ note ] further topics: " << table_per_subscription << " table bytes, "
              << heap_per_subscription << " heap bytes per subscription\n";
  }

  // And everything comes back.
  for (auto& s : subs) ASSERT_TRUE(s.send("UNSUBALL\n"));
  ASSERT_TRUE(
      test::eventually([&] { return ps.counters().subscriptions == 0 && ps.topics() == 0; }));
  EXPECT_LE(ps.counters().memory_bytes, 4096u) << "tables left behind after unsubscribing";
  if (heap) {
    std::size_t h3 = topic_test::heap_in_use();
    // Any allocation left behind per connection would be at least malloc's 32-byte chunk; what
    // stays besides is the shard's own bookkeeping (vectors keep their capacity).
    EXPECT_LT(static_cast<double>(h3) - static_cast<double>(h0), 16.0 * kN)
        << "heap not given back after unsubscribing";
  }
}

MYRIAD_CONFORMANCE_SUITE(MemoryTest);

}  // namespace
