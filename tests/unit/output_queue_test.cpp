// Unit tests for a connection's output queue (src/output_queue.hpp).
#include "output_queue.hpp"

#include <gtest/gtest.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

using myriad::detail::OutputQueue;

// A stand-in for the receive pool: real memory per chunk, and a count of releases per id.
class FakePool {
 public:
  // A chunk of `capacity` bytes whose bytes [begin, end) hold `text` (padded with '.').
  std::byte* make(uint32_t id, uint32_t capacity, uint32_t begin, const std::string& text) {
    auto& mem = chunks_[id];
    mem.assign(capacity, std::byte{'.'});
    for (std::size_t i = 0; i < text.size(); ++i) mem[begin + i] = static_cast<std::byte>(text[i]);
    return mem.data();
  }
  // Pushes chunk id holding `text` at [begin, begin + size) of a capacity-byte chunk.
  void push(OutputQueue& q, uint32_t id, const std::string& text, uint32_t capacity,
            uint32_t begin = 0) {
    std::byte* base = make(id, capacity, begin, text);
    q.push_chunk(base, begin, begin + static_cast<uint32_t>(text.size()), capacity, id);
  }
  auto releaser() {
    return [this](uint32_t id) { ++released_[id]; };
  }
  int released(uint32_t id) const {
    auto it = released_.find(id);
    return it == released_.end() ? 0 : it->second;
  }
  std::size_t total_released() const {
    std::size_t n = 0;
    for (const auto& [id, count] : released_) n += static_cast<std::size_t>(count);
    return n;
  }
  const std::vector<std::byte>& memory(uint32_t id) { return chunks_[id]; }

 private:
  std::map<uint32_t, std::vector<std::byte>> chunks_;
  std::map<uint32_t, int> released_;
};

// Everything the queue would hand the kernel now, concatenated.
std::string contents(const OutputQueue& q, unsigned max_iov = 1024) {
  std::vector<iovec> iov(max_iov);
  unsigned n = q.fill(iov.data(), max_iov);
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  }
  return out;
}

TEST(OutputQueue, StartsEmpty) {
  OutputQueue q;
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.bytes(), 0u);
  EXPECT_EQ(q.segments(), 0u);
  iovec iov[4];
  EXPECT_EQ(q.fill(iov, 4), 0u);
}

TEST(OutputQueue, PushChunkQueuesItsRangeInOrder) {
  FakePool pool;
  OutputQueue q;
  pool.push(q, 7, "hello ", 64, 10);
  pool.push(q, 3, "world", 32, 0);
  EXPECT_FALSE(q.empty());
  EXPECT_EQ(q.bytes(), 11u);
  EXPECT_EQ(q.segments(), 2u);

  iovec iov[4];
  ASSERT_EQ(q.fill(iov, 4), 2u);
  // The iovecs point into the chunks themselves (no copy).
  EXPECT_EQ(iov[0].iov_base, pool.memory(7).data() + 10);
  EXPECT_EQ(iov[0].iov_len, 6u);
  EXPECT_EQ(iov[1].iov_base, pool.memory(3).data());
  EXPECT_EQ(iov[1].iov_len, 5u);
  EXPECT_EQ(contents(q), "hello world");
  q.clear(pool.releaser());
}

TEST(OutputQueue, PartialConsumeKeepsTheRestInOrder) {
  FakePool pool;
  OutputQueue q;
  pool.push(q, 1, "abcdef", 16);
  pool.push(q, 2, "ghij", 16);
  pool.push(q, 3, "klmnop", 16);

  q.consume(2, pool.releaser());
  EXPECT_EQ(q.bytes(), 14u);
  EXPECT_EQ(contents(q), "cdefghijklmnop");
  EXPECT_EQ(pool.total_released(), 0u);

  // Exactly to the end of the first chunk: released, once.
  q.consume(4, pool.releaser());
  EXPECT_EQ(pool.released(1), 1);
  EXPECT_EQ(q.segments(), 2u);
  EXPECT_EQ(contents(q), "ghijklmnop");

  // Across a boundary, ending inside the third chunk.
  q.consume(6, pool.releaser());
  EXPECT_EQ(pool.released(2), 1);
  EXPECT_EQ(pool.released(3), 0);
  EXPECT_EQ(q.bytes(), 4u);
  EXPECT_EQ(contents(q), "mnop");

  q.consume(4, pool.releaser());
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.segments(), 0u);
  EXPECT_EQ(pool.released(1), 1);
  EXPECT_EQ(pool.released(2), 1);
  EXPECT_EQ(pool.released(3), 1);
  EXPECT_EQ(pool.total_released(), 3u);
}

TEST(OutputQueue, ConsumeReleasesEveryChunkItEmptiesInOneCall) {
  FakePool pool;
  OutputQueue q;
  pool.push(q, 10, "aa", 8);
  pool.push(q, 11, "bbb", 8);
  pool.push(q, 12, "cccc", 8);
  std::vector<uint32_t> order;
  q.consume(7, [&](uint32_t id) { order.push_back(id); });
  EXPECT_EQ(order, (std::vector<uint32_t>{10, 11}));
  EXPECT_EQ(contents(q), "cc");
  q.consume(2, [&](uint32_t id) { order.push_back(id); });
  EXPECT_EQ(order, (std::vector<uint32_t>{10, 11, 12}));
}

TEST(OutputQueue, ClearReleasesEachChunkOnce) {
  FakePool pool;
  OutputQueue q;
  pool.push(q, 1, "one", 16);
  q.append_copy("heap", 4);                            // into chunk 1's room: 7 of 16 bytes
  q.append_copy(std::string(5000, 'x').data(), 5000);  // fills chunk 1, then a heap block
  pool.push(q, 2, "two", 16);
  pool.push(q, 3, "three", 16);
  q.consume(15, pool.releaser());
  EXPECT_EQ(pool.released(1), 0);
  q.consume(6, pool.releaser());  // into the heap block: chunk 1 is done
  EXPECT_EQ(pool.released(1), 1);

  q.clear(pool.releaser());
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.bytes(), 0u);
  EXPECT_EQ(q.segments(), 0u);
  EXPECT_EQ(pool.released(1), 1);
  EXPECT_EQ(pool.released(2), 1);
  EXPECT_EQ(pool.released(3), 1);
  EXPECT_EQ(pool.total_released(), 3u);
  // A cleared queue is usable again, and clearing again releases nothing more.
  q.clear(pool.releaser());
  EXPECT_EQ(pool.total_released(), 3u);
  pool.push(q, 4, "four", 16);
  EXPECT_EQ(contents(q), "four");
  q.consume(4, pool.releaser());
  EXPECT_EQ(pool.released(4), 1);
}

TEST(OutputQueue, AppendCopyFillsTheTailThenHeapBlocks) {
  FakePool pool;
  OutputQueue q;
  pool.push(q, 1, "head", 10);  // 6 bytes of room
  std::string big;
  for (int i = 0; i < 10000; ++i) big.push_back(static_cast<char>('a' + i % 26));
  q.append_copy(big.data(), big.size());
  EXPECT_EQ(q.bytes(), 4 + big.size());
  EXPECT_EQ(contents(q), "head" + big);
  // The first 6 bytes went into the chunk's own memory.
  EXPECT_EQ(static_cast<char>(pool.memory(1)[4]), big[0]);
  EXPECT_EQ(static_cast<char>(pool.memory(1)[9]), big[5]);
  EXPECT_GE(q.segments(), 2u);

  // Consuming the copy never calls release for heap blocks, only for the chunk.
  q.consume(q.bytes(), pool.releaser());
  EXPECT_EQ(pool.total_released(), 1u);
  EXPECT_EQ(pool.released(1), 1);
  EXPECT_TRUE(q.empty());
}

TEST(OutputQueue, AppendCopyIntoAnEmptyQueueAndIntoAHeapTail) {
  OutputQueue q;
  int releases = 0;
  auto release = [&](uint32_t) { ++releases; };
  q.append_copy("abc", 3);
  EXPECT_EQ(q.bytes(), 3u);
  EXPECT_EQ(q.segments(), 1u);
  q.append_copy("defg", 4);  // room left in the heap block: no new segment
  EXPECT_EQ(q.segments(), 1u);
  EXPECT_EQ(contents(q), "abcdefg");
  q.append_copy("", 0);
  EXPECT_EQ(q.bytes(), 7u);
  q.consume(7, release);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(releases, 0);
}

TEST(OutputQueue, FoldOnlyWhenTheTailHasRoomAndTheCopyIsSmall) {
  FakePool pool;
  OutputQueue q;
  EXPECT_FALSE(q.fold("x", 1)) << "nothing to fold into";
  EXPECT_EQ(q.bytes(), 0u);

  pool.push(q, 1, "ab", 8);  // 6 bytes of room
  EXPECT_FALSE(q.fold("1234567", 7)) << "does not fit";
  EXPECT_EQ(q.bytes(), 2u);
  EXPECT_EQ(contents(q), "ab");
  EXPECT_TRUE(q.fold("123456", 6)) << "fits exactly";
  EXPECT_EQ(q.bytes(), 8u);
  EXPECT_EQ(q.segments(), 1u);
  EXPECT_EQ(contents(q), "ab123456");
  // The bytes landed in the chunk's memory, right after its data.
  EXPECT_EQ(static_cast<char>(pool.memory(1)[2]), '1');
  EXPECT_FALSE(q.fold("z", 1)) << "full";

  // The size limit applies even when there is room.
  const std::size_t capacity = 4 * OutputQueue::kFoldLimit;
  pool.push(q, 2, "", static_cast<uint32_t>(capacity));
  std::string over(OutputQueue::kFoldLimit + 1, 'o');
  EXPECT_FALSE(q.fold(over.data(), over.size()));
  EXPECT_EQ(q.bytes(), 8u);
  std::string limit(OutputQueue::kFoldLimit, 'l');
  EXPECT_TRUE(q.fold(limit.data(), limit.size()));
  EXPECT_EQ(q.bytes(), 8u + OutputQueue::kFoldLimit);
  EXPECT_EQ(contents(q), "ab123456" + limit);
  q.clear(pool.releaser());
  EXPECT_EQ(pool.total_released(), 2u);
}

TEST(OutputQueue, FoldAfterTheQueueDrainedIsRefused) {
  FakePool pool;
  OutputQueue q;
  pool.push(q, 1, "ab", 64);
  q.consume(2, pool.releaser());
  ASSERT_EQ(pool.released(1), 1);
  // Chunk 1 went back to the pool: nothing may be written into it now.
  EXPECT_FALSE(q.fold("late", 4));
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(static_cast<char>(pool.memory(1)[2]), '.');
}

TEST(OutputQueue, FillRespectsMaxIovecs) {
  FakePool pool;
  OutputQueue q;
  for (uint32_t id = 0; id < 10; ++id)
    pool.push(q, id, std::string(1, static_cast<char>('0' + id)), 4);
  iovec iov[10];
  for (unsigned max = 0; max <= 10; ++max) {
    iovec guard[12];
    for (auto& g : guard) g = iovec{nullptr, 12345};
    unsigned n = q.fill(guard, max);
    EXPECT_EQ(n, max);
    for (unsigned i = 0; i < n; ++i) {
      ASSERT_EQ(guard[i].iov_len, 1u);
      EXPECT_EQ(*static_cast<const char*>(guard[i].iov_base), static_cast<char>('0' + i));
    }
    EXPECT_EQ(guard[max].iov_len, 12345u) << "wrote past max " << max;
  }
  EXPECT_EQ(q.fill(iov, 10), 10u);
  q.consume(3, pool.releaser());
  EXPECT_EQ(q.fill(iov, 10), 7u);
  EXPECT_EQ(*static_cast<const char*>(iov[0].iov_base), '3');
  q.clear(pool.releaser());
  EXPECT_EQ(pool.total_released(), 10u);
}

TEST(OutputQueue, ManySegmentsStayInOrderThroughConsumes) {
  // Enough segments, consumed in odd sizes, for the queue to compact its storage on the way;
  // bytes() and the contents follow a plain string model, and a chunk is released exactly when
  // the queue stops referring to it.
  FakePool pool;
  OutputQueue q;
  std::string model;
  std::mt19937 rng(5);
  uint32_t next_id = 0;
  for (int round = 0; round < 3000; ++round) {
    unsigned op = rng() % 4;
    if (op <= 1) {
      std::string text;
      std::size_t len = 1 + rng() % 40;
      for (std::size_t i = 0; i < len; ++i) text.push_back(static_cast<char>('A' + rng() % 26));
      pool.push(q, next_id++, text, static_cast<uint32_t>(len + rng() % 8), 0);
      model += text;
    } else if (op == 2) {
      std::string text(1 + rng() % 30, static_cast<char>('a' + rng() % 26));
      if (!q.fold(text.data(), text.size())) q.append_copy(text.data(), text.size());
      model += text;
    } else if (!model.empty()) {
      std::size_t n = 1 + rng() % model.size();
      q.consume(n, pool.releaser());
      model.erase(0, n);
    }
    ASSERT_EQ(q.bytes(), model.size());
    ASSERT_EQ(q.empty(), model.empty());
    std::vector<iovec> iov(4096);
    unsigned n = q.fill(iov.data(), 4096);
    std::string got;
    for (unsigned i = 0; i < n; ++i)
      got.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
    ASSERT_EQ(got, model) << "round " << round;
    for (uint32_t id = 0; id < next_id; ++id) {
      const std::byte* lo = pool.memory(id).data();
      const std::byte* hi = lo + pool.memory(id).size();
      bool referenced = false;
      for (unsigned i = 0; i < n; ++i) {
        auto* p = static_cast<const std::byte*>(iov[i].iov_base);
        referenced = referenced || (p >= lo && p < hi);
      }
      ASSERT_EQ(pool.released(id), referenced ? 0 : 1) << "chunk " << id << " round " << round;
    }
  }
  q.clear(pool.releaser());
  for (uint32_t id = 0; id < next_id; ++id) ASSERT_EQ(pool.released(id), 1) << "chunk " << id;
  EXPECT_EQ(pool.total_released(), next_id);
}

}  // namespace
