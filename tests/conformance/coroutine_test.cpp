// The coroutine form of a handler, on every backend.
#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "client.hpp"

namespace {

using namespace std::chrono_literals;
using test::BackendTest;

myriad::Task echo(myriad::Stream& s) {
  while (myriad::Chunk data = co_await s.receive()) {
    if (!co_await s.send(std::move(data))) break;
  }
}

class CoroutineTest : public BackendTest {};

TEST_P(CoroutineTest, EchoManyConnections) {
  myriad::CoroutineHandler handler(echo);
  test::Server server(config(), handler);
  std::vector<test::EchoPeer> peers(50);
  for (std::size_t i = 0; i < peers.size(); ++i) {
    peers[i].socket = server.connect();
    peers[i].out = test::random_bytes(1 + i * 20011, i);
  }
  test::run_echo(peers);
  EXPECT_GT(myriad::Task::last_frame_bytes(), 0u);
  peers.clear();
  ASSERT_TRUE(test::eventually([&] { return server.counters().open == 0; }));
}

TEST_P(CoroutineTest, ReturningClosesAfterTheRepliesAreSent) {
  myriad::CoroutineHandler handler([](myriad::Stream& s) -> myriad::Task {
    myriad::Chunk first = co_await s.receive();
    std::string reply = "got " + std::to_string(first.size());
    co_await s.send(reply);
  });
  test::Server server(config(), handler);
  test::Socket c = server.connect();
  ASSERT_TRUE(c.send_all("12345"));
  std::string got;
  EXPECT_TRUE(c.read_to_eof(got));
  EXPECT_EQ(got, "got 5");
}

TEST_P(CoroutineTest, HalfCloseEndsTheReceiveLoopButRepliesStillGo) {
  myriad::CoroutineHandler handler([](myriad::Stream& s) -> myriad::Task {
    std::size_t total = 0;
    while (myriad::Chunk data = co_await s.receive()) total += data.size();
    co_await s.send("total " + std::to_string(total));
  });
  test::Server server(config(), handler);
  test::Socket c = server.connect();
  ASSERT_TRUE(c.send_all(std::string(100000, 'x')));
  c.shutdown_write();
  std::string got;
  EXPECT_TRUE(c.read_to_eof(got));
  EXPECT_EQ(got, "total 100000");
}

TEST_P(CoroutineTest, SleepAndOffloadResumeOnTheConnectionsShard) {
  std::atomic<bool> wrong_shard{false};
  myriad::CoroutineHandler handler([&](myriad::Stream& s) -> myriad::Task {
    myriad::Shard* home = myriad::Shard::current();
    myriad::Chunk data = co_await s.receive();
    std::string text(data.view());
    co_await s.sleep(5ms);
    if (myriad::Shard::current() != home) wrong_shard = true;
    // Named, not a temporary in the co_await: GCC 12 miscompiles a capturing lambda temporary
    // in a co_await operand (the capture's string ends up pointing at a dead stack copy).
    auto to_upper = [text] {
      std::string u = text;
      for (char& ch : u) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      return u;
    };
    std::string upper = co_await s.offload(std::move(to_upper));
    if (myriad::Shard::current() != home) wrong_shard = true;
    co_await s.send(upper);
  });
  myriad::Config cfg = config();
  cfg.workers = 2;
  test::Server server(cfg, handler);
  std::vector<test::Socket> clients;
  for (int i = 0; i < 10; ++i) {
    clients.push_back(server.connect());
    ASSERT_TRUE(clients.back().send_all("hello"));
  }
  for (auto& c : clients) {
    std::string got;
    EXPECT_TRUE(c.read_to_eof(got));
    EXPECT_EQ(got, "HELLO");
  }
  EXPECT_FALSE(wrong_shard);
}

TEST_P(CoroutineTest, SendWaitsForTheWatermarkInsteadOfQueueingWithoutBound) {
  std::atomic<std::size_t> max_queued{0};
  myriad::CoroutineHandler handler([&](myriad::Stream& s) -> myriad::Task {
    co_await s.receive();
    for (int i = 0; i < 400; ++i) {  // 400 x 16 KiB = 6.25 MiB, far past the 64 KiB watermark
      if (!co_await s.send(std::string(16 << 10, 'z'))) co_return;
      max_queued = std::max(max_queued.load(), s.connection().queued());
    }
  });
  test::Server server(config(), handler);
  test::Socket c = server.connect(4096);
  ASSERT_TRUE(c.send_all("go"));
  std::string got;
  EXPECT_TRUE(c.read_to_eof(got, 60s));
  EXPECT_EQ(got.size(), std::size_t{400} * (16 << 10));
  EXPECT_LE(max_queued.load(), config().write_high_watermark + (16 << 10))
      << "send() did not wait at the high watermark";
}

TEST_P(CoroutineTest, AnEscapedExceptionDropsOnlyThatConnection) {
  myriad::CoroutineHandler handler([](myriad::Stream& s) -> myriad::Task {
    myriad::Chunk data = co_await s.receive();
    if (data.view() == "boom") throw std::runtime_error("handler failed");
    co_await s.send(data.view());
  });
  test::Server server(config(), handler);
  test::Socket bad = server.connect();
  test::Socket good = server.connect();
  ASSERT_TRUE(bad.send_all("boom"));
  EXPECT_TRUE(bad.closed_by_peer());
  ASSERT_TRUE(good.send_all("fine"));
  EXPECT_EQ(good.read_n(4), "fine");
}

TEST_P(CoroutineTest, PeerResetWakesACoroutineWaitingToReceive) {
  std::atomic<int> finished{0};
  myriad::CoroutineHandler handler([&](myriad::Stream& s) -> myriad::Task {
    while (co_await s.receive()) {
    }
    ++finished;
  });
  test::Server server(config(), handler);
  {
    test::Socket c = server.connect();
    ASSERT_TRUE(test::eventually([&] { return server.counters().open == 1; }));
    c.reset_hard();
  }
  EXPECT_TRUE(test::eventually([&] { return finished == 1; }));
  EXPECT_TRUE(test::eventually([&] { return server.counters().open == 0; }));
}

// Counts destructions: a local of the coroutine tells whether its frame was destroyed.
struct FrameGuard {
  std::atomic<int>& destroyed;
  ~FrameGuard() { ++destroyed; }
};

// A coroutine suspended in receive() when the runtime shuts down is woken with the end of
// the stream, returns, and its frame is destroyed.
TEST_P(CoroutineTest, ACoroutineWaitingToReceiveAtShutdownEndsAndIsDestroyed) {
  std::atomic<int> suspended{0}, destroyed{0}, resumed_after{0};
  myriad::CoroutineHandler handler([&](myriad::Stream& s) -> myriad::Task {
    FrameGuard guard{destroyed};
    ++suspended;
    myriad::Chunk none = co_await s.receive();
    if (!none) ++resumed_after;
  });
  test::Server server(config(), handler);
  std::vector<test::Socket> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(server.connect());
  ASSERT_TRUE(test::eventually([&] { return suspended == 4; }));
  server.stop();
  EXPECT_EQ(destroyed.load(), 4) << "a suspended coroutine's frame outlived its connection";
  EXPECT_EQ(resumed_after.load(), 4);
}

// BUG (not fixed here, see the report): a coroutine suspended in sleep() (or in an offload)
// when the runtime shuts down is never resumed nor destroyed: on_close(kShutdown) wakes only
// a coroutine waiting in receive() or send(), the shard's timers stop with the shard, so the
// frame and its Stream leak (AddressSanitizer's leak check reports them). A fix keeps the
// sleep's TimerId in the Stream and, at shutdown, cancels it and destroys the frame
// (include/myriad/coro.hpp, src/coro.cpp).
TEST_P(CoroutineTest, DISABLED_ACoroutineSleepingAtShutdownIsDestroyed) {
  std::atomic<int> suspended{0}, destroyed{0};
  myriad::CoroutineHandler handler([&](myriad::Stream& s) -> myriad::Task {
    FrameGuard guard{destroyed};
    ++suspended;
    co_await s.sleep(std::chrono::hours(1));
  });
  test::Server server(config(), handler);
  std::vector<test::Socket> clients;
  for (int i = 0; i < 4; ++i) clients.push_back(server.connect());
  ASSERT_TRUE(test::eventually([&] { return suspended == 4; }));
  server.stop();
  EXPECT_EQ(destroyed.load(), 4) << "a sleeping coroutine's frame outlived the runtime";
}

MYRIAD_CONFORMANCE_SUITE(CoroutineTest);

}  // namespace
