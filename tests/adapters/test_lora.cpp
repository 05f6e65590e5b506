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
#include <limits>
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
    REQUIRE(lamina_test::write_text_file(directory + "/adapter_config.json", c.config));
    REQUIRE(lamina_test::write_text_file(directory + "/adapter_model.safetensors", c.tensors));
    const auto result = lamina::peft::load_adapter(*model, directory);
    REQUIRE_FALSE(result.ok());
    INFO(result.error().message);
    CHECK(result.error().message.find(c.expected) != std::string::npos);
  }
  std::remove((directory + "/adapter_config.json").c_str());
  std::remove((directory + "/adapter_model.safetensors").c_str());
  ::rmdir(directory.c_str());
}

// --- messages that say what is wrong: hostile adapters written by the test -------------------

namespace {

bool printable_ascii(const std::string& text) {
  for (const char c : text) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f) return false;
  }
  return true;
}

// One tensor of a hand-made safetensors file: any dtype name, `element_bytes` per value, and
// the values as floats (F32) or zero bytes (every other dtype).
struct RawTensor {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::size_t element_bytes;
  std::vector<float> values;  // F32 only; empty: zeros
};

std::string safetensors_bytes(const std::vector<RawTensor>& tensors) {
  std::string header = "{";
  std::string data;
  for (const RawTensor& tensor : tensors) {
    std::size_t count = 1;
    for (const std::int64_t extent : tensor.shape) count *= static_cast<std::size_t>(extent);
    std::string bytes(count * tensor.element_bytes, '\0');
    if (!tensor.values.empty()) {
      REQUIRE(tensor.values.size() * 4 == bytes.size());
      std::memcpy(&bytes[0], tensor.values.data(), bytes.size());
    }
    if (header.size() > 1) header += ',';
    std::string shape;
    for (const std::int64_t extent : tensor.shape) shape += (shape.empty() ? "" : ",") + std::to_string(extent);
    header += "\"" + tensor.name + "\":{\"dtype\":\"" + tensor.dtype + "\",\"shape\":[" + shape + "],\"data_offsets\":[" +
              std::to_string(data.size()) + "," + std::to_string(data.size() + bytes.size()) + "]}";
    data += bytes;
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  std::string out(8, '\0');
  const std::uint64_t length = header.size();
  std::memcpy(&out[0], &length, 8);
  return out + header + data;
}

// A PEFT directory for layer 0's q_proj of synth-llama (r 8): config text and tensors.
struct PeftDirectory {
  std::string path;
  explicit PeftDirectory(const std::string& name) : path(lamina_test::temp_path(name)) { ::mkdir(path.c_str(), 0777); }
  ~PeftDirectory() {
    std::remove((path + "/adapter_config.json").c_str());
    std::remove((path + "/adapter_model.safetensors").c_str());
    ::rmdir(path.c_str());
  }
  void write(const std::string& config, const std::vector<RawTensor>& tensors) const {
    REQUIRE(lamina_test::write_text_file(path + "/adapter_config.json", config));
    REQUIRE(lamina_test::write_text_file(path + "/adapter_model.safetensors", safetensors_bytes(tensors)));
  }
};

const char* const q_a = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
const char* const q_b = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
const char* const v_a = "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight";
const char* const v_b = "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight";

}  // namespace

TEST_CASE("a GGUF adapter's alpha that is not a finite number is named, with its value") {
  LAMINA_REQUIRE_SHARED("models/synth-llama-f32.gguf");
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  const std::int64_t dim = model->hparams().embedding_length, q = model->hparams().query_width();
  const std::string path = lamina_test::temp_path("alpha-adapter.gguf");
  const std::vector<float> a(static_cast<std::size_t>(4 * dim), 0.01f), b(static_cast<std::size_t>(q * 4), 0.01f);
  struct Case { float alpha; const char* expected; };
  const Case cases[] = {{std::nanf(""), "adapter.lora.alpha is nan: not a finite number"},
                        {std::numeric_limits<float>::infinity(), "adapter.lora.alpha is inf: not a finite number"},
                        {-std::numeric_limits<float>::infinity(), "adapter.lora.alpha is -inf: not a finite number"}};
  for (const Case& c : cases) {
    lamina::gguf::Writer writer;
    writer.set("general.architecture", lamina::gguf::Value::from_string("llama"));
    writer.set("general.type", lamina::gguf::Value::from_string("adapter"));
    writer.set("adapter.type", lamina::gguf::Value::from_string("lora"));
    writer.set("adapter.lora.alpha", lamina::gguf::Value::from_f32(c.alpha));
    REQUIRE(writer.add_tensor("blk.0.attn_q.weight.lora_a", lamina::DType::f32, {4, dim}, a.data(), a.size() * sizeof(float)).ok());
    REQUIRE(writer.add_tensor("blk.0.attn_q.weight.lora_b", lamina::DType::f32, {q, 4}, b.data(), b.size() * sizeof(float)).ok());
    REQUIRE(writer.write_file(path).ok());
    const auto result = lamina::load_gguf_adapter(*model, path);
    REQUIRE_FALSE(result.ok());
    INFO(result.error().message);
    CHECK(result.error().code == lamina::ErrorCode::invalid_format);
    CHECK(result.error().message == path + ": " + c.expected);
  }
  // A NaN inside lora_a names the tensor and the position.
  std::vector<float> bad_a = a;
  bad_a[static_cast<std::size_t>(dim) + 3] = std::nanf("");
  lamina::gguf::Writer writer;
  writer.set("general.architecture", lamina::gguf::Value::from_string("llama"));
  writer.set("general.type", lamina::gguf::Value::from_string("adapter"));
  writer.set("adapter.type", lamina::gguf::Value::from_string("lora\x1b[2J"));
  REQUIRE(writer.write_file(path).ok());
  const auto control = lamina::load_gguf_adapter(*model, path);
  REQUIRE_FALSE(control.ok());
  CHECK(control.error().message == path + ": adapter.type is 'lora\\x1b[2J'; lamina reads LoRA adapters");
  lamina::gguf::Writer nan_writer;
  nan_writer.set("general.architecture", lamina::gguf::Value::from_string("llama"));
  nan_writer.set("general.type", lamina::gguf::Value::from_string("adapter"));
  nan_writer.set("adapter.type", lamina::gguf::Value::from_string("lora"));
  nan_writer.set("adapter.lora.alpha", lamina::gguf::Value::from_f32(8.0f));
  REQUIRE(nan_writer.add_tensor("blk.0.attn_q.weight.lora_a", lamina::DType::f32, {4, dim}, bad_a.data(), bad_a.size() * sizeof(float)).ok());
  REQUIRE(nan_writer.add_tensor("blk.0.attn_q.weight.lora_b", lamina::DType::f32, {q, 4}, b.data(), b.size() * sizeof(float)).ok());
  REQUIRE(nan_writer.write_file(path).ok());
  const auto nan_values = lamina::load_gguf_adapter(*model, path);
  REQUIRE_FALSE(nan_values.ok());
  CHECK(nan_values.error().message == path + ": tensor 'blk.0.attn_q.weight.lora_a' holds nan at [1, 3]: not a finite number");
  std::remove(path.c_str());
}

TEST_CASE("a PEFT alpha whose scale alpha/r is not a finite float names its key") {
  LAMINA_REQUIRE_SHARED("models/synth-llama-f32.gguf");
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  const lamina::ModelHparams& hparams = model->hparams();
  const std::int64_t dim = hparams.embedding_length, q = hparams.query_width(), kv = hparams.kv_width();
  const PeftDirectory directory("alpha-peft");
  const std::vector<RawTensor> tensors = {{q_a, "F32", {8, dim}, 4, {}}, {q_b, "F32", {q, 8}, 4, {}},
                                          {v_a, "F32", {8, dim}, 4, {}}, {v_b, "F32", {kv, 8}, 4, {}}};
  const std::string config_path = directory.path + "/adapter_config.json";
  struct Case { std::string config; std::string expected; };
  const Case cases[] = {
      {R"({"peft_type":"LORA","r":8,"lora_alpha":1e300,"target_modules":["q_proj","v_proj"]})",
       config_path + ": key 'lora_alpha': alpha 1e+300 with r 8 gives module 'model.layers.0.self_attn.q_proj' the scale alpha/r = "
                     "1.25e+299, which is not a finite float (the largest is about 3.4e38)"},
      {R"({"peft_type":"LORA","r":8,"lora_alpha":-1e300,"use_rslora":true,"target_modules":["q_proj","v_proj"]})",
       config_path + ": key 'lora_alpha': alpha -1e+300 with r 8 gives module 'model.layers.0.self_attn.q_proj' the scale "
                     "alpha/sqrt(r) = -3.53553391e+299, which is not a finite float (the largest is about 3.4e38)"},
  };
  for (const Case& c : cases) {
    directory.write(c.config, tensors);
    const auto result = lamina::peft::load_adapter(*model, directory.path);
    REQUIRE_FALSE(result.ok());
    INFO(result.error().message);
    CHECK(result.error().code == lamina::ErrorCode::invalid_format);
    CHECK(result.error().message == c.expected);
  }
  // alpha 1e39 is past the float range, but its scale 1e39 / 8 = 1.25e38 is not: it loads.
  directory.write(R"({"peft_type":"LORA","r":8,"lora_alpha":16,"alpha_pattern":{"v_proj":1e39},"target_modules":["q_proj","v_proj"]})", tensors);
  const auto large = lamina::peft::load_adapter(*model, directory.path);
  CHECK_MESSAGE(large.ok(), error_of(large));
  directory.write(R"({"peft_type":"LORA","r":8,"lora_alpha":16,"alpha_pattern":{"q_proj":16,"v_proj":1e300},"target_modules":["q_proj","v_proj"]})",
                  tensors);
  const auto pattern = lamina::peft::load_adapter(*model, directory.path);
  REQUIRE_FALSE(pattern.ok());
  CHECK(pattern.error().message ==
        config_path + ": key 'alpha_pattern': pattern 'v_proj': alpha 1e+300 with r 8 gives module 'model.layers.0.self_attn.v_proj' "
                      "the scale alpha/r = 1.25e+299, which is not a finite float (the largest is about 3.4e38)");
}

TEST_CASE("PEFT tensors lamina cannot read name the file and the tensor") {
  LAMINA_REQUIRE_SHARED("models/synth-llama-f32.gguf");
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  const lamina::ModelHparams& hparams = model->hparams();
  const std::int64_t dim = hparams.embedding_length, q = hparams.query_width();
  const PeftDirectory directory("dtype-peft");
  const std::string config = R"({"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":["q_proj"]})";
  const std::string tensors_path = directory.path + "/adapter_model.safetensors";
  struct Case { const char* dtype; std::size_t bytes; bool on_a; };
  for (const Case& c : {Case{"F64", 8, true}, Case{"I64", 8, false}, Case{"F8_E4M3", 1, true}, Case{"BOOL", 1, false}}) {
    CAPTURE(c.dtype);
    std::vector<RawTensor> tensors = {{q_a, "F32", {8, dim}, 4, {}}, {q_b, "F32", {q, 8}, 4, {}}};
    RawTensor& odd = tensors[c.on_a ? 0 : 1];
    odd.dtype = c.dtype;
    odd.element_bytes = c.bytes;
    directory.write(config, tensors);
    const auto result = lamina::peft::load_adapter(*model, directory.path);
    REQUIRE_FALSE(result.ok());
    INFO(result.error().message);
    CHECK(result.error().code == lamina::ErrorCode::unsupported);
    CHECK(result.error().message == tensors_path + ": tensor '" + odd.name + "' has dtype '" + c.dtype +
                                        "', which lamina does not read (LoRA factors must be F32, F16 or BF16)");
  }
  // Values that are not finite name the tensor and where.
  std::vector<float> b(static_cast<std::size_t>(q * 8), 0.0f);
  b[17] = -std::numeric_limits<float>::infinity();
  directory.write(config, {{q_a, "F32", {8, dim}, 4, {}}, {q_b, "F32", {q, 8}, 4, b}});
  const auto infinite = lamina::peft::load_adapter(*model, directory.path);
  REQUIRE_FALSE(infinite.ok());
  CHECK(infinite.error().message == tensors_path + ": tensor '" + q_b + "' holds -inf at [2, 1]: not a finite number");
  // A name with a control character is quoted with escapes (JSON's \u001b is a raw ESC byte).
  directory.write(config, {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight\\u001b[2J", "F32", {8, dim}, 4, {}},
                           {q_b, "F32", {q, 8}, 4, {}}});
  const auto control = lamina::peft::load_adapter(*model, directory.path);
  REQUIRE_FALSE(control.ok());
  INFO(control.error().message);
  CHECK(control.error().message.find(tensors_path + ": tensor 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight\\x1b[2J'") == 0);
  CHECK(printable_ascii(control.error().message));
  // A layer past the model is refused at its tensor, before any pattern is matched.
  directory.write(config, {{"base_model.model.model.layers.99999.self_attn.q_proj.lora_A.weight", "F32", {8, dim}, 4, {}}});
  const auto far_layer = lamina::peft::load_adapter(*model, directory.path);
  REQUIRE_FALSE(far_layer.ok());
  CHECK(far_layer.error().message == tensors_path + ": tensor 'base_model.model.model.layers.99999.self_attn.q_proj.lora_A.weight': "
                                                    "layer 99999 does not exist (the model has 4 layers)");
}

TEST_CASE("PEFT factors past F16's range on a quantized model are refused, naming the tensor") {
  LAMINA_REQUIRE_SHARED("models/synth-llama-q8_0.gguf");
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/synth-llama-q8_0.gguf"));
  const std::int64_t dim = model->hparams().embedding_length, q = model->hparams().query_width();
  const PeftDirectory directory("f16-range-peft");
  std::vector<float> a(static_cast<std::size_t>(8 * dim), 0.0f);
  a[5] = 1e5f;  // finite as F32; infinity as F16, in which a quantized model's factors are kept
  directory.write(R"({"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":["q_proj"]})",
                  {{q_a, "F32", {8, dim}, 4, a}, {q_b, "F32", {q, 8}, 4, {}}});
  const auto result = lamina::peft::load_adapter(*model, directory.path);
  REQUIRE_FALSE(result.ok());
  INFO(result.error().message);
  CHECK(result.error().message == directory.path + "/adapter_model.safetensors: tensor '" + q_a +
                                      "' holds 100000 at [0, 5], beyond F16's range (+-65504), in which lamina stores the factors of a quantized model");
}

TEST_CASE("an adapter_config.json with invalid UTF-8 gives a message without raw bytes") {
  LAMINA_REQUIRE_SHARED("models/synth-llama-f32.gguf");
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  const PeftDirectory directory("utf8-peft");
  directory.write("{\"peft_type\":\"LORA\",\"r\":8,\"target_modules\":[\"q_proj\xc0\xaf\x1b]0;owned\x07\"]}", {});
  const auto result = lamina::peft::load_adapter(*model, directory.path);
  REQUIRE_FALSE(result.ok());
  INFO(result.error().message);
  CHECK(result.error().code == lamina::ErrorCode::invalid_format);
  CHECK(result.error().message == directory.path + "/adapter_config.json: at byte 51: invalid JSON: syntax error while parsing value - "
                                                   "invalid string: ill-formed UTF-8 byte; last read: '\"q_proj\\xc0'");
  CHECK(printable_ascii(result.error().message));
}
