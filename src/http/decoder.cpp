// The HTTP/1.1 request decoder: llhttp in strict mode, driven one receive at a time. See
// decoder.hpp for how it keeps memory small and why its outcomes do not depend on the splits.
#include "http/decoder.hpp"

#include <algorithm>
#include <cstring>
#include <new>

namespace myriad::http::detail {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

// What the callbacks see of one message being parsed. llhttp's `data` points here.
struct Decoder::Context {
  Decoder* decoder;
  // The buffer being parsed and the message offset of its first byte, so that a pointer the
  // parser hands back maps to an offset from the start of the message.
  const char* begin;
  uint64_t base;
  // Whether to record the views (the message started in this buffer, or it is a re-parse of
  // the whole message); otherwise only the framing and the limits are followed.
  bool collect;
  // Stop at the end of the head (the 100-continue look at a head already checked once).
  bool head_only = false;

  // Progress, carried in the Partial between receives.
  uint64_t body_bytes = 0;
  uint32_t bytes = 0;
  uint32_t header_count = 0;
  uint32_t value_end = 0;
  uint32_t name_bytes = 0;
  bool in_value = false;  // the last header callback was a value
  bool headers_complete = false;
  bool message_complete = false;

  // An outcome decided by a callback.
  int status = 0;
  const char* reason = nullptr;

  // Collected (collect only).
  Span method, target, body;
  bool body_joined = false;  // body_ holds the body (a chunked body came in pieces)

  uint32_t offset(const char* p) const {
    return static_cast<uint32_t>(base + static_cast<uint64_t>(p - begin));
  }
  int fail(int code, const char* why) {
    status = code;
    reason = why;
    return -1;
  }
  void save(Partial& p) const {
    p.body_bytes = body_bytes;
    p.bytes = bytes;
    p.header_count = header_count;
    p.value_end = value_end;
    p.name_bytes = name_bytes;
    p.in_value = in_value;
    p.headers_complete = headers_complete;
  }
  void load(const Partial& p) {
    body_bytes = p.body_bytes;
    bytes = p.bytes;
    header_count = p.header_count;
    value_end = p.value_end;
    name_bytes = p.name_bytes;
    in_value = p.in_value;
    headers_complete = p.headers_complete;
  }
};

// llhttp's callbacks. Data callbacks may come in several pieces for one element (a span cut by
// the end of a buffer); in collect mode the pieces of one element are contiguous, except for
// an obs-fold continuation line, which is refused.
struct Callbacks {
  using Context = Decoder::Context;
  using Span = Decoder::Span;
  static Context& ctx(llhttp_t* p) { return *static_cast<Context*>(p->data); }

  // Extends span with [at, at + n); false when the piece does not follow the span.
  static bool extend(Context& c, Span& span, const char* at, size_t n) {
    uint32_t off = c.offset(at);
    if (span.length == 0) {
      span.offset = off;
      span.length = static_cast<uint32_t>(n);
      return true;
    }
    if (span.offset + span.length != off) return false;
    span.length += static_cast<uint32_t>(n);
    return true;
  }

  static int on_method(llhttp_t* p, const char* at, size_t n) {
    Context& c = ctx(p);
    if (c.collect) extend(c, c.method, at, n);
    return 0;
  }
  static int on_url(llhttp_t* p, const char* at, size_t n) {
    Context& c = ctx(p);
    if (c.collect) extend(c, c.target, at, n);
    return 0;
  }
  static int on_version_complete(llhttp_t* p) {
    if (p->http_major != 1 || p->http_minor > 1) {
      return ctx(p).fail(505, "HTTP version not supported");
    }
    return 0;
  }
  static int on_header_field(llhttp_t* p, const char* at, size_t n) {
    Context& c = ctx(p);
    bool new_field = c.in_value;
    c.in_value = false;
    c.name_bytes += static_cast<uint32_t>(n);
    // Trailer fields (after a chunked body) are not the request's headers: not collected.
    if (!c.collect || c.headers_complete) return 0;
    auto& fields = c.decoder->fields_;
    if (fields.empty() || new_field) fields.push_back({});
    extend(c, fields.back().name, at, n);
    return 0;
  }
  static int on_header_field_complete(llhttp_t* p) {
    Context& c = ctx(p);
    if (c.name_bytes == 0) return c.fail(400, "empty header name");
    c.name_bytes = 0;
    if (++c.header_count > c.decoder->limits_.max_headers) {
      return c.fail(431, "too many header fields");
    }
    return 0;
  }
  static int on_header_value(llhttp_t* p, const char* at, size_t n) {
    Context& c = ctx(p);
    uint32_t off = c.offset(at);
    // A piece that does not follow the value's last one: the value went on on a new line.
    // Offsets are the request's, so this holds across receives too.
    if (c.in_value && off != c.value_end) return c.fail(400, "obsolete line folding");
    bool first = !c.in_value;
    c.in_value = true;
    c.value_end = off + static_cast<uint32_t>(n);
    if (!c.collect || c.headers_complete) return 0;
    auto& fields = c.decoder->fields_;
    if (fields.empty()) return c.fail(400, "header value without a name");
    Span& value = fields.back().value;
    if (first) {
      value.offset = off;
      value.length = static_cast<uint32_t>(n);
    } else {
      value.length += static_cast<uint32_t>(n);
    }
    return 0;
  }
  // A request line without a version is HTTP/0.9 to llhttp (a version it gave on the line
  // has been checked by on_version_complete already).
  static bool versionless(llhttp_t* p) { return p->http_major != 1 || p->http_minor > 1; }
  static int on_headers_complete(llhttp_t* p) {
    Context& c = ctx(p);
    if (versionless(p)) return c.fail(400, "request line without an HTTP version");
    if (p->method == HTTP_CONNECT) return c.fail(501, "CONNECT is not supported");
    if ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > c.decoder->max_body_) {
      return c.fail(413, "Content-Length over the body limit");
    }
    c.headers_complete = true;
    // Pause, so the decoder learns exactly where the head ended (and can stop there).
    return HPE_PAUSED;
  }
  static int on_chunk_header(llhttp_t* p) {
    Context& c = ctx(p);
    // content_length is this chunk's size: refuse before reading it.
    if (p->content_length > c.decoder->max_body_ - std::min(c.body_bytes, c.decoder->max_body_)) {
      return c.fail(413, "chunked body over the body limit");
    }
    return 0;
  }
  static int on_body(llhttp_t* p, const char* at, size_t n) {
    Context& c = ctx(p);
    c.body_bytes += n;
    if (c.body_bytes > c.decoder->max_body_) return c.fail(413, "body over the body limit");
    if (!c.collect) return 0;
    std::string& joined = c.decoder->body_;
    if (!c.body_joined) {
      if (extend(c, c.body, at, n)) return 0;
      // A later chunk of a chunked body: join the pieces from here on. In collect mode the
      // whole request is in the buffer being parsed, so the earlier pieces are at hand.
      joined.assign(c.begin + (c.body.offset - c.base), c.body.length);
      c.body_joined = true;
    }
    joined.append(at, n);
    return 0;
  }
  static int on_message_complete(llhttp_t* p) {
    if (versionless(p)) return ctx(p).fail(400, "request line without an HTTP version");
    ctx(p).message_complete = true;
    return HPE_PAUSED;
  }

  static llhttp_settings_t settings() {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_method = on_method;
    s.on_url = on_url;
    s.on_version_complete = on_version_complete;
    s.on_header_field = on_header_field;
    s.on_header_field_complete = on_header_field_complete;
    s.on_header_value = on_header_value;
    s.on_headers_complete = on_headers_complete;
    s.on_chunk_header = on_chunk_header;
    s.on_body = on_body;
    s.on_message_complete = on_message_complete;
    return s;
  }
};

int status_for(llhttp_errno_t err, const char* reason) {
  if (err == HPE_INVALID_VERSION && reason != nullptr &&
      std::strcmp(reason, "Invalid HTTP version") == 0) {
    return 505;  // well formed, but not a version llhttp speaks
  }
  return 400;
}

Decoder::Decoder(const Limits& limits)
    : limits_(limits),
      max_body_(limits.max_body_bytes),
      max_request_(limits.max_header_bytes + limits.max_body_bytes),
      settings_(Callbacks::settings()) {
  fields_.reserve(16);
  headers_.reserve(16);
}

Decoder::Step Decoder::run(Context& ctx, llhttp_t& parser, const char* p, const char* end,
                           const char*& stop) {
  parser.data = &ctx;
  for (;;) {
    // Never more than the limits allow: the head within max_header_bytes, the whole request
    // within max_header_bytes + max_body_bytes.
    std::size_t cap = ctx.headers_complete ? max_request_ : limits_.max_header_bytes;
    std::size_t allowed = cap - ctx.bytes;
    const char* give_end = static_cast<std::size_t>(end - p) > allowed ? p + allowed : end;
    llhttp_errno_t err = llhttp_execute(&parser, p, static_cast<std::size_t>(give_end - p));
    if (err == HPE_PAUSED) {
      const char* at = llhttp_get_error_pos(&parser);
      llhttp_resume(&parser);
      ctx.bytes += static_cast<uint32_t>(at - p);
      if (ctx.message_complete || ctx.head_only) {
        stop = at;
        return Step::kComplete;
      }
      p = at;  // the end of the head: on with the body
      continue;
    }
    if (err == HPE_OK) {
      ctx.bytes += static_cast<uint32_t>(give_end - p);
      if (ctx.bytes >= cap) {
        // The limit is reached and the request (or its head) has not ended.
        ctx.status = ctx.headers_complete ? 413 : 431;
        ctx.reason = ctx.headers_complete ? "request over max_header_bytes + max_body_bytes"
                                          : "request head over max_header_bytes";
        return Step::kError;
      }
      return Step::kNeedMore;
    }
    if (ctx.status == 0) {
      ctx.status = status_for(err, parser.reason);
      ctx.reason = parser.reason != nullptr ? parser.reason : llhttp_errno_name(err);
    }
    return Step::kError;
  }
}

Result Decoder::fail(Store& store, const Context& ctx) {
  discard(store);
  std::size_t spilled = store.spill().size();
  if (spilled != 0) store.spill_consume(spilled);
  Result r;
  r.kind = Result::kError;
  r.status = ctx.status;
  r.reason = ctx.reason;
  return r;
}

void Decoder::discard(Store& store) {
  if (Partial* partial = store.partial()) {
    store.set_partial(nullptr);
    delete partial;
  }
}

// Builds the message from the views collected over `base` (the message's first byte) and gives
// it to the sink. Checks that need the whole head come here: one Host, known expectations.
bool Decoder::dispatch(Context& ctx, const char* base, llhttp_t& parser, Sink& sink,
                       Result& result) {
  auto view = [base](Span s) { return std::string_view(base + s.offset, s.length); };
  headers_.clear();
  int hosts = 0;
  std::string_view expect;
  for (const FieldSpans& f : fields_) {
    // Between the name and the value only ':' and blanks: a line break there is a value that
    // starts on a continuation line (obs-fold), which llhttp reports without the break.
    if (f.value.length != 0) {
      for (uint32_t i = f.name.offset + f.name.length + 1; i < f.value.offset; ++i) {
        if (base[i] != ' ' && base[i] != '\t') {
          fields_.clear();
          result.kind = Result::kError;
          result.status = 400;
          result.reason = "obsolete line folding";
          return false;
        }
      }
    }
    Header h{view(f.name), trim(view(f.value))};
    if (iequals(h.name, "host")) ++hosts;
    if (iequals(h.name, "expect")) expect = h.value;
    headers_.push_back(h);
  }
  Message m;
  m.method = view(ctx.method);
  m.target = view(ctx.target);
  m.body = ctx.body_joined ? std::string_view(body_) : view(ctx.body);
  m.headers = headers_;
  m.minor = parser.http_minor;
  m.keep_alive = llhttp_should_keep_alive(&parser) != 0;
  m.upgrade = parser.upgrade != 0;
  fields_.clear();
  if (m.minor == 1 && hosts != 1) {
    result.kind = Result::kError;
    result.status = 400;
    result.reason = hosts == 0 ? "HTTP/1.1 request without Host" : "more than one Host";
    return false;
  }
  if (!expect.empty() && !iequals(expect, "100-continue")) {
    result.kind = Result::kError;
    result.status = 417;
    result.reason = "unknown expectation";
    return false;
  }
  return sink.on_request(m);
}

bool Decoder::collect_and_dispatch(std::string_view bytes, Sink& sink, Result& result) {
  llhttp_t parser;
  llhttp_init(&parser, HTTP_REQUEST, &settings_);
  Context ctx{this, bytes.data(), 0, true};
  fields_.clear();
  const char* stop = nullptr;
  Step step = run(ctx, parser, bytes.data(), bytes.data() + bytes.size(), stop);
  if (step != Step::kComplete || stop != bytes.data() + bytes.size()) {
    // The first parse accepted these bytes as one message: a second must agree.
    result.kind = Result::kError;
    result.status = step == Step::kError ? ctx.status : 400;
    result.reason = step == Step::kError ? ctx.reason : "re-parse disagreed";
    fields_.clear();
    return false;
  }
  return dispatch(ctx, bytes.data(), parser, sink, result);
}

bool Decoder::head_expects_continue(std::string_view bytes) {
  llhttp_t parser;
  llhttp_init(&parser, HTTP_REQUEST, &settings_);
  Context ctx{this, bytes.data(), 0, true};
  ctx.head_only = true;
  fields_.clear();
  const char* stop = nullptr;
  bool expects = false;
  if (run(ctx, parser, bytes.data(), bytes.data() + bytes.size(), stop) == Step::kComplete &&
      parser.http_minor == 1) {
    for (const FieldSpans& f : fields_) {
      std::string_view name(bytes.data() + f.name.offset, f.name.length);
      std::string_view value(bytes.data() + f.value.offset, f.value.length);
      if (iequals(name, "expect") && iequals(trim(value), "100-continue")) expects = true;
    }
  }
  fields_.clear();
  return expects;
}

Result Decoder::feed(Store& store, std::span<const std::byte> data, Sink& sink) {
  const char* begin = reinterpret_cast<const char*>(data.data());
  const char* end = begin + data.size();
  const char* p = begin;
  Result result;
  auto as_bytes = [](const char* from, const char* to) {
    return std::span<const std::byte>(reinterpret_cast<const std::byte*>(from),
                                      static_cast<std::size_t>(to - from));
  };

  if (Partial* partial = store.partial()) {
    // Go on with the request begun in an earlier receive; only the new bytes are parsed.
    Context ctx{this, begin, store.spill().size(), false};
    ctx.load(*partial);
    bool head_was_complete = ctx.headers_complete;
    const char* stop = nullptr;
    Step step = run(ctx, partial->parser, p, end, stop);
    ctx.save(*partial);
    if (step == Step::kError) return fail(store, ctx);
    if (step == Step::kNeedMore) {
      if (!store.spill_append(data)) {
        discard(store);
        result.kind = Result::kOverflow;
        return result;
      }
      if (ctx.headers_complete && !head_was_complete && !partial->continue_checked) {
        partial->continue_checked = true;
        std::span<const std::byte> spill = store.spill();
        if (head_expects_continue({reinterpret_cast<const char*>(spill.data()), spill.size()})) {
          sink.on_continue();
        }
      }
      result.consumed = data.size();
      return result;
    }
    // Complete: the whole message is now the spill plus [p, stop).
    if (!store.spill_append(as_bytes(p, stop))) {
      discard(store);
      result.kind = Result::kOverflow;
      return result;
    }
    discard(store);  // before the sink runs: user() is the sink's to see empty
    std::span<const std::byte> spill = store.spill();
    bool go_on = collect_and_dispatch({reinterpret_cast<const char*>(spill.data()), spill.size()},
                                      sink, result);
    store.spill_consume(store.spill().size());
    if (result.kind == Result::kError) return result;
    if (!go_on) {
      result.kind = Result::kStopped;
      result.consumed = static_cast<std::size_t>(stop - begin);
      return result;
    }
    p = stop;
  }

  for (;;) {
    // Empty lines before a request line are ignored (RFC 9112 2.2), so a stray CRLF after a
    // body never leaves a partial request (and a 408 timer) behind.
    while (p != end && (*p == '\r' || *p == '\n')) ++p;
    if (p == end) {
      result.consumed = data.size();
      return result;
    }
    llhttp_t parser;
    llhttp_init(&parser, HTTP_REQUEST, &settings_);
    Context ctx{this, p, 0, true};
    fields_.clear();
    body_.clear();
    const char* stop = nullptr;
    Step step = run(ctx, parser, p, end, stop);
    if (step == Step::kError) {
      fields_.clear();
      return fail(store, ctx);
    }
    if (step == Step::kNeedMore) {
      // The request goes on in a later receive: keep its bytes and the parser's state.
      bool expects = false;
      if (ctx.headers_complete && parser.http_minor == 1) {
        for (const FieldSpans& f : fields_) {
          std::string_view name(p + f.name.offset, f.name.length);
          std::string_view value(p + f.value.offset, f.value.length);
          if (iequals(name, "expect") && iequals(trim(value), "100-continue")) expects = true;
        }
      }
      fields_.clear();
      if (!store.spill_append(as_bytes(p, end))) {
        result.kind = Result::kOverflow;
        return result;
      }
      auto* partial = new Partial;
      partial->parser = parser;
      ctx.save(*partial);
      partial->continue_checked = ctx.headers_complete;
      store.set_partial(partial);
      if (expects) sink.on_continue();
      result.consumed = data.size();
      return result;
    }
    bool go_on = dispatch(ctx, p, parser, sink, result);
    if (result.kind == Result::kError) return result;
    if (!go_on) {
      result.kind = Result::kStopped;
      result.consumed = static_cast<std::size_t>(stop - begin);
      return result;
    }
    p = stop;
  }
}

}  // namespace myriad::http::detail
