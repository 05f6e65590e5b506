// Tests for examples/cli/synth.hpp (`lamina synth`) and lamina/io/gguf_stream.hpp: the
// models it writes load with the preset's shapes, run, follow llama.cpp's type recipes, and
// are the same bytes for the same seed whatever the thread count.
#include <lamina/lamina.hpp>
#include <lamina/io/gguf_stream.hpp>
#include <cli/synth.hpp>

#include <doctest/doctest.h>

#include "../test_support.hpp"

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

using lamina::DType;
using lamina::ErrorCode;

namespace {

bool contains_text(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

lamina::SynthOptions quiet_options(lamina::FileType type) {
  lamina::SynthOptions options;
  options.file_type = type;
  options.thread_count = 2;
  return options;
}

// The type a file gives `name`, or f64 as "absent".
DType tensor_type(const lamina::gguf::File& file, const std::string& name) {
  const lamina::gguf::TensorInfo* tensor = file.find_tensor(name);
  return tensor != nullptr ? tensor->dtype : DType::f64;
}

}  // namespace

TEST_CASE("synth: the presets include the architectures the issue names, with their shapes") {
  const lamina::SynthPreset* llama = lamina::find_synth_preset("llama-1b");
  REQUIRE(llama != nullptr);
  CHECK(std::string(llama->architecture) == "llama");
  CHECK(llama->embedding_length == 2048);
  CHECK(llama->block_count == 16);
  CHECK(llama->head_count == 32);
  CHECK(llama->head_count_kv == 8);
  CHECK(llama->feed_forward_length == 8192);
  CHECK(llama->vocab_size == 32000);
  CHECK(llama->context_length == 2048);
  CHECK(llama->rope_frequency_base == 10000.0f);
  CHECK_FALSE(llama->tied_embeddings);
  const lamina::SynthPreset* qwen = lamina::find_synth_preset("qwen2-0.5b");
  REQUIRE(qwen != nullptr);
  CHECK(std::string(qwen->architecture) == "qwen2");
  CHECK(qwen->embedding_length == 896);
  CHECK(qwen->block_count == 24);
  CHECK(qwen->head_count == 14);
  CHECK(qwen->head_count_kv == 2);
  CHECK(qwen->feed_forward_length == 4864);
  CHECK(qwen->vocab_size == 151936);
  CHECK(qwen->context_length == 32768);
  CHECK(qwen->rope_frequency_base == 1000000.0f);
  CHECK(qwen->attention_bias);
  CHECK(qwen->tied_embeddings);
  CHECK(lamina::find_synth_preset("llama-tiny") != nullptr);
  CHECK(lamina::find_synth_preset("no-such-preset") == nullptr);
}

TEST_CASE("synth: llama-tiny in F32 loads with the preset's shapes, tokenizes and runs") {
  const std::string path = lamina_test::temp_path("synth-llama-tiny-f32.gguf");
  const lamina::SynthPreset& preset = *lamina::find_synth_preset("llama-tiny");
  lamina::Result<lamina::SynthReport> report = lamina::synthesize_model(preset, path, quiet_options(lamina::FileType::f32));
  REQUIRE_MESSAGE(report.ok(), (report.ok() ? "" : report.error().message));
  CHECK(report->vocab_size == 512);
  CHECK(report->tensor_count == 1 + 9 * 2 + 2);

  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(path);
  REQUIRE_MESSAGE(model.ok(), (model.ok() ? "" : model.error().message));
  const lamina::ModelHparams& hparams = (*model)->hparams();
  CHECK(hparams.architecture == lamina::Architecture::llama);
  CHECK(hparams.embedding_length == preset.embedding_length);
  CHECK(hparams.block_count == preset.block_count);
  CHECK(hparams.head_count == preset.head_count);
  CHECK(hparams.head_count_kv == preset.head_count_kv);
  CHECK(hparams.feed_forward_length == preset.feed_forward_length);
  CHECK(hparams.vocab_size == 512);
  CHECK(hparams.context_length == preset.context_length);
  CHECK(hparams.rope_frequency_base == preset.rope_frequency_base);
  const lamina::gguf::File& file = (*model)->file();
  CHECK(file.find_tensor("output.weight") != nullptr);
  CHECK(*file.get_u32("general.file_type") == 0);

  // The norms are 1 and the weights look like N(0, 0.02²).
  const lamina::gguf::TensorInfo* norm = file.find_tensor("blk.0.attn_norm.weight");
  REQUIRE(norm != nullptr);
  const float* norm_values = reinterpret_cast<const float*>(norm->data);
  for (std::int64_t i = 0; i < norm->shape[0]; ++i) CHECK(norm_values[i] == 1.0f);
  const lamina::gguf::TensorInfo* gate = file.find_tensor("blk.1.ffn_gate.weight");
  REQUIRE(gate != nullptr);
  const std::size_t count = static_cast<std::size_t>(gate->shape[0] * gate->shape[1]);
  const float* values = reinterpret_cast<const float*>(gate->data);
  double sum = 0, squares = 0;
  for (std::size_t i = 0; i < count; ++i) {
    sum += values[i];
    squares += static_cast<double>(values[i]) * values[i];
  }
  const double mean = sum / static_cast<double>(count);
  CHECK(std::fabs(mean) < 0.001);
  CHECK(std::sqrt(squares / static_cast<double>(count) - mean * mean) == doctest::Approx(0.02).epsilon(0.02));

  // Any text encodes (byte fallback), and a forward pass gives finite logits.
  lamina::Result<std::vector<lamina::Token>> tokens = (*model)->tokenizer().encode("Hello, wörld!");
  REQUIRE(tokens.ok());
  CHECK(tokens->size() > 3);
  lamina::SessionParams params;
  params.thread_count = 2;
  lamina::Result<lamina::Session> session = lamina::Session::create(*model, params);
  REQUIRE(session.ok());
  REQUIRE(session->feed(*tokens).ok());
  const float* logits = session->last_logits();
  REQUIRE(logits != nullptr);
  for (std::uint32_t i = 0; i < hparams.vocab_size; ++i) REQUIRE(std::isfinite(logits[i]));
  std::remove(path.c_str());
}

TEST_CASE("synth: qwen2-tiny Q4_K_M has biases, tied embeddings and llama.cpp's Q4_K_M tensor types") {
  const std::string path = lamina_test::temp_path("synth-qwen2-tiny-q4_k_m.gguf");
  lamina::Result<lamina::SynthReport> report =
      lamina::synthesize_model(*lamina::find_synth_preset("qwen2-tiny"), path, quiet_options(lamina::FileType::q4_k_m));
  REQUIRE_MESSAGE(report.ok(), (report.ok() ? "" : report.error().message));
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(path);
  REQUIRE_MESSAGE(model.ok(), (model.ok() ? "" : model.error().message));
  CHECK((*model)->hparams().architecture == lamina::Architecture::qwen2);
  const lamina::gguf::File& file = (*model)->file();
  CHECK(file.find_tensor("output.weight") == nullptr);
  CHECK(*file.get_u32("general.file_type") == 15);
  CHECK(*file.get_u32("general.quantization_version") == 2);
  CHECK(tensor_type(file, "token_embd.weight") == DType::q6_k);  // tied: quantized as the output
  CHECK(tensor_type(file, "blk.0.attn_q.bias") == DType::f32);
  CHECK(tensor_type(file, "blk.0.attn_norm.weight") == DType::f32);
  CHECK(tensor_type(file, "blk.0.attn_q.weight") == DType::q4_k);
  // use_more_bits(layer, 2): layer 1 only.
  CHECK(tensor_type(file, "blk.0.attn_v.weight") == DType::q4_k);
  CHECK(tensor_type(file, "blk.1.attn_v.weight") == DType::q6_k);
  CHECK(tensor_type(file, "blk.0.ffn_down.weight") == DType::q4_k);
  CHECK(tensor_type(file, "blk.1.ffn_down.weight") == DType::q6_k);
  lamina::SessionParams params;
  params.thread_count = 2;
  lamina::Result<lamina::Session> session = lamina::Session::create(*model, params);
  REQUIRE(session.ok());
  const std::vector<lamina::Token> tokens = {1, 300, 301, 7};
  REQUIRE(session->feed(tokens).ok());
  for (std::uint32_t i = 0; i < (*model)->hparams().vocab_size; ++i) REQUIRE(std::isfinite(session->last_logits()[i]));
  std::remove(path.c_str());
}

TEST_CASE("synth: the same seed gives the same bytes whatever the thread count; another seed other bytes") {
  const lamina::SynthPreset& preset = *lamina::find_synth_preset("llama-tiny");
  const std::string one = lamina_test::temp_path("synth-seed-1.gguf");
  const std::string two = lamina_test::temp_path("synth-seed-2.gguf");
  const std::string other = lamina_test::temp_path("synth-seed-3.gguf");
  lamina::SynthOptions options = quiet_options(lamina::FileType::q4_0);
  options.seed = 42;
  options.thread_count = 1;
  REQUIRE(lamina::synthesize_model(preset, one, options).ok());
  options.thread_count = 3;
  REQUIRE(lamina::synthesize_model(preset, two, options).ok());
  options.seed = 43;
  REQUIRE(lamina::synthesize_model(preset, other, options).ok());
  const std::vector<unsigned char> bytes_one = lamina_test::read_binary_file(one);
  CHECK(!bytes_one.empty());
  CHECK(bytes_one == lamina_test::read_binary_file(two));
  CHECK(bytes_one != lamina_test::read_binary_file(other));
  std::remove(one.c_str());
  std::remove(two.c_str());
  std::remove(other.c_str());
}

TEST_CASE("synth: --vocab copies a real vocabulary and sizes the embedding by it") {
  LAMINA_REQUIRE_SHARED("vocab/ggml-vocab-llama-spm.gguf");
  const std::string path = lamina_test::temp_path("synth-llama-tiny-spm.gguf");
  lamina::SynthOptions options = quiet_options(lamina::FileType::q8_0);
  options.vocab_path = lamina_test::shared_path("vocab/ggml-vocab-llama-spm.gguf");
  lamina::Result<lamina::SynthReport> report = lamina::synthesize_model(*lamina::find_synth_preset("llama-tiny"), path, options);
  REQUIRE_MESSAGE(report.ok(), (report.ok() ? "" : report.error().message));
  CHECK(report->vocab_size == 32000);
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(path);
  REQUIRE_MESSAGE(model.ok(), (model.ok() ? "" : model.error().message));
  CHECK((*model)->hparams().vocab_size == 32000);
  CHECK((*model)->tokenizer().vocab_size() == 32000);
  CHECK(*(*model)->file().get_u32("llama.vocab_size") == 32000);
  lamina::Result<std::vector<lamina::Token>> tokens = (*model)->tokenizer().encode("Hello world");
  REQUIRE(tokens.ok());
  CHECK(tokens->size() >= 2);
  std::remove(path.c_str());
}

TEST_CASE("synth: bad input gives one clear error") {
  const lamina::SynthPreset& preset = *lamina::find_synth_preset("llama-tiny");
  const std::string path = lamina_test::temp_path("synth-bad.gguf");
  lamina::SynthOptions options = quiet_options(lamina::FileType::f16);
  options.vocab_path = lamina_test::temp_path("no-such-vocab.gguf");
  lamina::Result<lamina::SynthReport> missing = lamina::synthesize_model(preset, path, options);
  REQUIRE_FALSE(missing.ok());
  CHECK(contains_text(missing.error().message, "no-such-vocab.gguf"));

  // A GGUF without tokenizer.ggml.tokens is not a vocabulary.
  const std::string empty = lamina_test::temp_path("synth-not-a-vocab.gguf");
  lamina::gguf::Writer writer;
  writer.set("general.name", lamina::gguf::Value::from_string("nothing"));
  REQUIRE(writer.write_file(empty).ok());
  options.vocab_path = empty;
  lamina::Result<lamina::SynthReport> no_tokens = lamina::synthesize_model(preset, path, options);
  REQUIRE_FALSE(no_tokens.ok());
  CHECK(no_tokens.error().code == ErrorCode::missing);
  CHECK(contains_text(no_tokens.error().message, "tokenizer.ggml.tokens"));
  std::remove(empty.c_str());

  // An output path in a folder that does not exist.
  options.vocab_path.clear();
  lamina::Result<lamina::SynthReport> unwritable = lamina::synthesize_model(preset, "/nonexistent-folder/model.gguf", options);
  REQUIRE_FALSE(unwritable.ok());
  CHECK(unwritable.error().code == ErrorCode::io);
  CHECK(contains_text(unwritable.error().message, "/nonexistent-folder/model.gguf"));

  lamina::SynthPreset broken = preset;
  broken.head_count = 7;  // 256 is not a multiple of 7
  lamina::Result<lamina::SynthReport> bad_preset = lamina::synthesize_model(broken, path, options);
  REQUIRE_FALSE(bad_preset.ok());
  CHECK(contains_text(bad_preset.error().message, "head_count"));
  CHECK_FALSE(lamina_test::file_exists(path));
}

TEST_CASE("gguf::StreamWriter writes what gguf::Writer writes, and cleans up after itself") {
  const std::vector<float> first = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  const std::vector<std::uint16_t> second = {0x3c00, 0x4000, 0x4200};
  lamina::gguf::Writer reference;
  lamina::gguf::StreamWriter stream;
  reference.set("general.architecture", lamina::gguf::Value::from_string("llama"));
  reference.set("some.array", lamina::gguf::Value::from_i32s({1, 2, 3}));
  stream.set("general.architecture", lamina::gguf::Value::from_string("llama"));
  stream.set("some.array", lamina::gguf::Value::from_i32s({1, 2, 3}));
  REQUIRE(reference.add_tensor("a", DType::f32, {2, 3}, first.data(), first.size() * 4).ok());
  REQUIRE(reference.add_tensor("b", DType::f16, {3}, second.data(), second.size() * 2).ok());
  REQUIRE(stream.declare_tensor("a", DType::f32, {2, 3}).ok());
  REQUIRE(stream.declare_tensor("b", DType::f16, {3}).ok());
  CHECK(stream.tensor_bytes(0) == 24);
  CHECK(stream.declare_tensor("a", DType::f32, {1}).error().code == ErrorCode::invalid_argument);

  const std::string path = lamina_test::temp_path("stream-writer.gguf");
  REQUIRE(stream.open(path).ok());
  lamina::Result<void> wrong_size = stream.write_tensor(first.data(), 20);
  REQUIRE_FALSE(wrong_size.ok());
  CHECK(contains_text(wrong_size.error().message, "needs 24 bytes"));
  REQUIRE(stream.write_tensor(first.data(), 24).ok());
  REQUIRE(stream.write_tensor(second.data(), 6).ok());
  REQUIRE(stream.finish().ok());
  const std::vector<std::uint8_t> expected = reference.to_bytes();
  const std::vector<unsigned char> written = lamina_test::read_binary_file(path);
  CHECK(written == std::vector<unsigned char>(expected.begin(), expected.end()));
  CHECK(stream.file_bytes() == expected.size());
  CHECK_FALSE(lamina_test::file_exists(path + ".partial"));
  std::remove(path.c_str());

  // A writer given up before finish() leaves nothing behind.
  const std::string abandoned = lamina_test::temp_path("stream-writer-abandoned.gguf");
  std::string temporary;  // abandoned.partial-XXXXXXXX, beside it
  {
    lamina::gguf::StreamWriter partial;
    REQUIRE(partial.declare_tensor("a", DType::f32, {2, 3}).ok());
    REQUIRE(partial.open(abandoned).ok());
    temporary = partial.temporary_path();
    CHECK(temporary.rfind(abandoned + ".partial-", 0) == 0);
    CHECK(lamina_test::file_exists(temporary));
  }
  CHECK_FALSE(lamina_test::file_exists(temporary));
  CHECK_FALSE(lamina_test::file_exists(abandoned));
  lamina::gguf::StreamWriter unfinished;
  REQUIRE(unfinished.declare_tensor("a", DType::f32, {2, 3}).ok());
  REQUIRE(unfinished.open(abandoned).ok());
  temporary = unfinished.temporary_path();
  lamina::Result<void> early = unfinished.finish();
  REQUIRE_FALSE(early.ok());
  CHECK(contains_text(early.error().message, "never written"));
  CHECK_FALSE(lamina_test::file_exists(temporary));
}
