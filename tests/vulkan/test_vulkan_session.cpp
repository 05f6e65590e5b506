// Sessions on the Vulkan backend: llama.cpp's reference logits, agreement with the CPU, one
// forward pass serving sequences with different adapter stacks, decode against prompt paths,
// partial offload, the non-blocking form, and clean errors where there is no Vulkan.
#include "vulkan_support.hpp"

#include "../reference_cases.hpp"

#include <lamina/adapters/peft.hpp>

#include <cmath>
#include <string>
#include <thread>
#include <vector>

using namespace lamina_test;

namespace {

lamina::SessionParams device_params(std::shared_ptr<lamina::Backend> backend) {
  lamina::SessionParams params;
  params.thread_count = 2;
  params.logits_for_every_token = true;
  params.context_length = 256;
  params.backend = std::move(backend);
  return params;
}

// Logits after every token of `tokens` on `params`' backend; `step` > 0 feeds that many at a time.
std::vector<float> device_logits(const std::shared_ptr<const lamina::Model>& model, const std::vector<lamina::Token>& tokens,
                                 const lamina::SessionParams& params, const lamina::AdapterStack& stack = {}, std::size_t step = 0) {
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE_MESSAGE(session.ok(), (session.ok() ? "" : session.error().message));
  if (!stack.empty()) REQUIRE(session->set_adapters(stack).ok());
  const std::size_t vocab = model->hparams().vocab_size;
  std::vector<float> logits(tokens.size() * vocab);
  if (step == 0) step = tokens.size();
  for (std::size_t begin = 0; begin < tokens.size(); begin += step) {
    const std::size_t count = std::min(step, tokens.size() - begin);
    lamina::Result<void> fed = session->feed(tokens.data() + begin, count, 0, logits.data() + begin * vocab);
    REQUIRE_MESSAGE(fed.ok(), (fed.ok() ? "" : fed.error().message));
  }
  return logits;
}

double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double largest = 0;
  for (std::size_t i = 0; i < a.size(); ++i) largest = std::max(largest, static_cast<double>(std::fabs(a[i] - b[i])));
  return largest;
}

lamina::AdapterStack peft_stack(const lamina::Model& model, const ReferenceCase& reference) {
  lamina::AdapterStack stack;
  for (const ReferenceAdapter& adapter : reference.adapters) {
    lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> loaded = lamina::peft::load_adapter(model, adapter.peft_path);
    REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? "" : loaded.error().message));
    stack.push_back({*loaded, adapter.scale});
  }
  return stack;
}

bool quantized(const std::string& name) { return name.find('q') != std::string::npos && name.find("qwen2-f32") == std::string::npos; }

}  // namespace

TEST_CASE("vulkan: the reference cases match llama.cpp within the CPU's tolerances, and the CPU") {
  LAMINA_REQUIRE_SHARED("reference/llama-f32.json");
  VulkanFixture& fixture = vulkan_fixture();
  for (const char* name : {"stories260K", "llama-f32", "llama-q4_k_m", "qwen2-q8_0", "llama-f32-dora-d", "llama-q8_0-lora-ab"}) {
    CAPTURE(name);
    const ReferenceCase reference = load_case(name);
    const std::shared_ptr<const lamina::Model> model = load_model(reference.model_path);
    const lamina::AdapterStack stack = peft_stack(*model, reference);
    const std::vector<float> device = device_logits(model, reference.prompt, device_params(fixture.backend), stack);
    const bool is_quantized = quantized(name);
    check_against_reference(reference, device, is_quantized ? 0.3 : 0.02, is_quantized ? 0.8 : 1.0);
    // The CPU and the device on the same case agree within the same tolerance.
    const std::vector<float> cpu = evaluate(model, reference.prompt, 2, 512, stack, lamina::DType::f32);
    CHECK(max_difference(cpu, device) <= (is_quantized ? 0.3 : 0.02) * std::max(1.0, standard_deviation(reference.logits)));
  }
  check_no_validation_errors(fixture);
}

TEST_CASE("vulkan: decoding token by token gives the logits of the whole prompt at once") {
  LAMINA_REQUIRE_SHARED("reference/qwen2-f32.json");
  VulkanFixture& fixture = vulkan_fixture();
  const ReferenceCase reference = load_case("qwen2-f32");  // Q/K/V biases, NeoX RoPE, GQA
  const std::shared_ptr<const lamina::Model> model = load_model(reference.model_path);
  const std::vector<float> prompt = device_logits(model, reference.prompt, device_params(fixture.backend));
  const std::vector<float> stepped = device_logits(model, reference.prompt, device_params(fixture.backend), {}, 1);
  const std::vector<float> chunked = device_logits(model, reference.prompt, device_params(fixture.backend), {}, 3);
  CHECK(max_difference(prompt, stepped) <= 1e-4);
  CHECK(max_difference(prompt, chunked) <= 1e-4);
  check_against_reference(reference, stepped, 0.02, 1.0);
  check_no_validation_errors(fixture);
}

TEST_CASE("vulkan: one forward pass serves sequences that each have a different adapter stack") {
  LAMINA_REQUIRE_SHARED("reference/llama-f32-lora-a.json");
  VulkanFixture& fixture = vulkan_fixture();
  std::vector<ReferenceCase> cases;
  for (const char* name : {"llama-f32-lora-a", "llama-f32-lora-ab", "llama-f32-dora-d", "llama-f32-rslora-e", "llama-f32"}) {
    cases.push_back(load_case(name));
  }
  const std::shared_ptr<const lamina::Model> model = load_model(cases[0].model_path);
  const std::size_t vocab = model->hparams().vocab_size;
  lamina::SessionParams params = device_params(fixture.backend);
  params.sequence_count = static_cast<std::uint32_t>(cases.size());
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE(session.ok());
  std::size_t longest = 0;
  for (std::size_t s = 0; s < cases.size(); ++s) {
    REQUIRE(session->set_adapters(peft_stack(*model, cases[s]), static_cast<lamina::SequenceId>(s)).ok());
    longest = std::max(longest, cases[s].prompt.size());
  }
  // The sequences' tokens interleaved, so each stack's group is scattered through the batch.
  lamina::Batch batch;
  std::vector<std::vector<std::size_t>> output_index(cases.size());
  std::size_t outputs = 0;
  for (std::size_t position = 0; position < longest; ++position) {
    for (std::size_t s = 0; s < cases.size(); ++s) {
      if (position >= cases[s].prompt.size()) continue;
      batch.add(cases[s].prompt[position], static_cast<lamina::Position>(position), static_cast<lamina::SequenceId>(s), true);
      output_index[s].push_back(outputs++);
    }
  }
  lamina::Result<void> decoded = session->decode(batch);
  REQUIRE_MESSAGE(decoded.ok(), (decoded.ok() ? "" : decoded.error().message));
  for (std::size_t s = 0; s < cases.size(); ++s) {
    CAPTURE(s);
    std::vector<float> logits;
    for (std::size_t output : output_index[s]) logits.insert(logits.end(), session->output_logits(output), session->output_logits(output) + vocab);
    check_against_reference(cases[s], logits, 0.02, 1.0);
  }

  // Rescaling one sequence's adapter between two tokens changes that sequence only.
  lamina::Batch next;
  for (std::size_t s = 0; s < cases.size(); ++s) {
    next.add(cases[s].prompt[0], static_cast<lamina::Position>(cases[s].prompt.size()), static_cast<lamina::SequenceId>(s), true);
  }
  REQUIRE(session->decode(next).ok());
  std::vector<float> before(session->output_logits(1), session->output_logits(1) + vocab);
  std::vector<float> untouched(session->output_logits(0), session->output_logits(0) + vocab);
  for (std::size_t s = 0; s < cases.size(); ++s) session->rewind(static_cast<lamina::SequenceId>(s), static_cast<lamina::Position>(cases[s].prompt.size()));
  const std::size_t pipelines = fixture.backend->pipelines().pipeline_count();
  const std::uint64_t device_memory = fixture.backend->context().allocated_bytes();
  REQUIRE(session->set_adapter_scale(session->adapters(1)[0].adapter.get(), 0.0f, 1).ok());
  REQUIRE(session->decode(next).ok());
  CHECK(fixture.backend->pipelines().pipeline_count() == pipelines);         // no pipeline built
  CHECK(fixture.backend->context().allocated_bytes() == device_memory);     // nothing uploaded
  CHECK(max_difference(untouched, std::vector<float>(session->output_logits(0), session->output_logits(0) + vocab)) <= 1e-5);
  CHECK(max_difference(before, std::vector<float>(session->output_logits(1), session->output_logits(1) + vocab)) > 1e-3);
  check_no_validation_errors(fixture);
}

TEST_CASE("vulkan: partial offload runs the first layers on the device and the rest on the CPU") {
  LAMINA_REQUIRE_SHARED("reference/llama-f32-lora-ab.json");
  for (int layers : {0, 2}) {
    CAPTURE(layers);
    lamina::vulkan::VulkanParams vulkan_params;
    vulkan_params.validation = true;
    vulkan_params.offload_layers = layers;
    lamina::Result<std::shared_ptr<lamina::vulkan::Backend>> backend = lamina::vulkan::Backend::create(vulkan_params);
    REQUIRE(backend.ok());
    const ReferenceCase reference = load_case("llama-f32-lora-ab");
    const std::shared_ptr<const lamina::Model> model = load_model(reference.model_path);
    lamina::Result<lamina::Session> session = lamina::Session::create(model, device_params(*backend));
    REQUIRE(session.ok());
    CHECK(session->backend_description().find(std::to_string(layers) + "/4 layers") != std::string::npos);
    const std::vector<float> logits = device_logits(model, reference.prompt, device_params(*backend), peft_stack(*model, reference), 2);
    check_against_reference(reference, logits, 0.02, 1.0);
    CHECK((*backend)->context().validation_error_count() == 0);
  }
}

TEST_CASE("vulkan: decode_async returns before the device is done; decode_wait gives the logits") {
  LAMINA_REQUIRE_SHARED("reference/stories260K.json");
  VulkanFixture& fixture = vulkan_fixture();
  const ReferenceCase reference = load_case("stories260K");
  const std::shared_ptr<const lamina::Model> model = load_model(reference.model_path);
  lamina::Result<lamina::Session> session = lamina::Session::create(model, device_params(fixture.backend));
  REQUIRE(session.ok());
  lamina::Batch batch;
  for (std::size_t t = 0; t < reference.prompt.size(); ++t) batch.add(reference.prompt[t], static_cast<lamina::Position>(t), 0, true);
  REQUIRE(session->decode_async(batch).ok());
  CHECK_FALSE(session->decode_async(batch).ok());  // one pass at a time
  lamina::Result<bool> ready = session->decode_ready();
  REQUIRE(ready.ok());
  REQUIRE(session->decode_wait().ok());
  CHECK_FALSE(session->decode_wait().ok());  // nothing in flight any more
  const std::size_t vocab = model->hparams().vocab_size;
  std::vector<float> logits;
  for (std::size_t t = 0; t < reference.prompt.size(); ++t) logits.insert(logits.end(), session->output_logits(t), session->output_logits(t) + vocab);
  check_against_reference(reference, logits, 0.02, 1.0);
  CHECK(session->device_bytes() > 0);
  check_no_validation_errors(fixture);
}

TEST_CASE("vulkan: sessions of one model share its weights on the device") {
  LAMINA_REQUIRE_SHARED("models/stories260K.gguf");
  VulkanFixture& fixture = vulkan_fixture();
  const std::shared_ptr<const lamina::Model> model = load_model(shared_path("models/stories260K.gguf"));
  lamina::Result<std::shared_ptr<lamina::vulkan::DeviceWeights>> first = fixture.backend->weights_for(model, model->hparams().block_count);
  lamina::Result<std::shared_ptr<lamina::vulkan::DeviceWeights>> second = fixture.backend->weights_for(model, model->hparams().block_count);
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  CHECK(first->get() == second->get());
  CHECK((*first)->bytes() > 0);
}

TEST_CASE("vulkan: device memory is counted, and given back when the last session of a model goes") {
  LAMINA_REQUIRE_SHARED("models/synth-llama-q4_k_m.gguf");
  VulkanFixture& fixture = vulkan_fixture();
  const lamina::vulkan::Context& context = fixture.backend->context();
  const std::uint64_t before = context.allocated_bytes();
  {
    const std::shared_ptr<const lamina::Model> model = load_model(shared_path("models/synth-llama-q4_k_m.gguf"));
    lamina::Result<lamina::Session> first = lamina::Session::create(model, device_params(fixture.backend));
    REQUIRE(first.ok());
    const std::uint64_t with_one = context.allocated_bytes();
    lamina::Result<lamina::Session> second = lamina::Session::create(model, device_params(fixture.backend));
    REQUIRE(second.ok());
    const std::uint64_t with_two = context.allocated_bytes();
    MESSAGE("device memory: " << before << " bytes before, " << with_one << " with one session, " << with_two << " with two; session "
                              << first->device_bytes() << " bytes");
    CHECK(with_one > before + first->device_bytes());         // the weights and the session
    CHECK(with_two - with_one >= second->device_bytes());      // a second session adds its own part only
    CHECK(with_two - with_one < (with_one - before));          // not a second copy of the weights
  }
  CHECK(context.allocated_bytes() == before);
}

TEST_CASE("vulkan: no loader, a missing device and unsupported requests are clean errors") {
  lamina::vulkan::VulkanParams params;
  params.loader_path = "/nonexistent/libvulkan.so.1";
  lamina::Result<std::shared_ptr<lamina::vulkan::Backend>> no_loader = lamina::vulkan::Backend::create(params);
  REQUIRE_FALSE(no_loader.ok());
  CHECK(no_loader.error().message.find("no Vulkan loader") != std::string::npos);

  lamina::vulkan::VulkanParams missing;
  missing.device_index = 999;
  lamina::Result<std::shared_ptr<lamina::vulkan::Backend>> no_device = lamina::vulkan::Backend::create(missing);
  REQUIRE_FALSE(no_device.ok());
  CHECK(no_device.error().message.find("device 999 does not exist") != std::string::npos);

  lamina::vulkan::VulkanParams named;
  named.device_name = "no such device";
  REQUIRE_FALSE(lamina::vulkan::Backend::create(named).ok());

  LAMINA_REQUIRE_SHARED("models/stories260K.gguf");
  VulkanFixture& fixture = vulkan_fixture();
  const std::shared_ptr<const lamina::Model> model = load_model(shared_path("models/stories260K.gguf"));
  lamina::Result<lamina::Session> session = lamina::Session::create(model, device_params(fixture.backend));
  REQUIRE(session.ok());
  CHECK_FALSE(session->merge_adapters({}).ok());  // not on this backend yet: an error, not a silent CPU merge
  lamina::Batch bad;
  bad.add(1 << 20, 0, 0, true);  // a token outside the vocabulary
  CHECK_FALSE(session->decode(bad).ok());
  CHECK(session->kv_cache().used_cell_count() == 0);
}

TEST_CASE("vulkan: sessions on several threads share one backend") {
  LAMINA_REQUIRE_SHARED("reference/stories260K.json");
  VulkanFixture& fixture = vulkan_fixture();
  const ReferenceCase reference = load_case("stories260K");
  const std::shared_ptr<const lamina::Model> model = load_model(reference.model_path);
  // Sessions are made on this thread (REQUIRE is not thread-safe); the threads only feed.
  std::vector<lamina::Session> sessions;
  for (int i = 0; i < 3; ++i) {
    lamina::Result<lamina::Session> session = lamina::Session::create(model, device_params(fixture.backend));
    REQUIRE(session.ok());
    sessions.push_back(std::move(*session));
  }
  const std::size_t vocab = model->hparams().vocab_size;
  std::vector<std::vector<float>> logits(sessions.size(), std::vector<float>(reference.prompt.size() * vocab));
  std::vector<int> fed(sessions.size(), 0);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    threads.emplace_back([&, i] {
      bool ok = true;
      for (std::size_t t = 0; t < reference.prompt.size() && ok; ++t) {  // one token at a time: many submissions
        ok = sessions[i].feed(&reference.prompt[t], 1, 0, logits[i].data() + t * vocab).ok();
      }
      fed[i] = ok ? 1 : 0;
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    CAPTURE(i);
    REQUIRE(fed[i] == 1);
    check_against_reference(reference, logits[i], 0.02, 1.0);
  }
  check_no_validation_errors(fixture);
}
