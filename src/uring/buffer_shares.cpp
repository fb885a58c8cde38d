// The buffer-share policy (see buffer_shares.hpp): what each ring may hold, how shares grow
// while a ring starves and decay when it does not, and which chunks go where.
#include "uring/buffer_shares.hpp"

#include <cassert>

namespace myriad::detail {

BufferShares::BufferShares(BufferPool& pool, Clock::time_point now)
    : pool_(pool),
      chunks_(pool.count()),
      origin_(pool.count(), 0),
      place_(pool.count(), kFree),
      last_decay_(now) {}

uint32_t BufferShares::add_ring() {
  uint32_t index = static_cast<uint32_t>(rings_.size());
  RingShare& r = rings_.emplace_back();
  // The first ring may hold the whole slice; later ones start small and grow on demand.
  r.share = index == 0 ? chunks_ : std::min(chunks_, share_floor());
  if (index > 0 && rings_[0].share == chunks_)
    rings_[0].share = std::max(kMinRingShare, chunks_ / 2);
  return index;
}

void BufferShares::put_in(uint32_t ring, uint32_t chunk) {
  origin_[chunk] = static_cast<uint16_t>(ring);
  place_[chunk] = kInRing;
  ++rings_[ring].held;
}

bool BufferShares::fill(uint32_t ring, uint32_t& chunk) {
  if (rings_[ring].held >= rings_[ring].share || !pool_.take(chunk)) return false;
  put_in(ring, chunk);
  return true;
}

void BufferShares::taken(uint32_t ring, uint32_t chunk) {
  assert(place_[chunk] == kInRing && origin_[chunk] == ring);
  RingShare& r = rings_[ring];
  place_[chunk] = kOut;
  --r.held;
  ++out_;
  if (r.taken_turn != turns_) {
    r.taken_turn = turns_;
    r.taken = 0;
    if (r.peak_taken == 0 && ++busy_rings_ > busy_rings_before_) clamp_shares();
  }
  r.peak_taken = std::max(r.peak_taken, ++r.taken);
}

uint32_t BufferShares::released(uint32_t chunk) {
  assert(place_[chunk] == kOut);
  --out_;
  uint32_t ring = origin_[chunk];
  const RingShare& r = rings_[ring];
  bool others_starve = starving_count_ > (r.starving ? 1u : 0u);
  if (!others_starve && r.held < r.share) {
    put_in(ring, chunk);
    return ring;
  }
  place_[chunk] = kFree;
  pool_.give(chunk);
  return kNone;
}

void BufferShares::starving(uint32_t ring) {
  if (rings_[ring].starving) return;
  rings_[ring].starving = true;
  ++starving_count_;
}

void BufferShares::fed(uint32_t ring) {
  if (!rings_[ring].starving) return;
  rings_[ring].starving = false;
  --starving_count_;
}

void BufferShares::ran_dry(uint32_t ring, uint32_t waiting) {
  RingShare& r = rings_[ring];
  r.starved_lately = true;
  r.share = std::min(share_cap(), std::max(r.share * 2, r.share + waiting + 1));
}

void BufferShares::reclaimed(uint32_t ring, uint32_t chunk) {
  assert(place_[chunk] == kInRing && origin_[chunk] == ring);
  place_[chunk] = kFree;
  --rings_[ring].held;
  pool_.give(chunk);
}

void BufferShares::taken_back(uint32_t ring) {
  assert(rings_[ring].held == 0);
  rings_[ring].share = share_floor();
}

uint32_t BufferShares::share_cap() const {
  uint32_t busy = std::max({1u, busy_rings_, busy_rings_before_});
  return std::max(share_floor(), chunks_ / busy);
}

void BufferShares::clamp_shares() {
  uint32_t cap = share_cap();
  for (RingShare& r : rings_) r.share = std::min(r.share, cap);
}

void BufferShares::end_turn(Clock::time_point now) {
  decay(now);
  ++turns_;
}

// Once a second, a ring that did not starve gives up a quarter of its share, but not below
// twice the most chunks the kernel took from it in one loop turn (its bursts), and no ring
// keeps more than share_cap().
void BufferShares::decay(Clock::time_point now) {
  if (rings_.size() < 2) return;
  if (now - last_decay_ < std::chrono::seconds(1)) return;
  last_decay_ = now;
  busy_rings_before_ = busy_rings_;
  busy_rings_ = 0;
  uint32_t cap = share_cap();
  for (RingShare& r : rings_) {
    uint32_t keep = std::min(cap, std::max(share_floor(), 2 * r.peak_taken));
    if (r.share > cap) {
      r.share = cap;
    } else if (!r.starved_lately && r.share > keep) {
      r.share = std::max(keep, r.share - r.share / 4);
    }
    r.starved_lately = false;
    r.peak_taken = 0;
  }
}

bool BufferShares::consistent(std::string* why) const {
  auto fail = [why](std::string what) {
    if (why != nullptr) *why = std::move(what);
    return false;
  };
  std::vector<uint32_t> held(rings_.size(), 0);
  uint32_t free = 0, out = 0;
  for (uint32_t c = 0; c < chunks_; ++c) {
    if (origin_[c] >= rings_.size() && place_[c] != kFree)
      return fail("chunk " + std::to_string(c) + " names ring " + std::to_string(origin_[c]));
    switch (place_[c]) {
      case kFree:
        ++free;
        break;
      case kInRing:
        ++held[origin_[c]];
        break;
      case kOut:
        ++out;
        break;
    }
  }
  if (free != pool_.free_count())
    return fail("free list holds " + std::to_string(pool_.free_count()) + ", chunks free " +
                std::to_string(free));
  if (out != out_)
    return fail("out counted " + std::to_string(out_) + ", chunks out " + std::to_string(out));
  uint32_t starving = 0;
  for (uint32_t k = 0; k < rings_.size(); ++k) {
    if (held[k] != rings_[k].held)
      return fail("ring " + std::to_string(k) + " counted " + std::to_string(rings_[k].held) +
                  ", chunks in it " + std::to_string(held[k]));
    if (rings_[k].starving) ++starving;
  }
  if (starving != starving_count_) return fail("starving rings miscounted");
  return true;
}

}  // namespace myriad::detail
