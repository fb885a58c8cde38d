// myriad-load as a user runs it: against the real server, and against servers that misbehave
// on purpose, to show that what it reports can be trusted. Every run's exit status is checked,
// and its JSON report must exist and parse: a crash before the report never passes.
#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
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

// myriad-server on a free port, one shard, printing its counters every 50 ms.
test::ChildServer real_server(std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {MYRIAD_SERVER_BIN, "--listen", "127.0.0.1:0", "--shards", "1",
                                   "--stats",         "50ms"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return test::ChildServer(argv);
}

test::Process run_load(std::vector<std::string> args) {
  std::vector<std::string> argv = {MYRIAD_LOAD_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--quiet");
  return test::Process(argv);
}

double number(const nlohmann::json& json, const char* key) {
  return json.at(key).get<double>();  // throws (the test fails) when absent
}

TEST(LoadTool, HoldOpensAndVerifiesEveryConnection) {
  test::ChildServer server = real_server();
  Files files;
  test::Process load = run_load({"hold", "--target", server.address(), "--connections", "3000",
                                 "--duration", "200ms", "--server-pid",
                                 std::to_string(server.pid()), "--json", files.path("hold.json")});
  ASSERT_EQ(load.wait(), 0) << load.out() << load.err();
  nlohmann::json json = test::read_json(files.path("hold.json"));
  EXPECT_EQ(number(json, "established"), 3000);
  EXPECT_EQ(number(json, "verified"), 3000);
  EXPECT_EQ(number(json, "ok"), 1);
  EXPECT_GT(number(json, "server_rss_after_bytes"), 0);
  EXPECT_EQ(server.stop(), 0);
  EXPECT_EQ(test::field(server.stopped(), "accepted"), 3000) << server.stopped();
}

TEST(LoadTool, EchoCountsAgreeWithTheServersOwnCounters) {
  test::ChildServer server = real_server();
  Files files;
  test::Process load = run_load({"echo", "--target", server.address(), "--connections", "50",
                                 "--depth", "4", "--size", "300", "--duration", "1s", "--warmup",
                                 "200ms", "--json", files.path("e.json")});
  ASSERT_EQ(load.wait(), 0) << load.out() << load.err();
  nlohmann::json json = test::read_json(files.path("e.json"));
  double sent = number(json, "bytes_sent");
  double received = number(json, "bytes_received");
  ASSERT_GT(sent, 0);
  EXPECT_EQ(server.stop(), 0);
  std::string counters = server.stopped();
  double in = static_cast<double>(test::field(counters, "bytes_in"));
  double out = static_cast<double>(test::field(counters, "bytes_out"));
  // Every message came back before the report (lost_messages is 0), so the counts are exact.
  EXPECT_EQ(number(json, "lost_messages"), 0);
  EXPECT_EQ(in, sent) << counters;
  EXPECT_EQ(out, received) << counters;
  EXPECT_EQ(received, sent);
  EXPECT_EQ(number(json, "corrupt"), 0);
  EXPECT_GT(number(json, "messages"), 0);
}

TEST(LoadTool, ASignalEndsTheHoldEarlyAndStillVerifiesAndReports) {
  test::ChildServer server = real_server();
  Files files;
  test::Process load = run_load({"hold", "--target", server.address(), "--connections", "500",
                                 "--duration", "120s", "--json", files.path("hold.json")});
  // Once the server holds all 500, interrupt the two-minute hold.
  ASSERT_NE(
      server.wait_for_stats([](const std::string& s) { return test::field(s, "open") == 500; }), "")
      << load.out() << load.err();
  load.signal(SIGINT);
  // 130 (interrupted), not 137: wait() kills what is still running after 60 s, so an exit code
  // of 130 means it did not sit out the two minutes.
  EXPECT_EQ(load.wait(60s), 130) << load.out() << load.err();
  EXPECT_NE(load.out().find("INTERRUPTED"), std::string::npos) << load.out();
  nlohmann::json json = test::read_json(files.path("hold.json"));
  EXPECT_EQ(number(json, "interrupted"), 1);
  EXPECT_EQ(number(json, "established"), 500);
  EXPECT_EQ(number(json, "verified"), 500);
  EXPECT_EQ(server.stop(), 0);
}

TEST(LoadTool, EchoRunsOnTheEpollBackendToo) {
  test::ChildServer server = real_server({"--backend", "epoll"});
  EXPECT_NE(server.startup_line().find("| epoll ("), std::string::npos)
      << "the server does not run on epoll: " << server.startup_line();
  Files files;
  test::Process load =
      run_load({"echo", "--backend", "epoll", "--target", server.address(), "--connections", "20",
                "--duration", "300ms", "--warmup", "100ms", "--json", files.path("e.json")});
  EXPECT_EQ(load.wait(), 0) << load.out() << load.err();
  nlohmann::json json = test::read_json(files.path("e.json"));
  EXPECT_EQ(json.at("backend").get<std::string>(), "epoll") << "myriad-load did not run on epoll";
  EXPECT_GT(number(json, "messages"), 0);
  EXPECT_EQ(number(json, "corrupt"), 0);
  EXPECT_EQ(server.stop(), 0);
  EXPECT_GT(test::field(server.stopped(), "bytes_in"), 0);
}

// In rate mode the schedule, not the server, decides when messages go: about rate x time of
// them, however the run goes, and a send that goes out late is still sent and is counted as
// late. The generator is stopped (SIGSTOP) for a while during the traffic, so every message
// due meanwhile goes out more than 1 ms late; the test asserts that those were sent and
// counted, rather than hoping the machine is quiet enough for no send to be late.
TEST(LoadTool, RateModeSendsWhatItsScheduleSaysAndCountsLateSends) {
  Files files;
  class Echo final : public myriad::Handler {
    void on_data(myriad::Connection c, myriad::Chunk data) override { c.send(std::move(data)); }
  } echo;
  myriad::Config cfg;
  cfg.shards = 1;
  cfg.buffer_pool_bytes = 4 << 20;
  test::Server server(cfg, echo);
  constexpr double kRate = 2000;
  constexpr auto kStopped = 300ms;
  test::Process load = run_load({"rate", "--target", server.address().to_string(), "--connections",
                                 "20", "--rate", "2000", "--shards", "1", "--duration", "2s",
                                 "--warmup", "200ms", "--json", files.path("r.json")});
  // The traffic has begun once the server sees bytes; then the generator stops for a while.
  ASSERT_TRUE(test::eventually([&] { return server.counters().bytes_in > 0; }));
  load.signal(SIGSTOP);
  std::this_thread::sleep_for(kStopped);  // the condition under test, not a synchronisation
  load.signal(SIGCONT);
  ASSERT_EQ(load.wait(), 0) << load.out() << load.err();
  nlohmann::json json = test::read_json(files.path("r.json"));
  double sent = number(json, "messages_sent");
  double window = number(json, "duration_s") + number(json, "warmup_s");
  // The schedule sends rate x time: it neither skipped what fell due while stopped, nor sent
  // more than was due (the slack is the time between the start of traffic and the window).
  EXPECT_GE(sent, 0.95 * kRate * window) << json.dump();
  EXPECT_LE(sent, 1.10 * kRate * window + 20) << json.dump();
  // Everything due in the stop but its last millisecond was sent more than 1 ms late.
  double due_while_stopped = kRate * std::chrono::duration<double>(kStopped - 2ms).count();
  EXPECT_GE(number(json, "late_sends"), due_while_stopped) << json.dump();
  EXPECT_LE(number(json, "late_sends"), sent);
  const double stopped_us = std::chrono::duration<double, std::micro>(kStopped - 2ms).count();
  EXPECT_GE(number(json, "max_lag_us"), stopped_us) << json.dump();
  EXPECT_EQ(number(json, "lost_messages"), 0);
  EXPECT_GT(number(json, "messages"), 0);
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
  nlohmann::json json = test::read_json(files.path("f.json"));
  EXPECT_GT(number(json, figure), 0) << json.dump();
  EXPECT_EQ(number(json, "ok"), 0) << json.dump();
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
  EXPECT_EQ(load.wait(), 1) << load.out() << load.err();
  nlohmann::json json = test::read_json(files.path("x.json"));
  EXPECT_EQ(number(json, "established"), 0);
  EXPECT_EQ(json.at("failed").at("refused").get<double>(), 50) << json.dump();
  EXPECT_EQ(number(json, "ok"), 0);
}

TEST(LoadTool, HoldCountsConnectionsTheServerResets) {
  class Resetter final : public myriad::Handler {
   public:
    void on_open(myriad::Connection c) override {
      if (c.id() % 2 == 0) {
        ++aborted;
        c.abort();
      }
    }
    void on_data(myriad::Connection c, myriad::Chunk d) override { c.send(std::move(d)); }
    std::atomic<int> aborted{0};
  } resetter;
  myriad::Config cfg;
  cfg.shards = 1;
  cfg.buffer_pool_bytes = 4 << 20;
  test::Server server(cfg, resetter);
  Files files;
  test::Process load = run_load({"hold", "--target", server.address().to_string(), "--connections",
                                 "100", "--duration", "300ms", "--json", files.path("r.json")});
  EXPECT_EQ(load.wait(), 1) << load.out() << load.err();
  nlohmann::json json = test::read_json(files.path("r.json"));
  ASSERT_GT(resetter.aborted.load(), 0);
  const nlohmann::json& failed = json.at("failed");
  double resets_seen = failed.at("closed_while_held").get<double>() +
                       failed.at("reset").get<double>() + failed.at("verify").get<double>();
  EXPECT_GT(resets_seen, 0) << "resets went uncounted: " << json.dump();
  EXPECT_LE(number(json, "verified"), 100 - resetter.aborted.load()) << json.dump();
  EXPECT_EQ(number(json, "ok"), 0);
}

}  // namespace
