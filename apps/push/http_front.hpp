// The HTTP side of myriad-push (docs/PUSH.md, "Endpoints"): WebSocket subscribers on
// /ws/<topics>, Server-Sent Events on /sse/<topics>, POST /publish/<topic>, GET /metrics,
// GET /healthz and the live page on GET /.
//
// Threads: one HttpFront per HTTP listener (it knows whether that listener is a loopback one),
// all sharing one WsFront and its ws::Server. Callbacks run on the connection's shard thread,
// several shards at once; per-connection state is the Session (WebSocket::user(), or captured by
// the SSE stream's callback), per-shard state is the Server's ShardState.
#pragma once

#include <myriad/http.hpp>
#include <myriad/sse.hpp>
#include <myriad/websocket.hpp>

#include <functional>
#include <memory>
#include <string>

#include "commands.hpp"
#include "server.hpp"

namespace push {

class WsFront final : public myriad::ws::WebSocketHandler {
 public:
  WsFront(Server& server, myriad::ws::Options options);
  myriad::ws::Server& ws() { return ws_; }

  void on_open(myriad::ws::WebSocket ws) override;
  void on_message(myriad::ws::WebSocket ws, const myriad::ws::Message& message) override;
  void on_write_watermark(myriad::ws::WebSocket ws, bool above_high) override;
  void on_close(myriad::ws::WebSocket ws, uint16_t code, std::string_view reason) override;

  // Tells a session to go: close 1012 (service restart) with the retry hint as the reason.
  static void goodbye(Server& server, Session& s, std::string_view reason);

 private:
  Server& server_;
  CommandRunner runner_;
  myriad::ws::Server ws_;
};

class HttpFront {
 public:
  // metrics: renders GET /metrics (any shard thread).
  HttpFront(Server& server, WsFront& ws, bool loopback, std::function<std::string()> metrics);
  myriad::http::Server& http() { return *http_; }

  // Tells an SSE session to go: "retry: <ms>", then the stream ends.
  static void goodbye(Server& server, Session& s, std::string_view reason);

 private:
  void handle(const myriad::http::Request& req, myriad::http::Response& res);
  myriad::http::Upgrade upgrade(const myriad::http::Request& req, myriad::http::Response& res);
  void publish(const myriad::http::Request& req, myriad::http::Response& res);
  void sse(const myriad::http::Request& req, myriad::http::Response& res);

  // What a subscribing request asks for, parsed and checked. On failure `status` is the HTTP
  // status to answer with and `why` the reason.
  struct Request {
    std::string decoded;  // the topic list, percent-decoded; topics point into it
    std::vector<std::string_view> topics;
    std::vector<Resume> resumes;
    std::shared_ptr<const Grant> grant;
    int status = 0;
    std::string why;
  };
  // Fills out (its topics point into out.decoded).
  void check(const myriad::http::Request& req, std::string_view topics, bool sse, Request& out);
  static void refuse(myriad::http::Response& res, int status, std::string_view why,
                     int64_t retry_ms = -1);

  Server& server_;
  WsFront& ws_;
  bool loopback_;
  std::function<std::string()> metrics_;
  std::unique_ptr<myriad::http::Server> http_;
  CommandRunner runner_;
  std::string page_;
};

// The live page, built into the binary from apps/push/www/index.html.
extern const char* const kDashboardHtml;

}  // namespace push
