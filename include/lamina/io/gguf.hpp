// lamina/io/gguf.hpp — GGUF files: reading (zero copy, from a memory mapping) and writing.
//
// File layout (GGUF v2/v3, all little-endian):
//   "GGUF" u32 version, u64 tensor_count, u64 metadata_kv_count
//   metadata_kv_count × { string key, u32 value_type, value }
//   tensor_count × { string name, u32 n_dims, u64 dims[n_dims] (innermost first), u32 type, u64 offset }
//   padding to general.alignment (default 32), then the tensor data; each offset is relative
//   to the start of the data section and a multiple of the alignment.
// A string is u64 length + bytes (no terminator); an array is u32 element type, u64 count, elements.
#pragma once

#include "../core/dtype.hpp"
#include "../core/mapped_file.hpp"
#include "../core/result.hpp"
#include "../core/tensor.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace lamina {
namespace gguf {

// INTERFACE CONTRACT — implementation in progress.

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

struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;  // outermost first (GGUF's dims reversed): a weight is [out, in]
  std::uint64_t offset = 0;         // from the start of the data section
  std::uint64_t size_bytes = 0;
  const std::uint8_t* data = nullptr;  // into the mapping

  TensorView view() const;  // contiguous view over `data`
};

class File {
 public:
  // Maps and parses `path`. Errors name the path and what is wrong, with the byte offset.
  static Result<File> open(const std::string& path);
  // Parses bytes that stay owned by the caller (fuzzing, embedded models). `name` is used in errors.
  static Result<File> parse(const std::uint8_t* data, std::size_t size, const std::string& name);

  std::uint32_t version() const;
  std::uint32_t alignment() const;
  const std::string& name() const;  // path or the name given to parse()

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
};

// Builds a GGUF file in memory and writes it.
class Writer {
 public:
  explicit Writer(std::uint32_t version = 3);
  void set(const std::string& key, Value value);  // replaces an existing key, keeps its position
  void set_alignment(std::uint32_t alignment);   // also writes general.alignment
  // `shape` outermost first; `data` must hold row_bytes(dtype, shape.back()) * rows bytes.
  Result<void> add_tensor(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                          const void* data, std::size_t size_bytes);
  std::vector<std::uint8_t> to_bytes() const;
  Result<void> write_file(const std::string& path) const;
};

}  // namespace gguf
}  // namespace lamina
