// The parsers under comparison, one translation unit each (http_parser.h and llhttp.h
// declare the same names and cannot meet in one file).
#pragma once

#include <cstddef>
#include <string_view>

struct Spans {
  int fields = 0;
  std::size_t bytes = 0;  // sum of span lengths, so the compiler cannot drop the work
  bool complete = false;
};

bool parse_http_parser(std::string_view in, Spans& out);
bool split_http_parser(std::string_view in, std::size_t step, Spans& out);
bool parse_llhttp(std::string_view in, Spans& out);
bool split_llhttp(std::string_view in, std::size_t step, Spans& out);
std::size_t http_parser_state_size();
std::size_t llhttp_state_size();
