// myriad-load's command line: what to run, parsed and checked (parse), before anything runs.
#pragma once

#include <myriad/config.hpp>

#include <sys/types.h>

#include <string>

#include "fanout_shard.hpp"
#include "load_shard.hpp"

namespace myriad::load {

struct Cli {
  std::string mode_name;
  Options opt;           // connections, sizes, durations: every mode
  FanoutOptions fanout;  // subscribe mode
  Config config;         // the load generator's own runtime
  pid_t server_pid = 0;
  std::string json_path;
  bool quiet = false;
};

// Parses argv; prints usage and exits (0 for --help, 2 for a usage error) where it must.
Cli parse_cli(int argc, char** argv);

// SIGINT/SIGTERM: the first ends the running phase early (what follows still runs: verifying,
// reporting) and the exit status becomes 130; a second also cuts verifying short.
void install_interrupts();
int interrupts();
inline bool interrupted() {
  return interrupts() > 0;
}

}  // namespace myriad::load
