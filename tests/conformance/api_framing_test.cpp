// The framing helpers (framing.hpp) on every backend: frames whole and split across receives
// at every byte, the spill buffer gone once a frame completes, and oversize frames closing the
// connection with kInputOverflow.
#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "client.hpp"

namespace {

using namespace std::chrono_literals;
using myriad::CloseReason;
using myriad::FrameStatus;
using test::BackendTest;

// Answers each frame with "<size>:<frame>\n" and records what the framer left behind.
template <class Framer>
class Framed final : public myriad::Handler {
 public:
  explicit Framed(Framer f, int stop_after = -1) : framer(std::move(f)), stop_after_(stop_after) {}
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    FrameStatus status = framer.feed(c, data, [&](std::string_view frame) {
      c.send(std::to_string(frame.size()) + ":" + std::string(frame) + "\n");
      return ++frames != stop_after_;
    });
    last_status = static_cast<int>(status);
    // After a feed the spill holds exactly the incomplete frame (none: no buffer at all).
    if (status == FrameStatus::kOk) spill_after = static_cast<long>(c.spill().size());
    ++receives;
  }
  void on_close(myriad::Connection, CloseReason reason, int) override {
    last_reason = static_cast<int>(reason);
    ++closed;
  }
  Framer framer;
  std::atomic<int> frames{0};
  std::atomic<int> receives{0};
  std::atomic<int> closed{0};
  std::atomic<int> last_status{-1};
  std::atomic<long> spill_after{-1};
  std::atomic<int> last_reason{-1};

 private:
  int stop_after_;
};

// Sends each piece as its own receive: waits until the server has handled one before the next.
template <class H>
void send_pieces(test::Socket& s, H& handler, const std::vector<std::string>& pieces) {
  for (const auto& piece : pieces) {
    int before = handler.receives.load();
    ASSERT_TRUE(s.send_all(piece));
    ASSERT_TRUE(test::eventually([&] { return handler.receives.load() > before; }));
  }
}

std::string prefixed(std::string_view payload, std::size_t prefix = 4) {
  std::string out(prefix, '\0');
  uint64_t n = payload.size();
  for (std::size_t i = prefix; i-- > 0;) {
    out[i] = static_cast<char>(n & 0xff);
    n >>= 8;
  }
  return out + std::string(payload);
}

class FramingTest : public BackendTest {};

TEST_P(FramingTest, LinesWholeAndManyInOneReceive) {
  Framed handler(myriad::DelimitedFramer::lines());
  test::Server server(config(), handler);
  test::Socket s = server.connect();
  ASSERT_TRUE(s.send_all("one\ntwo\r\n\nthree\n"));
  EXPECT_EQ(s.read_n(23), "3:one\n3:two\n0:\n5:three\n");
  ASSERT_TRUE(test::eventually([&] { return handler.frames.load() == 4; }));
  EXPECT_EQ(handler.spill_after.load(), 0) << "nothing pending, no spill buffer";
}

TEST_P(FramingTest, ALineSplitAcrossReceivesAtEveryByte) {
  Framed handler(myriad::DelimitedFramer::lines());
  test::Server server(config(), handler);
  const std::string line = "SUB weather/paris\r\nPUB x y\n";
  const std::string want = "17:SUB weather/paris\n7:PUB x y\n";
  for (std::size_t cut = 1; cut < line.size(); ++cut) {
    test::Socket s = server.connect();
    send_pieces(s, handler, {line.substr(0, cut), line.substr(cut)});
    ASSERT_EQ(s.read_n(want.size()), want) << "cut at " << cut;
    EXPECT_EQ(handler.spill_after.load(), 0) << "cut at " << cut;
  }
}

TEST_P(FramingTest, AMultiByteDelimiterStraddlingTwoReceives) {
  Framed handler(myriad::DelimitedFramer("\r\n\r\n"));
  test::Server server(config(), handler);
  const std::string text = "GET /\r\n\r\nHost: x\r\n\r\n";
  const std::string want = "5:GET /\n7:Host: x\n";
  for (std::size_t cut = 1; cut < text.size(); ++cut) {
    test::Socket s = server.connect();
    send_pieces(s, handler, {text.substr(0, cut), text.substr(cut)});
    ASSERT_EQ(s.read_n(want.size()), want) << "cut at " << cut;
  }
  // A frame byte by byte: the spill holds what came so far, then nothing.
  test::Socket s = server.connect();
  std::vector<std::string> bytes;
  for (char ch : std::string("abc\r\n\r\n")) bytes.emplace_back(1, ch);
  send_pieces(s, handler, bytes);
  EXPECT_EQ(s.read_n(6), "3:abc\n");
  EXPECT_EQ(handler.spill_after.load(), 0);
}

TEST_P(FramingTest, AnOversizeLineClosesWithInputOverflow) {
  myriad::Config cfg = config();
  for (int variant = 0; variant < 3; ++variant) {
    Framed handler(myriad::DelimitedFramer::lines(100));
    test::Server server(cfg, handler);
    test::Socket s = server.connect();
    if (variant == 0) {
      ASSERT_TRUE(s.send_all(std::string(101, 'x') + "\n"));  // whole, one byte too long
    } else if (variant == 1) {
      ASSERT_TRUE(s.send_all(std::string(5000, 'x')));  // no end in sight
    } else {
      send_pieces(s, handler, {std::string(60, 'x'), std::string(60, 'x') + "\n"});
    }
    EXPECT_TRUE(s.closed_by_peer()) << "variant " << variant;
    ASSERT_TRUE(test::eventually([&] { return handler.closed.load() == 1; }));
    EXPECT_EQ(handler.last_reason.load(), static_cast<int>(CloseReason::kInputOverflow));
    EXPECT_EQ(handler.last_status.load(), static_cast<int>(FrameStatus::kOversize));
    EXPECT_EQ(handler.frames.load(), 0);
    EXPECT_EQ(server.counters().closed_input_overflow, 1u);
  }
}

TEST_P(FramingTest, ALineOfExactlyTheLimitPassesWithOrWithoutCR) {
  Framed handler(myriad::DelimitedFramer::lines(100));
  test::Server server(config(), handler);
  test::Socket s = server.connect();
  std::string line(100, 'y');
  ASSERT_TRUE(s.send_all(line + "\r\n" + line + "\n"));
  std::string want = "100:" + line + "\n";
  EXPECT_EQ(s.read_n(2 * want.size()), want + want);
}

TEST_P(FramingTest, ReturningFalseStopsTheRest) {
  Framed handler(myriad::DelimitedFramer::lines(), 2);
  test::Server server(config(), handler);
  test::Socket s = server.connect();
  ASSERT_TRUE(s.send_all("a\nb\nc\nd\n"));
  EXPECT_EQ(s.read_n(8), "1:a\n1:b\n");
  ASSERT_TRUE(test::eventually([&] { return handler.receives.load() >= 1; }));
  EXPECT_EQ(handler.frames.load(), 2);
  EXPECT_EQ(handler.last_status.load(), static_cast<int>(FrameStatus::kStopped));
}

TEST_P(FramingTest, LengthPrefixedWholeSplitAndEmpty) {
  Framed handler(myriad::LengthPrefixedFramer(4, 1 << 16));
  test::Server server(config(), handler);
  const std::string stream = prefixed("hello") + prefixed("") + prefixed("world!");
  const std::string want = "5:hello\n0:\n6:world!\n";
  {
    test::Socket s = server.connect();
    ASSERT_TRUE(s.send_all(stream));
    EXPECT_EQ(s.read_n(want.size()), want);
  }
  for (std::size_t cut = 1; cut < stream.size(); ++cut) {
    test::Socket s = server.connect();
    send_pieces(s, handler, {stream.substr(0, cut), stream.substr(cut)});
    ASSERT_EQ(s.read_n(want.size()), want) << "cut at " << cut;
    EXPECT_EQ(handler.spill_after.load(), 0) << "cut at " << cut;
  }
}

TEST_P(FramingTest, ALargeLengthPrefixedFrameOverManyReceives) {
  Framed handler(myriad::LengthPrefixedFramer(4, 1 << 20));
  test::Server server(config(), handler);
  test::Socket s = server.connect();
  std::string payload = test::random_bytes(700'000, 9);
  for (char& ch : payload) {
    if (ch == '\n') ch = ' ';
  }
  ASSERT_TRUE(s.send_all(prefixed(payload)));
  std::string want = std::to_string(payload.size()) + ":" + payload + "\n";
  std::string got = s.read_n(want.size(), 30s);
  EXPECT_TRUE(got == want) << "got " << got.size() << " bytes";
  EXPECT_GT(handler.receives.load(), 1) << "the frame came in one receive: nothing was split";
  EXPECT_EQ(handler.spill_after.load(), 0);
}

TEST_P(FramingTest, AnOversizeLengthPrefixClosesAtOnce) {
  Framed handler(myriad::LengthPrefixedFramer(2, 1000));
  test::Server server(config(), handler);
  test::Socket s = server.connect();
  // The prefix alone says 1001: the server does not wait for the payload.
  ASSERT_TRUE(s.send_all(std::string("\x03\xe9", 2)));
  EXPECT_TRUE(s.closed_by_peer());
  ASSERT_TRUE(test::eventually([&] { return handler.closed.load() == 1; }));
  EXPECT_EQ(handler.last_reason.load(), static_cast<int>(CloseReason::kInputOverflow));
  EXPECT_EQ(handler.last_status.load(), static_cast<int>(FrameStatus::kOversize));
}

TEST_P(FramingTest, AFrameSplitPastMaxSpillClosesWithInputOverflow) {
  myriad::Config cfg = config();
  cfg.max_spill = 4096;
  Framed handler(myriad::LengthPrefixedFramer(4, 1 << 20));  // allows more than the spill holds
  test::Server server(cfg, handler);
  test::Socket s = server.connect();
  send_pieces(s, handler, {prefixed(std::string(10'000, 'z')).substr(0, 3000)});
  ASSERT_TRUE(s.send_all(std::string(3000, 'z')));
  EXPECT_TRUE(s.closed_by_peer());
  ASSERT_TRUE(test::eventually([&] { return handler.closed.load() == 1; }));
  EXPECT_EQ(handler.last_reason.load(), static_cast<int>(CloseReason::kInputOverflow));
}

// The server side of a length-prefixed protocol: replies framed with send() and encode().
class Replier final : public myriad::Handler {
 public:
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    framer.feed(c, data, [&](std::string_view request) {
      framer.send(c, "re:" + std::string(request));
      c.send(framer.encode(std::string(request.size() * 1000, 'L')));  // a large shared frame
    });
  }
  myriad::LengthPrefixedFramer framer{4, 1 << 20};
};

TEST_P(FramingTest, RepliesFramedBySendAndEncode) {
  Replier handler;
  test::Server server(config(), handler);
  test::Socket s = server.connect();
  ASSERT_TRUE(s.send_all(prefixed("abc")));
  std::string want = prefixed("re:abc") + prefixed(std::string(3000, 'L'));
  EXPECT_EQ(s.read_n(want.size()), want);
  EXPECT_FALSE(handler.framer.send(myriad::Connection(), "x")) << "an invalid handle sends nothing";
}

TEST(Framing, SettingsAreChecked) {
  EXPECT_THROW(myriad::DelimitedFramer(""), std::invalid_argument);
  EXPECT_THROW(myriad::DelimitedFramer(std::string(17, ';')), std::invalid_argument);
  EXPECT_THROW(myriad::LengthPrefixedFramer(3), std::invalid_argument);
  EXPECT_THROW(myriad::LengthPrefixedFramer(1, 256), std::invalid_argument);
  EXPECT_NO_THROW(myriad::LengthPrefixedFramer(1, 255));
  myriad::LengthPrefixedFramer framer(2, 1000);
  std::byte out[2];
  framer.write_prefix(0x0102, out);
  EXPECT_EQ(out[0], std::byte{1});
  EXPECT_EQ(out[1], std::byte{2});
  EXPECT_EQ(framer.encode("hi").view(), std::string_view("\0\2hi", 4));
  EXPECT_STREQ(myriad::to_string(FrameStatus::kOversize), "oversize");
}

MYRIAD_CONFORMANCE_SUITE(FramingTest);

}  // namespace
