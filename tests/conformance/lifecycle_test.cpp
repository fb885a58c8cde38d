// The life of a connection on every backend: half-close, reset, idle timeout, max_connections,
// graceful shutdown.
#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "client.hpp"

namespace {

using namespace std::chrono_literals;
using myriad::CloseReason;
using test::BackendTest;

// Echoes, and records what happened to each connection, from any shard.
class Recorder : public myriad::Handler {
 public:
  void on_open(myriad::Connection) override { ++opened; }
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    received += data.size();
    c.send(std::move(data));
  }
  void on_peer_closed(myriad::Connection c) override {
    ++peer_closed;
    c.send(std::string_view("bye"));  // still allowed to send after the peer's FIN
    c.close();
  }
  void on_close(myriad::Connection, CloseReason reason, int) override {
    std::lock_guard lock(mutex);
    ++reasons[reason];
  }
  int count(CloseReason r) {
    std::lock_guard lock(mutex);
    return reasons[r];
  }
  std::atomic<int> opened{0};
  std::atomic<int> peer_closed{0};
  std::atomic<std::size_t> received{0};
  std::mutex mutex;
  std::map<CloseReason, int> reasons;
};

class LifecycleTest : public BackendTest {};

TEST_P(LifecycleTest, HalfCloseLetsTheServerFinishSendingThenClose) {
  Recorder rec;
  test::Server server(config(), rec);
  test::Socket s = server.connect();
  std::string payload = test::random_bytes(300000, 3);
  ASSERT_TRUE(s.send_all(payload));
  s.shutdown_write();
  std::string got;
  ASSERT_TRUE(s.read_to_eof(got)) << "the server never closed after our half-close";
  ASSERT_EQ(got.size(), payload.size() + 3);
  EXPECT_TRUE(got.compare(0, payload.size(), payload) == 0);
  EXPECT_EQ(got.substr(payload.size()), "bye") << "a send after the peer's FIN must still arrive";
  ASSERT_TRUE(test::eventually([&] { return rec.count(CloseReason::kPeerClosed) == 1; }));
  EXPECT_EQ(rec.peer_closed.load(), 1);
  EXPECT_EQ(server.counters().closed_peer, 1u);
}

TEST_P(LifecycleTest, DefaultHalfCloseFlushesEchoThenCloses) {
  class PlainEcho final : public myriad::Handler {
    void on_data(myriad::Connection c, myriad::Chunk d) override { c.send(std::move(d)); }
  } echo;
  test::Server server(config(), echo);
  test::Socket s = server.connect();
  std::string payload = test::random_bytes(100000, 4);
  ASSERT_TRUE(s.send_all(payload));
  s.shutdown_write();
  std::string got;
  ASSERT_TRUE(s.read_to_eof(got));
  EXPECT_TRUE(got == payload);
}

TEST_P(LifecycleTest, ClientResetMidStreamIsReportedAndHarmsNoOther) {
  Recorder rec;
  test::Server server(config(), rec);
  test::Socket bystander = server.connect();
  {
    test::Socket victim = server.connect(4096);
    // Keep the server sending into a socket that will vanish.
    ASSERT_TRUE(victim.send_all(test::random_bytes(2 << 20, 5)));
    victim.reset_hard();
  }
  ASSERT_TRUE(test::eventually([&] { return rec.count(CloseReason::kReset) == 1; }));
  EXPECT_EQ(server.counters().closed_reset, 1u);
  std::string ping = test::random_bytes(5000, 6);
  ASSERT_TRUE(bystander.send_all(ping));
  EXPECT_EQ(bystander.read_n(ping.size()), ping);
}

TEST_P(LifecycleTest, IdleTimeoutClosesIdleButNotActiveConnections) {
  Recorder rec;
  myriad::Config cfg = config();
  cfg.idle_timeout = 300ms;
  test::Server server(cfg, rec);
  test::Socket idle = server.connect();
  test::Socket active = server.connect();
  // The active one talks every 50 ms (a sixth of the timeout) until the idle one is gone.
  std::atomic<bool> stop{false};
  std::atomic<bool> active_failed{false};
  std::thread talker([&] {
    while (!stop) {
      if (!active.send_all("x") || active.read_n(1, 5s) != "x") active_failed = true;
      std::this_thread::sleep_for(50ms);  // the activity pattern under test
    }
  });
  bool idle_closed = idle.closed_by_peer(30s);
  // Keep the active one going past two more timeout periods, as the server's clock counts
  // them: a timer on each shard.
  std::atomic<int> periods_passed{0};
  for (unsigned i = 0; i < server.runtime().shard_count(); ++i) {
    myriad::Shard& shard = server.runtime().shard(i);
    shard.post([&] { shard.after(2 * cfg.idle_timeout, [&] { ++periods_passed; }); });
  }
  EXPECT_TRUE(test::eventually(
      [&] { return periods_passed == static_cast<int>(server.runtime().shard_count()); }, 30s));
  stop = true;
  talker.join();
  EXPECT_TRUE(idle_closed) << "the idle connection was never closed";
  EXPECT_FALSE(active_failed) << "the active connection was closed or stopped answering";
  EXPECT_EQ(server.counters().closed_idle, 1u);
  EXPECT_EQ(rec.count(CloseReason::kIdleTimeout), 1);
}

TEST_P(LifecycleTest, MaxConnectionsRejectsEachExtraConnectionOnceAndReusesFreedPlaces) {
  Recorder rec;
  myriad::Config cfg = config();
  cfg.max_connections = 20;
  test::Server server(cfg, rec);
  std::vector<test::Socket> kept;
  for (int i = 0; i < 20; ++i) kept.push_back(server.connect());
  ASSERT_TRUE(test::eventually([&] { return server.counters().open == 20; }));
  std::vector<test::Socket> extra;
  for (int i = 0; i < 10; ++i) extra.push_back(server.connect());
  for (auto& s : extra)
    EXPECT_TRUE(s.closed_by_peer()) << "a connection past max_connections stayed open";
  ASSERT_TRUE(test::eventually([&] { return server.counters().rejected == 10; }));
  EXPECT_EQ(rec.opened.load(), 20) << "rejected connections must never reach the handler";
  // Each was taken off the backlog and closed once: nothing is accepted again and again.
  myriad::Counters after_rejects = server.counters();
  EXPECT_EQ(after_rejects.accepted, 20u);
  EXPECT_EQ(after_rejects.accept_errors, 0u);
  EXPECT_EQ(after_rejects.open, 20u);
  // The kept ones still work, and a freed place is taken again.
  ASSERT_TRUE(kept[0].send_all("hello"));
  EXPECT_EQ(kept[0].read_n(5), "hello");
  kept.pop_back();
  ASSERT_TRUE(test::eventually([&] { return server.counters().open == 19; }));
  test::Socket again = server.connect();
  ASSERT_TRUE(again.send_all("again"));
  EXPECT_EQ(again.read_n(5), "again");
  myriad::Counters end = server.counters();
  EXPECT_EQ(end.rejected, 10u) << "the freed place was refused, or a rejected one came back";
  EXPECT_EQ(end.accepted, 21u);
}

// Sends a large reply on request; the client reads it only after shutdown has begun.
class Bulk final : public myriad::Handler {
 public:
  explicit Bulk(std::string reply) : reply_(std::move(reply)) {}
  void on_data(myriad::Connection c, myriad::Chunk) override {
    c.send(reply_);
    ++requests;
  }
  std::atomic<int> requests{0};

 private:
  std::string reply_;
};

TEST_P(LifecycleTest, GracefulShutdownDeliversAllPendingOutput) {
  std::string reply = test::random_bytes(6 << 20, 9);
  Bulk bulk(reply);
  myriad::Config cfg = config();
  cfg.max_write_queue = 16 << 20;
  cfg.drain_timeout = 30s;
  test::Server server(cfg, bulk);
  std::vector<test::Socket> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(server.connect(4096));
    ASSERT_TRUE(clients.back().send_all("go"));
  }
  test::Socket idle = server.connect();
  ASSERT_TRUE(test::eventually([&] { return bulk.requests == 4; }));
  // The idle connection must be accepted before shutdown, or it is reset from the backlog and
  // never counted.
  ASSERT_TRUE(test::eventually([&] { return server.counters().open == 5; }));
  ASSERT_GT(server.counters().queued_bytes, 0u)
      << "nothing was pending: the test would prove nothing";
  // Megabytes are still queued when shutdown starts; the clients read only now.
  std::thread stopper([&] { server.stop(); });
  for (auto& c : clients) {
    std::string got;
    EXPECT_TRUE(c.read_to_eof(got, 60s));
    EXPECT_EQ(got.size(), reply.size());
    EXPECT_TRUE(got == reply) << "pending output was lost or changed at shutdown";
  }
  EXPECT_TRUE(idle.closed_by_peer());
  stopper.join();
  myriad::Counters c = server.counters();
  EXPECT_EQ(c.open, 0u);
  EXPECT_EQ(c.closed_shutdown, 5u);
  EXPECT_EQ(c.buffers_in_use, 0u);
}

TEST_P(LifecycleTest, ShutdownPastTheDeadlineClosesEverything) {
  std::string reply = test::random_bytes(8 << 20, 10);
  Bulk bulk(reply);
  myriad::Config cfg = config();
  cfg.max_write_queue = 16 << 20;
  cfg.drain_timeout = 200ms;
  test::Server server(cfg, bulk);
  test::Socket never_reads = server.connect(4096);
  ASSERT_TRUE(never_reads.send_all("go"));
  ASSERT_TRUE(test::eventually([&] { return bulk.requests == 1; }));
  server.stop();  // returns although the client never reads: the deadline closes it
  EXPECT_EQ(server.counters().open, 0u);
  EXPECT_TRUE(never_reads.closed_by_peer());
}

TEST_P(LifecycleTest, RunServesOnTheCallingThreadUntilStopped) {
  Recorder rec;
  myriad::Runtime runtime(config());  // two shards: shard 0 here, shard 1 on its own thread
  myriad::Address at = runtime.listen(myriad::Address::parse("127.0.0.1:0"), rec);
  std::atomic<bool> started{false}, timer_fired{false}, returned{false};
  std::thread::id started_on;
  int started_as = -1;
  std::thread caller([&] {
    runtime.run([&] {
      started_on = std::this_thread::get_id();
      started_as = static_cast<int>(myriad::Shard::current()->index());
      myriad::Shard::current()->after(10ms, [&] { timer_fired = true; });
      started = true;
    });
    returned = true;
  });
  ASSERT_TRUE(test::eventually([&] { return started.load(); }));
  EXPECT_EQ(started_on, caller.get_id()) << "on_started must run on the thread that called run()";
  EXPECT_EQ(started_as, 0);
  std::vector<test::Socket> clients;
  for (int i = 0; i < 8; ++i) {  // SO_REUSEPORT spreads them: both shards serve
    clients.push_back(test::Socket::connect_to(at));
    std::string msg = "hello " + std::to_string(i);
    ASSERT_TRUE(clients.back().send_all(msg));
    EXPECT_EQ(clients.back().read_n(msg.size()), msg);
  }
  EXPECT_TRUE(test::eventually([&] { return timer_fired.load(); })) << "shard 0's timers must run";
  EXPECT_FALSE(returned.load()) << "run() returned before stop()";
  runtime.stop();
  caller.join();
  EXPECT_FALSE(runtime.running());
  for (auto& c : clients) EXPECT_TRUE(c.closed_by_peer());
  EXPECT_EQ(runtime.counters().closed_shutdown, 8u);
  EXPECT_EQ(runtime.counters().open, 0u);
}

TEST_P(LifecycleTest, RunRethrowsWhatOnStartedThrowsAfterShuttingDown) {
  Recorder rec;
  myriad::Runtime runtime(config());
  runtime.listen(myriad::Address::parse("127.0.0.1:0"), rec);
  EXPECT_THROW(runtime.run([] { throw std::runtime_error("on_started failed"); }),
               std::runtime_error);
  EXPECT_FALSE(runtime.running()) << "every shard must have finished when run() throws";
  EXPECT_THROW(runtime.start(), std::logic_error) << "a runtime runs once";
}

MYRIAD_CONFORMANCE_SUITE(LifecycleTest);

}  // namespace
