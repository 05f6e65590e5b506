// Tests for lamina/quant/quantize_model.hpp (`lamina quantize`): llama.cpp's tensor-type recipes,
// round trips whose dequantized weights stay close to the original, copied metadata, and
// clean errors. (Byte equality with llama-quantize itself is checked by bench/README.md's
// procedure, which needs a llama.cpp build.)
#include <lamina/lamina.hpp>
#include <lamina/quant/quantize_model.hpp>
#include <cli/synth.hpp>

#include <doctest/doctest.h>

#include "../test_support.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

using lamina::DType;
using lamina::ErrorCode;
using lamina::FileType;

namespace {

bool contains_text(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The tensors of a Llama/Qwen2 model of the given shapes, as the recipe sees them.
std::vector<lamina::TensorDescription> model_tensors(std::int64_t embedding, std::int64_t layers, std::int64_t query_width,
                                                     std::int64_t kv_width, std::int64_t ffn, std::int64_t vocab, bool tied,
                                                     bool biases) {
  std::vector<lamina::TensorDescription> tensors;
  const auto add = [&](const std::string& name, std::vector<std::int64_t> shape) { tensors.push_back({name, DType::f16, shape}); };
  add("token_embd.weight", {vocab, embedding});
  for (std::int64_t layer = 0; layer < layers; ++layer) {
    const std::string block = "blk." + std::to_string(layer) + ".";
    add(block + "attn_norm.weight", {embedding});
    add(block + "attn_q.weight", {query_width, embedding});
    if (biases) add(block + "attn_q.bias", {query_width});
    add(block + "attn_k.weight", {kv_width, embedding});
    add(block + "attn_v.weight", {kv_width, embedding});
    add(block + "attn_output.weight", {embedding, query_width});
    add(block + "ffn_norm.weight", {embedding});
    add(block + "ffn_gate.weight", {ffn, embedding});
    add(block + "ffn_up.weight", {ffn, embedding});
    add(block + "ffn_down.weight", {embedding, ffn});
  }
  add("output_norm.weight", {embedding});
  if (!tied) add("output.weight", {vocab, embedding});
  return tensors;
}

std::map<std::string, lamina::TensorPlan> plan_by_name(const lamina::QuantizationModelInfo& model,
                                                       const std::vector<lamina::TensorDescription>& tensors, FileType type,
                                                       bool pure = false) {
  lamina::QuantizationRecipe recipe;
  recipe.file_type = type;
  recipe.pure = pure;
  lamina::Result<std::vector<lamina::TensorPlan>> plans = lamina::plan_tensor_types(model, tensors, recipe);
  REQUIRE_MESSAGE(plans.ok(), (plans.ok() ? "" : plans.error().message));
  std::map<std::string, lamina::TensorPlan> by_name;
  for (std::size_t i = 0; i < tensors.size(); ++i) by_name[tensors[i].name] = (*plans)[i];
  return by_name;
}

std::vector<float> dequantized(const lamina::gguf::TensorInfo& tensor) {
  std::uint64_t elements = 1;
  for (std::int64_t extent : tensor.shape) elements *= static_cast<std::uint64_t>(extent);
  std::vector<float> values(static_cast<std::size_t>(elements));
  REQUIRE(lamina::quant::dequantize_row(tensor.dtype, tensor.data, values.data(), values.size()).ok());
  return values;
}

}  // namespace

TEST_CASE("quantize: file type names parse as llama-quantize spells them") {
  CHECK(*lamina::parse_file_type("q4_k_m") == FileType::q4_k_m);
  CHECK(*lamina::parse_file_type("Q4_K_M") == FileType::q4_k_m);
  CHECK(*lamina::parse_file_type("q4_k") == FileType::q4_k_m);  // llama-quantize's alias
  CHECK(*lamina::parse_file_type("q5_k") == FileType::q5_k_m);
  CHECK(*lamina::parse_file_type("q3_k") == FileType::q3_k_m);
  CHECK(*lamina::parse_file_type("BF16") == FileType::bf16);
  CHECK(static_cast<std::uint32_t>(*lamina::parse_file_type("q8_0")) == 7);  // llama_ftype values
  CHECK(static_cast<std::uint32_t>(*lamina::parse_file_type("iq4_xs")) == 30);
  lamina::Result<FileType> unknown = lamina::parse_file_type("q9_9");
  REQUIRE_FALSE(unknown.ok());
  CHECK(contains_text(unknown.error().message, "q9_9"));
  CHECK(contains_text(unknown.error().message, "q4_k_m"));
  for (const lamina::FileTypeInfo& info : lamina::file_types()) {
    CHECK(*lamina::parse_file_type(info.name) == info.type);
    CHECK(lamina::quant::can_quantize(info.base_type));
  }
}

TEST_CASE("quantize: the recipes give llama.cpp's tensor types for Llama 1B shapes") {
  lamina::QuantizationModelInfo llama;
  llama.architecture = "llama";
  llama.block_count = 16;
  llama.head_count = 32;
  llama.head_count_kv = 8;
  const std::vector<lamina::TensorDescription> tensors = model_tensors(2048, 16, 2048, 512, 8192, 32000, false, false);

  SUBCASE("q4_k_m: Q6_K output, and attn_v / ffn_down in use_more_bits layers") {
    std::map<std::string, lamina::TensorPlan> plan = plan_by_name(llama, tensors, FileType::q4_k_m);
    CHECK(plan["output.weight"].type == DType::q6_k);
    CHECK(plan["token_embd.weight"].type == DType::q4_k);
    CHECK(plan["output_norm.weight"].type == DType::f16);  // 1-D: kept as it is
    CHECK_FALSE(plan["output_norm.weight"].convertible);
    // use_more_bits(i, 16): i < 2, i >= 14, or (i - 2) % 3 == 2.
    const std::vector<int> more_bits = {0, 1, 4, 7, 10, 13, 14, 15};
    for (int layer = 0; layer < 16; ++layer) {
      const std::string block = "blk." + std::to_string(layer) + ".";
      const bool more = std::find(more_bits.begin(), more_bits.end(), layer) != more_bits.end();
      CAPTURE(layer);
      CHECK(plan[block + "attn_v.weight"].type == (more ? DType::q6_k : DType::q4_k));
      CHECK(plan[block + "ffn_down.weight"].type == (more ? DType::q6_k : DType::q4_k));
      CHECK(plan[block + "attn_q.weight"].type == DType::q4_k);
      CHECK(plan[block + "attn_k.weight"].type == DType::q4_k);
      CHECK(plan[block + "attn_output.weight"].type == DType::q4_k);
      CHECK(plan[block + "ffn_gate.weight"].type == DType::q4_k);
      CHECK(plan[block + "ffn_up.weight"].type == DType::q4_k);
    }
  }
  SUBCASE("q4_0 and q8_0: the output is Q6_K for Q4_0, Q8_0 stays Q8_0") {
    std::map<std::string, lamina::TensorPlan> q4 = plan_by_name(llama, tensors, FileType::q4_0);
    CHECK(q4["output.weight"].type == DType::q6_k);
    CHECK(q4["token_embd.weight"].type == DType::q4_0);
    CHECK(q4["blk.3.ffn_down.weight"].type == DType::q4_0);
    std::map<std::string, lamina::TensorPlan> q8 = plan_by_name(llama, tensors, FileType::q8_0);
    CHECK(q8["output.weight"].type == DType::q8_0);
    CHECK(q8["blk.3.attn_v.weight"].type == DType::q8_0);
  }
  SUBCASE("q2_k and iq4_xs with GQA 4 raise attn_v to Q4_K / Q5_K") {
    std::map<std::string, lamina::TensorPlan> q2 = plan_by_name(llama, tensors, FileType::q2_k);
    CHECK(q2["blk.5.attn_v.weight"].type == DType::q4_k);
    CHECK(q2["blk.5.ffn_down.weight"].type == DType::q3_k);
    CHECK(q2["blk.5.attn_output.weight"].type == DType::q3_k);
    CHECK(q2["blk.5.attn_q.weight"].type == DType::q2_k);
    std::map<std::string, lamina::TensorPlan> iq4 = plan_by_name(llama, tensors, FileType::iq4_xs);
    CHECK(iq4["blk.5.attn_v.weight"].type == DType::q5_k);
    CHECK(iq4["blk.0.ffn_down.weight"].type == DType::q5_k);  // first eighth of the layers
    CHECK(iq4["blk.2.ffn_down.weight"].type == DType::iq4_xs);
  }
  SUBCASE("pure: every weight matrix gets the base type") {
    std::map<std::string, lamina::TensorPlan> pure = plan_by_name(llama, tensors, FileType::q4_k_m, true);
    CHECK(pure["output.weight"].type == DType::q4_k);
    CHECK(pure["blk.0.attn_v.weight"].type == DType::q4_k);
    CHECK(pure["blk.0.attn_norm.weight"].type == DType::f16);
  }
  SUBCASE("f32 / bf16 recipes convert every weight matrix and nothing else") {
    std::map<std::string, lamina::TensorPlan> f32 = plan_by_name(llama, tensors, FileType::f32);
    CHECK(f32["output.weight"].type == DType::f32);
    CHECK(f32["blk.0.ffn_norm.weight"].type == DType::f16);
    std::map<std::string, lamina::TensorPlan> bf16 = plan_by_name(llama, tensors, FileType::bf16);
    CHECK(bf16["token_embd.weight"].type == DType::bf16);
  }
}

TEST_CASE("quantize: Qwen2 0.5B shapes fall back where rows of 896 do not split into 256") {
  lamina::QuantizationModelInfo qwen;
  qwen.architecture = "qwen2";
  qwen.block_count = 24;
  qwen.head_count = 14;
  qwen.head_count_kv = 2;
  const std::vector<lamina::TensorDescription> tensors = model_tensors(896, 24, 896, 128, 4864, 151936, true, true);
  std::map<std::string, lamina::TensorPlan> plan = plan_by_name(qwen, tensors, FileType::q4_k_m);
  CHECK(plan["token_embd.weight"].type == DType::q8_0);  // tied output, 896 % 256 != 0
  CHECK(plan["blk.3.attn_q.weight"].type == DType::q5_0);
  CHECK(plan["blk.3.attn_q.weight"].fell_back);
  CHECK(plan["blk.0.attn_v.weight"].type == DType::q8_0);  // Q6_K -> Q8_0
  CHECK(plan["blk.3.ffn_down.weight"].type == DType::q4_k);  // rows of 4864 = 19 × 256
  CHECK_FALSE(plan["blk.3.ffn_down.weight"].fell_back);
  CHECK(plan["blk.0.ffn_down.weight"].type == DType::q6_k);
  CHECK(plan["blk.0.attn_q.bias"].type == DType::f16);
  CHECK_FALSE(plan["blk.0.attn_q.bias"].convertible);

  // A row length that fits no block and no fallback is an error that names the tensor.
  std::vector<lamina::TensorDescription> odd = {{"blk.0.attn_q.weight", DType::f32, {8, 40}}};
  lamina::QuantizationRecipe recipe;
  recipe.file_type = FileType::q4_0;
  lamina::Result<std::vector<lamina::TensorPlan>> impossible = lamina::plan_tensor_types(qwen, odd, recipe);
  REQUIRE_FALSE(impossible.ok());
  CHECK(impossible.error().code == ErrorCode::unsupported);
  CHECK(contains_text(impossible.error().message, "blk.0.attn_q.weight"));
  recipe.file_type = FileType::q4_k_s;  // Q4_K -> Q5_0 -> rows of 40 fit neither -> F16
  lamina::Result<std::vector<lamina::TensorPlan>> to_f16 = lamina::plan_tensor_types(qwen, odd, recipe);
  REQUIRE(to_f16.ok());
  CHECK((*to_f16)[0].type == DType::f16);
}

TEST_CASE("quantize: a round trip from F32 keeps every tensor close to the original, and copies the metadata") {
  const std::string original_path = lamina_test::temp_path("quantize-original-f32.gguf");
  lamina::SynthOptions synth;
  synth.file_type = FileType::f32;
  synth.thread_count = 2;
  synth.seed = 5;
  REQUIRE(lamina::synthesize_model(*lamina::find_synth_preset("qwen2-tiny"), original_path, synth).ok());
  lamina::Result<lamina::gguf::File> original = lamina::gguf::File::open(original_path);
  REQUIRE(original.ok());

  struct Case {
    FileType type;
    double max_relative_rmse;  // RMSE / RMS of the original, for the weight matrices
  };
  const Case cases[] = {
      {FileType::f16, 0.001}, {FileType::bf16, 0.005}, {FileType::q8_0, 0.01}, {FileType::q6_k, 0.04},
      {FileType::q5_k_m, 0.07}, {FileType::q5_0, 0.08}, {FileType::q4_k_m, 0.13}, {FileType::q4_0, 0.15},
      {FileType::iq4_xs, 0.13}, {FileType::iq4_nl, 0.13}, {FileType::q3_k_m, 0.3}, {FileType::q2_k, 0.5},
  };
  for (const Case& test : cases) {
    CAPTURE(lamina::file_type_name(test.type));
    const std::string path = lamina_test::temp_path(std::string("quantize-") + lamina::file_type_name(test.type) + ".gguf");
    lamina::QuantizeOptions options;
    options.file_type = test.type;
    options.thread_count = 2;
    std::size_t progress_calls = 0;
    options.on_tensor = [&](const lamina::TensorProgress& progress) {
      ++progress_calls;
      CHECK(progress.count == original->tensors().size());
    };
    lamina::Result<lamina::QuantizeReport> report = lamina::quantize_model(original_path, path, options);
    REQUIRE_MESSAGE(report.ok(), (report.ok() ? "" : report.error().message));
    CHECK(progress_calls == original->tensors().size());
    CHECK(report->tensor_count == original->tensors().size());

    lamina::Result<lamina::gguf::File> converted = lamina::gguf::File::open(path);
    REQUIRE(converted.ok());
    for (const auto& entry : original->metadata()) {
      if (entry.first == "general.file_type") continue;
      const lamina::gguf::Value* copied = converted->find(entry.first);
      REQUIRE_MESSAGE(copied != nullptr, entry.first);
      CHECK(*copied == entry.second);
    }
    CHECK(*converted->get_u32("general.file_type") == static_cast<std::uint32_t>(test.type));
    CHECK(*converted->get_u32("general.quantization_version") == 2);
    REQUIRE(converted->tensors().size() == original->tensors().size());
    for (const lamina::gguf::TensorInfo& before : original->tensors()) {
      CAPTURE(before.name);
      const lamina::gguf::TensorInfo* after = converted->find_tensor(before.name);
      REQUIRE(after != nullptr);
      CHECK(after->shape == before.shape);
      if (before.shape.size() == 1) CHECK(after->dtype == DType::f32);  // norms and biases stay F32
      const std::vector<float> reference = dequantized(before);
      const std::vector<float> values = dequantized(*after);
      double squared_error = 0, squared_reference = 0;
      for (std::size_t i = 0; i < values.size(); ++i) {
        squared_error += (static_cast<double>(values[i]) - reference[i]) * (static_cast<double>(values[i]) - reference[i]);
        squared_reference += static_cast<double>(reference[i]) * reference[i];
      }
      CHECK(std::sqrt(squared_error / squared_reference) <= test.max_relative_rmse);
    }
    // And the result runs.
    lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(path);
    REQUIRE_MESSAGE(model.ok(), (model.ok() ? "" : model.error().message));
    std::remove(path.c_str());
  }
  std::remove(original_path.c_str());
}

TEST_CASE("quantize: bad input gives one clear error") {
  lamina::QuantizeOptions options;
  options.file_type = FileType::q8_0;
  options.thread_count = 1;
  const std::string output = lamina_test::temp_path("quantize-bad-out.gguf");

  lamina::Result<lamina::QuantizeReport> missing = lamina::quantize_model(lamina_test::temp_path("no-such-model.gguf"), output, options);
  REQUIRE_FALSE(missing.ok());
  CHECK(contains_text(missing.error().message, "no-such-model.gguf"));

  // An already quantized input is refused unless requantizing is allowed.
  const std::string quantized = lamina_test::temp_path("quantize-q4_0-input.gguf");
  lamina::SynthOptions synth;
  synth.file_type = FileType::q4_0;
  synth.thread_count = 1;
  REQUIRE(lamina::synthesize_model(*lamina::find_synth_preset("llama-tiny"), quantized, synth).ok());
  lamina::Result<lamina::QuantizeReport> requantize = lamina::quantize_model(quantized, output, options);
  REQUIRE_FALSE(requantize.ok());
  CHECK(requantize.error().code == ErrorCode::unsupported);
  CHECK(contains_text(requantize.error().message, "already quantized"));
  CHECK(contains_text(requantize.error().message, "output.weight"));  // the first in llama.cpp's order
  CHECK_FALSE(lamina_test::file_exists(output));
  options.allow_requantize = true;
  lamina::Result<lamina::QuantizeReport> allowed = lamina::quantize_model(quantized, output, options);
  REQUIRE_MESSAGE(allowed.ok(), (allowed.ok() ? "" : allowed.error().message));
  lamina::Result<lamina::gguf::File> requantized = lamina::gguf::File::open(output);
  REQUIRE(requantized.ok());
  CHECK(requantized->find_tensor("blk.0.attn_q.weight")->dtype == DType::q8_0);
  std::remove(output.c_str());
  std::remove(quantized.c_str());

  // A GGUF without tensors.
  const std::string empty = lamina_test::temp_path("quantize-empty.gguf");
  lamina::gguf::Writer writer;
  writer.set("general.architecture", lamina::gguf::Value::from_string("llama"));
  REQUIRE(writer.write_file(empty).ok());
  lamina::Result<lamina::QuantizeReport> no_tensors = lamina::quantize_model(empty, output, options);
  REQUIRE_FALSE(no_tensors.ok());
  CHECK(contains_text(no_tensors.error().message, "no tensors"));
  std::remove(empty.c_str());
}
