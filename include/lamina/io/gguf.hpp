// lamina/io/gguf.hpp — GGUF files: reading (zero copy, from a memory mapping) and writing.
//
// File layout (GGUF v2/v3, all little-endian):
//   "GGUF" u32 version, u64 tensor_count, u64 metadata_kv_count
//   metadata_kv_count × { string key, u32 value_type, value }
//   tensor_count × { string name, u32 n_dims, u64 dims[n_dims] (innermost first), u32 type, u64 offset }
//   padding to general.alignment (default 32), then the tensor data; each offset is relative
//   to the start of the data section and a multiple of the alignment.
// A string is u64 length + bytes (no terminator); an array is u32 element type, u64 count, elements.
//
// Reading never trusts the file: every count and length is checked against the bytes that are
// left before anything is allocated, arrays may nest at most 8 deep, and every tensor must lie
// inside the file without overlapping another. A bad file gives an Error that names the file,
// the key or tensor, the byte offset and what is wrong; it never aborts or reads out of bounds.
//
//   lamina::Result<lamina::gguf::File> file = lamina::gguf::File::open("model.gguf");
//   if (!file) return file.take_error();
//   lamina::Result<std::uint32_t> layers = file->get_u32("llama.block_count");
//   const lamina::gguf::TensorInfo* embedding = file->find_tensor("token_embd.weight");
//   // embedding->shape == {n_vocab, n_embd}; embedding->data points into the mapping.
#pragma once

#include "../config.hpp"
#include "../core/dtype.hpp"
#include "../core/mapped_file.hpp"
#include "../core/result.hpp"
#include "../core/tensor.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace gguf {

enum class ValueType : std::uint32_t {
  uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6,
  boolean = 7, string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12,
};
const char* value_type_name(ValueType type);

// One metadata value. Scalars live in the matching member; arrays hold their elements (which
// may themselves be arrays) and the element type.
struct Value {
  ValueType type = ValueType::uint8;
  std::uint64_t unsigned_value = 0;  // uint8/16/32/64, boolean (0/1)
  std::int64_t signed_value = 0;     // int8/16/32/64
  double float_value = 0;            // float32/64
  std::string string_value;          // string
  ValueType element_type = ValueType::uint8;  // array
  std::vector<Value> elements;               // array

  static Value from_u8(std::uint8_t); static Value from_i8(std::int8_t);
  static Value from_u16(std::uint16_t); static Value from_i16(std::int16_t);
  static Value from_u32(std::uint32_t); static Value from_i32(std::int32_t);
  static Value from_u64(std::uint64_t); static Value from_i64(std::int64_t);
  static Value from_f32(float); static Value from_f64(double);
  static Value from_bool(bool); static Value from_string(std::string);
  static Value from_array(ValueType element_type, std::vector<Value> elements);
  static Value from_strings(const std::vector<std::string>&);
  static Value from_f32s(const std::vector<float>&);
  static Value from_i32s(const std::vector<std::int32_t>&);
};

// Same type and the same stored representation (floats compare by bits, so NaN == NaN when the
// bits agree and 0.0 != -0.0): what a write + read round trip must preserve.
bool operator==(const Value& left, const Value& right);
bool operator!=(const Value& left, const Value& right);

struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;  // outermost first (GGUF's dims reversed): a weight is [out, in]
  std::uint64_t offset = 0;         // from the start of the data section
  std::uint64_t size_bytes = 0;
  const std::uint8_t* data = nullptr;  // into the mapping

  TensorView view() const;  // contiguous view over `data`
};

namespace detail {

// Limits that keep a hostile file from costing absurd memory or stack. A parsed Value takes
// ~100 bytes however small its encoding (a uint8 is one byte in the file), so the values are
// budgeted: 2^22 values cost at most ~400 MB. Real files are far below the limits: a 256k-token
// vocabulary with scores and types is under a million values, and the largest models have a
// couple of thousand tensors.
inline constexpr int max_array_nesting = 8;                                   // arrays of arrays of …
inline constexpr std::uint64_t max_metadata_values = std::uint64_t{1} << 22;  // every value, array elements included
inline constexpr std::uint64_t max_tensor_count = std::uint64_t{1} << 16;
inline constexpr std::uint32_t default_alignment = 32;
// llama.cpp refuses tensor names of GGML_MAX_NAME (64) bytes or more; the Writer keeps to that.
inline constexpr std::size_t max_written_tensor_name_bytes = 63;

// Everything parsed from one file. It is built once, never changed, and shared by every copy
// of a File, so copies are cheap and tensor pointers stay valid while any copy lives.
struct FileContents {
  std::shared_ptr<const MappedFile> mapping;  // null when parse() read caller-owned bytes
  std::string name;
  std::uint32_t version = 0;
  std::uint32_t alignment = default_alignment;
  std::uint64_t data_offset = 0;  // byte offset of the data section from the start of the file
  std::vector<std::pair<std::string, Value>> metadata;
  std::unordered_map<std::string, std::size_t> key_index;  // key -> index into metadata
  std::vector<TensorInfo> tensors;
  std::unordered_map<std::string, std::size_t> tensor_index;  // name -> index into tensors
};

class Parser;

}  // namespace detail

// A parsed GGUF file: immutable, and cheap to copy (copies share the parsed contents and the
// mapping, which lives until the last copy is gone).
class File {
 public:
  // Maps and parses `path`. Errors name the path and what is wrong, with the byte offset.
  static Result<File> open(const std::string& path);
  // Parses bytes that stay owned by the caller (fuzzing, embedded models). `name` is used in errors.
  // TensorInfo::data points into `data`, which must outlive the File and its copies.
  static Result<File> parse(const std::uint8_t* data, std::size_t size, const std::string& name);

  std::uint32_t version() const;
  std::uint32_t alignment() const;
  const std::string& name() const;  // path or the name given to parse()
  // Byte offset of the data section (the first tensor's bytes) from the start of the file.
  std::uint64_t data_offset() const;

  // Metadata, in file order.
  const std::vector<std::pair<std::string, Value>>& metadata() const;
  const Value* find(const std::string& key) const;  // nullptr when absent
  bool contains(const std::string& key) const;

  // Typed access. Missing -> ErrorCode::missing; a different type -> ErrorCode::type_mismatch.
  // Integer getters accept any integer type whose value fits the requested type.
  Result<std::uint32_t> get_u32(const std::string& key) const;
  Result<std::int32_t> get_i32(const std::string& key) const;
  Result<std::uint64_t> get_u64(const std::string& key) const;
  Result<float> get_f32(const std::string& key) const;   // float32 or float64
  Result<bool> get_bool(const std::string& key) const;
  Result<std::string> get_string(const std::string& key) const;
  Result<std::vector<std::string>> get_string_array(const std::string& key) const;
  Result<std::vector<float>> get_f32_array(const std::string& key) const;
  Result<std::vector<std::int32_t>> get_i32_array(const std::string& key) const;
  // Same, but an absent key gives `fallback` (a present key of the wrong type is still an error).
  Result<std::uint32_t> get_u32_or(const std::string& key, std::uint32_t fallback) const;
  Result<float> get_f32_or(const std::string& key, float fallback) const;
  Result<bool> get_bool_or(const std::string& key, bool fallback) const;
  Result<std::string> get_string_or(const std::string& key, const std::string& fallback) const;

  const std::vector<TensorInfo>& tensors() const;
  const TensorInfo* find_tensor(const std::string& name) const;  // nullptr when absent

 private:
  friend class detail::Parser;

  // A default-constructed or moved-from File reads as an empty file.
  const detail::FileContents& contents() const;
  // The value of `key`, or ErrorCode::missing naming the file and key.
  Result<const Value*> require(const std::string& key) const;
  Error type_error(const std::string& key, const char* expected, const Value& found) const;
  template <class Integer>
  Result<Integer> get_integer(const std::string& key, const char* type_name) const;

  std::shared_ptr<const detail::FileContents> contents_;
};

// Builds a GGUF file in memory and writes it. Tensors are laid out in the order added, each
// padded to the alignment as llama.cpp does. Passing an invalid Value to set() (an array whose
// elements are not all of its element_type, arrays nested more than 8 deep) or a bad alignment
// is a programmer error caught by LAMINA_ASSERT; add_tensor() checks its input and reports.
class Writer {
 public:
  explicit Writer(std::uint32_t version = 3);
  void set(const std::string& key, Value value);  // replaces an existing key, keeps its position
  void set_alignment(std::uint32_t alignment);   // also writes general.alignment
  // `shape` outermost first; `data` must hold row_bytes(dtype, shape.back()) * rows bytes. The
  // bytes are copied. ErrorCode::invalid_argument for a bad shape or size, a duplicate name, or
  // a name longer than llama.cpp's 63 bytes.
  Result<void> add_tensor(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                          const void* data, std::size_t size_bytes);
  std::vector<std::uint8_t> to_bytes() const;
  // Writes a temporary file beside `path` (see OutputFile), then renames it over `path`: readers
  // never see half a file, and anything at `path` that is not a regular file is refused.
  Result<void> write_file(const std::string& path) const;

 private:
  struct PendingTensor {
    std::string name;
    DType dtype = DType::f32;
    std::vector<std::int64_t> shape;  // outermost first
    std::vector<std::uint8_t> bytes;
  };
  // Everything before the first tensor's bytes: header, metadata, tensor infos, padding.
  std::vector<std::uint8_t> header_bytes() const;

  std::uint32_t version_ = 3;
  std::uint32_t alignment_ = detail::default_alignment;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::unordered_map<std::string, std::size_t> key_index_;
  std::vector<PendingTensor> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
};

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

inline const char* value_type_name(ValueType type) {
  switch (type) {
    case ValueType::uint8: return "uint8";
    case ValueType::int8: return "int8";
    case ValueType::uint16: return "uint16";
    case ValueType::int16: return "int16";
    case ValueType::uint32: return "uint32";
    case ValueType::int32: return "int32";
    case ValueType::float32: return "float32";
    case ValueType::boolean: return "bool";
    case ValueType::string: return "string";
    case ValueType::array: return "array";
    case ValueType::uint64: return "uint64";
    case ValueType::int64: return "int64";
    case ValueType::float64: return "float64";
  }
  return "unknown";
}

namespace detail {

inline bool is_valid_value_type(std::uint32_t id) { return id <= static_cast<std::uint32_t>(ValueType::float64); }

inline bool is_unsigned_integer_type(ValueType type) {
  return type == ValueType::uint8 || type == ValueType::uint16 || type == ValueType::uint32 ||
         type == ValueType::uint64;
}
inline bool is_signed_integer_type(ValueType type) {
  return type == ValueType::int8 || type == ValueType::int16 || type == ValueType::int32 ||
         type == ValueType::int64;
}

// Bytes of a fixed-size scalar; 0 for string and array, whose size depends on their contents.
inline std::uint64_t fixed_value_bytes(ValueType type) {
  switch (type) {
    case ValueType::uint8: case ValueType::int8: case ValueType::boolean: return 1;
    case ValueType::uint16: case ValueType::int16: return 2;
    case ValueType::uint32: case ValueType::int32: case ValueType::float32: return 4;
    case ValueType::uint64: case ValueType::int64: case ValueType::float64: return 8;
    case ValueType::string: case ValueType::array: return 0;
  }
  return 0;
}

// The fewest bytes one value of `type` can take: bounds an array's count by the bytes left.
inline std::uint64_t smallest_encoding_bytes(ValueType type) {
  if (type == ValueType::string) return 8;  // u64 length, empty
  if (type == ValueType::array) return 12;  // u32 element type, u64 count, no elements
  return fixed_value_bytes(type);
}

inline bool is_power_of_two(std::uint64_t value) { return value != 0 && (value & (value - 1)) == 0; }

inline std::uint64_t align_up(std::uint64_t offset, std::uint64_t alignment) {
  const std::uint64_t remainder = offset % alignment;
  if (remainder == 0) return offset;
  const std::uint64_t padding = alignment - remainder;
  return offset > std::numeric_limits<std::uint64_t>::max() - padding ? std::numeric_limits<std::uint64_t>::max()
                                                                        : offset + padding;
}

// Little-endian loads and stores, written with shifts so they are right on any host; compilers
// turn them into single moves.
inline std::uint16_t load_u16(const std::uint8_t* bytes) {
  return static_cast<std::uint16_t>(bytes[0] | (bytes[1] << 8));
}
inline std::uint32_t load_u32(const std::uint8_t* bytes) {
  return static_cast<std::uint32_t>(bytes[0]) | (static_cast<std::uint32_t>(bytes[1]) << 8) |
         (static_cast<std::uint32_t>(bytes[2]) << 16) | (static_cast<std::uint32_t>(bytes[3]) << 24);
}
inline std::uint64_t load_u64(const std::uint8_t* bytes) {
  return static_cast<std::uint64_t>(load_u32(bytes)) | (static_cast<std::uint64_t>(load_u32(bytes + 4)) << 32);
}
inline void store_u32(std::vector<std::uint8_t>& out, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}
inline void store_u64(std::vector<std::uint8_t>& out, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}
inline void store_string(std::vector<std::uint8_t>& out, const std::string& text) {
  store_u64(out, text.size());
  out.insert(out.end(), text.begin(), text.end());
}

inline std::uint64_t double_bits(double value) {
  std::uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}
inline double double_from_bits(std::uint64_t bits) {
  double value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}
inline float float32_from_bits(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}
inline std::uint32_t float32_bits(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

// A key or name as it appears in messages (lamina::detail::quote_for_message).
inline std::string quoted(const std::string& text) { return lamina::detail::quote_for_message(text); }

// "uint32", "array of string", "array of array of int32" …
inline std::string describe_type(const Value& value) {
  if (value.type != ValueType::array) return value_type_name(value.type);
  if (value.element_type == ValueType::array && !value.elements.empty()) {
    return "array of " + describe_type(value.elements.front());
  }
  return std::string("array of ") + value_type_name(value.element_type);
}

// The value as text for messages about numbers that do not fit.
inline std::string describe_number(const Value& value) {
  if (value.type == ValueType::boolean) return value.unsigned_value != 0 ? "true" : "false";
  if (is_unsigned_integer_type(value.type)) return std::to_string(value.unsigned_value);
  if (is_signed_integer_type(value.type)) return std::to_string(value.signed_value);
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.17g", value.float_value);
  return buffer;
}

// Converts an integer Value to Integer when its type is an integer type and it fits.
template <class Integer>
bool integer_value(const Value& value, Integer& out) {
  using Limits = std::numeric_limits<Integer>;
  if (is_unsigned_integer_type(value.type)) {
    if (value.unsigned_value > static_cast<std::uint64_t>(Limits::max())) return false;
    out = static_cast<Integer>(value.unsigned_value);
    return true;
  }
  if (!is_signed_integer_type(value.type)) return false;
  const std::int64_t number = value.signed_value;
  if (number < 0) {
    if (!Limits::is_signed || number < static_cast<std::int64_t>(Limits::min())) return false;
  } else if (static_cast<std::uint64_t>(number) > static_cast<std::uint64_t>(Limits::max())) {
    return false;
  }
  out = static_cast<Integer>(number);
  return true;
}

// float32/float64 to float; a finite float64 beyond float's range does not fit.
inline bool float_value(const Value& value, float& out) {
  if (value.type != ValueType::float32 && value.type != ValueType::float64) return false;
  const double number = value.float_value;
  const double largest = static_cast<double>(std::numeric_limits<float>::max());
  const double infinity = std::numeric_limits<double>::infinity();
  // Infinities and NaN convert as themselves; comparisons with NaN are false.
  if ((number > largest && number < infinity) || (number < -largest && number > -infinity)) return false;
  out = static_cast<float>(number);
  return true;
}

// Decodes one fixed-size scalar from bytes the caller has checked are there.
inline void decode_scalar(ValueType type, const std::uint8_t* bytes, Value& out) {
  out.type = type;
  switch (type) {
    case ValueType::uint8: out.unsigned_value = bytes[0]; break;
    case ValueType::int8: out.signed_value = static_cast<std::int8_t>(bytes[0]); break;
    case ValueType::uint16: out.unsigned_value = load_u16(bytes); break;
    case ValueType::int16: out.signed_value = static_cast<std::int16_t>(load_u16(bytes)); break;
    case ValueType::uint32: out.unsigned_value = load_u32(bytes); break;
    case ValueType::int32: out.signed_value = static_cast<std::int32_t>(load_u32(bytes)); break;
    case ValueType::uint64: out.unsigned_value = load_u64(bytes); break;
    case ValueType::int64: out.signed_value = static_cast<std::int64_t>(load_u64(bytes)); break;
    case ValueType::float32: out.float_value = static_cast<double>(float32_from_bits(load_u32(bytes))); break;
    case ValueType::float64: out.float_value = double_from_bits(load_u64(bytes)); break;
    case ValueType::boolean: out.unsigned_value = bytes[0] != 0 ? 1 : 0; break;
    case ValueType::string: case ValueType::array: break;
  }
}

// Checks what the Writer needs to write a value that reads back as itself.
inline bool is_writable_value(const Value& value, int depth) {
  if (!is_valid_value_type(static_cast<std::uint32_t>(value.type))) return false;
  if (value.type != ValueType::array) return true;
  if (depth >= max_array_nesting || !is_valid_value_type(static_cast<std::uint32_t>(value.element_type))) return false;
  for (const Value& element : value.elements) {
    if (element.type != value.element_type || !is_writable_value(element, depth + 1)) return false;
  }
  return true;
}

// Appends the encoding of `value` as `type` (the array's element type for elements), reading
// only the member that `type` names, so the bytes are always well formed.
inline void store_value(std::vector<std::uint8_t>& out, ValueType type, const Value& value) {
  switch (type) {
    case ValueType::uint8: case ValueType::boolean:
      out.push_back(static_cast<std::uint8_t>(value.unsigned_value));
      break;
    case ValueType::int8: out.push_back(static_cast<std::uint8_t>(value.signed_value)); break;
    case ValueType::uint16:
    case ValueType::int16: {
      const std::uint64_t bits = type == ValueType::uint16 ? value.unsigned_value : static_cast<std::uint64_t>(value.signed_value);
      out.push_back(static_cast<std::uint8_t>(bits));
      out.push_back(static_cast<std::uint8_t>(bits >> 8));
      break;
    }
    case ValueType::uint32: store_u32(out, static_cast<std::uint32_t>(value.unsigned_value)); break;
    case ValueType::int32: store_u32(out, static_cast<std::uint32_t>(value.signed_value)); break;
    case ValueType::uint64: store_u64(out, value.unsigned_value); break;
    case ValueType::int64: store_u64(out, static_cast<std::uint64_t>(value.signed_value)); break;
    case ValueType::float32: store_u32(out, float32_bits(static_cast<float>(value.float_value))); break;
    case ValueType::float64: store_u64(out, double_bits(value.float_value)); break;
    case ValueType::string: store_string(out, value.string_value); break;
    case ValueType::array:
      store_u32(out, static_cast<std::uint32_t>(value.element_type));
      store_u64(out, value.elements.size());
      for (const Value& element : value.elements) store_value(out, value.element_type, element);
      break;
  }
}

// Checks a tensor's GGUF dims (innermost first) and type, and computes its size in bytes.
// On failure returns false and says why in `problem`.
inline bool tensor_size(const std::uint64_t* dims, std::size_t dim_count, DType dtype, std::uint64_t& size_bytes,
                        std::string& problem) {
  std::uint64_t element_count = 1;
  for (std::size_t d = 0; d < dim_count; ++d) {
    const std::uint64_t extent = dims[d];
    if (extent == 0) {
      problem = "dimension " + std::to_string(d) + " (innermost first) is 0";
      return false;
    }
    if (extent > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      problem = "dimension " + std::to_string(d) + " (innermost first) is " + std::to_string(extent) +
                ", larger than a signed 64-bit integer";
      return false;
    }
    if (element_count > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / extent) {
      problem = "the element count overflows a signed 64-bit integer at dimension " + std::to_string(d) +
                " (innermost first)";
      return false;
    }
    element_count *= extent;
  }
  const DTypeTraits& traits = dtype_traits(dtype);
  if (dims[0] % traits.block_size != 0) {
    problem = "row length " + std::to_string(dims[0]) + " is not a multiple of the " + traits.name +
              " block size " + std::to_string(traits.block_size);
    return false;
  }
  const std::uint64_t block_count = element_count / traits.block_size;
  if (block_count > std::numeric_limits<std::uint64_t>::max() / traits.block_bytes) {
    problem = "the size in bytes overflows a 64-bit integer";
    return false;
  }
  size_bytes = block_count * traits.block_bytes;
  return true;
}

// Reads one GGUF image. Every read goes through need(), which checks the bytes left; counts
// are bounded by the bytes left before anything is allocated for them.
class Parser {
 public:
  Parser(const std::uint8_t* data, std::size_t size, const std::string& name) : data_(data), size_(size), name_(name) {}

  Result<File> run(std::shared_ptr<const MappedFile> mapping) {
    auto contents = std::make_shared<FileContents>();
    contents_ = contents.get();
    contents_->mapping = std::move(mapping);
    contents_->name = name_;
    if (!read_header() || !read_metadata() || !read_alignment() || !read_tensor_infos() || !place_tensors()) {
      return std::move(error_);
    }
    File file;
    file.contents_ = std::move(contents);
    return file;
  }

 private:
  static constexpr std::size_t no_offset = static_cast<std::size_t>(-1);
  static constexpr std::uint64_t min_metadata_entry_bytes = 8 + 1 + 4 + 1;     // key length, 1-byte key, type, uint8
  static constexpr std::uint64_t min_tensor_info_bytes = 8 + 1 + 4 + 8 + 4 + 8;  // name length, 1-byte name, n_dims, one dim, type, offset

  std::size_t remaining() const { return size_ - position_; }

  // Records "<file>: <context> at byte <offset>: <what>" and returns false for chaining.
  bool fail(ErrorCode code, std::size_t offset, const std::string& what) {
    std::string message = name_ + ": " + context_;
    if (offset != no_offset) message += " at byte " + std::to_string(offset);
    message += ": " + what;
    error_ = Error{code, std::move(message)};
    return false;
  }

  // `what` + `suffix` name the field: "the version", "key" + " length" …
  bool need(std::uint64_t bytes, const char* what, const char* suffix = "") {
    if (bytes <= remaining()) return true;
    return fail(ErrorCode::invalid_format, position_,
                std::string("truncated file: ") + what + suffix + " needs " + std::to_string(bytes) + " bytes, only " +
                    std::to_string(remaining()) + " left");
  }

  bool read_u32(std::uint32_t& out, const char* what) {
    if (!need(4, what)) return false;
    out = load_u32(data_ + position_);
    position_ += 4;
    return true;
  }

  bool read_u64(std::uint64_t& out, const char* what) {
    if (!need(8, what)) return false;
    out = load_u64(data_ + position_);
    position_ += 8;
    return true;
  }

  // `what` names the string: "key", "tensor name", "string value" …
  bool read_string(std::string& out, const char* what) {
    const std::size_t start = position_;
    if (!need(8, what, " length")) return false;
    const std::uint64_t length = load_u64(data_ + position_);
    position_ += 8;
    if (length > remaining()) {
      return fail(ErrorCode::invalid_format, start,
                  std::string(what) + " length " + std::to_string(length) + " runs past the end of the file (" +
                      std::to_string(remaining()) + " bytes left)");
    }
    out.assign(reinterpret_cast<const char*>(data_ + position_), static_cast<std::size_t>(length));
    position_ += static_cast<std::size_t>(length);
    return true;
  }

  // Every value costs memory (a Value is ~100 bytes), so the whole file gets a budget.
  bool take_values(std::uint64_t count, std::size_t offset) {
    if (count <= values_left_) {
      values_left_ -= count;
      return true;
    }
    return fail(ErrorCode::unsupported, offset,
                "the metadata holds more than " + std::to_string(max_metadata_values) +
                    " values (arrays included), more than lamina accepts");
  }

  bool read_header() {
    context_ = "header";
    if (!need(4, "the magic \"GGUF\"")) return false;
    if (std::memcmp(data_, "GGUF", 4) != 0) {
      char found[32];
      std::snprintf(found, sizeof found, "%02x %02x %02x %02x", data_[0], data_[1], data_[2], data_[3]);
      return fail(ErrorCode::invalid_format, 0,
                  std::string("bad magic ") + found + ", expected \"GGUF\" (47 47 55 46): not a GGUF file");
    }
    position_ = 4;
    std::uint32_t version = 0;
    if (!read_u32(version, "the version")) return false;
    if (version != 2 && version != 3) {
      const std::uint32_t swapped = (version >> 24) | ((version >> 8) & 0xff00u) | ((version << 8) & 0xff0000u) | (version << 24);
      if (version == 1) {
        return fail(ErrorCode::unsupported, 4,
                    "GGUF version 1 is not supported (lamina reads versions 2 and 3; re-convert the model with a "
                    "current llama.cpp)");
      }
      if (swapped >= 1 && swapped <= 3) {
        return fail(ErrorCode::unsupported, 4,
                    "big-endian GGUF (version " + std::to_string(swapped) + " byte-swapped) is not supported");
      }
      return fail(ErrorCode::unsupported, 4,
                  "unknown GGUF version " + std::to_string(version) + " (lamina reads versions 2 and 3)");
    }
    contents_->version = version;

    std::uint64_t tensor_count = 0;
    std::uint64_t metadata_count = 0;
    const std::size_t tensor_count_offset = position_;
    if (!read_u64(tensor_count, "the tensor count")) return false;
    const std::size_t metadata_count_offset = position_;
    if (!read_u64(metadata_count, "the metadata entry count")) return false;
    // Each entry takes at least a few bytes, so a count larger than the rest of the file can
    // hold is a lie; refuse it before reserving anything.
    if (tensor_count > remaining() / min_tensor_info_bytes) {
      return fail(ErrorCode::invalid_format, tensor_count_offset,
                  "tensor count " + std::to_string(tensor_count) + " cannot fit in the " + std::to_string(remaining()) +
                      " bytes left (at most " + std::to_string(remaining() / min_tensor_info_bytes) +
                      " tensor infos): truncated or corrupt file");
    }
    if (metadata_count > remaining() / min_metadata_entry_bytes) {
      return fail(ErrorCode::invalid_format, metadata_count_offset,
                  "metadata entry count " + std::to_string(metadata_count) + " cannot fit in the " +
                      std::to_string(remaining()) + " bytes left (at most " +
                      std::to_string(remaining() / min_metadata_entry_bytes) + " entries): truncated or corrupt file");
    }
    if (tensor_count * min_tensor_info_bytes + metadata_count * min_metadata_entry_bytes > remaining()) {
      return fail(ErrorCode::invalid_format, tensor_count_offset,
                  std::to_string(metadata_count) + " metadata entries and " + std::to_string(tensor_count) +
                      " tensor infos cannot fit in the " + std::to_string(remaining()) +
                      " bytes left: truncated or corrupt file");
    }
    if (tensor_count > max_tensor_count) {
      return fail(ErrorCode::unsupported, tensor_count_offset,
                  "tensor count " + std::to_string(tensor_count) + " is more than lamina accepts (" +
                      std::to_string(max_tensor_count) + ")");
    }
    tensor_count_ = tensor_count;
    metadata_count_ = metadata_count;
    return true;
  }

  bool read_metadata() {
    std::vector<std::pair<std::string, Value>>& metadata = contents_->metadata;
    std::unordered_map<std::string, std::size_t>& key_index = contents_->key_index;
    metadata.reserve(static_cast<std::size_t>(metadata_count_));
    key_index.reserve(static_cast<std::size_t>(metadata_count_));
    for (std::uint64_t i = 0; i < metadata_count_; ++i) {
      context_ = "metadata entry " + std::to_string(i) + " of " + std::to_string(metadata_count_);
      const std::size_t entry_offset = position_;
      std::string key;
      if (!read_string(key, "key")) return false;
      if (key.empty()) return fail(ErrorCode::invalid_format, entry_offset, "empty key");
      context_ = "key " + detail::quoted(key);
      const auto inserted = key_index.emplace(key, metadata.size());
      if (!inserted.second) {
        return fail(ErrorCode::invalid_format, entry_offset,
                    "duplicate key (first defined by metadata entry " + std::to_string(inserted.first->second) + ")");
      }
      const std::size_t type_offset = position_;
      std::uint32_t type_id = 0;
      if (!read_u32(type_id, "the value type")) return false;
      if (!is_valid_value_type(type_id)) {
        return fail(ErrorCode::invalid_format, type_offset, "unknown value type " + std::to_string(type_id));
      }
      if (!take_values(1, type_offset)) return false;
      Value value;
      if (!read_value(static_cast<ValueType>(type_id), value, 0)) return false;
      metadata.emplace_back(std::move(key), std::move(value));
    }
    return true;
  }

  // `depth`: how many arrays enclose this value.
  bool read_value(ValueType type, Value& out, int depth) {
    out.type = type;
    if (type == ValueType::string) return read_string(out.string_value, "string value");
    if (type == ValueType::array) return read_array(out, depth + 1);
    if (!need(fixed_value_bytes(type), "the value")) return false;
    decode_scalar(type, data_ + position_, out);
    position_ += static_cast<std::size_t>(fixed_value_bytes(type));
    return true;
  }

  bool read_array(Value& out, int depth) {
    const std::size_t start = position_;
    if (depth > max_array_nesting) {
      return fail(ErrorCode::invalid_format, start,
                  "arrays nested more than " + std::to_string(max_array_nesting) + " deep");
    }
    std::uint32_t element_id = 0;
    if (!read_u32(element_id, "the array element type")) return false;
    if (!is_valid_value_type(element_id)) {
      return fail(ErrorCode::invalid_format, start, "unknown array element type " + std::to_string(element_id));
    }
    const ValueType element_type = static_cast<ValueType>(element_id);
    std::uint64_t count = 0;
    if (!read_u64(count, "the array length")) return false;
    const std::uint64_t smallest = smallest_encoding_bytes(element_type);
    if (count > remaining() / smallest) {
      return fail(ErrorCode::invalid_format, start,
                  "array of " + std::to_string(count) + " " + value_type_name(element_type) +
                      " elements runs past the end of the file (each needs at least " + std::to_string(smallest) +
                      " bytes, " + std::to_string(remaining()) + " bytes left)");
    }
    if (!take_values(count, start)) return false;
    out.element_type = element_type;
    out.elements.resize(static_cast<std::size_t>(count));
    const std::uint64_t fixed = fixed_value_bytes(element_type);
    if (fixed != 0) {
      // Scalars: the bound above already guarantees count * fixed bytes are there.
      for (Value& element : out.elements) {
        decode_scalar(element_type, data_ + position_, element);
        position_ += static_cast<std::size_t>(fixed);
      }
    } else if (element_type == ValueType::string) {
      for (Value& element : out.elements) {
        element.type = ValueType::string;
        if (!read_string(element.string_value, "array element string")) return false;
      }
    } else {
      for (Value& element : out.elements) {
        element.type = ValueType::array;
        if (!read_array(element, depth + 1)) return false;
      }
    }
    return true;
  }

  bool read_alignment() {
    const auto found = contents_->key_index.find("general.alignment");
    if (found == contents_->key_index.end()) return true;
    context_ = "key 'general.alignment'";
    const Value& value = contents_->metadata[found->second].second;
    if (value.type != ValueType::uint32) {
      return fail(ErrorCode::invalid_format, no_offset, "must be a uint32, found " + describe_type(value));
    }
    if (!is_power_of_two(value.unsigned_value)) {
      return fail(ErrorCode::invalid_format, no_offset,
                  "alignment " + std::to_string(value.unsigned_value) + " is not a nonzero power of two");
    }
    contents_->alignment = static_cast<std::uint32_t>(value.unsigned_value);
    return true;
  }

  bool read_tensor_infos() {
    std::vector<TensorInfo>& tensors = contents_->tensors;
    std::unordered_map<std::string, std::size_t>& tensor_index = contents_->tensor_index;
    context_ = "tensor infos";
    // Bound again now that the metadata is read: what is left must hold every tensor info.
    if (tensor_count_ > remaining() / min_tensor_info_bytes) {
      return fail(ErrorCode::invalid_format, position_,
                  "tensor count " + std::to_string(tensor_count_) + " cannot fit in the " + std::to_string(remaining()) +
                      " bytes left after the metadata (at most " + std::to_string(remaining() / min_tensor_info_bytes) +
                      " tensor infos): truncated or corrupt file");
    }
    tensors.reserve(static_cast<std::size_t>(tensor_count_));
    tensor_index.reserve(static_cast<std::size_t>(tensor_count_));
    for (std::uint64_t i = 0; i < tensor_count_; ++i) {
      context_ = "tensor info " + std::to_string(i) + " of " + std::to_string(tensor_count_);
      const std::size_t info_offset = position_;
      TensorInfo info;
      if (!read_string(info.name, "tensor name")) return false;
      if (info.name.empty()) return fail(ErrorCode::invalid_format, info_offset, "empty tensor name");
      context_ = "tensor " + detail::quoted(info.name);
      const auto inserted = tensor_index.emplace(info.name, tensors.size());
      if (!inserted.second) {
        return fail(ErrorCode::invalid_format, info_offset,
                    "duplicate tensor name (first defined by tensor info " + std::to_string(inserted.first->second) + ")");
      }

      const std::size_t dims_offset = position_;
      std::uint32_t dim_count = 0;
      if (!read_u32(dim_count, "the dimension count")) return false;
      if (dim_count == 0 || dim_count > static_cast<std::uint32_t>(max_tensor_rank)) {
        return fail(ErrorCode::invalid_format, dims_offset,
                    "dimension count " + std::to_string(dim_count) + " is not between 1 and " +
                        std::to_string(max_tensor_rank));
      }
      std::uint64_t dims[max_tensor_rank] = {};  // innermost first, as stored
      for (std::uint32_t d = 0; d < dim_count; ++d) {
        if (!read_u64(dims[d], "a dimension")) return false;
      }
      const std::size_t type_offset = position_;
      std::uint32_t type_id = 0;
      if (!read_u32(type_id, "the tensor type")) return false;
      if (!is_known_dtype(type_id)) {
        return fail(ErrorCode::unsupported, type_offset, "unknown tensor type id " + std::to_string(type_id));
      }
      info.dtype = static_cast<DType>(type_id);
      std::string problem;
      if (!tensor_size(dims, dim_count, info.dtype, info.size_bytes, problem)) {
        return fail(ErrorCode::invalid_format, dims_offset, problem);
      }
      info.shape.resize(dim_count);
      for (std::uint32_t d = 0; d < dim_count; ++d) info.shape[dim_count - 1 - d] = static_cast<std::int64_t>(dims[d]);

      const std::size_t data_offset_position = position_;
      if (!read_u64(info.offset, "the data offset")) return false;
      if (info.offset % contents_->alignment != 0) {
        return fail(ErrorCode::invalid_format, data_offset_position,
                    "data offset " + std::to_string(info.offset) + " is not a multiple of the alignment " +
                        std::to_string(contents_->alignment));
      }
      tensors.push_back(std::move(info));
    }
    return true;
  }

  // Finds the data section, points every tensor into it, and checks that tensors stay inside
  // the file and do not overlap.
  bool place_tensors() {
    const std::uint64_t data_offset = align_up(position_, contents_->alignment);
    contents_->data_offset = data_offset;
    // A file without tensors may end right after its header, without padding.
    const std::uint64_t data_size = data_offset < size_ ? size_ - data_offset : 0;
    std::vector<TensorInfo>& tensors = contents_->tensors;
    for (TensorInfo& tensor : tensors) {
      if (tensor.offset > data_size || tensor.size_bytes > data_size - tensor.offset) {
        context_ = "tensor " + detail::quoted(tensor.name);
        return fail(ErrorCode::invalid_format, no_offset,
                    "data (offset " + std::to_string(tensor.offset) + ", " + std::to_string(tensor.size_bytes) +
                        " bytes) runs past the end of the file (the data section at byte " +
                        std::to_string(data_offset) + " holds " + std::to_string(data_size) + " bytes)");
      }
      tensor.data = data_ + data_offset + tensor.offset;
    }
    std::vector<std::size_t> by_offset(tensors.size());
    for (std::size_t i = 0; i < by_offset.size(); ++i) by_offset[i] = i;
    std::sort(by_offset.begin(), by_offset.end(), [&](std::size_t a, std::size_t b) {
      return tensors[a].offset != tensors[b].offset ? tensors[a].offset < tensors[b].offset : a < b;
    });
    for (std::size_t i = 1; i < by_offset.size(); ++i) {
      const TensorInfo& previous = tensors[by_offset[i - 1]];
      const TensorInfo& current = tensors[by_offset[i]];
      if (previous.offset + previous.size_bytes > current.offset) {  // both inside data_size: no overflow
        context_ = "tensor " + detail::quoted(current.name);
        return fail(ErrorCode::invalid_format, no_offset,
                    "data (bytes " + std::to_string(current.offset) + " to " +
                        std::to_string(current.offset + current.size_bytes) + " of the data section) overlaps tensor " +
                        detail::quoted(previous.name) + " (bytes " + std::to_string(previous.offset) + " to " +
                        std::to_string(previous.offset + previous.size_bytes) + ")");
      }
    }
    return true;
  }

  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t position_ = 0;
  const std::string& name_;
  std::string context_;  // where we are, for messages: "header", "key 'general.name'", "tensor 'output.weight'"
  Error error_;
  FileContents* contents_ = nullptr;
  std::uint64_t tensor_count_ = 0;
  std::uint64_t metadata_count_ = 0;
  std::uint64_t values_left_ = max_metadata_values;
};

}  // namespace detail

// --- Value ---

inline Value Value::from_u8(std::uint8_t number) { Value v; v.type = ValueType::uint8; v.unsigned_value = number; return v; }
inline Value Value::from_i8(std::int8_t number) { Value v; v.type = ValueType::int8; v.signed_value = number; return v; }
inline Value Value::from_u16(std::uint16_t number) { Value v; v.type = ValueType::uint16; v.unsigned_value = number; return v; }
inline Value Value::from_i16(std::int16_t number) { Value v; v.type = ValueType::int16; v.signed_value = number; return v; }
inline Value Value::from_u32(std::uint32_t number) { Value v; v.type = ValueType::uint32; v.unsigned_value = number; return v; }
inline Value Value::from_i32(std::int32_t number) { Value v; v.type = ValueType::int32; v.signed_value = number; return v; }
inline Value Value::from_u64(std::uint64_t number) { Value v; v.type = ValueType::uint64; v.unsigned_value = number; return v; }
inline Value Value::from_i64(std::int64_t number) { Value v; v.type = ValueType::int64; v.signed_value = number; return v; }
inline Value Value::from_f32(float number) { Value v; v.type = ValueType::float32; v.float_value = static_cast<double>(number); return v; }
inline Value Value::from_f64(double number) { Value v; v.type = ValueType::float64; v.float_value = number; return v; }
inline Value Value::from_bool(bool flag) { Value v; v.type = ValueType::boolean; v.unsigned_value = flag ? 1 : 0; return v; }
inline Value Value::from_string(std::string text) {
  Value v;
  v.type = ValueType::string;
  v.string_value = std::move(text);
  return v;
}
inline Value Value::from_array(ValueType element_type, std::vector<Value> elements) {
  Value v;
  v.type = ValueType::array;
  v.element_type = element_type;
  v.elements = std::move(elements);
  return v;
}
inline Value Value::from_strings(const std::vector<std::string>& texts) {
  std::vector<Value> elements;
  elements.reserve(texts.size());
  for (const std::string& text : texts) elements.push_back(from_string(text));
  return from_array(ValueType::string, std::move(elements));
}
inline Value Value::from_f32s(const std::vector<float>& numbers) {
  std::vector<Value> elements;
  elements.reserve(numbers.size());
  for (float number : numbers) elements.push_back(from_f32(number));
  return from_array(ValueType::float32, std::move(elements));
}
inline Value Value::from_i32s(const std::vector<std::int32_t>& numbers) {
  std::vector<Value> elements;
  elements.reserve(numbers.size());
  for (std::int32_t number : numbers) elements.push_back(from_i32(number));
  return from_array(ValueType::int32, std::move(elements));
}

inline bool operator==(const Value& left, const Value& right) {
  if (left.type != right.type) return false;
  switch (left.type) {
    case ValueType::uint8: case ValueType::uint16: case ValueType::uint32: case ValueType::uint64:
    case ValueType::boolean:
      return left.unsigned_value == right.unsigned_value;
    case ValueType::int8: case ValueType::int16: case ValueType::int32: case ValueType::int64:
      return left.signed_value == right.signed_value;
    case ValueType::float32: case ValueType::float64:
      return detail::double_bits(left.float_value) == detail::double_bits(right.float_value);
    case ValueType::string: return left.string_value == right.string_value;
    case ValueType::array: return left.element_type == right.element_type && left.elements == right.elements;
  }
  return false;
}
inline bool operator!=(const Value& left, const Value& right) { return !(left == right); }

// --- TensorInfo ---

inline TensorView TensorInfo::view() const {
  TensorView view;
  LAMINA_ASSERT(shape.size() <= static_cast<std::size_t>(max_tensor_rank), "gguf::TensorInfo::view: rank above 4");
  if (shape.size() > static_cast<std::size_t>(max_tensor_rank)) return view;  // empty view when asserts are off
  view.dtype = dtype;
  view.data = data;
  view.rank = static_cast<int>(shape.size());
  for (std::size_t d = 0; d < shape.size(); ++d) view.shape[d] = shape[d];
  if (view.rank == 0) return view;
  // Same layout as contiguous_view(): the innermost stride is one block, each outer stride the
  // bytes of everything inside it.
  const std::size_t innermost = shape.size() - 1;
  view.stride[innermost] = static_cast<std::int64_t>(dtype_traits(dtype).block_bytes);
  std::int64_t stride = static_cast<std::int64_t>(row_bytes(dtype, static_cast<std::uint64_t>(shape[innermost])));
  for (std::size_t d = innermost; d-- > 0;) {
    view.stride[d] = stride;
    stride *= shape[d];
  }
  return view;
}

// --- File ---

inline Result<File> File::open(const std::string& path) {
  Result<MappedFile> mapped = MappedFile::open(path);
  if (!mapped) return mapped.take_error();
  auto mapping = std::make_shared<const MappedFile>(std::move(*mapped));
  detail::Parser parser(mapping->data(), mapping->size(), path);
  return parser.run(mapping);
}

inline Result<File> File::parse(const std::uint8_t* data, std::size_t size, const std::string& name) {
  if (data == nullptr) size = 0;
  detail::Parser parser(data, size, name);
  return parser.run(nullptr);
}

inline const detail::FileContents& File::contents() const {
  static const detail::FileContents empty{};  // immutable: what a default-constructed File reads as
  return contents_ ? *contents_ : empty;
}

inline std::uint32_t File::version() const { return contents().version; }
inline std::uint32_t File::alignment() const { return contents().alignment; }
inline const std::string& File::name() const { return contents().name; }
inline std::uint64_t File::data_offset() const { return contents().data_offset; }
inline const std::vector<std::pair<std::string, Value>>& File::metadata() const { return contents().metadata; }
inline const std::vector<TensorInfo>& File::tensors() const { return contents().tensors; }

inline const Value* File::find(const std::string& key) const {
  const detail::FileContents& file = contents();
  const auto found = file.key_index.find(key);
  return found == file.key_index.end() ? nullptr : &file.metadata[found->second].second;
}

inline bool File::contains(const std::string& key) const { return find(key) != nullptr; }

inline const TensorInfo* File::find_tensor(const std::string& name) const {
  const detail::FileContents& file = contents();
  const auto found = file.tensor_index.find(name);
  return found == file.tensor_index.end() ? nullptr : &file.tensors[found->second];
}

inline Result<const Value*> File::require(const std::string& key) const {
  const Value* value = find(key);
  if (value == nullptr) return fail(ErrorCode::missing, name() + ": key " + detail::quoted(key) + " not found");
  return value;
}

inline Error File::type_error(const std::string& key, const char* expected, const Value& found) const {
  return fail(ErrorCode::type_mismatch,
              name() + ": key " + detail::quoted(key) + ": expected " + expected + ", found " + detail::describe_type(found));
}

template <class Integer>
Result<Integer> File::get_integer(const std::string& key, const char* type_name) const {
  Result<const Value*> found = require(key);
  if (!found) return found.take_error();
  const Value& value = **found;
  if (!detail::is_unsigned_integer_type(value.type) && !detail::is_signed_integer_type(value.type)) {
    return type_error(key, type_name, value);
  }
  Integer number{};
  if (!detail::integer_value(value, number)) {
    return fail(ErrorCode::type_mismatch, name() + ": key " + detail::quoted(key) + ": " +
                                              value_type_name(value.type) + " value " + detail::describe_number(value) +
                                              " does not fit " + type_name);
  }
  return number;
}

inline Result<std::uint32_t> File::get_u32(const std::string& key) const { return get_integer<std::uint32_t>(key, "uint32"); }
inline Result<std::int32_t> File::get_i32(const std::string& key) const { return get_integer<std::int32_t>(key, "int32"); }
inline Result<std::uint64_t> File::get_u64(const std::string& key) const { return get_integer<std::uint64_t>(key, "uint64"); }

inline Result<float> File::get_f32(const std::string& key) const {
  Result<const Value*> found = require(key);
  if (!found) return found.take_error();
  const Value& value = **found;
  if (value.type != ValueType::float32 && value.type != ValueType::float64) return type_error(key, "float32", value);
  float number = 0;
  if (!detail::float_value(value, number)) {
    return fail(ErrorCode::type_mismatch, name() + ": key " + detail::quoted(key) + ": float64 value " +
                                              detail::describe_number(value) + " does not fit float32");
  }
  return number;
}

inline Result<bool> File::get_bool(const std::string& key) const {
  Result<const Value*> found = require(key);
  if (!found) return found.take_error();
  if ((*found)->type != ValueType::boolean) return type_error(key, "bool", **found);
  return (*found)->unsigned_value != 0;
}

inline Result<std::string> File::get_string(const std::string& key) const {
  Result<const Value*> found = require(key);
  if (!found) return found.take_error();
  if ((*found)->type != ValueType::string) return type_error(key, "string", **found);
  return (*found)->string_value;
}

inline Result<std::vector<std::string>> File::get_string_array(const std::string& key) const {
  Result<const Value*> found = require(key);
  if (!found) return found.take_error();
  const Value& value = **found;
  if (value.type != ValueType::array || value.element_type != ValueType::string) {
    return type_error(key, "array of string", value);
  }
  std::vector<std::string> texts;
  texts.reserve(value.elements.size());
  for (const Value& element : value.elements) texts.push_back(element.string_value);
  return texts;
}

inline Result<std::vector<float>> File::get_f32_array(const std::string& key) const {
  Result<const Value*> found = require(key);
  if (!found) return found.take_error();
  const Value& value = **found;
  if (value.type != ValueType::array ||
      (value.element_type != ValueType::float32 && value.element_type != ValueType::float64)) {
    return type_error(key, "array of float32", value);
  }
  std::vector<float> numbers(value.elements.size());
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    if (!detail::float_value(value.elements[i], numbers[i])) {
      return fail(ErrorCode::type_mismatch, name() + ": key " + detail::quoted(key) + ": element " + std::to_string(i) +
                                                " (float64 " + detail::describe_number(value.elements[i]) +
                                                ") does not fit float32");
    }
  }
  return numbers;
}

inline Result<std::vector<std::int32_t>> File::get_i32_array(const std::string& key) const {
  Result<const Value*> found = require(key);
  if (!found) return found.take_error();
  const Value& value = **found;
  if (value.type != ValueType::array || (!detail::is_unsigned_integer_type(value.element_type) &&
                                         !detail::is_signed_integer_type(value.element_type))) {
    return type_error(key, "array of int32", value);
  }
  std::vector<std::int32_t> numbers(value.elements.size());
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    if (!detail::integer_value(value.elements[i], numbers[i])) {
      return fail(ErrorCode::type_mismatch, name() + ": key " + detail::quoted(key) + ": element " + std::to_string(i) +
                                                " (" + value_type_name(value.element_type) + " " +
                                                detail::describe_number(value.elements[i]) + ") does not fit int32");
    }
  }
  return numbers;
}

inline Result<std::uint32_t> File::get_u32_or(const std::string& key, std::uint32_t fallback) const {
  return contains(key) ? get_u32(key) : Result<std::uint32_t>(fallback);
}
inline Result<float> File::get_f32_or(const std::string& key, float fallback) const {
  return contains(key) ? get_f32(key) : Result<float>(fallback);
}
inline Result<bool> File::get_bool_or(const std::string& key, bool fallback) const {
  return contains(key) ? get_bool(key) : Result<bool>(fallback);
}
inline Result<std::string> File::get_string_or(const std::string& key, const std::string& fallback) const {
  return contains(key) ? get_string(key) : Result<std::string>(fallback);
}

// --- Writer ---

inline Writer::Writer(std::uint32_t version) : version_(version) {
  LAMINA_ASSERT(version == 2 || version == 3, "gguf::Writer: version must be 2 or 3");
}

inline void Writer::set(const std::string& key, Value value) {
  LAMINA_ASSERT(!key.empty(), "gguf::Writer::set: empty key");
  LAMINA_ASSERT(detail::is_writable_value(value, 0),
                "gguf::Writer::set: invalid value (unknown type, array elements of another type than element_type, "
                "or arrays nested more than 8 deep)");
  if (key == "general.alignment") {
    // The reader requires this; keep the layout the writer uses in step with the key.
    LAMINA_ASSERT(value.type == ValueType::uint32 && detail::is_power_of_two(value.unsigned_value),
                  "gguf::Writer::set: general.alignment must be a uint32 power of two");
    if (value.type == ValueType::uint32 && detail::is_power_of_two(value.unsigned_value)) {
      alignment_ = static_cast<std::uint32_t>(value.unsigned_value);
    }
  }
  const auto inserted = key_index_.emplace(key, metadata_.size());
  if (inserted.second) {
    metadata_.emplace_back(key, std::move(value));
  } else {
    metadata_[inserted.first->second].second = std::move(value);
  }
}

inline void Writer::set_alignment(std::uint32_t alignment) {
  LAMINA_ASSERT(detail::is_power_of_two(alignment), "gguf::Writer::set_alignment: alignment must be a power of two");
  if (!detail::is_power_of_two(alignment)) return;
  set("general.alignment", Value::from_u32(alignment));
}

inline Result<void> Writer::add_tensor(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                                       const void* data, std::size_t size_bytes) {
  const auto problem = [&](const std::string& what) {
    return fail(ErrorCode::invalid_argument, "gguf::Writer: tensor " + detail::quoted(name) + ": " + what);
  };
  if (name.empty()) return fail(ErrorCode::invalid_argument, "gguf::Writer: empty tensor name");
  if (name.size() > detail::max_written_tensor_name_bytes) {
    return problem("name is " + std::to_string(name.size()) + " bytes; llama.cpp reads at most " +
                   std::to_string(detail::max_written_tensor_name_bytes));
  }
  if (tensor_index_.count(name) != 0) return problem("a tensor with this name was already added");
  if (!is_known_dtype(static_cast<std::uint32_t>(dtype))) {
    return problem("unknown dtype id " + std::to_string(static_cast<std::uint32_t>(dtype)));
  }
  if (shape.empty() || shape.size() > static_cast<std::size_t>(max_tensor_rank)) {
    return problem("rank " + std::to_string(shape.size()) + " is not between 1 and " + std::to_string(max_tensor_rank));
  }
  std::uint64_t dims[max_tensor_rank] = {};  // innermost first, as GGUF stores them
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] <= 0) {
      return problem("dimension " + std::to_string(d) + " is " + std::to_string(shape[d]) + "; dimensions must be positive");
    }
    dims[shape.size() - 1 - d] = static_cast<std::uint64_t>(shape[d]);
  }
  std::uint64_t expected_bytes = 0;
  std::string why;
  if (!detail::tensor_size(dims, shape.size(), dtype, expected_bytes, why)) return problem(why);
  if (expected_bytes != size_bytes) {
    return problem("size_bytes is " + std::to_string(size_bytes) + ", but the shape needs " +
                   std::to_string(expected_bytes) + " bytes of " + dtype_name(dtype));
  }
  if (data == nullptr) return problem("data is null");
  PendingTensor tensor;
  tensor.name = name;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  const std::uint8_t* bytes = static_cast<const std::uint8_t*>(data);
  tensor.bytes.assign(bytes, bytes + size_bytes);
  tensor_index_.emplace(name, tensors_.size());
  tensors_.push_back(std::move(tensor));
  return success();
}

namespace detail {

// One tensor as the header describes it.
struct HeaderTensor {
  const std::string* name;
  DType dtype;
  const std::vector<std::int64_t>* shape;  // outermost first
  std::uint64_t size_bytes;
};

// What precedes the first tensor: magic, version, counts, metadata, the tensor infos, padding
// to the alignment. Tensors follow each other in the data section, each padded to the
// alignment (as llama.cpp writes them, so its reader finds the padded size it expects). Shared
// by Writer (whole files in memory) and StreamWriter (tensors written as they are made).
inline std::vector<std::uint8_t> header_bytes(std::uint32_t version, std::uint32_t alignment,
                                              const std::vector<std::pair<std::string, Value>>& metadata,
                                              const std::vector<HeaderTensor>& tensors) {
  std::vector<std::uint8_t> out;
  out.reserve(4096);  // grows as needed; reserving also keeps GCC 12's -Wstringop-overflow quiet
  store_u32(out, 0x46554747u);  // "GGUF" read as a little-endian u32
  store_u32(out, version);
  store_u64(out, tensors.size());
  store_u64(out, metadata.size());
  for (const auto& entry : metadata) {
    store_string(out, entry.first);
    store_u32(out, static_cast<std::uint32_t>(entry.second.type));
    store_value(out, entry.second.type, entry.second);
  }
  std::uint64_t offset = 0;
  for (const HeaderTensor& tensor : tensors) {
    store_string(out, *tensor.name);
    store_u32(out, static_cast<std::uint32_t>(tensor.shape->size()));
    for (std::size_t d = tensor.shape->size(); d-- > 0;) store_u64(out, static_cast<std::uint64_t>((*tensor.shape)[d]));
    store_u32(out, static_cast<std::uint32_t>(tensor.dtype));
    store_u64(out, offset);
    offset = align_up(offset + tensor.size_bytes, alignment);
  }
  out.resize(static_cast<std::size_t>(align_up(out.size(), alignment)), 0);
  return out;
}

}  // namespace detail

inline std::vector<std::uint8_t> Writer::header_bytes() const {
  std::vector<detail::HeaderTensor> tensors;
  tensors.reserve(tensors_.size());
  for (const PendingTensor& tensor : tensors_) tensors.push_back({&tensor.name, tensor.dtype, &tensor.shape, tensor.bytes.size()});
  return detail::header_bytes(version_, alignment_, metadata_, tensors);
}

inline std::vector<std::uint8_t> Writer::to_bytes() const {
  std::vector<std::uint8_t> out = header_bytes();
  for (const PendingTensor& tensor : tensors_) {
    out.insert(out.end(), tensor.bytes.begin(), tensor.bytes.end());
    out.resize(static_cast<std::size_t>(detail::align_up(out.size(), alignment_)), 0);
  }
  return out;
}

inline Result<void> Writer::write_file(const std::string& path) const {
  // OutputFile (core/file_io.hpp) writes a temporary beside `path` and renames it over `path`,
  // so a reader (or a crash) never sees half a file and a File that still maps the old `path`
  // keeps its bytes; it refuses a `path` that is a FIFO, device or directory.
  Result<OutputFile> output = OutputFile::create(path);
  if (!output) return output.take_error();
  const std::vector<std::uint8_t> header = header_bytes();
  LAMINA_TRY(output->write(header.data(), header.size()));
  static const std::uint8_t zeros[256] = {};  // padding source, never written to
  std::uint64_t written = header.size();
  for (const PendingTensor& tensor : tensors_) {
    LAMINA_TRY(output->write(tensor.bytes.data(), tensor.bytes.size()));
    written += tensor.bytes.size();
    std::uint64_t padding = detail::align_up(written, alignment_) - written;
    written += padding;
    while (padding > 0) {
      const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(padding, sizeof zeros));
      LAMINA_TRY(output->write(zeros, chunk));
      padding -= chunk;
    }
  }
  return output->commit();
}

}  // namespace gguf
LAMINA_NAMESPACE_END
