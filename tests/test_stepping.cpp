// Forward passes in pieces (Session::begin_decode / continue_decode), the budgeted Generator and
// cancellation: each must give exactly what the one-call paths give, and leave the session
// consistent when stopped.
#include <doctest/doctest.h>
#include <lamina/adapters/peft.hpp>
#include <lamina/lamina.hpp>

#include "test_support.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// models/demo of this checkout (this file is tests/test_stepping.cpp).
std::string demo_path(const std::string& relative) {
  std::string path = __FILE__;
  for (int up = 0; up < 2; ++up) path = path.substr(0, path.find_last_of("/\\"));
  return path + "/models/demo/" + relative;
}

std::shared_ptr<const lamina::Model> load_model(const std::string& path) {
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(path);
  REQUIRE_MESSAGE(model.ok(), (model.ok() ? "" : model.error().message));
  return *model;
}

lamina::Session make_session(const std::shared_ptr<const lamina::Model>& model, std::uint32_t sequences = 1, std::uint32_t batch_size = 512) {
  lamina::SessionParams params;
  params.context_length = 256;
  params.sequence_count = sequences;
  params.batch_size = batch_size;
  params.thread_count = 2;
  params.sampling.temperature = 0;  // greedy: the tokens depend only on the logits
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE_MESSAGE(session.ok(), (session.ok() ? "" : session.error().message));
  return std::move(*session);
}

std::vector<lamina::Token> some_tokens(const lamina::Model& model, std::size_t count, std::uint32_t seed) {
  std::mt19937 random(seed);
  std::vector<lamina::Token> tokens(count);
  for (lamina::Token& token : tokens) token = static_cast<lamina::Token>(3 + random() % (model.hparams().vocab_size - 3));
  return tokens;
}

bool same_floats(const float* a, const float* b, std::size_t count) { return std::memcmp(a, b, count * sizeof(float)) == 0; }

double max_difference(const float* a, const float* b, std::size_t count) {
  double largest = 0;
  for (std::size_t i = 0; i < count; ++i) largest = std::max(largest, static_cast<double>(std::fabs(a[i] - b[i])));
  return largest;
}

std::shared_ptr<const lamina::LoraAdapter> demo_adapter(const lamina::Model& model, const char* name) {
  lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> adapter = lamina::peft::load_adapter(model, demo_path(std::string("adapters/") + name));
  REQUIRE_MESSAGE(adapter.ok(), (adapter.ok() ? "" : adapter.error().message));
  return *adapter;
}

}  // namespace

TEST_CASE("a forward pass run one piece at a time gives decode()'s logits bit for bit") {
  for (const char* file : {"models/synth-llama-q4_0.gguf", "models/synth-qwen2-f32.gguf", "models/synth-llama-q4_k_m.gguf"}) {
    CAPTURE(file);
    const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path(file));
    const std::vector<lamina::Token> prompt = some_tokens(*model, 19, 7);
    lamina::Session whole = make_session(model);
    REQUIRE(whole.feed(prompt).ok());

    lamina::Session pieces = make_session(model);
    lamina::Batch batch;
    for (std::size_t i = 0; i < prompt.size(); ++i) batch.add(prompt[i], static_cast<lamina::Position>(i), 0, i + 1 == prompt.size());
    batch.invariant_from = 0;  // a prompt, as feed() reads it
    REQUIRE(pieces.begin_decode(batch).ok());
    CHECK(pieces.decode_in_progress());
    // A deadline already past: every call runs exactly one piece.
    std::size_t calls = 0;
    while (true) {
      lamina::Result<bool> done = pieces.continue_decode(Clock::now());
      REQUIRE_MESSAGE(done.ok(), (done.ok() ? "" : done.error().message));
      ++calls;
      if (*done) break;
      REQUIRE(calls < 10000);
    }
    CHECK(!pieces.decode_in_progress());
    CHECK(calls > 2 * model->hparams().block_count);  // pieces within layers, then the output
    CHECK(pieces.position(0) == static_cast<lamina::Position>(prompt.size()));
    const std::size_t vocab = model->hparams().vocab_size;
    REQUIRE(pieces.last_logits(0) != nullptr);
    CHECK(same_floats(pieces.last_logits(0), whole.last_logits(0), vocab));
    // The session goes on from there as if decode() had run.
    const lamina::Token next = 5;
    REQUIRE(whole.feed(&next, 1).ok());
    REQUIRE(pieces.feed(&next, 1).ok());
    CHECK(same_floats(pieces.last_logits(0), whole.last_logits(0), vocab));
  }
}

TEST_CASE("a pass in progress refuses other passes; rewind abandons it and frees its cells") {
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  lamina::Session session = make_session(model);
  const std::vector<lamina::Token> prompt = some_tokens(*model, 6, 3);
  REQUIRE(session.feed(prompt).ok());
  lamina::Batch batch;
  batch.add(9, 6, 0, true);
  REQUIRE(session.begin_decode(batch).ok());
  REQUIRE(session.continue_decode(Clock::now()).ok());
  const lamina::Token token = 4;
  lamina::Result<void> fed = session.feed(&token, 1);
  REQUIRE(!fed.ok());
  CHECK(fed.error().code == lamina::ErrorCode::invalid_state);
  CHECK(session.decode(batch).error().code == lamina::ErrorCode::invalid_state);
  CHECK(session.begin_decode(batch).error().code == lamina::ErrorCode::invalid_state);
  CHECK(session.kv_cache().used_cell_count() == 7);
  session.rewind(0, 6);  // abandons the pass
  CHECK(!session.decode_in_progress());
  CHECK(session.kv_cache().used_cell_count() == 6);
  CHECK(session.continue_decode(Clock::now()).error().code == lamina::ErrorCode::invalid_state);
  // The cell is free again: the same token decodes as if nothing had happened.
  lamina::Session fresh = make_session(model);
  REQUIRE(fresh.feed(prompt).ok());
  REQUIRE(fresh.decode(batch).ok());
  REQUIRE(session.decode(batch).ok());
  CHECK(same_floats(session.output_logits(0), fresh.output_logits(0), model->hparams().vocab_size));
}

TEST_CASE("the Generator in tiny steps gives generate()'s tokens, text and logits for several sequences and stacks") {
  if (!lamina_test::file_exists(demo_path("fortunes-demo.gguf"))) {
    MESSAGE("models/demo not found next to the tests; skipped");
    return;
  }
  const std::shared_ptr<const lamina::Model> model = load_model(demo_path("fortunes-demo.gguf"));
  const std::shared_ptr<const lamina::LoraAdapter> computers = demo_adapter(*model, "computers");
  const std::shared_ptr<const lamina::LoraAdapter> startrek = demo_adapter(*model, "startrek");
  const std::shared_ptr<const lamina::LoraAdapter> love = demo_adapter(*model, "love");
  const std::vector<lamina::AdapterStack> stacks = {{{computers, 1.0f}}, {{startrek, 1.0f}, {love, -0.5f}}, {}, {{love, 1.0f}}};
  const std::vector<std::string> prompts = {"The computer", "Captain, the ship is", "A", "Love is a word that means many things to many people, and"};

  lamina::Session together = make_session(model, 4);
  lamina::Generator generator(together);
  std::vector<std::string> streamed(4);
  for (std::size_t s = 0; s < 4; ++s) {
    REQUIRE(together.set_adapters(stacks[s], static_cast<lamina::SequenceId>(s)).ok());
    lamina::GenerateOptions options;
    options.max_tokens = 12 + 3 * s;
    options.sequence = static_cast<lamina::SequenceId>(s);
    options.stop_at_end_of_generation = false;
    REQUIRE(generator.start(prompts[s], options, [&streamed, s](std::string_view text) {
      streamed[s] += std::string(text);
      return true;
    }).ok());
  }
  CHECK(!generator.idle());
  CHECK(generator.progress(1).prompt_tokens_total > 0);
  std::size_t steps = 0;
  while (!generator.idle()) {
    lamina::Result<lamina::StepReport> report = generator.step(std::chrono::microseconds(300));
    REQUIRE_MESSAGE(report.ok(), (report.ok() ? "" : report.error().message));
    REQUIRE(++steps < 100000);
  }
  for (std::size_t s = 0; s < 4; ++s) {
    CAPTURE(s);
    const lamina::SequenceId sequence = static_cast<lamina::SequenceId>(s);
    lamina::Session alone = make_session(model);
    REQUIRE(alone.set_adapters(stacks[s]).ok());
    lamina::GenerateOptions options;
    options.max_tokens = 12 + 3 * s;
    options.stop_at_end_of_generation = false;
    lamina::Result<lamina::GenerationResult> expected = lamina::generate(alone, prompts[s], options);
    REQUIRE(expected.ok());
    const lamina::GenerationProgress& progress = generator.progress(sequence);
    CHECK(progress.finished);
    CHECK(progress.stop_reason == lamina::StopReason::max_tokens);
    CHECK(progress.prompt_tokens_done == progress.prompt_tokens_total);
    CHECK(progress.tokens_generated == options.max_tokens);
    CHECK(generator.result(sequence).tokens == expected->tokens);
    CHECK(generator.result(sequence).text == expected->text);
    CHECK(streamed[s] == expected->text);
    CHECK(together.position(sequence) == alone.position(0));
    // Passes of other sizes round differently (the kernels for one token and for many add in
    // other orders): close, not equal. F32 weights: about 1e-4.
    CHECK(max_difference(together.last_logits(sequence), alone.last_logits(0), model->hparams().vocab_size) < 2e-3);
  }
  lamina::Result<lamina::StepReport> nothing = generator.step(std::chrono::microseconds(1000));
  REQUIRE(nothing.ok());
  CHECK(nothing->idle);
}

// A prompt read in pieces of any size (Session::feed's batch_size, several feeds, a Generator
// whose passes grow from one token and mix prompts with other sequences' decoding) gives the
// logits of one feed, bit for bit: prompt tokens are computed batch-invariantly (Batch::invariant_from).
// On every weight type, with and without an adapter stack (its fused path is for decoding).
TEST_CASE("chunked prompts give the logits of one call, bit for bit, on every weight type and with adapters") {
  for (const char* file : {"models/synth-llama-f32.gguf", "models/synth-llama-f16.gguf", "models/synth-llama-q8_0.gguf",
                           "models/synth-llama-q4_0.gguf", "models/synth-llama-q4_k_m.gguf", "models/synth-llama-q6_k.gguf"}) {
    CAPTURE(file);
    const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path(file));
    lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> adapter =
        lamina::peft::load_adapter(*model, lamina_test::shared_path("adapters/lora-a.gguf"));
    REQUIRE(adapter.ok());
    const std::size_t vocab = model->hparams().vocab_size;
    const std::vector<lamina::Token> prompt = some_tokens(*model, 41, 11);
    for (bool with_adapter : {false, true}) {
      CAPTURE(with_adapter);
      const lamina::AdapterStack stack = with_adapter ? lamina::AdapterStack{{*adapter, 0.8f}} : lamina::AdapterStack{};
      lamina::Session whole = make_session(model);
      REQUIRE(whole.set_adapters(stack).ok());
      REQUIRE(whole.feed(prompt).ok());
      for (std::uint32_t batch_size : {1u, 2u, 3u, 5u, 8u, 16u, 40u}) {
        CAPTURE(batch_size);
        lamina::Session chunked = make_session(model, 1, batch_size);
        REQUIRE(chunked.set_adapters(stack).ok());
        REQUIRE(chunked.feed(prompt).ok());
        CHECK(same_floats(chunked.last_logits(0), whole.last_logits(0), vocab));
      }
      // Several feeds, the last of two tokens.
      lamina::Session pieces = make_session(model);
      REQUIRE(pieces.set_adapters(stack).ok());
      REQUIRE(pieces.feed(prompt.data(), 4).ok());
      REQUIRE(pieces.feed(prompt.data() + 4, 35).ok());
      REQUIRE(pieces.feed(prompt.data() + 39, 2).ok());
      CHECK(same_floats(pieces.last_logits(0), whole.last_logits(0), vocab));

      // A Generator with tiny budgets: sequence 0 generates while 1 and 2 read the prompt (and
      // a shorter one), so prompt pieces share passes with decoding tokens and with each other.
      lamina::Session stepped = make_session(model, 3);
      for (lamina::SequenceId sequence : {0, 1, 2}) REQUIRE(stepped.set_adapters(stack, sequence).ok());
      lamina::Generator generator(stepped);
      lamina::GenerateOptions talking;
      talking.max_tokens = 30;
      talking.stop_at_end_of_generation = false;
      REQUIRE(generator.start(std::vector<lamina::Token>(prompt.begin(), prompt.begin() + 3), talking).ok());
      lamina::GenerateOptions reading;
      reading.max_tokens = 0;
      reading.sequence = 1;
      REQUIRE(generator.start(prompt, reading).ok());
      reading.sequence = 2;
      REQUIRE(generator.start(std::vector<lamina::Token>(prompt.begin(), prompt.begin() + 29), reading).ok());
      std::size_t steps = 0;
      while (!generator.idle()) {
        REQUIRE(generator.step(std::chrono::microseconds(150)).ok());
        REQUIRE(++steps < 100000);
      }
      CHECK(stepped.position(1) == static_cast<lamina::Position>(prompt.size()));
      CHECK(same_floats(stepped.last_logits(1), whole.last_logits(0), vocab));
      lamina::Session shorter = make_session(model);
      REQUIRE(shorter.set_adapters(stack).ok());
      REQUIRE(shorter.feed(prompt.data(), 29).ok());
      CHECK(same_floats(stepped.last_logits(2), shorter.last_logits(0), vocab));
    }
  }
}

TEST_CASE("Generator: bad requests are clean errors; stop() ends one request") {
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/stories260K.gguf"));
  lamina::Session session = make_session(model, 2);
  lamina::Generator generator(session);
  lamina::GenerateOptions options;
  options.sequence = 2;
  CHECK(generator.start(std::vector<lamina::Token>{1, 2}, options).error().code == lamina::ErrorCode::invalid_argument);
  options.sequence = 0;
  CHECK(generator.start(std::vector<lamina::Token>{1, -4}, options).error().code == lamina::ErrorCode::invalid_argument);
  CHECK(generator.start(std::vector<lamina::Token>{}, options).error().code == lamina::ErrorCode::invalid_state);  // no logits yet
  options.max_tokens = 1000;
  options.stop_at_end_of_generation = false;  // only stop() ends them
  REQUIRE(generator.start("Once upon a time", options).ok());
  CHECK(generator.start("again", options).error().code == lamina::ErrorCode::invalid_state);
  options.sequence = 1;
  REQUIRE(generator.start("Lily", options).ok());
  for (int i = 0; i < 20; ++i) REQUIRE(generator.step(std::chrono::microseconds(500)).ok());
  generator.stop(0);
  while (!generator.progress(0).finished) REQUIRE(generator.step(std::chrono::microseconds(500)).ok());
  CHECK(generator.progress(0).stop_reason == lamina::StopReason::cancelled);
  CHECK(!generator.progress(1).finished);
  CHECK(!generator.idle());
  generator.stop(1);
  while (!generator.idle()) REQUIRE(generator.step(std::chrono::microseconds(500)).ok());
  // Each sequence holds the prompt tokens read before the stop (on a slow machine the prompt
  // may not be done) and exactly the tokens generated (each was fed; a stop lets its pass finish).
  for (lamina::SequenceId sequence : {0, 1}) {
    const lamina::GenerationProgress& progress = generator.progress(sequence);
    const lamina::Position expected = static_cast<lamina::Position>(progress.prompt_tokens_done + generator.result(sequence).tokens.size());
    CHECK(session.position(sequence) == expected);
    if (progress.prompt_tokens_done < progress.prompt_tokens_total) CHECK(generator.result(sequence).tokens.empty());
  }
}

// Cancels from another thread after a random delay, many times: whatever was running stops,
// and the sequence holds whole passes only; feeding the rest then gives the uninterrupted logits.
TEST_CASE("cancel() from another thread at random times leaves the session consistent") {
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/synth-llama-q4_0.gguf"));
  const std::vector<lamina::Token> prompt = some_tokens(*model, 48, 5);
  constexpr std::uint32_t chunk = 8;
  lamina::Session reference = make_session(model, 1, chunk);
  REQUIRE(reference.feed(prompt).ok());
  const std::size_t vocab = model->hparams().vocab_size;

  std::mt19937 random(1234);
  std::size_t cancelled = 0;
  for (int round = 0; round < 24; ++round) {
    CAPTURE(round);
    lamina::Session session = make_session(model, 1, chunk);
    const int delay_us = static_cast<int>(random() % 3000);
    const bool stepped = round % 2 == 1;
    std::atomic<bool> started{false};
    std::thread canceller([&] {
      while (!started.load()) std::this_thread::yield();
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
      session.cancel();
    });
    lamina::Result<void> outcome = lamina::success();
    if (!stepped) {
      started = true;
      outcome = session.feed(prompt);
    } else {  // the same prompt through the Generator, in small steps
      lamina::Generator generator(session);
      lamina::GenerateOptions options;
      options.max_tokens = 0;
      REQUIRE(generator.start(prompt, options).ok());
      started = true;
      while (!generator.idle()) REQUIRE(generator.step(std::chrono::microseconds(100)).ok());
      if (generator.progress(0).stop_reason == lamina::StopReason::cancelled) outcome = lamina::fail(lamina::ErrorCode::cancelled, "");
    }
    canceller.join();
    const lamina::Position held = session.position(0);
    CHECK(session.kv_cache().used_cell_count() == static_cast<std::uint32_t>(held));
    if (outcome.ok()) {
      CHECK(held == static_cast<lamina::Position>(prompt.size()));
    } else {
      CHECK(outcome.error().code == lamina::ErrorCode::cancelled);
      ++cancelled;
    }
    if (!stepped) CHECK(held % chunk == 0);  // whole passes only
    // The rest of the prompt, in passes that end where the reference's do.
    for (std::size_t begin = static_cast<std::size_t>(held); begin < prompt.size();) {
      const std::size_t end = std::min<std::size_t>(prompt.size(), (begin / chunk + 1) * chunk);
      REQUIRE(session.feed(prompt.data() + begin, end - begin).ok());
      begin = end;
    }
    REQUIRE(session.last_logits(0) != nullptr);
    if (!stepped) CHECK(same_floats(session.last_logits(0), reference.last_logits(0), vocab));
    // A cancel() that came after the call had finished does not spoil the next call.
    const lamina::Token token = 7;
    CHECK(session.feed(&token, 1).ok());
  }
  MESSAGE(cancelled << " of 24 rounds were cancelled before they finished");
}
