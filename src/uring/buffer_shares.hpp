// Internal to src/uring/. How a shard's receive chunks are shared among its io_uring rings: the
// policy alone, with no liburing in it, so that it can be tested without a kernel
// (tests/unit/buffer_shares_test.cpp). The backend reports what happened (the kernel took a
// chunk from a ring, a receive found its ring dry, the shard let go of a chunk, a turn ended)
// and asks what to do (which chunks to put into which ring, which ring's buffers to take back);
// the buffer ring itself is BufferRing's business.
//
// Every chunk of the slice is in exactly one place: the shard's free list (the BufferPool), a
// ring's buffer ring (given to the kernel, not yet taken), or out (taken by the kernel and held
// by the shard until it lets go). Each chunk out remembers the ring it came from.
//
// Shard thread only, like the backend that owns it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "buffer_pool.hpp"

namespace myriad::detail {

class BufferShares {
 public:
  using Clock = std::chrono::steady_clock;
  // Returned for "no ring": the chunk went to the free list, or there is nothing to take back.
  static constexpr uint32_t kNone = UINT32_MAX;
  // Chunks a ring keeps provided when it is one of several and not busy.
  static constexpr uint32_t kMinRingShare = 8;

  // pool: the shard's slice, every chunk free; its free list is the one shares deal from.
  // now: the time the first turn starts.
  BufferShares(BufferPool& pool, Clock::time_point now);

  // ---- Rings ----
  // Adds a ring (the next index) with its starting share: the whole slice for the first ring,
  // a small one for later rings, which grow on demand.
  uint32_t add_ring();
  uint32_t ring_count() const { return static_cast<uint32_t>(rings_.size()); }

  // ---- Where chunks go ----
  // A free chunk for ring, counted in it, while the ring holds less than its share.
  bool fill(uint32_t ring, uint32_t& chunk);
  // The kernel took chunk from ring's buffer ring (a receive completion named it).
  void taken(uint32_t ring, uint32_t chunk);
  // The shard let go of chunk: the ring to put it back into (counted there already), or kNone
  // when it went to the free list. While another ring starves, it goes to the free list, for
  // deal() to hand out.
  uint32_t released(uint32_t chunk);

  // ---- Starving ----
  // Connections on ring wait for chunks (its queue is no longer empty) / none wait any more.
  void starving(uint32_t ring);
  void fed(uint32_t ring);
  bool any_starving() const { return starving_count_ > 0; }
  bool is_starving(uint32_t ring) const { return rings_[ring].starving; }
  // A receive on ring ended because the ring was empty (ENOBUFS), with `waiting` connections
  // already waiting there: its share grows.
  void ran_dry(uint32_t ring, uint32_t waiting);
  // Deals the free list out to the starving rings, one chunk to each in turn while their shares
  // allow: give(ring, chunk) for each chunk, counted in that ring. Filled in ring order, the
  // first ring (its share grown by its own ENOBUFS) would take it all while the others starve.
  template <class Give>
  void deal(Give&& give);

  // ---- Taking a hoard back ----
  // Asked when `hungry` starves and the free list is empty: the ring whose buffers to take back
  // for it, or kNone. can_take(ring) is the backend's own condition (it has seen every
  // completion of that ring, so the kernel holds no chunk of it that the shares do not know of).
  template <class CanTake>
  uint32_t victim_for(uint32_t hungry, CanTake&& can_take) const;
  // The buffer ring of `ring` was taken back: back(ring, chunk) for each chunk it still held,
  // which goes to the free list, then taken_back(ring). Chunks of that ring that are out stay
  // out and, when the shard lets go of them, go where released() says.
  void reclaimed(uint32_t ring, uint32_t chunk);
  void taken_back(uint32_t ring);

  // ---- Time ----
  // Once per loop turn, at its end: now and then, shares decay.
  void end_turn(Clock::time_point now);

  // ---- Inspection ----
  uint32_t share(uint32_t ring) const { return rings_[ring].share; }
  // Chunks in ring's buffer ring: given to the kernel and not taken yet.
  uint32_t held(uint32_t ring) const { return rings_[ring].held; }
  uint32_t out() const { return out_; }
  uint32_t free_count() const { return pool_.free_count(); }
  uint32_t chunks() const { return chunks_; }
  // Whether every count agrees with every chunk's place (walks all chunks: tests and debug
  // checks only). On failure, why says what disagrees.
  bool consistent(std::string* why = nullptr) const;

 private:
  enum Place : uint8_t { kFree, kInRing, kOut };

  struct RingShare {
    uint32_t held = 0;   // chunks in the buffer ring
    uint32_t share = 0;  // how many it may hold
    bool starving = false;
    bool starved_lately = false;  // ran dry since the last decay
    uint64_t taken_turn = 0;      // the loop turn `taken` counts
    uint32_t taken = 0;           // chunks the kernel took from this ring in that turn
    uint32_t peak_taken = 0;      // the most in one turn since the last decay
  };

  // What a ring starts with (after ring 0), and the least decay leaves it.
  uint32_t share_floor() const { return std::max(kMinRingShare, chunks_ / 16); }
  // The most a ring may hold while `busy` rings take chunks: an equal part of the slice. Shares
  // that could each grow to the whole slice let whichever busy ring was not starving at the
  // moment take back every chunk as its reserve while the other starved, and the two took turns.
  uint32_t share_cap() const;
  // One more ring became busy: no ring keeps more than its part, from now on.
  void clamp_shares();
  void decay(Clock::time_point now);
  void put_in(uint32_t ring, uint32_t chunk);

  BufferPool& pool_;
  uint32_t chunks_;
  std::vector<RingShare> rings_;
  std::vector<uint16_t> origin_;  // per chunk: the ring it was last put into
  std::vector<Place> place_;      // per chunk
  std::vector<uint32_t> hungry_;  // deal()'s list of starving rings (kept to reuse its memory)
  uint32_t out_ = 0;
  uint32_t starving_count_ = 0;
  uint64_t turns_ = 0;              // loop turns, for RingShare::taken
  uint32_t busy_rings_ = 0;         // rings the kernel took chunks from since the last decay
  uint32_t busy_rings_before_ = 0;  // ... and in the period before
  Clock::time_point last_decay_;
};

template <class Give>
void BufferShares::deal(Give&& give) {
  if (starving_count_ == 0) return;
  hungry_.clear();
  for (uint32_t k = 0; k < rings_.size(); ++k) {
    if (rings_[k].starving) hungry_.push_back(k);
  }
  for (bool gave = true; gave && pool_.free_count() > 0;) {
    gave = false;
    for (uint32_t k : hungry_) {
      uint32_t chunk;
      if (rings_[k].held < rings_[k].share && pool_.take(chunk)) {
        put_in(k, chunk);
        give(k, chunk);
        gave = true;
      }
    }
  }
}

template <class CanTake>
uint32_t BufferShares::victim_for(uint32_t hungry, CanTake&& can_take) const {
  uint32_t victim = kNone;
  if (rings_[hungry].held > 0) return kNone;  // only for a ring with nothing left
  for (uint32_t k = 0; k < rings_.size(); ++k) {
    const RingShare& r = rings_[k];
    if (k == hungry || r.starving || r.held == 0) continue;
    if (!can_take(k)) continue;
    if (victim == kNone || r.held > rings_[victim].held) victim = k;
  }
  return victim;
}

}  // namespace myriad::detail
