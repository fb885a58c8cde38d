// Authentication and connection limits, on both backends: subscribe tokens (JWT HS256 naming
// topics and prefixes, with exp) accepted, refused and expired over WebSocket, SSE and TCP;
// the publish secret or a loopback listener for publishing; the connection rate limits
// overall and per source. Every refusal has a clear status or close code and is counted.
#include <chrono>

#include "push_support.hpp"

namespace push_test {
namespace {

constexpr const char* kSecret = "test-subscribe-secret";

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string token(const std::string& topics_json, int64_t exp,
                  const std::string& secret = kSecret) {
  return make_token(secret, "{\"sub\":\"alice\",\"exp\":" + std::to_string(exp) +
                                ",\"topics\":" + topics_json + "}");
}

// base64url of text, for a hand-made token that claims "alg": "none".
std::string b64url(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  int val = 0, bits = -6;
  for (unsigned char c : in) {
    val = (val << 8) + c;
    bits += 8;
    while (bits >= 0) {
      out += t[(val >> bits) & 0x3f];
      bits -= 6;
    }
  }
  if (bits > -6) out += t[((val << 8) >> (bits + 8)) & 0x3f];
  return out;
}

std::string python_line(const std::string& url, const std::vector<std::string>& commands,
                        const std::string& prefix) {
  std::vector<std::string> argv = {"/usr/bin/python3",
                                   std::string(PUSH_TEST_DIR) + "/ws_subscriber.py", url};
  argv.insert(argv.end(), commands.begin(), commands.end());
  test::Process p(argv);
  for (int i = 0; i < 20; ++i) {
    std::string l = p.read_line(10s);
    if (l.empty()) break;
    if (l.rfind(prefix, 0) == 0) return l;
  }
  return "(none) " + p.out() + p.err();
}

TEST_P(PushTest, SubscribeTokensAcceptedRefusedAndExpired) {
  PushProcess push(GetParam(), {"--subscribe-secret", kSecret});
  const uint16_t port = push.http_port();
  const std::string good = token("[\"a\",\"dev/*\"]", now_s() + 3600);
  const std::string expired = token("[\"a\"]", now_s() - 10);
  const std::string other = token("[\"a\"]", now_s() + 3600, "another-secret");
  const std::string none =
      b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}") + "." +
      b64url("{\"exp\":" + std::to_string(now_s() + 3600) + ",\"topics\":[\"*\"]}") + ".";
  auto ws = [&](const std::string& path) {
    return "ws://127.0.0.1:" + std::to_string(port) + "/ws/" + path;
  };
  // WebSocket: refused before the upgrade, with the status saying why.
  EXPECT_EQ(python_line(ws("a"), {}, "REFUSED"), "REFUSED 401");
  EXPECT_EQ(python_line(ws("a?token=garbage"), {}, "REFUSED"), "REFUSED 401");
  EXPECT_EQ(python_line(ws("a?token=" + other), {}, "REFUSED"), "REFUSED 401");
  EXPECT_EQ(python_line(ws("a?token=" + expired), {}, "REFUSED"), "REFUSED 401");
  EXPECT_EQ(python_line(ws("a?token=" + none), {}, "REFUSED"), "REFUSED 401");
  EXPECT_EQ(python_line(ws("b?token=" + good), {}, "REFUSED"), "REFUSED 403");
  HttpReply unauthorized = http_head(port, "GET", "/ws/a", websocket_headers());
  EXPECT_EQ(unauthorized.status, 401);
  EXPECT_EQ(unauthorized.header("WWW-Authenticate"), "Bearer");
  // Accepted: the token's topics and prefixes, nothing else.
  auto sub = ExternalSubscriber::websocket(ws("a?token=" + good));
  ASSERT_TRUE(sub->wait_subscribed());
  EXPECT_EQ(python_line(ws("a?token=" + good), {"SUB b", "SUB dev/7"}, "CTL NO"),
            "CTL NO SUB b forbidden");
  EXPECT_EQ(python_line(ws("a?token=" + good), {"SUB dev/7"}, "SUB dev/7"),
            "SUB dev/7 " + push.epoch() + " 0");
  // SSE: the token as a bearer header or in the URL.
  EXPECT_EQ(http_head(port, "GET", "/sse/a").status, 401);
  EXPECT_EQ(http_head(port, "GET", "/sse/a", {"Authorization: Bearer " + expired}).status, 401);
  EXPECT_EQ(http_head(port, "GET", "/sse/a", {"Authorization: Bearer " + good}).status, 200);
  EXPECT_EQ(http_head(port, "GET", "/sse/dev/1?token=" + good).status, 200);
  EXPECT_EQ(http_head(port, "GET", "/sse/zz?token=" + good).status, 403);
  // TCP: AUTH first.
  {
    TcpClient c(push.tcp_address());
    ASSERT_TRUE(c.send("SUB a\n"));
    EXPECT_EQ(c.line(), "ERR unauthorized: token required");
    EXPECT_TRUE(c.closed());
  }
  for (const auto& [t, why] :
       std::vector<std::pair<std::string, std::string>>{{"garbage", "malformed"},
                                                        {other, "signature"},
                                                        {expired, "expired"},
                                                        {none, "algorithm"}}) {
    TcpClient c(push.tcp_address());
    ASSERT_TRUE(c.send("AUTH " + t + "\n"));
    EXPECT_EQ(c.line(), "ERR unauthorized: token " + why);
    EXPECT_TRUE(c.closed());
  }
  TcpClient c(push.tcp_address());
  ASSERT_TRUE(c.send("AUTH " + good + "\nSUB a\nSUB b\nSUB dev/x\n"));
  EXPECT_EQ(c.line().rfind("OK AUTH alice ", 0), 0u);
  EXPECT_EQ(c.line(), "OK SUB a " + push.epoch() + " 0");
  EXPECT_EQ(c.line(), "NO SUB b forbidden");
  EXPECT_EQ(c.line(), "OK SUB dev/x " + push.epoch() + " 0");
  // Every refusal counted by its reason.
  auto failures = [&](const char* reason) {
    return metric(port, std::string("myriad_push_auth_failures_total{reason=\"") + reason + "\"}");
  };
  EXPECT_GE(failures("missing"), 3);
  EXPECT_GE(failures("malformed"), 2);
  EXPECT_GE(failures("signature"), 2);
  EXPECT_GE(failures("expired"), 3);
  EXPECT_GE(failures("algorithm"), 2);
  EXPECT_GE(failures("forbidden"), 4);
  // Publishing is another matter (a loopback listener here): open.
  EXPECT_EQ(publish(port, "a", "x").status, 200);
  EXPECT_EQ(sub->deliveries(1), (std::vector<Delivery>{{"a", 1, "x"}}));
}

TEST_P(PushTest, PublishingNeedsTheSecretOffLoopback) {
  // 0.0.0.0 is not a loopback listener: publishing needs the secret there.
  PushProcess push(GetParam(), {"--listen", "0.0.0.0:0", "--tcp-listen", "0.0.0.0:0",
                                "--publish-secret", "pub-secret"});
  const uint16_t port = push.http_port();
  HttpReply none = publish(port, "a", "x");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.header("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(publish(port, "a", "x", {"Authorization: Bearer wrong"}).status, 401);
  EXPECT_EQ(publish(port, "a", "x", {"Authorization: Bearer pub-secret"}).status, 200);
  TcpClient c(push.tcp_address());
  ASSERT_TRUE(c.send("PUB a 1\nx"));
  EXPECT_EQ(c.line(), "NO PUB a unauthorized: publish on a loopback listener or AUTH first");
  ASSERT_TRUE(c.send("AUTH pub-secret\nPUB a 1\ny"));
  EXPECT_EQ(c.line(), "OK AUTH publisher");
  EXPECT_EQ(c.line(), "OK PUB a 2 " + push.epoch());
  EXPECT_EQ(metric(port, "myriad_push_publish_refused_total{reason=\"unauthorized\"}"), 3);
  // Without a secret, a public listener does not publish at all.
  PushProcess open(GetParam(), {"--listen", "0.0.0.0:0"});
  EXPECT_EQ(publish(open.http_port(), "a", "x").status, 403);
}

TEST_P(PushTest, ConnectionRateLimitsOverallAndPerSource) {
  {
    // One new connection a second (a bucket of one): a burst of 30 is mostly refused.
    PushProcess push(GetParam(), {"--connect-rate", "1"});
    int admitted = 0, refused = 0;
    std::vector<std::unique_ptr<TcpClient>> clients;
    for (int i = 0; i < 30; ++i) {
      clients.push_back(std::make_unique<TcpClient>(push.tcp_address()));
      ASSERT_TRUE(clients.back()->send("PING\n"));
    }
    for (auto& c : clients) {
      std::string l = c->line();
      if (l == "PONG") {
        ++admitted;
      } else if (l.rfind("BYE ", 0) == 0 && l.substr(l.rfind(' ')) == " busy") {
        ++refused;
        EXPECT_TRUE(c->closed());
      } else {
        ADD_FAILURE() << "unexpected: " << l;
      }
    }
    EXPECT_GE(admitted, 1);
    EXPECT_GE(refused, 1);
    EXPECT_EQ(admitted + refused, 30);
    EXPECT_EQ(metric(push.http_port(), "myriad_push_rate_limited_total{scope=\"overall\"}"),
              refused);
  }
  {
    // Per source, as a trusted proxy reports it: one source's storm does not shut others out.
    PushProcess push(GetParam(), {"--trust-proxy", "--connect-rate-per-source", "1"});
    int limited = 0;
    for (int i = 0; i < 10; ++i) {
      HttpReply r = http_head(push.http_port(), "GET", "/sse/a", {"X-Forwarded-For: 10.1.1.1"});
      if (r.status == 429) {
        ++limited;
        EXPECT_FALSE(r.header("Retry-After").empty());
      } else {
        EXPECT_EQ(r.status, 200);
      }
    }
    EXPECT_GE(limited, 1);
    EXPECT_EQ(http_head(push.http_port(), "GET", "/sse/a", {"X-Forwarded-For: 10.2.2.2"}).status,
              200);
    EXPECT_EQ(metric(push.http_port(), "myriad_push_rate_limited_total{scope=\"source\"}"),
              limited);
  }
}

}  // namespace
}  // namespace push_test
