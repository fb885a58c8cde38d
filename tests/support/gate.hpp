// Test support: a gate that test code opens and handler or worker code waits at, so a test
// decides when work proceeds instead of guessing with sleeps. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace test {

class Gate {
 public:
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    changed_.notify_all();
  }
  // Blocks until open() (or the limit, a hang guard: returns false then).
  bool wait(std::chrono::milliseconds limit = std::chrono::seconds(60)) {
    std::unique_lock lock(mutex_);
    ++waiting_;
    changed_.notify_all();
    bool opened = changed_.wait_for(lock, limit, [this] { return open_; });
    --waiting_;
    return opened;
  }
  // How many are waiting at the gate now.
  int waiting() {
    std::lock_guard lock(mutex_);
    return waiting_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = false;
  int waiting_ = 0;
};

// Opens the gate when it goes out of scope: declared after the server it guards, it opens
// before the server stops, so a failing test never leaves a worker waiting forever.
class OpenOnExit {
 public:
  explicit OpenOnExit(Gate& gate) : gate_(gate) {}
  ~OpenOnExit() { gate_.open(); }

 private:
  Gate& gate_;
};

}  // namespace test
