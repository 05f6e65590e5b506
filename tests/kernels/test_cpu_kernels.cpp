// Every CPU kernel table this program contains and this processor runs (scalar, SSE2, AVX2,
// AVX-512) against the scalar reference, on random data with odd sizes, for every weight type.
#include <doctest/doctest.h>
#include <lamina/lamina.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

std::vector<float> random_floats(std::size_t count, std::uint32_t seed, float spread = 1.0f) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> values(count);
  for (float& value : values) value = normal(generator);
  return values;
}

// Every weight type the matrix products take.
const lamina::DType weight_types[] = {lamina::DType::f32,  lamina::DType::f16,  lamina::DType::bf16, lamina::DType::q4_0,
                                      lamina::DType::q4_1, lamina::DType::q5_0, lamina::DType::q5_1, lamina::DType::q8_0,
                                      lamina::DType::q2_k, lamina::DType::q3_k, lamina::DType::q4_k, lamina::DType::q5_k,
                                      lamina::DType::q6_k, lamina::DType::iq4_nl, lamina::DType::iq4_xs};

// Random weights [out, in] quantized to `type` the reference way (quant::quantize_row), row by row.
std::vector<std::uint8_t> random_weights(lamina::DType type, std::size_t out, std::size_t in, std::uint32_t seed) {
  const std::vector<float> values = random_floats(out * in, seed);
  const std::size_t row_bytes = lamina::row_bytes(type, in);
  std::vector<std::uint8_t> bytes(out * row_bytes);
  for (std::size_t o = 0; o < out; ++o) REQUIRE(lamina::quant::quantize_row(type, values.data() + o * in, bytes.data() + o * row_bytes, in).ok());
  return bytes;
}

// The kernel tables to test: each one this binary contains that the CPU can run.
std::vector<const lamina::cpu::CpuKernels*> available_tables() {
  std::vector<const lamina::cpu::CpuKernels*> tables;
  for (lamina::CpuArch arch : {lamina::CpuArch::scalar, lamina::CpuArch::sse2, lamina::CpuArch::avx2, lamina::CpuArch::avx512}) {
    const lamina::cpu::CpuKernels* kernels = lamina::cpu::cpu_kernels_for(arch);
    if (kernels != nullptr && lamina::cpu_supports(arch)) tables.push_back(kernels);
  }
  return tables;
}

}  // namespace

TEST_CASE("the kernel tables this program contains") {
  const std::vector<const lamina::cpu::CpuKernels*> tables = available_tables();
  REQUIRE(!tables.empty());
  CHECK(tables.front()->arch == lamina::CpuArch::scalar);
#if defined(__x86_64__) || defined(_M_X64)
  // Every x86-64 program holds every x86 table, whatever its -m flags and however lamina was
  // built (kernels/cpu/dispatch.hpp); the CPU decides which of them run.
  CHECK(lamina::cpu::cpu_kernels_for(lamina::CpuArch::sse2) != nullptr);
  CHECK(lamina::cpu::cpu_kernels_for(lamina::CpuArch::avx2) != nullptr);
  CHECK(lamina::cpu::cpu_kernels_for(lamina::CpuArch::avx512) != nullptr);
#endif
  // Forcing an instruction set gives that table (or the best one below it).
  CHECK(lamina::cpu::cpu_kernels(lamina::CpuArch::scalar).arch == lamina::CpuArch::scalar);
  for (const lamina::cpu::CpuKernels* kernels : tables) {
    CHECK(static_cast<int>(lamina::cpu::cpu_kernels(kernels->arch).arch) <= static_cast<int>(kernels->arch));
  }
  MESSAGE("best CPU arch: " << std::string(lamina::cpu_arch_name(lamina::best_cpu_arch()))
                            << ", used: " << std::string(lamina::cpu_arch_name(lamina::cpu::cpu_kernels().arch)));
}

TEST_CASE("vector kernels agree with the scalar reference") {
  for (const lamina::cpu::CpuKernels* kernels : available_tables()) {
    const std::string arch = lamina::cpu_arch_name(kernels->arch);
    CAPTURE(arch);
    for (std::size_t count : {1u, 7u, 16u, 33u, 64u, 257u, 1000u}) {
      CAPTURE(count);
      const std::vector<float> a = random_floats(count, 1), b = random_floats(count, 2), weight = random_floats(count, 3);
      double magnitude = 0;
      for (std::size_t i = 0; i < count; ++i) magnitude += std::fabs(static_cast<double>(a[i]) * b[i]);
      CHECK(std::fabs(kernels->dot(a.data(), b.data(), count) - lamina::reference::dot(a.data(), b.data(), count)) <= 1e-5 * (1 + magnitude));

      std::vector<float> expected(count), got(count);
      lamina::reference::rms_norm(a.data(), weight.data(), expected.data(), count, 1e-5f);
      kernels->rms_norm(a.data(), weight.data(), got.data(), count, 1e-5f);
      for (std::size_t i = 0; i < count; ++i) REQUIRE(got[i] == doctest::Approx(expected[i]).epsilon(1e-4));

      std::vector<float> gate = a, gate_reference = a;
      kernels->silu_mul(gate.data(), b.data(), count);
      lamina::reference::silu_mul(gate_reference.data(), b.data(), count);
      for (std::size_t i = 0; i < count; ++i) REQUIRE(gate[i] == doctest::Approx(gate_reference[i]).epsilon(1e-5).scale(1e-6));

      std::vector<float> sum = a;
      kernels->add(sum.data(), b.data(), count);
      for (std::size_t i = 0; i < count; ++i) REQUIRE(sum[i] == a[i] + b[i]);
      std::vector<float> scaled = a;
      kernels->scaled_add(scaled.data(), b.data(), 0.25f, count);
      for (std::size_t i = 0; i < count; ++i) REQUIRE(scaled[i] == doctest::Approx(a[i] + 0.25f * b[i]).epsilon(1e-6));

      std::vector<float> exponentials = a;
      const float exp_sum = kernels->exp_shifted(exponentials.data(), 1.5f, count);
      double expected_sum = 0;
      for (std::size_t i = 0; i < count; ++i) {
        REQUIRE(exponentials[i] == doctest::Approx(std::exp(static_cast<double>(a[i]) - 1.5)).epsilon(1e-5));
        expected_sum += std::exp(static_cast<double>(a[i]) - 1.5);
      }
      CHECK(exp_sum == doctest::Approx(expected_sum).epsilon(1e-5));

      // F16 rows (the KV cache): conversion is exact round-to-nearest-even, like lamina::f32_to_f16.
      std::vector<std::uint16_t> halves(count);
      kernels->f32_to_f16(a.data(), halves.data(), count);
      for (std::size_t i = 0; i < count; ++i) REQUIRE(halves[i] == lamina::f32_to_f16(a[i]));
      double half_dot = 0;
      for (std::size_t i = 0; i < count; ++i) half_dot += static_cast<double>(lamina::f16_to_f32(halves[i])) * b[i];
      CHECK(std::fabs(kernels->dot_f16(halves.data(), b.data(), count) - half_dot) <= 1e-5 * (1 + magnitude));
      std::vector<float> accumulated = b;
      kernels->scaled_add_f16(accumulated.data(), halves.data(), -0.5f, count);
      for (std::size_t i = 0; i < count; ++i) {
        REQUIRE(accumulated[i] == doctest::Approx(b[i] - 0.5f * lamina::f16_to_f32(halves[i])).epsilon(1e-6).scale(1e-6));
      }
    }
  }
}

TEST_CASE("the vector exponential is accurate over the whole float range") {
  // exp_shifted(x, 0) is e^x lane by lane (softmax's exponentials; silu uses the same function).
  // Within 3 ulp (3.6e-7 relative) wherever e^x is a normal float; below FLT_MIN 0 is allowed;
  // +inf past the largest float, 0 for -inf, NaN stays NaN.
  std::vector<float> inputs;
  for (float x = -104.0f; x <= 89.0f; x += 0.0137f) inputs.push_back(x);
  for (float x : {0.0f, -0.0f, 1e-30f, -1e-30f, 88.37f, 88.3762f, -87.33f, -87.3366f}) inputs.push_back(x);
  for (const lamina::cpu::CpuKernels* kernels : available_tables()) {
    const std::string arch = lamina::cpu_arch_name(kernels->arch);
    CAPTURE(arch);
    std::vector<float> got = inputs;
    kernels->exp_shifted(got.data(), 0.0f, got.size());
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const double expected = std::exp(static_cast<double>(inputs[i]));
      CAPTURE(inputs[i]);
      if (expected > static_cast<double>(std::numeric_limits<float>::max())) {
        // Past the float range: infinity (or the largest floats, within 3 ulp of the limit).
        REQUIRE(got[i] >= std::numeric_limits<float>::max() * (1 - 3.6e-7f));
      } else if (expected < static_cast<double>(std::numeric_limits<float>::min())) {
        REQUIRE(got[i] >= 0.0f);
        REQUIRE(got[i] <= std::numeric_limits<float>::min());
      } else {
        REQUIRE(std::fabs(got[i] - expected) <= 3.6e-7 * expected);
      }
    }
    float special[] = {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(), std::nanf(""), 200.0f, -200.0f};
    kernels->exp_shifted(special, 0.0f, 5);
    CHECK(std::isinf(special[0]));
    CHECK(special[1] == 0.0f);
    CHECK(std::isnan(special[2]));
    CHECK(std::isinf(special[3]));
    CHECK(special[4] == 0.0f);
    // silu(x) = x / (1 + e^-x) over the range where it bends and far beyond it.
    std::vector<float> gate, up;
    for (float x = -120.0f; x <= 120.0f; x += 0.031f) gate.push_back(x), up.push_back(1.0f);
    std::vector<float> silu = gate;
    kernels->silu_mul(silu.data(), up.data(), silu.size());
    for (std::size_t i = 0; i < gate.size(); ++i) {
      const double x = gate[i], expected = x / (1 + std::exp(-x));
      CAPTURE(x);
      REQUIRE(std::fabs(silu[i] - expected) <= 1e-6 * std::fabs(expected) + 1e-30);
    }
  }
}

TEST_CASE("matrix products agree with the scalar reference for every weight type, odd shapes and any thread count") {
  for (lamina::DType type : weight_types) {
    const std::size_t block = lamina::dtype_traits(type).block_size;
    // Float types also run a wide case: 70 rows in two chunks of 35 (a full 32-row panel and a
    // short one), 784 = 3 x 256 + 16 columns (several k-blocks and a short one).
    const bool float_type = block == 1;
    for (std::size_t in : {block == 256 ? 512u : (block == 32 ? 96u : 83u), float_type ? 784u : 0u}) {  // 83: an odd width
      if (in == 0) continue;
      for (std::size_t out : {1u, 37u, float_type && in > 256 ? 70u : 0u}) {
        if (out == 0) continue;
        const std::vector<std::uint8_t> weight_bytes = random_weights(type, out, in, 11);
        const lamina::TensorView weight = lamina::contiguous_view(type, {static_cast<std::int64_t>(out), static_cast<std::int64_t>(in)},
                                                                  weight_bytes.data());
        for (std::size_t tokens : {1u, 3u, 17u}) {
          const std::vector<float> x = random_floats(tokens * in, 12);
          std::vector<float> expected(tokens * out), row(in);
          lamina::reference::matmul(weight, x.data(), expected.data(), tokens, row.data());
          // Tolerance against this float reference: float kernels differ by rounding; 8-bit
          // activations (as GGML uses them, in every table) add up to about 1/254 of each
          // product's magnitude.
          std::vector<double> magnitude(tokens * out, 0.0);
          for (std::size_t t = 0; t < tokens; ++t) {
            for (std::size_t o = 0; o < out; ++o) {
              row.assign(in, 0.0f);
              lamina::reference::row_to_f32(type, weight.row(static_cast<std::int64_t>(o)), row.data(), in);
              for (std::size_t i = 0; i < in; ++i) magnitude[t * out + o] += std::fabs(static_cast<double>(row[i]) * x[t * in + i]);
            }
          }
          // The scalar table's products: every table takes the same activation format for a
          // weight type (8-bit blocks for the quantized types, scalar_quant.hpp being the twin of
          // the SIMD integer kernels) and quantizes them to the same bytes, so all tables agree
          // to float rounding.
          const lamina::cpu::CpuKernels& scalar = *lamina::cpu::cpu_kernels_for(lamina::CpuArch::scalar);
          std::vector<float> scalar_y(tokens * out);
          {
            lamina::cpu::MatmulWorkspace workspace(in, tokens);
            lamina::ThreadPool pool(1);
            lamina::cpu::matmul(pool, scalar, weight, x.data(), scalar_y.data(), tokens, workspace);
          }
          for (const lamina::cpu::CpuKernels* kernels : available_tables()) {
            const std::string arch = lamina::cpu_arch_name(kernels->arch);
            CAPTURE(arch);
            const std::string type_name = lamina::dtype_name(type);
            CAPTURE(type_name);
            CAPTURE(out);
            CAPTURE(tokens);
            const bool float_activations = kernels->activation_format(type) == lamina::cpu::ActivationFormat::f32;
            REQUIRE(kernels->activation_format(type) == scalar.activation_format(type));
            lamina::cpu::MatmulWorkspace workspace(in, tokens, out == 70 ? 2 : lamina::cpu::max_parallel_chunks);
            std::vector<float> first;
            for (std::size_t threads : {1u, 2u, 3u}) {
              lamina::ThreadPool pool(threads);
              std::vector<float> got(tokens * out, -12345.0f);
              lamina::cpu::matmul(pool, *kernels, weight, x.data(), got.data(), tokens, workspace);
              for (std::size_t i = 0; i < got.size(); ++i) {
                const double tolerance = float_activations ? 1e-5 * (1 + magnitude[i]) : 1e-2 * magnitude[i] + 1e-4;
                REQUIRE(std::fabs(got[i] - expected[i]) <= tolerance);
                // Against the scalar table: float rounding alone (measured: below 2.1e-7 · (1 + magnitude)).
                REQUIRE(std::fabs(got[i] - scalar_y[i]) <= 1e-6 * (1 + magnitude[i]));
              }
              if (first.empty()) first = got;
              REQUIRE(got == first);  // bit-identical whatever the thread count
            }
          }
        }
      }
    }
  }
}

// A prompt read in pieces must give the logits of one call: tokens computed batch-invariantly
// (MatmulWorkspace::set_invariant_from) have bit-identical outputs whatever pass holds them (its
// size, the token's place in it, decoding tokens before them), on every table. The tokens
// before invariant_from take the kernels for their count, as alone; without invariance a pass
// of one token takes other kernels (checked to differ somewhere, so that this test means something).
TEST_CASE("batch-invariant products: a token's outputs do not depend on the rest of the pass") {
  constexpr std::size_t all_tokens = 24, out = 37;
  bool some_table_differs_without = false;
  for (lamina::DType type : weight_types) {
    const std::size_t block = lamina::dtype_traits(type).block_size;
    const std::size_t in = block == 256 ? 512 : (block == 32 ? 96 : 784);  // 784: several k-blocks of the float panels
    const std::vector<std::uint8_t> weight_bytes = random_weights(type, out, in, 21);
    const lamina::TensorView weight = lamina::contiguous_view(type, {static_cast<std::int64_t>(out), static_cast<std::int64_t>(in)}, weight_bytes.data());
    const std::vector<float> x = random_floats(all_tokens * in, 22);
    for (const lamina::cpu::CpuKernels* kernels : available_tables()) {
      const std::string arch = lamina::cpu_arch_name(kernels->arch), type_name = lamina::dtype_name(type);
      CAPTURE(arch);
      CAPTURE(type_name);
      lamina::ThreadPool pool(2);
      lamina::cpu::MatmulWorkspace workspace(in, all_tokens);
      workspace.set_invariant_from(0);
      std::vector<float> whole(all_tokens * out);
      lamina::cpu::matmul(pool, *kernels, weight, x.data(), whole.data(), all_tokens, workspace);
      for (std::size_t count : {1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u, 9u, 13u, 17u}) {
        for (std::size_t first : {0u, 1u, 3u, 7u}) {
          CAPTURE(count);
          CAPTURE(first);
          std::vector<float> part(count * out, -1.0f);
          workspace.set_invariant_from(0);
          lamina::cpu::matmul(pool, *kernels, weight, x.data() + first * in, part.data(), count, workspace);
          for (std::size_t i = 0; i < part.size(); ++i) REQUIRE(part[i] == whole[first * out + i]);
          // The same tokens after `decoding` others that are not invariant: those get what
          // they get alone, the invariant ones still the whole pass's outputs.
          const std::size_t decoding = first < 4 ? first : 4;
          if (decoding == 0) continue;
          std::vector<float> mixed((decoding + count) * out, -1.0f), alone(decoding * out, -1.0f);
          workspace.set_invariant_from(decoding);
          lamina::cpu::matmul(pool, *kernels, weight, x.data() + (first - decoding) * in, mixed.data(), decoding + count, workspace);
          workspace.set_invariant_from(lamina::cpu::MatmulWorkspace::no_invariant_tokens);
          lamina::cpu::matmul(pool, *kernels, weight, x.data() + (first - decoding) * in, alone.data(), decoding, workspace);
          for (std::size_t i = 0; i < alone.size(); ++i) REQUIRE(mixed[i] == alone[i]);
          for (std::size_t i = 0; i < part.size(); ++i) REQUIRE(mixed[decoding * out + i] == whole[first * out + i]);
        }
      }
      workspace.set_invariant_from(lamina::cpu::MatmulWorkspace::no_invariant_tokens);
      std::vector<float> alone(out);
      lamina::cpu::matmul(pool, *kernels, weight, x.data(), alone.data(), 1, workspace);
      for (std::size_t o = 0; o < out; ++o) some_table_differs_without = some_table_differs_without || alone[o] != whole[o];
    }
  }
  CHECK(some_table_differs_without);
}

TEST_CASE("attention of grouped heads over chosen cells matches a double-precision softmax (F16 and F32 cache)") {
  const std::size_t head_size = 64, groups = 4, cells_total = 41, kv_width = 2 * head_size;
  const std::vector<float> queries = random_floats(groups * head_size, 21);
  const std::vector<float> keys_f32 = random_floats(cells_total * kv_width, 22), values_f32 = random_floats(cells_total * kv_width, 23);
  std::vector<std::uint16_t> keys_f16(keys_f32.size()), values_f16(values_f32.size());
  for (std::size_t i = 0; i < keys_f32.size(); ++i) keys_f16[i] = lamina::f32_to_f16(keys_f32[i]), values_f16[i] = lamina::f32_to_f16(values_f32[i]);
  const std::vector<std::uint32_t> cells = {3, 0, 40, 17, 18, 5, 9};  // any subset, any order
  for (bool f16 : {true, false}) {
    CAPTURE(f16);
    // The second KV head of each cell: offset by head_size elements.
    const auto rows = [&](const std::vector<float>& f32, const std::vector<std::uint16_t>& half) {
      const std::uint8_t* data = f16 ? reinterpret_cast<const std::uint8_t*>(half.data() + head_size)
                                     : reinterpret_cast<const std::uint8_t*>(f32.data() + head_size);
      return lamina::cpu::CacheRows{data, kv_width * (f16 ? 2 : 4), f16};
    };
    const auto element = [&](const std::vector<float>& f32, const std::vector<std::uint16_t>& half, std::size_t cell, std::size_t i) {
      const std::size_t at = cell * kv_width + head_size + i;
      return f16 ? static_cast<double>(lamina::f16_to_f32(half[at])) : static_cast<double>(f32[at]);
    };
    // out[h] = sum_c softmax_c(q[h]·k_c / sqrt(head_size)) v_c, in doubles.
    std::vector<double> expected(groups * head_size, 0.0);
    for (std::size_t h = 0; h < groups; ++h) {
      std::vector<double> scores(cells.size());
      for (std::size_t j = 0; j < cells.size(); ++j) {
        double dot = 0;
        for (std::size_t i = 0; i < head_size; ++i) dot += queries[h * head_size + i] * element(keys_f32, keys_f16, cells[j], i);
        scores[j] = dot / std::sqrt(static_cast<double>(head_size));
      }
      const double maximum = *std::max_element(scores.begin(), scores.end());
      double sum = 0;
      for (double& score : scores) sum += (score = std::exp(score - maximum));
      for (std::size_t j = 0; j < cells.size(); ++j) {
        for (std::size_t i = 0; i < head_size; ++i) expected[h * head_size + i] += scores[j] / sum * element(values_f32, values_f16, cells[j], i);
      }
    }
    for (const lamina::cpu::CpuKernels* kernels : available_tables()) {
      const std::string arch = lamina::cpu_arch_name(kernels->arch);
      CAPTURE(arch);
      std::vector<float> got(groups * head_size, -1.0f), scratch(groups * cells.size());
      lamina::attend(*kernels, queries.data(), groups, head_size, rows(keys_f32, keys_f16), rows(values_f32, values_f16), cells.data(),
                     cells.size(), scratch.data(), got.data());
      for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(std::fabs(got[i] - expected[i]) <= 1e-5 * (1.0 + std::fabs(expected[i])));
    }
  }
}
