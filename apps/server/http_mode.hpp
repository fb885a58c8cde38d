// myriad-server --protocol http: the application on top of myriad::http::Server.
//
//   /healthz       "ok"
//   /hello         a small fixed response (what wrk benchmarks hit)
//   /sse/clock     Server-Sent Events: one event a tick (--sse-interval), ids counted per
//                  stream, resumed from Last-Event-ID
//   anything else  a file under --static DIR (index.html for a directory; "/" is /hello when
//                  there is no --static), safe against path traversal
//
// Uses only the public API.
#pragma once

#include <myriad/http.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace myriad_server {

struct HttpModeOptions {
  std::string static_dir;  // empty: no files
  myriad::Duration sse_interval = std::chrono::seconds(1);
  myriad::http::Options http;
};

class HttpMode {
 public:
  // Throws std::runtime_error when the static directory cannot be opened.
  explicit HttpMode(HttpModeOptions options);
  ~HttpMode();
  HttpMode(const HttpMode&) = delete;
  HttpMode& operator=(const HttpMode&) = delete;

  // The handler to listen with (another mode may add an upgrade hook to it).
  myriad::http::Server& server() { return *server_; }

 private:
  void handle(const myriad::http::Request& req, myriad::http::Response& res);
  void serve_file(const myriad::http::Request& req, myriad::http::Response& res);
  void start_clock(const myriad::http::Request& req, myriad::http::Response& res);

  HttpModeOptions options_;
  int static_fd_ = -1;
  std::unique_ptr<myriad::http::Server> server_;
};

// The help lines for the options this mode adds.
extern const char* kHttpModeUsage;

}  // namespace myriad_server
