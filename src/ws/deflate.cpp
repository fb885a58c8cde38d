// permessage-deflate's data path (RFC 7692 7.2) on zlib, with no context takeover either way:
// every message is compressed and inflated on its own, so one compressor and one inflater per
// shard serve all of its connections.
#include <myriad/ws_codec.hpp>

#include <zlib.h>

#include <algorithm>
#include <new>
#include <stdexcept>
#include <string>

namespace myriad::ws {

namespace {
// A sync flush ends with an empty stored block, 00 00 ff ff; the sender leaves it out and the
// receiver puts it back (7.2.1, 7.2.2).
constexpr unsigned char kTail[4] = {0x00, 0x00, 0xff, 0xff};
// Raw deflate (no zlib header) with the largest window.
constexpr int kWindowBits = -15;

z_stream* z(void* p) {
  return static_cast<z_stream*>(p);
}
}  // namespace

Deflater::Deflater(int level) : stream_(new z_stream{}) {
  if (deflateInit2(z(stream_), level, Z_DEFLATED, kWindowBits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    delete z(stream_);
    throw std::runtime_error("permessage-deflate: deflateInit2 failed");
  }
}

Deflater::~Deflater() {
  deflateEnd(z(stream_));
  delete z(stream_);
}

void Deflater::compress(std::span<const std::byte> message, std::vector<std::byte>& out) {
  z_stream* s = z(stream_);
  deflateReset(s);
  std::size_t start = out.size();
  s->next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(message.data()));
  // zlib counts in uInt; feed a huge message in slices.
  std::size_t left = message.size();
  for (;;) {
    uInt slice = static_cast<uInt>(std::min<std::size_t>(left, 1u << 30));
    s->avail_in = slice;
    left -= slice;
    int flush = left == 0 ? Z_SYNC_FLUSH : Z_NO_FLUSH;
    do {
      std::size_t have = out.size();
      std::size_t room = std::max<std::size_t>(deflateBound(s, s->avail_in) + 16, 256);
      out.resize(have + room);
      s->next_out = reinterpret_cast<Bytef*>(out.data() + have);
      s->avail_out = static_cast<uInt>(room);
      int rc = deflate(s, flush);
      out.resize(have + room - s->avail_out);
      if (rc == Z_STREAM_ERROR) throw std::runtime_error("permessage-deflate: deflate failed");
    } while (s->avail_out == 0 || s->avail_in != 0);
    if (left == 0) break;
  }
  // Drop the sync flush's empty block.
  if (out.size() - start >= 4 &&
      std::equal(kTail, kTail + 4,
                 reinterpret_cast<const unsigned char*>(out.data()) + out.size() - 4)) {
    out.resize(out.size() - 4);
  }
}

Inflater::Inflater() : stream_(new z_stream{}) {
  if (inflateInit2(z(stream_), kWindowBits) != Z_OK) {
    delete z(stream_);
    throw std::runtime_error("permessage-deflate: inflateInit2 failed");
  }
}

Inflater::~Inflater() {
  inflateEnd(z(stream_));
  delete z(stream_);
}

Inflater::Status Inflater::inflate(std::span<const std::byte> compressed, std::size_t max_size,
                                   std::vector<std::byte>& out) {
  z_stream* s = z(stream_);
  inflateReset(s);
  out.clear();
  // Two inputs in turn: the message, then the tail the sender left out.
  const Bytef* inputs[2] = {reinterpret_cast<const Bytef*>(compressed.data()), kTail};
  std::size_t sizes[2] = {compressed.size(), sizeof(kTail)};
  for (int part = 0; part < 2; ++part) {
    const Bytef* in = inputs[part];
    std::size_t left = sizes[part];
    while (left != 0) {
      uInt slice = static_cast<uInt>(std::min<std::size_t>(left, 1u << 30));
      s->next_in = const_cast<Bytef*>(in);
      s->avail_in = slice;
      for (;;) {
        if (out.size() > max_size) return Status::kTooBig;
        std::size_t have = out.size();
        // Grow by what is likely, but never past one byte over the limit.
        std::size_t room = std::clamp<std::size_t>(have, 4096, 1 << 20);
        room = std::min(room, max_size + 1 - have);
        out.resize(have + room);
        s->next_out = reinterpret_cast<Bytef*>(out.data() + have);
        s->avail_out = static_cast<uInt>(room);
        int rc = ::inflate(s, Z_SYNC_FLUSH);
        out.resize(have + room - s->avail_out);
        if (rc == Z_STREAM_END) {
          // A final block: nothing of the message may follow it (the tail may).
          std::size_t unused = s->avail_in + (left - slice);
          if (part == 0 && unused != 0) return Status::kCorrupt;
          return out.size() > max_size ? Status::kTooBig : Status::kOk;
        }
        if (rc == Z_BUF_ERROR) {
          // No progress possible: either the input is used up (go on with the next) or the
          // output is full (loop to grow it).
          if (s->avail_in == 0) break;
          if (s->avail_out != 0) return Status::kCorrupt;
          continue;
        }
        if (rc != Z_OK) return Status::kCorrupt;
        if (s->avail_in == 0 && s->avail_out != 0) break;
      }
      in += slice;
      left -= slice;
    }
  }
  return out.size() > max_size ? Status::kTooBig : Status::kOk;
}

}  // namespace myriad::ws
