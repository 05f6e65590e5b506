// lamina/quant/quant.hpp — scalar reference quantization and dequantization of GGML's block
// types, by lamina::DType at run time or by block struct at compile time.
//
//   // Any supported type, chosen at run time (e.g. a tensor's dtype from a GGUF file):
//   std::vector<float> row(row_length);
//   LAMINA_TRY(lamina::quant::dequantize_row(tensor.dtype, tensor.data, row.data(), row.size()));
//
//   // One block type, chosen at compile time (what kernels templated on the block use):
//   lamina::quant::BlockQ4_K block;
//   lamina::quant::quantize_block(values, block);     // 256 floats in
//   lamina::quant::dequantize_block(block, values);   // 256 floats out
//
// Supported: F32, F16, BF16 (plain conversions) and the block types Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS, both ways. These functions
// are the truth the optimized kernels are tested against: dequantization is bit-exact with
// GGML's, and quantization gives the bytes llama-quantize gives without an importance matrix
// (see legacy.hpp, k_quants.hpp, iq4.hpp for the details and for what NaN/inf input does).
#pragma once

#include "../config.hpp"
#include "../core/dtype.hpp"
#include "../core/half.hpp"
#include "../core/result.hpp"
#include "blocks.hpp"
#include "iq4.hpp"
#include "k_quants.hpp"
#include "legacy.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

LAMINA_NAMESPACE_BEGIN
namespace quant {

// Dequantizes `block_count` packed blocks (any alignment) into block_count * values-per-block floats.
template <class Block>
void dequantize_blocks(const void* blocks, float* values, std::size_t block_count) {
  for (std::size_t i = 0; i < block_count; ++i) {
    dequantize_block(load_block<Block>(blocks, i), values + i * BlockTraits<Block>::values);
  }
}

// Quantizes block_count * values-per-block floats into `block_count` packed blocks (any alignment).
template <class Block>
void quantize_blocks(const float* values, void* blocks, std::size_t block_count) {
  for (std::size_t i = 0; i < block_count; ++i) {
    Block block;
    quantize_block(values + i * BlockTraits<Block>::values, block);
    store_block(blocks, i, block);
  }
}

namespace detail {

template <class Block>
struct BlockTag {
  using type = Block;
};

// Calls visitor(BlockTag<Block>{}) with the block struct of `type` and returns true, or
// returns false when `type` is not one of the quantized types lamina has a reference for.
template <class Visitor>
bool visit_block_type(DType type, Visitor&& visitor) {
  switch (type) {
    case DType::q4_0: visitor(BlockTag<BlockQ4_0>{}); return true;
    case DType::q4_1: visitor(BlockTag<BlockQ4_1>{}); return true;
    case DType::q5_0: visitor(BlockTag<BlockQ5_0>{}); return true;
    case DType::q5_1: visitor(BlockTag<BlockQ5_1>{}); return true;
    case DType::q8_0: visitor(BlockTag<BlockQ8_0>{}); return true;
    case DType::q8_1: visitor(BlockTag<BlockQ8_1>{}); return true;
    case DType::q2_k: visitor(BlockTag<BlockQ2_K>{}); return true;
    case DType::q3_k: visitor(BlockTag<BlockQ3_K>{}); return true;
    case DType::q4_k: visitor(BlockTag<BlockQ4_K>{}); return true;
    case DType::q5_k: visitor(BlockTag<BlockQ5_K>{}); return true;
    case DType::q6_k: visitor(BlockTag<BlockQ6_K>{}); return true;
    case DType::q8_k: visitor(BlockTag<BlockQ8_K>{}); return true;
    case DType::iq4_nl: visitor(BlockTag<BlockIQ4_NL>{}); return true;
    case DType::iq4_xs: visitor(BlockTag<BlockIQ4_XS>{}); return true;
    default: return false;
  }
}

inline bool is_float_type(DType type) { return type == DType::f32 || type == DType::f16 || type == DType::bf16; }

inline bool is_supported(DType type) {
  return is_float_type(type) || visit_block_type(type, [](auto) {});
}

// F32/F16/BF16 -> F32, any alignment.
inline void widen_floats(DType type, const void* source, float* destination, std::size_t count) {
  const unsigned char* bytes = static_cast<const unsigned char*>(source);
  if (type == DType::f32) {
    if (count != 0) std::memcpy(destination, source, count * sizeof(float));
    return;
  }
  for (std::size_t i = 0; i < count; ++i) {
    std::uint16_t bits;
    std::memcpy(&bits, bytes + 2 * i, sizeof bits);
    destination[i] = type == DType::f16 ? f16_to_f32(bits) : bf16_to_f32(bits);
  }
}

// F32 -> F32/F16/BF16 (round to nearest even), any alignment.
inline void narrow_floats(DType type, const float* source, void* destination, std::size_t count) {
  unsigned char* bytes = static_cast<unsigned char*>(destination);
  if (type == DType::f32) {
    if (count != 0) std::memcpy(destination, source, count * sizeof(float));
    return;
  }
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint16_t bits = type == DType::f16 ? f32_to_f16(source[i]) : f32_to_bf16(source[i]);
    std::memcpy(bytes + 2 * i, &bits, sizeof bits);
  }
}

// "q4_K (12)", or "type id 99" for ids lamina does not know.
inline std::string describe_dtype(DType type) {
  const std::uint32_t id = static_cast<std::uint32_t>(type);
  if (!is_known_dtype(id)) return "type id " + std::to_string(id);
  return std::string(dtype_name(type)) + " (" + std::to_string(id) + ")";
}

// The checks both row functions make; `what` is "dequantize" or "quantize".
inline Result<void> check_row_arguments(const char* function, const char* what, DType type, const void* source,
                                        const void* destination, std::size_t count) {
  if (!is_supported(type)) {
    return fail(ErrorCode::unsupported,
                std::string(function) + ": lamina cannot " + what + " " + describe_dtype(type) + " (no scalar reference for this type)");
  }
  const std::size_t block_size = dtype_traits(type).block_size;
  if (count % block_size != 0) {
    return fail(ErrorCode::invalid_argument, std::string(function) + ": " + std::to_string(count) + " values of " +
                                                 describe_dtype(type) + " are not a whole number of blocks of " +
                                                 std::to_string(block_size));
  }
  if (count != 0 && (source == nullptr || destination == nullptr)) {
    return fail(ErrorCode::invalid_argument, std::string(function) + ": null buffer for " + std::to_string(count) + " values");
  }
  return success();
}

}  // namespace detail

// True when dequantize_row / quantize_row handle `type`.
inline bool can_dequantize(DType type) { return detail::is_supported(type); }
inline bool can_quantize(DType type) { return detail::is_supported(type); }

// Decodes `count` values of `type` from `source` (row_bytes(type, count) bytes, any alignment)
// into `destination`. `count` must be a multiple of the type's block size.
// Errors: ErrorCode::unsupported (naming the type) for a type without a reference here,
// ErrorCode::invalid_argument for a partial block or a null buffer.
inline Result<void> dequantize_row(DType type, const void* source, float* destination, std::size_t count) {
  LAMINA_TRY(detail::check_row_arguments("quant::dequantize_row", "dequantize", type, source, destination, count));
  if (detail::is_float_type(type)) {
    detail::widen_floats(type, source, destination, count);
  } else {
    detail::visit_block_type(type, [&](auto tag) {
      using Block = typename decltype(tag)::type;
      dequantize_blocks<Block>(source, destination, count / BlockTraits<Block>::values);
    });
  }
  return success();
}

// Encodes `count` floats as `type` into `destination` (row_bytes(type, count) bytes, any
// alignment), block by block as llama-quantize does without an importance matrix.
// Errors as for dequantize_row.
inline Result<void> quantize_row(DType type, const float* source, void* destination, std::size_t count) {
  LAMINA_TRY(detail::check_row_arguments("quant::quantize_row", "quantize", type, source, destination, count));
  if (detail::is_float_type(type)) {
    detail::narrow_floats(type, source, destination, count);
  } else {
    detail::visit_block_type(type, [&](auto tag) {
      using Block = typename decltype(tag)::type;
      quantize_blocks<Block>(source, destination, count / BlockTraits<Block>::values);
    });
  }
  return success();
}

}  // namespace quant
LAMINA_NAMESPACE_END
