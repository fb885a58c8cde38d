// Public (detail). The type-erased job behind Connection::offload() and Shard::offload().
#pragma once

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

namespace myriad::detail {

// Work offloaded to the worker pool: run() on a worker, complete() back on the shard that
// submitted it. The job owns its work, its result and its continuation until complete() returns.
struct OffloadJob {
  virtual ~OffloadJob() = default;
  virtual void run() = 0;
  virtual void complete() = 0;
};

// done is called with work's result, or with nothing when work returns void.
template <class Work, class Done>
std::unique_ptr<OffloadJob> make_offload_job(Work&& work, Done&& done) {
  using W = std::decay_t<Work>;
  using D = std::decay_t<Done>;
  using Result = std::invoke_result_t<W&>;
  struct Job final : OffloadJob {
    Job(Work&& w, Done&& d) : work(std::forward<Work>(w)), done(std::forward<Done>(d)) {}
    void run() override {
      if constexpr (std::is_void_v<Result>) {
        work();
      } else {
        result.emplace(work());
      }
    }
    void complete() override {
      if constexpr (std::is_void_v<Result>) {
        done();
      } else {
        done(std::move(*result));
      }
    }
    W work;
    D done;
    std::optional<std::conditional_t<std::is_void_v<Result>, bool, Result>> result;
  };
  return std::make_unique<Job>(std::forward<Work>(work), std::forward<Done>(done));
}

}  // namespace myriad::detail
