// The CLI's backend options (backend_option.hpp): the one file that includes the Vulkan backend.
#include "backend_option.hpp"

#if LAMINA_CLI_VULKAN
#include <lamina/vulkan.hpp>
#endif

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace lamina_cli {

lamina::Result<void> apply_backend_options(const ParsedArguments& arguments, lamina::SessionParams& params) {
  const std::string* backend = arguments.get("--backend");
  const std::string* device = arguments.get("--device");
  if (backend == nullptr || *backend == "cpu") {
    if (device != nullptr || arguments.has("--pipeline-cache")) return usage_error("--device and --pipeline-cache need --backend vulkan");
    return lamina::success();
  }
  if (*backend != "vulkan") return usage_error("--backend: '" + *backend + "' is not a backend (cpu, vulkan)");
#if LAMINA_CLI_VULKAN
  lamina::vulkan::VulkanParams vulkan_params;
  if (device != nullptr) {
    lamina::Result<long long> index = parse_integer(*device, "--device", 0, 1023);
    if (!index) return index.take_error();
    vulkan_params.device_index = static_cast<int>(*index);
  }
  if (const std::string* cache = arguments.get("--pipeline-cache")) vulkan_params.pipeline_cache_path = *cache;
  const char* validation = std::getenv("LAMINA_VULKAN_VALIDATION");
  vulkan_params.validation = validation != nullptr && std::string(validation) == "1";
  lamina::Result<std::shared_ptr<lamina::vulkan::Backend>> created = lamina::vulkan::Backend::create(vulkan_params);
  if (!created) return created.take_error();
  params.backend = *created;
  return lamina::success();
#else
  (void)params;
  return lamina::fail(lamina::ErrorCode::unsupported, "--backend vulkan: this lamina was built without the Vulkan backend (LAMINA_VULKAN=OFF)");
#endif
}

int check_backend_validation(const lamina::SessionParams& params, int status) {
#if LAMINA_CLI_VULKAN
  if (params.backend == nullptr) return status;
  const auto* vulkan = dynamic_cast<const lamina::vulkan::Backend*>(params.backend.get());
  if (vulkan == nullptr || vulkan->context().validation_error_count() == 0) return status;
  std::fprintf(stderr, "lamina: the Vulkan validation layer reported %llu errors:\n",
               static_cast<unsigned long long>(vulkan->context().validation_error_count()));
  for (const std::string& message : vulkan->context().validation_messages()) std::fprintf(stderr, "  %s\n", message.c_str());
  return 1;
#else
  (void)params;
  return status;
#endif
}

std::string backend_report(const lamina::SessionParams& params) {
#if LAMINA_CLI_VULKAN
  const auto* vulkan = dynamic_cast<const lamina::vulkan::Backend*>(params.backend.get());
  if (vulkan == nullptr) return "";
  const lamina::vulkan::Pipelines& pipelines = vulkan->pipelines();
  const std::string& cache = vulkan->context().params().pipeline_cache_path;
  char line[256];
  std::snprintf(line, sizeof line, "vulkan pipelines: %zu created in %.3f s (pipeline cache: %s)", pipelines.pipeline_count(),
                pipelines.compile_seconds(), cache.empty() ? "none" : cache.c_str());
  return line;
#else
  (void)params;
  return "";
#endif
}

int run_devices(int argc, char** argv) {
  const char* usage = "lamina devices";
  const std::vector<Option> options = {help_option};
  lamina::Result<ParsedArguments> arguments = parse_arguments(argc, argv, 2, options);
  if (!arguments) return report(arguments.error());
  if (arguments->has("--help")) return print_help(usage, options), 0;
#if LAMINA_CLI_VULKAN
  lamina::Result<std::vector<lamina::vulkan::DeviceInfo>> devices = lamina::vulkan::list_devices();
  if (!devices) return report(devices.error());
  if (devices->empty()) return report(lamina::fail(lamina::ErrorCode::missing, "vulkan: the loader found no device"));
  for (const lamina::vulkan::DeviceInfo& info : *devices) std::printf("%s\n", info.summary().c_str());
  return 0;
#else
  return report(lamina::fail(lamina::ErrorCode::unsupported, "this lamina was built without the Vulkan backend (LAMINA_VULKAN=OFF)"));
#endif
}

}  // namespace lamina_cli
