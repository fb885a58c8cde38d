// Helpers for the api_* conformance tests: a record of the connections a server opened, and a
// reader that collects bytes from many client sockets at once.
#pragma once

#include <myriad/myriad.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

#include "client.hpp"

namespace api_test {

// The connections open on the server, in the order they opened (any shard, so guarded).
class OpenConnections {
 public:
  void add(myriad::Connection c) {
    std::lock_guard lock(mutex_);
    open_.push_back(c);
  }
  void remove(myriad::Connection c) {
    std::lock_guard lock(mutex_);
    std::erase(open_, c);
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return open_.size();
  }
  std::vector<myriad::Connection> snapshot() const {
    std::lock_guard lock(mutex_);
    return open_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<myriad::Connection> open_;
};

// Reads from every socket until each holds `want` bytes (or, with want 0, until each peer
// closed), or the limit passes (a hang guard). Returns what each received.
inline std::vector<std::string> read_all(
    std::vector<test::Socket>& sockets, std::size_t want,
    std::chrono::milliseconds limit = std::chrono::seconds(60)) {
  std::vector<std::string> got(sockets.size());
  std::vector<bool> done(sockets.size(), false);
  std::size_t remaining = sockets.size();
  auto end = std::chrono::steady_clock::now() + limit;
  std::vector<pollfd> fds;
  std::vector<std::size_t> index;
  char buf[65536];
  while (remaining > 0 && std::chrono::steady_clock::now() < end) {
    fds.clear();
    index.clear();
    for (std::size_t i = 0; i < sockets.size(); ++i) {
      if (done[i]) continue;
      fds.push_back(pollfd{sockets[i].fd(), POLLIN, 0});
      index.push_back(i);
    }
    if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
    for (std::size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      std::size_t i = index[k];
      ssize_t n = ::recv(sockets[i].fd(), buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n > 0) got[i].append(buf, static_cast<std::size_t>(n));
      if (n <= 0 || (want != 0 && got[i].size() >= want)) {
        done[i] = true;
        --remaining;
      }
    }
  }
  return got;
}

}  // namespace api_test
