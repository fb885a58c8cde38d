#include "push_support.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <sstream>

namespace push_test {

namespace {

uint16_t port_of(const std::string& line) {
  // "myriad-push: listening http 127.0.0.1:PORT ..."
  std::size_t colon = line.find(':', line.find("127.0.0.1"));
  if (colon == std::string::npos) colon = line.rfind(':');
  return static_cast<uint16_t>(std::stoi(line.substr(colon + 1)));
}

template <class T>
bool parse_number(std::string_view s, T& v) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

std::vector<std::string> split(const std::string& s, char sep, std::size_t max = SIZE_MAX) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (out.size() + 1 < max) {
    std::size_t p = s.find(sep, at);
    if (p == std::string::npos) break;
    out.push_back(s.substr(at, p - at));
    at = p + 1;
  }
  out.push_back(s.substr(at));
  return out;
}

}  // namespace

// ---- PushProcess ----

PushProcess::PushProcess(myriad::BackendKind backend, std::vector<std::string> extra) {
  std::vector<std::string> argv = {MYRIAD_PUSH_BIN,
                                   "--backend",
                                   backend == myriad::BackendKind::kUring ? "uring" : "epoll",
                                   "--shards",
                                   "2",
                                   "--buffer-pool",
                                   "8MiB",
                                   "--sys-interval",
                                   "0"};
  bool own_listeners = false;
  for (const std::string& e : extra) own_listeners |= e == "--listen" || e == "--tcp-listen";
  if (!own_listeners) {
    for (const char* a : {"--listen", "127.0.0.1:0", "--tcp-listen", "127.0.0.1:0"}) {
      argv.emplace_back(a);
    }
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  proc_ = std::make_unique<test::Process>(argv);
  for (int i = 0; i < 10; ++i) {
    std::string line = proc_->read_line(20s);
    if (line.empty()) break;
    if (line.rfind("myriad-push: epoch ", 0) == 0) {
      epoch_ = line.substr(19, line.find(' ', 19) - 19);
    } else if (line.rfind("myriad-push: listening http", 0) == 0) {
      if (http_port_ == 0) http_port_ = port_of(line);
    } else if (line.rfind("myriad-push: listening tcp", 0) == 0) {
      if (tcp_port_ == 0) tcp_port_ = port_of(line);
    }
    bool want_tcp = false;
    for (std::size_t k = 0; k < argv.size(); ++k) want_tcp |= argv[k] == "--tcp-listen";
    if (http_port_ != 0 && (!want_tcp || tcp_port_ != 0) && !epoch_.empty()) break;
  }
  if (http_port_ == 0) {
    ADD_FAILURE() << "myriad-push did not start: " << proc_->out() << proc_->err();
  }
}

myriad::Address PushProcess::tcp_address() const {
  return myriad::Address::parse("127.0.0.1:" + std::to_string(tcp_port_));
}

int PushProcess::stop(std::chrono::milliseconds limit) {
  proc_->signal(SIGTERM);
  return proc_->wait(limit);
}

// ---- HTTP ----

std::string HttpReply::header(const std::string& name) const {
  std::istringstream in(head);
  std::string line;
  while (std::getline(in, line)) {
    std::size_t colon = line.find(':');
    if (colon == std::string::npos || colon != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < colon; ++i) {
      same &= std::tolower(static_cast<unsigned char>(line[i])) ==
              std::tolower(static_cast<unsigned char>(name[i]));
    }
    if (!same) continue;
    std::string v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ')) v.erase(v.begin());
    while (!v.empty() && (v.back() == '\r' || v.back() == ' ')) v.pop_back();
    return v;
  }
  return {};
}

HttpReply http(uint16_t port, const std::string& method, const std::string& target,
               const std::string& body, const std::vector<std::string>& headers) {
  HttpReply r;
  test::Socket s =
      test::Socket::connect_to(myriad::Address::parse("127.0.0.1:" + std::to_string(port)));
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  for (const std::string& h : headers) req += h + "\r\n";
  if (!body.empty() || method == "POST")
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n";
  req += body;
  if (!s.send_all(req)) return r;
  std::string all;
  s.read_to_eof(all, 20s);
  std::size_t end = all.find("\r\n\r\n");
  if (all.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos) return r;
  r.status = std::stoi(all.substr(9, 3));
  r.head = all.substr(0, end);
  r.body = all.substr(end + 4);
  return r;
}

HttpReply http_head(uint16_t port, const std::string& method, const std::string& target,
                    const std::vector<std::string>& headers) {
  HttpReply r;
  test::Socket s =
      test::Socket::connect_to(myriad::Address::parse("127.0.0.1:" + std::to_string(port)));
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const std::string& h : headers) req += h + "\r\n";
  req += "\r\n";
  if (!s.send_all(req)) return r;
  std::string all;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (all.find("\r\n\r\n") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{s.fd(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(s.fd(), buf, sizeof buf, 0);
    if (n <= 0) break;
    all.append(buf, static_cast<std::size_t>(n));
  }
  std::size_t end = all.find("\r\n\r\n");
  if (all.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos) return r;
  r.status = std::stoi(all.substr(9, 3));
  r.head = all.substr(0, end);
  r.body = all.substr(end + 4);
  return r;
}

std::vector<std::string> websocket_headers() {
  return {"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="};
}

HttpReply publish(uint16_t port, const std::string& topic, const std::string& payload,
                  const std::vector<std::string>& headers) {
  return http(port, "POST", "/publish/" + topic, payload, headers);
}

double metric(uint16_t port, const std::string& sample) {
  HttpReply r = http(port, "GET", "/metrics");
  std::istringstream in(r.body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > sample.size() && line.compare(0, sample.size(), sample) == 0 &&
        line[sample.size()] == ' ') {
      return std::stod(line.substr(sample.size() + 1));
    }
  }
  return -1;
}

std::ostream& operator<<(std::ostream& os, const Delivery& d) {
  return os << d.topic << "@" << d.offset << "[" << d.payload << "]";
}

// ---- TcpClient ----

TcpClient::TcpClient(const myriad::Address& to, int receive_buffer)
    : socket_(test::Socket::connect_to(to, receive_buffer)) {}

bool TcpClient::fill(std::chrono::steady_clock::time_point deadline) {
  if (eof_) return false;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return false;
  pollfd p{socket_.fd(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
  char buf[65536];
  ssize_t n = ::recv(socket_.fd(), buf, sizeof buf, 0);
  if (n <= 0) {
    eof_ = true;
    return false;
  }
  buffer_.append(buf, static_cast<std::size_t>(n));
  return true;
}

TcpClient::Item TcpClient::next(std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  Item item;
  for (;;) {
    std::size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      if (line.rfind("MSG ", 0) == 0) {
        std::vector<std::string> w = split(line, ' ');
        std::size_t len = 0;
        if (w.size() != 4 || !parse_number(std::string_view(w[2]), item.delivery.offset) ||
            !parse_number(std::string_view(w[3]), len)) {
          return item;  // garbage
        }
        if (buffer_.size() >= nl + 1 + len + 1) {
          if (buffer_[nl + 1 + len] != '\n') return item;
          item.delivery.topic = w[1];
          item.delivery.payload = buffer_.substr(nl + 1, len);
          buffer_.erase(0, nl + 1 + len + 1);
          item.ok = true;
          return item;
        }
      } else {
        item.is_line = true;
        item.text = line;
        buffer_.erase(0, nl + 1);
        item.ok = true;
        return item;
      }
    }
    if (!fill(deadline)) return item;
  }
}

std::string TcpClient::line(std::chrono::milliseconds limit) {
  Item i = next(limit);
  if (!i.ok) return {};
  if (!i.is_line) {
    ADD_FAILURE() << "a delivery where a control line was expected: " << i.delivery;
    return {};
  }
  return i.text;
}

std::vector<Delivery> TcpClient::deliveries(std::size_t n, std::chrono::milliseconds limit,
                                            std::vector<std::string>* lines) {
  std::vector<Delivery> out;
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (out.size() < n) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    Item i = next(left);
    if (!i.ok) break;
    if (i.is_line) {
      if (lines != nullptr) lines->push_back(i.text);
    } else {
      out.push_back(i.delivery);
    }
  }
  return out;
}

bool TcpClient::closed(std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!eof_) {
    buffer_.clear();
    if (!fill(deadline) && !eof_) return false;
  }
  return true;
}

// ---- External subscribers ----

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string unhex(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i + 1 < text.size(); i += 2) {
    out += static_cast<char>(std::stoi(text.substr(i, 2), nullptr, 16));
  }
  return out;
}

ExternalSubscriber::ExternalSubscriber(std::vector<std::string> argv, bool sse)
    : proc_(std::make_unique<test::Process>(std::move(argv))), sse_(sse) {}

std::unique_ptr<ExternalSubscriber> ExternalSubscriber::websocket(const std::string& url) {
  return std::unique_ptr<ExternalSubscriber>(new ExternalSubscriber(
      {"/usr/bin/python3", std::string(PUSH_TEST_DIR) + "/ws_subscriber.py", url}, false));
}

std::unique_ptr<ExternalSubscriber> ExternalSubscriber::sse(
    const std::string& url, const std::vector<std::string>& headers) {
  std::vector<std::string> argv = {"/usr/bin/curl", "-sN", "--max-time", "60"};
  for (const std::string& h : headers) {
    argv.push_back("-H");
    argv.push_back(h);
  }
  argv.push_back(url);
  return std::unique_ptr<ExternalSubscriber>(new ExternalSubscriber(std::move(argv), true));
}

bool ExternalSubscriber::pump(std::chrono::milliseconds limit) {
  std::size_t before = lines_.size();
  auto parse = [&] {
    const std::string& out = proc_->out();
    for (;;) {
      std::size_t nl = out.find('\n', raw_pos_);
      if (nl == std::string::npos) break;
      std::string raw = out.substr(raw_pos_, nl - raw_pos_);
      raw_pos_ = nl + 1;
      take(std::move(raw));
    }
  };
  parse();
  if (lines_.size() > before) return true;
  proc_->read_line(limit);  // only to wait for output; lines are parsed from out()
  parse();
  return lines_.size() > before;
}

void ExternalSubscriber::take(std::string raw) {
  if (!sse_) {
    lines_.push_back(std::move(raw));
    return;
  }
  // An event stream: fields until a blank line (curl passes the stream through as it is).
  if (!raw.empty() && raw.back() == '\r') raw.pop_back();
  if (!raw.empty()) {
    std::size_t colon = raw.find(':');
    if (colon == 0) return;  // a comment (heartbeat)
    std::string field = raw.substr(0, colon);
    std::string value = colon == std::string::npos ? "" : raw.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.erase(value.begin());
    if (field == "id") {
      id_ = value;
    } else if (field == "event") {
      event_ = value;
    } else if (field == "data") {
      if (has_data_) data_ += '\n';
      data_ += value;
      has_data_ = true;
    } else if (field == "retry") {
      lines_.push_back("RETRY " + value);
    }
    return;
  }
  // A blank line: dispatch.
  if (!has_data_ && event_.empty() && id_.empty()) return;
  if (event_.empty() && has_data_) {
    // "<topic>/<offset>/<seq>/<epoch>"
    std::size_t e = id_.rfind('/');
    std::size_t s = e == std::string::npos || e == 0 ? std::string::npos : id_.rfind('/', e - 1);
    std::size_t o = s == std::string::npos || s == 0 ? std::string::npos : id_.rfind('/', s - 1);
    if (o == std::string::npos) {
      lines_.push_back("CTL bad id " + id_);
    } else {
      lines_.push_back("MSG " + id_.substr(0, o) + " " + id_.substr(o + 1, s - o - 1) + " " +
                       hex(data_));
      lines_.push_back("ID " + id_);
    }
  } else if (event_ == "ok" && data_.rfind("SUB ", 0) == 0) {
    lines_.push_back("SUB " + data_.substr(4));
  } else {
    lines_.push_back("CTL " + event_ + " " + data_);
  }
  id_.clear();
  event_.clear();
  data_.clear();
  has_data_ = false;
}

bool ExternalSubscriber::wait_line(const std::string& prefix, std::string* line,
                                   std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    taken_.resize(lines_.size(), false);
    for (std::size_t i = 0; i < lines_.size(); ++i) {
      if (taken_[i] || lines_[i].rfind(prefix, 0) != 0) continue;
      taken_[i] = true;
      if (line != nullptr) *line = lines_[i];
      return true;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pump(std::min<std::chrono::milliseconds>(left, 200ms));
  }
}

bool ExternalSubscriber::wait_subscribed(std::size_t n, std::chrono::milliseconds limit) {
  for (std::size_t i = 0; i < n; ++i) {
    if (!wait_line("SUB ", nullptr, limit)) return false;
  }
  return true;
}

std::vector<Delivery> ExternalSubscriber::deliveries(std::size_t n,
                                                     std::chrono::milliseconds limit) {
  std::vector<Delivery> out;
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (out.size() < n) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    std::string line;
    if (left.count() <= 0 || !wait_line("MSG ", &line, left)) break;
    std::vector<std::string> w = split(line, ' ');
    Delivery d;
    if (w.size() != 4) break;
    d.topic = w[1];
    d.offset = std::stoull(w[2]);
    d.payload = unhex(w[3]);
    out.push_back(d);
  }
  return out;
}

std::string make_token(const std::string& secret, const std::string& claims) {
  test::Process p({MYRIAD_PUSH_BIN, "--subscribe-secret", secret, "--make-token", claims});
  std::string token = p.read_line(20s);
  p.wait(20s);
  return token;
}

}  // namespace push_test
