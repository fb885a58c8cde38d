// The opening handshake's pure parts (RFC 6455 4.2.1-4.2.2) and permessage-deflate's offer
// negotiation (RFC 7692 5 and 7.1). SHA-1 and base64 come from OpenSSL's libcrypto.
#include <myriad/ws_codec.hpp>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cctype>
#include <string>

namespace myriad::ws {

namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool is_base64(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/';
}

// RFC 7230 tchar.
bool is_tchar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_tchar(c)) return false;
  }
  return true;
}

// Splits s at sep, except inside double-quoted strings.
template <class F>
void split_outside_quotes(std::string_view s, char sep, F&& f) {
  bool quoted = false;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quoted && c == '\\') {
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == sep && !quoted) {
      f(trim(s.substr(start, i - start)));
      start = i + 1;
    }
  }
  f(trim(s.substr(start)));
}

// A window-bits value: 8..15, as a token or a quoted string (RFC 7692 7.1.2.1 and 7.1.2.2).
std::optional<int> window_bits(std::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  if (v.size() == 1 && v[0] >= '8' && v[0] <= '9') return v[0] - '0';
  if (v.size() == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + (v[1] - '0');
  return std::nullopt;
}

// One permessage-deflate offer's parameters; returns the response, or nothing to decline.
std::optional<std::string> accept_offer(std::string_view params) {
  bool seen_server_nct = false, seen_client_nct = false, seen_server_bits = false,
       seen_client_bits = false;
  bool ok = true;
  split_outside_quotes(params, ';', [&](std::string_view param) {
    if (!ok || param.empty()) return;
    std::string_view name = param, value;
    bool has_value = false;
    if (auto eq = param.find('='); eq != std::string_view::npos) {
      name = trim(param.substr(0, eq));
      value = trim(param.substr(eq + 1));
      has_value = true;
    }
    auto once = [&](bool& seen) {
      if (seen) ok = false;  // a parameter given twice makes the offer invalid (7.1)
      seen = true;
    };
    if (iequals(name, "server_no_context_takeover")) {
      once(seen_server_nct);
      if (has_value) ok = false;
    } else if (iequals(name, "client_no_context_takeover")) {
      once(seen_client_nct);
      if (has_value) ok = false;
    } else if (iequals(name, "server_max_window_bits")) {
      once(seen_server_bits);
      // The shared compressor uses the full 32 KiB window; it cannot promise a smaller one.
      auto bits = has_value ? window_bits(value) : std::nullopt;
      if (!bits || *bits != 15) ok = false;
    } else if (iequals(name, "client_max_window_bits")) {
      once(seen_client_bits);
      if (has_value && !window_bits(value)) ok = false;
    } else {
      ok = false;
    }
  });
  if (!ok) return std::nullopt;
  std::string response =
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
  if (seen_server_bits) response += "; server_max_window_bits=15";
  return response;
}

}  // namespace

std::string accept_key(std::string_view client_key) {
  std::string input(client_key);
  input += kGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  unsigned char encoded[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  int n = EVP_EncodeBlock(encoded, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(n));
}

bool valid_client_key(std::string_view key) {
  // 16 bytes encode to 22 base64 characters and two '=' of padding.
  if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
  for (std::size_t i = 0; i < 22; ++i) {
    if (!is_base64(key[i])) return false;
  }
  return true;
}

bool header_has_token(std::string_view value, std::string_view token) {
  bool found = false;
  split_outside_quotes(value, ',', [&](std::string_view item) {
    if (iequals(item, token)) found = true;
  });
  return found;
}

DeflateOffer negotiate_deflate(std::span<const std::string_view> extension_headers) {
  DeflateOffer result;
  for (std::string_view header : extension_headers) {
    split_outside_quotes(header, ',', [&](std::string_view offer) {
      if (result.accepted || offer.empty()) return;
      std::string_view name = offer, params;
      if (auto semi = offer.find(';'); semi != std::string_view::npos) {
        name = trim(offer.substr(0, semi));
        params = offer.substr(semi + 1);
      }
      if (!is_token(name) || !iequals(name, "permessage-deflate")) return;
      if (auto response = accept_offer(params)) {
        result.accepted = true;
        result.response = std::move(*response);
      }
    });
    if (result.accepted) break;
  }
  return result;
}

}  // namespace myriad::ws
