// The epoll backend: the fallback where io_uring is missing, disabled or blocked.
//
// Practices it follows, and why:
// - Edge-triggered, registered once for in, out and peer-hangup: no epoll_ctl per read or write.
// - A connection is read only while the shard wants its data, into a pool chunk taken at that
//   moment, so an idle connection holds no buffer, exactly as with io_uring's buffer rings. A
//   readable connection that finds the pool empty waits on a starved list and is served first
//   when chunks come back (no byte is lost: the socket keeps them).
// - At most a few chunks per connection per turn, then the next connection: one busy peer
//   cannot starve the rest. Accepts are capped per turn for the same reason.
// - Sends are one system call per connection per turn, gathering the whole queue (sendmsg; send
//   when the queue is one buffer); only EAGAIN makes a connection wait for EPOLLOUT. What a
//   handler wrote in answer to a read goes out right after that connection's reads, not at the
//   end of the turn: the chunk is still in cache (the pool is LIFO, so the next read reuses
//   it), and the peer gets its answer while the loop reads the others.
// - EMFILE on accept is met with a reserve descriptor (close it, accept, close, reopen), so a
//   full descriptor table cannot spin the loop.
// - Capacity is bounded by RLIMIT_NOFILE: connection ids are descriptors.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend.hpp"
#include "shard_impl.hpp"

namespace myriad::detail {
namespace {

// The calls made per message, straight to the kernel. glibc's recv, send, sendmsg and epoll_wait
// are cancellation points: in a process with more than one thread (every myriad process) each
// call switches asynchronous cancellation on and off around the system call. myriad never
// cancels a thread, and measured beside the C epoll loop that wrapper alone cost about 5 % of
// the CPU per message (docs/BENCHMARKS.md), so the epoll backend skips it.
namespace sys {
inline ssize_t recv(int fd, void* buf, std::size_t len, int flags) {
  return ::syscall(SYS_recvfrom, fd, buf, len, flags, nullptr, nullptr);
}
inline ssize_t send(int fd, const void* buf, std::size_t len, int flags) {
  return ::syscall(SYS_sendto, fd, buf, len, flags, nullptr, 0);
}
inline ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  return ::syscall(SYS_sendmsg, fd, msg, flags);
}
inline int epoll_pwait2(int epfd, epoll_event* events, int max, const timespec* timeout) {
  return static_cast<int>(
      ::syscall(SYS_epoll_pwait2, epfd, events, max, timeout, nullptr, std::size_t{8}));
}
inline int epoll_wait(int epfd, epoll_event* events, int max, int timeout_ms) {
  return static_cast<int>(::syscall(SYS_epoll_wait, epfd, events, max, timeout_ms));
}
}  // namespace sys

constexpr uint64_t kListenerTag = uint64_t{1} << 63;
constexpr uint64_t kEventTag = uint64_t{1} << 62;
// Chunks read from one connection before moving on to the next.
constexpr int kReadsPerTurn = 4;

// Whether the record's slot holds a connection (until the shard's on_closed).
inline bool is_open(const Record& r) {
  return (r.flags & flag::kOpen) != 0;
}

namespace io {
constexpr uint8_t kReadable = 1 << 0;  // an edge said readable and we have not drained it
constexpr uint8_t kInReady = 1 << 1;   // queued in ready_
constexpr uint8_t kWantRead = 1 << 2;
constexpr uint8_t kWaitWrite = 1 << 3;  // a send waits for EPOLLOUT
constexpr uint8_t kConnecting = 1 << 4;
constexpr uint8_t kStarved = 1 << 5;  // queued in starved_
constexpr uint8_t kHangup = 1 << 6;   // the peer shut down: read on until end of stream
}  // namespace io

class EpollBackend final : public Backend {
 public:
  EpollBackend(ShardImpl& shard, uint32_t capacity, int event_fd)
      : shard_(shard), event_fd_(event_fd), capacity_(capacity), pending_send_(capacity) {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = kEventTag;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, event_fd_, &ev) != 0) {
      throw std::runtime_error(std::string("epoll_ctl eventfd: ") + std::strerror(errno));
    }
    reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    events_.resize(1024);
  }

  ~EpollBackend() override {
    if (reserve_fd_ >= 0) ::close(reserve_fd_);
    if (epfd_ >= 0) ::close(epfd_);
  }

  std::string describe() const override {
    return "epoll, " + std::to_string(capacity_) + " descriptors (RLIMIT_NOFILE)";
  }

  void add_listener(int fd, uint16_t listener) override {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = kListenerTag | listener;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      throw std::runtime_error(std::string("epoll_ctl listener: ") + std::strerror(errno));
    }
    if (listeners_.size() <= listener) listeners_.resize(listener + 1);
    listeners_[listener] = Listener{fd, true, true};
  }

  void stop_accepting() override {
    for (auto& l : listeners_) {
      if (!l.active) continue;
      ::epoll_ctl(epfd_, EPOLL_CTL_DEL, l.fd, nullptr);
      l.active = false;
      l.pending = false;
    }
  }

  void start_receive(uint32_t id) override {
    Record& r = shard_.record(id);
    r.io |= io::kWantRead;
    if ((r.io & io::kReadable) != 0) queue_ready(id);
  }

  void stop_receive(uint32_t id) override { shard_.record(id).io &= ~io::kWantRead; }

  void send(uint32_t id, msghdr* msg) override {
    // One buffer (the common case: an echo, a small reply) goes by send(): no msghdr and iovec
    // to copy in and check, which is most of what sendmsg costs beyond it.
    int fd = static_cast<int>(id);
    ssize_t n = msg->msg_iovlen == 1
                    ? sys::send(fd, msg->msg_iov[0].iov_base, msg->msg_iov[0].iov_len,
                                MSG_NOSIGNAL | MSG_DONTWAIT)
                    : sys::sendmsg(fd, msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      shard_.record(id).io |= io::kWaitWrite;
      pending_send_[id] = msg;
      return;
    }
    shard_.on_sent(id, n < 0 ? -errno : static_cast<int>(n));
  }

  void shutdown_write(uint32_t id) override { ::shutdown(static_cast<int>(id), SHUT_WR); }

  void close(uint32_t id, bool reset) override {
    int fd = static_cast<int>(id);
    if (reset) {
      linger l{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    ::close(fd);
    shard_.record(id).io = 0;
    pending_send_[id] = nullptr;
    shard_.on_closed(id);
  }

  void connect(uint32_t token, const Address& to) override {
    int fd = ::socket(to.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || static_cast<uint32_t>(fd) >= capacity_) {
      int error = fd < 0 ? errno : EMFILE;
      if (fd >= 0) ::close(fd);
      shard_.post_task([this, token, error] { shard_.on_connect_failed(token, error); });
      return;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint32_t id = static_cast<uint32_t>(fd);
    shard_.on_connect_slot(token, id);
    Record& r = shard_.record(id);
    r.io = io::kConnecting;
    int rc = ::connect(fd, to.sockaddr_ptr(), to.length());
    if (rc != 0 && errno != EINPROGRESS) {
      int error = errno;
      r.io = 0;
      shard_.post_task([this, id, error] { shard_.on_connected(id, -error); });
      return;
    }
    register_connection(fd);
  }

  void recycle(uint32_t chunk) override {
    shard_.pool().give(chunk);
    // Chunks are back: the connections that found none are served first.
    while (!starved_.empty() && starved_head_ < starved_.size()) {
      uint32_t id = starved_[starved_head_++];
      Record& r = shard_.record(id);
      if ((r.io & io::kStarved) == 0) continue;
      r.io &= ~io::kStarved;
      if ((r.io & io::kReadable) != 0) queue_ready(id);
      break;  // one chunk came back: one connection to serve
    }
    if (starved_head_ == starved_.size()) {
      starved_.clear();
      starved_head_ = 0;
    }
  }

  void poll(int64_t timeout_ns) override {
    if (!ready_.empty() || pending_accepts()) timeout_ns = 0;
    int n = wait(timeout_ns);
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events_[i].data.u64;
      uint32_t ev = events_[i].events;
      if ((tag & kListenerTag) != 0) {
        listeners_[tag & 0xffff].pending = true;
      } else if (tag == kEventTag) {
        uint64_t value;
        ssize_t got = ::read(event_fd_, &value, sizeof(value));
        (void)got;  // the shard drains its inbox every turn; this only woke us
      } else {
        on_event(static_cast<uint32_t>(tag), ev);
      }
    }
    for (std::size_t i = 0; i < listeners_.size(); ++i) {
      if (listeners_[i].active && listeners_[i].pending) accept_some(static_cast<uint16_t>(i));
    }
    service_ready();
  }

  void close_all() override {
    for (uint32_t id = 0; id < capacity_; ++id) {
      Record& r = shard_.record(id);
      if (!is_open(r)) continue;
      ::close(static_cast<int>(id));
      r.io = 0;
    }
  }

 private:
  struct Listener {
    int fd = -1;
    bool active = false;
    bool pending = false;  // the accept cap left connections in the backlog
  };

  bool pending_accepts() const {
    for (const auto& l : listeners_) {
      if (l.active && l.pending) return true;
    }
    return false;
  }

  int wait(int64_t timeout_ns) {
    timespec ts{};
    timespec* tsp = nullptr;
    if (timeout_ns >= 0) {
      ts.tv_sec = timeout_ns / 1'000'000'000;
      ts.tv_nsec = timeout_ns % 1'000'000'000;
      tsp = &ts;
    }
    int n;
    if (use_pwait2_) {
      n = sys::epoll_pwait2(epfd_, events_.data(), static_cast<int>(events_.size()), tsp);
      if (n < 0 && errno == ENOSYS) use_pwait2_ = false;
    }
    if (!use_pwait2_) {
      int ms = timeout_ns < 0 ? -1 : static_cast<int>((timeout_ns + 999'999) / 1'000'000);
      n = sys::epoll_wait(epfd_, events_.data(), static_cast<int>(events_.size()), ms);
    }
    return n < 0 ? 0 : n;
  }

  void register_connection(int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = static_cast<uint32_t>(fd);
    ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  }

  void queue_ready(uint32_t id) {
    Record& r = shard_.record(id);
    if ((r.io & (io::kInReady | io::kStarved)) != 0) return;
    r.io |= io::kInReady;
    ready_.push_back(id);
  }

  void on_event(uint32_t id, uint32_t ev) {
    Record& r = shard_.record(id);
    if (!is_open(r)) return;
    if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) {
      if ((r.io & io::kConnecting) != 0) {
        r.io &= ~io::kConnecting;
        int error = 0;
        socklen_t len = sizeof(error);
        ::getsockopt(static_cast<int>(id), SOL_SOCKET, SO_ERROR, &error, &len);
        shard_.on_connected(id, -error);
        if (!is_open(shard_.record(id)) || error != 0) return;
      } else if ((r.io & io::kWaitWrite) != 0) {
        r.io &= ~io::kWaitWrite;
        msghdr* msg = pending_send_[id];
        pending_send_[id] = nullptr;
        send(id, msg);
        if (!is_open(shard_.record(id))) return;
      }
    }
    if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
      Record& rec = shard_.record(id);
      if ((rec.io & io::kConnecting) != 0) return;
      rec.io |= io::kReadable;
      if ((ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) rec.io |= io::kHangup;
      if ((rec.io & io::kWantRead) != 0) queue_ready(id);
    }
  }

  void service_ready() {
    work_.clear();
    work_.swap(ready_);  // what reading queues again waits for the next turn
    for (uint32_t id : work_) {
      Record& r = shard_.record(id);
      r.io &= ~io::kInReady;
      if (!is_open(r)) continue;
      read_some(id);
      if (is_open(shard_.record(id))) shard_.flush_early(id);
    }
  }

  void read_some(uint32_t id) {
    int fd = static_cast<int>(id);
    BufferPool& pool = shard_.pool();
    for (int k = 0; k < kReadsPerTurn; ++k) {
      Record& r = shard_.record(id);
      if (!is_open(r) ||
          (r.io & (io::kWantRead | io::kReadable)) != (io::kWantRead | io::kReadable)) {
        return;
      }
      uint32_t chunk;
      if (!pool.take(chunk)) {
        r.io |= io::kStarved;
        starved_.push_back(id);
        shard_.on_buffer_starved();
        return;
      }
      ssize_t n = sys::recv(fd, pool.address(chunk), pool.chunk_size(), 0);
      if (n > 0) {
        // A short read drained the socket; after a hangup, read on to see the end of stream.
        if (static_cast<std::size_t>(n) < pool.chunk_size() && (r.io & io::kHangup) == 0) {
          r.io &= ~io::kReadable;
        }
        shard_.on_received(id, chunk, static_cast<uint32_t>(n));
        continue;
      }
      pool.give(chunk);
      if (n == 0) {
        r.io &= ~io::kReadable;
        shard_.on_receive_end(id, 0);
        return;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        r.io &= ~io::kReadable;
        return;
      }
      r.io &= ~io::kReadable;
      shard_.on_receive_end(id, -errno);
      return;
    }
    queue_ready(id);  // more to read: after the others
  }

  void accept_some(uint16_t index) {
    Listener& l = listeners_[index];
    unsigned cap = std::max(1u, shard_.config().accepts_per_turn);
    for (unsigned k = 0; k < cap; ++k) {
      int fd = ::accept4(l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        int error = errno;
        if (error == EAGAIN || error == EWOULDBLOCK) {
          l.pending = false;
          return;
        }
        if (error == EINTR || error == ECONNABORTED) continue;
        shard_.on_accept_error(error);
        if ((error == EMFILE || error == ENFILE) && reserve_fd_ >= 0) {
          // Make room for one, take the connection off the backlog and close it.
          ::close(reserve_fd_);
          int dropped = ::accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (dropped >= 0) ::close(dropped);
          reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
          continue;
        }
        return;
      }
      if (static_cast<uint32_t>(fd) >= capacity_) {
        ::close(fd);
        shard_.on_accept_error(EMFILE);
        continue;
      }
      Record& r = shard_.record(static_cast<uint32_t>(fd));
      r.io = 0;
      pending_send_[static_cast<uint32_t>(fd)] = nullptr;
      register_connection(fd);
      shard_.on_accepted(static_cast<uint32_t>(fd), index);
    }
    l.pending = true;  // the cap was reached: come back next turn
  }

  ShardImpl& shard_;
  int epfd_ = -1;
  int event_fd_;
  int reserve_fd_ = -1;
  uint32_t capacity_;
  bool use_pwait2_ = true;
  std::vector<Listener> listeners_;
  std::vector<uint32_t> ready_;
  std::vector<uint32_t> work_;
  std::vector<uint32_t> starved_;
  std::size_t starved_head_ = 0;
  LazyArray<msghdr*> pending_send_;
  std::vector<epoll_event> events_;
};

}  // namespace

std::unique_ptr<Backend> make_epoll_backend(ShardImpl& shard, uint32_t capacity, int event_fd) {
  return std::make_unique<EpollBackend>(shard, capacity, event_fd);
}

}  // namespace myriad::detail
