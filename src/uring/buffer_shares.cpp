// The buffer-share policy (see buffer_shares.hpp): what each ring may hold, how shares grow
// while a ring starves and decay when it does not, which chunks go where, and when a ring's
// buffers are taken back.
#include "uring/buffer_shares.hpp"

#include <cassert>

namespace myriad::detail {

BufferShares::BufferShares(BufferPool& pool, Clock::time_point now)
    : pool_(pool),
      chunks_(pool.count()),
      origin_(pool.count(), 0),
      place_(pool.count(), kFree),
      busy_counted_at_(now),
      now_(now),
      last_decay_(now) {}

uint32_t BufferShares::add_ring() {
  uint32_t index = static_cast<uint32_t>(rings_.size());
  RingShare& r = rings_.emplace_back();
  r.taken_back_at = now_ - kTakeBackEvery;
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
  if (r.taken_turn != turns_) {  // the first take this turn
    bool joins = quiet(r);
    r.taken_turn = turns_;
    r.taken = 0;
    r.last_take = now_;
    if (!r.active) {
      r.active = true;
      active_.push_back(ring);
    }
    if (joins && ++busy_ > busy_peak_) {  // one more ring takes chunks
      busy_peak_ = busy_;
      clamp_shares();
    }
  }
  r.peak_taken = std::max(r.peak_taken, ++r.taken);
}

uint32_t BufferShares::released(uint32_t chunk) {
  assert(place_[chunk] == kOut);
  --out_;
  uint32_t ring = origin_[chunk];
  const RingShare& r = rings_[ring];
  bool starving_here = r.starving_at != kNone;
  bool others_starve = starving_list_.size() > (starving_here ? 1u : 0u);
  if (!others_starve && r.held < r.share) {
    put_in(ring, chunk);
    return ring;
  }
  place_[chunk] = kFree;
  pool_.give(chunk);
  return kNone;
}

void BufferShares::receive_ended(uint32_t ring) {
  assert(rings_[ring].armed > 0);
  if (--rings_[ring].armed == 0) busy_counted_at_ = now_ - kQuietTime;  // count again soon
}

void BufferShares::starving(uint32_t ring) {
  RingShare& r = rings_[ring];
  if (r.starving_at != kNone) return;
  r.starving_at = static_cast<uint32_t>(starving_list_.size());
  starving_list_.push_back(ring);
  // A ring taken back has a small share or none; one that starves needs room for a few chunks.
  r.share = std::max(r.share, kMinRingShare);
}

void BufferShares::fed(uint32_t ring) {
  RingShare& r = rings_[ring];
  if (r.starving_at == kNone) return;
  starving_list_.erase(starving_list_.begin() + r.starving_at);
  for (uint32_t i = r.starving_at; i < starving_list_.size(); ++i)
    rings_[starving_list_[i]].starving_at = i;
  r.starving_at = kNone;
}

void BufferShares::ran_dry(uint32_t ring, uint32_t waiting) {
  RingShare& r = rings_[ring];
  r.starved_lately = true;
  r.share = std::min(share_cap(), std::max(r.share * 2, r.share + waiting + 1));
}

bool BufferShares::takeable(const RingShare& r) const {
  if (r.starving_at != kNone || r.held < kTakeBackAtLeast) return false;
  if (r.armed == 0) return true;  // nothing can take its chunks
  if (now_ - r.taken_back_at < kTakeBackEvery) return false;
  // Quiet, or holding half again its share: it grew while it had the slice to itself and
  // was clamped when another ring got busy, and the surplus would wait in its buffer ring until
  // the kernel takes it (when the traffic moves on from it, maybe never).
  return quiet(r) || r.held > r.share + r.share / 2;
}

uint32_t BufferShares::victim_for(uint32_t hungry) {
  uint32_t victim = kNone;
  uint32_t count = static_cast<uint32_t>(rings_.size());
  for (uint32_t n = std::min(kLooksPerSearch, count); n > 0; --n) {
    uint32_t k = search_at_;
    search_at_ = search_at_ + 1 < count ? search_at_ + 1 : 0;
    const RingShare& r = rings_[k];
    if (k == hungry || !takeable(r)) continue;
    if (victim == kNone || r.held > rings_[victim].held) victim = k;
  }
  return victim;
}

void BufferShares::reclaimed(uint32_t ring, uint32_t chunk) {
  assert(place_[chunk] == kInRing && origin_[chunk] == ring);
  place_[chunk] = kFree;
  --rings_[ring].held;
  pool_.give(chunk);
}

void BufferShares::taken_back(uint32_t ring) {
  RingShare& r = rings_[ring];
  assert(r.held == 0);
  r.share = r.armed > 0 ? kMinRingShare : 0;
  r.taken_back_at = now_;
  ++take_backs_;
}

// Counts the rings taking chunks now among those that took any since the last decay: at most
// once per kQuietTime, and sooner after a ring's last receive ended.
void BufferShares::count_busy() {
  busy_ = 0;
  for (uint32_t k : active_) {
    const RingShare& r = rings_[k];
    if (!quiet(r) && (r.armed > 0 || r.starving_at != kNone)) ++busy_;
  }
  busy_counted_at_ = now_;
}

uint32_t BufferShares::share_cap() {
  if (now_ - busy_counted_at_ >= kQuietTime) count_busy();
  return std::max(share_floor(), chunks_ / std::max(1u, busy_));
}

void BufferShares::clamp_shares() {
  uint32_t cap = share_cap();
  for (RingShare& r : rings_) r.share = std::min(r.share, cap);
}

void BufferShares::end_turn(Clock::time_point now) {
  now_ = now;
  ++turns_;
  if (rings_.size() >= 2 && now - last_decay_ >= std::chrono::seconds(1)) decay();
}

// Once a second, a ring that did not starve gives up a quarter of its share, but not below
// twice the most chunks the kernel took from it in one loop turn (its bursts), and no ring
// keeps more than share_cap(). Rings that took nothing in the second leave the active list.
void BufferShares::decay() {
  last_decay_ = now_;
  std::size_t kept = 0;
  for (uint32_t k : active_) {
    if (rings_[k].peak_taken > 0) {
      active_[kept++] = k;
    } else {
      rings_[k].active = false;
    }
  }
  active_.resize(kept);
  count_busy();
  busy_peak_ = busy_;
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
  for (uint32_t k = 0; k < rings_.size(); ++k) {
    if (held[k] != rings_[k].held)
      return fail("ring " + std::to_string(k) + " counted " + std::to_string(rings_[k].held) +
                  ", chunks in it " + std::to_string(held[k]));
    uint32_t at = rings_[k].starving_at;
    if (at != kNone && (at >= starving_list_.size() || starving_list_[at] != k))
      return fail("ring " + std::to_string(k) + " misplaced in the starving list");
  }
  for (uint32_t k : starving_list_) {
    if (rings_[k].starving_at == kNone) return fail("a fed ring in the starving list");
  }
  return true;
}

}  // namespace myriad::detail
