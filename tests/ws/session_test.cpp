// WebSocket conformance beyond framing, on both backends: the opening handshake (RFC 6455 4),
// close handling (Autobahn group 7: RFC 6455 5.5.1, 7.1-7.4), limits (group 9), server pings,
// pong/idle/close timeouts on the shard's sweep, and permessage-deflate (groups 12-13: RFC 7692).
#include <gtest/gtest.h>

#include <thread>

#include "ws_fixture.hpp"

namespace {

using namespace std::chrono_literals;
using test::BackendTest;
using wstest::binary;
using wstest::Client;
using wstest::close_frame;
using wstest::EchoServer;
using wstest::frame;
using wstest::text;

class WsSession : public BackendTest {
 protected:
  std::unique_ptr<EchoServer> make(myriad::ws::Options options = {}) {
    return std::make_unique<EchoServer>(config(), std::move(options));
  }
};

std::string request(std::string_view extra = {}, std::string_view method = "GET",
                    std::string_view version = "13", std::string_view key = wstest::kKey) {
  std::string r = std::string(method) +
                  " /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " +
                  std::string(key) + "\r\n";
  if (!version.empty()) r += "Sec-WebSocket-Version: " + std::string(version) + "\r\n";
  return r + std::string(extra) + "\r\n";
}

// ---- the opening handshake ----

TEST_P(WsSession, Handshake_AcceptFromTheRfcExample) {
  auto server = make();
  auto h = Client::raw_handshake(server->address(), request());
  EXPECT_EQ(h.status, 101) << h.head;
  EXPECT_EQ(h.header("Sec-WebSocket-Accept"), wstest::kAccept);
  EXPECT_TRUE(h.header("Upgrade") == "websocket") << h.head;
  EXPECT_NE(h.header("Connection").find("pgrade"), std::string::npos) << h.head;
  EXPECT_EQ(h.header("Sec-WebSocket-Extensions"), "") << "nothing offered, nothing answered";
}

TEST_P(WsSession, Handshake_BadRequestsAreRefused) {
  auto server = make();
  EXPECT_EQ(Client::raw_handshake(server->address(), request("", "GET", "8")).status, 426);
  auto h = Client::raw_handshake(server->address(), request("", "GET", ""));
  EXPECT_EQ(h.status, 426) << "no version";
  EXPECT_EQ(h.header("Sec-WebSocket-Version"), "13");
  EXPECT_EQ(
      Client::raw_handshake(server->address(), request("", "GET", "13", "dGhlIHNhbXBsZQ==")).status,
      400)
      << "a key of 11 bytes";
  EXPECT_EQ(Client::raw_handshake(server->address(), request("", "GET", "13", "")).status, 400);
  auto post = Client::raw_handshake(server->address(), request("Content-Length: 0\r\n", "POST"));
  EXPECT_EQ(post.status, 400) << post.head;
  // HTTP/1.0 cannot upgrade to WebSocket.
  auto old = Client::raw_handshake(
      server->address(),
      "GET /ws HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
  EXPECT_EQ(old.status, 400) << old.head;
  EXPECT_TRUE(test::eventually([&] { return server->stats().handshakes_refused == 6; }))
      << server->stats().to_string();
  EXPECT_EQ(server->stats().handshakes, 0u);
}

TEST_P(WsSession, Handshake_OriginHook) {
  myriad::ws::Options options;
  options.check_origin = [](std::string_view origin) { return origin == "https://good.example"; };
  auto server = make(options);
  EXPECT_EQ(
      Client::raw_handshake(server->address(), request("Origin: https://good.example\r\n")).status,
      101);
  EXPECT_EQ(
      Client::raw_handshake(server->address(), request("Origin: https://evil.example\r\n")).status,
      403);
  EXPECT_EQ(Client::raw_handshake(server->address(), request()).status, 403) << "no Origin";
}

TEST_P(WsSession, Handshake_SubprotocolNegotiation) {
  myriad::ws::Options options;
  options.subprotocols = {"chat.v2", "chat.v1"};
  auto server = make(options);
  auto h = Client::raw_handshake(server->address(),
                                 request("Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n"));
  EXPECT_EQ(h.status, 101);
  EXPECT_EQ(h.header("Sec-WebSocket-Protocol"), "chat.v2") << "the server's preference";
  h = Client::raw_handshake(server->address(), request("Sec-WebSocket-Protocol: other\r\n"
                                                       "Sec-WebSocket-Protocol: chat.v1\r\n"));
  EXPECT_EQ(h.header("Sec-WebSocket-Protocol"), "chat.v1") << "across repeated headers";
  h = Client::raw_handshake(server->address(), request("Sec-WebSocket-Protocol: mqtt\r\n"));
  EXPECT_EQ(h.status, 101);
  EXPECT_EQ(h.header("Sec-WebSocket-Protocol"), "") << "none in common: none answered";
}

TEST_P(WsSession, Handshake_PlainHttpStillWorks) {
  auto server = make();
  auto h = Client::raw_handshake(server->address(),
                                 "GET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(h.status, 404);
  // An Upgrade to something else is not ours: the request handler answers it.
  h = Client::raw_handshake(server->address(),
                            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
                            "Connection: close\r\n\r\n");
  EXPECT_EQ(h.status, 404) << h.head;
}

// ---- 7: close handling ----

TEST_P(WsSession, Case7_CloseHandshakeInitiatedByTheClient) {
  auto server = make();
  Client c = server->open();
  ASSERT_TRUE(c.send(text("before close")));
  auto m = c.read_message();
  ASSERT_TRUE(m.has_value());
  std::string reason;
  ASSERT_TRUE(c.send(close_frame(1000, "bye")));
  EXPECT_EQ(c.read_close(10s, &reason), 1000) << "the server echoes the code";
  EXPECT_TRUE(c.closed_by_server()) << "then closes TCP (RFC 6455 7.1.1)";
  EXPECT_TRUE(test::eventually([&] { return server->echo().codes().size() == 1; }));
  EXPECT_EQ(server->echo().codes()[0], 1000);
}

TEST_P(WsSession, Case7_FramesAfterTheCloseAreIgnored) {
  auto server = make();
  Client c = server->open();
  ASSERT_TRUE(c.send(close_frame(1000) + text("after close") + frame(0x89, "ping")));
  auto f = c.read_frame();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->opcode, 0x8) << "no echo, no pong after the close";
  EXPECT_TRUE(c.closed_by_server());
}

TEST_P(WsSession, Case7_EmptyCloseIsAnsweredWithAnEmptyClose) {
  auto server = make();
  Client c = server->open();
  ASSERT_TRUE(c.send(frame(0x88, "")));
  EXPECT_EQ(c.read_close(), 1005) << "a close frame without a code";
  EXPECT_TRUE(c.closed_by_server());
}

TEST_P(WsSession, Case7_ClosePayloads) {
  auto server = make();
  struct Case {
    std::string payload;
    int expect;
    const char* what;
  };
  std::string r123(123, 'r');
  std::vector<Case> cases = {
      {std::string("\x03", 1), 1002, "one byte"},
      {std::string("\x03\xe8", 2), 1000, "code only"},
      {std::string("\x03\xe8") + "Hello World!", 1000, "code and reason"},
      {std::string("\x03\xe8") + r123, 1000, "reason of 123 bytes (125 in all)"},
      {std::string("\x03\xe8") + "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80"
                                 "edited",
       1007, "reason not UTF-8"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.what);
    Client c = server->open();
    ASSERT_TRUE(c.send(frame(0x88, k.payload)));
    EXPECT_EQ(c.read_close(), k.expect);
    EXPECT_TRUE(c.closed_by_server());
  }
  // 126 bytes of close payload: over the control-frame limit.
  Client c = server->open();
  ASSERT_TRUE(c.send(frame(0x88, std::string("\x03\xe8") + std::string(124, 'r'))));
  EXPECT_EQ(c.read_close(), 1002);
}

TEST_P(WsSession, Case7_ValidCodesAreEchoedInvalidOnesAre1002) {
  auto server = make();
  for (int code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000,
                   3999, 4000, 4999}) {
    SCOPED_TRACE(code);
    Client c = server->open();
    ASSERT_TRUE(c.send(close_frame(static_cast<uint16_t>(code))));
    EXPECT_EQ(c.read_close(), code);
  }
  for (int code : {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    SCOPED_TRACE(code);
    Client c = server->open();
    ASSERT_TRUE(c.send(close_frame(static_cast<uint16_t>(code))));
    EXPECT_EQ(c.read_close(), 1002);
    EXPECT_TRUE(c.closed_by_server());
  }
}

TEST_P(WsSession, Case7_TcpEndWithoutCloseIsAbnormal) {
  auto server = make();
  {
    Client c = server->open();
    ASSERT_TRUE(c.send(text("x")));
    ASSERT_TRUE(c.read_message().has_value());
  }  // the socket closes: FIN, no close frame
  EXPECT_TRUE(test::eventually([&] { return server->echo().codes().size() == 1; }));
  EXPECT_EQ(server->echo().codes()[0], 1006);
  EXPECT_EQ(server->stats().abnormal_closes, 1u);
  EXPECT_TRUE(test::eventually([&] { return server->stats().open == 0; }));
}

TEST_P(WsSession, Case7_ServerCloseWaitsForThePeersClose) {
  // The idle timeout makes the server close first: close frame 1001, then it waits for ours.
  myriad::ws::Options options;
  options.idle_timeout = 200ms;
  options.close_timeout = 30s;
  auto server = make(options);
  Client c = server->open();
  std::string reason;
  EXPECT_EQ(c.read_close(10s, &reason), 1001);
  EXPECT_EQ(reason, "idle timeout");
  // TCP stays open until we answer.
  EXPECT_FALSE(c.socket().closed_by_peer(300ms)) << "closed TCP before the client's close frame";
  ASSERT_TRUE(c.send(close_frame(1001)));
  EXPECT_TRUE(c.closed_by_server());
  EXPECT_TRUE(test::eventually([&] { return server->echo().codes().size() == 1; }));
  EXPECT_EQ(server->echo().codes()[0], 1001);
  EXPECT_EQ(server->stats().idle_timeouts, 1u);
}

TEST_P(WsSession, Case7_CloseTimeoutWhenThePeerNeverAnswers) {
  myriad::ws::Options options;
  options.idle_timeout = 100ms;
  options.close_timeout = 200ms;
  auto server = make(options);
  Client c = server->open();
  EXPECT_EQ(c.read_close(), 1001);
  EXPECT_TRUE(c.closed_by_server()) << "closed after close_timeout";
  EXPECT_TRUE(test::eventually([&] { return server->stats().close_timeouts == 1; }));
}

// ---- server pings and pong timeouts ----

TEST_P(WsSession, ServerPingsAnIdleConnectionAndDropsOneThatNeverAnswers) {
  myriad::ws::Options options;
  options.ping_interval = 100ms;
  options.pong_timeout = 2s;  // room for a test thread that a loaded machine delays
  auto server = make(options);
  Client alive = server->open();
  Client dead = server->open();
  // The live client answers three pings; each answer keeps it open.
  for (int i = 0; i < 3; ++i) {
    auto f = alive.read_frame();
    ASSERT_TRUE(f.has_value());
    ASSERT_EQ(f->opcode, 0x9) << "a server ping";
    ASSERT_TRUE(alive.send(frame(0x8A, f->payload)));
  }
  // The silent one got a ping too and is gone after the pong timeout.
  auto f = dead.read_frame();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->opcode, 0x9);
  EXPECT_TRUE(dead.closed_by_server());
  EXPECT_TRUE(test::eventually([&] { return server->stats().pong_timeouts >= 1; }));
  // The live one still echoes.
  ASSERT_TRUE(alive.send(text("still here")));
  auto m = alive.read_message();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->payload, "still here");
  EXPECT_GE(server->stats().pings_out, 4u);
}

// ---- 9: limits ----

TEST_P(WsSession, Case9_LargeMessagesUpToTheLimit) {
  myriad::ws::Options options;
  options.max_message_size = 1 << 20;
  auto server = make(options);
  Client c = server->open();
  std::string big = test::random_bytes(1 << 20, 77);
  ASSERT_TRUE(c.send(binary(big)));
  auto m = c.read_message(30s);
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->payload == big);
  // The same in 64 KiB fragments, sent in 4 KiB writes.
  std::string bytes;
  for (std::size_t i = 0; i < big.size(); i += 65536) {
    bytes += frame((i + 65536 >= big.size() ? 0x80 : 0) | (i == 0 ? 0x2 : 0), big.substr(i, 65536));
  }
  ASSERT_TRUE(c.send(bytes, 4096));
  m = c.read_message(30s);
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->payload == big);
}

TEST_P(WsSession, Case9_OverTheLimitIs1009) {
  myriad::ws::Options options;
  options.max_message_size = 64 << 10;
  auto server = make(options);
  {
    Client c = server->open();
    ASSERT_TRUE(c.send(text(std::string(64 << 10, 'a'))));
    ASSERT_TRUE(c.read_message().has_value()) << "exactly the limit is fine";
    c.send(text(std::string((64 << 10) + 1, 'a')));
    EXPECT_EQ(c.read_close(), 1009);
  }
  {
    // Fragments adding up past it.
    Client c = server->open();
    c.send(frame(0x02, std::string(40000, 'a')) + frame(0x80, std::string(40000, 'b')));
    EXPECT_EQ(c.read_close(), 1009);
  }
  {
    // A 64-bit length near the top: refused on the header, before any payload is sent.
    Client c = server->open();
    std::string header = "\x82\xff\x3f\xff\xff\xff\xff\xff\xff\xff\x01\x02\x03\x04";
    c.send(header);
    EXPECT_EQ(c.read_close(), 1009);
    EXPECT_TRUE(c.closed_by_server());
  }
  {
    // The top bit of a 64-bit length is a protocol error.
    Client c = server->open();
    std::string header("\x82\xff\x80\x00\x00\x00\x00\x00\x00\x01\x01\x02\x03\x04", 14);
    c.send(header);
    EXPECT_EQ(c.read_close(), 1002);
  }
  EXPECT_TRUE(test::eventually([&] { return server->stats().too_big == 3; }));
}

TEST_P(WsSession, Case9_ClientTricklingAFrameIs1008) {
  myriad::ws::Options options;
  options.message_timeout = 300ms;
  auto server = make(options);
  {
    // Half a frame, then nothing.
    Client c = server->open();
    std::string f = text("never finished");
    ASSERT_TRUE(c.send(f.substr(0, 5)));
    EXPECT_EQ(c.read_close(), 1008);
    EXPECT_TRUE(c.closed_by_server());
  }
  {
    // One byte every 20 ms of a 200-byte frame: 4 s in all, far past the limit.
    Client c = server->open();
    std::string f = binary(std::string(200, 'b'));
    std::atomic<bool> stop{false};
    std::thread trickle([&] {
      for (std::size_t i = 0; i < f.size() && !stop; ++i) {
        if (!c.socket().send_all(f.substr(i, 1))) break;
        std::this_thread::sleep_for(20ms);
      }
    });
    EXPECT_EQ(c.read_close(), 1008);
    stop = true;
    trickle.join();
  }
  {
    // Complete messages, however many, never trip it.
    Client c = server->open();
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(c.send(text("quick " + std::to_string(i))));
      ASSERT_TRUE(c.read_message().has_value());
      std::this_thread::sleep_for(100ms);
    }
  }
  EXPECT_TRUE(test::eventually([&] { return server->stats().message_timeouts == 2; }));
  EXPECT_TRUE(test::eventually([&] { return server->stats().partial_now == 0; }));
}

TEST_P(WsSession, Case9_ManyConnectionsManyMessages) {
  auto server = make();
  std::vector<Client> clients;
  for (int i = 0; i < 50; ++i) clients.push_back(server->open());
  for (int round = 0; round < 20; ++round) {
    for (std::size_t i = 0; i < clients.size(); ++i) {
      ASSERT_TRUE(clients[i].send(text("c" + std::to_string(i) + " r" + std::to_string(round))));
    }
    for (std::size_t i = 0; i < clients.size(); ++i) {
      auto m = clients[i].read_message();
      ASSERT_TRUE(m.has_value());
      EXPECT_EQ(m->payload, "c" + std::to_string(i) + " r" + std::to_string(round));
    }
  }
  EXPECT_EQ(server->stats().messages_in, 1000u);
  EXPECT_EQ(server->stats().open, 50u);
}

// ---- 12-13: permessage-deflate ----

const char* kOffer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits";

TEST_P(WsSession, Case12_NegotiationAnswersNoContextTakeoverBothWays) {
  auto server = make();
  Client c = server->open({kOffer});
  EXPECT_EQ(c.handshake().header("Sec-WebSocket-Extensions"),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  // Declined offers: a smaller server window, an unknown parameter.
  Client d =
      server->open({"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10"});
  EXPECT_EQ(d.handshake().header("Sec-WebSocket-Extensions"), "");
  // ... and then RSV1 is a protocol error.
  d.send(frame(0xC1, wstest::deflate_message("x")));
  EXPECT_EQ(d.read_close(), 1002);
  // Compression off in the options: never negotiated.
  myriad::ws::Options off;
  off.compression = false;
  auto plain = make(off);
  Client e = plain->open({kOffer});
  EXPECT_EQ(e.handshake().header("Sec-WebSocket-Extensions"), "");
}

TEST_P(WsSession, Case12_CompressedMessagesRoundTrip) {
  auto server = make();
  Client c = server->open({kOffer});
  std::string compressible;
  for (int i = 0; i < 2000; ++i) compressible += "status " + std::to_string(i % 10) + "; ";
  for (const std::string& payload :
       {std::string("Hello"), std::string(""), compressible, test::random_bytes(5000, 4)}) {
    ASSERT_TRUE(c.send(frame(0xC2, wstest::deflate_message(payload))));
    auto m = c.read_message();
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->opcode, 0x2);
    EXPECT_TRUE(m->payload == payload);
  }
  // Uncompressed messages still work on a compressing connection.
  ASSERT_TRUE(c.send(text("plain")));
  auto m = c.read_message();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->payload, "plain");
  auto s = server->stats();
  EXPECT_EQ(s.compressed_in, 4u);
  EXPECT_GE(s.compressed_out, 1u) << "the compressible echo went out compressed";
}

TEST_P(WsSession, Case12_ServerCompressesAboveTheThresholdOnly) {
  auto server = make();
  Client c = server->open({kOffer});
  std::string big(10000, 'z');
  ASSERT_TRUE(c.send(text(big)));
  auto f = c.read_frame();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->rsv, 0x4) << "RSV1: compressed";
  EXPECT_LT(f->payload.size(), 200u);
  EXPECT_EQ(wstest::inflate_message(f->payload).value_or(""), big);
  ASSERT_TRUE(c.send(text("tiny")));
  f = c.read_frame();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->rsv, 0) << "below the threshold";
  EXPECT_EQ(f->payload, "tiny");
}

TEST_P(WsSession, Case13_FragmentedCompressedMessageAndSmallWindows) {
  auto server = make();
  Client c =
      server->open({"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=9"});
  std::string message;
  for (int i = 0; i < 3000; ++i) message += std::to_string(i * 7919 % 1000) + ",";
  std::string z = wstest::deflate_message(message, 9);
  // RSV1 on the first frame only, split in three fragments, sent in small writes.
  std::string bytes =
      frame(0x41, z.substr(0, 10)) + frame(0x00, z.substr(10, 100)) + frame(0x80, z.substr(110));
  ASSERT_TRUE(c.send(bytes, 50));
  auto m = c.read_message();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->opcode, 0x1);
  EXPECT_TRUE(m->payload == message);
}

TEST_P(WsSession, Case13_BadCompressedInput) {
  auto server = make();
  {
    Client c = server->open({kOffer});
    c.send(frame(0x41, "a") + frame(0xC0, "b"));
    EXPECT_EQ(c.read_close(), 1002) << "RSV1 on a continuation";
  }
  {
    Client c = server->open({kOffer});
    c.send(frame(0xC1, std::string("\xff\xff\xff\xff\x00\x12", 6)));
    EXPECT_EQ(c.read_close(), 1007) << "not a deflate stream";
  }
  {
    Client c = server->open({kOffer});
    c.send(frame(0xC1, wstest::deflate_message("ok \xED\xA0\x80 surrogate")));
    EXPECT_EQ(c.read_close(), 1007) << "inflated text is not UTF-8";
  }
  {
    // A compression bomb: 4 MiB of zeros in a few KB, past the 1 MiB limit.
    Client c = server->open({kOffer});
    std::string zeros(4 << 20, '\0');
    c.send(frame(0xC2, wstest::deflate_message(zeros)));
    EXPECT_EQ(c.read_close(), 1009);
  }
  auto s = server->stats();
  EXPECT_EQ(s.protocol_errors, 1u);
  EXPECT_EQ(s.invalid_payload, 2u);
  EXPECT_EQ(s.too_big, 1u);
}

// ---- encode once ----

TEST_P(WsSession, PreparedMessageIsSharedNotCopied) {
  std::string payload;
  for (int i = 0; i < 500; ++i) payload += "tick " + std::to_string(i) + "\n";
  myriad::ws::PreparedMessage prepared = myriad::ws::prepare_text(payload);
  ASSERT_FALSE(prepared.plain().empty());
  ASSERT_FALSE(prepared.deflated().empty());
  EXPECT_LT(prepared.deflated().size(), prepared.plain().size());
  std::atomic<int> sent{0};
  // Ask each connection's shard, through an echo of a trigger message, to send the prepared one.
  class Broadcast final : public myriad::ws::WebSocketHandler {
   public:
    explicit Broadcast(const myriad::ws::PreparedMessage& m, std::atomic<int>& sent)
        : m_(m), sent_(sent) {}
    void on_message(myriad::ws::WebSocket ws, const myriad::ws::Message&) override {
      if (ws.send(m_)) sent_.fetch_add(1);
    }
    const myriad::ws::PreparedMessage& m_;
    std::atomic<int>& sent_;
  } broadcast(prepared, sent);
  myriad::ws::Server ws(broadcast);
  myriad::http::Server http([](const myriad::http::Request&, myriad::http::Response& r) {
    r.send(404, "text/plain", "");
  });
  http.set_upgrade_hook(
      [&](const myriad::http::Request& q, myriad::http::Response& r) { return ws.upgrade(q, r); });
  test::Server srv(config(), http);
  Client a = Client::open(srv.address());
  Client b = Client::open(srv.address(), {kOffer});
  ASSERT_TRUE(a.send(text("go")));
  ASSERT_TRUE(b.send(text("go")));
  auto ma = a.read_frame();
  auto mb = b.read_frame();
  ASSERT_TRUE(ma && mb);
  EXPECT_EQ(ma->rsv, 0);
  EXPECT_EQ(ma->payload, payload);
  EXPECT_EQ(mb->rsv, 0x4) << "the compressed variant for the deflate connection";
  EXPECT_EQ(wstest::inflate_message(mb->payload).value_or(""), payload);
  EXPECT_EQ(sent.load(), 2);
  // Once sent, the queues let go of their references: only ours is left.
  EXPECT_TRUE(test::eventually(
      [&] { return prepared.plain().use_count() == 1 && prepared.deflated().use_count() == 1; }));
  srv.stop();
}

MYRIAD_CONFORMANCE_SUITE(WsSession);

}  // namespace
