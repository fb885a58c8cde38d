// Connection, Chunk and Shard: the public handles, forwarding to the shard that owns them.
//
// The thread contract is connection.hpp's: actions (sends, closes, pauses, offloads) from any
// thread are posted to the connection's shard, in order, one queue per shard; reads and state
// changes are for the connection's own thread and checked in debug builds. With
// Config::handlers_on_workers a handler runs on a worker, so its actions take the posting path,
// and the chunk a worker drops goes back the same way.
#include <myriad/connection.hpp>
#include <myriad/runtime.hpp>
#include <myriad/shard.hpp>

#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "runtime_impl.hpp"
#include "shard_impl.hpp"

namespace myriad {

namespace flag = detail::flag;

const char* to_string(CloseReason reason) {
  switch (reason) {
    case CloseReason::kPeerClosed:
      return "peer closed";
    case CloseReason::kReset:
      return "reset";
    case CloseReason::kIdleTimeout:
      return "idle timeout";
    case CloseReason::kSlowReader:
      return "slow reader";
    case CloseReason::kInputOverflow:
      return "input overflow";
    case CloseReason::kLocal:
      return "closed locally";
    case CloseReason::kShutdown:
      return "shutdown";
    case CloseReason::kConnectFailed:
      return "connect failed";
  }
  return "?";
}

void Chunk::release() {
  if (shard_ == nullptr) return;
  shard_->release_chunk(id_);
  shard_ = nullptr;
  size_ = 0;
  data_ = nullptr;
}

namespace {
// Debug builds: a method for the connection's own thread called from another one.
inline void check_thread(const ShardImpl* shard, uint32_t id, uint16_t gen, const char* method) {
#ifndef NDEBUG
  if (shard == nullptr || shard->may_touch(id, gen)) return;
  std::fprintf(stderr,
               "myriad: Connection::%s() called off the connection's shard thread (shard %u); "
               "only sends, closes, pauses and offloads may be (see connection.hpp)\n",
               method, shard->shard_index());
  std::abort();
#else
  (void)shard, (void)id, (void)gen, (void)method;
#endif
}
}  // namespace

bool Connection::valid() const {
  check_thread(shard_, id_, gen_, "valid");
  return shard_ != nullptr && shard_->conn_valid(id_, gen_);
}

Shard& Connection::shard() const {
  return *shard_;
}

bool Connection::outbound() const {
  return valid() && (shard_->record(id_).flags & flag::kOutbound) != 0;
}

std::size_t Connection::hash() const noexcept {
  uint64_t shard = shard_ == nullptr ? 0xffff : shard_->shard_index();
  uint64_t key = shard << 48 | uint64_t{id_} << 16 | gen_;
  key ^= key >> 33;  // murmur3's 64-bit finaliser: a bijection
  key *= 0xff51afd7ed558ccdULL;
  key ^= key >> 33;
  key *= 0xc4ceb9fe1a85ec53ULL;
  key ^= key >> 33;
  return static_cast<std::size_t>(key);
}

void* Connection::user() const {
  check_thread(shard_, id_, gen_, "user");
  return shard_ == nullptr ? nullptr : shard_->user_of(id_, gen_);
}

void Connection::set_user(void* user) {
  check_thread(shard_, id_, gen_, "set_user");
  if (shard_ != nullptr) shard_->set_user(id_, gen_, user);
}

detail::StateBox* Connection::state_box() const {
  check_thread(shard_, id_, gen_, "state");
  return shard_ == nullptr ? nullptr : shard_->state_of(id_, gen_);
}

bool Connection::adopt_state(detail::StateBox* box) {
  check_thread(shard_, id_, gen_, "emplace_state");
  if (shard_ == nullptr) {
    delete box;
    return false;
  }
  return shard_->set_state(id_, gen_, box);
}

bool Connection::send(Chunk&& data) {
  if (shard_ == nullptr) return false;
  if (!shard_->in_thread()) {
    auto moved = std::make_shared<Chunk>(std::move(data));
    shard_->post_task([c = *this, moved]() mutable { c.send(std::move(*moved)); });
    return true;
  }
  return shard_->send_chunk(id_, gen_, std::move(data));
}

bool Connection::send(std::span<const std::byte> data) {
  if (shard_ == nullptr) return false;
  if (!shard_->in_thread()) {
    auto copy = std::make_shared<std::vector<std::byte>>(data.begin(), data.end());
    shard_->post_task([c = *this, copy]() mutable { c.send(std::span<const std::byte>(*copy)); });
    return true;
  }
  return shard_->send_copy(id_, gen_, data);
}

bool Connection::send(const SharedBuffer& buffer) {
  if (shard_ == nullptr) return false;
  if (!shard_->in_thread()) {
    shard_->post_task([c = *this, buffer]() mutable { c.send(buffer); });
    return true;
  }
  return shard_->send_shared(id_, gen_, buffer);
}

std::size_t Connection::queued() const {
  check_thread(shard_, id_, gen_, "queued");
  return shard_ == nullptr ? 0 : shard_->queued(id_, gen_);
}

bool Connection::writable() const {
  check_thread(shard_, id_, gen_, "writable");
  return valid() && (shard_->record(id_).flags & flag::kAboveHigh) == 0;
}

namespace {
// Runs fn on the connection's shard: now if called there, else posted.
template <class F>
void on_shard(ShardImpl* shard, F&& fn) {
  if (shard == nullptr) return;
  if (shard->in_thread()) {
    fn();
  } else {
    shard->post_task(std::forward<F>(fn));
  }
}
}  // namespace

void Connection::close() {
  on_shard(shard_, [s = shard_, id = id_, gen = gen_] { s->close_graceful(id, gen); });
}

void Connection::abort() {
  on_shard(shard_, [s = shard_, id = id_, gen = gen_] { s->abort(id, gen, CloseReason::kLocal); });
}

void Connection::abort(CloseReason reason) {
  switch (reason) {
    case CloseReason::kInputOverflow:
    case CloseReason::kSlowReader:
    case CloseReason::kIdleTimeout:
      break;
    default:
      reason = CloseReason::kLocal;
  }
  on_shard(shard_, [s = shard_, id = id_, gen = gen_, reason] { s->abort(id, gen, reason); });
}

void Connection::shutdown_write() {
  on_shard(shard_, [s = shard_, id = id_, gen = gen_] { s->shutdown_write(id, gen); });
}

void Connection::pause_receiving() {
  on_shard(shard_, [s = shard_, id = id_, gen = gen_] { s->set_user_pause(id, gen, true); });
}

void Connection::resume_receiving() {
  on_shard(shard_, [s = shard_, id = id_, gen = gen_] { s->set_user_pause(id, gen, false); });
}

std::span<const std::byte> Connection::spill() const {
  check_thread(shard_, id_, gen_, "spill");
  return shard_ == nullptr ? std::span<const std::byte>() : shard_->spill_view(id_, gen_);
}

bool Connection::spill_append(std::span<const std::byte> data) {
  check_thread(shard_, id_, gen_, "spill_append");
  return shard_ != nullptr && shard_->spill_append(id_, gen_, data);
}

void Connection::spill_consume(std::size_t n) {
  check_thread(shard_, id_, gen_, "spill_consume");
  if (shard_ != nullptr) shard_->spill_consume(id_, gen_, n);
}

void Connection::offload_job(std::unique_ptr<detail::OffloadJob> job) {
  if (shard_ == nullptr) return;
  shard_->offload(id_, gen_, true, std::move(job));
}

// ---- Shard ----

Shard* Shard::current() {
  return ShardImpl::current_impl();
}

unsigned Shard::index() const {
  return static_cast<const ShardImpl*>(this)->shard_index();
}

Runtime& Shard::runtime() const {
  return static_cast<const ShardImpl*>(this)->runtime_impl().facade;
}

void Shard::post(std::function<void()> fn) {
  static_cast<ShardImpl*>(this)->post_task(std::move(fn));
}

TimerId Shard::after(Duration d, std::function<void()> fn) {
  return static_cast<ShardImpl*>(this)->add_timer(d, std::move(fn));
}

TimerId Shard::every(Duration period, std::function<void()> fn) {
  if (period.count() <= 0) return 0;
  return static_cast<ShardImpl*>(this)->add_timer(period, std::move(fn), period);
}

Handler* Shard::listener_handler(std::size_t listener) const {
  return static_cast<const ShardImpl*>(this)->listener_handler(listener);
}

std::size_t Shard::listener_count() const {
  return static_cast<const ShardImpl*>(this)->listener_count();
}

bool Shard::cancel(TimerId id) {
  return static_cast<ShardImpl*>(this)->cancel_timer(id);
}

void Shard::connect(const Address& to, Handler& handler, void* user) {
  auto* self = static_cast<ShardImpl*>(this);
  if (!self->in_thread()) {
    self->post_task([self, to, &handler, user] { self->start_connect(to, handler, user); });
    return;
  }
  self->start_connect(to, handler, user);
}

std::chrono::steady_clock::time_point Shard::now() const {
  assert(static_cast<const ShardImpl*>(this)->in_thread() &&
         "Shard::now() is for the shard's own thread");
  return static_cast<const ShardImpl*>(this)->loop_now();
}

Counters Shard::counters() const {
  return static_cast<const ShardImpl*>(this)->snapshot();
}

void Shard::offload_job(std::unique_ptr<detail::OffloadJob> job) {
  static_cast<ShardImpl*>(this)->offload(0, 0, false, std::move(job));
}

}  // namespace myriad
