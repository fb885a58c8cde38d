// SharedBuffer's one allocation: the header and the bytes together.
#include <myriad/shared_buffer.hpp>

#include <cstring>

namespace myriad {
namespace detail {

SharedBlock* SharedBlock::allocate(std::size_t size) {
  void* memory = ::operator new(sizeof(SharedBlock) + size);
  return new (memory) SharedBlock(size);
}

void SharedBlock::free(SharedBlock* block) {
  block->~SharedBlock();
  ::operator delete(static_cast<void*>(block));
}

}  // namespace detail

SharedBuffer SharedBuffer::copy(std::span<const std::byte> bytes) {
  return make(bytes.size(), [bytes](std::span<std::byte> out) {
    std::memcpy(out.data(), bytes.data(), bytes.size());
  });
}

}  // namespace myriad
