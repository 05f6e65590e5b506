// The forward pass against llama.cpp's logits in ../shared/reference, judged with the
// tolerances of ../shared/README.md (the same rule as tools/compare_logits.py).
#include <doctest/doctest.h>
#include <lamina/lamina.hpp>
#include <nlohmann/json.hpp>

#include "../alloc_counter.hpp"
#include "../test_support.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

struct ReferenceCase {
  std::string model_path;
  std::vector<lamina::Token> prompt;
  std::vector<lamina::Token> greedy_next;
  std::int32_t vocab = 0;
  std::vector<float> logits;  // [prompt.size(), vocab]
};

ReferenceCase load_case(const std::string& name) {
  ReferenceCase result;
  const std::string json_path = lamina_test::shared_path("reference/" + name + ".json");
  const nlohmann::json json = nlohmann::json::parse(lamina_test::read_text_file(json_path), nullptr, false);
  REQUIRE_MESSAGE(!json.is_discarded(), "cannot parse " << json_path);
  result.model_path = lamina_test::shared_path(json["model"].get<std::string>());
  result.prompt = json["prompt"].get<std::vector<lamina::Token>>();
  result.greedy_next = json["greedy_next"].get<std::vector<lamina::Token>>();
  const std::vector<unsigned char> bytes = lamina_test::read_binary_file(lamina_test::shared_path(json["logits"].get<std::string>()));
  REQUIRE(bytes.size() >= 4);
  std::memcpy(&result.vocab, bytes.data(), 4);
  result.logits.resize((bytes.size() - 4) / 4);
  std::memcpy(result.logits.data(), bytes.data() + 4, result.logits.size() * 4);
  REQUIRE(result.logits.size() == result.prompt.size() * static_cast<std::size_t>(result.vocab));
  return result;
}

std::vector<float> evaluate(const std::shared_ptr<const lamina::Model>& model, const std::vector<lamina::Token>& tokens,
                            std::uint32_t threads = 2, std::uint32_t batch_size = 512) {
  lamina::SessionParams params;
  params.thread_count = threads;
  params.logits_for_every_token = true;
  params.batch_size = batch_size;
  params.context_length = 256;
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE_MESSAGE(session.ok(), (session.ok() ? "" : session.error().message));
  std::vector<float> logits(tokens.size() * model->hparams().vocab_size);
  lamina::Result<void> fed = session->feed(tokens.data(), tokens.size(), 0, logits.data());
  REQUIRE_MESSAGE(fed.ok(), (fed.ok() ? "" : fed.error().message));
  return logits;
}

double standard_deviation(const std::vector<float>& values) {
  double sum = 0, sum_of_squares = 0;
  for (float v : values) { sum += v; sum_of_squares += static_cast<double>(v) * v; }
  const double mean = sum / static_cast<double>(values.size());
  return std::sqrt(std::max(0.0, sum_of_squares / static_cast<double>(values.size()) - mean * mean));
}

// max |diff| <= 0.02 × scale and, at every position, lamina's top token is within that
// tolerance of the reference maximum (near-ties in flat random logits are not errors).
void check_against_reference(const ReferenceCase& reference, const std::vector<float>& logits, double relative_tolerance,
                             double required_top1_agreement) {
  const double tolerance = relative_tolerance * std::max(1.0, standard_deviation(reference.logits));
  const std::size_t vocab = static_cast<std::size_t>(reference.vocab);
  double max_difference = 0;
  std::size_t agreeing = 0;
  for (std::size_t position = 0; position < reference.prompt.size(); ++position) {
    const float* expected = reference.logits.data() + position * vocab;
    const float* got = logits.data() + position * vocab;
    for (std::size_t i = 0; i < vocab; ++i) {
      REQUIRE(std::isfinite(got[i]));
      max_difference = std::max(max_difference, static_cast<double>(std::fabs(expected[i] - got[i])));
    }
    const std::size_t picked = static_cast<std::size_t>(std::max_element(got, got + vocab) - got);
    const float reference_max = *std::max_element(expected, expected + vocab);
    agreeing += expected[picked] >= reference_max - tolerance ? 1 : 0;
  }
  const double agreement = static_cast<double>(agreeing) / static_cast<double>(reference.prompt.size());
  INFO("max |diff| " << max_difference << " (tolerance " << tolerance << "), top-1 agreement " << agreement);
  CHECK(max_difference <= tolerance);
  CHECK(agreement >= required_top1_agreement);
}

// Greedy continuation from the prompt; the first tokens must match llama.cpp's.
std::vector<lamina::Token> greedy(const std::shared_ptr<const lamina::Model>& model, const std::vector<lamina::Token>& prompt,
                                  std::size_t count) {
  lamina::SessionParams params;
  params.thread_count = 2;
  params.context_length = 256;
  params.sampling.temperature = 0.0f;
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE(session.ok());
  REQUIRE(session->feed(prompt).ok());
  std::vector<lamina::Token> generated;
  for (std::size_t i = 0; i < count; ++i) {
    lamina::Result<lamina::Token> token = session->generate_next();
    REQUIRE(token.ok());
    generated.push_back(*token);
  }
  return generated;
}

std::shared_ptr<const lamina::Model> load_model(const std::string& path) {
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(path);
  REQUIRE_MESSAGE(model.ok(), (model.ok() ? "" : model.error().message));
  return *model;
}

}  // namespace

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
