// Offload, handlers on workers, cross-shard posts and timers, on every backend.
#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "client.hpp"

namespace {

using namespace std::chrono_literals;
using test::BackendTest;

// Uppercases each receive on the worker pool and sends the result from the owning shard.
class UpperOffload final : public myriad::Handler {
 public:
  explicit UpperOffload(std::chrono::milliseconds work_time = 0ms) : work_time_(work_time) {}
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    std::string text(data.view());
    myriad::Shard* origin = myriad::Shard::current();
    c.offload(
        [this, text = std::move(text)]() mutable {
          if (myriad::Shard::current() != nullptr) ran_on_shard = true;
          std::this_thread::sleep_for(work_time_);
          for (char& ch : text)
            ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
          return text;
        },
        [this, origin](myriad::Connection conn, std::string result) {
          if (myriad::Shard::current() != origin || &conn.shard() != origin) wrong_shard = true;
          conn.send(result);
        });
  }
  std::atomic<bool> ran_on_shard{false};
  std::atomic<bool> wrong_shard{false};

 private:
  std::chrono::milliseconds work_time_;
};

class OffloadTest : public BackendTest {};

TEST_P(OffloadTest, ResultComesBackOnTheOwningShard) {
  UpperOffload handler;
  myriad::Config cfg = config();
  cfg.workers = 2;
  test::Server server(cfg, handler);
  std::vector<test::Socket> clients;
  for (int i = 0; i < 8; ++i) clients.push_back(server.connect());
  for (int round = 0; round < 20; ++round) {
    for (auto& c : clients) ASSERT_TRUE(c.send_all("abc"));
    for (auto& c : clients) ASSERT_EQ(c.read_n(3), "ABC");
  }
  EXPECT_FALSE(handler.ran_on_shard) << "work ran on a shard thread, not on the pool";
  EXPECT_FALSE(handler.wrong_shard) << "a result was delivered on another shard";
  myriad::Counters c = server.counters();
  EXPECT_EQ(c.offloads_queued, 160u);
  EXPECT_EQ(c.offloads_done, 160u);
}

TEST_P(OffloadTest, AFullQueueStopsReadingInsteadOfQueueingWithoutBound) {
  UpperOffload handler(2ms);
  myriad::Config cfg = config();
  cfg.workers = 1;
  cfg.worker_queue = 2;
  test::Server server(cfg, handler);
  std::vector<test::Socket> clients;
  for (int i = 0; i < 6; ++i) clients.push_back(server.connect());
  // Each client sends one-byte messages and waits for each answer, many at once in parallel.
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (auto& c : clients) {
    threads.emplace_back([&c, &wrong] {
      for (int i = 0; i < 30; ++i) {
        if (!c.send_all("q") || c.read_n(1, 30s) != "Q") ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  myriad::Counters c = server.counters();
  EXPECT_GT(c.offload_waits, 0u)
      << "the queue never filled: the test did not reach the waiting path";
  EXPECT_EQ(c.offloads_done, c.offloads_queued);
}

TEST_P(OffloadTest, WithoutWorkersOffloadStillCompletesAsynchronously) {
  UpperOffload handler;
  myriad::Config cfg = config();
  cfg.workers = 0;
  test::Server server(cfg, handler);
  test::Socket s = server.connect();
  ASSERT_TRUE(s.send_all("inline"));
  EXPECT_EQ(s.read_n(6), "INLINE");
}

// A handler that blocks (as a database call would) in the founding text's architecture.
class BlockingEcho final : public myriad::Handler {
 public:
  void on_open(myriad::Connection) override {
    if (myriad::Shard::current() != nullptr) on_shard = true;
  }
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    if (myriad::Shard::current() != nullptr) on_shard = true;
    // Ids are per shard: key by both (the test's connections have small ids).
    std::atomic<int>& running = concurrent[(c.shard().index() * 32 + c.id()) % 64];
    if (++running > 1) overlapped = true;
    std::this_thread::sleep_for(1ms);
    --running;
    c.send(std::move(data));
  }
  std::atomic<bool> on_shard{false};
  std::atomic<bool> overlapped{false};
  std::atomic<int> concurrent[64] = {};
};

TEST_P(OffloadTest, HandlersOnWorkersKeepEachConnectionsEventsInOrder) {
  BlockingEcho handler;
  myriad::Config cfg = config();
  cfg.workers = 4;
  cfg.handlers_on_workers = true;
  test::Server server(cfg, handler);
  std::vector<test::EchoPeer> peers(8);
  for (std::size_t i = 0; i < peers.size(); ++i) {
    peers[i].socket = server.connect();
    peers[i].out = test::random_bytes(300000, 50 + i);
  }
  test::run_echo(peers);
  EXPECT_FALSE(handler.on_shard) << "a handler ran on a shard thread";
  EXPECT_FALSE(handler.overlapped) << "two events of one connection ran at once";
}

TEST_P(OffloadTest, PostRunsOnTheTargetShardInOrder) {
  class Idle final : public myriad::Handler {
    void on_data(myriad::Connection, myriad::Chunk) override {}
  } idle;
  myriad::Config cfg = config();
  cfg.shards = 3;
  test::Server server(cfg, idle);
  std::mutex mutex;
  std::vector<std::pair<unsigned, int>> seen;
  std::atomic<int> done{0};
  for (int i = 0; i < 100; ++i) {
    for (unsigned s = 0; s < 3; ++s) {
      server.runtime().shard(s).post([&, s, i] {
        std::lock_guard lock(mutex);
        seen.emplace_back(myriad::Shard::current()->index() == s ? s : 99, i);
        ++done;
      });
    }
  }
  ASSERT_TRUE(test::eventually([&] { return done == 300; }));
  std::lock_guard lock(mutex);
  int last[3] = {-1, -1, -1};
  for (auto [shard, i] : seen) {
    ASSERT_LT(shard, 3u) << "a post ran on the wrong shard";
    EXPECT_GT(i, last[shard]) << "posts to one shard ran out of order";
    last[shard] = i;
  }
}

TEST_P(OffloadTest, TimersFireOnTheirShardAndCancelledOnesDoNot) {
  class Idle final : public myriad::Handler {
    void on_data(myriad::Connection, myriad::Chunk) override {}
  } idle;
  test::Server server(config(), idle);
  std::atomic<int> fired{0};
  std::atomic<bool> cancelled_fired{false};
  std::atomic<bool> wrong_thread{false};
  std::atomic<bool> set{false};
  myriad::Shard& shard = server.runtime().shard(1);
  struct Chain {
    myriad::Shard& shard;
    std::atomic<int>& fired;
    void step(int left) {
      if (left == 0) {
        ++fired;
        return;
      }
      shard.after(1ms, [this, left] { step(left - 1); });
    }
  } chain{shard, fired};
  shard.post([&] {
    for (int i = 0; i < 50; ++i) {
      shard.after(std::chrono::milliseconds(i), [&] {
        if (myriad::Shard::current() != &shard) wrong_thread = true;
        ++fired;
      });
    }
    myriad::TimerId doomed = shard.after(20ms, [&] { cancelled_fired = true; });
    EXPECT_TRUE(shard.cancel(doomed));
    EXPECT_FALSE(shard.cancel(doomed)) << "cancelling twice must say no the second time";
    // A timer that re-arms itself from its own callback, five times.
    chain.step(5);
    set = true;
  });
  ASSERT_TRUE(test::eventually([&] { return fired == 51; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(fired.load(), 51);
  EXPECT_FALSE(cancelled_fired);
  EXPECT_FALSE(wrong_thread);
}

MYRIAD_CONFORMANCE_SUITE(OffloadTest);

}  // namespace
