// The WebSocket codecs on their own: UTF-8 validation (against an independent decoder, over
// every sequence of up to three bytes and the edges of four), the frame decoder split at every
// byte, close payloads, the handshake's key and extension negotiation, permessage-deflate.
#include <myriad/ws_codec.hpp>

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace myriad::ws;
using namespace std::string_literals;

std::span<const std::byte> bytes_of(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}
std::string str(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// ---- UTF-8 ----

// An independent check, by arithmetic on code points rather than a state table: whether s is
// well-formed UTF-8 (RFC 3629: shortest form, no surrogates, at most U+10FFFF).
bool reference_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char b = static_cast<unsigned char>(s[i]);
    int len;
    uint32_t cp;
    if (b < 0x80) {
      len = 1, cp = b;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2, cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4, cp = b & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (int k = 1; k < len; ++k) {
      unsigned char c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// Whether some continuation could still make s valid: the reference says "valid" for s plus
// some bytes. Used to check the fail-fast promise: the validator rejects exactly when no
// continuation exists.
bool reference_prefix_ok(const std::string& s) {
  if (reference_utf8(s)) return true;
  for (int extra = 1; extra <= 3; ++extra) {
    // Try the continuation bytes that matter (each class edge).
    static const unsigned char kTry[] = {0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF};
    std::vector<std::string> frontier = {s};
    for (int k = 0; k < extra; ++k) {
      std::vector<std::string> next;
      for (auto& f : frontier) {
        for (unsigned char c : kTry) next.push_back(f + static_cast<char>(c));
      }
      frontier = std::move(next);
    }
    for (auto& f : frontier) {
      if (reference_utf8(f)) return true;
    }
  }
  return false;
}

TEST(Utf8, EveryOneTwoAndThreeByteSequenceAgreesWithReference) {
  std::string s;
  uint64_t valid = 0;
  for (int a = 0; a < 256; ++a) {
    s.assign(1, static_cast<char>(a));
    ASSERT_EQ(valid_utf8(s), reference_utf8(s)) << a;
    for (int b = 0; b < 256; ++b) {
      s.assign({static_cast<char>(a), static_cast<char>(b)});
      ASSERT_EQ(valid_utf8(s), reference_utf8(s)) << a << " " << b;
      for (int c = 0; c < 256; ++c) {
        char three[3] = {static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)};
        std::string_view v(three, 3);
        bool ours = valid_utf8(v);
        if (ours != reference_utf8(std::string(v))) {
          FAIL() << std::hex << a << " " << b << " " << c;
        }
        valid += ours;
      }
    }
  }
  EXPECT_GT(valid, 0u);
}

TEST(Utf8, FourByteSequencesAtEveryEdge) {
  const int kEdges[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
  for (int a = 0xF0; a <= 0xFF; ++a) {
    for (int b : kEdges) {
      for (int c : kEdges) {
        for (int d : kEdges) {
          std::string s = {static_cast<char>(a), static_cast<char>(b), static_cast<char>(c),
                           static_cast<char>(d)};
          ASSERT_EQ(valid_utf8(s), reference_utf8(s)) << std::hex << a << b << c << d;
        }
      }
    }
  }
}

TEST(Utf8, NamedEdgeCases) {
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("Hello-µ@ßöäüàá-UTF-8!!"));
  EXPECT_TRUE(valid_utf8("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"));  // κόσμε
  EXPECT_TRUE(valid_utf8("\xF4\x8F\xBF\xBF"));                              // U+10FFFF
  EXPECT_TRUE(valid_utf8("\xED\x9F\xBF"));                                  // U+D7FF
  EXPECT_TRUE(valid_utf8("\xEE\x80\x80"));                                  // U+E000
  EXPECT_TRUE(valid_utf8("\xEF\xBF\xBF"));                                  // U+FFFF
  EXPECT_FALSE(valid_utf8("\xF4\x90\x80\x80"));                             // U+110000
  EXPECT_FALSE(valid_utf8("\xED\xA0\x80"));                                 // U+D800, a surrogate
  EXPECT_FALSE(valid_utf8("\xED\xBF\xBF"));                                 // U+DFFF
  EXPECT_FALSE(valid_utf8("\xC0\xAF"));                                     // overlong '/'
  EXPECT_FALSE(valid_utf8("\xE0\x80\xAF"));                                 // overlong, three bytes
  EXPECT_FALSE(valid_utf8("\xF0\x80\x80\xAF"));                             // overlong, four bytes
  EXPECT_FALSE(valid_utf8("\xC1\xBF"));                                     // overlong U+007F
  EXPECT_FALSE(valid_utf8("\xE0\x9F\xBF"));                                 // overlong U+07FF
  EXPECT_FALSE(valid_utf8("\xF0\x8F\xBF\xBF"));                             // overlong U+FFFF
  EXPECT_FALSE(valid_utf8("\x80"));  // a lone continuation byte
  EXPECT_FALSE(valid_utf8("\xFE"));
  EXPECT_FALSE(valid_utf8("\xFF"));
  EXPECT_FALSE(valid_utf8("\xF8\x88\x80\x80\x80"));  // five-byte form
  EXPECT_FALSE(valid_utf8("\xCE\xBA\xE1"));          // truncated at the end
  EXPECT_FALSE(valid_utf8("\xCE"));
}

TEST(Utf8, FailsAtTheFirstImpossibleByteAndNotBefore) {
  // For every prefix of a set of strings, the validator rejects exactly when no continuation
  // could make the text valid (fail fast, and no false alarm on a prefix split mid-character).
  const std::string kCases[] = {
      "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80"
      "edited",
      "\xF4\x8F\xBF\xBF\xF4\x90\x80\x80",
      "ab\xE0\xA0\x80\xE0\x9F\x80",
      "\xF0\x90\x80\x80\xF0\x8F\x80\x80",
      "\xC2\x80\xC1\x80",
      "\xEF\xBF\xBF\xF5\x80\x80\x80",
  };
  for (const std::string& text : kCases) {
    Utf8Validator v;
    for (std::size_t i = 0; i < text.size(); ++i) {
      bool ok = v.feed(bytes_of(std::string_view(text).substr(i, 1)));
      std::string prefix = text.substr(0, i + 1);
      ASSERT_EQ(ok, reference_prefix_ok(prefix)) << "prefix of length " << i + 1;
      if (!ok) break;
    }
  }
}

TEST(Utf8, SplitAnywhereGivesTheSameAnswer) {
  const std::string kText =
      "Hello \xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5 \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF "
      "plain ascii run that is long enough for the eight-byte path \xE2\x82\xAC";
  ASSERT_TRUE(valid_utf8(kText));
  for (std::size_t a = 0; a <= kText.size(); ++a) {
    for (std::size_t b = a; b <= kText.size(); ++b) {
      Utf8Validator v;
      ASSERT_TRUE(v.feed(bytes_of(std::string_view(kText).substr(0, a))));
      ASSERT_TRUE(v.feed(bytes_of(std::string_view(kText).substr(a, b - a))));
      ASSERT_TRUE(v.feed(bytes_of(std::string_view(kText).substr(b))));
      ASSERT_TRUE(v.complete());
      // Midway through a character the text is not complete.
      Utf8Validator w;
      w.feed(bytes_of(std::string_view(kText).substr(0, a)));
      EXPECT_EQ(w.complete(), valid_utf8(std::string_view(kText).substr(0, a)));
    }
  }
}

TEST(Utf8, RandomTextAgreesWithReference) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 20000; ++round) {
    std::string s;
    int n = static_cast<int>(rng() % 24);
    for (int i = 0; i < n; ++i) {
      // Bias towards bytes that form sequences.
      unsigned r = static_cast<unsigned>(rng());
      unsigned char c = (r & 3) == 0 ? static_cast<unsigned char>(0x80 + (r >> 8) % 64)
                                     : static_cast<unsigned char>(r >> 8);
      s.push_back(static_cast<char>(c));
    }
    ASSERT_EQ(valid_utf8(s), reference_utf8(s));
  }
}

// ---- Frames ----

// A client frame built byte by byte from RFC 6455 5.2, independent of the library's encoder.
std::string client_frame(uint8_t first_byte, std::string_view payload, uint32_t key = 0x37fa213d,
                         bool masked = true, int length_form = 0) {
  std::string out;
  out.push_back(static_cast<char>(first_byte));
  uint64_t n = payload.size();
  uint8_t m = masked ? 0x80 : 0;
  if ((n < 126 && length_form == 0) || length_form == 1) {
    out.push_back(static_cast<char>(m | n));
  } else if ((n <= 0xFFFF && length_form == 0) || length_form == 2) {
    out.push_back(static_cast<char>(m | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n));
  } else {
    out.push_back(static_cast<char>(m | 127));
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(n >> (8 * i)));
  }
  unsigned char k[4] = {static_cast<unsigned char>(key >> 24),
                        static_cast<unsigned char>(key >> 16), static_cast<unsigned char>(key >> 8),
                        static_cast<unsigned char>(key)};
  if (masked) out.append(reinterpret_cast<char*>(k), 4);
  for (std::size_t i = 0; i < payload.size(); ++i) {
    out.push_back(static_cast<char>(payload[i] ^ (masked ? k[i % 4] : 0)));
  }
  return out;
}

struct Event {
  std::string kind;  // "msg:text", "msg:binary", "ping", "pong", "close"
  std::string payload;
  bool operator==(const Event&) const = default;
};

class Collect final : public FrameSink {
 public:
  explicit Collect(FrameDecoder& d) : decoder_(d) {}
  bool on_data(std::span<const std::byte> piece, bool end) override {
    partial_ += str(piece);
    ++pieces_;
    if (end) {
      std::string kind = decoder_.message_type() == Opcode::kText ? "msg:text" : "msg:binary";
      if (decoder_.message_compressed()) kind += "+z";
      events.push_back({kind, partial_});
      partial_.clear();
    }
    return true;
  }
  bool on_control(Opcode op, std::span<const std::byte> payload) override {
    const char* kind = op == Opcode::kPing ? "ping" : op == Opcode::kPong ? "pong" : "close";
    events.push_back({kind, str(payload)});
    return true;
  }
  std::vector<Event> events;
  int pieces_ = 0;

 private:
  FrameDecoder& decoder_;
  std::string partial_;
};

struct Outcome {
  std::vector<Event> events;
  uint16_t error = 0;
  bool idle = false;
};

// Feeds input in pieces cut at the given points.
Outcome run_split(const std::string& input, const std::vector<std::size_t>& cuts,
                  FrameDecoder::Limits limits = {}) {
  FrameDecoder d;
  Collect sink(d);
  Outcome out;
  std::string buf = input;
  std::size_t start = 0;
  std::vector<std::size_t> points = cuts;
  points.push_back(buf.size());
  for (std::size_t end : points) {
    std::span<std::byte> piece(reinterpret_cast<std::byte*>(buf.data()) + start, end - start);
    auto r = d.decode(piece, limits, sink);
    start = end;
    if (r.error) {
      out.error = r.error;
      break;
    }
  }
  out.events = sink.events;
  out.idle = d.idle();
  return out;
}

Outcome run_whole(const std::string& input, FrameDecoder::Limits limits = {}) {
  return run_split(input, {}, limits);
}

TEST(FrameDecoder, RfcExamples) {
  // RFC 6455 5.7: a single-frame masked text message "Hello".
  std::string hello = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
  auto out = run_whole(hello);
  ASSERT_EQ(out.error, 0);
  ASSERT_EQ(out.events, (std::vector<Event>{{"msg:text", "Hello"}}));
  EXPECT_TRUE(out.idle);
  // A masked ping "Hello".
  out = run_whole(client_frame(0x89, "Hello"));
  ASSERT_EQ(out.events, (std::vector<Event>{{"ping", "Hello"}}));
}

TEST(FrameDecoder, OneFrameInOneCallIsOnePieceWithoutCopy) {
  std::string frame = client_frame(0x82, std::string(3000, 'x'));
  FrameDecoder d;
  Collect sink(d);
  std::string buf = frame;
  auto* base = reinterpret_cast<std::byte*>(buf.data());
  struct Check final : FrameSink {
    const std::byte* expect;
    bool zero_copy = false;
    bool on_data(std::span<const std::byte> piece, bool end) override {
      zero_copy = end && piece.data() == expect && piece.size() == 3000;
      return true;
    }
    bool on_control(Opcode, std::span<const std::byte>) override { return true; }
  } check;
  check.expect = base + 8;  // 2 + 2 (16-bit length) + 4 (key)
  auto r = d.decode(std::span<std::byte>(base, buf.size()), {}, check);
  EXPECT_EQ(r.error, 0);
  EXPECT_EQ(r.consumed, buf.size());
  EXPECT_TRUE(check.zero_copy) << "the payload was handed over in place";
  EXPECT_EQ(std::string(reinterpret_cast<char*>(base + 8), 3000), std::string(3000, 'x'))
      << "unmasked in place";
}

TEST(FrameDecoder, EverySplitOfAMixedStreamGivesTheSameEvents) {
  // Text in three fragments with a ping in between, a binary with a 16-bit length, an empty
  // text, a pong, a close.
  std::string stream = client_frame(0x01, "Hel\xCE") + client_frame(0x89, "p1") +
                       client_frame(0x00, "\xBAlo ") + client_frame(0x80, "world") +
                       client_frame(0x82, std::string(300, '\x07'), 0x01020304) +
                       client_frame(0x81, "") + client_frame(0x8A, "") +
                       client_frame(0x88,
                                    "\x03\xe8"
                                    "bye");
  std::vector<Event> expect = {{"ping", "p1"},
                               {"msg:text", "Hel\xCE\xBAlo world"},
                               {"msg:binary", std::string(300, '\x07')},
                               {"msg:text", ""},
                               {"pong", ""},
                               {"close",
                                "\x03\xe8"
                                "bye"}};
  ASSERT_EQ(run_whole(stream).events, expect);
  for (std::size_t a = 0; a <= stream.size(); ++a) {
    auto out = run_split(stream, {a});
    ASSERT_EQ(out.error, 0) << a;
    ASSERT_EQ(out.events, expect) << "split at " << a;
  }
  // Byte by byte.
  std::vector<std::size_t> every;
  for (std::size_t i = 1; i < stream.size(); ++i) every.push_back(i);
  auto out = run_split(stream, every);
  EXPECT_EQ(out.events, expect);
  EXPECT_TRUE(out.idle);
}

TEST(FrameDecoder, LengthForms) {
  for (std::size_t n : {0, 1, 125, 126, 127, 65535, 65536, 70000}) {
    std::string payload = std::string(n, 'a');
    auto out = run_whole(client_frame(0x82, payload));
    ASSERT_EQ(out.error, 0) << n;
    ASSERT_EQ(out.events.size(), 1u);
    EXPECT_EQ(out.events[0].payload.size(), n);
  }
  // A non-minimal length form is accepted (the minimal-form rule binds the sender).
  auto out = run_whole(client_frame(0x82, "abc", 0x11223344, true, 3));
  ASSERT_EQ(out.error, 0);
  EXPECT_EQ(out.events[0].payload, "abc");
}

TEST(FrameDecoder, ProtocolErrors) {
  struct Case {
    const char* what;
    std::string input;
    uint16_t code;
  };
  std::string len63 =
      "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00"
      "abcd"s;
  std::vector<Case> cases = {
      {"unmasked", client_frame(0x81, "hi", 0, false), 1002},
      {"rsv1 without deflate", client_frame(0xC1, "hi"), 1002},
      {"rsv2", client_frame(0xA1, "hi"), 1002},
      {"rsv3", client_frame(0x91, "hi"), 1002},
      {"opcode 3", client_frame(0x83, ""), 1002},
      {"opcode 7", client_frame(0x87, ""), 1002},
      {"opcode 0xB", client_frame(0x8B, ""), 1002},
      {"opcode 0xF", client_frame(0x8F, ""), 1002},
      {"fragmented ping", client_frame(0x09, "x"), 1002},
      {"ping of 126 bytes", client_frame(0x89, std::string(126, 'x')), 1002},
      {"close of 126 bytes (16-bit form)", client_frame(0x88, std::string(126, 'x')), 1002},
      {"continuation first", client_frame(0x80, "x"), 1002},
      {"text inside a fragmented text", client_frame(0x01, "a") + client_frame(0x81, "b"), 1002},
      {"binary inside a fragmented text", client_frame(0x01, "a") + client_frame(0x82, "b"), 1002},
      {"64-bit length with top bit", len63, 1002},
      {"invalid utf-8", client_frame(0x81, "\xCE\xBA\xFF"), 1007},
      {"utf-8 truncated at message end", client_frame(0x81, "\xCE"), 1007},
      {"utf-8 across fragments, bad", client_frame(0x01, "\xED") + client_frame(0x80, "\xA0\x80"),
       1007},
  };
  for (const Case& c : cases) {
    auto out = run_whole(c.input);
    EXPECT_EQ(out.error, c.code) << c.what;
    // And the same when the input arrives one byte at a time.
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < c.input.size(); ++i) every.push_back(i);
    EXPECT_EQ(run_split(c.input, every).error, c.code) << c.what << " (byte by byte)";
  }
}

TEST(FrameDecoder, InvalidUtf8FailsBeforeTheMessageEnds) {
  // The bad byte sits in the first fragment; the message never finishes.
  std::string input = client_frame(0x01, "ok\xC0\xAF and more");
  auto out = run_whole(input);
  EXPECT_EQ(out.error, 1007);
  // Within a frame, before its payload has all arrived.
  std::string frame = client_frame(0x81, "abc\xF5" + std::string(1000, 'x'));
  auto early = run_split(frame, {8 + 4}, {});  // header (4) + key (4) + "abc\xF5"
  EXPECT_EQ(early.error, 1007);
}

TEST(FrameDecoder, MessageSizeLimit) {
  FrameDecoder::Limits limits;
  limits.max_message_size = 1000;
  EXPECT_EQ(run_whole(client_frame(0x82, std::string(1000, 'a')), limits).error, 0);
  EXPECT_EQ(run_whole(client_frame(0x82, std::string(1001, 'a')), limits).error, 1009);
  // Over fragments: 600 + 600.
  std::string two =
      client_frame(0x02, std::string(600, 'a')) + client_frame(0x80, std::string(600, 'b'));
  EXPECT_EQ(run_whole(two, limits).error, 1009);
  // The limit is seen on the header alone: a 2^62-byte frame header with no payload behind it.
  std::string huge =
      "\x82\xff\x40\x00\x00\x00\x00\x00\x00\x00"
      "abcd"s;
  auto out = run_whole(huge, limits);
  EXPECT_EQ(out.error, 1009);
  limits.max_message_size = UINT64_MAX;
  std::string max63 =
      "\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff"
      "abcd"
      "xyz";
  out = run_whole(max63, limits);
  EXPECT_EQ(out.error, 0) << "legal length; the payload is merely incomplete";
  EXPECT_FALSE(out.idle);
}

TEST(FrameDecoder, Rsv1WithDeflate) {
  FrameDecoder::Limits limits;
  limits.deflate = true;
  auto out = run_whole(client_frame(0xC1, "zz"), limits);
  ASSERT_EQ(out.error, 0);
  ASSERT_EQ(out.events, (std::vector<Event>{{"msg:text+z", "zz"}}));
  // Compressed text is not UTF-8-checked by the decoder (the inflated text is).
  EXPECT_EQ(run_whole(client_frame(0xC1, "\xFF"), limits).error, 0);
  // RSV1 on a continuation or a control frame stays an error.
  EXPECT_EQ(run_whole(client_frame(0x41, "a") + client_frame(0xC0, "b"), limits).error, 1002);
  EXPECT_EQ(run_whole(client_frame(0xC9, ""), limits).error, 1002);
}

TEST(FrameDecoder, ControlFrameSplitAcrossCallsIsGathered) {
  std::string ping = client_frame(0x89, std::string(125, 'p'));
  for (std::size_t a = 1; a < ping.size(); ++a) {
    auto out = run_split(ping, {a});
    ASSERT_EQ(out.events, (std::vector<Event>{{"ping", std::string(125, 'p')}})) << a;
  }
}

TEST(FrameDecoder, IdleOnlyBetweenMessages) {
  FrameDecoder d;
  Collect sink(d);
  std::string a = client_frame(0x01, "frag");
  d.decode(std::span<std::byte>(reinterpret_cast<std::byte*>(a.data()), a.size()), {}, sink);
  EXPECT_FALSE(d.idle()) << "a fragmented message is in progress";
  std::string b = client_frame(0x80, "ment");
  d.decode(std::span<std::byte>(reinterpret_cast<std::byte*>(b.data()), 3), {}, sink);
  EXPECT_FALSE(d.idle());
  d.decode(std::span<std::byte>(reinterpret_cast<std::byte*>(b.data()) + 3, b.size() - 3), {},
           sink);
  EXPECT_TRUE(d.idle());
  EXPECT_EQ(sink.events, (std::vector<Event>{{"msg:text", "fragment"}}));
}

TEST(FrameEncoder, HeadersMatchTheRfc) {
  std::byte h[kMaxHeaderSize];
  ASSERT_EQ(encode_header(h, Opcode::kText, 5), 2u);
  EXPECT_EQ(std::to_integer<int>(h[0]), 0x81);
  EXPECT_EQ(std::to_integer<int>(h[1]), 5);
  ASSERT_EQ(encode_header(h, Opcode::kBinary, 256), 4u);  // RFC 5.7: 256 bytes
  EXPECT_EQ(std::to_integer<int>(h[1]), 126);
  EXPECT_EQ(std::to_integer<int>(h[2]), 0x01);
  EXPECT_EQ(std::to_integer<int>(h[3]), 0x00);
  ASSERT_EQ(encode_header(h, Opcode::kBinary, 65536), 10u);  // RFC 5.7: 64 KiB
  EXPECT_EQ(std::to_integer<int>(h[1]), 127);
  EXPECT_EQ(std::to_integer<int>(h[7]), 0x01);
  EXPECT_EQ(std::to_integer<int>(h[9]), 0x00);
  ASSERT_EQ(encode_header(h, Opcode::kText, 10, false, true), 2u);
  EXPECT_EQ(std::to_integer<int>(h[0]), 0x41);
}

TEST(Mask, EveryPhaseAndLength) {
  std::mt19937 rng(3);
  for (unsigned phase = 0; phase < 4; ++phase) {
    for (std::size_t n = 0; n < 40; ++n) {
      std::vector<std::byte> data(n), orig;
      for (auto& b : data) b = static_cast<std::byte>(rng());
      orig = data;
      uint32_t key = rng();
      mask(data, key, phase);
      unsigned char k[4];
      std::memcpy(k, &key, 4);
      for (std::size_t i = 0; i < n; ++i) {
        ASSERT_EQ(data[i], orig[i] ^ static_cast<std::byte>(k[(phase + i) % 4]));
      }
    }
  }
}

// ---- Close ----

TEST(Close, Codes) {
  for (int code = 0; code < 65536; ++code) {
    bool expect = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                  (code >= 3000 && code <= 4999);
    ASSERT_EQ(valid_close_code(static_cast<uint16_t>(code)), expect) << code;
  }
}

TEST(Close, Payloads) {
  auto p = [](std::string s) { return parse_close_payload(bytes_of(s)); };
  EXPECT_EQ(p("").code, close_code::kNoStatus);
  EXPECT_EQ(p("").error, 0);
  EXPECT_EQ(p("\x03").error, 1002);
  const std::string done =
      "\x03\xe8"
      "done";  // the reason is a view into it
  auto ok = parse_close_payload(bytes_of(done));
  EXPECT_EQ(ok.code, 1000);
  EXPECT_EQ(ok.reason, "done");
  EXPECT_EQ(ok.error, 0);
  EXPECT_EQ(p("\x03\xec").error, 1002);  // 1004
  EXPECT_EQ(p("\x03\xed").error, 1002);  // 1005
  EXPECT_EQ(p("\x03\xee").error, 1002);  // 1006
  EXPECT_EQ(p("\x03\xf7").error, 1002);  // 1015
  EXPECT_EQ(p("\x0b\xb8").error, 0);     // 3000
  EXPECT_EQ(p("\x13\x87").error, 0);     // 4999
  EXPECT_EQ(p("\x13\x88").error, 1002);  // 5000
  EXPECT_EQ(p("\x03\xe8\xCE\xBA\xFF").error, 1007);
  auto built = close_payload(1001, "away");
  EXPECT_EQ(str(built), std::string("\x03\xe9"
                                    "away"));
  EXPECT_TRUE(close_payload(close_code::kNoStatus, "ignored").empty());
}

// ---- Handshake ----

TEST(Handshake, AcceptKeyFromTheRfc) {
  EXPECT_EQ(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(Handshake, ClientKeys) {
  EXPECT_TRUE(valid_client_key("dGhlIHNhbXBsZSBub25jZQ=="));
  EXPECT_FALSE(valid_client_key(""));
  EXPECT_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25jZQ"));   // no padding
  EXPECT_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25jZQ="));  // 17 bytes? wrong length
  EXPECT_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25jZQ==="));
  EXPECT_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25j*Q=="));
  EXPECT_FALSE(valid_client_key("dGhlIHNhbXBsZSBub25jZQQ="));  // 17 bytes
}

TEST(Handshake, Tokens) {
  EXPECT_TRUE(header_has_token("Upgrade", "upgrade"));
  EXPECT_TRUE(header_has_token("keep-alive, Upgrade", "upgrade"));
  EXPECT_TRUE(header_has_token("  websocket ", "websocket"));
  EXPECT_FALSE(header_has_token("upgrades", "upgrade"));
  EXPECT_FALSE(header_has_token("", "upgrade"));
}

TEST(Handshake, DeflateNegotiation) {
  auto neg = [](std::vector<std::string_view> headers) { return negotiate_deflate(headers); };
  const std::string kAnswer =
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
  // Chromium's offer.
  auto r = neg({"permessage-deflate; client_max_window_bits"});
  ASSERT_TRUE(r.accepted);
  EXPECT_EQ(r.response, kAnswer);
  EXPECT_TRUE(neg({"permessage-deflate"}).accepted);
  EXPECT_TRUE(neg({"permessage-deflate; client_max_window_bits=10"}).accepted);
  EXPECT_TRUE(neg({"permessage-deflate; client_max_window_bits=\"12\""}).accepted);
  EXPECT_TRUE(
      neg({"permessage-deflate; server_no_context_takeover; client_no_context_takeover"}).accepted);
  r = neg({"permessage-deflate; server_max_window_bits=15"});
  ASSERT_TRUE(r.accepted);
  EXPECT_EQ(r.response, kAnswer + "; server_max_window_bits=15");
  // Declined: a smaller server window, unknown or repeated parameters, bad values.
  EXPECT_FALSE(neg({"permessage-deflate; server_max_window_bits=10"}).accepted);
  EXPECT_FALSE(neg({"permessage-deflate; server_max_window_bits"}).accepted);
  EXPECT_FALSE(neg({"permessage-deflate; foo"}).accepted);
  EXPECT_FALSE(neg({"permessage-deflate; client_max_window_bits=16"}).accepted);
  EXPECT_FALSE(neg({"permessage-deflate; client_max_window_bits=7"}).accepted);
  EXPECT_FALSE(
      neg({"permessage-deflate; server_no_context_takeover; server_no_context_takeover"}).accepted);
  EXPECT_FALSE(neg({"permessage-deflate; client_no_context_takeover=1"}).accepted);
  EXPECT_FALSE(neg({"x-webkit-deflate-frame"}).accepted);
  EXPECT_FALSE(neg({}).accepted);
  // The first acceptable offer wins, across a list and across headers.
  r = neg({"permessage-deflate; server_max_window_bits=9, permessage-deflate"});
  EXPECT_TRUE(r.accepted);
  EXPECT_EQ(r.response, kAnswer);
  EXPECT_TRUE(neg({"foo", "permessage-deflate; client_max_window_bits"}).accepted);
}

// ---- Deflate ----

std::vector<std::byte> deflate_raw(std::string_view in, int window_bits, bool final_block) {
  z_stream s{};
  deflateInit2(&s, 6, Z_DEFLATED, -window_bits, 8, Z_DEFAULT_STRATEGY);
  std::vector<std::byte> out(in.size() + 1024);
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  s.avail_in = static_cast<uInt>(in.size());
  s.next_out = reinterpret_cast<Bytef*>(out.data());
  s.avail_out = static_cast<uInt>(out.size());
  deflate(&s, final_block ? Z_FINISH : Z_SYNC_FLUSH);
  out.resize(out.size() - s.avail_out);
  deflateEnd(&s);
  if (!final_block) out.resize(out.size() - 4);  // the 00 00 ff ff tail
  return out;
}

TEST(Deflate, RoundTrip) {
  Deflater deflater;
  Inflater inflater;
  std::mt19937 rng(1);
  for (std::size_t n : {0, 1, 10, 1000, 100000, 1 << 20}) {
    std::string text;
    for (std::size_t i = 0; i < n; ++i) text.push_back(static_cast<char>('a' + rng() % 4));
    std::vector<std::byte> z;
    deflater.compress(bytes_of(text), z);
    if (n > 1000) {
      EXPECT_LT(z.size(), n / 2) << "compressible text compressed";
    }
    std::vector<std::byte> back;
    ASSERT_EQ(inflater.inflate(z, 2 << 20, back), Inflater::Status::kOk) << n;
    EXPECT_EQ(str(back), text);
  }
}

TEST(Deflate, EachMessageOnItsOwn) {
  // No context takeover: the second message inflates without the first.
  Deflater deflater;
  std::vector<std::byte> a, b;
  deflater.compress(bytes_of("the same words again and again"), a);
  deflater.compress(bytes_of("the same words again and again"), b);
  EXPECT_EQ(a, b);
  Inflater inflater;
  std::vector<std::byte> out;
  ASSERT_EQ(inflater.inflate(b, 1000, out), Inflater::Status::kOk);
  EXPECT_EQ(str(out), "the same words again and again");
}

TEST(Deflate, InflatesWhatOtherWindowsAndFinalBlocksProduce) {
  Inflater inflater;
  std::string text;
  for (int i = 0; i < 5000; ++i) text += std::to_string(i % 97) + ",";
  for (int bits = 9; bits <= 15; ++bits) {
    for (bool final_block : {false, true}) {
      auto z = deflate_raw(text, bits, final_block);
      std::vector<std::byte> out;
      ASSERT_EQ(inflater.inflate(z, 1 << 20, out), Inflater::Status::kOk) << bits;
      EXPECT_EQ(str(out), text);
    }
  }
  // RFC 7692 7.2.3.1's example: "Hello" compressed.
  const unsigned char hello[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
  std::vector<std::byte> out;
  ASSERT_EQ(inflater.inflate(std::as_bytes(std::span(hello)), 100, out), Inflater::Status::kOk);
  EXPECT_EQ(str(out), "Hello");
}

TEST(Deflate, LimitsAndCorruption) {
  Inflater inflater;
  std::string zeros(1 << 20, '\0');
  auto z = deflate_raw(zeros, 15, false);
  ASSERT_LT(z.size(), 5000u) << "a compression bomb: 1 MiB from a few KB";
  std::vector<std::byte> out;
  EXPECT_EQ(inflater.inflate(z, 1000, out), Inflater::Status::kTooBig);
  EXPECT_LE(out.capacity(), std::size_t{64} << 10) << "stopped near the limit, not at 1 MiB";
  EXPECT_EQ(inflater.inflate(z, 1 << 20, out), Inflater::Status::kOk);
  EXPECT_EQ(out.size(), std::size_t{1} << 20);
  const unsigned char junk[] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x12};
  EXPECT_EQ(inflater.inflate(std::as_bytes(std::span(junk)), 100, out), Inflater::Status::kCorrupt);
  // Data after a final block.
  auto fin = deflate_raw("abc", 15, true);
  fin.push_back(std::byte{0x42});
  EXPECT_EQ(inflater.inflate(fin, 100, out), Inflater::Status::kCorrupt);
  // And the inflater still works after all that.
  auto ok = deflate_raw("fine", 15, false);
  ASSERT_EQ(inflater.inflate(ok, 100, out), Inflater::Status::kOk);
  EXPECT_EQ(str(out), "fine");
}

}  // namespace
