// Tests of lamina/adapters/combine.hpp (and the QR/SVD of lamina/adapters/linalg.hpp through it):
// every PEFT combination method against an independent computation written here in plain double
// loops, never against combine()'s own earlier output; then option parsing and the errors.
#include <lamina/adapters/combine.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

namespace {

using lamina::lora::CombineInput;
using lamina::lora::CombineMethod;
using lamina::lora::CombineOptions;
using lamina::lora::LowRankFactors;
using lamina::lora::MajoritySign;

// A tiny deterministic generator for test data (independent of lamina's xoshiro256**).
struct TestRandom {
  std::uint64_t state;
  explicit TestRandom(std::uint64_t seed) : state(seed * 2862933555777941757ull + 3037000493ull) {}
  std::uint32_t next() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<std::uint32_t>(state >> 33);
  }
  float uniform(float low, float high) { return low + (high - low) * static_cast<float>(next() >> 8) / 16777216.0f; }
};

LowRankFactors random_factors(std::size_t rank, std::size_t in, std::size_t out, std::uint64_t seed,
                              float low = -1.0f, float high = 1.0f) {
  TestRandom random(seed);
  LowRankFactors f;
  f.rank = rank;
  f.in = in;
  f.out = out;
  f.a.resize(rank * in);
  f.b.resize(out * rank);
  for (float& v : f.a) v = random.uniform(low, high);
  for (float& v : f.b) v = random.uniform(low, high);
  return f;
}

// [out, in] row-major, double: sum_i factor_i * B_i A_i.
std::vector<double> summed_delta(const std::vector<CombineInput>& inputs, bool scaling_twice = false) {
  const std::size_t in = inputs[0].factors->in, out = inputs[0].factors->out;
  std::vector<double> delta(out * in, 0.0);
  for (const CombineInput& input : inputs) {
    double factor = static_cast<double>(input.weight) * input.scaling;
    if (scaling_twice) factor *= input.scaling;
    const LowRankFactors& f = *input.factors;
    for (std::size_t o = 0; o < out; ++o)
      for (std::size_t i = 0; i < in; ++i) {
        double sum = 0.0;
        for (std::size_t j = 0; j < f.rank; ++j) sum += static_cast<double>(f.b[o * f.rank + j]) * f.a[j * in + i];
        delta[o * in + i] += factor * sum;
      }
  }
  return delta;
}

// [out, in]: B A of a result, scaling 1.
std::vector<double> product(const LowRankFactors& f) {
  std::vector<double> delta(f.out * f.in, 0.0);
  for (std::size_t o = 0; o < f.out; ++o)
    for (std::size_t i = 0; i < f.in; ++i) {
      double sum = 0.0;
      for (std::size_t j = 0; j < f.rank; ++j) sum += static_cast<double>(f.b[o * f.rank + j]) * f.a[j * f.in + i];
      delta[o * f.in + i] = sum;
    }
  return delta;
}

double max_abs(const std::vector<double>& values) {
  double m = 0.0;
  for (double v : values) m = std::max(m, std::fabs(v));
  return m;
}

double max_abs_difference(const std::vector<double>& x, const std::vector<double>& y) {
  REQUIRE(x.size() == y.size());
  double m = 0.0;
  for (std::size_t e = 0; e < x.size(); ++e) m = std::max(m, std::fabs(x[e] - y[e]));
  return m;
}

double frobenius_difference(const std::vector<double>& x, const std::vector<double>& y) {
  double sum = 0.0;
  for (std::size_t e = 0; e < x.size(); ++e) sum += (x[e] - y[e]) * (x[e] - y[e]);
  return std::sqrt(sum);
}

// Eigenvalues of a symmetric [n, n] matrix by the classical two-sided cyclic Jacobi method, sorted
// descending. Independent of linalg.hpp's one-sided SVD: used on D D^T, whose eigenvalues are the
// squared singular values of D.
std::vector<double> symmetric_eigenvalues(std::vector<double> m, std::size_t n) {
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0.0;
    for (std::size_t p = 0; p < n; ++p)
      for (std::size_t q = p + 1; q < n; ++q) off += m[p * n + q] * m[p * n + q];
    if (off < 1e-30) break;
    for (std::size_t p = 0; p < n; ++p)
      for (std::size_t q = p + 1; q < n; ++q) {
        const double apq = m[p * n + q];
        if (apq == 0.0) continue;
        const double theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
        for (std::size_t k = 0; k < n; ++k) {  // columns p, q
          const double x = m[k * n + p], y = m[k * n + q];
          m[k * n + p] = c * x - s * y;
          m[k * n + q] = s * x + c * y;
        }
        for (std::size_t k = 0; k < n; ++k) {  // rows p, q
          const double x = m[p * n + k], y = m[q * n + k];
          m[p * n + k] = c * x - s * y;
          m[q * n + k] = s * x + c * y;
        }
      }
  }
  std::vector<double> eigenvalues(n);
  for (std::size_t i = 0; i < n; ++i) eigenvalues[i] = m[i * n + i];
  std::sort(eigenvalues.rbegin(), eigenvalues.rend());
  return eigenvalues;
}

// Squared singular values of an [rows, columns] matrix, descending (rows of them).
std::vector<double> squared_singular_values(const std::vector<double>& d, std::size_t rows, std::size_t columns) {
  std::vector<double> gram(rows * rows, 0.0);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < rows; ++j) {
      double sum = 0.0;
      for (std::size_t k = 0; k < columns; ++k) sum += d[i * columns + k] * d[j * columns + k];
      gram[i * rows + j] = sum;
    }
  return symmetric_eigenvalues(gram, rows);
}

lamina::lora::LowRankFactors combine_ok(const std::vector<CombineInput>& inputs, const CombineOptions& options) {
  auto result = lamina::lora::combine(inputs, options);
  if (!result) FAIL_CHECK(result.error().message);
  REQUIRE(result.ok());
  return *std::move(result);
}

CombineOptions options_for(CombineMethod method, float density = 1.0f) {
  CombineOptions options;
  options.method = method;
  options.density = density;
  return options;
}

// --- A straightforward re-implementation of merge_utils for one side (A or B) -------------------

std::vector<float> reference_magnitude_prune(std::vector<float> t, float density) {
  if (density >= 1.0f) return t;
  const auto keep = static_cast<std::size_t>(std::floor(static_cast<double>(density) * t.size()));
  std::vector<float> magnitudes(t.size());
  for (std::size_t e = 0; e < t.size(); ++e) magnitudes[e] = std::fabs(t[e]);
  std::vector<float> sorted = magnitudes;
  std::sort(sorted.rbegin(), sorted.rend());
  // Test data has distinct magnitudes, so "among the keep largest" is "at least the keep-th largest".
  const float threshold = keep == 0 ? INFINITY : sorted[keep - 1];
  for (std::size_t e = 0; e < t.size(); ++e)
    if (magnitudes[e] < threshold) t[e] = 0.0f;
  return t;
}

int sign(double v) { return (v > 0) - (v < 0); }

// ties over the tensors of one side; weights as PEFT passes them.
std::vector<double> reference_ties(const std::vector<std::vector<float>>& tensors, const std::vector<double>& weights,
                                   float density, MajoritySign method) {
  std::vector<std::vector<float>> pruned;
  for (const auto& t : tensors) pruned.push_back(reference_magnitude_prune(t, density));
  std::vector<double> merged(tensors[0].size());
  for (std::size_t e = 0; e < merged.size(); ++e) {
    double vote = 0.0;
    for (const auto& p : pruned) vote += method == MajoritySign::total ? p[e] : sign(p[e]);
    const int majority = vote >= 0 ? 1 : -1;
    double sum = 0.0;
    int count = 0;
    for (std::size_t i = 0; i < pruned.size(); ++i)
      if (sign(pruned[i][e]) == majority) {
        sum += weights[i] * pruned[i][e];
        ++count;
      }
    merged[e] = sum / std::max(count, 1);
  }
  return merged;
}

void check_close(const std::vector<float>& actual, const std::vector<double>& expected, double tolerance) {
  REQUIRE(actual.size() == expected.size());
  double worst = 0.0;
  for (std::size_t e = 0; e < actual.size(); ++e) worst = std::max(worst, std::fabs(actual[e] - expected[e]));
  CHECK(worst <= tolerance);
}

}  // namespace

TEST_CASE("combine cat: B' A' is exactly the weighted sum of the deltas") {
  const auto f1 = random_factors(2, 23, 17, 1), f2 = random_factors(3, 23, 17, 2), f3 = random_factors(4, 23, 17, 3);
  const std::vector<CombineInput> inputs = {{&f1, 2.0f, 0.7f}, {&f2, 0.5f, -1.3f}, {&f3, 1.0f / std::sqrt(4.0f), 0.4f}};
  const LowRankFactors result = combine_ok(inputs, options_for(CombineMethod::cat));
  CHECK(result.rank == 9);
  CHECK(result.in == 23);
  CHECK(result.out == 17);
  const auto expected = summed_delta(inputs);
  CHECK(max_abs_difference(product(result), expected) <= 1e-5 * max_abs(expected));
  // B' holds the inputs' B unchanged, side by side (PEFT: torch.cat(loras_B, dim=1)).
  CHECK(result.b[0 * 9 + 2] == f2.b[0 * 3 + 0]);
  CHECK(result.b[16 * 9 + 8] == f3.b[16 * 4 + 3]);
}

TEST_CASE("combine svd at full rank reproduces the summed delta") {
  // Three shapes: tall core (out > in), and both wide cases where out or in is below R = 9, so the
  // QR factors are rank-deficient and the Jacobi core is wide or tall.
  struct Shape { std::size_t in, out; };
  for (Shape shape : {Shape{23, 17}, Shape{30, 5}, Shape{6, 40}}) {
    CAPTURE(shape.in);
    CAPTURE(shape.out);
    const auto f1 = random_factors(2, shape.in, shape.out, 11), f2 = random_factors(3, shape.in, shape.out, 12),
               f3 = random_factors(4, shape.in, shape.out, 13);
    const std::vector<CombineInput> inputs = {{&f1, 2.0f, 0.7f}, {&f2, 0.5f, -1.3f}, {&f3, 0.25f, 0.4f}};
    CombineOptions options = options_for(CombineMethod::svd);
    options.rank = 9;
    const LowRankFactors result = combine_ok(inputs, options);
    CHECK(result.rank == 9);
    const auto expected = summed_delta(inputs);
    CHECK(max_abs_difference(product(result), expected) <= 1e-4 * max_abs(expected));
  }
}

TEST_CASE("combine svd at lower rank is the best rank-k approximation") {
  const auto f1 = random_factors(3, 29, 19, 21), f2 = random_factors(5, 29, 19, 22);
  const std::vector<CombineInput> inputs = {{&f1, 2.0f, 0.6f}, {&f2, 1.0f, 0.9f}};
  const auto delta = summed_delta(inputs);
  const auto sigma_squared = squared_singular_values(delta, 19, 29);  // independent: Jacobi on D D^T

  for (std::size_t k : {std::size_t{1}, std::size_t{3}, std::size_t{6}}) {
    CAPTURE(k);
    CombineOptions options = options_for(CombineMethod::svd);
    options.rank = k;
    const LowRankFactors result = combine_ok(inputs, options);
    REQUIRE(result.rank == k);
    // Eckart–Young: ||D - D_k||_F^2 = sum of the dropped sigma^2.
    double dropped = 0.0;
    for (std::size_t j = k; j < sigma_squared.size(); ++j) dropped += std::max(sigma_squared[j], 0.0);
    CHECK(frobenius_difference(product(result), delta) == doctest::Approx(std::sqrt(dropped)).epsilon(1e-4));
    // B' = U_k S_k: its column norms are the k largest singular values, descending; A' = Vh_k has
    // orthonormal rows.
    for (std::size_t j = 0; j < k; ++j) {
      double column = 0.0;
      for (std::size_t o = 0; o < 19; ++o) column += static_cast<double>(result.b[o * k + j]) * result.b[o * k + j];
      CHECK(std::sqrt(column) == doctest::Approx(std::sqrt(sigma_squared[j])).epsilon(1e-4));
      for (std::size_t l = 0; l < k; ++l) {
        double dot = 0.0;
        for (std::size_t i = 0; i < 29; ++i) dot += static_cast<double>(result.a[j * 29 + i]) * result.a[l * 29 + i];
        CHECK(dot == doctest::Approx(j == l ? 1.0 : 0.0).epsilon(1e-5).scale(1.0));
      }
    }
  }

  SUBCASE("rank 0 means the largest input rank") {
    const LowRankFactors result = combine_ok(inputs, options_for(CombineMethod::svd));
    CHECK(result.rank == 5);
  }
  SUBCASE("a rank above the delta's own leaves zero components") {
    CombineOptions options = options_for(CombineMethod::svd);
    options.rank = 12;  // the delta has rank 8
    const LowRankFactors result = combine_ok(inputs, options);
    CHECK(result.rank == 12);
    CHECK(max_abs_difference(product(result), delta) <= 1e-4 * max_abs(delta));
    for (std::size_t i = 0; i < 29; ++i) CHECK(result.a[10 * 29 + i] == 0.0f);
  }
}

TEST_CASE("combine svd imitating PEFT's code applies the scaling twice") {
  const auto f1 = random_factors(2, 12, 10, 31), f2 = random_factors(3, 12, 10, 32);
  const std::vector<CombineInput> inputs = {{&f1, 2.0f, 0.7f}, {&f2, 0.5f, 1.5f}};
  CombineOptions options = options_for(CombineMethod::svd);
  options.rank = 5;
  options.svd_scaling_twice_like_peft = true;
  const auto expected = summed_delta(inputs, /*scaling_twice=*/true);
  CHECK(max_abs_difference(product(combine_ok(inputs, options)), expected) <= 1e-4 * max_abs(expected));
}

TEST_CASE("combine svd clamp: entries limited to the q-quantile of B' and A' together") {
  const auto f1 = random_factors(3, 14, 11, 41), f2 = random_factors(3, 14, 11, 42);
  const std::vector<CombineInput> inputs = {{&f1, 1.0f, 1.0f}, {&f2, 1.0f, 0.5f}};
  CombineOptions options = options_for(CombineMethod::svd);
  options.rank = 4;
  const LowRankFactors plain = combine_ok(inputs, options);
  options.svd_clamp = 0.9f;
  const LowRankFactors clamped = combine_ok(inputs, options);

  std::vector<double> all(plain.b.begin(), plain.b.end());
  all.insert(all.end(), plain.a.begin(), plain.a.end());
  std::sort(all.begin(), all.end());
  const double position = 0.9 * static_cast<double>(all.size() - 1);
  const std::size_t below = static_cast<std::size_t>(position);
  const double high = all[below] + (all[below + 1] - all[below]) * (position - static_cast<double>(below));
  auto clamp = [&](float v) { return std::min(std::max(static_cast<double>(v), -high), high); };
  std::vector<double> expected_b, expected_a;
  for (float v : plain.b) expected_b.push_back(clamp(v));
  for (float v : plain.a) expected_a.push_back(clamp(v));
  check_close(clamped.b, expected_b, 1e-6);
  check_close(clamped.a, expected_a, 1e-6);
  CHECK(std::count_if(clamped.a.begin(), clamped.a.end(), [&](float v) { return std::fabs(v) >= high - 1e-6; }) > 0);
}

TEST_CASE("combine linear: (sum sqrt|c| B)(sum sign(c) sqrt|c| A), cross terms included") {
  const auto f1 = random_factors(4, 15, 13, 51), f2 = random_factors(4, 15, 13, 52);
  const std::vector<CombineInput> inputs = {{&f1, 2.0f, 0.7f}, {&f2, 0.5f, -1.3f}};
  const LowRankFactors result = combine_ok(inputs, options_for(CombineMethod::linear));
  CHECK(result.rank == 4);
  const double c1 = 2.0 * 0.7f, c2 = 0.5 * -1.3f;
  std::vector<double> expected_a(f1.a.size()), expected_b(f1.b.size());
  for (std::size_t e = 0; e < expected_a.size(); ++e)
    expected_a[e] = std::sqrt(c1) * f1.a[e] - std::sqrt(-c2) * f2.a[e];
  for (std::size_t e = 0; e < expected_b.size(); ++e)
    expected_b[e] = std::sqrt(c1) * f1.b[e] + std::sqrt(-c2) * f2.b[e];
  check_close(result.a, expected_a, 1e-6);
  check_close(result.b, expected_b, 1e-6);
}

TEST_CASE("combine with one input is linear whatever the method, as PEFT") {
  const auto f = random_factors(4, 10, 8, 61);
  CombineOptions options = options_for(CombineMethod::svd);
  options.rank = 1;
  const LowRankFactors result = combine_ok({{&f, 0.5f, -2.0f}}, options);
  CHECK(result.rank == 4);
  for (std::size_t e = 0; e < f.a.size(); ++e) CHECK(result.a[e] == doctest::Approx(-1.0 * f.a[e]));
  for (std::size_t e = 0; e < f.b.size(); ++e) CHECK(result.b[e] == doctest::Approx(1.0 * f.b[e]));
}

TEST_CASE("combine ties with density 1 and positive inputs is the mean of the weighted tensors") {
  const auto f1 = random_factors(3, 11, 9, 71, 0.1f, 1.0f), f2 = random_factors(3, 11, 9, 72, 0.1f, 1.0f),
             f3 = random_factors(3, 11, 9, 73, 0.1f, 1.0f);
  const std::vector<CombineInput> inputs = {{&f1, 1.0f, 0.5f}, {&f2, 2.0f, 1.0f}, {&f3, 0.5f, 2.0f}};
  const LowRankFactors result = combine_ok(inputs, options_for(CombineMethod::ties, 1.0f));
  const double r1 = std::sqrt(0.5), r2 = std::sqrt(2.0), r3 = 1.0;
  std::vector<double> expected_a(f1.a.size()), expected_b(f1.b.size());
  for (std::size_t e = 0; e < expected_a.size(); ++e) expected_a[e] = (r1 * f1.a[e] + r2 * f2.a[e] + r3 * f3.a[e]) / 3;
  for (std::size_t e = 0; e < expected_b.size(); ++e) expected_b[e] = (r1 * f1.b[e] + r2 * f2.b[e] + r3 * f3.b[e]) / 3;
  check_close(result.a, expected_a, 1e-6);
  check_close(result.b, expected_b, 1e-6);
}

TEST_CASE("combine ties and magnitude_prune at density 0.5, element by element") {
  const auto f1 = random_factors(4, 13, 10, 81), f2 = random_factors(4, 13, 10, 82), f3 = random_factors(4, 13, 10, 83);
  const std::vector<CombineInput> inputs = {{&f1, 1.0f, 0.8f}, {&f2, 2.0f, -0.4f}, {&f3, 0.5f, 1.2f}};
  std::vector<double> weights_a, weights_b;
  for (const CombineInput& input : inputs) {
    const double c = static_cast<double>(input.weight) * input.scaling;
    weights_a.push_back(c >= 0 ? std::sqrt(c) : -std::sqrt(-c));
    weights_b.push_back(std::sqrt(std::fabs(c)));
  }
  const std::vector<std::vector<float>> a_tensors = {f1.a, f2.a, f3.a}, b_tensors = {f1.b, f2.b, f3.b};

  // The pruning itself: exactly floor(0.5 * 52) = 26 of each A survive, the largest in magnitude.
  const auto pruned = reference_magnitude_prune(f1.a, 0.5f);
  CHECK(std::count_if(pruned.begin(), pruned.end(), [](float v) { return v != 0.0f; }) == 26);

  for (MajoritySign method : {MajoritySign::total, MajoritySign::frequency}) {
    CAPTURE(lamina::lora::to_string(method));
    CombineOptions options = options_for(CombineMethod::ties, 0.5f);
    options.majority_sign = method;
    const LowRankFactors result = combine_ok(inputs, options);
    check_close(result.a, reference_ties(a_tensors, weights_a, 0.5f, method), 1e-6);
    check_close(result.b, reference_ties(b_tensors, weights_b, 0.5f, method), 1e-6);
  }

  const LowRankFactors pruned_sum = combine_ok(inputs, options_for(CombineMethod::magnitude_prune, 0.3f));
  std::vector<double> expected(f1.a.size(), 0.0);
  for (std::size_t i = 0; i < 3; ++i) {
    const auto p = reference_magnitude_prune(a_tensors[i], 0.3f);
    for (std::size_t e = 0; e < p.size(); ++e) expected[e] += weights_a[i] * p[e];
  }
  check_close(pruned_sum.a, expected, 1e-6);
}

TEST_CASE("combine dare: seeded, density 1 is linear, masks keep about density of the entries") {
  const auto f1 = random_factors(4, 17, 12, 91), f2 = random_factors(4, 17, 12, 92);
  const std::vector<CombineInput> inputs = {{&f1, 1.0f, 0.8f}, {&f2, 2.0f, 0.3f}};

  SUBCASE("same seed, same bits; another seed, other masks") {
    CombineOptions options = options_for(CombineMethod::dare_linear, 0.4f);
    options.seed = 1234;
    const LowRankFactors first = combine_ok(inputs, options);
    const LowRankFactors again = combine_ok(inputs, options);
    CHECK(first.a == again.a);
    CHECK(first.b == again.b);
    options.seed = 1235;
    const LowRankFactors other = combine_ok(inputs, options);
    CHECK(first.a != other.a);
  }
  SUBCASE("density 1 prunes nothing") {
    const LowRankFactors linear = combine_ok(inputs, options_for(CombineMethod::linear));
    const LowRankFactors dare = combine_ok(inputs, options_for(CombineMethod::dare_linear, 1.0f));
    CHECK(dare.a == linear.a);
    CHECK(dare.b == linear.b);
    const LowRankFactors ties = combine_ok(inputs, options_for(CombineMethod::ties, 1.0f));
    const LowRankFactors dare_ties = combine_ok(inputs, options_for(CombineMethod::dare_ties, 1.0f));
    CHECK(dare_ties.a == ties.a);
    CHECK(dare_ties.b == ties.b);
  }
  SUBCASE("mask rate and rescale") {
    // Input 0 is all ones, input 1 all zeros: an entry of A' is sqrt(c0) / density where input 0's
    // mask kept it, else 0.
    LowRankFactors ones;
    ones.rank = 8;
    ones.in = 200;
    ones.out = 150;
    ones.a.assign(8 * 200, 1.0f);
    ones.b.assign(150 * 8, 1.0f);
    LowRankFactors zeros = ones;
    std::fill(zeros.a.begin(), zeros.a.end(), 0.0f);
    std::fill(zeros.b.begin(), zeros.b.end(), 0.0f);
    for (CombineMethod method : {CombineMethod::dare_linear, CombineMethod::dare_ties}) {
      CAPTURE(lamina::lora::to_string(method));
      CombineOptions options = options_for(method, 0.3f);
      options.seed = 7;
      const LowRankFactors result = combine_ok({{&ones, 2.0f, 2.0f}, {&zeros, 1.0f, 1.0f}}, options);
      std::size_t kept = 0;
      for (float v : result.a) {
        if (v == 0.0f) continue;
        ++kept;
        CHECK(v == doctest::Approx(2.0 / 0.3));
      }
      const double rate = static_cast<double>(kept) / static_cast<double>(result.a.size());
      CHECK(std::fabs(rate - 0.3) < 0.05);
    }
  }
  SUBCASE("dare_linear is the weighted sum of rescaled masked tensors") {
    // With density 0.5, every kept entry of input i contributes w_i * value / 0.5; recover each
    // input's mask from a run where only that input is nonzero, then check the sum.
    CombineOptions options = options_for(CombineMethod::dare_linear, 0.5f);
    options.seed = 99;
    const LowRankFactors both = combine_ok(inputs, options);
    // Entries of A' are sums of up to two terms; each must be one of the four mask combinations.
    const double r1 = std::sqrt(0.8), r2 = std::sqrt(0.6);
    for (std::size_t e = 0; e < both.a.size(); ++e) {
      const double t1 = r1 * f1.a[e] / 0.5, t2 = r2 * f2.a[e] / 0.5;
      const double candidates[] = {0.0, t1, t2, t1 + t2};
      double best = 1e30;
      for (double c : candidates) best = std::min(best, std::fabs(both.a[e] - c));
      CHECK(best <= 1e-5);
    }
  }
}

TEST_CASE("combine method and majority sign names") {
  for (CombineMethod method : {CombineMethod::linear, CombineMethod::cat, CombineMethod::svd, CombineMethod::ties,
                               CombineMethod::dare_linear, CombineMethod::dare_ties, CombineMethod::magnitude_prune}) {
    auto parsed = lamina::lora::parse_combine_method(lamina::lora::to_string(method));
    REQUIRE(parsed.ok());
    CHECK(*parsed == method);
  }
  CHECK(std::string(lamina::lora::to_string(CombineMethod::dare_ties)) == "dare_ties");
  CHECK_FALSE(lamina::lora::parse_combine_method("ties_svd").ok());
  CHECK_FALSE(lamina::lora::parse_combine_method("").ok());
  CHECK(*lamina::lora::parse_majority_sign("frequency") == MajoritySign::frequency);
  auto bad = lamina::lora::parse_majority_sign("median");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == lamina::ErrorCode::invalid_argument);
}

TEST_CASE("combine errors") {
  using lamina::ErrorCode;
  const auto f1 = random_factors(4, 10, 8, 101), f2 = random_factors(4, 10, 8, 102), f3 = random_factors(2, 10, 8, 103);
  auto error_of = [](const std::vector<CombineInput>& inputs, const CombineOptions& options) {
    auto result = lamina::lora::combine(inputs, options);
    REQUIRE_FALSE(result.ok());
    return result.error();
  };
  CHECK(error_of({}, options_for(CombineMethod::cat)).code == ErrorCode::invalid_argument);
  CHECK(error_of({{nullptr, 1.0f, 1.0f}}, options_for(CombineMethod::cat)).code == ErrorCode::invalid_argument);

  const auto other_in = random_factors(4, 11, 8, 104), other_out = random_factors(4, 10, 9, 105);
  CHECK(error_of({{&f1, 1, 1}, {&other_in, 1, 1}}, options_for(CombineMethod::svd)).code == ErrorCode::type_mismatch);
  CHECK(error_of({{&f1, 1, 1}, {&other_out, 1, 1}}, options_for(CombineMethod::cat)).code == ErrorCode::type_mismatch);

  LowRankFactors short_a = f1;
  short_a.a.pop_back();
  const auto short_error = error_of({{&short_a, 1, 1}}, options_for(CombineMethod::svd));
  CHECK(short_error.code == ErrorCode::type_mismatch);
  CHECK(short_error.message.find("input 0") != std::string::npos);

  LowRankFactors empty = f1;
  empty.rank = 0;
  empty.a.clear();
  empty.b.clear();
  CHECK(error_of({{&f1, 1, 1}, {&empty, 1, 1}}, options_for(CombineMethod::cat)).code == ErrorCode::invalid_argument);

  for (CombineMethod method : {CombineMethod::linear, CombineMethod::ties, CombineMethod::dare_linear,
                               CombineMethod::dare_ties, CombineMethod::magnitude_prune}) {
    CAPTURE(lamina::lora::to_string(method));
    const auto e = error_of({{&f1, 1, 1}, {&f3, 1, 1}}, options_for(method, 0.5f));
    CHECK(e.code == ErrorCode::invalid_argument);
    CHECK(e.message.find("same rank") != std::string::npos);
  }
  // cat and svd accept different ranks.
  CHECK(lamina::lora::combine({{&f1, 1, 1}, {&f3, 1, 1}}, options_for(CombineMethod::cat)).ok());
  CHECK(lamina::lora::combine({{&f1, 1, 1}, {&f3, 1, 1}}, options_for(CombineMethod::svd)).ok());

  for (float density : {0.0f, -0.5f, 1.5f, NAN}) {
    CAPTURE(density);
    CHECK(error_of({{&f1, 1, 1}, {&f2, 1, 1}}, options_for(CombineMethod::ties, density)).code ==
          ErrorCode::invalid_argument);
    CHECK(error_of({{&f1, 1, 1}, {&f2, 1, 1}}, options_for(CombineMethod::dare_linear, density)).code ==
          ErrorCode::invalid_argument);
  }
  CombineOptions clamp = options_for(CombineMethod::svd);
  clamp.svd_clamp = 1.5f;
  CHECK(error_of({{&f1, 1, 1}, {&f2, 1, 1}}, clamp).code == ErrorCode::invalid_argument);

  LowRankFactors not_finite = f2;
  not_finite.b[3] = NAN;
  CHECK(error_of({{&f1, 1, 1}, {&not_finite, 1, 1}}, options_for(CombineMethod::cat)).code ==
        ErrorCode::invalid_argument);
  CHECK(error_of({{&f1, INFINITY, 1}, {&f2, 1, 1}}, options_for(CombineMethod::cat)).code ==
        ErrorCode::invalid_argument);
}
