#include "http_front.hpp"

#include <charconv>
#include <fstream>
#include <sstream>

namespace push {

namespace http = myriad::http;
namespace sse = myriad::sse;
namespace ws = myriad::ws;

namespace {

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The value of name in an application/x-www-form-urlencoded query, decoded; found says
// whether it was there. A bad escape leaves it undecoded.
std::string query_param(std::string_view query, std::string_view name, bool& found) {
  found = false;
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) != name) continue;
    found = true;
    std::string_view raw = eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    std::string out;
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '+') {
        out += ' ';
      } else if (raw[i] == '%' && i + 2 < raw.size() && hex(raw[i + 1]) >= 0 &&
                 hex(raw[i + 2]) >= 0) {
        out += static_cast<char>(hex(raw[i + 1]) * 16 + hex(raw[i + 2]));
        i += 2;
      } else {
        out += raw[i];
      }
    }
    return out;
  }
  return {};
}

// "%24sys,dev%2F1" -> "$sys,dev/1"; false on a bad escape. Topics are URL-safe as they are,
// but clients may escape them anyway.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size() || hex(in[i + 1]) < 0 || hex(in[i + 2]) < 0) return false;
    out += static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2]));
    i += 2;
  }
  return true;
}

template <class T>
bool parse_number(std::string_view s, T& v) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

std::string_view bearer(const http::Request& req) {
  std::string_view h = req.header("authorization");
  if (h.size() > 7 && http::iequals(h.substr(0, 7), "bearer ")) return h.substr(7);
  return {};
}

// The client's address as a trusted proxy reports it, or empty.
std::string_view source_of(const http::Request& req) {
  std::string_view xff = req.header("x-forwarded-for");
  if (!xff.empty()) {
    xff = xff.substr(0, xff.find(','));
    while (!xff.empty() && xff.front() == ' ') xff.remove_prefix(1);
    while (!xff.empty() && xff.back() == ' ') xff.remove_suffix(1);
    return xff;
  }
  return req.header("x-real-ip");
}

std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

// Replies on a WebSocket: control lines as text messages, frames as they are.
class WsReply final : public Reply {
 public:
  WsReply(Server& server, ws::WebSocket w, Session& s) : server_(server), ws_(w), s_(s) {}
  void line(std::string_view text) override { ws_.send_text(text); }
  void frame(const myriad::SharedBuffer& frame) override { ws_.connection().send(frame); }
  void fail(std::string_view reason, uint16_t code) override {
    // Nothing may follow the close frame: the subscriptions go first.
    server_.hub().unsubscribe_all(s_.conn);
    s_.draining = true;
    ws_.close(code == 0 ? ws::close_code::kPolicyViolation : code, reason);
  }

 private:
  Server& server_;
  ws::WebSocket ws_;
  Session& s_;
};

// Replies on an SSE stream: "OK SUB a 1 2" becomes "event: ok" + "data: SUB a 1 2"; frames as
// they are.
class SseReply final : public Reply {
 public:
  explicit SseReply(Session& s) : s_(s) {}
  void line(std::string_view text) override {
    std::size_t sp = text.find(' ');
    std::string verb(text.substr(0, sp));
    for (char& c : verb) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view rest = sp == std::string_view::npos ? "" : text.substr(sp + 1);
    s_.sse.send(sse::Event{.data = rest, .event = verb});
  }
  void frame(const myriad::SharedBuffer& frame) override { s_.conn.send(frame); }
  void fail(std::string_view reason, uint16_t) override {
    s_.sse.send(sse::Event{.data = reason, .event = "error"});
    s_.sse.close();
  }

 private:
  Session& s_;
};

}  // namespace

// ---- WebSocket ----

WsFront::WsFront(Server& server, ws::Options options)
    : server_(server), runner_(server), ws_(*this, std::move(options)) {}

void WsFront::on_open(ws::WebSocket w) {
  ShardState& st = server_.shard_state(w.connection());
  auto it = st.pending_ws.find(w.connection());
  if (it == st.pending_ws.end()) {
    w.close(ws::close_code::kInternalError, "no session");
    return;
  }
  ShardState::PendingWs pending = std::move(it->second);
  st.pending_ws.erase(it);
  Session* s = server_.open_session(w.connection(), Kind::kWs, pending.publisher);
  s->transport = w.compression() ? Transport::kWsDeflate : Transport::kWs;
  s->grant = std::move(pending.grant);
  w.set_user(s);
  WsReply reply(server_, w, *s);
  for (std::size_t i = 0; i < pending.topics.size(); ++i) {
    if (!runner_.subscribe(*s, pending.topics[i], pending.resumes[i], reply)) return;
  }
}

void WsFront::on_message(ws::WebSocket w, const ws::Message& message) {
  auto* s = static_cast<Session*>(w.user());
  if (s == nullptr || s->draining) return;
  std::string_view all = message.view();
  std::size_t nl = all.find('\n');
  std::string_view line = all.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  std::span<const std::byte> payload;
  if (nl != std::string_view::npos) payload = message.payload.subspan(nl + 1);
  WsReply reply(server_, w, *s);
  if (line.size() > 8192) {
    server_.figures().protocol_errors[static_cast<unsigned>(Kind::kWs)].fetch_add(1);
    reply.fail("command too long", ws::close_code::kPolicyViolation);
    return;
  }
  runner_.run(*s, line, payload, reply);
}

void WsFront::on_write_watermark(ws::WebSocket w, bool above_high) {
  if (!above_high) server_.hub().pubsub().on_writable(w.connection());
}

void WsFront::on_close(ws::WebSocket w, uint16_t, std::string_view) {
  auto* s = static_cast<Session*>(w.user());
  if (s == nullptr) return;
  w.set_user(nullptr);
  server_.close_session(s);
}

void WsFront::goodbye(Server& server, Session& s, std::string_view reason) {
  server.hub().unsubscribe_all(s.conn);
  ws::WebSocket w(s.conn);
  std::string why = "retry " + std::to_string(server.retry_ms()) + " " + std::string(reason);
  w.close(ws::close_code::kServiceRestart, why);
}

// ---- HTTP ----

HttpFront::HttpFront(Server& server, WsFront& ws, bool loopback,
                     std::function<std::string()> metrics)
    : server_(server), ws_(ws), loopback_(loopback), metrics_(std::move(metrics)), runner_(server) {
  const Options& o = server.options();
  http::Options ho;
  ho.heartbeat_interval = o.heartbeat;
  ho.server_name = "myriad-push";
  ho.limits.max_body_bytes = o.hub.max_message;
  http_ = std::make_unique<http::Server>(
      [this](const http::Request& req, http::Response& res) { handle(req, res); }, ho);
  http_->set_upgrade_hook(
      [this](const http::Request& req, http::Response& res) { return upgrade(req, res); });
  if (!o.www_dir.empty()) {
    std::ifstream in(o.www_dir + "/index.html", std::ios::binary);
    if (!in) throw std::invalid_argument("--www " + o.www_dir + ": no index.html there");
    std::ostringstream text;
    text << in.rdbuf();
    page_ = text.str();
  } else {
    page_ = kDashboardHtml;
  }
}

void HttpFront::refuse(http::Response& res, int status, std::string_view why, int64_t retry_ms) {
  if (retry_ms >= 0) res.header("Retry-After", std::to_string((retry_ms + 999) / 1000));
  if (status == 401) res.header("WWW-Authenticate", "Bearer");
  res.send(status, "text/plain", std::string(why) + "\n");
}

void HttpFront::check(const http::Request& req, std::string_view topics, bool sse, Request& out) {
  Figures& fig = server_.figures();
  if (server_.draining()) {
    fig.refused_draining.fetch_add(1, std::memory_order_relaxed);
    out.status = 503;
    out.why = "draining: come back later";
    return;
  }
  std::string_view source = server_.options().trust_proxy ? source_of(req) : std::string_view();
  switch (server_.connect_rate().admit(source)) {
    case ConnectRate::Verdict::kAdmit:
      break;
    case ConnectRate::Verdict::kOverall:
      fig.rate_limited_overall.fetch_add(1, std::memory_order_relaxed);
      out.status = 429;
      out.why = "too many new connections: come back later";
      return;
    case ConnectRate::Verdict::kSource:
      fig.rate_limited_source.fetch_add(1, std::memory_order_relaxed);
      out.status = 429;
      out.why = "too many new connections from " + std::string(source);
      return;
  }
  if (!percent_decode(topics, out.decoded) ||
      !split_topics(out.decoded, out.topics, server_.options().max_topics_per_connection)) {
    fig.subscribe_refused.fetch_add(1, std::memory_order_relaxed);
    out.status = 400;
    out.why = "bad topic list: /<kind>/<topic>[,<topic>...], topics of [A-Za-z0-9._~:/@!$+=-]";
    return;
  }
  std::string_view query = req.query();
  bool found = false;
  std::string since = query_param(query, "since", found);
  bool has_since = found && !since.empty();
  std::string epoch_text = query_param(query, "epoch", found);
  uint64_t epoch = 0;
  out.resumes.assign(out.topics.size(), Resume{});
  std::string last_id;
  if (sse) {
    last_id = std::string(sse::last_event_id(req));
    if (last_id.empty()) last_id = query_param(query, "last_event_id", found);
  }
  if (!last_id.empty()) {
    // The SSE resume token: every topic of the stream resumes after that sequence number.
    uint64_t seq = 0;
    if (!Hub::parse_sse_id(last_id, seq, epoch)) {
      out.status = 400;
      out.why = "bad Last-Event-ID: <topic>/<offset>/<seq>/<epoch>";
      return;
    }
    for (Resume& r : out.resumes) r = Resume{Resume::Kind::kSeq, seq, epoch};
  } else if (has_since) {
    if (!parse_number(epoch_text, epoch)) {
      out.status = 400;
      out.why = "since= needs epoch=<the epoch the offsets are from>";
      return;
    }
    // One offset per topic, in the same order; empty or '-' for "no resume".
    std::string_view list = since;
    for (std::size_t i = 0; i < out.topics.size(); ++i) {
      std::size_t comma = list.find(',');
      std::string_view one = list.substr(0, comma);
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      if (one.empty() || one == "-") continue;
      uint64_t offset = 0;
      if (!parse_number(one, offset)) {
        out.status = 400;
        out.why = "bad since=: one offset per topic, comma-separated";
        return;
      }
      out.resumes[i] = Resume{Resume::Kind::kOffset, offset, epoch};
    }
    if (!list.empty()) {
      out.status = 400;
      out.why = "bad since=: more offsets than topics";
      return;
    }
  }
  const Auth& auth = server_.auth();
  if (auth.subscribe_needs_token()) {
    std::string token(bearer(req));
    if (token.empty()) token = query_param(query, "token", found);
    Grant grant;
    AuthError e = auth.verify(token, unix_now(), grant);
    if (e != AuthError::kNone) {
      fig.auth_failures[static_cast<unsigned>(e)].fetch_add(1, std::memory_order_relaxed);
      out.status = 401;
      out.why = std::string("unauthorized: token ") + to_string(e);
      return;
    }
    for (std::string_view t : out.topics) {
      if (!grant.allows(t)) {
        fig.auth_failures[static_cast<unsigned>(AuthError::kForbidden)].fetch_add(1);
        out.status = 403;
        out.why = "forbidden: the token does not name " + std::string(t);
        return;
      }
    }
    out.grant = std::make_shared<const Grant>(std::move(grant));
  }
  return;
}

http::Upgrade HttpFront::upgrade(const http::Request& req, http::Response& res) {
  std::string_view path = req.path();
  if (path.substr(0, 4) != "/ws/") return http::Upgrade::pass();
  Request r;
  check(req, path.substr(4), false, r);
  if (r.status != 0) {
    res.close();
    refuse(res, r.status, r.why, r.status == 503 || r.status == 429 ? server_.retry_ms() : -1);
    return http::Upgrade::refused();
  }
  http::Upgrade u = ws_.ws().upgrade(req, res);
  if (u.kind() != http::Upgrade::kSwitch) return u;
  ShardState::PendingWs pending;
  for (std::string_view t : r.topics) pending.topics.emplace_back(t);
  pending.resumes = std::move(r.resumes);
  pending.grant = std::move(r.grant);
  pending.publisher = loopback_;
  server_.shard_state(req.connection()).pending_ws[req.connection()] = std::move(pending);
  return u;
}

void HttpFront::handle(const http::Request& req, http::Response& res) {
  std::string_view path = req.path();
  std::string_view method = req.method();
  bool get = method == "GET" || method == "HEAD";
  if (path == "/healthz") {
    if (!get) return refuse(res, 405, "GET /healthz");
    if (server_.draining()) return refuse(res, 503, "draining", server_.retry_ms());
    res.send(200, "text/plain", "ok\n");
    return;
  }
  if (path == "/metrics") {
    if (!get) return refuse(res, 405, "GET /metrics");
    res.send(200, "text/plain; version=0.0.4; charset=utf-8", metrics_());
    return;
  }
  if (path == "/" || path == "/index.html") {
    if (!get) return refuse(res, 405, "GET /");
    res.header("Cache-Control", "no-cache");
    res.send(200, "text/html; charset=utf-8", page_);
    return;
  }
  if (path.substr(0, 9) == "/publish/") {
    if (method != "POST") {
      res.header("Allow", "POST");
      return refuse(res, 405, "POST /publish/<topic> with the message as the body");
    }
    publish(req, res);
    return;
  }
  if (path.substr(0, 5) == "/sse/") {
    if (!get) return refuse(res, 405, "GET /sse/<topics>");
    sse(req, res);
    return;
  }
  if (path == "/favicon.ico") {
    res.status(204).send();
    return;
  }
  if (path.substr(0, 4) == "/ws/") {
    res.header("Upgrade", "websocket");
    return refuse(res, 426, "a WebSocket handshake is needed here");
  }
  refuse(res, 404, "not found: see GET / for the page, docs/PUSH.md for the endpoints");
}

void HttpFront::publish(const http::Request& req, http::Response& res) {
  Figures& fig = server_.figures();
  std::string topic;
  if (!percent_decode(req.path().substr(9), topic)) {
    return refuse(res, 400, "bad topic: a bad %-escape");
  }
  const Auth& auth = server_.auth();
  if (!loopback_ && !auth.publish_secret_matches(bearer(req))) {
    fig.publish_refused_auth.fetch_add(1, std::memory_order_relaxed);
    if (auth.has_publish_secret()) {
      return refuse(res, 401, "unauthorized: Authorization: Bearer <the publish secret>");
    }
    return refuse(res, 403, "forbidden: publishing needs --publish-secret, or a loopback listener");
  }
  if (!topic.empty() && topic.front() == '$') {
    fig.publish_refused_reserved.fetch_add(1, std::memory_order_relaxed);
    return refuse(res, 403, "forbidden: $ topics are the server's");
  }
  std::string_view body = req.body();
  Hub::Published p = server_.hub().publish(topic, body);
  switch (p.status) {
    case Hub::Status::kOk:
      break;
    case Hub::Status::kBadTopic:
      return refuse(res, 400, "bad topic: 1-255 bytes of [A-Za-z0-9._~:/@!$+=-]");
    case Hub::Status::kTooLarge:
      return refuse(res, 413, "message too large");
    case Hub::Status::kTooManyTopics:
    case Hub::Status::kRefused:
      return refuse(res, 507, "too many topics");
  }
  fig.publish_http.fetch_add(1, std::memory_order_relaxed);
  std::string json =
      "{\"topic\":\"" + json_escape(topic) + "\",\"offset\":" + std::to_string(p.offset) +
      ",\"epoch\":" + std::to_string(server_.hub().epoch()) + ",\"seq\":" + std::to_string(p.seq) +
      ",\"subscribers\":" + std::to_string(p.subscribers) + "}\n";
  res.send(200, "application/json", json);
}

void HttpFront::sse(const http::Request& req, http::Response& res) {
  Request r;
  check(req, req.path().substr(5), true, r);
  if (r.status != 0) {
    return refuse(res, r.status, r.why,
                  r.status == 503 || r.status == 429 ? server_.retry_ms() : -1);
  }
  Session* s = server_.open_session(req.connection(), Kind::kSse, loopback_);
  s->transport = Transport::kSse;
  s->grant = std::move(r.grant);
  sse::StreamOptions so;
  so.retry_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(server_.options().sse_retry).count();
  so.heartbeat = true;
  Server* server = &server_;
  so.on_event = [server, s](sse::Stream& stream, http::StreamEvent ev) {
    if (ev == http::StreamEvent::kWritable) {
      server->hub().pubsub().on_writable(stream.connection());
    } else {
      server->close_session(s);
    }
  };
  res.header("Access-Control-Allow-Origin", "*");
  s->sse = sse::start(res, std::move(so));
  if (!s->sse.open()) {
    // HEAD, or the connection went: no kEnded will come for a stream that never opened.
    server_.close_session(s);
    return;
  }
  SseReply reply(*s);
  for (std::size_t i = 0; i < r.topics.size(); ++i) {
    if (!runner_.subscribe(*s, r.topics[i], r.resumes[i], reply)) return;
  }
}

void HttpFront::goodbye(Server& server, Session& s, std::string_view reason) {
  server.hub().unsubscribe_all(s.conn);
  // "retry:" sets the client's reconnection delay; the stream then ends, and the client
  // comes back (with Last-Event-ID) after that long.
  std::string bye = "retry: " + std::to_string(server.retry_ms()) +
                    "\nevent: close\ndata: " + std::string(reason) + "\n\n";
  s.sse.send_encoded(bye);
  s.sse.close();
}

}  // namespace push
