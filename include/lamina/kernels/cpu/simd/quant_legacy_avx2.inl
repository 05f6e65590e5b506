// lamina/kernels/cpu/simd/quant_legacy_avx2.inl — the AVX2 pieces of the legacy integer
// kernels. Included only by quant_legacy.inl, inside lamina::cpu::avx2. This is the step
// kernel, for decoding, and for every token count of Q8_0 and IQ4_NL; Q4_0, Q4_1, Q5_0 and Q5_1
// prompts take the transposed kernel of quant_legacy_avx2_prompt.inl (included at the end).
//
// One step is one block, 32 values, in one 256-bit register in natural order (byte i = value i).
// vpmaddubsw multiplies unsigned bytes by signed bytes and adds pairs into int16 with
// saturation; vpmaddwd with ones then adds pairs of those into 8 int32 lanes.
//   - Signed weights (Q4_0, Q5_0, Q8_0, IQ4_NL) use the sign trick: |q_i| * (a_i with q_i's
//     sign) = q_i * a_i, and |q_i| <= 128, |a_i| <= 127 keep every pair below 2^15. (Unsigned
//     codes with an offset, as on AVX-512, would reach 255 * 127 * 2 and saturate.)
//   - Q4_1 and Q5_1 store q_i >= 0 and multiply directly; their minimum term m_w * s is one
//     more FMA with s / 8 in each of the block's 8 lanes.

inline constexpr std::size_t legacy_step_blocks = 1;
inline constexpr std::size_t legacy_step_bytes = 3 * 32;  // LegacyTokenStep in memory
// 8 float accumulators of 16 registers; the rest hold the unpacked rows and one token.
inline constexpr std::size_t legacy_tile_rows = 2;
inline constexpr std::size_t legacy_tile_tokens = 4;

// One block of one weight row, unpacked.
struct LegacyWeightStep {
  __m256i magnitudes;   // |q_i| (signed types) or q_i (Q4_1, Q5_1)
  __m256i signs;        // q_i (signed types): the sign to give the activation
  float_batch scale;    // d_w in all 8 lanes
  float_batch minimum;  // m_w in all 8 lanes (Q4_1, Q5_1)
};

// One block of one token, prepared (3 x 32 bytes in memory, in this order).
struct LegacyTokenStep {
  __m256i quants;          // 32 int8 activation quants
  float_batch correction;  // Q8_1: s / 8 per lane; otherwise unused
  float_batch scale;       // d_a in all 8 lanes
};

inline LegacyTokenStep load_legacy_token_step(const std::uint8_t* step) {
  return {_mm256_load_si256(reinterpret_cast<const __m256i*>(step)), float_batch::load_aligned(reinterpret_cast<const float*>(step + 32)),
          float_batch::load_aligned(reinterpret_cast<const float*>(step + 64))};
}

inline float_batch broadcast_f16(const std::uint8_t* bytes) {
  return float_batch(_mm256_cvtph_ps(_mm_set1_epi16(static_cast<short>(read_u16(bytes)))));
}

// Turns one token's `block_count` Q8_0 / Q8_1 blocks into LegacyTokenSteps for Format.
template <class Format>
inline void prepare_legacy_activations(const std::uint8_t* blocks, std::size_t block_count, std::uint8_t* prepared) {
  for (std::size_t block = 0; block < block_count; ++block, prepared += legacy_step_bytes) {
    const std::uint8_t* bytes = blocks + block * Format::activation_block_bytes;
    _mm256_store_si256(reinterpret_cast<__m256i*>(prepared),
                       _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes + Format::activation_quants_at)));
    const float_batch correction = Format::has_minimum ? broadcast_f16(bytes + 2) * float_batch(0.125f) : float_batch(0.0f);
    correction.store_aligned(reinterpret_cast<float*>(prepared + 32));
    broadcast_f16(bytes).store_aligned(reinterpret_cast<float*>(prepared + 64));
  }
}

// --- unpacking one weight block ---

// 16 packed bytes -> 32 codes in natural order (byte j: value j low, value j + 16 high).
inline __m256i split_nibbles(const std::uint8_t* nibbles) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(nibbles));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), _mm256_set1_epi8(0x0f));
}

// 16 in byte i where bit i of the 32-bit mask at `bits` is set, else 0 (GGML: bytes_from_bits_32).
inline __m256i fifth_bits(const std::uint8_t* bits) {
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(read_u32(bits))),
                                             _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  // Each byte of `others` has every bit set but its own one: all ones after the OR iff set.
  const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
  const __m256i set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi8(-1));
  return _mm256_and_si256(set, _mm256_set1_epi8(16));
}

inline LegacyWeightStep signed_weight_step(__m256i values, const std::uint8_t* scale) {
  return {_mm256_abs_epi8(values), values, broadcast_f16(scale), float_batch(0.0f)};
}

// Q4_0 [F16 d][16 nibble bytes]: q = nibble - 8.
struct LegacyQ4_0 : LegacyFormatTraits<DType::q4_0, 18, 8, false> {
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* block) const {
    return signed_weight_step(_mm256_sub_epi8(split_nibbles(block + 2), _mm256_set1_epi8(8)), block);
  }
};

// Q4_1 [F16 d][F16 m][16 nibble bytes]: q = nibble.
struct LegacyQ4_1 : LegacyFormatTraits<DType::q4_1, 20, 0, true> {
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* block) const {
    const __m256i codes = split_nibbles(block + 4);
    return {codes, codes, broadcast_f16(block), broadcast_f16(block + 2)};
  }
};

// Q5_0 [F16 d][4 bytes fifth bits][16 nibble bytes]: q = nibble + 16 * bit - 16.
struct LegacyQ5_0 : LegacyFormatTraits<DType::q5_0, 22, 16, false> {
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* block) const {
    const __m256i codes = _mm256_or_si256(split_nibbles(block + 6), fifth_bits(block + 2));
    return signed_weight_step(_mm256_sub_epi8(codes, _mm256_set1_epi8(16)), block);
  }
};

// Q5_1 [F16 d][F16 m][4 bytes fifth bits][16 nibble bytes]: q = nibble + 16 * bit.
struct LegacyQ5_1 : LegacyFormatTraits<DType::q5_1, 24, 0, true> {
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* block) const {
    const __m256i codes = _mm256_or_si256(split_nibbles(block + 8), fifth_bits(block + 4));
    return {codes, codes, broadcast_f16(block), broadcast_f16(block + 2)};
  }
};

// IQ4_NL [F16 d][16 index bytes]: q = level[index], looked up in each 128-bit lane.
struct LegacyIQ4_NL : LegacyFormatTraits<DType::iq4_nl, 18, 128, false> {
  __m256i levels;
  // A written-out constructor, not default member initializers: GCC compiles implicit
  // constructors without the instruction set's target pragma.
  LegacyIQ4_NL() : levels(_mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(legacy_iq4_nl_levels)))) {}
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* block) const {
    return signed_weight_step(_mm256_shuffle_epi8(levels, split_nibbles(block + 2)), block);
  }
};

// Q8_0 [F16 d][32 int8]: q as stored.
struct LegacyQ8_0 : LegacyFormatTraits<DType::q8_0, 34, 128, false> {
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* block) const {
    return signed_weight_step(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2)), block);
  }
};

// sum + this block's contribution to dot(weight row, token).
template <class Format>
inline float_batch legacy_multiply_add(const LegacyWeightStep& weights, const LegacyTokenStep& token, float_batch sum) {
  const __m256i activations = Format::has_minimum ? token.quants : _mm256_sign_epi8(token.quants, weights.signs);
  const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(weights.magnitudes, activations), _mm256_set1_epi16(1));
  if constexpr (Format::has_minimum) sum = fma(weights.minimum, token.correction, sum);
  return fma(float_batch(_mm256_cvtepi32_ps(dot)), weights.scale * token.scale, sum);
}

#include "quant_legacy_avx2_prompt.inl"
