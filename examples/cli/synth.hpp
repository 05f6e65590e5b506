// examples/cli/synth.hpp — random-weight models with the shapes of real ones, for benchmarks and tests.
//
//   const lamina::SynthPreset* preset = lamina::find_synth_preset("llama-1b");
//   lamina::SynthOptions options;
//   options.file_type = lamina::FileType::q4_0;
//   options.vocab_path = "ggml-vocab-llama-spm.gguf";   // optional: copy a real vocabulary
//   lamina::Result<lamina::SynthReport> report = lamina::synthesize_model(*preset, "llama-1b-q4_0.gguf", options);
//
// What is written:
//   - the metadata llama.cpp's converter writes for the architecture (llama or qwen2);
//   - weights drawn from a seeded generator of lamina's own (the same seed gives the same file on
//     every machine and thread count): approximately N(0, weight_std²) — each value is a scaled
//     sum of four uniform 16-bit integers (Irwin–Hall), cheap and close enough to a normal for a
//     model that only has to run; RMS-norm weights are 1; Q/K/V biases (Qwen2) are random too;
//   - tensor types chosen by llama-quantize's recipe for `file_type` (see tools/quantize.hpp),
//     so `synth --type q4_k_m` equals `synth --type f32` followed by `quantize ... q4_k_m`;
//   - the vocabulary: every tokenizer.* key of `vocab_path`, whose token count then sets the
//     rows of token_embd/output; without one, a SentencePiece-style vocabulary of the preset's
//     size: <unk> <s> </s>, the 256 byte tokens <0x00>..<0xFF> (so any text encodes), then
//     placeholder words "▁w259", "▁w260", … . llama.cpp and lamina both load it.
// The file is written tensor by tensor (gguf::StreamWriter): memory holds one tensor at a time.
#pragma once

#include <lamina/config.hpp>
#include <lamina/core/random.hpp>
#include <lamina/adapters/lora.hpp>
#include <lamina/core/dtype.hpp>
#include <lamina/core/executor.hpp>
#include <lamina/core/result.hpp>
#include <lamina/io/gguf.hpp>
#include <lamina/model/hparams.hpp>
#include <lamina/io/gguf_stream.hpp>
#include <lamina/quant/quantize_model.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

LAMINA_NAMESPACE_BEGIN

struct SynthPreset {
  const char* name;
  const char* architecture;     // "llama" or "qwen2"
  const char* description;
  std::uint32_t embedding_length;
  std::uint32_t block_count;
  std::uint32_t head_count;
  std::uint32_t head_count_kv;
  std::uint32_t feed_forward_length;
  std::uint32_t vocab_size;     // without a vocabulary file
  std::uint32_t context_length;
  float rope_frequency_base;
  float rms_norm_epsilon;
  bool attention_bias;          // Q/K/V biases (Qwen2)
  bool tied_embeddings;         // no output.weight: the token embedding is the output matrix
};

inline const std::vector<SynthPreset>& synth_presets() {
  static const std::vector<SynthPreset> presets = {
      {"llama-tiny", "llama", "test-sized Llama: dim 256, 2 layers, 8/4 heads", 256, 2, 8, 4, 512, 512, 256, 10000.0f, 1e-5f, false, false},
      {"llama-1b", "llama", "Llama 1B shapes: dim 2048, 16 layers, 32/8 heads, FFN 8192, vocab 32000", 2048, 16, 32, 8, 8192, 32000, 2048,
       10000.0f, 1e-5f, false, false},
      {"llama-7b", "llama", "Llama 2 7B shapes: dim 4096, 32 layers, 32/32 heads, FFN 11008, vocab 32000", 4096, 32, 32, 32, 11008, 32000,
       4096, 10000.0f, 1e-5f, false, false},
      {"qwen2-tiny", "qwen2", "test-sized Qwen2: dim 256, 2 layers, 4/2 heads, biases, tied", 256, 2, 4, 2, 512, 512, 512, 1000000.0f,
       1e-6f, true, true},
      {"qwen2-0.5b", "qwen2", "Qwen2 0.5B shapes: dim 896, 24 layers, 14/2 heads, FFN 4864, vocab 151936, tied", 896, 24, 14, 2, 4864,
       151936, 32768, 1000000.0f, 1e-6f, true, true},
      {"qwen2-1.5b", "qwen2", "Qwen2 1.5B shapes: dim 1536, 28 layers, 12/2 heads, FFN 8960, vocab 151936, tied", 1536, 28, 12, 2, 8960,
       151936, 32768, 1000000.0f, 1e-6f, true, true},
  };
  return presets;
}

// nullptr when no preset has that name.
inline const SynthPreset* find_synth_preset(std::string_view name) {
  for (const SynthPreset& preset : synth_presets()) if (name == preset.name) return &preset;
  return nullptr;
}

struct SynthOptions {
  FileType file_type = FileType::f16;
  bool pure = false;              // every weight matrix gets the base type (no Q6_K output etc.)
  std::string vocab_path;         // GGUF whose tokenizer.* keys to copy; empty: built-in byte vocabulary
  std::uint64_t seed = 0;
  float weight_std = 0.02f;
  std::uint32_t thread_count = 0; // 0: one per hardware thread (ignored with `executor`)
  Executor* executor = nullptr;
  std::function<void(const TensorProgress&)> on_tensor;  // after each tensor is written
};

struct SynthReport {
  std::uint32_t vocab_size = 0;
  std::size_t tensor_count = 0;
  std::uint64_t parameter_count = 0;
  std::uint64_t tensor_bytes = 0;  // without header and padding
  std::uint64_t file_bytes = 0;
  double seconds = 0;
};

namespace detail {

inline std::uint64_t fnv1a(const std::string& text) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) hash = (hash ^ c) * 0x100000001b3ull;
  return hash;
}

// Row `row` of a random tensor: a stream of its own, so rows can be made in any order on any thread.
inline void synth_random_row(std::uint64_t tensor_seed, std::size_t row, float standard_deviation, float* values, std::size_t count) {
  std::uint64_t state = tensor_seed ^ (0xD1B54A32D192ED03ull * (static_cast<std::uint64_t>(row) + 1));
  splitmix64_next(state);
  // Sum of four uniform integers in [0, 65535]: mean 131070, standard deviation 37837.23.
  const float scale = standard_deviation / 37837.23f;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t bits = splitmix64_next(state);
    const std::int64_t sum = static_cast<std::int64_t>((bits & 0xffff) + ((bits >> 16) & 0xffff) + ((bits >> 32) & 0xffff) + (bits >> 48));
    values[i] = static_cast<float>(sum - 131070) * scale;
  }
}

// A SentencePiece-style vocabulary of `size` tokens that any text can be encoded with.
inline void write_builtin_vocabulary(gguf::StreamWriter& writer, std::uint32_t size) {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<std::int32_t> types;
  tokens.reserve(size);
  const auto add = [&](std::string text, float score, std::int32_t type) {
    tokens.push_back(std::move(text));
    scores.push_back(score);
    types.push_back(type);
  };
  add("<unk>", 0.0f, 2);  // llama_token_type: 1 normal, 2 unknown, 3 control, 6 byte
  add("<s>", 0.0f, 3);
  add("</s>", 0.0f, 3);
  for (int byte = 0; byte < 256; ++byte) {
    char text[8];
    std::snprintf(text, sizeof text, "<0x%02X>", byte);
    add(text, 0.0f, 6);
  }
  for (std::uint32_t id = static_cast<std::uint32_t>(tokens.size()); id < size; ++id) {
    add("\xE2\x96\x81w" + std::to_string(id), -static_cast<float>(id), 1);  // "▁w<id>"
  }
  writer.set("tokenizer.ggml.model", gguf::Value::from_string("llama"));
  writer.set("tokenizer.ggml.pre", gguf::Value::from_string("default"));
  writer.set("tokenizer.ggml.tokens", gguf::Value::from_strings(tokens));
  writer.set("tokenizer.ggml.scores", gguf::Value::from_f32s(scores));
  writer.set("tokenizer.ggml.token_type", gguf::Value::from_i32s(types));
  writer.set("tokenizer.ggml.bos_token_id", gguf::Value::from_u32(1));
  writer.set("tokenizer.ggml.eos_token_id", gguf::Value::from_u32(2));
  writer.set("tokenizer.ggml.unknown_token_id", gguf::Value::from_u32(0));
  writer.set("tokenizer.ggml.add_bos_token", gguf::Value::from_bool(true));
  writer.set("tokenizer.ggml.add_eos_token", gguf::Value::from_bool(false));
}

inline Result<void> check_preset(const SynthPreset& preset) {
  const std::string name = preset.name != nullptr ? preset.name : "(unnamed)";
  const auto bad = [&](const std::string& what) { return fail(ErrorCode::invalid_argument, "synth preset '" + name + "': " + what); };
  if (preset.architecture == nullptr || (std::string(preset.architecture) != "llama" && std::string(preset.architecture) != "qwen2")) {
    return bad("architecture must be llama or qwen2");
  }
  if (preset.embedding_length == 0 || preset.block_count == 0 || preset.head_count == 0 || preset.head_count_kv == 0 ||
      preset.feed_forward_length == 0 || preset.context_length == 0) {
    return bad("every size must be positive");
  }
  if (preset.embedding_length % preset.head_count != 0 || (preset.embedding_length / preset.head_count) % 2 != 0) {
    return bad("embedding_length must be an even multiple of head_count");
  }
  if (preset.head_count % preset.head_count_kv != 0) return bad("head_count must be a multiple of head_count_kv");
  if (preset.embedding_length % 32 != 0 || preset.feed_forward_length % 32 != 0) return bad("widths must be multiples of 32");
  return success();
}

}  // namespace detail

// Writes a random-weight model of `preset`'s shapes to `path` (see the top of this file).
inline Result<SynthReport> synthesize_model(const SynthPreset& preset, const std::string& path, const SynthOptions& options) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  LAMINA_TRY(detail::check_preset(preset));
  if (find_file_type(options.file_type) == nullptr) return fail(ErrorCode::invalid_argument, "synth: unknown file type");
  if (!(options.weight_std > 0.0f && options.weight_std < 100.0f)) return fail(ErrorCode::invalid_argument, "synth: weight_std must be in (0, 100)");

  const std::string architecture = preset.architecture;
  const std::string prefix = architecture + ".";
  const std::uint32_t head_size = preset.embedding_length / preset.head_count;
  gguf::StreamWriter writer;
  writer.set("general.architecture", gguf::Value::from_string(architecture));
  writer.set("general.type", gguf::Value::from_string("model"));
  writer.set("general.name", gguf::Value::from_string(std::string("lamina synth ") + preset.name + " (random weights, seed " +
                                                      std::to_string(options.seed) + ")"));
  writer.set(prefix + "block_count", gguf::Value::from_u32(preset.block_count));
  writer.set(prefix + "context_length", gguf::Value::from_u32(preset.context_length));
  writer.set(prefix + "embedding_length", gguf::Value::from_u32(preset.embedding_length));
  writer.set(prefix + "feed_forward_length", gguf::Value::from_u32(preset.feed_forward_length));
  writer.set(prefix + "attention.head_count", gguf::Value::from_u32(preset.head_count));
  writer.set(prefix + "attention.head_count_kv", gguf::Value::from_u32(preset.head_count_kv));
  writer.set(prefix + "rope.freq_base", gguf::Value::from_f32(preset.rope_frequency_base));
  writer.set(prefix + "attention.layer_norm_rms_epsilon", gguf::Value::from_f32(preset.rms_norm_epsilon));
  writer.set(prefix + "rope.dimension_count", gguf::Value::from_u32(head_size));
  writer.set("general.file_type", gguf::Value::from_u32(static_cast<std::uint32_t>(options.file_type)));
  writer.set("general.quantization_version", gguf::Value::from_u32(2));

  std::uint32_t vocab_size = preset.vocab_size;
  if (!options.vocab_path.empty()) {
    Result<gguf::File> vocabulary = gguf::File::open(options.vocab_path);
    if (!vocabulary) return vocabulary.take_error();
    const gguf::Value* tokens = vocabulary->find("tokenizer.ggml.tokens");
    if (tokens == nullptr || tokens->type != gguf::ValueType::array || tokens->element_type != gguf::ValueType::string ||
        tokens->elements.empty()) {
      return fail(ErrorCode::missing, options.vocab_path + ": no vocabulary (tokenizer.ggml.tokens, an array of strings) in this file");
    }
    if (tokens->elements.size() > (1u << 24)) return fail(ErrorCode::unsupported, options.vocab_path + ": more than 2^24 tokens");
    vocab_size = static_cast<std::uint32_t>(tokens->elements.size());
    for (const auto& entry : vocabulary->metadata()) {
      if (entry.first.compare(0, 10, "tokenizer.") == 0) writer.set(entry.first, entry.second);
    }
  } else {
    if (vocab_size < 259) return fail(ErrorCode::invalid_argument, "synth: the built-in vocabulary needs at least 259 tokens");
    detail::write_builtin_vocabulary(writer, vocab_size);
  }
  if (architecture == "llama") writer.set(prefix + "vocab_size", gguf::Value::from_u32(vocab_size));

  // The tensor table, in the order llama.cpp's converter writes it. Shapes outermost first.
  enum class Fill { random, ones };
  struct Planned {
    TensorDescription description;
    Fill fill;
  };
  std::vector<Planned> planned;
  const std::int64_t embedding = preset.embedding_length;
  const std::int64_t query_width = static_cast<std::int64_t>(preset.head_count) * head_size;
  const std::int64_t kv_width = static_cast<std::int64_t>(preset.head_count_kv) * head_size;
  const std::int64_t ffn = preset.feed_forward_length;
  const auto add = [&](const std::string& name, std::vector<std::int64_t> shape, Fill fill) {
    planned.push_back({TensorDescription{name, DType::f32, std::move(shape)}, fill});
  };
  add("token_embd.weight", {static_cast<std::int64_t>(vocab_size), embedding}, Fill::random);
  for (std::uint32_t layer = 0; layer < preset.block_count; ++layer) {
    const std::string block = "blk." + std::to_string(layer) + ".";
    add(block + "attn_norm.weight", {embedding}, Fill::ones);
    add(block + "attn_q.weight", {query_width, embedding}, Fill::random);
    if (preset.attention_bias) add(block + "attn_q.bias", {query_width}, Fill::random);
    add(block + "attn_k.weight", {kv_width, embedding}, Fill::random);
    if (preset.attention_bias) add(block + "attn_k.bias", {kv_width}, Fill::random);
    add(block + "attn_v.weight", {kv_width, embedding}, Fill::random);
    if (preset.attention_bias) add(block + "attn_v.bias", {kv_width}, Fill::random);
    add(block + "attn_output.weight", {embedding, query_width}, Fill::random);
    add(block + "ffn_norm.weight", {embedding}, Fill::ones);
    add(block + "ffn_gate.weight", {ffn, embedding}, Fill::random);
    add(block + "ffn_up.weight", {ffn, embedding}, Fill::random);
    add(block + "ffn_down.weight", {embedding, ffn}, Fill::random);
  }
  add("output_norm.weight", {embedding}, Fill::ones);
  if (!preset.tied_embeddings) add("output.weight", {static_cast<std::int64_t>(vocab_size), embedding}, Fill::random);

  QuantizationModelInfo model;
  model.architecture = architecture;
  model.block_count = preset.block_count;
  model.head_count = preset.head_count;
  model.head_count_kv = preset.head_count_kv;
  std::vector<TensorDescription> descriptions;
  for (const Planned& tensor : planned) descriptions.push_back(tensor.description);
  QuantizationRecipe recipe;
  recipe.file_type = options.file_type;
  recipe.pure = options.pure;
  Result<std::vector<TensorPlan>> plans = plan_tensor_types(model, descriptions, recipe);
  if (!plans) return plans.take_error();
  for (std::size_t i = 0; i < planned.size(); ++i) {
    LAMINA_TRY(writer.declare_tensor(planned[i].description.name, (*plans)[i].type, planned[i].description.shape));
  }

  SynthReport report;
  report.vocab_size = vocab_size;
  report.tensor_count = planned.size();
  report.file_bytes = writer.file_bytes();
  LAMINA_TRY(writer.open(path));
  std::unique_ptr<ThreadPool> own_pool;
  Executor* executor = options.executor;
  if (executor == nullptr) {
    own_pool.reset(new ThreadPool(options.thread_count));
    executor = own_pool.get();
  }
  std::vector<unsigned char> bytes;
  for (std::size_t i = 0; i < planned.size(); ++i) {
    const TensorDescription& tensor = planned[i].description;
    const TensorPlan& plan = (*plans)[i];
    const std::size_t row_length = static_cast<std::size_t>(tensor.shape.back());
    const std::size_t rows = tensor.shape.size() == 2 ? static_cast<std::size_t>(tensor.shape[0]) : 1;
    const std::uint64_t tensor_seed = options.seed ^ detail::fnv1a(tensor.name);
    const Fill fill = planned[i].fill;
    const float standard_deviation = options.weight_std;
    auto source_row = [&](std::size_t row, float* values) {
      if (fill == Fill::ones) {
        for (std::size_t k = 0; k < row_length; ++k) values[k] = 1.0f;
      } else {
        detail::synth_random_row(tensor_seed, row, standard_deviation, values, row_length);
      }
      return success();
    };
    bytes.resize(static_cast<std::size_t>(writer.tensor_bytes(i)));
    Result<void> encoded = encode_rows(*executor, plan.type, rows, row_length, source_row, bytes.data());
    if (!encoded) return encoded.take_error().with_context(path + ": tensor '" + tensor.name + "'");
    LAMINA_TRY(writer.write_tensor(bytes.data(), bytes.size()));
    report.parameter_count += static_cast<std::uint64_t>(rows) * row_length;
    report.tensor_bytes += bytes.size();
    if (options.on_tensor) {
      TensorProgress progress;
      progress.index = i;
      progress.count = planned.size();
      progress.name = tensor.name;
      progress.shape = tensor.shape;
      progress.from = DType::f32;
      progress.to = plan.type;
      progress.fell_back = plan.fell_back;
      progress.bytes_before = static_cast<std::uint64_t>(rows) * row_length * 4;
      progress.bytes_after = bytes.size();
      options.on_tensor(progress);
    }
  }
  LAMINA_TRY(writer.finish());
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

// --- random LoRA adapters ------------------------------------------------------------------

struct SynthLoraOptions {
  std::uint32_t rank = 16;
  float alpha = 16.0f;            // scaling alpha / rank
  std::uint64_t seed = 0;
  float factor_std = 0.02f;       // standard deviation of A and B
  std::uint32_t first_layer = 0;  // layers [first_layer, last_layer) get an adapter on all seven matrices
  std::uint32_t last_layer = ~0u;  // clamped to the model's layer count
};

// Writes a random LoRA adapter for a model of `hparams` in llama.cpp's GGUF adapter format
// (F32 lora_a [rank, in] and lora_b [out, rank] on the seven matrices of every chosen layer),
// for benchmarks and tests that need an adapter of realistic size. Returns the bytes of factors.
inline Result<std::uint64_t> synthesize_lora(const ModelHparams& hparams, const std::string& path, const SynthLoraOptions& options) {
  if (options.rank == 0 || options.rank > 4096) return fail(ErrorCode::invalid_argument, "synth lora: rank must be in [1, 4096]");
  if (!std::isfinite(options.alpha) || !std::isfinite(options.factor_std) || options.factor_std <= 0.0f) {
    return fail(ErrorCode::invalid_argument, "synth lora: alpha and the standard deviation must be finite (and the deviation positive)");
  }
  gguf::Writer writer;
  writer.set("general.architecture", gguf::Value::from_string(hparams.architecture_name));
  writer.set("general.type", gguf::Value::from_string("adapter"));
  writer.set("general.name", gguf::Value::from_string("lamina synth lora rank " + std::to_string(options.rank)));
  writer.set("adapter.type", gguf::Value::from_string("lora"));
  writer.set("adapter.lora.alpha", gguf::Value::from_f32(options.alpha));
  const std::uint32_t last = options.last_layer < hparams.block_count ? options.last_layer : hparams.block_count;
  std::vector<std::vector<float>> factors;  // kept alive until the file is written
  std::uint64_t bytes = 0;
  for (std::uint32_t layer = options.first_layer; layer < last; ++layer) {
    for (std::size_t p = 0; p < projection_count; ++p) {
      const Projection projection = projection_at(p);
      const std::size_t rows = projection_rows(hparams, projection), columns = projection_columns(hparams, projection);
      const std::string name = "blk." + std::to_string(layer) + "." + projection_gguf_name(projection) + ".weight";
      const struct { const char* suffix; std::size_t outer, inner; } parts[] = {{".lora_a", options.rank, columns}, {".lora_b", rows, options.rank}};
      for (const auto& part : parts) {
        factors.emplace_back(part.outer * part.inner);
        const std::uint64_t tensor_seed = detail::fnv1a(name + part.suffix) ^ (options.seed * 0x9E3779B97F4A7C15ull);
        for (std::size_t r = 0; r < part.outer; ++r) {
          detail::synth_random_row(tensor_seed, r, options.factor_std, factors.back().data() + r * part.inner, part.inner);
        }
        LAMINA_TRY(writer.add_tensor(name + part.suffix, DType::f32,
                                     {static_cast<std::int64_t>(part.outer), static_cast<std::int64_t>(part.inner)},
                                     factors.back().data(), factors.back().size() * sizeof(float)));
        bytes += factors.back().size() * sizeof(float);
      }
    }
  }
  LAMINA_TRY(writer.write_file(path));
  return bytes;
}

LAMINA_NAMESPACE_END
