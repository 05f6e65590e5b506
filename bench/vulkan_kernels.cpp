// lamina_bench_vulkan_kernels — the time of each Vulkan kernel on the device the loader picks.
//
//   lamina_bench_vulkan_kernels [--rows R] [--columns C] [--tokens T,T,...] [--repetitions N] [--variant baseline|subgroup]
//
// For every weight type: y [T, R] = x [T, C] · Wᵀ (one dispatch per row tile), then RMSNorm,
// RoPE and attention at one representative size. Each figure is the best of N submissions
// of 8 back-to-back dispatches (so the submit and fence costs are spread), in microseconds per
// dispatch, and the weight bandwidth that implies. One JSON object per line. On lavapipe (a
// CPU implementation of Vulkan) these are correctness-device figures, not GPU speed.
#include <lamina/lamina.hpp>
#include <lamina/quant/quant.hpp>
#include <lamina/vulkan.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace vk_backend = lamina::vulkan;

namespace {

struct Options {
  std::size_t rows = 2048, columns = 2048, repetitions = 5;
  std::vector<std::size_t> tokens = {1, 32};
  vk_backend::KernelVariant variant = vk_backend::KernelVariant::automatic;
};

vk_backend::Buffer host_buffer(const vk_backend::Context& context, std::size_t bytes) {
  lamina::Result<vk_backend::Buffer> buffer = vk_backend::Buffer::create(context, bytes, vk_backend::MemoryUse::device, "bench");
  if (!buffer) {
    std::fprintf(stderr, "%s\n", buffer.error().message.c_str());
    std::exit(1);
  }
  return std::move(*buffer);
}

// Best time of `repetitions` submissions of `batch` recordings of `record`, per recording, in µs.
template <class Record>
double best_microseconds(vk_backend::Recorder& recorder, std::size_t repetitions, Record&& record) {
  const int batch = 8;
  double best = 1e300;
  for (std::size_t r = 0; r <= repetitions; ++r) {  // the first is a warm-up (pipeline creation)
    if (!recorder.begin()) std::exit(1);
    for (int i = 0; i < batch; ++i) record();
    const auto start = std::chrono::steady_clock::now();
    lamina::Result<void> submitted = recorder.submit();
    if (!submitted || !recorder.wait()) {
      std::fprintf(stderr, "the device failed: %s\n", submitted ? "wait" : submitted.error().message.c_str());
      std::exit(1);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r > 0) best = std::min(best, seconds * 1e6 / batch);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string name = argv[i], value = argv[i + 1];
    if (name == "--rows") options.rows = std::stoul(value);
    else if (name == "--columns") options.columns = std::stoul(value);
    else if (name == "--repetitions") options.repetitions = std::stoul(value);
    else if (name == "--variant") options.variant = value == "subgroup" ? vk_backend::KernelVariant::subgroup : vk_backend::KernelVariant::baseline;
    else if (name == "--tokens") {
      options.tokens.clear();
      for (std::size_t start = 0; start < value.size();) {
        const std::size_t comma = value.find(',', start);
        options.tokens.push_back(std::stoul(value.substr(start, comma - start)));
        start = comma == std::string::npos ? value.size() : comma + 1;
      }
    } else {
      std::fprintf(stderr, "unknown option %s\n", name.c_str());
      return 1;
    }
  }
  lamina::vulkan::VulkanParams params;
  params.kernels = options.variant;
  lamina::Result<std::shared_ptr<vk_backend::Backend>> backend = vk_backend::Backend::create(params);
  if (!backend) return std::fprintf(stderr, "%s\n", backend.error().message.c_str()), 1;
  const vk_backend::Context& context = (*backend)->context();
  const vk_backend::KernelVariant variant = context.kernel_variant();
  std::fprintf(stderr, "device: %s; %s kernels\n", context.info().summary().c_str(), vk_backend::kernel_variant_name(variant));
  lamina::Result<std::unique_ptr<vk_backend::Recorder>> made = vk_backend::Recorder::create((*backend)->shared_pipelines());
  if (!made) return std::fprintf(stderr, "%s\n", made.error().message.c_str()), 1;
  vk_backend::Recorder& recorder = **made;

  std::mt19937 generator(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(options.rows * options.columns);
  for (float& value : values) value = normal(generator);
  const std::size_t max_tokens = *std::max_element(options.tokens.begin(), options.tokens.end());
  vk_backend::Buffer x = host_buffer(context, max_tokens * options.columns * 4);
  vk_backend::Buffer y = host_buffer(context, max_tokens * options.rows * 4);

  const lamina::DType types[] = {lamina::DType::f32,  lamina::DType::f16,  lamina::DType::bf16, lamina::DType::q4_0, lamina::DType::q4_1,
                                 lamina::DType::q5_0, lamina::DType::q5_1, lamina::DType::q8_0, lamina::DType::q2_k, lamina::DType::q3_k,
                                 lamina::DType::q4_k, lamina::DType::q5_k, lamina::DType::q6_k, lamina::DType::iq4_nl, lamina::DType::iq4_xs};
  for (lamina::DType type : types) {
    const std::size_t row_bytes = lamina::row_bytes(type, options.columns);
    std::vector<std::uint8_t> bytes(options.rows * row_bytes);
    for (std::size_t r = 0; r < options.rows; ++r) {
      if (!lamina::quant::quantize_row(type, values.data() + r * options.columns, bytes.data() + r * row_bytes, options.columns)) return 1;
    }
    const lamina::TensorView view = lamina::contiguous_view(type, {static_cast<std::int64_t>(options.rows), static_cast<std::int64_t>(options.columns)}, bytes.data());
    lamina::Result<vk_backend::DeviceMatrix> matrix = vk_backend::DeviceMatrix::upload(context, view, "bench", nullptr);
    if (!matrix) return std::fprintf(stderr, "%s\n", matrix.error().message.c_str()), 1;
    for (std::size_t tokens : options.tokens) {
      const double microseconds = best_microseconds(recorder, options.repetitions, [&] {
        vk_backend::kernels::matmul(recorder, variant, *matrix, x, y, static_cast<std::uint32_t>(tokens), static_cast<std::uint32_t>(options.rows));
      });
      std::printf("{\"kernel\": \"matmul\", \"type\": \"%s\", \"rows\": %zu, \"columns\": %zu, \"tokens\": %zu, \"us\": %.1f, \"weight_GBps\": %.2f}\n",
                  lamina::dtype_name(type), options.rows, options.columns, tokens, microseconds,
                  static_cast<double>(bytes.size()) / (microseconds * 1e-6) / 1e9);
    }
  }

  // The other kernels at the shapes of a 1B model's layer (embedding 2048, 32 heads of 64, 8 KV heads, 512 cells).
  const std::uint32_t tokens = 32, embedding = 2048, heads = 32, kv_heads = 8, head_size = 64, cells = 512;
  vk_backend::Buffer a = host_buffer(context, tokens * embedding * 4), b = host_buffer(context, tokens * embedding * 4);
  vk_backend::Buffer weight = host_buffer(context, embedding * 4), angles = host_buffer(context, tokens * head_size / 2 * 4);
  vk_backend::Buffer keys = host_buffer(context, cells * kv_heads * head_size * 4), values_cache = host_buffer(context, cells * kv_heads * head_size * 4);
  std::vector<std::uint32_t> visible(cells), ranges(2 * tokens);
  for (std::uint32_t c = 0; c < cells; ++c) visible[c] = c;
  for (std::uint32_t t = 0; t < tokens; ++t) ranges[2 * t] = 0, ranges[2 * t + 1] = cells - tokens + t + 1;
  vk_backend::Buffer visible_buffer = host_buffer(context, visible.size() * 4), range_buffer = host_buffer(context, ranges.size() * 4);
  if (!vk_backend::upload(context, visible_buffer, 0, visible.data(), visible.size() * 4) || !vk_backend::upload(context, range_buffer, 0, ranges.data(), ranges.size() * 4)) return 1;
  struct Named { const char* name; double us; };
  const Named others[] = {
      {"rms_norm", best_microseconds(recorder, options.repetitions, [&] { vk_backend::kernels::rms_norm(recorder, a, weight, b, tokens, embedding, 1e-5f); })},
      {"rope", best_microseconds(recorder, options.repetitions, [&] { vk_backend::kernels::rope(recorder, a, angles, angles, tokens, heads, head_size, head_size / 2, false); })},
      {"add", best_microseconds(recorder, options.repetitions, [&] { vk_backend::kernels::elementwise(recorder, vk_backend::kernels::Elementwise::add, a, b, tokens * embedding); })},
      {"attention", best_microseconds(recorder, options.repetitions, [&] {
         vk_backend::kernels::attention(recorder, a, b, visible_buffer, range_buffer, keys, values_cache, tokens, heads, kv_heads, head_size);
       })},
  };
  for (const Named& other : others) {
    std::printf("{\"kernel\": \"%s\", \"tokens\": %u, \"embedding\": %u, \"cells\": %u, \"us\": %.1f}\n", other.name, tokens, embedding, cells, other.us);
  }
  return 0;
}
