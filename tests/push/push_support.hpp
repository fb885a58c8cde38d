// Test support for myriad-push: the real binary as a child process on ephemeral loopback
// ports, a small HTTP client, a plain-TCP protocol client, and the external subscribers
// (python3-websockets, curl) as processes.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "client.hpp"
#include "process.hpp"

namespace push_test {

using namespace std::chrono_literals;

// A running myriad-push: one HTTP listener and one TCP listener on 127.0.0.1 ports the kernel
// chose, unless `extra` names listeners itself.
class PushProcess {
 public:
  PushProcess(myriad::BackendKind backend, std::vector<std::string> extra = {});
  test::Process& process() { return *proc_; }
  uint16_t http_port() const { return http_port_; }
  uint16_t tcp_port() const { return tcp_port_; }
  const std::string& epoch() const { return epoch_; }
  myriad::Address tcp_address() const;
  // SIGTERM and wait; the exit code.
  int stop(std::chrono::milliseconds limit = 30s);

 private:
  std::unique_ptr<test::Process> proc_;
  uint16_t http_port_ = 0;
  uint16_t tcp_port_ = 0;
  std::string epoch_;
};

struct HttpReply {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;
  std::string header(const std::string& name) const;  // case-insensitive, first one
};
// One request with Connection: close; status 0 if the server did not answer.
HttpReply http(uint16_t port, const std::string& method, const std::string& target,
               const std::string& body = {}, const std::vector<std::string>& headers = {});
// The same, returning once the head has arrived (for streams and upgrades, which stay open);
// the socket is closed then.
HttpReply http_head(uint16_t port, const std::string& method, const std::string& target,
                    const std::vector<std::string>& headers = {});
// A WebSocket handshake's request headers (key and version), for http_head.
std::vector<std::string> websocket_headers();
HttpReply publish(uint16_t port, const std::string& topic, const std::string& payload,
                  const std::vector<std::string>& headers = {});
// GET /metrics: the value of one sample ("name" or "name{labels}"), -1 if absent.
double metric(uint16_t port, const std::string& sample);

// One delivery as every transport reports it.
struct Delivery {
  std::string topic;
  uint64_t offset = 0;
  std::string payload;
  bool operator==(const Delivery& o) const {
    return topic == o.topic && offset == o.offset && payload == o.payload;
  }
};
std::ostream& operator<<(std::ostream& os, const Delivery& d);

// The plain TCP protocol: send lines, read lines and deliveries.
class TcpClient {
 public:
  explicit TcpClient(const myriad::Address& to, int receive_buffer = 0);
  bool send(const std::string& bytes) { return socket_.send_all(bytes); }
  // The next control line (without '\n'), or "" on timeout/EOF. A delivery on the way is an
  // error (use next() to read both).
  std::string line(std::chrono::milliseconds limit = 10s);
  // The next item: a control line (is_line, text) or a delivery.
  struct Item {
    bool is_line = false;
    std::string text;
    Delivery delivery;
    bool ok = false;  // false: timeout, EOF or garbage
  };
  Item next(std::chrono::milliseconds limit = 10s);
  // Deliveries until n arrived (control lines are collected in `lines`).
  std::vector<Delivery> deliveries(std::size_t n, std::chrono::milliseconds limit = 20s,
                                   std::vector<std::string>* lines = nullptr);
  bool closed(std::chrono::milliseconds limit = 10s);  // EOF or reset, discarding data
  test::Socket& socket() { return socket_; }

 private:
  bool fill(std::chrono::steady_clock::time_point deadline);
  test::Socket socket_;
  std::string buffer_;
  bool eof_ = false;
};

// A subscriber in a child process: python3-websockets (tests/push/ws_subscriber.py) or curl
// reading an event stream. It prints one line per event: "SUB <topic> <epoch> <last>" when
// subscribed, "MSG <topic> <offset> <hex payload>" per delivery, "CTL <text>" for any other
// control message, "CLOSE <code> <reason>" at the end (python only).
class ExternalSubscriber {
 public:
  static std::unique_ptr<ExternalSubscriber> websocket(const std::string& url);
  static std::unique_ptr<ExternalSubscriber> sse(const std::string& url,
                                                 const std::vector<std::string>& headers = {});
  // Waits until it said it is subscribed to n topics.
  bool wait_subscribed(std::size_t n = 1, std::chrono::milliseconds limit = 20s);
  std::vector<Delivery> deliveries(std::size_t n, std::chrono::milliseconds limit = 20s);
  // Every line it printed so far (waiting up to limit for a line matching prefix, if given).
  bool wait_line(const std::string& prefix, std::string* line = nullptr,
                 std::chrono::milliseconds limit = 20s);
  test::Process& process() { return *proc_; }

 private:
  explicit ExternalSubscriber(std::vector<std::string> argv, bool sse);
  // Reads what the process printed so far into lines_ (waiting up to limit for more); true if
  // lines were added.
  bool pump(std::chrono::milliseconds limit);
  void take(std::string raw);
  std::unique_ptr<test::Process> proc_;
  bool sse_;
  std::vector<std::string> lines_;
  std::vector<bool> taken_;
  std::size_t raw_pos_ = 0;
  // SSE parsing state
  std::string id_, event_, data_;
  bool has_data_ = false;
};

std::string hex(const std::string& bytes);
std::string unhex(const std::string& text);

// Signs a token the way myriad-push checks them (it runs myriad-push --make-token).
std::string make_token(const std::string& secret, const std::string& claims);

// Whether io_uring tests must skip, and the suite's param name.
class PushTest : public test::BackendTest {};

}  // namespace push_test
