// lamina/model/hparams.hpp — a model's hyperparameters, read from GGUF metadata.
//
// GGUF keys are prefixed by the architecture name: "llama.block_count", "qwen2.block_count" …
#pragma once

#include "../config.hpp"
#include "../core/result.hpp"
#include "../io/gguf.hpp"
#include "../kernels/reference.hpp"

#include <cstdint>
#include <string>

LAMINA_NAMESPACE_BEGIN

enum class Architecture {
  llama,  // Llama 1/2/3, Mistral, TinyLlama, SmolLM, … (GQA, interleaved RoPE, optional separate output)
  qwen2,  // Qwen2 / Qwen2.5 (Q/K/V biases, NEOX RoPE, usually tied embeddings)
};

enum class RopeScaling { none, linear, yarn };

struct ModelHparams {
  Architecture architecture = Architecture::llama;
  std::string architecture_name;            // general.architecture
  std::uint32_t context_length = 0;         // training context
  std::uint32_t embedding_length = 0;       // model width, "dim"
  std::uint32_t block_count = 0;            // transformer layers
  std::uint32_t feed_forward_length = 0;    // hidden width of the SwiGLU
  std::uint32_t head_count = 0;             // query heads
  std::uint32_t head_count_kv = 0;          // key/value heads (grouped-query attention when fewer)
  std::uint32_t head_size = 0;              // embedding_length / head_count unless given
  std::uint32_t vocab_size = 0;             // rows of token_embd.weight
  float rms_norm_epsilon = 1e-5f;
  std::uint32_t rope_dimension_count = 0;   // rotated dimensions per head
  float rope_frequency_base = 10000.0f;
  RopeScaling rope_scaling = RopeScaling::none;
  float rope_scaling_factor = 1.0f;
  std::uint32_t rope_original_context_length = 0;
  reference::RopeStyle rope_style = reference::RopeStyle::interleaved;

  std::uint32_t query_width() const { return head_count * head_size; }       // rows of attn_q
  std::uint32_t kv_width() const { return head_count_kv * head_size; }      // rows of attn_k / attn_v
};

inline Result<ModelHparams> read_hparams(const gguf::File& file) {
  ModelHparams hparams;
  // llama.cpp's adapters are GGUF files too; say so rather than "key not found".
  if (const gguf::Value* type = file.find("general.type")) {
    if (type->type == gguf::ValueType::string && type->string_value == "adapter") {
      return fail(ErrorCode::invalid_argument, file.name() + ": this is a LoRA adapter (general.type is 'adapter'), not a model; "
                                                             "load a model and apply the adapter to it (--lora, load_gguf_adapter)");
    }
  }
  Result<std::string> architecture = file.get_string("general.architecture");
  if (!architecture) return architecture.take_error();
  hparams.architecture_name = *architecture;
  if (*architecture == "llama") {
    hparams.architecture = Architecture::llama;
    hparams.rope_style = reference::RopeStyle::interleaved;
  } else if (*architecture == "qwen2") {
    hparams.architecture = Architecture::qwen2;
    hparams.rope_style = reference::RopeStyle::neox;
  } else {
    return fail(ErrorCode::unsupported, file.name() + ": architecture " + detail::quote_for_message(*architecture) +
                                            " (key 'general.architecture') is not supported (supported: llama, qwen2)");
  }
  const std::string prefix = *architecture + ".";

  struct RequiredKey { const char* name; std::uint32_t* target; };
  const RequiredKey required[] = {
      {"context_length", &hparams.context_length},
      {"embedding_length", &hparams.embedding_length},
      {"block_count", &hparams.block_count},
      {"feed_forward_length", &hparams.feed_forward_length},
      {"attention.head_count", &hparams.head_count},
  };
  for (const RequiredKey& key : required) {
    Result<std::uint32_t> value = file.get_u32(prefix + key.name);
    if (!value) return value.take_error();
    if (*value == 0) return fail(ErrorCode::invalid_format, file.name() + ": key '" + prefix + key.name + "' is 0");
    *key.target = *value;
  }
  Result<std::uint32_t> head_count_kv = file.get_u32_or(prefix + "attention.head_count_kv", hparams.head_count);
  if (!head_count_kv) return head_count_kv.take_error();
  hparams.head_count_kv = *head_count_kv;
  if (hparams.head_count_kv == 0 || hparams.head_count % hparams.head_count_kv != 0) {
    return fail(ErrorCode::invalid_format, file.name() + ": key '" + prefix + "attention.head_count' is " +
                                               std::to_string(hparams.head_count) + ", which is not a multiple of '" + prefix +
                                               "attention.head_count_kv' " + std::to_string(hparams.head_count_kv));
  }
  // The head size is attention.key_length, or embedding_length / head_count when that is absent.
  const bool key_length_given = file.contains(prefix + "attention.key_length");
  if (!key_length_given && hparams.embedding_length % hparams.head_count != 0) {
    return fail(ErrorCode::invalid_format, file.name() + ": key '" + prefix + "attention.head_count' is " +
                                               std::to_string(hparams.head_count) + ", which does not divide '" + prefix +
                                               "embedding_length' " + std::to_string(hparams.embedding_length) + " (and '" + prefix +
                                               "attention.key_length' is not given)");
  }
  Result<std::uint32_t> head_size = file.get_u32_or(prefix + "attention.key_length", hparams.embedding_length / hparams.head_count);
  if (!head_size) return head_size.take_error();
  hparams.head_size = *head_size;
  const std::string head_size_source = key_length_given ? "key '" + prefix + "attention.key_length'"
                                                        : "the head size " + prefix + "embedding_length / " + prefix + "attention.head_count";
  if (hparams.head_size == 0 || hparams.head_size > 256) {
    return fail(ErrorCode::unsupported, file.name() + ": " + head_size_source + " is " + std::to_string(hparams.head_size) +
                                            "; lamina supports head sizes 1 to 256");
  }
  Result<std::uint32_t> value_length = file.get_u32_or(prefix + "attention.value_length", hparams.head_size);
  if (!value_length) return value_length.take_error();
  if (*value_length != hparams.head_size) {
    return fail(ErrorCode::unsupported, file.name() + ": key '" + prefix + "attention.value_length' is " + std::to_string(*value_length) +
                                            ", not the key length " + std::to_string(hparams.head_size) +
                                            "; lamina supports equal key and value lengths only");
  }

  Result<float> epsilon = file.get_f32_or(prefix + "attention.layer_norm_rms_epsilon", 1e-5f);
  if (!epsilon) return epsilon.take_error();
  hparams.rms_norm_epsilon = *epsilon;
  if (!(hparams.rms_norm_epsilon >= 0.0f && hparams.rms_norm_epsilon < 1.0f)) {
    return fail(ErrorCode::invalid_format, file.name() + ": key '" + prefix + "attention.layer_norm_rms_epsilon' is " +
                                               std::to_string(hparams.rms_norm_epsilon) + ", outside [0, 1)");
  }

  Result<std::uint32_t> rope_dimensions = file.get_u32_or(prefix + "rope.dimension_count", hparams.head_size);
  if (!rope_dimensions) return rope_dimensions.take_error();
  hparams.rope_dimension_count = *rope_dimensions;
  if (hparams.rope_dimension_count > hparams.head_size || hparams.rope_dimension_count % 2 != 0) {
    return fail(ErrorCode::invalid_format, file.name() + ": key '" + prefix + "rope.dimension_count' is " +
                                               std::to_string(hparams.rope_dimension_count) + "; it must be even and at most " +
                                               head_size_source + ", which is " + std::to_string(hparams.head_size));
  }
  Result<float> base = file.get_f32_or(prefix + "rope.freq_base", 10000.0f);
  if (!base) return base.take_error();
  hparams.rope_frequency_base = *base;
  if (!(hparams.rope_frequency_base > 1.0f)) {
    return fail(ErrorCode::invalid_format, file.name() + ": key '" + prefix + "rope.freq_base' is " +
                                               std::to_string(hparams.rope_frequency_base) + "; it must be greater than 1");
  }

  // Context extension: "rope.scaling.type" + "rope.scaling.factor" (older files: "rope.scale_linear").
  Result<std::string> scaling_type = file.get_string_or(prefix + "rope.scaling.type", "none");
  if (!scaling_type) return scaling_type.take_error();
  Result<float> scaling_factor = file.get_f32_or(prefix + "rope.scaling.factor", 0.0f);
  if (!scaling_factor) return scaling_factor.take_error();
  Result<float> scale_linear = file.get_f32_or(prefix + "rope.scale_linear", 0.0f);
  if (!scale_linear) return scale_linear.take_error();
  if (*scaling_type == "none") {
    hparams.rope_scaling = RopeScaling::none;
    if (*scale_linear > 0.0f && *scale_linear != 1.0f) {
      hparams.rope_scaling = RopeScaling::linear;
      hparams.rope_scaling_factor = *scale_linear;
    }
  } else if (*scaling_type == "linear") {
    hparams.rope_scaling = RopeScaling::linear;
    hparams.rope_scaling_factor = *scaling_factor > 0.0f ? *scaling_factor : (*scale_linear > 0.0f ? *scale_linear : 1.0f);
  } else if (*scaling_type == "yarn") {
    hparams.rope_scaling = RopeScaling::yarn;
    hparams.rope_scaling_factor = *scaling_factor > 0.0f ? *scaling_factor : 1.0f;
  } else {
    return fail(ErrorCode::unsupported, file.name() + ": key '" + prefix + "rope.scaling.type' is " + detail::quote_for_message(*scaling_type) +
                                            ", which lamina does not support (none, linear, yarn)");
  }
  if (!(hparams.rope_scaling_factor >= 1.0f && hparams.rope_scaling_factor < 1e6f)) {
    return fail(ErrorCode::invalid_format, file.name() + ": the rope scaling factor ('" + prefix + "rope.scaling.factor' or '" + prefix +
                                               "rope.scale_linear') is " + std::to_string(hparams.rope_scaling_factor) +
                                               "; it must be at least 1 and below 1e6");
  }
  Result<std::uint32_t> original_context = file.get_u32_or(prefix + "rope.scaling.original_context_length", hparams.context_length);
  if (!original_context) return original_context.take_error();
  hparams.rope_original_context_length = *original_context;

  const gguf::TensorInfo* embedding = file.find_tensor("token_embd.weight");
  if (embedding == nullptr) return fail(ErrorCode::missing, file.name() + ": tensor 'token_embd.weight' not found");
  if (embedding->shape.size() != 2) return fail(ErrorCode::type_mismatch, file.name() + ": tensor 'token_embd.weight' must be 2-D");
  hparams.vocab_size = static_cast<std::uint32_t>(embedding->shape[0]);
  return hparams;
}

// The RoPE parameters of a model, ready for the kernels.
inline reference::RopeParams rope_params(const ModelHparams& hparams, const float* frequency_factors) {
  reference::RopeParams params;
  params.rotary_dimension_count = static_cast<int>(hparams.rope_dimension_count);
  params.frequency_base = hparams.rope_frequency_base;
  params.frequency_scale = 1.0f / hparams.rope_scaling_factor;
  params.extrapolation_factor = hparams.rope_scaling == RopeScaling::yarn ? 1.0f : 0.0f;
  params.original_context_length = static_cast<int>(hparams.rope_original_context_length);
  params.frequency_factors = frequency_factors;
  return params;
}

LAMINA_NAMESPACE_END
