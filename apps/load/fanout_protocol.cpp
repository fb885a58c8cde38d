#include "fanout_protocol.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <stdexcept>

namespace myriad::load {

namespace {

constexpr char kHex[] = "0123456789abcdef";

char filler(uint64_t seq, uint64_t due, std::size_t i) {
  return static_cast<char>('a' + (seq * 7 + due + i) % 26);
}

bool parse_hex(std::string_view s, uint64_t& v) {
  v = 0;
  for (char c : s) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return true;
}

template <class T>
bool parse_number(std::string_view s, T& v) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

// Splits off the first space-separated word.
std::string_view word(std::string_view& line) {
  std::size_t sp = line.find(' ');
  std::string_view w = line.substr(0, sp);
  line = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
  return w;
}

// A line ending in "\r\n" (crlf) or "\n" at data[at...]; npos if incomplete. A line longer
// than max without its end is bad (kBad through `bad`).
std::size_t line_end(std::string_view data, std::size_t at, bool& bad, std::size_t max = 4096) {
  std::size_t nl = data.find('\n', at);
  if (nl == std::string_view::npos) {
    bad = data.size() - at > max;
    return std::string_view::npos;
  }
  return nl;
}

std::string_view trim_cr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) !=
        std::tolower(static_cast<unsigned char>(prefix[i])))
      return false;
  }
  return true;
}

// ---- myriad-server --protocol topics ----

class MyriadProtocol final : public FanoutProtocol {
 public:
  const char* name() const override { return "myriad"; }
  std::string subscribe_request(std::string_view topic) const override {
    return "SUB " + std::string(topic) + "\n";
  }
  void publish_request(std::string& out, std::string_view topic,
                       std::string_view payload) const override {
    out += "PUB ";
    out += topic;
    out += ' ';
    out += std::to_string(payload.size());
    out += '\n';
    out += payload;
  }
  std::size_t parse_subscriber(std::string_view data, uint8_t&, FanoutEvents& ev) const override {
    std::size_t at = 0;
    for (;;) {
      bool bad = false;
      std::size_t nl = line_end(data, at, bad, 1024);
      if (nl == std::string_view::npos) return bad ? kBad : at;
      std::string_view line = data.substr(at, nl - at);
      std::string_view verb = word(line);
      if (verb == "MSG") {
        word(line);  // topic
        std::string_view offset = word(line);
        uint64_t off = 0;
        std::size_t len = 0;
        if (!parse_number(offset, off) || !parse_number(line, len)) return kBad;
        if (data.size() - (nl + 1) < len + 1) return at;
        if (data[nl + 1 + len] != '\n') return kBad;
        ev.message(data.substr(nl + 1, len));
        at = nl + 1 + len + 1;
        continue;
      }
      if (verb == "OK") {
        if (word(line) == "SUB") ev.subscribed();
      } else if (verb != "PONG") {
        return kBad;  // ERR <reason> (the server closes), or garbage
      }
      at = nl + 1;
    }
  }
  std::size_t parse_publisher(std::string_view data, uint8_t& state,
                              FanoutEvents& ev) const override {
    return parse_subscriber(data, state, ev);  // only ERR would come, and it is bad
  }
};

// ---- Redis pub/sub (RESP2) ----

// One RESP value that is an array of bulk strings and integers (what pub/sub sends), or a
// simple value. Returns the bytes it took, 0 if incomplete, kBad if malformed or an error.
struct RespArray {
  std::string_view items[4];
  int count = -1;  // -1: a simple value, not an array
};

std::size_t parse_resp(std::string_view data, RespArray& out) {
  if (data.empty()) return 0;
  bool bad = false;
  std::size_t nl = line_end(data, 0, bad, 1024);
  if (nl == std::string_view::npos) return bad ? FanoutProtocol::kBad : 0;
  std::string_view head = trim_cr(data.substr(0, nl));
  if (head.empty()) return FanoutProtocol::kBad;
  char type = head[0];
  if (type == '-') return FanoutProtocol::kBad;
  if (type == ':' || type == '+') {
    out.count = -1;
    return nl + 1;
  }
  if (type != '*') return FanoutProtocol::kBad;
  int n = 0;
  if (!parse_number(head.substr(1), n) || n < 0 || n > 4) return FanoutProtocol::kBad;
  out.count = n;
  std::size_t at = nl + 1;
  for (int i = 0; i < n; ++i) {
    nl = line_end(data, at, bad, 1024);
    if (nl == std::string_view::npos) return bad ? FanoutProtocol::kBad : 0;
    std::string_view h = trim_cr(data.substr(at, nl - at));
    if (h.empty()) return FanoutProtocol::kBad;
    if (h[0] == ':') {
      out.items[i] = h.substr(1);
      at = nl + 1;
      continue;
    }
    std::size_t len = 0;
    if (h[0] != '$' || !parse_number(h.substr(1), len)) return FanoutProtocol::kBad;
    if (data.size() - (nl + 1) < len + 2) return 0;
    if (data.substr(nl + 1 + len, 2) != "\r\n") return FanoutProtocol::kBad;
    out.items[i] = data.substr(nl + 1, len);
    at = nl + 1 + len + 2;
  }
  return at;
}

class RedisProtocol final : public FanoutProtocol {
 public:
  const char* name() const override { return "redis"; }
  static void bulk(std::string& out, std::string_view s) {
    out += '$';
    out += std::to_string(s.size());
    out += "\r\n";
    out += s;
    out += "\r\n";
  }
  std::string subscribe_request(std::string_view topic) const override {
    std::string out = "*2\r\n";
    bulk(out, "SUBSCRIBE");
    bulk(out, topic);
    return out;
  }
  void publish_request(std::string& out, std::string_view topic,
                       std::string_view payload) const override {
    out += "*3\r\n";
    bulk(out, "PUBLISH");
    bulk(out, topic);
    bulk(out, payload);
  }
  std::size_t parse_subscriber(std::string_view data, uint8_t&, FanoutEvents& ev) const override {
    std::size_t at = 0;
    for (;;) {
      RespArray a;
      std::size_t n = parse_resp(data.substr(at), a);
      if (n == kBad) return kBad;
      if (n == 0) return at;
      if (a.count == 3 && a.items[0] == "message") {
        ev.message(a.items[2]);
      } else if (a.count == 3 && a.items[0] == "subscribe") {
        ev.subscribed();
      } else {
        return kBad;
      }
      at += n;
    }
  }
  std::size_t parse_publisher(std::string_view data, uint8_t&, FanoutEvents&) const override {
    std::size_t at = 0;
    for (;;) {
      RespArray a;
      std::size_t n = parse_resp(data.substr(at), a);
      if (n == kBad) return kBad;
      if (n == 0) return at;
      if (a.count != -1) return kBad;  // PUBLISH answers with an integer
      at += n;
    }
  }
};

// ---- NATS ----

class NatsProtocol final : public FanoutProtocol {
 public:
  const char* name() const override { return "nats"; }
  static constexpr std::string_view kConnect =
      "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"myriad-load\"}\r\n";
  std::string subscribe_request(std::string_view topic) const override {
    // The PONG to this PING says the SUB before it was processed.
    return std::string(kConnect) + "SUB " + std::string(topic) + " 1\r\nPING\r\n";
  }
  std::string publisher_hello() const override { return std::string(kConnect); }
  void publish_request(std::string& out, std::string_view topic,
                       std::string_view payload) const override {
    out += "PUB ";
    out += topic;
    out += ' ';
    out += std::to_string(payload.size());
    out += "\r\n";
    out += payload;
    out += "\r\n";
  }
  std::size_t parse(std::string_view data, uint8_t& state, FanoutEvents& ev,
                    bool subscriber) const {
    std::size_t at = 0;
    for (;;) {
      bool bad = false;
      std::size_t nl = line_end(data, at, bad, 16384);  // INFO lines are long
      if (nl == std::string_view::npos) return bad ? kBad : at;
      std::string_view line = trim_cr(data.substr(at, nl - at));
      std::string_view verb = word(line);
      if (verb == "MSG" && subscriber) {
        // MSG <subject> <sid> [reply-to] <#bytes>
        std::string_view fields[4];
        int n = 0;
        while (!line.empty() && n < 4) fields[n++] = word(line);
        std::size_t len = 0;
        if ((n != 3 && n != 4) || !parse_number(fields[n - 1], len)) return kBad;
        if (data.size() - (nl + 1) < len + 2) return at;
        if (data.substr(nl + 1 + len, 2) != "\r\n") return kBad;
        ev.message(data.substr(nl + 1, len));
        at = nl + 1 + len + 2;
        continue;
      }
      if (verb == "PING") {
        ev.reply("PONG\r\n");
      } else if (verb == "PONG") {
        if (subscriber && state == 0) {
          state = 1;
          ev.subscribed();
        }
      } else if (verb != "INFO" && verb != "+OK") {
        return kBad;  // -ERR, or garbage
      }
      at = nl + 1;
    }
  }
  std::size_t parse_subscriber(std::string_view data, uint8_t& state,
                               FanoutEvents& ev) const override {
    return parse(data, state, ev, true);
  }
  std::size_t parse_publisher(std::string_view data, uint8_t& state,
                              FanoutEvents& ev) const override {
    return parse(data, state, ev, false);
  }
};

// ---- nginx + nchan: WebSocket subscribers, HTTP publishers ----

class NchanProtocol final : public FanoutProtocol {
 public:
  const char* name() const override { return "nchan"; }
  std::string subscribe_request(std::string_view topic) const override {
    return "GET /sub/" + std::string(topic) +
           " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: bXlyaWFkLWxvYWQtMDAwMQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  }
  void publish_request(std::string& out, std::string_view topic,
                       std::string_view payload) const override {
    out += "POST /pub/";
    out += topic;
    out += " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: ";
    out += std::to_string(payload.size());
    out += "\r\n\r\n";
    out += payload;
  }
  std::size_t parse_subscriber(std::string_view data, uint8_t& state,
                               FanoutEvents& ev) const override {
    std::size_t at = 0;
    if (state == 0) {
      std::size_t end = data.find("\r\n\r\n");
      if (end == std::string_view::npos) return data.size() > 16384 ? kBad : 0;
      if (data.substr(0, 12) != "HTTP/1.1 101") return kBad;
      state = 1;
      ev.subscribed();
      at = end + 4;
    }
    for (;;) {
      std::string_view f = data.substr(at);
      if (f.size() < 2) return at;
      auto b0 = static_cast<uint8_t>(f[0]);
      auto b1 = static_cast<uint8_t>(f[1]);
      if ((b1 & 0x80) != 0) return kBad;  // a server never masks
      uint64_t len = b1 & 0x7f;
      std::size_t head = 2;
      if (len == 126) {
        if (f.size() < 4) return at;
        len = (uint64_t{static_cast<uint8_t>(f[2])} << 8) | static_cast<uint8_t>(f[3]);
        head = 4;
      } else if (len == 127) {
        if (f.size() < 10) return at;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<uint8_t>(f[2 + i]);
        head = 10;
      }
      if (len > (uint64_t{1} << 30)) return kBad;
      if (f.size() - head < len) return at;
      std::string_view payload = f.substr(head, static_cast<std::size_t>(len));
      uint8_t opcode = b0 & 0x0f;
      if ((b0 & 0x80) == 0 && opcode != 0x9 && opcode != 0xa) return kBad;  // fragmented
      if (opcode == 0x1 || opcode == 0x2) {
        ev.message(payload);
      } else if (opcode == 0x9) {
        // Pong with the same payload, masked with a zero key (the bytes stay as they are).
        std::string pong;
        pong += static_cast<char>(0x8a);
        pong += static_cast<char>(0x80 | payload.size());
        pong.append(4, '\0');
        pong += payload;
        ev.reply(pong);
      } else if (opcode != 0xa) {
        return kBad;  // close, or a reserved opcode
      }
      at += head + static_cast<std::size_t>(len);
    }
  }
  std::size_t parse_publisher(std::string_view data, uint8_t&, FanoutEvents&) const override {
    // HTTP/1.1 responses, one per POST: a 2xx status and a body by Content-Length or chunked.
    std::size_t at = 0;
    for (;;) {
      std::string_view r = data.substr(at);
      std::size_t end = r.find("\r\n\r\n");
      if (end == std::string_view::npos) return r.size() > 16384 ? kBad : at;
      if (r.size() < 10 || r.substr(0, 9) != "HTTP/1.1 " || r[9] != '2') return kBad;
      std::string_view headers = r.substr(0, end + 2);
      std::size_t body = 0;
      bool chunked = false;
      for (std::size_t pos = headers.find("\r\n") + 2; pos < headers.size();) {
        std::size_t eol = headers.find("\r\n", pos);
        std::string_view h = headers.substr(pos, eol - pos);
        if (starts_with_nocase(h, "content-length:")) {
          std::string_view v = h.substr(15);
          while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
          if (!parse_number(v, body)) return kBad;
        } else if (starts_with_nocase(h, "transfer-encoding:") &&
                   h.find("chunked") != std::string_view::npos) {
          chunked = true;
        }
        pos = eol + 2;
      }
      std::size_t pos = end + 4;
      if (!chunked) {
        if (r.size() - pos < body) return at;
        at += pos + body;
        continue;
      }
      for (;;) {
        std::size_t eol = r.find("\r\n", pos);
        if (eol == std::string_view::npos) return at;
        std::size_t n = 0;
        std::string_view size_text = r.substr(pos, eol - pos);
        size_text = size_text.substr(0, size_text.find(';'));
        if (std::from_chars(size_text.data(), size_text.data() + size_text.size(), n, 16).ec !=
            std::errc())
          return kBad;
        if (r.size() - (eol + 2) < n + 2) return at;
        pos = eol + 2 + n + 2;
        if (n == 0) break;
      }
      at += pos;
    }
  }
};

}  // namespace

void make_payload(uint64_t seq, uint64_t due_ns, char* out, std::size_t size) {
  for (int i = 15; i >= 0; --i) out[15 - i] = kHex[(seq >> (4 * i)) & 0xf];
  for (int i = 15; i >= 0; --i) out[31 - i] = kHex[(due_ns >> (4 * i)) & 0xf];
  for (std::size_t i = 32; i < size; ++i) out[i] = filler(seq, due_ns, i);
}

bool check_payload(std::string_view p, std::size_t size, uint64_t& seq, uint64_t& due_ns) {
  if (p.size() != size || size < kFanoutMinSize) return false;
  if (!parse_hex(p.substr(0, 16), seq) || !parse_hex(p.substr(16, 16), due_ns)) return false;
  for (std::size_t i = 32; i < size; ++i) {
    if (p[i] != filler(seq, due_ns, i)) return false;
  }
  return true;
}

// ---- myriad-push's plain TCP protocol (docs/PUSH.md) ----

class PushProtocol final : public FanoutProtocol {
 public:
  const char* name() const override { return "push"; }
  bool resumes() const override { return true; }
  std::string subscribe_request(std::string_view topic) const override {
    return "SUB " + std::string(topic) + "\n";
  }
  std::string resume_request(std::string_view topic, uint64_t offset,
                             std::string_view epoch) const override {
    return "SUB " + std::string(topic) + " " + std::to_string(offset) + " " + std::string(epoch) +
           "\n";
  }
  void publish_request(std::string& out, std::string_view topic,
                       std::string_view payload) const override {
    out += "PUB ";
    out += topic;
    out += ' ';
    out += std::to_string(payload.size());
    out += '\n';
    out += payload;
  }
  std::size_t parse_subscriber(std::string_view data, uint8_t&, FanoutEvents& ev) const override {
    std::size_t at = 0;
    for (;;) {
      bool bad = false;
      std::size_t nl = line_end(data, at, bad, 1024);
      if (nl == std::string_view::npos) return bad ? kBad : at;
      std::string_view line = data.substr(at, nl - at);
      std::string_view verb = word(line);
      if (verb == "MSG") {
        word(line);  // topic
        uint64_t off = 0;
        std::size_t len = 0;
        if (!parse_number(word(line), off) || !parse_number(line, len)) return kBad;
        if (data.size() - (nl + 1) < len + 1) return at;
        if (data[nl + 1 + len] != '\n') return kBad;
        ev.position(off);
        ev.message(data.substr(nl + 1, len));
        at = nl + 1 + len + 1;
        continue;
      }
      if (verb == "OK") {
        if (word(line) == "SUB") {  // OK SUB <topic> <epoch> <last>
          word(line);
          ev.epoch(word(line));
          ev.subscribed();
        }
      } else if (verb != "PONG") {
        // ERR, BYE, NO, and LOST: a resume that could not give exactly what was missed. Any
        // of them fails the subscriber, loudly.
        return kBad;
      }
      at = nl + 1;
    }
  }
  std::size_t parse_publisher(std::string_view data, uint8_t& state,
                              FanoutEvents& ev) const override {
    return parse_subscriber(data, state, ev);  // OK PUB acknowledgements; NO or ERR are bad
  }
};

std::unique_ptr<FanoutProtocol> make_fanout_protocol(std::string_view name) {
  if (name == "myriad") return std::make_unique<MyriadProtocol>();
  if (name == "push") return std::make_unique<PushProtocol>();
  if (name == "redis") return std::make_unique<RedisProtocol>();
  if (name == "nats") return std::make_unique<NatsProtocol>();
  if (name == "nchan") return std::make_unique<NchanProtocol>();
  throw std::invalid_argument("unknown --protocol '" + std::string(name) +
                              "' (known: myriad, redis, nats, nchan, push)");
}

}  // namespace myriad::load
