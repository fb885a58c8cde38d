// GET /metrics (Prometheus text exposition format 0.0.4), the --stats line and the $sys topic's
// figures: one snapshot of everything, read from the hub, PubSub, the runtime's counters, the
// HTTP and WebSocket servers and the fronts' figures. Any thread.
#pragma once

#include <myriad/http.hpp>
#include <myriad/websocket.hpp>

#include <string>
#include <vector>

#include "server.hpp"

namespace push {

struct Snapshot {
  myriad::Counters core;
  myriad::PubSubCounters pubsub;
  HubStats hub;
  myriad::http::Stats http;
  myriad::ws::Stats ws;
  FanoutTimes::Snapshot fanout;
  std::array<uint64_t, kKinds> open{}, opened{}, subscriptions{};
};

class Metrics {
 public:
  Metrics(Server& server, std::vector<myriad::http::Server*> https, myriad::ws::Server& ws)
      : server_(server), https_(std::move(https)), ws_(ws) {}
  Snapshot snapshot() const;
  std::string prometheus() const;
  std::string stats_line() const;
  // The $sys message: server figures as JSON, rates over the time since the last call.
  std::string sys_json();

 private:
  Server& server_;
  std::vector<myriad::http::Server*> https_;
  myriad::ws::Server& ws_;
  // sys_json's previous sample (its one caller is shard 0's timer).
  int64_t last_ns_ = 0;
  uint64_t last_deliveries_ = 0, last_published_ = 0;
};

}  // namespace push
