// Saved sequence states (Session::save_sequence / restore_sequence) and shared prefixes
// (copy_prefix): a restored or copied sequence must go on exactly as the original, and a state
// that is not this model's, not whole or not honest must be refused, leaving the session as it was.
#include <doctest/doctest.h>
#include <lamina/adapters/peft.hpp>
#include <lamina/lamina.hpp>

#include "test_support.hpp"

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace {

std::string demo_path(const std::string& relative) {
  std::string path = __FILE__;  // tests/test_session_state.cpp
  for (int up = 0; up < 2; ++up) path = path.substr(0, path.find_last_of("/\\"));
  return path + "/models/demo/" + relative;
}

std::shared_ptr<const lamina::Model> load_model(const std::string& path) {
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(path);
  REQUIRE_MESSAGE(model.ok(), (model.ok() ? "" : model.error().message));
  return *model;
}

lamina::Session make_session(const std::shared_ptr<const lamina::Model>& model, std::uint32_t sequences = 2,
                             lamina::DType kv_type = lamina::DType::f16) {
  lamina::SessionParams params;
  params.context_length = 128;
  params.sequence_count = sequences;
  params.thread_count = 2;
  params.kv_cache_type = kv_type;
  params.sampling.temperature = 0.9f;  // random draws and penalties: the sampler state matters
  params.sampling.repeat_penalty = 1.3f;
  params.sampling.seed = 99;
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE_MESSAGE(session.ok(), (session.ok() ? "" : session.error().message));
  return std::move(*session);
}

// Generates `count` tokens on `sequence`, and returns them with the logits before each.
std::vector<float> continue_sequence(lamina::Session& session, lamina::SequenceId sequence, std::size_t count, std::vector<lamina::Token>& tokens) {
  const std::size_t vocab = session.model().hparams().vocab_size;
  std::vector<float> logits;
  for (std::size_t i = 0; i < count; ++i) {
    REQUIRE(session.last_logits(sequence) != nullptr);
    logits.insert(logits.end(), session.last_logits(sequence), session.last_logits(sequence) + vocab);
    lamina::Result<lamina::Token> token = session.generate_next(sequence);
    REQUIRE_MESSAGE(token.ok(), (token.ok() ? "" : token.error().message));
    tokens.push_back(*token);
  }
  return logits;
}

lamina::Error restore_error(lamina::Session& session, const std::vector<std::uint8_t>& bytes,
                            const std::vector<std::shared_ptr<const lamina::LoraAdapter>>& adapters = {}) {
  lamina::Result<void> restored = session.restore_sequence(bytes.data(), bytes.size(), 0, adapters);
  REQUIRE(!restored.ok());
  CHECK(!restored.error().message.empty());
  return restored.error();
}

// The state's checksum (its last 8 bytes) made right again after an edit.
void reseal(std::vector<std::uint8_t>& bytes) {
  const std::uint64_t checksum = lamina::Fingerprint().add_bytes(bytes.data(), bytes.size() - 8).value();
  std::memcpy(bytes.data() + bytes.size() - 8, &checksum, 8);
}

}  // namespace

TEST_CASE("a saved sequence restored into a fresh session goes on with bit-identical logits and tokens") {
  if (!lamina_test::file_exists(demo_path("fortunes-demo.gguf"))) {
    MESSAGE("models/demo not found next to the tests; skipped");
    return;
  }
  const std::shared_ptr<const lamina::Model> model = load_model(demo_path("fortunes-demo.gguf"));
  lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> computers = lamina::peft::load_adapter(*model, demo_path("adapters/computers"));
  lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> love = lamina::peft::load_adapter(*model, demo_path("adapters/love"));
  REQUIRE(computers.ok());
  REQUIRE(love.ok());
  lamina::Session original = make_session(model);
  REQUIRE(original.set_adapters({{*computers, 0.8f}, {*love, -0.25f}}, 1).ok());
  REQUIRE(original.feed_text("The program crashed because", 1).ok());
  std::vector<lamina::Token> before;
  continue_sequence(original, 1, 6, before);

  const lamina::Result<std::vector<std::uint8_t>> saved = original.save_sequence(1);
  REQUIRE(saved.ok());
  const std::string path = lamina_test::temp_path("state.lamstate");
  REQUIRE(original.save_sequence_to_file(path, 1).ok());

  for (bool from_file : {false, true}) {
    CAPTURE(from_file);
    lamina::Session restored = make_session(model, 3);
    const std::vector<std::shared_ptr<const lamina::LoraAdapter>> loaded = {*love, *computers};
    lamina::Result<void> done = from_file ? restored.restore_sequence_from_file(path, 2, loaded)
                                          : restored.restore_sequence(saved->data(), saved->size(), 2, loaded);
    REQUIRE_MESSAGE(done.ok(), (done.ok() ? "" : done.error().message));
    CHECK(restored.position(2) == original.position(1));
    REQUIRE(restored.adapters(2).size() == 2);
    CHECK(restored.adapters(2)[0].adapter == *computers);
    CHECK(restored.adapters(2)[1].scale == -0.25f);
    lamina::Session copy_of_original = make_session(model);
    REQUIRE(copy_of_original.restore_sequence(saved->data(), saved->size(), 1, loaded).ok());
    std::vector<lamina::Token> expected, got;
    const std::vector<float> expected_logits = continue_sequence(copy_of_original, 1, 10, expected);
    const std::vector<float> got_logits = continue_sequence(restored, 2, 10, got);
    CHECK(got == expected);
    CHECK(std::memcmp(got_logits.data(), expected_logits.data(), got_logits.size() * sizeof(float)) == 0);
  }
  // And the original itself goes on the same way.
  lamina::Session restored = make_session(model);
  REQUIRE(restored.restore_sequence(saved->data(), saved->size(), 0, {*computers, *love}).ok());
  std::vector<lamina::Token> expected, got;
  const std::vector<float> expected_logits = continue_sequence(original, 1, 8, expected);
  const std::vector<float> got_logits = continue_sequence(restored, 0, 8, got);
  CHECK(got == expected);
  CHECK(std::memcmp(got_logits.data(), expected_logits.data(), got_logits.size() * sizeof(float)) == 0);
  std::remove(path.c_str());
}

TEST_CASE("hostile session states get clean errors and change nothing") {
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/stories260K.gguf"));
  lamina::Session source = make_session(model);
  REQUIRE(source.feed_text("Once upon a time, there was a little").ok());
  const lamina::Result<std::vector<std::uint8_t>> saved = source.save_sequence(0);
  REQUIRE(saved.ok());
  const std::vector<std::uint8_t>& good = *saved;

  lamina::Session target = make_session(model);
  REQUIRE(target.feed_text("Lily").ok());
  const lamina::Position held = target.position(0);
  const std::vector<float> logits(target.last_logits(0), target.last_logits(0) + model->hparams().vocab_size);
  auto unchanged = [&] {
    CHECK(target.position(0) == held);
    CHECK(target.kv_cache().used_cell_count() == static_cast<std::uint32_t>(held));
    REQUIRE(target.last_logits(0) != nullptr);
    CHECK(std::memcmp(target.last_logits(0), logits.data(), logits.size() * sizeof(float)) == 0);
  };

  // Every truncation, and garbage.
  for (std::size_t length = 0; length < good.size(); length += (length < 64 ? 1 : 97)) {
    CAPTURE(length);
    const std::vector<std::uint8_t> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(length));
    CHECK(restore_error(target, cut).code == lamina::ErrorCode::invalid_format);
  }
  CHECK(restore_error(target, std::vector<std::uint8_t>(1000, 0x41)).code == lamina::ErrorCode::invalid_format);
  // A flipped byte anywhere is caught by the checksum.
  for (std::size_t at = 0; at < good.size(); at += good.size() / 13) {
    std::vector<std::uint8_t> flipped = good;
    flipped[at] ^= 0x10;
    CHECK(!target.restore_sequence(flipped.data(), flipped.size()).ok());
  }
  // A newer format.
  std::vector<std::uint8_t> newer = good;
  newer[8] = 2;
  reseal(newer);
  lamina::Error error = restore_error(target, newer);
  CHECK(error.code == lamina::ErrorCode::unsupported);
  CHECK(error.message.find("newer") != std::string::npos);
  // Honest checksums over dishonest counts: the cell count, a position, the recent-token count.
  struct Edit { std::size_t offset; std::uint32_t value; const char* what; };
  const std::size_t cells_at = 8 + 4 + 8 + 4 * 4;  // magic, version, model, KV type, layers, width, vocab
  for (const Edit& edit : {Edit{cells_at, 0x7fffffffu, "cells"}, Edit{cells_at, 3u, "fewer cells"}, Edit{cells_at + 4, 5000u, "adapters"},
                           Edit{cells_at + 4, 1u, "one adapter"}, Edit{cells_at + 8, 7u, "has_logits"}, Edit{cells_at + 12, 0xffffffffu, "position"},
                           Edit{cells_at + 16, 0u, "positions out of order"}}) {
    CAPTURE(edit.what);
    std::vector<std::uint8_t> edited = good;
    std::memcpy(edited.data() + edit.offset, &edit.value, 4);
    reseal(edited);
    const lamina::ErrorCode code = restore_error(target, edited).code;
    CHECK((code == lamina::ErrorCode::invalid_format || code == lamina::ErrorCode::invalid_state || code == lamina::ErrorCode::missing));
  }
  unchanged();

  // Another model; another KV cache type; a missing adapter.
  lamina::Session other_model = make_session(load_model(demo_path("fortunes-demo.gguf")));
  CHECK(other_model.restore_sequence(good.data(), good.size()).error().code == lamina::ErrorCode::type_mismatch);
  lamina::Session f32_cache = make_session(model, 1, lamina::DType::f32);
  CHECK(f32_cache.restore_sequence(good.data(), good.size()).error().code == lamina::ErrorCode::type_mismatch);

  // Files: a directory, a FIFO, a missing file.
  CHECK(!target.restore_sequence_from_file("/tmp").ok());
  const std::string fifo = lamina_test::temp_path("state.fifo");
  std::remove(fifo.c_str());
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  lamina::Result<void> from_fifo = target.restore_sequence_from_file(fifo);
  CHECK(!from_fifo.ok());
  std::remove(fifo.c_str());
  CHECK(target.restore_sequence_from_file(lamina_test::temp_path("no-such-state")).error().code == lamina::ErrorCode::io);
  CHECK(target.restore_sequence(good.data(), good.size(), 7).error().code == lamina::ErrorCode::invalid_argument);
  unchanged();
}

TEST_CASE("a saved stack names its adapters; restoring without them is an error naming the adapter") {
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> a = lamina::peft::load_adapter(*model, lamina_test::shared_path("adapters/lora-a.gguf"));
  lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> a_peft = lamina::peft::load_adapter(*model, lamina_test::shared_path("adapters/lora-a-peft"));
  lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> b = lamina::peft::load_adapter(*model, lamina_test::shared_path("adapters/lora-b.gguf"));
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(a_peft.ok());
  CHECK((*a)->fingerprint() != (*b)->fingerprint());
  lamina::Session session = make_session(model);
  REQUIRE(session.set_adapters({{*a, 1.0f}}).ok());
  const lamina::Token tokens[] = {1, 5, 9};
  REQUIRE(session.feed(tokens, 3).ok());
  const lamina::Result<std::vector<std::uint8_t>> saved = session.save_sequence(0);
  REQUIRE(saved.ok());
  lamina::Session fresh = make_session(model);
  lamina::Error error = restore_error(fresh, *saved, {*b});
  CHECK(error.code == lamina::ErrorCode::missing);
  CHECK(error.message.find((*a)->name()) != std::string::npos);
  CHECK(fresh.position(0) == 0);
  // The same adapter loaded from its other form is the same adapter when its factors are.
  if ((*a_peft)->fingerprint() == (*a)->fingerprint()) CHECK(fresh.restore_sequence(saved->data(), saved->size(), 0, {*a_peft}).ok());
  CHECK(fresh.restore_sequence(saved->data(), saved->size(), 0, {*b, *a}).ok());
  CHECK(fresh.position(0) == 3);
}

TEST_CASE("a prefix copied to other sequences gives the logits of computing it there") {
  const std::shared_ptr<const lamina::Model> model = load_model(lamina_test::shared_path("models/synth-llama-q8_0.gguf"));
  std::vector<lamina::Token> scene;
  for (int i = 0; i < 23; ++i) scene.push_back(static_cast<lamina::Token>(2 + (i * 37) % 200));
  const std::vector<lamina::Token> line = {11, 12, 13, 14};
  lamina::Session session = make_session(model, 4);
  REQUIRE(session.feed(scene, 0).ok());
  REQUIRE(session.copy_prefix(0, 1, static_cast<lamina::Position>(scene.size())).ok());
  REQUIRE(session.copy_prefix(0, 2, 20).ok());
  CHECK(session.position(1) == 23);
  CHECK(session.position(2) == 20);
  CHECK(session.kv_cache().used_cell_count() == 23 + 23 + 20);
  CHECK(std::memcmp(session.last_logits(1), session.last_logits(0), model->hparams().vocab_size * sizeof(float)) == 0);
  CHECK(session.last_logits(2) == nullptr);
  REQUIRE(session.feed(line, 1).ok());
  std::vector<lamina::Token> shorter(scene.begin() + 20, scene.end());
  shorter.insert(shorter.end(), line.begin(), line.end());
  REQUIRE(session.feed(shorter, 2).ok());
  // Computed from scratch, in passes of the same shapes.
  lamina::Session scratch = make_session(model, 1);
  REQUIRE(scratch.feed(scene).ok());
  REQUIRE(scratch.feed(line).ok());
  const std::size_t vocab = model->hparams().vocab_size;
  CHECK(std::memcmp(session.last_logits(1), scratch.last_logits(0), vocab * sizeof(float)) == 0);
  lamina::Session scratch_short = make_session(model, 1);
  REQUIRE(scratch_short.feed(std::vector<lamina::Token>(scene.begin(), scene.begin() + 20)).ok());
  REQUIRE(scratch_short.feed(shorter).ok());
  CHECK(std::memcmp(session.last_logits(2), scratch_short.last_logits(0), vocab * sizeof(float)) == 0);
  // Rewinding a copy leaves the original alone.
  session.rewind(1, 5);
  CHECK(session.position(0) == 23);
  CHECK(session.copy_prefix(0, 0, 3).error().code == lamina::ErrorCode::invalid_argument);
  CHECK(session.copy_prefix(0, 3, 24).error().code == lamina::ErrorCode::invalid_argument);
  CHECK(session.copy_prefix(0, 9, 3).error().code == lamina::ErrorCode::invalid_argument);
}
