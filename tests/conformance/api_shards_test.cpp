// Reaching every shard and each shard's own handler (Runtime::post_all, Shard::handler<H>()),
// and periodic timers (Shard::every), on every backend.
#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <vector>

#include "client.hpp"

namespace {

using namespace std::chrono_literals;
using test::BackendTest;

class Idle final : public myriad::Handler {
 public:
  void on_data(myriad::Connection, myriad::Chunk) override {}
};

// Per-shard state kept in a handler made by listen(factory).
class PerShard final : public myriad::Handler {
 public:
  explicit PerShard(myriad::Shard& shard) : made_on(shard.index()) {
    made_on_own_thread = myriad::Shard::current() == &shard;
  }
  void on_data(myriad::Connection, myriad::Chunk) override {}
  unsigned made_on;
  bool made_on_own_thread = false;
  int visits = 0;  // touched only on its shard's thread
};

class ShardsTest : public BackendTest {
 protected:
  myriad::Config three_shards() const {
    myriad::Config cfg = config();
    cfg.shards = 3;
    return cfg;
  }
};

TEST_P(ShardsTest, PostAllRunsOnceOnEveryShardOnItsOwnThread) {
  Idle idle;
  test::Server server(three_shards(), idle);
  std::mutex mutex;
  std::vector<unsigned> seen;
  std::atomic<bool> wrong_thread{false};
  server.runtime().post_all([&](myriad::Shard& shard) {
    if (myriad::Shard::current() != &shard) wrong_thread = true;
    std::lock_guard lock(mutex);
    seen.push_back(shard.index());
  });
  ASSERT_TRUE(test::eventually([&] {
    std::lock_guard lock(mutex);
    return seen.size() == 3;
  }));
  EXPECT_FALSE(wrong_thread);
  std::lock_guard lock(mutex);
  EXPECT_EQ(std::set<unsigned>(seen.begin(), seen.end()), (std::set<unsigned>{0, 1, 2}));
}

TEST_P(ShardsTest, PostAllFromAShardReachesEveryShardIncludingItself) {
  Idle idle;
  test::Server server(three_shards(), idle);
  std::atomic<int> reached{0};
  std::atomic<bool> inside{false};
  std::atomic<bool> ran_inside_the_call{false};
  server.runtime().shard(1).post([&] {
    inside = true;
    myriad::Shard::current()->runtime().post_all([&](myriad::Shard& shard) {
      if (shard.index() == 1 && inside) ran_inside_the_call = true;
      ++reached;
    });
    inside = false;
  });
  ASSERT_TRUE(test::eventually([&] { return reached.load() == 3; }));
  EXPECT_FALSE(ran_inside_the_call) << "a post to the calling shard must not run inside post_all";
  // Nothing more arrives: each shard ran it once.
  std::atomic<bool> later{false};
  server.runtime().shard(1).post([&] { later = true; });
  ASSERT_TRUE(test::eventually([&] { return later.load(); }));
  EXPECT_EQ(reached.load(), 3);
}

TEST_P(ShardsTest, EachShardFindsTheHandlerItsFactoryMade) {
  test::Server server(three_shards(), [](myriad::Shard& shard) -> std::unique_ptr<myriad::Handler> {
    return std::make_unique<PerShard>(shard);
  });
  std::atomic<int> good{0};
  std::atomic<int> done{0};
  server.runtime().post_all([&](myriad::Shard& shard) {
    PerShard* mine = shard.handler<PerShard>();
    if (mine != nullptr && mine->made_on == shard.index() && mine->made_on_own_thread &&
        shard.handler<Idle>() == nullptr && shard.listener_count() == 1 &&
        shard.listener_handler(0) == mine && shard.listener_handler(1) == nullptr) {
      ++mine->visits;
      ++good;
    }
    ++done;
  });
  ASSERT_TRUE(test::eventually([&] { return done.load() == 3; }));
  EXPECT_EQ(good.load(), 3);
  // After start(), other threads may take the pointers (using them is theirs to synchronise).
  std::set<PerShard*> distinct;
  for (unsigned i = 0; i < 3; ++i) distinct.insert(server.runtime().shard(i).handler<PerShard>());
  EXPECT_EQ(distinct.size(), 3u);
  EXPECT_EQ(distinct.count(nullptr), 0u);
}

TEST_P(ShardsTest, AHandlerSharedByEveryShardIsEveryShardsListenerHandler) {
  Idle idle;
  test::Server server(three_shards(), idle);
  for (unsigned i = 0; i < 3; ++i) {
    EXPECT_EQ(server.runtime().shard(i).listener_handler(0), &idle);
    EXPECT_EQ(server.runtime().shard(i).handler<Idle>(), &idle);
    EXPECT_EQ(server.runtime().shard(i).handler<PerShard>(), nullptr);
  }
  EXPECT_THROW(server.runtime().shard(3), std::out_of_range);
}

// Waits on the shard for a one-shot timer set after the periodic one was cancelled: had the
// periodic one still been armed, with a period far shorter, it would have fired first.
template <class Check>
void after_on_shard(myriad::Shard& shard, myriad::Duration d, Check check) {
  std::atomic<bool> done{false};
  shard.post([&] {
    shard.after(d, [&] {
      check();
      done = true;
    });
  });
  ASSERT_TRUE(test::eventually([&] { return done.load(); }));
}

TEST_P(ShardsTest, EveryFiresRepeatedlyOnItsShardUntilCancelled) {
  Idle idle;
  test::Server server(config(), idle);
  myriad::Shard& shard = server.runtime().shard(1);
  std::atomic<int> fired{0};
  std::atomic<bool> wrong_thread{false};
  std::atomic<myriad::TimerId> id{0};
  shard.post([&] {
    id = shard.every(2ms, [&] {
      if (myriad::Shard::current() != &shard) wrong_thread = true;
      ++fired;
    });
  });
  ASSERT_TRUE(test::eventually([&] { return fired.load() >= 5; }));
  std::atomic<int> cancelled{-1};
  std::atomic<int> at_cancel{0};
  shard.post([&] {
    cancelled = shard.cancel(id) ? 1 : 0;
    at_cancel = fired.load();
    if (shard.cancel(id)) cancelled = 2;  // a second cancel must say no
  });
  ASSERT_TRUE(test::eventually([&] { return cancelled.load() != -1; }));
  EXPECT_EQ(cancelled.load(), 1);
  after_on_shard(shard, 30ms, [&] { EXPECT_EQ(fired.load(), at_cancel.load()); });
  EXPECT_NE(id.load(), 0u);
  EXPECT_FALSE(wrong_thread);
}

TEST_P(ShardsTest, APeriodicTimerMayCancelItselfAndSetOthersFromItsCallback) {
  Idle idle;
  test::Server server(config(), idle);
  myriad::Shard& shard = server.runtime().shard(0);
  std::atomic<int> fired{0};
  std::atomic<int> one_shots{0};
  std::atomic<bool> self_cancel_ok{false};
  myriad::TimerId id = 0;
  shard.post([&] {
    id = shard.every(1ms, [&] {
      // Many new timers from inside the callback: the timer table grows under it.
      for (int i = 0; i < 200; ++i) shard.after(1ms, [&] { ++one_shots; });
      if (++fired == 3) self_cancel_ok = shard.cancel(id);
    });
  });
  ASSERT_TRUE(test::eventually([&] { return one_shots.load() == 600; }));
  after_on_shard(shard, 20ms, [&] { EXPECT_EQ(fired.load(), 3); });
  EXPECT_TRUE(self_cancel_ok) << "cancel from its own callback must succeed";
}

TEST_P(ShardsTest, EveryRefusesANonPositivePeriod) {
  Idle idle;
  test::Server server(config(), idle);
  std::atomic<int> result{-1};
  server.runtime().shard(0).post([&] {
    result = myriad::Shard::current()->every(0ms, [] {}) == 0 &&
                     myriad::Shard::current()->every(-5ms, [] {}) == 0
                 ? 1
                 : 0;
  });
  ASSERT_TRUE(test::eventually([&] { return result.load() != -1; }));
  EXPECT_EQ(result.load(), 1);
}

MYRIAD_CONFORMANCE_SUITE(ShardsTest);

}  // namespace
