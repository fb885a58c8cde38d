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

// A small value handle (shard, slot, generation): cheap to copy and safe to keep. Every method
// must be called on the connection's own shard thread; on a handle whose connection has closed
// they do nothing and return false (or zero). valid() says which.
class Connection {
 public:
  Connection() = default;

  bool valid() const;
  // Dense per-shard number; reused after close (the generation tells incarnations apart).
  uint32_t id() const { return id_; }
  uint16_t generation() const { return gen_; }
  Shard& shard() const;
  bool outbound() const;

  // Per-connection state for the handler. The connection record keeps only this pointer: the
  // handler owns what it points to, and frees it in on_close.
  void* user() const;
  void set_user(void* user);

  // Queue bytes for sending; they leave in order, gathered into one send per loop turn. The
  // chunk form sends without copying; small chunks are folded into the queue's last chunk.
  // Returns false when nothing was queued: the connection is closing, or this send took the
  // queue past Config::max_write_queue, and the connection is being closed as a slow reader.
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
  Connection(ShardImpl* shard, uint32_t id, uint16_t gen) : shard_(shard), id_(id), gen_(gen) {}
  void offload_job(std::unique_ptr<detail::OffloadJob> job);

  ShardImpl* shard_ = nullptr;
  uint32_t id_ = 0;
  uint16_t gen_ = 0;
};

template <class Work, class Done>
void Connection::offload(Work&& work, Done&& done) {
  offload_job(detail::make_offload_job(
      std::forward<Work>(work),
      [connection = *this, done = std::forward<Done>(done)](auto&&... result) mutable {
        done(connection, std::forward<decltype(result)>(result)...);
      }));
}

}  // namespace myriad
