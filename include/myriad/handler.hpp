// Public. The callback form of a connection handler: the zero-overhead one.
#pragma once

#include <myriad/chunk.hpp>
#include <myriad/connection.hpp>

namespace myriad {

// Called on the connection's shard thread (or, with Config::handlers_on_workers, on a worker,
// one event at a time per connection and in order). Callbacks must not block: offload what
// takes long. One Handler given to Runtime::listen() serves every shard, so it is called from
// several threads at once: keep per-connection state behind Connection::user(), or use the
// listen() form that makes one handler per shard.
class Handler {
 public:
  virtual ~Handler() = default;

  // The connection is open (accepted, or an outbound connect succeeded).
  virtual void on_open(Connection /*connection*/) {}
  // Bytes arrived. The chunk is a lease on pool memory: drop it, keep it, or send() it.
  virtual void on_data(Connection connection, Chunk data) = 0;
  // The peer shut down its write side. The connection can still send; once its output drains
  // (and no offload is pending) it closes by itself. The default closes it at once after the
  // queued output.
  virtual void on_peer_closed(Connection connection) { connection.close(); }
  // Edges of the write watermarks: above_high true when queued output passed the high
  // watermark (receiving pauses), false when it drained below the low one (receiving resumes).
  virtual void on_write_watermark(Connection /*connection*/, bool /*above_high*/) {}
  // Last call for this connection; error is an errno value or 0. Free per-connection state
  // here. After it the handle is invalid.
  virtual void on_close(Connection /*connection*/, CloseReason /*reason*/, int /*error*/) {}
};

}  // namespace myriad
