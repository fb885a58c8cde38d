// Internal to src/uring/. How a shard's receive chunks are shared among its io_uring rings: the
// policy alone, with no liburing in it, so that it can be tested without a kernel
// (tests/unit/buffer_shares_test.cpp). The backend reports what happened (the kernel took a
// chunk from a ring, a receive was armed or ended, a receive found its ring dry, the shard let
// go of a chunk, a turn ended) and asks what to do (which chunks go into which ring, which
// ring's buffers to take back); the buffer ring itself is BufferRing's business.
//
// Every chunk of the slice is in exactly one place: the shard's free list (the BufferPool), a
// ring's buffer ring (given to the kernel, not yet taken), or out (taken by the kernel and held
// by the shard until it lets go). Each chunk out remembers the ring it came from.
//
// The rules, and the failures that made them:
// - A ring's share (what its buffer ring may hold) grows while it runs dry and decays, once a
//   second, when it does not, but not below twice its largest burst in one turn, and never
//   above an equal part of the slice among the rings taking chunks now. Shares that could each
//   grow to the whole slice let two busy rings take turns starving each other; a cap that also
//   counted rings busy a second ago held the one busy ring to a fraction of the slice when the
//   traffic moved from ring to ring.
// - While a ring starves, freed chunks go to the free list and are dealt out to the starving
//   rings one at a time in turn, not in ring order.
// - A chunk in a buffer ring comes back only when the kernel takes it, so a ring whose
//   connections went quiet keeps what it was given: the idle-ring hoard. (When a hold phase
//   verified its connections ring by ring, each ring's chunks stayed behind as the traffic moved
//   on; after it, the rings it left held most of the slice while the busy ring starved.) When a
//   ring starves and the free list is empty, the buffers of a ring that does not need them are
//   taken back (the backend unregisters its buffer ring): one with no receive armed, one that
//   is quiet (no chunk taken for kQuietTurns turns and kQuietTime, which a busy ring never is),
//   or one holding half again its share (it grew while it had the slice to itself and was
//   clamped when another ring got busy: the ring traffic is leaving). A ring taken
//   back with receives armed keeps kMinRingShare chunks, fewer than kTakeBackAtLeast, because an
//   end of stream on an empty ring completes with ENOBUFS (on a ring with chunks it takes none);
//   chunks of its that come back later go to the free list, so it cannot refill itself and be
//   taken back again, and in any case not within kTakeBackEvery. An earlier attempt took back
//   any ring not starving at that moment, busy ones included, and cost the million-connection
//   run its flat cost.
// - No per-turn work grows with the number of rings: starving rings are kept in a list, a search
//   for a ring to take back looks at kLooksPerSearch rings (where the last search stopped), the
//   rings taking chunks are counted at most once per kQuietTime among those that took any in
//   the last second, and only the once-a-second decay looks at every ring.
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
  // The least share of a starving ring, and what a ring taken back keeps for its receives.
  static constexpr uint32_t kMinRingShare = 8;
  // A ring holding fewer chunks is not worth taking back.
  static constexpr uint32_t kTakeBackAtLeast = 16;
  // A ring that took no chunk for this many turns and this long is quiet: it no longer counts
  // for the cap, and it may be taken back. A ring with traffic takes chunks every few turns
  // (microseconds to a millisecond apart); one left behind by traffic that moved on would
  // otherwise hold its chunks while the next ring starves.
  static constexpr uint64_t kQuietTurns = 2;
  static constexpr Clock::duration kQuietTime = std::chrono::milliseconds(2);
  // The least time between two take-backs of a ring that still has receives armed.
  static constexpr Clock::duration kTakeBackEvery = std::chrono::milliseconds(100);
  // Rings one search for a ring to take back looks at.
  static constexpr uint32_t kLooksPerSearch = 8;

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

  // ---- Receives ----
  // A multishot receive was armed on ring / one ended (its last completion came; for one that
  // ran dry, after starving() if its connection waits for chunks). A ring with no receive armed
  // and no connection waiting takes nothing: it may be taken back at once.
  void receive_armed(uint32_t ring) { ++rings_[ring].armed; }
  void receive_ended(uint32_t ring);

  // ---- Starving ----
  // Connections on ring wait for chunks (its queue is no longer empty) / none wait any more.
  void starving(uint32_t ring);
  void fed(uint32_t ring);
  bool any_starving() const { return !starving_list_.empty(); }
  bool is_starving(uint32_t ring) const { return rings_[ring].starving_at != kNone; }
  // The starving rings, in the order they began to starve.
  const std::vector<uint32_t>& starving_rings() const { return starving_list_; }
  // A receive on ring ended because the ring was empty (ENOBUFS), with `waiting` connections
  // already waiting there: its share grows.
  void ran_dry(uint32_t ring, uint32_t waiting);
  // Deals the free list out to the starving rings, one chunk to each in turn while their shares
  // allow: give(ring, chunk) for each chunk, counted in that ring. Filled in ring order, the
  // first ring (its share grown by its own ENOBUFS) would take it all while the others starve.
  template <class Give>
  void deal(Give&& give);

  // ---- Taking a hoard back ----
  // Asked when `hungry` starves and the free list is empty: a ring whose buffers to take back
  // for it (of the kLooksPerSearch rings looked at, the one holding most), or kNone. Before
  // taking it back, the backend handles every completion of that ring (so the kernel holds no
  // chunk of it that the shares do not know of) and asks may_take_back() again.
  uint32_t victim_for(uint32_t hungry);
  bool may_take_back(uint32_t ring) const { return takeable(rings_[ring]); }
  // The buffer ring of `ring` was taken back: reclaimed(ring, chunk) for each chunk it still
  // held, which goes to the free list, then taken_back(ring). Its share is now kMinRingShare if
  // it has receives armed (fill() gives those back), else 0. Chunks of that ring that are out
  // stay out and, when the shard lets go of them, go to the free list once it holds its share.
  void reclaimed(uint32_t ring, uint32_t chunk);
  void taken_back(uint32_t ring);

  // ---- Time ----
  // Once per loop turn, at its end: now and then, shares decay.
  void end_turn(Clock::time_point now);

  // ---- Inspection ----
  uint32_t share(uint32_t ring) const { return rings_[ring].share; }
  // Chunks in ring's buffer ring: given to the kernel and not taken yet.
  uint32_t held(uint32_t ring) const { return rings_[ring].held; }
  uint32_t armed(uint32_t ring) const { return rings_[ring].armed; }
  uint32_t out() const { return out_; }
  uint32_t free_count() const { return pool_.free_count(); }
  uint32_t chunks() const { return chunks_; }
  uint64_t take_backs() const { return take_backs_; }
  // Whether every count agrees with every chunk's place (walks all chunks: tests and debug
  // checks only). On failure, why says what disagrees.
  bool consistent(std::string* why = nullptr) const;

 private:
  enum Place : uint8_t { kFree, kInRing, kOut };

  struct RingShare {
    uint32_t held = 0;                // chunks in the buffer ring
    uint32_t share = 0;               // how many it may hold
    uint32_t armed = 0;               // multishot receives armed on the ring
    uint32_t starving_at = kNone;     // its place in starving_list_
    bool starved_lately = false;      // ran dry since the last decay
    bool active = false;              // in active_
    uint64_t taken_turn = 0;          // the last turn it took a chunk in (0: never)
    uint32_t taken = 0;               // chunks the kernel took from this ring in that turn
    uint32_t peak_taken = 0;          // the most in one turn since the last decay
    Clock::time_point last_take;      // when it last took a chunk
    Clock::time_point taken_back_at;  // the last take-back (long ago if none)
  };

  // What a ring starts with (after ring 0), and the least decay leaves it.
  uint32_t share_floor() const { return std::max(kMinRingShare, chunks_ / 16); }
  // The most a ring may hold: an equal part of the slice among the rings taking chunks now.
  uint32_t share_cap();
  // No ring keeps more than the cap, from now on (one more ring takes chunks).
  void clamp_shares();
  void count_busy();
  void decay();
  void put_in(uint32_t ring, uint32_t chunk);
  bool quiet(const RingShare& r) const {
    return r.taken_turn == 0 ||
           (turns_ - r.taken_turn > kQuietTurns && now_ - r.last_take >= kQuietTime);
  }
  // Whether ring's buffers may be taken back now (see the rules above).
  bool takeable(const RingShare& r) const;

  BufferPool& pool_;
  uint32_t chunks_;
  std::vector<RingShare> rings_;
  std::vector<uint16_t> origin_;         // per chunk: the ring it was last put into
  std::vector<Place> place_;             // per chunk
  std::vector<uint32_t> starving_list_;  // rings with connections waiting, oldest first
  std::vector<uint32_t> active_;         // rings that took a chunk since the last decay
  uint32_t busy_ = 0;                    // of those, the ones taking chunks now (last count)
  uint32_t busy_peak_ = 0;               // the most since the last decay (clamped at)
  Clock::time_point busy_counted_at_;
  uint32_t out_ = 0;
  uint64_t turns_ = 1;  // loop turns
  uint64_t take_backs_ = 0;
  uint32_t search_at_ = 0;  // where the next search for a ring to take back starts
  Clock::time_point now_;
  Clock::time_point last_decay_;
};

template <class Give>
void BufferShares::deal(Give&& give) {
  for (bool gave = true; gave && pool_.free_count() > 0;) {
    gave = false;
    for (uint32_t k : starving_list_) {
      uint32_t chunk;
      if (rings_[k].held < rings_[k].share && pool_.take(chunk)) {
        put_in(k, chunk);
        give(k, chunk);
        gave = true;
      }
    }
  }
}

}  // namespace myriad::detail
