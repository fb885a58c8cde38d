// The memory a copying send costs (src/output_queue.hpp): a small send to an idle connection
// must not pin a 4 KiB block, and a run of small sends must not make one block per send.
#include "output_queue.hpp"

#include <gtest/gtest.h>
#include <sys/uio.h>

#include <string>
#include <vector>

namespace {

using myriad::detail::OutputQueue;

void drain(OutputQueue& q) {
  q.consume(q.bytes(), [](uint32_t) { FAIL() << "no pool chunk was queued"; });
}

TEST(OutputQueueMemory, ASmallSendToManyIdleQueuesCostsABlockItsOwnSize) {
  // The case: one 43-byte status line copied to each of 6,000 idle subscribers.
  const std::string line(43, 's');
  std::vector<OutputQueue> queues(6000);
  std::size_t total = 0;
  for (auto& q : queues) {
    q.append_copy(line.data(), line.size());
    total += q.heap_capacity();
  }
  EXPECT_EQ(total, queues.size() * OutputQueue::kBlockGrain)
      << "each queue should hold one 64-byte block, not a 4 KiB one";
  for (auto& q : queues) {
    EXPECT_EQ(q.segments(), 1u);
    drain(q);
    EXPECT_EQ(q.heap_capacity(), 0u) << "a drained queue holds no block";
  }
}

TEST(OutputQueueMemory, BlocksAreSizedToTheMessageRoundedToTheGrain) {
  for (std::size_t len : {1u, 63u, 64u, 65u, 1000u, 4095u}) {
    OutputQueue q;
    std::string bytes(len, 'x');
    q.append_copy(bytes.data(), bytes.size());
    std::size_t want = (len + 63) / 64 * 64;
    EXPECT_EQ(q.heap_capacity(), want) << len << " bytes";
    drain(q);
  }
  OutputQueue big;
  std::string bytes(100'000, 'y');
  big.append_copy(bytes.data(), bytes.size());
  EXPECT_EQ(big.heap_capacity(), bytes.size()) << "a large copy takes one block of its size";
  EXPECT_EQ(big.segments(), 1u);
  drain(big);
}

TEST(OutputQueueMemory, ARunOfSmallSendsFillsGrowingBlocksNotOneEach) {
  OutputQueue q;
  const std::string message(100, 'm');
  constexpr int kMessages = 1000;
  for (int i = 0; i < kMessages; ++i) q.append_copy(message.data(), message.size());
  EXPECT_EQ(q.bytes(), kMessages * message.size());
  // Blocks double up to 4 KiB: 64 KiB of 100-byte messages needs ~30 segments, not 1,000,
  // and wastes under one block of room.
  EXPECT_LE(q.segments(), 40u);
  EXPECT_LE(q.heap_capacity(), q.bytes() + OutputQueue::kHeapBlock);
  // The bytes stay in order.
  std::vector<iovec> iov(q.segments());
  unsigned n = q.fill(iov.data(), static_cast<unsigned>(iov.size()));
  std::size_t seen = 0;
  for (unsigned i = 0; i < n; ++i) {
    for (std::size_t k = 0; k < iov[i].iov_len; ++k) {
      ASSERT_EQ(static_cast<const char*>(iov[i].iov_base)[k], 'm');
    }
    seen += iov[i].iov_len;
  }
  EXPECT_EQ(seen, q.bytes());
  drain(q);
}

TEST(OutputQueueMemory, AFollowingSmallSendFoldsIntoTheBlocksRoom) {
  OutputQueue q;
  q.append_copy("abc", 3);  // a 64-byte block: 61 bytes of room
  EXPECT_TRUE(q.fold("defg", 4));
  EXPECT_EQ(q.segments(), 1u);
  EXPECT_EQ(q.heap_capacity(), 64u);
  drain(q);
}

}  // namespace
