// The subscribe mode's protocol adapters (myriad-load), checked without servers: each parses what
// its server sends however the stream is cut, refuses what breaks its protocol, and writes the
// requests its server expects; the payload check catches any changed byte.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fanout_protocol.hpp"

namespace {

using myriad::load::FanoutEvents;
using myriad::load::FanoutProtocol;
using myriad::load::make_fanout_protocol;

struct Recorder final : FanoutEvents {
  int subscribed_count = 0;
  std::vector<std::string> messages;
  std::string replies;
  void subscribed() override { ++subscribed_count; }
  void message(std::string_view p) override { messages.emplace_back(p); }
  void reply(std::string_view b) override { replies += b; }
};

// Feeds stream in pieces cut at `cuts` (the way receives cut it), keeping the unconsumed rest
// as a connection would. Returns false if the parser called it bad.
bool feed(const FanoutProtocol& p, const std::string& stream, const std::vector<std::size_t>& cuts,
          Recorder& r, bool publisher = false) {
  std::string pending;
  uint8_t state = 0;
  std::size_t from = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(stream.size());
  for (std::size_t to : ends) {
    pending += stream.substr(from, to - from);
    from = to;
    std::size_t used =
        publisher ? p.parse_publisher(pending, state, r) : p.parse_subscriber(pending, state, r);
    if (used == FanoutProtocol::kBad) return false;
    pending.erase(0, used);
  }
  return pending.empty();
}

std::string payload(uint64_t seq, std::size_t size = 64) {
  std::string p(size, '\0');
  myriad::load::make_payload(seq, 1'000'000'000ULL + seq, p.data(), size);
  return p;
}

// Every way of cutting the stream in two, and byte by byte, gives the same events.
void expect_same_under_any_cut(const FanoutProtocol& p, const std::string& stream, int subscribed,
                               const std::vector<std::string>& messages,
                               const std::string& replies = "") {
  std::vector<std::vector<std::size_t>> plans;
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) plans.push_back({cut});
  std::vector<std::size_t> each;
  for (std::size_t i = 1; i < stream.size(); ++i) each.push_back(i);
  plans.push_back(each);
  for (const auto& plan : plans) {
    Recorder r;
    ASSERT_TRUE(feed(p, stream, plan, r)) << p.name() << " refused a good stream";
    ASSERT_EQ(r.subscribed_count, subscribed) << p.name();
    ASSERT_EQ(r.messages, messages) << p.name();
    ASSERT_EQ(r.replies, replies) << p.name();
  }
}

TEST(FanoutPayload, RoundTripsAndAnyChangedByteIsCaught) {
  std::string p = payload(12345, 80);
  uint64_t seq = 0, due = 0;
  ASSERT_TRUE(myriad::load::check_payload(p, 80, seq, due));
  EXPECT_EQ(seq, 12345u);
  EXPECT_EQ(due, 1'000'000'000ULL + 12345);
  for (std::size_t i = 0; i < p.size(); ++i) {
    std::string bad = p;
    bad[i] = bad[i] == 'a' ? 'b' : 'a';
    uint64_t s2 = 0, d2 = 0;
    bool ok = myriad::load::check_payload(bad, 80, s2, d2);
    // A changed digit may still parse, but then it names another message than was sent.
    EXPECT_TRUE(!ok || s2 != seq || d2 != due) << "byte " << i;
  }
  EXPECT_FALSE(myriad::load::check_payload(p.substr(1), 80, seq, due));
}

TEST(FanoutProtocol, Myriad) {
  auto p = make_fanout_protocol("myriad");
  EXPECT_EQ(p->subscribe_request("t"), "SUB t\n");
  std::string out;
  p->publish_request(out, "t", "abc");
  EXPECT_EQ(out, "PUB t 3\nabc");
  std::string a = payload(1), b = payload(2);
  std::string stream = "OK SUB t\nMSG t 1 64\n" + a + "\nPONG\nMSG t 2 64\n" + b + "\n";
  expect_same_under_any_cut(*p, stream, 1, {a, b});
  Recorder r;
  EXPECT_FALSE(feed(*p, "ERR slow consumer\n", {}, r));
  EXPECT_FALSE(feed(*p, "MSG t 1 3\nabcX", {}, r)) << "the body must end in a newline";
}

TEST(FanoutProtocol, Redis) {
  auto p = make_fanout_protocol("redis");
  EXPECT_EQ(p->subscribe_request("t"), "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nt\r\n");
  std::string out;
  p->publish_request(out, "t", "abc");
  EXPECT_EQ(out, "*3\r\n$7\r\nPUBLISH\r\n$1\r\nt\r\n$3\r\nabc\r\n");
  std::string a = payload(7);
  std::string stream =
      "*3\r\n$9\r\nsubscribe\r\n$1\r\nt\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$1\r\nt\r\n$64\r\n" + a +
      "\r\n";
  expect_same_under_any_cut(*p, stream, 1, {a});
  Recorder r;
  EXPECT_FALSE(feed(*p, "-ERR max number of clients reached\r\n", {}, r));
  Recorder pub;
  EXPECT_TRUE(feed(*p, ":10000\r\n:10000\r\n", {3}, pub, true));
  EXPECT_FALSE(feed(*p, "-ERR wrong type\r\n", {}, pub, true));
}

TEST(FanoutProtocol, Nats) {
  auto p = make_fanout_protocol("nats");
  EXPECT_NE(p->subscribe_request("t").find("\r\nSUB t 1\r\nPING\r\n"), std::string::npos);
  std::string out;
  p->publish_request(out, "t", "abc");
  EXPECT_EQ(out, "PUB t 3\r\nabc\r\n");
  std::string a = payload(3), b = payload(4);
  std::string stream =
      "INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\nPONG\r\nMSG t 1 64\r\n" + a +
      "\r\nPING\r\nMSG t 1 reply.to 64\r\n" + b + "\r\n";
  expect_same_under_any_cut(*p, stream, 1, {a, b}, "PONG\r\n");
  Recorder r;
  EXPECT_FALSE(feed(*p, "-ERR 'Slow Consumer'\r\n", {}, r));
  Recorder pub;
  EXPECT_TRUE(feed(*p, "INFO {}\r\nPING\r\n", {5}, pub, true));
  EXPECT_EQ(pub.replies, "PONG\r\n");
}

TEST(FanoutProtocol, NchanWebSocketSubscriberAndHttpPublisher) {
  auto p = make_fanout_protocol("nchan");
  EXPECT_EQ(p->subscribe_request("t").substr(0, 19), "GET /sub/t HTTP/1.1");
  std::string out;
  p->publish_request(out, "t", "abc");
  EXPECT_EQ(out.substr(0, 20), "POST /pub/t HTTP/1.1");
  EXPECT_NE(out.find("Content-Length: 3\r\n\r\nabc"), std::string::npos);
  std::string a = payload(5), b = payload(6, 300);
  std::string stream =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  stream += std::string("\x81") + static_cast<char>(64) + a;
  stream += std::string("\x89\x02hi", 4);            // ping
  stream += std::string("\x82\x7e\x01\x2c", 4) + b;  // 300 bytes, 16-bit length
  std::string pong = std::string("\x8a\x82\0\0\0\0hi", 8);
  expect_same_under_any_cut(*p, stream, 1, {a, b}, pong);
  Recorder r;
  EXPECT_FALSE(feed(*p, "HTTP/1.1 403 Forbidden\r\n\r\n", {}, r));
  Recorder masked;
  EXPECT_FALSE(feed(*p, "HTTP/1.1 101 OK\r\n\r\n\x81\x81" + std::string(5, 'x'), {}, masked))
      << "a server frame must not be masked";
  Recorder pub;
  std::string responses =
      "HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nqueuedHTTP/1.1 201 Created\r\n"
      "Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n";
  responses.erase(responses.find("queued") + 5, 1);  // "queue": exactly 5 body bytes
  EXPECT_TRUE(feed(*p, responses, {10, 60}, pub, true));
  EXPECT_FALSE(feed(*p, "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", {}, pub, true));
}

TEST(FanoutProtocol, UnknownNamesAreRefused) {
  EXPECT_THROW(make_fanout_protocol("mqtt"), std::invalid_argument);
}

}  // namespace
