// myriad-server --protocol http (see http_mode.hpp).
#include "http_mode.hpp"

#include <myriad/shard.hpp>
#include <myriad/sse.hpp>

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <vector>

namespace myriad_server {

namespace http = myriad::http;
namespace sse = myriad::sse;

const char* kHttpModeUsage = R"(  http mode (--protocol http):
  --static DIR              serve the files under DIR (index.html for a directory)
  --sse-interval DUR        /sse/clock: one event every DUR (default 1s)
  --max-header SIZE         request line + headers, past it 431 (default 16KiB)
  --max-body SIZE           request body, past it 413 (default 1MiB, at most --max-spill)
  --request-timeout DUR     a request must arrive whole within DUR, else 408 (default 30s)
  --heartbeat DUR           SSE comment after DUR without an event (default 15s)
)";

namespace {

// Files up to this size are read and sent whole; larger ones stream as the socket drains.
constexpr std::size_t kWholeFile = 256 << 10;
constexpr std::size_t kPiece = 64 << 10;

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "/a/%62/c/" -> "a/b/c/index.html". Empty with `status` set when the path must be refused: a
// bad escape or a NUL (400), or a ".." segment (403): nothing may name a file outside the
// directory, whatever the kernel would make of it.
std::string relative_path(std::string_view path, int& status) {
  std::string decoded;
  for (std::size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '%') {
      int hi = i + 2 < path.size() ? hex(path[i + 1]) : -1;
      int lo = i + 2 < path.size() ? hex(path[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        status = 400;
        return {};
      }
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0' || c == '\\') {
      status = 400;
      return {};
    }
    decoded += c;
  }
  std::string out;
  std::size_t pos = 0;
  bool dir = decoded.empty() || decoded.back() == '/';
  while (pos <= decoded.size()) {
    std::size_t slash = decoded.find('/', pos);
    if (slash == std::string::npos) slash = decoded.size();
    std::string_view seg(decoded.data() + pos, slash - pos);
    pos = slash + 1;
    if (seg.empty() || seg == ".") continue;
    if (seg == "..") {
      status = 403;
      return {};
    }
    if (!out.empty()) out += '/';
    out += seg;
  }
  if (out.empty() || dir) out += out.empty() ? "index.html" : "/index.html";
  return out;
}

// Opens `rel` under the directory, refusing any path that resolves outside it (symbolic links
// included) with openat2(RESOLVE_BENEATH); kernels before 5.6 get openat with O_NOFOLLOW.
int open_beneath(int dir_fd, const std::string& rel) {
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, dir_fd, rel.c_str(), &how, sizeof how);
  if (fd < 0 && errno == ENOSYS) {
    fd = ::openat(dir_fd, rel.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  }
  return static_cast<int>(fd);
}

bool read_at(int fd, char* out, std::size_t n, off_t at) {
  while (n > 0) {
    ssize_t got = ::pread(fd, out, n, at);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    out += got;
    n -= static_cast<std::size_t>(got);
    at += got;
  }
  return true;
}

// A large file being streamed: owned by the stream's callback, closed with it.
struct FileStream {
  int fd = -1;
  uint64_t offset = 0;
  uint64_t size = 0;
  ~FileStream() {
    if (fd >= 0) ::close(fd);
  }
};

void pump(http::Stream& stream, FileStream& file) {
  std::vector<char> piece(kPiece);
  while (stream.open() && stream.writable() && file.offset < file.size) {
    std::size_t n = static_cast<std::size_t>(std::min<uint64_t>(kPiece, file.size - file.offset));
    if (!read_at(file.fd, piece.data(), n, static_cast<off_t>(file.offset))) {
      stream.connection().abort();  // the file changed under us: the length can't be kept
      return;
    }
    file.offset += n;
    stream.write(std::string_view(piece.data(), n));
  }
}

// The clock's streams on this shard, and its one timer.
struct ClockStream {
  sse::Stream stream;
  uint64_t next_id;
};
struct ClockShard {
  std::vector<ClockStream> streams;
  myriad::TimerId timer = 0;
};
thread_local ClockShard t_clock;

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

void clock_tick(myriad::Duration interval) {
  ClockShard& clock = t_clock;
  clock.timer = 0;
  std::string now = utc_now();
  std::string id;
  for (ClockStream& c : clock.streams) {
    id = std::to_string(c.next_id++);
    c.stream.send({.data = now, .event = "tick", .id = id});
  }
  if (!clock.streams.empty()) {
    clock.timer = myriad::Shard::current()->after(interval, [interval] { clock_tick(interval); });
  }
}

}  // namespace

HttpMode::HttpMode(HttpModeOptions options) : options_(std::move(options)) {
  if (!options_.static_dir.empty()) {
    static_fd_ = ::open(options_.static_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (static_fd_ < 0) {
      throw std::runtime_error("--static " + options_.static_dir + ": " + std::strerror(errno));
    }
  }
  server_ = std::make_unique<http::Server>(
      [this](const http::Request& req, http::Response& res) { handle(req, res); }, options_.http);
}

HttpMode::~HttpMode() {
  if (static_fd_ >= 0) ::close(static_fd_);
}

void HttpMode::handle(const http::Request& req, http::Response& res) {
  std::string_view path = req.path();
  if (path == "/healthz") {
    res.send(200, "text/plain", "ok\n");
  } else if (path == "/hello" || (path == "/" && static_fd_ < 0)) {
    res.send(200, "text/plain", "Hello, world!\n");
  } else if (path == "/sse/clock") {
    start_clock(req, res);
  } else if (static_fd_ >= 0) {
    serve_file(req, res);
  } else {
    res.send(404, "text/plain", "not found\n");
  }
}

void HttpMode::start_clock(const http::Request& req, http::Response& res) {
  // Resume after the last id the client saw.
  uint64_t last = 0;
  std::string_view resume = sse::last_event_id(req);
  std::from_chars(resume.data(), resume.data() + resume.size(), last);
  sse::StreamOptions o;
  o.on_event = [](sse::Stream& s, http::StreamEvent e) {
    if (e != http::StreamEvent::kEnded) return;
    auto& streams = t_clock.streams;
    auto it = std::find_if(streams.begin(), streams.end(), [&](const ClockStream& c) {
      return c.stream.connection() == s.connection();
    });
    if (it != streams.end()) {
      *it = std::move(streams.back());
      streams.pop_back();
    }
  };
  res.header("Access-Control-Allow-Origin", "*");
  sse::Stream stream = sse::start(res, std::move(o));
  if (!stream.open()) return;  // HEAD
  t_clock.streams.push_back({stream, last + 1});
  if (t_clock.timer == 0) {
    myriad::Duration interval = options_.sse_interval;
    t_clock.timer = myriad::Shard::current()->after(interval, [interval] { clock_tick(interval); });
  }
}

void HttpMode::serve_file(const http::Request& req, http::Response& res) {
  if (req.method() != "GET" && req.method() != "HEAD") {
    res.header("Allow", "GET, HEAD").send(405, "text/plain", "method not allowed\n");
    return;
  }
  int status = 0;
  std::string rel = relative_path(req.path(), status);
  if (rel.empty()) {
    res.send(status, "text/plain", status == 403 ? "forbidden\n" : "bad path\n");
    return;
  }
  int fd = open_beneath(static_fd_, rel);
  int open_error = fd < 0 ? errno : 0;
  struct stat st {};
  if (fd >= 0 && ::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    int index = ::openat(fd, "index.html", O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    ::close(fd);
    fd = index;
    rel += "/index.html";
    if (fd >= 0 && ::fstat(fd, &st) != 0) st = {};
  }
  if (fd < 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0) ::close(fd);
    // EXDEV (or ELOOP without openat2): the path would leave the directory through a link.
    bool outside = open_error == EXDEV || open_error == ELOOP;
    res.send(outside ? 403 : 404, "text/plain", outside ? "forbidden\n" : "not found\n");
    return;
  }
  res.content_type(http::content_type_for(rel));
  auto size = static_cast<uint64_t>(st.st_size);
  if (size <= kWholeFile || req.is_head()) {
    std::string body(req.is_head() ? 0 : size, '\0');
    bool ok = req.is_head() || read_at(fd, body.data(), body.size(), 0);
    ::close(fd);
    if (!ok) {
      res.send(500, "text/plain", "read failed\n");
      return;
    }
    if (req.is_head()) {
      // The head of what GET would send: its length, no body.
      http::StreamOptions o;
      o.framing = http::Framing::kLength;
      o.length = size;
      res.stream(std::move(o));
      return;
    }
    res.send(body);
    return;
  }
  auto file = std::make_shared<FileStream>();
  file->fd = fd;
  file->size = size;
  http::StreamOptions o;
  o.framing = http::Framing::kLength;
  o.length = size;
  o.on_event = [file](http::Stream& s, http::StreamEvent e) {
    if (e == http::StreamEvent::kWritable) pump(s, *file);
  };
  http::Stream stream = res.stream(std::move(o));
  pump(stream, *file);
}

}  // namespace myriad_server
