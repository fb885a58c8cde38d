#include "timer_wheel.hpp"

#include <algorithm>
#include <bit>

namespace myriad::detail {

TimerWheel::TimerWheel(uint32_t capacity, Tick start)
    : capacity_(capacity),
      now_(start == 0 ? 1 : start),
      nodes_(std::size_t{kSentinels} + capacity) {
  for (uint32_t list = 0; list < kSentinels; ++list) {
    nodes_[list].next = list;
    nodes_[list].prev = list;
  }
}

void TimerWheel::link(uint32_t list, uint32_t node) {
  uint32_t last = nodes_[list].prev;
  nodes_[node].next = list;
  nodes_[node].prev = last;
  nodes_[last].next = node;
  nodes_[list].prev = node;
}

void TimerWheel::unlink(uint32_t node) {
  uint32_t next = nodes_[node].next;
  uint32_t prev = nodes_[node].prev;
  nodes_[prev].next = next;
  nodes_[next].prev = prev;
  // The last timer left a slot: clear its bit, so next_deadline() stays exact.
  if (next == prev && next < kDueList) {
    clear_bit(static_cast<int>(next / kSlots), next % kSlots);
  }
}

void TimerWheel::place(uint32_t node) {
  Tick expiry = nodes_[node].expiry;
  if (expiry <= now_) {
    link(kDueList, node);
    return;
  }
  Tick delta = expiry - now_;
  constexpr Tick kHorizon = (Tick{1} << (kBits * kLevels)) - 1;
  if (delta > kHorizon) {
    expiry = now_ + kHorizon;
    nodes_[node].expiry = expiry;
    delta = kHorizon;
  }
  int level = 0;
  while (delta >= (Tick{1} << (kBits * (level + 1)))) ++level;
  uint32_t slot = static_cast<uint32_t>((expiry >> (kBits * level)) & kMask);
  link(head(level, slot), node);
  set_bit(level, slot);
}

void TimerWheel::arm(uint32_t id, Tick expiry) {
  uint32_t node = kSentinels + id;
  if (nodes_[node].expiry != 0) {
    unlink(node);
  } else {
    ++armed_;
  }
  nodes_[node].expiry = std::max<Tick>(expiry, 1);
  place(node);
}

bool TimerWheel::cancel(uint32_t id) {
  uint32_t node = kSentinels + id;
  if (nodes_[node].expiry == 0) return false;
  unlink(node);
  nodes_[node].expiry = 0;
  --armed_;
  return true;
}

void TimerWheel::cascade() {
  // Level k's current slot comes due when the k lower levels all wrap at once. Cascade the
  // highest such level first so that what it moves down lands in slots not yet passed.
  int top = 1;
  while (top + 1 < kLevels && ((now_ >> (kBits * top)) & kMask) == 0) ++top;
  for (int level = top; level >= 1; --level) {
    uint32_t slot = static_cast<uint32_t>((now_ >> (kBits * level)) & kMask);
    uint32_t list = head(level, slot);
    while (!list_empty(list)) {
      uint32_t node = nodes_[list].next;
      unlink(node);
      place(node);
    }
    clear_bit(level, slot);
  }
}

int TimerWheel::find_occupied(int level, uint32_t from) const {
  from &= kMask;
  for (uint32_t pass = 0; pass < 2; ++pass) {
    uint32_t begin = pass == 0 ? from : 0;
    uint32_t end = pass == 0 ? kSlots : from;
    for (uint32_t word = begin >> 6; word < kSlots / 64 && (word << 6) < end; ++word) {
      uint64_t bits = bits_[level][word];
      if (word == begin >> 6) bits &= ~uint64_t{0} << (begin & 63);
      if (bits == 0) continue;
      uint32_t slot = (word << 6) + static_cast<uint32_t>(std::countr_zero(bits));
      if (slot < end) return static_cast<int>(slot);
    }
  }
  return -1;
}

TimerWheel::Tick TimerWheel::next_deadline() const {
  if (!list_empty(kDueList)) return now_;
  if (armed_ == 0) return kNever;
  Tick best = kNever;
  for (int level = 0; level < kLevels; ++level) {
    int shift = kBits * level;
    uint32_t current = static_cast<uint32_t>((now_ >> shift) & kMask);
    int slot = find_occupied(level, current + 1);
    if (slot < 0) continue;
    Tick span = Tick{1} << (shift + kBits);
    Tick base = now_ & ~(span - 1);
    Tick when = base + (static_cast<Tick>(slot) << shift);
    if (static_cast<uint32_t>(slot) <= current) when += span;
    best = std::min(best, when);
  }
  return std::max(best, now_ + 1);
}

}  // namespace myriad::detail
