// io_uring only: a shard with many small rings (ring_slots = 64), as a shard holding a million
// connections has many 20,000-slot ones. Echo, starvation across rings, closes that free slots on
// early rings, and shutdown must all work when connections are spread over rings.
#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include "client.hpp"

namespace {

using namespace std::chrono_literals;

// Opens n connections in batches the server has accepted before the next: never more than 16
// accepts outstanding, well inside a small ring's margin (a full table would lose connections).
std::vector<test::Socket> open_in_batches(test::Server& server, int n, std::size_t already = 0) {
  std::vector<test::Socket> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(server.connect());
    if (out.size() % 16 == 0 || i + 1 == n) {
      std::size_t want = already + out.size();
      EXPECT_TRUE(test::eventually([&] { return server.counters().accepted >= want; }))
          << "want " << want << "; " << server.counters().to_string();
    }
  }
  return out;
}

class Echo final : public myriad::Handler {
  void on_data(myriad::Connection c, myriad::Chunk data) override { c.send(std::move(data)); }
};

class ManyRingsTest : public test::BackendTest {
 protected:
  myriad::Config many_rings() const {
    myriad::Config c = config();
    c.shards = 1;
    c.ring_slots = 128;  // accepting leaves 32 free per ring
    c.buffer_size = 4096;
    c.buffer_pool_bytes = 32 * 4096;  // a small pool shared by all the rings
    return c;
  }
};

TEST_P(ManyRingsTest, EchoAcrossManyRingsWithAStarvedPool) {
  Echo echo;
  test::Server server(many_rings(), echo);
  std::vector<test::Socket> sockets = open_in_batches(server, 400);  // four rings' worth
  std::vector<test::EchoPeer> peers(400);
  for (std::size_t i = 0; i < peers.size(); ++i) {
    peers[i].socket = std::move(sockets[i]);
    peers[i].out = test::random_bytes(8192 + i * 13, 300 + i);
  }
  test::run_echo(peers, 120s);
  EXPECT_EQ(server.counters().accepted, 400u);
  EXPECT_GT(server.counters().buffer_starved, 0u);
}

TEST_P(ManyRingsTest, SlotsFreedOnEarlyRingsAreReusedAndLateRingsStillServe) {
  Echo echo;
  test::Server server(many_rings(), echo);
  std::vector<test::Socket> first = open_in_batches(server, 300);
  ASSERT_TRUE(test::eventually([&] { return server.counters().open == 300; }));
  // Close every other one, spread over all rings, then open more and talk on all of them.
  for (std::size_t i = 0; i < first.size(); i += 2) first[i].reset();
  ASSERT_TRUE(test::eventually([&] { return server.counters().open == 150; }));
  std::vector<test::EchoPeer> peers;
  for (std::size_t i = 1; i < first.size(); i += 2)
    peers.push_back(test::EchoPeer{std::move(first[i]), "", 0, ""});
  for (auto& s : open_in_batches(server, 200, 300))
    peers.push_back(test::EchoPeer{std::move(s), "", 0, ""});
  for (std::size_t i = 0; i < peers.size(); ++i) peers[i].out = test::random_bytes(3000, 900 + i);
  test::run_echo(peers, 120s);
  EXPECT_EQ(server.counters().open, 350u);
}

TEST_P(ManyRingsTest, ShutdownWithConnectionsOnEveryRing) {
  Echo echo;
  test::Server server(many_rings(), echo);
  std::vector<test::Socket> held = open_in_batches(server, 300);
  ASSERT_TRUE(test::eventually([&] { return server.counters().open == 300; }));
  server.stop();
  EXPECT_EQ(server.counters().closed_shutdown, 300u);
  for (auto& s : held) EXPECT_TRUE(s.closed_by_peer(5s));
}

// Rings are an io_uring matter: only that backend is instantiated.
INSTANTIATE_TEST_SUITE_P(Backends, ManyRingsTest, ::testing::Values(myriad::BackendKind::kUring),
                         test::param_name);

}  // namespace
