// WebSocket conformance, RFC 6455 section 5, after Autobahn's case groups 1-6: framing,
// ping/pong, reserved bits, opcodes, fragmentation, UTF-8. Every case runs on both backends
// against the ws-echo behaviour, with frames written byte by byte by the test's own client and
// split across TCP writes, and asserts the exact echo or close code.
#include <gtest/gtest.h>

#include "ws_fixture.hpp"

namespace {

using namespace std::chrono_literals;
using test::BackendTest;
using wstest::binary;
using wstest::Client;
using wstest::EchoServer;
using wstest::frame;
using wstest::text;

class WsFraming : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped()) return;
    server_ = std::make_unique<EchoServer>(config());
  }
  void TearDown() override { server_.reset(); }
  EchoServer& server() { return *server_; }

  // Sends bytes (in pieces of `piece` bytes when non-zero) and expects one echoed message.
  void expect_echo(Client& c, const std::string& bytes, uint8_t opcode, const std::string& payload,
                   std::size_t piece = 0) {
    ASSERT_TRUE(c.send(bytes, piece));
    auto m = c.read_message();
    ASSERT_TRUE(m.has_value()) << "no echo";
    EXPECT_EQ(m->opcode, opcode);
    EXPECT_EQ(m->payload.size(), payload.size());
    EXPECT_TRUE(m->payload == payload) << "echoed payload differs";
  }
  // Sends bytes and expects the server to fail the connection with code, then close TCP.
  void expect_fail(Client& c, const std::string& bytes, int code, std::size_t piece = 0) {
    c.send(bytes, piece);
    EXPECT_EQ(c.read_close(), code);
    EXPECT_TRUE(c.closed_by_server()) << "the server closes TCP after failing the connection";
  }

  std::unique_ptr<EchoServer> server_;
};

// ---- 1: framing ----

TEST_P(WsFraming, Case1_TextAndBinaryOfEveryLengthForm) {
  Client c = server().open();
  for (std::size_t n : {0, 1, 125, 126, 127, 128, 65535, 65536, 100000}) {
    std::string payload(n, '*');
    expect_echo(c, text(payload), 0x1, payload);
    std::string bytes = test::random_bytes(n, n + 1);
    expect_echo(c, binary(bytes), 0x2, bytes);
  }
}

TEST_P(WsFraming, Case1_FramesSplitAcrossTcpWrites) {
  Client c = server().open();
  // Byte by byte for small frames: header, key and payload each arrive in pieces.
  expect_echo(c, text("Hello, split world"), 0x1, "Hello, split world", 1);
  std::string bytes = test::random_bytes(300, 9);
  expect_echo(c, binary(bytes), 0x2, bytes, 7);
  // A large frame in 1000-byte writes.
  std::string big = test::random_bytes(70000, 10);
  expect_echo(c, binary(big), 0x2, big, 1000);
}

TEST_P(WsFraming, Case1_ManyFramesInOneWrite) {
  Client c = server().open();
  std::string all;
  for (int i = 0; i < 50; ++i) all += text("message " + std::to_string(i));
  ASSERT_TRUE(c.send(all));
  for (int i = 0; i < 50; ++i) {
    auto m = c.read_message();
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->payload, "message " + std::to_string(i));
  }
  EXPECT_GE(server().stats().zero_copy_in, 50u) << "frames whole in a receive were not copied";
}

TEST_P(WsFraming, Case1_NonMinimalLengthEncodingIsAccepted) {
  Client c = server().open();
  expect_echo(c, frame(0x81, "abc", true, 0x01020304, 3), 0x1, "abc");
  expect_echo(c, frame(0x82, "xyz", true, 0x01020304, 2), 0x2, "xyz");
}

TEST_P(WsFraming, Case1_UnmaskedClientFrameIs1002) {
  Client c = server().open();
  expect_fail(c, frame(0x81, "not masked", false), 1002);
  EXPECT_EQ(server().stats().protocol_errors, 1u);
}

TEST_P(WsFraming, Case1_FirstFrameRightBehindTheHandshake) {
  // The request and the first frame in one write: the HTTP layer hands the rest over.
  test::Socket s = test::Socket::connect_to(server().address());
  std::string request = wstest::request_head() + "\r\n" + text("early bird");
  ASSERT_TRUE(s.send_all(request));
  std::string all;
  std::size_t end = std::string::npos;
  while (end == std::string::npos || all.size() < end + 4 + 12) {
    std::string byte = s.read_n(1, 10s);
    ASSERT_EQ(byte.size(), 1u) << "the response stopped at: " << all;
    all += byte;
    end = all.find("\r\n\r\n");
  }
  EXPECT_EQ(all.compare(0, 12, "HTTP/1.1 101"), 0) << all;
  std::string rest = all.substr(end + 4);
  EXPECT_EQ(rest, std::string("\x81\x0a") + "early bird");
}

// ---- 2: ping / pong ----

TEST_P(WsFraming, Case2_PingsAreAnsweredWithTheirPayload) {
  Client c = server().open();
  for (std::string payload : {std::string(), std::string("Hello, World!"),
                              test::random_bytes(125, 3), std::string("\x00\xff\xfe", 3)}) {
    ASSERT_TRUE(c.send(frame(0x89, payload)));
    auto f = c.read_frame();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->opcode, 0xA);
    EXPECT_TRUE(f->fin);
    EXPECT_EQ(f->payload, payload);
  }
}

TEST_P(WsFraming, Case2_PingSentByteByByte) {
  Client c = server().open();
  ASSERT_TRUE(c.send(frame(0x89, "slow ping"), 1));
  auto f = c.read_frame();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->opcode, 0xA);
  EXPECT_EQ(f->payload, "slow ping");
}

TEST_P(WsFraming, Case2_PingOver125BytesIs1002) {
  Client c = server().open();
  expect_fail(c, frame(0x89, std::string(126, 'p')), 1002);
}

TEST_P(WsFraming, Case2_UnsolicitedPongsAreIgnored) {
  Client c = server().open();
  ASSERT_TRUE(c.send(frame(0x8A, "") + frame(0x8A, "unsolicited")));
  expect_echo(c, text("after pongs"), 0x1, "after pongs");
}

TEST_P(WsFraming, Case2_TenPingsTenPongsInOrder) {
  Client c = server().open();
  std::string all;
  for (int i = 0; i < 10; ++i) all += frame(0x89, "ping " + std::to_string(i));
  ASSERT_TRUE(c.send(all, 5));
  for (int i = 0; i < 10; ++i) {
    auto f = c.read_frame();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->opcode, 0xA);
    EXPECT_EQ(f->payload, "ping " + std::to_string(i));
  }
}

// ---- 3: reserved bits ----

TEST_P(WsFraming, Case3_ReservedBitsAre1002) {
  struct Case {
    uint8_t first;
    const char* what;
  };
  for (Case k :
       {Case{0xC1, "RSV1 text (no extension)"}, Case{0xA1, "RSV2 text"}, Case{0x92, "RSV3 binary"},
        Case{0xF1, "all RSV"}, Case{0xB9, "RSV2+3 ping"}, Case{0xE8, "RSV1+2 close"}}) {
    SCOPED_TRACE(k.what);
    Client c = server().open();
    expect_fail(c, frame(k.first, "reserved"), 1002);
  }
}

TEST_P(WsFraming, Case3_ReservedBitsAfterAValidMessage) {
  // 3.2: the valid message is echoed, then the bad frame fails the connection and the ping
  // behind it is not answered.
  Client c = server().open();
  ASSERT_TRUE(c.send(text("Hello") + frame(0xA1, "bad") + frame(0x89, "")));
  auto m = c.read_message();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->payload, "Hello");
  auto f = c.read_frame();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->opcode, 0x8) << "a close frame, not a pong";
  EXPECT_TRUE(c.closed_by_server());
}

// ---- 4: opcodes ----

TEST_P(WsFraming, Case4_ReservedOpcodesAre1002) {
  for (uint8_t op : {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    SCOPED_TRACE(static_cast<int>(op));
    Client c = server().open();
    expect_fail(c, frame(0x80 | op, op < 8 ? "reserved data" : ""), 1002);
  }
}

TEST_P(WsFraming, Case4_ReservedOpcodeAfterAValidMessage) {
  Client c = server().open();
  ASSERT_TRUE(c.send(text("Hello") + frame(0x85, "x") + frame(0x89, "")));
  auto m = c.read_message();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->payload, "Hello");
  EXPECT_EQ(c.read_close(), 1002);
}

// ---- 5: fragmentation ----

TEST_P(WsFraming, Case5_FragmentedControlFramesAre1002) {
  for (uint8_t first : {0x09, 0x0A, 0x08}) {
    Client c = server().open();
    expect_fail(c, frame(first, "fragment") + frame(0x80, "rest"), 1002);
  }
}

TEST_P(WsFraming, Case5_TextAndBinaryInFragments) {
  Client c = server().open();
  expect_echo(c, frame(0x01, "fragment1") + frame(0x80, "fragment2"), 0x1, "fragment1fragment2");
  expect_echo(c, frame(0x02, "ab") + frame(0x00, "") + frame(0x00, "cd") + frame(0x80, "ef"), 0x2,
              "abcdef");
  // Each fragment in its own write, then byte by byte.
  expect_echo(c, frame(0x01, "one ") + frame(0x00, "two ") + frame(0x80, "three"), 0x1,
              "one two three", 3);
  // Many fragments of a large message.
  std::string big = test::random_bytes(200000, 5), bytes;
  for (std::size_t i = 0; i < big.size(); i += 4096) {
    bool first = i == 0, last = i + 4096 >= big.size();
    bytes += frame((last ? 0x80 : 0x00) | (first ? 0x02 : 0x00), big.substr(i, 4096));
  }
  expect_echo(c, bytes, 0x2, big, 3000);
  EXPECT_TRUE(test::eventually([&] { return server().stats().partial_now == 0; }))
      << "the decoder state goes away with the message";
}

TEST_P(WsFraming, Case5_PingsBetweenFragments) {
  Client c = server().open();
  std::string bytes = frame(0x01, "frag") + frame(0x89, "ping one") + frame(0x00, "men") +
                      frame(0x89, "ping two") + frame(0x80, "ted");
  for (std::size_t piece : {std::size_t{0}, std::size_t{1}, std::size_t{6}}) {
    SCOPED_TRACE(piece);
    ASSERT_TRUE(c.send(bytes, piece));
    auto p1 = c.read_frame();
    ASSERT_TRUE(p1.has_value());
    EXPECT_EQ(p1->opcode, 0xA);
    EXPECT_EQ(p1->payload, "ping one");
    auto p2 = c.read_frame();
    ASSERT_TRUE(p2.has_value());
    EXPECT_EQ(p2->payload, "ping two");
    auto m = c.read_message();
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->payload, "fragmented");
  }
}

TEST_P(WsFraming, Case5_ContinuationWithoutAMessageIs1002) {
  {
    Client c = server().open();
    expect_fail(c, frame(0x80, "fin continuation"), 1002);
  }
  {
    Client c = server().open();
    expect_fail(c, frame(0x00, "continuation") + frame(0x80, "more"), 1002);
  }
  {
    // 5.15: a message completed, then a stray continuation.
    Client c = server().open();
    c.send(frame(0x01, "frag1") + frame(0x80, "frag2") + frame(0x00, "frag3"));
    auto m = c.read_message();
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->payload, "frag1frag2");
    EXPECT_EQ(c.read_close(), 1002);
  }
}

TEST_P(WsFraming, Case5_NewMessageInsideAFragmentedOneIs1002) {
  Client c = server().open();
  expect_fail(c, frame(0x01, "start") + frame(0x81, "interloper"), 1002);
}

// ---- 6: UTF-8 ----

TEST_P(WsFraming, Case6_ValidTextIsEchoed) {
  Client c = server().open();
  for (std::string s :
       {std::string(""), std::string("Hello-\xC2\xB5@\xC3\x9F\xC3\xB6"),
        std::string("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"), std::string("\x00", 1),
        std::string("\x7F"), std::string("\xC2\x80"), std::string("\xDF\xBF"),
        std::string("\xE0\xA0\x80"), std::string("\xED\x9F\xBF"), std::string("\xEE\x80\x80"),
        std::string("\xEF\xBF\xBF"), std::string("\xF0\x90\x80\x80"),
        std::string("\xF4\x8F\xBF\xBF")}) {
    expect_echo(c, text(s), 0x1, s);
  }
}

TEST_P(WsFraming, Case6_ValidTextSplitAtEveryByteAcrossFragments) {
  Client c = server().open();
  const std::string s = "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5 \xF0\x9F\x98\x80";
  for (std::size_t cut = 0; cut <= s.size(); ++cut) {
    expect_echo(c, frame(0x01, s.substr(0, cut)) + frame(0x80, s.substr(cut)), 0x1, s);
  }
}

TEST_P(WsFraming, Case6_InvalidTextIs1007) {
  for (std::string s :
       {std::string("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80"
                    "edited"),
        std::string("\xC0\xAF"), std::string("\xE0\x80\xAF"), std::string("\xF0\x80\x80\xAF"),
        std::string("\xED\xA0\x80"), std::string("\xED\xBF\xBF"), std::string("\xF4\x90\x80\x80"),
        std::string("\xF5\x80\x80\x80"), std::string("\x80"), std::string("\xBF"),
        std::string("\xFE"), std::string("\xFF"), std::string("\xCE"), std::string("ok\xE0\xA0")}) {
    Client c = server().open();
    expect_fail(c, text(s), 1007);
  }
  EXPECT_TRUE(test::eventually([&] { return server().stats().invalid_payload == 14; }));
}

TEST_P(WsFraming, Case6_InvalidTextFailsFastBeforeTheMessageEnds) {
  // 6.4: the bad byte is in the first fragment; the server fails the connection without
  // waiting for the rest of the message, which the client never sends.
  {
    Client c = server().open();
    expect_fail(c, frame(0x01, "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xF4\x90\x80\x80"),
                1007);
  }
  {
    // Inside one frame: the header promises 1000 bytes, the bad byte comes in the first ten.
    Client c = server().open();
    std::string f = frame(0x81, "abc\xED\xA0\x80" + std::string(994, 'x'));
    expect_fail(c, f.substr(0, 8 + 10), 1007);
  }
  {
    // Split across fragments and across TCP writes: ED | A0 80.
    Client c = server().open();
    expect_fail(c, frame(0x01, "\xED") + frame(0x00, "\xA0\x80"), 1007, 3);
  }
}

TEST_P(WsFraming, Case6_TruncatedSequenceAtTheMessageEndIs1007) {
  Client c = server().open();
  expect_fail(c, frame(0x01, "ok") + frame(0x80, "\xF0\x90\x80"), 1007);
}

MYRIAD_CONFORMANCE_SUITE(WsFraming);

}  // namespace
