// LoRA adapters against llama.cpp's logits (../shared/reference, GGUF and PEFT forms), stacks
// mixed in one batch, merging, hot-swapping, and adapters that do not fit.
#include <doctest/doctest.h>
#include <lamina/adapters/peft.hpp>
#include <lamina/lamina.hpp>

#include "../alloc_counter.hpp"
#include "../reference_cases.hpp"
#include "../test_support.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

using namespace lamina_test;

namespace {

const char* const lora_cases[] = {"llama-f32-lora-a", "llama-f32-lora-ab", "llama-q8_0-lora-ab", "llama-f32-dora-d", "llama-f32-rslora-e"};

std::shared_ptr<const lamina::LoraAdapter> load_adapter(const lamina::Model& model, const std::string& path) {
  lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> adapter = lamina::peft::load_adapter(model, path);
  REQUIRE_MESSAGE(adapter.ok(), (adapter.ok() ? "" : adapter.error().message));
  return *adapter;
}

// The case's stack in one form ("gguf" or "peft"); false when an adapter lacks that form.
bool case_stack(const lamina::Model& model, const ReferenceCase& reference, const std::string& form, lamina::AdapterStack* stack) {
  stack->clear();
  for (const ReferenceAdapter& adapter : reference.adapters) {
    const std::string& path = form == "gguf" ? adapter.gguf_path : adapter.peft_path;
    if (path.empty()) return false;
    stack->push_back({load_adapter(model, path), adapter.scale});
  }
  return true;
}

bool quantized(const std::string& name) { return name.find("q8_0") != std::string::npos; }

double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double largest = 0;
  for (std::size_t i = 0; i < a.size(); ++i) largest = std::max(largest, static_cast<double>(std::fabs(a[i] - b[i])));
  return largest;
}

std::string error_of(const lamina::Result<std::shared_ptr<const lamina::LoraAdapter>>& result) {
  return result.ok() ? std::string("(no error)") : result.error().message;
}

}  // namespace

TEST_CASE("every LoRA reference case passes in each form of its adapters") {
  for (const char* name : lora_cases) {
    LAMINA_REQUIRE_SHARED(std::string("reference/") + name + ".json");
    const ReferenceCase reference = load_case(name);
    const std::shared_ptr<const lamina::Model> model = load_model(reference.model_path);
    for (const char* form : {"gguf", "peft"}) {
      CAPTURE(name);
      CAPTURE(form);
      lamina::AdapterStack stack;
      if (!case_stack(*model, reference, form, &stack)) continue;
      const std::vector<float> logits = evaluate(model, reference.prompt, 2, 512, stack);
      if (quantized(name)) check_against_reference(reference, logits, 0.30, 0.80);
      else check_against_reference(reference, logits, 0.02, 1.0);
    }
  }
}

TEST_CASE("decoding one token at a time (adapters fused into the base product) passes the reference cases") {
  for (const char* name : lora_cases) {
    CAPTURE(name);
    LAMINA_REQUIRE_SHARED(std::string("reference/") + name + ".json");
    const ReferenceCase reference = load_case(name);
    const std::shared_ptr<const lamina::Model> model = load_model(reference.model_path);
    lamina::AdapterStack stack;
    REQUIRE(case_stack(*model, reference, "peft", &stack));
    const std::vector<float> logits = evaluate(model, reference.prompt, 2, 1, stack);  // batches of one token
    if (quantized(name)) check_against_reference(reference, logits, 0.30, 0.80);
    else check_against_reference(reference, logits, 0.02, 1.0);
    // Against the whole prompt in one batch (F32 bases; on quantized ones the 8-bit rounding of
    // activations turns any difference of summation order into one of ~0.05, both within tolerance).
    if (!quantized(name)) CHECK(max_difference(logits, evaluate(model, reference.prompt, 2, 512, stack)) <= 1e-3);
    // Bit-identical whatever the thread count, on this path too.
    CHECK(evaluate(model, reference.prompt, 1, 1, stack) == evaluate(model, reference.prompt, 3, 1, stack));
  }
}

TEST_CASE("GGUF and PEFT forms of an adapter give the same logits") {
  LAMINA_REQUIRE_SHARED("reference/llama-f32-lora-ab.json");
  const ReferenceCase reference = load_case("llama-f32-lora-ab");
  const std::shared_ptr<const lamina::Model> model = load_model(reference.model_path);
  lamina::AdapterStack gguf, peft;
  REQUIRE(case_stack(*model, reference, "gguf", &gguf));
  REQUIRE(case_stack(*model, reference, "peft", &peft));
  CHECK(max_difference(evaluate(model, reference.prompt, 2, 512, gguf), evaluate(model, reference.prompt, 2, 512, peft)) <= 1e-5);
}

TEST_CASE("one batch mixing the reference cases' stacks reproduces each case") {
  // All F32 cases share the model synth-llama-f32: one session, one sequence per case, every
  // token of every sequence in a single forward pass.
  LAMINA_REQUIRE_SHARED("reference/llama-f32-lora-a.json");
  std::vector<ReferenceCase> cases;
  for (const char* name : lora_cases) {
    if (!quantized(name)) cases.push_back(load_case(name));
  }
  cases.push_back(load_case("llama-f32"));  // and a sequence without adapters
  const std::shared_ptr<const lamina::Model> model = load_model(cases[0].model_path);
  const std::size_t vocab = model->hparams().vocab_size;

  lamina::SessionParams params;
  params.thread_count = 2;
  params.sequence_count = static_cast<std::uint32_t>(cases.size());
  params.logits_for_every_token = true;
  params.context_length = 256;
  params.batch_size = 256;
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE(session.ok());
  lamina::Batch batch;
  // Interleave the sequences' tokens, so each group's tokens are scattered through the batch.
  std::size_t longest = 0;
  for (std::size_t s = 0; s < cases.size(); ++s) {
    lamina::AdapterStack stack;
    REQUIRE(case_stack(*model, cases[s], "peft", &stack));
    REQUIRE(session->set_adapters(stack, static_cast<lamina::SequenceId>(s)).ok());
    longest = std::max(longest, cases[s].prompt.size());
  }
  std::vector<std::vector<std::size_t>> output_index(cases.size());
  std::size_t outputs = 0;
  for (std::size_t position = 0; position < longest; ++position) {
    for (std::size_t s = 0; s < cases.size(); ++s) {
      if (position >= cases[s].prompt.size()) continue;
      batch.add(cases[s].prompt[position], static_cast<lamina::Position>(position), static_cast<lamina::SequenceId>(s), true);
      output_index[s].push_back(outputs++);
    }
  }
  REQUIRE(session->decode(batch).ok());
  for (std::size_t s = 0; s < cases.size(); ++s) {
    CAPTURE(s);
    std::vector<float> logits;
    for (std::size_t output : output_index[s]) {
      const float* row = session->output_logits(output);
      logits.insert(logits.end(), row, row + vocab);
    }
    check_against_reference(cases[s], logits, 0.02, 1.0);
    // And the same as the sequence run alone with its stack.
    lamina::AdapterStack stack;
    REQUIRE(case_stack(*model, cases[s], "peft", &stack));
    CHECK(max_difference(logits, evaluate(model, cases[s].prompt, 2, 512, stack)) <= 1e-4);
  }
}

TEST_CASE("sequences with different stacks decoding together, one token each, match each case") {
  LAMINA_REQUIRE_SHARED("reference/llama-f32-lora-a.json");
  std::vector<ReferenceCase> cases;
  for (const char* name : lora_cases) {
    if (!quantized(name)) cases.push_back(load_case(name));
  }
  cases.push_back(load_case("llama-f32"));
  const std::shared_ptr<const lamina::Model> model = load_model(cases[0].model_path);
  const std::size_t vocab = model->hparams().vocab_size;
  lamina::SessionParams params;
  params.thread_count = 2;
  params.sequence_count = static_cast<std::uint32_t>(cases.size());
  params.context_length = 256;
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE(session.ok());
  for (std::size_t s = 0; s < cases.size(); ++s) {
    lamina::AdapterStack stack;
    REQUIRE(case_stack(*model, cases[s], "peft", &stack));
    REQUIRE(session->set_adapters(stack, static_cast<lamina::SequenceId>(s)).ok());
  }
  std::vector<std::vector<float>> logits(cases.size());
  for (std::size_t position = 0; position < cases[0].prompt.size(); ++position) {
    lamina::Batch batch;  // one token of every sequence
    for (std::size_t s = 0; s < cases.size(); ++s) {
      batch.add(cases[s].prompt[position], static_cast<lamina::Position>(position), static_cast<lamina::SequenceId>(s), true);
    }
    REQUIRE(session->decode(batch).ok());
    for (std::size_t s = 0; s < cases.size(); ++s) {
      logits[s].insert(logits[s].end(), session->output_logits(s), session->output_logits(s) + vocab);
    }
  }
  for (std::size_t s = 0; s < cases.size(); ++s) {
    CAPTURE(s);
    check_against_reference(cases[s], logits[s], 0.02, 1.0);
  }
}

TEST_CASE("merged and unmerged adapters agree; unmerging restores the base") {
  LAMINA_REQUIRE_SHARED("reference/llama-f32-lora-ab.json");
  for (const char* name : {"llama-f32-lora-ab", "llama-f32-dora-d", "llama-f32-rslora-e", "llama-q8_0-lora-ab"}) {
    CAPTURE(name);
    const ReferenceCase reference = load_case(name);
    const std::shared_ptr<const lamina::Model> model = load_model(reference.model_path);
    lamina::AdapterStack stack;
    REQUIRE(case_stack(*model, reference, "peft", &stack));
    // An F32 KV cache: with F16, a difference of one rounding in a key can flip its F16 rounding.
    const std::vector<float> unmerged = evaluate(model, reference.prompt, 2, 512, stack, lamina::DType::f32);

    lamina::SessionParams params;
    params.kv_cache_type = lamina::DType::f32;
    params.thread_count = 2;
    params.logits_for_every_token = true;
    params.context_length = 256;
    lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
    REQUIRE(session.ok());
    // F32 copies for an F32 base; a quantized base is re-quantized to its own type.
    REQUIRE(session->merge_adapters(stack).ok());
    std::vector<float> merged(reference.prompt.size() * model->hparams().vocab_size);
    REQUIRE(session->feed(reference.prompt.data(), reference.prompt.size(), 0, merged.data()).ok());
    if (quantized(name)) {
      check_against_reference(reference, merged, 0.30, 0.80);
    } else {
      CHECK(max_difference(merged, unmerged) <= 1e-4);
    }

    session->unmerge_adapters();
    session->clear();
    std::vector<float> base(merged.size());
    REQUIRE(session->feed(reference.prompt.data(), reference.prompt.size(), 0, base.data()).ok());
    CHECK(base == evaluate(model, reference.prompt, 2, 512, {}, lamina::DType::f32));
  }
}

TEST_CASE("adapter scales: 0 is the base, stacks switch between tokens without allocating") {
  LAMINA_REQUIRE_SHARED("reference/llama-f32-lora-a.json");
  const ReferenceCase reference = load_case("llama-f32-lora-a");
  const std::shared_ptr<const lamina::Model> model = load_model(reference.model_path);
  const std::shared_ptr<const lamina::LoraAdapter> a = load_adapter(*model, reference.adapters[0].gguf_path);
  const std::shared_ptr<const lamina::LoraAdapter> b = load_adapter(*model, lamina_test::shared_path("adapters/lora-b.gguf"));
  const std::vector<float> base = evaluate(model, reference.prompt);
  CHECK(evaluate(model, reference.prompt, 2, 512, {{a, 0.0f}}) == base);
  // A negative scale subtracts the change: +s and -s are symmetric around the base (exactly up to rounding).
  const std::vector<float> plus = evaluate(model, reference.prompt, 2, 512, {{b, 0.5f}});
  const std::vector<float> minus = evaluate(model, reference.prompt, 2, 512, {{b, -0.5f}});
  CHECK(max_difference(plus, base) > 1e-3);
  CHECK(max_difference(minus, base) > 1e-3);

  lamina::SessionParams params;
  params.thread_count = 1;
  params.context_length = 256;
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE(session.ok());
  REQUIRE(session->add_adapter(a, 1.0f).ok());
  REQUIRE(session->add_adapter(b, 0.5f).ok());
  REQUIRE(session->feed(reference.prompt).ok());
  // Between two tokens: rescale, remove, add back. None of it allocates, nor does the step.
  const lamina::Token next = 7;
  {
    lamina_test::AllocationScope counter;
    REQUIRE(session->set_adapter_scale(a.get(), 0.25f).ok());
    CHECK(session->remove_adapter(b.get()));
    REQUIRE(session->add_adapter(b, -0.5f).ok());
    REQUIRE(session->feed(&next, 1).ok());
    CHECK(counter.count() == 0);
  }
  REQUIRE(session->adapters().size() == 2);
  CHECK(session->adapters()[0].scale == 0.25f);
  CHECK(session->adapters()[1].scale == -0.5f);
}

TEST_CASE("adapters that do not fit the model are clean errors naming the tensor") {
  LAMINA_REQUIRE_SHARED("models/synth-qwen2-f32.gguf");
  const std::shared_ptr<const lamina::Model> qwen = load_model(lamina_test::shared_path("models/synth-qwen2-f32.gguf"));
  // A Llama adapter on the Qwen2 model (other architecture and shapes).
  const auto wrong_model = lamina::peft::load_adapter(*qwen, lamina_test::shared_path("adapters/lora-a.gguf"));
  REQUIRE_FALSE(wrong_model.ok());
  CHECK(error_of(wrong_model).find("lora-a.gguf") != std::string::npos);
  // A PEFT directory does not say which architecture it is for (synth-qwen2 has synth-llama's
  // shapes, so it fits there); on stories260K (dim 64) its shapes do not fit.
  const std::shared_ptr<const lamina::Model> stories = load_model(lamina_test::shared_path("models/stories260K.gguf"));
  const auto wrong_model_peft = lamina::peft::load_adapter(*stories, lamina_test::shared_path("adapters/lora-b-peft"));
  REQUIRE_FALSE(wrong_model_peft.ok());
  INFO(error_of(wrong_model_peft));
  CHECK(error_of(wrong_model_peft).find("model.layers.") != std::string::npos);

  const std::shared_ptr<const lamina::Model> llama = load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  const auto missing = lamina::peft::load_adapter(*llama, "/nonexistent/adapter.gguf");
  REQUIRE_FALSE(missing.ok());
  const auto model_not_adapter = lamina::peft::load_adapter(*llama, lamina_test::shared_path("models/synth-llama-f32.gguf"));
  REQUIRE_FALSE(model_not_adapter.ok());
  CHECK(error_of(model_not_adapter).find("adapter") != std::string::npos);

  // An adapter from another model object of other shapes cannot join this model's stacks.
  const std::shared_ptr<const lamina::LoraAdapter> llama_adapter = load_adapter(*llama, lamina_test::shared_path("adapters/lora-a.gguf"));
  lamina::Result<lamina::Session> session = lamina::Session::create(stories, {});
  REQUIRE(session.ok());
  CHECK_FALSE(session->add_adapter(llama_adapter, 1.0f).ok());
  CHECK_FALSE(session->set_adapters({{llama_adapter, 1.0f}}, 5).ok());  // sequence out of range too
  CHECK_FALSE(session->set_adapters({{nullptr, 1.0f}}).ok());
  CHECK_FALSE(session->set_adapters({{llama_adapter, std::nanf("")}}).ok());
}

TEST_CASE("hostile GGUF adapters get clean errors") {
  LAMINA_REQUIRE_SHARED("models/synth-llama-f32.gguf");
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  const lamina::ModelHparams& hparams = model->hparams();
  const std::string path = lamina_test::temp_path("hostile-adapter.gguf");
  struct Tensor { std::string name; std::vector<std::int64_t> shape; };
  const auto write = [&](const std::vector<Tensor>& tensors, const std::string& type, const std::string& adapter_type) {
    lamina::gguf::Writer writer;
    writer.set("general.architecture", lamina::gguf::Value::from_string("llama"));
    writer.set("general.type", lamina::gguf::Value::from_string(type));
    writer.set("adapter.type", lamina::gguf::Value::from_string(adapter_type));
    writer.set("adapter.lora.alpha", lamina::gguf::Value::from_f32(8.0f));
    std::vector<std::vector<float>> data;
    for (const Tensor& tensor : tensors) {
      std::int64_t count = 1;
      for (std::int64_t extent : tensor.shape) count *= extent;
      data.emplace_back(static_cast<std::size_t>(count), 0.01f);
      REQUIRE(writer.add_tensor(tensor.name, lamina::DType::f32, tensor.shape, data.back().data(), data.back().size() * sizeof(float)).ok());
    }
    REQUIRE(writer.write_file(path).ok());
  };
  const std::int64_t dim = hparams.embedding_length, q = hparams.query_width();
  struct Case { std::vector<Tensor> tensors; const char* type; const char* adapter_type; const char* expected; };
  const Case cases[] = {
      {{{"blk.0.attn_q.weight.lora_a", {4, dim}}, {"blk.0.attn_q.weight.lora_b", {q, 4}}}, "model", "lora", "general.type"},
      {{{"blk.0.attn_q.weight.lora_a", {4, dim}}, {"blk.0.attn_q.weight.lora_b", {q, 4}}}, "adapter", "control_vector", "adapter.type"},
      {{{"blk.0.attn_q.weight.lora_a", {4, dim}}}, "adapter", "lora", "blk.0.attn_q.weight.lora_b"},
      {{{"blk.0.attn_q.weight.lora_b", {q, 4}}}, "adapter", "lora", "blk.0.attn_q.weight.lora_a"},
      {{{"blk.0.attn_q.weight.lora_a", {4, dim + 1}}, {"blk.0.attn_q.weight.lora_b", {q, 4}}}, "adapter", "lora", "blk.0.attn_q"},
      {{{"blk.0.attn_q.weight.lora_a", {4, dim}}, {"blk.0.attn_q.weight.lora_b", {q, 5}}}, "adapter", "lora", "blk.0.attn_q.weight.lora_a"},
      {{{"blk.99.attn_q.weight.lora_a", {4, dim}}, {"blk.99.attn_q.weight.lora_b", {q, 4}}}, "adapter", "lora", "layer 99"},
      {{{"token_embd.weight.lora_a", {4, dim}}, {"token_embd.weight.lora_b", {512, 4}}}, "adapter", "lora", "token_embd.weight.lora_a"},
      {{}, "adapter", "lora", "no lora_a"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.expected);
    write(c.tensors, c.type, c.adapter_type);
    const auto result = lamina::load_gguf_adapter(*model, path);
    REQUIRE_FALSE(result.ok());
    INFO(result.error().message);
    CHECK(result.error().message.find(c.expected) != std::string::npos);
  }
  std::remove(path.c_str());
}

TEST_CASE("hostile PEFT directories get clean errors") {
  LAMINA_REQUIRE_SHARED("adapters/lora-a-peft/adapter_config.json");
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  const std::string directory = lamina_test::temp_path("hostile-peft");
  ::mkdir(directory.c_str(), 0777);
  const auto write_file = [](const std::string& path, const std::string& bytes) {
    std::FILE* file = std::fopen(path.c_str(), "wb");
    REQUIRE(file != nullptr);
    REQUIRE(std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size());
    std::fclose(file);
  };
  const std::string config = lamina_test::read_text_file(lamina_test::shared_path("adapters/lora-a-peft/adapter_config.json"));
  const std::vector<unsigned char> tensors_bytes = lamina_test::read_binary_file(lamina_test::shared_path("adapters/lora-a-peft/adapter_model.safetensors"));
  const std::string tensors(tensors_bytes.begin(), tensors_bytes.end());
  // A safetensors file whose header is replaced: the same data with other shapes.
  std::uint64_t header_length = 0;
  std::memcpy(&header_length, tensors.data(), 8);
  const auto with_header = [&](std::string header) {
    while ((header.size() % 8) != 0) header += ' ';
    std::string bytes(8, '\0');
    const std::uint64_t length = header.size();
    std::memcpy(&bytes[0], &length, 8);
    return bytes + header + tensors.substr(8 + header_length);
  };
  std::string header = tensors.substr(8, header_length);
  std::string wrong_rank = header;
  const std::size_t shape_at = wrong_rank.find("\"shape\":[8,");
  REQUIRE(shape_at != std::string::npos);
  wrong_rank.replace(shape_at, 11, "\"shape\":[4,");

  struct Case { std::string config; std::string tensors; const char* expected; };
  const Case cases[] = {
      {"{", tensors, "adapter_config.json"},
      {"{\"peft_type\": \"LORA\", \"r\": \"eight\"}", tensors, "key 'r'"},
      {config, tensors.substr(0, 5), "adapter_model.safetensors"},
      {config, tensors.substr(0, tensors.size() - 100), "adapter_model.safetensors"},
      {config, with_header("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}"), "adapter_model.safetensors"},
      {config, with_header(wrong_rank), "adapter_model.safetensors"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.expected);
    write_file(directory + "/adapter_config.json", c.config);
    write_file(directory + "/adapter_model.safetensors", c.tensors);
    const auto result = lamina::peft::load_adapter(*model, directory);
    REQUIRE_FALSE(result.ok());
    INFO(result.error().message);
    CHECK(result.error().message.find(c.expected) != std::string::npos);
  }
  std::remove((directory + "/adapter_config.json").c_str());
  std::remove((directory + "/adapter_model.safetensors").c_str());
  ::rmdir(directory.c_str());
}
