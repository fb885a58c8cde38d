#include "auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>

namespace push {

namespace {

// base64url without padding (RFC 4648 5, as JWTs use it) -> bytes; false on a bad character or
// length. EVP_DecodeBlock does standard base64, so translate and pad first.
bool base64url_decode(std::string_view in, std::string& out) {
  if (in.size() % 4 == 1) return false;
  std::string b64;
  b64.reserve(in.size() + 3);
  for (char c : in) {
    if (c == '-') {
      b64 += '+';
    } else if (c == '_') {
      b64 += '/';
    } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      b64 += c;
    } else {
      return false;  // padding, '+', '/', whitespace: not base64url
    }
  }
  std::size_t pad = (4 - b64.size() % 4) % 4;
  b64.append(pad, '=');
  out.resize(b64.size() / 4 * 3);
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(b64.data()),
                          static_cast<int>(b64.size()));
  if (n < 0) return false;
  out.resize(static_cast<std::size_t>(n) - pad);
  return true;
}

std::string base64url_encode(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest, &len);
  return std::string(reinterpret_cast<const char*>(digest), len);
}

}  // namespace

const char* to_string(AuthError e) {
  switch (e) {
    case AuthError::kNone:
      return "none";
    case AuthError::kMissing:
      return "missing";
    case AuthError::kMalformed:
      return "malformed";
    case AuthError::kAlgorithm:
      return "algorithm";
    case AuthError::kSignature:
      return "signature";
    case AuthError::kExpired:
      return "expired";
    case AuthError::kForbidden:
      return "forbidden";
  }
  return "?";
}

bool Grant::allows(std::string_view topic) const {
  for (const std::string& t : exact) {
    if (t == topic) return true;
  }
  for (const std::string& p : prefixes) {
    if (topic.substr(0, p.size()) == p) return true;
  }
  return false;
}

AuthError Auth::verify(std::string_view token, int64_t now, Grant& grant) const {
  if (token.empty()) return AuthError::kMissing;
  if (token.size() > 8192) return AuthError::kMalformed;
  std::size_t d1 = token.find('.');
  std::size_t d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos) {
    return AuthError::kMalformed;
  }
  std::string header, claims, signature;
  if (!base64url_decode(token.substr(0, d1), header) ||
      !base64url_decode(token.substr(d1 + 1, d2 - d1 - 1), claims) ||
      !base64url_decode(token.substr(d2 + 1), signature)) {
    return AuthError::kMalformed;
  }
  nlohmann::json h = nlohmann::json::parse(header, nullptr, false);
  if (h.is_discarded() || !h.is_object()) return AuthError::kMalformed;
  auto alg = h.find("alg");
  if (alg == h.end() || !alg->is_string() || *alg != "HS256") return AuthError::kAlgorithm;
  auto typ = h.find("typ");
  if (typ != h.end() && (!typ->is_string() || (*typ != "JWT" && *typ != "jwt"))) {
    return AuthError::kMalformed;
  }
  // The signature first: nothing in the claims is believed before it matches.
  std::string expected = hmac_sha256(subscribe_secret_, token.substr(0, d2));
  if (signature.size() != expected.size() ||
      CRYPTO_memcmp(signature.data(), expected.data(), expected.size()) != 0) {
    return AuthError::kSignature;
  }
  nlohmann::json c = nlohmann::json::parse(claims, nullptr, false);
  if (c.is_discarded() || !c.is_object()) return AuthError::kMalformed;
  auto exp = c.find("exp");
  if (exp == c.end() || !exp->is_number()) return AuthError::kMalformed;
  auto number = [](const nlohmann::json& v) {
    return v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(v.get<double>());
  };
  grant = Grant{};
  grant.expires = number(*exp);
  if (grant.expires <= now) return AuthError::kExpired;
  auto nbf = c.find("nbf");
  if (nbf != c.end()) {
    if (!nbf->is_number()) return AuthError::kMalformed;
    if (number(*nbf) > now) return AuthError::kExpired;
  }
  auto topics = c.find("topics");
  if (topics == c.end() || !topics->is_array()) return AuthError::kMalformed;
  for (const auto& t : *topics) {
    if (!t.is_string()) return AuthError::kMalformed;
    std::string s = t.get<std::string>();
    if (!s.empty() && s.back() == '*') {
      s.pop_back();
      grant.prefixes.push_back(std::move(s));
    } else {
      grant.exact.push_back(std::move(s));
    }
  }
  auto sub = c.find("sub");
  if (sub != c.end() && sub->is_string()) grant.subject = sub->get<std::string>();
  return AuthError::kNone;
}

bool Auth::publish_secret_matches(std::string_view token) const {
  if (publish_secret_.empty() || token.size() != publish_secret_.size()) return false;
  return CRYPTO_memcmp(token.data(), publish_secret_.data(), token.size()) == 0;
}

std::string Auth::sign(std::string_view claims_json, std::string_view secret) {
  std::string signing_input =
      base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "." + base64url_encode(claims_json);
  return signing_input + "." + base64url_encode(hmac_sha256(secret, signing_input));
}

// ---- ConnectRate ----

bool ConnectRate::take(Bucket& b, double rate, int64_t now) {
  double elapsed = static_cast<double>(now - b.stamp_ns) / 1e9;
  b.tokens = std::min(rate, b.tokens + elapsed * rate);
  b.stamp_ns = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

ConnectRate::Verdict ConnectRate::admit(std::string_view source) {
  if (overall_ <= 0 && (per_source_ <= 0 || source.empty())) return Verdict::kAdmit;
  int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count();
  std::lock_guard lock(mutex_);
  if (!started_) {
    all_ = Bucket{overall_, now};
    started_ = true;
  }
  if (per_source_ > 0 && !source.empty()) {
    if (now - swept_ns_ > 1'000'000'000) {
      // A source quiet for a second has a full bucket again: forget it.
      for (auto it = sources_.begin(); it != sources_.end();) {
        it = now - it->second.stamp_ns > 1'000'000'000 ? sources_.erase(it) : std::next(it);
      }
      swept_ns_ = now;
    }
    auto it = sources_.find(std::string(source));
    if (it == sources_.end() && sources_.size() < max_sources_) {
      it = sources_.emplace(std::string(source), Bucket{per_source_, now}).first;
    }
    if (it != sources_.end() && !take(it->second, per_source_, now)) return Verdict::kSource;
  }
  if (overall_ > 0 && !take(all_, overall_, now)) return Verdict::kOverall;
  return Verdict::kAdmit;
}

}  // namespace push
