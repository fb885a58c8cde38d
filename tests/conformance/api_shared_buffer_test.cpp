// SharedBuffer on every backend: one buffer sent to many connections without a copy each, the
// reference held until the kernel took the bytes, and released on every way a send can end.
#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "api_support.hpp"
#include "client.hpp"

namespace {

using namespace std::chrono_literals;
using test::BackendTest;

class Recorder final : public myriad::Handler {
 public:
  void on_open(myriad::Connection c) override { open.add(c); }
  void on_data(myriad::Connection, myriad::Chunk) override {}
  void on_close(myriad::Connection c, myriad::CloseReason reason, int) override {
    open.remove(c);
    last_reason.store(static_cast<int>(reason));
    closed.fetch_add(1);
  }

  api_test::OpenConnections open;
  std::atomic<int> last_reason{-1};
  std::atomic<int> closed{0};
};

// Runs fn(connection) on each connection's own shard, and returns once every shard has run it.
template <class Fn>
void on_each_shard(test::Server& server, Recorder& recorder, Fn fn) {
  std::atomic<unsigned> done{0};
  unsigned shards = server.runtime().shard_count();
  for (unsigned i = 0; i < shards; ++i) {
    server.runtime().shard(i).post([&recorder, &fn, &done] {
      for (myriad::Connection c : recorder.open.snapshot()) {
        if (&c.shard() == myriad::Shard::current()) fn(c);
      }
      done.fetch_add(1);
    });
  }
  ASSERT_TRUE(test::eventually([&] { return done.load() == shards; }));
}

class SharedBufferTest : public BackendTest {};

TEST_P(SharedBufferTest, ThousandConnectionsReceiveOneBufferAndItsReferencesComeBack) {
  Recorder recorder;
  test::Server server(config(), recorder);
  constexpr std::size_t kConnections = 1000;
  std::vector<test::Socket> clients;
  for (std::size_t i = 0; i < kConnections; ++i) clients.push_back(server.connect());
  ASSERT_TRUE(test::eventually([&] { return recorder.open.size() == kConnections; }));

  const std::string payload = test::random_bytes(50'000, 7);
  myriad::SharedBuffer big = myriad::SharedBuffer::copy(payload);
  myriad::SharedBuffer small = myriad::SharedBuffer::copy(std::string_view("tail\n"));
  ASSERT_EQ(big.use_count(), 1);
  std::atomic<std::size_t> accepted{0};
  on_each_shard(server, recorder, [&](myriad::Connection c) {
    if (c.send(big) && c.send(small)) accepted.fetch_add(1);
  });
  EXPECT_EQ(accepted.load(), kConnections);

  std::vector<std::string> got = api_test::read_all(clients, payload.size() + 5);
  for (std::size_t i = 0; i < kConnections; ++i) {
    ASSERT_EQ(got[i].size(), payload.size() + 5) << "connection " << i;
    ASSERT_TRUE(got[i] == payload + "tail\n") << "connection " << i << " got other bytes";
  }
  // The queues drop their references as the kernel takes the bytes: only ours remain.
  EXPECT_TRUE(test::eventually([&] { return big.use_count() == 1 && small.use_count() == 1; }))
      << "big " << big.use_count() << ", small " << small.use_count();
  myriad::Counters c = server.counters();
  EXPECT_EQ(c.bytes_out, kConnections * (payload.size() + 5));
  EXPECT_EQ(c.queued_bytes, 0u);
}

TEST_P(SharedBufferTest, SeveralSharedBuffersLeaveInOneGatheredSend) {
  Recorder recorder;
  test::Server server(config(), recorder);
  constexpr std::size_t kConnections = 100;
  std::vector<test::Socket> clients;
  for (std::size_t i = 0; i < kConnections; ++i) clients.push_back(server.connect());
  ASSERT_TRUE(test::eventually([&] { return recorder.open.size() == kConnections; }));

  std::vector<myriad::SharedBuffer> parts;
  for (const char* text : {"one ", "two ", "three\n"})
    parts.push_back(myriad::SharedBuffer::copy(std::string_view(text)));
  on_each_shard(server, recorder, [&](myriad::Connection c) {
    for (const auto& part : parts) c.send(part);
  });
  std::vector<std::string> got = api_test::read_all(clients, 14);
  for (std::size_t i = 0; i < kConnections; ++i) ASSERT_EQ(got[i], "one two three\n");
  ASSERT_TRUE(test::eventually([&] { return server.counters().bytes_out == kConnections * 14; }));
  // Queued in one task, the three went out in one send per connection.
  EXPECT_EQ(server.counters().sends, kConnections);
  for (const auto& part : parts)
    EXPECT_TRUE(test::eventually([&] { return part.use_count() == 1; }));
}

TEST_P(SharedBufferTest, ABufferMadeOnAnotherThreadAndSentFromItArrives) {
  Recorder recorder;
  test::Server server(config(), recorder);
  std::vector<test::Socket> clients;
  for (int i = 0; i < 20; ++i) clients.push_back(server.connect());
  ASSERT_TRUE(test::eventually([&] { return recorder.open.size() == 20; }));
  std::string text = test::random_bytes(3000, 11);
  myriad::SharedBuffer buffer = myriad::SharedBuffer::make(
      text.size(),
      [&](std::span<std::byte> out) { std::memcpy(out.data(), text.data(), text.size()); });
  // From this (non-shard) thread a send is posted to the connection's shard.
  for (myriad::Connection c : recorder.open.snapshot()) EXPECT_TRUE(c.send(buffer));
  std::vector<std::string> got = api_test::read_all(clients, text.size());
  for (const auto& g : got) ASSERT_TRUE(g == text);
  EXPECT_TRUE(test::eventually([&] { return buffer.use_count() == 1; }));
}

// A reader that never reads (4 KiB receive buffer) keeps most of a 16 MiB buffer queued and
// in flight, until the connection ends one way or another.
TEST_P(SharedBufferTest, AnAbortWithTheBufferQueuedReleasesIt) {
  Recorder recorder;
  myriad::Config cfg = config();
  cfg.max_write_queue = 64 << 20;
  test::Server server(cfg, recorder);
  test::Socket client = server.connect(4096);
  ASSERT_TRUE(test::eventually([&] { return recorder.open.size() == 1; }));
  myriad::SharedBuffer buffer = myriad::SharedBuffer::copy(test::random_bytes(16 << 20, 3));
  on_each_shard(server, recorder, [&](myriad::Connection c) { c.send(buffer); });
  ASSERT_TRUE(test::eventually([&] { return server.counters().bytes_out > 0; }));
  std::atomic<std::size_t> queued{0};
  on_each_shard(server, recorder, [&](myriad::Connection c) {
    queued.store(c.queued());
    c.abort();
  });
  EXPECT_GT(queued.load(), 0u) << "the buffer was gone before the abort: nothing was tested";
  EXPECT_TRUE(test::eventually([&] { return buffer.use_count() == 1; })) << buffer.use_count();
  EXPECT_TRUE(test::eventually([&] { return recorder.closed.load() == 1; }));
  EXPECT_EQ(recorder.last_reason.load(), static_cast<int>(myriad::CloseReason::kLocal));
}

TEST_P(SharedBufferTest, APeerResetWithTheBufferQueuedReleasesIt) {
  Recorder recorder;
  myriad::Config cfg = config();
  cfg.max_write_queue = 64 << 20;
  test::Server server(cfg, recorder);
  test::Socket client = server.connect(4096);
  ASSERT_TRUE(test::eventually([&] { return recorder.open.size() == 1; }));
  myriad::SharedBuffer buffer = myriad::SharedBuffer::copy(test::random_bytes(16 << 20, 4));
  on_each_shard(server, recorder, [&](myriad::Connection c) { c.send(buffer); });
  ASSERT_TRUE(test::eventually([&] { return server.counters().bytes_out > 0; }));
  EXPECT_GT(buffer.use_count(), 1);
  client.reset_hard();
  EXPECT_TRUE(test::eventually([&] { return recorder.closed.load() == 1; }));
  EXPECT_TRUE(test::eventually([&] { return buffer.use_count() == 1; })) << buffer.use_count();
}

TEST_P(SharedBufferTest, ShutdownWithTheBufferQueuedReleasesIt) {
  Recorder recorder;
  myriad::Config cfg = config();
  cfg.max_write_queue = 64 << 20;
  cfg.drain_timeout = 100ms;
  myriad::SharedBuffer buffer = myriad::SharedBuffer::copy(test::random_bytes(16 << 20, 5));
  {
    test::Server server(cfg, recorder);
    test::Socket client = server.connect(4096);
    ASSERT_TRUE(test::eventually([&] { return recorder.open.size() == 1; }));
    on_each_shard(server, recorder, [&](myriad::Connection c) { c.send(buffer); });
    ASSERT_TRUE(test::eventually([&] { return server.counters().bytes_out > 0; }));
    EXPECT_GT(buffer.use_count(), 1);
    server.stop();  // the drain times out: the reader never reads
    EXPECT_EQ(recorder.last_reason.load(), static_cast<int>(myriad::CloseReason::kShutdown));
  }
  EXPECT_EQ(buffer.use_count(), 1);
}

TEST_P(SharedBufferTest, SendsOnAClosingConnectionTakeNoReference) {
  Recorder recorder;
  test::Server server(config(), recorder);
  test::Socket client = server.connect();
  ASSERT_TRUE(test::eventually([&] { return recorder.open.size() == 1; }));
  myriad::SharedBuffer buffer = myriad::SharedBuffer::copy(std::string_view("bye\n"));
  std::atomic<int> after_close{-1};
  on_each_shard(server, recorder, [&](myriad::Connection c) {
    c.send(buffer);
    c.close();
    after_close.store(c.send(buffer) ? 1 : 0);
  });
  EXPECT_EQ(after_close.load(), 0) << "send() after close() must refuse";
  std::string got;
  EXPECT_TRUE(client.read_to_eof(got));
  EXPECT_EQ(got, "bye\n");
  EXPECT_TRUE(test::eventually([&] { return buffer.use_count() == 1; }));
}

MYRIAD_CONFORMANCE_SUITE(SharedBufferTest);

}  // namespace
