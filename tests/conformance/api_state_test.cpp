// Typed per-connection state (Connection::emplace_state / state / reset_state), std::hash of a
// Connection, and the thread contract of connection.hpp, on every backend.
#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "api_support.hpp"
#include "client.hpp"

namespace {

using namespace std::chrono_literals;
using myriad::CloseReason;
using test::BackendTest;

std::atomic<int> g_alive{0};

struct Session {
  explicit Session(std::string n) : name(std::move(n)) { ++g_alive; }
  ~Session() { --g_alive; }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  std::string name;
  std::size_t bytes = 0;
};
struct Other {};

// Gives each connection a Session, counts bytes in it, and checks it is still there in on_close.
class Sessions final : public myriad::Handler {
 public:
  void on_open(myriad::Connection c) override {
    Session* s = c.emplace_state<Session>("guest-" + std::to_string(c.id()));
    if (s == nullptr || c.state<Session>() != s || c.user() != s || c.state<Other>() != nullptr)
      wrong = true;
    open.add(c);
  }
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    Session* s = c.state<Session>();
    if (s == nullptr) {
      wrong = true;
      return;
    }
    s->bytes += data.size();
    if (data.view() == "reset") c.reset_state();
    if (data.view() == "again") c.emplace_state<Session>("second");  // replaces the first
    c.send(std::to_string(s != nullptr && c.state<Session>() != nullptr ? c.state<Session>()->bytes
                                                                        : 0) +
           "\n");
  }
  void on_close(myriad::Connection c, CloseReason, int) override {
    std::lock_guard lock(mutex);
    Session* s = c.state<Session>();
    names_at_close.push_back(s == nullptr ? "" : s->name);
    open.remove(c);
  }
  std::atomic<bool> wrong{false};
  std::mutex mutex;
  std::vector<std::string> names_at_close;
  api_test::OpenConnections open;
};

class StateTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    g_alive = 0;
  }
};

TEST_P(StateTest, StateLivesUntilOnCloseReturnsWhateverEndsTheConnection) {
  Sessions handler;
  {
    test::Server server(config(), handler);
    std::vector<test::Socket> clients;
    for (int i = 0; i < 40; ++i) clients.push_back(server.connect());
    ASSERT_TRUE(test::eventually([&] { return handler.open.size() == 40; }));
    EXPECT_EQ(g_alive.load(), 40);
    for (auto& c : clients) ASSERT_TRUE(c.send_all("hello"));
    for (auto& c : clients) EXPECT_EQ(c.read_n(2), "5\n");
    // Ten close cleanly, ten reset, ten are aborted by the server; ten stay for the shutdown.
    for (int i = 0; i < 10; ++i) clients[i].reset();
    for (int i = 10; i < 20; ++i) clients[i].reset_hard();
    std::vector<myriad::Connection> open = handler.open.snapshot();
    ASSERT_TRUE(test::eventually([&] { return handler.open.size() == 20; }));
    open = handler.open.snapshot();
    for (int i = 0; i < 10; ++i) open[i].abort();  // posted from this thread
    ASSERT_TRUE(test::eventually([&] { return handler.open.size() == 10; }));
    EXPECT_EQ(g_alive.load(), 10);
    server.stop();
  }
  EXPECT_EQ(g_alive.load(), 0) << "every Session destroyed exactly once";
  EXPECT_FALSE(handler.wrong);
  std::lock_guard lock(handler.mutex);
  ASSERT_EQ(handler.names_at_close.size(), 40u);
  for (const auto& name : handler.names_at_close) {
    EXPECT_EQ(name.rfind("guest-", 0), 0u) << "on_close must still see the state: " << name;
  }
}

TEST_P(StateTest, ResetAndReplaceDestroyTheOldState) {
  Sessions handler;
  test::Server server(config(), handler);
  test::Socket a = server.connect();
  ASSERT_TRUE(test::eventually([&] { return g_alive.load() == 1; }));
  ASSERT_TRUE(a.send_all("again"));
  EXPECT_EQ(a.read_n(2), "0\n") << "the replacement starts afresh";
  EXPECT_EQ(g_alive.load(), 1);
  ASSERT_TRUE(a.send_all("reset"));
  EXPECT_EQ(a.read_n(2), "0\n");
  EXPECT_EQ(g_alive.load(), 0);
  a.reset();
  ASSERT_TRUE(test::eventually([&] { return handler.open.size() == 0; }));
  std::lock_guard lock(handler.mutex);
  ASSERT_EQ(handler.names_at_close.size(), 1u);
  EXPECT_EQ(handler.names_at_close[0], "") << "no state after reset_state()";
}

std::atomic<bool> g_late_refused{false};

TEST_P(StateTest, SetUserForgetsTypedStateAndClosedHandlesTakeNone) {
  g_late_refused = false;
  struct Handler final : myriad::Handler {
    void on_open(myriad::Connection c) override {
      c.emplace_state<Session>("x");
      c.set_user(&marker);
      ok = g_alive.load() == 0 && c.user() == &marker && c.state<Session>() == nullptr;
      kept = c;
    }
    void on_data(myriad::Connection, myriad::Chunk) override {}
    void on_close(myriad::Connection c, CloseReason, int) override {
      // After on_close the handle is stale: nothing can be attached to it.
      c.shard().post(
          [c]() mutable { g_late_refused = c.emplace_state<Session>("late") == nullptr; });
    }
    int marker = 0;
    std::atomic<bool> ok{false};
    myriad::Connection kept;
  } handler;
  test::Server server(config(), handler);
  {
    test::Socket a = server.connect();
    ASSERT_TRUE(test::eventually([&] { return handler.ok.load(); }));
  }
  ASSERT_TRUE(test::eventually([&] { return g_late_refused.load(); }));
  EXPECT_EQ(g_alive.load(), 0);
}

TEST_P(StateTest, StateOnWorkersLivesUntilOnCloseRanThere) {
  Sessions handler;
  myriad::Config cfg = config();
  cfg.workers = 2;
  cfg.handlers_on_workers = true;
  {
    test::Server server(cfg, handler);
    std::vector<test::Socket> clients;
    for (int i = 0; i < 20; ++i) clients.push_back(server.connect());
    ASSERT_TRUE(test::eventually([&] { return handler.open.size() == 20; }));
    for (auto& c : clients) ASSERT_TRUE(c.send_all("abc"));
    for (auto& c : clients) EXPECT_EQ(c.read_n(2), "3\n");
    clients.clear();
    ASSERT_TRUE(test::eventually([&] { return handler.open.size() == 0; }));
    ASSERT_TRUE(test::eventually([&] { return g_alive.load() == 0; }));
  }
  EXPECT_FALSE(handler.wrong);
  std::lock_guard lock(handler.mutex);
  ASSERT_EQ(handler.names_at_close.size(), 20u);
  for (const auto& name : handler.names_at_close) EXPECT_EQ(name.rfind("guest-", 0), 0u) << name;
}

TEST_P(StateTest, StateOnWorkersIsStillThereForShutdownsOnClose) {
  Sessions handler;
  myriad::Config cfg = config();
  cfg.workers = 2;
  cfg.handlers_on_workers = true;
  {
    test::Server server(cfg, handler);
    std::vector<test::Socket> clients;
    for (int i = 0; i < 6; ++i) clients.push_back(server.connect());
    ASSERT_TRUE(test::eventually([&] { return g_alive.load() == 6; }));
    server.stop();  // idle connections hear on_close(kShutdown) from the shard itself
  }
  EXPECT_EQ(g_alive.load(), 0);
  std::lock_guard lock(handler.mutex);
  ASSERT_EQ(handler.names_at_close.size(), 6u);
  for (const auto& name : handler.names_at_close) EXPECT_EQ(name.rfind("guest-", 0), 0u) << name;
}

TEST_P(StateTest, ConnectionsHashAsKeys) {
  Sessions handler;
  myriad::Config cfg = config();
  test::Server server(cfg, handler);
  std::vector<test::Socket> clients;
  for (int i = 0; i < 100; ++i) clients.push_back(server.connect());
  ASSERT_TRUE(test::eventually([&] { return handler.open.size() == 100; }));
  std::vector<myriad::Connection> open = handler.open.snapshot();
  std::unordered_set<myriad::Connection> set(open.begin(), open.end());
  EXPECT_EQ(set.size(), 100u);
  for (myriad::Connection c : open) {
    myriad::Connection copy = c;
    EXPECT_EQ(std::hash<myriad::Connection>{}(copy), std::hash<myriad::Connection>{}(c));
    EXPECT_EQ(set.count(copy), 1u);
  }
  EXPECT_EQ(set.count(myriad::Connection()), 0u);
  // Ids are dense per shard: the hashes still spread (no two of the 100 collide here).
  std::unordered_set<std::size_t> hashes;
  for (myriad::Connection c : open) hashes.insert(std::hash<myriad::Connection>{}(c));
  EXPECT_EQ(hashes.size(), 100u);
}

TEST_P(StateTest, ActionsFromAnotherThreadArePostedToTheShard) {
  Sessions handler;
  test::Server server(config(), handler);
  test::Socket a = server.connect();
  ASSERT_TRUE(test::eventually([&] { return handler.open.size() == 1; }));
  test::Socket b = server.connect();
  ASSERT_TRUE(test::eventually([&] { return handler.open.size() == 2; }));
  std::vector<myriad::Connection> open = handler.open.snapshot();
  // From the test thread: sends, a shutdown and a close all reach their shard, in order.
  EXPECT_TRUE(open[0].send(std::string_view("one ")));
  EXPECT_TRUE(open[0].send(std::string_view("two")));
  open[0].shutdown_write();
  std::string got;
  EXPECT_TRUE(a.read_to_eof(got));
  EXPECT_EQ(got, "one two");
  open[1].close();
  EXPECT_TRUE(b.closed_by_peer());
}

TEST_P(StateTest, ReadsFromAnotherThreadAbortInDebugBuilds) {
#ifdef NDEBUG
  GTEST_SKIP() << "the thread checks are compiled out in builds with NDEBUG (release)";
#else
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Sessions handler;
        test::Server server(config(), handler);
        test::Socket a = server.connect();
        if (!test::eventually([&] { return handler.open.size() == 1; })) std::exit(0);
        (void)handler.open.snapshot()[0].queued();  // from the test thread
        std::exit(0);
      },
      "Connection::queued\\(\\) called off the connection's shard thread");
#endif
}

MYRIAD_CONFORMANCE_SUITE(StateTest);

}  // namespace
