// One shard's topics: subscriptions, delivery, the backlog of slow subscribers.
//
// Data layout (what a subscription costs):
// - each local topic keeps its members in one vector of 16-byte Members (connection id,
//   encoding, and the link to that connection's next subscription), grown by half at a time;
// - each subscribing connection has a 40-byte Slot in a paged table indexed by connection id
//   (pages of 256, allocated when the first connection in them subscribes, freed when the
//   last leaves): its handle, the head of its subscription list, its drop count, its backlog;
// - a connection's subscriptions form a singly linked list through the Members, so removing
//   one is O(its subscriptions) to find and O(1) to swap out of the topic's vector.
// Nothing else exists for a subscriber that keeps up; a Backlog only while it does not.
//
// Delivery walks a topic's members by index. Removals that happen meanwhile (a handler
// callback that unsubscribes, a subscriber found closed, a slow consumer closed) mark the member
// dead instead of moving others, and the dead are swept out once the walk ends.
#include <algorithm>
#include <cassert>
#include <utility>

#include "pubsub_impl.hpp"

namespace myriad {

using pubsub::kNone;
using pubsub::Pending;
using pubsub::Topic;

namespace {
constexpr std::string_view kSlowConsumer = "slow consumer";
}

TopicShard::TopicShard(PubSubImpl& owner, unsigned index) : owner_(owner), index_(index) {}

TopicShard::~TopicShard() {
  for (auto& page : pages_) {
    if (!page) continue;
    for (Slot& s : page->slots) delete s.backlog;
  }
}

void TopicShard::add_memory(long long bytes) {
  memory_ += bytes;
  if (bytes >= 0) {
    counters_.memory_bytes.add(static_cast<uint64_t>(bytes));
  } else {
    counters_.memory_bytes.sub(static_cast<uint64_t>(-bytes));
  }
}

// ---- Slots ----

TopicShard::Slot* TopicShard::find_slot(Connection c) {
  uint32_t id = c.id();
  uint32_t page = id / kPageSlots;
  if (page >= pages_.size() || !pages_[page]) return nullptr;
  Slot& s = pages_[page]->slots[id % kPageSlots];
  return s.conn == c ? &s : nullptr;
}

const TopicShard::Slot* TopicShard::find_slot(Connection c) const {
  return const_cast<TopicShard*>(this)->find_slot(c);
}

TopicShard::Slot& TopicShard::claim_slot(Connection c) {
  uint32_t id = c.id();
  uint32_t page = id / kPageSlots;
  if (page >= pages_.size()) {
    std::size_t before = pages_.capacity();
    pages_.resize(page + 1);
    add_memory(static_cast<long long>((pages_.capacity() - before) * sizeof(pages_[0])));
  }
  if (!pages_[page]) {
    pages_[page] = std::make_unique<Page>();
    add_memory(sizeof(Page));
  }
  Page& p = *pages_[page];
  Slot& s = p.slots[id % kPageSlots];
  if (s.conn == c) return s;
  if (s.conn != Connection()) {
    // A connection that closed without on_close reaching us held this id before.
    counters_.dead_subscribers.add(s.subs);
    remove_all(id, s);
    s = Slot{};
  } else {
    ++p.used;
  }
  s.conn = c;
  return s;
}

void TopicShard::release_slot(uint32_t id) {
  uint32_t page = id / kPageSlots;
  Page& p = *pages_[page];
  Slot& s = p.slots[id % kPageSlots];
  assert(s.subs == 0 && s.backlog == nullptr);
  s = Slot{};
  if (--p.used == 0) {
    pages_[page].reset();
    add_memory(-static_cast<long long>(sizeof(Page)));
  }
}

// ---- Subscribing ----

uint32_t TopicShard::local_topic(Topic* t) {
  // Under t's bucket mutex.
  if (t->local[index_] != kNone) return t->local[index_];
  uint32_t li;
  if (!free_topics_.empty()) {
    li = free_topics_.back();
    free_topics_.pop_back();
  } else {
    li = static_cast<uint32_t>(topics_.size());
    std::size_t before = topics_.capacity();
    topics_.emplace_back();
    add_memory(static_cast<long long>((topics_.capacity() - before) * sizeof(topics_[0])));
  }
  topics_[li] = std::make_unique<LocalTopic>();
  topics_[li]->topic = t;
  add_memory(sizeof(LocalTopic));
  counters_.topics.add();
  t->local[index_] = li;
  ++t->refs;
  if (t->listening++ == 0) owner_.registry.listened.fetch_add(1, std::memory_order_relaxed);
  return li;
}

bool TopicShard::subscribe(Connection c, std::string_view name, EncodingId encoding) {
  if (!c.valid()) return false;
  Slot& s = claim_slot(c);
  for (Link l = s.head; l.topic != kNone; l = topics_[l.topic]->members[l.pos].next) {
    if (topics_[l.topic]->topic->name == name) return true;
  }
  uint32_t li;
  uint64_t first;
  {
    std::size_t hash = pubsub::Registry::hash_of(name);
    pubsub::Registry::Bucket& bucket = owner_.registry.bucket(hash);
    std::lock_guard lock(bucket.mutex);
    Topic* t = pubsub::Registry::find(bucket, name);
    if (t == nullptr) {
      t = new Topic(std::string(name), hash, owner_.policy_of(name), owner_.shard_count);
      bucket.topics.emplace(t->name, t);
    }
    li = local_topic(t);
    // Offsets are taken under this lock: every message published from now on has at least
    // this one, and those with less (perhaps still in the inbox) are not for this subscription.
    first = t->in_flight[index_].load(std::memory_order_relaxed) == 0 ? 0 : t->next_offset;
  }
  LocalTopic& lt = *topics_[li];
  std::vector<Member>& v = lt.members;
  if (v.size() == v.capacity()) {
    std::size_t before = v.capacity();
    v.reserve(std::max<std::size_t>(4, before + before / 2));
    add_memory(static_cast<long long>((v.capacity() - before) * sizeof(Member)));
  }
  auto pos = static_cast<uint32_t>(v.size());
  uint16_t serial = lt.next_serial++;
  v.push_back(Member{c.id(), encoding, first != 0, serial, s.head});
  if (first != 0) {
    std::size_t fresh_before = lt.fresh.capacity();
    lt.fresh.push_back(Fresh{first, c.id(), serial});
    add_memory(static_cast<long long>((lt.fresh.capacity() - fresh_before) * sizeof(Fresh)));
  }
  s.head = Link{li, pos};
  ++s.subs;
  lt.topic->subscribers.fetch_add(1, std::memory_order_relaxed);
  counters_.subscriptions.add();
  return true;
}

bool TopicShard::unsubscribe(Connection c, std::string_view name) {
  Slot* s = find_slot(c);
  if (s == nullptr) return false;
  for (Link* p = &s->head; p->topic != kNone; p = &topics_[p->topic]->members[p->pos].next) {
    if (topics_[p->topic]->topic->name != name) continue;
    remove_link(*s, p);
    if (s->subs == 0) {
      free_backlog(*s);
      release_slot(c.id());
    }
    return true;
  }
  return false;
}

void TopicShard::unsubscribe_all(Connection c) {
  Slot* s = find_slot(c);
  if (s == nullptr) return;
  remove_all(c.id(), *s);
  release_slot(c.id());
}

void TopicShard::remove_all(uint32_t, Slot& s) {
  while (s.head.topic != kNone) remove_link(s, &s.head);
  free_backlog(s);
}

void TopicShard::remove_link(Slot& s, Link* prev) {
  Link l = *prev;
  LocalTopic& lt = *topics_[l.topic];
  Member& m = lt.members[l.pos];
  *prev = m.next;
  --s.subs;
  lt.topic->subscribers.fetch_sub(1, std::memory_order_relaxed);
  counters_.subscriptions.sub();
  if (s.backlog != nullptr) {
    // What it held of this topic goes with the subscription.
    Backlog& b = *s.backlog;
    for (std::size_t i = b.head; i < b.items.size();) {
      if (b.items[i].topic != l.topic) {
        ++i;
        continue;
      }
      b.bytes -= b.items[i].frame.size();
      counters_.held_bytes.sub(b.items[i].frame.size());
      b.items.erase(b.items.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  if (lt.delivering) {
    m.conn = kDead;
    ++lt.dead;
    // Nobody left: publishers stop sending here now, even if the delivery in progress only
    // ends later (or never, if the shard stops first).
    if (lt.dead == lt.members.size()) unlist(l.topic);
    return;
  }
  swap_remove(l.topic, l.pos);
  if (lt.members.empty()) drop_local_topic(l.topic);
}

void TopicShard::swap_remove(uint32_t li, uint32_t pos) {
  std::vector<Member>& v = topics_[li]->members;
  auto last = static_cast<uint32_t>(v.size() - 1);
  if (pos != last) {
    Member moved = v[last];
    v[pos] = moved;
    if (moved.conn != kDead) {
      // Whoever linked to the moved member now finds it at pos.
      Link* p = &slot_at(moved.conn).head;
      while (p->topic != li || p->pos != last) p = &topics_[p->topic]->members[p->pos].next;
      p->pos = pos;
    }
  }
  v.pop_back();
  // After a mass unsubscribe the vector gives its memory back.
  if (v.capacity() > 64 && v.size() < v.capacity() / 4) {
    std::size_t before = v.capacity();
    std::vector<Member> smaller;
    smaller.reserve(v.size() + v.size() / 2);
    smaller.assign(v.begin(), v.end());
    v.swap(smaller);
    add_memory(-static_cast<long long>((before - v.capacity()) * sizeof(Member)));
  }
}

void TopicShard::unlist(uint32_t li) {
  LocalTopic& lt = *topics_[li];
  if (!lt.listed) return;
  lt.listed = false;
  Topic* t = lt.topic;
  bool wake_needed;
  {
    pubsub::Registry::Bucket& bucket = owner_.registry.bucket(t->hash);
    std::lock_guard lock(bucket.mutex);
    t->local[index_] = kNone;
    if (--t->listening == 0) owner_.registry.listened.fetch_sub(1, std::memory_order_relaxed);
    // Our reference goes when this marker comes out of the inbox: behind every message
    // already pushed to us for t, all of which point at it.
    wake_needed = push(t, 0, SharedBuffer());
  }
  if (wake_needed) wake();
}

void TopicShard::drop_local_topic(uint32_t li) {
  unlist(li);
  LocalTopic& lt = *topics_[li];
  add_memory(-static_cast<long long>(sizeof(LocalTopic) + lt.members.capacity() * sizeof(Member) +
                                     lt.fresh.capacity() * sizeof(Fresh)));
  counters_.topics.sub();
  topics_[li].reset();
  free_topics_.push_back(li);
}

void TopicShard::release_topic(Topic* t) {
  pubsub::Registry::Bucket& bucket = owner_.registry.bucket(t->hash);
  std::lock_guard lock(bucket.mutex);
  if (--t->refs != 0) return;
  bucket.topics.erase(t->name);
  delete t;
}

// ---- The inbox ----

bool TopicShard::push(Topic* topic, uint64_t offset, const SharedBuffer& payload, uint32_t shards) {
  std::lock_guard lock(inbox_mutex_);
  if (offset != 0 && inbox_.size() >= owner_.config.max_inbox) {
    ++inbox_overflows_;
    return false;
  }
  inbox_.push_back(Pending{topic, offset, payload, shards});
  if (offset != 0) topic->in_flight[index_].fetch_add(1, std::memory_order_relaxed);
  if (drain_posted_) return false;
  drain_posted_ = true;
  return true;
}

void TopicShard::wake() {
  shard().post([this] { drain(); });
}

void TopicShard::drain() {
  std::size_t budget = owner_.config.deliveries_per_turn;
  for (;;) {
    if (batch_pos_ == batch_.size()) {
      // The batch is done: take what came meanwhile, while the budget lasts.
      batch_.clear();
      batch_pos_ = 0;
      std::lock_guard lock(inbox_mutex_);
      batch_.swap(inbox_);
      drain_posted_ = false;
      if (batch_.empty()) return;
    }
    const Pending& p = batch_[batch_pos_];
    if (p.offset == 0) {
      release_topic(p.topic);
      ++batch_pos_;
      continue;
    }
    if (current_ == kNone) {
      // From here on no new subscription of this shard can get this message.
      p.topic->in_flight[index_].fetch_sub(1, std::memory_order_relaxed);
      uint32_t li = p.topic->local[index_];
      if (li == kNone) {
        delivered(p);
        ++batch_pos_;
        continue;
      }
      begin_delivery(li, p.offset);
    }
    if (!deliver_some(p, budget)) {
      // The budget is spent: let the loop send what is queued (so connections give their
      // output memory back) and run everything else, then go on from here.
      shard().post([this] { drain(); });
      return;
    }
    end_delivery();
    delivered(p);
    ++batch_pos_;
  }
}

// ---- Delivery ----

void TopicShard::delivered(const Pending& p) {
  const auto& hook = owner_.config.on_delivered;
  if (hook) hook(Message{p.topic->name, p.offset, p.payload}, p.shards);
}

void TopicShard::activate_fresh(uint32_t li, uint64_t offset) {
  LocalTopic& lt = *topics_[li];
  while (lt.fresh_head < lt.fresh.size() && lt.fresh[lt.fresh_head].first <= offset) {
    const Fresh f = lt.fresh[lt.fresh_head++];
    uint32_t page = f.conn / kPageSlots;
    if (page >= pages_.size() || !pages_[page]) continue;  // unsubscribed since
    for (Link l = slot_at(f.conn).head; l.topic != kNone;) {
      Member& m = topics_[l.topic]->members[l.pos];
      if (l.topic == li) {
        if (m.conn == f.conn && m.serial == f.serial) m.fresh = 0;
        break;
      }
      l = m.next;
    }
  }
  if (lt.fresh_head == lt.fresh.size() && lt.fresh_head != 0) {
    std::size_t before = lt.fresh.capacity();
    if (before > 64) {
      std::vector<Fresh>().swap(lt.fresh);
    } else {
      lt.fresh.clear();
    }
    lt.fresh_head = 0;
    add_memory(-static_cast<long long>((before - lt.fresh.capacity()) * sizeof(Fresh)));
  } else if (lt.fresh_head >= 32 && lt.fresh_head * 2 >= lt.fresh.size()) {
    lt.fresh.erase(lt.fresh.begin(), lt.fresh.begin() + static_cast<std::ptrdiff_t>(lt.fresh_head));
    lt.fresh_head = 0;
  }
}

void TopicShard::begin_delivery(uint32_t li, uint64_t offset) {
  activate_fresh(li, offset);
  LocalTopic& lt = *topics_[li];
  current_ = li;
  cursor_ = 0;
  cursor_end_ = static_cast<uint32_t>(lt.members.size());
  encoded_ = 0;
  lt.delivering = true;
}

bool TopicShard::deliver_some(const Pending& p, std::size_t& budget) {
  LocalTopic& lt = *topics_[current_];  // stable: topics are held by pointer
  const Topic& t = *lt.topic;
  Message message{t.name, p.offset, p.payload};
  while (cursor_ < cursor_end_) {
    if (budget == 0) return false;
    --budget;
    // By value: the vector may grow while we deliver (a subscribe from a callback).
    const Member m = lt.members[cursor_++];
    if (m.conn == kDead || m.fresh) continue;
    uint32_t bit = 1u << m.encoding;
    if ((encoded_ & bit) == 0) {
      encoded_ |= bit;
      counters_.encodes.add();
      frames_[m.encoding] = m.encoding == PubSub::kRaw
                                ? p.payload
                                : owner_.encodings.table[m.encoding].encode(message);
    }
    if (frames_[m.encoding].empty()) continue;
    offer(m.conn, m.encoding, current_, t.policy, frames_[m.encoding]);
  }
  return true;
}

void TopicShard::end_delivery() {
  uint32_t li = current_;
  current_ = kNone;
  for (SharedBuffer& f : frames_) f.reset();
  LocalTopic& lt = *topics_[li];
  lt.delivering = false;
  if (lt.dead != 0) {
    for (std::size_t i = lt.members.size(); i-- > 0;) {
      if (lt.members[i].conn == kDead) swap_remove(li, static_cast<uint32_t>(i));
    }
    lt.dead = 0;
  }
  if (lt.members.empty()) drop_local_topic(li);
}

bool TopicShard::send(uint32_t id, Slot& s, const SharedBuffer& frame) {
  if (s.conn.send(frame)) {
    counters_.deliveries.add();
    return true;
  }
  // Closing or closed (perhaps without on_close reaching us): its subscriptions go now.
  counters_.dead_subscribers.add(s.subs);
  remove_all(id, s);
  release_slot(id);
  return false;
}

void TopicShard::offer(uint32_t id, EncodingId encoding, uint32_t li, OverflowPolicy policy,
                       const SharedBuffer& frame) {
  Slot& s = slot_at(id);
  const std::size_t limit = owner_.config.max_queued;
  if (s.backlog != nullptr && !feed(id, s)) return;  // found closed while feeding
  if (s.backlog == nullptr) {
    if (s.conn.queued() < limit) {
      send(id, s, frame);
      return;
    }
    if (policy == OverflowPolicy::kClose) {
      close_slow(id, s, encoding);
      return;
    }
    s.backlog = new Backlog;
    s.backlog->index = static_cast<uint32_t>(backlogged_.size());
    backlogged_.push_back(id);
    counters_.backlogged.add();
    add_memory(sizeof(Backlog));
    if (!check_armed_) {
      check_armed_ = true;
      if (shard().after(owner_.config.drain_check, [this] { check_backlogs(); }) == 0)
        check_armed_ = false;
    }
  }
  if (policy == OverflowPolicy::kClose) {
    close_slow(id, s, encoding);
    return;
  }
  hold(s, li, policy, frame);
}

void TopicShard::hold(Slot& s, uint32_t li, OverflowPolicy policy, const SharedBuffer& frame) {
  Backlog& b = *s.backlog;
  if (policy == OverflowPolicy::kLatest) {
    for (std::size_t i = b.head; i < b.items.size(); ++i) {
      Held& h = b.items[i];
      if (h.topic != li) continue;
      b.bytes = b.bytes - h.frame.size() + frame.size();
      counters_.held_bytes.sub(h.frame.size());
      counters_.held_bytes.add(frame.size());
      h.frame = frame;
      ++s.dropped;
      counters_.conflated.add();
      return;
    }
  }
  std::size_t before = b.items.capacity();
  b.items.push_back(Held{frame, li, policy});
  add_memory(static_cast<long long>((b.items.capacity() - before) * sizeof(Held)));
  b.bytes += frame.size();
  counters_.held_bytes.add(frame.size());
  if (policy != OverflowPolicy::kDrop) return;
  // Drop the oldest held kDrop messages while over the cap; the newest always stays.
  while (b.bytes > owner_.config.max_held) {
    std::size_t i = b.head;
    while (i + 1 < b.items.size() && b.items[i].policy != OverflowPolicy::kDrop) ++i;
    if (i + 1 >= b.items.size()) break;
    b.bytes -= b.items[i].frame.size();
    counters_.held_bytes.sub(b.items[i].frame.size());
    if (i == b.head) {
      b.items[i].frame.reset();
      ++b.head;
    } else {
      b.items.erase(b.items.begin() + static_cast<std::ptrdiff_t>(i));
    }
    ++s.dropped;
    counters_.dropped.add();
  }
}

bool TopicShard::feed(uint32_t id, Slot& s) {
  Backlog& b = *s.backlog;
  const std::size_t limit = owner_.config.max_queued;
  while (b.head < b.items.size() && s.conn.queued() < limit) {
    SharedBuffer frame = std::move(b.items[b.head].frame);
    ++b.head;
    b.bytes -= frame.size();
    counters_.held_bytes.sub(frame.size());
    if (!send(id, s, frame)) return false;  // s is gone, and its backlog with it
  }
  if (b.head == b.items.size()) {
    free_backlog(s);
  } else if (b.head >= 32 && b.head * 2 >= b.items.size()) {
    b.items.erase(b.items.begin(), b.items.begin() + static_cast<std::ptrdiff_t>(b.head));
    b.head = 0;
  }
  return true;
}

void TopicShard::free_backlog(Slot& s) {
  Backlog* b = s.backlog;
  if (b == nullptr) return;
  uint32_t moved = backlogged_.back();
  backlogged_[b->index] = moved;
  slot_at(moved).backlog->index = b->index;
  backlogged_.pop_back();
  counters_.held_bytes.sub(b->bytes);
  counters_.backlogged.sub();
  add_memory(-static_cast<long long>(sizeof(Backlog) + b->items.capacity() * sizeof(Held)));
  delete b;
  s.backlog = nullptr;
}

void TopicShard::close_slow(uint32_t id, Slot& s, EncodingId encoding) {
  Connection c = s.conn;
  counters_.slow_consumer_closes.add();
  remove_all(id, s);
  release_slot(id);
  const Encoding& e = owner_.encodings.table[encoding];
  if (e.goodbye) {
    SharedBuffer last = e.goodbye(kSlowConsumer);
    if (!last.empty()) c.send(last);
  }
  c.close();
  // A consumer too slow to read its queue and the goodbye is reset after the grace period.
  shard().after(owner_.config.close_grace, [c]() mutable {
    if (c.valid()) c.abort();
  });
}

void TopicShard::check_backlogs() {
  check_armed_ = false;
  std::vector<uint32_t> ids = backlogged_;
  for (uint32_t id : ids) {
    uint32_t page = id / kPageSlots;
    if (page >= pages_.size() || !pages_[page]) continue;
    Slot& s = slot_at(id);
    if (s.backlog != nullptr) feed(id, s);
  }
  if (!backlogged_.empty()) {
    check_armed_ = true;
    if (shard().after(owner_.config.drain_check, [this] { check_backlogs(); }) == 0)
      check_armed_ = false;
  }
}

void TopicShard::on_writable(Connection c) {
  Slot* s = find_slot(c);
  if (s != nullptr && s->backlog != nullptr) feed(c.id(), *s);
}

// ---- Reading ----

SubscriberInfo TopicShard::info(Connection c) const {
  SubscriberInfo out;
  const Slot* s = find_slot(c);
  out.queued = c.queued();
  if (s == nullptr) return out;
  out.subscriptions = s->subs;
  out.dropped = s->dropped;
  if (s->backlog != nullptr) {
    out.backlogged = true;
    out.held = s->backlog->bytes;
    out.held_messages = static_cast<uint32_t>(s->backlog->size());
  }
  return out;
}

std::vector<SlowSubscriber> TopicShard::slowest(std::size_t n) const {
  std::vector<SlowSubscriber> out;
  for (uint32_t id : backlogged_) {
    const Slot& s = pages_[id / kPageSlots]->slots[id % kPageSlots];
    out.push_back(SlowSubscriber{s.conn, info(s.conn)});
  }
  std::sort(out.begin(), out.end(), [](const SlowSubscriber& a, const SlowSubscriber& b) {
    return a.info.queued + a.info.held > b.info.queued + b.info.held;
  });
  if (out.size() > n) out.resize(n);
  return out;
}

PubSubCounters TopicShard::counters() const {
  const ShardCounters& c = counters_;
  PubSubCounters out;
  out.deliveries = c.deliveries.get();
  out.encodes = c.encodes.get();
  out.dropped = c.dropped.get();
  out.conflated = c.conflated.get();
  out.slow_consumer_closes = c.slow_consumer_closes.get();
  out.dead_subscribers = c.dead_subscribers.get();
  out.subscriptions = c.subscriptions.get();
  out.topics = c.topics.get();
  out.backlogged = c.backlogged.get();
  out.held_bytes = c.held_bytes.get();
  out.memory_bytes = c.memory_bytes.get();
  {
    std::lock_guard lock(const_cast<std::mutex&>(inbox_mutex_));
    out.inbox_overflows = inbox_overflows_;
  }
  return out;
}

}  // namespace myriad
