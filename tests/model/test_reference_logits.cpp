// The forward pass against llama.cpp's logits in ../shared/reference, judged with the
// tolerances of ../shared/README.md (the same rule as tools/compare_logits.py).
#include <doctest/doctest.h>
#include <lamina/lamina.hpp>
#include <nlohmann/json.hpp>

#include "../alloc_counter.hpp"
#include "../reference_cases.hpp"
#include "../test_support.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

using namespace lamina_test;

TEST_CASE("forward pass matches llama.cpp on the F32/F16 reference cases") {
  for (const char* name : {"llama-f32", "llama-f16", "qwen2-f32", "stories260K"}) {
    CAPTURE(name);
    LAMINA_REQUIRE_SHARED(std::string("reference/") + name + ".json");
    const ReferenceCase reference = load_case(name);
    const std::shared_ptr<const lamina::Model> model = load_model(reference.model_path);
    REQUIRE(model->hparams().vocab_size == static_cast<std::uint32_t>(reference.vocab));
    check_against_reference(reference, evaluate(model, reference.prompt), 0.02, 1.0);
    // The first greedy tokens (later ones may diverge between correct implementations on random models).
    const std::size_t checked = 4;
    const std::vector<lamina::Token> continuation = greedy(model, reference.prompt, checked);
    CHECK(std::vector<lamina::Token>(reference.greedy_next.begin(), reference.greedy_next.begin() + checked) == continuation);
  }
}

TEST_CASE("logits do not depend on thread count or batch splitting") {
  LAMINA_REQUIRE_SHARED("reference/llama-f16.json");
  const ReferenceCase reference = load_case("llama-f16");
  const std::shared_ptr<const lamina::Model> model = load_model(reference.model_path);
  const std::vector<float> one_thread = evaluate(model, reference.prompt, 1);
  CHECK(evaluate(model, reference.prompt, 2) == one_thread);
  CHECK(evaluate(model, reference.prompt, 3) == one_thread);
  // Prompt processed in batches of 5 tokens: still within the reference tolerance.
  check_against_reference(reference, evaluate(model, reference.prompt, 2, 5), 0.02, 1.0);
}

TEST_CASE("several sequences in one batch give each sequence's own logits") {
  LAMINA_REQUIRE_SHARED("reference/llama-f32.json");
  const ReferenceCase reference = load_case("llama-f32");
  const std::shared_ptr<const lamina::Model> model = load_model(reference.model_path);
  const std::size_t vocab = model->hparams().vocab_size;
  const std::vector<float> alone = evaluate(model, reference.prompt);

  // Sequence 0: the reference prompt; sequence 1: its first 7 tokens; sequence 2: a different prompt.
  // Tokens are interleaved in one batch.
  const std::vector<lamina::Token> other = {1, 5, 9, 200, 300};
  lamina::SessionParams params;
  params.sequence_count = 3;
  params.logits_for_every_token = true;
  params.context_length = 64;
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE(session.ok());
  lamina::Batch batch;
  for (std::size_t i = 0; i < reference.prompt.size(); ++i) {
    batch.add(reference.prompt[i], static_cast<lamina::Position>(i), 0, true);
    if (i < 7) batch.add(reference.prompt[i], static_cast<lamina::Position>(i), 1, true);
    if (i < other.size()) batch.add(other[i], static_cast<lamina::Position>(i), 2, true);
  }
  REQUIRE(session->decode(batch).ok());
  const std::vector<float> other_alone = evaluate(model, other);
  std::size_t index[3] = {0, 0, 0};
  for (std::size_t output = 0; output < batch.size(); ++output) {
    const lamina::SequenceId sequence = batch.sequences[output];
    const std::size_t position = index[sequence]++;
    const float* expected = (sequence == 2 ? other_alone.data() : alone.data()) + position * vocab;
    const float* got = session->output_logits(output);
    float max_difference = 0;
    for (std::size_t i = 0; i < vocab; ++i) max_difference = std::max(max_difference, std::fabs(expected[i] - got[i]));
    CAPTURE(sequence);
    CAPTURE(position);
    CHECK(max_difference < 1e-4f);
  }
}

TEST_CASE("rewinding a sequence and feeding again reproduces its logits") {
  LAMINA_REQUIRE_SHARED("models/synth-llama-f32.gguf");
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  const std::vector<lamina::Token> prompt = {1, 422, 317, 288, 372, 400, 266, 290};
  lamina::SessionParams params;
  params.context_length = 32;
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE(session.ok());
  REQUIRE(session->feed(prompt).ok());
  const std::vector<float> first(session->last_logits(), session->last_logits() + model->hparams().vocab_size);
  session->rewind(0, 4);
  CHECK(session->position() == 4);
  CHECK(session->last_logits() == nullptr);
  REQUIRE(session->feed(std::vector<lamina::Token>(prompt.begin() + 4, prompt.end())).ok());
  const std::vector<float> second(session->last_logits(), session->last_logits() + model->hparams().vocab_size);
  CHECK(first == second);
  // A full context is a clean error, not an overflow.
  session->rewind(0, 0);
  std::vector<lamina::Token> too_long(33, 5);
  lamina::Result<void> overflow = session->feed(too_long);
  REQUIRE(!overflow.ok());
  CHECK(overflow.error().code == lamina::ErrorCode::invalid_state);
}

TEST_CASE("sessions on several threads share one model") {
  LAMINA_REQUIRE_SHARED("reference/qwen2-f32.json");
  const ReferenceCase reference = load_case("qwen2-f32");
  const std::shared_ptr<const lamina::Model> model = load_model(reference.model_path);
  const std::vector<float> expected = evaluate(model, reference.prompt, 1);
  std::vector<std::vector<float>> results(4);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] {
      lamina::SessionParams params;
      params.thread_count = 1;
      params.logits_for_every_token = true;
      params.context_length = 64;
      lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
      if (!session) return;
      std::vector<float> logits(reference.prompt.size() * model->hparams().vocab_size);
      if (session->feed(reference.prompt.data(), reference.prompt.size(), 0, logits.data())) results[i] = std::move(logits);
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::vector<float>& result : results) CHECK(result == expected);
}

TEST_CASE("invalid batches and options are errors") {
  LAMINA_REQUIRE_SHARED("models/stories260K.gguf");
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/stories260K.gguf"));
  lamina::Result<lamina::Session> session = lamina::Session::create(model);
  REQUIRE(session.ok());
  lamina::Result<void> bad_token = session->feed(std::vector<lamina::Token>{1, 512});
  REQUIRE(!bad_token.ok());
  CHECK(bad_token.error().message.find("512") != std::string::npos);
  CHECK(!session->feed(std::vector<lamina::Token>{1}, 3).ok());  // no such sequence
  CHECK(!session->sample().ok());  // nothing fed yet
  lamina::SessionParams zero_batch;
  zero_batch.batch_size = 0;
  CHECK(!lamina::Session::create(model, zero_batch).ok());
  CHECK(!lamina::Session::create(nullptr).ok());
}

TEST_CASE("a decode step allocates nothing once the session exists") {
  LAMINA_REQUIRE_SHARED("models/synth-llama-q8_0.gguf");
  for (const char* path : {"models/synth-llama-f16.gguf", "models/synth-llama-q8_0.gguf"}) {
    CAPTURE(path);
    const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path(path));
    lamina::SessionParams params;
    params.context_length = 64;
    params.thread_count = 2;
    lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
    REQUIRE(session.ok());
    REQUIRE(session->feed(std::vector<lamina::Token>{1, 422, 317}).ok());
    REQUIRE(session->generate_next().ok());  // warm-up: the pool's threads have started
    lamina_test::AllocationScope scope;
    for (int step = 0; step < 8; ++step) REQUIRE(session->generate_next().ok());
    CHECK(scope.count() == 0);
  }
}

TEST_CASE("generate() allocates the same whether it makes 4 tokens or 40") {
  // Its setup allocates (the result's buffers, the stop strings); the loop over tokens must
  // not: pieces are string_views into the tokenizer and the result is reserved up front.
  LAMINA_REQUIRE_SHARED("models/stories260K.gguf");
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/stories260K.gguf"));
  lamina::SessionParams params;
  params.context_length = 128;
  params.thread_count = 2;
  params.sampling.temperature = 0.8f;
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE(session.ok());
  const std::vector<lamina::Token> prompt = {1, 403, 407, 261};  // "Once upon a time"
  std::size_t streamed = 0;
  auto count_allocations = [&](std::size_t tokens) {
    session->clear();
    lamina::GenerateOptions options;
    options.max_tokens = tokens;
    options.stop_at_end_of_generation = false;
    options.stop_strings = {"never in a story of 260K parameters"};
    lamina_test::AllocationScope scope;
    lamina::Result<lamina::GenerationResult> result =
        lamina::generate(*session, prompt, options, [&](std::string_view text) { streamed += text.size(); return true; });
    const std::size_t count = scope.count();
    REQUIRE(result.ok());
    CHECK(result->tokens.size() == tokens);
    return count;
  };
  count_allocations(4);  // warm-up: the pool's threads have started
  const std::size_t few = count_allocations(4), many = count_allocations(40);
  CHECK(few == many);
  CHECK(streamed > 0);
  if (!lamina_test::allocation_counting()) MESSAGE("allocations are not counted in this build (a sanitizer replaces operator new)");
}
