// Internal. The bounded worker pool behind offload().
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace myriad::detail {

// Thread-safe. Tasks wait in one bounded FIFO; try_submit() refuses when it is full, so the
// caller (a shard) decides what waiting means: it stops reading that connection rather than
// queueing without bound.
class WorkerPool {
 public:
  WorkerPool(unsigned threads, std::size_t queue_capacity);
  ~WorkerPool();  // finishes queued tasks, then joins
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  bool try_submit(std::function<void()>& task);
  unsigned threads() const { return static_cast<unsigned>(threads_.size()); }

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> queue_;
  std::size_t capacity_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace myriad::detail
