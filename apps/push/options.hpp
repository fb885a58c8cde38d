// myriad-push's command line: every option, its default, and the --help text that lists them.
#pragma once

#include <myriad/address.hpp>

#include <string>

#include "server.hpp"

namespace push {

struct Cli {
  Options options;
  bool help = false;
  std::string make_token;  // --make-token CLAIMS: print a token and exit
};

// Throws std::invalid_argument naming the option and the value.
Cli parse_cli(int argc, char** argv);
const char* usage();

// Whether a listener address is a loopback one (127.0.0.0/8, ::1, ::ffff:127.x).
bool is_loopback(const myriad::Address& a);

}  // namespace push
