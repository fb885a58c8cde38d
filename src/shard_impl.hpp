// Internal. The shard: one thread, one loop, its connection table, timers and buffers.
//
// Thread rules: everything here runs on the shard's own thread, except post(), wake(),
// counters() and the offload completion path, which other threads call. Connections never
// move between shards; shards share nothing but the runtime's read-only config, the global
// open-connection count (one atomic) and the worker pool.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <myriad/chunk.hpp>
#include <myriad/connection.hpp>
#include <myriad/counters.hpp>
#include <myriad/handler.hpp>
#include <myriad/shard.hpp>
#include <myriad/shared_buffer.hpp>

#include "backend.hpp"
#include "buffer_pool.hpp"
#include "lazy_array.hpp"
#include "output_queue.hpp"
#include "timer_wheel.hpp"

namespace myriad {

class RuntimeImpl;

namespace detail {

// What a busy connection needs beyond its record: allocated when it first queues output,
// spills bytes or offloads, and returned to the shard's free list once it is idle again.
struct Ext {
  static constexpr unsigned kMaxIov = 16;

  OutputQueue out;
  std::unique_ptr<std::byte[]> spill;
  uint32_t spill_size = 0;
  uint32_t spill_capacity = 0;
  uint32_t offloads = 0;          // offloaded jobs not yet completed
  uint32_t offloads_waiting = 0;  // of those, jobs waiting for room in the worker queue
  msghdr msg{};                   // the send in flight points into out
  iovec iov[kMaxIov];
  Ext* prev = nullptr;  // the shard's list of busy connections, walked at shutdown
  Ext* next = nullptr;
  uint32_t id = 0;
};

// One per connection slot, in a table that only costs memory where connections are. 32 bytes,
// and nothing else is allocated for an idle connection.
struct Record {
  void* user;  // the handler's pointer, or (flag::kOwnsState) the StateBox it owns
  Ext* ext;
  uint32_t last_active;  // low 32 bits of the shard tick of the last receive
  uint16_t gen;          // bumped when the slot is freed, so stale handles do nothing
  uint16_t flags;
  uint16_t held;         // pool chunks charged to this connection
  uint8_t handler;       // index into the shard's handler table
  uint8_t ops;           // backend: operations in flight
  uint8_t io;            // backend: its own state bits
  uint8_t close_reason;  // the reason a pending graceful close will report
  uint8_t reserved[2];
};
static_assert(sizeof(Record) == 32, "the idle-connection budget depends on this");

namespace flag {
constexpr uint16_t kOpen = 1 << 0;             // slot in use, until the backend's on_closed
constexpr uint16_t kLive = 1 << 1;             // on_open delivered and on_close not yet
constexpr uint16_t kClosing = 1 << 2;          // closed for the handler; backend finishing
constexpr uint16_t kCloseAfterFlush = 1 << 3;  // graceful close once output drains
constexpr uint16_t kShutAfterFlush = 1 << 4;   // shutdown_write once output drains
constexpr uint16_t kWriteShut = 1 << 5;
constexpr uint16_t kPeerClosed = 1 << 6;
constexpr uint16_t kSending = 1 << 7;     // a backend send is in flight
constexpr uint16_t kDirty = 1 << 8;       // in the flush list
constexpr uint16_t kAboveHigh = 1 << 9;   // above the high write watermark
constexpr uint16_t kReceiving = 1 << 10;  // the backend was asked to receive
constexpr uint16_t kPauseUser = 1 << 11;
constexpr uint16_t kPauseBuffers = 1 << 12;
constexpr uint16_t kPauseOffload = 1 << 13;
constexpr uint16_t kOutbound = 1 << 14;
constexpr uint16_t kOwnsState = 1 << 15;  // user points to a StateBox the connection owns
}  // namespace flag

}  // namespace detail

class ShardImpl final : public Shard {
 public:
  struct Listener {
    int fd = -1;
    Handler* handler = nullptr;  // shared, or made by factory on the shard's thread
    std::function<std::unique_ptr<Handler>(Shard&)> factory;
    uint8_t handler_index = 0;
  };
  // Connection ids at or above this name an outbound connect that has no slot yet.
  static constexpr uint32_t kPendingConnect = 0x8000'0000u;

  ShardImpl(RuntimeImpl& runtime, unsigned index, std::byte* pool, uint32_t chunks);
  ~ShardImpl();

  // The shard's loop, on the calling thread. Calls ready(nullptr) once the backend is up and
  // loops until the runtime stops and the drain is done, or calls ready(why) and returns.
  // own_thread: the runtime made this thread, and names it after the shard.
  void run(std::function<void(std::exception_ptr)> ready, bool own_thread);
  void add_listener(Listener listener) { listeners_.push_back(std::move(listener)); }
  // Thread-safe: begin graceful shutdown.
  void request_stop();

  static ShardImpl* current_impl();
  bool in_thread() const { return current_impl() == this; }
  unsigned shard_index() const { return index_; }
  RuntimeImpl& runtime_impl() const { return runtime_; }
  const Config& config() const { return config_; }
  detail::BufferPool& pool() { return pool_; }
  detail::Record& record(uint32_t id) { return records_[id]; }
  uint32_t capacity() const { return capacity_; }
  std::string backend_description() const;

  // ---- Reported by the backend (shard thread) ----
  // A new inbound connection holds slot id. Returns false if it was refused (max_connections);
  // the shard has then asked the backend to close it.
  bool on_accepted(uint32_t id, uint16_t listener);
  void on_received(uint32_t id, uint32_t chunk, uint32_t len);
  // The backend has delivered what it read from id this turn: send what the handler wrote now
  // rather than at the end of the turn (epoll, where each send is its own system call anyway:
  // the reply leaves while the chunk it came from is still warm in cache, and the peer is
  // answered while the loop reads the others).
  void flush_early(uint32_t id);
  // The receive stream ended: 0 at end of stream, or -errno.
  void on_receive_end(uint32_t id, int result);
  void on_sent(uint32_t id, int result);
  void on_connect_slot(uint32_t token, uint32_t id);
  void on_connected(uint32_t id, int result);
  void on_connect_failed(uint32_t token, int error);
  void on_closed(uint32_t id);
  void on_accept_error(int error);
  void on_buffer_starved() { counters_.buffer_starved.add(); }
  void on_stray_wakeup() { counters_.stray_wakeups.add(); }
  // How many bytes id may still receive before it reaches its share of the pool.
  uint32_t receive_budget(uint32_t id) const {
    uint32_t held = records_[id].held;
    uint32_t chunks = held < max_held_ ? max_held_ - held : 1;
    return chunks * pool_.chunk_size();
  }
  // Whether the shard still wants data for id (the backend asks before re-arming).
  bool wants_receive(uint32_t id) const {
    return (records_[id].flags & detail::flag::kReceiving) != 0;
  }

  // ---- For Connection, Chunk and Shard (shard thread unless noted) ----
  bool conn_valid(uint32_t id, uint16_t gen) const;
  detail::Record* live(uint32_t id, uint16_t gen);
  bool send_chunk(uint32_t id, uint16_t gen, Chunk&& chunk);
  bool send_copy(uint32_t id, uint16_t gen, std::span<const std::byte> data);
  bool send_shared(uint32_t id, uint16_t gen, const SharedBuffer& buffer);
  void close_graceful(uint32_t id, uint16_t gen);
  void abort(uint32_t id, uint16_t gen, CloseReason reason);
  void shutdown_write(uint32_t id, uint16_t gen);
  void set_user_pause(uint32_t id, uint16_t gen, bool paused);
  bool spill_append(uint32_t id, uint16_t gen, std::span<const std::byte> data);
  void spill_consume(uint32_t id, uint16_t gen, std::size_t n);
  std::span<const std::byte> spill_view(uint32_t id, uint16_t gen) const;
  std::size_t queued(uint32_t id, uint16_t gen) const;
  void release_chunk(uint32_t chunk);  // any thread (workers post it back)
  void* user_of(uint32_t id, uint16_t gen) const;
  void set_user(uint32_t id, uint16_t gen, void* user);
  void offload(uint32_t id, uint16_t gen, bool has_connection,
               std::unique_ptr<detail::OffloadJob> job);
  void post_task(std::function<void()> fn);  // thread-safe
  TimerId add_timer(Duration d, std::function<void()> fn, Duration period = Duration::zero());
  bool cancel_timer(TimerId id);
  Handler* listener_handler(std::size_t listener) const {
    return listener < listeners_.size() ? listeners_[listener].handler : nullptr;
  }
  std::size_t listener_count() const { return listeners_.size(); }
  // Whether the calling thread may use connection (id, gen): its shard's thread, or the worker
  // running its handler events (Config::handlers_on_workers).
  bool may_touch(uint32_t id, uint16_t gen) const {
    return in_thread() || own_strand(id, gen) != nullptr;
  }
  detail::StateBox* state_of(uint32_t id, uint16_t gen) const;
  // Takes ownership of box (nullptr: none), destroying the state it replaces. Returns false,
  // and destroys box, if the connection is not open.
  bool set_state(uint32_t id, uint16_t gen, detail::StateBox* box);
  void start_connect(const Address& to, Handler& handler, void* user);
  std::chrono::steady_clock::time_point loop_now() const { return now_; }
  Counters snapshot() const;

 private:
  struct PendingConnect {
    Handler* handler;
    void* user;
  };
  struct WaitingOffload {
    std::function<void()> task;
    uint32_t id;
    uint16_t gen;
    bool has_connection;
  };
  struct UserTimer {
    std::function<void()> fn;
    uint64_t period = 0;  // ticks; 0 for a one-shot timer
    uint64_t due = 0;     // a periodic timer's next tick, kept exact so that it does not drift
    uint32_t gen = 0;
    bool firing = false;  // a periodic timer inside its own callback
  };
  struct ShardCounters {
    ShardCounter accepted, connected, connect_failed, rejected, open, closed_peer, closed_reset,
        closed_idle, closed_slow_reader, closed_input_overflow, closed_local, closed_shutdown,
        bytes_in, bytes_out, receives, sends, buffers_in_use, queued_bytes, buffer_starved,
        watermark_pauses, buffer_cap_pauses, offloads_queued, offloads_done, offload_waits,
        accept_errors, stray_wakeups;
  };

  Connection handle(uint32_t id) { return Connection(this, id, records_[id].gen); }
  Handler& handler_of(const detail::Record& r) { return *handlers_[r.handler]; }
  uint8_t handler_index(Handler* h);
  detail::Ext& ext(uint32_t id);
  void maybe_free_ext(uint32_t id);
  void open_connection(uint32_t id, uint8_t handler, void* user, bool outbound);
  void update_receiving(uint32_t id);
  void mark_dirty(uint32_t id);
  void clear_output(detail::Ext& e);
  void flush();
  void flush_one(uint32_t id);
  void after_output_change(uint32_t id);
  void after_drained(uint32_t id);
  void close_now(uint32_t id, CloseReason reason, int error, bool reset);
  void finish_closes();
  void maybe_finish_half_closed(uint32_t id);
  void count_close(CloseReason reason);
  void deliver_close(uint32_t id, CloseReason reason, int error);
  void charge_chunk(uint32_t id, uint32_t chunk);
  void uncharge_chunk(uint32_t chunk);
  void release_queue_chunk(uint32_t chunk) { release_chunk(chunk); }
  void on_timer(uint32_t timer);
  void free_user_timer(uint32_t slot);
  // Destroys the connection's owned state, if it has one (after on_close, or when replaced).
  void destroy_state(detail::Record& r);
  void arm_idle_timer(uint32_t id);
  uint64_t tick_of(std::chrono::steady_clock::time_point t) const;
  void drain_inbox();
  void retry_waiting_offloads();
  void complete_offload(detail::OffloadJob& job, uint32_t id, uint16_t gen, bool tracked);
  void begin_drain();
  bool drain_done() const;
  void teardown();
  int64_t poll_timeout_ns() const;
  // Runs a handler call: inline, or (handlers_on_workers) on the pool in order per connection.
  template <class Event>
  void dispatch(uint32_t id, Event&& event);
  void enqueue_strand(uint64_t key, std::function<void()> event);
  void start_strand(uint64_t key);

  RuntimeImpl& runtime_;
  const Config& config_;
  unsigned index_;
  std::unique_ptr<detail::Backend> backend_;
  int event_fd_ = -1;
  uint32_t capacity_ = 0;
  detail::LazyArray<detail::Record> records_;
  detail::BufferPool pool_;
  detail::LazyArray<uint64_t> chunk_owner_;  // (gen << 32) | id of the connection charged
  uint32_t max_held_ = 0;
  std::unique_ptr<detail::TimerWheel> wheel_;
  uint64_t tick_ns_ = 1'000'000;
  uint32_t idle_ticks_ = 0;
  std::chrono::steady_clock::time_point start_{};
  std::chrono::steady_clock::time_point now_{};
  std::vector<UserTimer> user_timers_;
  std::vector<uint32_t> free_user_timers_;

  std::vector<Handler*> handlers_;
  std::vector<std::unique_ptr<Handler>> owned_handlers_;
  std::vector<Listener> listeners_;
  std::vector<PendingConnect> connects_;
  std::vector<uint32_t> free_connects_;

  struct PendingClose {
    uint32_t id;
    int error;
    CloseReason reason;
    bool reset;
    bool was_live;
  };
  std::vector<PendingClose> closing_;  // decided this turn, reported from the loop
  std::vector<uint32_t> dirty_;
  std::vector<std::unique_ptr<detail::Ext>> ext_storage_;
  std::vector<detail::Ext*> free_ext_;
  detail::Ext* busy_ = nullptr;  // list of connections holding an Ext

  std::deque<WaitingOffload> waiting_offloads_;
  std::vector<std::function<void()>> local_tasks_;  // posted by the shard to itself

  std::mutex inbox_mutex_;
  std::vector<std::function<void()>> inbox_;
  std::vector<std::function<void()>> inbox_swap_;
  std::atomic<bool> stop_requested_{false};
  bool draining_ = false;
  std::chrono::steady_clock::time_point drain_deadline_{};

  // handlers_on_workers: each connection's pending handler calls, keyed by (gen << 32 | id).
  // A strand's events run on one worker at a time; its spill buffer belongs to whoever runs it.
  struct Strand {
    uint64_t key = 0;
    std::deque<std::function<void()>> events;
    bool running = false;
    std::vector<std::byte> spill;
    // The connection's user pointer and typed state belong to its events too: they are kept
    // here, not in the record the shard thread writes, and the state is destroyed with the
    // strand, after on_close has run.
    void* user = nullptr;
    std::unique_ptr<detail::StateBox> state;
  };
  std::unordered_map<uint64_t, Strand> strands_;
  static thread_local Strand* running_strand_;
  // The strand this worker runs, if it is (id, gen)'s.
  static Strand* own_strand(uint32_t id, uint16_t gen) {
    Strand* s = running_strand_;
    return s != nullptr && s->key == ((uint64_t{gen} << 32) | id) ? s : nullptr;
  }
  // Where (id, gen)'s user pointer and state live with handlers_on_workers: its strand, from
  // the worker running it or from the shard (a timer, a posted task, teardown's on_close).
  Strand* strand_of(uint32_t id, uint16_t gen) const {
    if (Strand* s = own_strand(id, gen)) return s;
    if (!config_.handlers_on_workers || !in_thread()) return nullptr;
    auto it = strands_.find((uint64_t{gen} << 32) | id);
    return it == strands_.end() ? nullptr : const_cast<Strand*>(&it->second);
  }

  ShardCounters counters_;
  uint64_t tick_now_ = 1;
};

}  // namespace myriad
