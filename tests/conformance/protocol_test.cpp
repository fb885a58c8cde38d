// Framing with the spill buffer, bad input from the network, and outbound connections.
#include <myriad/myriad.hpp>

#include <arpa/inet.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <mutex>

#include "client.hpp"

namespace {

using namespace std::chrono_literals;
using myriad::CloseReason;
using test::BackendTest;

std::string frame(const std::string& payload) {
  uint32_t n = htonl(static_cast<uint32_t>(payload.size()));
  return std::string(reinterpret_cast<const char*>(&n), 4) + payload;
}

// Length-prefixed frames (4-byte big-endian length, at most 64 KiB); answers each with its
// payload reversed. A frame split across receives waits in the spill buffer. A length over
// the limit is bad input: that connection is aborted and counted, nothing else is touched.
class Framer final : public myriad::Handler {
 public:
  static constexpr uint32_t kMaxFrame = 64 << 10;

  void on_data(myriad::Connection c, myriad::Chunk data) override {
    std::span<const std::byte> in = data.bytes();
    if (!c.spill().empty()) {
      if (!c.spill_append(in)) return;  // over max_spill: closed for us
      std::vector<std::byte> all(c.spill().begin(), c.spill().end());
      c.spill_consume(all.size());
      consume(c, all);
      return;
    }
    consume(c, in);
  }
  void on_close(myriad::Connection, CloseReason reason, int) override {
    std::lock_guard lock(mutex);
    reasons.push_back(reason);
  }

  std::atomic<int> frames{0};
  std::atomic<int> bad_input{0};
  std::mutex mutex;
  std::vector<CloseReason> reasons;

 private:
  void consume(myriad::Connection c, std::span<const std::byte> in) {
    while (in.size() >= 4) {
      uint32_t n;
      std::memcpy(&n, in.data(), 4);
      n = ntohl(n);
      if (n > kMaxFrame) {
        ++bad_input;
        c.abort();
        return;
      }
      if (in.size() < 4 + n) break;
      std::string reply(reinterpret_cast<const char*>(in.data()) + 4, n);
      std::reverse(reply.begin(), reply.end());
      c.send(frame(reply));
      ++frames;
      in = in.subspan(4 + n);
    }
    if (!in.empty()) c.spill_append(in);
  }
};

class ProtocolTest : public BackendTest {};

TEST_P(ProtocolTest, FramesSplitAcrossReceivesAreReassembled) {
  Framer framer;
  test::Server server(config(), framer);
  test::Socket s = server.connect();
  std::string stream, expected;
  for (int i = 0; i < 200; ++i) {
    std::string payload = test::random_bytes(1 + (i * 331) % 60000, i);
    stream += frame(payload);
    std::reverse(payload.begin(), payload.end());
    expected += frame(payload);
  }
  // Dribble it out in odd pieces so frames straddle receives.
  for (std::size_t off = 0; off < stream.size(); off += 7777) {
    ASSERT_TRUE(s.send_all(stream.substr(off, 7777)));
  }
  EXPECT_EQ(s.read_n(expected.size(), 30s), expected);
  EXPECT_EQ(framer.frames.load(), 200);
}

TEST_P(ProtocolTest, BadInputClosesThatConnectionOnlyAndIsCounted) {
  Framer framer;
  test::Server server(config(), framer);
  test::Socket good = server.connect();
  test::Socket bad = server.connect();
  ASSERT_TRUE(bad.send_all(std::string("\xff\xff\xff\xff garbage", 12)));
  EXPECT_TRUE(bad.closed_by_peer());
  ASSERT_TRUE(good.send_all(frame("hello")));
  EXPECT_EQ(good.read_n(9), frame("olleh"));
  EXPECT_EQ(framer.bad_input.load(), 1);
  ASSERT_TRUE(test::eventually([&] { return server.counters().closed_local == 1; }));
  EXPECT_EQ(server.counters().open, 1u);
}

TEST_P(ProtocolTest, SpillPastItsLimitClosesWithInputOverflow) {
  Framer framer;
  myriad::Config cfg = config();
  cfg.max_spill = 1024;
  test::Server server(cfg, framer);
  test::Socket s = server.connect();
  std::string big = frame(test::random_bytes(8000, 1));
  ASSERT_TRUE(s.send_all(big.substr(0, 600)));
  // The first piece arrives alone and is spilled before the rest is sent.
  ASSERT_TRUE(test::eventually([&] { return server.counters().bytes_in == 600; }));
  ASSERT_TRUE(s.send_all(big.substr(600)));
  EXPECT_TRUE(s.closed_by_peer());
  ASSERT_TRUE(test::eventually([&] { return server.counters().closed_input_overflow == 1; }));
  std::lock_guard lock(framer.mutex);
  ASSERT_EQ(framer.reasons.size(), 1u);
  EXPECT_EQ(framer.reasons[0], CloseReason::kInputOverflow);
}

// An outbound client: sends a greeting when connected and collects the echo.
class Client final : public myriad::Handler {
 public:
  void on_open(myriad::Connection c) override { c.send(std::string_view("outbound hello")); }
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    std::lock_guard lock(mutex);
    got.append(data.view());
    if (got.size() >= 14) c.close();
  }
  void on_close(myriad::Connection c, CloseReason reason, int error) override {
    std::lock_guard lock(mutex);
    closes.push_back({reason, error, c.user()});
  }
  struct Close {
    CloseReason reason;
    int error;
    void* user;
  };
  std::mutex mutex;
  std::string got;
  std::vector<Close> closes;
};

class Echo final : public myriad::Handler {
  void on_data(myriad::Connection c, myriad::Chunk data) override { c.send(std::move(data)); }
};

TEST_P(ProtocolTest, OutboundConnectionsEchoAndReportRefusal) {
  Echo echo;
  test::Server server(config(), echo);
  Client client;  // before the runtime that calls it, so it outlives it
  myriad::Config cfg = config();
  cfg.shards = 1;
  myriad::Runtime client_rt(cfg);
  client_rt.start();
  int marker = 0;
  client_rt.shard(0).connect(server.address(), client, &marker);
  ASSERT_TRUE(test::eventually([&] {
    std::lock_guard lock(client.mutex);
    return !client.closes.empty();
  }));
  {
    std::lock_guard lock(client.mutex);
    EXPECT_EQ(client.got, "outbound hello");
    EXPECT_EQ(client.closes[0].reason, CloseReason::kLocal);
    EXPECT_EQ(client.closes[0].user, &marker);
  }
  // Nothing listens on this port now: the connect is refused and reported with its user data.
  myriad::Address dead = server.address();
  server.stop();
  int other = 0;
  client_rt.shard(0).connect(dead, client, &other);
  ASSERT_TRUE(test::eventually([&] {
    std::lock_guard lock(client.mutex);
    return client.closes.size() == 2;
  }));
  std::lock_guard lock(client.mutex);
  EXPECT_EQ(client.closes[1].reason, CloseReason::kConnectFailed);
  EXPECT_EQ(client.closes[1].error, ECONNREFUSED);
  EXPECT_EQ(client.closes[1].user, &other);
  myriad::Counters c = client_rt.counters();
  EXPECT_EQ(c.connected, 1u);
  EXPECT_EQ(c.connect_failed, 1u);
}

// Outbound connects that fail for other reasons than a refusal are reported the same way:
// on_close(kConnectFailed) with the errno and the user pointer, counted, and nothing opened.
TEST_P(ProtocolTest, OutboundConnectFailuresOtherThanRefusedAreReported) {
  // The handlers and the server first: they outlive the client runtime that calls them.
  Client client;
  class Quiet final : public myriad::Handler {
    void on_data(myriad::Connection, myriad::Chunk) override {}
  } holder;
  Echo echo;
  test::Server server(config(), echo);
  myriad::Config cfg = config();
  cfg.shards = 1;
  cfg.max_connections = 1;
  myriad::Runtime client_rt(cfg);
  client_rt.start();
  auto wait_closes = [&](std::size_t n) {
    return test::eventually([&] {
      std::lock_guard lock(client.mutex);
      return client.closes.size() >= n;
    });
  };
  // TCP to a multicast address: the kernel says the network is unreachable, sending nothing.
  int unreachable = 0;
  client_rt.shard(0).connect(myriad::Address::parse("224.0.0.1:9"), client, &unreachable);
  ASSERT_TRUE(wait_closes(1));
  // Past max_connections (one, held by a connection to a live server): refused locally.
  client_rt.shard(0).connect(server.address(), holder, nullptr);
  ASSERT_TRUE(test::eventually([&] { return client_rt.counters().open == 1; }));
  int over_limit = 0;
  client_rt.shard(0).connect(server.address(), client, &over_limit);
  ASSERT_TRUE(wait_closes(2));
  {
    std::lock_guard lock(client.mutex);
    EXPECT_EQ(client.closes[0].reason, CloseReason::kConnectFailed);
    EXPECT_EQ(client.closes[0].error, ENETUNREACH) << std::strerror(client.closes[0].error);
    EXPECT_EQ(client.closes[0].user, &unreachable);
    EXPECT_EQ(client.closes[1].reason, CloseReason::kConnectFailed);
    EXPECT_EQ(client.closes[1].error, EMFILE) << std::strerror(client.closes[1].error);
    EXPECT_EQ(client.closes[1].user, &over_limit);
    EXPECT_TRUE(client.got.empty());
  }
  myriad::Counters c = client_rt.counters();
  EXPECT_EQ(c.connect_failed, 2u);
  EXPECT_EQ(c.connected, 1u);
  EXPECT_EQ(c.open, 1u);
}

MYRIAD_CONFORMANCE_SUITE(ProtocolTest);

}  // namespace
