// What a handler can rely on, on every backend: on_close once and never from inside its own
// calls, handles to closed connections that do nothing (also once the slot is reused), the
// reason of a shutdown, and a server-side shutdown_write.
#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <vector>

#include "client.hpp"

namespace {

using namespace std::chrono_literals;
using myriad::CloseReason;
using test::BackendTest;

// Closes each connection the way its first byte asks, and in on_close tries everything that
// could end in a second on_close: close(), abort(), send().
class Closer final : public myriad::Handler {
 public:
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    char how = data.view()[0];
    guard_enter();
    if (how == 'c') c.close();
    if (how == 'a') c.abort();
    if (how == 's') c.send(std::string(8 << 20, 's'));  // past max_write_queue: slow reader
    guard_leave();
  }
  void on_close(myriad::Connection c, CloseReason reason, int) override {
    if (depth_ > 0) reentered = true;  // called from inside one of our own calls
    guard_enter();
    c.close();
    c.abort();
    c.send(std::string_view("after close"));
    c.pause_receiving();
    c.shutdown_write();
    guard_leave();
    std::lock_guard lock(mutex);
    ++closes[{c.shard().index(), c.id(), c.generation()}];
    reasons.push_back(reason);
  }
  std::atomic<bool> reentered{false};
  std::mutex mutex;
  std::map<std::tuple<unsigned, uint32_t, uint16_t>, int> closes;
  std::vector<CloseReason> reasons;

 private:
  static thread_local int depth_;
  void guard_enter() { ++depth_; }
  void guard_leave() { --depth_; }
};
thread_local int Closer::depth_ = 0;

class HandlerTest : public BackendTest {};

TEST_P(HandlerTest, OnCloseComesOnceAndNeverFromInsideTheHandlersOwnCall) {
  Closer closer;
  myriad::Config cfg = config();
  cfg.max_write_queue = 1 << 20;
  test::Server server(cfg, closer);
  std::vector<test::Socket> clients;
  for (const char* how : {"c", "a", "s"}) {
    clients.push_back(server.connect());
    ASSERT_TRUE(clients.back().send_all(how));
  }
  clients.push_back(server.connect());  // closed by the peer
  clients.push_back(server.connect());  // reset by the peer
  ASSERT_TRUE(test::eventually([&] { return server.counters().accepted == 5; }));
  clients[3].reset();
  clients[4].reset_hard();
  for (std::size_t i = 0; i < 3; ++i) EXPECT_TRUE(clients[i].closed_by_peer());
  ASSERT_TRUE(test::eventually([&] {
    std::lock_guard lock(closer.mutex);
    return closer.reasons.size() == 5;
  }));
  EXPECT_FALSE(closer.reentered) << "on_close ran inside a call the handler made";
  std::lock_guard lock(closer.mutex);
  for (const auto& [key, n] : closer.closes) EXPECT_EQ(n, 1) << "connection " << std::get<1>(key);
  std::map<CloseReason, int> by_reason;
  for (CloseReason r : closer.reasons) ++by_reason[r];
  EXPECT_EQ(by_reason[CloseReason::kLocal], 2);
  EXPECT_EQ(by_reason[CloseReason::kSlowReader], 1);
  EXPECT_EQ(by_reason[CloseReason::kPeerClosed], 1);
  EXPECT_EQ(by_reason[CloseReason::kReset], 1);
  EXPECT_EQ(server.counters().closed_total(), 5u);
}

// Keeps the handle of the first connection; when another one opens in the same slot, tries
// everything on the stale handle from that connection's on_open.
class StaleUser final : public myriad::Handler {
 public:
  void on_open(myriad::Connection c) override {
    std::lock_guard lock(mutex);
    if (!first.valid() && !first_closed) {
      first = c;
      return;
    }
    ++opened_after;
    if (c.id() != first.id() || &c.shard() != &first.shard()) return;
    // The slot is reused: the stale handle must not reach the new connection.
    reused = true;
    stale_valid = first.valid();
    stale_sent = first.send(std::string_view("stale"));
    stale_queued = first.queued();
    stale_user = first.user();
    first.set_user(&first);
    first.pause_receiving();
    first.shutdown_write();
    first.close();
    first.abort();
    fresh_user_untouched = c.user() == nullptr;
  }
  void on_data(myriad::Connection c, myriad::Chunk data) override { c.send(std::move(data)); }
  void on_close(myriad::Connection c, CloseReason, int) override {
    std::lock_guard lock(mutex);
    if (c == first) first_closed = true;
  }
  std::mutex mutex;
  myriad::Connection first;
  bool first_closed = false;
  int opened_after = 0;
  bool reused = false;
  bool stale_valid = true;
  bool stale_sent = true;
  std::size_t stale_queued = 1;
  void* stale_user = &mutex;
  bool fresh_user_untouched = false;
};

TEST_P(HandlerTest, AStaleHandleDoesNothingEvenWhenItsSlotHoldsANewConnection) {
#if defined(__SANITIZE_THREAD__)
  // epoll's ids are descriptors, shared with this process's own sockets, so slot reuse depends on
  // which descriptors the process holds. Under ThreadSanitizer the epoll case once found no reuse
  // in 200 tries (cause not established; suspected: descriptors the sanitizer runtime holds).
  // The release and ASan builds run this case on both backends.
  if (GetParam() == myriad::BackendKind::kEpoll) GTEST_SKIP() << "epoll slot reuse under TSan";
#endif
  StaleUser handler;
  myriad::Config cfg = config();
  cfg.shards = 1;
  cfg.ring_slots = 64;  // io_uring: slots are reused within a few dozen connections
  test::Server server(cfg, handler);
  {
    test::Socket first = server.connect();
    ASSERT_TRUE(test::eventually([&] { return server.counters().open == 1; }));
  }
  ASSERT_TRUE(test::eventually([&] {
    std::lock_guard lock(handler.mutex);
    return handler.first_closed;
  }));
  // Open connections one at a time until one gets the first one's slot, each closed (on both
  // sides) before the next: with epoll ids are descriptors, and the test's own sockets take
  // descriptors from the same table.
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(test::eventually([&] { return server.counters().open == 0; }));
    test::Socket s = server.connect();
    ASSERT_TRUE(test::eventually([&] {
      std::lock_guard lock(handler.mutex);
      return handler.opened_after == i + 1;
    }));
    bool reused;
    {
      std::lock_guard lock(handler.mutex);
      reused = handler.reused;
    }
    if (!reused) continue;
    // The new connection is untouched by what the stale handle tried: it echoes, unpaused,
    // not shut down, and receives nothing it did not ask for.
    ASSERT_TRUE(s.send_all("fresh"));
    EXPECT_EQ(s.read_n(5), "fresh");
    break;
  }
  std::lock_guard lock(handler.mutex);
  ASSERT_TRUE(handler.reused) << "no connection reused the first one's slot in 200 tries";
  EXPECT_FALSE(handler.stale_valid);
  EXPECT_FALSE(handler.stale_sent);
  EXPECT_EQ(handler.stale_queued, 0u);
  EXPECT_EQ(handler.stale_user, nullptr);
  EXPECT_TRUE(handler.fresh_user_untouched) << "set_user on a stale handle reached the new one";
  EXPECT_EQ(server.counters().closed_local, 0u);
}

// Records every close reason, on whichever thread the handler runs.
class Reasons final : public myriad::Handler {
 public:
  void on_data(myriad::Connection c, myriad::Chunk) override {
    c.send(std::string(16 << 20, 'b'));  // far more than the kernel's buffers take
    ++busy;
  }
  void on_close(myriad::Connection, CloseReason reason, int error) override {
    std::lock_guard lock(mutex);
    reasons.emplace_back(reason, error);
  }
  std::atomic<int> busy{0};
  std::mutex mutex;
  std::vector<std::pair<CloseReason, int>> reasons;
};

void expect_shutdown_reaches_the_handler(myriad::Config cfg) {
  Reasons handler;
  cfg.drain_timeout = 200ms;
  cfg.max_write_queue = 32 << 20;
  test::Server server(cfg, handler);
  std::vector<test::Socket> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(server.connect());  // idle
  for (int i = 0; i < 3; ++i) {
    clients.push_back(server.connect(4096));
    ASSERT_TRUE(clients.back().send_all("busy"));  // megabytes queued, never read
  }
  // All six reached the handler, and the busy ones have megabytes queued (the kernel's
  // buffers take a few at most).
  ASSERT_TRUE(test::eventually([&] {
    myriad::Counters c = server.counters();
    return c.accepted == 6 && handler.busy == 3 && c.queued_bytes > (24u << 20);
  }));
  server.stop();
  std::lock_guard lock(handler.mutex);
  ASSERT_EQ(handler.reasons.size(), 6u);
  for (auto [reason, error] : handler.reasons) {
    EXPECT_EQ(reason, CloseReason::kShutdown) << myriad::to_string(reason);
    EXPECT_EQ(error, 0);
  }
  EXPECT_EQ(server.counters().closed_shutdown, 6u);
}

TEST_P(HandlerTest, TheShutdownReasonReachesTheHandlerForIdleAndBusyConnections) {
  expect_shutdown_reaches_the_handler(config());
}

TEST_P(HandlerTest, TheShutdownReasonReachesAHandlerOnWorkers) {
  myriad::Config cfg = config();
  cfg.workers = 2;
  cfg.handlers_on_workers = true;
  expect_shutdown_reaches_the_handler(cfg);
}

// Answers the first receive and shuts its write side; records what it receives after.
class HalfCloser final : public myriad::Handler {
 public:
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    std::lock_guard lock(mutex);
    if (!shut) {
      shut = true;
      c.send(std::string(300000, 'h'));  // queued: the FIN goes after it
      c.shutdown_write();
      sent_after_shutdown = c.send(std::string_view("late"));
      return;
    }
    after.append(data.view());
  }
  void on_close(myriad::Connection, CloseReason reason, int) override {
    std::lock_guard lock(mutex);
    reasons.push_back(reason);
  }
  std::mutex mutex;
  bool shut = false;
  bool sent_after_shutdown = true;
  std::string after;
  std::vector<CloseReason> reasons;
};

TEST_P(HandlerTest, ShutdownWriteSendsWhatIsQueuedThenAFinAndKeepsReceiving) {
  HalfCloser handler;
  test::Server server(config(), handler);
  test::Socket c = server.connect();
  ASSERT_TRUE(c.send_all("go"));
  std::string got;
  ASSERT_TRUE(c.read_to_eof(got)) << "no FIN after the queued output";
  EXPECT_EQ(got, std::string(300000, 'h')) << "the FIN cut the queued output, or late data came";
  // Our side is still open, and the server still receives.
  std::string more = test::random_bytes(100000, 13);
  ASSERT_TRUE(c.send_all(more));
  ASSERT_TRUE(test::eventually([&] {
    std::lock_guard lock(handler.mutex);
    return handler.after.size() == more.size();
  }));
  {
    std::lock_guard lock(handler.mutex);
    EXPECT_TRUE(handler.after == more);
    EXPECT_FALSE(handler.sent_after_shutdown) << "send() after shutdown_write() was accepted";
    EXPECT_TRUE(handler.reasons.empty()) << "closed before the peer closed";
  }
  c.shutdown_write();  // both sides shut: the connection ends
  ASSERT_TRUE(test::eventually([&] {
    std::lock_guard lock(handler.mutex);
    return handler.reasons.size() == 1;
  }));
  std::lock_guard lock(handler.mutex);
  EXPECT_EQ(handler.reasons[0], CloseReason::kPeerClosed);
  EXPECT_EQ(server.counters().open, 0u);
}

// BUG (not fixed here, see the report): docs/ARCHITECTURE.md says a handler may hold its own
// lock while it calls myriad (on_close comes from the loop for that reason), but
// on_write_watermark(true) is called from inside the send() that crossed the high watermark
// (ShardImpl::after_output_change), so a handler that sends under its lock and takes the same
// lock in on_write_watermark deadlocks its shard. Here try_lock shows it without deadlocking.
TEST_P(HandlerTest, DISABLED_AHandlerMayHoldItsLockWhileItSends) {
  class Locked final : public myriad::Handler {
   public:
    void on_data(myriad::Connection c, myriad::Chunk) override {
      std::lock_guard lock(mutex);
      c.send(std::string(1 << 20, 'l'));  // far past the high watermark
    }
    void on_write_watermark(myriad::Connection, bool above) override {
      if (!mutex.try_lock()) {
        called_under_lock = true;
        return;
      }
      if (above) ++edges;
      mutex.unlock();
    }
    std::mutex mutex;
    std::atomic<bool> called_under_lock{false};
    std::atomic<int> edges{0};
  } handler;
  test::Server server(config(), handler);
  test::Socket c = server.connect(4096);
  ASSERT_TRUE(c.send_all("go"));
  ASSERT_TRUE(test::eventually([&] { return handler.edges > 0 || handler.called_under_lock; }));
  EXPECT_FALSE(handler.called_under_lock)
      << "on_write_watermark ran inside send(), under the handler's own lock";
}

MYRIAD_CONFORMANCE_SUITE(HandlerTest);

}  // namespace
