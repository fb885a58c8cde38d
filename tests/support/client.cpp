#include "client.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <stdexcept>
#include <thread>

namespace test {

Socket Socket::connect_to(const myriad::Address& to, int receive_buffer) {
  int fd = ::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  if (receive_buffer > 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
  if (::connect(fd, to.sockaddr_ptr(), to.length()) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error("connect " + to.to_string() + ": " + std::strerror(e));
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return Socket(fd);
}

void Socket::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool Socket::send_all(const std::string& data) {
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd p{fd_, POLLOUT, 0};
        ::poll(&p, 1, 100);
        continue;
      }
      return false;
    }
    off += static_cast<std::size_t>(n);
  }
  return true;
}

namespace {
bool wait_readable(int fd, std::chrono::steady_clock::time_point end) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 100)));
    if (r > 0) return true;
  }
}
}  // namespace

std::string Socket::read_n(std::size_t n, std::chrono::milliseconds limit) {
  std::string out;
  auto end = std::chrono::steady_clock::now() + limit;
  char buf[65536];
  while (out.size() < n) {
    if (!wait_readable(fd_, end)) break;
    ssize_t got = ::recv(fd_, buf, std::min(sizeof(buf), n - out.size()), MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (got <= 0) break;
    out.append(buf, static_cast<std::size_t>(got));
  }
  return out;
}

bool Socket::read_to_eof(std::string& out, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  char buf[65536];
  for (;;) {
    if (!wait_readable(fd_, end)) return false;
    ssize_t got = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (got == 0) return true;
    if (got < 0) return false;
    out.append(buf, static_cast<std::size_t>(got));
  }
}

bool Socket::closed_by_peer(std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  char buf[65536];
  for (;;) {
    if (!wait_readable(fd_, end)) return false;
    ssize_t got = ::recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (got <= 0) return true;
  }
}

bool Socket::reset_by_peer(std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{fd_, 0, 0};  // POLLERR and POLLHUP are always reported
    if (::poll(&p, 1, 50) > 0 && (p.revents & (POLLERR | POLLHUP)) != 0) return true;
  }
  return false;
}

Socket::Outcome Socket::read_outcome(std::size_t n, std::string& got,
                                     std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  char buf[65536];
  while (got.size() < n) {
    if (!wait_readable(fd_, end)) return Outcome::kHanging;
    ssize_t r = ::recv(fd_, buf, std::min(sizeof(buf), n - got.size()), MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (r <= 0) return Outcome::kClosed;  // EOF, or a reset
    got.append(buf, static_cast<std::size_t>(r));
  }
  return Outcome::kData;
}

uint32_t Socket::peer_window() const {
  return tcp_peer_window(fd_);
}

std::size_t Socket::send_until_peer_stops_reading(const std::string& block, std::size_t limit,
                                                  bool& stalled,
                                                  std::chrono::milliseconds deadline) {
  stalled = false;
  auto end = std::chrono::steady_clock::now() + deadline;
  std::size_t sent = 0;
  while (sent < limit && std::chrono::steady_clock::now() < end) {
    std::size_t at = sent % block.size();  // the block, over and over, in order
    std::size_t len = std::min(block.size() - at, limit - sent);
    ssize_t n = ::send(fd_, block.data() + at, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) return sent;
    // Our send buffer is full. Either the peer's window is closed (it stopped reading), or
    // the bytes are on their way and room comes back.
    if (peer_window() == 0) {
      stalled = true;
      return sent;
    }
    pollfd p{fd_, POLLOUT, 0};
    ::poll(&p, 1, 10);
  }
  return sent;
}

void Socket::shutdown_write() {
  ::shutdown(fd_, SHUT_WR);
}

void Socket::reset_hard() {
  linger l{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  reset();
}

void Socket::set_send_buffer(int bytes) {
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
}

void Socket::set_nonblocking() {
  ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
}

std::string random_bytes(std::size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, std::min<std::size_t>(8, n - i));
  }
  return s;
}

void run_echo(std::vector<EchoPeer>& peers, std::chrono::milliseconds limit) {
  for (auto& p : peers) p.socket.set_nonblocking();
  auto end = std::chrono::steady_clock::now() + limit;
  std::vector<pollfd> fds(peers.size());
  std::vector<char> buf(1 << 16);
  std::size_t done = 0;
  std::vector<bool> finished(peers.size(), false);
  while (done < peers.size()) {
    ASSERT_LT(std::chrono::steady_clock::now(), end)
        << "echo did not complete: " << done << "/" << peers.size()
        << " peers finished (hang guard)";
    for (std::size_t i = 0; i < peers.size(); ++i) {
      fds[i].fd = finished[i] ? -1 : peers[i].socket.fd();
      fds[i].events =
          static_cast<short>(POLLIN | (peers[i].sent < peers[i].out.size() ? POLLOUT : 0));
      fds[i].revents = 0;
    }
    ::poll(fds.data(), fds.size(), 100);
    for (std::size_t i = 0; i < peers.size(); ++i) {
      if (finished[i]) continue;
      EchoPeer& p = peers[i];
      if ((fds[i].revents & POLLOUT) != 0 && p.sent < p.out.size()) {
        ssize_t n = ::send(p.socket.fd(), p.out.data() + p.sent,
                           std::min<std::size_t>(p.out.size() - p.sent, 1 << 16),
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) p.sent += static_cast<std::size_t>(n);
      }
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        ssize_t n = ::recv(p.socket.fd(), buf.data(), buf.size(), MSG_DONTWAIT);
        if (n > 0) {
          p.in.append(buf.data(), static_cast<std::size_t>(n));
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          ADD_FAILURE() << "peer " << i << " closed early after " << p.in.size() << " of "
                        << p.out.size() << " bytes";
          finished[i] = true;
          ++done;
          continue;
        }
      }
      if (p.in.size() >= p.out.size()) {
        finished[i] = true;
        ++done;
      }
    }
  }
  for (std::size_t i = 0; i < peers.size(); ++i) {
    ASSERT_EQ(peers[i].in.size(), peers[i].out.size()) << "peer " << i;
    ASSERT_TRUE(peers[i].in == peers[i].out) << "peer " << i << ": echoed bytes differ";
  }
}

}  // namespace test
