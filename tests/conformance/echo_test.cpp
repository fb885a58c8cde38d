// Echo correctness on every backend: many connections, random sizes, pipelined, a tiny pool.
#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include <random>

#include "client.hpp"

namespace {

using namespace std::chrono_literals;
using test::BackendTest;

class Echo final : public myriad::Handler {
 public:
  void on_data(myriad::Connection c, myriad::Chunk data) override { c.send(std::move(data)); }
};

class EchoTest : public BackendTest {};

TEST_P(EchoTest, ManyConnectionsRandomSizesPipelined) {
  Echo echo;
  test::Server server(config(), echo);
  std::mt19937_64 rng(42);
  std::vector<test::EchoPeer> peers(64);
  std::size_t total = 0;
  for (std::size_t i = 0; i < peers.size(); ++i) {
    peers[i].socket = server.connect();
    // Several messages back to back, sizes from 1 byte to 1 MiB (log-uniform), pipelined.
    int messages = 1 + static_cast<int>(rng() % 6);
    for (int m = 0; m < messages; ++m) {
      std::size_t size =
          static_cast<std::size_t>(std::exp2(static_cast<double>(rng() % 2001) / 100.0));
      size = std::clamp<std::size_t>(size, 1, 1 << 20);
      peers[i].out += test::random_bytes(size, rng());
    }
    total += peers[i].out.size();
  }
  test::run_echo(peers);
  ASSERT_TRUE(test::eventually([&] { return server.counters().bytes_out == total; }));
  myriad::Counters c = server.counters();
  EXPECT_EQ(c.bytes_in, total);
  EXPECT_EQ(c.accepted, peers.size());
  EXPECT_EQ(c.buffers_in_use, 0u) << "every chunk went back to the pool";
}

TEST_P(EchoTest, TinyPoolThousandBusyClientsLosesNoByte) {
  Echo echo;
  myriad::Config cfg = config();
  cfg.shards = 1;
  cfg.buffer_size = 4096;
  // Two chunks for a thousand connections: fewer than one connection's reads in a turn, so the
  // pool runs dry even on epoll, which sends each reply right after its reads and so gives most
  // chunks back at once.
  cfg.buffer_pool_bytes = 2 * 4096;
  test::Server server(cfg, echo);
  std::vector<test::EchoPeer> peers(1000);
  std::size_t total = 0;
  for (std::size_t i = 0; i < peers.size(); ++i) {
    peers[i].socket = server.connect();
    peers[i].out = test::random_bytes(16384 + i * 7, i + 1);
    total += peers[i].out.size();
  }
  test::run_echo(peers, 120s);
  ASSERT_TRUE(test::eventually([&] { return server.counters().bytes_out == total; }));
  myriad::Counters c = server.counters();
  EXPECT_GT(c.buffer_starved, 0u)
      << "the pool never ran dry: the test did not reach the ENOBUFS path";
  EXPECT_EQ(c.buffers_in_use, 0u);
}

TEST_P(EchoTest, CountersAgreeWithWhatClientsSent) {
  Echo echo;
  test::Server server(config(), echo);
  std::vector<test::EchoPeer> peers(10);
  std::size_t total = 0;
  for (std::size_t i = 0; i < peers.size(); ++i) {
    peers[i].socket = server.connect();
    peers[i].out = test::random_bytes(1000 * (i + 1), 7 + i);
    total += peers[i].out.size();
  }
  test::run_echo(peers);
  peers.clear();  // closes them
  ASSERT_TRUE(test::eventually([&] { return server.counters().open == 0; }));
  myriad::Counters c = server.counters();
  EXPECT_EQ(c.bytes_in, total);
  EXPECT_EQ(c.bytes_out, total);
  EXPECT_EQ(c.accepted, 10u);
  EXPECT_EQ(c.closed_peer, 10u);
  EXPECT_EQ(c.closed_total(), 10u);
}

MYRIAD_CONFORMANCE_SUITE(EchoTest);

}  // namespace
