// Measures the HTTP/1.1 request parsers Debian packages, to choose the one src/http uses.
// Not part of the build: docs/PROTOCOLS.md gives the command (callgrind instruction counts are
// deterministic, unlike time on a shared machine) and the figures it printed.
//
// Each parser records what src/http needs (method, target, header name/value spans, body
// spans) and nothing else, so the figures compare parsing, not storage. Beast's stock
// request_parser<empty_body> (which stores every field in its own container) is measured too.
#include <utility>  // Boost 1.74 in C++20 with GCC 12 needs it before Asio/Beast

#include <boost/beast/http.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "parsers.hpp"

namespace {

// A browser-like GET (Chromium's headers, 8 of them) and wrk's minimal one.
const std::string kBrowser =
    "GET /static/app.js?v=3 HTTP/1.1\r\n"
    "Host: 127.0.0.1:8080\r\n"
    "Connection: keep-alive\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36\r\n"
    "Accept: */*\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "Referer: http://127.0.0.1:8080/\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "\r\n";
const std::string kWrk = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

// ---- Boost.Beast 1.74 (libboost-dev), a basic_parser that only records spans
namespace http = boost::beast::http;
class SpanParser final : public http::basic_parser<true> {
 public:
  Spans* out = nullptr;

 private:
  void on_request_impl(http::verb, boost::beast::string_view, boost::beast::string_view target, int,
                       boost::beast::error_code&) override {
    out->bytes += target.size();
  }
  void on_response_impl(int, boost::beast::string_view, int, boost::beast::error_code&) override {}
  void on_field_impl(http::field, boost::beast::string_view name, boost::beast::string_view value,
                     boost::beast::error_code&) override {
    ++out->fields;
    out->bytes += name.size() + value.size();
  }
  void on_header_impl(boost::beast::error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&,
                         boost::beast::error_code&) override {}
  std::size_t on_body_impl(boost::beast::string_view body, boost::beast::error_code&) override {
    out->bytes += body.size();
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t, boost::beast::string_view,
                            boost::beast::error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view body,
                                 boost::beast::error_code&) override {
    out->bytes += body.size();
    return body.size();
  }
  void on_finish_impl(boost::beast::error_code&) override { out->complete = true; }
};

__attribute__((noinline)) bool parse_beast(std::string_view in, Spans& out) {
  SpanParser p;
  p.out = &out;
  boost::beast::error_code ec;
  p.eager(true);
  std::size_t n = p.put(boost::asio::buffer(in.data(), in.size()), ec);
  return !ec && n == in.size() && out.complete;
}

__attribute__((noinline)) bool parse_beast_stock(std::string_view in, Spans& out) {
  http::request_parser<http::empty_body> p;
  boost::beast::error_code ec;
  std::size_t n = p.put(boost::asio::buffer(in.data(), in.size()), ec);
  out.complete = p.is_done();
  for (auto const& f : p.get()) out.bytes += f.name_string().size() + f.value().size();
  return !ec && n == in.size() && out.complete;
}

using Parse = bool (*)(std::string_view, Spans&);

// Parses `in` fed in pieces of `step` bytes the way each parser wants it across receive
// boundaries: http_parser and llhttp keep their own state and take each new piece alone;
// Beast's put() returns 0 until a whole header is present, so the caller keeps the unparsed
// bytes and re-presents them (its own skip_ counter avoids rescanning from the start).
bool split_beast(std::string_view in, std::size_t step, Spans& out) {
  SpanParser p;
  p.out = &out;
  p.eager(true);
  std::size_t used = 0;
  for (std::size_t have = step; used < in.size(); have += step) {
    have = std::min(have, in.size());
    boost::beast::error_code ec;
    used += p.put(boost::asio::buffer(in.data() + used, have - used), ec);
    if (ec && ec != http::error::need_more) return false;
    if (have == in.size() && !out.complete && used < in.size() && ec) return false;
  }
  return out.complete;
}

struct Probe {
  const char* what;
  std::string request;
};

// Whether each parser accepts inputs src/http must refuse (a 400), so we know what the
// parser does for us and what we must check ourselves.
void probe(const char* name, Parse parse) {
  const Probe probes[] = {
      {"bare LF line ends", "GET / HTTP/1.1\nHost: a\n\n"},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n"},
      {"CL + TE",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: "
       "chunked\r\n\r\n0\r\n\r\n"},
      {"two differing CL",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: "
       "2\r\n\r\nab"},
      {"chunk size overflow",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
       "fffffffffffffffff1\r\nx\r\n0\r\n\r\n"},
      {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n"},
      {"HTTP/2.0 version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n"},
  };
  std::printf("%-18s", name);
  for (const Probe& p : probes) {
    Spans s;
    std::printf(" | %s: %s", p.what, parse(p.request, s) ? "accepted" : "refused");
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  // usage: choose probe | choose PARSER browser|wrk ITERATIONS | choose PARSER split STEP ITER
  if (argc >= 2 && std::strcmp(argv[1], "probe") == 0) {
    probe("http_parser", parse_http_parser);
    probe("llhttp", parse_llhttp);
    probe("beast", parse_beast);
    std::printf(
        "sizeof: http_parser %zu, llhttp_t %zu, beast basic_parser %zu, "
        "beast request_parser<empty_body> %zu\n",
        http_parser_state_size(), llhttp_state_size(), sizeof(SpanParser),
        sizeof(http::request_parser<http::empty_body>));
    return 0;
  }
  if (argc < 4) return 2;
  std::string_view which = argv[1];
  const std::string& in = std::string_view(argv[2]) == "wrk" ? kWrk : kBrowser;
  bool split = std::string_view(argv[2]) == "split";
  std::size_t step = split ? std::strtoul(argv[3], nullptr, 10) : 0;
  long iterations = std::strtol(argv[split ? 4 : 3], nullptr, 10);
  Parse parse = which == "http_parser" ? parse_http_parser
                : which == "llhttp"    ? parse_llhttp
                : which == "beast"     ? parse_beast
                                       : parse_beast_stock;
  std::size_t sum = 0;
  for (long i = 0; i < iterations; ++i) {
    Spans s;
    bool ok;
    if (split) {
      ok = which == "http_parser" ? split_http_parser(kBrowser, step, s)
           : which == "llhttp"    ? split_llhttp(kBrowser, step, s)
                                  : split_beast(kBrowser, step, s);
    } else {
      ok = parse(in, s);
    }
    if (!ok) {
      std::fprintf(stderr, "%s failed\n", argv[1]);
      return 1;
    }
    sum += s.bytes;
  }
  std::printf("%s: %ld parses, %zu span bytes\n", argv[1], iterations, sum);
  return 0;
}
