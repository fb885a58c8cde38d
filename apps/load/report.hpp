// Output helpers shared by myriad-load's modes: numbers for people, and a flat JSON object.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

namespace myriad::load {

inline std::string with_commas(uint64_t v) {
  std::string digits = std::to_string(v);
  std::string s;
  s.reserve(digits.size() + digits.size() / 3);
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) s.push_back(',');
    s.push_back(digits[i]);
  }
  return s;
}

inline double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Keys in insertion order; numbers without a fraction print as integers.
struct Json {
  std::string text = "{";
  bool first = true;
  void key(const char* k) {
    text += first ? "\n  " : ",\n  ";
    first = false;
    text += "\"";
    text += k;
    text += "\": ";
  }
  void num(const char* k, double v) {
    key(k);
    char buf[64];
    if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) {
      std::snprintf(buf, sizeof(buf), "%.0f", v);
    } else {
      std::snprintf(buf, sizeof(buf), "%.6g", std::isfinite(v) ? v : 0.0);
    }
    text += buf;
  }
  void str(const char* k, const std::string& v) {
    key(k);
    text += "\"" + v + "\"";
  }
  void raw(const char* k, const std::string& v) {
    key(k);
    text += v;
  }
  std::string done() const { return text + "\n}\n"; }
};

}  // namespace myriad::load
