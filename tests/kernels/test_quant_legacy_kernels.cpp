// The integer kernels for the 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL):
// the scalar twin (kernels/cpu/scalar_quant.hpp) and the SIMD kernels (kernels/cpu/simd/
// quant_legacy*.inl) on every instruction set this program contains and this processor runs:
//   - every table takes the same 8-bit activation format and quantizes to exactly the bytes of
//     the quant/ reference (GGML's _ref);
//   - each output equals a plain double computation from the dequantized weights and the same
//     Q8 activations (an independent check of the integer arithmetic, up to float rounding),
//     and every SIMD table equals the scalar twin up to the order of the float additions;
//   - results are identical for any split of the rows between chunks and any tile position;
//   - weights at odd addresses, odd block counts, many tokens.
#include <doctest/doctest.h>
#include <lamina/lamina.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using lamina::DType;
using lamina::cpu::ActivationFormat;
using lamina::cpu::CpuKernels;

const CpuKernels& scalar_table() { return *lamina::cpu::cpu_kernels_for(lamina::CpuArch::scalar); }

// The scalar twin first, then each SIMD table this program contains and this processor runs.
std::vector<const CpuKernels*> all_tables() {
  std::vector<const CpuKernels*> tables = {&scalar_table()};
  for (lamina::CpuArch arch : {lamina::CpuArch::sse2, lamina::CpuArch::avx2, lamina::CpuArch::avx512}) {
    const CpuKernels* kernels = lamina::cpu::cpu_kernels_for(arch);
    if (kernels != nullptr && lamina::cpu_supports(arch)) tables.push_back(kernels);
  }
  return tables;
}

std::vector<float> random_floats(std::size_t count, std::uint32_t seed, float spread = 1.0f) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> values(count);
  for (float& value : values) value = normal(generator);
  return values;
}

const DType legacy_types[] = {DType::q4_0, DType::q4_1, DType::q5_0, DType::q5_1, DType::q8_0, DType::iq4_nl};

std::uint16_t read_u16(const std::uint8_t* bytes) {
  std::uint16_t value;
  std::memcpy(&value, bytes, 2);
  return value;
}

// Weights whose codes cover every value the block can store (random bytes), with random but
// sane F16 scales and minimums, so the kernels meet the extremes (Q8_0's -128 included).
std::vector<std::uint8_t> random_weight_bytes(DType type, std::size_t out, std::size_t in, std::uint32_t seed) {
  const std::size_t block_bytes = lamina::dtype_traits(type).block_bytes;
  std::vector<std::uint8_t> bytes(out * in / 32 * block_bytes);
  std::mt19937 generator(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> normal(0.0f, 0.01f);
  for (std::uint8_t& value : bytes) value = static_cast<std::uint8_t>(byte(generator));
  const bool has_minimum = type == DType::q4_1 || type == DType::q5_1;
  for (std::size_t at = 0; at < bytes.size(); at += block_bytes) {
    const std::uint16_t scale = lamina::f32_to_f16(normal(generator));
    std::memcpy(&bytes[at], &scale, 2);
    if (has_minimum) {
      const std::uint16_t minimum = lamina::f32_to_f16(normal(generator) * 8);
      std::memcpy(&bytes[at + 2], &minimum, 2);
    }
  }
  return bytes;
}

// The bytes of a block that hold its codes (quant/blocks.hpp): from `first` to the block's end.
std::size_t first_code_byte(DType type) {
  switch (type) {
    case DType::q4_0: case DType::q5_0: case DType::q8_0: case DType::iq4_nl: return 2;  // after the F16 scale
    case DType::q4_1: case DType::q5_1: return 4;                                         // after scale and minimum
    default: return 0;
  }
}

// y[t][o] computed plainly in double from the dequantized weights (quant::dequantize_row) and
// the dequantized Q8 activations, for weight rows at `weight` (row stride `stride` bytes); an
// independent check of the integer kernels, which never see a float weight. GGML's minimum
// term of Q4_1/Q5_1 takes the activation block's stored s = F16(d · Σ a_i) (d before its F16
// rounding) rather than d_a · Σ a_i, so that difference, m_w · (s − d_a Σ a_i), is added.
// `tolerance` bounds the kernels' float rounding: a small multiple of the magnitude of the
// weights' two parts (scale · code and the value of code 0, which may cancel) times the
// activations, plus |m_w · s|.
void plain_products(DType type, const std::uint8_t* weight, std::size_t stride, std::size_t out, std::size_t in,
                    const std::vector<std::uint8_t>& activations, std::size_t activation_stride, std::size_t tokens,
                    std::vector<double>& expected, std::vector<double>& tolerance) {
  const bool q8_1 = type == DType::q4_1 || type == DType::q5_1;
  const DType activation_type = q8_1 ? DType::q8_1 : DType::q8_0;
  const std::size_t block_bytes = lamina::dtype_traits(type).block_bytes, row_bytes = lamina::row_bytes(type, in);
  const std::size_t activation_block_bytes = q8_1 ? 36 : 34, quants_at = q8_1 ? 4 : 2;
  expected.assign(tokens * out, 0.0);
  tolerance.assign(tokens * out, 0.0);
  std::vector<float> weight_row(in), zero_code_row(in), activation_row(in);
  std::vector<std::uint8_t> zero_codes(row_bytes);
  for (std::size_t o = 0; o < out; ++o) {
    const std::uint8_t* row = weight + o * stride;
    REQUIRE(lamina::quant::dequantize_row(type, row, weight_row.data(), in).ok());
    std::memcpy(zero_codes.data(), row, row_bytes);
    for (std::size_t b = 0; b < in / 32; ++b) {
      std::memset(zero_codes.data() + b * block_bytes + first_code_byte(type), 0, block_bytes - first_code_byte(type));
    }
    REQUIRE(lamina::quant::dequantize_row(type, zero_codes.data(), zero_code_row.data(), in).ok());
    for (std::size_t t = 0; t < tokens; ++t) {
      const std::uint8_t* token = activations.data() + t * activation_stride;
      REQUIRE(lamina::quant::dequantize_row(activation_type, token, activation_row.data(), in).ok());
      double sum = 0, magnitude = 0;
      for (std::size_t i = 0; i < in; ++i) {
        const double activation = activation_row[i], code_zero = zero_code_row[i];
        sum += static_cast<double>(weight_row[i]) * activation;
        magnitude += std::fabs((weight_row[i] - code_zero) * activation) + std::fabs(code_zero * activation);
      }
      for (std::size_t b = 0; q8_1 && b < in / 32; ++b) {
        const std::uint8_t* a = token + b * activation_block_bytes;
        long long quant_sum = 0;
        for (std::size_t j = 0; j < 32; ++j) quant_sum += static_cast<std::int8_t>(a[quants_at + j]);
        const double minimum = lamina::f16_to_f32(read_u16(row + b * block_bytes + 2));
        const double scaled_sum = lamina::f16_to_f32(read_u16(a + 2)), scale = lamina::f16_to_f32(read_u16(a));
        sum += minimum * (scaled_sum - scale * static_cast<double>(quant_sum));
        magnitude += std::fabs(minimum * scaled_sum);
      }
      expected[t * out + o] = sum;
      tolerance[t * out + o] = 2e-6 * magnitude + 1e-30;
    }
  }
}

// kernels.matmul_rows over [0, out) in the given pieces, on pre-quantized activations.
std::vector<float> run_rows(const CpuKernels& kernels, DType type, const std::uint8_t* weight, std::size_t stride, std::size_t out,
                            std::size_t in, const std::vector<std::uint8_t>& activations, std::size_t activation_stride,
                            std::size_t tokens, const std::vector<std::size_t>& piece_ends) {
  lamina::cpu::MatmulTask task;
  task.weight_type = type;
  task.weight = weight;
  task.weight_row_stride = stride;
  task.in = in;
  task.activation_format = kernels.activation_format(type);
  task.activations = activations.data();
  task.activation_row_stride = activation_stride;
  task.token_count = tokens;
  std::vector<float> y(tokens * out, -12345.0f);
  task.y = y.data();
  task.y_row_stride = out;
  task.dequantize_row = lamina::cpu::dequantize_row_function(type);
  std::vector<float> scratch(lamina::cpu::matmul_scratch_floats(in));
  std::size_t begin = 0;
  for (std::size_t end : piece_ends) {
    kernels.matmul_rows(task, begin, end, scratch.data());
    begin = end;
  }
  return y;
}

}  // namespace

TEST_CASE("legacy kernels: every table, the scalar twin included, takes 8-bit activations for the 32-value types") {
  for (const CpuKernels* kernels : all_tables()) {
    CAPTURE(std::string(lamina::cpu_arch_name(kernels->arch)));
    CHECK(kernels->activation_format(DType::q4_0) == ActivationFormat::q8_0);
    CHECK(kernels->activation_format(DType::q5_0) == ActivationFormat::q8_0);
    CHECK(kernels->activation_format(DType::q8_0) == ActivationFormat::q8_0);
    CHECK(kernels->activation_format(DType::iq4_nl) == ActivationFormat::q8_0);
    CHECK(kernels->activation_format(DType::q4_1) == ActivationFormat::q8_1);
    CHECK(kernels->activation_format(DType::q5_1) == ActivationFormat::q8_1);
  }
}

TEST_CASE("legacy kernels: activations quantize to exactly the reference bytes (GGML's quantize_row_q8_0/q8_1_ref)") {
  constexpr std::size_t count = 32 * 40;
  std::vector<float> x = random_floats(count, 5, 3.0f);
  // Block 1: exact ties. amax 127 gives scale 1, so k + 0.5 must round away from zero.
  for (std::size_t j = 0; j < 32; ++j) x[32 + j] = (j == 0) ? 127.0f : (static_cast<float>(j) - 16.0f) + 0.5f;
  // Block 2: all zero; block 3: tiny values (scale underflows F16); block 4: one huge value.
  for (std::size_t j = 0; j < 32; ++j) x[64 + j] = 0.0f;
  for (std::size_t j = 0; j < 32; ++j) x[96 + j] = 1e-30f * static_cast<float>(j);
  x[128 + 7] = 3e38f;
  // Block 5: infinities (the scale becomes inf, every quant 0, as the reference gives).
  x[160 + 3] = std::numeric_limits<float>::infinity();
  x[160 + 9] = -std::numeric_limits<float>::infinity();
  // Block 6: ties after scaling by a non-trivial scale, both signs.
  for (std::size_t j = 0; j < 32; ++j) x[192 + j] = (j % 2 ? -1.0f : 1.0f) * (static_cast<float>(j) * 4.0f + 2.0f) / 127.0f * 0.5f;
  for (DType format : {DType::q8_0, DType::q8_1}) {
    const ActivationFormat activation_format = format == DType::q8_0 ? ActivationFormat::q8_0 : ActivationFormat::q8_1;
    std::vector<std::uint8_t> expected(lamina::row_bytes(format, count));
    REQUIRE(lamina::quant::quantize_row(format, x.data(), expected.data(), count).ok());
    for (const CpuKernels* kernels : all_tables()) {
      CAPTURE(std::string(lamina::cpu_arch_name(kernels->arch)));
      CAPTURE(std::string(lamina::dtype_name(format)));
      std::vector<std::uint8_t> got(expected.size(), 0xcd);
      kernels->quantize_activations(activation_format, x.data(), got.data(), count);
      for (std::size_t i = 0; i < got.size(); ++i) {
        CAPTURE(i);
        REQUIRE(got[i] == expected[i]);
      }
    }
  }
}

TEST_CASE("legacy kernels: every output is the dot product of the same 8-bit activations, the SIMD tables the scalar twin's") {
  for (DType type : legacy_types) {
    const bool q8_1 = type == DType::q4_1 || type == DType::q5_1;
    const ActivationFormat activation_format = q8_1 ? ActivationFormat::q8_1 : ActivationFormat::q8_0;
    const std::size_t block_bytes = lamina::dtype_traits(type).block_bytes;
    // in: 1, 3 and 5 blocks (odd counts end in a half step on AVX-512), 66 blocks.
    for (std::size_t in : {32u, 96u, 160u, 2112u}) {
      const std::size_t out = in > 1000 ? 19 : 37;
      const std::size_t row_bytes = in / 32 * block_bytes;
      const std::vector<std::uint8_t> packed = random_weight_bytes(type, out, in, static_cast<std::uint32_t>(in) + 7);
      // Rows at odd addresses with a stride beyond the row (mapped GGUF data is 1-2 byte aligned).
      const std::size_t stride = row_bytes + 3;
      std::vector<std::uint8_t> storage(out * stride + 1 + 64, 0xee);
      for (std::size_t o = 0; o < out; ++o) std::memcpy(&storage[1 + o * stride], &packed[o * row_bytes], row_bytes);
      const std::uint8_t* weight = storage.data() + 1;

      // 1: decoding; 2, 5: the step kernel or (AVX2, AVX-512 4-bit types) the transposed one;
      // 64, 67: prompts, more than one pass of tokens when `in` is small.
      for (std::size_t tokens : {1u, 2u, 5u, 64u, 67u}) {
        if (in > 1000 && (tokens == 2 || tokens == 64)) continue;  // keep the test quick
        CAPTURE(std::string(lamina::dtype_name(type)));
        CAPTURE(in);
        CAPTURE(tokens);
        const std::vector<float> x = random_floats(tokens * in, static_cast<std::uint32_t>(tokens * 31 + in));
        const std::size_t activation_stride = lamina::cpu::activation_row_bytes(activation_format, in);
        // The activations as the scalar twin quantizes them; every table gives the same bytes.
        std::vector<std::uint8_t> activations(tokens * activation_stride);
        for (std::size_t t = 0; t < tokens; ++t) {
          scalar_table().quantize_activations(activation_format, x.data() + t * in, activations.data() + t * activation_stride, in);
        }
        std::vector<double> expected, tolerance;
        plain_products(type, weight, stride, out, in, activations, activation_stride, tokens, expected, tolerance);
        const std::vector<float> twin = run_rows(scalar_table(), type, weight, stride, out, in, activations, activation_stride, tokens, {out});

        for (const CpuKernels* kernels : all_tables()) {
          CAPTURE(std::string(lamina::cpu_arch_name(kernels->arch)));
          REQUIRE(kernels->activation_format(type) == activation_format);
          std::vector<std::uint8_t> quantized(activations.size(), 0xcd);
          for (std::size_t t = 0; t < tokens; ++t) {
            kernels->quantize_activations(activation_format, x.data() + t * in, quantized.data() + t * activation_stride, in);
          }
          REQUIRE(quantized == activations);

          const std::vector<float> whole = run_rows(*kernels, type, weight, stride, out, in, activations, activation_stride, tokens, {out});
          for (std::size_t i = 0; i < whole.size(); ++i) {
            CAPTURE(i);
            REQUIRE(std::fabs(whole[i] - expected[i]) <= tolerance[i]);
            REQUIRE(std::fabs(whole[i] - twin[i]) <= tolerance[i]);
          }
          // Any split of the rows (pieces of 1, 2, 3, 5 rows...) gives the same bits.
          const std::vector<float> pieces =
              run_rows(*kernels, type, weight, stride, out, in, activations, activation_stride, tokens, {1, 3, 6, 11, 16, out});
          REQUIRE(pieces == whole);
        }
      }
    }
  }
}

TEST_CASE("legacy kernels: large odd shapes agree with the float reference, for any thread count") {
  for (DType type : legacy_types) {
    const std::size_t in = 32 * 67, out = 71;
    const std::vector<float> values = random_floats(out * in, 3);
    std::vector<std::uint8_t> weight_bytes(out * lamina::row_bytes(type, in));
    for (std::size_t o = 0; o < out; ++o) {
      REQUIRE(lamina::quant::quantize_row(type, values.data() + o * in, weight_bytes.data() + o * lamina::row_bytes(type, in), in).ok());
    }
    const lamina::TensorView weight =
        lamina::contiguous_view(type, {static_cast<std::int64_t>(out), static_cast<std::int64_t>(in)}, weight_bytes.data());
    for (std::size_t tokens : {1u, 67u}) {
      const std::vector<float> x = random_floats(tokens * in, 4);
      std::vector<float> expected(tokens * out), row(in);
      lamina::reference::matmul(weight, x.data(), expected.data(), tokens, row.data());
      std::vector<double> magnitude(tokens * out, 0.0);
      for (std::size_t o = 0; o < out; ++o) {
        lamina::reference::row_to_f32(type, weight.row(static_cast<std::int64_t>(o)), row.data(), in);
        for (std::size_t t = 0; t < tokens; ++t)
          for (std::size_t i = 0; i < in; ++i) magnitude[t * out + o] += std::fabs(static_cast<double>(row[i]) * x[t * in + i]);
      }
      for (const CpuKernels* kernels : all_tables()) {
        CAPTURE(std::string(lamina::cpu_arch_name(kernels->arch)));
        CAPTURE(std::string(lamina::dtype_name(type)));
        CAPTURE(tokens);
        lamina::cpu::MatmulWorkspace workspace(in, tokens);
        std::vector<float> first;
        for (std::size_t threads : {1u, 2u, 4u}) {
          lamina::ThreadPool pool(threads);
          std::vector<float> got(tokens * out, -12345.0f);
          lamina::cpu::matmul(pool, *kernels, weight, x.data(), got.data(), tokens, workspace);
          for (std::size_t i = 0; i < got.size(); ++i) {
            // 8-bit activations: up to about 1/254 of each product's magnitude, far less on average.
            REQUIRE(std::fabs(got[i] - expected[i]) <= 4e-3 * magnitude[i] + 1e-4);
          }
          if (first.empty()) first = got;
          REQUIRE(got == first);
        }
      }
    }
  }
}
