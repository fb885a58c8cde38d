// The WebSocket conformance suite's fixture: an in-process runtime on the backend under test
// serving http::Server with ws::Server behind its upgrade hook, and the ws-echo behaviour (every
// message back, text as text, binary as binary).
#pragma once

#include <myriad/http.hpp>
#include <myriad/myriad.hpp>
#include <myriad/websocket.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "client.hpp"
#include "ws_client.hpp"

namespace wstest {

class Echo final : public myriad::ws::WebSocketHandler {
 public:
  void on_open(myriad::ws::WebSocket) override { opened.fetch_add(1); }
  void on_message(myriad::ws::WebSocket ws, const myriad::ws::Message& m) override {
    ws.send(m.type, m.payload);
  }
  void on_close(myriad::ws::WebSocket, uint16_t code, std::string_view) override {
    std::lock_guard lock(mutex);
    close_codes.push_back(code);
  }
  std::vector<uint16_t> codes() {
    std::lock_guard lock(mutex);
    return close_codes;
  }
  std::atomic<int> opened{0};
  std::mutex mutex;
  std::vector<uint16_t> close_codes;
};

class EchoServer {
 public:
  EchoServer(myriad::Config config, myriad::ws::Options options = {})
      : ws_(echo_, std::move(options)),
        http_([](const myriad::http::Request&, myriad::http::Response& res) {
          res.send(404, "text/plain", "not here\n");
        }) {
    http_.set_upgrade_hook([this](const myriad::http::Request& req, myriad::http::Response& res) {
      return ws_.upgrade(req, res);
    });
    server_ = std::make_unique<test::Server>(config, http_);
  }
  ~EchoServer() { server_->stop(); }
  const myriad::Address& address() const { return server_->address(); }
  myriad::ws::Stats stats() const { return ws_.stats(); }
  myriad::Counters counters() const { return server_->counters(); }
  Client open(std::vector<std::string> headers = {}) { return Client::open(address(), headers); }
  Echo& echo() { return echo_; }
  myriad::ws::Server& ws() { return ws_; }

 private:
  Echo echo_;
  myriad::ws::Server ws_;
  myriad::http::Server http_;
  std::unique_ptr<test::Server> server_;
};

}  // namespace wstest
