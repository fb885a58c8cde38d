// Public. A handle to one connection, and the reasons a connection ends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>

#include <myriad/chunk.hpp>
#include <myriad/config.hpp>
#include <myriad/offload.hpp>
#include <myriad/shared_buffer.hpp>

namespace myriad {

class Shard;
class ShardImpl;

enum class CloseReason : uint8_t {
  kPeerClosed,     // the peer closed its side; we finished sending and closed ours
  kReset,          // the peer reset the connection, or a socket error
  kIdleTimeout,    // nothing received for Config::idle_timeout
  kSlowReader,     // queued output passed Config::max_write_queue
  kInputOverflow,  // the spill buffer passed Config::max_spill
  kLocal,          // a handler closed or aborted it
  kShutdown,       // graceful shutdown of the runtime
  kConnectFailed,  // an outbound connection that never opened (the error says why)
};
const char* to_string(CloseReason reason);

namespace detail {
// The typed state behind Connection::emplace_state(): owned by the connection.
struct StateBox {
  virtual ~StateBox() = default;
  virtual void* get() = 0;
  const void* type = nullptr;
};
template <class T>
inline constexpr char kStateTag = 0;  // its address names T
template <class T>
struct TypedState final : StateBox {
  template <class... Args>
  explicit TypedState(Args&&... args) : value(std::forward<Args>(args)...) {
    type = &kStateTag<T>;
  }
  void* get() override { return &value; }
  T value;
};
}  // namespace detail

// A small value handle (shard, slot, generation): cheap to copy, safe to keep and to hand to
// other threads. On a handle whose connection has closed every method does nothing and returns
// false (or zero, or nullptr); valid() says which.
//
// The thread contract (the one place it is stated; docs/API.md repeats it):
//  - Any thread: id(), generation(), shard(), ==, std::hash; and the actions send() (every
//    form), close(), abort(), shutdown_write(), pause_receiving(), resume_receiving() and
//    offload(). Called off the connection's shard, an action is posted to that shard and runs
//    there in posting order (after what the same thread posted before, to the same shard); a
//    send then returns true when posted, and its outcome shows on the shard (a refused send is
//    dropped, a send past max_write_queue closes the connection as a slow reader).
//  - The connection's own thread only: valid(), outbound(), user(), set_user(), state(),
//    emplace_state(), reset_state(), queued(), writable(), spill(), spill_append(),
//    spill_consume(). They read or change the shard's private state. "Own thread" is the shard's
//    thread, which runs every handler callback, timer and posted task of that shard; with
//    Config::handlers_on_workers it is also the worker running this connection's callback.
//    Debug builds (no NDEBUG) abort with a message when one of these is called from elsewhere.
class Connection {
 public:
  Connection() = default;

  bool valid() const;
  // Dense per-shard number; reused after close (the generation tells incarnations apart).
  uint32_t id() const { return id_; }
  uint16_t generation() const { return gen_; }
  Shard& shard() const;
  bool outbound() const;

  // Typed per-connection state, owned by the connection: constructs a T from args (destroying
  // the state, or forgetting the user() pointer, set before) and returns it, or nullptr (and
  // constructs nothing) when the connection is not valid. The T is destroyed on the own thread
  // right after on_close returns, or by reset_state() or a later emplace_state()/set_user().
  // Costs one allocation (the T and a 16-byte header); the connection's record holds only the
  // pointer, so an idle connection with state costs its record plus the T. (A CoroutineHandler
  // keeps its Stream in this slot: coroutines keep their state in locals.)
  template <class T, class... Args>
  T* emplace_state(Args&&... args);
  // The state if it was made by emplace_state<T>() (exactly T), else nullptr.
  template <class T>
  T* state() const;
  void reset_state() { adopt_state(nullptr); }

  // The untyped form: one pointer the handler owns and frees (in on_close). With typed state
  // set, user() returns the T's address.
  void* user() const;
  void set_user(void* user);

  // Queue bytes for sending; they leave in order, gathered into one send per loop turn (see
  // docs/API.md for what each form costs). The chunk form sends without copying; small chunks
  // are folded into the queue's last chunk. Returns false when nothing was queued: the
  // connection is closing, or this send took the queue past Config::max_write_queue and the
  // connection is being closed as a slow reader.
  bool send(Chunk&& data);
  bool send(std::span<const std::byte> data);
  bool send(std::string_view data) {
    return send(std::as_bytes(std::span(data.data(), data.size())));
  }
  // Zero-copy send of bytes many connections may share: the queue keeps a reference to the
  // buffer (not a copy) until the kernel has taken the bytes, or the connection is gone.
  bool send(const SharedBuffer& buffer);
  // Bytes queued and not yet taken by the kernel.
  std::size_t queued() const;
  // False while above the high write watermark (until the queue drains below the low one).
  bool writable() const;

  // Stop receiving, send what is queued, then close (on_close says kLocal).
  void close();
  // Close at once, dropping queued output; the peer sees a reset.
  void abort();
  // The same, reported to on_close and counted as reason: kInputOverflow for input the
  // protocol cannot take (a frame too large, a malformed request), kSlowReader or kIdleTimeout
  // for the handler's own policies. Any other reason is reported as kLocal.
  void abort(CloseReason reason);
  // Send what is queued, then shut down our write side; receiving goes on.
  void shutdown_write();
  // Flow control by the handler: no on_data until resumed. Receives pause by themselves too,
  // above the write watermark or the connection's buffer share.
  void pause_receiving();
  void resume_receiving();

  // The spill buffer: bytes a handler must keep across receives (a partial frame). It exists
  // only while it holds bytes. spill_append returns false when it would pass Config::max_spill;
  // the connection is then closed with kInputOverflow.
  std::span<const std::byte> spill() const;
  bool spill_append(std::span<const std::byte> data);
  void spill_consume(std::size_t n);

  // Runs work() on the worker pool and then done(connection, result) back on this shard (also
  // when the connection closed meanwhile: check valid()). While the pool's queue is full the
  // job waits on the shard and the connection stops receiving, so nothing queues without bound.
  template <class Work, class Done>
  void offload(Work&& work, Done&& done);

  friend bool operator==(const Connection& a, const Connection& b) {
    return a.shard_ == b.shard_ && a.id_ == b.id_ && a.gen_ == b.gen_;
  }

 private:
  friend class ShardImpl;
  friend struct std::hash<Connection>;
  Connection(ShardImpl* shard, uint32_t id, uint16_t gen) : shard_(shard), id_(id), gen_(gen) {}
  void offload_job(std::unique_ptr<detail::OffloadJob> job);
  // (shard index, id, generation) packed without overlap, then mixed: distinct handles of one
  // runtime never collide, and dense ids spread over the buckets.
  std::size_t hash() const noexcept;
  detail::StateBox* state_box() const;
  // Takes box (nullptr: none); returns false, having destroyed it, if the connection is gone.
  bool adopt_state(detail::StateBox* box);

  ShardImpl* shard_ = nullptr;
  uint32_t id_ = 0;
  uint16_t gen_ = 0;
};

template <class T, class... Args>
T* Connection::emplace_state(Args&&... args) {
  if (!valid()) return nullptr;
  auto* box = new detail::TypedState<T>(std::forward<Args>(args)...);
  return adopt_state(box) ? &box->value : nullptr;
}

template <class T>
T* Connection::state() const {
  detail::StateBox* box = state_box();
  if (box == nullptr || box->type != &detail::kStateTag<T>) return nullptr;
  return &static_cast<detail::TypedState<T>*>(box)->value;
}

template <class Work, class Done>
void Connection::offload(Work&& work, Done&& done) {
  offload_job(detail::make_offload_job(
      std::forward<Work>(work),
      [connection = *this, done = std::forward<Done>(done)](auto&&... result) mutable {
        done(connection, std::forward<decltype(result)>(result)...);
      }));
}

}  // namespace myriad

// Connections as keys of unordered containers: equal handles (same shard, slot, generation)
// hash equal; a later connection reusing the slot is a different key.
template <>
struct std::hash<myriad::Connection> {
  std::size_t operator()(const myriad::Connection& c) const noexcept { return c.hash(); }
};
