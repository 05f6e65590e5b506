// lamina/io/gguf_value.hpp — GGUF metadata values (Value) and the encoding the reader and writer share.
//
// A Value is one metadata entry's value: a scalar, a string, or an array of values. Beside it,
// in gguf::detail: the limits lamina keeps a file to, and the pieces of the format that both
// reading (gguf_reader.hpp) and writing (gguf_writer.hpp) need: little-endian loads and stores,
// a value's encoding and decoding, and the size of a tensor from its dims. io/gguf.hpp
// describes the file layout.
#pragma once

#include "../config.hpp"
#include "../core/dtype.hpp"
#include "../core/result.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
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

}  // namespace detail

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

}  // namespace gguf
LAMINA_NAMESPACE_END
