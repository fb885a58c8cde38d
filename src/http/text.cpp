// The small text tables of HTTP: case-insensitive comparison, reason phrases, content types,
// and the Stats line.
#include <myriad/http.hpp>

#include <array>
#include <cstdio>
#include <utility>

namespace myriad::http {

namespace {
char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}
}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string_view content_type_for(std::string_view file_name) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 16> kTypes{{
      {".html", "text/html; charset=utf-8"},
      {".htm", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".txt", "text/plain; charset=utf-8"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".svg", "image/svg+xml"},
      {".ico", "image/x-icon"},
      {".wasm", "application/wasm"},
      {".xml", "application/xml"},
      {".webp", "image/webp"},
  }};
  std::size_t dot = file_name.rfind('.');
  std::size_t slash = file_name.rfind('/');
  if (dot != std::string_view::npos && (slash == std::string_view::npos || dot > slash)) {
    std::string_view ext = file_name.substr(dot);
    for (const auto& [e, type] : kTypes) {
      if (iequals(ext, e)) return type;
    }
  }
  return "application/octet-stream";
}

#define MYRIAD_HTTP_STATS_LIST(X)                                                          \
  X(requests)                                                                              \
  X(responses)                                                                             \
  X(bad_request)                                                                           \
  X(header_too_large) X(body_too_large) X(request_timeout) X(version_unsupported)          \
      X(not_implemented) X(handler_errors) X(continues) X(incomplete_at_close) X(upgrades) \
          X(upgrades_refused) X(partial_requests) X(streams_open) X(streams_opened) X(heartbeats)

Stats& Stats::operator+=(const Stats& other) {
#define MYRIAD_ADD(name) name += other.name;
  MYRIAD_HTTP_STATS_LIST(MYRIAD_ADD)
#undef MYRIAD_ADD
  return *this;
}

std::string Stats::to_string() const {
  std::string out;
  char buf[64];
#define MYRIAD_PRINT(name)                                                   \
  std::snprintf(buf, sizeof buf, "%s%s=%llu", out.empty() ? "" : " ", #name, \
                static_cast<unsigned long long>(name));                      \
  out += buf;
  MYRIAD_HTTP_STATS_LIST(MYRIAD_PRINT)
#undef MYRIAD_PRINT
  return out;
}

}  // namespace myriad::http
