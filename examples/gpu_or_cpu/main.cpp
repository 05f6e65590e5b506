// gpu_or_cpu — generate text on the GPU when there is one, on the CPU when there is not.
//
//   g++ -std=c++17 -O2 -I include examples/gpu_or_cpu/main.cpp -o gpu_or_cpu -pthread
//   ./gpu_or_cpu models/demo/fortunes-demo.gguf "The cat"
//
// Nothing Vulkan is linked: lamina/vulkan.hpp opens the Vulkan loader at run time, so the same
// binary runs on a machine without any Vulkan driver, where Backend::create says why and the
// program carries on with the CPU.
#include <lamina/lamina.hpp>
#include <lamina/vulkan.hpp>

#include <cstdio>
#include <string>
#include <string_view>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.gguf PROMPT [TOKENS]\n", argv[0]);
    return 1;
  }
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(argv[1]);
  if (!model) return std::fprintf(stderr, "%s\n", model.error().message.c_str()), 1;

  lamina::SessionParams params;
  params.context_length = 256;
  params.sampling.temperature = 0.0f;  // greedy: the same text on either backend
  lamina::Result<std::shared_ptr<lamina::vulkan::Backend>> gpu = lamina::vulkan::Backend::create();
  if (gpu) {
    params.backend = *gpu;
  } else {
    std::fprintf(stderr, "no GPU (%s); running on the CPU\n", gpu.error().message.c_str());
  }
  lamina::Result<lamina::Session> session = lamina::Session::create(*model, params);
  if (!session) return std::fprintf(stderr, "%s\n", session.error().message.c_str()), 1;
  std::fprintf(stderr, "backend: %s\n", session->backend_description().c_str());

  lamina::GenerateOptions options;
  options.max_tokens = argc > 3 ? static_cast<std::size_t>(std::stoul(argv[3])) : 32;
  lamina::Result<lamina::GenerationResult> result = lamina::generate(*session, argv[2], options, [](std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return true;
  });
  std::printf("\n");
  if (!result) return std::fprintf(stderr, "%s\n", result.error().message.c_str()), 1;
  return 0;
}
