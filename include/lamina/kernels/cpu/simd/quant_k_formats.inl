// lamina/kernels/cpu/simd/quant_k_formats.inl — what the K-quant kernels need to know about each
// weight type: where its codes, scales and minimums sit in a block, and how to turn a block
// into vectors of unsigned 8-bit codes in the order of the values.
//
// Included by quant_k.inl inside lamina::cpu::<instruction set>::k_quants; do not include it
// anywhere else. The layouts are GGML's (quant/blocks.hpp describes each field).
//
// Every type is read as (see quant_k.inl for the arithmetic)
//   value_i = D · scale_g · code_i − Dmin · min_g      g = i / 16, code_i unsigned
// Types whose stored quant is signed (Q3_K q − 4, Q6_K q − 32, IQ4_XS a signed level) keep the
// unsigned code (q, or level + 128) and set min_g = offset · scale_g with Dmin = D
// ("mins_from_scales"); the others have their own minimums and Dmin.

// --- reading block fields at any address (mapped rows may be only 2-byte aligned) ---

inline std::uint16_t load_u16(const std::uint8_t* bytes) {
  std::uint16_t value;
  std::memcpy(&value, bytes, sizeof value);
  return value;
}

inline std::uint32_t load_u32(const std::uint8_t* bytes) {
  std::uint32_t value;
  std::memcpy(&value, bytes, sizeof value);
  return value;
}

inline float load_f32(const std::uint8_t* bytes) {
  float value;
  std::memcpy(&value, bytes, sizeof value);
  return value;
}

inline float half_to_float(std::uint16_t half) {
#if LAMINA_CPU_TARGET >= 2
  return _cvtsh_ss(half);  // F16C: exact, like f16_to_f32
#else
  return f16_to_f32(half);
#endif
}

inline __m128i load_128(const std::uint8_t* bytes) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes)); }

// Bytes shifted right by `count` bits (0..7) within 16-bit lanes; callers mask away the bits
// that came from the neighbouring byte.
inline __m128i shift_right_16(__m128i x, int count) { return _mm_srl_epi16(x, _mm_cvtsi32_si128(count)); }
inline __m128i shift_left_16(__m128i x, int count) { return _mm_sll_epi16(x, _mm_cvtsi32_si128(count)); }

// --- the group scales and minimums of one block ---

// 16 signed bytes each: scales[g] and mins[g] for the groups of 16 values g = 0..15 (a type with
// 32-value sub-blocks repeats each sub-block's value twice). For mins_from_scales types `mins`
// is a copy of `scales`; the kernels multiply it by the code offset.
struct GroupScaleBytes {
  __m128i scales;
  __m128i mins;
};

// Q4_K and Q5_K pack 8 six-bit scales and 8 six-bit minimums in 12 bytes (quant/k_quants.hpp,
// detail::unpack_scale_min_k4). GGML's unpacking with 32-bit words: bytes 0..3 hold scales 0..3
// (low 6 bits) and the top bits of scales 4..7, bytes 4..7 the same for minimums, bytes 8..11
// the low nibbles of scales 4..7 (low) and minimums 4..7 (high).
LAMINA_K_QUANTS_INLINE GroupScaleBytes k4_group_scale_bytes(const std::uint8_t* packed) {
  const std::uint32_t word0 = load_u32(packed), word1 = load_u32(packed + 4), word2 = load_u32(packed + 8);
  const std::uint32_t scales_0_3 = word0 & 0x3f3f3f3fu;
  const std::uint32_t mins_0_3 = word1 & 0x3f3f3f3fu;
  const std::uint32_t scales_4_7 = (word2 & 0x0f0f0f0fu) | (((word0 >> 6) & 0x03030303u) << 4);
  const std::uint32_t mins_4_7 = ((word2 >> 4) & 0x0f0f0f0fu) | (((word1 >> 6) & 0x03030303u) << 4);
  // bytes: scale 0..7, min 0..7
  const __m128i sub_blocks = _mm_set_epi32(static_cast<int>(mins_4_7), static_cast<int>(mins_0_3),
                                           static_cast<int>(scales_4_7), static_cast<int>(scales_0_3));
  // 32-value sub-block k is groups 2k and 2k + 1.
  return {_mm_unpacklo_epi8(sub_blocks, sub_blocks), _mm_unpackhi_epi8(sub_blocks, sub_blocks)};
}

// A field of codes: 32 consecutive bytes at block + offset, each shifted right by `shift`.
struct BitField {
  int offset;
  int shift;
};

// --- the types ---
// Each format describes:
//   block_bytes, values_per_scale (16 or 32), largest_code,
//   mins_from_scales and code_offset_shift (min_g = scale_g << code_offset_shift when set),
//   low_bits(h) / high_bits(h): where values 32h .. 32h + 31 (h = 0..7) take their code bits:
//     code = ((bytes(low) >> low.shift) & low_mask) | (((bytes(high) >> high.shift) & high_mask) << high_position)
//   (IQ4_XS instead looks its codes up in a table: nonlinear = true),
//   scale(block) = D, min_scale(block) = Dmin, group_scale_bytes(block).

// Q2_K, 84 bytes: scales[16] (scale low nibble, min high nibble), qs[64], d, dmin.
// Value 128H + 32p + l is bits 2p..2p+1 of qs[32H + l].
struct Q2KFormat {
  static constexpr std::size_t block_bytes = 84;
  static constexpr int values_per_scale = 16;
  static constexpr int largest_code = 3;
  static constexpr bool mins_from_scales = false;
  static constexpr int code_offset_shift = 0;
  static constexpr bool nonlinear = false;
  static constexpr int low_mask = 0x03;
  static constexpr bool has_high_bits = false;
  static constexpr int high_mask = 0, high_position = 0;
  static BitField low_bits(int half) { return {16 + 32 * (half / 4), 2 * (half % 4)}; }
  static BitField high_bits(int) { return {0, 0}; }
  static float scale(const std::uint8_t* block) { return half_to_float(load_u16(block + 80)); }
  static float min_scale(const std::uint8_t* block) { return half_to_float(load_u16(block + 82)); }
  LAMINA_K_QUANTS_INLINE static GroupScaleBytes group_scale_bytes(const std::uint8_t* block) {
    const __m128i packed = load_128(block), low_nibbles = _mm_set1_epi8(0x0f);
    return {_mm_and_si128(packed, low_nibbles), _mm_and_si128(_mm_srli_epi16(packed, 4), low_nibbles)};
  }
};

// Q3_K, 110 bytes: hmask[32], qs[64], scales[12] (16 six-bit scales stored + 32), d.
// Value i = 128H + 32p + l: low 2 bits are bits 2p..2p+1 of qs[32H + l], bit 2 is bit i / 32 of
// hmask[l]; weight = d · (s − 32) · (code − 4).
struct Q3KFormat {
  static constexpr std::size_t block_bytes = 110;
  static constexpr int values_per_scale = 16;
  static constexpr int largest_code = 7;
  static constexpr bool mins_from_scales = true;
  static constexpr int code_offset_shift = 2;  // code offset 4
  static constexpr bool nonlinear = false;
  static constexpr int low_mask = 0x03;
  static constexpr bool has_high_bits = true;
  static constexpr int high_mask = 0x01, high_position = 2;
  static BitField low_bits(int half) { return {32 + 32 * (half / 4), 2 * (half % 4)}; }
  static BitField high_bits(int half) { return {0, half}; }
  static float scale(const std::uint8_t* block) { return half_to_float(load_u16(block + 108)); }
  static float min_scale(const std::uint8_t* block) { return scale(block); }
  // GGML's unpacking: scale k's low nibble is byte k (k < 8) or the high nibble of byte k − 8;
  // its top 2 bits are bits 2(k/4) of byte 8 + k % 4.
  LAMINA_K_QUANTS_INLINE static GroupScaleBytes group_scale_bytes(const std::uint8_t* block) {
    const std::uint8_t* packed = block + 96;
    const std::uint32_t word0 = load_u32(packed), word1 = load_u32(packed + 4), top_bits = load_u32(packed + 8);
    const std::uint32_t nibbles = 0x0f0f0f0fu, pairs = 0x03030303u;
    const std::uint32_t scales_0_3 = (word0 & nibbles) | ((top_bits & pairs) << 4);
    const std::uint32_t scales_4_7 = (word1 & nibbles) | (((top_bits >> 2) & pairs) << 4);
    const std::uint32_t scales_8_11 = ((word0 >> 4) & nibbles) | (((top_bits >> 4) & pairs) << 4);
    const std::uint32_t scales_12_15 = ((word1 >> 4) & nibbles) | (((top_bits >> 6) & pairs) << 4);
    const __m128i stored = _mm_set_epi32(static_cast<int>(scales_12_15), static_cast<int>(scales_8_11),
                                         static_cast<int>(scales_4_7), static_cast<int>(scales_0_3));
    const __m128i scales = _mm_sub_epi8(stored, _mm_set1_epi8(32));
    return {scales, scales};
  }
};

// Q4_K, 144 bytes: d, dmin, scales[12], qs[128]. Values 64c .. 64c + 31 are the low nibbles of
// qs[32c .. 32c + 31], values 64c + 32 .. 64c + 63 their high nibbles.
struct Q4KFormat {
  static constexpr std::size_t block_bytes = 144;
  static constexpr int values_per_scale = 32;
  static constexpr int largest_code = 15;
  static constexpr bool mins_from_scales = false;
  static constexpr int code_offset_shift = 0;
  static constexpr bool nonlinear = false;
  static constexpr int low_mask = 0x0f;
  static constexpr bool has_high_bits = false;
  static constexpr int high_mask = 0, high_position = 0;
  static BitField low_bits(int half) { return {16 + 32 * (half / 2), 4 * (half % 2)}; }
  static BitField high_bits(int) { return {0, 0}; }
  static float scale(const std::uint8_t* block) { return half_to_float(load_u16(block)); }
  static float min_scale(const std::uint8_t* block) { return half_to_float(load_u16(block + 2)); }
  LAMINA_K_QUANTS_INLINE static GroupScaleBytes group_scale_bytes(const std::uint8_t* block) { return k4_group_scale_bytes(block + 4); }
};

// Q5_K, 176 bytes: d, dmin, scales[12], qh[32], qs[128]. Low 4 bits as in Q4_K; bit 4 of value
// 32h + l is bit h of qh[l].
struct Q5KFormat {
  static constexpr std::size_t block_bytes = 176;
  static constexpr int values_per_scale = 32;
  static constexpr int largest_code = 31;
  static constexpr bool mins_from_scales = false;
  static constexpr int code_offset_shift = 0;
  static constexpr bool nonlinear = false;
  static constexpr int low_mask = 0x0f;
  static constexpr bool has_high_bits = true;
  static constexpr int high_mask = 0x01, high_position = 4;
  static BitField low_bits(int half) { return {48 + 32 * (half / 2), 4 * (half % 2)}; }
  static BitField high_bits(int half) { return {16, half}; }
  static float scale(const std::uint8_t* block) { return half_to_float(load_u16(block)); }
  static float min_scale(const std::uint8_t* block) { return half_to_float(load_u16(block + 2)); }
  LAMINA_K_QUANTS_INLINE static GroupScaleBytes group_scale_bytes(const std::uint8_t* block) { return k4_group_scale_bytes(block + 4); }
};

// Q6_K, 210 bytes: ql[128], qh[64], scales[16] (int8), d. Value 128H + 32p + l takes its low 4
// bits from ql[64H + 32(p % 2) + l] (low nibble for p < 2, high for p >= 2) and its top 2 bits
// from bits 2p..2p+1 of qh[32H + l]; weight = d · s · (code − 32).
struct Q6KFormat {
  static constexpr std::size_t block_bytes = 210;
  static constexpr int values_per_scale = 16;
  static constexpr int largest_code = 63;
  static constexpr bool mins_from_scales = true;
  static constexpr int code_offset_shift = 5;  // code offset 32
  static constexpr bool nonlinear = false;
  static constexpr int low_mask = 0x0f;
  static constexpr bool has_high_bits = true;
  static constexpr int high_mask = 0x03, high_position = 4;
  static BitField low_bits(int half) { return {64 * (half / 4) + 32 * (half % 2), 4 * ((half % 4) / 2)}; }
  static BitField high_bits(int half) { return {128 + 32 * (half / 4), 2 * (half % 4)}; }
  static float scale(const std::uint8_t* block) { return half_to_float(load_u16(block + 208)); }
  static float min_scale(const std::uint8_t* block) { return scale(block); }
  LAMINA_K_QUANTS_INLINE static GroupScaleBytes group_scale_bytes(const std::uint8_t* block) {
    const __m128i scales = load_128(block + 192);
    return {scales, scales};
  }
};

// IQ4_XS, 136 bytes: d, scales_h (2 bits per sub-block), scales_l[4] (4 bits per sub-block),
// qs[128]. 32-value sub-block k: values 32k + j and 32k + 16 + j are the low and high nibble
// of qs[16k + j], each an index into the 16 IQ4_NL levels; weight = d · (s − 32) · level.
// The code is level + 128 (1 .. 241).
struct IQ4XSFormat {
  static constexpr std::size_t block_bytes = 136;
  static constexpr int values_per_scale = 32;
  static constexpr int largest_code = 241;
  static constexpr bool mins_from_scales = true;
  static constexpr int code_offset_shift = 7;  // code offset 128
  static constexpr bool nonlinear = true;
  static constexpr int low_mask = 0x0f;
  static constexpr bool has_high_bits = false;
  static constexpr int high_mask = 0, high_position = 0;
  static BitField low_bits(int) { return {0, 0}; }
  static BitField high_bits(int) { return {0, 0}; }
  static float scale(const std::uint8_t* block) { return half_to_float(load_u16(block)); }
  static float min_scale(const std::uint8_t* block) { return scale(block); }
  LAMINA_K_QUANTS_INLINE static GroupScaleBytes group_scale_bytes(const std::uint8_t* block) {
    const unsigned high_bits = load_u16(block + 2);
    alignas(16) std::int8_t scales[16];
    for (int k = 0; k < 8; ++k) {
      const unsigned low = (block[4 + k / 2] >> (4 * (k % 2))) & 0x0fu;
      const unsigned high = (high_bits >> (2 * k)) & 3u;
      scales[2 * k] = scales[2 * k + 1] = static_cast<std::int8_t>(static_cast<int>(low | (high << 4)) - 32);
    }
    const __m128i loaded = _mm_load_si128(reinterpret_cast<const __m128i*>(scales));
    return {loaded, loaded};
  }
  // IQ4_NL levels + 128 (GGML: kvalues_iq4nl), indexed by the 4-bit code.
  static __m128i level_codes() { return _mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, -127, -115, -103, -90, -75, -59, -39, -15); }
};

// --- codes in value order ---

// The nibble indices of IQ4_XS as codes (level + 128), one byte each.
LAMINA_K_QUANTS_INLINE __m128i iq4_codes_from_indices(__m128i indices) {
#if LAMINA_CPU_TARGET >= 2
  return _mm_shuffle_epi8(IQ4XSFormat::level_codes(), indices);
#else
  // SSE2 has no byte shuffle: look the 16 indices up one by one.
  alignas(16) std::uint8_t index_bytes[16], codes[16], table[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(index_bytes), indices);
  _mm_store_si128(reinterpret_cast<__m128i*>(table), IQ4XSFormat::level_codes());
  for (int i = 0; i < 16; ++i) codes[i] = table[index_bytes[i]];
  return _mm_load_si128(reinterpret_cast<const __m128i*>(codes));
#endif
}

// Codes of values 16·piece .. 16·piece + 15 (piece = 0..15), any instruction set.
template <class Format>
LAMINA_K_QUANTS_INLINE __m128i codes_16(const std::uint8_t* block, int piece) {
  const __m128i low_nibbles = _mm_set1_epi8(0x0f);
  if constexpr (Format::nonlinear) {
    const __m128i packed = load_128(block + 8 + 16 * (piece / 2));
    const __m128i indices = _mm_and_si128(piece % 2 ? _mm_srli_epi16(packed, 4) : packed, low_nibbles);
    return iq4_codes_from_indices(indices);
  } else {
    const int half = piece / 2, part = 16 * (piece % 2);
    const BitField low = Format::low_bits(half);
    __m128i codes = _mm_and_si128(shift_right_16(load_128(block + low.offset + part), low.shift),
                                  _mm_set1_epi8(static_cast<char>(Format::low_mask)));
    if constexpr (Format::has_high_bits) {
      // One shift takes the field from bit `shift` to bit `high_position`; the mask keeps it.
      const BitField high = Format::high_bits(half);
      const __m128i bytes = load_128(block + high.offset + part);
      const int move = Format::high_position - high.shift;
      const __m128i moved = move >= 0 ? shift_left_16(bytes, move) : shift_right_16(bytes, -move);
      codes = _mm_or_si128(codes, _mm_and_si128(moved, _mm_set1_epi8(static_cast<char>(Format::high_mask << Format::high_position))));
    }
    return codes;
  }
}

#if LAMINA_CPU_TARGET >= 2
inline __m256i load_256(const std::uint8_t* bytes) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes)); }
inline __m256i shift_right_16(__m256i x, int count) { return _mm256_srl_epi16(x, _mm_cvtsi32_si128(count)); }
inline __m256i shift_left_16(__m256i x, int count) { return _mm256_sll_epi16(x, _mm_cvtsi32_si128(count)); }

// Codes of values 32·half .. 32·half + 31 (half = 0..7).
template <class Format>
LAMINA_K_QUANTS_INLINE __m256i codes_32(const std::uint8_t* block, int half) {
  if constexpr (Format::nonlinear) {
    // Sub-block `half`: 16 bytes, low nibbles first, then high nibbles.
    const __m256i packed = _mm256_broadcastsi128_si256(load_128(block + 8 + 16 * half));
    const __m256i indices = _mm256_and_si256(_mm256_srlv_epi64(packed, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(0x0f));
    return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(IQ4XSFormat::level_codes()), indices);
  } else {
    const BitField low = Format::low_bits(half);
    __m256i codes = _mm256_and_si256(shift_right_16(load_256(block + low.offset), low.shift),
                                     _mm256_set1_epi8(static_cast<char>(Format::low_mask)));
    if constexpr (Format::has_high_bits) {
      const BitField high = Format::high_bits(half);
      const __m256i bytes = load_256(block + high.offset);
      const int move = Format::high_position - high.shift;
      const __m256i moved = move >= 0 ? shift_left_16(bytes, move) : shift_right_16(bytes, -move);
      codes = _mm256_or_si256(codes, _mm256_and_si256(moved, _mm256_set1_epi8(static_cast<char>(Format::high_mask << Format::high_position))));
    }
    return codes;
  }
}
#endif

#if LAMINA_CPU_TARGET == 3
// The 32-byte fields at `first` (values of the lower half) and `second` (upper half) as one
// vector: one broadcast when they are the same bytes, one load when they are adjacent.
LAMINA_K_QUANTS_INLINE __m512i load_two_fields(const std::uint8_t* block, int first, int second) {
  if (first == second) return _mm512_broadcast_i64x4(load_256(block + first));
  if (second == first + 32) return _mm512_loadu_si512(block + first);
  return _mm512_inserti64x4(_mm512_castsi256_si512(load_256(block + first)), load_256(block + second), 1);
}

// Codes of values 64·quarter .. 64·quarter + 63 (quarter = 0..3).
template <class Format>
LAMINA_K_QUANTS_INLINE __m512i codes_64(const std::uint8_t* block, int quarter) {
  if constexpr (Format::nonlinear) {
    // Sub-blocks 2·quarter and 2·quarter + 1: 16 bytes each, low nibbles then high nibbles.
    const __m512i packed = _mm512_permutexvar_epi64(_mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0),
                                                    _mm512_castsi256_si512(load_256(block + 8 + 32 * quarter)));
    const __m512i indices = _mm512_and_si512(_mm512_srlv_epi64(packed, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0)), _mm512_set1_epi8(0x0f));
    return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(IQ4XSFormat::level_codes()), indices);
  } else {
    const BitField low_first = Format::low_bits(2 * quarter), low_second = Format::low_bits(2 * quarter + 1);
    const __m512i low_shifts = _mm512_set_epi64(low_second.shift, low_second.shift, low_second.shift, low_second.shift,
                                                low_first.shift, low_first.shift, low_first.shift, low_first.shift);
    __m512i codes = _mm512_and_si512(_mm512_srlv_epi64(load_two_fields(block, low_first.offset, low_second.offset), low_shifts),
                                     _mm512_set1_epi8(static_cast<char>(Format::low_mask)));
    if constexpr (Format::has_high_bits) {
      // A rotation of each 64-bit lane moves bit `shift` of every byte to `high_position`
      // whichever way it has to go; the mask keeps just those bits.
      const BitField high_first = Format::high_bits(2 * quarter), high_second = Format::high_bits(2 * quarter + 1);
      const long long move_first = (Format::high_position - high_first.shift + 64) % 64;
      const long long move_second = (Format::high_position - high_second.shift + 64) % 64;
      const __m512i moves = _mm512_set_epi64(move_second, move_second, move_second, move_second, move_first, move_first,
                                             move_first, move_first);
      const __m512i moved = _mm512_rolv_epi64(load_two_fields(block, high_first.offset, high_second.offset), moves);
      codes = _mm512_or_si512(codes, _mm512_and_si512(moved, _mm512_set1_epi8(static_cast<char>(Format::high_mask << Format::high_position))));
    }
    return codes;
  }
}
#endif
