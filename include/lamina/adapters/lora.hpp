// lamina/adapters/lora.hpp — LoRA adapters at run time: what an adapter holds, stacks of
// adapters with per-adapter scales, and applying the stacks of a batch's sequences to the output
// of one projection without touching the base weights.
//
// An adapter changes some of the seven weight matrices of each layer. For one matrix W [out, in]
// it holds A [rank, in] and B [out, rank], and a projection with a stack of (adapter_i, scale_i)
// computes
//
//   y = W x + sum_i scale_i * scaling_i * B_i (A_i x)          scaling = alpha / rank
//                                                               (rsLoRA: alpha / sqrt(rank))
// DoRA (PEFT's definition) rescales each output row by m / ||W + scaling B A||_row; lamina's
// stack scale multiplies the whole change, so scale 0 switches it off and 1 is PEFT's output:
//
//   y += scale * ((m / n) * (W x + scaling * B A x) - W x)
//
// Loading (GGUF here through adapters/lora_load.hpp; PEFT directories through
// adapters/peft.hpp) checks every matrix against the base model, so applying never fails.
//
// How a batch is served (in the spirit of Punica / S-LoRA's segmented kernels): the tokens are
// grouped by the stack of their sequence once per forward pass; every projection then runs the
// base matrix product over all tokens, and for each group and each adapter of its stack two
// small products (A x: [tokens, rank], then B (A x): [tokens, out]) on the group's tokens only.
// The results of a token do not depend on the other groups of its batch.
#pragma once

#include "../config.hpp"
#include "../core/executor.hpp"
#include "../core/half.hpp"
#include "../core/result.hpp"
#include "../core/fingerprint.hpp"
#include "../core/tensor.hpp"
#include "../kernels/cpu/kernels.hpp"
#include "../kernels/cpu/matmul.hpp"
#include "../model/hparams.hpp"
#include "../model/kv_cache.hpp"
#include "../model/projection.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN

// One adapted matrix: delta W = scaling * B A.
struct LoraModule {
  std::uint32_t rank = 0;   // 0: the adapter leaves this matrix alone
  std::uint32_t in = 0;     // columns of W
  std::uint32_t out = 0;    // rows of W
  float scaling = 1.0f;     // alpha / rank, or alpha / sqrt(rank) (rsLoRA)
  // The factors as the kernels read them: F32, or F16 when the base weights are quantized (the
  // base's own quantization error is a hundred times larger, and decoding reads half the bytes).
  DType factor_type = DType::f32;
  std::vector<std::uint8_t> a;  // [rank, in]
  // B transposed, [rank, out]: a token's change B u is then the sum over k of u[k] times row k,
  // whole vectors of outputs at a time (stored as [out, rank], each output would be a dot
  // product of `rank` values: a call per output).
  std::vector<std::uint8_t> b;
  // DoRA: m (PEFT's lora_magnitude_vector) and m / ||W + scaling B A|| per output row; empty
  // for plain LoRA.
  std::vector<float> magnitude;  // [out]
  std::vector<float> row_scale;  // [out]

  bool active() const { return rank > 0; }
  bool dora() const { return !row_scale.empty(); }
  // A[r][i] and B[o][r] as floats.
  float a_at(std::size_t r, std::size_t i) const { return factor(a, r * in + i); }
  float b_at(std::size_t o, std::size_t r) const { return factor(b, r * out + o); }
  // y[o] += scale * B[o][k] for o in [begin, end): row k of the stored (transposed) B.
  void add_b_row(const cpu::CpuKernels& kernels, std::size_t k, float scale, float* y, std::size_t begin, std::size_t end) const {
    if (factor_type == DType::f16) {
      kernels.scaled_add_f16(y + begin, reinterpret_cast<const std::uint16_t*>(b.data()) + k * out + begin, scale, end - begin);
    } else {
      kernels.scaled_add(y + begin, reinterpret_cast<const float*>(b.data()) + k * out + begin, scale, end - begin);
    }
  }

 private:
  float factor(const std::vector<std::uint8_t>& bytes, std::size_t index) const {
    if (factor_type == DType::f16) {
      std::uint16_t half;
      std::memcpy(&half, bytes.data() + 2 * index, 2);
      return f16_to_f32(half);
    }
    float value;
    std::memcpy(&value, bytes.data() + 4 * index, 4);
    return value;
  }
};

// The shapes that decide whether an adapter fits a model.
struct AdapterShape {
  std::uint32_t block_count = 0;
  std::uint32_t embedding_length = 0;
  std::uint32_t query_width = 0;
  std::uint32_t kv_width = 0;
  std::uint32_t feed_forward_length = 0;

  static AdapterShape of(const ModelHparams& hparams) {
    return {hparams.block_count, hparams.embedding_length, hparams.query_width(), hparams.kv_width(), hparams.feed_forward_length};
  }
  bool operator==(const AdapterShape& other) const {
    return block_count == other.block_count && embedding_length == other.embedding_length && query_width == other.query_width &&
           kv_width == other.kv_width && feed_forward_length == other.feed_forward_length;
  }
};

// An adapter, checked against a base model and immutable: any number of sessions and sequences
// share one. Built by adapters/lora_load.hpp (GGUF, or factors from anywhere) and
// adapters/peft.hpp (PEFT directories).
class LoraAdapter {
 public:
  // `modules`: [block_count × projection_count], rank 0 where the adapter changes nothing.
  LoraAdapter(std::string name, AdapterShape shape, std::vector<LoraModule> modules)
      : name_(std::move(name)), shape_(shape), modules_(std::move(modules)) {
    Fingerprint content;
    content.add(shape_.block_count).add(shape_.embedding_length).add(shape_.query_width).add(shape_.kv_width).add(shape_.feed_forward_length);
    for (const LoraModule& module : modules_) {
      if (module.rank > max_rank_) max_rank_ = module.rank;
      if (module.active()) ++active_module_count_;
      std::uint32_t scaling_bits;
      std::memcpy(&scaling_bits, &module.scaling, 4);
      content.add(module.rank).add(module.in).add(module.out).add(scaling_bits).add(static_cast<std::uint64_t>(module.factor_type));
      content.add_bytes(module.a.data(), module.a.size()).add_bytes(module.b.data(), module.b.size());
      content.add_bytes(module.magnitude.data(), module.magnitude.size() * sizeof(float));
      content.add_bytes(module.row_scale.data(), module.row_scale.size() * sizeof(float));
    }
    fingerprint_ = content.value();
  }

  const std::string& name() const { return name_; }
  const AdapterShape& shape() const { return shape_; }
  // What the adapter changes, as one number (core/fingerprint.hpp): equal for the same factors,
  // scalings and shapes, whatever the file or name. Saved session states name adapters by it.
  std::uint64_t fingerprint() const { return fingerprint_; }
  const LoraModule& module(std::uint32_t layer, Projection projection) const {
    return modules_[static_cast<std::size_t>(layer) * projection_count + static_cast<std::size_t>(projection)];
  }
  std::uint32_t max_rank() const { return max_rank_; }
  std::size_t active_module_count() const { return active_module_count_; }
  bool has_dora() const {
    for (const LoraModule& module : modules_) if (module.dora()) return true;
    return false;
  }
  // Bytes of factors a token reads when the adapter is applied unmerged.
  std::size_t factor_bytes() const {
    std::size_t bytes = 0;
    for (const LoraModule& module : modules_) bytes += module.a.size() + module.b.size();
    return bytes;
  }

 private:
  std::string name_;
  AdapterShape shape_;
  std::vector<LoraModule> modules_;
  std::uint32_t max_rank_ = 0;
  std::size_t active_module_count_ = 0;
  std::uint64_t fingerprint_ = 0;
};

// One entry of a stack: an adapter and how strongly it applies (any float; negative subtracts).
struct AdapterStackEntry {
  std::shared_ptr<const LoraAdapter> adapter;
  float scale = 1.0f;
};

// The adapters of a sequence, applied in order (their changes add up).
using AdapterStack = std::vector<AdapterStackEntry>;

inline bool same_stack(const AdapterStack& a, const AdapterStack& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].adapter != b[i].adapter || !(a[i].scale == b[i].scale)) return false;
  }
  return true;
}

// Whether a stack changes anything (an empty stack, or only zero scales, does not).
inline bool stack_is_active(const AdapterStack& stack) {
  for (const AdapterStackEntry& entry : stack) if (entry.adapter != nullptr && entry.scale != 0.0f) return true;
  return false;
}

// The adapter stacks of one forward pass: the batch's tokens grouped by the stack of their
// sequence, and the scratch the small products need. Sized once per session; grouping a batch
// allocates nothing.
class LoraBatch final : public ProjectionHook {
 public:
  LoraBatch() = default;
  // `max_tokens`: batch size; `max_rank`: the largest adapter rank the session accepts;
  // `widest_out`: the largest projection output width.
  LoraBatch(std::size_t max_tokens, std::size_t max_groups, std::size_t max_rank, std::size_t widest_out)
      : max_rank_(max_rank),
        order_(max_tokens),
        group_begin_(max_groups + 1),
        group_stack_(max_groups),
        rank_out_(max_tokens * max_rank),
        delta_(max_tokens * widest_out),
        base_(max_tokens * widest_out) {}

  // What the constructor allocates, in bytes (in floating point, so nothing overflows).
  static double bytes_needed(std::size_t max_tokens, std::size_t max_groups, std::size_t max_rank, std::size_t widest_out) {
    const double tokens = static_cast<double>(max_tokens);
    return 4.0 * tokens + 4.0 * (static_cast<double>(max_groups) + 1) + sizeof(void*) * static_cast<double>(max_groups) +
           4.0 * tokens * (static_cast<double>(max_rank) + 2.0 * static_cast<double>(widest_out));
  }

  std::size_t max_rank() const { return max_rank_; }
  std::size_t max_tokens() const { return order_.size(); }

  // Groups the batch's tokens by the stack of their sequence. `stack_of(sequence)` returns the
  // sequence's stack (a pointer that stays valid during the forward pass). Sequences with equal
  // stacks share a group. Returns false when nothing applies (no forward work at all).
  template <class StackOf>
  bool group(const SequenceId* sequences, std::size_t token_count, StackOf&& stack_of) {
    group_count_ = 0;
    all_in_one_group_ = false;
    std::size_t placed = 0;
    // Tokens keep their batch order inside a group; a group per distinct active stack.
    for (std::size_t first = 0; first < token_count && placed < token_count; ++first) {
      const AdapterStack* stack = stack_of(sequences[first]);
      if (stack == nullptr || !stack_is_active(*stack)) continue;
      bool grouped = false;
      for (std::size_t g = 0; g < group_count_ && !grouped; ++g) grouped = same_stack(*group_stack_[g], *stack);
      if (grouped) continue;
      if (group_count_ + 1 >= group_begin_.size()) break;  // more stacks than sequences: cannot happen
      group_begin_[group_count_] = static_cast<std::uint32_t>(placed);
      group_stack_[group_count_] = stack;
      for (std::size_t t = first; t < token_count; ++t) {
        const AdapterStack* other = stack_of(sequences[t]);
        if (other == stack || (other != nullptr && same_stack(*other, *stack))) order_[placed++] = static_cast<std::uint32_t>(t);
      }
      ++group_count_;
      group_begin_[group_count_] = static_cast<std::uint32_t>(placed);
    }
    all_in_one_group_ = group_count_ == 1 && placed == token_count;
    return group_count_ > 0;
  }

  // The groups of the last group() call, for backends that apply the changes themselves:
  // group g's tokens are group_tokens(g)[0 .. group_token_count(g)) (batch indices, in batch
  // order), and the groups' lists lie one after another from group_tokens(0).
  std::size_t group_count() const { return group_count_; }
  const AdapterStack& group_stack(std::size_t g) const { return *group_stack_[g]; }
  const std::uint32_t* group_tokens(std::size_t g) const { return order_.data() + group_begin_[g]; }
  std::size_t group_token_count(std::size_t g) const { return group_begin_[g + 1] - group_begin_[g]; }
  std::size_t group_offset(std::size_t g) const { return group_begin_[g]; }

  // Whether any group's stack changes matrix `projection` of layer `layer`.
  bool changes(std::uint32_t layer, Projection projection) const {
    for (std::size_t g = 0; g < group_count_; ++g) {
      for (const AdapterStackEntry& entry : *group_stack_[g]) {
        if (entry.adapter != nullptr && entry.scale != 0.0f && entry.adapter->module(layer, projection).active()) return true;
      }
    }
    return false;
  }

  // y [token_count, out] = x W^T plus every group's changes to matrix `projection` of layer
  // `layer`. Few tokens (decoding): A x first, then B (A x) added to each chunk of output rows
  // inside the base product, while the rows are hot and without a second round of parallel jobs
  // (the adapters' bytes are read by the same threads in the same sweep). Otherwise, and for
  // DoRA: the base product, then apply().
  void project(Executor& executor, const cpu::CpuKernels& kernels, cpu::MatmulWorkspace& workspace, std::uint32_t layer,
               Projection projection, const TensorView& weight, const float* x, float* y, std::size_t token_count) override {
    const std::size_t in = static_cast<std::size_t>(weight.row_length()), out = static_cast<std::size_t>(weight.row_count());
    if (!changes(layer, projection)) {
      cpu::matmul(executor, kernels, weight, x, y, token_count, workspace);
      return;
    }
    if (!prepare_fused(executor, kernels, layer, projection, x, in, out)) {
      cpu::matmul(executor, kernels, weight, x, y, token_count, workspace);
      apply(executor, kernels, layer, projection, x, in, y, out);
      return;
    }
    fused_y_ = y;
    cpu::MatmulEpilogue epilogue;
    epilogue.function = &LoraBatch::add_fused_rows;
    epilogue.context = this;
    cpu::matmul(executor, kernels, weight, x, y, token_count, workspace, &epilogue);
  }

  // y [token_count, out] += the changes of every group's stack to matrix `projection` of
  // layer `layer`, whose input was x [token_count, in] and whose plain output y is.
  void apply(Executor& executor, const cpu::CpuKernels& kernels, std::uint32_t layer, Projection projection, const float* x, std::size_t in,
             float* y, std::size_t out) {
    for (std::size_t g = 0; g < group_count_; ++g) {
      const AdapterStack& stack = *group_stack_[g];
      const std::uint32_t* tokens = order_.data() + group_begin_[g];
      const std::size_t count = group_begin_[g + 1] - group_begin_[g];
      // DoRA needs W x without any adapter's change: keep it before the first change lands.
      for (const AdapterStackEntry& entry : stack) {
        if (entry.adapter == nullptr || entry.scale == 0.0f || !entry.adapter->module(layer, projection).dora()) continue;
        for (std::size_t t = 0; t < count; ++t) std::memcpy(base_.data() + t * out, y + row_of(tokens, t) * out, out * sizeof(float));
        break;
      }
      for (const AdapterStackEntry& entry : stack) {
        if (entry.adapter == nullptr || entry.scale == 0.0f) continue;
        const LoraModule& module = entry.adapter->module(layer, projection);
        if (!module.active()) continue;
        // u = x A^T [count, rank], then B u: rank scaled rows of the transposed B per token.
        const std::size_t products = count * module.rank;
        const std::size_t chunks = std::min<std::size_t>(products / 4 > 0 ? products / 4 : 1, 4 * executor.concurrency());
        parallel_chunks(executor, products, chunks, [&](std::size_t, std::size_t begin, std::size_t end) {
          for (std::size_t i = begin; i < end; ++i) {
            const std::size_t t = i / module.rank, r = i % module.rank;
            rank_out_[i] = a_row_dot(kernels, module, r, x + row_of(tokens, t) * in, in);
          }
        });
        const float scaled = entry.scale * module.scaling;
        for (std::size_t t = 0; t < count; ++t) {
          float* target = y + row_of(tokens, t) * out;
          const float* u = rank_out_.data() + t * module.rank;
          if (!module.dora()) {
            for (std::size_t k = 0; k < module.rank; ++k) module.add_b_row(kernels, k, scaled * u[k], target, 0, out);
            continue;
          }
          float* change = delta_.data();
          std::memset(change, 0, out * sizeof(float));
          for (std::size_t k = 0; k < module.rank; ++k) module.add_b_row(kernels, k, u[k], change, 0, out);
          const float* base = base_.data() + t * out;
          for (std::size_t o = 0; o < out; ++o) {
            const float d = module.row_scale[o];
            target[o] += entry.scale * ((d - 1.0f) * base[o] + d * module.scaling * change[o]);
          }
        }
      }
    }
  }

 private:
  std::size_t row_of(const std::uint32_t* tokens, std::size_t t) const { return all_in_one_group_ ? t : tokens[t]; }

  // u[r] = A[r] · x for one token: a dot product per row of A, in the fused path and in
  // apply() alike, so that a token's change is the same in any pass (whatever its size and
  // path) and a prompt read in pieces keeps the logits of one call. A is small (rank rows);
  // the products run at the cache's speed.
  static float a_row_dot(const cpu::CpuKernels& kernels, const LoraModule& module, std::size_t r, const float* x, std::size_t in) {
    return module.factor_type == DType::f16 ? kernels.dot_f16(reinterpret_cast<const std::uint16_t*>(module.a.data()) + r * in, x, in)
                                            : kernels.dot(reinterpret_cast<const float*>(module.a.data()) + r * in, x, in);
  }

  // One (group, adapter) of the fused path: its A x, [group tokens, rank], is in u_ at `u`.
  struct FusedEntry {
    const LoraModule* module = nullptr;
    float factor = 0.0f;  // stack scale × the module's scaling
    std::size_t group = 0;
    std::size_t u = 0;
  };

  // The fused path applies to batches of at most this many tokens per group.
  static constexpr std::size_t fused_max_tokens = 8;

  // Computes A x of every (group, adapter) that changes the matrix into u_; false (nothing
  // done) when the fused path does not apply: large groups, DoRA, or too little room. Both
  // paths give the same values (a_row_dot, then the same additions in the same order).
  bool prepare_fused(Executor& executor, const cpu::CpuKernels& kernels, std::uint32_t layer, Projection projection, const float* x,
                     std::size_t in, std::size_t out) {
    fused_count_ = 0;
    std::size_t u_floats = 0;
    for (std::size_t g = 0; g < group_count_; ++g) {
      const std::size_t count = group_begin_[g + 1] - group_begin_[g];
      if (count > fused_max_tokens) return false;
      for (const AdapterStackEntry& entry : *group_stack_[g]) {
        if (entry.adapter == nullptr || entry.scale == 0.0f) continue;
        const LoraModule& module = entry.adapter->module(layer, projection);
        if (!module.active()) continue;
        if (module.dora() || fused_count_ == fused_.size()) return false;
        fused_[fused_count_++] = {&module, entry.scale * module.scaling, g, u_floats};
        u_floats += count * module.rank;
      }
    }
    if (u_floats > rank_out_.size()) return false;
    // u[t][r] = A[r] · x_t for every row r of every entry's A, the rows of all entries shared
    // out between the threads (one row each is a few hundred bytes to a few KiB: spread over
    // the cores, the A factors stream at the machine's bandwidth, not one core's).
    std::size_t a_rows = 0;
    for (std::size_t e = 0; e < fused_count_; ++e) a_rows += fused_[e].module->rank;
    const std::size_t chunks = std::min<std::size_t>(a_rows / 4 > 0 ? a_rows / 4 : 1, 4 * executor.concurrency());
    parallel_chunks(executor, a_rows, chunks, [&](std::size_t, std::size_t begin, std::size_t end) {
      std::size_t e = 0, first_row = 0;  // the entry holding row `begin`, and its first row's index
      while (begin >= first_row + fused_[e].module->rank) first_row += fused_[e++].module->rank;
      for (std::size_t row = begin; row < end; ++row) {
        while (row >= first_row + fused_[e].module->rank) first_row += fused_[e++].module->rank;
        const FusedEntry& entry = fused_[e];
        const LoraModule& module = *entry.module;
        const std::size_t r = row - first_row;
        const std::uint32_t* tokens = order_.data() + group_begin_[entry.group];
        const std::size_t count = group_begin_[entry.group + 1] - group_begin_[entry.group];
        for (std::size_t t = 0; t < count; ++t) rank_out_[entry.u + t * module.rank + r] = a_row_dot(kernels, module, r, x + row_of(tokens, t) * in, in);
      }
    });
    fused_kernels_ = &kernels;
    fused_out_ = out;
    return true;
  }

  // The epilogue of the base product: y[t][o] += factor * sum_k B[o][k] u[t][k] for the chunk's rows.
  static void add_fused_rows(void* context, std::size_t row_begin, std::size_t row_end) {
    LoraBatch& self = *static_cast<LoraBatch*>(context);
    for (std::size_t e = 0; e < self.fused_count_; ++e) {
      const FusedEntry& entry = self.fused_[e];
      const LoraModule& module = *entry.module;
      const std::uint32_t* tokens = self.order_.data() + self.group_begin_[entry.group];
      const std::size_t count = self.group_begin_[entry.group + 1] - self.group_begin_[entry.group];
      for (std::size_t t = 0; t < count; ++t) {
        const float* u = self.rank_out_.data() + entry.u + t * module.rank;
        float* y = self.fused_y_ + self.row_of(tokens, t) * self.fused_out_;
        for (std::size_t k = 0; k < module.rank; ++k) module.add_b_row(*self.fused_kernels_, k, entry.factor * u[k], y, row_begin, row_end);
      }
    }
  }

  std::size_t max_rank_ = 0;
  std::vector<std::uint32_t> order_;        // [max_tokens] token indices, grouped
  std::vector<std::uint32_t> group_begin_;  // [max_groups + 1] where each group starts in order_
  std::vector<const AdapterStack*> group_stack_;
  std::size_t group_count_ = 0;
  bool all_in_one_group_ = false;  // every token in one group, in batch order: no gathering
  std::vector<float> rank_out_;    // [max_tokens, max_rank] A x
  std::vector<float> delta_;       // [max_tokens, widest_out] B (A x), for DoRA
  std::vector<float> base_;        // [max_tokens, widest_out] W x, for DoRA
  // The fused path's state between prepare_fused() and the epilogues of one product.
  std::vector<FusedEntry> fused_ = std::vector<FusedEntry>(64);
  std::size_t fused_count_ = 0;
  const cpu::CpuKernels* fused_kernels_ = nullptr;
  float* fused_y_ = nullptr;
  std::size_t fused_out_ = 0;
};

LAMINA_NAMESPACE_END
