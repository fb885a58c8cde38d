// Test support for HTTP: a minimal client-side response reader over a blocking socket, written
// from RFC 9112 (status line, fields, Content-Length or chunked body), strict on what it reads.
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "client.hpp"

namespace test::http {

using namespace std::chrono_literals;

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string head;  // as received, up to the blank line
  bool has(const std::string& name) const { return headers.count(name) != 0; }
  std::string get(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

class Reader {
 public:
  explicit Reader(int fd) : fd_(fd) {}

  // Reads more bytes into the buffer; false on EOF, error or deadline.
  bool fill(std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      int n = ::poll(&p, 1, static_cast<int>(left.count()));
      if (n <= 0) continue;
      char buf[16384];
      ssize_t got = ::recv(fd_, buf, sizeof buf, 0);
      if (got <= 0) {
        eof_ = true;
        return false;
      }
      buf_.append(buf, static_cast<std::size_t>(got));
      return true;
    }
  }
  // Waits until the buffer holds `text`; returns what came before it and consumes through it.
  std::optional<std::string> until(const std::string& text, std::chrono::milliseconds limit = 20s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      std::size_t at = buf_.find(text);
      if (at != std::string::npos) {
        std::string before = buf_.substr(0, at);
        buf_.erase(0, at + text.size());
        return before;
      }
      if (!fill(deadline)) return std::nullopt;
    }
  }
  std::optional<std::string> exactly(std::size_t n, std::chrono::milliseconds limit = 20s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (buf_.size() < n) {
      if (!fill(deadline)) return std::nullopt;
    }
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }
  // One whole response (head: true for a response to HEAD, which has no body).
  std::optional<Reply> next(bool head = false, std::chrono::milliseconds limit = 20s) {
    Reply r;
    auto h = until("\r\n\r\n", limit);
    if (!h) return std::nullopt;
    r.head = *h;
    std::size_t eol = h->find("\r\n");
    std::string status_line = h->substr(0, eol);
    if (status_line.rfind("HTTP/1.1 ", 0) != 0 || status_line.size() < 12) {
      ADD_FAILURE() << "bad status line: " << status_line;
      return std::nullopt;
    }
    r.status = std::stoi(status_line.substr(9, 3));
    std::size_t pos = eol == std::string::npos ? h->size() : eol + 2;
    while (pos < h->size()) {
      std::size_t end = h->find("\r\n", pos);
      if (end == std::string::npos) end = h->size();
      std::string line = h->substr(pos, end - pos);
      std::size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      if (r.headers.count(name) != 0) ADD_FAILURE() << "field twice: " << name;
      r.headers[name] = value;
      pos = end + 2;
    }
    bool no_body = head || r.status < 200 || r.status == 204 || r.status == 304;
    if (no_body) return r;
    if (r.get("transfer-encoding") == "chunked") {
      for (;;) {
        auto size_line = until("\r\n", limit);
        if (!size_line) return std::nullopt;
        std::size_t size = std::stoul(*size_line, nullptr, 16);
        if (size == 0) {
          if (!until("\r\n", limit)) return std::nullopt;
          return r;
        }
        auto data = exactly(size + 2, limit);
        if (!data || data->substr(size) != "\r\n") return std::nullopt;
        r.body += data->substr(0, size);
      }
    }
    if (r.has("content-length")) {
      auto body = exactly(std::stoul(r.get("content-length")), limit);
      if (!body) return std::nullopt;
      r.body = *body;
      return r;
    }
    // Framed by close.
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (fill(deadline)) {
    }
    r.body = buf_;
    buf_.clear();
    return r;
  }
  const std::string& buffered() const { return buf_; }
  bool eof() const { return eof_; }

 private:
  int fd_;
  std::string buf_;
  bool eof_ = false;
};

inline std::string get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: test\r\n" + extra + "\r\n";
}

}  // namespace test::http
