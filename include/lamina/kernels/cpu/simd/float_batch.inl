// lamina/kernels/cpu/simd/float_batch.inl — one vector register of floats for one instruction
// set: float_batch (4 lanes with SSE2, 8 with AVX2, 16 with AVX-512) and the handful of
// operations the kernels need.
//
// Included by kernels/cpu/instantiate.hpp inside lamina::cpu::<instruction set>, with that set's
// target attribute in force; do not include it anywhere else.
//
// Why lamina's own and not xsimd's batch: xsimd picks its instruction sets from the including
// file's -m flags (XSIMD_WITH_AVX2 comes from __AVX2__) and its functions are plain inline
// templates in namespace xsimd. A single translation unit therefore cannot hold xsimd's AVX2
// code next to its SSE2 code, and an AVX-512 file emits weak xsimd symbols (constants,
// std::exp(float)) that the linker may keep for the whole program. Everything here lives in the
// instruction set's namespace and is compiled with its target, so lamina.hpp alone carries every
// instruction set's kernels and picks one at run time.
//
// Semantics follow the instructions: max/min return the second operand when either is NaN,
// comparisons are ordered (false for NaN), fma rounds once where the set has FMA (AVX2, AVX-512)
// and twice on SSE2.

#if LAMINA_CPU_TARGET == 3
using native_floats = __m512;
using native_ints = __m512i;
using native_mask = __mmask16;
#elif LAMINA_CPU_TARGET == 2
using native_floats = __m256;
using native_ints = __m256i;
using native_mask = __m256;  // all-ones / all-zeros lanes
#else
using native_floats = __m128;
using native_ints = __m128i;
using native_mask = __m128;
#endif

// The result of a comparison, one flag per lane; select() and any() take it.
struct float_mask {
  native_mask value;
};

struct float_batch {
  static constexpr std::size_t size = sizeof(native_floats) / sizeof(float);
  native_floats value;

  float_batch() = default;
  LAMINA_CPU_INLINE float_batch(native_floats native) : value(native) {}
  // Every lane set to `scalar`.
  LAMINA_CPU_INLINE float_batch(float scalar) : value(broadcast(scalar)) {}
  LAMINA_CPU_INLINE operator native_floats() const { return value; }

  LAMINA_CPU_INLINE static float_batch load_unaligned(const float* source) {
#if LAMINA_CPU_TARGET == 3
    return _mm512_loadu_ps(source);
#elif LAMINA_CPU_TARGET == 2
    return _mm256_loadu_ps(source);
#else
    return _mm_loadu_ps(source);
#endif
  }
  // `source` aligned to the register's size.
  LAMINA_CPU_INLINE static float_batch load_aligned(const float* source) {
#if LAMINA_CPU_TARGET == 3
    return _mm512_load_ps(source);
#elif LAMINA_CPU_TARGET == 2
    return _mm256_load_ps(source);
#else
    return _mm_load_ps(source);
#endif
  }
  LAMINA_CPU_INLINE void store_unaligned(float* destination) const {
#if LAMINA_CPU_TARGET == 3
    _mm512_storeu_ps(destination, value);
#elif LAMINA_CPU_TARGET == 2
    _mm256_storeu_ps(destination, value);
#else
    _mm_storeu_ps(destination, value);
#endif
  }
  LAMINA_CPU_INLINE void store_aligned(float* destination) const {
#if LAMINA_CPU_TARGET == 3
    _mm512_store_ps(destination, value);
#elif LAMINA_CPU_TARGET == 2
    _mm256_store_ps(destination, value);
#else
    _mm_store_ps(destination, value);
#endif
  }

  LAMINA_CPU_INLINE float_batch& operator+=(const float_batch& other) { return *this = *this + other; }
  LAMINA_CPU_INLINE float_batch& operator-=(const float_batch& other) { return *this = *this - other; }
  LAMINA_CPU_INLINE float_batch& operator*=(const float_batch& other) { return *this = *this * other; }

 private:
  LAMINA_CPU_INLINE static native_floats broadcast(float scalar) {
#if LAMINA_CPU_TARGET == 3
    return _mm512_set1_ps(scalar);
#elif LAMINA_CPU_TARGET == 2
    return _mm256_set1_ps(scalar);
#else
    return _mm_set1_ps(scalar);
#endif
  }

  friend LAMINA_CPU_INLINE float_batch operator+(const float_batch& a, const float_batch& b) {
#if LAMINA_CPU_TARGET == 3
    return _mm512_add_ps(a, b);
#elif LAMINA_CPU_TARGET == 2
    return _mm256_add_ps(a, b);
#else
    return _mm_add_ps(a, b);
#endif
  }
  friend LAMINA_CPU_INLINE float_batch operator-(const float_batch& a, const float_batch& b) {
#if LAMINA_CPU_TARGET == 3
    return _mm512_sub_ps(a, b);
#elif LAMINA_CPU_TARGET == 2
    return _mm256_sub_ps(a, b);
#else
    return _mm_sub_ps(a, b);
#endif
  }
  friend LAMINA_CPU_INLINE float_batch operator*(const float_batch& a, const float_batch& b) {
#if LAMINA_CPU_TARGET == 3
    return _mm512_mul_ps(a, b);
#elif LAMINA_CPU_TARGET == 2
    return _mm256_mul_ps(a, b);
#else
    return _mm_mul_ps(a, b);
#endif
  }
  friend LAMINA_CPU_INLINE float_batch operator/(const float_batch& a, const float_batch& b) {
#if LAMINA_CPU_TARGET == 3
    return _mm512_div_ps(a, b);
#elif LAMINA_CPU_TARGET == 2
    return _mm256_div_ps(a, b);
#else
    return _mm_div_ps(a, b);
#endif
  }
  friend LAMINA_CPU_INLINE float_batch operator-(const float_batch& a) { return float_batch(-0.0f) ^ a; }
  // Bitwise xor of the lanes' bits (the sign flip above).
  friend LAMINA_CPU_INLINE float_batch operator^(const float_batch& a, const float_batch& b) {
#if LAMINA_CPU_TARGET == 3
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
#elif LAMINA_CPU_TARGET == 2
    return _mm256_xor_ps(a, b);
#else
    return _mm_xor_ps(a, b);
#endif
  }

  // Ordered comparisons: false in a lane where either value is NaN.
#if LAMINA_CPU_TARGET == 3
  friend LAMINA_CPU_INLINE float_mask operator>(const float_batch& a, const float_batch& b) { return {_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)}; }
  friend LAMINA_CPU_INLINE float_mask operator>=(const float_batch& a, const float_batch& b) { return {_mm512_cmp_ps_mask(a, b, _CMP_GE_OQ)}; }
  friend LAMINA_CPU_INLINE float_mask operator<=(const float_batch& a, const float_batch& b) { return {_mm512_cmp_ps_mask(a, b, _CMP_LE_OQ)}; }
  friend LAMINA_CPU_INLINE float_mask operator==(const float_batch& a, const float_batch& b) { return {_mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ)}; }
#elif LAMINA_CPU_TARGET == 2
  friend LAMINA_CPU_INLINE float_mask operator>(const float_batch& a, const float_batch& b) { return {_mm256_cmp_ps(a, b, _CMP_GT_OQ)}; }
  friend LAMINA_CPU_INLINE float_mask operator>=(const float_batch& a, const float_batch& b) { return {_mm256_cmp_ps(a, b, _CMP_GE_OQ)}; }
  friend LAMINA_CPU_INLINE float_mask operator<=(const float_batch& a, const float_batch& b) { return {_mm256_cmp_ps(a, b, _CMP_LE_OQ)}; }
  friend LAMINA_CPU_INLINE float_mask operator==(const float_batch& a, const float_batch& b) { return {_mm256_cmp_ps(a, b, _CMP_EQ_OQ)}; }
#else
  friend LAMINA_CPU_INLINE float_mask operator>(const float_batch& a, const float_batch& b) { return {_mm_cmpgt_ps(a, b)}; }
  friend LAMINA_CPU_INLINE float_mask operator>=(const float_batch& a, const float_batch& b) { return {_mm_cmpge_ps(a, b)}; }
  friend LAMINA_CPU_INLINE float_mask operator<=(const float_batch& a, const float_batch& b) { return {_mm_cmple_ps(a, b)}; }
  friend LAMINA_CPU_INLINE float_mask operator==(const float_batch& a, const float_batch& b) { return {_mm_cmpeq_ps(a, b)}; }
#endif
};

inline constexpr std::size_t float_lanes = float_batch::size;
// A constant, so no std::numeric_limits function is emitted into this instruction set's code.
inline constexpr float positive_infinity = std::numeric_limits<float>::infinity();

// sqrt(x) for one float, with the instruction (no call into <cmath>).
LAMINA_CPU_INLINE float square_root(float x) { return _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(x))); }

// a * b + c
LAMINA_CPU_INLINE float_batch fma(const float_batch& a, const float_batch& b, const float_batch& c) {
#if LAMINA_CPU_TARGET == 3
  return _mm512_fmadd_ps(a, b, c);
#elif LAMINA_CPU_TARGET == 2
  return _mm256_fmadd_ps(a, b, c);
#else
  return a * b + c;
#endif
}

// c - a * b
LAMINA_CPU_INLINE float_batch fnma(const float_batch& a, const float_batch& b, const float_batch& c) {
#if LAMINA_CPU_TARGET == 3
  return _mm512_fnmadd_ps(a, b, c);
#elif LAMINA_CPU_TARGET == 2
  return _mm256_fnmadd_ps(a, b, c);
#else
  return c - a * b;
#endif
}

// The sum of the lanes: halves added pairwise down to one lane (a fixed order, so reproducible).
LAMINA_CPU_INLINE float reduce_add(const float_batch& value) {
#if LAMINA_CPU_TARGET == 3
  const __m256 eight = _mm256_add_ps(_mm512_castps512_ps256(value), _mm512_extractf32x8_ps(value, 1));
  __m128 four = _mm_add_ps(_mm256_castps256_ps128(eight), _mm256_extractf128_ps(eight, 1));
#elif LAMINA_CPU_TARGET == 2
  __m128 four = _mm_add_ps(_mm256_castps256_ps128(value), _mm256_extractf128_ps(value, 1));
#else
  __m128 four = value;
#endif
  four = _mm_add_ps(four, _mm_movehl_ps(four, four));
  four = _mm_add_ss(four, _mm_shuffle_ps(four, four, 1));
  return _mm_cvtss_f32(four);
}

// |value|: the sign bit cleared.
LAMINA_CPU_INLINE float_batch abs(const float_batch& value) {
#if LAMINA_CPU_TARGET == 3
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(value), _mm512_set1_epi32(0x7fffffff)));
#elif LAMINA_CPU_TARGET == 2
  return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), value);
#else
  return _mm_andnot_ps(_mm_set1_ps(-0.0f), value);
#endif
}

// Lane-wise maximum and minimum (x86: `b` where either is NaN).
LAMINA_CPU_INLINE float_batch max(const float_batch& a, const float_batch& b) {
#if LAMINA_CPU_TARGET == 3
  return _mm512_max_ps(a, b);
#elif LAMINA_CPU_TARGET == 2
  return _mm256_max_ps(a, b);
#else
  return _mm_max_ps(a, b);
#endif
}
LAMINA_CPU_INLINE float_batch min(const float_batch& a, const float_batch& b) {
#if LAMINA_CPU_TARGET == 3
  return _mm512_min_ps(a, b);
#elif LAMINA_CPU_TARGET == 2
  return _mm256_min_ps(a, b);
#else
  return _mm_min_ps(a, b);
#endif
}

// Per lane: `if_true` where the mask is set, else `if_false`.
LAMINA_CPU_INLINE float_batch select(const float_mask& mask, const float_batch& if_true, const float_batch& if_false) {
#if LAMINA_CPU_TARGET == 3
  return _mm512_mask_blend_ps(mask.value, if_false, if_true);
#elif LAMINA_CPU_TARGET == 2
  return _mm256_blendv_ps(if_false, if_true, mask.value);
#else
  return _mm_or_ps(_mm_and_ps(mask.value, if_true), _mm_andnot_ps(mask.value, if_false));
#endif
}

LAMINA_CPU_INLINE float_mask isnan(const float_batch& value) {
#if LAMINA_CPU_TARGET == 3
  return {_mm512_cmp_ps_mask(value, value, _CMP_UNORD_Q)};
#elif LAMINA_CPU_TARGET == 2
  return {_mm256_cmp_ps(value, value, _CMP_UNORD_Q)};
#else
  return {_mm_cmpunord_ps(value, value)};
#endif
}

// Whether any lane of the mask is set.
LAMINA_CPU_INLINE bool any(const float_mask& mask) {
#if LAMINA_CPU_TARGET == 3
  return mask.value != 0;
#elif LAMINA_CPU_TARGET == 2
  return _mm256_movemask_ps(mask.value) != 0;
#else
  return _mm_movemask_ps(mask.value) != 0;
#endif
}

// e^x per lane, within 3 ulp: +inf past the largest float, subnormal results down to the
// smallest one, NaN stays NaN. Cephes' expf: x = k ln 2 + r with k = round(x / ln 2) and ln 2
// split in two parts so that r is nearly exact; e^r from a polynomial, 1 + r + r² P(r); 2^k as
// two factors 2^(k/2) · 2^(k - k/2) put in the exponent bits, so that every k of the float
// range (-150 .. 128) gives a valid exponent field in each.
LAMINA_CPU_INLINE float_batch exp(const float_batch& x) {
  const float_batch scaled = x * float_batch(1.44269504088896341f);  // x / ln 2
#if LAMINA_CPU_TARGET == 3
  const native_ints k = _mm512_cvtps_epi32(scaled);  // round to nearest
  const native_ints half = _mm512_srai_epi32(k, 1), rest = _mm512_sub_epi32(k, half);
  const float_batch k_float = _mm512_cvtepi32_ps(k);
  const float_batch half_power = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(half, _mm512_set1_epi32(127)), 23));
  const float_batch rest_power = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(rest, _mm512_set1_epi32(127)), 23));
#elif LAMINA_CPU_TARGET == 2
  const native_ints k = _mm256_cvtps_epi32(scaled);
  const native_ints half = _mm256_srai_epi32(k, 1), rest = _mm256_sub_epi32(k, half);
  const float_batch k_float = _mm256_cvtepi32_ps(k);
  const float_batch half_power = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
  const float_batch rest_power = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(rest, _mm256_set1_epi32(127)), 23));
#else
  const native_ints k = _mm_cvtps_epi32(scaled);
  const native_ints half = _mm_srai_epi32(k, 1), rest = _mm_sub_epi32(k, half);
  const float_batch k_float = _mm_cvtepi32_ps(k);
  const float_batch half_power = _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(half, _mm_set1_epi32(127)), 23));
  const float_batch rest_power = _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(rest, _mm_set1_epi32(127)), 23));
#endif
  const float_batch r = fnma(k_float, float_batch(-2.12194440e-4f), fnma(k_float, float_batch(0.693359375f), x));
  float_batch polynomial = float_batch(1.9875691500e-4f);
  polynomial = fma(polynomial, r, float_batch(1.3981999507e-3f));
  polynomial = fma(polynomial, r, float_batch(8.3334519073e-3f));
  polynomial = fma(polynomial, r, float_batch(4.1665795894e-2f));
  polynomial = fma(polynomial, r, float_batch(1.6666665459e-1f));
  polynomial = fma(polynomial, r, float_batch(5.0000001201e-1f));
  const float_batch e_r = fma(polynomial, r * r, r + float_batch(1.0f));
  const float_batch result = e_r * half_power * rest_power;
  // Outside these bounds k leaves the range above (and the result is 0 or +inf anyway).
  const float_batch bounded = select(x <= float_batch(-104.0f), float_batch(0.0f), result);
  return select(x > float_batch(88.7228394f), float_batch(positive_infinity), bounded);
}
