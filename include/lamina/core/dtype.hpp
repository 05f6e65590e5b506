// lamina/core/dtype.hpp — element and block types of tensors, with their sizes and names.
//
// The numeric values are GGML's type ids, as stored in GGUF tensor infos, so a GGUF type
// field converts directly. Quantized types store `block_size` values in `block_bytes` bytes;
// float types are "blocks" of one value.
#pragma once

#include "../config.hpp"

#include <cstddef>
#include <cstdint>

LAMINA_NAMESPACE_BEGIN

enum class DType : std::uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q8_1 = 9,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  q8_k = 15,
  iq2_xxs = 16,
  iq2_xs = 17,
  iq3_xxs = 18,
  iq1_s = 19,
  iq4_nl = 20,
  iq3_s = 21,
  iq2_s = 22,
  iq4_xs = 23,
  i8 = 24,
  i16 = 25,
  i32 = 26,
  i64 = 27,
  f64 = 28,
  iq1_m = 29,
  bf16 = 30,
  tq1_0 = 34,
  tq2_0 = 35,
};

struct DTypeTraits {
  const char* name;       // as llama.cpp prints it: "f32", "q4_K" …
  std::uint32_t block_size;   // values per block (1 for plain types)
  std::uint32_t block_bytes;  // bytes per block
};

namespace detail {
inline const DTypeTraits* dtype_traits_or_null(std::uint32_t id) {
  // Indexed by GGML type id; ids that GGML retired (4, 5, 31..33) have no entry.
  static const DTypeTraits table[] = {
      {"f32", 1, 4},          // 0
      {"f16", 1, 2},          // 1
      {"q4_0", 32, 18},       // 2
      {"q4_1", 32, 20},       // 3
      {nullptr, 0, 0},        // 4 (removed Q4_2)
      {nullptr, 0, 0},        // 5 (removed Q4_3)
      {"q5_0", 32, 22},       // 6
      {"q5_1", 32, 24},       // 7
      {"q8_0", 32, 34},       // 8
      {"q8_1", 32, 36},       // 9
      {"q2_K", 256, 84},      // 10
      {"q3_K", 256, 110},     // 11
      {"q4_K", 256, 144},     // 12
      {"q5_K", 256, 176},     // 13
      {"q6_K", 256, 210},     // 14
      {"q8_K", 256, 292},     // 15
      {"iq2_xxs", 256, 66},   // 16
      {"iq2_xs", 256, 74},    // 17
      {"iq3_xxs", 256, 98},   // 18
      {"iq1_s", 256, 50},     // 19
      {"iq4_nl", 32, 18},     // 20
      {"iq3_s", 256, 110},    // 21
      {"iq2_s", 256, 82},     // 22
      {"iq4_xs", 256, 136},   // 23
      {"i8", 1, 1},           // 24
      {"i16", 1, 2},          // 25
      {"i32", 1, 4},          // 26
      {"i64", 1, 8},          // 27
      {"f64", 1, 8},          // 28
      {"iq1_m", 256, 56},     // 29
      {"bf16", 1, 2},         // 30
      {nullptr, 0, 0},        // 31 (removed Q4_0_4_4)
      {nullptr, 0, 0},        // 32 (removed Q4_0_4_8)
      {nullptr, 0, 0},        // 33 (removed Q4_0_8_8)
      {"tq1_0", 256, 54},     // 34
      {"tq2_0", 256, 66},     // 35
  };
  if (id >= sizeof table / sizeof table[0] || table[id].name == nullptr) return nullptr;
  return &table[id];
}
}  // namespace detail

// True when `id` names a GGML type lamina knows the layout of (it may still not compute with it).
inline bool is_known_dtype(std::uint32_t id) { return detail::dtype_traits_or_null(id) != nullptr; }

// Traits of a known type. Precondition: is_known_dtype(type).
inline const DTypeTraits& dtype_traits(DType type) {
  const DTypeTraits* traits = detail::dtype_traits_or_null(static_cast<std::uint32_t>(type));
  static const DTypeTraits unknown{"unknown", 1, 0};
  return traits ? *traits : unknown;
}

inline const char* dtype_name(DType type) { return dtype_traits(type).name; }
inline bool is_quantized(DType type) { return dtype_traits(type).block_size > 1; }

// Bytes of one row of `row_length` values. Precondition: row_length % block_size == 0.
inline std::uint64_t row_bytes(DType type, std::uint64_t row_length) {
  const DTypeTraits& traits = dtype_traits(type);
  return row_length / traits.block_size * traits.block_bytes;
}

LAMINA_NAMESPACE_END
