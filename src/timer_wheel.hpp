// Internal. A hierarchical hashed timing wheel: O(1) arm and cancel, no allocation per timer.
//
// Owned by one shard and used from its thread only. Timers are named by a dense id in
// [0, capacity): the shard gives each connection's idle timer the connection's id, so a million
// idle timers cost 16 bytes each in one lazily touched array and no heap node at all.
//
// Four levels of 256 slots. A timer sits in the level that its distance from now selects, in
// the slot its absolute expiry selects; when level 0 wraps, the matching slot of the level above
// is cascaded down (top-down, so nothing lands in a slot already passed). Each timer cascades at
// most three times. Lists are circular and doubly linked through the node array, with one
// sentinel node per slot, so unlinking never needs to know where a node sits.
#pragma once

#include <cstdint>
#include <limits>

#include "lazy_array.hpp"

namespace myriad::detail {

class TimerWheel {
 public:
  using Tick = uint64_t;
  static constexpr Tick kNever = std::numeric_limits<Tick>::max();

  // start: the tick the wheel is at now (> 0).
  explicit TimerWheel(uint32_t capacity, Tick start = 1);

  uint32_t capacity() const { return capacity_; }
  Tick now() const { return now_; }
  std::size_t armed() const { return armed_; }

  // Arms (or re-arms) timer id to fire at tick expiry. An expiry not after now fires on the next
  // advance(). Expiries more than 2^32 ticks ahead are clamped to that horizon.
  void arm(uint32_t id, Tick expiry);
  // Returns whether the timer was armed.
  bool cancel(uint32_t id);
  bool is_armed(uint32_t id) const { return nodes_[kSentinels + id].expiry != 0; }
  Tick expiry(uint32_t id) const { return nodes_[kSentinels + id].expiry; }

  // Moves the wheel to tick `to`, calling fire(id) for every timer that expires on the way, in
  // expiry order between slots. fire may arm and cancel timers, itself included.
  template <class Fire>
  void advance(Tick to, Fire&& fire);

  // The earliest tick at which advance() may have something to do: exact for level 0, the next
  // cascade for higher levels. kNever when nothing is armed.
  Tick next_deadline() const;

 private:
  static constexpr int kLevels = 4;
  static constexpr int kBits = 8;
  static constexpr uint32_t kSlots = 1u << kBits;
  static constexpr uint32_t kMask = kSlots - 1;
  // One sentinel per slot, plus the list of timers already due.
  static constexpr uint32_t kDueList = kLevels * kSlots;
  static constexpr uint32_t kSentinels = kDueList + 1;

  struct Node {
    uint32_t next;
    uint32_t prev;
    Tick expiry;  // 0: not armed
  };

  static uint32_t head(int level, uint32_t slot) {
    return static_cast<uint32_t>(level) * kSlots + slot;
  }
  void link(uint32_t list, uint32_t node);
  void unlink(uint32_t node);
  bool list_empty(uint32_t list) const { return nodes_[list].next == list; }
  void place(uint32_t node);
  void cascade();
  template <class Fire>
  void run_list(uint32_t list, Fire& fire);
  void set_bit(int level, uint32_t slot) { bits_[level][slot >> 6] |= uint64_t{1} << (slot & 63); }
  void clear_bit(int level, uint32_t slot) {
    bits_[level][slot >> 6] &= ~(uint64_t{1} << (slot & 63));
  }
  // First occupied slot of level at or after slot `from`, circularly; -1 if none.
  int find_occupied(int level, uint32_t from) const;

  uint32_t capacity_;
  Tick now_;
  std::size_t armed_ = 0;
  LazyArray<Node> nodes_;
  uint64_t bits_[kLevels][kSlots / 64] = {};
};

template <class Fire>
void TimerWheel::run_list(uint32_t list, Fire& fire) {
  while (!list_empty(list)) {
    uint32_t node = nodes_[list].next;
    unlink(node);
    nodes_[node].expiry = 0;
    --armed_;
    fire(node - kSentinels);
  }
}

template <class Fire>
void TimerWheel::advance(Tick to, Fire&& fire) {
  run_list(kDueList, fire);
  while (now_ < to) {
    if (armed_ == 0) {
      now_ = to;
      break;
    }
    // Jump to the next occupied level-0 slot in this window, or to the window's end.
    uint32_t index = static_cast<uint32_t>(now_ & kMask);
    Tick window_end = (now_ | kMask) + 1;
    Tick next = window_end;
    int slot = index == kMask ? -1 : find_occupied(0, index + 1);
    if (slot > static_cast<int>(index)) next = (now_ & ~Tick{kMask}) + static_cast<Tick>(slot);
    if (next > to) {
      now_ = to;
      break;
    }
    now_ = next;
    if ((now_ & kMask) == 0) cascade();
    uint32_t current = static_cast<uint32_t>(now_ & kMask);
    run_list(head(0, current), fire);
    clear_bit(0, current);
    run_list(kDueList, fire);
  }
}

}  // namespace myriad::detail
