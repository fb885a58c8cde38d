// The real programs: myriad-server --protocol topics as a client sees it (including bad
// input), and myriad-load subscribe against it, and against a fan-out server that misbehaves on
// purpose, to show that what the load tool reports can be trusted.
#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include <signal.h>

#include <charconv>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "client.hpp"
#include "process.hpp"

namespace {

using namespace std::chrono_literals;

struct TempDir {
  std::string dir;
  TempDir() {
    char tmpl[] = "/tmp/myriad-topics-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + dir).c_str()); }
  std::string path(const std::string& name) const { return dir + "/" + name; }
};

class TopicsServer {
 public:
  explicit TopicsServer(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {MYRIAD_SERVER_BIN, "--protocol", "topics", "--listen",
                                     "0.0.0.0:0",       "--shards",   "2"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process_ = std::make_unique<test::Process>(argv);
    std::string line = process_->read_line();
    std::size_t on = line.find(" on ");
    if (on == std::string::npos) throw std::runtime_error("no start line: " + process_->err());
    std::string bound = line.substr(on + 4, line.find(' ', on + 4) - on - 4);
    port_ = bound.substr(bound.rfind(':') + 1);
  }
  std::string at(const std::string& host = "127.0.0.1") const { return host + ":" + port_; }
  myriad::Address address() const { return myriad::Address::parse(at()); }
  pid_t pid() const { return process_->pid(); }
  // Stops it; returns everything it printed.
  std::string stop() {
    process_->signal(SIGTERM);
    EXPECT_EQ(process_->wait(), 0);
    return process_->out();
  }

 private:
  std::unique_ptr<test::Process> process_;
  std::string port_;
};

test::Process run_load(std::vector<std::string> args) {
  std::vector<std::string> argv = {MYRIAD_LOAD_BIN, "subscribe"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--quiet");
  return test::Process(argv);
}

TEST(TopicsProtocol, SubscribePublishAndPingAsAClientSeesThem) {
  TopicsServer server;
  test::Socket sub = test::Socket::connect_to(server.address());
  ASSERT_TRUE(sub.send_all("SUB news\r\nPING\n"));
  EXPECT_EQ(sub.read_n(17), "OK SUB news\nPONG\n");
  test::Socket pub = test::Socket::connect_to(server.address());
  std::string binary("\0\n\r x", 5);
  // A PUB cut in three pieces, and one whose payload holds a newline and a zero byte.
  ASSERT_TRUE(pub.send_all("PUB ne"));
  std::this_thread::sleep_for(20ms);  // only to make the receives split; nothing waits on it
  ASSERT_TRUE(pub.send_all("ws 5\n" + binary.substr(0, 2)));
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(pub.send_all(binary.substr(2) + "PUB news 2\nhi"));
  std::string want = "MSG news 1 5\n" + binary + "\nMSG news 2 2\nhi\n";
  EXPECT_EQ(sub.read_n(want.size()), want);
  ASSERT_TRUE(sub.send_all("UNSUB news\n"));
  EXPECT_EQ(sub.read_n(14), "OK UNSUB news\n");
}

TEST(TopicsProtocol, BadInputGetsAnErrorAndACloseAndHarmsNoOne) {
  TopicsServer server({"--max-message", "1k"});
  test::Socket sub = test::Socket::connect_to(server.address());
  ASSERT_TRUE(sub.send_all("SUB t\n"));
  ASSERT_EQ(sub.read_n(9), "OK SUB t\n");
  struct Case {
    std::string send;
    std::string answer;
  };
  std::vector<Case> cases = {
      {"HELLO\n", "ERR unknown command\n"},
      {"SUB bad\x01topic\n", "ERR bad topic\n"},
      {"SUB " + std::string(300, 'x') + "\n", "ERR bad topic\n"},
      {"PUB t 2000\n", "ERR message too large\n"},
      {"PUB t -1\n", "ERR bad PUB: PUB <topic> <length>\n"},
      {std::string(600, 'a'), "ERR line too long\n"},
  };
  for (const Case& c : cases) {
    test::Socket s = test::Socket::connect_to(server.address());
    ASSERT_TRUE(s.send_all(c.send));
    std::string got;
    EXPECT_TRUE(s.read_to_eof(got)) << "no close after " << c.answer;
    EXPECT_EQ(got, c.answer);
  }
  test::Socket pub = test::Socket::connect_to(server.address());
  ASSERT_TRUE(pub.send_all("PUB t 2\nok"));
  EXPECT_EQ(sub.read_n(13), "MSG t 1 2\nok\n") << "the others are still served";
  std::string out = server.stop();
  EXPECT_EQ(test::field(out, "protocol_errors"), static_cast<long long>(cases.size()));
}

TEST(TopicsLoad, EveryDeliveryArrivesAndTheCountsAgreeWithTheServers) {
  TopicsServer server;
  TempDir dir;
  test::Process load = run_load({"--target", server.at("127.0.0.1") + "," + server.at("127.0.0.2"),
                                 "--connections", "400", "--topics", "2", "--rate", "100", "--size",
                                 "64", "--warmup", "200ms", "--duration", "1s", "--server-pid",
                                 std::to_string(server.pid()), "--json", dir.path("sub.json")});
  ASSERT_EQ(load.wait(), 0) << load.out() << load.err();
  std::string json = test::read_file(dir.path("sub.json"));
  EXPECT_EQ(test::json_number(json, "subscribed"), 400);
  EXPECT_EQ(test::json_number(json, "lost"), 0);
  EXPECT_EQ(test::json_number(json, "duplicates"), 0);
  EXPECT_EQ(test::json_number(json, "corrupt"), 0);
  double deliveries = test::json_number(json, "deliveries");
  double published = test::json_number(json, "published");
  EXPECT_GT(published, 50);
  EXPECT_EQ(deliveries, test::json_number(json, "deliveries_expected"));
  EXPECT_EQ(deliveries, published * 200) << "two topics, 200 subscribers each";
  EXPECT_GT(test::json_number(json, "server_cpu_ns_per_delivery"), 0);
  EXPECT_GT(test::json_number(json, "server_rss_subscribed_bytes"), 0);
  std::string out = server.stop();
  std::size_t at = out.find("pubsub ");
  ASSERT_NE(at, std::string::npos) << out;
  std::string pubsub = out.substr(at);
  EXPECT_EQ(test::field(pubsub, "deliveries"), static_cast<long long>(deliveries));
  EXPECT_EQ(test::field(pubsub, "published"), static_cast<long long>(published));
}

// A topics server that delivers wrongly on purpose: drops, repeats or changes one message for
// one subscriber.
enum class Fault { kDrop, kRepeat, kCorrupt };

class FaultyTopics final : public myriad::Handler {
 public:
  explicit FaultyTopics(Fault fault) : fault_(fault) {}
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    c.spill_append(data.bytes());
    data.release();
    std::string_view all(reinterpret_cast<const char*>(c.spill().data()), c.spill().size());
    std::size_t done = 0;
    for (;;) {
      std::string_view rest = all.substr(done);
      std::size_t nl = rest.find('\n');
      if (nl == std::string_view::npos) break;
      std::string_view line = rest.substr(0, nl);
      if (line.substr(0, 4) == "SUB ") {
        std::lock_guard lock(mutex_);
        subscribers_.push_back(c);
        c.send("OK " + std::string(line) + "\n");
        done += nl + 1;
        continue;
      }
      // PUB <topic> <len>
      std::size_t sp = line.rfind(' ');
      std::size_t len = 0;
      std::from_chars(line.data() + sp + 1, line.data() + line.size(), len);
      if (rest.size() < nl + 1 + len) break;
      std::string topic(line.substr(4, sp - 4));
      std::string payload(rest.substr(nl + 1, len));
      done += nl + 1 + len;
      ++published_;
      std::lock_guard lock(mutex_);
      for (std::size_t i = 0; i < subscribers_.size(); ++i) {
        std::string p = payload;
        bool victim = i == 0 && published_ == 5;
        if (victim && fault_ == Fault::kDrop) continue;
        if (victim && fault_ == Fault::kCorrupt) p[40] = p[40] == 'a' ? 'b' : 'a';
        std::string frame = "MSG " + topic + " " + std::to_string(published_) + " " +
                            std::to_string(p.size()) + "\n" + p + "\n";
        subscribers_[i].send(frame);
        if (victim && fault_ == Fault::kRepeat) subscribers_[i].send(frame);
      }
    }
    c.spill_consume(done);
  }

 private:
  Fault fault_;
  std::mutex mutex_;
  std::vector<myriad::Connection> subscribers_;
  uint64_t published_ = 0;
};

void expect_caught(Fault fault, const char* figure) {
  FaultyTopics handler(fault);
  myriad::Config cfg;
  cfg.shards = 1;  // every subscriber on the thread that publishes
  cfg.buffer_pool_bytes = 4 << 20;
  test::Server server(cfg, handler);
  TempDir dir;
  test::Process load = run_load({"--target", server.address().to_string(), "--connections", "20",
                                 "--rate", "200", "--warmup", "100ms", "--duration", "300ms",
                                 "--drain", "1s", "--json", dir.path("sub.json")});
  EXPECT_EQ(load.wait(), 1) << "a faulty server must make myriad-load fail\n" << load.out();
  std::string json = test::read_file(dir.path("sub.json"));
  EXPECT_GT(test::json_number(json, figure), 0) << json;
  EXPECT_EQ(test::json_number(json, "ok"), 0);
}

TEST(TopicsLoad, CatchesAServerThatDropsAMessage) {
  expect_caught(Fault::kDrop, "lost");
}
TEST(TopicsLoad, CatchesAServerThatDeliversTwice) {
  expect_caught(Fault::kRepeat, "duplicates");
}
TEST(TopicsLoad, CatchesAServerThatChangesAByte) {
  expect_caught(Fault::kCorrupt, "corrupt");
}

}  // namespace
