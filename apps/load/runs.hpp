// myriad-load's two kinds of run: connections (hold, echo, rate) and fan-out (subscribe). Each
// measures (run_*) into an outcome and then reports it (report_*: the lines people read, the
// JSON, and the exit status), so the measuring and the telling stay apart.
#pragma once

#include "cli.hpp"
#include "report.hpp"

namespace myriad::load {

// Return the exit status; fill json with every figure.
int connections_mode(const Cli& cli, Json& json);
int subscribe_mode(const Cli& cli, Json& json);

}  // namespace myriad::load
