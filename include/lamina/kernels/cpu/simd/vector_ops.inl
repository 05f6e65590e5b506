// lamina/kernels/cpu/simd/vector_ops.inl — element-wise kernels (dot, RMSNorm, SwiGLU, residual
// add, softmax's exponentials, F16 conversions for the KV cache) for one instruction set.
//
// Included by kernels/cpu/instantiate.hpp inside lamina::cpu::<instruction set>, after
// float_batch.inl; do not include it anywhere else. Each function is the SIMD form of the op of
// the same name in kernels/reference.hpp.

// unroll<Count>(body) calls body(UnrollIndex<i>()) for i = 0 .. Count - 1, unrolled at
// compile time. The loops over a tile's rows, tokens and registers use it so that accumulators
// and unpacked rows live in registers: compilers at -O2 keep such loops rolled, and the small
// arrays they index in memory (2x slower).
template <std::size_t Index>
struct UnrollIndex {
  constexpr operator std::size_t() const { return Index; }
};
template <std::size_t Index, std::size_t Count>
struct Unroller {
  template <class Body>
  LAMINA_CPU_INLINE static void run(Body& body) {
    body(UnrollIndex<Index>());
    Unroller<Index + 1, Count>::run(body);
  }
};
template <std::size_t Count>
struct Unroller<Count, Count> {
  template <class Body>
  LAMINA_CPU_INLINE static void run(Body&) {}
};
template <std::size_t Count, class Body>
LAMINA_CPU_INLINE void unroll(Body&& body) {
  Unroller<0, Count>::run(body);
}

// sum_i a[i] * b[i] with four independent vector accumulators (hides the FMA latency); the
// order of the additions is fixed, so the result is reproducible.
inline float dot(const float* a, const float* b, std::size_t count) {
  float_batch sum0(0.0f), sum1(0.0f), sum2(0.0f), sum3(0.0f);
  std::size_t i = 0;
  for (; i + 4 * float_lanes <= count; i += 4 * float_lanes) {
    sum0 = fma(float_batch::load_unaligned(a + i), float_batch::load_unaligned(b + i), sum0);
    sum1 = fma(float_batch::load_unaligned(a + i + float_lanes), float_batch::load_unaligned(b + i + float_lanes), sum1);
    sum2 = fma(float_batch::load_unaligned(a + i + 2 * float_lanes), float_batch::load_unaligned(b + i + 2 * float_lanes), sum2);
    sum3 = fma(float_batch::load_unaligned(a + i + 3 * float_lanes), float_batch::load_unaligned(b + i + 3 * float_lanes), sum3);
  }
  for (; i + float_lanes <= count; i += float_lanes) {
    sum0 = fma(float_batch::load_unaligned(a + i), float_batch::load_unaligned(b + i), sum0);
  }
  float sum = reduce_add((sum0 + sum1) + (sum2 + sum3));
  for (; i < count; ++i) sum += a[i] * b[i];
  return sum;
}

inline void rms_norm(const float* x, const float* weight, float* out, std::size_t count, float epsilon) {
  const float mean_square = dot(x, x, count) / static_cast<float>(count);
  const float scale = 1.0f / square_root(mean_square + epsilon);
  const float_batch scale_batch(scale);
  std::size_t i = 0;
  for (; i + float_lanes <= count; i += float_lanes) {
    (float_batch::load_unaligned(x + i) * scale_batch * float_batch::load_unaligned(weight + i)).store_unaligned(out + i);
  }
  for (; i < count; ++i) out[i] = x[i] * scale * weight[i];
}

inline float_batch silu_mul(const float_batch& gate, const float_batch& up) {
  return gate / (float_batch(1.0f) + exp(-gate)) * up;
}

// The values past the last full vector go through the same vector operation (copied into a
// padded vector), so a value is computed the same way wherever it sits in the row.
inline void silu_mul(float* gate, const float* up, std::size_t count) {
  std::size_t i = 0;
  for (; i + float_lanes <= count; i += float_lanes) {
    silu_mul(float_batch::load_unaligned(gate + i), float_batch::load_unaligned(up + i)).store_unaligned(gate + i);
  }
  if (i == count) return;
  alignas(64) float tail_gate[float_lanes] = {}, tail_up[float_lanes] = {};
  for (std::size_t j = i; j < count; ++j) tail_gate[j - i] = gate[j], tail_up[j - i] = up[j];
  silu_mul(float_batch::load_aligned(tail_gate), float_batch::load_aligned(tail_up)).store_aligned(tail_gate);
  for (std::size_t j = i; j < count; ++j) gate[j] = tail_gate[j - i];
}

inline void add(float* y, const float* x, std::size_t count) {
  std::size_t i = 0;
  for (; i + float_lanes <= count; i += float_lanes) {
    (float_batch::load_unaligned(y + i) + float_batch::load_unaligned(x + i)).store_unaligned(y + i);
  }
  for (; i < count; ++i) y[i] += x[i];
}

// y += scale * x. The values past the last full vector go through the same vector operation
// (copied into a padded vector), so each y[i] is computed the same way wherever the range
// starts: LoRA adds rows of B to chunks of outputs whose bounds follow the thread count.
inline void scaled_add(float* y, const float* x, float scale, std::size_t count) {
  const float_batch scale_batch(scale);
  std::size_t i = 0;
  for (; i + float_lanes <= count; i += float_lanes) {
    fma(float_batch::load_unaligned(x + i), scale_batch, float_batch::load_unaligned(y + i)).store_unaligned(y + i);
  }
  if (i == count) return;
  alignas(64) float tail_y[float_lanes] = {}, tail_x[float_lanes] = {};
  for (std::size_t j = i; j < count; ++j) tail_y[j - i] = y[j], tail_x[j - i] = x[j];
  fma(float_batch::load_aligned(tail_x), scale_batch, float_batch::load_aligned(tail_y)).store_aligned(tail_y);
  for (std::size_t j = i; j < count; ++j) y[j] = tail_y[j - i];
}

// x = exp(x - maximum); returns the sum. The tail as in silu_mul; its padding lanes are
// exp(-inf) = 0 and add nothing.
inline float exp_shifted(float* x, float maximum, std::size_t count) {
  const float_batch shift(maximum);
  float_batch sum_batch(0.0f);
  std::size_t i = 0;
  for (; i + float_lanes <= count; i += float_lanes) {
    const float_batch e = exp(float_batch::load_unaligned(x + i) - shift);
    e.store_unaligned(x + i);
    sum_batch += e;
  }
  if (i < count) {
    alignas(64) float tail[float_lanes];
    for (std::size_t j = 0; j < float_lanes; ++j) tail[j] = i + j < count ? x[i + j] : -positive_infinity;
    const float_batch e = exp(float_batch::load_aligned(tail) - shift);
    e.store_aligned(tail);
    sum_batch += e;
    for (std::size_t j = i; j < count; ++j) x[j] = tail[j - i];
  }
  return reduce_add(sum_batch);
}

// --- F16 rows: hardware conversion (F16C) where the instruction set has it ---
#if LAMINA_CPU_TARGET >= 2
inline float_batch load_f16(const std::uint16_t* source) {
#  if LAMINA_CPU_TARGET == 3
  return float_batch(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(source))));
#  else
  return float_batch(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(source))));
#  endif
}
inline void store_f16(const float_batch& values, std::uint16_t* destination) {
#  if LAMINA_CPU_TARGET == 3
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(destination), _mm512_cvtps_ph(values, _MM_FROUND_TO_NEAREST_INT));
#  else
  _mm_storeu_si128(reinterpret_cast<__m128i*>(destination), _mm256_cvtps_ph(values, _MM_FROUND_TO_NEAREST_INT));
#  endif
}
#else
inline float_batch load_f16(const std::uint16_t* source) {
  alignas(64) float converted[float_lanes];
  for (std::size_t lane = 0; lane < float_lanes; ++lane) converted[lane] = f16_to_f32(source[lane]);
  return float_batch::load_aligned(converted);
}
inline void store_f16(const float_batch& values, std::uint16_t* destination) {
  alignas(64) float unpacked[float_lanes];
  values.store_aligned(unpacked);
  for (std::size_t lane = 0; lane < float_lanes; ++lane) destination[lane] = f32_to_f16(unpacked[lane]);
}
#endif

inline void f32_to_f16_row(const float* x, std::uint16_t* out, std::size_t count) {
  std::size_t i = 0;
  for (; i + float_lanes <= count; i += float_lanes) store_f16(float_batch::load_unaligned(x + i), out + i);
  for (; i < count; ++i) out[i] = f32_to_f16(x[i]);
}

inline void f16_to_f32_row(const std::uint16_t* x, float* out, std::size_t count) {
  std::size_t i = 0;
  for (; i + float_lanes <= count; i += float_lanes) load_f16(x + i).store_unaligned(out + i);
  for (; i < count; ++i) out[i] = f16_to_f32(x[i]);
}

inline float dot_f16(const std::uint16_t* a, const float* b, std::size_t count) {
  float_batch sum0(0.0f), sum1(0.0f), sum2(0.0f), sum3(0.0f);
  std::size_t i = 0;
  for (; i + 4 * float_lanes <= count; i += 4 * float_lanes) {
    sum0 = fma(load_f16(a + i), float_batch::load_unaligned(b + i), sum0);
    sum1 = fma(load_f16(a + i + float_lanes), float_batch::load_unaligned(b + i + float_lanes), sum1);
    sum2 = fma(load_f16(a + i + 2 * float_lanes), float_batch::load_unaligned(b + i + 2 * float_lanes), sum2);
    sum3 = fma(load_f16(a + i + 3 * float_lanes), float_batch::load_unaligned(b + i + 3 * float_lanes), sum3);
  }
  for (; i + float_lanes <= count; i += float_lanes) sum0 = fma(load_f16(a + i), float_batch::load_unaligned(b + i), sum0);
  float sum = reduce_add((sum0 + sum1) + (sum2 + sum3));
  for (; i < count; ++i) sum += f16_to_f32(a[i]) * b[i];
  return sum;
}

// y += scale * x, x in F16; the tail as in scaled_add.
inline void scaled_add_f16(float* y, const std::uint16_t* x, float scale, std::size_t count) {
  const float_batch scale_batch(scale);
  std::size_t i = 0;
  for (; i + float_lanes <= count; i += float_lanes) {
    fma(load_f16(x + i), scale_batch, float_batch::load_unaligned(y + i)).store_unaligned(y + i);
  }
  if (i == count) return;
  alignas(64) float tail_y[float_lanes] = {}, tail_x[float_lanes] = {};
  for (std::size_t j = i; j < count; ++j) tail_y[j - i] = y[j], tail_x[j - i] = f16_to_f32(x[j]);
  fma(float_batch::load_aligned(tail_x), scale_batch, float_batch::load_aligned(tail_y)).store_aligned(tail_y);
  for (std::size_t j = i; j < count; ++j) y[j] = tail_y[j - i];
}

// --- attention of the query heads sharing one KV head (see CpuKernels::attention_scores) ---
//
// Each key and value row is loaded (and converted from F16) once and used by every query head
// of the group. Head sizes up to 256 keep a row in registers.

inline void attention_scores(const float* queries, std::size_t query_count, std::size_t head_size, CacheRows keys,
                             const std::uint32_t* cells, std::size_t cell_count, float scale, float* scores) {
  float row[256];  // the current key row as floats
  for (std::size_t j = 0; j < cell_count; ++j) {
    const std::uint8_t* key = keys.data + cells[j] * keys.stride;
    const float* key_row = reinterpret_cast<const float*>(key);
    if (keys.f16) {
      f16_to_f32_row(reinterpret_cast<const std::uint16_t*>(key), row, head_size);
      key_row = row;
    }
    for (std::size_t h = 0; h < query_count; ++h) scores[h * cell_count + j] = dot(queries + h * head_size, key_row, head_size) * scale;
  }
}

inline void attention_values(const float* weights, std::size_t query_count, std::size_t head_size, CacheRows values,
                             const std::uint32_t* cells, std::size_t cell_count, float* out) {
  float row[256];  // the current value row as floats
  for (std::size_t i = 0; i < query_count * head_size; ++i) out[i] = 0.0f;
  for (std::size_t j = 0; j < cell_count; ++j) {
    const std::uint8_t* value = values.data + cells[j] * values.stride;
    const float* value_row = reinterpret_cast<const float*>(value);
    if (values.f16) {
      f16_to_f32_row(reinterpret_cast<const std::uint16_t*>(value), row, head_size);
      value_row = row;
    }
    for (std::size_t h = 0; h < query_count; ++h) scaled_add(out + h * head_size, value_row, weights[h * cell_count + j], head_size);
  }
}
