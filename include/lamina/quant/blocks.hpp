// lamina/quant/blocks.hpp — the byte layout of GGML's quantized block types.
//
// A quantized row is a sequence of blocks; each block stores a fixed number of values
// (32 for the "legacy" types and IQ4_NL, 256 for the K-quants and IQ4_XS) in a fixed number
// of bytes. The structs below are exactly those bytes, field by field, in GGML's order, so
// `sizeof(Block)` equals `dtype_traits(dtype).block_bytes`.
//
// Conventions used in every layout comment:
//   - "F16" fields hold the raw bits of an IEEE half; read them with lamina::f16_to_f32.
//   - multi-byte fields are little-endian, as in GGUF files and GGML (like GGML, lamina reads
//     them as native integers, so quantized data needs a little-endian host);
//   - "value i" is the i-th float of the block, 0-based.
//
// Block bytes in a file (a memory mapping) need not be aligned for the struct: the
// functions in this folder copy each block into a local struct (std::memcpy) before reading
// it, which compilers turn into plain loads.
#pragma once

#include "../config.hpp"
#include "../core/dtype.hpp"

#include <cstddef>  // offsetof
#include <cstdint>
#include <cstring>

LAMINA_NAMESPACE_BEGIN
namespace quant {

// Values per block of the legacy types (Q4_0 … Q8_1) and IQ4_NL. GGML: QK4_0, QK8_0 …
inline constexpr std::size_t small_block_values = 32;
// Values per "super-block" of the K-quants and IQ4_XS. GGML: QK_K.
inline constexpr std::size_t super_block_values = 256;

// ---------------------------------------------------------------------------------------------
// Legacy types: 32 values, one scale (and for the _1 types one minimum) per block.

// Q4_0: value i = scale * (q_i - 8), q_i in [0, 15].
struct BlockQ4_0 {
  std::uint16_t scale;       // F16. GGML: d
  std::uint8_t nibbles[16];  // byte j: q_j in the low nibble, q_{j+16} in the high one. GGML: qs
};

// Q4_1: value i = scale * q_i + minimum, q_i in [0, 15].
struct BlockQ4_1 {
  std::uint16_t scale;       // F16. GGML: d
  std::uint16_t minimum;     // F16. GGML: m
  std::uint8_t nibbles[16];  // as in Q4_0. GGML: qs
};

// Q5_0: value i = scale * (q_i - 16), q_i in [0, 31]: 4 low bits in a nibble, the fifth apart.
struct BlockQ5_0 {
  std::uint16_t scale;         // F16. GGML: d
  std::uint8_t high_bits[4];   // bit i (of these 32, little-endian) is bit 4 of q_i. GGML: qh
  std::uint8_t nibbles[16];    // low 4 bits, laid out as in Q4_0. GGML: qs
};

// Q5_1: value i = scale * q_i + minimum, q_i in [0, 31], bits as in Q5_0.
struct BlockQ5_1 {
  std::uint16_t scale;        // F16. GGML: d
  std::uint16_t minimum;      // F16. GGML: m
  std::uint8_t high_bits[4];  // GGML: qh
  std::uint8_t nibbles[16];   // GGML: qs
};

// Q8_0: value i = scale * q_i, q_i in [-127, 127].
struct BlockQ8_0 {
  std::uint16_t scale;       // F16. GGML: d
  std::int8_t quants[32];    // GGML: qs
};

// Q8_1: Q8_0 plus scale * sum(q_i), which dot products with Q4_1/Q5_1 weights need for the
// minimum term. An activation type: GGML quantizes activations to it, never weights.
struct BlockQ8_1 {
  std::uint16_t scale;       // F16. GGML: d
  std::uint16_t scaled_sum;  // F16 of scale * sum of quants. GGML: s
  std::int8_t quants[32];    // GGML: qs
};

// ---------------------------------------------------------------------------------------------
// K-quants: 256 values in sub-blocks of 16 or 32; each sub-block has a small integer scale
// (and for Q2_K/Q4_K/Q5_K a minimum) that the F16 super-block scale(s) multiply.

// Q2_K: 16 sub-blocks of 16. value = super_scale * s_k * q - super_min * m_k, q in [0, 3],
// s_k and m_k 4-bit. Values are stored in two halves of 128; in half h, value h*128 + 32*p + l
// (p = 0..3, l = 0..31) is bits 2p..2p+1 of quants[h*32 + l].
struct BlockQ2_K {
  std::uint8_t sub_scales[16];  // sub-block k: scale s_k in the low nibble, minimum m_k in the high one. GGML: scales
  std::uint8_t quants[64];      // 2-bit quants, packed as described above. GGML: qs
  std::uint16_t super_scale;    // F16. GGML: d
  std::uint16_t super_min;      // F16. GGML: dmin
};

// Q3_K: 16 sub-blocks of 16. value = super_scale * (s_k - 32) * (q - 4), q in [0, 7], s_k 6-bit.
// The 2 low bits of q are packed like Q2_K's quants; bit 2 of value i is bit i/32 of
// high_bits[i % 32].
struct BlockQ3_K {
  std::uint8_t high_bits[32];      // GGML: hmask
  std::uint8_t low_bits[64];       // GGML: qs
  std::uint8_t packed_scales[12];  // 16 x 6 bits: low nibbles in bytes 0..7 (k and k+8 share a byte),
                                   // top 2 bits of s_k in byte 8 + k%4 at bit 2*(k/4). GGML: scales
  std::uint16_t super_scale;       // F16. GGML: d
};

// Q4_K: 8 sub-blocks of 32. value = super_scale * s_k * q - super_min * m_k, q in [0, 15],
// s_k and m_k 6-bit. Values 64c .. 64c+31 are the low nibbles of nibbles[32c .. 32c+31],
// values 64c+32 .. 64c+63 their high nibbles (c = 0..3).
struct BlockQ4_K {
  std::uint16_t super_scale;       // F16. GGML: d
  std::uint16_t super_min;         // F16. GGML: dmin
  std::uint8_t packed_scales[12];  // 8 x (6-bit scale, 6-bit minimum), see detail::unpack_scale_min_k4. GGML: scales
  std::uint8_t nibbles[128];       // GGML: qs
};

// Q5_K: Q4_K with a fifth bit per quant (q in [0, 31]). Bit 4 of value 64c + l is bit 2c of
// high_bits[l], of value 64c + 32 + l bit 2c + 1 (l = 0..31).
struct BlockQ5_K {
  std::uint16_t super_scale;       // F16. GGML: d
  std::uint16_t super_min;         // F16. GGML: dmin
  std::uint8_t packed_scales[12];  // as in Q4_K. GGML: scales
  std::uint8_t high_bits[32];      // GGML: qh
  std::uint8_t nibbles[128];       // low 4 bits, as in Q4_K. GGML: qs
};

// Q6_K: 16 sub-blocks of 16. value = super_scale * s_k * (q - 32), q in [0, 63], s_k int8.
// In half h (128 values), for l = 0..31: values l, l+32, l+64, l+96 take their low 4 bits from
// the low nibble of low_bits[64h + l], low of [64h + 32 + l], high of [64h + l], high of
// [64h + 32 + l], and their top 2 bits from bits 0-1, 2-3, 4-5, 6-7 of high_bits[32h + l].
struct BlockQ6_K {
  std::uint8_t low_bits[128];   // GGML: ql
  std::uint8_t high_bits[64];   // GGML: qh
  std::int8_t sub_scales[16];   // GGML: scales
  std::uint16_t super_scale;    // F16. GGML: d
};

// Q8_K: value i = scale * q_i, q_i in [-127, 127], scale an F32 (not F16). An activation
// type: dot products with K-quant weights use group_sums for the minimum terms.
struct BlockQ8_K {
  float scale;                  // F32. GGML: d
  std::int8_t quants[256];      // GGML: qs
  std::int16_t group_sums[16];  // sum of quants 16k .. 16k+15. GGML: bsums
};

// ---------------------------------------------------------------------------------------------
// Non-linear 4-bit types: each 4-bit index selects one of 16 fixed levels (iq4_nl_levels in
// iq4.hpp), spaced more densely near zero, as weights are.

// IQ4_NL: 32 values. value i = scale * level[index_i]; indices packed like Q4_0's nibbles.
struct BlockIQ4_NL {
  std::uint16_t scale;       // F16. GGML: d
  std::uint8_t indices[16];  // GGML: qs
};

// IQ4_XS: 256 values in 8 sub-blocks of 32. value = super_scale * (s_k - 32) * level[index],
// s_k 6-bit. Sub-block k's indices are indices[16k .. 16k+15], packed like Q4_0's nibbles.
struct BlockIQ4_XS {
  std::uint16_t super_scale;  // F16. GGML: d
  std::uint16_t scales_high;  // top 2 bits of s_k at bit 2k. GGML: scales_h
  std::uint8_t scales_low[4]; // low 4 bits of s_k: byte k/2, low nibble for even k. GGML: scales_l
  std::uint8_t indices[128];  // GGML: qs
};

// The sizes GGML's ggml-common.h asserts; lamina's dtype_traits table says the same (tested).
static_assert(sizeof(BlockQ4_0) == 2 + 16, "Q4_0 block layout");
static_assert(sizeof(BlockQ4_1) == 2 * 2 + 16, "Q4_1 block layout");
static_assert(sizeof(BlockQ5_0) == 2 + 4 + 16, "Q5_0 block layout");
static_assert(sizeof(BlockQ5_1) == 2 * 2 + 4 + 16, "Q5_1 block layout");
static_assert(sizeof(BlockQ8_0) == 2 + 32, "Q8_0 block layout");
static_assert(sizeof(BlockQ8_1) == 2 * 2 + 32, "Q8_1 block layout");
static_assert(sizeof(BlockQ2_K) == 16 + 64 + 2 * 2, "Q2_K block layout");
static_assert(sizeof(BlockQ3_K) == 32 + 64 + 12 + 2, "Q3_K block layout");
static_assert(sizeof(BlockQ4_K) == 2 * 2 + 12 + 128, "Q4_K block layout");
static_assert(sizeof(BlockQ5_K) == 2 * 2 + 12 + 32 + 128, "Q5_K block layout");
static_assert(sizeof(BlockQ6_K) == 128 + 64 + 16 + 2, "Q6_K block layout");
static_assert(sizeof(BlockQ8_K) == 4 + 256 + 16 * 2, "Q8_K block layout");
static_assert(sizeof(BlockIQ4_NL) == 2 + 16, "IQ4_NL block layout");
static_assert(sizeof(BlockIQ4_XS) == 2 + 2 + 4 + 128, "IQ4_XS block layout");

// BlockTraits<Block>::dtype and ::values: which lamina::DType a block struct is, and how many
// values it holds. Kernels templated on the block type read these.
template <class Block>
struct BlockTraits;

namespace detail {
template <DType Type, std::size_t Values>
struct BlockTraitsOf {
  static constexpr DType dtype = Type;
  static constexpr std::size_t values = Values;
};
}  // namespace detail

template <> struct BlockTraits<BlockQ4_0> : detail::BlockTraitsOf<DType::q4_0, small_block_values> {};
template <> struct BlockTraits<BlockQ4_1> : detail::BlockTraitsOf<DType::q4_1, small_block_values> {};
template <> struct BlockTraits<BlockQ5_0> : detail::BlockTraitsOf<DType::q5_0, small_block_values> {};
template <> struct BlockTraits<BlockQ5_1> : detail::BlockTraitsOf<DType::q5_1, small_block_values> {};
template <> struct BlockTraits<BlockQ8_0> : detail::BlockTraitsOf<DType::q8_0, small_block_values> {};
template <> struct BlockTraits<BlockQ8_1> : detail::BlockTraitsOf<DType::q8_1, small_block_values> {};
template <> struct BlockTraits<BlockQ2_K> : detail::BlockTraitsOf<DType::q2_k, super_block_values> {};
template <> struct BlockTraits<BlockQ3_K> : detail::BlockTraitsOf<DType::q3_k, super_block_values> {};
template <> struct BlockTraits<BlockQ4_K> : detail::BlockTraitsOf<DType::q4_k, super_block_values> {};
template <> struct BlockTraits<BlockQ5_K> : detail::BlockTraitsOf<DType::q5_k, super_block_values> {};
template <> struct BlockTraits<BlockQ6_K> : detail::BlockTraitsOf<DType::q6_k, super_block_values> {};
template <> struct BlockTraits<BlockQ8_K> : detail::BlockTraitsOf<DType::q8_k, super_block_values> {};
template <> struct BlockTraits<BlockIQ4_NL> : detail::BlockTraitsOf<DType::iq4_nl, small_block_values> {};
template <> struct BlockTraits<BlockIQ4_XS> : detail::BlockTraitsOf<DType::iq4_xs, super_block_values> {};

namespace detail {

template <class Field>
void copy_field(const unsigned char* block_bytes, std::size_t offset, Field& field) {
  std::memcpy(&field, block_bytes + offset, sizeof field);
}

// Copies one block from bytes field by field. (A single memcpy of the whole struct is just as
// correct, but compilers then store it in 16-byte pieces and read the fields back across
// those pieces, which stalls store forwarding: 3x slower dequantization for Q4_0.)
template <class Block>
void copy_fields(const unsigned char* bytes, Block& block) {
  std::memcpy(&block, bytes, sizeof block);
}
inline void copy_fields(const unsigned char* bytes, BlockQ4_0& block) {
  using Block = BlockQ4_0;
  copy_field(bytes, offsetof(Block, scale), block.scale);
  copy_field(bytes, offsetof(Block, nibbles), block.nibbles);
}
inline void copy_fields(const unsigned char* bytes, BlockQ4_1& block) {
  using Block = BlockQ4_1;
  copy_field(bytes, offsetof(Block, scale), block.scale);
  copy_field(bytes, offsetof(Block, minimum), block.minimum);
  copy_field(bytes, offsetof(Block, nibbles), block.nibbles);
}
inline void copy_fields(const unsigned char* bytes, BlockQ5_0& block) {
  using Block = BlockQ5_0;
  copy_field(bytes, offsetof(Block, scale), block.scale);
  copy_field(bytes, offsetof(Block, high_bits), block.high_bits);
  copy_field(bytes, offsetof(Block, nibbles), block.nibbles);
}
inline void copy_fields(const unsigned char* bytes, BlockQ5_1& block) {
  using Block = BlockQ5_1;
  copy_field(bytes, offsetof(Block, scale), block.scale);
  copy_field(bytes, offsetof(Block, minimum), block.minimum);
  copy_field(bytes, offsetof(Block, high_bits), block.high_bits);
  copy_field(bytes, offsetof(Block, nibbles), block.nibbles);
}
inline void copy_fields(const unsigned char* bytes, BlockQ8_0& block) {
  using Block = BlockQ8_0;
  copy_field(bytes, offsetof(Block, scale), block.scale);
  copy_field(bytes, offsetof(Block, quants), block.quants);
}
inline void copy_fields(const unsigned char* bytes, BlockQ8_1& block) {
  using Block = BlockQ8_1;
  copy_field(bytes, offsetof(Block, scale), block.scale);
  copy_field(bytes, offsetof(Block, scaled_sum), block.scaled_sum);
  copy_field(bytes, offsetof(Block, quants), block.quants);
}
inline void copy_fields(const unsigned char* bytes, BlockQ2_K& block) {
  using Block = BlockQ2_K;
  copy_field(bytes, offsetof(Block, sub_scales), block.sub_scales);
  copy_field(bytes, offsetof(Block, quants), block.quants);
  copy_field(bytes, offsetof(Block, super_scale), block.super_scale);
  copy_field(bytes, offsetof(Block, super_min), block.super_min);
}
inline void copy_fields(const unsigned char* bytes, BlockQ3_K& block) {
  using Block = BlockQ3_K;
  copy_field(bytes, offsetof(Block, high_bits), block.high_bits);
  copy_field(bytes, offsetof(Block, low_bits), block.low_bits);
  copy_field(bytes, offsetof(Block, packed_scales), block.packed_scales);
  copy_field(bytes, offsetof(Block, super_scale), block.super_scale);
}
inline void copy_fields(const unsigned char* bytes, BlockQ4_K& block) {
  using Block = BlockQ4_K;
  copy_field(bytes, offsetof(Block, super_scale), block.super_scale);
  copy_field(bytes, offsetof(Block, super_min), block.super_min);
  copy_field(bytes, offsetof(Block, packed_scales), block.packed_scales);
  copy_field(bytes, offsetof(Block, nibbles), block.nibbles);
}
inline void copy_fields(const unsigned char* bytes, BlockQ5_K& block) {
  using Block = BlockQ5_K;
  copy_field(bytes, offsetof(Block, super_scale), block.super_scale);
  copy_field(bytes, offsetof(Block, super_min), block.super_min);
  copy_field(bytes, offsetof(Block, packed_scales), block.packed_scales);
  copy_field(bytes, offsetof(Block, high_bits), block.high_bits);
  copy_field(bytes, offsetof(Block, nibbles), block.nibbles);
}
inline void copy_fields(const unsigned char* bytes, BlockQ6_K& block) {
  using Block = BlockQ6_K;
  copy_field(bytes, offsetof(Block, low_bits), block.low_bits);
  copy_field(bytes, offsetof(Block, high_bits), block.high_bits);
  copy_field(bytes, offsetof(Block, sub_scales), block.sub_scales);
  copy_field(bytes, offsetof(Block, super_scale), block.super_scale);
}
inline void copy_fields(const unsigned char* bytes, BlockQ8_K& block) {
  using Block = BlockQ8_K;
  copy_field(bytes, offsetof(Block, scale), block.scale);
  copy_field(bytes, offsetof(Block, quants), block.quants);
  copy_field(bytes, offsetof(Block, group_sums), block.group_sums);
}
inline void copy_fields(const unsigned char* bytes, BlockIQ4_NL& block) {
  using Block = BlockIQ4_NL;
  copy_field(bytes, offsetof(Block, scale), block.scale);
  copy_field(bytes, offsetof(Block, indices), block.indices);
}
inline void copy_fields(const unsigned char* bytes, BlockIQ4_XS& block) {
  using Block = BlockIQ4_XS;
  copy_field(bytes, offsetof(Block, super_scale), block.super_scale);
  copy_field(bytes, offsetof(Block, scales_high), block.scales_high);
  copy_field(bytes, offsetof(Block, scales_low), block.scales_low);
  copy_field(bytes, offsetof(Block, indices), block.indices);
}

}  // namespace detail

// Block `index` of a packed array that may sit at any address (e.g. inside a mapped file).
template <class Block>
Block load_block(const void* blocks, std::size_t index) {
  Block block;
  detail::copy_fields(static_cast<const unsigned char*>(blocks) + index * sizeof(Block), block);
  return block;
}

template <class Block>
void store_block(void* blocks, std::size_t index, const Block& block) {
  std::memcpy(static_cast<unsigned char*>(blocks) + index * sizeof(Block), &block, sizeof(Block));
}

}  // namespace quant
LAMINA_NAMESPACE_END
