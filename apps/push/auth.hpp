// Who may subscribe and publish, and how fast new connections may come.
//
// Subscribing: with a subscribe secret set, a subscriber shows a JWT (RFC 7519) signed with
// HS256 (HMAC-SHA256, OpenSSL's libcrypto) whose claims name the topics it may read and when it
// expires: {"exp": <seconds since 1970>, "topics": ["status/42", "dev/*", "*"], "sub": "who"}.
// A topics entry ending in '*' is a prefix. exp is required; nbf is honoured when present. The
// header must say {"alg":"HS256"} (and "typ":"JWT" if it says anything), so a token claiming
// "none" or another algorithm is refused. JSON is read by nlohmann::json (Debian's
// nlohmann-json3-dev).
//
// Publishing: with a publish secret set, a publisher shows it as a bearer token (HTTP
// Authorization: Bearer, or the TCP AUTH command); publishes on a listener bound to a loopback
// address need nothing.
//
// Threads: Auth is immutable after construction (any thread). ConnectRate is thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace push {

// What a valid token allows.
struct Grant {
  std::string subject;
  int64_t expires = 0;                // seconds since 1970
  std::vector<std::string> exact;     // topics
  std::vector<std::string> prefixes;  // "dev/" from "dev/*"; "" from "*"
  bool allows(std::string_view topic) const;
};

enum class AuthError : uint8_t {
  kNone,
  kMissing,    // no token where one is needed
  kMalformed,  // not three base64url parts, not JSON, wrong types
  kAlgorithm,  // not HS256
  kSignature,  // the signature does not match
  kExpired,    // exp passed (or nbf not reached)
  kForbidden,  // a valid token that does not name this topic
};
constexpr unsigned kAuthErrors = 7;
const char* to_string(AuthError e);

class Auth {
 public:
  Auth(std::string subscribe_secret, std::string publish_secret)
      : subscribe_secret_(std::move(subscribe_secret)),
        publish_secret_(std::move(publish_secret)) {}

  bool subscribe_needs_token() const { return !subscribe_secret_.empty(); }
  bool has_publish_secret() const { return !publish_secret_.empty(); }
  // Checks a JWT; fills grant when valid. now: seconds since 1970.
  AuthError verify(std::string_view token, int64_t now, Grant& grant) const;
  // Whether `token` is the publish secret (compared in constant time).
  bool publish_secret_matches(std::string_view token) const;

  // HS256-signs claims (a JSON object) with secret: for tests and tools (myriad-push
  // --make-token).
  static std::string sign(std::string_view claims_json, std::string_view secret);

 private:
  std::string subscribe_secret_;
  std::string publish_secret_;
};

// New connections per second, overall and per source, as token buckets (burst = one second's
// worth). 0 disables a limit. A source is what the caller names (an address from a trusted
// proxy header); sources are forgotten after a quiet second, and at most max_sources are
// tracked (past it, new sources share the overall limit only).
class ConnectRate {
 public:
  ConnectRate(double overall_per_s, double per_source_per_s, std::size_t max_sources = 65536)
      : overall_(overall_per_s), per_source_(per_source_per_s), max_sources_(max_sources) {}
  enum class Verdict : uint8_t { kAdmit, kOverall, kSource };
  Verdict admit(std::string_view source);
  bool limits_sources() const { return per_source_ > 0; }

 private:
  struct Bucket {
    double tokens = 0;
    int64_t stamp_ns = 0;
  };
  static bool take(Bucket& b, double rate, int64_t now);
  double overall_;
  double per_source_;
  std::size_t max_sources_;
  std::mutex mutex_;
  Bucket all_;
  bool started_ = false;
  std::unordered_map<std::string, Bucket> sources_;
  int64_t swept_ns_ = 0;
};

}  // namespace push
