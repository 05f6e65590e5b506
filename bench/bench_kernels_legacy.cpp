// Matrix-product throughput for the 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// IQ4_NL): the integer kernels (8-bit activations, kernels/cpu/simd/quant_legacy.inl) against
// the float path (weights dequantized row by row, float activations) on the same weights, for
// the shapes of a 1B Llama (out x in: 2048 x 2048 attention, 8192 x 2048 ffn up/gate,
// 2048 x 8192 ffn down).
//
// usage: lamina_bench_bench_kernels_legacy [seconds-per-case (default 0.5)] [arch (default auto)]
//                                          [types, comma separated (default q4_0,q8_0)]
// One line per case:
//   type=q4_0 out=2048 in=2048 tokens=1 threads=1 path=int ms=0.123 cpu_ms=0.120 GB/s=12.3 GMAC/s=45.6
// ms is the best wall-clock time of the repetitions, cpu_ms the best processor time of the
// whole process (all threads together): on a shared machine the single-thread cpu_ms is the
// steadier figure. GB/s and GMAC/s are computed from ms. GB/s counts the weight bytes
// read once per call (what bounds decoding); GMAC/s counts out * in * tokens multiply-adds
// (what bounds prompts). Activation quantization is included in the integer path's time.
#include <lamina/lamina.hpp>

#include "bench_support.hpp"

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

using lamina_bench::run_matmul;

bool parse_type(const std::string& name, lamina::DType* type) {
  const lamina::DType known[] = {lamina::DType::q4_0, lamina::DType::q4_1, lamina::DType::q5_0,
                                 lamina::DType::q5_1, lamina::DType::q8_0, lamina::DType::iq4_nl};
  for (lamina::DType candidate : known) {
    if (name == lamina::dtype_name(candidate)) {
      *type = candidate;
      return true;
    }
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds_per_case = argc > 1 ? std::atof(argv[1]) : 0.5;
  lamina::CpuArch arch = lamina::CpuArch::automatic;
  if (argc > 2 && std::strcmp(argv[2], "auto") != 0 && !lamina::parse_cpu_arch(argv[2], &arch)) {
    std::fprintf(stderr, "unknown arch %s\n", argv[2]);
    return 2;
  }
  std::vector<lamina::DType> types;
  const std::string type_list = argc > 3 ? argv[3] : "q4_0,q8_0";
  for (std::size_t begin = 0; begin <= type_list.size();) {
    std::size_t end = type_list.find(',', begin);
    if (end == std::string::npos) end = type_list.size();
    lamina::DType type;
    if (!parse_type(type_list.substr(begin, end - begin), &type)) {
      std::fprintf(stderr, "unknown type %s\n", type_list.substr(begin, end - begin).c_str());
      return 2;
    }
    types.push_back(type);
    begin = end + 1;
  }
  const lamina::cpu::CpuKernels& kernels = lamina::cpu::cpu_kernels(arch);
  std::printf("# arch=%s\n", lamina::cpu_arch_name(kernels.arch));

  struct Shape {
    std::size_t out, in;
  };
  const Shape shapes[] = {{2048, 2048}, {8192, 2048}, {2048, 8192}};
  std::mt19937 generator(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);

  for (lamina::DType type : types) {
    for (const Shape& shape : shapes) {
      std::vector<float> values(shape.out * shape.in);
      for (float& value : values) value = normal(generator);
      const std::size_t row_bytes = lamina::row_bytes(type, shape.in);
      std::vector<std::uint8_t> weight_bytes(shape.out * row_bytes);
      for (std::size_t o = 0; o < shape.out; ++o) {
        if (!lamina::quant::quantize_row(type, values.data() + o * shape.in, weight_bytes.data() + o * row_bytes, shape.in).ok()) return 1;
      }
      const lamina::TensorView weight = lamina::contiguous_view(
          type, {static_cast<std::int64_t>(shape.out), static_cast<std::int64_t>(shape.in)}, weight_bytes.data());
      for (std::size_t tokens : {1u, 256u}) {
        std::vector<float> x(tokens * shape.in), y(tokens * shape.out);
        for (float& value : x) value = normal(generator);
        lamina::cpu::MatmulWorkspace workspace(shape.in, tokens);
        for (std::size_t threads : {1u, 2u}) {
          lamina::ThreadPool pool(threads);
          for (bool float_path : {true, false}) {
            run_matmul(pool, kernels, weight, x.data(), y.data(), tokens, workspace, float_path);  // warm up
            double best = 1e30, best_processor = 1e30;
            const Clock::time_point start = Clock::now();
            int repetitions = 0;
            while (repetitions < 3 || std::chrono::duration<double>(Clock::now() - start).count() < seconds_per_case) {
              const Clock::time_point begin = Clock::now();
              const std::clock_t processor_begin = std::clock();
              run_matmul(pool, kernels, weight, x.data(), y.data(), tokens, workspace, float_path);
              const double processor = static_cast<double>(std::clock() - processor_begin) / CLOCKS_PER_SEC;
              const double seconds = std::chrono::duration<double>(Clock::now() - begin).count();
              if (seconds < best) best = seconds;
              if (processor < best_processor) best_processor = processor;
              ++repetitions;
            }
            const double bytes = static_cast<double>(weight_bytes.size());
            const double macs = static_cast<double>(shape.out) * static_cast<double>(shape.in) * static_cast<double>(tokens);
            std::printf("type=%s out=%zu in=%zu tokens=%zu threads=%zu path=%s ms=%.3f cpu_ms=%.3f GB/s=%.1f GMAC/s=%.1f\n", lamina::dtype_name(type),
                        shape.out, shape.in, tokens, threads, float_path ? "float" : "int", best * 1e3, best_processor * 1e3, bytes / best * 1e-9,
                        macs / best * 1e-9);
            std::fflush(stdout);
          }
        }
      }
    }
  }
  return 0;
}
