// Fuzzes the HTTP request path: arbitrary bytes, cut into arbitrary receives, through the
// decoder the server runs (src/http/decoder.cpp, llhttp underneath).
//
// Input: byte 0 picks the limits, byte 1 seeds the cuts, the rest is the byte stream.
// Invariants checked on every input:
//  - the outcome (every request, in order, with its method, target, headers and body, and the
//    final error status or "needs more") is the same whole, cut at random, and byte by byte;
//  - every request handed out is within the limits (header count, body bytes), has a method
//    and a target, and is HTTP/1.0 or 1.1;
//  - what is kept between receives never passes max_header_bytes + max_body_bytes, and after
//    an error nothing is kept (no Partial, empty spill);
//  - under AddressSanitizer: no overflow, no leak (the Partial is freed on every path).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "http/decoder.hpp"

namespace {

namespace detail = myriad::http::detail;
using myriad::http::Limits;

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

class Store final : public detail::Store {
 public:
  ~Store() { delete partial_; }
  std::span<const std::byte> spill() const override { return spill_; }
  bool spill_append(std::span<const std::byte> d) override {
    spill_.insert(spill_.end(), d.begin(), d.end());
    return true;
  }
  void spill_consume(std::size_t n) override {
    if (n > spill_.size()) violated("spill_consume past the spill");
    spill_.erase(spill_.begin(), spill_.begin() + static_cast<std::ptrdiff_t>(n));
  }
  detail::Partial* partial() const override { return partial_; }
  void set_partial(detail::Partial* p) override {
    if (p != nullptr && partial_ != nullptr) violated("a second Partial over the first");
    partial_ = p;
  }

 private:
  std::vector<std::byte> spill_;
  detail::Partial* partial_ = nullptr;
};

class Sink final : public detail::Sink {
 public:
  explicit Sink(const Limits& l) : limits_(l) {}
  bool on_request(const detail::Message& m) override {
    if (m.headers.size() > limits_.max_headers) violated("more headers than max_headers");
    if (m.body.size() > limits_.max_body_bytes) violated("body over max_body_bytes");
    if (m.method.empty() || m.target.empty()) violated("no method or target");
    if (m.minor > 1) violated("a version other than 1.0/1.1");
    std::string line(m.method);
    line += ' ';
    line += m.target;
    line += m.keep_alive ? " ka" : " close";
    line += m.upgrade ? " up" : "";
    for (const auto& h : m.headers) {
      if (h.name.empty()) violated("an empty header name");
      line += '\n';
      line += h.name;
      line += ':';
      line += h.value;
    }
    line += "\nbody:";
    line += m.body;
    log.push_back(std::move(line));
    return true;
  }
  void on_continue() override { ++continues; }
  std::vector<std::string> log;
  int continues = 0;

 private:
  Limits limits_;
};

struct Outcome {
  std::vector<std::string> log;
  int status = 0;
  bool partial = false;
  bool operator==(const Outcome&) const = default;
};

// Feeds data in pieces ending at cuts (ascending, the last one data.size()).
Outcome run(const Limits& limits, std::span<const std::byte> data,
            const std::vector<std::size_t>& cuts) {
  detail::Decoder decoder(limits);
  Store store;
  Sink sink(limits);
  Outcome out;
  std::size_t from = 0;
  for (std::size_t cut : cuts) {
    detail::Result r = decoder.feed(store, data.subspan(from, cut - from), sink);
    from = cut;
    if (r.kind == detail::Result::kError) {
      if (store.partial() != nullptr || !store.spill().empty())
        violated("state kept after an error");
      if (r.status < 400 || r.status > 599) violated("an error that is not 4xx/5xx");
      out.status = r.status;
      break;
    }
    if (r.kind != detail::Result::kNeedMore) violated("stopped though the sink never stops");
    if (store.spill().size() > limits.max_header_bytes + limits.max_body_bytes) {
      violated("spill past max_header_bytes + max_body_bytes");
    }
    if ((store.partial() == nullptr) != store.spill().empty()) violated("spill without Partial");
  }
  out.log = std::move(sink.log);
  out.partial = store.partial() != nullptr;
  if (sink.continues > static_cast<int>(out.log.size()) + 1) violated("100-continue too often");
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 2) return 0;
  Limits limits;
  static constexpr std::size_t kHeader[] = {48, 200, 1024, 16384};
  static constexpr std::size_t kBody[] = {0, 16, 300, 65536};
  static constexpr std::size_t kHeaders[] = {2, 8, 100, 100};
  limits.max_header_bytes = kHeader[bytes[0] & 3];
  limits.max_body_bytes = kBody[(bytes[0] >> 2) & 3];
  limits.max_headers = kHeaders[(bytes[0] >> 4) & 3];
  uint32_t seed = bytes[1] * 2654435761u + 1;
  auto data = std::as_bytes(std::span(bytes + 2, size - 2));

  Outcome whole = run(limits, data, {data.size()});

  std::vector<std::size_t> cuts;
  for (std::size_t at = 0;;) {
    seed = seed * 1103515245u + 12345u;
    std::size_t step = 1 + (seed >> 16) % 64;
    at += step;
    if (at >= data.size()) break;
    cuts.push_back(at);
  }
  cuts.push_back(data.size());
  if (!(run(limits, data, cuts) == whole)) violated("random cuts changed the outcome");

  if (data.size() <= 1024) {
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i <= data.size(); ++i) every.push_back(i);
    if (!(run(limits, data, every) == whole)) violated("byte-by-byte feeding changed the outcome");
  }
  return 0;
}
