// lamina/kernels/cpu/simd/quant_legacy_avx512.inl — the AVX-512 (VNNI) pieces of the legacy
// integer kernels. Included only by quant_legacy.inl, inside lamina::cpu::avx512. This is the
// step kernel, for decoding and a few tokens; prompts take the transposed kernel of
// quant_legacy_avx512_prompt.inl (included at the end).
//
// One step is two blocks, 64 values, in one 512-bit register in natural order: bytes 0..31 are
// values 0..31 of block 2p, bytes 32..63 those of block 2p + 1. vpdpbusd multiplies unsigned
// bytes (the weights) by signed bytes (the activations) and adds each group of four products
// into one of 16 int32 lanes: lanes 0..7 belong to the first block, 8..15 to the second.
//
// The weights go in as unsigned codes u_i = q_i + Offset (LegacyFormatTraits), which is what
// Q4_0/Q5_0 store anyway (Q8_0: the quant with its sign bit flipped; IQ4_NL: level + 128).
// The Offset is taken back out exactly, in integers: each prepared activation step carries
// -Offset * (sum of the four quants of each lane), and vpdpbusd starts from that instead of 0,
// so every lane ends with sum (u_i - Offset) a_i = sum q_i a_i. One instruction per 64
// multiply-adds and no per-(row, token) fix-up.

inline constexpr std::size_t legacy_step_blocks = 2;
inline constexpr std::size_t legacy_step_bytes = 3 * 64;  // LegacyTokenStep in memory
// 16 float accumulators of 32 registers; the rest hold the unpacked rows and one token.
inline constexpr std::size_t legacy_tile_rows = 4;
inline constexpr std::size_t legacy_tile_tokens = 4;

// One step of one weight row, unpacked.
struct LegacyWeightStep {
  __m512i codes;        // 64 unsigned codes u_i, natural order
  float_batch scale;    // lanes 0..7: d_w of the first block, 8..15: of the second
  float_batch minimum;  // the same for m_w (Q4_1, Q5_1)
};

// One step of one token, prepared (3 x 64 bytes in memory, in this order).
struct LegacyTokenStep {
  __m512i quants;      // 64 int8 activation quants, natural order (zero past the row's end)
  __m512i correction;  // Offset types: int32 per lane, -Offset * sum of the lane's 4 quants;
                       // Q8_1: float per lane, s / 8 (8 lanes per block add up to s)
  float_batch scale;   // d_a per lane
};

inline LegacyTokenStep load_legacy_token_step(const std::uint8_t* step) {
  return {_mm512_load_si512(step), _mm512_load_si512(step + 64), float_batch::load_aligned(reinterpret_cast<const float*>(step + 128))};
}

// Turns one token's `block_count` Q8_0 / Q8_1 blocks into LegacyTokenSteps for Format.
template <class Format>
inline void prepare_legacy_activations(const std::uint8_t* blocks, std::size_t block_count, std::uint8_t* prepared) {
  constexpr std::size_t block_bytes = Format::activation_block_bytes, quants_at = Format::activation_quants_at;
  for (std::size_t block = 0; block < block_count; block += 2, prepared += legacy_step_bytes) {
    const bool pair = block + 1 < block_count;
    const std::uint8_t* first = blocks + block * block_bytes;
    const std::uint8_t* second = first + block_bytes;
    const __m256i second_quants = pair ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(second + quants_at)) : _mm256_setzero_si256();
    const __m512i quants =
        _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(first + quants_at))), second_quants, 1);
    // An F16 pair [first x 8, second x 8] -> 16 floats.
    const auto spread_halves = [&](std::size_t at) {
      const short first_bits = static_cast<short>(read_u16(first + at));
      const short second_bits = pair ? static_cast<short>(read_u16(second + at)) : short{0};
      return float_batch(_mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16(second_bits), _mm_set1_epi16(first_bits))));
    };
    __m512i correction;
    if constexpr (Format::has_minimum) {
      correction = _mm512_castps_si512(spread_halves(2) * float_batch(0.125f));
    } else {
      const __m512i offsets = _mm512_set1_epi8(static_cast<char>(static_cast<unsigned char>(Format::code_offset)));
      correction = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), offsets, quants));
    }
    _mm512_store_si512(prepared, quants);
    _mm512_store_si512(prepared + 64, correction);
    spread_halves(0).store_aligned(reinterpret_cast<float*>(prepared + 128));
  }
}

// --- unpacking two weight blocks ---

// The bytes of `Blocks` consecutive blocks as up to 32 16-bit words (every legacy block has an
// even size); the words past them read as zero and are never touched in memory, so the last
// block of a mapped file is safe.
template <std::size_t Blocks, std::size_t BlockBytes>
inline __m512i load_block_words(const std::uint8_t* blocks) {
  static_assert(Blocks * BlockBytes <= 64, "two blocks fit in a register");
  constexpr std::uint32_t mask = static_cast<std::uint32_t>((std::uint64_t{1} << (Blocks * BlockBytes / 2)) - 1);
  return _mm512_maskz_loadu_epi16(_cvtu32_mask32(mask), blocks);
}

// vpermw index that copies each block's 16 nibble bytes (8 words from `nibble_word`) twice:
// 128-bit lanes [first, first, second, second].
inline __m512i nibble_gather_index(int nibble_word, int block_words) {
  alignas(64) std::int16_t index[32];
  for (int word = 0; word < 32; ++word) index[word] = static_cast<std::int16_t>((word / 16) * block_words + nibble_word + word % 8);
  return _mm512_load_si512(index);
}

// vpermw index for the F16 fields: words 0..7 <- the first block's `scale_word`, 8..15 <- the
// second's; words 16..31 the same for `minimum_word`.
inline __m512i scale_gather_index(int scale_word, int minimum_word, int block_words) {
  alignas(64) std::int16_t index[32];
  for (int word = 0; word < 32; ++word) {
    index[word] = static_cast<std::int16_t>(((word / 8) % 2) * block_words + (word < 16 ? scale_word : minimum_word));
  }
  return _mm512_load_si512(index);
}

// Lanes [first, first, second, second] of packed nibbles -> 64 codes in natural order: a
// block's byte j holds value j in its low nibble and value j + 16 in its high one.
inline __m512i split_nibbles(__m512i doubled) {
  const __m512i shifts = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);  // 64-bit lanes 7..0
  return _mm512_and_si512(_mm512_srlv_epi64(doubled, shifts), _mm512_set1_epi8(0x0f));
}

// Adds 16 to the codes whose fifth bit is set (Q5_0, Q5_1: 32 bits per block at `high_at`).
template <std::size_t Blocks, std::size_t BlockBytes, std::size_t HighAt>
inline __m512i add_fifth_bits(__m512i codes, const std::uint8_t* blocks) {
  const std::uint64_t first = read_u32(blocks + HighAt);
  const std::uint64_t second = Blocks == 2 ? read_u32(blocks + BlockBytes + HighAt) : 0;
  return _mm512_mask_add_epi8(codes, _cvtu64_mask64(first | (second << 32)), codes, _mm512_set1_epi8(16));
}

// Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL: nibbles at word `NibbleWord`, F16 scale at word 0 and for
// the _1 types the F16 minimum at word 1.
template <std::size_t BlockBytes, int NibbleWord, bool HasMinimum>
struct LegacyNibbleUnpacker {
  __m512i nibble_index;
  __m512i scale_index;
  // A written-out constructor, not default member initializers: GCC compiles implicit
  // constructors without the instruction set's target pragma.
  LegacyNibbleUnpacker()
      : nibble_index(nibble_gather_index(NibbleWord, static_cast<int>(BlockBytes / 2))),
        scale_index(scale_gather_index(0, 1, static_cast<int>(BlockBytes / 2))) {}

  template <std::size_t Blocks>
  LegacyWeightStep unpack(const std::uint8_t* blocks) const {
    const __m512i words = load_block_words<Blocks, BlockBytes>(blocks);
    const __m512i scales = _mm512_permutexvar_epi16(scale_index, words);
    LegacyWeightStep step;
    step.codes = split_nibbles(_mm512_permutexvar_epi16(nibble_index, words));
    step.scale = float_batch(_mm512_cvtph_ps(_mm512_castsi512_si256(scales)));
    step.minimum = HasMinimum ? float_batch(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(scales, 1))) : float_batch(0.0f);
    return step;
  }
};

// Q4_0 [F16 d][16 nibble bytes]: u = nibble, q = u - 8.
struct LegacyQ4_0 : LegacyFormatTraits<DType::q4_0, 18, 8, false> {
  LegacyNibbleUnpacker<18, 1, false> unpacker;
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* blocks) const {
    return unpacker.unpack<Blocks>(blocks);
  }
};

// Q4_1 [F16 d][F16 m][16 nibble bytes]: q = u.
struct LegacyQ4_1 : LegacyFormatTraits<DType::q4_1, 20, 0, true> {
  LegacyNibbleUnpacker<20, 2, true> unpacker;
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* blocks) const {
    return unpacker.unpack<Blocks>(blocks);
  }
};

// Q5_0 [F16 d][4 bytes fifth bits][16 nibble bytes]: u = nibble + 16 * bit, q = u - 16.
struct LegacyQ5_0 : LegacyFormatTraits<DType::q5_0, 22, 16, false> {
  LegacyNibbleUnpacker<22, 3, false> unpacker;
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* blocks) const {
    LegacyWeightStep step = unpacker.unpack<Blocks>(blocks);
    step.codes = add_fifth_bits<Blocks, 22, 2>(step.codes, blocks);
    return step;
  }
};

// Q5_1 [F16 d][F16 m][4 bytes fifth bits][16 nibble bytes]: q = u.
struct LegacyQ5_1 : LegacyFormatTraits<DType::q5_1, 24, 0, true> {
  LegacyNibbleUnpacker<24, 4, true> unpacker;
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* blocks) const {
    LegacyWeightStep step = unpacker.unpack<Blocks>(blocks);
    step.codes = add_fifth_bits<Blocks, 24, 4>(step.codes, blocks);
    return step;
  }
};

// IQ4_NL [F16 d][16 index bytes]: u = level[index] + 128, looked up in each 128-bit lane.
struct LegacyIQ4_NL : LegacyFormatTraits<DType::iq4_nl, 18, 128, false> {
  LegacyNibbleUnpacker<18, 1, false> unpacker;
  __m512i levels;
  // A written-out constructor: see LegacyNibbleUnpacker.
  LegacyIQ4_NL()
      : levels(_mm512_xor_si512(_mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(legacy_iq4_nl_levels))),
                                _mm512_set1_epi8(static_cast<char>(0x80)))) {}
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* blocks) const {
    LegacyWeightStep step = unpacker.unpack<Blocks>(blocks);
    step.codes = _mm512_shuffle_epi8(levels, step.codes);
    return step;
  }
};

// Q8_0 [F16 d][32 int8]: u = q + 128 (the sign bit flipped). Two blocks are 68 bytes, so the
// quants come in two loads and the scales (words 0 and 17) in a third.
struct LegacyQ8_0 : LegacyFormatTraits<DType::q8_0, 34, 128, false> {
  __m512i scale_index;
  LegacyQ8_0() : scale_index(scale_gather_index(0, 0, 17)) {}  // written out: see LegacyNibbleUnpacker
  template <std::size_t Blocks>
  LegacyWeightStep load(const std::uint8_t* blocks) const {
    const __m256i first = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blocks + 2));
    const __m256i second = Blocks == 2 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blocks + 36)) : _mm256_setzero_si256();
    const __m512i scales = _mm512_permutexvar_epi16(scale_index, load_block_words<1, Blocks == 2 ? 36 : 2>(blocks));
    LegacyWeightStep step;
    step.codes = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(first), second, 1), _mm512_set1_epi8(static_cast<char>(0x80)));
    step.scale = float_batch(_mm512_cvtph_ps(_mm512_castsi512_si256(scales)));
    step.minimum = float_batch(0.0f);
    return step;
  }
};

// sum + this step's contribution to dot(weight row, token).
template <class Format>
inline float_batch legacy_multiply_add(const LegacyWeightStep& weights, const LegacyTokenStep& token, float_batch sum) {
  if constexpr (Format::has_minimum) {
    const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), weights.codes, token.quants);
    sum = fma(weights.minimum, float_batch(_mm512_castsi512_ps(token.correction)), sum);
    return fma(float_batch(_mm512_cvtepi32_ps(dot)), weights.scale * token.scale, sum);
  } else {
    const __m512i dot = _mm512_dpbusd_epi32(token.correction, weights.codes, token.quants);
    return fma(float_batch(_mm512_cvtepi32_ps(dot)), weights.scale * token.scale, sum);
  }
}

#include "quant_legacy_avx512_prompt.inl"
