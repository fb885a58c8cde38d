#include "commands.hpp"

#include <charconv>

namespace push {

namespace {

template <class T>
bool parse_number(std::string_view s, T& v) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

// A topic as it may be echoed back: valid ones as they are, anything else as "-".
std::string_view shown(std::string_view topic) {
  return valid_topic(topic) ? topic : "-";
}

}  // namespace

std::string_view CommandRunner::word(std::string_view& line) {
  std::size_t sp = line.find(' ');
  std::string_view w = line.substr(0, sp);
  line = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
  return w;
}

bool CommandRunner::subscribe(Session& s, std::string_view topic, const Resume& resume,
                              Reply& reply) {
  if (!valid_topic(topic)) {
    server_.figures().subscribe_refused.fetch_add(1, std::memory_order_relaxed);
    reply.line("NO SUB - bad topic");
    return true;
  }
  std::string t(topic);
  switch (server_.may_subscribe(s, topic)) {
    case Server::SubscribeCheck::kOk:
      break;
    case Server::SubscribeCheck::kUnauthorized:
      reply.fail(s.grant ? "unauthorized: token expired" : "unauthorized: token required",
                 kCloseUnauthorized);
      return false;
    case Server::SubscribeCheck::kForbidden:
      reply.line("NO SUB " + t + " forbidden");
      return true;
    case Server::SubscribeCheck::kTooMany:
      reply.line("NO SUB " + t + " too many topics on this connection");
      return true;
    case Server::SubscribeCheck::kDraining:
      server_.figures().refused_draining.fetch_add(1, std::memory_order_relaxed);
      reply.line("NO SUB " + t + " draining");
      return true;
  }
  Hub::Subscribed out;
  server_.subscribe(s, topic, resume, out);
  if (out.status != Hub::Status::kOk) {
    reply.line("NO SUB " + t + " " + Hub::to_string(out.status));
    return true;
  }
  const std::string epoch = std::to_string(server_.hub().epoch());
  reply.line("OK SUB " + t + " " + epoch + " " + std::to_string(out.last));
  if (out.lost != Lost::kNone) {
    reply.line("LOST " + t + " " + epoch + " " + std::to_string(out.first) + " " +
               to_string(out.lost));
  }
  for (const myriad::SharedBuffer& f : out.frames) reply.frame(f);
  return true;
}

bool CommandRunner::run(Session& s, std::string_view line, std::span<const std::byte> payload,
                        Reply& reply) {
  Figures& fig = server_.figures();
  std::string_view rest = line;
  std::string_view verb = word(rest);
  if (verb == "SUB") {
    std::string_view topic = word(rest);
    Resume resume;
    if (!rest.empty()) {
      std::string_view since = word(rest);
      std::string_view epoch = word(rest);
      if (!parse_number(since, resume.value) || !parse_number(epoch, resume.epoch) ||
          !rest.empty()) {
        fig.protocol_errors[static_cast<unsigned>(s.kind)].fetch_add(1);
        reply.fail("bad SUB: SUB <topic> [<since> <epoch>]",
                   myriad::ws::close_code::kPolicyViolation);
        return false;
      }
      resume.kind = Resume::Kind::kOffset;
    }
    return subscribe(s, topic, resume, reply);
  }
  if (verb == "UNSUB") {
    std::string_view topic = word(rest);
    if (!rest.empty() || !valid_topic(topic)) {
      reply.line("NO UNSUB - bad topic");
      return true;
    }
    bool had = server_.unsubscribe(s, topic);
    reply.line((had ? "OK UNSUB " : "NO UNSUB ") + std::string(topic) +
               (had ? "" : " not subscribed"));
    return true;
  }
  if (verb == "PING") {
    reply.line(rest.empty() ? std::string("PONG") : "PONG " + std::string(rest.substr(0, 64)));
    return true;
  }
  if (verb == "AUTH") {
    std::string_view token = word(rest);
    const Auth& auth = server_.auth();
    if (auth.publish_secret_matches(token)) {
      s.publisher = true;
      reply.line("OK AUTH publisher");
      return true;
    }
    if (!auth.subscribe_needs_token()) {
      if (auth.has_publish_secret()) {
        fig.auth_failures[static_cast<unsigned>(AuthError::kSignature)].fetch_add(1);
        reply.fail("unauthorized: not the publish secret", kCloseUnauthorized);
        return false;
      }
      reply.line("OK AUTH - no token needed");
      return true;
    }
    Grant grant;
    AuthError e = auth.verify(token, unix_now(), grant);
    if (e != AuthError::kNone) {
      fig.auth_failures[static_cast<unsigned>(e)].fetch_add(1);
      reply.fail(std::string("unauthorized: token ") + to_string(e), kCloseUnauthorized);
      return false;
    }
    reply.line("OK AUTH " + (grant.subject.empty() ? std::string("-") : grant.subject) + " " +
               std::to_string(grant.expires));
    s.grant = std::make_shared<const Grant>(std::move(grant));
    return true;
  }
  if (verb == "PUB") {
    std::string_view topic = word(rest);
    if (!rest.empty() || topic.empty()) {
      fig.publish_refused_malformed.fetch_add(1);
      reply.line("NO PUB - bad topic");
      return true;
    }
    std::string t(shown(topic));
    if (!s.publisher) {
      fig.publish_refused_auth.fetch_add(1);
      reply.line("NO PUB " + t + " unauthorized: publish on a loopback listener or AUTH first");
      return true;
    }
    if (topic.front() == '$') {
      fig.publish_refused_reserved.fetch_add(1);
      reply.line("NO PUB " + t + " reserved: $ topics are the server's");
      return true;
    }
    Hub::Published p = server_.hub().publish(topic, payload);
    if (p.status != Hub::Status::kOk) {  // counted by the hub
      reply.line("NO PUB " + std::string(shown(topic)) + " " + Hub::to_string(p.status));
      return true;
    }
    (s.kind == Kind::kTcp ? fig.publish_tcp : fig.publish_ws).fetch_add(1);
    reply.line("OK PUB " + t + " " + std::to_string(p.offset) + " " +
               std::to_string(server_.hub().epoch()));
    return true;
  }
  if (verb == "CMD") {
    uint64_t offset = 0;
    if (!server_.forward_command(s, payload, offset)) {
      reply.line("NO CMD - no command topic");
      return true;
    }
    reply.line("OK CMD " + std::to_string(offset));
    return true;
  }
  fig.protocol_errors[static_cast<unsigned>(s.kind)].fetch_add(1);
  reply.fail("unknown command", myriad::ws::close_code::kPolicyViolation);
  return false;
}

}  // namespace push
