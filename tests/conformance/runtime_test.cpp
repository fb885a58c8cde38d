// The runtime's options, on every backend: one handler per shard from a factory, IPv6,
// pinning shards to CPUs, and (epoll) the cap on accepts per loop turn.
#include <myriad/myriad.hpp>

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <vector>

#include "client.hpp"
#include "gate.hpp"

namespace {

using namespace std::chrono_literals;
using test::BackendTest;

class RuntimeTest : public BackendTest {};

// Echoes, prefixing nothing, but remembers which shard made it and which shards called it.
class ShardEcho final : public myriad::Handler {
 public:
  ShardEcho(myriad::Shard& made_for, std::atomic<int>& alive, std::atomic<bool>& wrong)
      : made_for_(made_for), alive_(alive), wrong_(wrong) {
    ++alive_;
  }
  ~ShardEcho() override { --alive_; }
  void on_open(myriad::Connection c) override { check(c); }
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    check(c);
    c.send(std::move(data));
  }

 private:
  void check(myriad::Connection c) {
    if (&c.shard() != &made_for_ || myriad::Shard::current() != &made_for_) wrong_ = true;
  }
  myriad::Shard& made_for_;
  std::atomic<int>& alive_;
  std::atomic<bool>& wrong_;
};

TEST_P(RuntimeTest, AHandlerFactoryMakesOneHandlerPerShardOnThatShardsThread) {
  std::atomic<int> alive{0};
  std::atomic<bool> wrong{false};
  std::mutex mutex;
  std::set<unsigned> made_for;
  bool made_elsewhere = false;
  myriad::Config cfg = config();
  cfg.shards = 3;
  {
    test::Server server(cfg, [&](myriad::Shard& shard) -> std::unique_ptr<myriad::Handler> {
      std::lock_guard lock(mutex);
      if (myriad::Shard::current() != &shard) made_elsewhere = true;
      made_for.insert(shard.index());
      return std::make_unique<ShardEcho>(shard, alive, wrong);
    });
    std::vector<test::EchoPeer> peers(30);  // SO_REUSEPORT spreads them over the shards
    for (std::size_t i = 0; i < peers.size(); ++i) {
      peers[i].socket = server.connect();
      peers[i].out = test::random_bytes(5000, 200 + i);
    }
    test::run_echo(peers);
    EXPECT_EQ(alive.load(), 3);
    std::lock_guard lock(mutex);
    EXPECT_EQ(made_for, (std::set<unsigned>{0, 1, 2}));
    EXPECT_FALSE(made_elsewhere) << "the factory ran on another thread than its shard's";
  }
  EXPECT_EQ(alive.load(), 0) << "the runtime did not destroy the handlers it owns";
  EXPECT_FALSE(wrong) << "a connection was handled by another shard's handler";
}

TEST_P(RuntimeTest, ServesAndConnectsOverIPv6) {
  class Echo final : public myriad::Handler {
    void on_data(myriad::Connection c, myriad::Chunk data) override { c.send(std::move(data)); }
  } echo;
  test::Server server(config(), echo, "[::1]:0");
  EXPECT_EQ(server.address().family(), AF_INET6);
  EXPECT_EQ(server.address().to_string().rfind("[::1]:", 0), 0u) << server.address().to_string();
  std::vector<test::EchoPeer> peers(8);
  for (std::size_t i = 0; i < peers.size(); ++i) {
    peers[i].socket = server.connect();
    peers[i].out = test::random_bytes(100000, 300 + i);
  }
  test::run_echo(peers);
  // And outbound, from another runtime on the same backend.
  class Once final : public myriad::Handler {
   public:
    void on_open(myriad::Connection c) override { c.send(std::string_view("v6")); }
    void on_data(myriad::Connection c, myriad::Chunk data) override {
      std::lock_guard lock(mutex);
      got.append(data.view());
      if (got.size() == 2) c.close();
    }
    void on_close(myriad::Connection, myriad::CloseReason r, int) override {
      std::lock_guard lock(mutex);
      reason = r;
      closed = true;
    }
    std::mutex mutex;
    std::string got;
    bool closed = false;
    myriad::CloseReason reason{};
  } client;
  myriad::Config cfg = config();
  cfg.shards = 1;
  myriad::Runtime client_rt(cfg);
  client_rt.start();
  client_rt.shard(0).connect(server.address(), client);
  ASSERT_TRUE(test::eventually([&] {
    std::lock_guard lock(client.mutex);
    return client.closed;
  }));
  std::lock_guard lock(client.mutex);
  EXPECT_EQ(client.got, "v6");
  EXPECT_EQ(client.reason, myriad::CloseReason::kLocal);
}

// The CPUs the calling thread may run on.
std::set<int> my_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::set<int> cpus;
  if (pthread_getaffinity_np(pthread_self(), sizeof(set), &set) != 0) return cpus;
  for (int i = 0; i < CPU_SETSIZE; ++i) {
    if (CPU_ISSET(i, &set)) cpus.insert(i);
  }
  return cpus;
}

TEST_P(RuntimeTest, FirstCpuPinsShardIToCpuFirstPlusI) {
  long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  std::set<int> allowed = my_cpus();
  ASSERT_FALSE(allowed.empty());
  class Idle final : public myriad::Handler {
    void on_data(myriad::Connection, myriad::Chunk) override {}
  } idle;
  for (int first_cpu : {-1, 0, 1}) {
    myriad::Config cfg = config();
    cfg.shards = 3;
    cfg.first_cpu = first_cpu;
    test::Server server(cfg, idle);
    std::mutex mutex;
    std::vector<std::set<int>> seen(3);
    std::atomic<int> done{0};
    for (unsigned i = 0; i < 3; ++i) {
      server.runtime().shard(i).post([&, i] {
        std::lock_guard lock(mutex);
        seen[i] = my_cpus();
        ++done;
      });
    }
    ASSERT_TRUE(test::eventually([&] { return done == 3; }));
    std::lock_guard lock(mutex);
    for (unsigned i = 0; i < 3; ++i) {
      if (first_cpu < 0) {
        EXPECT_EQ(seen[i], allowed) << "without first_cpu a shard keeps the process's CPUs";
        continue;
      }
      int want = static_cast<int>((first_cpu + i) % online);
      EXPECT_EQ(seen[i], std::set<int>{want}) << "first_cpu " << first_cpu << ", shard " << i;
    }
  }
}

// Records, in order, each connection opened and each receive of the one marked "probe".
class AcceptOrder final : public myriad::Handler {
 public:
  void on_open(myriad::Connection) override {
    std::lock_guard lock(mutex);
    events.push_back('o');
  }
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    {
      std::lock_guard lock(mutex);
      if (data.view().find("probe") != std::string_view::npos) events.push_back('d');
    }
    c.send(std::move(data));
  }
  std::mutex mutex;
  std::string events;
};

// A burst queued while the shard was busy: the backlog holds far more than accepts_per_turn.
// Every connection is accepted (the rest follow in later turns, without a new wakeup), and
// with epoll, where the cap applies, a connection that was readable all along is served after
// at most accepts_per_turn of them, not after the whole burst.
TEST_P(RuntimeTest, AcceptsPerTurnCapsEachTurnAndTheBacklogStillDrains) {
  AcceptOrder handler;
  myriad::Config cfg = config();
  cfg.shards = 1;
  cfg.accepts_per_turn = 4;
  test::Server server(cfg, handler);
  test::Socket probe = server.connect();
  ASSERT_TRUE(test::eventually([&] { return server.counters().accepted == 1; }));
  test::Gate gate;
  test::OpenOnExit open_on_exit(gate);
  server.runtime().shard(0).post([&] { gate.wait(); });  // the shard is busy elsewhere
  ASSERT_TRUE(test::eventually([&] { return gate.waiting() == 1; }));
  constexpr int kBurst = 100;
  std::vector<test::Socket> burst;
  for (int i = 0; i < kBurst; ++i) burst.push_back(server.connect());
  ASSERT_TRUE(probe.send_all("probe"));
  gate.open();
  EXPECT_EQ(probe.read_n(5), "probe");
  for (auto& s : burst) {
    ASSERT_TRUE(s.send_all("x"));
    EXPECT_EQ(s.read_n(1), "x") << "a connection was left in the backlog";
  }
  EXPECT_EQ(server.counters().accepted, static_cast<uint64_t>(kBurst + 1));
  std::lock_guard lock(handler.mutex);
  std::size_t d = handler.events.find('d');
  ASSERT_NE(d, std::string::npos);
  std::size_t opened_before = static_cast<std::size_t>(
      std::count(handler.events.begin(), handler.events.begin() + static_cast<long>(d), 'o'));
  if (GetParam() == myriad::BackendKind::kEpoll) {
    EXPECT_LE(opened_before, 1 + cfg.accepts_per_turn)
        << "the readable connection waited behind the whole burst: " << handler.events;
  }
}

MYRIAD_CONFORMANCE_SUITE(RuntimeTest);

}  // namespace
