#include <myriad/config.hpp>

#include <cctype>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <string>

namespace myriad {

const char* to_string(BackendKind kind) {
  switch (kind) {
    case BackendKind::kAuto:
      return "auto";
    case BackendKind::kUring:
      return "io_uring";
    case BackendKind::kEpoll:
      return "epoll";
  }
  return "?";
}

BackendKind parse_backend(std::string_view text) {
  if (text == "auto") return BackendKind::kAuto;
  if (text == "uring" || text == "io_uring") return BackendKind::kUring;
  if (text == "epoll") return BackendKind::kEpoll;
  throw std::invalid_argument("backend '" + std::string(text) + "': expected auto, uring or epoll");
}

namespace {

// Splits "64MiB" into 64 and "MiB"; throws, naming the text, unless a whole number comes first.
double leading_number(std::string_view text, std::string_view& unit, const char* what) {
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + i, value);
  if (i == 0 || ec != std::errc() || end != text.data() + i || !std::isfinite(value)) {
    throw std::invalid_argument(std::string(what) + " '" + std::string(text) + "': not a number");
  }
  unit = text.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  return value;
}

// value * scale as an integer, or an error naming the text when it does not fit.
int64_t scaled(double value, double scale, std::string_view text, const char* what) {
  double result = std::round(value * scale);
  if (!(result < 9.2e18)) {
    throw std::invalid_argument(std::string(what) + " '" + std::string(text) + "': too large");
  }
  return static_cast<int64_t>(result);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::size_t parse_size(std::string_view text) {
  std::string_view unit;
  double value = leading_number(text, unit, "size");
  std::string u = lower(unit);
  double scale;
  if (u.empty() || u == "b") {
    scale = 1;
  } else if (u == "k" || u == "kb" || u == "kib") {
    scale = 1024.0;
  } else if (u == "m" || u == "mb" || u == "mib") {
    scale = 1024.0 * 1024;
  } else if (u == "g" || u == "gb" || u == "gib") {
    scale = 1024.0 * 1024 * 1024;
  } else {
    throw std::invalid_argument("size '" + std::string(text) +
                                "': unknown unit (use B, KiB, MiB, GiB)");
  }
  return static_cast<std::size_t>(scaled(value, scale, text, "size"));
}

Duration parse_duration(std::string_view text) {
  std::string_view unit;
  double value = leading_number(text, unit, "duration");
  std::string u = lower(unit);
  double ns;
  if (u == "ns") {
    ns = 1;
  } else if (u == "us") {
    ns = 1e3;
  } else if (u == "ms") {
    ns = 1e6;
  } else if (u == "s" || (u.empty() && value == 0)) {
    ns = 1e9;
  } else if (u == "m" || u == "min") {
    ns = 60e9;
  } else if (u == "h") {
    ns = 3600e9;
  } else {
    throw std::invalid_argument("duration '" + std::string(text) + "': needs a unit (ms, s, m, h)");
  }
  return Duration(scaled(value, ns, text, "duration"));
}

std::string format_size(std::size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4 && std::fmod(v, 1024) == 0) {
    v /= 1024;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.0f%s", v, units[u]);
  return buf;
}

std::string format_duration(Duration d) {
  auto ns = d.count();
  char buf[64];
  if (ns == 0) return "0";
  if (ns % 1'000'000'000 == 0) {
    std::snprintf(buf, sizeof(buf), "%llds", static_cast<long long>(ns / 1'000'000'000));
  } else if (ns % 1'000'000 == 0) {
    std::snprintf(buf, sizeof(buf), "%lldms", static_cast<long long>(ns / 1'000'000));
  } else {
    std::snprintf(buf, sizeof(buf), "%lldus", static_cast<long long>(ns / 1000));
  }
  return buf;
}

void Config::validate() const {
  auto fail = [](const std::string& what) { throw std::invalid_argument(what); };
  if (buffer_size < 64 || buffer_size > (std::size_t{1} << 30)) {
    fail("buffer_size " + std::to_string(buffer_size) + ": must be between 64 B and 1 GiB");
  }
  if (buffer_pool_bytes < 2 * buffer_size) {
    fail("buffer_pool " + format_size(buffer_pool_bytes) + ": must hold at least two " +
         format_size(buffer_size) + " chunks per shard");
  }
  if (write_low_watermark > write_high_watermark) {
    fail("write_low_watermark " + std::to_string(write_low_watermark) +
         " is above write_high_watermark " + std::to_string(write_high_watermark));
  }
  if (write_high_watermark > max_write_queue) {
    fail("write_high_watermark " + std::to_string(write_high_watermark) +
         " is above max_write_queue " + std::to_string(max_write_queue));
  }
  if (max_connections == 0) fail("max_connections must be at least 1");
  if (max_connections > (std::size_t{1} << 30))
    fail("max_connections " + std::to_string(max_connections) + ": at most 2^30");
  if (timer_tick < std::chrono::microseconds(1)) fail("timer_tick must be at least 1us");
  if (idle_timeout.count() < 0 || drain_timeout.count() < 0) fail("timeouts must not be negative");
  if (handlers_on_workers && workers == 0) fail("handlers_on_workers needs workers > 0");
  if (worker_queue == 0) fail("worker_queue must be at least 1");
  if (ring_slots != 0 && ring_slots < 64)
    fail("ring_slots " + std::to_string(ring_slots) + ": at least 64");
  if (shards > 1024) fail("shards " + std::to_string(shards) + ": at most 1024");
}

}  // namespace myriad
