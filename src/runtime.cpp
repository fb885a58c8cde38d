#include <myriad/runtime.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <stdexcept>
#include <string>

#include "runtime_impl.hpp"

namespace myriad {

namespace {

// Chunk ids travel in 16-bit buffer ids, and a provided buffer ring holds at most 32768.
constexpr uint32_t kMaxChunksPerShard = 32768;

unsigned online_cpus() {
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<unsigned>(n) : 1;
}

[[noreturn]] void fail_socket(const std::string& what, const Address& at, int error) {
  throw std::runtime_error(what + " " + at.to_string() + ": " + std::strerror(error));
}

int make_listener(const Address& at, bool reuse_port) {
  int fd = ::socket(at.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) fail_socket("socket for", at, errno);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuse_port) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  // Accepted sockets inherit TCP_NODELAY: small replies leave at once.
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (::bind(fd, at.sockaddr_ptr(), at.length()) != 0) {
    int error = errno;
    ::close(fd);
    fail_socket("listen", at, error);
  }
  return fd;
}

}  // namespace

RuntimeImpl::RuntimeImpl(Runtime& runtime, Config cfg) : facade(runtime), config(std::move(cfg)) {
  config.validate();
  shard_count = config.shards != 0 ? config.shards : online_cpus();
  choice = detail::choose_backend(config.backend);
  if (config.ring_slots != 0 && choice.kind == BackendKind::kUring) {
    choice.slots_per_ring =
        static_cast<uint32_t>(std::min<std::size_t>(config.ring_slots, choice.slots_per_ring));
  }

  std::size_t chunks = config.buffer_pool_bytes / config.buffer_size / shard_count;
  if (chunks < 2) {
    throw std::invalid_argument("buffer_pool " + format_size(config.buffer_pool_bytes) + " gives " +
                                std::to_string(chunks) + " chunks of " +
                                format_size(config.buffer_size) +
                                " per shard; at least 2 are needed");
  }
  if (chunks > kMaxChunksPerShard) {
    throw std::invalid_argument("buffer_pool " + format_size(config.buffer_pool_bytes) + " gives " +
                                std::to_string(chunks) + " chunks per shard; at most " +
                                std::to_string(kMaxChunksPerShard) + " (raise buffer_size)");
  }
  chunks_per_shard = static_cast<uint32_t>(chunks);

  std::size_t per_shard = (config.max_connections + shard_count - 1) / shard_count;
  if (choice.kind == BackendKind::kUring) {
    // SO_REUSEPORT spreads connections unevenly by a little: leave each shard some room.
    per_shard += per_shard / 32 + 64;
    std::size_t usable = choice.slots_per_ring - detail::accept_margin(choice.slots_per_ring);
    std::size_t rings = (per_shard + usable - 1) / usable;
    shard_capacity = static_cast<uint32_t>(rings * choice.slots_per_ring);
  } else {
    shard_capacity = detail::fd_limit();  // ids are descriptors
  }

  pool_bytes = std::size_t{chunks_per_shard} * config.buffer_size * shard_count;
  // Faulted in now: the pool is a fixed start-up cost, and the kernel cycles through a buffer
  // ring's chunks in order, so it would otherwise grow into RSS during the first traffic.
  void* mem =
      ::mmap(nullptr, pool_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    throw std::runtime_error("buffer_pool " + format_size(pool_bytes) + ": " +
                             std::strerror(errno));
  }
  // Huge pages where the kernel allows them: the kernel writes into chunks all over the pool,
  // and with 4 KiB pages every receive would be a TLB miss.
  ::madvise(mem, pool_bytes, MADV_HUGEPAGE);
  ::madvise(mem, pool_bytes, MADV_POPULATE_WRITE);
  pool_memory = static_cast<std::byte*>(mem);

  if (config.workers > 0)
    workers = std::make_unique<detail::WorkerPool>(config.workers, config.worker_queue);
  for (unsigned i = 0; i < shard_count; ++i) {
    std::byte* slice = pool_memory + std::size_t{i} * chunks_per_shard * config.buffer_size;
    shards.push_back(std::make_unique<ShardImpl>(*this, i, slice, chunks_per_shard));
  }
}

RuntimeImpl::~RuntimeImpl() {
  // Workers may still be finishing jobs that post back to shards: they go first.
  workers.reset();
  shards.clear();
  if (pool_memory != nullptr) ::munmap(pool_memory, pool_bytes);
}

Runtime::Runtime(Config config) : impl_(std::make_unique<RuntimeImpl>(*this, std::move(config))) {}

Runtime::~Runtime() {
  if (impl_->started.load()) {
    stop();
    wait();
  }
}

namespace {
Address bind_listeners(RuntimeImpl& impl, const Address& at,
                       const std::function<void(ShardImpl&, int)>& attach) {
  if (impl.started.load()) throw std::logic_error("Runtime::listen must come before start()");
  Address bound = at;
  if (at.port() != 0) {
    // SO_REUSEPORT would let us share a port another process holds: check it is free first.
    int probe = make_listener(at, false);
    ::close(probe);
  }
  std::vector<int> fds;
  try {
    for (unsigned i = 0; i < impl.shard_count; ++i) {
      int fd = make_listener(bound, true);
      fds.push_back(fd);
      if (i == 0) {
        sockaddr_storage ss{};
        socklen_t len = sizeof(ss);
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
        bound = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
      }
    }
    for (int fd : fds) {
      if (::listen(fd, 65535) != 0) fail_socket("listen", bound, errno);
    }
  } catch (...) {
    for (int fd : fds) ::close(fd);
    throw;
  }
  for (unsigned i = 0; i < impl.shard_count; ++i) attach(*impl.shards[i], fds[i]);
  return bound;
}
}  // namespace

Address Runtime::listen(const Address& at, Handler& handler) {
  return bind_listeners(*impl_, at, [&handler](ShardImpl& shard, int fd) {
    ShardImpl::Listener l;
    l.fd = fd;
    l.handler = &handler;
    shard.add_listener(std::move(l));
  });
}

Address Runtime::listen(const Address& at,
                        std::function<std::unique_ptr<Handler>(Shard&)> factory) {
  return bind_listeners(*impl_, at, [&factory](ShardImpl& shard, int fd) {
    ShardImpl::Listener l;
    l.fd = fd;
    l.factory = factory;
    shard.add_listener(std::move(l));
  });
}

namespace {
// Starts shards [first, shard_count) on threads of their own and returns one future per shard
// started, ready once it serves (or holding why it could not set up).
std::vector<std::future<void>> start_threads(RuntimeImpl& impl, unsigned first) {
  std::vector<std::future<void>> done;
  for (unsigned i = first; i < impl.shard_count; ++i) {
    auto ready = std::make_shared<std::promise<void>>();
    done.push_back(ready->get_future());
    impl.threads.emplace_back([&impl, i, ready] {
      impl.shards[i]->run(
          [&ready](std::exception_ptr error) {
            if (error) {
              ready->set_exception(error);
            } else {
              ready->set_value();
            }
          },
          true);
      impl.running_shards.fetch_sub(1);
    });
  }
  return done;
}

// The first error among the shards' start-ups, after waiting for all of them.
std::exception_ptr first_error(std::vector<std::future<void>>& done) {
  std::exception_ptr first;
  for (auto& f : done) {
    try {
      f.get();
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  return first;
}
}  // namespace

void Runtime::start() {
  RuntimeImpl& impl = *impl_;
  if (impl.started.exchange(true)) throw std::logic_error("Runtime::start called twice");
  impl.running_shards.store(impl.shard_count);
  std::vector<std::future<void>> done = start_threads(impl, 0);
  if (std::exception_ptr error = first_error(done)) {
    stop();
    wait();
    std::rethrow_exception(error);
  }
}

void Runtime::run(const std::function<void()>& on_started) {
  RuntimeImpl& impl = *impl_;
  if (impl.started.exchange(true)) throw std::logic_error("Runtime::run called after start()");
  impl.running_shards.store(impl.shard_count);
  std::vector<std::future<void>> done = start_threads(impl, 1);
  std::exception_ptr error;
  impl.shards[0]->run(
      [&](std::exception_ptr own) {
        error = own;
        std::exception_ptr others = first_error(done);
        if (!error) error = others;
        if (!error && on_started) {
          try {
            on_started();
          } catch (...) {
            error = std::current_exception();
          }
        }
        if (error) stop();  // every shard; shard 0, if it set up, sees it at its first turn
      },
      false);
  impl.running_shards.fetch_sub(1);
  wait();
  if (error) std::rethrow_exception(error);
}

void Runtime::stop() {
  impl_->stopping.store(true);
  for (auto& s : impl_->shards) s->request_stop();
}

void Runtime::wait() {
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
}

bool Runtime::running() const {
  return impl_->running_shards.load() > 0;
}

unsigned Runtime::shard_count() const {
  return impl_->shard_count;
}

Shard& Runtime::shard(unsigned index) {
  return *impl_->shards.at(index);
}

const Config& Runtime::config() const {
  return impl_->config;
}

BackendInfo Runtime::backend() const {
  const RuntimeImpl& impl = *impl_;
  BackendInfo info;
  info.kind = impl.choice.kind;
  info.name = to_string(impl.choice.kind);
  info.reason = impl.choice.reason;
  info.features = impl.choice.features;
  std::size_t total = std::size_t{impl.shard_capacity} * impl.shard_count;
  if (impl.choice.kind == BackendKind::kEpoll) {
    // Descriptors are one table for the whole process; keep a few for listeners and the rest.
    std::size_t reserve = 16 + 4 * std::size_t{impl.shard_count};
    total = impl.shard_capacity > reserve ? impl.shard_capacity - reserve : 0;
  }
  info.capacity = std::min(total, impl.config.max_connections);
  info.shards = impl.shard_count;
  return info;
}

void Runtime::post_all(const std::function<void(Shard&)>& fn) {
  for (auto& shard : impl_->shards) {
    ShardImpl* target = shard.get();
    target->post_task([target, fn] { fn(*target); });
  }
}

Counters Runtime::counters() const {
  Counters sum;
  for (const auto& s : impl_->shards) sum += s->snapshot();
  return sum;
}

}  // namespace myriad
