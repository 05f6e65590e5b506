// Tests for examples/cli/bench.hpp (`lamina bench`): the JSON line's exact format, and a short
// benchmark run on a tiny synthetic model.
#include <lamina/lamina.hpp>
#include <cli/bench.hpp>
#include <cli/synth.hpp>

#include <doctest/doctest.h>

#include "../test_support.hpp"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

TEST_CASE("bench: the --json line has exactly the documented keys, in order") {
  CHECK(lamina::bench_json_line("models/m.gguf", 2, 256, 64, 123.4567, 8.9) ==
        "{\"model\":\"models/m.gguf\",\"threads\":2,\"n_prompt\":256,\"n_gen\":64,\"pp_tps\":123.457,\"tg_tps\":8.900}");
  // No prompt test: pp_tps is 0.
  CHECK(lamina::bench_json_line("m.gguf", 1, 0, 16, 0.0, 42.0) ==
        "{\"model\":\"m.gguf\",\"threads\":1,\"n_prompt\":0,\"n_gen\":16,\"pp_tps\":0.000,\"tg_tps\":42.000}");
  // Paths are JSON strings: quotes, backslashes and control characters are escaped.
  CHECK(lamina::bench_json_line("C:\\m \"x\"\n.gguf", 4, 1, 1, 1.0, 1.0) ==
        "{\"model\":\"C:\\\\m \\\"x\\\"\\u000a.gguf\",\"threads\":4,\"n_prompt\":1,\"n_gen\":1,\"pp_tps\":1.000,\"tg_tps\":1.000}");
}

TEST_CASE("bench: a short run on llama-tiny measures both tests, repetition by repetition") {
  const std::string path = lamina_test::temp_path("bench-llama-tiny.gguf");
  lamina::SynthOptions synth;
  synth.file_type = lamina::FileType::q8_0;
  synth.thread_count = 2;
  REQUIRE(lamina::synthesize_model(*lamina::find_synth_preset("llama-tiny"), path, synth).ok());
  lamina::ModelParams params;
  params.load_tokenizer = false;
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(path, params);
  REQUIRE(model.ok());

  lamina::BenchOptions options;
  options.prompt_tokens = 12;
  options.generated_tokens = 5;
  options.repetitions = 2;
  options.thread_count = 2;
  std::vector<std::string> runs;
  options.on_run = [&](const char* test, std::uint32_t run) { runs.push_back(std::string(test) + std::to_string(run)); };
  lamina::Result<lamina::BenchReport> report = lamina::run_benchmark(*model, options);
  REQUIRE_MESSAGE(report.ok(), (report.ok() ? "" : report.error().message));
  CHECK(runs == std::vector<std::string>{"pp0", "pp1", "pp2", "tg0", "tg1", "tg2"});
  CHECK(report->prompt.tokens_per_second.size() == 2);
  CHECK(report->generation.tokens_per_second.size() == 2);
  CHECK(report->prompt.mean > 0);
  CHECK(report->generation.mean > 0);
  CHECK(report->prompt.standard_deviation >= 0);
  CHECK(report->thread_count == 2);

  options.prompt_tokens = 0;
  options.on_run = nullptr;
  lamina::Result<lamina::BenchReport> generation_only = lamina::run_benchmark(*model, options);
  REQUIRE(generation_only.ok());
  CHECK(generation_only->prompt.tokens_per_second.empty());
  CHECK(generation_only->prompt.mean == 0);
  CHECK(generation_only->generation.mean > 0);

  options.generated_tokens = 0;
  lamina::Result<lamina::BenchReport> nothing = lamina::run_benchmark(*model, options);
  REQUIRE_FALSE(nothing.ok());
  CHECK(nothing.error().code == lamina::ErrorCode::invalid_argument);

  // Weights read per token: everything but all rows of the (untied) token embedding except one.
  const lamina::ModelWeightBytes bytes = lamina::model_weight_bytes((*model)->file());
  const lamina::gguf::TensorInfo* embedding = (*model)->file().find_tensor("token_embd.weight");
  REQUIRE(embedding != nullptr);
  CHECK(bytes.read_per_token == bytes.total - embedding->size_bytes + embedding->size_bytes / 512);
  std::remove(path.c_str());
}
