// myriad-load: opens and holds many connections, drives echo traffic closed- or open-loop, or
// fans messages out to many subscribers, and measures honestly: every echoed byte and every
// delivery is checked, latency in open loop counts from the time a message was due, and the
// server's own CPU time and memory are read from /proc.
//
// Built on myriad's engine (outbound connections on its shards), so one process passes the
// RLIMIT_NOFILE limit the way the server does. Every mode is bounded in time and stops by itself.
//
// main() is the three steps: parse the command line (cli.cpp), run the mode, which measures
// and then reports (connections.cpp, subscribe.cpp), and write the JSON.
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>

#include "cli.hpp"
#include "runs.hpp"

namespace ml = myriad::load;

int main(int argc, char** argv) {
  ml::Cli cli = ml::parse_cli(argc, argv);
  ::signal(SIGPIPE, SIG_IGN);
  ml::install_interrupts();
  ml::Json json;
  int exit_code = 0;
  try {
    exit_code = cli.opt.mode == ml::Mode::kSubscribe ? ml::subscribe_mode(cli, json)
                                                     : ml::connections_mode(cli, json);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "myriad-load: %s\n", e.what());
    return 1;
  }
  if (!cli.json_path.empty()) {
    FILE* f = std::fopen(cli.json_path.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "myriad-load: cannot write %s: %s\n", cli.json_path.c_str(),
                   std::strerror(errno));
      return 1;
    }
    std::string text = json.done();
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
  return exit_code;
}
