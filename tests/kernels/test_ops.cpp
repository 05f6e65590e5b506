// The CPU kernels against the scalar reference, and the reference ops against their definitions.
#include <doctest/doctest.h>
#include <lamina/lamina.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace {

std::vector<float> random_floats(std::size_t count, std::uint32_t seed, float spread = 1.0f) {
  std::mt19937 generator(seed);
  std::vector<float> values(count);
  for (float& value : values) value = (static_cast<float>(generator() % 20001u) / 10000.0f - 1.0f) * spread;
  return values;
}

// Stores `values` as `dtype` (F32, F16 or BF16) and returns the bytes.
std::vector<std::uint16_t> to_16_bit(const std::vector<float>& values, lamina::DType dtype) {
  std::vector<std::uint16_t> stored(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    stored[i] = dtype == lamina::DType::f16 ? lamina::f32_to_f16(values[i]) : lamina::f32_to_bf16(values[i]);
  }
  return stored;
}

}  // namespace

TEST_CASE("cpu::matmul matches reference::matmul for every float weight type, odd shapes, any thread count") {
  struct Shape { std::size_t out, in, tokens; };
  for (const Shape shape : {Shape{1, 1, 1}, Shape{17, 13, 3}, Shape{65, 129, 1}, Shape{300, 37, 40}, Shape{33, 256, 70}}) {
    for (lamina::DType dtype : {lamina::DType::f32, lamina::DType::f16, lamina::DType::bf16}) {
      CAPTURE(shape.out);
      CAPTURE(shape.in);
      CAPTURE(shape.tokens);
      CAPTURE(lamina::dtype_name(dtype));
      const std::vector<float> weight_values = random_floats(shape.out * shape.in, 1);
      const std::vector<std::uint16_t> weight_16 = to_16_bit(weight_values, dtype);
      const void* weight_data = dtype == lamina::DType::f32 ? static_cast<const void*>(weight_values.data()) : weight_16.data();
      const lamina::TensorView weight = lamina::contiguous_view(
          dtype, {static_cast<std::int64_t>(shape.out), static_cast<std::int64_t>(shape.in)}, weight_data);
      const std::vector<float> x = random_floats(shape.tokens * shape.in, 2);
      std::vector<float> expected(shape.tokens * shape.out), row(shape.in);
      lamina::reference::matmul(weight, x.data(), expected.data(), shape.tokens, row.data());

      std::vector<float> scratch(lamina::cpu::max_parallel_chunks * shape.in);
      const lamina::cpu::MatmulScratch matmul_scratch{scratch.data(), shape.in};
      std::vector<float> first;
      for (std::size_t threads : {1, 2, 3}) {
        lamina::ThreadPool pool(threads);
        std::vector<float> got(shape.tokens * shape.out, -1.0f);
        lamina::cpu::matmul(pool, weight, x.data(), got.data(), shape.tokens, matmul_scratch);
        for (std::size_t i = 0; i < got.size(); ++i) {
          REQUIRE(std::fabs(got[i] - expected[i]) <= 1e-5f * (1.0f + std::sqrt(static_cast<float>(shape.in))));
        }
        if (first.empty()) first = got;
        CHECK(got == first);  // bit-identical across thread counts
      }
    }
  }
}

TEST_CASE("rms_norm, softmax and silu follow their definitions") {
  const std::vector<float> x = random_floats(37, 3, 4.0f);
  const std::vector<float> weight = random_floats(37, 4);
  std::vector<float> out(37);
  lamina::reference::rms_norm(x.data(), weight.data(), out.data(), x.size(), 1e-5f);
  double mean_square = 0;
  for (float v : x) mean_square += static_cast<double>(v) * v;
  mean_square /= 37;
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(out[i] == doctest::Approx(x[i] / std::sqrt(mean_square + 1e-5) * weight[i]).epsilon(1e-5));

  std::vector<float> probabilities = {1000.0f, 1000.0f, -1000.0f, 999.0f};
  lamina::reference::softmax(probabilities.data(), probabilities.size());
  CHECK(probabilities[0] == doctest::Approx(probabilities[1]));
  CHECK(probabilities[2] == 0.0f);
  CHECK(probabilities[0] + probabilities[1] + probabilities[2] + probabilities[3] == doctest::Approx(1.0));
  CHECK(probabilities[3] / probabilities[0] == doctest::Approx(std::exp(-1.0)));

  CHECK(lamina::reference::silu(0.0f) == 0.0f);
  CHECK(lamina::reference::silu(2.0f) == doctest::Approx(2.0 / (1.0 + std::exp(-2.0))));
}

TEST_CASE("rope rotates pairs by position × base^(-2i/n)") {
  lamina::reference::RopeParams params;
  params.rotary_dimension_count = 8;
  params.frequency_base = 10000.0f;
  const std::vector<float> original = random_floats(2 * 10, 5);  // 2 heads of size 10 (8 rotated, 2 passed through)
  for (lamina::reference::RopeStyle style : {lamina::reference::RopeStyle::interleaved, lamina::reference::RopeStyle::neox}) {
    std::vector<float> rotated = original;
    const float position = 7.0f;
    lamina::reference::rope(rotated.data(), 2, 10, position, params, style);
    for (int head = 0; head < 2; ++head) {
      const float* before = original.data() + head * 10;
      const float* after = rotated.data() + head * 10;
      for (int pair = 0; pair < 4; ++pair) {
        const int a = style == lamina::reference::RopeStyle::interleaved ? 2 * pair : pair;
        const int b = style == lamina::reference::RopeStyle::interleaved ? 2 * pair + 1 : pair + 4;
        const double theta = position * std::pow(10000.0, -2.0 * pair / 8.0);
        CHECK(after[a] == doctest::Approx(before[a] * std::cos(theta) - before[b] * std::sin(theta)).epsilon(1e-4));
        CHECK(after[b] == doctest::Approx(before[a] * std::sin(theta) + before[b] * std::cos(theta)).epsilon(1e-4));
      }
      CHECK(after[8] == before[8]);  // beyond rotary_dimension_count: untouched
      CHECK(after[9] == before[9]);
    }
  }
  // Linear scaling by 4 at position 8 equals no scaling at position 2.
  std::vector<float> scaled = original, plain = original;
  params.frequency_scale = 0.25f;
  lamina::reference::rope(scaled.data(), 2, 10, 8.0f, params, lamina::reference::RopeStyle::neox);
  params.frequency_scale = 1.0f;
  lamina::reference::rope(plain.data(), 2, 10, 2.0f, params, lamina::reference::RopeStyle::neox);
  for (std::size_t i = 0; i < scaled.size(); ++i) CHECK(scaled[i] == doctest::Approx(plain[i]).epsilon(1e-5));
}
