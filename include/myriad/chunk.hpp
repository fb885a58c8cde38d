// Public. A received buffer: a lease on one chunk of the shard's receive pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>

namespace myriad {

class ShardImpl;

// Move-only. The chunk goes back to the pool (and, with io_uring, to the kernel's buffer ring)
// when the Chunk is destroyed or released, so a handler that is done with the bytes should let
// it go at once; one that keeps it counts it against its connection's share of the pool
// (Config::max_connection_buffers). Passing it to Connection::send() queues the bytes without a
// copy and releases the chunk once they are sent.
// Thread rule: create, read and destroy on the shard that received it. (With
// handlers_on_workers, a worker may hold and destroy it; the release is sent back to the shard.)
class Chunk {
 public:
  Chunk() = default;
  Chunk(Chunk&& other) noexcept { take(other); }
  Chunk& operator=(Chunk&& other) noexcept {
    if (this != &other) {
      release();
      take(other);
    }
    return *this;
  }
  Chunk(const Chunk&) = delete;
  Chunk& operator=(const Chunk&) = delete;
  ~Chunk() { release(); }

  const std::byte* data() const { return data_; }
  std::byte* data() { return data_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_}; }
  explicit operator bool() const { return shard_ != nullptr; }

  // Drops the first n bytes (n <= size()).
  void consume(std::size_t n) {
    data_ += n;
    size_ -= n;
  }
  // Gives the chunk back to the pool now.
  void release();

 private:
  friend class ShardImpl;
  Chunk(ShardImpl* shard, uint32_t id, std::byte* data, std::size_t size)
      : shard_(shard), id_(id), size_(static_cast<uint32_t>(size)), data_(data) {}
  void take(Chunk& other) {
    shard_ = std::exchange(other.shard_, nullptr);
    id_ = other.id_;
    size_ = std::exchange(other.size_, 0);
    data_ = std::exchange(other.data_, nullptr);
  }

  ShardImpl* shard_ = nullptr;
  uint32_t id_ = 0;
  uint32_t size_ = 0;
  std::byte* data_ = nullptr;
};

}  // namespace myriad
