// myriad-push end to end, on both backends: one channel model over three transports (a
// python3-websockets subscriber, a curl SSE subscriber and a raw TCP subscriber see the same
// messages with the same offsets), the retained value, resume with no loss or duplicate, the
// explicit "cannot recover" signal, and bad input.
#include <atomic>
#include <random>
#include <thread>

#include "push_support.hpp"

namespace push_test {
namespace {

std::string ws_url(const PushProcess& p, const std::string& path) {
  return "ws://127.0.0.1:" + std::to_string(p.http_port()) + "/ws/" + path;
}
std::string sse_url(const PushProcess& p, const std::string& path) {
  return "http://127.0.0.1:" + std::to_string(p.http_port()) + "/sse/" + path;
}

uint64_t json_field(const std::string& json, const std::string& key) {
  std::size_t at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return 0;
  return std::stoull(json.substr(at + key.size() + 3));
}

TEST_P(PushTest, ThreeTransportsGetTheSameMessagesWithTheSameOffsets) {
  PushProcess push(GetParam());
  // Published before anyone listens: each new subscriber gets it at once (the retained value).
  HttpReply first = publish(push.http_port(), "status/t", "first");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(json_field(first.body, "offset"), 1u);
  EXPECT_EQ(std::to_string(json_field(first.body, "epoch")), push.epoch());

  auto ws = ExternalSubscriber::websocket(ws_url(push, "status/t"));
  auto sse = ExternalSubscriber::sse(sse_url(push, "status/t"));
  TcpClient tcp(push.tcp_address());
  ASSERT_TRUE(tcp.send("SUB status/t\n"));
  EXPECT_EQ(tcp.line(), "OK SUB status/t " + push.epoch() + " 1");
  std::string sub;
  ASSERT_TRUE(ws->wait_line("SUB ", &sub)) << ws->process().out() << ws->process().err();
  EXPECT_EQ(sub, "SUB status/t " + push.epoch() + " 1");
  ASSERT_TRUE(sse->wait_line("SUB ", &sub)) << sse->process().out() << sse->process().err();
  EXPECT_EQ(sub, "SUB status/t " + push.epoch() + " 1");

  std::vector<std::string> payloads = {"plain",
                                       "two\nlines",
                                       "{\"state\":\"ok\",\"load\":0.5}",
                                       "trailing newline\n",
                                       std::string(3000, 'x') + "end",
                                       "",
                                       "unicode: \xc3\xa9\xe2\x82\xac"};
  std::vector<Delivery> expected = {{"status/t", 1, "first"}};
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    HttpReply r = publish(push.http_port(), "status/t", payloads[i]);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json_field(r.body, "offset"), i + 2);
    expected.push_back({"status/t", i + 2, payloads[i]});
  }
  EXPECT_EQ(tcp.deliveries(expected.size()), expected);
  EXPECT_EQ(ws->deliveries(expected.size()), expected);
  EXPECT_EQ(sse->deliveries(expected.size()), expected);

  // Binary payloads (NUL, 0xff, CR) arrive unchanged over WebSocket and TCP. (SSE is text:
  // docs/PUSH.md says what it does to CR and invalid UTF-8.)
  std::string binary("\0\x01\xff\r\n\r\x7f", 7);
  ASSERT_EQ(publish(push.http_port(), "status/t", binary).status, 200);
  Delivery bin{"status/t", expected.size() + 1, binary};
  EXPECT_EQ(tcp.deliveries(1), std::vector<Delivery>{bin});
  EXPECT_EQ(ws->deliveries(1), std::vector<Delivery>{bin});
}

TEST_P(PushTest, RetainedValueGoesToLateSubscribersAtOnce) {
  PushProcess push(GetParam());
  for (int i = 1; i <= 3; ++i) {
    ASSERT_EQ(publish(push.http_port(), "dev/7", "v" + std::to_string(i)).status, 200);
  }
  TcpClient tcp(push.tcp_address());
  ASSERT_TRUE(tcp.send("SUB dev/7\n"));
  EXPECT_EQ(tcp.line(), "OK SUB dev/7 " + push.epoch() + " 3");
  EXPECT_EQ(tcp.deliveries(1), (std::vector<Delivery>{{"dev/7", 3, "v3"}}));
  auto sse = ExternalSubscriber::sse(sse_url(push, "dev/7"));
  EXPECT_EQ(sse->deliveries(1), (std::vector<Delivery>{{"dev/7", 3, "v3"}}));
  // --retain none: no value at subscribe time, only what comes after.
  PushProcess plain(GetParam(), {"--retain", "none"});
  ASSERT_EQ(publish(plain.http_port(), "dev/7", "old").status, 200);
  TcpClient late(plain.tcp_address());
  ASSERT_TRUE(late.send("SUB dev/7\nPING\n"));
  EXPECT_EQ(late.line(), "OK SUB dev/7 " + plain.epoch() + " 1");
  EXPECT_EQ(late.line(), "PONG");
  ASSERT_EQ(publish(plain.http_port(), "dev/7", "new").status, 200);
  EXPECT_EQ(late.deliveries(1), (std::vector<Delivery>{{"dev/7", 2, "new"}}));
}

TEST_P(PushTest, ResumeAfterDisconnectGetsExactlyWhatWasMissed) {
  PushProcess push(GetParam());
  const uint16_t port = push.http_port();
  std::vector<uint64_t> seq(1, 0);  // seq[offset]
  auto pub = [&](int n) {
    HttpReply r = publish(port, "r", "m" + std::to_string(n));
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(json_field(r.body, "offset"), static_cast<uint64_t>(n));
    seq.push_back(json_field(r.body, "seq"));
  };
  for (int i = 1; i <= 3; ++i) pub(i);
  {
    TcpClient tcp(push.tcp_address());
    ASSERT_TRUE(tcp.send("SUB r\n"));
    EXPECT_EQ(tcp.deliveries(1), (std::vector<Delivery>{{"r", 3, "m3"}}));
  }  // gone; it had offset 3
  for (int i = 4; i <= 6; ++i) pub(i);
  TcpClient tcp(push.tcp_address());
  ASSERT_TRUE(tcp.send("SUB r 3 " + push.epoch() + "\n"));
  std::vector<std::string> lines;
  std::vector<Delivery> got = tcp.deliveries(3, 10s, &lines);
  EXPECT_EQ(got, (std::vector<Delivery>{{"r", 4, "m4"}, {"r", 5, "m5"}, {"r", 6, "m6"}}));
  EXPECT_EQ(lines, std::vector<std::string>{"OK SUB r " + push.epoch() + " 6"});  // no LOST

  // WebSocket: since= in the URL. SSE: Last-Event-ID, as EventSource sends it.
  auto ws = ExternalSubscriber::websocket(ws_url(push, "r?since=5&epoch=" + push.epoch()));
  ASSERT_TRUE(ws->wait_subscribed());
  auto sse = ExternalSubscriber::sse(
      sse_url(push, "r"), {"Last-Event-ID: r/4/" + std::to_string(seq[4]) + "/" + push.epoch()});
  ASSERT_TRUE(sse->wait_subscribed());
  pub(7);
  EXPECT_EQ(tcp.deliveries(1), (std::vector<Delivery>{{"r", 7, "m7"}}));
  EXPECT_EQ(ws->deliveries(2), (std::vector<Delivery>{{"r", 6, "m6"}, {"r", 7, "m7"}}));
  EXPECT_EQ(sse->deliveries(3),
            (std::vector<Delivery>{{"r", 5, "m5"}, {"r", 6, "m6"}, {"r", 7, "m7"}}));
  EXPECT_FALSE(ws->wait_line("CTL LOST", nullptr, 200ms));
  EXPECT_FALSE(sse->wait_line("CTL lost", nullptr, 200ms));
  EXPECT_GE(metric(port, "myriad_push_resumes_total{outcome=\"recovered\"}"), 3);
}

TEST_P(PushTest, ResumeWhilePublishingHasNoGapAndNoDuplicate) {
  // A publisher keeps publishing while subscribers keep arriving, each resuming from an
  // offset a little behind: every one must see since+1, since+2, ... to the end, exactly once
  // each, in order, whichever shard it lands on and whatever was in flight there.
  PushProcess push(GetParam());
  constexpr int kMessages = 3000;
  constexpr int kSubscribers = 48;
  TcpClient publisher(push.tcp_address());
  std::atomic<uint64_t> acked{0};
  std::atomic<bool> failed{false};
  std::thread acks([&] {
    for (int i = 0; i < kMessages; ++i) {
      std::string l = publisher.line(30s);
      if (l.rfind("OK PUB x ", 0) != 0) {
        failed = true;
        return;
      }
      acked = std::stoull(l.substr(9));
    }
  });
  std::thread pubs([&] {
    for (int i = 1; i <= kMessages; ++i) {
      std::string m = "m" + std::to_string(i);
      if (!publisher.send("PUB x " + std::to_string(m.size()) + "\n" + m)) return;
      if (i % 50 == 0) std::this_thread::sleep_for(1ms);
    }
  });
  std::vector<std::unique_ptr<TcpClient>> subs;
  std::vector<uint64_t> since;
  std::mt19937 rng(7);
  while (static_cast<int>(subs.size()) < kSubscribers) {
    uint64_t a = acked.load();
    if (a >= static_cast<uint64_t>(kMessages) || failed) break;
    uint64_t s = a > 30 ? a - rng() % 30 : 0;
    auto c = std::make_unique<TcpClient>(push.tcp_address());
    ASSERT_TRUE(c->send("SUB x " + std::to_string(s) + " " + push.epoch() + "\n"));
    subs.push_back(std::move(c));
    since.push_back(s);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 10));
  }
  pubs.join();
  acks.join();
  ASSERT_FALSE(failed);
  ASSERT_GE(subs.size(), 4u) << "the publisher finished before subscribers arrived";
  for (std::size_t k = 0; k < subs.size(); ++k) {
    SCOPED_TRACE("subscriber " + std::to_string(k) + " since " + std::to_string(since[k]));
    std::size_t want = kMessages - since[k];
    std::vector<std::string> lines;
    std::vector<Delivery> got = subs[k]->deliveries(want, 30s, &lines);
    ASSERT_EQ(got.size(), want);
    for (std::size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i].offset, since[k] + 1 + i);
      ASSERT_EQ(got[i].payload, "m" + std::to_string(since[k] + 1 + i));
    }
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0].rfind("OK SUB x ", 0), 0u) << lines[0];
  }
}

TEST_P(PushTest, CannotRecoverIsSaidNeverSilent) {
  PushProcess push(GetParam(), {"--history", "5"});
  const uint16_t port = push.http_port();
  uint64_t seq2 = 0;
  for (int i = 1; i <= 20; ++i) {
    HttpReply r = publish(port, "h", "m" + std::to_string(i));
    ASSERT_EQ(r.status, 200);
    if (i == 2) seq2 = json_field(r.body, "seq");
  }
  const std::string e = push.epoch();
  auto expect_lost = [&](const std::string& command, const std::string& lost) {
    SCOPED_TRACE(command);
    TcpClient c(push.tcp_address());
    ASSERT_TRUE(c.send(command + "\n"));
    EXPECT_EQ(c.line(), "OK SUB h " + e + " 20");
    EXPECT_EQ(c.line(), lost);
    // Then the current value, so a status client knows where things stand.
    EXPECT_EQ(c.deliveries(1), (std::vector<Delivery>{{"h", 20, "m20"}}));
  };
  expect_lost("SUB h 2 " + e, "LOST h " + e + " 16 history");  // 3..15 are gone
  expect_lost("SUB h 10 12345", "LOST h " + e + " 16 epoch");  // another epoch
  expect_lost("SUB h 99 " + e, "LOST h " + e + " 16 ahead");   // never reached
  // Within the history: recovered, no LOST.
  TcpClient ok(push.tcp_address());
  ASSERT_TRUE(ok.send("SUB h 15 " + e + "\n"));
  std::vector<std::string> lines;
  std::vector<Delivery> got = ok.deliveries(5, 10s, &lines);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got.front().offset, 16u);
  EXPECT_EQ(got.back().offset, 20u);
  EXPECT_EQ(lines.size(), 1u);
  // The same signal over WebSocket and SSE.
  auto ws = ExternalSubscriber::websocket(ws_url(push, "h?since=2&epoch=" + e));
  std::string line;
  ASSERT_TRUE(ws->wait_line("CTL LOST", &line));
  EXPECT_EQ(line, "CTL LOST h " + e + " 16 history");
  auto sse = ExternalSubscriber::sse(sse_url(push, "h"),
                                     {"Last-Event-ID: h/2/" + std::to_string(seq2) + "/" + e});
  ASSERT_TRUE(sse->wait_line("CTL lost", &line));
  EXPECT_EQ(line, "CTL lost h " + e + " 16 history");
  auto stale = ExternalSubscriber::sse(sse_url(push, "h"), {"Last-Event-ID: h/2/2/777"});
  ASSERT_TRUE(stale->wait_line("CTL lost", &line));
  EXPECT_EQ(line, "CTL lost h " + e + " 16 epoch");
  EXPECT_EQ(metric(port, "myriad_push_resumes_total{outcome=\"lost_history\"}"), 3);
  EXPECT_EQ(metric(port, "myriad_push_resumes_total{outcome=\"lost_epoch\"}"), 2);
  EXPECT_EQ(metric(port, "myriad_push_resumes_total{outcome=\"lost_ahead\"}"), 1);
}

TEST_P(PushTest, BadInputHasADefinedOutcomeAndACounter) {
  PushProcess push(GetParam(), {"--max-message", "4KiB", "--max-topics-per-connection", "2"});
  const uint16_t port = push.http_port();
  auto fails = [&](const std::string& bytes, const std::string& err) {
    SCOPED_TRACE(bytes.substr(0, 40));
    TcpClient c(push.tcp_address());
    ASSERT_TRUE(c.send(bytes));
    EXPECT_EQ(c.line(), err);
    EXPECT_TRUE(c.closed());
  };
  fails("HELLO\n", "ERR unknown command");
  fails(std::string(9000, 'S'), "ERR line too long");
  fails("PUB t abc\n", "ERR bad PUB: PUB <topic> <length>");
  fails("PUB t 999999\n", "ERR message too large");
  fails("SUB a b c\n", "ERR bad SUB: SUB <topic> [<since> <epoch>]");
  fails("CMD\n", "ERR bad CMD: CMD <length>");
  // Refusals that leave the connection open.
  TcpClient c(push.tcp_address());
  ASSERT_TRUE(c.send("SUB b%d\nSUB a\nSUB b\nSUB c\nUNSUB zz\nPUB $sys 1\nxCMD 2\nhiPING\n"));
  EXPECT_EQ(c.line(), "NO SUB - bad topic");
  EXPECT_EQ(c.line(), "OK SUB a " + push.epoch() + " 0");
  EXPECT_EQ(c.line(), "OK SUB b " + push.epoch() + " 0");
  EXPECT_EQ(c.line(), "NO SUB c too many topics on this connection");
  EXPECT_EQ(c.line(), "NO UNSUB zz not subscribed");
  EXPECT_EQ(c.line(), "NO PUB $sys reserved: $ topics are the server's");
  EXPECT_EQ(c.line(), "NO CMD - no command topic");
  EXPECT_EQ(c.line(), "PONG");

  // HTTP.
  EXPECT_EQ(publish(port, "bad%20topic", "x").status, 400);
  EXPECT_EQ(publish(port, "$sys", "x").status, 403);
  EXPECT_EQ(publish(port, "big", std::string(5000, 'x')).status, 413);
  EXPECT_EQ(http(port, "GET", "/publish/a").status, 405);
  EXPECT_EQ(http(port, "GET", "/nothing").status, 404);
  EXPECT_EQ(http(port, "GET", "/sse/").status, 400);
  EXPECT_EQ(http(port, "GET", "/sse/a,b,c").status, 400);  // more than 2 per connection
  EXPECT_EQ(http(port, "GET", "/sse/a?since=x&epoch=1").status, 400);
  EXPECT_EQ(http(port, "GET", "/sse/a?since=1").status, 400);
  EXPECT_EQ(http(port, "GET", "/sse/a", {}, {"Last-Event-ID: garbage"}).status, 400);
  EXPECT_EQ(http(port, "GET", "/ws/a").status, 426);
  {
    test::Socket raw =
        test::Socket::connect_to(myriad::Address::parse("127.0.0.1:" + std::to_string(port)));
    ASSERT_TRUE(raw.send_all("garbage\r\n\r\n"));
    std::string answer;
    raw.read_to_eof(answer, 10s);
    EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << answer;
  }

  // WebSocket: a malformed command closes with 1008, an unknown topic list is refused.
  auto ws = ExternalSubscriber::websocket(ws_url(push, "a"));
  ASSERT_TRUE(ws->wait_subscribed());
  {
    test::Process p({"/usr/bin/python3", std::string(PUSH_TEST_DIR) + "/ws_subscriber.py",
                     ws_url(push, "a"), "FROB"});
    std::string out;
    for (int i = 0; i < 50 && out.find("CLOSE") == std::string::npos; ++i) {
      out += p.read_line(1s) + "\n";
    }
    EXPECT_NE(out.find("CLOSE 1008 unknown command"), std::string::npos) << out;
  }
  {
    test::Process p({"/usr/bin/python3", std::string(PUSH_TEST_DIR) + "/ws_subscriber.py",
                     ws_url(push, "a,b%20,c")});
    EXPECT_EQ(p.read_line(20s), "REFUSED 400");
  }

  // Nobody else was harmed: the first subscriber still gets messages, the server answers.
  ASSERT_EQ(publish(port, "a", "still here").status, 200);
  EXPECT_EQ(ws->deliveries(1), (std::vector<Delivery>{{"a", 1, "still here"}}));
  EXPECT_EQ(http(port, "GET", "/healthz").status, 200);
  EXPECT_GE(metric(port, "myriad_push_protocol_errors_total{transport=\"tcp\"}"), 6);
  EXPECT_GE(metric(port, "myriad_push_protocol_errors_total{transport=\"ws\"}"), 1);
  EXPECT_GE(metric(port, "myriad_push_publish_refused_total{reason=\"reserved\"}"), 2);
  EXPECT_GE(metric(port, "myriad_push_publish_refused_total{reason=\"bad_topic\"}"), 1);
  EXPECT_GE(metric(port, "myriad_push_subscribe_refused_total"), 3);
  EXPECT_EQ(push.stop(), 0);
}

TEST_P(PushTest, ClientCommandsReachTheCommandTopic) {
  PushProcess push(GetParam(), {"--command-topic", "app/commands"});
  // The application follows its command topic like any other.
  TcpClient app(push.tcp_address());
  ASSERT_TRUE(app.send("SUB app/commands\n"));
  ASSERT_EQ(app.line(), "OK SUB app/commands " + push.epoch() + " 0");
  TcpClient device(push.tcp_address());
  ASSERT_TRUE(device.send("CMD 6\nreboot"));
  EXPECT_EQ(device.line(), "OK CMD 1");
  std::vector<Delivery> got = app.deliveries(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].offset, 1u);
  std::string sender = got[0].payload.substr(0, got[0].payload.find('\n'));
  EXPECT_EQ(sender.rfind("tcp:", 0), 0u) << got[0].payload;
  EXPECT_EQ(got[0].payload.substr(sender.size()), "\nreboot");
  // Over WebSocket: the bytes after the command line's newline.
  test::Process ws({"/usr/bin/python3", std::string(PUSH_TEST_DIR) + "/ws_subscriber.py",
                    "ws://127.0.0.1:" + std::to_string(push.http_port()) + "/ws/x",
                    "CMD\nset mode=eco"});
  std::string line;
  for (int i = 0; i < 10 && line.rfind("CTL OK CMD", 0) != 0; ++i) line = ws.read_line(10s);
  EXPECT_EQ(line, "CTL OK CMD 2");
  got = app.deliveries(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload.substr(got[0].payload.find('\n')), "\nset mode=eco");
  EXPECT_EQ(metric(push.http_port(), "myriad_push_commands_total{outcome=\"forwarded\"}"), 2);
}

MYRIAD_CONFORMANCE_SUITE(PushTest);

}  // namespace
}  // namespace push_test
