// Test support: plain blocking/non-blocking sockets for talking to a server under test, and a
// fixture that runs a myriad Runtime in-process on an ephemeral loopback port.
#pragma once

#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
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
  void shutdown_write();
  // Close with RST instead of FIN.
  void reset_hard();
  void set_nonblocking();

 private:
  int fd_ = -1;
};

std::string random_bytes(std::size_t n, uint64_t seed);

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

// Polls cond every few milliseconds until true or the limit passes; returns cond().
template <class Cond>
bool eventually(Cond cond, std::chrono::milliseconds limit = 20s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return cond();
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

const char* backend_name(myriad::BackendKind kind);

// Runs a Runtime on 127.0.0.1:0 with the backend under test.
class Server {
 public:
  Server(myriad::Config config, myriad::Handler& handler);
  Server(myriad::Config config,
         std::function<std::unique_ptr<myriad::Handler>(myriad::Shard&)> factory);
  ~Server();
  myriad::Runtime& runtime() { return *runtime_; }
  const myriad::Address& address() const { return address_; }
  myriad::Counters counters() const { return runtime_->counters(); }
  Socket connect(int receive_buffer = 0) const {
    return Socket::connect_to(address_, receive_buffer);
  }
  void stop();  // graceful stop and wait

 private:
  std::unique_ptr<myriad::Runtime> runtime_;
  myriad::Address address_;
  bool stopped_ = false;
};

// The conformance suite's base: parameterised by backend; io_uring is skipped, loudly, where
// the kernel or a seccomp filter does not allow it.
class BackendTest : public ::testing::TestWithParam<myriad::BackendKind> {
 protected:
  void SetUp() override;
  // A config for this backend with small, test-friendly defaults.
  myriad::Config config() const;
};

std::string param_name(const ::testing::TestParamInfo<myriad::BackendKind>& info);

}  // namespace test

#define MYRIAD_CONFORMANCE_SUITE(Suite)                                            \
  INSTANTIATE_TEST_SUITE_P(                                                        \
      Backends, Suite,                                                             \
      ::testing::Values(myriad::BackendKind::kUring, myriad::BackendKind::kEpoll), \
      ::test::param_name)
