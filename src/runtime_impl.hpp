// Internal. What the shards of one Runtime share: the config, the backend choice, the receive
// pool's memory, the worker pool and the global count of open connections.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

#include <myriad/config.hpp>
#include <myriad/runtime.hpp>

#include "backend.hpp"
#include "shard_impl.hpp"
#include "worker_pool.hpp"

namespace myriad {

class RuntimeImpl {
 public:
  RuntimeImpl(Runtime& facade, Config config);
  ~RuntimeImpl();

  Runtime& facade;
  const Config config;
  detail::BackendChoice choice;
  unsigned shard_count = 0;
  uint32_t chunks_per_shard = 0;
  // Connections one shard may hold; rounded up to whole rings on io_uring.
  uint32_t shard_capacity = 0;
  std::byte* pool_memory = nullptr;
  std::size_t pool_bytes = 0;
  std::unique_ptr<detail::WorkerPool> workers;
  std::vector<std::unique_ptr<ShardImpl>> shards;
  std::vector<std::thread> threads;
  // Slots in use over all shards (open, opening and closing connections), for max_connections.
  std::atomic<std::size_t> open_slots{0};
  std::atomic<bool> started{false};
  std::atomic<bool> stopping{false};
  std::atomic<unsigned> running_shards{0};
};

}  // namespace myriad
