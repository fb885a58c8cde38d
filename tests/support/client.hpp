// Test support: the client side. Plain sockets for talking to a server under test over
// loopback, many echo peers driven at once, and a helper that waits for a condition.
// Used from the test's own thread; nothing here is shared between threads.
#pragma once

#include <myriad/address.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace test {

using namespace std::chrono_literals;

// A connected TCP socket (blocking unless set otherwise). Closed by the destructor.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  Socket(Socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Socket& operator=(Socket&& o) noexcept {
    reset();
    fd_ = std::exchange(o.fd_, -1);
    return *this;
  }
  ~Socket() { reset(); }
  // receive_buffer > 0 sets SO_RCVBUF before connecting (after, TCP cannot shrink its window
  // and a small buffer only causes drops and retransmission stalls). Throws std::runtime_error.
  static Socket connect_to(const myriad::Address& to, int receive_buffer = 0);
  int fd() const { return fd_; }
  void reset();
  // Sends everything (blocking). False on error.
  bool send_all(const std::string& data);
  // Reads exactly n bytes or until EOF/error/deadline; returns what arrived.
  std::string read_n(std::size_t n, std::chrono::milliseconds limit = 20s);
  // Reads until EOF (true) or error/deadline (false); appends to out.
  bool read_to_eof(std::string& out, std::chrono::milliseconds limit = 20s);
  // Whether the peer closed (EOF or reset) within the limit, discarding any data.
  bool closed_by_peer(std::chrono::milliseconds limit = 20s);
  // Whether the peer reset the connection within the limit, without reading anything (a
  // reader that never reads must stay one while we wait).
  bool reset_by_peer(std::chrono::milliseconds limit = 20s);

  // What the peer did, as far as reading n bytes can tell: sent them (kData), closed or reset
  // the connection first (kClosed), or neither within the limit (kHanging: nothing came and
  // the connection is still open, e.g. a connection left in an accept backlog).
  enum class Outcome { kData, kClosed, kHanging };
  Outcome read_outcome(std::size_t n, std::string& got, std::chrono::milliseconds limit = 20s);

  // The peer's advertised receive window (TCP_INFO tcpi_snd_wnd), in bytes. Zero means the
  // peer's receive buffer is full: its application is not reading.
  uint32_t peer_window() const;
  // Sends the block over and over without reading, until the peer's receive window is zero and
  // our own send buffer is full (the peer stopped reading), limit bytes went, or the deadline
  // passed (a hang guard). Returns the bytes sent; stalled says whether the window closed.
  std::size_t send_until_peer_stops_reading(const std::string& block, std::size_t limit,
                                            bool& stalled,
                                            std::chrono::milliseconds deadline = 60s);

  void shutdown_write();
  // Close with RST instead of FIN.
  void reset_hard();
  void set_nonblocking();
  // SO_SNDBUF: how much the kernel keeps for us once the peer stops reading.
  void set_send_buffer(int bytes);

 private:
  int fd_ = -1;
};

std::string random_bytes(std::size_t n, uint64_t seed);
// TCP_INFO's tcpi_snd_wnd of a connected socket (in its own file: <linux/tcp.h> and
// <netinet/tcp.h> cannot be included together). UINT32_MAX if it cannot be read.
uint32_t tcp_peer_window(int fd);

// Drives many connections at once: each sends its `out` and expects it echoed back exactly.
// Returns once every peer has received as much as it sent, or the limit passed (a hang guard,
// never a speed check). Failures are reported through gtest.
struct EchoPeer {
  Socket socket;
  std::string out;
  std::size_t sent = 0;
  std::string in;
};
void run_echo(std::vector<EchoPeer>& peers, std::chrono::milliseconds limit = 60s);

// Polls cond every few milliseconds until true or the limit passes (a hang guard, never a
// speed check); returns cond().
template <class Cond>
bool eventually(Cond cond, std::chrono::milliseconds limit = 20s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return cond();
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

}  // namespace test

// Tests written before the fixtures had files of their own include this header for them too.
#include "backend_test.hpp"
