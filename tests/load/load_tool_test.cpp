// myriad-load as a user runs it: against the real server, and against servers that misbehave
// on purpose, to show that what it reports can be trusted.
#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <sstream>
#include <thread>

#include "client.hpp"
#include "process.hpp"

namespace {

using namespace std::chrono_literals;

struct Files {
  std::string dir;
  Files() {
    char tmpl[] = "/tmp/myriad-load-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~Files() { std::system(("rm -rf " + dir).c_str()); }
  std::string path(const std::string& name) const { return dir + "/" + name; }
};

class RealServer {
 public:
  explicit RealServer(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {MYRIAD_SERVER_BIN, "--listen", "127.0.0.1:0", "--shards", "1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process_ = std::make_unique<test::Process>(argv);
    std::string line = process_->read_line();
    std::size_t on = line.find(" on ");
    if (on == std::string::npos)
      throw std::runtime_error("server did not start: " + process_->err());
    address_ = line.substr(on + 4, line.find(' ', on + 4) - on - 4);
  }
  const std::string& address() const { return address_; }
  pid_t pid() const { return process_->pid(); }
  // Stops it and returns its final counters line.
  std::string stop() {
    process_->signal(SIGTERM);
    process_->wait();
    std::size_t at = process_->out().find("stopped: ");
    return at == std::string::npos ? "" : process_->out().substr(at);
  }

 private:
  std::unique_ptr<test::Process> process_;
  std::string address_;
};

test::Process run_load(std::vector<std::string> args) {
  std::vector<std::string> argv = {MYRIAD_LOAD_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--quiet");
  return test::Process(argv);
}

TEST(LoadTool, HoldOpensAndVerifiesEveryConnection) {
  RealServer server;
  Files files;
  test::Process load = run_load({"hold", "--target", server.address(), "--connections", "3000",
                                 "--duration", "200ms", "--server-pid",
                                 std::to_string(server.pid()), "--json", files.path("hold.json")});
  ASSERT_EQ(load.wait(), 0) << load.out() << load.err();
  std::string json = test::read_file(files.path("hold.json"));
  EXPECT_EQ(test::json_number(json, "established"), 3000);
  EXPECT_EQ(test::json_number(json, "verified"), 3000);
  EXPECT_GT(test::json_number(json, "server_rss_after_bytes"), 0);
  std::string counters = server.stop();
  EXPECT_EQ(test::field(counters, "accepted"), 3000);
}

TEST(LoadTool, EchoCountsAgreeWithTheServersOwnCounters) {
  RealServer server;
  Files files;
  test::Process load = run_load({"echo", "--target", server.address(), "--connections", "50",
                                 "--depth", "4", "--size", "300", "--duration", "1s", "--warmup",
                                 "200ms", "--json", files.path("e.json")});
  ASSERT_EQ(load.wait(), 0) << load.out() << load.err();
  std::string json = test::read_file(files.path("e.json"));
  double sent = test::json_number(json, "bytes_sent");
  double received = test::json_number(json, "bytes_received");
  ASSERT_GT(sent, 0);
  std::string counters = server.stop();
  double in = static_cast<double>(test::field(counters, "bytes_in"));
  double out = static_cast<double>(test::field(counters, "bytes_out"));
  EXPECT_NEAR(in, sent, sent * 0.01) << counters;
  EXPECT_NEAR(out, received, received * 0.01) << counters;
  EXPECT_EQ(test::json_number(json, "corrupt"), 0);
  EXPECT_GT(test::json_number(json, "messages"), 0);
}

// The server's user + system CPU time in clock ticks, from /proc/PID/stat.
long cpu_ticks(pid_t pid) {
  std::string stat = test::read_file("/proc/" + std::to_string(pid) + "/stat");
  std::size_t at = stat.rfind(')');
  std::istringstream fields(stat.substr(at + 2));
  std::string skip;
  for (int i = 3; i < 14; ++i) fields >> skip;  // state .. cmajflt: fields 3 to 13
  long user = 0, system = 0;
  fields >> user >> system;
  return user + system;
}

// After a burst of traffic the server must go back to sleep, also while it holds idle
// connections on several rings: a loop that believes a stale "work pending" flag enters the
// kernel for nothing every turn and burns a CPU while nothing happens (the kernel can leave
// IORING_SQ_TASKRUN set over an empty work list when work is queued from another CPU just as
// the shard runs it). The conditions that made it show: server and load on different CPUs,
// RLIMIT_NOFILE lowered so that the io_uring backend spreads 3,000 idle connections over
// several rings, bursts of connections opening, echoing and closing. Asserted as CPU time over
// an idle second (a sleeping server uses about none of it, a spinning one all of it). The race
// is one of timing: before the fix this procedure caught it in about one run in three on a
// 2-CPU machine, so a pass here is evidence, not proof; the spin, once it starts, never stops.
class IdleServer : public ::testing::TestWithParam<const char*> {};

TEST_P(IdleServer, SleepsOnceTheTrafficStops) {
  bool uring = std::string(GetParam()) == "uring";
  bool pin = ::sysconf(_SC_NPROCESSORS_ONLN) >= 2;
  std::vector<std::string> argv = {"/usr/bin/prlimit",
                                   uring ? "--nofile=1024" : "--nofile=4096",
                                   MYRIAD_SERVER_BIN,
                                   "--listen",
                                   "127.0.0.1:0",
                                   "--shards",
                                   "1",
                                   "--backend",
                                   GetParam()};
  if (pin) argv.insert(argv.end(), {"--cpu", "0"});
  test::Process server(argv);
  std::string line = server.read_line();
  std::size_t on = line.find(" on ");
  ASSERT_NE(on, std::string::npos) << server.err();
  std::string address = line.substr(on + 4, line.find(' ', on + 4) - on - 4);
  std::vector<std::string> cpu;
  if (pin) cpu = {"--cpu", "1"};
  auto load_args = [&](std::vector<std::string> args) {
    args.insert(args.end(), cpu.begin(), cpu.end());
    return args;
  };
  // Connect rates kept low: with 1,024-slot rings a ring keeps 256 slots free for accepts in
  // flight, and a burst faster than the shard can move its accept on (ASan builds are slow)
  // would fill a ring, whose kernel then closes the connections it cannot place.
  test::Process hold =
      run_load(load_args({"hold", "--target", address, "--connections", uring ? "3000" : "1000",
                          "--connect-rate", "3000", "--duration", "60s"}));
  long ticks_per_s = ::sysconf(_SC_CLK_TCK);
  for (int burst = 0; burst < 6; ++burst) {
    test::Process load =
        run_load(load_args({"echo", "--target", address, "--connections", "500", "--depth", "1",
                            "--connect-rate", "3000", "--duration", "500ms", "--warmup", "100ms"}));
    ASSERT_EQ(load.wait(), 0) << load.out() << load.err();
    std::this_thread::sleep_for(300ms);  // the closes are done
    long before = cpu_ticks(server.pid());
    std::this_thread::sleep_for(1s);
    long used = cpu_ticks(server.pid()) - before;
    ASSERT_LT(used, ticks_per_s / 5) << "burst " << burst << ": the idle server used " << used
                                     << " of " << ticks_per_s << " ticks in one second";
  }
  hold.signal(SIGINT);  // ends the hold early; it still verifies every idle connection
  EXPECT_EQ(hold.wait(), 130) << hold.out() << hold.err();
  EXPECT_NE(
      hold.out().find("verified alive: " + std::string(uring ? "3,000/3,000" : "1,000/1,000")),
      std::string::npos)
      << hold.out();
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(), 0) << server.err();
}

INSTANTIATE_TEST_SUITE_P(Backends, IdleServer, ::testing::Values("uring", "epoll"),
                         [](const auto& info) { return std::string(info.param); });

TEST(LoadTool, ASignalEndsTheHoldEarlyAndStillVerifiesAndReports) {
  RealServer server;
  Files files;
  test::Process load = run_load({"hold", "--target", server.address(), "--connections", "500",
                                 "--duration", "120s", "--json", files.path("hold.json")});
  // 500 connections take milliseconds to open; then interrupt the two-minute hold.
  std::this_thread::sleep_for(2s);
  auto t0 = std::chrono::steady_clock::now();
  load.signal(SIGINT);
  EXPECT_EQ(load.wait(60s), 130) << load.out() << load.err();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 60s);  // it did not sit out the two minutes
  EXPECT_NE(load.out().find("INTERRUPTED"), std::string::npos) << load.out();
  std::string json = test::read_file(files.path("hold.json"));
  EXPECT_EQ(test::json_number(json, "interrupted"), 1);
  EXPECT_EQ(test::json_number(json, "established"), 500);
  EXPECT_EQ(test::json_number(json, "verified"), 500);
}

TEST(LoadTool, EchoRunsOnTheEpollBackendToo) {
  RealServer server({"--backend", "epoll"});
  test::Process load =
      run_load({"echo", "--backend", "epoll", "--target", server.address(), "--connections", "20",
                "--duration", "300ms", "--warmup", "100ms"});
  EXPECT_EQ(load.wait(), 0) << load.out() << load.err();
  server.stop();
}

TEST(LoadTool, RateModeKeepsItsSchedule) {
  RealServer server;
  Files files;
  test::Process load =
      run_load({"rate", "--target", server.address(), "--connections", "20", "--rate", "2000",
                "--duration", "1s", "--warmup", "200ms", "--json", files.path("r.json")});
  ASSERT_EQ(load.wait(), 0) << load.out() << load.err();
  std::string json = test::read_file(files.path("r.json"));
  // The schedule sends rate x time whatever the server does: at least warm-up plus window.
  EXPECT_GE(test::json_number(json, "messages_sent"), 0.95 * 2000 * 1.2);
  EXPECT_GT(test::json_number(json, "messages"), 0);
  server.stop();
}

// Echoes, but corrupts or drops bytes on purpose.
class Faulty final : public myriad::Handler {
 public:
  enum Kind { kFlip, kDrop };
  explicit Faulty(Kind kind) : kind_(kind) {}
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    if (++seen_ % 200 == 0) {
      if (kind_ == kDrop) return;  // the chunk is released, never echoed
      std::string copy(data.view());
      copy[copy.size() / 2] ^= 0x40;
      c.send(copy);
      return;
    }
    c.send(std::move(data));
  }

 private:
  Kind kind_;
  std::atomic<uint64_t> seen_{0};
};

void expect_load_catches(Faulty::Kind kind, const char* figure) {
  Faulty faulty(kind);
  myriad::Config cfg;
  cfg.shards = 1;
  cfg.buffer_pool_bytes = 4 << 20;
  test::Server server(cfg, faulty);
  Files files;
  test::Process load =
      run_load({"echo", "--target", server.address().to_string(), "--connections", "10",
                "--duration", "500ms", "--warmup", "100ms", "--json", files.path("f.json")});
  EXPECT_EQ(load.wait(), 1) << "a faulty server must make myriad-load fail\n" << load.out();
  std::string json = test::read_file(files.path("f.json"));
  EXPECT_GT(test::json_number(json, figure), 0) << json;
}

TEST(LoadTool, CatchesAServerThatCorruptsAByte) {
  expect_load_catches(Faulty::kFlip, "corrupt");
}

// With one message in flight per connection, a dropped one never comes back: counted as lost.
TEST(LoadTool, CatchesAServerThatDropsAMessage) {
  expect_load_catches(Faulty::kDrop, "lost_messages");
}

TEST(LoadTool, HoldCountsRefusedConnections) {
  // A port that was just bound and released: nothing listens there.
  myriad::Address dead = [] {
    class Idle final : public myriad::Handler {
      void on_data(myriad::Connection, myriad::Chunk) override {}
    } idle;
    myriad::Config cfg;
    cfg.shards = 1;
    cfg.buffer_pool_bytes = 1 << 20;
    test::Server s(cfg, idle);
    return s.address();
  }();
  Files files;
  test::Process load =
      run_load({"hold", "--target", dead.to_string(), "--connections", "50", "--duration", "100ms",
                "--ramp-timeout", "10s", "--json", files.path("x.json")});
  EXPECT_EQ(load.wait(), 1);
  std::string json = test::read_file(files.path("x.json"));
  EXPECT_EQ(test::json_number(json, "established"), 0);
  EXPECT_NE(json.find("\"refused\": 50"), std::string::npos) << json;
}

TEST(LoadTool, HoldCountsConnectionsTheServerResets) {
  class Resetter final : public myriad::Handler {
    void on_open(myriad::Connection c) override {
      if (c.id() % 2 == 0) c.abort();
    }
    void on_data(myriad::Connection c, myriad::Chunk d) override { c.send(std::move(d)); }
  } resetter;
  myriad::Config cfg;
  cfg.shards = 1;
  cfg.buffer_pool_bytes = 4 << 20;
  test::Server server(cfg, resetter);
  Files files;
  test::Process load = run_load({"hold", "--target", server.address().to_string(), "--connections",
                                 "100", "--duration", "300ms", "--json", files.path("r.json")});
  EXPECT_EQ(load.wait(), 1);
  std::string json = test::read_file(files.path("r.json"));
  EXPECT_LT(test::json_number(json, "verified"), 100) << json;
  EXPECT_EQ(json.find("\"closed_while_held\": 0,"), std::string::npos)
      << "resets went uncounted: " << json;
}

}  // namespace
