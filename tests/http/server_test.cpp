// http::Server and sse over real sockets, on every backend: requests and responses, keep-alive,
// pipelining, bodies, limits and bad input with their statuses and counters, streaming, SSE and
// the upgrade hook.
#include <myriad/http.hpp>
#include <myriad/myriad.hpp>
#include <myriad/sse.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "client.hpp"
#include "http_client.hpp"

namespace {

using namespace std::chrono_literals;
namespace http = myriad::http;
namespace sse = myriad::sse;
using test::BackendTest;
using test::http::Reader;

// A protocol to upgrade to: echoes every byte, and counts its connections' ends.
class EchoProtocol final : public myriad::Handler {
 public:
  void on_open(myriad::Connection c) override {
    ++opened;
    c.set_user(&marker);  // its own per-connection state
  }
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    if (c.user() != &marker) ++wrong_user;
    c.send(std::move(data));
  }
  void on_close(myriad::Connection c, myriad::CloseReason, int) override {
    if (c.user() != &marker) ++wrong_user;
    ++closed;
  }
  int marker = 0;
  std::atomic<int> opened{0}, closed{0}, wrong_user{0};
};

void app(const http::Request& req, http::Response& res) {
  std::string_view path = req.path();
  if (path == "/hello") {
    res.send(200, "text/plain", "hi");
  } else if (path == "/echo") {
    res.header("X-Method", req.method());
    res.send(200, "application/octet-stream", req.body());
  } else if (path == "/close") {
    res.close().send("bye");
  } else if (path == "/throw") {
    throw std::runtime_error("the handler failed");
  } else if (path == "/nothing") {
    res.status(204);  // returns without send(): the server finishes it
  } else if (path == "/stream") {
    http::Stream s = res.content_type("text/plain").stream();
    s.write("a");
    // The rest comes later, from the shard's timers: the streaming form.
    myriad::Shard* shard = myriad::Shard::current();
    shard->after(20ms, [s]() mutable { s.write("b"); });
    shard->after(40ms, [s]() mutable {
      s.write("c");
      s.end();
    });
  } else if (path == "/events") {
    sse::StreamOptions o;
    o.retry_ms = 1500;
    sse::Stream s = sse::start(res, o);
    s.send({.data = "line1\nline2\r\nline3", .event = "greeting", .id = "7"});
    s.send({.data = "last=" + std::string(sse::last_event_id(req))});
  } else {
    res.send(404, "text/plain", "no such thing");
  }
}

http::Options small_options() {
  http::Options o;
  o.limits.max_header_bytes = 1024;
  o.limits.max_headers = 20;
  o.limits.max_body_bytes = 4096;
  o.limits.request_timeout = 500ms;
  o.heartbeat_interval = 100ms;
  return o;
}

class HttpServerTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped()) return;
    http_ = std::make_unique<http::Server>(app, small_options());
    http_->set_upgrade_hook([this](const http::Request& req, http::Response& res) {
      if (req.has_token("upgrade", "echo")) {
        res.header("Upgrade", "echo");
        return http::Upgrade::to(echo_);
      }
      if (req.has_token("upgrade", "nope")) {
        res.status(426).header("Upgrade", "echo").send("use echo");
        return http::Upgrade::refused();
      }
      return http::Upgrade::pass();
    });
    server_ = std::make_unique<test::Server>(config(), *http_);
  }
  void TearDown() override {
    server_.reset();
    http_.reset();
  }
  test::Socket connect() {
    test::Socket s = server_->connect();
    int one = 1;
    ::setsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
  }
  http::Stats stats() const { return http_->stats(); }
  // Sends `request` on a new connection; expects `status` and the connection closed after it.
  void expect_refused(const std::string& request, int status) {
    test::Socket s = connect();
    ASSERT_TRUE(s.send_all(request));
    Reader r(s.fd());
    auto reply = r.next();
    ASSERT_TRUE(reply) << "no answer to: " << request.substr(0, 60);
    EXPECT_EQ(reply->status, status);
    EXPECT_EQ(reply->get("connection"), "close");
    EXPECT_TRUE(s.closed_by_peer());
  }

  EchoProtocol echo_;
  std::unique_ptr<http::Server> http_;
  std::unique_ptr<test::Server> server_;
};

TEST_P(HttpServerTest, AnswersAndKeepsTheConnection) {
  test::Socket s = connect();
  Reader r(s.fd());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(s.send_all(test::http::get("/hello")));
    auto reply = r.next();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->status, 200);
    EXPECT_EQ(reply->body, "hi");
    EXPECT_EQ(reply->get("content-type"), "text/plain");
    EXPECT_EQ(reply->get("content-length"), "2");
    EXPECT_TRUE(reply->has("date"));
    EXPECT_EQ(reply->get("server"), "myriad");
    EXPECT_FALSE(reply->has("connection"));
  }
  EXPECT_EQ(server_->counters().accepted, 1u);
  EXPECT_EQ(stats().requests, 3u);
  // Idle between requests: no partial request, no stream, no buffer held.
  EXPECT_TRUE(test::eventually([&] { return server_->counters().buffers_in_use == 0; }));
  EXPECT_EQ(stats().partial_requests, 0u);
}

TEST_P(HttpServerTest, PipelinedRequestsInOnePacketAreAnsweredInOrder) {
  test::Socket s = connect();
  std::string batch;
  for (int i = 0; i < 8; ++i) {
    batch += "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: " +
             std::to_string(std::to_string(i).size()) + "\r\n\r\n" + std::to_string(i);
  }
  batch += test::http::get("/hello");
  ASSERT_TRUE(s.send_all(batch));
  Reader r(s.fd());
  for (int i = 0; i < 8; ++i) {
    auto reply = r.next();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->body, std::to_string(i));
    EXPECT_EQ(reply->get("x-method"), "POST");
  }
  auto last = r.next();
  ASSERT_TRUE(last);
  EXPECT_EQ(last->body, "hi");
}

TEST_P(HttpServerTest, ARequestSentByteByByteIsReassembled) {
  test::Socket s = connect();
  std::string req = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world";
  ASSERT_TRUE(s.send_all(req.substr(0, 1)));
  // The first byte alone is a partial request: its bytes wait in the spill.
  ASSERT_TRUE(test::eventually([&] { return stats().partial_requests == 1; }));
  for (std::size_t i = 1; i < req.size(); ++i) ASSERT_TRUE(s.send_all(req.substr(i, 1)));
  Reader r(s.fd());
  auto reply = r.next();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->body, "hello world");
  EXPECT_EQ(stats().partial_requests, 0u);
}

TEST_P(HttpServerTest, ChunkedBodiesAreDecoded) {
  test::Socket s = connect();
  ASSERT_TRUE(
      s.send_all("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n1;name=value\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n"));
  Reader r(s.fd());
  auto reply = r.next();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->body, "hello world");
}

TEST_P(HttpServerTest, HeadGetsTheHeadOnly) {
  test::Socket s = connect();
  ASSERT_TRUE(s.send_all("HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n" + test::http::get("/hello")));
  Reader r(s.fd());
  auto head = r.next(true);
  ASSERT_TRUE(head);
  EXPECT_EQ(head->get("content-length"), "2");
  auto get = r.next();  // would be garbled if HEAD's answer had carried the body
  ASSERT_TRUE(get);
  EXPECT_EQ(get->body, "hi");
}

TEST_P(HttpServerTest, ConnectionCloseAndHttp10AreHonoured) {
  {
    test::Socket s = connect();
    ASSERT_TRUE(s.send_all(test::http::get("/hello", "Connection: close\r\n") +
                           test::http::get("/hello")));  // never answered
    std::string all;
    ASSERT_TRUE(s.read_to_eof(all));
    EXPECT_EQ(all.find("HTTP/1.1", 1), std::string::npos) << all;
    EXPECT_NE(all.find("Connection: close\r\n"), std::string::npos);
  }
  {
    test::Socket s = connect();
    ASSERT_TRUE(s.send_all("GET /close HTTP/1.1\r\nHost: t\r\n\r\n"));
    std::string all;
    ASSERT_TRUE(s.read_to_eof(all));
    EXPECT_NE(all.find("\r\n\r\nbye"), std::string::npos);
  }
  {
    test::Socket s = connect();
    ASSERT_TRUE(
        s.send_all("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
                   "GET /hello HTTP/1.0\r\n\r\n"));
    Reader r(s.fd());
    auto first = r.next();
    ASSERT_TRUE(first);
    EXPECT_EQ(first->get("connection"), "keep-alive");
    auto second = r.next();
    ASSERT_TRUE(second);
    EXPECT_EQ(second->get("connection"), "close");
    EXPECT_TRUE(s.closed_by_peer());
  }
}

TEST_P(HttpServerTest, ExpectContinueGetsA100BeforeTheBody) {
  test::Socket s = connect();
  ASSERT_TRUE(
      s.send_all("POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                 "Content-Length: 4\r\n\r\n"));
  Reader r(s.fd());
  auto interim = r.next();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(s.send_all("data"));
  auto reply = r.next();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->body, "data");
  EXPECT_EQ(stats().continues, 1u);
  // Over the limit: refused at once, without 100.
  expect_refused(
      "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
      "Content-Length: 5000\r\n\r\n",
      413);
}

TEST_P(HttpServerTest, EveryBadInputGetsItsStatusAndCounter) {
  test::Socket good = connect();
  expect_refused("GET / HTTP/1.1\r\nHost: t\r\nX: " + std::string(2000, 'a') + "\r\n\r\n", 431);
  std::string many = "GET / HTTP/1.1\r\nHost: t\r\n";
  for (int i = 0; i < 30; ++i) many += "F" + std::to_string(i) + ": v\r\n";
  expect_refused(many + "\r\n", 431);
  expect_refused("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4097\r\n\r\n", 413);
  expect_refused(
      "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
      "1001\r\n",
      413);
  expect_refused(
      "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
      "ffffffffffffffffff\r\n",
      400);
  expect_refused(
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      400);
  expect_refused("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                 400);
  expect_refused("GET / HTTP/1.1\nHost: t\n\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n", 400);
  expect_refused("GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505);
  expect_refused("CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n", 501);
  expect_refused(std::string("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 11), 400);
  http::Stats st = stats();
  EXPECT_EQ(st.header_too_large, 2u);
  EXPECT_EQ(st.body_too_large, 2u);
  EXPECT_EQ(st.bad_request, 6u);
  EXPECT_EQ(st.version_unsupported, 1u);
  EXPECT_EQ(st.not_implemented, 1u);
  EXPECT_EQ(st.requests, 0u);
  // None of it touched the connection that behaves.
  ASSERT_TRUE(good.send_all(test::http::get("/hello")));
  Reader r(good.fd());
  auto reply = r.next();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->body, "hi");
  EXPECT_TRUE(test::eventually([&] { return server_->counters().open == 1; }));
}

TEST_P(HttpServerTest, ASlowClientGets408AndTheOthersAreServed) {
  test::Socket slow = connect();
  test::Socket good = connect();
  std::string req = test::http::get("/hello");
  // One byte every 50 ms: progress does not extend the 500 ms deadline of the request.
  auto start = std::chrono::steady_clock::now();
  std::size_t sent = 0;
  while (sent < req.size() - 1 && std::chrono::steady_clock::now() - start < 10s) {
    if (!slow.send_all(req.substr(sent, 1))) break;
    ++sent;
    if (stats().request_timeout == 1) break;
    ASSERT_TRUE(good.send_all(test::http::get("/hello")));
    Reader g(good.fd());
    auto reply = g.next();
    ASSERT_TRUE(reply);
    ASSERT_EQ(reply->body, "hi");
    std::this_thread::sleep_for(50ms);  // the slowness under test, not a synchronisation
  }
  ASSERT_LT(sent, req.size() - 1) << "the whole request went through without a 408";
  Reader r(slow.fd());
  auto reply = r.next();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 408);
  EXPECT_TRUE(slow.closed_by_peer());
  EXPECT_EQ(stats().request_timeout, 1u);
  EXPECT_TRUE(test::eventually([&] { return stats().partial_requests == 0; }));
}

TEST_P(HttpServerTest, AHandlerThatThrowsGets500AndClose) {
  expect_refused(test::http::get("/throw"), 500);
  EXPECT_EQ(stats().handler_errors, 1u);
  test::Socket s = connect();
  ASSERT_TRUE(s.send_all(test::http::get("/nothing")));
  Reader r(s.fd());
  auto reply = r.next();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 204);
  EXPECT_FALSE(reply->has("content-length"));
}

TEST_P(HttpServerTest, AStreamSendsLaterAndRequestsBehindItWait) {
  test::Socket s = connect();
  ASSERT_TRUE(s.send_all(test::http::get("/stream") + test::http::get("/hello")));
  Reader r(s.fd());
  auto streamed = r.next();
  ASSERT_TRUE(streamed);
  EXPECT_EQ(streamed->get("transfer-encoding"), "chunked");
  EXPECT_EQ(streamed->body, "abc");
  auto after = r.next();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, "hi");
  EXPECT_TRUE(test::eventually([&] { return stats().streams_open == 0; }));
  EXPECT_EQ(stats().streams_opened, 1u);
  // The connection is still good, and holds nothing.
  ASSERT_TRUE(s.send_all(test::http::get("/hello")));
  auto again = r.next();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body, "hi");
}

TEST_P(HttpServerTest, ServerSentEventsArriveFormattedWithHeartbeats) {
  test::Socket s = connect();
  ASSERT_TRUE(s.send_all(test::http::get("/events", "Last-Event-ID: 41\r\n")));
  Reader r(s.fd());
  auto head = r.until("\r\n\r\n");
  ASSERT_TRUE(head);
  *head += "\r\n";
  EXPECT_NE(head->find("HTTP/1.1 200 OK\r\n"), std::string::npos);
  EXPECT_NE(head->find("Content-Type: text/event-stream\r\n"), std::string::npos);
  EXPECT_NE(head->find("Cache-Control: no-cache\r\n"), std::string::npos);
  EXPECT_NE(head->find("Connection: close\r\n"), std::string::npos);
  EXPECT_EQ(head->find("Content-Length"), std::string::npos);
  EXPECT_EQ(head->find("Transfer-Encoding"), std::string::npos);
  std::string expected =
      "retry: 1500\n\n"
      "id: 7\nevent: greeting\ndata: line1\ndata: line2\ndata: line3\n\n"
      "data: last=41\n\n";
  auto events = r.exactly(expected.size());
  ASSERT_TRUE(events);
  EXPECT_EQ(*events, expected);
  // Nothing more is sent: a heartbeat comes after the interval.
  auto beat = r.exactly(sse::kHeartbeat.size());
  ASSERT_TRUE(beat);
  EXPECT_EQ(*beat, sse::kHeartbeat);
  EXPECT_GE(stats().heartbeats, 1u);
  EXPECT_EQ(stats().streams_open, 1u);
  s.reset();  // the client goes away: the stream ends
  EXPECT_TRUE(test::eventually([&] { return stats().streams_open == 0; }));
  EXPECT_TRUE(test::eventually([&] { return server_->counters().open == 0; }));
}

TEST_P(HttpServerTest, TheUpgradeHookHandsTheConnectionOver) {
  test::Socket s = connect();
  // The first bytes of the new protocol ride behind the request, in the same packet.
  ASSERT_TRUE(
      s.send_all("GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n"
                 "\r\nfirst bytes"));
  Reader r(s.fd());
  auto head = r.next(true);
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 101);
  EXPECT_EQ(head->get("upgrade"), "echo");
  EXPECT_EQ(head->get("connection"), "Upgrade");
  auto echoed = r.exactly(11);
  ASSERT_TRUE(echoed);
  EXPECT_EQ(*echoed, "first bytes");
  // Everything later goes to the new handler, bytes that look like HTTP included.
  ASSERT_TRUE(s.send_all(test::http::get("/hello")));
  auto raw = r.exactly(test::http::get("/hello").size());
  ASSERT_TRUE(raw);
  EXPECT_EQ(*raw, test::http::get("/hello"));
  EXPECT_EQ(stats().upgrades, 1u);
  EXPECT_EQ(echo_.opened.load(), 1);
  s.reset();
  EXPECT_TRUE(test::eventually([&] { return echo_.closed.load() == 1; }));
  EXPECT_EQ(echo_.wrong_user.load(), 0);
}

TEST_P(HttpServerTest, TheUpgradeHookMayRefuseOrPass) {
  test::Socket s = connect();
  ASSERT_TRUE(
      s.send_all("GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: nope\r\n"
                 "\r\n" +
                 std::string("GET /hello HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\n"
                             "Upgrade: h2c\r\n\r\n")));
  Reader r(s.fd());
  auto refused = r.next();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 426);
  EXPECT_EQ(refused->body, "use echo");
  auto passed = r.next();
  ASSERT_TRUE(passed);
  EXPECT_EQ(passed->status, 200);
  EXPECT_EQ(passed->body, "hi");
  EXPECT_EQ(stats().upgrades_refused, 1u);
  EXPECT_EQ(stats().upgrades, 0u);
}

TEST_P(HttpServerTest, ThePeerClosingMidRequestIsCounted) {
  test::Socket s = connect();
  ASSERT_TRUE(s.send_all("GET /hello HTTP/1.1\r\nHo"));
  ASSERT_TRUE(test::eventually([&] { return stats().partial_requests == 1; }));
  s.shutdown_write();
  EXPECT_TRUE(s.closed_by_peer());
  EXPECT_TRUE(test::eventually([&] { return stats().incomplete_at_close == 1; }));
  EXPECT_EQ(stats().partial_requests, 0u);
}

MYRIAD_CONFORMANCE_SUITE(HttpServerTest);

}  // namespace
