// The provided-buffer-ring wrapper (see buffer_ring.hpp): registration and its undoing.
#include "uring/buffer_ring.hpp"

#include <sys/mman.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace myriad::detail::uring {
namespace {

int register_group0(io_uring& ring, io_uring_buf_ring* br, uint32_t entries) {
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br);
  reg.ring_entries = entries;
  reg.bgid = 0;
  return io_uring_register_buf_ring(&ring, &reg, 0);
}

}  // namespace

void BufferRing::create(io_uring& ring, uint32_t entries) {
  entries_ = entries;
  mask_ = entries - 1;
  bytes_ = std::size_t{entries} * sizeof(io_uring_buf);
  void* mem = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::runtime_error("buffer ring: out of memory");
  br_ = static_cast<io_uring_buf_ring*>(mem);
  int rc = register_group0(ring, br_, entries_);
  if (rc < 0)
    throw std::runtime_error(std::string("io_uring register buffer ring: ") + std::strerror(-rc));
  io_uring_buf_ring_init(br_);
}

void BufferRing::destroy() {
  if (br_ != nullptr) ::munmap(br_, bytes_);
  br_ = nullptr;
}

void BufferRing::reregister(io_uring& ring) {
  io_uring_buf_ring_init(br_);
  int rc = register_group0(ring, br_, entries_);
  if (rc < 0)
    throw std::runtime_error(std::string("io_uring re-register buffer ring: ") +
                             std::strerror(-rc));
}

}  // namespace myriad::detail::uring
