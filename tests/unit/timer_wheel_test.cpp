// Unit tests for the shard's hierarchical timing wheel (src/timer_wheel.hpp).
#include "timer_wheel.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

using myriad::detail::TimerWheel;
using Tick = TimerWheel::Tick;

struct Fired {
  uint32_t id;
  Tick at;  // wheel.now() when fire(id) was called
};

// Advances the wheel to `to` and returns what fired, in order, with the tick it fired at.
std::vector<Fired> advance(TimerWheel& wheel, Tick to) {
  std::vector<Fired> fired;
  wheel.advance(to, [&](uint32_t id) { fired.push_back({id, wheel.now()}); });
  return fired;
}

std::vector<uint32_t> ids_of(const std::vector<Fired>& fired) {
  std::vector<uint32_t> ids;
  for (const Fired& f : fired) ids.push_back(f.id);
  return ids;
}

TEST(TimerWheel, StartsEmpty) {
  TimerWheel wheel(16, 100);
  EXPECT_EQ(wheel.now(), 100u);
  EXPECT_EQ(wheel.capacity(), 16u);
  EXPECT_EQ(wheel.armed(), 0u);
  EXPECT_EQ(wheel.next_deadline(), TimerWheel::kNever);
  for (uint32_t id = 0; id < 16; ++id) EXPECT_FALSE(wheel.is_armed(id));
  EXPECT_TRUE(advance(wheel, 5000).empty());
  EXPECT_EQ(wheel.now(), 5000u);
}

TEST(TimerWheel, FiresExactlyTheDueTimersInExpiryOrder) {
  TimerWheel wheel(8, 1);
  // Armed out of order, spread over several level-0 slots and the next window.
  wheel.arm(0, 40);
  wheel.arm(1, 5);
  wheel.arm(2, 300);
  wheel.arm(3, 17);
  wheel.arm(4, 200);
  wheel.arm(5, 41);
  EXPECT_EQ(wheel.armed(), 6u);

  auto fired = advance(wheel, 40);
  ASSERT_EQ(fired.size(), 3u);
  EXPECT_EQ(ids_of(fired), (std::vector<uint32_t>{1, 3, 0}));
  EXPECT_EQ(fired[0].at, 5u);
  EXPECT_EQ(fired[1].at, 17u);
  EXPECT_EQ(fired[2].at, 40u);
  EXPECT_EQ(wheel.now(), 40u);
  EXPECT_EQ(wheel.armed(), 3u);
  EXPECT_FALSE(wheel.is_armed(0));
  EXPECT_TRUE(wheel.is_armed(5));

  fired = advance(wheel, 199);  // one tick short of timer 4
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].id, 5u);
  EXPECT_EQ(fired[0].at, 41u);

  fired = advance(wheel, 1000);
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(ids_of(fired), (std::vector<uint32_t>{4, 2}));
  EXPECT_EQ(fired[0].at, 200u);
  EXPECT_EQ(fired[1].at, 300u);
  EXPECT_EQ(wheel.armed(), 0u);
  EXPECT_EQ(wheel.now(), 1000u);
}

TEST(TimerWheel, TimersOnTheSameTickAllFire) {
  TimerWheel wheel(64, 1);
  for (uint32_t id = 0; id < 64; ++id) wheel.arm(id, id % 2 == 0 ? 500 : 501);
  auto fired = advance(wheel, 500);
  EXPECT_EQ(fired.size(), 32u);
  for (const Fired& f : fired) {
    EXPECT_EQ(f.id % 2, 0u);
    EXPECT_EQ(f.at, 500u);
  }
  fired = advance(wheel, 501);
  EXPECT_EQ(fired.size(), 32u);
  for (const Fired& f : fired) EXPECT_EQ(f.id % 2, 1u);
  EXPECT_EQ(wheel.armed(), 0u);
}

TEST(TimerWheel, CancelPreventsFiringAndSaysWhetherArmed) {
  TimerWheel wheel(4, 1);
  EXPECT_FALSE(wheel.cancel(0));
  wheel.arm(0, 10);
  wheel.arm(1, 10);
  wheel.arm(2, 70000);  // in a higher level
  EXPECT_EQ(wheel.armed(), 3u);
  EXPECT_TRUE(wheel.cancel(0));
  EXPECT_FALSE(wheel.cancel(0));
  EXPECT_FALSE(wheel.is_armed(0));
  EXPECT_EQ(wheel.expiry(0), 0u);
  EXPECT_TRUE(wheel.cancel(2));
  EXPECT_EQ(wheel.armed(), 1u);

  auto fired = advance(wheel, 100000);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].id, 1u);
  EXPECT_EQ(fired[0].at, 10u);
  // A timer that fired is no longer armed.
  EXPECT_FALSE(wheel.cancel(1));
  EXPECT_EQ(wheel.armed(), 0u);
}

TEST(TimerWheel, RearmingMovesTheTimer) {
  TimerWheel wheel(4, 1);
  wheel.arm(0, 50);
  wheel.arm(0, 20);  // earlier
  wheel.arm(1, 30);
  wheel.arm(1, 5000);  // later, into a higher level
  EXPECT_EQ(wheel.armed(), 2u);
  EXPECT_EQ(wheel.expiry(0), 20u);
  EXPECT_EQ(wheel.expiry(1), 5000u);

  auto fired = advance(wheel, 4999);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].id, 0u);
  EXPECT_EQ(fired[0].at, 20u);

  fired = advance(wheel, 6000);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].id, 1u);
  EXPECT_EQ(fired[0].at, 5000u);
  EXPECT_EQ(wheel.armed(), 0u);
}

TEST(TimerWheel, ExpiryAtOrBeforeNowFiresOnTheNextAdvance) {
  TimerWheel wheel(4, 1000);
  wheel.arm(0, 1000);  // now
  wheel.arm(1, 10);    // long past
  wheel.arm(2, 0);     // the lowest tick there is
  EXPECT_EQ(wheel.armed(), 3u);
  EXPECT_TRUE(wheel.is_armed(2));
  EXPECT_EQ(wheel.next_deadline(), 1000u);

  // Even an advance that does not move time runs them.
  auto fired = advance(wheel, 1000);
  ASSERT_EQ(fired.size(), 3u);
  auto ids = ids_of(fired);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<uint32_t>{0, 1, 2}));
  EXPECT_EQ(wheel.armed(), 0u);
  EXPECT_EQ(wheel.next_deadline(), TimerWheel::kNever);

  // And they come before anything that expires later in the same advance.
  wheel.arm(0, 1001);
  wheel.arm(1, 999);
  fired = advance(wheel, 2000);
  EXPECT_EQ(ids_of(fired), (std::vector<uint32_t>{1, 0}));
}

TEST(TimerWheel, FarTimersFireAtExactlyTheirTick) {
  // An hour and ten hours of 1 ms ticks, and more, through every cascade level.
  const std::vector<Tick> expiries = {
      255,        256,         257,           1000,          65535,         65536,
      65537,      70000,       3'600'000,     16'777'215,    16'777'216,    16'777'217,
      36'000'000, 123'456'789, 1'000'000'007, 2'147'483'648, 4'000'000'000,
  };
  // Once in a single advance, once in uneven steps.
  for (int stepped = 0; stepped < 2; ++stepped) {
    SCOPED_TRACE(stepped ? "stepped" : "one advance");
    TimerWheel wheel(static_cast<uint32_t>(expiries.size()), 1);
    for (uint32_t id = 0; id < expiries.size(); ++id) wheel.arm(id, expiries[id]);
    EXPECT_EQ(wheel.armed(), expiries.size());
    std::vector<Fired> fired;
    auto record = [&](uint32_t id) { fired.push_back({id, wheel.now()}); };
    const Tick end = 4'100'000'000;
    if (stepped) {
      std::mt19937_64 rng(7);
      while (wheel.now() < end) {
        Tick step = 1 + rng() % (rng() % 2 ? 300 : 50'000'000);
        wheel.advance(std::min(end, wheel.now() + step), record);
      }
    } else {
      wheel.advance(end, record);
    }
    ASSERT_EQ(fired.size(), expiries.size());
    for (std::size_t i = 0; i < fired.size(); ++i) {
      EXPECT_EQ(fired[i].id, i);
      EXPECT_EQ(fired[i].at, expiries[fired[i].id]);
    }
    EXPECT_EQ(wheel.armed(), 0u);
  }
}

TEST(TimerWheel, FarTimersArmedMidWindowFireAtExactlyTheirTick) {
  // Start off any window boundary so that every level's current slot is non-zero.
  const Tick start = 0x0102'0304;
  TimerWheel wheel(64, start);
  std::vector<Tick> expiries;
  std::mt19937_64 rng(11);
  for (uint32_t id = 0; id < 64; ++id) {
    int bits = 1 + static_cast<int>(id % 31);  // distances from 2 to 2^31
    Tick expiry = start + 1 + rng() % (Tick{1} << bits);
    expiries.push_back(expiry);
    wheel.arm(id, expiry);
  }
  std::vector<Fired> fired;
  wheel.advance(start + (Tick{1} << 32), [&](uint32_t id) { fired.push_back({id, wheel.now()}); });
  ASSERT_EQ(fired.size(), expiries.size());
  for (const Fired& f : fired) EXPECT_EQ(f.at, expiries[f.id]) << "timer " << f.id;
  for (std::size_t i = 1; i < fired.size(); ++i) EXPECT_LE(fired[i - 1].at, fired[i].at);
}

TEST(TimerWheel, ExpiriesPastTheHorizonAreClamped) {
  TimerWheel wheel(1, 10);
  wheel.arm(0, 10 + (Tick{1} << 40));
  const Tick clamped = wheel.expiry(0);
  EXPECT_GE(clamped, 10 + (Tick{1} << 32) - 1);
  EXPECT_LE(clamped, 10 + (Tick{1} << 32));
  auto fired = advance(wheel, clamped - 1);
  EXPECT_TRUE(fired.empty());
  fired = advance(wheel, clamped + 5);
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].at, clamped);
}

TEST(TimerWheel, CallbackMayArmCancelAndRearmItself) {
  TimerWheel wheel(8, 1);
  wheel.arm(0, 10);  // re-arms itself every 100 ticks, three times
  wheel.arm(1, 10);  // cancels timer 2 and arms timer 3
  wheel.arm(2, 50);
  wheel.arm(4, 400);
  std::vector<Fired> fired;
  int repeats = 0;
  bool cancelled = false;
  wheel.advance(1000, [&](uint32_t id) {
    fired.push_back({id, wheel.now()});
    EXPECT_FALSE(wheel.is_armed(id)) << "a timer is disarmed before it fires";
    if (id == 0 && ++repeats < 4) wheel.arm(0, wheel.now() + 100);
    if (id == 1) {
      cancelled = wheel.cancel(2);
      wheel.arm(3, wheel.now() + 5);
      wheel.arm(5, wheel.now());  // due now: fires in this same advance
      wheel.cancel(4);
      wheel.arm(4, 600);  // moved later, through a higher level
    }
  });
  EXPECT_TRUE(cancelled);
  std::multimap<Tick, uint32_t> got;
  for (const Fired& f : fired) got.emplace(f.at, f.id);
  const std::multimap<Tick, uint32_t> want = {{10, 0},  {10, 1},  {10, 5},  {15, 3},
                                              {110, 0}, {210, 0}, {310, 0}, {600, 4}};
  EXPECT_EQ(got, want);
  for (std::size_t i = 1; i < fired.size(); ++i) EXPECT_LE(fired[i - 1].at, fired[i].at);
  EXPECT_EQ(repeats, 4);
  EXPECT_EQ(wheel.armed(), 0u);
}

TEST(TimerWheel, CallbackMayCancelATimerDueOnTheSameTick) {
  TimerWheel wheel(2, 1);
  wheel.arm(0, 7);
  wheel.arm(1, 7);
  int calls = 0;
  wheel.advance(10, [&](uint32_t id) {
    ++calls;
    EXPECT_TRUE(wheel.cancel(1 - id));
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(wheel.armed(), 0u);
}

TEST(TimerWheel, NextDeadlineIsExactForNearTimers) {
  TimerWheel wheel(8, 1000);
  wheel.arm(0, 1200);
  EXPECT_EQ(wheel.next_deadline(), 1200u);
  wheel.arm(1, 1100);
  EXPECT_EQ(wheel.next_deadline(), 1100u);
  wheel.arm(2, 1001);
  EXPECT_EQ(wheel.next_deadline(), 1001u);
  advance(wheel, 1001);
  EXPECT_EQ(wheel.next_deadline(), 1100u);
  advance(wheel, 1100);
  EXPECT_EQ(wheel.next_deadline(), 1200u);
  advance(wheel, 1200);
  EXPECT_EQ(wheel.next_deadline(), TimerWheel::kNever);
  // Across a window boundary (1280 = 5 * 256) and right after it.
  advance(wheel, 1279);
  wheel.arm(3, 1286);
  EXPECT_EQ(wheel.next_deadline(), 1286u);
  advance(wheel, 1280);
  EXPECT_EQ(wheel.next_deadline(), 1286u);
  // A timer cascaded down from level 1 is exact once it sits in level 0.
  wheel.arm(4, 1280 + 600);  // 2 windows ahead: armed into level 1
  advance(wheel, 1286);
  EXPECT_LE(wheel.next_deadline(), 1880u);
  advance(wheel, 1792);  // the window holding 1880 begins; the timer moves to level 0
  EXPECT_EQ(wheel.next_deadline(), 1880u);
  advance(wheel, 1880);
  EXPECT_EQ(wheel.next_deadline(), TimerWheel::kNever);
}

TEST(TimerWheel, NextDeadlineIgnoresCancelledAndMovedTimers) {
  // "exact for level 0": a timer that is no longer there must not count.
  TimerWheel wheel(4, 1000);
  wheel.arm(0, 1010);
  wheel.arm(1, 1050);
  EXPECT_TRUE(wheel.cancel(0));
  EXPECT_EQ(wheel.next_deadline(), 1050u);
  wheel.arm(1, 1100);  // moved later
  EXPECT_EQ(wheel.next_deadline(), 1100u);
}

TEST(TimerWheel, NextDeadlineIsNeverLaterThanTheEarliestFarTimer) {
  for (Tick expiry : {Tick{300}, Tick{70'000}, Tick{20'000'000}, Tick{3'000'000'000}}) {
    TimerWheel w(1, 5);
    w.arm(0, expiry);
    Tick deadline = w.next_deadline();
    EXPECT_GT(deadline, w.now());
    EXPECT_LE(deadline, expiry);
    // Following the deadlines reaches the expiry without passing it.
    int steps = 0;
    bool fired = false;
    while (!fired && steps < 10) {
      Tick next = w.next_deadline();
      ASSERT_LE(next, expiry);
      w.advance(next, [&](uint32_t) {
        fired = true;
        EXPECT_EQ(w.now(), expiry);
      });
      ++steps;
    }
    EXPECT_TRUE(fired) << "expiry " << expiry;
    EXPECT_EQ(w.next_deadline(), TimerWheel::kNever);
  }
}

TEST(TimerWheel, ArmedCounts) {
  TimerWheel wheel(100, 1);
  for (uint32_t id = 0; id < 100; ++id) wheel.arm(id, 10 + id * 37);
  EXPECT_EQ(wheel.armed(), 100u);
  for (uint32_t id = 0; id < 100; id += 2) wheel.arm(id, 5000 + id);  // re-arm: no change
  EXPECT_EQ(wheel.armed(), 100u);
  for (uint32_t id = 0; id < 100; id += 5) wheel.cancel(id);
  EXPECT_EQ(wheel.armed(), 80u);
  std::size_t fired = advance(wheel, 1000).size();
  EXPECT_EQ(wheel.armed(), 80u - fired);
  EXPECT_GT(fired, 0u);
  advance(wheel, 10000);
  EXPECT_EQ(wheel.armed(), 0u);
}

// Thousands of random operations against a plain model: each timer fires once, exactly at its
// expiry (or, armed already due, within the next advance), never early and never missed.
class TimerWheelModel {
 public:
  TimerWheelModel(uint32_t capacity, Tick start, uint64_t seed)
      : wheel_(capacity, start), expiry_(capacity, 0), due_in_advance_(capacity, 0), rng_(seed) {}

  void check(bool ok, const std::string& what) {
    if (ok) return;
    ++errors_;
    if (first_error_.empty()) first_error_ = what;
  }

  void arm(uint32_t id, Tick expiry) {
    Tick now = wheel_.now();
    if (expiry_[id] != 0) by_expiry_.erase(find(id));
    expiry_[id] = std::max<Tick>(expiry, 1);
    by_expiry_.emplace(expiry_[id], id);
    // Already due: fires in the advance running now, or else in the next one.
    due_in_advance_[id] = expiry_[id] <= now ? (in_advance_ ? advances_ : advances_ + 1) : 0;
    wheel_.arm(id, expiry);
    check(wheel_.expiry(id) == expiry_[id], "expiry() after arm");
  }

  void cancel(uint32_t id) {
    bool was = expiry_[id] != 0;
    if (was) {
      by_expiry_.erase(find(id));
      expiry_[id] = 0;
    }
    check(wheel_.cancel(id) == was, "cancel() result for timer " + std::to_string(id));
  }

  void advance(Tick to) {
    ++advances_;
    // next_deadline: now if something is due, else after now and never after the earliest.
    Tick deadline = wheel_.next_deadline();
    if (by_expiry_.empty()) {
      check(deadline == TimerWheel::kNever, "next_deadline with nothing armed");
    } else if (by_expiry_.begin()->first <= wheel_.now()) {
      check(deadline == wheel_.now(), "next_deadline with a timer due");
    } else {
      check(deadline > wheel_.now() && deadline <= by_expiry_.begin()->first,
            "next_deadline " + std::to_string(deadline) + " vs earliest " +
                std::to_string(by_expiry_.begin()->first) + " at now " +
                std::to_string(wheel_.now()));
    }

    in_advance_ = true;
    Tick last = 0;
    wheel_.advance(to, [&](uint32_t id) { on_fire(id, to, last); });
    in_advance_ = false;

    check(wheel_.now() == to, "now() after advance is " + std::to_string(wheel_.now()));
    // Nothing due by `to` is left behind.
    if (!by_expiry_.empty()) {
      std::ostringstream msg;
      msg << "timer " << by_expiry_.begin()->second << " expiring at " << by_expiry_.begin()->first
          << " did not fire by " << to;
      check(by_expiry_.begin()->first > to, msg.str());
    }
    check(wheel_.armed() == by_expiry_.size(), "armed() count");
  }

  void on_fire(uint32_t id, Tick to, Tick& last) {
    Tick now = wheel_.now();
    ++fires_;
    std::ostringstream msg;
    msg << "timer " << id << " fired at " << now << " with model expiry " << expiry_[id];
    check(expiry_[id] != 0, msg.str() + ": not armed (fired twice, or after cancel)");
    if (expiry_[id] == 0) return;
    if (due_in_advance_[id] != 0) {
      check(due_in_advance_[id] == advances_,
            msg.str() + ": already due, fired in a later advance");
      check(now >= expiry_[id], msg.str() + ": early");
    } else {
      check(now == expiry_[id], msg.str() + ": not at its expiry");
    }
    check(now <= to, msg.str() + ": after the advance target");
    check(now >= last, msg.str() + ": out of order");
    last = now;
    check(!wheel_.is_armed(id), msg.str() + ": still armed while firing");
    by_expiry_.erase(find(id));
    expiry_[id] = 0;

    // Sometimes act from inside the callback.
    uint32_t capacity = wheel_.capacity();
    switch (rng_() % 8) {
      case 0:
        arm(id, now + 1 + rng_() % 600);
        break;  // re-arm itself
      case 1:
        arm(static_cast<uint32_t>(rng_() % capacity), now + rng_() % 3000);
        break;
      case 2:
        cancel(static_cast<uint32_t>(rng_() % capacity));
        break;
      default:
        break;
    }
  }

  Tick pick_expiry() {
    Tick now = wheel_.now();
    switch (rng_() % 10) {
      case 0:
        return now - std::min<Tick>(now - 1, rng_() % 100);  // due already
      case 1:
      case 2:
      case 3:
        return now + rng_() % 256;
      case 4:
      case 5:
        return now + rng_() % 70'000;
      case 6:
        return now + rng_() % 20'000'000;
      case 7:
        return now + (Tick{1} << (rng_() % 30)) + rng_() % 3;  // near level boundaries
      default:
        return now + rng_() % 5000;
    }
  }

  Tick pick_step() {
    switch (rng_() % 10) {
      case 0:
        return 0;
      case 1:
        return 1;
      case 2:
        return 256 - wheel_.now() % 256;  // exactly to the next window
      case 3:
        return rng_() % 2'000'000;
      default:
        return rng_() % 700;
    }
  }

  void run(int operations) {
    uint32_t capacity = wheel_.capacity();
    for (int i = 0; i < operations && errors_ == 0; ++i) {
      uint32_t id = static_cast<uint32_t>(rng_() % capacity);
      switch (rng_() % 6) {
        case 0:
        case 1:
        case 2:
          arm(id, pick_expiry());
          break;
        case 3:
          cancel(id);
          break;
        default:
          advance(wheel_.now() + pick_step());
          break;
      }
    }
    // Drain: everything left fires.
    while (errors_ == 0 && !by_expiry_.empty()) advance(by_expiry_.rbegin()->first + 1);
  }

  std::size_t errors() const { return errors_; }
  const std::string& first_error() const { return first_error_; }
  std::size_t fires() const { return fires_; }
  std::size_t left() const { return by_expiry_.size(); }

 private:
  std::multimap<Tick, uint32_t>::iterator find(uint32_t id) {
    auto [begin, end] = by_expiry_.equal_range(expiry_[id]);
    for (auto it = begin; it != end; ++it) {
      if (it->second == id) return it;
    }
    ADD_FAILURE() << "model lost timer " << id;
    return by_expiry_.end();
  }

  TimerWheel wheel_;
  std::vector<Tick> expiry_;              // 0: not armed
  std::vector<uint64_t> due_in_advance_;  // armed already due: the advance it must fire in
  std::multimap<Tick, uint32_t> by_expiry_;
  std::mt19937_64 rng_;
  uint64_t advances_ = 0;
  bool in_advance_ = false;
  std::size_t errors_ = 0;
  std::string first_error_;
  std::size_t fires_ = 0;
};

TEST(TimerWheel, RandomOperationsMatchAReferenceModel) {
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    // Small capacities make re-arms and cancels of armed timers common.
    TimerWheelModel model(seed % 2 ? 64 : 1000, seed * 977, seed);
    model.run(5000);
    ASSERT_EQ(model.errors(), 0u) << model.first_error();
    EXPECT_EQ(model.left(), 0u);
    EXPECT_GT(model.fires(), 500u);
  }
}

}  // namespace
