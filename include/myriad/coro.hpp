// Public. The coroutine form of a connection handler: one C++20 coroutine per connection.
//
//   myriad::Task echo(myriad::Stream& s) {
//     while (myriad::Chunk data = co_await s.receive()) {
//       if (!co_await s.send(std::move(data))) break;
//     }
//   }
//   myriad::CoroutineHandler handler(echo);
//   runtime.listen(address, handler);
//
// Cost: each open connection holds its coroutine frame (its size is whatever the body's locals
// need; Task::last_frame_bytes() reports the last one allocated) plus a Stream (sizeof(Stream)),
// both on the heap, for the connection's whole life: roughly 150-300 bytes for an echo, against
// nothing extra for the callback form. Use callbacks where idle connections must be cheapest.
//
// GCC 12 caveat: a capturing lambda written as a temporary inside a co_await operand
// (`co_await s.offload([text] {...})`) is miscompiled by GCC 12 (its captures can point at a
// dead stack copy); name it first: `auto work = [text] {...}; co_await
// s.offload(std::move(work));`.
//
// Thread rule: everything runs on the connection's shard thread; a coroutine never migrates.
// CoroutineHandler cannot be used with Config::handlers_on_workers.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

#include <myriad/chunk.hpp>
#include <myriad/config.hpp>
#include <myriad/connection.hpp>
#include <myriad/handler.hpp>
#include <myriad/shard.hpp>

namespace myriad {

class Stream;

// The return type of a connection coroutine. It starts at once and runs until its first
// suspension; its frame is freed when it returns. Returning closes the connection gracefully.
class Task {
 public:
  struct promise_type {
    // At the end the stream decides: free everything if the connection is gone, else close it.
    struct Final {
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<promise_type> h) noexcept;
      void await_resume() const noexcept {}
    };
    Task get_return_object() {
      return Task(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    Final final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() { error = std::current_exception(); }
    static void* operator new(std::size_t bytes);
    static void operator delete(void* p, std::size_t bytes);
    Stream* stream = nullptr;
    std::exception_ptr error;
  };

  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  ~Task() {
    if (handle_) handle_.destroy();
  }

  // Bytes of the most recently allocated coroutine frame (for the cost figures in the docs).
  static std::size_t last_frame_bytes();

 private:
  friend class Stream;
  friend class CoroutineHandler;
  explicit Task(std::coroutine_handle<promise_type> h) : handle_(h) {}
  std::coroutine_handle<promise_type> handle_;
};

// A connection as a coroutine sees it. Owned by CoroutineHandler, alive while the connection or
// its coroutine is. Received chunks wait in a small inbox when the coroutine is busy; past a few
// of them the connection stops receiving until it catches up.
class Stream {
 public:
  static constexpr std::size_t kInboxLimit = 4;

  Connection connection() const { return connection_; }
  Shard& shard() const { return connection_.shard(); }
  bool open() const { return !closed_; }

  // The next received chunk; an empty (false) Chunk once the peer has closed its side or the
  // connection is gone.
  auto receive() {
    struct Awaiter {
      Stream& s;
      bool await_ready() const noexcept { return !s.inbox_.empty() || s.eof_ || s.closed_; }
      void await_suspend(std::coroutine_handle<> h) noexcept {
        s.waiting_ = h;
        s.waiting_for_data_ = true;
      }
      Chunk await_resume() { return s.take(); }
    };
    return Awaiter{*this};
  }

  // What send() returns: the data is already queued; awaiting it waits for room.
  struct SendAwaiter {
    Stream& s;
    bool ok;
    bool await_ready() const noexcept { return !ok || s.connection_.writable(); }
    void await_suspend(std::coroutine_handle<> h) noexcept {
      s.waiting_ = h;
      s.waiting_for_data_ = false;
    }
    bool await_resume() const noexcept { return ok && !s.closed_; }
  };

  // Queues data. Suspends while the connection is above its high write watermark, until it
  // drains below the low one; resumes false if the connection closed meanwhile.
  SendAwaiter send(Chunk&& data) { return SendAwaiter{*this, connection_.send(std::move(data))}; }
  SendAwaiter send(std::string_view data) { return SendAwaiter{*this, connection_.send(data)}; }

  // Resumes after d (on this shard's timing wheel).
  auto sleep(Duration d) {
    struct Awaiter {
      Stream& s;
      Duration d;
      bool await_ready() const noexcept { return d.count() <= 0; }
      void await_suspend(std::coroutine_handle<> h) {
        s.shard().after(d, [h] { h.resume(); });
      }
      void await_resume() const noexcept {}
    };
    return Awaiter{*this, d};
  }

  // Runs work on the worker pool; resumes on this shard with its result.
  template <class Work>
  auto offload(Work&& work) {
    using W = std::decay_t<Work>;
    using Result = std::invoke_result_t<W&>;
    using Stored = std::conditional_t<std::is_void_v<Result>, bool, Result>;
    // The work waits on the heap, so the awaiter holds nothing that minds being moved.
    struct Awaiter {
      Stream& s;
      std::unique_ptr<W> work;
      std::optional<Stored> result;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) {
        s.connection_.shard().offload([w = std::move(work)]() mutable { return (*w)(); },
                                      [this, h](auto&&... r) {
                                        if constexpr (std::is_void_v<Result>) {
                                          result.emplace(true);
                                        } else {
                                          result.emplace(std::forward<decltype(r)>(r)...);
                                        }
                                        h.resume();
                                      });
      }
      Result await_resume() {
        if constexpr (!std::is_void_v<Result>) return std::move(*result);
      }
    };
    return Awaiter{*this, std::make_unique<W>(std::forward<Work>(work)), std::nullopt};
  }

  // Stop receiving, send what is queued, then close.
  void close() { connection_.close(); }

 private:
  friend class CoroutineHandler;
  friend struct Task::promise_type::Final;
  explicit Stream(Connection c) : connection_(c) {}

  Chunk take();
  void wake();
  void finished();  // the coroutine returned

  Connection connection_;
  std::deque<Chunk> inbox_;
  std::coroutine_handle<> waiting_;  // suspended in receive() or send()
  bool waiting_for_data_ = false;    // which of the two
  Task task_{nullptr};
  bool eof_ = false;
  bool closed_ = false;
  bool paused_ = false;
  bool done_ = false;
};

// Runs body(stream) as a coroutine for every connection it handles.
class CoroutineHandler final : public Handler {
 public:
  explicit CoroutineHandler(std::function<Task(Stream&)> body) : body_(std::move(body)) {}

  void on_open(Connection c) override;
  void on_data(Connection c, Chunk data) override;
  void on_peer_closed(Connection c) override;
  void on_write_watermark(Connection c, bool above_high) override;
  void on_close(Connection c, CloseReason reason, int error) override;

 private:
  std::function<Task(Stream&)> body_;
};

}  // namespace myriad
