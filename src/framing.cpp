// The framers of framing.hpp: whole frames are views into the received bytes, a split frame is
// completed in the connection's spill buffer and delivered from there.
#include <myriad/framing.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>
#include <string>

namespace myriad {

namespace {

std::span<const std::byte> as_bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

std::string_view spilled(Connection c) {
  return detail::as_chars(c.spill());
}

// Drops what is spilled and aborts the connection: the one outcome of a frame too large.
FrameStatus oversize(Connection c) {
  c.spill_consume(c.spill().size());
  c.abort(CloseReason::kInputOverflow);
  return FrameStatus::kOversize;
}

// spill_append refuses (and the shard closes the connection with kInputOverflow) past
// Config::max_spill.
bool keep(Connection c, std::string_view bytes) {
  return c.spill_append(as_bytes(bytes));
}

}  // namespace

const char* to_string(FrameStatus status) {
  switch (status) {
    case FrameStatus::kOk:
      return "ok";
    case FrameStatus::kStopped:
      return "stopped";
    case FrameStatus::kOversize:
      return "oversize";
  }
  return "?";
}

// ---- DelimitedFramer ----

DelimitedFramer::DelimitedFramer(std::string_view delimiter, std::size_t max_frame)
    : delimiter_(delimiter), max_frame_(max_frame) {
  if (delimiter.empty() || delimiter.size() > kMaxDelimiter) {
    throw std::invalid_argument("DelimitedFramer: the delimiter must be 1 to " +
                                std::to_string(kMaxDelimiter) + " bytes, not " +
                                std::to_string(delimiter.size()));
  }
}

DelimitedFramer DelimitedFramer::lines(std::size_t max_line) {
  DelimitedFramer framer("\n", max_line);
  framer.drop_cr_ = true;
  return framer;
}

DelimitedFramer::Delivered DelimitedFramer::deliver(Connection c, std::string_view frame, Sink sink,
                                                    void* on_frame) const {
  if (drop_cr_ && !frame.empty() && frame.back() == '\r') frame.remove_suffix(1);
  if (frame.size() > max_frame_) return Delivered::kOversize;
  return sink(on_frame, frame) && c.valid() ? Delivered::kMore : Delivered::kStop;
}

FrameStatus DelimitedFramer::feed_bytes(Connection c, std::string_view in, Sink sink,
                                        void* on_frame) const {
  const std::string_view d = delimiter_;
  // Bytes a frame may span before its delimiter is found: the limit, plus a line's "\r", plus
  // the delimiter's first bytes when the bytes end inside it.
  const std::size_t longest = max_frame_ + (drop_cr_ ? 1 : 0);
  const std::size_t pending = c.spill().size();
  if (pending != 0) {
    // The frame begun earlier ends at the first delimiter, which may straddle the spill's end
    // and the new bytes: look across the seam first.
    std::size_t end = std::string_view::npos;  // bytes of `in` that complete the frame
    if (d.size() > 1) {
      std::string_view before = spilled(c);
      std::size_t left = std::min(before.size(), d.size() - 1);
      std::size_t right = std::min(in.size(), d.size() - 1);
      std::array<char, 2 * kMaxDelimiter> seam{};
      std::memcpy(seam.data(), before.data() + before.size() - left, left);
      std::memcpy(seam.data() + left, in.data(), right);
      std::size_t at = std::string_view(seam.data(), left + right).find(d);
      if (at != std::string_view::npos && at < left) end = at + d.size() - left;
    }
    if (end == std::string_view::npos) {
      std::size_t at = in.find(d);
      if (at != std::string_view::npos) end = at + d.size();
    }
    if (end == std::string_view::npos) {
      // Still no end: the whole frame so far may not pass the limit (a delimiter's first bytes
      // may be among them).
      if (pending + in.size() > longest + d.size() - 1) return oversize(c);
      return keep(c, in) ? FrameStatus::kOk : FrameStatus::kOversize;
    }
    if (pending + end - d.size() > longest) return oversize(c);
    if (!keep(c, in.substr(0, end))) return FrameStatus::kOversize;
    std::string_view whole = spilled(c);
    Delivered done = deliver(c, whole.substr(0, whole.size() - d.size()), sink, on_frame);
    if (done == Delivered::kOversize) return oversize(c);
    c.spill_consume(whole.size());  // frees the spill buffer
    in.remove_prefix(end);
    if (done == Delivered::kStop) return FrameStatus::kStopped;
  }
  // Frames wholly inside the new bytes: views, no copy.
  for (;;) {
    std::size_t at = in.find(d);
    if (at == std::string_view::npos) break;
    if (at > longest) return oversize(c);
    Delivered done = deliver(c, in.substr(0, at), sink, on_frame);
    if (done == Delivered::kOversize) return oversize(c);
    if (done == Delivered::kStop) return FrameStatus::kStopped;
    in.remove_prefix(at + d.size());
  }
  if (in.empty()) return FrameStatus::kOk;
  if (in.size() > longest + d.size() - 1) return oversize(c);
  return keep(c, in) ? FrameStatus::kOk : FrameStatus::kOversize;
}

// ---- LengthPrefixedFramer ----

LengthPrefixedFramer::LengthPrefixedFramer(std::size_t prefix_bytes, std::size_t max_frame)
    : prefix_(prefix_bytes), max_frame_(max_frame) {
  if (prefix_bytes != 1 && prefix_bytes != 2 && prefix_bytes != 4 && prefix_bytes != 8) {
    throw std::invalid_argument(
        "LengthPrefixedFramer: the prefix must be 1, 2, 4 or 8 bytes, not " +
        std::to_string(prefix_bytes));
  }
  if (prefix_bytes < 8 && max_frame >= (std::size_t{1} << (8 * prefix_bytes))) {
    throw std::invalid_argument("LengthPrefixedFramer: max_frame " + std::to_string(max_frame) +
                                " does not fit a " + std::to_string(prefix_bytes) + "-byte prefix");
  }
}

std::size_t LengthPrefixedFramer::read_prefix(const char* p) const {
  uint64_t n = 0;
  for (std::size_t i = 0; i < prefix_; ++i) n = n << 8 | static_cast<unsigned char>(p[i]);
  return static_cast<std::size_t>(n);
}

void LengthPrefixedFramer::write_prefix(std::size_t size, std::span<std::byte> out) const {
  auto n = static_cast<uint64_t>(size);
  for (std::size_t i = prefix_; i-- > 0;) {
    out[i] = static_cast<std::byte>(n & 0xff);
    n >>= 8;
  }
}

bool LengthPrefixedFramer::send(Connection c, std::string_view payload) const {
  if (payload.size() > max_frame_) return false;
  // Small frames are assembled here so that they take one send() and one block.
  constexpr std::size_t kAssemble = 2048;
  std::array<std::byte, 8 + kAssemble> frame;
  write_prefix(payload.size(), frame);
  if (payload.size() <= kAssemble) {
    if (!payload.empty()) std::memcpy(frame.data() + prefix_, payload.data(), payload.size());
    return c.send(std::span<const std::byte>(frame.data(), prefix_ + payload.size()));
  }
  return c.send(std::span<const std::byte>(frame.data(), prefix_)) && c.send(payload);
}

SharedBuffer LengthPrefixedFramer::encode(std::string_view payload) const {
  return SharedBuffer::make(prefix_ + payload.size(), [&](std::span<std::byte> out) {
    write_prefix(payload.size(), out);
    if (!payload.empty()) std::memcpy(out.data() + prefix_, payload.data(), payload.size());
  });
}

FrameStatus LengthPrefixedFramer::feed_bytes(Connection c, std::string_view in, Sink sink,
                                             void* on_frame) const {
  if (!c.spill().empty()) {
    // Complete the prefix, then the payload, of the frame begun earlier.
    std::size_t have = c.spill().size();
    if (have < prefix_) {
      std::size_t take = std::min(prefix_ - have, in.size());
      if (!keep(c, in.substr(0, take))) return FrameStatus::kOversize;
      in.remove_prefix(take);
      if (c.spill().size() < prefix_) return FrameStatus::kOk;
    }
    std::size_t size = read_prefix(spilled(c).data());
    if (size > max_frame_) return oversize(c);
    std::size_t take = std::min(prefix_ + size - c.spill().size(), in.size());
    if (!keep(c, in.substr(0, take))) return FrameStatus::kOversize;
    in.remove_prefix(take);
    std::string_view whole = spilled(c);
    if (whole.size() < prefix_ + size) return FrameStatus::kOk;
    bool more = sink(on_frame, whole.substr(prefix_, size));
    c.spill_consume(whole.size());  // frees the spill buffer
    if (!more || !c.valid()) return FrameStatus::kStopped;
  }
  // Frames wholly inside the new bytes: views, no copy.
  while (in.size() >= prefix_) {
    std::size_t size = read_prefix(in.data());
    if (size > max_frame_) return oversize(c);
    if (in.size() - prefix_ < size) break;
    if (!sink(on_frame, in.substr(prefix_, size)) || !c.valid()) return FrameStatus::kStopped;
    in.remove_prefix(prefix_ + size);
  }
  if (in.empty()) return FrameStatus::kOk;
  return keep(c, in) ? FrameStatus::kOk : FrameStatus::kOversize;
}

}  // namespace myriad
