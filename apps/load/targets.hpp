// Target lists: "127.0.0.1:7000", "127.0.0.1-127.0.0.64:7000", "[::1]:7000", comma-separated.
// A range spreads connections over many addresses, so large counts do not run out of
// ephemeral ports (about 28,000 per destination address with Linux's default range).
#pragma once

#include <myriad/address.hpp>

#include <string_view>
#include <vector>

namespace myriad::load {

// Throws std::invalid_argument naming the bad part.
std::vector<Address> parse_targets(std::string_view text);

}  // namespace myriad::load
