// Model files whose metadata or tensors would crash, abort or exhaust memory past the parser:
// each is a clean Error naming the key or tensor, and nothing is allocated from a count the
// file has not backed with tensors. The hostile files are made here from the reference models.
#include <doctest/doctest.h>
#include <lamina/lamina.hpp>

#include "../test_support.hpp"

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace {

using lamina::DType;

struct Edits {
  std::vector<std::pair<std::string, lamina::gguf::Value>> metadata;  // set (or replace) these keys
  std::vector<std::string> dropped_keys;
  // Re-encodes one tensor as another type (through float), or fills it with a value.
  std::string retyped_tensor;
  DType new_type = DType::f32;
  std::string filled_tensor;
  float fill_value = 0.0f;
};

std::vector<std::uint8_t> edited(const lamina::gguf::File& source, const Edits& edits) {
  lamina::gguf::Writer writer;
  for (const auto& entry : source.metadata()) {
    bool dropped = false;
    for (const std::string& key : edits.dropped_keys) dropped = dropped || key == entry.first;
    if (!dropped) writer.set(entry.first, entry.second);
  }
  for (const auto& entry : edits.metadata) writer.set(entry.first, entry.second);
  for (const lamina::gguf::TensorInfo& tensor : source.tensors()) {
    if (tensor.name != edits.retyped_tensor && tensor.name != edits.filled_tensor) {
      REQUIRE(writer.add_tensor(tensor.name, tensor.dtype, tensor.shape, tensor.data, tensor.size_bytes).ok());
      continue;
    }
    REQUIRE(tensor.dtype == DType::f32);
    std::vector<float> values(static_cast<std::size_t>(tensor.size_bytes / 4));
    std::memcpy(values.data(), tensor.data, tensor.size_bytes);
    DType type = DType::f32;
    if (tensor.name == edits.filled_tensor) {
      for (float& value : values) value = edits.fill_value;
    } else {
      type = edits.new_type;
    }
    const std::size_t row_length = static_cast<std::size_t>(tensor.shape.back());
    const std::size_t rows = values.size() / row_length;
    const std::size_t row_bytes = static_cast<std::size_t>(lamina::row_bytes(type, row_length));
    std::vector<std::uint8_t> bytes(rows * row_bytes);
    for (std::size_t row = 0; row < rows; ++row) {
      REQUIRE(lamina::quant::quantize_row(type, values.data() + row * row_length, bytes.data() + row * row_bytes, row_length).ok());
    }
    REQUIRE(writer.add_tensor(tensor.name, type, tensor.shape, bytes.data(), bytes.size()).ok());
  }
  return writer.to_bytes();
}

// The model reads `bytes` in place: they must outlive it.
lamina::Result<std::shared_ptr<const lamina::Model>> load(const std::vector<std::uint8_t>& bytes, bool tokenizer = false) {
  lamina::Result<lamina::gguf::File> file = lamina::gguf::File::parse(bytes.data(), bytes.size(), "hostile.gguf");
  REQUIRE(file.ok());
  lamina::ModelParams params;
  params.load_tokenizer = tokenizer;
  return lamina::Model::from_file(std::move(*file), params);
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

lamina::gguf::File open_shared(const std::string& relative) {
  lamina::Result<lamina::gguf::File> file = lamina::gguf::File::open(lamina_test::shared_path(relative));
  REQUIRE(file.ok());
  return std::move(*file);
}

// The logits after the tokens 1 2 3 with the kernels of `arch`.
std::vector<float> logits_with(const std::shared_ptr<const lamina::Model>& model, lamina::CpuArch arch) {
  lamina::SessionParams params;
  params.context_length = 8;
  params.thread_count = 1;
  params.cpu_arch = arch;
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE(session.ok());
  const std::vector<lamina::Token> tokens = {1, 2, 3};
  REQUIRE(session->feed(tokens).ok());
  const float* logits = session->last_logits();
  return std::vector<float>(logits, logits + model->hparams().vocab_size);
}

}  // namespace

TEST_CASE("every weight type a model may hold is refused by the binder or multiplied by every kernel table") {
  // Q8_1 and Q8_K pass quant::can_dequantize, but no matmul kernel takes them as weights: they
  // used to reach a null function pointer in the prompt kernels.
  LAMINA_REQUIRE_SHARED("models/synth-llama-f32.gguf");
  const lamina::gguf::File source = open_shared("models/synth-llama-f32.gguf");
  const std::vector<std::uint8_t> bytes1 = edited(source, {});
  lamina::Result<std::shared_ptr<const lamina::Model>> base = load(bytes1);
  REQUIRE(base.ok());
  const std::vector<float> base_logits = logits_with(*base, lamina::CpuArch::scalar);
  int accepted = 0, refused = 0;
  for (std::uint32_t id = 0; id < 64; ++id) {
    if (!lamina::is_known_dtype(id)) continue;
    const DType type = static_cast<DType>(id);
    // blk.0.ffn_down.weight is [256, 768]: a whole number of blocks for every block size.
    if (!lamina::quant::can_quantize(type)) continue;  // the others fail at can_dequantize already
    CAPTURE(lamina::dtype_name(type));
    Edits edits;
    edits.retyped_tensor = "blk.0.ffn_down.weight";
    edits.new_type = type;
    const std::vector<std::uint8_t> bytes2 = edited(source, edits);
    lamina::Result<std::shared_ptr<const lamina::Model>> model = load(bytes2);
    if (!model) {
      ++refused;
      CHECK(model.error().code == lamina::ErrorCode::unsupported);
      CHECK(contains(model.error().message, "blk.0.ffn_down.weight"));
      CHECK(contains(model.error().message, lamina::dtype_name(type)));
      CHECK(!lamina::cpu::can_multiply(type));
      continue;
    }
    ++accepted;
    CHECK(lamina::cpu::can_multiply(type));
    // Every table this program and CPU have must compute with it, near the F32 model's logits
    // (the quantization error of one matrix of four layers).
    const lamina::CpuArch arches[] = {lamina::CpuArch::scalar, lamina::CpuArch::sse2, lamina::CpuArch::avx2, lamina::CpuArch::avx512};
    for (lamina::CpuArch arch : arches) {
      if (lamina::cpu::cpu_kernels_for(arch) == nullptr || !lamina::cpu_supports(arch)) continue;
      CAPTURE(lamina::cpu_arch_name(arch));
      const std::vector<float> logits = logits_with(*model, arch);
      double largest_difference = 0;
      for (std::size_t i = 0; i < logits.size(); ++i) {
        REQUIRE(std::isfinite(logits[i]));
        largest_difference = std::fmax(largest_difference, std::fabs(logits[i] - base_logits[i]));
      }
      CHECK(largest_difference < 0.5);
    }
  }
  CHECK(accepted >= 15);  // F32, F16, BF16, the legacy and K quants, IQ4_NL/XS
  CHECK(refused == 2);    // Q8_1, Q8_K
}

TEST_CASE("counts from the metadata are checked against the file before anything is allocated") {
  LAMINA_REQUIRE_SHARED("models/stories260K.gguf");
  const lamina::gguf::File source = open_shared("models/stories260K.gguf");

  SUBCASE("block_count larger than the layers in the file") {
    for (std::uint32_t count : {0xFFFFFFFFu, 6u}) {
      Edits edits;
      edits.metadata.push_back({"llama.block_count", lamina::gguf::Value::from_u32(count)});
      const std::vector<std::uint8_t> bytes3 = edited(source, edits);
      lamina::Result<std::shared_ptr<const lamina::Model>> model = load(bytes3);
      REQUIRE(!model.ok());
      CHECK(model.error().code == lamina::ErrorCode::invalid_format);
      CHECK(contains(model.error().message, "'llama.block_count' is " + std::to_string(count)));
      CHECK(contains(model.error().message, "5 layers"));
    }
  }
  SUBCASE("block_count smaller than the layers in the file") {
    Edits edits;
    edits.metadata.push_back({"llama.block_count", lamina::gguf::Value::from_u32(3)});
    const std::vector<std::uint8_t> bytes4 = edited(source, edits);
    lamina::Result<std::shared_ptr<const lamina::Model>> model = load(bytes4);
    REQUIRE(!model.ok());
    CHECK(contains(model.error().message, "'llama.block_count' is 3"));
  }
  SUBCASE("a head count that does not divide the width names the key") {
    for (std::uint32_t heads : {256u, 3u}) {
      Edits edits;
      edits.metadata.push_back({"llama.attention.head_count", lamina::gguf::Value::from_u32(heads)});
      edits.metadata.push_back({"llama.attention.head_count_kv", lamina::gguf::Value::from_u32(1)});
      const std::vector<std::uint8_t> bytes5 = edited(source, edits);
      lamina::Result<std::shared_ptr<const lamina::Model>> model = load(bytes5);
      REQUIRE(!model.ok());
      CAPTURE(model.error().message);
      CHECK(contains(model.error().message, "'llama.attention.head_count' is " + std::to_string(heads)));
      CHECK(contains(model.error().message, "llama.embedding_length' 64"));
    }
  }
  SUBCASE("a head count that divides the width but disagrees with the tensors names the hyperparameters") {
    Edits edits;
    edits.metadata.push_back({"llama.attention.head_count", lamina::gguf::Value::from_u32(4)});
    edits.metadata.push_back({"llama.attention.head_count_kv", lamina::gguf::Value::from_u32(4)});
    const std::vector<std::uint8_t> bytes6 = edited(source, edits);
    lamina::Result<std::shared_ptr<const lamina::Model>> model = load(bytes6);
    REQUIRE(!model.ok());
    CAPTURE(model.error().message);
    CHECK(contains(model.error().message, "blk.0.attn_k.weight"));
    CHECK(contains(model.error().message, "attention.head_count_kv × head size"));
  }
  SUBCASE("a head count that is no multiple of the KV head count names both keys") {
    Edits edits;
    edits.metadata.push_back({"llama.attention.head_count", lamina::gguf::Value::from_u32(4)});
    edits.metadata.push_back({"llama.attention.head_count_kv", lamina::gguf::Value::from_u32(3)});
    const std::vector<std::uint8_t> bytes8 = edited(source, edits);
    lamina::Result<std::shared_ptr<const lamina::Model>> model = load(bytes8);
    REQUIRE(!model.ok());
    CHECK(contains(model.error().message, "key 'llama.attention.head_count' is 4, which is not a multiple of 'llama.attention.head_count_kv' 3"));
  }
  SUBCASE("a rope dimension count past the head size names the key and where the head size comes from") {
    Edits edits;
    edits.metadata.push_back({"llama.attention.head_count", lamina::gguf::Value::from_u32(32)});  // head size 64 / 32 = 2
    edits.metadata.push_back({"llama.attention.head_count_kv", lamina::gguf::Value::from_u32(1)});
    edits.metadata.push_back({"llama.rope.dimension_count", lamina::gguf::Value::from_u32(8)});
    const std::vector<std::uint8_t> bytes9 = edited(source, edits);
    lamina::Result<std::shared_ptr<const lamina::Model>> model = load(bytes9);
    REQUIRE(!model.ok());
    CAPTURE(model.error().message);
    CHECK(contains(model.error().message, "key 'llama.rope.dimension_count' is 8"));
    CHECK(contains(model.error().message, "llama.embedding_length / llama.attention.head_count, which is 2"));
  }
  SUBCASE("an architecture lamina lacks is quoted, escaped") {
    Edits edits;
    edits.metadata.push_back({"general.architecture", lamina::gguf::Value::from_string("gemma\x1b[2J")});
    const std::vector<std::uint8_t> bytes10 = edited(source, edits);
    lamina::Result<std::shared_ptr<const lamina::Model>> model = load(bytes10);
    REQUIRE(!model.ok());
    CHECK(contains(model.error().message, "architecture 'gemma\\x1b[2J' (key 'general.architecture') is not supported"));
  }
  SUBCASE("an over-long key length names the key") {
    Edits edits;
    edits.metadata.push_back({"llama.attention.key_length", lamina::gguf::Value::from_u32(100000)});
    const std::vector<std::uint8_t> bytes7 = edited(source, edits);
    lamina::Result<std::shared_ptr<const lamina::Model>> model = load(bytes7);
    REQUIRE(!model.ok());
    CHECK(contains(model.error().message, "'llama.attention.key_length' is 100000"));
  }
}

TEST_CASE("a session's context length and memory are checked before the KV cache is allocated") {
  LAMINA_REQUIRE_SHARED("models/stories260K.gguf");
  const lamina::gguf::File source = open_shared("models/stories260K.gguf");

  SUBCASE("the model's context_length 0xFFFFFFFF with default SessionParams") {
    Edits edits;
    edits.metadata.push_back({"llama.context_length", lamina::gguf::Value::from_u32(0xFFFFFFFFu)});
    const std::vector<std::uint8_t> bytes8 = edited(source, edits);
    lamina::Result<std::shared_ptr<const lamina::Model>> model = load(bytes8);
    REQUIRE(model.ok());
    lamina::Result<lamina::Session> session = lamina::Session::create(*model);
    REQUIRE(!session.ok());
    CHECK(session.error().code == lamina::ErrorCode::invalid_argument);
    CHECK(contains(session.error().message, "'llama.context_length'"));
    CHECK(contains(session.error().message, "4294967295"));
  }
  SUBCASE("a context that fits the count but not the memory limit") {
    const std::vector<std::uint8_t> bytes9 = edited(source, {});
    lamina::Result<std::shared_ptr<const lamina::Model>> model = load(bytes9);
    REQUIRE(model.ok());
    lamina::SessionParams params;
    params.context_length = lamina::max_session_context_length;  // 16M cells × 5 layers × 2 × 32 × 2 bytes = 10 GiB
    lamina::Result<lamina::Session> session = lamina::Session::create(*model, params);
    REQUIRE(!session.ok());
    CHECK(session.error().code == lamina::ErrorCode::out_of_memory);
    CHECK(contains(session.error().message, "memory_limit_bytes"));
    params.context_length = 4096;
    params.memory_limit_bytes = 1 << 20;  // the caller's own, lower limit
    session = lamina::Session::create(*model, params);
    REQUIRE(!session.ok());
    CHECK(session.error().code == lamina::ErrorCode::out_of_memory);
    params.memory_limit_bytes = std::uint64_t{64} << 20;
    CHECK(lamina::Session::create(*model, params).ok());
  }
  SUBCASE("a context past the hard cap") {
    const std::vector<std::uint8_t> bytes10 = edited(source, {});
    lamina::Result<std::shared_ptr<const lamina::Model>> model = load(bytes10);
    REQUIRE(model.ok());
    lamina::SessionParams params;
    params.context_length = lamina::max_session_context_length + 1;
    lamina::Result<lamina::Session> session = lamina::Session::create(*model, params);
    REQUIRE(!session.ok());
    CHECK(contains(session.error().message, "SessionParams::context_length"));
  }
}

TEST_CASE("a LoRA adapter given as the model says what it is") {
  LAMINA_REQUIRE_SHARED("adapters/lora-a.gguf");
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(lamina_test::shared_path("adapters/lora-a.gguf"));
  REQUIRE(!model.ok());
  CHECK(contains(model.error().message, "lora-a.gguf"));
  CHECK(contains(model.error().message, "is a LoRA adapter"));
}

TEST_CASE("logits that are not finite are reported, not sampled from") {
  LAMINA_REQUIRE_SHARED("models/synth-llama-f32.gguf");
  const lamina::gguf::File source = open_shared("models/synth-llama-f32.gguf");
  lamina::SessionParams params;
  params.context_length = 16;

  SUBCASE("NaN weights") {
    Edits edits;
    edits.filled_tensor = "blk.2.ffn_up.weight";
    edits.fill_value = std::numeric_limits<float>::quiet_NaN();
    const std::vector<std::uint8_t> bytes11 = edited(source, edits);
    lamina::Result<std::shared_ptr<const lamina::Model>> model = load(bytes11);
    REQUIRE(model.ok());
    lamina::Result<lamina::Session> session = lamina::Session::create(*model, params);
    REQUIRE(session.ok());
    const std::vector<lamina::Token> tokens = {1, 2, 3};
    lamina::Result<void> fed = session->feed(tokens);
    REQUIRE(!fed.ok());
    CHECK(fed.error().code == lamina::ErrorCode::not_finite);
    CHECK(contains(fed.error().message, "not finite"));
    CHECK(session->last_logits() == nullptr);
    CHECK(!session->sample().ok());
  }
  SUBCASE("an adapter scale far too large") {
    LAMINA_REQUIRE_SHARED("adapters/lora-a.gguf");
    const std::vector<std::uint8_t> bytes12 = edited(source, {});
    lamina::Result<std::shared_ptr<const lamina::Model>> model = load(bytes12);
    REQUIRE(model.ok());
    lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> adapter =
        lamina::load_gguf_adapter(**model, lamina_test::shared_path("adapters/lora-a.gguf"));
    REQUIRE(adapter.ok());
    lamina::Result<lamina::Session> session = lamina::Session::create(*model, params);
    REQUIRE(session.ok());
    REQUIRE(session->set_adapters({{*adapter, 1e38f}}).ok());
    const std::vector<lamina::Token> tokens = {1, 2, 3};
    lamina::Result<void> fed = session->feed(tokens);
    REQUIRE(!fed.ok());
    CHECK(fed.error().code == lamina::ErrorCode::not_finite);
    // The same session with a sane scale computes again after a rewind.
    session->rewind(0, 0);
    REQUIRE(session->set_adapters({{*adapter, 1.0f}}).ok());
    CHECK(session->feed(tokens).ok());
  }
}
