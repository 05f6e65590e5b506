// lamina/io/safetensors.hpp — Hugging Face .safetensors files: reading (zero copy) and writing.
//
// NOT part of the umbrella header: this file includes nlohmann/json (<nlohmann/json.hpp>, 3.11),
// and lamina/lamina.hpp stays free of JSON. Include it on its own where PEFT adapters or other
// safetensors files are read.
//
// File layout (little-endian):
//   u64 N                      length of the header
//   N bytes                    UTF-8 JSON object, often padded with spaces to a multiple of 8:
//     { "__metadata__": { "key": "value", ... },            (optional, strings only)
//       "<tensor name>": { "dtype": "F32", "shape": [rows, cols],
//                          "data_offsets": [begin, end] }, ... }
//   the data section           every tensor's bytes; offsets are relative to its first byte
//
// Reading never trusts the file. It follows the reference implementation (huggingface/
// safetensors, `validate`): the tensors must tile the data section exactly, without gaps or
// overlaps, from byte 0 to the end of the file, and each one's byte size must equal its element
// count times its element size. Beyond that lamina refuses headers over 100 MB (as the reference
// does), JSON nested deeper than 16 levels, duplicate keys anywhere in the header (JSON allows them
// and nlohmann would keep the last one silently; lamina sees them during its SAX pass and reports
// them), and shapes of more than 64 dimensions. A bad file gives an Error naming the file, the
// tensor or key, the byte offset in the file (near which the problem was seen) and what is
// wrong; it never aborts, throws, or reads out of bounds.
//
// JSON is read with nlohmann's SAX interface, which never throws (important: with
// -fno-exceptions every nlohmann throw is an abort), and no JSON DOM is built.
//
//   lamina::Result<lamina::safetensors::File> file =
//       lamina::safetensors::File::open("adapter_model.safetensors");
//   if (!file) return file.take_error();
//   const lamina::safetensors::TensorInfo* a = file->find("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
//   // a->shape == {rank, n_embd}; a->data points into the mapping.
//   lamina::Result<std::vector<float>> values = lamina::safetensors::to_f32(*a);
#pragma once

#include "../config.hpp"
#include "../core/dtype.hpp"
#include "../core/half.hpp"
#include "../core/mapped_file.hpp"
#include "../core/result.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace safetensors {

struct TensorInfo {
  std::string name;
  std::string dtype_name;  // as in the file: "F32", "BF16", "I64", "F8_E4M3" …
  // lamina's type for F32, F16 and BF16 (then `supported` is true). Other dtypes (F64, integers,
  // BOOL, 8/6/4-bit floats) parse, with `supported` false and `dtype` meaningless.
  DType dtype = DType::f32;
  bool supported = false;
  std::vector<std::int64_t> shape;     // as stored: outermost first, e.g. [out, in] for a weight; [] is a scalar
  const std::uint8_t* data = nullptr;  // into the mapping (or the bytes given to parse())
  std::size_t size_bytes = 0;
  std::uint64_t data_begin = 0;  // data_offsets[0], relative to the data section

  std::uint64_t element_count() const;
};

namespace detail {

// Limits; real files are far below them. The reference implementation refuses headers of more
// than 100 MB too.
inline constexpr std::uint64_t max_header_bytes = 100000000;
inline constexpr int max_json_depth = 16;
inline constexpr std::size_t max_rank = 64;

struct FileContents {
  std::shared_ptr<const MappedFile> mapping;  // null when parse() read caller-owned bytes
  std::string name;
  std::vector<TensorInfo> tensors;  // in header order
  std::unordered_map<std::string, std::size_t> index;
  std::map<std::string, std::string> metadata;
};

class Parser;

}  // namespace detail

// A parsed safetensors file: immutable, cheap to copy (copies share the contents and the mapping).
class File {
 public:
  // Maps and parses `path`. Errors name the path, the tensor or key, and the byte offset.
  static Result<File> open(const std::string& path);
  // Parses caller-owned bytes (tests, fuzzing, embedded files); `name` is used in errors.
  // TensorInfo::data points into `data`, which must outlive the File and its copies.
  static Result<File> parse(const std::uint8_t* data, std::size_t size, const std::string& name);

  const std::string& name() const;
  const std::vector<TensorInfo>& tensors() const;  // in the order of the header
  const TensorInfo* find(const std::string& name) const;  // nullptr when absent
  const std::map<std::string, std::string>& metadata() const;  // "__metadata__"; empty when absent

 private:
  friend class detail::Parser;
  const detail::FileContents& contents() const;
  std::shared_ptr<const detail::FileContents> contents_;
};

// The values of an F32, F16 or BF16 tensor as floats (exact conversions); ErrorCode::unsupported
// naming the tensor and its dtype for any other dtype.
Result<std::vector<float>> to_f32(const TensorInfo& tensor);

// One tensor to write: `data` holds product(shape) values of `dtype` (F32, F16 or BF16),
// contiguous, row-major. The bytes are read during write() only.
struct WriteTensor {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;  // outermost first; [] is a scalar; zero extents are allowed
  const void* data = nullptr;
};

// The complete file as bytes: the header (tensors in the order given, "__metadata__" first when
// `metadata` is not empty) padded with spaces to a multiple of 8 as the reference implementation
// does, then the tensors' bytes, contiguous and in the same order. ErrorCode::invalid_argument
// for an empty, duplicate or "__metadata__" tensor name, a name or metadata text that is not
// UTF-8, a dtype other than F32/F16/BF16, a negative extent, or a size that overflows.
Result<std::vector<std::uint8_t>> serialize(const std::vector<WriteTensor>& tensors,
                                            const std::map<std::string, std::string>& metadata);
// serialize(), written to a temporary file beside `path` and renamed over it (see OutputFile):
// readers never see half a file, and anything at `path` that is not a regular file is refused.
Result<void> write(const std::string& path, const std::vector<WriteTensor>& tensors,
                   const std::map<std::string, std::string>& metadata);

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

// A name or key as it appears in messages (lamina::detail::quote_for_message).
inline std::string quote_name(const std::string& text) { return lamina::detail::quote_for_message(text); }

// Every dtype the format defines, with its size in bits (F4 and F6 pack several per byte).
struct DTypeEntry {
  const char* name;
  std::uint32_t bits;
  bool has_lamina_type;  // F32, F16, BF16: what lamina computes with
  DType lamina_type;
};

inline const DTypeEntry* find_dtype(const std::string& name) {
  static const DTypeEntry table[] = {
      {"F32", 32, true, DType::f32},   {"F16", 16, true, DType::f16},     {"BF16", 16, true, DType::bf16},
      {"F64", 64, false, DType::f32},  {"I8", 8, false, DType::f32},      {"I16", 16, false, DType::f32},
      {"I32", 32, false, DType::f32},  {"I64", 64, false, DType::f32},    {"U8", 8, false, DType::f32},
      {"U16", 16, false, DType::f32},  {"U32", 32, false, DType::f32},    {"U64", 64, false, DType::f32},
      {"BOOL", 8, false, DType::f32},  {"F8_E4M3", 8, false, DType::f32}, {"F8_E5M2", 8, false, DType::f32},
      {"F8_E8M0", 8, false, DType::f32}, {"F6_E2M3", 6, false, DType::f32}, {"F6_E3M2", 6, false, DType::f32},
      {"F4", 4, false, DType::f32},    {"C64", 64, false, DType::f32},
  };
  for (const DTypeEntry& entry : table) {
    if (name == entry.name) return &entry;
  }
  return nullptr;
}

// Element count of `shape`, or false when an extent is negative or the count overflows int64.
inline bool element_count(const std::vector<std::int64_t>& shape, std::uint64_t& count, std::string& problem) {
  count = 1;
  const std::uint64_t limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 0) {
      problem = "dimension " + std::to_string(d) + " is " + std::to_string(shape[d]) + "; extents must not be negative";
      return false;
    }
    const std::uint64_t extent = static_cast<std::uint64_t>(shape[d]);
    if (extent != 0 && count > limit / extent) {
      problem = "the element count overflows a signed 64-bit integer at dimension " + std::to_string(d);
      return false;
    }
    count *= extent;
  }
  // A zero extent makes the count 0 whatever follows; later extents were still range-checked.
  return true;
}

// Checks that `text` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
inline bool is_utf8(const std::string& text) {
  const std::size_t size = text.size();
  std::size_t i = 0;
  while (i < size) {
    const unsigned char lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    std::size_t length;
    std::uint32_t code;
    std::uint32_t smallest;
    if ((lead & 0xe0) == 0xc0) { length = 2; code = lead & 0x1fu; smallest = 0x80; }
    else if ((lead & 0xf0) == 0xe0) { length = 3; code = lead & 0x0fu; smallest = 0x800; }
    else if ((lead & 0xf8) == 0xf0) { length = 4; code = lead & 0x07u; smallest = 0x10000; }
    else return false;
    if (length > size - i) return false;
    for (std::size_t k = 1; k < length; ++k) {
      const unsigned char next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code = (code << 6) | (next & 0x3fu);
    }
    if (code < smallest || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
    i += length;
  }
  return true;
}

// Appends `text` as a JSON string literal (UTF-8 passes through; controls are \u escapes).
inline void append_json_string(std::string& out, const std::string& text) {
  static const char hex[] = "0123456789abcdef";
  out += '"';
  for (const char c : text) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (byte < 0x20) {
      out += "\\u00";
      out += hex[byte >> 4];
      out += hex[byte & 15];
    } else {
      out += c;
    }
  }
  out += '"';
}

inline std::uint64_t load_u64(const std::uint8_t* bytes) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

// A byte iterator that tells how far nlohmann's lexer has read, so errors the SAX handler finds
// (wrong types, duplicates) can give a byte offset. The lexer reads at most one byte ahead of
// the token it reports, hence "near byte".
class CountingIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  CountingIterator(const char* position, const char* begin, std::size_t* consumed)
      : position_(position), begin_(begin), consumed_(consumed) {}
  reference operator*() const { return *position_; }
  CountingIterator& operator++() {
    ++position_;
    *consumed_ = static_cast<std::size_t>(position_ - begin_);
    return *this;
  }
  CountingIterator operator++(int) {
    CountingIterator before = *this;
    ++*this;
    return before;
  }
  bool operator==(const CountingIterator& other) const { return position_ == other.position_; }
  bool operator!=(const CountingIterator& other) const { return position_ != other.position_; }

 private:
  const char* position_;
  const char* begin_;
  std::size_t* consumed_;
};

// Shared by the JSON readers of lamina/io (this file and peft_config.hpp): nlohmann's parse
// error as a short message. nlohmann's text ends with the token read so far, raw ("…; last
// read: '"\xff'"): it can be a whole hostile 100 MB string, invalid UTF-8 or terminal control
// bytes. The message keeps the first 200 bytes of nlohmann's text and quotes the token as names
// are quoted (quote_for_message: escaped, at most 80 bytes).
inline std::string short_json_error(const std::string& what) {
  std::string text = what;
  // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error …" -> from
  // "syntax"; "[json.exception.out_of_range.406] number overflow …" -> from "number".
  if (text.compare(0, 16, "[json.exception.") == 0) {
    const std::size_t bracket = text.find("] ");
    if (bracket != std::string::npos) text = text.substr(bracket + 2);
    const std::size_t colon = text.find(": ");
    if (text.compare(0, 15, "parse error at ") == 0 && colon != std::string::npos) text = text.substr(colon + 2);
  }
  std::string token;
  bool has_token = false;
  static const char marker[] = "; last read: '";
  const std::size_t at = text.find(marker);
  if (at != std::string::npos && text.size() > at + sizeof marker - 1 && text.back() == '\'') {
    token = text.substr(at + sizeof marker - 1, text.size() - (at + sizeof marker - 1) - 1);
    text.resize(at);
    has_token = true;
  }
  if (text.size() > 200) text = text.substr(0, 200) + "...";
  // nlohmann's own words are ASCII; escape anything else all the same.
  std::string shown;
  for (const char c : text) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f) {
      shown += c;
    } else {
      static const char hex[] = "0123456789abcdef";
      shown += "\\x";
      shown += hex[byte >> 4];
      shown += hex[byte & 15];
    }
  }
  if (has_token) shown += "; last read: " + lamina::detail::quote_for_message(token);
  return shown;
}

// The SAX handler that reads a safetensors header straight into TensorInfos. It accepts exactly
// the structure of the format and stops (returns false) at the first problem, with `error` set:
//   depth 1: the top object; each key is a tensor name or "__metadata__"
//   depth 2: a tensor's object (dtype, shape, data_offsets; other keys are skipped, as the
//            reference implementation ignores them) or the metadata object (string values)
//   depth 3: the shape and data_offsets arrays (integers)
class HeaderReader {
 public:
  using json = nlohmann::json;
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  HeaderReader(const std::string& file_name, std::size_t header_start, const std::size_t* consumed)
      : file_name_(file_name), header_start_(header_start), consumed_(consumed) {}

  // --- nlohmann SAX interface ---
  bool null() { return scalar("null"); }
  bool boolean(bool) { return scalar("a boolean"); }
  bool number_integer(number_integer_t value) {
    if (value >= 0) return number_unsigned(static_cast<number_unsigned_t>(value));
    return integer(false, 0, value);
  }
  bool number_unsigned(number_unsigned_t value) { return integer(true, value, 0); }
  bool number_float(number_float_t, const string_t& text) {
    if (in_array()) return array_problem("element " + std::to_string(array_length_) + " is " + short_text(text) + ", not an integer");
    return scalar("the number " + short_text(text));
  }
  bool string(string_t& value) {
    if (skip_depth_ > 0) return true;
    if (state_ == State::metadata) {
      metadata_->emplace(current_key_, std::move(value));
      return true;
    }
    if (state_ == State::tensor && field_ == Field::dtype) {
      dtype_name_ = std::move(value);
      return true;
    }
    if (in_array()) return array_problem("element " + std::to_string(array_length_) + " is a string, not an integer");
    return scalar("a string");
  }
  bool binary(binary_t&) { return scalar("binary data"); }  // not produced by the JSON parser

  bool start_object(std::size_t) {
    if (!enter()) return false;
    if (skip_depth_ > 0) {
      ++skip_depth_;
      return true;
    }
    switch (state_) {
      case State::start: state_ = State::top; return true;
      case State::top:
        if (is_metadata_) {
          if (seen_metadata_) return problem("\"__metadata__\" appears twice");
          seen_metadata_ = true;
          state_ = State::metadata;
        } else {
          state_ = State::tensor;
          begin_tensor();
        }
        return true;
      case State::tensor:
        if (field_ == Field::other) {
          skip_depth_ = 1;  // skip the unknown key's value
          return true;
        }
        return field_problem("an object");
      case State::metadata: return metadata_problem("an object");
      case State::array: return array_problem("element " + std::to_string(array_length_) + " is an object, not an integer");
      case State::done: break;
    }
    return problem("unexpected object");
  }

  bool key(string_t& key) {
    if (skip_depth_ > 0) return true;
    key_offset_ = offset();
    if (state_ == State::top) {
      is_metadata_ = key == "__metadata__";
      current_key_ = std::move(key);
      if (!is_metadata_ && index_->count(current_key_) != 0) return problem("duplicate tensor name " + quote_name(current_key_));
      return true;
    }
    if (state_ == State::metadata) {
      if (metadata_->count(key) != 0) return problem("\"__metadata__\": duplicate key " + quote_name(key));
      current_key_ = std::move(key);
      return true;
    }
    // In a tensor's object.
    if (key == "dtype") field_ = Field::dtype;
    else if (key == "shape") field_ = Field::shape;
    else if (key == "data_offsets") field_ = Field::data_offsets;
    else field_ = Field::other;
    if (field_ != Field::other) {
      const unsigned bit = 1u << static_cast<unsigned>(field_);
      if ((seen_fields_ & bit) != 0) return tensor_problem("duplicate key \"" + key + "\"");
      seen_fields_ |= bit;
    }
    return true;
  }

  bool end_object() {
    --depth_;
    if (skip_depth_ > 0) {
      --skip_depth_;
      return true;
    }
    if (state_ == State::metadata) {
      state_ = State::top;
      return true;
    }
    if (state_ == State::tensor) {
      state_ = State::top;
      return finish_tensor();
    }
    state_ = State::done;  // the top object
    return true;
  }

  bool start_array(std::size_t) {
    if (!enter()) return false;
    if (skip_depth_ > 0) {
      ++skip_depth_;
      return true;
    }
    if (state_ == State::tensor) {
      if (field_ == Field::other) {
        skip_depth_ = 1;
        return true;
      }
      if (field_ == Field::dtype) return field_problem("an array");
      state_ = State::array;
      array_length_ = 0;
      return true;
    }
    if (state_ == State::array) return array_problem("element " + std::to_string(array_length_) + " is an array, not an integer");
    return scalar("an array");
  }

  bool end_array() {
    --depth_;
    if (skip_depth_ > 0) {
      --skip_depth_;
      return true;
    }
    // state_ == State::array: arrays anywhere else failed at start_array.
    state_ = State::tensor;
    if (field_ == Field::data_offsets && array_length_ != 2) {
      return tensor_problem("\"data_offsets\" has " + std::to_string(array_length_) + " elements, expected 2 ([begin, end])");
    }
    return true;
  }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& error) {
    // nlohmann's position counts bytes read, 1-based at the offending byte.
    const std::size_t at = header_start_ + (position > 0 ? position - 1 : 0);
    error_ = fail(ErrorCode::invalid_format,
                  file_name_ + ": header at byte " + std::to_string(at) + ": invalid JSON: " + short_json_error(error.what()));
    return false;
  }

  // --- results ---
  void set_outputs(std::vector<TensorInfo>* tensors, std::unordered_map<std::string, std::size_t>* index,
                   std::map<std::string, std::string>* metadata, std::vector<std::size_t>* key_offsets) {
    tensors_ = tensors;
    index_ = index;
    metadata_ = metadata;
    key_offsets_ = key_offsets;
  }
  bool failed() const { return failed_; }
  Error take_error() { return std::move(error_); }
  bool complete() const { return state_ == State::done; }

 private:
  enum class State { start, top, tensor, metadata, array, done };
  enum class Field { dtype = 0, shape = 1, data_offsets = 2, other = 3 };

  std::size_t offset() const { return header_start_ + *consumed_; }
  bool in_array() const { return skip_depth_ == 0 && state_ == State::array; }
  static std::string short_text(const std::string& text) { return text.size() > 40 ? text.substr(0, 40) + "..." : text; }

  bool problem(const std::string& what, ErrorCode code = ErrorCode::invalid_format) {
    failed_ = true;
    error_ = fail(code, file_name_ + ": header near byte " + std::to_string(offset()) + ": " + what);
    return false;
  }
  bool tensor_problem(const std::string& what, ErrorCode code = ErrorCode::invalid_format) {
    return problem("tensor " + quote_name(current_key_) + ": " + what, code);
  }
  bool field_problem(const std::string& found) {
    const char* expected = field_ == Field::dtype ? "a string" : "an array of integers";
    return tensor_problem(std::string("\"") + field_name() + "\" must be " + expected + ", found " + found);
  }
  bool array_problem(const std::string& what) { return tensor_problem(std::string("\"") + field_name() + "\": " + what); }
  bool metadata_problem(const std::string& found) {
    return problem("\"__metadata__\": the value of key " + quote_name(current_key_) + " must be a string, found " + found);
  }
  const char* field_name() const {
    switch (field_) {
      case Field::dtype: return "dtype";
      case Field::shape: return "shape";
      case Field::data_offsets: return "data_offsets";
      case Field::other: break;
    }
    return "?";
  }

  bool enter() {
    if (++depth_ > max_json_depth) {
      return problem("JSON nested more than " + std::to_string(max_json_depth) + " levels deep");
    }
    return true;
  }

  // A scalar where the structure needs something else.
  bool scalar(const std::string& found) {
    if (skip_depth_ > 0) return true;
    switch (state_) {
      case State::start: return problem("the header must be a JSON object, found " + found);
      case State::top:
        if (is_metadata_) return problem("\"__metadata__\" must be an object, found " + found);
        return problem("tensor " + quote_name(current_key_) + ": the entry must be an object, found " + found);
      case State::tensor:
        if (field_ == Field::other) return true;
        return field_problem(found);
      case State::metadata: return metadata_problem(found);
      case State::array:
        return array_problem("element " + std::to_string(array_length_) + " is " + found + ", not an integer");
      case State::done: break;
    }
    return problem("unexpected " + found);
  }

  bool integer(bool non_negative, std::uint64_t unsigned_value, std::int64_t signed_value) {
    if (skip_depth_ > 0) return true;
    if (state_ != State::array) return scalar("a number");
    const std::size_t element = array_length_++;
    if (field_ == Field::shape) {
      if (!non_negative) {
        return array_problem("dimension " + std::to_string(element) + " is " + std::to_string(signed_value) +
                             "; extents must not be negative");
      }
      if (unsigned_value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return array_problem("dimension " + std::to_string(element) + " is " + std::to_string(unsigned_value) +
                             ", larger than a signed 64-bit integer");
      }
      if (shape_.size() >= max_rank) {
        return tensor_problem("more than " + std::to_string(max_rank) + " dimensions", ErrorCode::unsupported);
      }
      shape_.push_back(static_cast<std::int64_t>(unsigned_value));
      return true;
    }
    // data_offsets
    if (!non_negative) {
      return array_problem("offset " + std::to_string(element) + " is " + std::to_string(signed_value) + ", negative");
    }
    if (element >= 2) return tensor_problem("\"data_offsets\" has more than 2 elements, expected 2 ([begin, end])");
    offsets_[element] = unsigned_value;
    return true;
  }

  void begin_tensor() {
    seen_fields_ = 0;
    dtype_name_.clear();
    shape_.clear();
    offsets_[0] = offsets_[1] = 0;
    tensor_offset_ = key_offset_;
  }

  bool finish_tensor() {
    for (const Field field : {Field::dtype, Field::shape, Field::data_offsets}) {
      if ((seen_fields_ & (1u << static_cast<unsigned>(field))) == 0) {
        field_ = field;
        return problem("tensor " + quote_name(current_key_) + ": missing \"" + field_name() + "\"", ErrorCode::invalid_format);
      }
    }
    TensorInfo info;
    info.name = current_key_;
    info.dtype_name = dtype_name_;
    const DTypeEntry* entry = find_dtype(dtype_name_);
    if (entry == nullptr) return tensor_problem("unknown dtype " + quote_name(dtype_name_));
    info.supported = entry->has_lamina_type;
    info.dtype = entry->lamina_type;
    info.shape = shape_;
    std::uint64_t count = 0;
    std::string why;
    if (!element_count(shape_, count, why)) return tensor_problem(why);
    if (offsets_[1] < offsets_[0]) {
      return tensor_problem("\"data_offsets\" [" + std::to_string(offsets_[0]) + ", " + std::to_string(offsets_[1]) +
                            "] end before they begin");
    }
    const std::uint64_t stored = offsets_[1] - offsets_[0];
    // count <= 2^63 - 1 and bits <= 64, so count * bits fits only when count <= 2^64 / 64.
    if (count > std::numeric_limits<std::uint64_t>::max() / entry->bits) {
      return tensor_problem("the size in bytes of shape " + describe_shape() + " overflows a 64-bit integer");
    }
    const std::uint64_t bits = count * entry->bits;
    if (bits % 8 != 0 || bits / 8 != stored) {
      return tensor_problem("\"data_offsets\" [" + std::to_string(offsets_[0]) + ", " + std::to_string(offsets_[1]) +
                            "] hold " + std::to_string(stored) + " bytes, but shape " + describe_shape() + " of " +
                            dtype_name_ + " needs " + (bits % 8 != 0 ? std::to_string(bits) + " bits (not whole bytes)"
                                                                    : std::to_string(bits / 8) + " bytes"));
    }
    if (stored > std::numeric_limits<std::size_t>::max()) return tensor_problem("too large for this platform");
    info.data_begin = offsets_[0];
    info.size_bytes = static_cast<std::size_t>(stored);
    index_->emplace(info.name, tensors_->size());
    tensors_->push_back(std::move(info));
    key_offsets_->push_back(tensor_offset_);
    return true;
  }

  std::string describe_shape() const {
    std::string text = "[";
    for (std::size_t d = 0; d < shape_.size(); ++d) text += (d ? ", " : "") + std::to_string(shape_[d]);
    return text + "]";
  }

  const std::string& file_name_;
  std::size_t header_start_;
  const std::size_t* consumed_;
  std::vector<TensorInfo>* tensors_ = nullptr;
  std::unordered_map<std::string, std::size_t>* index_ = nullptr;
  std::map<std::string, std::string>* metadata_ = nullptr;
  std::vector<std::size_t>* key_offsets_ = nullptr;

  State state_ = State::start;
  int depth_ = 0;
  int skip_depth_ = 0;  // > 0 inside the value of an unknown key of a tensor
  bool failed_ = false;
  Error error_;
  std::string current_key_;  // tensor name, or metadata key
  bool is_metadata_ = false;
  bool seen_metadata_ = false;
  std::size_t key_offset_ = 0;
  // The tensor being read.
  Field field_ = Field::other;
  unsigned seen_fields_ = 0;
  std::string dtype_name_;
  std::vector<std::int64_t> shape_;
  std::uint64_t offsets_[2] = {0, 0};
  std::size_t array_length_ = 0;
  std::size_t tensor_offset_ = 0;
};

class Parser {
 public:
  static Result<File> run(const std::uint8_t* data, std::size_t size, const std::string& name,
                          std::shared_ptr<const MappedFile> mapping) {
    auto contents = std::make_shared<FileContents>();
    contents->mapping = std::move(mapping);
    contents->name = name;
    if (size < 8) {
      return fail(ErrorCode::invalid_format, name + ": at byte 0: truncated file: the header length needs 8 bytes, the file has " +
                                                 std::to_string(size) + ": not a safetensors file");
    }
    const std::uint64_t header_length = load_u64(data);
    const std::uint64_t after_length = size - 8;
    if (header_length > after_length) {
      return fail(ErrorCode::invalid_format, name + ": at byte 0: header length " + std::to_string(header_length) +
                                                 " runs past the end of the file (" + std::to_string(after_length) +
                                                 " bytes follow it): truncated file, or not a safetensors file");
    }
    if (header_length > max_header_bytes) {
      return fail(ErrorCode::unsupported, name + ": at byte 0: header length " + std::to_string(header_length) +
                                              " is more than lamina accepts (" + std::to_string(max_header_bytes) + " bytes)");
    }
    if (header_length < 2) {
      return fail(ErrorCode::invalid_format, name + ": at byte 0: header length " + std::to_string(header_length) +
                                                 " is too short for a JSON object");
    }
    const std::size_t header_bytes = static_cast<std::size_t>(header_length);
    const char* header = reinterpret_cast<const char*>(data + 8);

    std::size_t consumed = 0;
    std::vector<std::size_t> key_offsets;  // file byte offset of each tensor's key, for later messages
    HeaderReader reader(name, 8, &consumed);
    reader.set_outputs(&contents->tensors, &contents->index, &contents->metadata, &key_offsets);
    CountingIterator first(header, header, &consumed);
    CountingIterator last(header + header_bytes, header, &consumed);
    const bool parsed = nlohmann::json::sax_parse(first, last, &reader, nlohmann::json::input_format_t::json,
                                                  /*strict=*/true, /*ignore_comments=*/false);
    if (!parsed) return reader.take_error();
    if (!reader.complete()) {
      return fail(ErrorCode::invalid_format, name + ": header: the JSON ended early");  // not reached: strict parsing
    }

    // Place the tensors: sorted by offsets they must tile the data section exactly.
    const std::uint64_t data_start = 8 + header_length;
    const std::uint64_t data_size = size - data_start;
    std::vector<TensorInfo>& tensors = contents->tensors;
    std::vector<std::size_t> order(tensors.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      if (tensors[a].data_begin != tensors[b].data_begin) return tensors[a].data_begin < tensors[b].data_begin;
      if (tensors[a].size_bytes != tensors[b].size_bytes) return tensors[a].size_bytes < tensors[b].size_bytes;
      return a < b;
    });
    std::uint64_t expected_begin = 0;
    const TensorInfo* previous = nullptr;
    for (const std::size_t i : order) {
      TensorInfo& tensor = tensors[i];
      const std::string where = name + ": header near byte " + std::to_string(key_offsets[i]) + ": tensor " + quote_name(tensor.name) +
                                ": data_offsets [" + std::to_string(tensor.data_begin) + ", " +
                                std::to_string(tensor.data_begin + tensor.size_bytes) + "]";
      if (tensor.data_begin > data_size || tensor.size_bytes > data_size - tensor.data_begin) {
        return fail(ErrorCode::invalid_format, where + " run past the end of the data section (" + std::to_string(data_size) +
                                                   " bytes, from byte " + std::to_string(data_start) + ")");
      }
      if (tensor.data_begin < expected_begin) {
        return fail(ErrorCode::invalid_format, where + " overlap tensor " + quote_name(previous->name) + " (data_offsets [" +
                                                   std::to_string(previous->data_begin) + ", " + std::to_string(expected_begin) + "])");
      }
      if (tensor.data_begin > expected_begin) {
        return fail(ErrorCode::invalid_format,
                    where + " leave a gap of " + std::to_string(tensor.data_begin - expected_begin) + " bytes after " +
                        (previous ? "tensor " + quote_name(previous->name) : std::string("the start of the data section")) +
                        " (tensors must follow each other without gaps)");
      }
      tensor.data = data + data_start + tensor.data_begin;
      expected_begin = tensor.data_begin + tensor.size_bytes;
      previous = &tensor;
    }
    if (expected_begin != data_size) {
      return fail(ErrorCode::invalid_format, name + ": at byte " + std::to_string(data_start + expected_begin) + ": " +
                                                 std::to_string(data_size - expected_begin) +
                                                 " bytes after the last tensor's data (the data section must end with it)");
    }
    File file;
    file.contents_ = std::move(contents);
    return file;
  }
};

inline bool checked_add(std::uint64_t a, std::uint64_t b, std::uint64_t& sum) {
  if (a > std::numeric_limits<std::uint64_t>::max() - b) return false;
  sum = a + b;
  return true;
}

}  // namespace detail

// --- TensorInfo, File ---

inline std::uint64_t TensorInfo::element_count() const {
  std::uint64_t count = 0;
  std::string unused;
  return detail::element_count(shape, count, unused) ? count : 0;
}

inline Result<File> File::open(const std::string& path) {
  Result<MappedFile> mapped = MappedFile::open(path);
  if (!mapped) return mapped.take_error();
  auto mapping = std::make_shared<const MappedFile>(std::move(*mapped));
  const std::uint8_t* data = mapping->data();
  const std::size_t size = mapping->size();
  return detail::Parser::run(data, size, path, std::move(mapping));
}

inline Result<File> File::parse(const std::uint8_t* data, std::size_t size, const std::string& name) {
  if (data == nullptr) size = 0;
  static const std::uint8_t empty[1] = {0};
  return detail::Parser::run(data != nullptr ? data : empty, size, name, nullptr);
}

inline const detail::FileContents& File::contents() const {
  static const detail::FileContents empty;  // what a default-constructed or moved-from File reads as
  return contents_ ? *contents_ : empty;
}

inline const std::string& File::name() const { return contents().name; }
inline const std::vector<TensorInfo>& File::tensors() const { return contents().tensors; }
inline const std::map<std::string, std::string>& File::metadata() const { return contents().metadata; }

inline const TensorInfo* File::find(const std::string& name) const {
  const detail::FileContents& file = contents();
  const auto found = file.index.find(name);
  return found == file.index.end() ? nullptr : &file.tensors[found->second];
}

inline Result<std::vector<float>> to_f32(const TensorInfo& tensor) {
  if (!tensor.supported) {
    return fail(ErrorCode::unsupported, "tensor " + detail::quote_name(tensor.name) + ": dtype " + detail::quote_name(tensor.dtype_name) +
                                            " cannot be converted to F32 (lamina converts F32, F16 and BF16)");
  }
  const std::size_t element_bytes = tensor.dtype == DType::f32 ? 4 : 2;
  if (tensor.size_bytes % element_bytes != 0 || (tensor.size_bytes != 0 && tensor.data == nullptr)) {
    return fail(ErrorCode::invalid_argument, "tensor " + detail::quote_name(tensor.name) + ": " + std::to_string(tensor.size_bytes) +
                                                 " bytes of data do not hold whole " + tensor.dtype_name + " values");
  }
  std::vector<float> values(tensor.size_bytes / element_bytes);
  const std::uint8_t* bytes = tensor.data;
  // The data may be unaligned (the header length need not be a multiple of 4): byte loads.
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::uint8_t* at = bytes + i * element_bytes;
    if (tensor.dtype == DType::f32) {
      const std::uint32_t bits = static_cast<std::uint32_t>(at[0]) | (static_cast<std::uint32_t>(at[1]) << 8) |
                                 (static_cast<std::uint32_t>(at[2]) << 16) | (static_cast<std::uint32_t>(at[3]) << 24);
      values[i] = float_from_bits(bits);
    } else {
      const std::uint16_t bits = static_cast<std::uint16_t>(at[0] | (at[1] << 8));
      values[i] = tensor.dtype == DType::f16 ? f16_to_f32(bits) : bf16_to_f32(bits);
    }
  }
  return values;
}

// --- writing ---

inline Result<std::vector<std::uint8_t>> serialize(const std::vector<WriteTensor>& tensors,
                                                   const std::map<std::string, std::string>& metadata) {
  const auto problem = [](const std::string& what) { return fail(ErrorCode::invalid_argument, "safetensors::write: " + what); };
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& entry : metadata) {
      if (!detail::is_utf8(entry.first)) return problem("metadata key " + detail::quote_name(entry.first) + " is not UTF-8");
      if (!detail::is_utf8(entry.second)) return problem("metadata value of key " + detail::quote_name(entry.first) + " is not UTF-8");
      if (!first) header += ',';
      first = false;
      detail::append_json_string(header, entry.first);
      header += ':';
      detail::append_json_string(header, entry.second);
    }
    header += '}';
  }
  std::vector<std::uint64_t> sizes;
  sizes.reserve(tensors.size());
  std::unordered_map<std::string, std::size_t> seen;
  std::uint64_t offset = 0;
  for (const WriteTensor& tensor : tensors) {
    const std::string label = "tensor " + detail::quote_name(tensor.name) + ": ";
    if (tensor.name.empty()) return problem("empty tensor name");
    if (tensor.name == "__metadata__") return problem("a tensor cannot be named \"__metadata__\"");
    if (!detail::is_utf8(tensor.name)) return problem(label + "the name is not UTF-8");
    if (!seen.emplace(tensor.name, sizes.size()).second) return problem(label + "duplicate tensor name");
    const char* dtype = tensor.dtype == DType::f32 ? "F32" : tensor.dtype == DType::f16 ? "F16" : tensor.dtype == DType::bf16 ? "BF16" : nullptr;
    if (dtype == nullptr) return problem(label + "dtype " + dtype_name(tensor.dtype) + " cannot be written (F32, F16 and BF16 can)");
    std::uint64_t count = 0;
    std::string why;
    if (!detail::element_count(tensor.shape, count, why)) return problem(label + why);
    const std::uint64_t element_bytes = tensor.dtype == DType::f32 ? 4 : 2;
    std::uint64_t end = 0;
    if (count > std::numeric_limits<std::uint64_t>::max() / element_bytes || !detail::checked_add(offset, count * element_bytes, end) ||
        end > std::numeric_limits<std::size_t>::max() / 2) {
      return problem(label + "the data size overflows");
    }
    if (count != 0 && tensor.data == nullptr) return problem(label + "data is null");
    if (!metadata.empty() || header.size() > 1) header += ',';
    detail::append_json_string(header, tensor.name);
    header += ":{\"dtype\":\"";
    header += dtype;
    header += "\",\"shape\":[";
    for (std::size_t d = 0; d < tensor.shape.size(); ++d) {
      if (d != 0) header += ',';
      header += std::to_string(tensor.shape[d]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]}";
    sizes.push_back(end - offset);
    offset = end;
  }
  header += '}';
  // Spaces pad the header to a multiple of 8 (JSON allows trailing whitespace), so the data
  // section starts 8-byte aligned in the file, as the reference writer does.
  header.append((8 - header.size() % 8) % 8, ' ');
  if (header.size() > detail::max_header_bytes) {
    return problem("the header is " + std::to_string(header.size()) + " bytes, more than readers accept (" +
                   std::to_string(detail::max_header_bytes) + ")");
  }
  std::vector<std::uint8_t> out;
  out.reserve(8 + header.size() + static_cast<std::size_t>(offset));
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(static_cast<std::uint64_t>(header.size()) >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::uint8_t* bytes = static_cast<const std::uint8_t*>(tensors[i].data);
    if (sizes[i] != 0) out.insert(out.end(), bytes, bytes + sizes[i]);
  }
  return out;
}

inline Result<void> write(const std::string& path, const std::vector<WriteTensor>& tensors,
                          const std::map<std::string, std::string>& metadata) {
  Result<std::vector<std::uint8_t>> bytes = serialize(tensors, metadata);
  if (!bytes) return bytes.take_error().with_context(path);
  // write_regular_file (core/file_io.hpp) writes a temporary beside `path` and renames it over
  // `path`, so a reader (or a crash) never sees half a file and a File that still maps the old
  // `path` keeps its bytes; it refuses a `path` that is a FIFO, device or directory.
  return write_regular_file(path, bytes->data(), bytes->size());
}

}  // namespace safetensors
LAMINA_NAMESPACE_END
