// The integer kernels for K-quant and IQ4_XS weights: the scalar twin (kernels/cpu/
// scalar_quant.hpp) and the SIMD kernels (kernels/cpu/simd/quant_k.inl) on every instruction set
// this program contains and this processor runs:
//   - Q8_K activation quantization gives exactly the bytes of GGML's quantize_row_q8_K_ref;
//   - each matrix product equals the same sum computed plainly from the dequantized weights and
//     the same Q8_K activations, up to float rounding (so the kernel's integer arithmetic is
//     exact), for shapes of a real model, odd row counts and many token counts, and every SIMD
//     table equals the scalar twin within the same bound;
//   - results are bit-identical however the rows are split into chunks or threads.
#include <doctest/doctest.h>
#include <lamina/lamina.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

// The tables whose kernel for `type` takes Q8_K activations: the scalar twin first, then the
// SIMD tables this program contains and this processor runs.
std::vector<const lamina::cpu::CpuKernels*> tables_with_q8_k(lamina::DType type) {
  std::vector<const lamina::cpu::CpuKernels*> tables;
  for (lamina::CpuArch arch : {lamina::CpuArch::scalar, lamina::CpuArch::sse2, lamina::CpuArch::avx2, lamina::CpuArch::avx512}) {
    const lamina::cpu::CpuKernels* kernels = lamina::cpu::cpu_kernels_for(arch);
    if (kernels == nullptr || !lamina::cpu_supports(arch)) continue;
    if (kernels->activation_format(type) == lamina::cpu::ActivationFormat::q8_k) tables.push_back(kernels);
  }
  return tables;
}

// GGML's quantize_row_q8_K_ref, transcribed (ggml/src/ggml-quants.c): the definition the
// kernels' quantization must match byte for byte. (GGML leaves the group sums of an all-zero
// block unset; lamina writes zeros.)
int ggml_nearest_int(float value) {
  const float shifted = value + 12582912.0f;
  std::int32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

void ggml_quantize_block_q8_k(const float* x, std::uint8_t* out) {
  float max = 0, amax = 0;
  for (int j = 0; j < 256; ++j) {
    const float ax = std::fabs(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  std::int8_t quants[256] = {};
  std::int16_t sums[16] = {};
  float d = 0;
  if (amax != 0) {
    volatile float iscale = -127.f / max;  // volatile: one rounding per operation, as in GGML's C
    for (int j = 0; j < 256; ++j) {
      volatile float product = iscale * x[j];
      const int v = ggml_nearest_int(product);
      quants[j] = static_cast<std::int8_t>(v < 127 ? v : 127);
    }
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += quants[16 * j + i];
      sums[j] = static_cast<std::int16_t>(sum);
    }
    d = 1 / iscale;
  }
  std::memcpy(out, &d, 4);
  std::memcpy(out + 4, quants, 256);
  std::memcpy(out + 260, sums, 32);
}

std::vector<float> normal_floats(std::size_t count, std::uint32_t seed, float spread = 1.0f) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> values(count);
  for (float& value : values) value = normal(generator);
  return values;
}

// Where each type keeps its F16 super-block scale(s) (quant/blocks.hpp).
std::vector<std::size_t> f16_scale_offsets(lamina::DType type) {
  switch (type) {
    case lamina::DType::q2_k: return {80, 82};
    case lamina::DType::q3_k: return {108};
    case lamina::DType::q4_k: return {0, 2};
    case lamina::DType::q5_k: return {0, 2};
    case lamina::DType::q6_k: return {208};
    case lamina::DType::iq4_xs: return {0};
    default: return {};
  }
}

// Weight rows: `out` rows of `in` values, half quantized from normal values the reference way,
// half random bytes (every code, scale and minimum value, extremes included) with finite F16
// super-block scales.
std::vector<std::uint8_t> make_weights(lamina::DType type, std::size_t out, std::size_t in, std::uint32_t seed) {
  const std::size_t row_bytes = lamina::row_bytes(type, in);
  std::vector<std::uint8_t> bytes(out * row_bytes);
  const std::vector<float> values = normal_floats(out * in, seed);
  std::mt19937 generator(seed + 1);
  std::uniform_real_distribution<float> scale_distribution(0.001f, 0.01f);
  const std::size_t block_bytes = lamina::dtype_traits(type).block_bytes;
  for (std::size_t o = 0; o < out; ++o) {
    std::uint8_t* row = bytes.data() + o * row_bytes;
    if (o % 2 == 0) {
      REQUIRE(lamina::quant::quantize_row(type, values.data() + o * in, row, in).ok());
    } else {
      for (std::size_t i = 0; i < row_bytes; ++i) row[i] = static_cast<std::uint8_t>(generator() & 0xff);
      for (std::size_t block = 0; block < in / 256; ++block) {
        for (std::size_t offset : f16_scale_offsets(type)) {
          const std::uint16_t half = lamina::f32_to_f16(scale_distribution(generator));
          std::memcpy(row + block * block_bytes + offset, &half, 2);
        }
      }
    }
  }
  return bytes;
}

// Activations for `tokens` tokens: normal values, plus (when there is room) a token of all
// -1 (every quant -127, so the integer sums reach their extremes) and a token with a zero block.
std::vector<float> make_activations(std::size_t tokens, std::size_t in, std::uint32_t seed) {
  std::vector<float> x = normal_floats(tokens * in, seed);
  if (tokens >= 2) {
    for (std::size_t i = 0; i < in; ++i) x[in + i] = -1.0f;
  }
  if (tokens >= 3) {
    for (std::size_t i = 0; i < 256; ++i) x[2 * in + i] = 0.0f;
  }
  return x;
}

// The bytes of a block that hold its codes (quant/blocks.hpp): [first, end) ranges.
std::vector<std::pair<std::size_t, std::size_t>> code_byte_ranges(lamina::DType type) {
  switch (type) {
    case lamina::DType::q2_k: return {{16, 80}};
    case lamina::DType::q3_k: return {{0, 96}};
    case lamina::DType::q4_k: return {{16, 144}};
    case lamina::DType::q5_k: return {{16, 176}};
    case lamina::DType::q6_k: return {{0, 192}};
    case lamina::DType::iq4_xs: return {{8, 136}};
    default: return {};
  }
}

// y[t][o] computed plainly in double from the dequantized weights and the Q8_K activations, and
// a bound on the float rounding of the kernels. The kernels sum the two parts of each weight
// (weight = scale part − minimum part, the minimum part being what a block with all codes 0
// decodes to, negated) in separate integers that they round to float, so the bound is a small
// multiple of the magnitude of both parts' products, which their difference can be far below.
void plain_products(lamina::DType type, const std::vector<std::uint8_t>& weights, std::size_t out, std::size_t in,
                    const std::vector<std::uint8_t>& activations, std::size_t tokens, std::vector<double>& expected,
                    std::vector<double>& tolerance) {
  const std::size_t row_bytes = lamina::row_bytes(type, in);
  const std::size_t block_bytes = lamina::dtype_traits(type).block_bytes;
  const std::size_t activation_row_bytes = lamina::cpu::activation_row_bytes(lamina::cpu::ActivationFormat::q8_k, in);
  expected.assign(tokens * out, 0.0);
  tolerance.assign(tokens * out, 0.0);
  std::vector<float> weight_row(in), zero_code_row(in), activation_row(in);
  std::vector<std::uint8_t> zero_codes(row_bytes);
  for (std::size_t t = 0; t < tokens; ++t) {
    for (std::size_t block = 0; block < in / 256; ++block) {
      const lamina::quant::BlockQ8_K q8 = lamina::quant::load_block<lamina::quant::BlockQ8_K>(activations.data() + t * activation_row_bytes, block);
      for (std::size_t i = 0; i < 256; ++i) activation_row[256 * block + i] = q8.scale * static_cast<float>(q8.quants[i]);
    }
    for (std::size_t o = 0; o < out; ++o) {
      const std::uint8_t* row = weights.data() + o * row_bytes;
      REQUIRE(lamina::quant::dequantize_row(type, row, weight_row.data(), in).ok());
      std::memcpy(zero_codes.data(), row, row_bytes);
      for (std::size_t block = 0; block < in / 256; ++block) {
        for (const auto& range : code_byte_ranges(type)) {
          std::memset(zero_codes.data() + block * block_bytes + range.first, 0, range.second - range.first);
        }
      }
      REQUIRE(lamina::quant::dequantize_row(type, zero_codes.data(), zero_code_row.data(), in).ok());
      double sum = 0, magnitude = 0;
      for (std::size_t i = 0; i < in; ++i) {
        const double activation = activation_row[i], minimum_part = -static_cast<double>(zero_code_row[i]);
        sum += weight_row[i] * activation;
        magnitude += std::fabs((weight_row[i] + minimum_part) * activation) + std::fabs(minimum_part * activation);
      }
      expected[t * out + o] = sum;
      tolerance[t * out + o] = 1e-6 * magnitude + 1e-30;
    }
  }
}

}  // namespace

TEST_CASE("K-quant kernels: Q8_K activations are GGML's quantize_row_q8_K_ref bytes") {
  const std::vector<const lamina::cpu::CpuKernels*> tables = tables_with_q8_k(lamina::DType::q4_k);
  const std::size_t count = 256 * 12;
  std::vector<float> x = normal_floats(count, 5, 3.0f);
  const float infinity = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  float* blocks[12];
  for (int b = 0; b < 12; ++b) blocks[b] = x.data() + 256 * b;
  for (int i = 0; i < 256; ++i) blocks[1][i] = 0.0f;                        // all zeros
  for (int i = 0; i < 256; ++i) blocks[2][i] = i % 2 ? -0.0f : 0.0f;       // signed zeros
  blocks[3][7] = 9.0f, blocks[3][3] = -9.0f;                                // a tie in magnitude: the first wins
  blocks[4][100] = nan;                                                     // NaN is never the largest, quantizes to 0
  blocks[5][17] = infinity;                                                 // extreme infinity: everything 0
  for (int i = 0; i < 256; ++i) blocks[6][i] *= 1e-39f;                     // subnormals: the inverse overflows
  for (int i = 0; i < 256; ++i) blocks[7][i] = static_cast<float>(i % 9) - 4.0f;  // exact ties after scaling
  for (int i = 0; i < 256; ++i) blocks[8][i] = -1.0f;                       // every quant -127
  blocks[9][0] = -infinity, blocks[9][1] = nan;
  for (int i = 0; i < 256; ++i) blocks[10][i] = static_cast<float>(i) * 0.5f + 0.25f;
  for (int i = 0; i < 256; ++i) blocks[11][i] *= 1e30f;

  std::vector<std::uint8_t> expected(12 * 292);
  for (int b = 0; b < 12; ++b) ggml_quantize_block_q8_k(blocks[b], expected.data() + 292 * b);
  // lamina's quant:: reference agrees wherever the inverse scale is finite.
  for (int b = 0; b < 12; ++b) {
    if (b == 6) continue;
    lamina::quant::BlockQ8_K block;
    lamina::quant::quantize_block(blocks[b], block);
    std::uint8_t bytes[292];
    std::memcpy(bytes, &block.scale, 4);
    std::memcpy(bytes + 4, block.quants, 256);
    std::memcpy(bytes + 260, block.group_sums, 32);
    CAPTURE(b);
    CHECK(std::memcmp(bytes, expected.data() + 292 * b, 292) == 0);
  }
  for (const lamina::cpu::CpuKernels* kernels : tables) {
    CAPTURE(std::string(lamina::cpu_arch_name(kernels->arch)));
    std::vector<std::uint8_t> got(12 * 292, 0xcd);
    kernels->quantize_activations(lamina::cpu::ActivationFormat::q8_k, x.data(), got.data(), count);
    for (int b = 0; b < 12; ++b) {
      CAPTURE(b);
      CHECK(std::memcmp(got.data() + 292 * b, expected.data() + 292 * b, 292) == 0);
    }
  }
}

TEST_CASE("K-quant kernels: exact integer sums, any row split, many token counts") {
  const lamina::DType types[] = {lamina::DType::q4_k, lamina::DType::q6_k, lamina::DType::q5_k,
                                 lamina::DType::q3_k, lamina::DType::q2_k, lamina::DType::iq4_xs};
  struct Shape {
    std::size_t out, in;
  };
  for (lamina::DType type : types) {
    const std::vector<const lamina::cpu::CpuKernels*> tables = tables_with_q8_k(type);
    REQUIRE(!tables.empty());
    REQUIRE(tables.front()->arch == lamina::CpuArch::scalar);  // every table takes Q8_K for these types
    for (const Shape& shape : {Shape{37, 2048}, Shape{67, 256}, Shape{5, 512}}) {
      const std::vector<std::uint8_t> weights = make_weights(type, shape.out, shape.in, 21);
      // Rows of a memory-mapped GGUF file may be only 2-byte aligned: the kernels read these.
      std::vector<std::uint8_t> misaligned_bytes(weights.size() + 64);
      std::uint8_t* misaligned = misaligned_bytes.data() + 2;
      std::memcpy(misaligned, weights.data(), weights.size());
      const lamina::TensorView weight = lamina::contiguous_view(
          type, {static_cast<std::int64_t>(shape.out), static_cast<std::int64_t>(shape.in)}, misaligned);
      for (std::size_t tokens : {1u, 2u, 3u, 4u, 5u, 8u, 9u, 17u, 64u, 67u}) {
        if (shape.in == 2048 && tokens > 9 && tokens != 67) continue;  // keep the test quick
        const std::vector<float> x = make_activations(tokens, shape.in, 31);
        const std::size_t activation_row_bytes = lamina::cpu::activation_row_bytes(lamina::cpu::ActivationFormat::q8_k, shape.in);
        std::vector<std::uint8_t> activations(tokens * activation_row_bytes);
        for (std::size_t t = 0; t < tokens; ++t) {
          for (std::size_t block = 0; block < shape.in / 256; ++block) {
            ggml_quantize_block_q8_k(x.data() + t * shape.in + 256 * block, activations.data() + t * activation_row_bytes + 292 * block);
          }
        }
        std::vector<double> expected, tolerance;
        plain_products(type, weights, shape.out, shape.in, activations, tokens, expected, tolerance);
        std::vector<float> twin;  // the scalar twin's products (tables.front())
        for (const lamina::cpu::CpuKernels* kernels : tables) {
          CAPTURE(std::string(lamina::cpu_arch_name(kernels->arch)));
          CAPTURE(std::string(lamina::dtype_name(type)));
          CAPTURE(shape.out);
          CAPTURE(shape.in);
          CAPTURE(tokens);
          lamina::cpu::MatmulWorkspace workspace(shape.in, tokens);
          std::vector<float> first;
          for (std::size_t threads : {1u, 2u, 3u}) {
            lamina::ThreadPool pool(threads);
            std::vector<float> got(tokens * shape.out, -12345.0f);
            lamina::cpu::matmul(pool, *kernels, weight, x.data(), got.data(), tokens, workspace);
            REQUIRE(std::memcmp(workspace.activations(), activations.data(), activations.size()) == 0);
            if (twin.empty()) twin = got;
            for (std::size_t i = 0; i < got.size(); ++i) {
              CAPTURE(i);
              REQUIRE(std::fabs(got[i] - expected[i]) <= tolerance[i]);
              REQUIRE(std::fabs(got[i] - twin[i]) <= tolerance[i]);
            }
            if (first.empty()) first = got;
            REQUIRE(got == first);
          }
          // Any split of the rows into ranges gives the same bits.
          lamina::cpu::MatmulTask task;
          task.weight_type = type;
          task.weight = misaligned;
          task.weight_row_stride = lamina::row_bytes(type, shape.in);
          task.in = shape.in;
          task.activation_format = lamina::cpu::ActivationFormat::q8_k;
          task.activations = activations.data();
          task.activation_row_stride = activation_row_bytes;
          task.token_count = tokens;
          task.dequantize_row = lamina::cpu::dequantize_row_function(type);
          std::vector<float> split(tokens * shape.out, -12345.0f);
          task.y = split.data();
          task.y_row_stride = shape.out;
          std::vector<float> scratch(lamina::cpu::matmul_scratch_floats(shape.in));
          const std::size_t cuts[] = {0, 1, 4, shape.out / 2 + 1, shape.out};
          for (std::size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; ++c) {
            if (cuts[c] < cuts[c + 1] && cuts[c + 1] <= shape.out) kernels->matmul_rows(task, cuts[c], cuts[c + 1], scratch.data());
          }
          REQUIRE(split == first);
        }
      }
    }
  }
}

TEST_CASE("K-quant kernels agree with float activations within the 8-bit activation error") {
  // Real-model widths: a 1B Llama's hidden size and feed-forward width.
  for (lamina::DType type : {lamina::DType::q4_k, lamina::DType::q6_k}) {
    const std::size_t in = 2048, out = 33;
    std::vector<float> values = normal_floats(out * in, 41);
    std::vector<std::uint8_t> weights(out * lamina::row_bytes(type, in));
    for (std::size_t o = 0; o < out; ++o) {
      REQUIRE(lamina::quant::quantize_row(type, values.data() + o * in, weights.data() + o * lamina::row_bytes(type, in), in).ok());
    }
    const lamina::TensorView weight = lamina::contiguous_view(type, {static_cast<std::int64_t>(out), static_cast<std::int64_t>(in)}, weights.data());
    for (std::size_t tokens : {1u, 67u}) {
      const std::vector<float> x = normal_floats(tokens * in, 43);
      std::vector<float> expected(tokens * out), row(in);
      lamina::reference::matmul(weight, x.data(), expected.data(), tokens, row.data());
      std::vector<double> magnitude(tokens * out, 0.0);
      for (std::size_t o = 0; o < out; ++o) {
        REQUIRE(lamina::quant::dequantize_row(type, weight.row(static_cast<std::int64_t>(o)), row.data(), in).ok());
        for (std::size_t t = 0; t < tokens; ++t) {
          for (std::size_t i = 0; i < in; ++i) magnitude[t * out + o] += std::fabs(static_cast<double>(row[i]) * x[t * in + i]);
        }
      }
      for (const lamina::cpu::CpuKernels* kernels : tables_with_q8_k(type)) {
        CAPTURE(std::string(lamina::cpu_arch_name(kernels->arch)));
        CAPTURE(std::string(lamina::dtype_name(type)));
        CAPTURE(tokens);
        lamina::cpu::MatmulWorkspace workspace(in, tokens);
        lamina::ThreadPool pool(2);
        std::vector<float> got(tokens * out);
        lamina::cpu::matmul(pool, *kernels, weight, x.data(), got.data(), tokens, workspace);
        for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(std::fabs(got[i] - expected[i]) <= 1e-2 * magnitude[i]);
      }
    }
  }
}
