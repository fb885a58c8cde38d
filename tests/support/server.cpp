#include "server.hpp"

#include <gtest/gtest.h>

namespace test {

const char* backend_name(myriad::BackendKind kind) {
  return kind == myriad::BackendKind::kUring   ? "io_uring"
         : kind == myriad::BackendKind::kEpoll ? "epoll"
                                               : "auto";
}

Server::Server(myriad::Config config, myriad::Handler& handler, const std::string& at)
    : runtime_(std::make_unique<myriad::Runtime>(config)) {
  address_ = runtime_->listen(myriad::Address::parse(at), handler);
  runtime_->start();
  started(config);
}

Server::Server(myriad::Config config,
               std::function<std::unique_ptr<myriad::Handler>(myriad::Shard&)> factory,
               const std::string& at)
    : runtime_(std::make_unique<myriad::Runtime>(config)) {
  address_ = runtime_->listen(myriad::Address::parse(at), std::move(factory));
  runtime_->start();
  started(config);
}

void Server::started(const myriad::Config& config) {
  if (config.backend != myriad::BackendKind::kAuto) {
    EXPECT_EQ(runtime_->backend().kind, config.backend)
        << "asked for " << backend_name(config.backend) << ", running " << runtime_->backend().name;
  }
}

Server::~Server() {
  stop();
}

void Server::stop() {
  if (stopped_) return;
  stopped_ = true;
  runtime_->stop();
  runtime_->wait();
}

}  // namespace test
