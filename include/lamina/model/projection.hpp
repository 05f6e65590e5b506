// lamina/model/projection.hpp — the weight matrices of a layer (Projection), and the hook
// through which the forward pass multiplies by them.
//
// The forward pass (model/llama.hpp) knows nothing of adapters: each of its seven matrix
// products per layer goes through a ProjectionHook when it is given one, and LoRA
// (adapters/lora.hpp, LoraBatch) is such a hook. The folders depend one way: adapters/ on
// model/, never the reverse.
#pragma once

#include "../config.hpp"
#include "../core/executor.hpp"
#include "../core/tensor.hpp"
#include "../kernels/cpu/kernels.hpp"
#include "../kernels/cpu/matmul.hpp"
#include "hparams.hpp"

#include <cstddef>
#include <cstdint>

LAMINA_NAMESPACE_BEGIN

// The weight matrices of a layer, in the order of the forward pass.
enum class Projection : std::uint8_t { query, key, value, attention_output, ffn_gate, ffn_up, ffn_down };
inline constexpr std::size_t projection_count = 7;

inline Projection projection_at(std::size_t index) { return static_cast<Projection>(index); }

// The GGUF tensor name inside a layer (blk.N.<name>.weight).
inline const char* projection_gguf_name(Projection projection) {
  static const char* const names[projection_count] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
  return names[static_cast<std::size_t>(projection)];
}

// The Hugging Face module name inside a decoder layer (model.layers.N.<name>), Llama and Qwen2.
inline const char* projection_hf_name(Projection projection) {
  static const char* const names[projection_count] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                      "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                      "mlp.down_proj"};
  return names[static_cast<std::size_t>(projection)];
}

// [rows, columns] of a projection's weight: rows = outputs, columns = inputs.
inline std::uint32_t projection_rows(const ModelHparams& hparams, Projection projection) {
  switch (projection) {
    case Projection::query: return hparams.query_width();
    case Projection::key:
    case Projection::value: return hparams.kv_width();
    case Projection::attention_output:
    case Projection::ffn_down: return hparams.embedding_length;
    case Projection::ffn_gate:
    case Projection::ffn_up: return hparams.feed_forward_length;
  }
  return 0;
}
inline std::uint32_t projection_columns(const ModelHparams& hparams, Projection projection) {
  switch (projection) {
    case Projection::attention_output: return hparams.query_width();
    case Projection::ffn_down: return hparams.feed_forward_length;
    default: return hparams.embedding_length;
  }
}

// What the forward pass calls for every projection when it has a hook instead of multiplying
// by the weight itself: y [token_count, rows] = x [token_count, columns] · weightᵀ, plus what
// the hook adds (an adapter's B A x). The hook does the base product too, so that it can fuse
// or reorder work per group of tokens.
class ProjectionHook {
 public:
  virtual void project(Executor& executor, const cpu::CpuKernels& kernels, cpu::MatmulWorkspace& workspace, std::uint32_t layer,
                       Projection projection, const TensorView& weight, const float* x, float* y, std::size_t token_count) = 0;

 protected:
  ProjectionHook() = default;
  ProjectionHook(const ProjectionHook&) = default;
  ProjectionHook& operator=(const ProjectionHook&) = default;
  ~ProjectionHook() = default;  // not deleted through this type
};

LAMINA_NAMESPACE_END
