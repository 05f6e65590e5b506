// lamina/core/result.hpp — Error and Result<T>: how every fallible lamina call reports failure.
//
// lamina throws nothing. A function that can fail because of its input (a file, an adapter,
// text, an option) returns Result<T>: either a T or an Error whose message names the file,
// key or tensor and says what is wrong.
//
//   lamina::Result<lamina::gguf::File> file = lamina::gguf::File::open("model.gguf");
//   if (!file) { std::fprintf(stderr, "%s\n", file.error().message.c_str()); return 1; }
//   use(*file);
#pragma once

#include "../config.hpp"

#include <cstddef>
#include <cstdio>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

LAMINA_NAMESPACE_BEGIN

enum class ErrorCode {
  io,                // the operating system refused: open, read, map, write
  invalid_format,    // the bytes do not follow the file format
  unsupported,       // valid, but lamina does not handle it (yet): architecture, tensor type…
  missing,           // a required key, tensor or file is absent
  type_mismatch,     // a key or tensor exists with another type or shape than required
  invalid_argument,  // an option or argument out of its range
  out_of_memory,     // an allocation failed
  invalid_state,     // the call does not fit the object's state (e.g. KV cache full)
  not_finite,        // a computation gave NaN or infinity (NaN weights, an adapter scale far too large)
  cancelled,         // stopped by a cancel() (core/cancel.hpp) before it finished
};

inline const char* to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::io: return "io";
    case ErrorCode::invalid_format: return "invalid_format";
    case ErrorCode::unsupported: return "unsupported";
    case ErrorCode::missing: return "missing";
    case ErrorCode::type_mismatch: return "type_mismatch";
    case ErrorCode::invalid_argument: return "invalid_argument";
    case ErrorCode::out_of_memory: return "out_of_memory";
    case ErrorCode::invalid_state: return "invalid_state";
    case ErrorCode::not_finite: return "not_finite";
    case ErrorCode::cancelled: return "cancelled";
  }
  return "unknown";
}

struct Error {
  ErrorCode code = ErrorCode::invalid_argument;
  std::string message;  // complete sentence fragment: "model.gguf: tensor 'blk.0.attn_q.weight': ..."

  // Prepends context, e.g. error.with_context("model.gguf") -> "model.gguf: <message>".
  Error with_context(const std::string& context) const& { return Error{code, context + ": " + message}; }
};

// Tag to construct a failed Result: `return lamina::fail(ErrorCode::missing, "key 'x' not found");`
inline Error fail(ErrorCode code, std::string message) { return Error{code, std::move(message)}; }

template <class T>
class [[nodiscard]] Result {
 public:
  static_assert(!std::is_reference<T>::value, "Result<T&> is not supported; use a pointer");

  Result(const T& value) : has_value_(true) { new (&storage_.value) T(value); }
  Result(T&& value) : has_value_(true) { new (&storage_.value) T(std::move(value)); }
  Result(Error error) : has_value_(false) { new (&storage_.error) Error(std::move(error)); }

  Result(const Result& other) : has_value_(other.has_value_) {
    if (has_value_) new (&storage_.value) T(other.storage_.value);
    else new (&storage_.error) Error(other.storage_.error);
  }
  Result(Result&& other) noexcept : has_value_(other.has_value_) {
    if (has_value_) new (&storage_.value) T(std::move(other.storage_.value));
    else new (&storage_.error) Error(std::move(other.storage_.error));
  }
  Result& operator=(Result other) noexcept {
    destroy();
    has_value_ = other.has_value_;
    if (has_value_) new (&storage_.value) T(std::move(other.storage_.value));
    else new (&storage_.error) Error(std::move(other.storage_.error));
    return *this;
  }
  ~Result() { destroy(); }

  bool ok() const { return has_value_; }
  explicit operator bool() const { return has_value_; }

  T& value() & { LAMINA_ASSERT(has_value_, "Result::value() on an error"); return storage_.value; }
  const T& value() const& { LAMINA_ASSERT(has_value_, "Result::value() on an error"); return storage_.value; }
  T&& value() && { LAMINA_ASSERT(has_value_, "Result::value() on an error"); return std::move(storage_.value); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { LAMINA_ASSERT(!has_value_, "Result::error() on a value"); return storage_.error; }
  Error&& take_error() { LAMINA_ASSERT(!has_value_, "Result::take_error() on a value"); return std::move(storage_.error); }

 private:
  void destroy() {
    if (has_value_) storage_.value.~T();
    else storage_.error.~Error();
  }
  union Storage {
    Storage() {}
    ~Storage() {}
    T value;
    Error error;
  } storage_;
  bool has_value_;
};

// Result<void>: success carries nothing.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : failed_(true), error_(std::move(error)) {}
  bool ok() const { return !failed_; }
  explicit operator bool() const { return !failed_; }
  const Error& error() const { LAMINA_ASSERT(failed_, "Result::error() on success"); return error_; }
  Error&& take_error() { LAMINA_ASSERT(failed_, "Result::take_error() on success"); return std::move(error_); }

 private:
  bool failed_ = false;
  Error error_;
};

inline Result<void> success() { return Result<void>(); }

namespace detail {

// A file's key or tensor name as it appears in error messages: quoted, with control bytes,
// backslashes and non-ASCII bytes escaped as \xNN (names in files are arbitrary bytes), cut
// after 80 bytes so a hostile 1 MB name stays readable. Shared by the GGUF and safetensors readers.
inline std::string quote_for_message(const std::string& text) {
  static const char hex[] = "0123456789abcdef";
  std::string out = "'";
  const std::size_t shown = text.size() < 80 ? text.size() : 80;
  for (std::size_t i = 0; i < shown; ++i) {
    const unsigned char byte = static_cast<unsigned char>(text[i]);
    if (byte >= 0x20 && byte < 0x7f && byte != '\\') {
      out += static_cast<char>(byte);
    } else {
      out += "\\x";
      out += hex[byte >> 4];
      out += hex[byte & 15];
    }
  }
  if (shown < text.size()) out += "...";
  out += "'";
  return out;
}

// A float in a message, as printf's %g writes it ("0.5", "1e+30", "nan").
inline std::string format_float(float value) {
  char text[48];
  std::snprintf(text, sizeof text, "%g", static_cast<double>(value));
  return text;
}

}  // namespace detail

LAMINA_NAMESPACE_END

// LAMINA_TRY(expr): evaluates a Result-returning expression and returns its Error from the
// enclosing function (whose return type must be constructible from Error) when it failed.
#define LAMINA_TRY(expr)                                         \
  do {                                                           \
    auto lamina_try_result_ = (expr);                            \
    if (!lamina_try_result_) return lamina_try_result_.take_error(); \
  } while (0)
