// Test support: a small raw WebSocket client for the conformance suite. It writes every frame
// byte by byte from RFC 6455 5.2 (not with the library's encoder), can split what it sends into
// separate TCP writes anywhere, and reads the server's frames checking that they are unmasked.
#pragma once

#include <myriad/address.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "client.hpp"

namespace wstest {

using namespace std::chrono_literals;

struct Frame {
  bool fin = false;
  uint8_t rsv = 0;  // bits 1-3 as 0b100 (RSV1) .. 0b001 (RSV3)
  uint8_t opcode = 0;
  std::string payload;
};

// Builds a client frame: first byte (FIN, RSV, opcode), masked with key unless masked is false.
// length_form forces a length encoding (0: minimal, 1: 7-bit, 2: 16-bit, 3: 64-bit).
std::string frame(uint8_t first_byte, std::string_view payload, bool masked = true,
                  uint32_t key = 0xa1b2c3d4, int length_form = 0);
inline std::string text(std::string_view s) {
  return frame(0x81, s);
}
inline std::string binary(std::string_view s) {
  return frame(0x82, s);
}
std::string close_frame(uint16_t code, std::string_view reason = {});

// permessage-deflate for the client's side: each message compressed on its own (the server
// asks for client_no_context_takeover), the 00 00 ff ff tail removed; and the inverse.
std::string deflate_message(std::string_view message, int window_bits = 15);
std::optional<std::string> inflate_message(std::string_view compressed);

struct Handshake {
  int status = 0;
  std::string head;  // the whole response head
  std::string header(std::string_view name) const;
};

class Client {
 public:
  // Connects and completes the opening handshake with these extra header lines ("Name: value"
  // each, without CRLF). Fails the test (ASSERT) when the server does not answer 101 with the
  // right Sec-WebSocket-Accept.
  static Client open(const myriad::Address& to, std::vector<std::string> extra_headers = {});
  // Connects and sends a raw request, returning the response head (for handshake tests).
  static Handshake raw_handshake(const myriad::Address& to, const std::string& request,
                                 test::Socket* keep = nullptr);

  Client() = default;
  Client(test::Socket socket, Handshake handshake, std::string leftover)
      : socket_(std::move(socket)), handshake_(std::move(handshake)), in_(std::move(leftover)) {}

  const Handshake& handshake() const { return handshake_; }
  test::Socket& socket() { return socket_; }

  // Sends bytes in one write, or cut into pieces of `piece` bytes with a TCP write each (and a
  // millisecond between them, so they tend to arrive in separate receives).
  bool send(const std::string& bytes, std::size_t piece = 0);
  // The next frame from the server; nullopt on EOF, error or after the limit. Fails the test if
  // the server masked it.
  std::optional<Frame> read_frame(std::chrono::milliseconds limit = 10s);
  // Reads frames until a close frame; returns its code (1005 when it has none, -1 when the
  // connection ended or the limit passed first). Data frames before it are skipped.
  int read_close(std::chrono::milliseconds limit = 10s, std::string* reason = nullptr);
  // Whether the server closed the TCP connection (EOF or reset) within the limit, reading and
  // discarding anything it still sends.
  bool closed_by_server(std::chrono::milliseconds limit = 10s);
  // A whole data message (reassembling fragments; control frames are skipped, pings are not
  // answered): its opcode (1 or 2) and payload, inflated when RSV1 was set.
  std::optional<Frame> read_message(std::chrono::milliseconds limit = 10s);

 private:
  bool fill(std::size_t need, std::chrono::steady_clock::time_point deadline);

  test::Socket socket_;
  Handshake handshake_;
  std::string in_;
};

// A key for requests: base64 of 16 bytes.
inline constexpr const char* kKey = "dGhlIHNhbXBsZSBub25jZQ==";
// The Sec-WebSocket-Accept the RFC computes for kKey.
inline constexpr const char* kAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
// The request line and the headers every handshake needs, less the final CRLF.
std::string request_head(std::string_view key = kKey, std::string_view path = "/ws");

}  // namespace wstest
