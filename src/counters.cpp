#include <myriad/counters.hpp>

#include <string>
#include <vector>

namespace myriad {

namespace {
// One list of the fields, for += and for to_string.
template <class F>
void each_field(Counters& c, F&& f) {
  f("accepted", c.accepted);
  f("connected", c.connected);
  f("connect_failed", c.connect_failed);
  f("rejected", c.rejected);
  f("open", c.open);
  f("closed_peer", c.closed_peer);
  f("closed_reset", c.closed_reset);
  f("closed_idle", c.closed_idle);
  f("closed_slow_reader", c.closed_slow_reader);
  f("closed_input_overflow", c.closed_input_overflow);
  f("closed_local", c.closed_local);
  f("closed_shutdown", c.closed_shutdown);
  f("bytes_in", c.bytes_in);
  f("bytes_out", c.bytes_out);
  f("receives", c.receives);
  f("sends", c.sends);
  f("buffers_in_use", c.buffers_in_use);
  f("queued_bytes", c.queued_bytes);
  f("buffer_starved", c.buffer_starved);
  f("watermark_pauses", c.watermark_pauses);
  f("buffer_cap_pauses", c.buffer_cap_pauses);
  f("offloads_queued", c.offloads_queued);
  f("offloads_done", c.offloads_done);
  f("offload_waits", c.offload_waits);
  f("accept_errors", c.accept_errors);
  f("stray_wakeups", c.stray_wakeups);
}
}  // namespace

Counters& Counters::operator+=(const Counters& other) {
  Counters copy = other;
  std::vector<uint64_t> values;
  each_field(copy, [&](const char*, uint64_t& v) { values.push_back(v); });
  std::size_t i = 0;
  each_field(*this, [&](const char*, uint64_t& v) { v += values[i++]; });
  return *this;
}

uint64_t Counters::closed_total() const {
  return closed_peer + closed_reset + closed_idle + closed_slow_reader + closed_input_overflow +
         closed_local + closed_shutdown;
}

std::string Counters::to_string() const {
  Counters copy = *this;
  std::string out;
  each_field(copy, [&](const char* name, uint64_t& v) {
    if (!out.empty()) out += ' ';
    out += name;
    out += '=';
    out += std::to_string(v);
  });
  return out;
}

}  // namespace myriad
