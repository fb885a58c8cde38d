// Public. A shard: one thread, one event loop, its own connections, timers and buffers.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include <myriad/address.hpp>
#include <myriad/config.hpp>
#include <myriad/counters.hpp>
#include <myriad/offload.hpp>

namespace myriad {

class Handler;
class Runtime;

// A timer set with Shard::after(). Zero is never a valid id.
using TimerId = uint64_t;

// Implemented by the runtime; handlers reach it through Connection::shard() or Shard::current().
// Methods are for the shard's own thread unless marked thread-safe.
class Shard {
 public:
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  // The shard running on the calling thread, or nullptr.
  static Shard* current();

  unsigned index() const;
  Runtime& runtime() const;

  // Thread-safe. Runs fn on this shard's thread, in posting order (cross-shard messaging).
  void post(std::function<void()> fn);

  // Runs fn once after d, on this shard, to the timer tick's granularity. O(1) to set and to
  // cancel. Returns 0 if the shard has no timer left to give (see Config).
  TimerId after(Duration d, std::function<void()> fn);
  bool cancel(TimerId id);

  // Opens an outbound connection; the handler gets on_open, or on_close with kConnectFailed.
  // user is the connection's initial Connection::user().
  void connect(const Address& to, Handler& handler, void* user = nullptr);

  // The loop's clock: steady_clock, read once per loop turn.
  std::chrono::steady_clock::time_point now() const;
  // Thread-safe snapshot.
  Counters counters() const;

  // Runs work on the worker pool and done(result) back on this shard (not tied to a connection).
  template <class Work, class Done>
  void offload(Work&& work, Done&& done);

 protected:
  Shard() = default;
  ~Shard() = default;

 private:
  void offload_job(std::unique_ptr<detail::OffloadJob> job);
};

template <class Work, class Done>
void Shard::offload(Work&& work, Done&& done) {
  offload_job(detail::make_offload_job(std::forward<Work>(work), std::forward<Done>(done)));
}

}  // namespace myriad
