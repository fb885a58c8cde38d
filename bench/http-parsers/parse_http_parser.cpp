// The nodejs/http-parser side of choose.cpp.
#include <http_parser.h>

#include "parsers.hpp"

namespace {
// ---- nodejs/http-parser 2.9.4 (libhttp-parser-dev)
int hp_data(http_parser* p, const char*, size_t n) {
  static_cast<Spans*>(p->data)->bytes += n;
  return 0;
}
int hp_field(http_parser* p, const char*, size_t n) {
  auto* s = static_cast<Spans*>(p->data);
  ++s->fields;
  s->bytes += n;
  return 0;
}
int hp_done(http_parser* p) {
  static_cast<Spans*>(p->data)->complete = true;
  return 0;
}
http_parser_settings hp_settings() {
  http_parser_settings s{};
  s.on_url = hp_data;
  s.on_header_field = hp_field;
  s.on_header_value = hp_data;
  s.on_body = hp_data;
  s.on_message_complete = hp_done;
  return s;
}
const http_parser_settings kHp = hp_settings();

}  // namespace

__attribute__((noinline)) bool parse_http_parser(std::string_view in, Spans& out) {
  http_parser p;
  http_parser_init(&p, HTTP_REQUEST);
  p.data = &out;
  std::size_t n = http_parser_execute(&p, &kHp, in.data(), in.size());
  return n == in.size() && p.http_errno == 0 && out.complete;
}

bool split_http_parser(std::string_view in, std::size_t step, Spans& out) {
  http_parser p;
  http_parser_init(&p, HTTP_REQUEST);
  p.data = &out;
  for (std::size_t off = 0; off < in.size(); off += step) {
    std::string_view piece = in.substr(off, step);
    if (http_parser_execute(&p, &kHp, piece.data(), piece.size()) != piece.size()) return false;
  }
  return out.complete;
}

std::size_t http_parser_state_size() {
  return sizeof(http_parser);
}
