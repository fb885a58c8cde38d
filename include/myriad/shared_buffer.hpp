// Public. Immutable bytes shared by reference: encode a message once, send it to many
// connections without copying it for each.
#pragma once

#include <atomic>
#include <cstddef>
#include <new>
#include <span>
#include <string_view>
#include <utility>

namespace myriad {

class ShardImpl;

namespace detail {
// The one allocation behind a SharedBuffer: this header, then the bytes.
struct SharedBlock {
  explicit SharedBlock(std::size_t n) : refs(1), size(n) {}

  std::atomic<long> refs;
  std::size_t size;

  std::byte* bytes() { return reinterpret_cast<std::byte*>(this + 1); }
  static SharedBlock* allocate(std::size_t size);  // refs = 1
  static void acquire(SharedBlock* block) { block->refs.fetch_add(1, std::memory_order_relaxed); }
  static void release(SharedBlock* block) {
    if (block->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) free(block);
  }
  static void free(SharedBlock* block);
};
static_assert(sizeof(SharedBlock) == 16, "the bytes follow the header, 16-byte aligned");
}  // namespace detail

// Immutable, reference-counted bytes. One allocation per buffer (a 16-byte header and the
// bytes), freed when the last reference goes; Connection::send(const SharedBuffer&) queues a
// reference, not a copy, and the connection's output queue keeps it until the kernel has taken
// the bytes (or the connection is gone, also when it closes mid-send).
//
// Thread rule: the reference count is atomic, so a buffer may be made on any thread, copied to
// any shard and sent from there; the bytes never change after make()/copy() returns, so any
// thread may read them. A single SharedBuffer object (like a std::shared_ptr) must not be
// assigned on one thread while another reads it: copy it, and hand each thread its copy.
class SharedBuffer {
 public:
  SharedBuffer() = default;  // empty: size() 0, use_count() 0
  SharedBuffer(const SharedBuffer& other) noexcept : block_(other.block_) {
    if (block_ != nullptr) detail::SharedBlock::acquire(block_);
  }
  SharedBuffer(SharedBuffer&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}
  SharedBuffer& operator=(const SharedBuffer& other) noexcept {
    SharedBuffer(other).swap(*this);
    return *this;
  }
  SharedBuffer& operator=(SharedBuffer&& other) noexcept {
    SharedBuffer(std::move(other)).swap(*this);
    return *this;
  }
  ~SharedBuffer() { reset(); }

  // A buffer holding a copy of bytes. Copying nothing gives the empty buffer.
  static SharedBuffer copy(std::span<const std::byte> bytes);
  static SharedBuffer copy(std::string_view bytes) {
    return copy(std::as_bytes(std::span(bytes.data(), bytes.size())));
  }
  // A buffer of size bytes written in place by fill(std::span<std::byte>), called once, on this
  // thread, before the buffer is shared: it must write all size bytes. (Encoding straight into
  // the buffer saves the copy that copy() makes.) If fill throws, nothing is allocated for good.
  template <class Fill>
  static SharedBuffer make(std::size_t size, Fill&& fill) {
    SharedBuffer buffer;
    if (size == 0) return buffer;
    buffer.block_ = detail::SharedBlock::allocate(size);
    std::forward<Fill>(fill)(std::span<std::byte>(buffer.block_->bytes(), size));
    return buffer;
  }

  std::span<const std::byte> bytes() const {
    return block_ == nullptr ? std::span<const std::byte>()
                             : std::span<const std::byte>(block_->bytes(), block_->size);
  }
  std::string_view view() const {
    return block_ == nullptr
               ? std::string_view()
               : std::string_view(reinterpret_cast<const char*>(block_->bytes()), block_->size);
  }
  std::size_t size() const { return block_ == nullptr ? 0 : block_->size; }
  bool empty() const { return size() == 0; }
  // References held now, output queues included (0 for the empty buffer). A snapshot: other
  // threads may change it at any moment. For tests and diagnostics.
  long use_count() const {
    return block_ == nullptr ? 0 : block_->refs.load(std::memory_order_acquire);
  }

  // Drops this reference; the buffer becomes empty.
  void reset() noexcept {
    if (block_ != nullptr) detail::SharedBlock::release(std::exchange(block_, nullptr));
  }
  void swap(SharedBuffer& other) noexcept { std::swap(block_, other.block_); }

 private:
  friend class ShardImpl;
  detail::SharedBlock* block_ = nullptr;
};

}  // namespace myriad
