// Tests of lamina/core: Result and Error, F16/BF16 conversions (exhaustive), dtype traits,
// tensor views, memory-mapped files and executors.
#include <lamina/core/dtype.hpp>
#include <lamina/core/executor.hpp>
#include <lamina/core/half.hpp>
#include <lamina/core/mapped_file.hpp>
#include <lamina/core/result.hpp>
#include <lamina/core/tensor.hpp>

#include <doctest/doctest.h>

#include "test_support.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using lamina::Error;
using lamina::ErrorCode;
using lamina::Result;

// ---------------------------------------------------------------------------------------------
// Result and Error

namespace {

Result<int> parse_digit(char c) {
  if (c < '0' || c > '9') return lamina::fail(ErrorCode::invalid_argument, std::string("'") + c + "' is not a digit");
  return c - '0';
}

Result<int> sum_of_digits(const char* text) {
  int sum = 0;
  for (const char* c = text; *c != '\0'; ++c) {
    Result<int> digit = parse_digit(*c);
    if (!digit) return digit.take_error();
    sum += *digit;
  }
  return sum;
}

Result<void> check_all_digits(const char* text) {
  for (const char* c = text; *c != '\0'; ++c) LAMINA_TRY(parse_digit(*c));
  return lamina::success();
}

Result<std::string> describe(const char* text) {
  LAMINA_TRY(check_all_digits(text));  // Result<void> through LAMINA_TRY into another Result type
  return std::string("digits: ") + text;
}

}  // namespace

TEST_CASE("Result holds a value or an Error") {
  Result<int> seven = parse_digit('7');
  REQUIRE(seven.ok());
  CHECK(static_cast<bool>(seven));
  CHECK(*seven == 7);
  CHECK(seven.value() == 7);

  Result<int> bad = parse_digit('x');
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == ErrorCode::invalid_argument);
  CHECK(bad.error().message == "'x' is not a digit");

  CHECK(*sum_of_digits("123") == 6);
  CHECK(sum_of_digits("12a").error().message == "'a' is not a digit");

  const Error with_context = bad.error().with_context("config.json");
  CHECK(with_context.code == ErrorCode::invalid_argument);
  CHECK(with_context.message == "config.json: 'x' is not a digit");
  CHECK(std::string(lamina::to_string(ErrorCode::missing)) == "missing");
  CHECK(std::string(lamina::to_string(ErrorCode::invalid_state)) == "invalid_state");
}

TEST_CASE("Result copies, moves and assigns") {
  Result<std::string> text = std::string(100, 'a');  // long enough to live on the heap
  Result<std::string> copy = text;
  CHECK(*copy == *text);
  Result<std::string> moved = std::move(text);
  CHECK(moved->size() == 100);
  copy = lamina::fail(ErrorCode::io, "gone");
  CHECK_FALSE(copy.ok());
  CHECK(copy.error().message == "gone");
  copy = moved;  // error -> value
  CHECK(*copy == std::string(100, 'a'));
  std::string taken = *std::move(moved);
  CHECK(taken.size() == 100);

  // Move-only values.
  Result<std::unique_ptr<int>> pointer = std::unique_ptr<int>(new int(42));
  Result<std::unique_ptr<int>> pointer_moved = std::move(pointer);
  REQUIRE(pointer_moved.ok());
  CHECK(**pointer_moved == 42);
  std::unique_ptr<int> owned = std::move(pointer_moved).value();
  CHECK(*owned == 42);

  Error error = parse_digit('?').take_error();
  CHECK(error.message == "'?' is not a digit");
}

TEST_CASE("Result<void> and LAMINA_TRY") {
  CHECK(check_all_digits("0123").ok());
  Result<void> failed = check_all_digits("01b3");
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().message == "'b' is not a digit");
  CHECK(*describe("42") == "digits: 42");
  Result<std::string> propagated = describe("4-2");
  REQUIRE_FALSE(propagated.ok());
  CHECK(propagated.error().code == ErrorCode::invalid_argument);
  CHECK(propagated.error().message == "'-' is not a digit");
  Result<void> success = lamina::success();
  CHECK(static_cast<bool>(success));
}

// ---------------------------------------------------------------------------------------------
// F16 and BF16

namespace {

bool f16_is_nan(std::uint16_t bits) { return (bits & 0x7c00u) == 0x7c00u && (bits & 0x3ffu) != 0; }
bool bf16_is_nan(std::uint16_t bits) { return (bits & 0x7f80u) == 0x7f80u && (bits & 0x7fu) != 0; }

// Value of an F16 bit pattern from its definition, in double (independent of lamina's bit tricks).
double f16_reference_value(std::uint16_t bits) {
  const int sign = (bits >> 15) & 1;
  const int exponent = (bits >> 10) & 0x1f;
  const int mantissa = bits & 0x3ff;
  double magnitude;
  if (exponent == 0x1f) magnitude = std::numeric_limits<double>::infinity();  // callers skip NaN
  else if (exponent == 0) magnitude = std::ldexp(static_cast<double>(mantissa), -24);
  else magnitude = std::ldexp(1.0 + mantissa / 1024.0, exponent - 15);
  return sign ? -magnitude : magnitude;
}

// Rounds x to a multiple of `quantum` (a power of two), ties to even, in exact double arithmetic.
double round_to_quantum(double x, double quantum) {
  const double scaled = x / quantum;  // exact: dividing by a power of two
  const double below = std::floor(scaled);
  const double fraction = scaled - below;
  double rounded = below;
  if (fraction > 0.5 || (fraction == 0.5 && std::fmod(below, 2.0) != 0.0)) rounded = below + 1.0;
  return rounded * quantum;
}

// F32 -> F16 by the definition: round to the nearest F16 (ties to even), then encode. Finite x.
std::uint16_t f16_reference_encode(float x) {
  const std::uint16_t sign = std::signbit(x) ? 0x8000u : 0u;
  const double magnitude = std::fabs(static_cast<double>(x));
  if (magnitude == 0.0) return sign;
  // The spacing of F16 values around `magnitude`: 2^(e - 10) for normal exponents e >= -14,
  // 2^-24 in the subnormal range.
  const int exponent = std::max(std::ilogb(magnitude), -14);
  const double rounded = round_to_quantum(magnitude, std::ldexp(1.0, exponent - 10));
  if (rounded >= 65536.0) return static_cast<std::uint16_t>(sign | 0x7c00u);  // past the largest finite (65504)
  if (rounded < std::ldexp(1.0, -14)) return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(rounded / std::ldexp(1.0, -24)));
  const int e = std::ilogb(rounded);
  const double mantissa = (rounded / std::ldexp(1.0, e) - 1.0) * 1024.0;
  return static_cast<std::uint16_t>(sign | ((e + 15) << 10) | static_cast<int>(mantissa));
}

// F32 -> BF16 by the definition (8 significant bits, float's exponent range). Finite x.
std::uint16_t bf16_reference_encode(float x) {
  const std::uint16_t sign = std::signbit(x) ? 0x8000u : 0u;
  const double magnitude = std::fabs(static_cast<double>(x));
  if (magnitude == 0.0) return sign;
  const int exponent = std::max(std::ilogb(magnitude), -126);
  const double rounded = round_to_quantum(magnitude, std::ldexp(1.0, exponent - 7));
  const double largest = std::ldexp(255.0 / 128.0, 127);  // 0x7f7f
  if (rounded > largest) return static_cast<std::uint16_t>(sign | 0x7f80u);
  const float as_float = static_cast<float>(rounded);  // exact: it has at most 8 significant bits
  return static_cast<std::uint16_t>(sign | (lamina::float_bits(as_float) >> 16));
}

std::string hex(std::uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%x", static_cast<unsigned>(value));
  return text;
}

struct BitsRandom {
  std::uint64_t state = 0x9e3779b97f4a7c15ull;
  std::uint32_t next() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return static_cast<std::uint32_t>(state >> 16);
  }
};

// Floats worth testing against a 16-bit format: every value of the format, the midpoints
// between neighbours (ties), and the floats just beside those midpoints.
template <class ToFloat>
std::vector<float> rounding_probes(ToFloat to_float, bool (*is_nan)(std::uint16_t), std::uint16_t infinity_bits) {
  std::vector<float> probes;
  for (std::uint32_t bits = 0; bits < infinity_bits; ++bits) {
    const float low = to_float(static_cast<std::uint16_t>(bits));
    const float high = to_float(static_cast<std::uint16_t>(bits + 1));  // bits + 1 == infinity at the top
    if (is_nan(static_cast<std::uint16_t>(bits))) continue;
    const double middle = (static_cast<double>(low) + static_cast<double>(high)) / 2.0;
    if (std::isinf(high)) {
      // Past the largest finite value: where rounding turns to infinity.
      const double step = static_cast<double>(low) - static_cast<double>(to_float(static_cast<std::uint16_t>(bits - 1)));
      const float edge = static_cast<float>(static_cast<double>(low) + step / 2.0);
      for (float value : {low, edge, std::nextafter(edge, 0.0f), std::nextafter(edge, std::numeric_limits<float>::max())}) {
        probes.push_back(value);
        probes.push_back(-value);
      }
      continue;
    }
    const float tie = static_cast<float>(middle);
    for (float value : {low, tie, std::nextafter(tie, 0.0f), std::nextafter(tie, std::numeric_limits<float>::max())}) {
      probes.push_back(value);
      probes.push_back(-value);
    }
  }
  BitsRandom random;
  for (int i = 0; i < 1000000; ++i) {
    const float value = lamina::float_from_bits(random.next());
    if (std::isfinite(value)) probes.push_back(value);
  }
  probes.push_back(std::numeric_limits<float>::max());
  probes.push_back(std::numeric_limits<float>::min());
  probes.push_back(std::numeric_limits<float>::denorm_min());
  return probes;
}

}  // namespace

TEST_CASE("F16: all 65536 patterns convert to float exactly and back unchanged") {
  int mismatches = 0;
  for (std::uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    const std::uint16_t half = static_cast<std::uint16_t>(bits);
    const float value = lamina::f16_to_f32(half);
    if (f16_is_nan(half)) {
      mismatches += !std::isnan(value);
      mismatches += !f16_is_nan(lamina::f32_to_f16(value));
      mismatches += std::signbit(value) != ((half & 0x8000u) != 0);
      continue;
    }
    mismatches += static_cast<double>(value) != f16_reference_value(half);
    mismatches += std::signbit(value) != ((half & 0x8000u) != 0);  // -0 stays -0
    mismatches += lamina::f32_to_f16(value) != half;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("F16: float -> F16 rounds to nearest, ties to even, like the definition") {
  const std::vector<float> probes = rounding_probes(lamina::f16_to_f32, f16_is_nan, 0x7c00u);
  REQUIRE(probes.size() > 1000000);
  int mismatches = 0;
  for (float value : probes) {
    const std::uint16_t expected = f16_reference_encode(value);
    const std::uint16_t got = lamina::f32_to_f16(value);
    if (got != expected && mismatches++ < 10) {
      INFO("float bits " << hex(lamina::float_bits(value)) << ": got " << hex(got) << ", expected " << hex(expected));
      CHECK(got == expected);
    }
  }
  CHECK(mismatches == 0);
  // Landmarks.
  CHECK(lamina::f32_to_f16(65504.0f) == 0x7bffu);
  CHECK(lamina::f32_to_f16(65519.99f) == 0x7bffu);
  CHECK(lamina::f32_to_f16(65520.0f) == 0x7c00u);  // the tie rounds to even: infinity
  CHECK(lamina::f32_to_f16(std::numeric_limits<float>::infinity()) == 0x7c00u);
  CHECK(lamina::f32_to_f16(-std::numeric_limits<float>::infinity()) == 0xfc00u);
  CHECK(lamina::f32_to_f16(std::ldexp(1.0f, -24)) == 0x0001u);
  CHECK(lamina::f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000u);  // tie with zero: even
  CHECK(lamina::f32_to_f16(std::ldexp(1.5f, -25)) == 0x0001u);
  CHECK(f16_is_nan(lamina::f32_to_f16(lamina::float_from_bits(0x7f800001u))));  // payload only in low bits
  CHECK(f16_is_nan(lamina::f32_to_f16(std::numeric_limits<float>::quiet_NaN())));
#if defined(__FLT16_MAX__) && !defined(__clang__)
  // A third opinion where the compiler has _Float16 (GCC 12+ on x86-64, ARM).
  int hardware_mismatches = 0;
  for (std::size_t i = 0; i < probes.size(); i += 7) {
    const _Float16 hardware = static_cast<_Float16>(probes[i]);
    std::uint16_t hardware_bits;
    std::memcpy(&hardware_bits, &hardware, sizeof hardware_bits);
    hardware_mismatches += hardware_bits != lamina::f32_to_f16(probes[i]);
  }
  CHECK(hardware_mismatches == 0);
#endif
}

TEST_CASE("BF16: all 65536 patterns convert to float exactly and back unchanged") {
  int mismatches = 0;
  for (std::uint32_t bits = 0; bits <= 0xffffu; ++bits) {
    const std::uint16_t bf16 = static_cast<std::uint16_t>(bits);
    const float value = lamina::bf16_to_f32(bf16);
    mismatches += lamina::float_bits(value) != (bits << 16);  // BF16 is the top half of a float
    if (bf16_is_nan(bf16)) {
      mismatches += !std::isnan(value);
      mismatches += !bf16_is_nan(lamina::f32_to_bf16(value));
      continue;
    }
    mismatches += lamina::f32_to_bf16(value) != bf16;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("BF16: float -> BF16 rounds to nearest, ties to even, like the definition") {
  const std::vector<float> probes = rounding_probes(lamina::bf16_to_f32, bf16_is_nan, 0x7f80u);
  int mismatches = 0;
  for (float value : probes) {
    const std::uint16_t expected = bf16_reference_encode(value);
    const std::uint16_t got = lamina::f32_to_bf16(value);
    if (got != expected && mismatches++ < 10) {
      INFO("float bits " << hex(lamina::float_bits(value)) << ": got " << hex(got) << ", expected " << hex(expected));
      CHECK(got == expected);
    }
  }
  CHECK(mismatches == 0);
  CHECK(lamina::f32_to_bf16(1.0f) == 0x3f80u);
  CHECK(lamina::f32_to_bf16(lamina::float_from_bits(0x3f808000u)) == 0x3f80u);  // tie, even stays
  CHECK(lamina::f32_to_bf16(lamina::float_from_bits(0x3f818000u)) == 0x3f82u);  // tie, odd rounds up
  CHECK(lamina::f32_to_bf16(std::numeric_limits<float>::max()) == 0x7f80u);     // rounds past the largest: inf
  CHECK(lamina::f32_to_bf16(-std::numeric_limits<float>::infinity()) == 0xff80u);
  CHECK(bf16_is_nan(lamina::f32_to_bf16(lamina::float_from_bits(0x7f800001u))));  // truncation alone would give inf
  CHECK(bf16_is_nan(lamina::f32_to_bf16(lamina::float_from_bits(0xffc00000u))));
}

// ---------------------------------------------------------------------------------------------
// DType traits and tensor views

TEST_CASE("dtype traits: block sizes and bytes as GGML defines them") {
  using lamina::DType;
  struct Expected {
    DType type;
    const char* name;
    std::uint32_t block_size;
    std::uint32_t block_bytes;
  };
  const Expected table[] = {
      {DType::f32, "f32", 1, 4},       {DType::f16, "f16", 1, 2},        {DType::bf16, "bf16", 1, 2},
      {DType::q4_0, "q4_0", 32, 18},   {DType::q4_1, "q4_1", 32, 20},    {DType::q5_0, "q5_0", 32, 22},
      {DType::q5_1, "q5_1", 32, 24},   {DType::q8_0, "q8_0", 32, 34},    {DType::q2_k, "q2_K", 256, 84},
      {DType::q3_k, "q3_K", 256, 110}, {DType::q4_k, "q4_K", 256, 144},  {DType::q5_k, "q5_K", 256, 176},
      {DType::q6_k, "q6_K", 256, 210}, {DType::q8_k, "q8_K", 256, 292},  {DType::i8, "i8", 1, 1},
      {DType::i32, "i32", 1, 4},       {DType::f64, "f64", 1, 8},
  };
  for (const Expected& expected : table) {
    INFO(expected.name);
    const lamina::DTypeTraits& traits = lamina::dtype_traits(expected.type);
    CHECK(std::string(traits.name) == expected.name);
    CHECK(std::string(lamina::dtype_name(expected.type)) == expected.name);
    CHECK(traits.block_size == expected.block_size);
    CHECK(traits.block_bytes == expected.block_bytes);
    CHECK(lamina::is_quantized(expected.type) == (expected.block_size > 1));
    CHECK(lamina::is_known_dtype(static_cast<std::uint32_t>(expected.type)));
  }
  // Bytes per weight of the k-quants, as their names promise (e.g. q4_K: 4.5 bits).
  CHECK(lamina::row_bytes(DType::q4_k, 4096) * 8 == 4096 * 9 / 2);
  CHECK(lamina::row_bytes(DType::q8_0, 64) == 68);
  CHECK(lamina::row_bytes(DType::f16, 10) == 20);
  for (std::uint32_t retired : {4u, 5u, 31u, 32u, 33u, 36u, 1000u}) CHECK_FALSE(lamina::is_known_dtype(retired));
}

TEST_CASE("TensorView: contiguous strides, rows and counts") {
  std::vector<float> data(2 * 3 * 4);
  const lamina::TensorView view = lamina::contiguous_view(lamina::DType::f32, {2, 3, 4}, data.data());
  CHECK(view.rank == 3);
  CHECK(view.dim(0) == 2);
  CHECK(view.dim(2) == 4);
  CHECK(view.stride[0] == 48);
  CHECK(view.stride[1] == 16);
  CHECK(view.stride[2] == 4);
  CHECK(view.element_count() == 24);
  CHECK(view.row_length() == 4);
  CHECK(view.row_count() == 6);
  CHECK(view.row(1) == reinterpret_cast<const std::uint8_t*>(data.data() + 4));
  CHECK_FALSE(view.empty());

  // Quantized rows: [3, 64] q8_0 is 3 rows of 2 blocks of 34 bytes.
  std::vector<std::uint8_t> blocks(3 * 68);
  const lamina::TensorView quantized = lamina::contiguous_view(lamina::DType::q8_0, {3, 64}, blocks.data());
  CHECK(quantized.stride[0] == 68);
  CHECK(quantized.stride[1] == 34);
  CHECK(quantized.row(2) == blocks.data() + 136);
  CHECK(quantized.row_count() == 3);

  const lamina::TensorView vector = lamina::contiguous_view(lamina::DType::f16, {10}, data.data());
  CHECK(vector.row_length() == 10);
  CHECK(vector.row_count() == 1);
  CHECK(lamina::TensorView{}.empty());
}

// ---------------------------------------------------------------------------------------------
// MappedFile

TEST_CASE("MappedFile: a missing file is an io Error naming it") {
  const std::string path = lamina_test::temp_path("does-not-exist.bin");
  Result<lamina::MappedFile> file = lamina::MappedFile::open(path);
  REQUIRE_FALSE(file.ok());
  CHECK(file.error().code == ErrorCode::io);
  CHECK(file.error().message.find(path) != std::string::npos);
}

TEST_CASE("MappedFile: a real file maps with its bytes; empty files and moves work") {
  const std::string path = lamina_test::temp_path("mapped.bin");
  std::vector<unsigned char> bytes(10000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i * 7 + 3);
  {
    std::FILE* out = std::fopen(path.c_str(), "wb");
    REQUIRE(out != nullptr);
    REQUIRE(std::fwrite(bytes.data(), 1, bytes.size(), out) == bytes.size());
    std::fclose(out);
  }
  {
    Result<lamina::MappedFile> file = lamina::MappedFile::open(path);
    REQUIRE_MESSAGE(file.ok(), (file.ok() ? "" : file.error().message));
    CHECK(file->size() == bytes.size());
    CHECK(file->path() == path);
    CHECK(std::memcmp(file->data(), bytes.data(), bytes.size()) == 0);
    lamina::MappedFile moved = std::move(*file);
    CHECK(moved.size() == bytes.size());
    CHECK(moved.data()[9999] == bytes[9999]);
    lamina::MappedFile assigned;
    assigned = std::move(moved);
    CHECK(assigned.size() == bytes.size());
    CHECK(assigned.data()[1] == bytes[1]);
  }
  std::remove(path.c_str());

  const std::string empty_path = lamina_test::temp_path("empty.bin");
  std::FILE* out = std::fopen(empty_path.c_str(), "wb");
  REQUIRE(out != nullptr);
  std::fclose(out);
  Result<lamina::MappedFile> empty = lamina::MappedFile::open(empty_path);
  REQUIRE(empty.ok());
  CHECK(empty->size() == 0);
  CHECK(empty->data() == nullptr);
  std::remove(empty_path.c_str());

#if !defined(_WIN32)
  Result<lamina::MappedFile> directory = lamina::MappedFile::open("/");
  CHECK_FALSE(directory.ok());
#endif
}

// ---------------------------------------------------------------------------------------------
// Executors

namespace {

// Runs every task of a parallel_for and checks each ran exactly once.
bool runs_each_task_once(lamina::Executor& executor, std::size_t count) {
  std::vector<std::atomic<int>> runs(count);
  for (std::atomic<int>& r : runs) r.store(0);
  lamina::parallel_for(executor, count, [&](std::size_t i) { runs[i].fetch_add(1, std::memory_order_relaxed); });
  for (const std::atomic<int>& r : runs) {
    if (r.load() != 1) return false;
  }
  return true;
}

// A host job system, as a game engine would plug in: it starts its own threads for each run and
// hands out task indices from a shared counter.
class HostExecutor final : public lamina::Executor {
 public:
  explicit HostExecutor(std::size_t workers) : workers_(workers) {}
  std::size_t concurrency() const override { return workers_; }
  void run(std::size_t count, lamina::TaskRef task) override {
    std::atomic<std::size_t> next{0};
    auto work = [&] {
      for (std::size_t i = next.fetch_add(1); i < count; i = next.fetch_add(1)) task(i);
    };
    std::vector<std::thread> threads;
    for (std::size_t t = 1; t < workers_; ++t) threads.emplace_back(work);
    work();
    for (std::thread& thread : threads) thread.join();
    runs_.fetch_add(1);
  }
  std::size_t runs() const { return runs_.load(); }

 private:
  std::size_t workers_;
  std::atomic<std::size_t> runs_{0};
};

}  // namespace

TEST_CASE("ThreadPool: every task runs exactly once, many times over, with 1 to 4 threads") {
  for (std::size_t threads = 1; threads <= 4; ++threads) {
    lamina::ThreadPool pool(threads);
    CHECK(pool.concurrency() == threads);
    bool all_once = true;
    for (int round = 0; round < 200; ++round) {
      for (std::size_t count : {0u, 1u, 2u, 3u, 7u, 64u, 1000u}) all_once = all_once && runs_each_task_once(pool, count);
    }
    INFO(threads << " threads");
    CHECK(all_once);
  }
  lamina::SerialExecutor serial;
  CHECK(runs_each_task_once(serial, 100));
}

TEST_CASE("ThreadPool: results do not depend on the number of threads") {
  std::vector<double> sums;
  for (std::size_t threads = 1; threads <= 4; ++threads) {
    lamina::ThreadPool pool(threads);
    std::vector<double> partial(16, 0.0);
    lamina::parallel_for(pool, partial.size(), [&](std::size_t chunk) {
      for (std::size_t i = chunk * 1000; i < (chunk + 1) * 1000; ++i) partial[chunk] += 1.0 / static_cast<double>(i + 1);
    });
    double total = 0.0;
    for (double p : partial) total += p;
    sums.push_back(total);
  }
  for (double sum : sums) CHECK(sum == sums[0]);
}

TEST_CASE("a host Executor works with parallel_for, nested inside another executor") {
  HostExecutor outer(3);
  HostExecutor inner(2);
  CHECK(runs_each_task_once(outer, 50));
  std::vector<std::atomic<int>> runs(8 * 16);
  for (std::atomic<int>& r : runs) r.store(0);
  lamina::ThreadPool pool(2);
  // Outer tasks on the host's threads, each running an inner parallel_for: on its own host
  // executor for even tasks, on a lamina ThreadPool for odd ones (the pool takes one run at a time).
  lamina::parallel_for(outer, 8, [&](std::size_t i) {
    if (i % 2 == 0) {
      lamina::parallel_for(inner, 16, [&](std::size_t j) { runs[i * 16 + j].fetch_add(1); });
    } else {
      lamina::parallel_for(pool, 16, [&](std::size_t j) { runs[i * 16 + j].fetch_add(1); });
    }
  });
  bool all_once = true;
  for (const std::atomic<int>& r : runs) all_once = all_once && r.load() == 1;
  CHECK(all_once);
  CHECK(outer.runs() == 2);
  CHECK(inner.runs() == 4);
}
