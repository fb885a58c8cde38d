// Unit tests for the open-loop schedule (apps/load/schedule.hpp), driven by a hand-moved clock.
#include "schedule.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace {

using myriad::load::OpenLoopSchedule;

struct Sent {
  uint32_t connection;
  uint64_t due_ns;
  bool operator==(const Sent&) const = default;
};

// Runs the schedule at `now` and returns what it sent.
std::vector<Sent> run(OpenLoopSchedule& s, uint64_t now, uint64_t limit = UINT64_MAX) {
  std::vector<Sent> sent;
  uint64_t n = s.run_due(
      now,
      [&](uint32_t c, uint64_t due) {
        sent.push_back({c, due});
      },
      limit);
  EXPECT_EQ(n, sent.size());
  return sent;
}

constexpr uint64_t kStart = 5'000'000'000;  // an arbitrary clock origin, in ns

TEST(OpenLoopSchedule, DueTimesAreEvenlySpaced) {
  OpenLoopSchedule s(1000.0, 4, kStart);  // one message per millisecond
  for (uint64_t j = 0; j < 10000; ++j) EXPECT_EQ(s.due_at(j), kStart + j * 1'000'000) << j;
  EXPECT_EQ(s.next_due(), kStart);
  EXPECT_EQ(s.sent(), 0u);
}

TEST(OpenLoopSchedule, UnevenIntervalsDoNotDrift) {
  // 3 per second: the interval is 333,333,333.3 ns. Message j stays within a nanosecond of
  // j / rate however far the run goes.
  OpenLoopSchedule s(3.0, 1, kStart);
  for (uint64_t j = 0; j < 1'000'000; j += 997) {
    uint64_t exact = kStart + j * 1'000'000'000 / 3;
    uint64_t got = s.due_at(j);
    EXPECT_LE(got > exact ? got - exact : exact - got, 1u) << j;
    if (j > 0) {
      uint64_t gap = s.due_at(j) - s.due_at(j - 1);
      EXPECT_GE(gap, 333'333'332u);
      EXPECT_LE(gap, 333'333'334u);
    }
  }
}

TEST(OpenLoopSchedule, SendsExactlyTheMessagesDueRoundRobin) {
  OpenLoopSchedule s(1000.0, 3, kStart);
  EXPECT_TRUE(run(s, kStart - 1).empty()) << "nothing before the start";

  // At the start, message 0 is due (due at or before now).
  auto sent = run(s, kStart);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0], (Sent{0, kStart}));

  // One nanosecond short of message 1: nothing.
  EXPECT_TRUE(run(s, kStart + 999'999).empty());
  sent = run(s, kStart + 1'000'000);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0], (Sent{1, kStart + 1'000'000}));

  // Half-way to message 5: messages 2, 3 and 4, due times as scheduled, not `now`.
  sent = run(s, kStart + 4'500'000);
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0], (Sent{2, kStart + 2'000'000}));
  EXPECT_EQ(sent[1], (Sent{0, kStart + 3'000'000}));
  EXPECT_EQ(sent[2], (Sent{1, kStart + 4'000'000}));
  EXPECT_EQ(s.sent(), 5u);
  EXPECT_EQ(s.next_due(), kStart + 5'000'000);

  // Called again at the same time: nothing new.
  EXPECT_TRUE(run(s, kStart + 4'500'000).empty());
}

TEST(OpenLoopSchedule, ALateCallSendsTheBacklogWithTheirDueTimes) {
  const uint32_t connections = 7;
  OpenLoopSchedule s(10'000.0, connections, kStart);  // 100 us apart
  run(s, kStart);
  // The generator stalls for a whole second: every message of that second goes out at once,
  // each stamped with when it was due, so the stall shows up as latency.
  const uint64_t now = kStart + 1'000'000'000;
  auto sent = run(s, now);
  ASSERT_EQ(sent.size(), 10'000u);
  for (std::size_t i = 0; i < sent.size(); ++i) {
    uint64_t j = i + 1;
    ASSERT_EQ(sent[i].due_ns, kStart + j * 100'000) << j;
    ASSERT_EQ(sent[i].connection, j % connections) << j;
  }
  EXPECT_EQ(s.sent(), 10'001u);
  EXPECT_GT(s.next_due(), now);
}

TEST(OpenLoopSchedule, LimitCapsOneCallAndTheNextContinues) {
  OpenLoopSchedule s(1000.0, 4, kStart);
  const uint64_t now = kStart + 99'000'000;  // messages 0..99 are due
  std::vector<Sent> all;
  std::vector<uint64_t> per_call;
  for (int call = 0; call < 10; ++call) {
    auto sent = run(s, now, 30);
    per_call.push_back(sent.size());
    all.insert(all.end(), sent.begin(), sent.end());
  }
  EXPECT_EQ(per_call, (std::vector<uint64_t>{30, 30, 30, 10, 0, 0, 0, 0, 0, 0}));
  ASSERT_EQ(all.size(), 100u);
  for (uint64_t j = 0; j < all.size(); ++j) {
    EXPECT_EQ(all[j], (Sent{static_cast<uint32_t>(j % 4), kStart + j * 1'000'000})) << j;
  }
  EXPECT_EQ(s.sent(), 100u);
  EXPECT_TRUE(run(s, now, 0).empty());
}

TEST(OpenLoopSchedule, ALimitOfZeroSendsNothing) {
  OpenLoopSchedule s(1000.0, 1, kStart);
  EXPECT_TRUE(run(s, kStart + 10'000'000, 0).empty());
  EXPECT_EQ(s.sent(), 0u);
  EXPECT_EQ(run(s, kStart + 10'000'000).size(), 11u);
}

TEST(OpenLoopSchedule, EveryConnectionGetsItsShare) {
  const uint32_t connections = 13;
  OpenLoopSchedule s(1'000'000.0, connections, kStart);  // 1 us apart
  std::vector<uint64_t> per_connection(connections, 0);
  uint64_t last_due = 0;
  bool first = true;
  // A clock moving in irregular steps.
  for (uint64_t now = kStart; now < kStart + 13'000'000; now += 1 + (now * 7919) % 3001) {
    s.run_due(now, [&](uint32_t c, uint64_t due) {
      ASSERT_LT(c, connections);
      ASSERT_LE(due, now);
      if (!first) {
        ASSERT_GT(due, last_due);
      }
      first = false;
      last_due = due;
      ++per_connection[c];
    });
  }
  uint64_t total = s.sent();
  EXPECT_GT(total, 12'000'000u / 1000u);
  for (uint32_t c = 0; c < connections; ++c) {
    EXPECT_GE(per_connection[c], total / connections) << c;
    EXPECT_LE(per_connection[c], total / connections + 1) << c;
  }
}

}  // namespace
