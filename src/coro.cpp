#include <myriad/coro.hpp>

#include <new>

namespace myriad {

namespace {
std::atomic<std::size_t> last_frame{0};
}  // namespace

void* Task::promise_type::operator new(std::size_t bytes) {
  last_frame.store(bytes, std::memory_order_relaxed);
  return ::operator new(bytes);
}

void Task::promise_type::operator delete(void* p, std::size_t bytes) {
  ::operator delete(p, bytes);
}

std::size_t Task::last_frame_bytes() {
  return last_frame.load(std::memory_order_relaxed);
}

void Task::promise_type::Final::await_suspend(std::coroutine_handle<promise_type> h) noexcept {
  Stream* s = h.promise().stream;
  if (h.promise().error) s->connection_.abort();  // an escaped exception: drop the connection
  s->finished();  // may free the stream and with it this frame: nothing may follow
}

void Stream::finished() {
  done_ = true;
  if (closed_) {
    delete this;
    return;
  }
  connection_.close();  // returning means done with the connection; on_close frees us
}

Chunk Stream::take() {
  if (inbox_.empty()) return Chunk();
  Chunk c = std::move(inbox_.front());
  inbox_.pop_front();
  if (paused_ && inbox_.size() < kInboxLimit / 2) {
    paused_ = false;
    connection_.resume_receiving();
  }
  return c;
}

void Stream::wake() {
  std::coroutine_handle<> h = std::exchange(waiting_, nullptr);
  if (h) h.resume();
}

void CoroutineHandler::on_open(Connection c) {
  if (Shard::current() == nullptr) {
    // handlers_on_workers: a coroutine must live on its shard; refuse rather than race.
    c.abort();
    return;
  }
  auto* s = new Stream(c);
  c.set_user(s);
  s->task_ = body_(*s);
  s->task_.handle_.promise().stream = s;
  s->task_.handle_.resume();
}

void CoroutineHandler::on_data(Connection c, Chunk data) {
  auto* s = static_cast<Stream*>(c.user());
  if (s == nullptr || s->done_) return;
  s->inbox_.push_back(std::move(data));
  if (s->inbox_.size() >= Stream::kInboxLimit && !s->paused_) {
    s->paused_ = true;
    c.pause_receiving();
  }
  if (s->waiting_for_data_) s->wake();
}

void CoroutineHandler::on_peer_closed(Connection c) {
  auto* s = static_cast<Stream*>(c.user());
  if (s == nullptr) return;
  s->eof_ = true;
  if (s->waiting_for_data_) s->wake();
}

void CoroutineHandler::on_write_watermark(Connection c, bool above_high) {
  auto* s = static_cast<Stream*>(c.user());
  if (s != nullptr && !above_high && s->waiting_ && !s->waiting_for_data_) s->wake();
}

void CoroutineHandler::on_close(Connection c, CloseReason, int) {
  auto* s = static_cast<Stream*>(c.user());
  if (s == nullptr) return;
  s->closed_ = true;
  s->inbox_.clear();
  if (s->done_) {
    delete s;
    return;
  }
  s->wake();  // a coroutine waiting to receive or send learns the connection is gone
}

}  // namespace myriad
