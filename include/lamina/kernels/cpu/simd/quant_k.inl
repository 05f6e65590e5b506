// lamina/kernels/cpu/simd/quant_k.inl — integer kernels for the 256-value block types
// (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) against Q8_K activations, for one instruction set.
//
// Included by kernels/cpu/instantiate.hpp inside lamina::cpu::<instruction set>; do not include
// it anywhere else. Its helpers live in a nested namespace `k_quants` (still inside the
// instruction set's namespace, so the ODR guard holds, and apart from quant_legacy.inl's names).
//
// The arithmetic (GGML's ggml_vec_dot_q*_K_q8_K, in one form for every type):
//   A weight super-block of 256 values is read as
//     weight_i = D · scale_g · code_i − Dmin · min_g        (g = i / 16: groups of 16 values)
//   with unsigned integer codes and small integer scales and minimums (quant_k_formats.inl
//   gives each type's fields), and a Q8_K activation block as activation_i = d · q_i, with
//   int8 q_i and the group sums S_g = Σ_{i in g} q_i stored next to them. So
//     Σ_i weight_i · activation_i = d · (D · Σ_g scale_g · Σ_{i in g} code_i · q_i  −  Dmin · Σ_g min_g · S_g)
//   The two sums over g are exact in 32-bit integers (at most 2^28); only the last products
//   with D, Dmin and d are float. Results therefore differ from a plain float computation on the
//   same Q8_K activations by float rounding alone.
//
// Three kernels, chosen by instruction set and token count (never by the row range, so results
// do not depend on how rows are split between threads):
//   - one token (decoding, bound by memory bandwidth) up to 4, AVX2 and AVX-512: row_tokens
//     streams each weight row once (with software prefetch) and decodes each block once for
//     all the tokens, using GGML's pattern per vector of codes: u8 × s8 products summed in
//     pairs (maddubs), then pairs × group scale summed (madd / dpwssd).
//   - more tokens (prompts, bound by arithmetic), AVX2 and AVX-512: a tile of 8 / 16 rows is
//     decoded once into a buffer where each vector holds 4 consecutive codes of every row
//     ("lanes are rows"), then for each group of tokens every code vector is multiplied with 4
//     broadcast activation bytes (AVX-512 VNNI dpbusd: 64 multiply-adds in one instruction).
//   - SSE2 (no u8 × s8 instruction): rows decoded once to int16 codes × group scale, activations
//     widened to int16, products with madd.
//
// Activations come quantized by quantize_row_q8_k below, which gives the same bytes as GGML's
// quantize_row_q8_K_ref (and lamina's quant::quantize_block for BlockQ8_K).

namespace k_quants {

// Fully unrolls the short loops of fixed length (tokens of a tile, chunks of a block) so that
// their accumulators stay in registers; GCC's -O2 leaves them rolled, and then in memory.
#if defined(__GNUC__) || defined(__clang__)
#  define LAMINA_K_QUANTS_UNROLL _Pragma("GCC unroll 16")
#else
#  define LAMINA_K_QUANTS_UNROLL
#endif

// Small helpers of the inner loops, to be inlined whatever the compiler's size heuristics say
// (a call that returns a vector through memory costs more than the helper's own work).
#if defined(__GNUC__) || defined(__clang__)
#  define LAMINA_K_QUANTS_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#  define LAMINA_K_QUANTS_INLINE __forceinline
#else
#  define LAMINA_K_QUANTS_INLINE inline
#endif

#include "quant_k_formats.inl"

// Q8_K block: F32 scale d, 256 int8 quants, 16 int16 group sums (quant/blocks.hpp BlockQ8_K).
inline constexpr std::size_t q8k_block_bytes = 292;
inline constexpr std::size_t q8k_quants_offset = 4;
inline constexpr std::size_t q8k_sums_offset = 260;

// --- float -> Q8_K ---
//
// GGML (quantize_row_q8_K_ref): the value of largest magnitude (the first one if several) maps
// to -127: inverse = -127 / extreme, q_i = min(127, nearest_int(inverse · x_i)), d = 1 / inverse.
// nearest_int rounds half to even, which is what the CPU's float -> int conversion does in its
// default rounding mode. NaN never counts as largest and gives 0 (nearest_int's bit trick does);
// a block whose extreme is so small that the inverse overflows gives all zeros (the trick's
// result for infinities, cast to int8).

inline std::int8_t* quantize_values_q8_k(const float* values, float inverse, std::int8_t* quants) {
  const float_batch inverse_batch(inverse);
#if LAMINA_CPU_TARGET == 3
  for (int i = 0; i < 256; i += 16) {
    const __m512 products = float_batch::load_unaligned(values + i) * inverse_batch;
    const __mmask16 ordered = _mm512_cmp_ps_mask(products, products, _CMP_ORD_Q);  // NaN -> 0
    const __m512i rounded = _mm512_maskz_mov_epi32(ordered, _mm512_cvtps_epi32(products));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(quants + i), _mm512_cvtsepi32_epi8(rounded));
  }
#elif LAMINA_CPU_TARGET == 2
  for (int i = 0; i < 256; i += 32) {
    __m256i rounded[4];
    LAMINA_K_QUANTS_UNROLL for (int part = 0; part < 4; ++part) {
      const __m256 products = float_batch::load_unaligned(values + i + 8 * part) * inverse_batch;
      const __m256i ordered = _mm256_castps_si256(_mm256_cmp_ps(products, products, _CMP_ORD_Q));  // NaN -> 0
      rounded[part] = _mm256_and_si256(_mm256_cvtps_epi32(products), ordered);
    }
    // The packs work within 128-bit lanes; the permutation puts the 32 bytes back in order.
    const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(rounded[0], rounded[1]), _mm256_packs_epi32(rounded[2], rounded[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(quants + i),
                        _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
#else
  for (int i = 0; i < 256; i += 16) {
    __m128i rounded[4];
    LAMINA_K_QUANTS_UNROLL for (int part = 0; part < 4; ++part) {
      const __m128 products = float_batch::load_unaligned(values + i + 4 * part) * inverse_batch;
      rounded[part] = _mm_and_si128(_mm_cvtps_epi32(products), _mm_castps_si128(_mm_cmpord_ps(products, products)));
    }
    const __m128i packed = _mm_packs_epi16(_mm_packs_epi32(rounded[0], rounded[1]), _mm_packs_epi32(rounded[2], rounded[3]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(quants + i), packed);
  }
#endif
  return quants;
}

inline void quantize_block_q8_k(const float* values, std::uint8_t* out) {
  // The largest magnitude; `a > largest` is false for NaN, as in GGML's scalar loop.
  float_batch largest(0.0f);
  for (int i = 0; i < 256; i += static_cast<int>(float_lanes)) {
    const float_batch magnitude = abs(float_batch::load_unaligned(values + i));
    largest = select(magnitude > largest, magnitude, largest);
  }
  alignas(64) float lanes[float_lanes];
  largest.store_aligned(lanes);
  float largest_magnitude = 0.0f;
  for (std::size_t lane = 0; lane < float_lanes; ++lane) largest_magnitude = lanes[lane] > largest_magnitude ? lanes[lane] : largest_magnitude;
  if (largest_magnitude == 0.0f) {
    std::memset(out, 0, q8k_block_bytes);
    return;
  }
  // The first value with that magnitude gives the sign.
  float extreme = 0.0f;
  const float_batch target(largest_magnitude);
  for (int i = 0; i < 256; i += static_cast<int>(float_lanes)) {
    if (any(abs(float_batch::load_unaligned(values + i)) == target)) {
      int j = i;
      while (values[j] != largest_magnitude && -values[j] != largest_magnitude) ++j;
      extreme = values[j];
      break;
    }
  }
  const float inverse = -127.0f / extreme;
  const float scale = 1.0f / inverse;
  alignas(64) std::int8_t quants[256];
  if (inverse == positive_infinity || inverse == -positive_infinity) {
    std::memset(quants, 0, sizeof quants);
  } else {
    quantize_values_q8_k(values, inverse, quants);
  }
  // Group sums: psadbw adds 8 unsigned bytes, so bias each int8 by 128 and take 16 · 128 off.
  alignas(16) std::int16_t sums[16];
  const __m128i bias = _mm_set1_epi8(static_cast<char>(0x80));
  for (int group = 0; group < 16; ++group) {
    const __m128i biased = _mm_xor_si128(_mm_load_si128(reinterpret_cast<const __m128i*>(quants + 16 * group)), bias);
    const __m128i halves = _mm_sad_epu8(biased, _mm_setzero_si128());
    sums[group] = static_cast<std::int16_t>(_mm_cvtsi128_si32(halves) + _mm_cvtsi128_si32(_mm_srli_si128(halves, 8)) - 16 * 128);
  }
  std::memcpy(out, &scale, 4);
  std::memcpy(out + q8k_quants_offset, quants, 256);
  std::memcpy(out + q8k_sums_offset, sums, 32);
}

#include "quant_k_kernels.inl"

#undef LAMINA_K_QUANTS_UNROLL
#undef LAMINA_K_QUANTS_INLINE

}  // namespace k_quants

// --- the entry points matmul.inl calls ---

inline void quantize_row_q8_k(const float* x, void* out, std::size_t count) {
  std::uint8_t* bytes = static_cast<std::uint8_t*>(out);
  for (std::size_t block = 0; block < count / 256; ++block) {
    k_quants::quantize_block_q8_k(x + 256 * block, bytes + k_quants::q8k_block_bytes * block);
  }
}

// The activation format the integer kernel for `weight_type` takes; false: no integer kernel
// here (the float path runs).
inline bool k_quant_activation_format(DType weight_type, ActivationFormat* format) {
  switch (weight_type) {
    case DType::q2_k:
    case DType::q3_k:
    case DType::q4_k:
    case DType::q5_k:
    case DType::q6_k:
    case DType::iq4_xs:
      *format = ActivationFormat::q8_k;
      return true;
    default:
      return false;
  }
}

// The rows [row_begin, row_end) of `task` when this file has a kernel for its weight type.
inline bool k_quant_matmul_rows(const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  if (task.activation_format != ActivationFormat::q8_k || task.in % 256 != 0) return false;
  switch (task.weight_type) {
    case DType::q2_k: k_quants::matmul_rows<k_quants::Q2KFormat>(task, row_begin, row_end, scratch); return true;
    case DType::q3_k: k_quants::matmul_rows<k_quants::Q3KFormat>(task, row_begin, row_end, scratch); return true;
    case DType::q4_k: k_quants::matmul_rows<k_quants::Q4KFormat>(task, row_begin, row_end, scratch); return true;
    case DType::q5_k: k_quants::matmul_rows<k_quants::Q5KFormat>(task, row_begin, row_end, scratch); return true;
    case DType::q6_k: k_quants::matmul_rows<k_quants::Q6KFormat>(task, row_begin, row_end, scratch); return true;
    case DType::iq4_xs: k_quants::matmul_rows<k_quants::IQ4XSFormat>(task, row_begin, row_end, scratch); return true;
    default: return false;
  }
}
