// Public. A shard: one thread, one event loop, its own connections, timers and buffers.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include <myriad/address.hpp>
#include <myriad/config.hpp>
#include <myriad/counters.hpp>
#include <myriad/handler.hpp>
#include <myriad/offload.hpp>

namespace myriad {

class Runtime;

// A timer set with Shard::after(). Zero is never a valid id.
using TimerId = uint64_t;

// Implemented by the runtime, which owns it; it lives as long as the Runtime. Handlers reach it
// through Connection::shard() or Shard::current(), other threads through Runtime::shard(i).
//
// Threads: "any thread" methods may be called from anywhere, a signal handler excepted; the
// others are for the shard's own thread (its handler callbacks, timers and posted tasks), and
// debug builds assert it. To act on a shard from elsewhere, post() a task to it.
class Shard {
 public:
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  // Any thread: the shard running on the calling thread, or nullptr.
  static Shard* current();

  // Any thread.
  unsigned index() const;
  Runtime& runtime() const;

  // Any thread. Runs fn on this shard's thread; what one thread posts to one shard runs in
  // posting order (cross-shard messaging). From the shard itself, fn runs after the current
  // callback returns, never inside the call. Tasks posted before the shard starts run once it
  // serves. Cost: one std::function and a lock per post, one wake-up per batch.
  void post(std::function<void()> fn);

  // Own thread. Runs fn once after d, on this shard, to the timer tick's granularity. O(1) to
  // set and to cancel, no allocation beyond fn's own. Returns 0 if the shard has no timer left
  // to give (a million per shard).
  TimerId after(Duration d, std::function<void()> fn);
  // Own thread. Runs fn every period (first after one period) until cancel(id): at a fixed
  // rate, so late firings do not push the later ones back, and turns missed while the shard
  // was busy are skipped rather than run in a burst. A period under Config::timer_tick fires
  // once per tick. fn may cancel its own timer. Returns 0 if period <= 0 or no timer is left.
  TimerId every(Duration period, std::function<void()> fn);
  // Own thread. Cancels a timer that has not fired (or a periodic one); false if it had fired,
  // was cancelled already, or is not this shard's.
  bool cancel(TimerId id);

  // Any thread (posted from elsewhere). Opens an outbound connection; the handler gets on_open,
  // or on_close with kConnectFailed. user is the connection's initial Connection::user().
  void connect(const Address& to, Handler& handler, void* user = nullptr);

  // The handler serving this shard's listener number `listener` (the order of the
  // Runtime::listen calls): the one listen(factory) made for this shard, or the shared one;
  // nullptr if there is no such listener. The factory runs on the shard's thread before the
  // shard accepts, runs a timer or a posted task, so on its own thread the answer never
  // changes. Any thread once Runtime::start() returned (or run()'s on_started ran); the
  // pointer is then good until the Runtime is destroyed, but using the handler from another
  // thread is yours to synchronise.
  Handler* listener_handler(std::size_t listener = 0) const;
  std::size_t listener_count() const;
  // The first listener handler of this shard that is an H (or derives from it), or nullptr:
  // the natural way to reach per-shard state kept in a handler made by listen(factory).
  // Same thread rules as listener_handler(); a dynamic_cast per listener.
  template <class H>
  H* handler() const;

  // Own thread. The loop's clock: steady_clock, read once per loop turn.
  std::chrono::steady_clock::time_point now() const;
  // Any thread. A snapshot.
  Counters counters() const;

  // Any thread (posted from elsewhere). Runs work on the worker pool and done(result) back on
  // this shard (not tied to a connection).
  template <class Work, class Done>
  void offload(Work&& work, Done&& done);

 protected:
  Shard() = default;
  ~Shard() = default;

 private:
  void offload_job(std::unique_ptr<detail::OffloadJob> job);
};

template <class H>
H* Shard::handler() const {
  for (std::size_t i = 0; i < listener_count(); ++i) {
    if (auto* h = dynamic_cast<H*>(listener_handler(i))) return h;
  }
  return nullptr;
}

template <class Work, class Done>
void Shard::offload(Work&& work, Done&& done) {
  offload_job(detail::make_offload_job(std::forward<Work>(work), std::forward<Done>(done)));
}

}  // namespace myriad
