// Unit tests for the public configuration parsers and checks (include/myriad/config.hpp).
#include <gtest/gtest.h>
#include <myriad/config.hpp>

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>

namespace {

using namespace std::chrono_literals;
using myriad::BackendKind;
using myriad::Config;
using myriad::parse_backend;
using myriad::parse_duration;
using myriad::parse_size;

// Expects f() to throw std::invalid_argument whose message contains every one of `needles`.
void expect_invalid(const std::function<void()>& f, std::initializer_list<std::string> needles,
                    const std::string& context) {
  try {
    f();
    ADD_FAILURE() << context << ": no exception";
  } catch (const std::invalid_argument& e) {
    std::string what = e.what();
    for (const std::string& needle : needles) {
      EXPECT_NE(what.find(needle), std::string::npos)
          << context << ": message '" << what << "' does not name '" << needle << "'";
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << context << ": threw something else: " << e.what();
  }
}

TEST(ParseSize, UnitsAndPlainNumbers) {
  EXPECT_EQ(parse_size("64MiB"), std::size_t{64} << 20);
  EXPECT_EQ(parse_size("16k"), std::size_t{16} << 10);
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("1.5KiB"), 1536u);
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("7B"), 7u);
  EXPECT_EQ(parse_size("2GiB"), std::size_t{2} << 30);
  EXPECT_EQ(parse_size("3mb"), std::size_t{3} << 20);
  EXPECT_EQ(parse_size("10 KiB"), 10240u);
}

TEST(ParseSize, BadInputThrowsNamingTheText) {
  for (const char* text : {"", "MiB", "abc", "12parsecs", "-5", "5 TiB", "1e6"}) {
    expect_invalid([&] { parse_size(text); }, {std::string("'") + text + "'"},
                   std::string("parse_size(\"") + text + "\")");
  }
}

TEST(ParseSize, MalformedNumbersThrowNamingTheText) {
  // Dots are part of a number only once, and only between digits.
  for (const char* text : {".", "..", ".KiB", "1.2.3", "1..5MiB"}) {
    expect_invalid([&] { parse_size(text); }, {std::string("'") + text + "'"},
                   std::string("parse_size(\"") + text + "\")");
  }
}

TEST(ParseSize, OutOfRangeThrowsNamingTheText) {
  // More bytes than a size_t holds must not come back as some other number.
  for (const char* text : {"100000000000GiB", "18446744073709551616", "99999999999999999999999"}) {
    expect_invalid([&] { parse_size(text); }, {std::string("'") + text + "'"},
                   std::string("parse_size(\"") + text + "\")");
  }
  EXPECT_EQ(parse_size("1048576GiB"), std::size_t{1} << 50);
}

TEST(ParseDuration, Units) {
  EXPECT_EQ(parse_duration("30s"), 30s);
  EXPECT_EQ(parse_duration("250ms"), 250ms);
  EXPECT_EQ(parse_duration("2m"), 2min);
  EXPECT_EQ(parse_duration("1h"), 1h);
  EXPECT_EQ(parse_duration("0"), 0ns);
  EXPECT_EQ(parse_duration("0s"), 0ns);
  EXPECT_EQ(parse_duration("100us"), 100us);
  EXPECT_EQ(parse_duration("15ns"), 15ns);
  EXPECT_EQ(parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(parse_duration("3min"), 3min);
}

TEST(ParseDuration, BadInputThrowsNamingTheText) {
  // A bare non-zero number is ambiguous: it needs a unit.
  for (const char* text : {"", "5", "abc", "s", "10 fortnights", "-1s", "12d"}) {
    expect_invalid([&] { parse_duration(text); }, {std::string("'") + text + "'"},
                   std::string("parse_duration(\"") + text + "\")");
  }
}

TEST(ParseDuration, MalformedNumbersThrowNamingTheText) {
  for (const char* text : {".", ".s", "1.2.3s", "1..5ms"}) {
    expect_invalid([&] { parse_duration(text); }, {std::string("'") + text + "'"},
                   std::string("parse_duration(\"") + text + "\")");
  }
}

TEST(ParseDuration, OutOfRangeThrowsNamingTheText) {
  // Past what nanoseconds in an int64 hold (about 292 years): an error, not a negative duration.
  for (const char* text : {"10000000000s", "999999999999h", "1000000000000000000000ns"}) {
    expect_invalid([&] { parse_duration(text); }, {std::string("'") + text + "'"},
                   std::string("parse_duration(\"") + text + "\")");
  }
  EXPECT_EQ(parse_duration("9000000000s"), std::chrono::seconds(9'000'000'000));
}

TEST(ParseBackend, Names) {
  EXPECT_EQ(parse_backend("auto"), BackendKind::kAuto);
  EXPECT_EQ(parse_backend("uring"), BackendKind::kUring);
  EXPECT_EQ(parse_backend("io_uring"), BackendKind::kUring);
  EXPECT_EQ(parse_backend("epoll"), BackendKind::kEpoll);
  for (BackendKind kind : {BackendKind::kAuto, BackendKind::kUring, BackendKind::kEpoll}) {
    EXPECT_EQ(parse_backend(myriad::to_string(kind)), kind);
  }
  for (const char* text : {"", "EPOLL", "kqueue", "iouring"}) {
    expect_invalid([&] { parse_backend(text); }, {std::string("'") + text + "'"},
                   std::string("parse_backend(\"") + text + "\")");
  }
}

TEST(ConfigValidate, DefaultsAreValid) {
  EXPECT_NO_THROW(Config{}.validate());
}

TEST(ConfigValidate, LowWatermarkAboveHighIsRejected) {
  Config c;
  c.write_low_watermark = 100'000;
  c.write_high_watermark = 50'000;
  expect_invalid([&] { c.validate(); }, {"write_low_watermark", "100000", "50000"}, "low > high");
  c.write_low_watermark = 50'000;  // equal is fine
  EXPECT_NO_THROW(c.validate());
}

TEST(ConfigValidate, HighWatermarkAboveMaxWriteQueueIsRejected) {
  Config c;
  c.write_high_watermark = 8u << 20;
  c.max_write_queue = 4u << 20;
  expect_invalid([&] { c.validate(); }, {"write_high_watermark", "max_write_queue"}, "high > max");
  c.max_write_queue = 8u << 20;
  EXPECT_NO_THROW(c.validate());
}

TEST(ConfigValidate, TinyPoolsAreRejected) {
  Config c;
  c.buffer_size = 32;
  expect_invalid([&] { c.validate(); }, {"buffer_size", "32"}, "buffer_size 32");
  c = Config{};
  c.buffer_size = 16 << 10;
  c.buffer_pool_bytes = 16 << 10;  // one chunk
  expect_invalid([&] { c.validate(); }, {"buffer_pool"}, "pool of one chunk");
  c.buffer_pool_bytes = 32 << 10;  // two chunks
  EXPECT_NO_THROW(c.validate());
}

TEST(ConfigValidate, HandlersOnWorkersNeedsWorkers) {
  Config c;
  c.handlers_on_workers = true;
  expect_invalid([&] { c.validate(); }, {"handlers_on_workers"}, "no workers");
  c.workers = 2;
  EXPECT_NO_THROW(c.validate());
}

TEST(ConfigValidate, OtherLimits) {
  Config c;
  c.max_connections = 0;
  expect_invalid([&] { c.validate(); }, {"max_connections"}, "max_connections 0");
  c = Config{};
  c.timer_tick = 0ns;
  expect_invalid([&] { c.validate(); }, {"timer_tick"}, "timer_tick 0");
  c = Config{};
  c.idle_timeout = -1s;
  EXPECT_THROW(c.validate(), std::invalid_argument);
  c = Config{};
  c.worker_queue = 0;
  expect_invalid([&] { c.validate(); }, {"worker_queue"}, "worker_queue 0");
}

}  // namespace
