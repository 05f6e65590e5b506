// lamina/kernels/cpu/scalar_quant.hpp — the scalar twin of the SIMD integer kernels: quantized
// weights times 8-bit activations, in plain C++ that runs on every processor.
//
// The SIMD tables (kernels/cpu/simd/quant_legacy.inl, quant_k.inl) do not multiply quantized
// weights by float activations. Like GGML they first quantize each activation row to 8 bits
// (Q8_0, Q8_1 or Q8_K blocks), then for every block add up integer products of the weight's
// small integers and the activation's int8 quants, exactly, in int32, and only then bring in
// the float scales. This file computes the same thing one value at a time, so the scalar table
// gives what the SIMD tables give (up to the order of the float additions) and a reader can
// see the arithmetic without the vector plumbing.
//
// Which activation format each weight type takes (the same for every table):
//   Q4_0, Q5_0, Q8_0, IQ4_NL   Q8_0   blocks of 32: F16 scale d_a, 32 int8 quants a_i
//   Q4_1, Q5_1                 Q8_1   blocks of 32: F16 d_a, F16 s = d_a · Σ a_i, 32 int8 a_i
//   Q2_K … Q6_K, IQ4_XS        Q8_K   blocks of 256: F32 d, 256 int8 q_i, 16 int16 S_g = Σ_{i in g} q_i
//   F32, F16, BF16             F32    plain floats (the float path in scalar.hpp)
// (quant/blocks.hpp has every byte layout; activation rows are [in / block values] blocks.)
//
// One block's contribution to y[t][o] = Σ_i weight[o][i] · x[t][i]:
//   32-value types:  w_i = d_w · q_i (+ m_w for Q4_1, Q5_1), activation_i ≈ d_a · a_i
//                    d_w · d_a · Σ_i q_i a_i  (+ m_w · s)
//   256-value types: w_i = D · scale_g · q_i − Dmin · min_g   (g = i / 16, groups of 16 values)
//                    d · (D · Σ_g scale_g · Σ_{i in g} q_i q8_i  −  Dmin · Σ_g min_g · S_g)
// The sums in parentheses are int32 and exact; the rest is float. Blocks are added up in float
// in order, so an output does not depend on how the rows are split between threads.
#pragma once

#include "../../config.hpp"
#include "../../core/dtype.hpp"
#include "../../core/half.hpp"
#include "../../quant/blocks.hpp"
#include "../../quant/iq4.hpp"
#include "../../quant/k_quants.hpp"
#include "../../quant/legacy.hpp"
#include "kernels.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>

LAMINA_NAMESPACE_BEGIN
namespace cpu {
namespace scalar {

// --- which activations each weight type takes ---

// The format the integer kernels of every table take for `weight_type`; f32 for the float
// weight types (and any type without an integer kernel).
inline ActivationFormat integer_activation_format(DType weight_type) {
  switch (weight_type) {
    case DType::q4_0:
    case DType::q5_0:
    case DType::q8_0:
    case DType::iq4_nl: return ActivationFormat::q8_0;
    case DType::q4_1:
    case DType::q5_1: return ActivationFormat::q8_1;
    case DType::q2_k:
    case DType::q3_k:
    case DType::q4_k:
    case DType::q5_k:
    case DType::q6_k:
    case DType::iq4_xs: return ActivationFormat::q8_k;
    default: return ActivationFormat::f32;
  }
}

// --- float activations -> 8-bit blocks ---
//
// GGML's quantize_row_q8_0_ref / _q8_1_ref / _q8_K_ref, which is what the SIMD tables compute
// byte for byte; quant/ holds the reference quantizers:
//   Q8_0, Q8_1: d = max |x_i| / 127, a_i = roundf(x_i / d) (ties away from zero); Q8_1 adds
//               s = F16(d · Σ a_i) with d before its rounding to F16.
//   Q8_K:       the value of largest magnitude maps to -127: inverse = -127 / extreme,
//               q_i = nearest_int(inverse · x_i) (ties to even), d = 1 / inverse.

// One Q8_K block as GGML writes it. quant::quantize_block clamps nearest_int's result into the
// int8 range; GGML casts it, which only differs when `inverse` overflows (|extreme| below
// 127 / FLT_MAX, about 3.7e-37): GGML and the SIMD tables then store all-zero quants, quant::
// stores -128 for every nonzero value. (The scale is 0 either way, so the products agree.)
inline void quantize_block_q8_k(const float* x, quant::BlockQ8_K& block) {
  quant::quantize_block(x, block);
  // block.scale = 1 / inverse is 0 only for an all-zero block or an infinite inverse.
  if (block.scale == 0.0f) {
    std::memset(block.quants, 0, sizeof block.quants);
    std::memset(block.group_sums, 0, sizeof block.group_sums);
  }
}

// `count` floats (a multiple of the format's block size) to `out`, in `format`.
inline void quantize_activations(ActivationFormat format, const float* x, void* out, std::size_t count) {
  switch (format) {
    case ActivationFormat::f32: std::memcpy(out, x, count * sizeof(float)); return;
    case ActivationFormat::q8_0:
      for (std::size_t b = 0; b < count / 32; ++b) {
        quant::BlockQ8_0 block;
        quant::quantize_block(x + 32 * b, block);
        quant::store_block(out, b, block);
      }
      return;
    case ActivationFormat::q8_1:
      for (std::size_t b = 0; b < count / 32; ++b) {
        quant::BlockQ8_1 block;
        quant::quantize_block(x + 32 * b, block);
        quant::store_block(out, b, block);
      }
      return;
    case ActivationFormat::q8_k:
      for (std::size_t b = 0; b < count / 256; ++b) {
        quant::BlockQ8_K block;
        quantize_block_q8_k(x + 256 * b, block);
        quant::store_block(out, b, block);
      }
      return;
  }
}

// --- 32-value weight blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) ---

// One weight block as integers: w_i = scale · q_i + minimum.
struct SmallWeightBlock {
  std::int32_t q[32];  // Q4_0: nibble − 8, Q5_0: 5 bits − 16, Q8_0: the int8, IQ4_NL: the level;
                       // Q4_1, Q5_1: the unsigned nibble / 5 bits
  float scale = 0.0f;    // d_w
  float minimum = 0.0f;  // m_w (Q4_1, Q5_1; 0 for the others)
};

namespace detail {
// Nibble bytes [16] -> codes [32]: byte j holds code j (low nibble) and code j + 16 (high).
inline void split_nibbles(const std::uint8_t* nibbles, std::int32_t* codes) {
  for (int j = 0; j < 16; ++j) {
    codes[j] = nibbles[j] & 0x0f;
    codes[j + 16] = nibbles[j] >> 4;
  }
}

// Q5_0, Q5_1: bit j of the 32-bit mask is bit 4 of code j.
inline void add_fifth_bits(const std::uint8_t* high_bits, std::int32_t* codes) {
  const std::uint32_t mask = quant::detail::load_fifth_bits(high_bits);
  for (int j = 0; j < 32; ++j) codes[j] |= static_cast<std::int32_t>(((mask >> j) & 1u) << 4);
}
}  // namespace detail

// Block `b` of the weight row at `row` (any address).
inline SmallWeightBlock decode_small_block(DType type, const std::uint8_t* row, std::size_t b) {
  SmallWeightBlock w;
  switch (type) {
    case DType::q4_0: {  // [F16 d][16 nibble bytes]
      const quant::BlockQ4_0 block = quant::load_block<quant::BlockQ4_0>(row, b);
      detail::split_nibbles(block.nibbles, w.q);
      for (std::int32_t& q : w.q) q -= 8;
      w.scale = f16_to_f32(block.scale);
      break;
    }
    case DType::q4_1: {  // [F16 d][F16 m][16 nibble bytes]
      const quant::BlockQ4_1 block = quant::load_block<quant::BlockQ4_1>(row, b);
      detail::split_nibbles(block.nibbles, w.q);
      w.scale = f16_to_f32(block.scale);
      w.minimum = f16_to_f32(block.minimum);
      break;
    }
    case DType::q5_0: {  // [F16 d][4 bytes of fifth bits][16 nibble bytes]
      const quant::BlockQ5_0 block = quant::load_block<quant::BlockQ5_0>(row, b);
      detail::split_nibbles(block.nibbles, w.q);
      detail::add_fifth_bits(block.high_bits, w.q);
      for (std::int32_t& q : w.q) q -= 16;
      w.scale = f16_to_f32(block.scale);
      break;
    }
    case DType::q5_1: {  // [F16 d][F16 m][4 bytes of fifth bits][16 nibble bytes]
      const quant::BlockQ5_1 block = quant::load_block<quant::BlockQ5_1>(row, b);
      detail::split_nibbles(block.nibbles, w.q);
      detail::add_fifth_bits(block.high_bits, w.q);
      w.scale = f16_to_f32(block.scale);
      w.minimum = f16_to_f32(block.minimum);
      break;
    }
    case DType::q8_0: {  // [F16 d][32 int8]
      const quant::BlockQ8_0 block = quant::load_block<quant::BlockQ8_0>(row, b);
      for (int j = 0; j < 32; ++j) w.q[j] = block.quants[j];
      w.scale = f16_to_f32(block.scale);
      break;
    }
    case DType::iq4_nl: {  // [F16 d][16 index bytes], each index one of 16 levels
      const quant::BlockIQ4_NL block = quant::load_block<quant::BlockIQ4_NL>(row, b);
      detail::split_nibbles(block.indices, w.q);
      for (std::int32_t& q : w.q) q = quant::iq4_nl_levels[q];
      w.scale = f16_to_f32(block.scale);
      break;
    }
    default: LAMINA_ASSERT(false, "decode_small_block: not a 32-value integer type"); break;
  }
  return w;
}

// One Q8_0 or Q8_1 activation block: activation_i ≈ scale · quants[i].
struct SmallActivationBlock {
  std::int8_t quants[32];
  float scale = 0.0f;       // d_a
  float scaled_sum = 0.0f;  // s = d_a · Σ quants (Q8_1; 0 for Q8_0)
};

// Block `b` of a Q8_0 ([F16 d_a][32 int8], 34 bytes) or Q8_1 ([F16 d_a][F16 s][32 int8], 36
// bytes) activation row.
inline SmallActivationBlock small_activation_block(ActivationFormat format, const std::uint8_t* row, std::size_t b) {
  SmallActivationBlock a;
  if (format == ActivationFormat::q8_1) {
    const quant::BlockQ8_1 block = quant::load_block<quant::BlockQ8_1>(row, b);
    std::memcpy(a.quants, block.quants, 32);
    a.scale = f16_to_f32(block.scale);
    a.scaled_sum = f16_to_f32(block.scaled_sum);
  } else {
    const quant::BlockQ8_0 block = quant::load_block<quant::BlockQ8_0>(row, b);
    std::memcpy(a.quants, block.quants, 32);
    a.scale = f16_to_f32(block.scale);
  }
  return a;
}

// d_w · d_a · Σ_i q_i a_i + m_w · s, the sum in int32 (|Σ| <= 32 · 128 · 128).
inline float small_block_dot(const SmallWeightBlock& w, const SmallActivationBlock& a) {
  std::int32_t sum = 0;
  for (int i = 0; i < 32; ++i) sum += w.q[i] * static_cast<std::int32_t>(a.quants[i]);
  return static_cast<float>(sum) * (w.scale * a.scale) + w.minimum * a.scaled_sum;
}

// --- 256-value weight super-blocks (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) ---

// One super-block as integers: w_i = d · scales[g] · q[i] − dmin · mins[g], g = i / 16.
// Types with 32-value sub-blocks (Q4_K, Q5_K, IQ4_XS) give both groups of a sub-block its scale.
struct SuperWeightBlock {
  std::int32_t q[256];       // Q2_K 0..3, Q4_K 0..15, Q5_K 0..31 (unsigned, with a minimum);
                             // Q3_K −4..3, Q6_K −32..31, IQ4_XS a level −127..113 (signed, no minimum)
  std::int32_t scales[16];   // scale_g: Q2_K 0..15, Q4_K/Q5_K 0..63, Q3_K/IQ4_XS −32..31, Q6_K int8
  std::int32_t mins[16];     // min_g: Q2_K 0..15, Q4_K/Q5_K 0..63, else 0
  float d = 0.0f;            // D, the F16 super-block scale
  float dmin = 0.0f;         // Dmin, the F16 super-block minimum (Q2_K, Q4_K, Q5_K; else 0)
};

namespace detail {
// Q4_K and Q5_K: 8 sub-blocks of 32 values with a 6-bit scale and a 6-bit minimum each (packed
// in 12 bytes, quant::detail::unpack_scale_min_k4). Sub-block k takes the low (k even) or high
// (k odd) nibbles of nibbles[32 · (k / 2) .. + 31]; Q5_K's bit 4 of value 32k + l is bit k of
// high_bits[l] (`high_bits`: nullptr for Q4_K).
template <class Block>
inline void decode_k4_style(const Block& block, const std::uint8_t* high_bits, SuperWeightBlock& w) {
  for (int k = 0; k < 8; ++k) {  // groups 2k and 2k + 1 share the sub-block's scale and minimum
    int scale = 0, minimum = 0;
    quant::detail::unpack_scale_min_k4(k, block.packed_scales, scale, minimum);
    w.scales[2 * k] = w.scales[2 * k + 1] = scale;
    w.mins[2 * k] = w.mins[2 * k + 1] = minimum;
    const std::uint8_t* bytes = block.nibbles + 32 * (k / 2);
    const int shift = 4 * (k % 2);
    for (int l = 0; l < 32; ++l) {
      int code = (bytes[l] >> shift) & 0x0f;
      if (high_bits != nullptr) code |= ((high_bits[l] >> k) & 1) << 4;
      w.q[32 * k + l] = code;
    }
  }
  w.d = f16_to_f32(block.super_scale);
  w.dmin = f16_to_f32(block.super_min);
}
}  // namespace detail

// Super-block `b` of the weight row at `row` (any address). The bit layouts are quant/blocks.hpp's
// (and the loops those of quant::dequantize_block, which gives the same weights in float).
inline SuperWeightBlock decode_super_block(DType type, const std::uint8_t* row, std::size_t b) {
  SuperWeightBlock w;
  for (int g = 0; g < 16; ++g) w.mins[g] = 0;
  switch (type) {
    case DType::q2_k: {  // [16 scale bytes: scale low nibble, min high][64 bytes of 2-bit codes][F16 d][F16 dmin]
      const quant::BlockQ2_K block = quant::load_block<quant::BlockQ2_K>(row, b);
      for (int k = 0; k < 16; ++k) {  // group k: 16 values of one 2-bit field
        w.scales[k] = block.sub_scales[k] & 0x0f;
        w.mins[k] = block.sub_scales[k] >> 4;
        const std::uint8_t* bytes = block.quants + 32 * (k / 8) + 16 * (k % 2);
        const int shift = 2 * ((k % 8) / 2);
        for (int l = 0; l < 16; ++l) w.q[16 * k + l] = (bytes[l] >> shift) & 3;
      }
      w.d = f16_to_f32(block.super_scale);
      w.dmin = f16_to_f32(block.super_min);
      break;
    }
    case DType::q3_k: {  // [32 bytes: bit 2 of the codes][64 bytes: bits 0-1][12 bytes: 16 six-bit scales][F16 d]
      const quant::BlockQ3_K block = quant::load_block<quant::BlockQ3_K>(row, b);
      for (int k = 0; k < 16; ++k) {
        w.scales[k] = quant::detail::q3_k_sub_scale(block.packed_scales, k);
        const std::uint8_t* low_bytes = block.low_bits + 32 * (k / 8) + 16 * (k % 2);
        const std::uint8_t* high_bytes = block.high_bits + 16 * (k % 2);
        const int shift = 2 * ((k % 8) / 2), high_bit = k / 2;
        for (int l = 0; l < 16; ++l) {
          const int code = ((low_bytes[l] >> shift) & 3) | (((high_bytes[l] >> high_bit) & 1) << 2);  // 0..7
          w.q[16 * k + l] = code - 4;
        }
      }
      w.d = f16_to_f32(block.super_scale);
      break;
    }
    case DType::q4_k:  // [F16 d][F16 dmin][12 bytes: 8 six-bit scales and mins][128 nibble bytes]
      detail::decode_k4_style(quant::load_block<quant::BlockQ4_K>(row, b), nullptr, w);
      break;
    case DType::q5_k: {  // [F16 d][F16 dmin][12 bytes][32 bytes: bit 4 of the codes][128 nibble bytes]
      const quant::BlockQ5_K block = quant::load_block<quant::BlockQ5_K>(row, b);
      detail::decode_k4_style(block, block.high_bits, w);
      break;
    }
    case DType::q6_k: {  // [128 bytes: low 4 bits][64 bytes: top 2 bits][16 int8 scales][F16 d]
      const quant::BlockQ6_K block = quant::load_block<quant::BlockQ6_K>(row, b);
      for (int k = 0; k < 16; ++k) {
        const int half = k / 8, part = (k % 8) / 2;  // which 128 values, which 32 of them
        const std::uint8_t* low_bytes = block.low_bits + 64 * half + 32 * (part % 2) + 16 * (k % 2);
        const std::uint8_t* high_bytes = block.high_bits + 32 * half + 16 * (k % 2);
        const int low_shift = part < 2 ? 0 : 4, high_shift = 2 * part;
        w.scales[k] = block.sub_scales[k];
        for (int l = 0; l < 16; ++l) {
          const int code = ((low_bytes[l] >> low_shift) & 0x0f) | (((high_bytes[l] >> high_shift) & 3) << 4);  // 0..63
          w.q[16 * k + l] = code - 32;
        }
      }
      w.d = f16_to_f32(block.super_scale);
      break;
    }
    case DType::iq4_xs: {  // [F16 d][2 bytes: scale bits 4-5][4 bytes: scale bits 0-3][128 index bytes]
      const quant::BlockIQ4_XS block = quant::load_block<quant::BlockIQ4_XS>(row, b);
      for (int k = 0; k < 8; ++k) {  // sub-block k: indices[16k .. 16k + 15], packed like Q4_0's nibbles
        w.scales[2 * k] = w.scales[2 * k + 1] = quant::detail::iq4_xs_sub_scale(block, k);
        for (int j = 0; j < 16; ++j) {
          w.q[32 * k + j] = quant::iq4_nl_levels[block.indices[16 * k + j] & 0x0f];
          w.q[32 * k + 16 + j] = quant::iq4_nl_levels[block.indices[16 * k + j] >> 4];
        }
      }
      w.d = f16_to_f32(block.super_scale);
      break;
    }
    default: LAMINA_ASSERT(false, "decode_super_block: not a 256-value integer type"); break;
  }
  return w;
}

// d · (D · Σ_g scale_g · Σ_{i in g} q_i q8_i − Dmin · Σ_g min_g · S_g), both sums in int32:
// at most 16 · 128 · (16 · 127 · 128) in magnitude (Q6_K, IQ4_XS), below 2^31.
inline float super_block_dot(const SuperWeightBlock& w, const quant::BlockQ8_K& a) {
  std::int32_t scaled_sum = 0, minimum_sum = 0;
  for (int g = 0; g < 16; ++g) {
    std::int32_t group_sum = 0;
    for (int i = 16 * g; i < 16 * g + 16; ++i) group_sum += w.q[i] * static_cast<std::int32_t>(a.quants[i]);
    scaled_sum += w.scales[g] * group_sum;
    minimum_sum += w.mins[g] * static_cast<std::int32_t>(a.group_sums[g]);
  }
  return static_cast<float>(scaled_sum) * (w.d * a.scale) - static_cast<float>(minimum_sum) * (w.dmin * a.scale);
}

// --- the matrix product ---

// y[t][o] for o in [row_begin, row_end), t < task.token_count, on activations in the format
// integer_activation_format(task.weight_type) gave. Each weight block is decoded once and
// meets every token; the outputs hold the running sums (one float chain per output, block by
// block in order).
inline void matmul_rows_integer(const MatmulTask& task, std::size_t row_begin, std::size_t row_end) {
  LAMINA_ASSERT(task.activation_format == integer_activation_format(task.weight_type),
                "scalar matmul: activations in another format than the weight type's");
  const bool super_blocks = task.activation_format == ActivationFormat::q8_k;
  const std::size_t block_values = super_blocks ? 256 : 32;
  LAMINA_ASSERT(task.in % block_values == 0, "scalar matmul: a row of whole blocks");
  const std::size_t block_count = task.in / block_values;
  for (std::size_t o = row_begin; o < row_end; ++o) {
    const std::uint8_t* row = task.weight + o * task.weight_row_stride;
    for (std::size_t t = 0; t < task.token_count; ++t) task.y[t * task.y_row_stride + o] = 0.0f;
    for (std::size_t b = 0; b < block_count; ++b) {
      if (super_blocks) {
        const SuperWeightBlock w = decode_super_block(task.weight_type, row, b);
        for (std::size_t t = 0; t < task.token_count; ++t) {
          const quant::BlockQ8_K a = quant::load_block<quant::BlockQ8_K>(task.activations + t * task.activation_row_stride, b);
          task.y[t * task.y_row_stride + o] += super_block_dot(w, a);
        }
      } else {
        const SmallWeightBlock w = decode_small_block(task.weight_type, row, b);
        for (std::size_t t = 0; t < task.token_count; ++t) {
          const SmallActivationBlock a =
              small_activation_block(task.activation_format, task.activations + t * task.activation_row_stride, b);
          task.y[t * task.y_row_stride + o] += small_block_dot(w, a);
        }
      }
    }
  }
}

}  // namespace scalar
}  // namespace cpu
LAMINA_NAMESPACE_END
