#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "runtime_impl.hpp"
#include "shard_impl.hpp"

namespace myriad {

using detail::Ext;
using detail::Record;
namespace flag = detail::flag;

namespace {
thread_local ShardImpl* tls_shard = nullptr;
// Timers handlers may hold at once per shard, beyond one idle timer per connection.
constexpr uint32_t kMaxUserTimers = 1u << 20;
// Busy-connection records kept for reuse; beyond this they are freed.
constexpr std::size_t kMaxCachedExt = 4096;
}  // namespace

thread_local ShardImpl::Strand* ShardImpl::running_strand_ = nullptr;

ShardImpl* ShardImpl::current_impl() {
  return tls_shard;
}

ShardImpl::ShardImpl(RuntimeImpl& runtime, unsigned index, std::byte* pool, uint32_t chunks)
    : runtime_(runtime),
      config_(runtime.config),
      index_(index),
      capacity_(runtime.shard_capacity),
      records_(runtime.shard_capacity),
      pool_(pool, static_cast<uint32_t>(runtime.config.buffer_size), chunks),
      chunk_owner_(chunks) {
  max_held_ = config_.max_connection_buffers != 0
                  ? static_cast<uint32_t>(config_.max_connection_buffers)
                  : std::clamp<uint32_t>(chunks / 32, 4, 64);
  tick_ns_ = std::max<uint64_t>(1000, static_cast<uint64_t>(config_.timer_tick.count()));
  idle_ticks_ = static_cast<uint32_t>(std::min<uint64_t>(
      UINT32_MAX / 2,
      (static_cast<uint64_t>(config_.idle_timeout.count()) + tick_ns_ - 1) / tick_ns_));
  wheel_ = std::make_unique<detail::TimerWheel>(capacity_ + kMaxUserTimers);
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
}

ShardImpl::~ShardImpl() {
  for (auto& l : listeners_) {
    if (l.fd >= 0) ::close(l.fd);
  }
  if (event_fd_ >= 0) ::close(event_fd_);
}

std::string ShardImpl::backend_description() const {
  return backend_ ? backend_->describe() : std::string("not started");
}

// ---------------------------------------------------------------------------------------------
// The loop

void ShardImpl::run(std::function<void(std::exception_ptr)> ready, bool own_thread) {
  tls_shard = this;
  if (own_thread) {
    std::string name = "myriad-shard-" + std::to_string(index_);
    pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
  }
  try {
    if (config_.first_cpu >= 0) {
      long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(
          static_cast<int>((static_cast<long>(config_.first_cpu) + index_) % std::max(1L, cpus)),
          &set);
      pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    const auto& choice = runtime_.choice;
    backend_ = choice.kind == BackendKind::kUring
                   ? detail::make_uring_backend(*this, choice, capacity_, event_fd_)
                   : detail::make_epoll_backend(*this, capacity_, event_fd_);
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
      Listener& l = listeners_[i];
      if (l.factory) {
        owned_handlers_.push_back(l.factory(*this));
        l.handler = owned_handlers_.back().get();
      }
      l.handler_index = handler_index(l.handler);
      backend_->add_listener(l.fd, static_cast<uint16_t>(i));
    }
  } catch (...) {
    ready(std::current_exception());
    tls_shard = nullptr;
    return;
  }
  start_ = std::chrono::steady_clock::now();
  now_ = start_;
  ready(nullptr);

  for (;;) {
    now_ = std::chrono::steady_clock::now();
    tick_now_ = tick_of(now_);
    wheel_->advance(tick_now_, [this](uint32_t timer) { on_timer(timer); });
    while (!local_tasks_.empty()) {
      std::vector<std::function<void()>> tasks;
      tasks.swap(local_tasks_);
      for (auto& task : tasks) task();
    }
    drain_inbox();
    retry_waiting_offloads();
    if (stop_requested_.load(std::memory_order_acquire) && !draining_) begin_drain();
    finish_closes();
    flush();
    finish_closes();
    if (draining_ && (drain_done() || now_ >= drain_deadline_)) break;
    backend_->poll(poll_timeout_ns());
  }
  teardown();
  tls_shard = nullptr;
}

uint64_t ShardImpl::tick_of(std::chrono::steady_clock::time_point t) const {
  return static_cast<uint64_t>((t - start_).count()) / tick_ns_ + 1;
}

int64_t ShardImpl::poll_timeout_ns() const {
  if (!local_tasks_.empty() || !dirty_.empty() || !closing_.empty()) return 0;
  int64_t timeout = -1;
  auto at_most = [&timeout](int64_t ns) {
    ns = std::max<int64_t>(ns, 0);
    timeout = timeout < 0 ? ns : std::min(timeout, ns);
  };
  uint64_t deadline = wheel_->next_deadline();
  if (deadline != detail::TimerWheel::kNever) {
    auto due = start_ + std::chrono::nanoseconds((deadline - 1) * tick_ns_);
    at_most((due - now_).count());
  }
  if (!waiting_offloads_.empty()) at_most(1'000'000);
  if (draining_) at_most((drain_deadline_ - now_).count());
  return timeout;
}

void ShardImpl::drain_inbox() {
  {
    std::lock_guard lock(inbox_mutex_);
    if (inbox_.empty()) return;
    inbox_swap_.swap(inbox_);
  }
  for (auto& task : inbox_swap_) task();
  inbox_swap_.clear();
}

void ShardImpl::post_task(std::function<void()> fn) {
  if (in_thread()) {
    local_tasks_.push_back(std::move(fn));
    return;
  }
  bool first;
  {
    std::lock_guard lock(inbox_mutex_);
    first = inbox_.empty();
    inbox_.push_back(std::move(fn));
  }
  if (first) {
    uint64_t one = 1;
    ssize_t n = ::write(event_fd_, &one, sizeof(one));
    (void)n;  // EAGAIN only when the counter is saturated: the shard is awake anyway
  }
}

void ShardImpl::request_stop() {
  stop_requested_.store(true, std::memory_order_release);
  uint64_t one = 1;
  ssize_t n = ::write(event_fd_, &one, sizeof(one));
  (void)n;
}

// ---------------------------------------------------------------------------------------------
// Opening

uint8_t ShardImpl::handler_index(Handler* h) {
  for (std::size_t i = 0; i < handlers_.size(); ++i) {
    if (handlers_[i] == h) return static_cast<uint8_t>(i);
  }
  if (handlers_.size() >= 255)
    throw std::runtime_error("a shard serves at most 255 distinct handlers");
  handlers_.push_back(h);
  return static_cast<uint8_t>(handlers_.size() - 1);
}

bool ShardImpl::on_accepted(uint32_t id, uint16_t listener) {
  Record& r = records_[id];
  assert((r.flags & flag::kOpen) == 0);
  r.flags = flag::kOpen;
  std::size_t open = runtime_.open_slots.fetch_add(1, std::memory_order_relaxed);
  if (draining_ || open >= config_.max_connections) {
    counters_.rejected.add();
    r.flags |= flag::kClosing;
    backend_->close(id, false);
    return false;
  }
  counters_.accepted.add();
  open_connection(id, listeners_[listener].handler_index, nullptr, false);
  return true;
}

void ShardImpl::open_connection(uint32_t id, uint8_t handler, void* user, bool outbound) {
  Record& r = records_[id];
  r.flags = flag::kOpen | flag::kLive | (outbound ? flag::kOutbound : 0);
  r.user = user;
  r.ext = nullptr;
  r.held = 0;
  r.handler = handler;
  r.close_reason = static_cast<uint8_t>(CloseReason::kLocal);
  counters_.open.add();
  if (idle_ticks_ != 0) {
    r.last_active = static_cast<uint32_t>(tick_now_);
    wheel_->arm(id, tick_now_ + idle_ticks_);
  }
  uint16_t gen = r.gen;
  dispatch(
      id, [this, id, gen] { handlers_[records_[id].handler]->on_open(Connection(this, id, gen)); });
  update_receiving(id);
}

void ShardImpl::start_connect(const Address& to, Handler& handler, void* user) {
  assert(in_thread());
  uint32_t token;
  if (!free_connects_.empty()) {
    token = free_connects_.back();
    free_connects_.pop_back();
    connects_[token] = PendingConnect{&handler, user};
  } else {
    token = static_cast<uint32_t>(connects_.size());
    connects_.push_back(PendingConnect{&handler, user});
  }
  std::size_t open = runtime_.open_slots.fetch_add(1, std::memory_order_relaxed);
  if (draining_ || open >= config_.max_connections) {
    // Reported from the loop, never from inside connect(): the caller may be mid-update.
    int error = draining_ ? ESHUTDOWN : EMFILE;
    post_task([this, token, error] { on_connect_failed(token, error); });
    return;
  }
  backend_->connect(token, to);
}

void ShardImpl::on_connect_slot(uint32_t token, uint32_t id) {
  PendingConnect pc = connects_[token];
  connects_[token] = PendingConnect{};
  free_connects_.push_back(token);
  Record& r = records_[id];
  r.flags = flag::kOpen | flag::kOutbound;
  r.user = pc.user;
  r.ext = nullptr;
  r.held = 0;
  r.handler = handler_index(pc.handler);
}

void ShardImpl::on_connected(uint32_t id, int result) {
  Record& r = records_[id];
  if (result < 0 || draining_) {
    counters_.connect_failed.add();
    int error = result < 0 ? -result : ESHUTDOWN;
    uint16_t gen = r.gen;
    dispatch(id, [this, id, gen, error, h = handlers_[r.handler]] {
      h->on_close(Connection(this, id, gen), CloseReason::kConnectFailed, error);
    });
    r.flags |= flag::kClosing;
    backend_->close(id, false);
    return;
  }
  counters_.connected.add();
  open_connection(id, r.handler, r.user, true);
}

void ShardImpl::on_connect_failed(uint32_t token, int error) {
  runtime_.open_slots.fetch_sub(1, std::memory_order_relaxed);
  counters_.connect_failed.add();
  Handler* h = connects_[token].handler;
  Connection pending(this, kPendingConnect | token, 0);
  h->on_close(pending, CloseReason::kConnectFailed, error);
  connects_[token] = PendingConnect{};
  free_connects_.push_back(token);
}

// ---------------------------------------------------------------------------------------------
// Receiving

void ShardImpl::update_receiving(uint32_t id) {
  Record& r = records_[id];
  constexpr uint16_t kStops = flag::kClosing | flag::kPeerClosed | flag::kCloseAfterFlush |
                              flag::kPauseUser | flag::kPauseBuffers | flag::kPauseOffload |
                              flag::kAboveHigh;
  bool want = (r.flags & flag::kLive) != 0 && (r.flags & kStops) == 0 && !draining_;
  bool have = (r.flags & flag::kReceiving) != 0;
  if (want == have) return;
  if (want) {
    r.flags |= flag::kReceiving;
    backend_->start_receive(id);
  } else {
    r.flags &= ~flag::kReceiving;
    backend_->stop_receive(id);
  }
}

void ShardImpl::charge_chunk(uint32_t id, uint32_t chunk) {
  Record& r = records_[id];
  chunk_owner_[chunk] = (uint64_t{r.gen} << 32) | id;
  ++r.held;
  counters_.buffers_in_use.add();
}

void ShardImpl::release_chunk(uint32_t chunk) {
  if (!in_thread()) {
    post_task([this, chunk] { release_chunk(chunk); });
    return;
  }
  uint64_t owner = chunk_owner_[chunk];
  uint32_t id = static_cast<uint32_t>(owner);
  Record& r = records_[id];
  if ((r.flags & flag::kOpen) != 0 && r.gen == static_cast<uint16_t>(owner >> 32) && r.held > 0) {
    --r.held;
    // Resume at half the share, not at share - 1, so a connection at its cap does not flap.
    if ((r.flags & flag::kPauseBuffers) != 0 && r.held <= max_held_ / 2) {
      r.flags &= ~flag::kPauseBuffers;
      update_receiving(id);
    }
  }
  counters_.buffers_in_use.sub();
  backend_->recycle(chunk);
}

void ShardImpl::on_received(uint32_t id, uint32_t chunk, uint32_t len) {
  counters_.bytes_in.add(len);
  counters_.receives.add();
  charge_chunk(id, chunk);
  Record& r = records_[id];
  if ((r.flags & (flag::kLive | flag::kClosing | flag::kCloseAfterFlush)) != flag::kLive ||
      draining_) {
    release_chunk(chunk);
    return;
  }
  r.last_active = static_cast<uint32_t>(tick_now_);
  if (r.held >= max_held_ && (r.flags & flag::kPauseBuffers) == 0) {
    r.flags |= flag::kPauseBuffers;
    counters_.buffer_cap_pauses.add();
    update_receiving(id);
  }
  Chunk data(this, chunk, pool_.address(chunk), len);
  uint16_t gen = r.gen;
  if (!config_.handlers_on_workers) {
    handlers_[r.handler]->on_data(Connection(this, id, gen), std::move(data));
    return;
  }
  auto shared = std::make_shared<Chunk>(std::move(data));
  dispatch(id, [this, id, gen, shared, h = handlers_[r.handler]] {
    h->on_data(Connection(this, id, gen), std::move(*shared));
  });
}

void ShardImpl::on_receive_end(uint32_t id, int result) {
  Record& r = records_[id];
  r.flags &= ~flag::kReceiving;
  if ((r.flags & (flag::kLive | flag::kClosing)) != flag::kLive) return;
  if (result == 0) {
    r.flags |= flag::kPeerClosed;
    if (draining_) return;
    uint16_t gen = r.gen;
    dispatch(id, [this, id, gen, h = handlers_[r.handler]] {
      h->on_peer_closed(Connection(this, id, gen));
    });
    if (!config_.handlers_on_workers) maybe_finish_half_closed(id);
    return;
  }
  close_now(id, CloseReason::kReset, -result, false);
}

// ---------------------------------------------------------------------------------------------
// Sending

Ext& ShardImpl::ext(uint32_t id) {
  Record& r = records_[id];
  if (r.ext != nullptr) return *r.ext;
  Ext* e;
  if (!free_ext_.empty()) {
    e = free_ext_.back();
    free_ext_.pop_back();
  } else {
    ext_storage_.push_back(std::make_unique<Ext>());
    e = ext_storage_.back().get();
  }
  e->id = id;
  e->prev = nullptr;
  e->next = busy_;
  if (busy_ != nullptr) busy_->prev = e;
  busy_ = e;
  r.ext = e;
  return *e;
}

void ShardImpl::maybe_free_ext(uint32_t id) {
  Record& r = records_[id];
  Ext* e = r.ext;
  if (e == nullptr) return;
  bool open_and_busy =
      (r.flags & flag::kOpen) != 0 && (!e->out.empty() || (r.flags & flag::kSending) != 0 ||
                                       e->spill_size != 0 || e->offloads != 0);
  if (open_and_busy) return;
  if (e->prev != nullptr) e->prev->next = e->next;
  if (e->next != nullptr) e->next->prev = e->prev;
  if (busy_ == e) busy_ = e->next;
  clear_output(*e);
  e->spill.reset();
  e->spill_size = e->spill_capacity = 0;
  e->offloads = e->offloads_waiting = 0;
  r.ext = nullptr;
  if (free_ext_.size() < kMaxCachedExt) {
    free_ext_.push_back(e);
  } else {
    auto it = std::find_if(ext_storage_.begin(), ext_storage_.end(),
                           [e](const auto& p) { return p.get() == e; });
    std::swap(*it, ext_storage_.back());
    ext_storage_.pop_back();
  }
}

Record* ShardImpl::live(uint32_t id, uint16_t gen) {
  if (id >= capacity_) return nullptr;
  Record& r = records_[id];
  if (r.gen != gen || (r.flags & (flag::kLive | flag::kClosing)) != flag::kLive) return nullptr;
  return &r;
}

bool ShardImpl::conn_valid(uint32_t id, uint16_t gen) const {
  if (id >= capacity_) return false;
  const Record& r = records_[id];
  return r.gen == gen && (r.flags & (flag::kLive | flag::kClosing)) == flag::kLive;
}

bool ShardImpl::send_chunk(uint32_t id, uint16_t gen, Chunk&& chunk) {
  Record* r = live(id, gen);
  if (r == nullptr ||
      (r->flags & (flag::kCloseAfterFlush | flag::kShutAfterFlush | flag::kWriteShut)) != 0) {
    return false;
  }
  if (chunk.empty()) return true;
  if (chunk.shard_ != this) {  // another shard's chunk: copy, and its shard takes it back
    return send_copy(id, gen, chunk.bytes());
  }
  Ext& e = ext(id);
  counters_.queued_bytes.add(chunk.size());
  if (e.out.fold(chunk.data(), chunk.size())) {
    chunk.release();
  } else {
    std::byte* base = pool_.address(chunk.id_);
    auto begin = static_cast<uint32_t>(chunk.data_ - base);
    e.out.push_chunk(base, begin, begin + chunk.size_, pool_.chunk_size(), chunk.id_);
    chunk.shard_ = nullptr;  // the queue owns it now
    chunk.size_ = 0;
    chunk.data_ = nullptr;
  }
  after_output_change(id);
  return conn_valid(id, gen);
}

bool ShardImpl::send_copy(uint32_t id, uint16_t gen, std::span<const std::byte> data) {
  Record* r = live(id, gen);
  if (r == nullptr ||
      (r->flags & (flag::kCloseAfterFlush | flag::kShutAfterFlush | flag::kWriteShut)) != 0) {
    return false;
  }
  if (data.empty()) return true;
  Ext& e = ext(id);
  counters_.queued_bytes.add(data.size());
  if (!e.out.fold(data.data(), data.size())) e.out.append_copy(data.data(), data.size());
  after_output_change(id);
  return conn_valid(id, gen);
}

bool ShardImpl::send_shared(uint32_t id, uint16_t gen, const SharedBuffer& buffer) {
  Record* r = live(id, gen);
  if (r == nullptr ||
      (r->flags & (flag::kCloseAfterFlush | flag::kShutAfterFlush | flag::kWriteShut)) != 0) {
    return false;
  }
  if (buffer.empty()) return true;
  Ext& e = ext(id);
  counters_.queued_bytes.add(buffer.size());
  // Never folded into the tail, even when small: that would be a copy per connection, the
  // thing a shared buffer exists to avoid. Adjacent shared segments leave in one gathered send.
  e.out.push_shared(buffer.block_);
  after_output_change(id);
  return conn_valid(id, gen);
}

void ShardImpl::after_output_change(uint32_t id) {
  Record& r = records_[id];
  std::size_t queued = r.ext->out.bytes();
  if (queued > config_.max_write_queue) {
    close_now(id, CloseReason::kSlowReader, 0, true);
    return;
  }
  if (queued >= config_.write_high_watermark && (r.flags & flag::kAboveHigh) == 0) {
    r.flags |= flag::kAboveHigh;
    counters_.watermark_pauses.add();
    update_receiving(id);
    uint16_t gen = r.gen;
    dispatch(id, [this, id, gen, h = handlers_[r.handler]] {
      h->on_write_watermark(Connection(this, id, gen), true);
    });
  }
  mark_dirty(id);
}

void ShardImpl::clear_output(Ext& e) {
  counters_.queued_bytes.sub(e.out.bytes());
  e.out.clear([this](uint32_t chunk) { release_chunk(chunk); });
}

void ShardImpl::mark_dirty(uint32_t id) {
  Record& r = records_[id];
  if ((r.flags & flag::kDirty) != 0) return;
  r.flags |= flag::kDirty;
  dirty_.push_back(id);
}

void ShardImpl::flush() {
  // Indexed: flushing can mark more connections dirty (epoll reports sends at once).
  for (std::size_t i = 0; i < dirty_.size(); ++i) {
    uint32_t id = dirty_[i];
    Record& r = records_[id];
    if ((r.flags & flag::kDirty) == 0) continue;  // flush_early sent it already
    r.flags &= ~flag::kDirty;
    flush_one(id);
  }
  dirty_.clear();
}

void ShardImpl::flush_early(uint32_t id) {
  Record& r = records_[id];
  if ((r.flags & flag::kDirty) == 0) return;
  r.flags &= ~flag::kDirty;  // its entry in dirty_ is skipped, or serves a later mark
  flush_one(id);
}

void ShardImpl::flush_one(uint32_t id) {
  Record& r = records_[id];
  if ((r.flags & (flag::kOpen | flag::kClosing)) != flag::kOpen) return;
  if ((r.flags & flag::kSending) != 0) return;  // on_sent continues
  Ext* e = r.ext;
  if (e == nullptr || e->out.empty()) {
    after_drained(id);
    return;
  }
  unsigned n = e->out.fill(e->iov, Ext::kMaxIov);
  e->msg = msghdr{};
  e->msg.msg_iov = e->iov;
  e->msg.msg_iovlen = n;
  r.flags |= flag::kSending;
  backend_->send(id, &e->msg);
}

void ShardImpl::on_sent(uint32_t id, int result) {
  Record& r = records_[id];
  r.flags &= ~flag::kSending;
  Ext* e = r.ext;
  if ((r.flags & flag::kClosing) != 0) {
    // Closed while the kernel was reading the queue: only now may the memory go.
    if (e != nullptr) clear_output(*e);
    return;
  }
  if (result < 0) {
    close_now(id, CloseReason::kReset, -result, false);
    return;
  }
  counters_.bytes_out.add(static_cast<uint64_t>(result));
  counters_.sends.add();
  e->out.consume(static_cast<std::size_t>(result),
                 [this](uint32_t chunk) { release_chunk(chunk); });
  counters_.queued_bytes.sub(static_cast<uint64_t>(result));
  if ((r.flags & flag::kAboveHigh) != 0 && e->out.bytes() <= config_.write_low_watermark) {
    r.flags &= ~flag::kAboveHigh;
    update_receiving(id);
    uint16_t gen = r.gen;
    dispatch(id, [this, id, gen, h = handlers_[r.handler]] {
      h->on_write_watermark(Connection(this, id, gen), false);
    });
    if ((r.flags & flag::kClosing) != 0) return;
  }
  if (!e->out.empty()) {
    mark_dirty(id);
    return;
  }
  after_drained(id);
}

// The output queue is empty and nothing is in flight: act on what waited for that.
void ShardImpl::after_drained(uint32_t id) {
  Record& r = records_[id];
  if ((r.flags & (flag::kOpen | flag::kClosing)) != flag::kOpen || (r.flags & flag::kSending) != 0)
    return;
  if (r.ext != nullptr && !r.ext->out.empty()) return;
  if ((r.flags & flag::kCloseAfterFlush) != 0) {
    if (r.ext == nullptr || r.ext->offloads == 0) {
      close_now(id, static_cast<CloseReason>(r.close_reason), 0, false);
    }
    return;
  }
  if ((r.flags & flag::kShutAfterFlush) != 0) {
    r.flags &= ~flag::kShutAfterFlush;
    r.flags |= flag::kWriteShut;
    backend_->shutdown_write(id);
  }
  maybe_finish_half_closed(id);
  if ((r.flags & flag::kOpen) != 0 && (r.flags & flag::kClosing) == 0) maybe_free_ext(id);
}

// ---------------------------------------------------------------------------------------------
// Closing

void ShardImpl::count_close(CloseReason reason) {
  switch (reason) {
    case CloseReason::kPeerClosed:
      counters_.closed_peer.add();
      break;
    case CloseReason::kReset:
      counters_.closed_reset.add();
      break;
    case CloseReason::kIdleTimeout:
      counters_.closed_idle.add();
      break;
    case CloseReason::kSlowReader:
      counters_.closed_slow_reader.add();
      break;
    case CloseReason::kInputOverflow:
      counters_.closed_input_overflow.add();
      break;
    case CloseReason::kLocal:
      counters_.closed_local.add();
      break;
    case CloseReason::kShutdown:
      counters_.closed_shutdown.add();
      break;
    case CloseReason::kConnectFailed:
      break;
  }
}

void ShardImpl::close_now(uint32_t id, CloseReason reason, int error, bool reset) {
  Record& r = records_[id];
  if ((r.flags & flag::kOpen) == 0 || (r.flags & flag::kClosing) != 0) return;
  bool was_live = (r.flags & flag::kLive) != 0;
  if ((r.flags & flag::kReceiving) != 0) backend_->stop_receive(id);
  r.flags |= flag::kClosing;
  r.flags &= ~(flag::kLive | flag::kCloseAfterFlush | flag::kShutAfterFlush | flag::kReceiving);
  if (idle_ticks_ != 0) wheel_->cancel(id);
  if (was_live) {
    count_close(reason);
    counters_.open.sub();
  }
  Ext* e = r.ext;
  if (e != nullptr && (r.flags & flag::kSending) == 0) clear_output(*e);
  // on_close and the descriptor's close happen from the loop, never inside a call the handler
  // made (close(), send() past the cap...): a handler may hold a lock while it calls us.
  closing_.push_back(PendingClose{id, error, reason, reset, was_live});
}

void ShardImpl::finish_closes() {
  while (!closing_.empty()) {
    std::vector<PendingClose> batch;
    batch.swap(closing_);
    for (const PendingClose& c : batch) {
      if (c.was_live) deliver_close(c.id, c.reason, c.error);
      backend_->close(c.id, c.reset);  // may report on_closed at once
    }
  }
}

void ShardImpl::deliver_close(uint32_t id, CloseReason reason, int error) {
  Record& r = records_[id];
  uint16_t gen = r.gen;
  Handler* h = handlers_[r.handler];
  if (!config_.handlers_on_workers) {
    h->on_close(Connection(this, id, gen), reason, error);
    destroy_state(records_[id]);
    return;
  }
  // The slot may be reused before the worker runs this: the event carries what it needs (the
  // user pointer and state are the strand's).
  dispatch(id, [this, id, gen, h, reason, error] {
    h->on_close(Connection(this, id, gen), reason, error);
  });
  // No event follows on_close: the strand is dropped once it has run.
  uint64_t key = (uint64_t{gen} << 32) | id;
  auto it = strands_.find(key);
  if (it != strands_.end()) it->second.events.push_back(nullptr);
}

void ShardImpl::maybe_finish_half_closed(uint32_t id) {
  Record& r = records_[id];
  if ((r.flags & (flag::kLive | flag::kClosing | flag::kPeerClosed)) !=
      (flag::kLive | flag::kPeerClosed)) {
    return;
  }
  if ((r.flags & flag::kSending) != 0) return;
  const Ext* e = r.ext;
  if (e != nullptr && (!e->out.empty() || e->offloads != 0)) return;
  if (config_.handlers_on_workers) {
    auto it = strands_.find((uint64_t{r.gen} << 32) | id);
    if (it != strands_.end() && (it->second.running || !it->second.events.empty())) return;
  }
  close_now(id, CloseReason::kPeerClosed, 0, false);
}

void ShardImpl::on_closed(uint32_t id) {
  Record& r = records_[id];
  Ext* e = r.ext;
  if (e != nullptr) {
    r.flags &= ~flag::kOpen;  // lets maybe_free_ext let go of everything
    maybe_free_ext(id);
  }
  destroy_state(r);  // normally gone after on_close already; not if on_close never ran
  r.flags = 0;
  r.user = nullptr;
  r.held = 0;
  r.ext = nullptr;
  ++r.gen;
  runtime_.open_slots.fetch_sub(1, std::memory_order_relaxed);
}

void ShardImpl::on_accept_error(int error) {
  (void)error;
  counters_.accept_errors.add();
}

void ShardImpl::close_graceful(uint32_t id, uint16_t gen) {
  Record* r = live(id, gen);
  if (r == nullptr) return;
  if ((r->flags & flag::kCloseAfterFlush) == 0) {
    r->close_reason = static_cast<uint8_t>(
        (r->flags & flag::kPeerClosed) != 0 ? CloseReason::kPeerClosed : CloseReason::kLocal);
    r->flags |= flag::kCloseAfterFlush;
    update_receiving(id);
  }
  if (r->ext == nullptr || r->ext->out.empty()) {
    after_drained(id);
  } else {
    mark_dirty(id);
  }
}

void ShardImpl::abort(uint32_t id, uint16_t gen, CloseReason reason) {
  if (live(id, gen) == nullptr) return;
  close_now(id, reason, 0, true);
}

void ShardImpl::shutdown_write(uint32_t id, uint16_t gen) {
  Record* r = live(id, gen);
  if (r == nullptr || (r->flags & (flag::kWriteShut | flag::kShutAfterFlush)) != 0) return;
  r->flags |= flag::kShutAfterFlush;
  if (r->ext == nullptr || r->ext->out.empty()) {
    after_drained(id);
  } else {
    mark_dirty(id);
  }
}

void ShardImpl::set_user_pause(uint32_t id, uint16_t gen, bool paused) {
  Record* r = live(id, gen);
  if (r == nullptr) return;
  if (paused) {
    r->flags |= flag::kPauseUser;
  } else {
    r->flags &= ~flag::kPauseUser;
  }
  update_receiving(id);
}

std::size_t ShardImpl::queued(uint32_t id, uint16_t gen) const {
  if (!conn_valid(id, gen)) return 0;
  const Ext* e = records_[id].ext;
  return e == nullptr ? 0 : e->out.bytes();
}

void* ShardImpl::user_of(uint32_t id, uint16_t gen) const {
  if ((id & kPendingConnect) != 0) {
    uint32_t token = id & ~kPendingConnect;
    return token < connects_.size() ? connects_[token].user : nullptr;
  }
  if (Strand* s = strand_of(id, gen)) return s->state ? s->state->get() : s->user;
  if (id >= capacity_) return nullptr;
  const Record& r = records_[id];
  if (r.gen != gen || (r.flags & flag::kOpen) == 0) return nullptr;
  if ((r.flags & flag::kOwnsState) != 0) return static_cast<detail::StateBox*>(r.user)->get();
  return r.user;
}

void ShardImpl::set_user(uint32_t id, uint16_t gen, void* user) {
  if (Strand* s = strand_of(id, gen)) {
    s->state.reset();
    s->user = user;
    return;
  }
  if (id >= capacity_) return;
  Record& r = records_[id];
  if (r.gen != gen || (r.flags & flag::kOpen) == 0) return;
  destroy_state(r);
  r.user = user;
}

detail::StateBox* ShardImpl::state_of(uint32_t id, uint16_t gen) const {
  if (Strand* s = strand_of(id, gen)) return s->state.get();
  if (id >= capacity_) return nullptr;
  const Record& r = records_[id];
  if (r.gen != gen ||
      (r.flags & (flag::kOpen | flag::kOwnsState)) != (flag::kOpen | flag::kOwnsState)) {
    return nullptr;
  }
  return static_cast<detail::StateBox*>(r.user);
}

bool ShardImpl::set_state(uint32_t id, uint16_t gen, detail::StateBox* box) {
  std::unique_ptr<detail::StateBox> owned(box);
  if (Strand* s = strand_of(id, gen)) {
    s->state = std::move(owned);
    s->user = nullptr;
    return true;
  }
  // Only while the handler may still use it: after on_close nothing would destroy it in time.
  if (!conn_valid(id, gen)) return false;
  Record& r = records_[id];
  destroy_state(r);
  r.user = nullptr;
  if (owned) {
    r.user = owned.release();
    r.flags |= flag::kOwnsState;
  }
  return true;
}

void ShardImpl::destroy_state(Record& r) {
  if ((r.flags & flag::kOwnsState) == 0) return;
  r.flags &= ~flag::kOwnsState;
  auto* box = static_cast<detail::StateBox*>(std::exchange(r.user, nullptr));
  delete box;
}

// ---------------------------------------------------------------------------------------------
// Spill buffer

bool ShardImpl::spill_append(uint32_t id, uint16_t gen, std::span<const std::byte> data) {
  if (running_strand_ != nullptr) {
    auto& spill = running_strand_->spill;
    if (spill.size() + data.size() > config_.max_spill) {
      post_task([this, id, gen] {
        if (live(id, gen) != nullptr) close_now(id, CloseReason::kInputOverflow, 0, true);
      });
      return false;
    }
    spill.insert(spill.end(), data.begin(), data.end());
    return true;
  }
  Record* r = live(id, gen);
  if (r == nullptr) return false;
  Ext& e = ext(id);
  std::size_t need = std::size_t{e.spill_size} + data.size();
  if (need > config_.max_spill) {
    close_now(id, CloseReason::kInputOverflow, 0, true);
    return false;
  }
  if (need > e.spill_capacity) {
    std::size_t capacity = std::max<std::size_t>({256, need, std::size_t{e.spill_capacity} * 2});
    capacity = std::min(capacity, std::max(need, config_.max_spill));
    auto grown = std::make_unique<std::byte[]>(capacity);
    if (e.spill_size != 0) std::memcpy(grown.get(), e.spill.get(), e.spill_size);
    e.spill = std::move(grown);
    e.spill_capacity = static_cast<uint32_t>(capacity);
  }
  if (!data.empty()) std::memcpy(e.spill.get() + e.spill_size, data.data(), data.size());
  e.spill_size = static_cast<uint32_t>(need);
  return true;
}

void ShardImpl::spill_consume(uint32_t id, uint16_t gen, std::size_t n) {
  if (running_strand_ != nullptr) {
    auto& spill = running_strand_->spill;
    n = std::min(n, spill.size());
    spill.erase(spill.begin(), spill.begin() + static_cast<std::ptrdiff_t>(n));
    if (spill.empty()) std::vector<std::byte>().swap(spill);
    return;
  }
  Record* r = live(id, gen);
  if (r == nullptr || r->ext == nullptr) return;
  Ext& e = *r->ext;
  n = std::min<std::size_t>(n, e.spill_size);
  if (n == e.spill_size) {
    // Exists only while needed.
    e.spill.reset();
    e.spill_size = e.spill_capacity = 0;
    maybe_free_ext(id);
    return;
  }
  std::memmove(e.spill.get(), e.spill.get() + n, e.spill_size - n);
  e.spill_size -= static_cast<uint32_t>(n);
}

std::span<const std::byte> ShardImpl::spill_view(uint32_t id, uint16_t gen) const {
  if (running_strand_ != nullptr) return running_strand_->spill;
  if (!conn_valid(id, gen)) return {};
  const Ext* e = records_[id].ext;
  if (e == nullptr || e->spill_size == 0) return {};
  return {e->spill.get(), e->spill_size};
}

// ---------------------------------------------------------------------------------------------
// Timers

void ShardImpl::on_timer(uint32_t timer) {
  if (timer < capacity_) {
    Record& r = records_[timer];
    if ((r.flags & (flag::kLive | flag::kClosing)) != flag::kLive) return;
    uint32_t idle = static_cast<uint32_t>(tick_now_) - r.last_active;
    if (idle >= idle_ticks_) {
      close_now(timer, CloseReason::kIdleTimeout, 0, false);
    } else {
      wheel_->arm(timer, tick_now_ + (idle_ticks_ - idle));
    }
    return;
  }
  uint32_t slot = timer - capacity_;
  std::function<void()> fn = std::move(user_timers_[slot].fn);
  user_timers_[slot].fn = nullptr;
  if (user_timers_[slot].period == 0) {
    free_user_timer(slot);
    if (fn) fn();
    return;
  }
  // Periodic: the callback may set timers (moving user_timers_) or cancel this one, so it runs
  // from a local and the slot is looked up again after.
  uint32_t gen = user_timers_[slot].gen;
  user_timers_[slot].firing = true;
  fn();
  UserTimer& t = user_timers_[slot];
  if (t.gen != gen) return;  // cancelled from its own callback: the slot is free already
  t.firing = false;
  t.fn = std::move(fn);
  // Fixed rate: the next due tick follows the last one, not the (possibly late) firing; turns
  // missed while the loop was busy are skipped, not run in a burst.
  t.due += t.period;
  if (t.due <= tick_now_) t.due += (tick_now_ - t.due) / t.period * t.period + t.period;
  wheel_->arm(timer, t.due);
}

void ShardImpl::free_user_timer(uint32_t slot) {
  UserTimer& t = user_timers_[slot];
  t.fn = nullptr;
  t.period = 0;
  t.firing = false;
  ++t.gen;
  free_user_timers_.push_back(slot);
}

TimerId ShardImpl::add_timer(Duration d, std::function<void()> fn, Duration period) {
  assert(in_thread() && "Shard::after()/every() are for the shard's own thread");
  uint32_t slot;
  if (!free_user_timers_.empty()) {
    slot = free_user_timers_.back();
    free_user_timers_.pop_back();
  } else {
    if (user_timers_.size() >= kMaxUserTimers) return 0;
    slot = static_cast<uint32_t>(user_timers_.size());
    user_timers_.emplace_back();
  }
  UserTimer& t = user_timers_[slot];
  t.fn = std::move(fn);
  uint64_t ns = static_cast<uint64_t>(std::max<int64_t>(d.count(), 0));
  // Now is the current tick plus the part of it already gone: round the rest up.
  auto since_tick = static_cast<uint64_t>((now_ - start_).count()) % tick_ns_;
  uint64_t ticks = (ns + since_tick + tick_ns_ - 1) / tick_ns_;
  t.due = tick_now_ + std::max<uint64_t>(ticks, 1);
  // A period shorter than a tick fires once a tick.
  t.period =
      period.count() > 0
          ? std::max<uint64_t>(1, (static_cast<uint64_t>(period.count()) + tick_ns_ / 2) / tick_ns_)
          : 0;
  wheel_->arm(capacity_ + slot, t.due);
  return (uint64_t{t.gen} << 32) | (slot + 1);
}

bool ShardImpl::cancel_timer(TimerId id) {
  assert(in_thread() && "Shard::cancel() is for the shard's own thread");
  uint32_t low = static_cast<uint32_t>(id);
  if (low == 0 || low > user_timers_.size()) return false;
  uint32_t slot = low - 1;
  UserTimer& t = user_timers_[slot];
  if (t.gen != static_cast<uint32_t>(id >> 32)) return false;
  // A periodic timer cancelled from its own callback is not armed, but it is still live.
  if (!t.firing && !wheel_->cancel(capacity_ + slot)) return false;
  free_user_timer(slot);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Offload

void ShardImpl::offload(uint32_t id, uint16_t gen, bool has_connection,
                        std::unique_ptr<detail::OffloadJob> job) {
  if (!in_thread()) {
    auto shared = std::make_shared<std::unique_ptr<detail::OffloadJob>>(std::move(job));
    post_task([this, id, gen, has_connection, shared] {
      offload(id, gen, has_connection, std::move(*shared));
    });
    return;
  }
  counters_.offloads_queued.add();
  // Shared by the worker's task and the completion posted back: whichever is dropped last (at
  // shutdown, unrun) frees the job.
  std::shared_ptr<detail::OffloadJob> shared(std::move(job));
  bool tracked = has_connection && live(id, gen) != nullptr;
  if (tracked) ++ext(id).offloads;
  std::function<void()> task = [this, shared, id, gen, tracked] {
    shared->run();
    post_task([this, shared, id, gen, tracked] { complete_offload(*shared, id, gen, tracked); });
  };
  detail::WorkerPool* pool = runtime_.workers.get();
  if (pool == nullptr) {
    local_tasks_.push_back(std::move(task));  // no pool: run on the shard, still asynchronously
    return;
  }
  if (waiting_offloads_.empty() && pool->try_submit(task)) return;
  counters_.offload_waits.add();
  waiting_offloads_.push_back(WaitingOffload{std::move(task), id, gen, tracked});
  if (tracked) {
    ++ext(id).offloads_waiting;
    records_[id].flags |= flag::kPauseOffload;
    update_receiving(id);
  }
}

void ShardImpl::retry_waiting_offloads() {
  detail::WorkerPool* pool = runtime_.workers.get();
  while (!waiting_offloads_.empty() && pool != nullptr) {
    WaitingOffload& w = waiting_offloads_.front();
    if (!pool->try_submit(w.task)) return;
    if (w.has_connection) {
      Record& r = records_[w.id];
      if ((r.flags & flag::kOpen) != 0 && r.gen == w.gen && r.ext != nullptr &&
          --r.ext->offloads_waiting == 0) {
        r.flags &= ~flag::kPauseOffload;
        update_receiving(w.id);
      }
    }
    waiting_offloads_.pop_front();
  }
}

void ShardImpl::complete_offload(detail::OffloadJob& job, uint32_t id, uint16_t gen, bool tracked) {
  counters_.offloads_done.add();
  job.complete();
  if (!tracked) return;
  Record& r = records_[id];
  if ((r.flags & flag::kOpen) == 0 || r.gen != gen || r.ext == nullptr) return;
  --r.ext->offloads;
  if ((r.flags & flag::kClosing) != 0) return;
  if ((r.flags & flag::kSending) == 0 && r.ext->out.empty()) after_drained(id);
}

// ---------------------------------------------------------------------------------------------
// handlers_on_workers

template <class Event>
void ShardImpl::dispatch(uint32_t id, Event&& event) {
  if (!config_.handlers_on_workers) {
    event();
    return;
  }
  enqueue_strand((uint64_t{records_[id].gen} << 32) | id,
                 std::function<void()>(std::forward<Event>(event)));
}

void ShardImpl::enqueue_strand(uint64_t key, std::function<void()> event) {
  auto [it, made] = strands_.try_emplace(key);
  Strand& s = it->second;
  if (made) s.user = records_[static_cast<uint32_t>(key)].user;  // e.g. connect()'s user
  s.key = key;
  s.events.push_back(std::move(event));
  if (!s.running) start_strand(key);
}

void ShardImpl::start_strand(uint64_t key) {
  Strand& s = strands_[key];
  auto batch = std::make_shared<std::deque<std::function<void()>>>();
  batch->swap(s.events);
  s.running = true;
  Strand* strand = &s;  // unordered_map nodes do not move
  std::function<void()> task = [this, key, batch, strand] {
    running_strand_ = strand;
    for (auto& event : *batch) {
      if (event) event();
    }
    running_strand_ = nullptr;
    post_task([this, key, batch] {
      auto it = strands_.find(key);
      bool ended = !batch->empty() && !batch->back();
      it->second.running = false;
      if (ended) {
        strands_.erase(it);
        return;
      }
      if (!it->second.events.empty()) {
        start_strand(key);
        return;
      }
      uint32_t id = static_cast<uint32_t>(key);
      Record& r = records_[id];
      if ((r.flags & flag::kOpen) != 0 && r.gen == static_cast<uint16_t>(key >> 32)) {
        maybe_finish_half_closed(id);
      }
    });
  };
  // The pool's queue is bounded; a handler event that finds it full waits on the shard like
  // any other offload, and its connection stops receiving meanwhile.
  uint32_t id = static_cast<uint32_t>(key);
  uint16_t gen = static_cast<uint16_t>(key >> 32);
  offload(id, gen, true, detail::make_offload_job(std::move(task), [] {}));
}

// ---------------------------------------------------------------------------------------------
// Shutdown

void ShardImpl::begin_drain() {
  draining_ = true;
  drain_deadline_ = now_ + config_.drain_timeout;
  backend_->stop_accepting();
  // Closed now, not at destruction: new connections are refused rather than left waiting in a
  // backlog nobody accepts from.
  // shutdown() stops a listening socket at once, even while an accept still holds it.
  for (auto& l : listeners_) {
    if (l.fd < 0) continue;
    ::shutdown(l.fd, SHUT_RDWR);
    ::close(l.fd);
    l.fd = -1;
  }
  // Only busy connections have anything to finish; idle ones close at teardown.
  std::vector<uint32_t> busy;
  for (Ext* e = busy_; e != nullptr; e = e->next) busy.push_back(e->id);
  for (uint32_t id : busy) {
    Record& r = records_[id];
    if ((r.flags & (flag::kLive | flag::kClosing)) != flag::kLive) continue;
    r.close_reason = static_cast<uint8_t>(CloseReason::kShutdown);
    r.flags |= flag::kCloseAfterFlush;
    update_receiving(id);
    if ((r.flags & flag::kSending) == 0) flush_one(id);
  }
}

bool ShardImpl::drain_done() const {
  for (const Ext* e = busy_; e != nullptr; e = e->next) {
    const Record& r = records_[e->id];
    if ((r.flags & flag::kClosing) == 0 && (!e->out.empty() || e->offloads != 0)) return false;
  }
  return waiting_offloads_.empty();
}

void ShardImpl::teardown() {
  finish_closes();
  // Every connection still open is closed now. Handlers hear on_close for each (a walk of the
  // table, no system call); the backend then drops all descriptors at once.
  for (uint32_t id = 0; id < capacity_; ++id) {
    Record& r = records_[id];
    if ((r.flags & flag::kLive) == 0) continue;
    r.flags &= ~flag::kLive;
    r.flags |= flag::kClosing;
    if (idle_ticks_ != 0) wheel_->cancel(id);
    counters_.closed_shutdown.add();
    counters_.open.sub();
    Handler* h = handlers_[r.handler];
    h->on_close(Connection(this, id, r.gen), CloseReason::kShutdown, 0);
    destroy_state(r);
  }
  backend_->close_all();
  backend_.reset();
  for (Ext* e = busy_; e != nullptr;) {
    Ext* next = e->next;
    counters_.queued_bytes.sub(e->out.bytes());
    e->out.clear([](uint32_t) {});
    e = next;
  }
  busy_ = nullptr;
}

Counters ShardImpl::snapshot() const {
  const ShardCounters& c = counters_;
  Counters out;
  out.accepted = c.accepted.get();
  out.connected = c.connected.get();
  out.connect_failed = c.connect_failed.get();
  out.rejected = c.rejected.get();
  out.open = c.open.get();
  out.closed_peer = c.closed_peer.get();
  out.closed_reset = c.closed_reset.get();
  out.closed_idle = c.closed_idle.get();
  out.closed_slow_reader = c.closed_slow_reader.get();
  out.closed_input_overflow = c.closed_input_overflow.get();
  out.closed_local = c.closed_local.get();
  out.closed_shutdown = c.closed_shutdown.get();
  out.bytes_in = c.bytes_in.get();
  out.bytes_out = c.bytes_out.get();
  out.receives = c.receives.get();
  out.sends = c.sends.get();
  out.buffers_in_use = c.buffers_in_use.get();
  out.queued_bytes = c.queued_bytes.get();
  out.buffer_starved = c.buffer_starved.get();
  out.watermark_pauses = c.watermark_pauses.get();
  out.buffer_cap_pauses = c.buffer_cap_pauses.get();
  out.offloads_queued = c.offloads_queued.get();
  out.offloads_done = c.offloads_done.get();
  out.offload_waits = c.offload_waits.get();
  out.accept_errors = c.accept_errors.get();
  out.stray_wakeups = c.stray_wakeups.get();
  return out;
}

}  // namespace myriad
