// Tests for examples/cli/lora_tools.hpp (`lamina lora merge`, `lamina lora combine`): a merged
// model and a combined adapter give the logits of the unmerged stack they stand for, on the
// reference cases of ../shared; the written files keep what llama.cpp needs; bad input gives
// one clear error.
#include <lamina/lamina.hpp>
#include <lamina/adapters/peft.hpp>
#include <cli/lora_tools.hpp>

#include <doctest/doctest.h>

#include "../reference_cases.hpp"
#include "../test_support.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using lamina::DType;
using lamina::ErrorCode;

namespace {

bool contains_text(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::shared_ptr<const lamina::LoraAdapter> load_adapter(const lamina::Model& model, const std::string& relative) {
  lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> adapter = lamina::peft::load_adapter(model, lamina_test::shared_path(relative));
  REQUIRE_MESSAGE(adapter.ok(), (adapter.ok() ? "" : adapter.error().message));
  return *adapter;
}

// The reference case's stack: lora-a (GGUF) at 0.7, lora-b (PEFT) at 0.5.
lamina::AdapterStack stack_ab(const lamina::Model& model) {
  return {{load_adapter(model, "adapters/lora-a.gguf"), 0.7f}, {load_adapter(model, "adapters/lora-b-peft"), 0.5f}};
}

double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, static_cast<double>(std::fabs(a[i] - b[i])));
  return worst;
}

std::vector<float> evaluate_f32_cache(const std::shared_ptr<const lamina::Model>& model, const std::vector<lamina::Token>& prompt,
                                      const lamina::AdapterStack& stack = {}) {
  return lamina_test::evaluate(model, prompt, 2, 512, stack, DType::f32);
}

void remove_peft_directory(const std::string& directory) {
  std::remove((directory + "/adapter_config.json").c_str());
  std::remove((directory + "/adapter_model.safetensors").c_str());
  std::remove(directory.c_str());
}

}  // namespace

TEST_CASE("lora tools: merge types parse, and unknown ones are refused") {
  CHECK(*lamina::parse_merge_type("f16") == DType::f16);
  CHECK(*lamina::parse_merge_type("Q8_0") == DType::q8_0);
  CHECK(*lamina::parse_merge_type("q4_k") == DType::q4_k);
  CHECK(*lamina::parse_merge_type("bf16") == DType::bf16);
  lamina::Result<DType> unknown = lamina::parse_merge_type("q9_9");
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().code == ErrorCode::invalid_argument);
  CHECK(contains_text(unknown.error().message, "q9_9"));
  CHECK(contains_text(unknown.error().message, "q8_0"));
  CHECK_FALSE(lamina::parse_merge_type("q8_k").ok());  // an activation type, not a weight type
}

TEST_CASE("lora tools: merging lora-a 0.7 + lora-b 0.5 into synth-llama-f32 gives the unmerged stack's logits") {
  LAMINA_REQUIRE_SHARED("reference/llama-f32-lora-ab.json");
  const lamina_test::ReferenceCase reference = lamina_test::load_case("llama-f32-lora-ab");
  const std::shared_ptr<const lamina::Model> base = lamina_test::load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  const lamina::AdapterStack stack = stack_ab(*base);
  const std::string path = lamina_test::temp_path("merged-f32.gguf");
  lamina::LoraMergeOptions options;
  options.thread_count = 2;
  lamina::Result<lamina::LoraMergeReport> report = lamina::merge_lora_model(*base, stack, path, options);
  REQUIRE_MESSAGE(report.ok(), (report.ok() ? "" : report.error().message));
  CHECK(report->merged_count == 4 * 7);  // lora-b adapts every matrix of the 4 layers
  CHECK(contains_text(report->file_type_note, "kept"));

  {
    const std::shared_ptr<const lamina::Model> merged = lamina_test::load_model(path);
    const std::vector<float> unmerged_logits = evaluate_f32_cache(base, reference.prompt, stack);
    const std::vector<float> merged_logits = evaluate_f32_cache(merged, reference.prompt);
    const double difference = max_difference(unmerged_logits, merged_logits);
    INFO("max |merged - unmerged| = " << difference);
    CHECK(difference <= 1e-4);
    lamina_test::check_against_reference(reference, merged_logits, 0.02, 1.0);

    // The layout llama.cpp reads: the base's metadata in order, its tensors in order with their
    // types and shapes; untouched tensors byte for byte.
    const lamina::gguf::File& in = base->file();
    const lamina::gguf::File& out = merged->file();
    CHECK(out.version() == in.version());
    CHECK(out.alignment() == in.alignment());
    REQUIRE(out.tensors().size() == in.tensors().size());
    for (std::size_t i = 0; i < in.tensors().size(); ++i) {
      const lamina::gguf::TensorInfo& a = in.tensors()[i];
      const lamina::gguf::TensorInfo& b = out.tensors()[i];
      CHECK(a.name == b.name);
      CHECK(a.dtype == b.dtype);
      CHECK(a.shape == b.shape);
      const bool adapted = contains_text(a.name, "blk.") && !contains_text(a.name, "norm");
      if (!adapted) CHECK(std::memcmp(a.data, b.data, static_cast<std::size_t>(a.size_bytes)) == 0);
    }
    for (std::size_t i = 0; i < in.metadata().size(); ++i) {
      REQUIRE(i < out.metadata().size());
      CHECK(out.metadata()[i].first == in.metadata()[i].first);
      CHECK(out.metadata()[i].second == in.metadata()[i].second);
    }
    lamina::Result<std::vector<std::string>> merged_adapters = out.get_string_array("lamina.merged_adapters");
    REQUIRE(merged_adapters.ok());
    REQUIRE(merged_adapters->size() == 2);
    CHECK(contains_text((*merged_adapters)[0], "lora-a.gguf:0.7"));
    CHECK(contains_text((*merged_adapters)[1], "lora-b-peft:0.5"));
  }
  std::remove(path.c_str());
}

TEST_CASE("lora tools: merging into the q8_0 model re-quantizes to Q8_0 and stays within the reference tolerance") {
  LAMINA_REQUIRE_SHARED("reference/llama-q8_0-lora-ab.json");
  const lamina_test::ReferenceCase reference = lamina_test::load_case("llama-q8_0-lora-ab");
  const std::shared_ptr<const lamina::Model> base = lamina_test::load_model(reference.model_path);
  const lamina::AdapterStack stack = stack_ab(*base);
  const std::string path = lamina_test::temp_path("merged-q8_0.gguf");
  lamina::LoraMergeOptions options;
  options.thread_count = 2;
  lamina::Result<lamina::LoraMergeReport> report = lamina::merge_lora_model(*base, stack, path, options);
  REQUIRE_MESSAGE(report.ok(), (report.ok() ? "" : report.error().message));
  {
    const std::shared_ptr<const lamina::Model> merged = lamina_test::load_model(path);
    for (const lamina::gguf::TensorInfo& tensor : merged->file().tensors()) {
      CHECK(tensor.dtype == base->file().find_tensor(tensor.name)->dtype);
    }
    CHECK(*merged->file().get_u32("general.file_type") == *base->file().get_u32("general.file_type"));
    lamina_test::check_against_reference(reference, evaluate_f32_cache(merged, reference.prompt), 0.30, 0.8);
  }
  std::remove(path.c_str());
}

TEST_CASE("lora tools: merged matrices stored as another type; general.file_type only where it stays true") {
  LAMINA_REQUIRE_SHARED("models/synth-llama-f32.gguf");
  const std::shared_ptr<const lamina::Model> base = lamina_test::load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  const lamina::AdapterStack stack = stack_ab(*base);
  const std::string path = lamina_test::temp_path("merged-q4_k.gguf");
  lamina::LoraMergeOptions options;
  options.type = DType::q4_k;
  options.thread_count = 2;
  lamina::Result<lamina::LoraMergeReport> report = lamina::merge_lora_model(*base, stack, path, options);
  REQUIRE_MESSAGE(report.ok(), (report.ok() ? "" : report.error().message));
  {
    const std::shared_ptr<const lamina::Model> merged = lamina_test::load_model(path);
    CHECK(merged->file().find_tensor("blk.0.attn_q.weight")->dtype == DType::q4_k);
    CHECK(merged->file().find_tensor("blk.3.ffn_down.weight")->dtype == DType::q4_k);
    CHECK(merged->file().find_tensor("token_embd.weight")->dtype == DType::f32);
    // F32 embeddings and output next to Q4_K matrices: no file type describes that.
    CHECK_FALSE(merged->file().contains("general.file_type"));
    CHECK(*merged->file().get_u32("general.quantization_version") == 2);
    const std::vector<float> logits = evaluate_f32_cache(merged, {1, 422, 317, 288});
    for (float value : logits) REQUIRE(std::isfinite(value));
  }
  std::remove(path.c_str());
}

TEST_CASE("lora tools: merge errors name what is wrong") {
  LAMINA_REQUIRE_SHARED("models/stories260K.gguf");
  const std::shared_ptr<const lamina::Model> stories = lamina_test::load_model(lamina_test::shared_path("models/stories260K.gguf"));
  const std::shared_ptr<const lamina::Model> synth = lamina_test::load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));

  SUBCASE("an adapter for another model does not load against the base") {
    lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> adapter =
        lamina::peft::load_adapter(*stories, lamina_test::shared_path("adapters/lora-a.gguf"));
    REQUIRE_FALSE(adapter.ok());
    CHECK(adapter.error().code == ErrorCode::type_mismatch);
    CHECK(contains_text(adapter.error().message, "lora-a.gguf"));
    CHECK(contains_text(adapter.error().message, "another model"));
  }
  SUBCASE("a stack built against another model is refused before anything is written") {
    const std::string path = lamina_test::temp_path("merged-wrong-model.gguf");
    const lamina::AdapterStack stack = {{load_adapter(*synth, "adapters/lora-a.gguf"), 1.0f}};
    lamina::Result<lamina::LoraMergeReport> report = lamina::merge_lora_model(*stories, stack, path, {});
    REQUIRE_FALSE(report.ok());
    CHECK(report.error().code == ErrorCode::type_mismatch);
    CHECK(contains_text(report.error().message, "lora-a.gguf"));
    CHECK_FALSE(lamina_test::file_exists(path));
  }
  SUBCASE("an unwritable output path") {
    const lamina::AdapterStack stack = {{load_adapter(*synth, "adapters/lora-a.gguf"), 1.0f}};
    const std::string path = "/nonexistent-lamina-directory/merged.gguf";
    lamina::Result<lamina::LoraMergeReport> report = lamina::merge_lora_model(*synth, stack, path, {});
    REQUIRE_FALSE(report.ok());
    CHECK(report.error().code == ErrorCode::io);
    CHECK(contains_text(report.error().message, path));
  }
  SUBCASE("the output may not replace the base") {
    const lamina::AdapterStack stack = {{load_adapter(*synth, "adapters/lora-a.gguf"), 1.0f}};
    lamina::Result<lamina::LoraMergeReport> report = lamina::merge_lora_model(*synth, stack, synth->file().name(), {});
    REQUIRE_FALSE(report.ok());
    CHECK(report.error().code == ErrorCode::invalid_argument);
  }
  SUBCASE("a stack that changes nothing") {
    const lamina::AdapterStack stack = {{load_adapter(*synth, "adapters/lora-a.gguf"), 0.0f}};
    lamina::Result<lamina::LoraMergeReport> report = lamina::merge_lora_model(*synth, stack, lamina_test::temp_path("nothing.gguf"), {});
    REQUIRE_FALSE(report.ok());
    CHECK(contains_text(report.error().message, "changes no matrix"));
  }
}

TEST_CASE("lora tools: cat of lora-a 0.7 and lora-b 0.5, written as PEFT and as GGUF, gives the stack's logits") {
  LAMINA_REQUIRE_SHARED("reference/llama-f32-lora-ab.json");
  const lamina_test::ReferenceCase reference = lamina_test::load_case("llama-f32-lora-ab");
  const std::shared_ptr<const lamina::Model> base = lamina_test::load_model(reference.model_path);
  const lamina::AdapterStack stack = stack_ab(*base);
  const std::vector<float> stack_logits = evaluate_f32_cache(base, reference.prompt, stack);

  lamina::lora::CombineOptions options;
  options.method = lamina::lora::CombineMethod::cat;
  lamina::Result<lamina::CombinedAdapter> combined = lamina::combine_adapters({{stack[0].adapter, 0.7f}, {stack[1].adapter, 0.5f}}, options);
  REQUIRE_MESSAGE(combined.ok(), (combined.ok() ? "" : combined.error().message));
  CHECK(combined->modules.size() == 4 * 7);
  CHECK(combined->max_rank() == 12);  // q and v: 8 + 4; the others only lora-b's 4
  CHECK_FALSE(combined->uniform_rank());

  for (const char* name : {"combined-cat-peft", "combined-cat.gguf"}) {
    CAPTURE(name);
    const std::string path = lamina_test::temp_path(name);
    lamina::Result<void> written = lamina::write_combined_adapter(path, *combined, lamina::combined_adapter_info(*base));
    REQUIRE_MESSAGE(written.ok(), (written.ok() ? "" : written.error().message));
    lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> reloaded = lamina::peft::load_adapter(*base, path);
    REQUIRE_MESSAGE(reloaded.ok(), (reloaded.ok() ? "" : reloaded.error().message));
    CHECK((*reloaded)->module(0, lamina::Projection::query).rank == 12);
    CHECK((*reloaded)->module(0, lamina::Projection::key).rank == 4);
    const std::vector<float> logits = evaluate_f32_cache(base, reference.prompt, {{*reloaded, 1.0f}});
    const double difference = max_difference(stack_logits, logits);
    INFO("max |combined - stack| = " << difference);
    CHECK(difference <= 1e-4);
    lamina_test::check_against_reference(reference, logits, 0.02, 1.0);
    if (contains_text(path, ".gguf")) {
      std::remove(path.c_str());
    } else {
      // PEFT's scaling alpha / r = 1 everywhere: r = alpha = 12, rank_pattern = alpha_pattern = 4 elsewhere.
      lamina::Result<lamina::peft::AdapterConfig> config = lamina::peft::read_adapter_config(path);
      REQUIRE(config.ok());
      CHECK(config->r == 12);
      CHECK(config->lora_alpha == 12);
      CHECK_FALSE(config->use_rslora);
      CHECK(config->target_modules.size() == 7);
      const lamina::peft::RankAlpha key = lamina::peft::effective_rank_alpha(*config, "model.layers.1.self_attn.k_proj");
      CHECK(key.rank == 4);
      CHECK(key.alpha == 4);
      CHECK(config->base_model_name_or_path == lamina::combined_adapter_info(*base).base_name);
      remove_peft_directory(path);
    }
  }
}

TEST_CASE("lora tools: svd at full rank gives the stack's logits") {
  LAMINA_REQUIRE_SHARED("reference/llama-f32-lora-ab.json");
  const lamina_test::ReferenceCase reference = lamina_test::load_case("llama-f32-lora-ab");
  const std::shared_ptr<const lamina::Model> base = lamina_test::load_model(reference.model_path);
  const lamina::AdapterStack stack = stack_ab(*base);
  lamina::lora::CombineOptions options;
  options.method = lamina::lora::CombineMethod::svd;
  options.rank = 12;  // 8 + 4: the exact rank of q and v's summed change
  lamina::Result<lamina::CombinedAdapter> combined = lamina::combine_adapters({{stack[0].adapter, 0.7f}, {stack[1].adapter, 0.5f}}, options);
  REQUIRE_MESSAGE(combined.ok(), (combined.ok() ? "" : combined.error().message));
  const std::string path = lamina_test::temp_path("combined-svd.gguf");
  REQUIRE(lamina::write_combined_adapter(path, *combined, lamina::combined_adapter_info(*base)).ok());
  lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> reloaded = lamina::peft::load_adapter(*base, path);
  REQUIRE_MESSAGE(reloaded.ok(), (reloaded.ok() ? "" : reloaded.error().message));
  const double difference =
      max_difference(evaluate_f32_cache(base, reference.prompt, stack), evaluate_f32_cache(base, reference.prompt, {{*reloaded, 1.0f}}));
  INFO("max |svd - stack| = " << difference);
  CHECK(difference <= 1e-3);
  std::remove(path.c_str());
}

TEST_CASE("lora tools: linear, ties and dare write adapters whose factors are lora::combine's") {
  LAMINA_REQUIRE_SHARED("models/synth-llama-f32.gguf");
  const std::shared_ptr<const lamina::Model> base = lamina_test::load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  // Two rank-4 adapters on every matrix (lora-b in both forms), so the equal-rank methods apply.
  const std::shared_ptr<const lamina::LoraAdapter> first = load_adapter(*base, "adapters/lora-b.gguf");
  const std::shared_ptr<const lamina::LoraAdapter> second = load_adapter(*base, "adapters/lora-b-peft");
  struct Case {
    lamina::lora::CombineMethod method;
    float density;
    const char* output;
  };
  const Case cases[] = {{lamina::lora::CombineMethod::linear, 1.0f, "combined-linear.gguf"},
                        {lamina::lora::CombineMethod::ties, 0.5f, "combined-ties-peft"},
                        {lamina::lora::CombineMethod::dare_linear, 0.6f, "combined-dare.gguf"},
                        {lamina::lora::CombineMethod::dare_ties, 0.7f, "combined-dare-ties-peft"}};
  for (const Case& test : cases) {
    CAPTURE(lamina::lora::to_string(test.method));
    lamina::lora::CombineOptions options;
    options.method = test.method;
    options.density = test.density;
    options.seed = 1234;
    options.majority_sign = lamina::lora::MajoritySign::frequency;
    lamina::Result<lamina::CombinedAdapter> combined = lamina::combine_adapters({{first, 0.8f}, {second, -0.3f}}, options);
    REQUIRE_MESSAGE(combined.ok(), (combined.ok() ? "" : combined.error().message));
    const std::string path = lamina_test::temp_path(test.output);
    REQUIRE(lamina::write_combined_adapter(path, *combined, lamina::combined_adapter_info(*base)).ok());
    lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> reloaded = lamina::peft::load_adapter(*base, path);
    REQUIRE_MESSAGE(reloaded.ok(), (reloaded.ok() ? "" : reloaded.error().message));
    for (std::uint32_t layer = 0; layer < base->hparams().block_count; ++layer) {
      for (std::size_t p = 0; p < lamina::projection_count; ++p) {
        const lamina::Projection projection = lamina::projection_at(p);
        const lamina::lora::LowRankFactors a = lamina::module_factors(first->module(layer, projection));
        const lamina::lora::LowRankFactors b = lamina::module_factors(second->module(layer, projection));
        lamina::lora::CombineOptions direct_options = options;
        direct_options.seed = options.seed + layer * 7 + p;  // combine_module_seed's rule, spelled out
        lamina::Result<lamina::lora::LowRankFactors> direct = lamina::lora::combine(
            {{&a, first->module(layer, projection).scaling, 0.8f}, {&b, second->module(layer, projection).scaling, -0.3f}}, direct_options);
        REQUIRE(direct.ok());
        const lamina::LoraModule& module = (*reloaded)->module(layer, projection);
        REQUIRE(module.rank == direct->rank);
        CHECK(module.scaling == 1.0f);
        const lamina::lora::LowRankFactors got = lamina::module_factors(module);
        CHECK(got.a == direct->a);
        CHECK(got.b == direct->b);
      }
    }
    if (contains_text(path, ".gguf")) std::remove(path.c_str());
    else remove_peft_directory(path);
  }
}

TEST_CASE("lora tools: combine errors name what is wrong") {
  LAMINA_REQUIRE_SHARED("adapters/lora-d-peft/adapter_config.json");
  const std::shared_ptr<const lamina::Model> base = lamina_test::load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  const std::shared_ptr<const lamina::LoraAdapter> a = load_adapter(*base, "adapters/lora-a.gguf");
  const std::shared_ptr<const lamina::LoraAdapter> b = load_adapter(*base, "adapters/lora-b.gguf");
  lamina::lora::CombineOptions options;

  SUBCASE("a DoRA input") {
    options.method = lamina::lora::CombineMethod::cat;
    lamina::Result<lamina::CombinedAdapter> combined = lamina::combine_adapters({{a, 1.0f}, {load_adapter(*base, "adapters/lora-d-peft"), 1.0f}}, options);
    REQUIRE_FALSE(combined.ok());
    CHECK(combined.error().code == ErrorCode::unsupported);
    CHECK(contains_text(combined.error().message, "lora-d-peft"));
    CHECK(contains_text(combined.error().message, "DoRA"));
  }
  SUBCASE("an unknown method") {
    lamina::Result<lamina::lora::CombineMethod> method = lamina::lora::parse_combine_method("average");
    REQUIRE_FALSE(method.ok());
    CHECK(method.error().code == ErrorCode::invalid_argument);
    CHECK(contains_text(method.error().message, "average"));
  }
  SUBCASE("a density out of range") {
    for (float density : {0.0f, 1.5f, -0.2f}) {
      options.method = lamina::lora::CombineMethod::ties;
      options.density = density;
      lamina::Result<lamina::CombinedAdapter> combined = lamina::combine_adapters({{b, 1.0f}}, options);  // even with one input
      REQUIRE_FALSE(combined.ok());
      CHECK(combined.error().code == ErrorCode::invalid_argument);
      CHECK(contains_text(combined.error().message, "density"));
    }
  }
  SUBCASE("ranks that differ for linear") {
    options.method = lamina::lora::CombineMethod::linear;
    lamina::Result<lamina::CombinedAdapter> combined = lamina::combine_adapters({{a, 0.7f}, {b, 0.5f}}, options);
    REQUIRE_FALSE(combined.ok());
    CHECK(combined.error().code == ErrorCode::invalid_argument);
    CHECK(contains_text(combined.error().message, "blk.0.attn_q"));
    CHECK(contains_text(combined.error().message, "same rank"));
  }
  SUBCASE("an unwritable output") {
    options.method = lamina::lora::CombineMethod::cat;
    lamina::Result<lamina::CombinedAdapter> combined = lamina::combine_adapters({{a, 0.7f}, {b, 0.5f}}, options);
    REQUIRE(combined.ok());
    lamina::Result<void> written = lamina::write_combined_adapter("/nonexistent-lamina-directory/out.gguf", *combined, lamina::combined_adapter_info(*base));
    REQUIRE_FALSE(written.ok());
    CHECK(contains_text(written.error().message, "/nonexistent-lamina-directory/out.gguf"));
  }
}
