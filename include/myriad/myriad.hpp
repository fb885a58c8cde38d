// Public. Everything a program needs: #include <myriad/myriad.hpp>.
#pragma once

#include <myriad/address.hpp>
#include <myriad/chunk.hpp>
#include <myriad/config.hpp>
#include <myriad/connection.hpp>
#include <myriad/coro.hpp>
#include <myriad/counters.hpp>
#include <myriad/framing.hpp>
#include <myriad/handler.hpp>
#include <myriad/runtime.hpp>
#include <myriad/shard.hpp>
#include <myriad/shared_buffer.hpp>
