// Matrix-product throughput for K-quant weights: the integer kernels (Q8_K activations) against
// the float path (weights dequantized, float activations) on the same weights, for the shapes
// of a 1B Llama (in 2048, out 2048 and 8192; in 8192, out 2048 for ffn_down).
//
// usage: lamina_bench_bench_kernels_k [seconds-per-case (default 0.5)] [arch (default auto)]
//   (cmake --build build/gcc-cxx17-release --target lamina_bench_bench_kernels_k; the program is
//   in build/gcc-cxx17-release/bench/)
// One line per case:
//   type=q4_K out=2048 in=2048 tokens=1 threads=1 weights=cold path=int ms=0.123 GB/s=12.3 GMAC/s=45.6
// GB/s counts the weight bytes read once per call (what bounds decoding); GMAC/s counts
// out * in * tokens multiply-adds (what bounds prompts). weights=hot reuses one copy of the
// weights (it stays in the L2/L3 caches: the kernel's own speed); weights=cold cycles through
// copies filling 512 MiB, so every call reads its weights from memory, as a model's decoding does.
// Each figure is the fastest of several batches of calls of about 20 ms.
#include <lamina/lamina.hpp>

#include "bench_support.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

using lamina_bench::run_matmul;

}  // namespace

int main(int argc, char** argv) {
  const double seconds_per_case = argc > 1 ? std::atof(argv[1]) : 0.5;
  lamina::CpuArch arch = lamina::CpuArch::automatic;
  if (argc > 2 && !lamina::parse_cpu_arch(argv[2], &arch)) {
    std::fprintf(stderr, "unknown arch %s\n", argv[2]);
    return 2;
  }
  const lamina::cpu::CpuKernels& kernels = lamina::cpu::cpu_kernels(arch);
  std::printf("# arch=%s\n", lamina::cpu_arch_name(kernels.arch));

  struct Shape {
    std::size_t out, in;
  };
  const Shape shapes[] = {{2048, 2048}, {8192, 2048}, {2048, 8192}};
  const lamina::DType types[] = {lamina::DType::q4_k, lamina::DType::q6_k};
  std::mt19937 generator(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);

  for (lamina::DType type : types) {
    for (const Shape& shape : shapes) {
      std::vector<float> values(shape.out * shape.in);
      for (float& value : values) value = normal(generator);
      const std::size_t row_bytes = lamina::row_bytes(type, shape.in);
      const std::size_t matrix_bytes = shape.out * row_bytes;
      const std::size_t copies = (std::size_t{512} << 20) / matrix_bytes + 1;
      std::vector<std::uint8_t> weight_bytes(copies * matrix_bytes);
      for (std::size_t o = 0; o < shape.out; ++o) {
        if (!lamina::quant::quantize_row(type, values.data() + o * shape.in, weight_bytes.data() + o * row_bytes, shape.in).ok()) return 1;
      }
      for (std::size_t copy = 1; copy < copies; ++copy) {
        std::memcpy(weight_bytes.data() + copy * matrix_bytes, weight_bytes.data(), matrix_bytes);
      }
      std::vector<lamina::TensorView> weights;
      for (std::size_t copy = 0; copy < copies; ++copy) {
        weights.push_back(lamina::contiguous_view(type, {static_cast<std::int64_t>(shape.out), static_cast<std::int64_t>(shape.in)},
                                                  weight_bytes.data() + copy * matrix_bytes));
      }
      for (std::size_t tokens : {std::size_t{1}, std::size_t{256}}) {
        std::vector<float> x(tokens * shape.in), y(tokens * shape.out);
        for (float& value : x) value = normal(generator);
        lamina::cpu::MatmulWorkspace workspace(shape.in, tokens);
        for (std::size_t threads : {std::size_t{1}, std::size_t{2}}) {
          lamina::ThreadPool pool(threads);
          for (bool cold : {false, true}) {
            if (cold && tokens > 1) continue;  // prompts reuse each weight row for every token: cache state hardly matters
            for (bool float_path : {true, false}) {
              // Batches of about 20 ms; the fastest batch is reported (the machine may be shared).
              std::size_t calls = 0;
              run_matmul(pool, kernels, weights[0], x.data(), y.data(), tokens, workspace, float_path);  // warm up
              double seconds = 1e30, elapsed = 0;
              do {
                const Clock::time_point start = Clock::now();
                std::size_t batch_calls = 0;
                double batch_elapsed = 0;
                do {
                  const lamina::TensorView& weight = weights[cold ? (calls + 1) % copies : 0];
                  run_matmul(pool, kernels, weight, x.data(), y.data(), tokens, workspace, float_path);
                  ++calls;
                  ++batch_calls;
                  batch_elapsed = std::chrono::duration<double>(Clock::now() - start).count();
                } while (batch_elapsed < 0.02);
                elapsed += batch_elapsed;
                if (batch_elapsed / static_cast<double>(batch_calls) < seconds) seconds = batch_elapsed / static_cast<double>(batch_calls);
              } while (elapsed < seconds_per_case);
              std::printf("type=%s out=%zu in=%zu tokens=%zu threads=%zu weights=%s path=%s ms=%.3f GB/s=%.2f GMAC/s=%.2f\n",
                          lamina::dtype_name(type), shape.out, shape.in, tokens, threads, cold ? "cold" : "hot",
                          float_path ? "float" : "int", seconds * 1e3, static_cast<double>(matrix_bytes) / seconds * 1e-9,
                          static_cast<double>(shape.out * shape.in * tokens) / seconds * 1e-9);
              std::fflush(stdout);
            }
          }
        }
      }
    }
  }
  return 0;
}
