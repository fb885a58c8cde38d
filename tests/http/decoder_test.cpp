// The request decoder on its own (no sockets): what each input gives, and that the outcome does
// not depend on how the bytes are split into receives.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "http/decoder.hpp"

namespace {

using myriad::http::Limits;
namespace detail = myriad::http::detail;

class VectorStore final : public detail::Store {
 public:
  explicit VectorStore(std::size_t cap = 1 << 22) : cap_(cap) {}
  ~VectorStore() { delete partial_; }
  std::span<const std::byte> spill() const override { return spill_; }
  bool spill_append(std::span<const std::byte> d) override {
    if (spill_.size() + d.size() > cap_) return false;
    spill_.insert(spill_.end(), d.begin(), d.end());
    return true;
  }
  void spill_consume(std::size_t n) override { spill_.erase(spill_.begin(), spill_.begin() + n); }
  detail::Partial* partial() const override { return partial_; }
  void set_partial(detail::Partial* p) override { partial_ = p; }

 private:
  std::size_t cap_;
  std::vector<std::byte> spill_;
  detail::Partial* partial_ = nullptr;
};

// Records every request as one line, and the outcome.
class Recorder final : public detail::Sink {
 public:
  bool on_request(const detail::Message& m) override {
    std::string line = std::string(m.method) + " " + std::string(m.target) + " 1." +
                       std::to_string(m.minor) + (m.keep_alive ? " ka" : " close") +
                       (m.upgrade ? " upgrade" : "");
    for (const auto& h : m.headers) {
      line += " [" + std::string(h.name) + "=" + std::string(h.value) + "]";
    }
    line += " body=" + std::string(m.body);
    requests.push_back(line);
    return stop_after == 0 || static_cast<int>(requests.size()) < stop_after;
  }
  void on_continue() override { ++continues; }
  std::vector<std::string> requests;
  int continues = 0;
  int stop_after = 0;
};

struct Outcome {
  std::vector<std::string> requests;
  int status = 0;  // the error's, 0 if none
  bool partial = false;
  std::size_t spilled = 0;
  int continues = 0;
  std::string reason;
};

// Feeds `in` in pieces at the given cut points.
Outcome decode(const std::string& in, std::vector<std::size_t> cuts = {}, Limits limits = {}) {
  detail::Decoder decoder(limits);
  VectorStore store;
  Recorder sink;
  Outcome out;
  cuts.push_back(in.size());
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    auto piece = std::as_bytes(std::span(in.data() + from, cut - from));
    from = cut;
    detail::Result r = decoder.feed(store, piece, sink);
    if (r.kind == detail::Result::kError) {
      out.status = r.status;
      out.reason = r.reason ? r.reason : "";
      break;
    }
    EXPECT_EQ(r.kind, detail::Result::kNeedMore);
  }
  out.requests = sink.requests;
  out.partial = store.partial() != nullptr;
  out.spilled = store.spill().size();
  out.continues = sink.continues;
  return out;
}

// Every split into two pieces, and byte by byte, must give what the whole gives.
void expect_split_invariant(const std::string& in, Limits limits = {}) {
  Outcome whole = decode(in, {}, limits);
  for (std::size_t cut = 1; cut < in.size(); ++cut) {
    Outcome split = decode(in, {cut}, limits);
    ASSERT_EQ(split.requests, whole.requests) << "cut at " << cut;
    ASSERT_EQ(split.status, whole.status) << "cut at " << cut << " " << split.reason;
    ASSERT_EQ(split.partial, whole.partial) << "cut at " << cut;
  }
  std::vector<std::size_t> every;
  for (std::size_t i = 1; i < in.size(); ++i) every.push_back(i);
  Outcome bytes = decode(in, every, limits);
  EXPECT_EQ(bytes.requests, whole.requests);
  EXPECT_EQ(bytes.status, whole.status) << bytes.reason;
}

const std::string kGet = "GET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-Thing:  padded \r\n\r\n";

TEST(HttpDecoder, ParsesARequestInPlace) {
  Outcome o = decode(kGet);
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0], "GET /a?x=1 1.1 ka [Host=h] [X-Thing=padded] body=");
  EXPECT_FALSE(o.partial);
  EXPECT_EQ(o.spilled, 0u);
}

TEST(HttpDecoder, PipelinedRequestsComeInOrderWhateverTheSplits) {
  std::string in = kGet + "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" +
                   "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n" +
                   "GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  Outcome o = decode(in);
  ASSERT_EQ(o.status, 0) << o.reason;
  ASSERT_EQ(o.requests.size(), 4u);
  EXPECT_EQ(o.requests[1], "POST /p 1.1 ka [Host=h] [Content-Length=5] body=hello");
  // The trailer field is not among the headers.
  EXPECT_EQ(o.requests[2], "POST /c 1.1 ka [Host=h] [Transfer-Encoding=chunked] body=abcde");
  EXPECT_EQ(o.requests[3], "GET /last 1.1 close [Host=h] [Connection=close] body=");
  expect_split_invariant(in);
}

TEST(HttpDecoder, AnIncompleteRequestLeavesItsBytesAndStateUntilItCompletes) {
  Outcome o = decode(kGet.substr(0, 20));
  EXPECT_TRUE(o.partial);
  EXPECT_EQ(o.spilled, 20u);
  EXPECT_TRUE(o.requests.empty());
  // Empty lines between requests leave nothing behind.
  Outcome crlf = decode(kGet + "\r\n\r\n");
  EXPECT_FALSE(crlf.partial);
  EXPECT_EQ(crlf.spilled, 0u);
  EXPECT_EQ(crlf.requests.size(), 1u);
}

TEST(HttpDecoder, StopsWhereTheSinkSaysAndReportsWhere) {
  detail::Decoder decoder(Limits{});
  VectorStore store;
  Recorder sink;
  sink.stop_after = 1;
  std::string in = "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nFRAMES";
  detail::Result r = decoder.feed(store, std::as_bytes(std::span(in.data(), in.size())), sink);
  ASSERT_EQ(r.kind, detail::Result::kStopped);
  EXPECT_EQ(in.substr(r.consumed), "FRAMES");
  ASSERT_EQ(sink.requests.size(), 1u);
  EXPECT_NE(sink.requests[0].find(" upgrade "), std::string::npos);
  // The same when the head came in two receives: the rest is still in the last input.
  detail::Decoder d2(Limits{});
  VectorStore s2;
  Recorder k2;
  k2.stop_after = 1;
  std::string a = in.substr(0, 10), b = in.substr(10);
  EXPECT_EQ(d2.feed(s2, std::as_bytes(std::span(a.data(), a.size())), k2).kind,
            detail::Result::kNeedMore);
  detail::Result r2 = d2.feed(s2, std::as_bytes(std::span(b.data(), b.size())), k2);
  ASSERT_EQ(r2.kind, detail::Result::kStopped);
  EXPECT_EQ(b.substr(r2.consumed), "FRAMES");
  EXPECT_EQ(s2.spill().size(), 0u);
  EXPECT_EQ(s2.partial(), nullptr);
}

struct Bad {
  const char* name;
  std::string input;
  int status;
};

class HttpDecoderBad : public ::testing::TestWithParam<Bad> {};

TEST_P(HttpDecoderBad, GetsItsStatusWhateverTheSplits) {
  const Bad& bad = GetParam();
  Limits limits;
  limits.max_header_bytes = 256;
  limits.max_headers = 8;
  limits.max_body_bytes = 64;
  Outcome o = decode(bad.input, {}, limits);
  EXPECT_EQ(o.status, bad.status) << o.reason;
  EXPECT_FALSE(o.partial);
  EXPECT_EQ(o.spilled, 0u);
  expect_split_invariant(bad.input, limits);
}

const std::string kH = "Host: h\r\n";
INSTANTIATE_TEST_SUITE_P(
    Inputs, HttpDecoderBad,
    ::testing::Values(
        Bad{"HeadOverLimit", "GET / HTTP/1.1\r\n" + kH + "X: " + std::string(300, 'a') + "\r\n\r\n",
            431},
        Bad{"EndlessHeaders",
            "GET / HTTP/1.1\r\n" + kH +
                [] {
                  std::string s;
                  for (int i = 0; i < 40; ++i) s += "A" + std::to_string(i) + ": b\r\n";
                  return s;
                }(),
            431},
        Bad{"TooManyHeaders",
            "GET / HTTP/1.1\r\n" + kH + "a: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\n" +
                "e: 1\r\nf: 1\r\ng: 1\r\nh: 1\r\n\r\n",
            431},
        Bad{"ContentLengthOverLimit", "POST / HTTP/1.1\r\n" + kH + "Content-Length: 65\r\n\r\n",
            413},
        Bad{"ChunkedOverLimit",
            "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: chunked\r\n\r\n20\r\n" +
                std::string(32, 'x') + "\r\n21\r\n",
            413},
        Bad{"ChunkFramingOverLimit",
            "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: chunked\r\n\r\n" +
                [] {
                  std::string s;
                  for (int i = 0; i < 60; ++i) s += "1;e\r\nx\r\n";
                  return s;
                }(),
            413},
        Bad{"ChunkSizeOverflow",
            "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\n",
            400},
        Bad{"ChunkSizeHuge",
            "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
            413},
        Bad{"ChunkSizeNotHex",
            "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        Bad{"ContentLengthAndChunked",
            "POST / HTTP/1.1\r\n" + kH +
                "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                "0\r\n\r\n",
            400},
        Bad{"TwoDifferentContentLengths",
            "POST / HTTP/1.1\r\n" + kH + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
        Bad{"TwoEqualContentLengths",
            "POST / HTTP/1.1\r\n" + kH + "Content-Length: 2\r\nContent-Length: 2\r\n\r\nab", 400},
        Bad{"NegativeContentLength", "POST / HTTP/1.1\r\n" + kH + "Content-Length: -1\r\n\r\n",
            400},
        Bad{"TransferEncodingNotChunked",
            "POST / HTTP/1.1\r\n" + kH + "Transfer-Encoding: gzip\r\n\r\nab", 400},
        Bad{"BareLF", "GET / HTTP/1.1\n" + std::string("Host: h\n\n"), 400},
        Bad{"BareCR", "GET / HTTP/1.1\rHost: h\r\n\r\n", 400},
        Bad{"ObsFold", "GET / HTTP/1.1\r\n" + kH + "X: a\r\n b\r\n\r\n", 400},
        Bad{"ObsFoldAfterEmptyValue", "GET / HTTP/1.1\r\n" + kH + "X:\r\n b\r\n\r\n", 400},
        Bad{"EmptyHeaderName", "GET / HTTP/1.1\r\n" + kH + ": v\r\n\r\n", 400},
        Bad{"NoVersion", "GET /\r\n" + kH + "\r\n", 400},
        Bad{"SpaceBeforeColon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
        Bad{"ControlCharInValue",
            "GET / HTTP/1.1\r\n" + kH +
                "X: a\x01"
                "b\r\n\r\n",
            400},
        Bad{"NoHost", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400},
        Bad{"TwoHosts", "GET / HTTP/1.1\r\n" + kH + kH + "\r\n", 400},
        Bad{"Garbage", std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11), 400},
        Bad{"Http2", "GET / HTTP/2.0\r\n" + kH + "\r\n", 505},
        Bad{"Http12", "GET / HTTP/1.2\r\n" + kH + "\r\n", 505},
        Bad{"Http09", "GET / HTTP/0.9\r\n" + kH + "\r\n", 505},
        Bad{"Connect", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501},
        Bad{"UnknownExpectation", "POST / HTTP/1.1\r\n" + kH + "Expect: magic\r\n\r\n", 417}),
    [](const ::testing::TestParamInfo<Bad>& info) { return std::string(info.param.name); });

TEST(HttpDecoder, Http10WithoutHostIsFine) {
  Outcome o = decode("GET / HTTP/1.0\r\n\r\n");
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0], "GET / 1.0 close body=");
}

TEST(HttpDecoder, ContinueIsAskedForOnlyWhileTheBodyIsMissing) {
  std::string head =
      "POST / HTTP/1.1\r\n" + kH + "Expect: 100-continue\r\nContent-Length: 4\r\n\r\n";
  EXPECT_EQ(decode(head).continues, 1);               // head alone: the client waits
  EXPECT_EQ(decode(head + "body").continues, 0);      // the body came with it
  EXPECT_EQ(decode(head, {10}).continues, 1);         // the head came in two pieces
  EXPECT_EQ(decode(head + "bo", {10}).continues, 1);  // and a part of the body
  Outcome done = decode(head + "body", {10, head.size()});
  EXPECT_EQ(done.continues, 1);
  ASSERT_EQ(done.requests.size(), 1u);
  EXPECT_NE(done.requests[0].find("body=body"), std::string::npos);
}

TEST(HttpDecoder, LimitsAreExactAtTheBoundary) {
  Limits limits;
  std::string head = "GET / HTTP/1.1\r\n" + kH + "\r\n";
  limits.max_header_bytes = head.size();
  EXPECT_EQ(decode(head, {}, limits).status, 0);
  limits.max_header_bytes = head.size() - 1;
  EXPECT_EQ(decode(head, {}, limits).status, 431);
  limits = {};
  std::string post = "POST / HTTP/1.1\r\n" + kH + "Content-Length: 10\r\n\r\n0123456789";
  limits.max_body_bytes = 10;
  Outcome ok = decode(post, {}, limits);
  EXPECT_EQ(ok.status, 0) << ok.reason;
  EXPECT_EQ(ok.requests.size(), 1u);
  limits.max_body_bytes = 9;
  EXPECT_EQ(decode(post, {}, limits).status, 413);
}

}  // namespace
