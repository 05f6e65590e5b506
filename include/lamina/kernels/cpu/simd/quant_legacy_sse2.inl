// lamina/kernels/cpu/simd/quant_legacy_sse2.inl — the SSE2 pieces of the legacy integer
// kernels. Included only by quant_legacy.inl, inside lamina::cpu::sse2.
//
// SSE2 has no byte multiply (vpmaddubsw is SSSE3), so both sides are widened to int16 and
// multiplied with pmaddwd, which adds pairs into int32. One step is one block: 32 values as
// four registers of 8 int16 (values 0..7, 8..15, 16..23, 24..31). The weights are widened to
// their signed value q_i directly (no offset to take back); activations are widened once, when
// prepared. The four pmaddwd results add up to 4 int32 lanes per block, so Q8_1's s is spread
// as s / 4 over them.

inline constexpr std::size_t legacy_step_blocks = 1;
inline constexpr std::size_t legacy_step_bytes = 64 + 16 + 16;  // LegacyTokenStep in memory
// A row takes 6 of the 16 registers unpacked; one row meets 4 tokens.
inline constexpr std::size_t legacy_tile_rows = 1;
inline constexpr std::size_t legacy_tile_tokens = 4;

// One block of one weight row, unpacked.
struct LegacyWeightStep {
  __m128i values[4];    // q_i as int16
  float_batch scale;    // d_w in all 4 lanes
  float_batch minimum;  // m_w in all 4 lanes (Q4_1, Q5_1)
};

// One block of one token, prepared (96 bytes in memory, in this order).
struct LegacyTokenStep {
  __m128i quants[4];       // a_i as int16
  float_batch correction;  // Q8_1: s / 4 per lane; otherwise unused
  float_batch scale;       // d_a in all 4 lanes
};

inline LegacyTokenStep load_legacy_token_step(const std::uint8_t* step) {
  const __m128i* quants = reinterpret_cast<const __m128i*>(step);
  return {{_mm_load_si128(quants), _mm_load_si128(quants + 1), _mm_load_si128(quants + 2), _mm_load_si128(quants + 3)},
          float_batch::load_aligned(reinterpret_cast<const float*>(step + 64)),
          float_batch::load_aligned(reinterpret_cast<const float*>(step + 80))};
}

inline float_batch broadcast_f16(const std::uint8_t* bytes) { return float_batch(f16_to_f32(read_u16(bytes))); }

// int8 -> int16 with sign: each byte paired with itself, then shifted down arithmetically.
inline __m128i widen_low_signed(__m128i bytes) { return _mm_srai_epi16(_mm_unpacklo_epi8(bytes, bytes), 8); }
inline __m128i widen_high_signed(__m128i bytes) { return _mm_srai_epi16(_mm_unpackhi_epi8(bytes, bytes), 8); }

// Turns one token's `block_count` Q8_0 / Q8_1 blocks into LegacyTokenSteps for Format.
template <class Format>
inline void prepare_legacy_activations(const std::uint8_t* blocks, std::size_t block_count, std::uint8_t* prepared) {
  for (std::size_t block = 0; block < block_count; ++block, prepared += legacy_step_bytes) {
    const std::uint8_t* bytes = blocks + block * Format::activation_block_bytes;
    const __m128i first = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes + Format::activation_quants_at));
    const __m128i second = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bytes + Format::activation_quants_at + 16));
    __m128i* quants = reinterpret_cast<__m128i*>(prepared);
    _mm_store_si128(quants, widen_low_signed(first));
    _mm_store_si128(quants + 1, widen_high_signed(first));
    _mm_store_si128(quants + 2, widen_low_signed(second));
    _mm_store_si128(quants + 3, widen_high_signed(second));
    const float_batch correction = Format::has_minimum ? broadcast_f16(bytes + 2) * float_batch(0.25f) : float_batch(0.0f);
    correction.store_aligned(reinterpret_cast<float*>(prepared + 64));
    broadcast_f16(bytes).store_aligned(reinterpret_cast<float*>(prepared + 80));
  }
}

// --- unpacking one weight block ---

// 32 codes (values 0..15 in `low`, 16..31 in `high`, bytes 0..255) minus `offset`, as int16.
inline void widen_codes(__m128i low, __m128i high, int offset, LegacyWeightStep& step) {
  const __m128i zero = _mm_setzero_si128(), offsets = _mm_set1_epi16(static_cast<short>(offset));
  step.values[0] = _mm_sub_epi16(_mm_unpacklo_epi8(low, zero), offsets);
  step.values[1] = _mm_sub_epi16(_mm_unpackhi_epi8(low, zero), offsets);
  step.values[2] = _mm_sub_epi16(_mm_unpacklo_epi8(high, zero), offsets);
  step.values[3] = _mm_sub_epi16(_mm_unpackhi_epi8(high, zero), offsets);
}

// Packed nibbles: byte j holds value j in its low nibble and value j + 16 in its high one.
inline void split_nibbles(const std::uint8_t* nibbles, __m128i& low, __m128i& high) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(nibbles));
  const __m128i mask = _mm_set1_epi8(0x0f);
  low = _mm_and_si128(packed, mask);
  high = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
}

// 16 in byte j where bit j of the 16 bits is set, else 0.
inline __m128i fifth_bits_16(std::uint32_t bits) {
  const std::uint64_t spread = 0x0101010101010101u;  // times a byte: that byte in all 8
  const __m128i bytes = _mm_set_epi64x(static_cast<long long>(((bits >> 8) & 0xffu) * spread), static_cast<long long>((bits & 0xffu) * spread));
  const __m128i selectors = _mm_set1_epi64x(static_cast<long long>(0x8040201008040201u));
  const __m128i set = _mm_cmpeq_epi8(_mm_and_si128(bytes, selectors), selectors);
  return _mm_and_si128(set, _mm_set1_epi8(16));
}

template <std::size_t NibblesAt, std::size_t HighAt, int Offset, bool HasMinimum>
inline LegacyWeightStep load_nibble_block(const std::uint8_t* block) {
  __m128i low, high;
  split_nibbles(block + NibblesAt, low, high);
  if (HighAt != 0) {
    const std::uint32_t bits = read_u32(block + HighAt);
    low = _mm_or_si128(low, fifth_bits_16(bits));
    high = _mm_or_si128(high, fifth_bits_16(bits >> 16));
  }
  LegacyWeightStep step;
  widen_codes(low, high, Offset, step);
  step.scale = broadcast_f16(block);
  step.minimum = HasMinimum ? broadcast_f16(block + 2) : float_batch(0.0f);
  return step;
}

// Q4_0 [F16 d][16 nibble bytes]: q = nibble - 8.
struct LegacyQ4_0 : LegacyFormatTraits<DType::q4_0, 18, 8, false> {
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* block) const {
    return load_nibble_block<2, 0, 8, false>(block);
  }
};

// Q4_1 [F16 d][F16 m][16 nibble bytes]: q = nibble.
struct LegacyQ4_1 : LegacyFormatTraits<DType::q4_1, 20, 0, true> {
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* block) const {
    return load_nibble_block<4, 0, 0, true>(block);
  }
};

// Q5_0 [F16 d][4 bytes fifth bits][16 nibble bytes]: q = nibble + 16 * bit - 16.
struct LegacyQ5_0 : LegacyFormatTraits<DType::q5_0, 22, 16, false> {
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* block) const {
    return load_nibble_block<6, 2, 16, false>(block);
  }
};

// Q5_1 [F16 d][F16 m][4 bytes fifth bits][16 nibble bytes]: q = nibble + 16 * bit.
struct LegacyQ5_1 : LegacyFormatTraits<DType::q5_1, 24, 0, true> {
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* block) const {
    return load_nibble_block<8, 4, 0, true>(block);
  }
};

// IQ4_NL [F16 d][16 index bytes]: q = level[index]. SSE2 has no byte shuffle: looked up one by one.
struct LegacyIQ4_NL : LegacyFormatTraits<DType::iq4_nl, 18, 128, false> {
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* block) const {
    alignas(16) std::int16_t values[32];
    for (std::size_t j = 0; j < 16; ++j) {
      values[j] = legacy_iq4_nl_levels[block[2 + j] & 0x0f];
      values[j + 16] = legacy_iq4_nl_levels[block[2 + j] >> 4];
    }
    LegacyWeightStep step;
    for (std::size_t k = 0; k < 4; ++k) step.values[k] = _mm_load_si128(reinterpret_cast<const __m128i*>(values + 8 * k));
    step.scale = broadcast_f16(block);
    step.minimum = float_batch(0.0f);
    return step;
  }
};

// Q8_0 [F16 d][32 int8]: q as stored.
struct LegacyQ8_0 : LegacyFormatTraits<DType::q8_0, 34, 128, false> {
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* block) const {
    const __m128i first = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2));
    const __m128i second = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 18));
    LegacyWeightStep step;
    step.values[0] = widen_low_signed(first);
    step.values[1] = widen_high_signed(first);
    step.values[2] = widen_low_signed(second);
    step.values[3] = widen_high_signed(second);
    step.scale = broadcast_f16(block);
    step.minimum = float_batch(0.0f);
    return step;
  }
};

// sum + this block's contribution to dot(weight row, token).
template <class Format>
inline float_batch legacy_multiply_add(const LegacyWeightStep& weights, const LegacyTokenStep& token, float_batch sum) {
  __m128i dot = _mm_madd_epi16(weights.values[0], token.quants[0]);
  dot = _mm_add_epi32(dot, _mm_madd_epi16(weights.values[1], token.quants[1]));
  dot = _mm_add_epi32(dot, _mm_madd_epi16(weights.values[2], token.quants[2]));
  dot = _mm_add_epi32(dot, _mm_madd_epi16(weights.values[3], token.quants[3]));
  if constexpr (Format::has_minimum) sum = fma(weights.minimum, token.correction, sum);
  return fma(float_batch(_mm_cvtepi32_ps(dot)), weights.scale * token.scale, sum);
}

