// Public. The runtime: a set of shards, their listeners and the worker pool.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include <myriad/address.hpp>
#include <myriad/config.hpp>
#include <myriad/counters.hpp>
#include <myriad/shard.hpp>

namespace myriad {

class Handler;
class RuntimeImpl;

// What the runtime chose at start-up, for the start-up line and for tests.
struct BackendInfo {
  BackendKind kind = BackendKind::kAuto;  // the one running: kUring or kEpoll
  std::string name;                       // "io_uring" or "epoll"
  std::string reason;                     // why this one (e.g. why io_uring was not used)
  std::string features;                   // what the backend found and uses
  std::size_t capacity = 0;               // connections the runtime can hold at once
  unsigned shards = 0;
};

// Lifecycle: construct (chooses the backend: throws std::runtime_error if a forced backend is
// unavailable), listen(), then either start() ... stop() and wait(), or run() on a thread of
// yours until stop(). Construction, listen(), start(), run(), wait() and destruction belong to
// the thread that owns the Runtime; stop() may come from any thread or a signal handler, and
// the methods marked "any thread" from anywhere. The destructor stops and waits. Not copyable
// or movable.
class Runtime {
 public:
  explicit Runtime(Config config = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Listen on `at` with one SO_REUSEPORT socket per shard, so the kernel spreads connections
  // over the shards. Call before start(). Returns the bound address (port 0 resolved).
  // The handler is shared by every shard (see Handler).
  Address listen(const Address& at, Handler& handler);
  // As above, with one handler per shard made by factory(shard) on that shard's thread, before
  // the shard accepts or runs anything else (Shard::handler<H>() finds it again); the runtime
  // owns them and destroys them with itself. Per-shard state lives well in such a handler.
  Address listen(const Address& at, std::function<std::unique_ptr<Handler>(Shard&)> factory);

  // Starts the shard threads. Throws if a shard cannot set up its backend.
  void start();
  // Instead of start() and wait(): runs shard 0 on the calling thread (the others on threads of
  // their own) and returns once every shard has finished, after stop(). One shard and no workers
  // leave the process a single thread, and the kernel then skips the file reference count that
  // every socket call takes in a multi-threaded process. on_started, if given, runs on the
  // calling thread as shard 0 (Shard::current()) once every shard serves: the place to print a
  // start-up line or set a timer. Throws what start() throws, or what on_started throws (after
  // shutting down).
  void run(const std::function<void()>& on_started = {});
  // Thread-safe and async-signal-safe. Graceful shutdown: stop accepting, stop receiving, let
  // queued output drain for up to Config::drain_timeout, then close every connection (on_close:
  // kShutdown).
  void stop();
  // Blocks until every shard has finished.
  void wait();
  bool running() const;

  // Any thread, from construction on (the shards exist, and stay, until the destructor).
  unsigned shard_count() const;
  Shard& shard(unsigned index);  // throws std::out_of_range past shard_count()
  const Config& config() const;
  BackendInfo backend() const;
  // Any thread: the sum of every shard's counters.
  Counters counters() const;

  // Any thread. Posts fn(shard) to every shard (Shard::post, so in posting order per shard),
  // shard 0 first; each shard gets its own copy of fn. The calling shard, if any, is included
  // and runs it after the current callback returns. Reach every connection of a topic, every
  // shard's handler, or gather per-shard figures this way. Costs shard_count() posts.
  void post_all(const std::function<void(Shard&)>& fn);

 private:
  std::unique_ptr<RuntimeImpl> impl_;
};

}  // namespace myriad
