// The --backend and --device options of the commands that run a model (logits, generate,
// bench, batch-logits), and `lamina devices`. Defined in backend.cpp, the one file of the CLI
// that includes <lamina/vulkan.hpp> (when built with LAMINA_CLI_VULKAN=1; CMake:
// LAMINA_VULKAN=ON, meson: -Dvulkan=enabled).
#pragma once

#include "cli_common.hpp"

#include <lamina/lamina.hpp>

namespace lamina_cli {

inline const Option backend_option{"--backend", nullptr, true, "where the model runs: cpu (default) or vulkan"};
inline const Option device_option{"--device", nullptr, true, "with --backend vulkan: the device's index in `lamina devices` (default: the best)"};
inline const Option pipeline_cache_option{"--pipeline-cache", nullptr, true,
                                          "with --backend vulkan: keep compiled pipelines in FILE between runs (default: none)"};

// Sets params.backend from --backend/--device. LAMINA_VULKAN_VALIDATION=1 in the environment
// turns on the Khronos validation layer (see check_backend_validation).
lamina::Result<void> apply_backend_options(const ParsedArguments& arguments, lamina::SessionParams& params);

// After a command that used the Vulkan backend with LAMINA_VULKAN_VALIDATION=1: 1 (and the
// messages on stderr) when the validation layer reported any error, else `status`.
int check_backend_validation(const lamina::SessionParams& params, int status);

// One line on the backend's setup cost so far ("vulkan pipelines: 24 created in 0.81 s, …"),
// empty on the CPU.
std::string backend_report(const lamina::SessionParams& params);

// lamina devices: one line per Vulkan device the loader reports.
int run_devices(int argc, char** argv);

}  // namespace lamina_cli
