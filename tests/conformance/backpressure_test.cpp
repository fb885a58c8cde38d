// Slow readers and write backpressure on every backend: memory stays bounded, others are served.
#include <myriad/myriad.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "client.hpp"

namespace {

using namespace std::chrono_literals;
using myriad::CloseReason;
using test::BackendTest;

class Echo final : public myriad::Handler {
 public:
  void on_data(myriad::Connection c, myriad::Chunk data) override { c.send(std::move(data)); }
};

// Writes as much as the server takes, never reading, until it stops taking for a while.
std::size_t flood_without_reading(test::Socket& s, std::size_t limit) {
  s.set_nonblocking();
  std::string block = test::random_bytes(65536, 77);
  std::size_t sent = 0;
  auto stalled_since = std::chrono::steady_clock::now();
  while (sent < limit && std::chrono::steady_clock::now() - stalled_since < 500ms) {
    ssize_t n = ::send(s.fd(), block.data(), block.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      stalled_since = std::chrono::steady_clock::now();
    } else {
      pollfd p{s.fd(), POLLOUT, 0};
      ::poll(&p, 1, 20);
    }
  }
  return sent;
}

class BackpressureTest : public BackendTest {};

TEST_P(BackpressureTest, ClientsThatNeverReadCostABoundedAmountAndOthersAreServed) {
  Echo echo;
  myriad::Config cfg = config();
  cfg.shards = 1;
  cfg.buffer_size = 16384;
  cfg.buffer_pool_bytes = 256 * 16384;
  cfg.max_connection_buffers = 4;
  test::Server server(cfg, echo);

  constexpr int kSlow = 20;
  std::vector<test::Socket> slow;
  for (int i = 0; i < kSlow; ++i) slow.push_back(server.connect(4096));
  std::vector<std::thread> floods;
  std::atomic<std::size_t> flooded{0};
  for (auto& s : slow) {
    floods.emplace_back([&s, &flooded] { flooded += flood_without_reading(s, 64 << 20); });
  }
  for (auto& t : floods) t.join();
  // Every slow client is stuck: the server stopped taking their bytes. Now measure what they cost.
  myriad::Counters held = server.counters();
  // The promise: each holds at most its share of the pool (plus the chunk in hand when it was
  // reached), and queues at most the high watermark plus that share.
  const std::size_t share = cfg.max_connection_buffers + 1;
  const std::size_t chunk_bound = kSlow * share;
  EXPECT_LE(held.buffers_in_use, chunk_bound)
      << "slow readers hold more of the pool than their share";
  EXPECT_LE(held.queued_bytes, kSlow * (cfg.write_high_watermark + share * cfg.buffer_size))
      << "slow readers' output queues grew past the high watermark";
  EXPECT_GT(held.watermark_pauses + held.buffer_cap_pauses, 0u);
  EXPECT_LT(flooded.load(), std::size_t{kSlow} * (64 << 20)) << "the server never pushed back";

  // Everyone else is still served, in full, while the slow ones sit there.
  std::vector<test::EchoPeer> peers(10);
  for (std::size_t i = 0; i < peers.size(); ++i) {
    peers[i].socket = server.connect();
    peers[i].out = test::random_bytes(200000, 100 + i);
  }
  test::run_echo(peers);
  EXPECT_LE(server.counters().buffers_in_use, chunk_bound + 10 * share);
  EXPECT_EQ(server.counters().open, static_cast<uint64_t>(kSlow + 10))
      << "slow readers are paused, not dropped";
}

// Pushes data on a timer whatever the peer does: the slow-reader policy must close it.
class Pusher final : public myriad::Handler {
 public:
  void on_open(myriad::Connection c) override { push(c); }
  void on_data(myriad::Connection, myriad::Chunk) override {}
  void on_close(myriad::Connection, CloseReason reason, int) override {
    std::lock_guard lock(mutex);
    reasons.push_back(reason);
  }
  void push(myriad::Connection c) {
    if (!c.valid()) return;
    c.send(std::string(256 << 10, 'p'));
    c.shard().after(5ms, [this, c] { push(c); });
  }
  std::mutex mutex;
  std::vector<CloseReason> reasons;
};

TEST_P(BackpressureTest, ASlowReaderPastTheHardCapIsClosedAndCounted) {
  Pusher pusher;
  myriad::Config cfg = config();
  cfg.max_write_queue = 2 << 20;
  test::Server server(cfg, pusher);
  test::Socket never_reads = server.connect(4096);
  EXPECT_TRUE(never_reads.reset_by_peer(30s));
  ASSERT_TRUE(test::eventually([&] { return server.counters().closed_slow_reader == 1; }));
  std::lock_guard lock(pusher.mutex);
  ASSERT_EQ(pusher.reasons.size(), 1u);
  EXPECT_EQ(pusher.reasons[0], CloseReason::kSlowReader);
  EXPECT_TRUE(test::eventually([&] { return server.counters().queued_bytes == 0; }))
      << "a closed connection's queue must be freed";
}

// Sends a large reply on request and records the watermark edges.
class Edges final : public myriad::Handler {
 public:
  void on_data(myriad::Connection c, myriad::Chunk) override { c.send(std::string(1 << 20, 'e')); }
  void on_write_watermark(myriad::Connection c, bool above) override {
    std::lock_guard lock(mutex);
    edges.push_back(above);
    writable_after.push_back(c.writable());
  }
  std::mutex mutex;
  std::vector<bool> edges;
  std::vector<bool> writable_after;
};

TEST_P(BackpressureTest, WatermarkEdgesComeInPairs) {
  Edges edges;
  test::Server server(config(), edges);
  test::Socket s = server.connect(4096);
  ASSERT_TRUE(s.send_all("go"));
  ASSERT_TRUE(test::eventually([&] {
    std::lock_guard lock(edges.mutex);
    return !edges.edges.empty();
  }));
  std::string got = s.read_n(1 << 20, 30s);
  EXPECT_EQ(got.size(), std::size_t{1} << 20);
  ASSERT_TRUE(test::eventually([&] {
    std::lock_guard lock(edges.mutex);
    return edges.edges.size() == 2;
  }));
  std::lock_guard lock(edges.mutex);
  EXPECT_TRUE(edges.edges[0]);
  EXPECT_FALSE(edges.edges[1]);
  EXPECT_FALSE(edges.writable_after[0]);
  EXPECT_TRUE(edges.writable_after[1]);
}

MYRIAD_CONFORMANCE_SUITE(BackpressureTest);

}  // namespace
