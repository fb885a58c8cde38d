// Unit tests for SharedBuffer (include/myriad/shared_buffer.hpp) and the output queue's shared
// segments (src/output_queue.hpp).
#include <myriad/shared_buffer.hpp>

#include <gtest/gtest.h>
#include <sys/uio.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "output_queue.hpp"

namespace {

using myriad::SharedBuffer;
using myriad::detail::OutputQueue;

TEST(SharedBuffer, EmptyByDefaultAndWhenCopyingNothing) {
  SharedBuffer none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.size(), 0u);
  EXPECT_EQ(none.use_count(), 0);
  EXPECT_TRUE(none.view().empty());
  SharedBuffer copied = SharedBuffer::copy(std::string_view());
  EXPECT_TRUE(copied.empty());
  EXPECT_EQ(copied.use_count(), 0);
}

TEST(SharedBuffer, CopyHoldsTheBytes) {
  std::string text = "hello, subscribers";
  SharedBuffer b = SharedBuffer::copy(text);
  text[0] = 'J';  // the buffer has its own copy
  EXPECT_EQ(b.view(), "hello, subscribers");
  EXPECT_EQ(b.size(), 18u);
  EXPECT_EQ(b.bytes().size(), 18u);
  EXPECT_EQ(static_cast<const void*>(b.bytes().data()), static_cast<const void*>(b.view().data()));
  EXPECT_EQ(b.use_count(), 1);
}

TEST(SharedBuffer, MakeFillsInPlaceOnce) {
  int calls = 0;
  SharedBuffer b = SharedBuffer::make(5, [&](std::span<std::byte> out) {
    ++calls;
    ASSERT_EQ(out.size(), 5u);
    std::memcpy(out.data(), "abcde", 5);
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(b.view(), "abcde");
  SharedBuffer zero = SharedBuffer::make(0, [&](std::span<std::byte>) { ++calls; });
  EXPECT_TRUE(zero.empty());
  EXPECT_EQ(calls, 1) << "nothing to fill for an empty buffer";
}

TEST(SharedBuffer, AFillThatThrowsLeavesNothingBehind) {
  // Under AddressSanitizer a leak here fails the run.
  EXPECT_THROW(SharedBuffer::make(64, [](std::span<std::byte>) { throw std::runtime_error("x"); }),
               std::runtime_error);
}

TEST(SharedBuffer, CopiesShareMovesTransfer) {
  SharedBuffer a = SharedBuffer::copy(std::string_view("x"));
  SharedBuffer b = a;
  EXPECT_EQ(a.use_count(), 2);
  EXPECT_EQ(a.bytes().data(), b.bytes().data()) << "a copy is a reference, not new bytes";
  SharedBuffer c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty, by contract
  EXPECT_EQ(a.use_count(), 2);
  c = a;  // self-family assignment keeps the count right
  EXPECT_EQ(a.use_count(), 2);
  c = c;
  EXPECT_EQ(a.use_count(), 2);
  c.reset();
  EXPECT_EQ(a.use_count(), 1);
  SharedBuffer d = SharedBuffer::copy(std::string_view("y"));
  d = std::move(a);
  EXPECT_EQ(d.view(), "x");
  EXPECT_EQ(d.use_count(), 1);
}

TEST(SharedBuffer, ReferencesFromManyThreadsBalance) {
  SharedBuffer b = SharedBuffer::copy(std::string(1000, 'z'));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([b] {
      std::vector<SharedBuffer> held;
      for (int i = 0; i < 10000; ++i) {
        held.push_back(b);
        if (held.size() > 16) held.erase(held.begin());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(b.use_count(), 1);
}

std::string contents(const OutputQueue& q) {
  iovec iov[64];
  unsigned n = q.fill(iov, 64);
  std::string out;
  for (unsigned i = 0; i < n; ++i)
    out.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  return out;
}

// The queue's reference is one of its own, taken from the block the buffer holds.
myriad::detail::SharedBlock* block_of(const SharedBuffer& b) {
  return reinterpret_cast<myriad::detail::SharedBlock*>(const_cast<std::byte*>(b.bytes().data())) -
         1;
}

TEST(OutputQueueShared, HoldsAReferenceUntilConsumed) {
  SharedBuffer b = SharedBuffer::copy(std::string_view("shared"));
  OutputQueue q;
  q.append_copy("copy:", 5);
  q.push_shared(block_of(b));
  EXPECT_EQ(b.use_count(), 2);
  EXPECT_EQ(q.bytes(), 11u);
  EXPECT_EQ(contents(q), "copy:shared");
  auto no_chunks = [](uint32_t) { FAIL() << "no pool chunk was queued"; };
  q.consume(7, no_chunks);  // into the shared bytes: still referenced
  EXPECT_EQ(b.use_count(), 2);
  EXPECT_EQ(contents(q), "ared");
  q.consume(4, no_chunks);
  EXPECT_EQ(b.use_count(), 1);
  EXPECT_TRUE(q.empty());
}

TEST(OutputQueueShared, NothingIsEverWrittenIntoSharedBytes) {
  SharedBuffer b = SharedBuffer::copy(std::string_view("ro"));
  OutputQueue q;
  q.push_shared(block_of(b));
  EXPECT_FALSE(q.fold("x", 1)) << "a shared tail has no room";
  q.append_copy("after", 5);
  EXPECT_EQ(b.view(), "ro");
  EXPECT_EQ(contents(q), "roafter");
  EXPECT_EQ(q.segments(), 2u);
  q.clear([](uint32_t) {});
  EXPECT_EQ(b.use_count(), 1);
}

TEST(OutputQueueShared, TheSameBufferQueuedTwiceAndDestroyedQueued) {
  SharedBuffer b = SharedBuffer::copy(std::string_view("ab"));
  {
    OutputQueue q;
    q.push_shared(block_of(b));
    q.push_shared(block_of(b));
    EXPECT_EQ(b.use_count(), 3);
    EXPECT_EQ(contents(q), "abab");
  }  // the destructor drops what is still queued
  EXPECT_EQ(b.use_count(), 1);
}

}  // namespace
