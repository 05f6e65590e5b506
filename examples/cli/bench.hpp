// examples/cli/bench.hpp — prompt and generation throughput, measured the way llama-bench does.
//
//   lamina::BenchOptions options;
//   options.prompt_tokens = 256;   // "pp256": one batch of 256 tokens from an empty context
//   options.generated_tokens = 64; // "tg64": 64 single-token steps from an empty context
//   lamina::Result<lamina::BenchReport> report = lamina::run_benchmark(model, options);
//   std::puts(lamina::bench_json_line("model.gguf", report->thread_count, 256, 64,
//                                     report->prompt.mean, report->generation.mean).c_str());
//
// Method (llama-bench's, so the figures compare): one warm-up run of each test, then
// `repetitions` timed runs; each run starts from an empty KV cache. The prompt test feeds
// prompt_tokens random token ids as one sequence (split into batch_size pieces, as llama.cpp
// splits into n_ubatch) and only the last position computes logits; tokens/s = prompt_tokens /
// seconds. The generation test feeds generated_tokens random ids one at a time, each a full
// forward pass with logits (no sampling, as llama-bench); tokens/s = generated_tokens / seconds.
// The report gives the mean and the sample standard deviation of the runs' tokens/s.
#pragma once

#include <lamina/config.hpp>
#include <lamina/core/dtype.hpp>
#include <lamina/core/result.hpp>
#include <lamina/io/gguf.hpp>
#include <lamina/kernels/cpu/arch.hpp>
#include <lamina/session.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

LAMINA_NAMESPACE_BEGIN

struct BenchOptions {
  std::uint32_t prompt_tokens = 512;     // 0: no prompt test
  std::uint32_t generated_tokens = 128;  // 0: no generation test
  std::uint32_t repetitions = 5;
  std::uint32_t thread_count = 0;        // 0: one per hardware thread
  std::uint32_t batch_size = 512;        // tokens per forward pass of the prompt test
  DType kv_cache_type = DType::f16;
  CpuArch cpu_arch = CpuArch::automatic;
  std::uint64_t seed = 1;                // of the random token ids
  AdapterStack adapters;                 // applied unmerged to the benchmark's sequence
  std::shared_ptr<Backend> backend;      // the device that runs the passes; null: the CPU
  // Called before each run: test "pp" or "tg", run 0 is the warm-up, then 1..repetitions.
  std::function<void(const char* test, std::uint32_t run)> on_run;
};

struct BenchStatistics {
  std::vector<double> tokens_per_second;  // one per timed run
  double mean = 0;
  double standard_deviation = 0;
};

struct BenchReport {
  BenchStatistics prompt;      // empty when prompt_tokens == 0
  BenchStatistics generation;  // empty when generated_tokens == 0
  std::uint32_t thread_count = 0;
  CpuArch cpu_arch = CpuArch::scalar;
  std::string backend = "cpu";  // Session::backend_description()
};

namespace detail {

inline BenchStatistics summarize(std::vector<double> samples) {
  BenchStatistics statistics;
  statistics.tokens_per_second = std::move(samples);
  const std::size_t count = statistics.tokens_per_second.size();
  if (count == 0) return statistics;
  double sum = 0;
  for (double value : statistics.tokens_per_second) sum += value;
  statistics.mean = sum / static_cast<double>(count);
  if (count > 1) {
    double squares = 0;
    for (double value : statistics.tokens_per_second) squares += (value - statistics.mean) * (value - statistics.mean);
    statistics.standard_deviation = std::sqrt(squares / static_cast<double>(count - 1));
  }
  return statistics;
}

}  // namespace detail

inline Result<BenchReport> run_benchmark(const std::shared_ptr<const Model>& model, const BenchOptions& options) {
  if (model == nullptr) return fail(ErrorCode::invalid_argument, "bench: no model");
  if (options.prompt_tokens == 0 && options.generated_tokens == 0) {
    return fail(ErrorCode::invalid_argument, "bench: nothing to measure (prompt and generation tokens are both 0)");
  }
  if (options.repetitions == 0) return fail(ErrorCode::invalid_argument, "bench: repetitions must be at least 1");
  const std::uint32_t vocab = model->hparams().vocab_size;
  SessionParams params;
  params.context_length = std::max<std::uint32_t>(options.prompt_tokens, options.generated_tokens) + 1;
  params.batch_size = std::max<std::uint32_t>(1, std::min(options.batch_size, std::max<std::uint32_t>(1, options.prompt_tokens)));
  params.thread_count = options.thread_count;
  params.kv_cache_type = options.kv_cache_type;
  params.cpu_arch = options.cpu_arch;
  params.backend = options.backend;
  Result<Session> session = Session::create(model, params);
  if (!session) return session.take_error();
  if (!options.adapters.empty()) LAMINA_TRY(session->set_adapters(options.adapters));

  std::uint64_t state = options.seed;
  auto random_token = [&]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<Token>((state >> 33) % vocab);
  };
  std::vector<Token> prompt(options.prompt_tokens);
  using Clock = std::chrono::steady_clock;
  BenchReport report;
  report.cpu_arch = session->cpu_arch();
  report.backend = session->backend_description();
  report.thread_count = static_cast<std::uint32_t>(session->executor().concurrency());

  std::vector<double> samples;
  if (options.prompt_tokens > 0) {
    for (std::uint32_t run = 0; run <= options.repetitions; ++run) {
      if (options.on_run) options.on_run("pp", run);
      for (Token& token : prompt) token = random_token();
      session->clear();
      const Clock::time_point start = Clock::now();
      LAMINA_TRY(session->feed(prompt.data(), prompt.size()));
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      if (run > 0) samples.push_back(seconds > 0 ? options.prompt_tokens / seconds : 0.0);
    }
    report.prompt = detail::summarize(std::move(samples));
    samples.clear();
  }
  if (options.generated_tokens > 0) {
    for (std::uint32_t run = 0; run <= options.repetitions; ++run) {
      if (options.on_run) options.on_run("tg", run);
      session->clear();
      const std::uint32_t steps = run == 0 ? 1 : options.generated_tokens;  // llama-bench warms up with one token
      const Clock::time_point start = Clock::now();
      for (std::uint32_t step = 0; step < steps; ++step) {
        const Token token = random_token();
        LAMINA_TRY(session->feed(&token, 1));
      }
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      if (run > 0) samples.push_back(seconds > 0 ? steps / seconds : 0.0);
    }
    report.generation = detail::summarize(std::move(samples));
  }
  session->clear();
  return report;
}

// Bytes of weights a model has, and how many a generated token reads: every weight matrix
// except the token embedding, of which one row is read (unless it doubles as the output).
struct ModelWeightBytes {
  std::uint64_t total = 0;
  std::uint64_t read_per_token = 0;
};

inline ModelWeightBytes model_weight_bytes(const gguf::File& file) {
  ModelWeightBytes bytes;
  const bool tied = file.find_tensor("output.weight") == nullptr;
  for (const gguf::TensorInfo& tensor : file.tensors()) {
    bytes.total += tensor.size_bytes;
    if (tensor.name == "token_embd.weight" && !tied && !tensor.shape.empty() && tensor.shape[0] > 0) {
      bytes.read_per_token += tensor.size_bytes / static_cast<std::uint64_t>(tensor.shape[0]);
    } else {
      bytes.read_per_token += tensor.size_bytes;
    }
  }
  return bytes;
}

// JSON string contents for `text` (quotes, backslashes and control characters escaped).
inline std::string json_escape(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// The one-line summary `lamina bench --json` ends with:
// {"model":"m.gguf","threads":2,"n_prompt":256,"n_gen":64,"pp_tps":123.45,"tg_tps":6.78}
// A rate of a test that did not run is 0.
inline std::string bench_json_line(const std::string& model, std::uint32_t threads, std::uint32_t prompt_tokens,
                                   std::uint32_t generated_tokens, double prompt_tokens_per_second,
                                   double generated_tokens_per_second) {
  const auto number = [](double value) {
    char text[64];
    std::snprintf(text, sizeof text, "%.3f", std::isfinite(value) ? value : 0.0);
    return std::string(text);
  };
  return "{\"model\":\"" + json_escape(model) + "\",\"threads\":" + std::to_string(threads) + ",\"n_prompt\":" +
         std::to_string(prompt_tokens) + ",\"n_gen\":" + std::to_string(generated_tokens) + ",\"pp_tps\":" +
         number(prompt_tokens_per_second) + ",\"tg_tps\":" + number(generated_tokens_per_second) + "}";
}

LAMINA_NAMESPACE_END
