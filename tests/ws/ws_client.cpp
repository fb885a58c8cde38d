#include "ws_client.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <cctype>
#include <cstring>
#include <thread>

namespace wstest {

std::string frame(uint8_t first_byte, std::string_view payload, bool masked, uint32_t key,
                  int length_form) {
  std::string out;
  out.push_back(static_cast<char>(first_byte));
  uint64_t n = payload.size();
  uint8_t m = masked ? 0x80 : 0;
  if ((length_form == 0 && n < 126) || length_form == 1) {
    out.push_back(static_cast<char>(m | n));
  } else if ((length_form == 0 && n <= 0xFFFF) || length_form == 2) {
    out.push_back(static_cast<char>(m | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n));
  } else {
    out.push_back(static_cast<char>(m | 127));
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(n >> (8 * i)));
  }
  const unsigned char k[4] = {
      static_cast<unsigned char>(key >> 24), static_cast<unsigned char>(key >> 16),
      static_cast<unsigned char>(key >> 8), static_cast<unsigned char>(key)};
  if (masked) out.append(reinterpret_cast<const char*>(k), 4);
  for (std::size_t i = 0; i < payload.size(); ++i) {
    out.push_back(
        static_cast<char>(static_cast<unsigned char>(payload[i]) ^ (masked ? k[i % 4] : 0)));
  }
  return out;
}

std::string close_frame(uint16_t code, std::string_view reason) {
  std::string payload;
  payload.push_back(static_cast<char>(code >> 8));
  payload.push_back(static_cast<char>(code));
  payload.append(reason);
  return frame(0x88, payload);
}

std::string deflate_message(std::string_view message, int window_bits) {
  z_stream s{};
  deflateInit2(&s, 6, Z_DEFLATED, -window_bits, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&s, message.size()) + 64, '\0');
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(message.data()));
  s.avail_in = static_cast<uInt>(message.size());
  s.next_out = reinterpret_cast<Bytef*>(out.data());
  s.avail_out = static_cast<uInt>(out.size());
  deflate(&s, Z_SYNC_FLUSH);
  out.resize(out.size() - s.avail_out);
  deflateEnd(&s);
  if (out.size() >= 4 && out.compare(out.size() - 4, 4, std::string("\0\0\xff\xff", 4)) == 0) {
    out.resize(out.size() - 4);
  }
  return out;
}

std::optional<std::string> inflate_message(std::string_view compressed) {
  z_stream s{};
  inflateInit2(&s, -15);
  std::string in(compressed);
  in.append("\0\0\xff\xff", 4);
  std::string out;
  s.next_in = reinterpret_cast<Bytef*>(in.data());
  s.avail_in = static_cast<uInt>(in.size());
  char buf[16384];
  int rc = Z_OK;
  while (s.avail_in > 0 && rc == Z_OK) {
    s.next_out = reinterpret_cast<Bytef*>(buf);
    s.avail_out = sizeof(buf);
    rc = inflate(&s, Z_SYNC_FLUSH);
    out.append(buf, sizeof(buf) - s.avail_out);
  }
  inflateEnd(&s);
  if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) return std::nullopt;
  return out;
}

std::string Handshake::header(std::string_view name) const {
  std::size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != std::string::npos) {
    pos += 2;
    std::size_t colon = head.find(':', pos);
    std::size_t eol = head.find("\r\n", pos);
    if (colon == std::string::npos || eol == std::string::npos || colon > eol) continue;
    std::string field = head.substr(pos, colon - pos);
    if (field.size() == name.size() &&
        std::equal(field.begin(), field.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        })) {
      std::string value = head.substr(colon + 1, eol - colon - 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      while (!value.empty() && value.back() == ' ') value.pop_back();
      return value;
    }
  }
  return {};
}

std::string request_head(std::string_view key, std::string_view path) {
  return "GET " + std::string(path) +
         " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " +
         std::string(key) + "\r\nSec-WebSocket-Version: 13\r\n";
}

namespace {

// base64(SHA-1(key + GUID)), computed here on its own from RFC 6455 4.2.2.
std::string expected_accept(const std::string& key) {
  std::string in = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
  unsigned char out[64];
  int n = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
}

// Reads until the end of the response head; returns head and what came after it.
bool read_head(test::Socket& s, std::string& head, std::string& rest,
               std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  std::string buf;
  for (;;) {
    std::size_t end = buf.find("\r\n\r\n");
    if (end != std::string::npos) {
      head = buf.substr(0, end + 4);
      rest = buf.substr(end + 4);
      return true;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{s.fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char tmp[4096];
    ssize_t n = ::recv(s.fd(), tmp, sizeof(tmp), 0);
    if (n <= 0) {
      head = buf;
      return false;
    }
    buf.append(tmp, static_cast<std::size_t>(n));
  }
}

int status_of(const std::string& head) {
  if (head.size() < 12 || head.compare(0, 9, "HTTP/1.1 ") != 0) return 0;
  return std::atoi(head.c_str() + 9);
}

}  // namespace

Handshake Client::raw_handshake(const myriad::Address& to, const std::string& request,
                                test::Socket* keep) {
  test::Socket s = test::Socket::connect_to(to);
  Handshake h;
  if (!s.send_all(request)) return h;
  std::string rest;
  read_head(s, h.head, rest, 10s);
  h.status = status_of(h.head);
  if (keep != nullptr) *keep = std::move(s);
  return h;
}

Client Client::open(const myriad::Address& to, std::vector<std::string> extra_headers) {
  test::Socket s = test::Socket::connect_to(to);
  int one = 1;
  ::setsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  // A fresh key per connection, as a browser makes.
  static std::atomic<uint64_t> serial{1};
  uint64_t n = serial.fetch_add(1);
  unsigned char raw[16];
  for (int i = 0; i < 16; ++i) raw[i] = static_cast<unsigned char>((n * 2654435761u) >> (i % 8));
  unsigned char b64[32];
  int len = EVP_EncodeBlock(b64, raw, 16);
  std::string key(reinterpret_cast<char*>(b64), static_cast<std::size_t>(len));
  std::string request = request_head(key);
  for (const std::string& h : extra_headers) request += h + "\r\n";
  request += "\r\n";
  EXPECT_TRUE(s.send_all(request));
  Handshake h;
  std::string rest;
  EXPECT_TRUE(read_head(s, h.head, rest, 10s)) << "no response head: " << h.head;
  h.status = status_of(h.head);
  EXPECT_EQ(h.status, 101) << h.head;
  EXPECT_EQ(h.header("Sec-WebSocket-Accept"), expected_accept(key)) << h.head;
  return Client(std::move(s), std::move(h), std::move(rest));
}

bool Client::send(const std::string& bytes, std::size_t piece) {
  if (piece == 0) return socket_.send_all(bytes);
  for (std::size_t i = 0; i < bytes.size(); i += piece) {
    if (!socket_.send_all(bytes.substr(i, piece))) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

bool Client::fill(std::size_t need, std::chrono::steady_clock::time_point deadline) {
  while (in_.size() < need) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{socket_.fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char tmp[65536];
    ssize_t n = ::recv(socket_.fd(), tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    in_.append(tmp, static_cast<std::size_t>(n));
  }
  return true;
}

std::optional<Frame> Client::read_frame(std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  if (!fill(2, deadline)) return std::nullopt;
  auto b0 = static_cast<uint8_t>(in_[0]);
  auto b1 = static_cast<uint8_t>(in_[1]);
  EXPECT_EQ(b1 & 0x80, 0) << "a server must not mask its frames (RFC 6455 5.1)";
  std::size_t header = 2;
  uint64_t len = b1 & 0x7F;
  if (len == 126) header = 4;
  if (len == 127) header = 10;
  if (!fill(header, deadline)) return std::nullopt;
  if (len == 126) {
    len = (uint64_t{static_cast<uint8_t>(in_[2])} << 8) | static_cast<uint8_t>(in_[3]);
    EXPECT_GE(len, 126u) << "minimal length encoding";
  } else if (len == 127) {
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<uint8_t>(in_[2 + i]);
    EXPECT_GT(len, 0xFFFFu) << "minimal length encoding";
  }
  if (!fill(header + len, deadline)) return std::nullopt;
  Frame f;
  f.fin = (b0 & 0x80) != 0;
  f.rsv = (b0 >> 4) & 0x7;
  f.opcode = b0 & 0x0F;
  f.payload = in_.substr(header, len);
  in_.erase(0, header + len);
  return f;
}

int Client::read_close(std::chrono::milliseconds limit, std::string* reason) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return -1;
    auto f = read_frame(left);
    if (!f) return -1;
    if (f->opcode != 0x8) continue;
    if (f->payload.empty()) return 1005;
    if (f->payload.size() < 2) return -2;
    if (reason != nullptr) *reason = f->payload.substr(2);
    return (static_cast<uint8_t>(f->payload[0]) << 8) | static_cast<uint8_t>(f->payload[1]);
  }
}

bool Client::closed_by_server(std::chrono::milliseconds limit) {
  in_.clear();
  return socket_.closed_by_peer(limit);
}

std::optional<Frame> Client::read_message(std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  Frame message;
  bool started = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto f = read_frame(left);
    if (!f) return std::nullopt;
    if (f->opcode >= 0x8) {
      if (f->opcode == 0x8) return std::nullopt;
      continue;
    }
    if (!started) {
      EXPECT_NE(f->opcode, 0) << "a continuation frame started a message";
      message.opcode = f->opcode;
      message.rsv = f->rsv;
      started = true;
    } else {
      EXPECT_EQ(f->opcode, 0) << "a new message inside a fragmented one";
      EXPECT_EQ(f->rsv, 0) << "RSV1 on a continuation frame";
    }
    message.payload += f->payload;
    if (f->fin) break;
  }
  if (message.rsv & 0x4) {
    auto inflated = inflate_message(message.payload);
    EXPECT_TRUE(inflated.has_value()) << "the server's compressed message does not inflate";
    if (!inflated) return std::nullopt;
    message.payload = *inflated;
  }
  message.fin = true;
  return message;
}

}  // namespace wstest
