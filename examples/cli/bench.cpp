// lamina bench — prompt-processing and generation throughput, measured like llama-bench.
//
//   lamina bench -m model.gguf -t 4 -p 256 -n 64 -r 5 --json
//
// pp = tokens/s of one prompt pass of -p tokens; tg = tokens/s of -n single-token steps; both
// from an empty context after a warm-up (see bench.hpp for the method). Progress
// goes to stderr; stdout gets a table, the peak resident memory and the CPU kernels used, and
// with --json a last line {"model":…,"threads":…,"n_prompt":…,"n_gen":…,"pp_tps":…,"tg_tps":…}.
#include "cli_common.hpp"

#include "backend_option.hpp"
#include "bench.hpp"

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#if !defined(_WIN32)
#  include <sys/resource.h>
#endif

namespace lamina_cli {

namespace {

// Peak resident set size of this process in bytes, or 0 where unknown.
double peak_resident_bytes() {
#if defined(_WIN32)
  return 0;
#else
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
#  if defined(__APPLE__)
  return static_cast<double>(usage.ru_maxrss);  // bytes on macOS
#  else
  return static_cast<double>(usage.ru_maxrss) * 1024.0;  // KiB on Linux and the BSDs
#  endif
#endif
}

std::string base_name(const std::string& path) {
  const std::size_t slash = path.find_last_of("/\\");
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

int run_bench(int argc, char** argv) {
  const char* usage = "lamina bench -m MODEL [-t THREADS] [-p N_PROMPT] [-n N_GEN] [-r REPETITIONS] [--json] [--lora PATH[:SCALE]]... [--backend cpu|vulkan] [--device N]";
  const std::vector<Option> options = {
      help_option, model_option, threads_option,
      {"--n-prompt", "-p", true, "prompt tokens, one batch; 0 = no prompt test (default 512)"},
      {"--n-gen", "-n", true, "generated tokens, one at a time; 0 = no generation test (default 128)"},
      {"--repetitions", "-r", true, "timed runs of each test, after one warm-up (default 5)"},
      {"--batch-size", "-b", true, "most tokens per forward pass of the prompt (default 512, llama.cpp's n_ubatch)"},
      {"--kv-type", nullptr, true, "KV cache type: f16 (default) or f32"},
      {"--cpu-arch", nullptr, true, "force the kernels of: scalar, sse2, avx2, avx512, neon (default: the best the CPU has)"},
      {"--json", nullptr, false, "end with one JSON line: model, threads, n_prompt, n_gen, pp_tps, tg_tps"},
      lora_option, backend_option, device_option, pipeline_cache_option};
  lamina::Result<ParsedArguments> arguments = parse_arguments(argc, argv, 2, options);
  if (!arguments) return report(arguments.error());
  if (arguments->has("--help")) return print_help(usage, options), 0;
  if (!arguments->get("--model")) return report(usage_error(std::string("missing -m MODEL; usage: ") + usage));

  lamina::BenchOptions bench;
  struct CountOption { const char* name; std::uint32_t* target; long long minimum; long long maximum; };
  const CountOption counts[] = {
      {"--n-prompt", &bench.prompt_tokens, 0, 1 << 20},
      {"--n-gen", &bench.generated_tokens, 0, 1 << 20},
      {"--repetitions", &bench.repetitions, 1, 1000},
      {"--batch-size", &bench.batch_size, 1, 65536},
  };
  for (const CountOption& option : counts) {
    if (const std::string* text = arguments->get(option.name)) {
      lamina::Result<long long> value = parse_integer(*text, option.name, option.minimum, option.maximum);
      if (!value) return report(value.error());
      *option.target = static_cast<std::uint32_t>(*value);
    }
  }
  if (bench.prompt_tokens == 0 && bench.generated_tokens == 0) return report(usage_error("-p and -n are both 0: nothing to measure"));
  lamina::Result<std::uint32_t> threads = thread_count_option(*arguments);
  if (!threads) return report(threads.error());
  bench.thread_count = *threads;
  if (const std::string* kv = arguments->get("--kv-type")) {
    if (*kv == "f16") bench.kv_cache_type = lamina::DType::f16;
    else if (*kv == "f32") bench.kv_cache_type = lamina::DType::f32;
    else return report(usage_error("--kv-type: '" + *kv + "' is not f16 or f32"));
  }
  if (const std::string* arch = arguments->get("--cpu-arch")) {
    if (!lamina::parse_cpu_arch(arch->c_str(), &bench.cpu_arch)) {
      return report(usage_error("--cpu-arch: '" + *arch + "' is not one of auto, scalar, sse2, avx2, avx512, neon"));
    }
    if (bench.cpu_arch != lamina::CpuArch::automatic && !lamina::cpu_supports(bench.cpu_arch)) {
      return report(usage_error("--cpu-arch: this processor does not support " + *arch));
    }
  }

  lamina::SessionParams backend_params;
  lamina::Result<void> backend = apply_backend_options(*arguments, backend_params);
  if (!backend) return report(backend.error());
  bench.backend = backend_params.backend;

  const std::string& path = *arguments->get("--model");
  using Clock = std::chrono::steady_clock;
  const Clock::time_point load_start = Clock::now();
  lamina::ModelParams model_params;
  model_params.load_tokenizer = false;  // random token ids in, nothing decoded
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(path, model_params);
  if (!model) return report(model.error());
  const double load_seconds = std::chrono::duration<double>(Clock::now() - load_start).count();
  const lamina::ModelWeightBytes weights = lamina::model_weight_bytes((*model)->file());
  std::uint64_t parameters = 0;
  for (const lamina::gguf::TensorInfo& tensor : (*model)->file().tensors()) {
    std::uint64_t elements = 1;
    for (std::int64_t extent : tensor.shape) elements *= static_cast<std::uint64_t>(extent);
    parameters += elements;
  }
  std::fprintf(stderr, "lamina bench: %s loaded in %.2f s\n", path.c_str(), load_seconds);
  lamina::Result<lamina::AdapterStack> adapters = load_lora_stack(*arguments, **model);
  if (!adapters) return report(adapters.error());
  bench.adapters = std::move(*adapters);
  for (const lamina::AdapterStackEntry& entry : bench.adapters) {
    std::fprintf(stderr, "lamina bench: adapter %s (scale %g, max rank %u, %zu matrices)\n", entry.adapter->name().c_str(),
                 static_cast<double>(entry.scale), entry.adapter->max_rank(), entry.adapter->active_module_count());
  }

  bench.on_run = [&](const char* test, std::uint32_t run) {
    const std::uint32_t tokens = std::string(test) == "pp" ? bench.prompt_tokens : bench.generated_tokens;
    if (run == 0) std::fprintf(stderr, "lamina bench: %s%u warm-up\n", test, tokens);
    else std::fprintf(stderr, "lamina bench: %s%u run %u/%u\n", test, tokens, run, bench.repetitions);
  };
  lamina::Result<lamina::BenchReport> result = lamina::run_benchmark(*model, bench);
  if (!result) return report(result.error());

  const std::string name = base_name(path);
  std::printf("| %-32s | %10s | %8s | %-7s | %7s | %8s | %18s |\n", "model", "size", "params", "kernels", "threads", "test", "t/s");
  std::printf("| %.32s | %.10s | %.8s | %.7s | %.7s | %.8s | %.18s |\n", "--------------------------------", "----------",
              "--------", "-------", "-------", "--------", "------------------");
  const auto row = [&](const char* test, std::uint32_t tokens, const lamina::BenchStatistics& statistics) {
    const std::string label = std::string(test) + std::to_string(tokens);
    char rate[48];
    std::snprintf(rate, sizeof rate, "%.2f ± %.2f", statistics.mean, statistics.standard_deviation);
    char size[32];
    std::snprintf(size, sizeof size, "%.2f GiB", static_cast<double>(weights.total) / (1024.0 * 1024.0 * 1024.0));
    std::printf("| %-32.32s | %10s | %6.2f B | %-7s | %7u | %8s | %19s |\n", name.c_str(), size, static_cast<double>(parameters) / 1e9,
                bench.backend != nullptr ? bench.backend->name() : lamina::cpu_arch_name(result->cpu_arch), result->thread_count,
                label.c_str(), rate);
  };
  if (bench.prompt_tokens > 0) row("pp", bench.prompt_tokens, result->prompt);
  if (bench.generated_tokens > 0) row("tg", bench.generated_tokens, result->generation);
  std::printf("\nCPU kernels: %s; threads: %u; peak RSS: %s; weights: %s, read per generated token: %s (%llu bytes)\n",
              lamina::cpu_arch_name(result->cpu_arch), result->thread_count, human_bytes(peak_resident_bytes()).c_str(),
              human_bytes(static_cast<double>(weights.total)).c_str(), human_bytes(static_cast<double>(weights.read_per_token)).c_str(),
              static_cast<unsigned long long>(weights.read_per_token));
  if (bench.backend != nullptr) std::printf("backend: %s\n%s\n", result->backend.c_str(), backend_report(backend_params).c_str());
  if (bench.generated_tokens > 0) {
    std::printf("generation moves %.2f GB/s of weights (bytes read per token x tg t/s)\n",
                static_cast<double>(weights.read_per_token) * result->generation.mean / 1e9);
  }
  if (arguments->has("--json")) {
    std::printf("%s\n", lamina::bench_json_line(path, result->thread_count, bench.prompt_tokens, bench.generated_tokens,
                                                result->prompt.mean, result->generation.mean).c_str());
  }
  return check_backend_validation(backend_params, 0);
}

}  // namespace lamina_cli
