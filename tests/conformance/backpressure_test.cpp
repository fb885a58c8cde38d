// Slow readers and write backpressure on every backend: memory stays bounded, others are served.
#include <myriad/myriad.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "client.hpp"

namespace {

using namespace std::chrono_literals;
using myriad::CloseReason;
using test::BackendTest;

// Echoes, and records for each connection the most output it ever had queued and how often it
// crossed its high watermark.
class MeasuringEcho final : public myriad::Handler {
 public:
  struct Seen {
    std::size_t max_queued = 0;
    int above_edges = 0;
  };
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    c.send(std::move(data));
    std::lock_guard lock(mutex_);
    Seen& s = seen_[key(c)];
    s.max_queued = std::max(s.max_queued, c.queued());
  }
  void on_write_watermark(myriad::Connection c, bool above) override {
    std::lock_guard lock(mutex_);
    if (above) ++seen_[key(c)].above_edges;
  }
  std::map<std::pair<unsigned, uint32_t>, Seen> seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  static std::pair<unsigned, uint32_t> key(myriad::Connection c) {
    return {c.shard().index(), c.id()};
  }
  std::mutex mutex_;
  std::map<std::pair<unsigned, uint32_t>, Seen> seen_;
};

class BackpressureTest : public BackendTest {
 protected:
  // Connects n clients that send and never read, each until the server stops taking its bytes
  // (its receive window closes); fails the test for any the server kept reading.
  std::vector<test::Socket> flood(test::Server& server, int n) {
    std::vector<test::Socket> slow;
    std::string block = test::random_bytes(65536, 77);
    for (int i = 0; i < n; ++i) {
      slow.push_back(server.connect(4096));
      slow.back().set_nonblocking();
      bool stalled = false;
      std::size_t sent = slow.back().send_until_peer_stops_reading(block, 64 << 20, stalled);
      EXPECT_TRUE(stalled) << "client " << i << ": the server never pushed back (" << sent
                           << " bytes taken)";
    }
    return slow;
  }
};

// The connection's share of the pool binds first (a high watermark far above it): each slow
// client holds at most its share, whatever the others do.
TEST_P(BackpressureTest, EachClientThatNeverReadsHoldsAtMostItsShareAndOthersAreServed) {
  MeasuringEcho echo;
  myriad::Config cfg = config();
  cfg.shards = 1;
  cfg.buffer_size = 16384;
  cfg.buffer_pool_bytes = 256 * 16384;
  cfg.max_connection_buffers = 4;
  cfg.write_low_watermark = 512 << 10;
  cfg.write_high_watermark = 1 << 20;
  test::Server server(cfg, echo);
  constexpr int kSlow = 20;
  std::vector<test::Socket> slow = flood(server, kSlow);
  // The promise, per connection: at most its share of the pool (plus the chunk in hand when
  // it was reached). With echo, what it holds is what it has queued.
  const std::size_t share_bytes = (cfg.max_connection_buffers + 1) * cfg.buffer_size;
  auto seen = echo.seen();
  ASSERT_EQ(seen.size(), std::size_t{kSlow});
  for (const auto& [key, s] : seen) {
    EXPECT_LE(s.max_queued, share_bytes) << "connection " << key.second << " held past its share";
    EXPECT_EQ(s.above_edges, 0) << "the watermark, not the share, paused connection " << key.second;
  }
  myriad::Counters held = server.counters();
  EXPECT_GE(held.buffer_cap_pauses, uint64_t{kSlow}) << "not every client was paused by its share";
  EXPECT_LE(held.buffers_in_use, kSlow * (cfg.max_connection_buffers + 1));

  // Everyone else is still served, in full, while the slow ones sit there.
  std::vector<test::EchoPeer> peers(10);
  for (std::size_t i = 0; i < peers.size(); ++i) {
    peers[i].socket = server.connect();
    peers[i].out = test::random_bytes(200000, 100 + i);
  }
  test::run_echo(peers);
  EXPECT_EQ(server.counters().open, static_cast<uint64_t>(kSlow + 10))
      << "slow readers are paused, not dropped";
}

// The high watermark binds first (a share far above it): each slow client is paused at its
// watermark, and holds at most the watermark plus what was already on its way (its share).
TEST_P(BackpressureTest, EachClientThatNeverReadsIsPausedAtItsHighWatermark) {
  MeasuringEcho echo;
  myriad::Config cfg = config();
  cfg.shards = 1;
  cfg.buffer_size = 16384;
  cfg.buffer_pool_bytes = 1024 * 16384;
  cfg.max_connection_buffers = 64;
  cfg.write_low_watermark = 16 << 10;
  cfg.write_high_watermark = 32 << 10;
  test::Server server(cfg, echo);
  constexpr int kSlow = 10;
  std::vector<test::Socket> slow = flood(server, kSlow);
  auto seen = echo.seen();
  ASSERT_EQ(seen.size(), std::size_t{kSlow});
  for (const auto& [key, s] : seen) {
    // Above, then below as the kernel takes some, then above again until it takes no more.
    EXPECT_GE(s.above_edges, 1) << "connection " << key.second;
    EXPECT_GE(s.max_queued, cfg.write_high_watermark) << "connection " << key.second;
    EXPECT_LE(s.max_queued, cfg.write_high_watermark + cfg.max_connection_buffers * cfg.buffer_size)
        << "connection " << key.second << " queued past its watermark and share";
  }
  myriad::Counters held = server.counters();
  EXPECT_GE(held.watermark_pauses, uint64_t{kSlow});
  EXPECT_EQ(held.open, uint64_t{kSlow});
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
