// Public. Splitting a connection's byte stream into frames: delimited (lines) and
// length-prefixed, built on the connection's spill buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <myriad/chunk.hpp>
#include <myriad/connection.hpp>
#include <myriad/shared_buffer.hpp>

namespace myriad {

// What feed() did with the bytes it was given.
enum class FrameStatus : uint8_t {
  kOk,        // every complete frame was delivered; a partial one waits in the spill buffer
  kStopped,   // on_frame returned false, or the connection was aborted: the rest was dropped
  kOversize,  // a frame passed max_frame (or Config::max_spill): the connection was aborted
              // with CloseReason::kInputOverflow and the rest dropped
};
const char* to_string(FrameStatus status);

// How the framers work, and what they cost. A framer holds only its settings (share one
// between every connection and shard); the partial frame of each connection is kept in that
// connection's spill buffer, which exists only while a frame is incomplete. feed() hands
// on_frame(std::string_view frame) each complete frame in order:
//  - a frame wholly inside the received bytes is a view into them: no copy;
//  - a frame split across receives is copied once into the spill buffer (grown by doubling
//    from 256 bytes), delivered from there, and the spill buffer is freed right after;
//  - scanning for a delimiter is a string_view::find over the new bytes only.
// The view is good until on_frame returns; on_frame must not use the connection's spill
// buffer itself. To stop early (after close(), say) return false from on_frame; the rest of
// the bytes are dropped. An idle connection costs nothing: no per-connection framer object.
// Thread rule: feed() is for the connection's own thread (it uses the spill buffer).
//
// Bad input has one clear outcome: a frame longer than max_frame (known from the prefix, or
// when that many bytes came without a delimiter) aborts the connection (RST), reported to
// on_close as kInputOverflow and counted in closed_input_overflow. A frame split across
// receives must also fit Config::max_spill (1 MiB by default), with the same outcome.

// Frames ended by a delimiter: "\n" for lines, "\r\n", "\0", ... The delimiter is not part of
// the frame.
class DelimitedFramer {
 public:
  static constexpr std::size_t kMaxDelimiter = 16;

  // Throws std::invalid_argument if the delimiter is empty or longer than kMaxDelimiter.
  explicit DelimitedFramer(std::string_view delimiter = "\n", std::size_t max_frame = 64 << 10);
  // Lines ended by "\n" or "\r\n" (the "\r" is dropped too), at most max_line bytes each.
  static DelimitedFramer lines(std::size_t max_line = 8 << 10);

  template <class OnFrame>
  FrameStatus feed(Connection c, std::span<const std::byte> data, OnFrame&& on_frame) const;
  template <class OnFrame>
  FrameStatus feed(Connection c, const Chunk& data, OnFrame&& on_frame) const {
    return feed(c, data.bytes(), std::forward<OnFrame>(on_frame));
  }

  std::string_view delimiter() const { return delimiter_; }
  std::size_t max_frame() const { return max_frame_; }

 private:
  using Sink = bool (*)(void* on_frame, std::string_view frame);
  enum class Delivered : uint8_t { kMore, kStop, kOversize };
  FrameStatus feed_bytes(Connection c, std::string_view in, Sink sink, void* on_frame) const;
  Delivered deliver(Connection c, std::string_view frame, Sink sink, void* on_frame) const;

  std::string delimiter_;
  std::size_t max_frame_;
  bool drop_cr_ = false;
};

// Frames that start with their payload's length: 1, 2, 4 or 8 bytes, big-endian (network
// order), counting the payload only.
class LengthPrefixedFramer {
 public:
  // Throws std::invalid_argument for another prefix size, or a max_frame the prefix cannot
  // express.
  explicit LengthPrefixedFramer(std::size_t prefix_bytes = 4, std::size_t max_frame = 1 << 20);

  // on_frame(std::string_view payload), without the prefix.
  template <class OnFrame>
  FrameStatus feed(Connection c, std::span<const std::byte> data, OnFrame&& on_frame) const;
  template <class OnFrame>
  FrameStatus feed(Connection c, const Chunk& data, OnFrame&& on_frame) const {
    return feed(c, data.bytes(), std::forward<OnFrame>(on_frame));
  }

  // Sends one frame (prefix and payload, copied: see Connection::send). Returns what send()
  // returns; false also for a payload over max_frame, which sends nothing.
  bool send(Connection c, std::string_view payload) const;
  // The frame as a SharedBuffer, encoded once for sending to many connections.
  SharedBuffer encode(std::string_view payload) const;
  // Writes the prefix for a payload of `size` bytes into out (prefix_bytes() long).
  void write_prefix(std::size_t size, std::span<std::byte> out) const;

  std::size_t prefix_bytes() const { return prefix_; }
  std::size_t max_frame() const { return max_frame_; }

 private:
  using Sink = bool (*)(void* on_frame, std::string_view frame);
  FrameStatus feed_bytes(Connection c, std::string_view in, Sink sink, void* on_frame) const;
  std::size_t read_prefix(const char* p) const;

  std::size_t prefix_;
  std::size_t max_frame_;
};

namespace detail {
// Calls a user's on_frame through a plain function pointer, so that the framing itself is
// compiled once, in the library. on_frame may return void (keep going) or bool.
template <class OnFrame>
bool call_on_frame(void* on_frame, std::string_view frame) {
  auto& f = *static_cast<std::remove_reference_t<OnFrame>*>(on_frame);
  if constexpr (std::is_same_v<decltype(f(frame)), void>) {
    f(frame);
    return true;
  } else {
    return static_cast<bool>(f(frame));
  }
}
inline std::string_view as_chars(std::span<const std::byte> data) {
  return {reinterpret_cast<const char*>(data.data()), data.size()};
}
}  // namespace detail

template <class OnFrame>
FrameStatus DelimitedFramer::feed(Connection c, std::span<const std::byte> data,
                                  OnFrame&& on_frame) const {
  return feed_bytes(c, detail::as_chars(data), &detail::call_on_frame<OnFrame>,
                    const_cast<void*>(static_cast<const void*>(&on_frame)));
}

template <class OnFrame>
FrameStatus LengthPrefixedFramer::feed(Connection c, std::span<const std::byte> data,
                                       OnFrame&& on_frame) const {
  return feed_bytes(c, detail::as_chars(data), &detail::call_on_frame<OnFrame>,
                    const_cast<void*>(static_cast<const void*>(&on_frame)));
}

}  // namespace myriad
