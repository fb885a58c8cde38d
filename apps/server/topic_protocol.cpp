#include "topic_protocol.hpp"

#include <charconv>
#include <stdexcept>
#include <string>

namespace server {

bool TopicOptions::parse(std::string_view arg, const std::function<std::string_view()>& value) {
  if (arg == "--topic-policy") {
    pubsub.policy = myriad::parse_overflow_policy(value());
  } else if (arg == "--max-queued") {
    pubsub.max_queued = myriad::parse_size(value());
  } else if (arg == "--max-held") {
    pubsub.max_held = myriad::parse_size(value());
  } else if (arg == "--max-message") {
    max_message = myriad::parse_size(value());
    if (max_message == 0) throw std::invalid_argument("--max-message must be positive");
  } else {
    return false;
  }
  return true;
}

const char* TopicOptions::usage() {
  return R"(topics protocol (--protocol topics; see docs/PUBSUB.md):
  --topic-policy close|drop|latest  what a subscriber above --max-queued gets (default drop)
  --max-queued SIZE         bytes queued on a subscriber before its policy applies (default 256KiB)
  --max-held SIZE           drop: bytes held back per slow subscriber (default 256KiB)
  --max-message SIZE        largest PUB payload (default 1MiB)
)";
}

void TopicProtocol::attach(myriad::PubSub& pubsub) {
  pubsub_ = &pubsub;
  line_ = pubsub.add_encoding(myriad::line_encoding());
}

namespace {
bool valid_topic(std::string_view t) {
  if (t.empty() || t.size() > myriad::PubSub::kMaxTopicLength) return false;
  for (char ch : t) {
    if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f) return false;
  }
  return true;
}

// Splits off the first space-separated word of line.
std::string_view word(std::string_view& line) {
  std::size_t sp = line.find(' ');
  std::string_view w = line.substr(0, sp);
  line = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
  return w;
}
}  // namespace

void TopicProtocol::fail(myriad::Connection c, std::string_view reason) {
  errors_.fetch_add(1, std::memory_order_relaxed);
  c.send("ERR " + std::string(reason) + "\n");
  c.close();
}

TopicProtocol::Step TopicProtocol::command(myriad::Connection c, std::string_view data,
                                           std::size_t& used) {
  std::size_t nl = data.substr(0, kMaxLine).find('\n');
  if (nl == std::string_view::npos) {
    if (data.size() >= kMaxLine) {
      fail(c, "line too long");
      return Step::kClosed;
    }
    return Step::kNeedMore;
  }
  std::string_view line = data.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  used = nl + 1;
  std::string_view verb = word(line);
  if (verb == "SUB" || verb == "UNSUB") {
    std::string_view topic = word(line);
    if (!valid_topic(topic) || !line.empty()) {
      fail(c, "bad topic");
      return Step::kClosed;
    }
    bool sub = verb == "SUB";
    if (sub && !pubsub_->subscribe(c, topic, line_)) {
      fail(c, "subscribe refused");
      return Step::kClosed;
    }
    if (!sub) pubsub_->unsubscribe(c, topic);
    std::string reply = (sub ? "OK SUB " : "OK UNSUB ") + std::string(topic) + "\n";
    c.send(reply);
    return Step::kDone;
  }
  if (verb == "PUB") {
    std::string_view topic = word(line);
    std::string_view length_text = word(line);
    std::size_t length = 0;
    auto [end, ec] =
        std::from_chars(length_text.data(), length_text.data() + length_text.size(), length);
    if (!valid_topic(topic) || !line.empty() || length_text.empty() || ec != std::errc() ||
        end != length_text.data() + length_text.size()) {
      fail(c, "bad PUB: PUB <topic> <length>");
      return Step::kClosed;
    }
    if (length > max_message_) {
      fail(c, "message too large");
      return Step::kClosed;
    }
    if (data.size() - used < length) return Step::kNeedMore;
    pubsub_->publish(topic, data.substr(used, length));
    used += length;
    return Step::kDone;
  }
  if (verb == "PING" && line.empty()) {
    c.send(std::string_view("PONG\n"));
    return Step::kDone;
  }
  fail(c, "unknown command");
  return Step::kClosed;
}

void TopicProtocol::on_data(myriad::Connection c, myriad::Chunk data) {
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
    Step step = command(c, all.substr(done), used);
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

void TopicProtocol::on_write_watermark(myriad::Connection c, bool above_high) {
  if (!above_high) pubsub_->on_writable(c);
}

void TopicProtocol::on_close(myriad::Connection c, myriad::CloseReason, int) {
  pubsub_->on_close(c);
}

}  // namespace server
