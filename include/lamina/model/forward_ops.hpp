// lamina/model/forward_ops.hpp — the operations a transformer layer is made of, as an interface
// that every backend implements.
//
// model/llama.hpp describes a layer once, as calls on a ForwardOps (transformer_layer); the CPU
// runs each call at once (CpuForwardOps, in llama.hpp), the Vulkan backend (lamina/vulkan.hpp)
// records each into the command buffer of the forward pass. A call names its operands: the
// activations of the batch (Activation, each [n_tokens, width]) and the layer's weights (by layer
// index and Projection or LayerVector), so each backend finds them in its own memory.
#pragma once

#include "../config.hpp"
#include "projection.hpp"

#include <cstdint>

LAMINA_NAMESPACE_BEGIN

// The activations of one forward pass, one row per token of the batch.
enum class Activation : std::uint8_t {
  hidden,     // [n_tokens, embedding] the residual stream
  normed,     // [n_tokens, embedding] a normalized copy of it
  query,      // [n_tokens, heads × head_size]
  key,        // [n_tokens, kv_heads × head_size]
  value,      // [n_tokens, kv_heads × head_size]
  attention,  // [n_tokens, heads × head_size] the attention's output, before Wo
  projected,  // [n_tokens, embedding] a block's output before it is added to hidden
  gate,       // [n_tokens, ffn]
  up,         // [n_tokens, ffn]
};

// The vectors of a layer: norm weights and biases, [embedding] or [the projection's rows].
enum class LayerVector : std::uint8_t { attention_norm, ffn_norm, query_bias, key_bias, value_bias };

class ForwardOps {
 public:
  // out = rms_norm(in) * weight, row by row.
  virtual void rms_norm(Activation in, std::uint32_t layer, LayerVector weight, Activation out) = 0;
  // out [n_tokens, rows] = in [n_tokens, columns] · Wᵀ plus the changes of the tokens' adapters.
  virtual void project(std::uint32_t layer, Projection projection, Activation in, Activation out) = 0;
  // target[t] += bias, for every token t.
  virtual void add_bias(std::uint32_t layer, LayerVector bias, Activation target) = 0;
  // Rotates the `heads` heads of every token of `target` by the token's position (RoPE).
  virtual void rope(Activation target, std::uint32_t heads) = 0;
  // Stores Activation::key and Activation::value in each token's KV cache cell of `layer`.
  virtual void store_kv(std::uint32_t layer) = 0;
  // Activation::attention = softmax(q·kᵀ / sqrt(head_size))·v over the cells each token sees.
  virtual void attention(std::uint32_t layer) = 0;
  // gate = silu(gate) * up (SwiGLU).
  virtual void silu_mul(Activation gate, Activation up) = 0;
  // target += addend (the residual connections).
  virtual void add(Activation target, Activation addend) = 0;

 protected:
  ForwardOps() = default;
  ForwardOps(const ForwardOps&) = default;
  ForwardOps& operator=(const ForwardOps&) = default;
  ~ForwardOps() = default;  // not deleted through this type
};

LAMINA_NAMESPACE_END
