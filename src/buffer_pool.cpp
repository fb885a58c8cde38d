#include "buffer_pool.hpp"

namespace myriad::detail {

BufferPool::BufferPool(std::byte* base, uint32_t chunk_size, uint32_t count)
    : base_(base), chunk_size_(chunk_size), count_(count) {
  free_.reserve(count);
  // Highest id first, so that take() hands out chunk 0, 1, 2 ... and touches pages in order.
  for (uint32_t id = count; id > 0; --id) free_.push_back(id - 1);
}

}  // namespace myriad::detail
