// lamina/kernels/vulkan/shaders/dequantize.glsl — GGUF weight blocks decoded inside compute
// shaders, with the same values as lamina's scalar reference (quant/legacy.hpp, k_quants.hpp,
// iq4.hpp, core/half.hpp).
//
// The including shader defines WEIGHT_TYPE (a lamina::DType id, e.g. -DWEIGHT_TYPE=2) and
// declares the weights before including this file:
//
//   layout(std430, set = 0, binding = 0) readonly buffer WeightWords { uint weight_words[]; };
//
// weight_words holds the raw little-endian tensor bytes of GGUF; a row may begin at any byte
// (Q4_0 blocks are 18 bytes), so every read takes a byte offset. Only 32-bit loads are used:
// no 8/16-bit storage, shaderFloat16 or int8 features, so this path runs on every Vulkan 1.2
// device.
//
// Provided:
//   read_byte, read_u16, read_u32, read_u32x4, read_f16: loads at any byte offset (always);
//   BLOCK_ELEMENTS, BLOCK_BYTES: the block of WEIGHT_TYPE (1 value of 4 or 2 bytes for the
//     float types);
//   dequantize_group(row_byte_offset, group, values): elements [32 * group, 32 * group + 32)
//     of the row starting at row_byte_offset;
//   weight_element(row_byte_offset, k): element k of that row.
// Without WEIGHT_TYPE only the loads are defined.
//
// Exactness: each value is computed with the reference's operations in the reference's order.
// Every product involved (an F16 scale times integers of at most 8 bits, and that times a
// quant) is exact in float, so a GPU fusing d * q - m into one FMA still gives the reference's
// single rounding; Vulkan rounds float + - * correctly. unpackHalf2x16 is exact for every
// half, subnormals included. (A device that flushes float32 subnormals would differ only for
// values below 2^-126, which no F16 scale times a small integer produces.)
#ifndef LAMINA_VULKAN_DEQUANTIZE_GLSL
#define LAMINA_VULKAN_DEQUANTIZE_GLSL

// lamina::DType ids (GGML type ids) of the types decoded here.
#define DTYPE_F32 0
#define DTYPE_F16 1
#define DTYPE_Q4_0 2
#define DTYPE_Q4_1 3
#define DTYPE_Q5_0 6
#define DTYPE_Q5_1 7
#define DTYPE_Q8_0 8
#define DTYPE_Q2_K 10
#define DTYPE_Q3_K 11
#define DTYPE_Q4_K 12
#define DTYPE_Q5_K 13
#define DTYPE_Q6_K 14
#define DTYPE_IQ4_NL 20
#define DTYPE_IQ4_XS 23
#define DTYPE_BF16 30

// ---------------------------------------------------------------------------------------------
// Byte-addressed loads from weight_words.

// 32 bits starting `shift` bits into `low` and continuing into `high`, shift in [0, 31].
// (high << 1) << (31 - shift) avoids a shift by 32, which GLSL leaves undefined.
uint funnel_shift_right(uint low, uint high, uint shift) {
  return (low >> shift) | ((high << 1u) << (31u - shift));
}

uint read_byte(uint byte_offset) {
  return (weight_words[byte_offset >> 2u] >> ((byte_offset & 3u) * 8u)) & 0xffu;
}

// The following word is loaded only when the value reaches into it, so a read at the very end
// of the buffer stays in bounds; otherwise the same word is loaded again, and the funnel shift
// by 0 ignores it. That keeps the code free of branches on the alignment, which differs
// between neighbouring blocks of 18, 22, 34 ... bytes.
uint read_u16(uint byte_offset) {
  const uint word = byte_offset >> 2u;
  const uint shift = (byte_offset & 3u) * 8u;
  const uint next = word + (shift == 24u ? 1u : 0u);
  return funnel_shift_right(weight_words[word], weight_words[next], shift) & 0xffffu;
}

uint read_u32(uint byte_offset) {
  const uint word = byte_offset >> 2u;
  const uint shift = (byte_offset & 3u) * 8u;
  const uint next = word + (shift == 0u ? 0u : 1u);
  return funnel_shift_right(weight_words[word], weight_words[next], shift);
}

// 16 consecutive bytes as four little-endian words: five loads when unaligned, four when not.
uvec4 read_u32x4(uint byte_offset) {
  const uint word = byte_offset >> 2u;
  const uint shift = (byte_offset & 3u) * 8u;
  const uvec4 low = uvec4(weight_words[word], weight_words[word + 1u], weight_words[word + 2u],
                          weight_words[word + 3u]);
  const uint after = weight_words[word + (shift == 0u ? 3u : 4u)];
  return uvec4(funnel_shift_right(low.x, low.y, shift), funnel_shift_right(low.y, low.z, shift),
               funnel_shift_right(low.z, low.w, shift), funnel_shift_right(low.w, after, shift));
}

float read_f16(uint byte_offset) {
  return unpackHalf2x16(read_u16(byte_offset)).x;
}

// Byte `index` (0..15) of 16 bytes held as four little-endian words.
uint byte_of(uvec4 words, uint index) {
  return (words[index >> 2u] >> ((index & 3u) * 8u)) & 0xffu;
}

// The same byte read as an int8.
int signed_byte_of(uvec4 words, uint index) {
  return bitfieldExtract(int(words[index >> 2u]), int((index & 3u) * 8u), 8);
}

// ---------------------------------------------------------------------------------------------
// Decoding of WEIGHT_TYPE.

#ifdef WEIGHT_TYPE

#if WEIGHT_TYPE == DTYPE_IQ4_NL || WEIGHT_TYPE == DTYPE_IQ4_XS
// The 16 non-linear levels of IQ4_NL and IQ4_XS, ascending (quant/iq4.hpp: iq4_nl_levels).
const int iq4_levels[16] = int[16](-127, -104, -83, -65, -49, -35, -22, -10,
                                   1, 13, 25, 38, 53, 69, 89, 113);
#endif

#if WEIGHT_TYPE == DTYPE_Q4_0 || WEIGHT_TYPE == DTYPE_Q4_1 || WEIGHT_TYPE == DTYPE_Q5_0 || \
    WEIGHT_TYPE == DTYPE_Q5_1 || WEIGHT_TYPE == DTYPE_IQ4_NL || WEIGHT_TYPE == DTYPE_IQ4_XS
// The legacy packing of 32 four-bit codes in 16 bytes: code j is the low nibble of byte j,
// code j + 16 its high nibble.
void unpack_nibbles_32(uint byte_offset, out uint codes[32]) {
  const uvec4 packed = read_u32x4(byte_offset);
  const uvec4 low_nibbles = packed & 0x0f0f0f0fu;
  const uvec4 high_nibbles = (packed >> 4u) & 0x0f0f0f0fu;
  for (uint j = 0u; j < 16u; ++j) {
    codes[j] = byte_of(low_nibbles, j);
    codes[j + 16u] = byte_of(high_nibbles, j);
  }
}
#endif

#if WEIGHT_TYPE == DTYPE_F32
// F32: 4 bytes per element.
#define BLOCK_ELEMENTS 1
#define BLOCK_BYTES 4

void dequantize_group(uint row_byte_offset, uint group, out float values[32]) {
  const uint first = row_byte_offset + group * 128u;
  for (uint part = 0u; part < 8u; ++part) {
    const uvec4 words = read_u32x4(first + 16u * part);
    for (uint i = 0u; i < 4u; ++i) values[4u * part + i] = uintBitsToFloat(words[i]);
  }
}

float weight_element(uint row_byte_offset, uint k) {
  return uintBitsToFloat(read_u32(row_byte_offset + 4u * k));
}

#elif WEIGHT_TYPE == DTYPE_F16
// F16: 2 bytes per element, IEEE half.
#define BLOCK_ELEMENTS 1
#define BLOCK_BYTES 2

void dequantize_group(uint row_byte_offset, uint group, out float values[32]) {
  const uint first = row_byte_offset + group * 64u;
  for (uint part = 0u; part < 4u; ++part) {
    const uvec4 words = read_u32x4(first + 16u * part);
    for (uint i = 0u; i < 4u; ++i) {
      // The lower half of a little-endian word is the earlier element.
      const vec2 pair = unpackHalf2x16(words[i]);
      values[8u * part + 2u * i] = pair.x;
      values[8u * part + 2u * i + 1u] = pair.y;
    }
  }
}

float weight_element(uint row_byte_offset, uint k) {
  return read_f16(row_byte_offset + 2u * k);
}

#elif WEIGHT_TYPE == DTYPE_BF16
// BF16: 2 bytes per element, the upper 16 bits of a float.
#define BLOCK_ELEMENTS 1
#define BLOCK_BYTES 2

void dequantize_group(uint row_byte_offset, uint group, out float values[32]) {
  const uint first = row_byte_offset + group * 64u;
  for (uint part = 0u; part < 4u; ++part) {
    const uvec4 words = read_u32x4(first + 16u * part);
    for (uint i = 0u; i < 4u; ++i) {
      values[8u * part + 2u * i] = uintBitsToFloat(words[i] << 16u);
      values[8u * part + 2u * i + 1u] = uintBitsToFloat(words[i] & 0xffff0000u);
    }
  }
}

float weight_element(uint row_byte_offset, uint k) {
  return uintBitsToFloat(read_u16(row_byte_offset + 2u * k) << 16u);
}

#elif WEIGHT_TYPE == DTYPE_Q4_0
// Q4_0, 18 bytes: f16 d, 16 bytes of 4-bit q (low nibbles are elements 0..15, high 16..31);
// w = (q - 8) * d.
#define BLOCK_ELEMENTS 32
#define BLOCK_BYTES 18

void dequantize_group(uint row_byte_offset, uint group, out float values[32]) {
  const uint block = row_byte_offset + group * 18u;
  const float d = read_f16(block);
  uint codes[32];
  unpack_nibbles_32(block + 2u, codes);
  for (uint i = 0u; i < 32u; ++i) values[i] = float(int(codes[i]) - 8) * d;
}

#elif WEIGHT_TYPE == DTYPE_Q4_1
// Q4_1, 20 bytes: f16 d, f16 m, 16 bytes of 4-bit q packed as in Q4_0; w = q * d + m.
#define BLOCK_ELEMENTS 32
#define BLOCK_BYTES 20

void dequantize_group(uint row_byte_offset, uint group, out float values[32]) {
  const uint block = row_byte_offset + group * 20u;
  const vec2 d_and_m = unpackHalf2x16(read_u32(block));
  uint codes[32];
  unpack_nibbles_32(block + 4u, codes);
  for (uint i = 0u; i < 32u; ++i) values[i] = float(codes[i]) * d_and_m.x + d_and_m.y;
}

#elif WEIGHT_TYPE == DTYPE_Q5_0
// Q5_0, 22 bytes: f16 d, 32-bit mask qh (bit i is bit 4 of q_i), 16 bytes of the low 4 bits
// packed as in Q4_0; w = (q - 16) * d.
#define BLOCK_ELEMENTS 32
#define BLOCK_BYTES 22

void dequantize_group(uint row_byte_offset, uint group, out float values[32]) {
  const uint block = row_byte_offset + group * 22u;
  const float d = read_f16(block);
  const uint fifth_bits = read_u32(block + 2u);
  uint codes[32];
  unpack_nibbles_32(block + 6u, codes);
  for (uint i = 0u; i < 32u; ++i) {
    const int q = int(codes[i] | (((fifth_bits >> i) & 1u) << 4u));
    values[i] = float(q - 16) * d;
  }
}

#elif WEIGHT_TYPE == DTYPE_Q5_1
// Q5_1, 24 bytes: f16 d, f16 m, 32-bit mask qh, 16 bytes of low bits as in Q5_0; w = q * d + m.
#define BLOCK_ELEMENTS 32
#define BLOCK_BYTES 24

void dequantize_group(uint row_byte_offset, uint group, out float values[32]) {
  const uint block = row_byte_offset + group * 24u;
  const vec2 d_and_m = unpackHalf2x16(read_u32(block));
  const uint fifth_bits = read_u32(block + 4u);
  uint codes[32];
  unpack_nibbles_32(block + 8u, codes);
  for (uint i = 0u; i < 32u; ++i) {
    const uint q = codes[i] | (((fifth_bits >> i) & 1u) << 4u);
    values[i] = float(q) * d_and_m.x + d_and_m.y;
  }
}

#elif WEIGHT_TYPE == DTYPE_Q8_0
// Q8_0, 34 bytes: f16 d, 32 int8 q; w = q * d.
#define BLOCK_ELEMENTS 32
#define BLOCK_BYTES 34

void dequantize_group(uint row_byte_offset, uint group, out float values[32]) {
  const uint block = row_byte_offset + group * 34u;
  const float d = read_f16(block);
  for (uint part = 0u; part < 2u; ++part) {
    const uvec4 quants = read_u32x4(block + 2u + 16u * part);
    for (uint i = 0u; i < 16u; ++i) values[16u * part + i] = float(signed_byte_of(quants, i)) * d;
  }
}

#elif WEIGHT_TYPE == DTYPE_Q2_K
// Q2_K, 84 bytes: 16 scale bytes (sub-block k of 16 elements: 4-bit scale low, 4-bit min
// high), 64 bytes of 2-bit q, f16 d, f16 dmin; w = (d * scale) * q - dmin * min. Group s uses
// quant bytes 32 * (s / 4) .. +31 at bits 2 * (s % 4), and sub-blocks 2s (bytes 0..15) and
// 2s + 1 (16..31).
#define BLOCK_ELEMENTS 256
#define BLOCK_BYTES 84

void dequantize_group(uint row_byte_offset, uint group, out float values[32]) {
  const uint block = row_byte_offset + (group / 8u) * 84u;
  const uint sub_range = group % 8u;
  const vec2 d_and_dmin = unpackHalf2x16(read_u32(block + 80u));
  const uint scale_bytes = read_u16(block + 2u * sub_range);
  const uint quant_offset = block + 16u + 32u * (sub_range / 4u);
  const uint shift = 2u * (sub_range % 4u);
  for (uint half_index = 0u; half_index < 2u; ++half_index) {
    const uint scale_byte = (scale_bytes >> (8u * half_index)) & 0xffu;
    const float scale = d_and_dmin.x * float(scale_byte & 0x0fu);
    const float offset = d_and_dmin.y * float(scale_byte >> 4u);
    const uvec4 quants = (read_u32x4(quant_offset + 16u * half_index) >> shift) & 0x03030303u;
    for (uint l = 0u; l < 16u; ++l) values[16u * half_index + l] = scale * float(byte_of(quants, l)) - offset;
  }
}

#elif WEIGHT_TYPE == DTYPE_Q3_K
// Q3_K, 110 bytes: 32 bytes hmask (bit 2 of element i is bit i / 32 of byte i % 32), 64 bytes
// of low 2 bits packed as in Q2_K, 12 bytes of 6-bit scales s (stored + 32), f16 d;
// w = (d * (s - 32)) * q with q = low - (high bit ? 0 : 4).
#define BLOCK_ELEMENTS 256
#define BLOCK_BYTES 110

void dequantize_group(uint row_byte_offset, uint group, out float values[32]) {
  const uint block = row_byte_offset + (group / 8u) * 110u;
  const uint sub_range = group % 8u;
  const float d = read_f16(block + 108u);
  // Sub-blocks k = 2s and 2s + 1 (s = sub_range): the low 4 bits of s_k are the low (k < 8)
  // or high (k >= 8) nibble of scale byte k % 8; its top 2 bits are bits 2 * (k / 4) of byte
  // 8 + k % 4. Both k share those shifts, and their bytes are adjacent.
  const uint low_scale_bytes = read_u16(block + 96u + 2u * (sub_range % 4u)) >> (4u * (sub_range / 4u));
  const uint high_scale_bytes = read_u16(block + 104u + 2u * (sub_range % 2u)) >> (2u * (sub_range / 2u));
  const uint low_offset = block + 32u + 32u * (sub_range / 4u);
  const uint low_shift = 2u * (sub_range % 4u);
  for (uint half_index = 0u; half_index < 2u; ++half_index) {
    const uint byte_shift = 8u * half_index;
    const uint stored_scale = ((low_scale_bytes >> byte_shift) & 0x0fu) | (((high_scale_bytes >> byte_shift) & 3u) << 4u);
    const float scale = d * float(int(stored_scale) - 32);
    const uvec4 low_bits = (read_u32x4(low_offset + 16u * half_index) >> low_shift) & 0x03030303u;
    const uvec4 high_bits = (read_u32x4(block + 16u * half_index) >> sub_range) & 0x01010101u;
    for (uint l = 0u; l < 16u; ++l) {
      const int q = int(byte_of(low_bits, l)) - (byte_of(high_bits, l) != 0u ? 0 : 4);
      values[16u * half_index + l] = scale * float(q);
    }
  }
}

#elif WEIGHT_TYPE == DTYPE_Q4_K || WEIGHT_TYPE == DTYPE_Q5_K
#if WEIGHT_TYPE == DTYPE_Q4_K
// Q4_K, 144 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scale and min per 32-element sub-block,
// 128 bytes of 4-bit q (sub-block k: low (k even) or high (k odd) nibbles of bytes
// 32 * (k / 2) .. +31); w = (d * scale) * q - dmin * min.
#define BLOCK_ELEMENTS 256
#define BLOCK_BYTES 144
#define QUANT_NIBBLES_OFFSET 16u
#else
// Q5_K, 176 bytes: Q4_K's d, dmin and 12 scale bytes, then 32 bytes qh (bit 4 of element l of
// sub-block k is bit k of byte l), then 128 bytes of low 4 bits as in Q4_K.
#define BLOCK_ELEMENTS 256
#define BLOCK_BYTES 176
#define QUANT_NIBBLES_OFFSET 48u
#endif

void dequantize_group(uint row_byte_offset, uint group, out float values[32]) {
  const uint block = row_byte_offset + (group / 8u) * uint(BLOCK_BYTES);
  const uint sub_block = group % 8u;
  const vec2 d_and_dmin = unpackHalf2x16(read_u32(block));
  // The scale and min of sub-block k (quant/k_quants.hpp: unpack_scale_min_k4): bytes 0..3
  // hold the scales of sub-blocks 0..3 and bytes 4..7 their mins in the low 6 bits; sub-blocks
  // 4..7 keep their low 4 bits in bytes 8..11 (scale low, min high) and their top 2 bits in
  // the top bits of bytes k - 4 (scale) and k (min).
  const uint packed = block + 4u;
  uint scale_code;
  uint min_code;
  if (sub_block < 4u) {
    scale_code = read_byte(packed + sub_block) & 63u;
    min_code = read_byte(packed + sub_block + 4u) & 63u;
  } else {
    const uint low_bits = read_byte(packed + sub_block + 4u);
    scale_code = (low_bits & 0x0fu) | ((read_byte(packed + sub_block - 4u) >> 6u) << 4u);
    min_code = (low_bits >> 4u) | ((read_byte(packed + sub_block) >> 6u) << 4u);
  }
  const float scale = d_and_dmin.x * float(scale_code);
  const float offset = d_and_dmin.y * float(min_code);
  const uint nibble_offset = block + QUANT_NIBBLES_OFFSET + 32u * (sub_block / 2u);
  const uint shift = 4u * (sub_block % 2u);
  for (uint half_index = 0u; half_index < 2u; ++half_index) {
    uvec4 quants = (read_u32x4(nibble_offset + 16u * half_index) >> shift) & 0x0f0f0f0fu;
#if WEIGHT_TYPE == DTYPE_Q5_K
    quants |= ((read_u32x4(block + 16u + 16u * half_index) >> sub_block) & 0x01010101u) << 4u;
#endif
    for (uint l = 0u; l < 16u; ++l) values[16u * half_index + l] = scale * float(byte_of(quants, l)) - offset;
  }
}

#undef QUANT_NIBBLES_OFFSET

#elif WEIGHT_TYPE == DTYPE_Q6_K
// Q6_K, 210 bytes: 128 bytes ql (low 4 bits), 64 bytes qh (top 2 bits), 16 int8 scales (one
// per 16 elements), f16 d; w = (d * scale) * (q - 32). Group s, in half h = s / 4 and quarter
// p = s % 4 of it: low bits from the nibble 4 * (p / 2) of ql bytes 64h + 32 * (p % 2) .. +31,
// top bits from bits 2p of qh bytes 32h .. +31.
#define BLOCK_ELEMENTS 256
#define BLOCK_BYTES 210

void dequantize_group(uint row_byte_offset, uint group, out float values[32]) {
  const uint block = row_byte_offset + (group / 8u) * 210u;
  const uint sub_range = group % 8u;
  const uint half_of_block = sub_range / 4u;
  const uint quarter = sub_range % 4u;
  const float d = read_f16(block + 208u);
  const int scale_bytes = int(read_u16(block + 192u + 2u * sub_range));
  const uint low_offset = block + 64u * half_of_block + 32u * (quarter % 2u);
  const uint high_offset = block + 128u + 32u * half_of_block;
  const uint low_shift = 4u * (quarter / 2u);
  const uint high_shift = 2u * quarter;
  for (uint half_index = 0u; half_index < 2u; ++half_index) {
    const float scale = d * float(bitfieldExtract(scale_bytes, int(8u * half_index), 8));
    const uvec4 quants = ((read_u32x4(low_offset + 16u * half_index) >> low_shift) & 0x0f0f0f0fu) |
                         (((read_u32x4(high_offset + 16u * half_index) >> high_shift) & 0x03030303u) << 4u);
    for (uint l = 0u; l < 16u; ++l) values[16u * half_index + l] = scale * float(int(byte_of(quants, l)) - 32);
  }
}

#elif WEIGHT_TYPE == DTYPE_IQ4_NL
// IQ4_NL, 18 bytes: f16 d, 16 bytes of 4-bit level indices packed as in Q4_0;
// w = d * level[index].
#define BLOCK_ELEMENTS 32
#define BLOCK_BYTES 18

void dequantize_group(uint row_byte_offset, uint group, out float values[32]) {
  const uint block = row_byte_offset + group * 18u;
  const float d = read_f16(block);
  uint codes[32];
  unpack_nibbles_32(block + 2u, codes);
  for (uint i = 0u; i < 32u; ++i) values[i] = d * float(iq4_levels[codes[i]]);
}

#elif WEIGHT_TYPE == DTYPE_IQ4_XS
// IQ4_XS, 136 bytes: f16 d, u16 scales_h (top 2 bits of s_k at bit 2k), 4 bytes scales_l (low
// 4 bits of s_k: nibble k % 2 of byte k / 2), 8 x 16 bytes of level indices packed as in Q4_0;
// w = (d * (s_k - 32)) * level[index].
#define BLOCK_ELEMENTS 256
#define BLOCK_BYTES 136

void dequantize_group(uint row_byte_offset, uint group, out float values[32]) {
  const uint block = row_byte_offset + (group / 8u) * 136u;
  const uint sub_block = group % 8u;
  const uint d_and_scales_high = read_u32(block);
  const float d = unpackHalf2x16(d_and_scales_high).x;
  const uint scale_low = (read_byte(block + 4u + sub_block / 2u) >> (4u * (sub_block % 2u))) & 0x0fu;
  const uint scale_high = (d_and_scales_high >> (16u + 2u * sub_block)) & 3u;
  const float scale = d * float(int(scale_low | (scale_high << 4u)) - 32);
  uint codes[32];
  unpack_nibbles_32(block + 8u + 16u * sub_block, codes);
  for (uint i = 0u; i < 32u; ++i) values[i] = scale * float(iq4_levels[codes[i]]);
}

#else
#error "dequantize.glsl: WEIGHT_TYPE is not a type this file decodes"
#endif

#if BLOCK_ELEMENTS > 1
// Quantized rows are decoded a group at a time; one element costs a whole group.
float weight_element(uint row_byte_offset, uint k) {
  float values[32];
  dequantize_group(row_byte_offset, k / 32u, values);
  return values[k % 32u];
}
#endif

#endif  // WEIGHT_TYPE

#endif  // LAMINA_VULKAN_DEQUANTIZE_GLSL
