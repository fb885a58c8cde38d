#include "tcp_front.hpp"

#include <charconv>

namespace push {

namespace {

class TcpReply final : public Reply {
 public:
  TcpReply(myriad::Connection c, bool& failed) : c_(c), failed_(failed) {}
  void line(std::string_view text) override {
    std::string out;
    out.reserve(text.size() + 1);
    out += text;
    out += '\n';
    c_.send(out);
  }
  void frame(const myriad::SharedBuffer& frame) override { c_.send(frame); }
  void fail(std::string_view reason, uint16_t) override {
    line("ERR " + std::string(reason));
    c_.close();
    failed_ = true;
  }

 private:
  myriad::Connection c_;
  bool& failed_;
};

}  // namespace

void TcpFront::goodbye(Server& server, Session& s, std::string_view reason) {
  s.conn.send("BYE " + std::to_string(server.retry_ms()) + " " + std::string(reason) + "\n");
  s.conn.close();
}

void TcpFront::on_open(myriad::Connection c) {
  Figures& fig = server_.figures();
  if (server_.draining()) {
    fig.refused_draining.fetch_add(1, std::memory_order_relaxed);
    c.send("BYE " + std::to_string(server_.retry_ms()) + " draining\n");
    c.close();
    return;
  }
  if (server_.connect_rate().admit({}) != ConnectRate::Verdict::kAdmit) {
    fig.rate_limited_overall.fetch_add(1, std::memory_order_relaxed);
    c.send("BYE " + std::to_string(server_.retry_ms()) + " busy\n");
    c.close();
    return;
  }
  Session* s = server_.open_session(c, Kind::kTcp, loopback_);
  s->transport = Transport::kTcp;
  c.set_user(s);
}

TcpFront::Step TcpFront::command(myriad::Connection c, Session& s, std::string_view data,
                                 std::size_t& used) {
  std::size_t nl = data.substr(0, kMaxLine).find('\n');
  bool failed = false;
  TcpReply reply(c, failed);
  if (nl == std::string_view::npos) {
    if (data.size() >= kMaxLine) {
      server_.figures().protocol_errors[static_cast<unsigned>(Kind::kTcp)].fetch_add(1);
      reply.fail("line too long", 0);
      return Step::kClosed;
    }
    return Step::kNeedMore;
  }
  std::string_view line = data.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  used = nl + 1;
  std::span<const std::byte> payload;
  std::string_view verb = line.substr(0, line.find(' '));
  if (verb == "PUB" || verb == "CMD") {
    // The last word is the payload's length; the command proper is the rest.
    std::size_t sp = line.rfind(' ');
    std::size_t length = 0;
    std::string_view length_text = sp == std::string_view::npos ? "" : line.substr(sp + 1);
    auto [end, ec] =
        std::from_chars(length_text.data(), length_text.data() + length_text.size(), length);
    if (length_text.empty() || ec != std::errc() ||
        end != length_text.data() + length_text.size()) {
      server_.figures().protocol_errors[static_cast<unsigned>(Kind::kTcp)].fetch_add(1);
      reply.fail(verb == "PUB" ? "bad PUB: PUB <topic> <length>" : "bad CMD: CMD <length>", 0);
      return Step::kClosed;
    }
    if (length > server_.options().hub.max_message) {
      server_.figures().protocol_errors[static_cast<unsigned>(Kind::kTcp)].fetch_add(1);
      reply.fail("message too large", 0);
      return Step::kClosed;
    }
    if (data.size() - used < length) return Step::kNeedMore;
    payload = std::as_bytes(std::span(data.data() + used, length));
    used += length;
    line = line.substr(0, sp);
  }
  if (!runner_.run(s, line, payload, reply) || failed) return Step::kClosed;
  return Step::kDone;
}

void TcpFront::on_data(myriad::Connection c, myriad::Chunk data) {
  auto* s = static_cast<Session*>(c.user());
  if (s == nullptr || s->draining) return;  // refused at open, or told to go: input dropped
  // Whole commands are read from the chunk itself; only a partial one is kept, in the spill.
  bool spilled = !c.spill().empty();
  if (spilled) {
    if (!c.spill_append(data.bytes())) return;  // past max_spill: closed, kInputOverflow
    data.release();
  }
  std::string_view all =
      spilled ? std::string_view(reinterpret_cast<const char*>(c.spill().data()), c.spill().size())
              : data.view();
  std::size_t done = 0;
  while (done < all.size()) {
    std::size_t used = 0;
    Step step = command(c, *s, all.substr(done), used);
    if (step == Step::kClosed) return;
    if (step == Step::kNeedMore) break;
    done += used;
  }
  if (spilled) {
    c.spill_consume(done);
  } else if (done < all.size()) {
    c.spill_append(std::as_bytes(std::span(all.data() + done, all.size() - done)));
  }
}

void TcpFront::on_write_watermark(myriad::Connection c, bool above_high) {
  if (!above_high) server_.hub().pubsub().on_writable(c);
}

void TcpFront::on_close(myriad::Connection c, myriad::CloseReason, int) {
  auto* s = static_cast<Session*>(c.user());
  if (s == nullptr) return;
  c.set_user(nullptr);
  server_.close_session(s);
}

}  // namespace push
