// Server-Sent Events: the text/event-stream encoder and the stream on top of http::Stream.
#include <myriad/sse.hpp>

#include <charconv>
#include <cstring>

namespace myriad::sse {

namespace {

// Walks the encoding of an event, handing each piece to `put`: the one definition behind
// encode(), encoded_size() and encode_into(), so they cannot disagree.
template <class Put>
void walk(const Event& e, Put&& put) {
  // A field value without the characters that would end it (or, for id, void it).
  auto field = [&](std::string_view name, std::string_view value, bool drop_nul) {
    put(name);
    while (!value.empty()) {
      std::size_t cut = value.find_first_of(drop_nul ? std::string_view("\r\n\0", 3) : "\r\n");
      put(value.substr(0, cut));
      if (cut == std::string_view::npos) break;
      value.remove_prefix(cut + 1);
    }
    put("\n");
  };
  if (e.retry_ms >= 0) {
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, e.retry_ms);
    (void)ec;
    put("retry: ");
    put(std::string_view(digits, static_cast<std::size_t>(end - digits)));
    put("\n");
  }
  if (!e.id.empty()) field("id: ", e.id, true);
  if (!e.event.empty()) field("event: ", e.event, false);
  // One data line per line of the payload; CRLF, LF and CR all end a line.
  std::string_view data = e.data;
  for (;;) {
    std::size_t cut = data.find_first_of("\r\n");
    put("data: ");
    put(data.substr(0, cut));
    put("\n");
    if (cut == std::string_view::npos) break;
    std::size_t skip =
        (data[cut] == '\r' && cut + 1 < data.size() && data[cut + 1] == '\n') ? 2 : 1;
    data.remove_prefix(cut + skip);
    if (data.empty()) {
      // The payload ended with a line break: the client sees it as a last, empty line.
      put("data: \n");
      break;
    }
  }
  put("\n");
}

}  // namespace

void encode(const Event& event, std::string& out) {
  out.reserve(out.size() + encoded_size(event));
  walk(event, [&](std::string_view piece) { out.append(piece); });
}

std::string encode(const Event& event) {
  std::string out;
  encode(event, out);
  return out;
}

std::size_t encoded_size(const Event& event) {
  std::size_t n = 0;
  walk(event, [&](std::string_view piece) { n += piece.size(); });
  return n;
}

std::size_t encode_into(const Event& event, std::span<char> dst) {
  std::size_t n = 0;
  walk(event, [&](std::string_view piece) {
    std::size_t take = std::min(piece.size(), dst.size() - n);
    std::memcpy(dst.data() + n, piece.data(), take);
    n += take;
  });
  return n;
}

void encode_comment(std::string_view text, std::string& out) {
  for (;;) {
    std::size_t cut = text.find_first_of("\r\n");
    out += ':';
    std::string_view line = text.substr(0, cut);
    if (!line.empty()) {
      out += ' ';
      out.append(line);
    }
    out += '\n';
    if (cut == std::string_view::npos) break;
    std::size_t skip =
        (text[cut] == '\r' && cut + 1 < text.size() && text[cut + 1] == '\n') ? 2 : 1;
    text.remove_prefix(cut + skip);
    if (text.empty()) break;
  }
  out += '\n';
}

std::string_view last_event_id(const http::Request& request) {
  return request.header("last-event-id");
}

bool Stream::send(const Event& event) {
  if (!open()) return false;
  thread_local std::string scratch;
  scratch.clear();
  encode(event, scratch);
  return stream_.write(scratch);
}

bool Stream::comment(std::string_view text) {
  if (!open()) return false;
  thread_local std::string scratch;
  scratch.clear();
  encode_comment(text, scratch);
  return stream_.write(scratch);
}

Stream start(http::Response& response, StreamOptions options) {
  response.header("Content-Type", "text/event-stream");
  response.header("Cache-Control", "no-cache");
  http::StreamOptions o;
  o.framing = http::Framing::kUntilClose;  // the bytes on the wire are the events, shareable
  if (options.heartbeat) o.heartbeat = kHeartbeat;
  if (options.on_event) {
    o.on_event = [cb = std::move(options.on_event)](http::Stream& s, http::StreamEvent e) {
      Stream stream(s);
      cb(stream, e);
    };
  }
  Stream stream(response.stream(std::move(o)));
  if (options.retry_ms >= 0 && stream.open()) {
    char line[40];
    auto [end, ec] = std::to_chars(line, line + sizeof line, options.retry_ms);
    (void)ec;
    std::string text = "retry: " + std::string(line, end) + "\n\n";
    stream.send_encoded(text);
  }
  return stream;
}

}  // namespace myriad::sse
