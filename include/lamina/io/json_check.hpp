// lamina/io/json_check.hpp: a first, SAX-only pass over JSON text before nlohmann builds its
// DOM. It bounds the nesting depth (the DOM, and code that walks it recursively, stay shallow)
// and turns a syntax error into one line with the file, the byte offset and what was read
// ("spec.json: at byte 17: invalid JSON: number overflow parsing '1e400'"), which nlohmann's
// allow_exceptions=false parse does not give. Needs nlohmann/json, like the other readers here.
#pragma once

#include "../config.hpp"
#include "../core/result.hpp"
#include "safetensors.hpp"  // safetensors::detail::short_json_error

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>

LAMINA_NAMESPACE_BEGIN
namespace detail {

// A SAX pass before nlohmann builds its DOM: it bounds the nesting depth (the DOM and lamina's
// reading of it are then shallow) and turns a parse error into a message with a byte offset.
class JsonChecker {
 public:
  using json = nlohmann::json;
  explicit JsonChecker(const std::string& path) : path_(path) {}
  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(json::number_integer_t) { return true; }
  bool number_unsigned(json::number_unsigned_t) { return true; }
  bool number_float(json::number_float_t, const json::string_t&) { return true; }
  bool string(json::string_t&) { return true; }
  bool binary(json::binary_t&) { return true; }
  bool start_object(std::size_t) { return enter(); }
  bool key(json::string_t&) { return true; }
  bool end_object() { return --depth_, true; }
  bool start_array(std::size_t) { return enter(); }
  bool end_array() { return --depth_, true; }
  bool parse_error(std::size_t position, const std::string& last_token, const nlohmann::detail::exception& error) {
    // `position` is just past the last byte read: the offending byte for a syntax error, the end
    // of the number for an overflow (406), which is better shown by where the number starts.
    const std::size_t at = error.id == 406 && position >= last_token.size() ? position - last_token.size()
                                                                            : (position > 0 ? position - 1 : 0);
    error_ = path_ + ": at byte " + std::to_string(at) + ": invalid JSON: " + safetensors::detail::short_json_error(error.what());
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  bool enter() {
    if (++depth_ <= 32) return true;
    error_ = path_ + ": JSON nested more than 32 levels deep";
    return false;
  }
  const std::string& path_;
  int depth_ = 0;
  std::string error_;
};

}  // namespace detail

// Checks that `text` is JSON nested at most 32 levels deep; the error names `name` and the byte.
inline Result<void> check_json_syntax(const std::string& text, const std::string& name) {
  detail::JsonChecker checker(name);
  if (!nlohmann::json::sax_parse(text.begin(), text.end(), &checker, nlohmann::json::input_format_t::json, true, false)) {
    return fail(ErrorCode::invalid_format, checker.error());
  }
  return success();
}

LAMINA_NAMESPACE_END
