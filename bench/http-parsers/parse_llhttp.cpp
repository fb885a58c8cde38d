// The llhttp side of choose.cpp.
#include <llhttp.h>

#include "parsers.hpp"

namespace {
// ---- llhttp 8.1.0 (node-llhttp: Debian ships its generated C sources)
int ll_data(llhttp_t* p, const char*, size_t n) {
  static_cast<Spans*>(p->data)->bytes += n;
  return 0;
}
int ll_field(llhttp_t* p, const char*, size_t n) {
  auto* s = static_cast<Spans*>(p->data);
  ++s->fields;
  s->bytes += n;
  return 0;
}
int ll_done(llhttp_t* p) {
  static_cast<Spans*>(p->data)->complete = true;
  return 0;
}
llhttp_settings_t ll_settings() {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_url = ll_data;
  s.on_header_field = ll_field;
  s.on_header_value = ll_data;
  s.on_body = ll_data;
  s.on_message_complete = ll_done;
  return s;
}
const llhttp_settings_t kLl = ll_settings();

}  // namespace

__attribute__((noinline)) bool parse_llhttp(std::string_view in, Spans& out) {
  llhttp_t p;
  llhttp_init(&p, HTTP_REQUEST, &kLl);
  p.data = &out;
  return llhttp_execute(&p, in.data(), in.size()) == HPE_OK && out.complete;
}

bool split_llhttp(std::string_view in, std::size_t step, Spans& out) {
  llhttp_t p;
  llhttp_init(&p, HTTP_REQUEST, &kLl);
  p.data = &out;
  for (std::size_t off = 0; off < in.size(); off += step) {
    std::string_view piece = in.substr(off, step);
    if (llhttp_execute(&p, piece.data(), piece.size()) != HPE_OK) return false;
  }
  return out.complete;
}

std::size_t llhttp_state_size() {
  return sizeof(llhttp_t);
}
