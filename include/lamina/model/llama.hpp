// lamina/model/llama.hpp — the Llama-family transformer: its weights and its forward pass.
//
// One forward pass turns a batch of tokens (from any sequences) into logits:
//
//   x = token_embd[token]                                   [n_tokens, embedding]
//   for each layer:
//     h = rms_norm(x) * attn_norm
//     q, k, v = h·Wq (+bq), h·Wk (+bk), h·Wv (+bv)           [n_tokens, heads × head_size] …
//     rotate q and k by position (RoPE); store k, v in the KV cache
//     a = softmax(q·kᵀ / sqrt(head_size), causal, same sequence)·v
//     x = x + a·Wo
//     h = rms_norm(x) * ffn_norm
//     x = x + (silu(h·Wgate) * (h·Wup))·Wdown
//   logits = rms_norm(x) * output_norm · Woutput              [n_outputs, vocab]
//
// Weights are views into the memory-mapped GGUF file; nothing is copied except the small
// norm vectors and biases, which are converted to float once at load.
#pragma once

#include "../config.hpp"
#include "../core/cancel.hpp"
#include "../core/executor.hpp"
#include "../core/result.hpp"
#include "../core/tensor.hpp"
#include "../io/gguf.hpp"
#include "../kernels/cpu/kernels.hpp"
#include "../kernels/cpu/matmul.hpp"
#include "../kernels/reference.hpp"
#include "../text/token.hpp"
#include "hparams.hpp"
#include "kv_cache.hpp"
#include "forward_ops.hpp"
#include "projection.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <string>
#include <vector>

LAMINA_NAMESPACE_BEGIN

struct LayerWeights {
  std::vector<float> attention_norm;  // [embedding]
  TensorView query;                   // [heads × head_size, embedding]
  TensorView key;                     // [kv_heads × head_size, embedding]
  TensorView value;                   // [kv_heads × head_size, embedding]
  TensorView attention_output;        // [embedding, heads × head_size]
  std::vector<float> query_bias;      // [heads × head_size] or empty (Qwen2 has Q/K/V biases)
  std::vector<float> key_bias;        // [kv_heads × head_size] or empty
  std::vector<float> value_bias;      // [kv_heads × head_size] or empty
  std::vector<float> ffn_norm;        // [embedding]
  TensorView ffn_gate;                // [ffn, embedding]
  TensorView ffn_up;                  // [ffn, embedding]
  TensorView ffn_down;                // [embedding, ffn]
};

struct ModelWeights {
  TensorView token_embedding;                // [vocab, embedding]
  std::vector<float> output_norm;            // [embedding]
  TensorView output;                         // [vocab, embedding]; the token embedding when tied
  std::vector<float> rope_frequency_factors; // [rope_dimensions / 2] (Llama 3 "rope_freqs") or empty
  std::vector<LayerWeights> layers;
};

namespace detail {

inline std::string describe_shape(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

inline std::string describe_dtype(DType type) {
  return is_known_dtype(static_cast<std::uint32_t>(type)) ? std::string(dtype_name(type))
                                                          : "id " + std::to_string(static_cast<std::uint32_t>(type));
}

// "f32, f16, q4_0, …": the weight types cpu::can_multiply accepts, for messages.
inline std::string supported_weight_types() {
  std::string names;
  for (std::uint32_t id = 0; id < 64; ++id) {
    if (!is_known_dtype(id) || !cpu::can_multiply(static_cast<DType>(id))) continue;
    names += (names.empty() ? "" : ", ") + std::string(dtype_name(static_cast<DType>(id)));
  }
  return names;
}

// Finds tensor `name` and checks its shape (outermost first) and that lamina can compute with its type.
// `shape_source` says which hyperparameters the expected shape comes from, for the message.
inline Result<TensorView> bind_tensor(const gguf::File& file, const std::string& name, std::vector<std::int64_t> shape,
                                      const char* shape_source = nullptr) {
  const gguf::TensorInfo* info = file.find_tensor(name);
  if (info == nullptr) return fail(ErrorCode::missing, file.name() + ": tensor '" + name + "' not found");
  if (info->shape != shape) {
    return fail(ErrorCode::type_mismatch, file.name() + ": tensor '" + name + "' has shape " + describe_shape(info->shape) +
                                              ", expected " + describe_shape(shape) +
                                              (shape_source != nullptr ? std::string(" = ") + shape_source : std::string()));
  }
  // Matrices go through matmul(); vectors are converted to float once.
  const bool computable = shape.size() >= 2 ? cpu::can_multiply(info->dtype) : quant::can_dequantize(info->dtype);
  if (!computable) {
    return fail(ErrorCode::unsupported, file.name() + ": tensor '" + name + "' has type " + describe_dtype(info->dtype) +
                                            ", which lamina has no " + (shape.size() >= 2 ? "matrix kernel" : "conversion") +
                                            " for (weights: " + supported_weight_types() + ")");
  }
  return info->view();
}

// A small vector tensor (norm weight, bias) converted to float. Absent and optional -> empty.
inline Result<std::vector<float>> load_vector(const gguf::File& file, const std::string& name, std::int64_t length, bool optional) {
  const gguf::TensorInfo* info = file.find_tensor(name);
  if (info == nullptr) {
    if (optional) return std::vector<float>();
    return fail(ErrorCode::missing, file.name() + ": tensor '" + name + "' not found");
  }
  Result<TensorView> view = bind_tensor(file, name, {length});
  if (!view) return view.take_error();
  std::vector<float> values(static_cast<std::size_t>(length));
  reference::row_to_f32(view->dtype, view->data, values.data(), values.size());
  return values;
}

}  // namespace detail

inline Result<ModelWeights> bind_weights(const gguf::File& file, const ModelHparams& hparams) {
  const std::int64_t embedding = hparams.embedding_length;
  const std::int64_t query_width = hparams.query_width();
  const std::int64_t kv_width = hparams.kv_width();
  const std::int64_t ffn = hparams.feed_forward_length;
  const std::int64_t vocab = hparams.vocab_size;
  ModelWeights weights;

  // block_count comes from the metadata: the file must hold that many layers' tensors before
  // anything is set aside for them (a hostile count would otherwise size a huge vector).
  std::uint64_t layers_in_file = 0;
  for (const gguf::TensorInfo& tensor : file.tensors()) {
    const std::string& name = tensor.name;
    const std::string suffix = ".attn_norm.weight";
    if (name.size() > suffix.size() + 4 && name.compare(0, 4, "blk.") == 0 &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      ++layers_in_file;
    }
  }
  if (layers_in_file != hparams.block_count) {
    return fail(ErrorCode::invalid_format, file.name() + ": key '" + hparams.architecture_name + ".block_count' is " +
                                               std::to_string(hparams.block_count) + ", but the file holds the tensors of " +
                                               std::to_string(layers_in_file) + " layers (blk.N.attn_norm.weight)");
  }

  Result<TensorView> token_embedding = detail::bind_tensor(file, "token_embd.weight", {vocab, embedding});
  if (!token_embedding) return token_embedding.take_error();
  weights.token_embedding = *token_embedding;
  Result<std::vector<float>> output_norm = detail::load_vector(file, "output_norm.weight", embedding, false);
  if (!output_norm) return output_norm.take_error();
  weights.output_norm = std::move(*output_norm);
  if (file.find_tensor("output.weight") != nullptr) {
    Result<TensorView> output = detail::bind_tensor(file, "output.weight", {vocab, embedding});
    if (!output) return output.take_error();
    weights.output = *output;
  } else {
    weights.output = weights.token_embedding;  // tied embeddings (Qwen2, SmolLM, Llama 3.2 1B …)
  }
  Result<std::vector<float>> rope_factors = detail::load_vector(file, "rope_freqs.weight", hparams.rope_dimension_count / 2, true);
  if (!rope_factors) return rope_factors.take_error();
  weights.rope_frequency_factors = std::move(*rope_factors);

  weights.layers.resize(hparams.block_count);
  for (std::uint32_t index = 0; index < hparams.block_count; ++index) {
    LayerWeights& layer = weights.layers[index];
    const std::string prefix = "blk." + std::to_string(index) + ".";
    struct MatrixSlot { const char* name; TensorView* target; std::int64_t rows; std::int64_t columns; const char* shape_source; };
    const MatrixSlot matrices[] = {
        {"attn_q.weight", &layer.query, query_width, embedding, "[attention.head_count × head size, embedding_length]"},
        {"attn_k.weight", &layer.key, kv_width, embedding, "[attention.head_count_kv × head size, embedding_length]"},
        {"attn_v.weight", &layer.value, kv_width, embedding, "[attention.head_count_kv × head size, embedding_length]"},
        {"attn_output.weight", &layer.attention_output, embedding, query_width, "[embedding_length, attention.head_count × head size]"},
        {"ffn_gate.weight", &layer.ffn_gate, ffn, embedding, "[feed_forward_length, embedding_length]"},
        {"ffn_up.weight", &layer.ffn_up, ffn, embedding, "[feed_forward_length, embedding_length]"},
        {"ffn_down.weight", &layer.ffn_down, embedding, ffn, "[embedding_length, feed_forward_length]"},
    };
    for (const MatrixSlot& slot : matrices) {
      Result<TensorView> view = detail::bind_tensor(file, prefix + slot.name, {slot.rows, slot.columns}, slot.shape_source);
      if (!view) return view.take_error();
      *slot.target = *view;
    }
    struct VectorSlot { const char* name; std::vector<float>* target; std::int64_t length; bool optional; };
    const bool biases_expected = hparams.architecture == Architecture::qwen2;
    const VectorSlot vectors[] = {
        {"attn_norm.weight", &layer.attention_norm, embedding, false},
        {"ffn_norm.weight", &layer.ffn_norm, embedding, false},
        {"attn_q.bias", &layer.query_bias, query_width, !biases_expected},
        {"attn_k.bias", &layer.key_bias, kv_width, !biases_expected},
        {"attn_v.bias", &layer.value_bias, kv_width, !biases_expected},
    };
    for (const VectorSlot& slot : vectors) {
      Result<std::vector<float>> values = detail::load_vector(file, prefix + slot.name, slot.length, slot.optional);
      if (!values) return values.take_error();
      *slot.target = std::move(*values);
    }
  }
  return weights;
}

// The tokens of one forward pass. All vectors have one entry per token.
struct Batch {
  std::vector<Token> tokens;
  std::vector<Position> positions;     // position of each token within its sequence
  std::vector<SequenceId> sequences;   // which sequence each token continues
  std::vector<std::uint8_t> want_logits;  // 1: produce logits after this token
  // Tokens [invariant_from, size()) are computed as any other pass would compute them, whatever
  // else this one holds: the matrix kernels for many tokens run for them even when they are few
  // (cpu::MatmulTask::batch_invariant). Prompt tokens go there, after the decoding ones, so that
  // a prompt fed in pieces of any size gives the logits of one call. The tokens before it
  // (decoding) take the kernels made for a few tokens: for one token 1.7 to 5 times faster, but
  // adding in another order. Default: none. The CPU honours it; a device ignores it.
  std::size_t invariant_from = cpu::MatmulWorkspace::no_invariant_tokens;

  void clear() {
    tokens.clear();
    positions.clear();
    sequences.clear();
    want_logits.clear();
    invariant_from = cpu::MatmulWorkspace::no_invariant_tokens;
  }
  void add(Token token, Position position, SequenceId sequence, bool logits) {
    tokens.push_back(token);
    positions.push_back(position);
    sequences.push_back(sequence);
    want_logits.push_back(logits ? 1 : 0);
  }
  std::size_t size() const { return tokens.size(); }
  std::size_t output_count() const {
    std::size_t count = 0;
    for (std::uint8_t wanted : want_logits) count += wanted;
    return count;
  }
};

// Every buffer a forward pass needs, sized once for at most `max_tokens` tokens and
// `max_outputs` logit rows, so decoding allocates nothing.
class ForwardBuffers {
 public:
  // Tokens of one attention chunk share nothing; at most this many chunks run at once.
  static constexpr std::size_t attention_chunks = 16;

  ForwardBuffers() = default;
  // `concurrency`: how many threads run the forward pass (sizes the per-chunk scratch).
  static Result<ForwardBuffers> create(const ModelHparams& hparams, std::uint32_t max_tokens, std::uint32_t max_outputs,
                                       std::uint32_t kv_cell_count, std::size_t concurrency = 1) {
    if (max_tokens == 0) return fail(ErrorCode::invalid_argument, "batch size must be positive");
    ForwardBuffers buffers;
    buffers.max_tokens_ = max_tokens;
    buffers.max_outputs_ = max_outputs;
    const std::size_t n = max_tokens;
    buffers.hidden.resize(n * hparams.embedding_length);
    buffers.normed.resize(n * hparams.embedding_length);
    buffers.query.resize(n * hparams.query_width());
    buffers.key.resize(n * hparams.kv_width());
    buffers.value.resize(n * hparams.kv_width());
    buffers.attention.resize(n * hparams.query_width());
    buffers.projected.resize(n * hparams.embedding_length);
    buffers.gate.resize(n * hparams.feed_forward_length);
    buffers.up.resize(n * hparams.feed_forward_length);
    buffers.cells.resize(n);
    buffers.rope_cos.resize(n * (hparams.rope_dimension_count / 2 + 1));
    buffers.rope_sin.resize(n * (hparams.rope_dimension_count / 2 + 1));
    buffers.output_rows.resize(static_cast<std::size_t>(max_outputs) * hparams.embedding_length);
    buffers.logits.resize(static_cast<std::size_t>(max_outputs) * hparams.vocab_size);
    buffers.attention_scores.resize(attention_chunks * (hparams.head_count / hparams.head_count_kv) * static_cast<std::size_t>(kv_cell_count));
    buffers.visible_cells.resize(kv_cell_count);
    buffers.visible_begin.resize(n);
    buffers.visible_count.resize(n);
    buffers.batch_sequences.resize(n);
    std::size_t widest_input = hparams.embedding_length;
    if (hparams.feed_forward_length > widest_input) widest_input = hparams.feed_forward_length;
    if (hparams.query_width() > widest_input) widest_input = hparams.query_width();
    buffers.workspace = cpu::MatmulWorkspace(widest_input, n, 4 * (concurrency == 0 ? 1 : concurrency));
    return buffers;
  }

  // About what create() allocates (within a few KiB), in floating point so nothing overflows.
  static double bytes_needed(const ModelHparams& hparams, std::uint32_t max_tokens, std::uint32_t max_outputs,
                             std::uint32_t kv_cell_count, std::size_t concurrency = 1) {
    const double n = max_tokens;
    const double widest = std::max({hparams.embedding_length, hparams.feed_forward_length, hparams.query_width()});
    const double per_token_floats = 3.0 * hparams.embedding_length + 2.0 * hparams.query_width() + 2.0 * hparams.kv_width() +
                                    2.0 * hparams.feed_forward_length + 2.0 * (hparams.rope_dimension_count / 2 + 1) + 5.0;
    const double output_floats = static_cast<double>(max_outputs) * (static_cast<double>(hparams.embedding_length) + hparams.vocab_size);
    const double attention_floats = static_cast<double>(attention_chunks) * (hparams.head_count / hparams.head_count_kv) *
                                        static_cast<double>(kv_cell_count) + kv_cell_count;
    const double chunks = std::min<double>(4.0 * (concurrency == 0 ? 1 : static_cast<double>(concurrency)), cpu::max_parallel_chunks);
    const double workspace_bytes = chunks * cpu::matmul_scratch_floats(static_cast<std::size_t>(widest)) * 4.0 +
                                   n * (widest + 256.0) / 32.0 * 36.0;
    return 4.0 * (n * per_token_floats + output_floats + attention_floats) + workspace_bytes;
  }

  std::uint32_t max_tokens() const { return max_tokens_; }
  std::uint32_t max_outputs() const { return max_outputs_; }

  std::vector<float> hidden;       // [n_tokens, embedding] the residual stream
  std::vector<float> normed;       // [n_tokens, embedding]
  std::vector<float> query;        // [n_tokens, heads × head_size]
  std::vector<float> key;          // [n_tokens, kv_heads × head_size]
  std::vector<float> value;        // [n_tokens, kv_heads × head_size]
  std::vector<float> attention;    // [n_tokens, heads × head_size]
  std::vector<float> projected;    // [n_tokens, embedding]
  std::vector<float> gate;         // [n_tokens, ffn]
  std::vector<float> up;           // [n_tokens, ffn]
  std::vector<std::uint32_t> cells;  // [n_tokens] KV cell of each token
  std::vector<float> rope_cos;     // [n_tokens, rope_dimensions / 2] rotation of each pair at each token's position
  std::vector<float> rope_sin;     // [n_tokens, rope_dimensions / 2]
  std::vector<float> output_rows;  // [n_outputs, embedding]
  std::vector<float> logits;       // [n_outputs, vocab]
  std::vector<float> attention_scores;          // [attention_chunks, heads per KV head, kv cells]
  std::vector<std::uint32_t> visible_cells;     // [kv cells] the cells of each batch sequence, by position
  std::vector<std::uint32_t> visible_begin;     // [n_tokens] where token t's sequence starts in visible_cells
  std::vector<std::uint32_t> visible_count;     // [n_tokens] how many of those token t sees
  std::vector<SequenceId> batch_sequences;      // [n_tokens] the distinct sequences of the batch
  cpu::MatmulWorkspace workspace;

 private:
  std::uint32_t max_tokens_ = 0;
  std::uint32_t max_outputs_ = 0;
};

// Checks a batch against the model and the buffers before anything is changed.
inline Result<void> validate_batch(const ModelHparams& hparams, const Batch& batch, const ForwardBuffers& buffers,
                                   std::uint32_t sequence_count) {
  const std::size_t n = batch.tokens.size();
  if (batch.positions.size() != n || batch.sequences.size() != n || batch.want_logits.size() != n) {
    return fail(ErrorCode::invalid_argument, "batch: tokens, positions, sequences and want_logits differ in length");
  }
  if (n == 0) return fail(ErrorCode::invalid_argument, "batch is empty");
  if (n > buffers.max_tokens()) {
    return fail(ErrorCode::invalid_argument, "batch of " + std::to_string(n) + " tokens exceeds the session's batch size " +
                                                 std::to_string(buffers.max_tokens()));
  }
  if (batch.output_count() > buffers.max_outputs()) {
    return fail(ErrorCode::invalid_argument, "batch asks for logits of " + std::to_string(batch.output_count()) +
                                                 " tokens, the session holds at most " + std::to_string(buffers.max_outputs()));
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (batch.tokens[i] < 0 || static_cast<std::uint32_t>(batch.tokens[i]) >= hparams.vocab_size) {
      return fail(ErrorCode::invalid_argument, "batch: token id " + std::to_string(batch.tokens[i]) + " at index " +
                                                   std::to_string(i) + " is outside the vocabulary [0, " +
                                                   std::to_string(hparams.vocab_size) + ")");
    }
    if (batch.sequences[i] < 0 || static_cast<std::uint32_t>(batch.sequences[i]) >= sequence_count) {
      return fail(ErrorCode::invalid_argument, "batch: sequence id " + std::to_string(batch.sequences[i]) + " at index " +
                                                   std::to_string(i) + " is outside [0, " + std::to_string(sequence_count) + ")");
    }
    if (batch.positions[i] < 0) {
      return fail(ErrorCode::invalid_argument, "batch: negative position at index " + std::to_string(i));
    }
  }
  return success();
}

// For every token of the batch, the cache cells it attends to: those of its sequence at or
// before its position, in position order. Each sequence's cells are gathered and sorted once,
// and a token sees a prefix of them. Uses only preallocated buffers.
inline void find_visible_cells(const Batch& batch, const KvCache& cache, ForwardBuffers& buffers) {
  std::size_t sequence_count = 0;
  std::size_t filled = 0;
  for (std::size_t t = 0; t < batch.size(); ++t) {
    const SequenceId sequence = batch.sequences[t];
    bool seen = false;
    for (std::size_t s = 0; s < sequence_count && !seen; ++s) seen = buffers.batch_sequences[s] == sequence;
    if (seen) continue;
    buffers.batch_sequences[sequence_count++] = sequence;
    std::uint32_t* begin = buffers.visible_cells.data() + filled;
    std::uint32_t* end = begin;
    for (std::uint32_t cell = 0; cell < cache.cell_count(); ++cell) {
      if (cache.cell_sequence(cell) == sequence) *end++ = cell;
    }
    std::sort(begin, end, [&](std::uint32_t a, std::uint32_t b) { return cache.cell_position(a) < cache.cell_position(b); });
    const std::size_t count = static_cast<std::size_t>(end - begin);
    for (std::size_t u = t; u < batch.size(); ++u) {
      if (batch.sequences[u] != sequence) continue;
      // The cells up to and including this token's position.
      const std::uint32_t* last = std::upper_bound(begin, end, batch.positions[u], [&](Position position, std::uint32_t cell) {
        return position < cache.cell_position(cell);
      });
      buffers.visible_begin[u] = static_cast<std::uint32_t>(filled);
      buffers.visible_count[u] = static_cast<std::uint32_t>(last - begin);
    }
    filled += count;
  }
}

// What every block of one forward pass reads: the model, the batch, where the results go and
// what computes them. Built once per forward() call.
struct ForwardPass {
  const ModelHparams& hparams;
  const ModelWeights& weights;
  const Batch& batch;
  KvCache& cache;
  ForwardBuffers& buffers;
  Executor& executor;
  const cpu::CpuKernels& kernels;
  ProjectionHook* projections;  // null: plain matrix products; else LoRA's (model/projection.hpp)
  CancelToken cancel;           // checked between layers

  std::size_t tokens() const { return batch.size(); }

  // y [n_tokens, out] = x [n_tokens, in] · Wᵀ, plus the adapters' changes.
  void project(std::uint32_t layer_index, Projection projection, const TensorView& weight, const float* x, float* y) const {
    if (projections != nullptr) {
      projections->project(executor, kernels, buffers.workspace, layer_index, projection, weight, x, y, tokens());
    } else {
      cpu::matmul(executor, kernels, weight, x, y, tokens(), buffers.workspace);
    }
  }

  // out [n_tokens, embedding] = rms_norm(x) * weight, row by row.
  void rms_norm_rows(const float* x, const std::vector<float>& weight, float* out) const {
    const std::size_t embedding = hparams.embedding_length;
    for (std::size_t t = 0; t < tokens(); ++t) {
      kernels.rms_norm(x + t * embedding, weight.data(), out + t * embedding, embedding, hparams.rms_norm_epsilon);
    }
  }
};

// Grouped-query attention for one token and one KV head, over the cache cells the token sees:
//   out[h] = Σ_c softmax_c(q[h]·k_c / sqrt(head_size)) · v_c     for the query heads h sharing it
// queries [query_count, head_size]; scores: scratch [query_count, cell_count]; out [query_count, head_size].
inline void attend(const cpu::CpuKernels& kernels, const float* queries, std::size_t query_count, std::size_t head_size,
                   cpu::CacheRows keys, cpu::CacheRows values, const std::uint32_t* cells, std::size_t cell_count,
                   float* scores, float* out) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_size));
  kernels.attention_scores(queries, query_count, head_size, keys, cells, cell_count, scale, scores);
  for (std::size_t h = 0; h < query_count; ++h) {  // softmax of each head's row of scores
    float* row = scores + h * cell_count;
    const float maximum = *std::max_element(row, row + cell_count);
    const float inverse_sum = 1.0f / kernels.exp_shifted(row, maximum, cell_count);
    for (std::size_t c = 0; c < cell_count; ++c) row[c] *= inverse_sum;
  }
  kernels.attention_values(scores, query_count, head_size, values, cells, cell_count, out);
}

// One layer of the architecture, described once for every backend (model/forward_ops.hpp):
//   x += attention(rms_norm(x) * attn_norm) · Wo                  (the batch's k, v go to the cache)
//   x += (silu(h·Wgate) * (h·Wup)) · Wdown   with h = rms_norm(x) * ffn_norm      (SwiGLU)
// x is Activation::hidden. The two halves are also run one at a time, by a forward pass done
// in steps (Session::decode_step).
inline void attention_block(const ModelHparams& hparams, const LayerWeights& layer, std::uint32_t index, ForwardOps& ops) {
  using A = Activation;
  // q [n_tokens, heads × head_size], k and v [n_tokens, kv_heads × head_size] from h = rms_norm(x) * attn_norm.
  ops.rms_norm(A::hidden, index, LayerVector::attention_norm, A::normed);
  ops.project(index, Projection::query, A::normed, A::query);
  ops.project(index, Projection::key, A::normed, A::key);
  ops.project(index, Projection::value, A::normed, A::value);
  if (!layer.query_bias.empty()) ops.add_bias(index, LayerVector::query_bias, A::query);  // Qwen2
  if (!layer.key_bias.empty()) ops.add_bias(index, LayerVector::key_bias, A::key);
  if (!layer.value_bias.empty()) ops.add_bias(index, LayerVector::value_bias, A::value);
  ops.rope(A::query, hparams.head_count);  // rotate q and k by each token's position
  ops.rope(A::key, hparams.head_count_kv);
  ops.store_kv(index);   // this and later tokens read them from the cache
  ops.attention(index);  // each token over the cells of its sequence at or before its position
  ops.project(index, Projection::attention_output, A::attention, A::projected);
  ops.add(A::hidden, A::projected);
}

inline void feed_forward_block(const LayerWeights&, std::uint32_t index, ForwardOps& ops) {
  using A = Activation;
  ops.rms_norm(A::hidden, index, LayerVector::ffn_norm, A::normed);
  ops.project(index, Projection::ffn_gate, A::normed, A::gate);
  ops.project(index, Projection::ffn_up, A::normed, A::up);
  ops.silu_mul(A::gate, A::up);
  ops.project(index, Projection::ffn_down, A::gate, A::projected);
  ops.add(A::hidden, A::projected);
}

inline void transformer_layer(const ModelHparams& hparams, const LayerWeights& layer, std::uint32_t index, ForwardOps& ops) {
  attention_block(hparams, layer, index, ops);
  feed_forward_block(layer, index, ops);
}

// The layer operations on the CPU: each call runs at once on the forward pass's buffers.
class CpuForwardOps final : public ForwardOps {
 public:
  explicit CpuForwardOps(const ForwardPass& pass) : pass_(pass) {}

  void rms_norm(Activation in, std::uint32_t layer, LayerVector weight, Activation out) override {
    pass_.rms_norm_rows(rows(in), vector(layer, weight), rows(out));
  }
  void project(std::uint32_t layer, Projection projection, Activation in, Activation out) override {
    pass_.project(layer, projection, matrix(layer, projection), rows(in), rows(out));
  }
  void add_bias(std::uint32_t layer, LayerVector bias, Activation target) override {
    const std::vector<float>& values = vector(layer, bias);
    float* x = rows(target);
    for (std::size_t t = 0; t < pass_.tokens(); ++t) pass_.kernels.add(x + t * values.size(), values.data(), values.size());
  }
  void rope(Activation target, std::uint32_t heads) override {
    const ModelHparams& hparams = pass_.hparams;
    const std::size_t rope_pairs = hparams.rope_dimension_count / 2;
    const std::size_t width = static_cast<std::size_t>(heads) * hparams.head_size;
    float* x = rows(target);
    for (std::size_t t = 0; t < pass_.tokens(); ++t) {  // the angles were computed once per forward pass
      reference::rope_rotate(x + t * width, static_cast<int>(heads), static_cast<int>(hparams.head_size),
                             static_cast<int>(2 * rope_pairs), pass_.buffers.rope_cos.data() + t * rope_pairs,
                             pass_.buffers.rope_sin.data() + t * rope_pairs, hparams.rope_style);
    }
  }
  void store_kv(std::uint32_t layer) override {
    const std::size_t kv_width = pass_.hparams.kv_width();
    const bool f16_cache = pass_.cache.element_type() == DType::f16;
    for (std::size_t t = 0; t < pass_.tokens(); ++t) {
      const float* k = pass_.buffers.key.data() + t * kv_width;
      const float* v = pass_.buffers.value.data() + t * kv_width;
      const std::uint32_t cell = pass_.buffers.cells[t];
      if (f16_cache) {
        pass_.kernels.f32_to_f16(k, static_cast<std::uint16_t*>(pass_.cache.key(layer, cell)), kv_width);
        pass_.kernels.f32_to_f16(v, static_cast<std::uint16_t*>(pass_.cache.value(layer, cell)), kv_width);
      } else {
        std::memcpy(pass_.cache.key(layer, cell), k, kv_width * sizeof(float));
        std::memcpy(pass_.cache.value(layer, cell), v, kv_width * sizeof(float));
      }
    }
  }
  // One piece of work per (token, KV head) serves all the query heads that share that KV head.
  // A cell's row of one KV head: KV head h at h × head_size.
  void attention(std::uint32_t layer) override {
    const ModelHparams& hparams = pass_.hparams;
    ForwardBuffers& buffers = pass_.buffers;
    const std::size_t head_size = hparams.head_size, kv_heads = hparams.head_count_kv;
    const std::size_t heads_per_kv_head = hparams.head_count / kv_heads;
    const std::size_t query_width = hparams.query_width();
    const bool f16_cache = pass_.cache.element_type() == DType::f16;
    const std::size_t element_bytes = f16_cache ? 2 : 4;
    const std::uint8_t* layer_keys = static_cast<const std::uint8_t*>(pass_.cache.key(layer, 0));
    const std::uint8_t* layer_values = static_cast<const std::uint8_t*>(pass_.cache.value(layer, 0));
    const std::size_t cell_stride = hparams.kv_width() * element_bytes;
    parallel_chunks(pass_.executor, pass_.tokens() * kv_heads, ForwardBuffers::attention_chunks,
                    [&](std::size_t chunk, std::size_t begin, std::size_t end) {
      float* scores = buffers.attention_scores.data() + chunk * heads_per_kv_head * pass_.cache.cell_count();
      for (std::size_t pair = begin; pair < end; ++pair) {
        const std::size_t t = pair / kv_heads, kv_head = pair % kv_heads;
        const std::size_t first_head = kv_head * heads_per_kv_head;
        const cpu::CacheRows keys{layer_keys + kv_head * head_size * element_bytes, cell_stride, f16_cache};
        const cpu::CacheRows values{layer_values + kv_head * head_size * element_bytes, cell_stride, f16_cache};
        attend(pass_.kernels, buffers.query.data() + t * query_width + first_head * head_size, heads_per_kv_head, head_size, keys,
               values, buffers.visible_cells.data() + buffers.visible_begin[t], buffers.visible_count[t], scores,
               buffers.attention.data() + t * query_width + first_head * head_size);
      }
    });
  }
  void silu_mul(Activation gate, Activation up) override {
    pass_.kernels.silu_mul(rows(gate), rows(up), pass_.tokens() * pass_.hparams.feed_forward_length);
  }
  void add(Activation target, Activation addend) override {
    pass_.kernels.add(rows(target), rows(addend), pass_.tokens() * pass_.hparams.embedding_length);
  }

 private:
  float* rows(Activation activation) const {
    ForwardBuffers& b = pass_.buffers;
    std::vector<float>* const by_activation[] = {&b.hidden, &b.normed, &b.query, &b.key, &b.value, &b.attention, &b.projected, &b.gate, &b.up};
    return by_activation[static_cast<std::size_t>(activation)]->data();
  }
  const std::vector<float>& vector(std::uint32_t layer, LayerVector which) const {
    const LayerWeights& weights = pass_.weights.layers[layer];
    const std::vector<float>* const by_vector[] = {&weights.attention_norm, &weights.ffn_norm, &weights.query_bias, &weights.key_bias,
                                                   &weights.value_bias};
    return *by_vector[static_cast<std::size_t>(which)];
  }
  const TensorView& matrix(std::uint32_t layer, Projection projection) const {
    const LayerWeights& weights = pass_.weights.layers[layer];
    const TensorView* const by_projection[] = {&weights.query, &weights.key, &weights.value, &weights.attention_output,
                                               &weights.ffn_gate, &weights.ffn_up, &weights.ffn_down};
    return *by_projection[static_cast<std::size_t>(projection)];
  }

  const ForwardPass& pass_;
};

// The host's part of every forward pass, on any backend: checks the batch, claims a cache cell
// per token, lists the cells each token sees, and computes the rotation angles of each token's
// position (they depend only on the position: computed once, used by every layer).
inline Result<void> prepare_forward(const ModelHparams& hparams, const ModelWeights& weights, const Batch& batch, KvCache& cache,
                                    ForwardBuffers& buffers, std::uint32_t sequence_count) {
  LAMINA_TRY(validate_batch(hparams, batch, buffers, sequence_count));
  LAMINA_TRY(cache.claim_cells(batch.sequences.data(), batch.positions.data(), batch.size(), buffers.cells.data()));
  find_visible_cells(batch, cache, buffers);
  buffers.workspace.set_invariant_from(batch.invariant_from);
  const std::size_t rope_pairs = hparams.rope_dimension_count / 2;
  const reference::RopeParams rope = rope_params(
      hparams, weights.rope_frequency_factors.empty() ? nullptr : weights.rope_frequency_factors.data());
  for (std::size_t t = 0; t < batch.size(); ++t) {
    reference::rope_angles(rope, static_cast<float>(batch.positions[t]), buffers.rope_cos.data() + t * rope_pairs,
                           buffers.rope_sin.data() + t * rope_pairs);
  }
  return success();
}

// logits [n_outputs, vocab] = rms_norm(x) * output_norm · Woutput, only for the rows of
// buffers.hidden whose logits batch.want_logits asks for (the output matrix is the largest one),
// into buffers.logits in batch order. In pieces: the vocabulary rows [row_begin, row_end) of
// every output row (the first piece, row_begin 0, also normalizes), each as in the whole.
inline void project_to_logits(const ForwardPass& pass, std::size_t row_begin, std::size_t row_end) {
  const ModelHparams& hparams = pass.hparams;
  const std::size_t embedding = hparams.embedding_length;
  const float* x = pass.buffers.hidden.data();
  std::size_t output_count = 0, invariant_outputs_from = cpu::MatmulWorkspace::no_invariant_tokens;
  for (std::size_t t = 0; t < pass.tokens(); ++t) {
    if (!pass.batch.want_logits[t]) continue;
    if (t >= pass.batch.invariant_from && invariant_outputs_from > output_count) invariant_outputs_from = output_count;
    if (row_begin == 0) {
      pass.kernels.rms_norm(x + t * embedding, pass.weights.output_norm.data(), pass.buffers.output_rows.data() + output_count * embedding,
                            embedding, hparams.rms_norm_epsilon);
    }
    ++output_count;
  }
  if (output_count > 0) {
    // The output rows are the tokens of the product here: the invariant ones start at the first
    // output of an invariant token.
    pass.buffers.workspace.set_invariant_from(invariant_outputs_from);
    cpu::matmul_row_range(pass.executor, pass.kernels, pass.weights.output, pass.buffers.output_rows.data(), pass.buffers.logits.data(),
                          hparams.vocab_size, output_count, row_begin, row_end, pass.buffers.workspace);
    pass.buffers.workspace.set_invariant_from(pass.batch.invariant_from);
  }
}
inline void project_to_logits(const ForwardPass& pass) { project_to_logits(pass, 0, pass.hparams.vocab_size); }

// x [n_tokens, embedding] = token_embd[token]: the residual stream every block adds to.
inline void embed_tokens(const ForwardPass& pass) {
  const std::size_t embedding = pass.hparams.embedding_length;
  const TensorView& table = pass.weights.token_embedding;
  for (std::size_t t = 0; t < pass.tokens(); ++t) {
    reference::row_to_f32(table.dtype, table.row(pass.batch.tokens[t]), pass.buffers.hidden.data() + t * embedding, embedding);
  }
}

// Layers [first_layer, block_count) on the CPU over buffers.hidden, then the logits of the
// tokens flagged in batch.want_logits into buffers.logits, one row of vocab floats each, in
// batch order. The rest of a forward pass whose first layers ran elsewhere (partial offload).
// False when pass.cancel was cancelled: the pass stopped between two layers, without logits.
inline bool forward_from_layer(const ForwardPass& pass, std::uint32_t first_layer) {
  const ModelHparams& hparams = pass.hparams;
  CpuForwardOps ops(pass);
  for (std::uint32_t layer_index = first_layer; layer_index < hparams.block_count; ++layer_index) {
    if (pass.cancel.cancelled()) return false;
    transformer_layer(hparams, pass.weights.layers[layer_index], layer_index, ops);
  }
  if (pass.cancel.cancelled()) return false;
  project_to_logits(pass);
  return true;
}

// Frees the cache cells prepare_forward() claimed for `batch`, whose pass did not finish.
inline void release_cells(const Batch& batch, KvCache& cache) {
  for (std::size_t t = 0; t < batch.size(); ++t) cache.remove(batch.sequences[t], batch.positions[t], batch.positions[t] + 1);
}

// Runs the model over `batch`, appending its keys and values to `cache`. The logits of the
// tokens flagged in batch.want_logits land in buffers.logits, one row of vocab floats each, in
// batch order. `kernels` chooses the instruction set (cpu::cpu_kernels()).
//
// `projections`, when not null, does every matrix product of the layers instead (LoRA's
// LoraBatch adds each group of tokens' adapter changes; see model/projection.hpp).
// When `cancel` is cancelled the pass stops between two layers with ErrorCode::cancelled, and
// the cache is as it was before the call.
inline Result<void> forward(const ModelHparams& hparams, const ModelWeights& weights, const Batch& batch, KvCache& cache,
                            ForwardBuffers& buffers, Executor& executor, std::uint32_t sequence_count,
                            const cpu::CpuKernels& kernels, ProjectionHook* projections = nullptr, CancelToken cancel = CancelToken()) {
  LAMINA_TRY(prepare_forward(hparams, weights, batch, cache, buffers, sequence_count));
  const ForwardPass pass{hparams, weights, batch, cache, buffers, executor, kernels, projections, cancel};
  embed_tokens(pass);
  if (!forward_from_layer(pass, 0)) {
    release_cells(batch, cache);
    return fail(ErrorCode::cancelled, "the forward pass was cancelled");
  }
  return success();
}

LAMINA_NAMESPACE_END
