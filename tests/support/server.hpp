// Test support: a myriad Runtime serving in-process on an ephemeral loopback port, for tests
// that talk to it with the client sockets of client.hpp. Used from the test's thread; the
// handler it is given is called on the runtime's shard threads (or workers).
#pragma once

#include <myriad/myriad.hpp>

#include <functional>
#include <memory>
#include <string>

#include "client.hpp"

namespace test {

const char* backend_name(myriad::BackendKind kind);

// Starts a Runtime listening on `at` (default 127.0.0.1, a free port) with the given handler,
// and checks that a forced backend is the one running. The destructor stops it gracefully.
class Server {
 public:
  Server(myriad::Config config, myriad::Handler& handler, const std::string& at = "127.0.0.1:0");
  Server(myriad::Config config,
         std::function<std::unique_ptr<myriad::Handler>(myriad::Shard&)> factory,
         const std::string& at = "127.0.0.1:0");
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  myriad::Runtime& runtime() { return *runtime_; }
  const myriad::Address& address() const { return address_; }
  myriad::Counters counters() const { return runtime_->counters(); }
  Socket connect(int receive_buffer = 0) const {
    return Socket::connect_to(address_, receive_buffer);
  }
  void stop();  // graceful stop and wait

 private:
  void started(const myriad::Config& config);

  std::unique_ptr<myriad::Runtime> runtime_;
  myriad::Address address_;
  bool stopped_ = false;
};

}  // namespace test
