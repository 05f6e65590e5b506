// lamina/quant/quantize_model.hpp — converting a GGUF model to another weight type, as llama-quantize does.
//
//   lamina::QuantizeOptions options;
//   options.file_type = *lamina::parse_file_type("q4_k_m");
//   lamina::Result<lamina::QuantizeReport> report = lamina::quantize_model("model-f16.gguf", "model-q4_k_m.gguf", options);
//
// A "file type" (llama.cpp's llama_ftype, stored as general.file_type) is a recipe, not one
// tensor type: Q4_K_M gives most weights Q4_K but attn_v, ffn_down in some layers and the
// output matrix Q6_K. plan_tensor_types() reproduces llama.cpp's choice (src/llama-quant.cpp,
// llama_tensor_get_type) tensor by tensor, without an importance matrix:
//   - only tensors of 2+ dimensions whose name ends in "weight" are converted; norms, biases and
//     a few small special tensors keep their type;
//   - output.weight (and token_embd.weight when the embeddings are tied) becomes Q6_K for every
//     quantized file type except Q8_0, or Q8_0 when its rows do not split into blocks;
//   - the _M/_S/_L and Q2_K/Q3_K/IQ4 recipes raise attn_v / ffn_down / attn_output in the layers
//     llama.cpp picks (use_more_bits: the first and last eighth and every third layer between);
//   - a tensor whose row length is not a multiple of the block size falls back as llama.cpp's
//     tensor_type_fallback does (Q4_K -> Q5_0, Q6_K -> Q8_0, IQ4_XS -> IQ4_NL, …, else F16).
// With `pure`, every convertible tensor gets the file type's base type (llama-quantize --pure).
// Each tensor is converted by quant::quantize_row, which gives llama-quantize's bytes, so a file
// made here and one made by llama-quantize hold the same tensors, in the same (llama.cpp's) order.
#pragma once

#include "../config.hpp"
#include "../core/dtype.hpp"
#include "../core/executor.hpp"
#include "../core/result.hpp"
#include "../io/gguf.hpp"
#include "quant.hpp"
#include "../io/gguf_stream.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN

// llama.cpp's llama_ftype values (general.file_type), for the recipes lamina can produce.
enum class FileType : std::uint32_t {
  f32 = 0,      // LLAMA_FTYPE_ALL_F32
  f16 = 1,      // LLAMA_FTYPE_MOSTLY_F16
  q4_0 = 2,
  q4_1 = 3,
  q8_0 = 7,
  q5_0 = 8,
  q5_1 = 9,
  q2_k = 10,
  q3_k_s = 11,
  q3_k_m = 12,
  q3_k_l = 13,
  q4_k_s = 14,
  q4_k_m = 15,
  q5_k_s = 16,
  q5_k_m = 17,
  q6_k = 18,
  iq4_nl = 25,
  iq4_xs = 30,
  bf16 = 32,
};

struct FileTypeInfo {
  FileType type;
  const char* name;     // as lamina and llama-quantize spell it (case does not matter when parsing)
  DType base_type;      // what most weights become
  const char* summary;
};

// Every file type lamina can write, in llama-quantize's order.
inline const std::vector<FileTypeInfo>& file_types() {
  static const std::vector<FileTypeInfo> table = {
      {FileType::q4_0, "q4_0", DType::q4_0, "4.5 bits per weight, one scale per 32"},
      {FileType::q4_1, "q4_1", DType::q4_1, "5.0 bpw, scale and minimum per 32"},
      {FileType::q5_0, "q5_0", DType::q5_0, "5.5 bpw"},
      {FileType::q5_1, "q5_1", DType::q5_1, "6.0 bpw"},
      {FileType::q2_k, "q2_k", DType::q2_k, "Q2_K mix (attn_v, ffn_down, attn_output Q3_K/Q4_K)"},
      {FileType::q3_k_s, "q3_k_s", DType::q3_k, "Q3_K everywhere but the output"},
      {FileType::q3_k_m, "q3_k_m", DType::q3_k, "Q3_K mix (attn_v Q4_K/Q5_K, ffn_down Q4_K/Q5_K, attn_output Q4_K)"},
      {FileType::q3_k_l, "q3_k_l", DType::q3_k, "Q3_K mix (attn_v, ffn_down, attn_output Q5_K)"},
      {FileType::iq4_nl, "iq4_nl", DType::iq4_nl, "4.5 bpw non-linear (attn_v Q5_K with GQA >= 4)"},
      {FileType::iq4_xs, "iq4_xs", DType::iq4_xs, "4.25 bpw non-linear (attn_v Q5_K with GQA >= 4)"},
      {FileType::q4_k_s, "q4_k_s", DType::q4_k, "Q4_K mix (first attn_v / ffn_down Q5_K)"},
      {FileType::q4_k_m, "q4_k_m", DType::q4_k, "Q4_K mix (half of attn_v and ffn_down Q6_K)"},
      {FileType::q5_k_s, "q5_k_s", DType::q5_k, "Q5_K everywhere but the output"},
      {FileType::q5_k_m, "q5_k_m", DType::q5_k, "Q5_K mix (half of attn_v and ffn_down Q6_K)"},
      {FileType::q6_k, "q6_k", DType::q6_k, "6.56 bpw"},
      {FileType::q8_0, "q8_0", DType::q8_0, "8.5 bpw"},
      {FileType::f16, "f16", DType::f16, "IEEE half precision"},
      {FileType::bf16, "bf16", DType::bf16, "bfloat16"},
      {FileType::f32, "f32", DType::f32, "single precision"},
  };
  return table;
}

inline const FileTypeInfo* find_file_type(FileType type) {
  for (const FileTypeInfo& info : file_types()) if (info.type == type) return &info;
  return nullptr;
}

inline const char* file_type_name(FileType type) {
  const FileTypeInfo* info = find_file_type(type);
  return info != nullptr ? info->name : "unknown";
}

inline DType file_type_base_dtype(FileType type) {
  const FileTypeInfo* info = find_file_type(type);
  return info != nullptr ? info->base_type : DType::f32;
}

// "q4_k_m", "Q4_K_M", and llama-quantize's aliases "q3_k" / "q4_k" / "q5_k" (= the _M recipes).
inline Result<FileType> parse_file_type(std::string_view text) {
  std::string name(text);
  for (char& c : name) if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (name == "q3_k") name = "q3_k_m";
  if (name == "q4_k") name = "q4_k_m";
  if (name == "q5_k") name = "q5_k_m";
  for (const FileTypeInfo& info : file_types()) {
    if (name == info.name) return info.type;
  }
  std::string known;
  for (const FileTypeInfo& info : file_types()) known += (known.empty() ? "" : ", ") + std::string(info.name);
  return fail(ErrorCode::invalid_argument, "unknown type '" + std::string(text) + "' (known: " + known + "; q3_k, q4_k, q5_k mean the _m recipes)");
}

// What the tensor-type recipe needs to know about a model besides its tensors.
struct QuantizationModelInfo {
  std::string architecture;          // general.architecture
  std::uint32_t block_count = 0;     // layers (counts ffn_down & co. as llama.cpp does)
  std::uint32_t head_count = 0;      // 0 when unknown
  std::uint32_t head_count_kv = 0;   // 0 when unknown
  std::uint32_t expert_count = 0;

  // Query heads per KV head (llama.cpp's n_gqa()); 1 when unknown.
  std::uint32_t grouped_query_factor() const {
    return head_count != 0 && head_count_kv != 0 && head_count % head_count_kv == 0 ? head_count / head_count_kv : 1;
  }
};

// One tensor as the recipe sees it: name, current type and shape (outermost first).
struct TensorDescription {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;
};

struct TensorPlan {
  DType type = DType::f32;   // what the tensor becomes
  bool convertible = false;  // a weight matrix the recipe may convert (else it is copied as it is)
  bool fell_back = false;    // its rows did not fit the recipe's type; `type` is llama.cpp's fallback
};

namespace detail {

enum class TensorCategory {
  token_embedding, attention_q, attention_v, attention_k, attention_qkv, attention_kv_b,
  attention_output, ffn_up, ffn_gate, ffn_down, output, other,
};

inline bool contains(const std::string& text, const char* part) { return text.find(part) != std::string::npos; }

inline TensorCategory tensor_category(const std::string& name) {
  if (name == "output.weight") return TensorCategory::output;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return TensorCategory::token_embedding;
  if (contains(name, "attn_qkv.weight")) return TensorCategory::attention_qkv;
  if (contains(name, "attn_kv_b.weight")) return TensorCategory::attention_kv_b;
  if (contains(name, "attn_v.weight")) return TensorCategory::attention_v;
  if (contains(name, "attn_k.weight")) return TensorCategory::attention_k;
  if (contains(name, "attn_q.weight")) return TensorCategory::attention_q;
  if (contains(name, "attn_output.weight")) return TensorCategory::attention_output;
  if (contains(name, "ffn_up")) return TensorCategory::ffn_up;
  if (contains(name, "ffn_gate")) return TensorCategory::ffn_gate;
  if (contains(name, "ffn_down")) return TensorCategory::ffn_down;
  return TensorCategory::other;
}

inline bool is_attention_v_like(TensorCategory category) {
  return category == TensorCategory::attention_v || category == TensorCategory::attention_qkv ||
         category == TensorCategory::attention_kv_b;
}

// GGML's ggml_n_dims: the rank without outer dimensions of extent 1.
inline std::size_t effective_rank(const std::vector<std::int64_t>& shape) {
  std::size_t leading_ones = 0;
  while (leading_ones + 1 < shape.size() && shape[leading_ones] == 1) ++leading_ones;
  return shape.size() - leading_ones;
}

// llama.cpp's tensor_allows_quantization (the cases that exist for llama-family files and the
// special tensors of other architectures that llama.cpp names).
inline bool tensor_allows_conversion(const TensorDescription& tensor) {
  if (effective_rank(tensor.shape) < 2) return false;
  const std::string& name = tensor.name;
  if (name.size() < 6 || name.compare(name.size() - 6, 6, "weight") != 0) return false;
  static const char* const kept[] = {
      "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
      "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
      "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight", "time_mix_v0.weight",
      "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight",
      "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
      "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_",
      ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
  };
  for (const char* part : kept) if (contains(name, part)) return false;
  if (name == "position_embd.weight" || name == "token_types.weight") return false;
  return true;
}

// "blk.12.attn_v.weight" -> 12; -1 for tensors outside the layers.
inline int layer_of(const std::string& name) {
  if (name.compare(0, 4, "blk.") != 0) return -1;
  int layer = 0;
  std::size_t i = 4;
  if (i >= name.size() || name[i] < '0' || name[i] > '9') return -1;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9'; ++i) {
    if (layer > 100000000) return -1;
    layer = layer * 10 + (name[i] - '0');
  }
  return i < name.size() && name[i] == '.' ? layer : -1;
}

// llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between.
inline bool use_more_bits(int layer, int layer_count) {
  return layer < layer_count / 8 || layer >= 7 * layer_count / 8 || (layer - layer_count / 8) % 3 == 2;
}

struct RecipeState {
  int attention_v_count = 0;
  int attention_v_index = 0;
  int ffn_down_index = 0;
  int layer_count = 0;
  bool tied_embeddings = true;
};

// llama_tensor_get_type_impl for the file types lamina writes (no importance matrix).
inline DType recipe_type(RecipeState& state, const QuantizationModelInfo& model, const TensorDescription& tensor,
                         TensorCategory category, FileType file_type, DType type) {
  const bool falcon = model.architecture == "falcon";
  const std::uint32_t gqa = model.grouped_query_factor();
  const bool eight_experts = model.expert_count == 8;
  const std::int64_t row_length = tensor.shape.back();
  if (category == TensorCategory::output || (state.tied_embeddings && category == TensorCategory::token_embedding)) {
    // The output matrix (or the tied embedding that serves as it) matters most: Q6_K.
    if (falcon || row_length % static_cast<std::int64_t>(dtype_traits(type).block_size) != 0) return DType::q8_0;
    return type != DType::q8_0 ? DType::q6_k : type;
  }
  if (category == TensorCategory::token_embedding) return type;
  if (is_attention_v_like(category)) {
    const int index = state.attention_v_index++;
    if (file_type == FileType::q2_k) type = gqa >= 4 ? DType::q4_k : DType::q3_k;
    else if (file_type == FileType::q3_k_m) type = index < 2 ? DType::q5_k : DType::q4_k;
    else if (file_type == FileType::q3_k_l) type = DType::q5_k;
    else if ((file_type == FileType::iq4_nl || file_type == FileType::iq4_xs) && gqa >= 4) type = DType::q5_k;
    else if ((file_type == FileType::q4_k_m || file_type == FileType::q5_k_m) && use_more_bits(index, state.attention_v_count)) type = DType::q6_k;
    else if (file_type == FileType::q4_k_s && index < 4) type = DType::q5_k;
    // A 70B Llama shares each attn_v among 8 query heads: more bits cost little there.
    const bool llama_70b = model.architecture == "llama" && model.block_count == 80 && model.head_count != model.head_count_kv;
    if (llama_70b && (type == DType::q3_k || type == DType::q4_k)) type = DType::q5_k;
    if (eight_experts) type = DType::q8_0;
    return type;
  }
  if (category == TensorCategory::attention_k) return eight_experts ? DType::q8_0 : type;
  if (category == TensorCategory::ffn_down) {
    int layer = state.ffn_down_index++;
    const int layer_count = state.layer_count;
    if (model.expert_count > 1) layer = layer_of(tensor.name);  // experts are not in layer order
    if (file_type == FileType::q2_k) type = DType::q3_k;
    else if (file_type == FileType::q3_k_m) {
      type = layer < layer_count / 16 ? DType::q5_k : (!falcon || use_more_bits(layer, layer_count)) ? DType::q4_k : DType::q3_k;
    } else if (file_type == FileType::q3_k_l) type = falcon ? DType::q4_k : DType::q5_k;
    else if (file_type == FileType::q4_k_m) {
      if (falcon) type = layer < layer_count / 16 ? DType::q6_k : use_more_bits(layer, layer_count) ? DType::q5_k : DType::q4_k;
      else if (use_more_bits(layer, layer_count)) type = DType::q6_k;
    } else if (layer < layer_count / 8 && (file_type == FileType::iq4_nl || file_type == FileType::iq4_xs)) type = DType::q5_k;
    else if (file_type == FileType::q5_k_m && use_more_bits(layer, layer_count)) type = DType::q6_k;
    else if (file_type == FileType::q4_k_s && !falcon && layer < layer_count / 8) type = DType::q5_k;
    return type;
  }
  if (category == TensorCategory::attention_output) {
    if (!falcon) {
      if (eight_experts) {
        if (file_type == FileType::q2_k || file_type == FileType::q3_k_s || file_type == FileType::q3_k_m ||
            file_type == FileType::iq4_nl || file_type == FileType::q4_k_s || file_type == FileType::q4_k_m ||
            file_type == FileType::iq4_xs) {
          type = DType::q5_k;
        }
      } else if (file_type == FileType::q2_k) type = DType::q3_k;
      else if (file_type == FileType::q3_k_m) type = DType::q4_k;
      else if (file_type == FileType::q3_k_l) type = DType::q5_k;
    } else if (file_type == FileType::q3_k_l) {
      type = DType::q4_k;
    }
    return type;
  }
  return type;
}

// llama.cpp's tensor_type_fallback: a type whose blocks fit rows of `row_length`, or f32 as
// "none" (the caller reports it).
inline DType fallback_type(DType type, std::int64_t row_length) {
  DType fallback;
  switch (type) {
    case DType::iq4_xs: fallback = DType::iq4_nl; break;
    case DType::q2_k:
    case DType::q3_k: fallback = DType::q4_0; break;
    case DType::q4_k: fallback = DType::q5_0; break;
    case DType::q5_k: fallback = DType::q5_1; break;
    case DType::q6_k: fallback = DType::q8_0; break;
    default: return DType::f32;
  }
  if (row_length % static_cast<std::int64_t>(dtype_traits(fallback).block_size) != 0) fallback = DType::f16;
  return fallback;
}

// llama.cpp's tensor order in the files it writes: the tensors outside layers first, then layer
// by layer, by name within each (llama_model_loader::weight_name_comparer).
inline bool llama_cpp_tensor_order(const std::string& a, const std::string& b) {
  const int layer_a = layer_of(a);
  const int layer_b = layer_of(b);
  if (layer_a != layer_b) return layer_a < layer_b;
  return a < b;
}

}  // namespace detail

struct QuantizationRecipe {
  FileType file_type = FileType::q8_0;
  bool pure = false;  // every convertible tensor gets the base type (llama-quantize --pure)
};

// The type each tensor gets (tensors in any order; the plan follows their order). Errors when a
// tensor's rows fit neither the recipe's type nor a fallback (ErrorCode::unsupported).
inline Result<std::vector<TensorPlan>> plan_tensor_types(const QuantizationModelInfo& model,
                                                         const std::vector<TensorDescription>& tensors,
                                                         const QuantizationRecipe& recipe) {
  if (find_file_type(recipe.file_type) == nullptr) {
    return fail(ErrorCode::unsupported, "file type " + std::to_string(static_cast<std::uint32_t>(recipe.file_type)) + " is not one lamina writes");
  }
  const DType base = file_type_base_dtype(recipe.file_type);
  detail::RecipeState state;
  state.layer_count = static_cast<int>(model.block_count);
  for (const TensorDescription& tensor : tensors) {
    const detail::TensorCategory category = detail::tensor_category(tensor.name);
    if (detail::is_attention_v_like(category)) ++state.attention_v_count;
    if (category == detail::TensorCategory::output) state.tied_embeddings = false;
  }
  // The layer counters advance in llama.cpp's order, whatever the order given here.
  std::vector<std::size_t> order(tensors.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return detail::llama_cpp_tensor_order(tensors[a].name, tensors[b].name);
  });
  std::vector<TensorPlan> plans(tensors.size());
  for (std::size_t index : order) {
    const TensorDescription& tensor = tensors[index];
    TensorPlan& plan = plans[index];
    plan.type = tensor.dtype;
    if (tensor.shape.empty()) continue;
    plan.convertible = detail::tensor_allows_conversion(tensor);
    if (!plan.convertible) continue;
    DType type = base;
    if (is_quantized(base)) {
      if (!recipe.pure) type = detail::recipe_type(state, model, tensor, detail::tensor_category(tensor.name), recipe.file_type, base);
      const std::int64_t row_length = tensor.shape.back();
      if (row_length % static_cast<std::int64_t>(dtype_traits(type).block_size) != 0) {
        const DType fallback = detail::fallback_type(type, row_length);
        if (fallback == DType::f32) {
          return fail(ErrorCode::unsupported, "tensor '" + tensor.name + "': rows of " + std::to_string(row_length) +
                                                  " values do not split into " + dtype_name(type) + " blocks of " +
                                                  std::to_string(dtype_traits(type).block_size) + ", and llama.cpp defines no fallback for " +
                                                  dtype_name(type));
        }
        type = fallback;
        plan.fell_back = true;
      }
    }
    plan.type = type;
  }
  return plans;
}

// The recipe's inputs read from a GGUF file's metadata and tensor names.
inline QuantizationModelInfo quantization_model_info(const gguf::File& file) {
  QuantizationModelInfo info;
  Result<std::string> architecture = file.get_string_or("general.architecture", "");
  if (architecture) info.architecture = *architecture;
  const std::string prefix = info.architecture + ".";
  // Missing or odd keys (some architectures store per-layer arrays) just leave a field 0.
  const auto read = [&](const char* key, std::uint32_t& target) {
    Result<std::uint32_t> value = file.get_u32(prefix + key);
    if (value) target = *value;
  };
  read("block_count", info.block_count);
  read("attention.head_count", info.head_count);
  info.head_count_kv = info.head_count;
  read("attention.head_count_kv", info.head_count_kv);
  read("expert_count", info.expert_count);
  if (info.block_count == 0) {
    for (const gguf::TensorInfo& tensor : file.tensors()) {
      const int layer = detail::layer_of(tensor.name);
      if (layer >= 0 && static_cast<std::uint32_t>(layer) + 1 > info.block_count) info.block_count = static_cast<std::uint32_t>(layer) + 1;
    }
  }
  return info;
}

// --- converting tensors ------------------------------------------------------------------------

// Converts a [rows, row_length] tensor row by row: source_row(row, float* values) fills one row
// of floats, which quant::quantize_row encodes as `type` into `destination` (rows * row_bytes).
// Rows are split into tasks of at least ~64k values on `executor`; the bytes do not depend on
// the split. Errors: a type quant/ cannot write, a row length that is not a whole number of
// blocks, or the first error source_row returned.
template <class SourceRow>
Result<void> encode_rows(Executor& executor, DType type, std::size_t rows, std::size_t row_length, SourceRow&& source_row,
                         void* destination) {
  if (!quant::can_quantize(type)) {
    return fail(ErrorCode::unsupported, std::string("lamina cannot write ") + dtype_name(type) + " tensors");
  }
  if (row_length == 0 || row_length % dtype_traits(type).block_size != 0) {
    return fail(ErrorCode::invalid_argument, "rows of " + std::to_string(row_length) + " values are not whole " + dtype_name(type) + " blocks");
  }
  const std::size_t bytes_per_row = static_cast<std::size_t>(row_bytes(type, row_length));
  const std::size_t rows_per_task = std::max<std::size_t>(1, (std::size_t{1} << 16) / row_length);
  const std::size_t task_count = (rows + rows_per_task - 1) / rows_per_task;
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  Error first_error;
  unsigned char* out = static_cast<unsigned char*>(destination);
  auto task = [&](std::size_t task_index) {
    if (failed.load(std::memory_order_relaxed)) return;
    const std::size_t begin = task_index * rows_per_task;
    const std::size_t end = std::min(rows, begin + rows_per_task);
    std::vector<float> values(row_length);
    for (std::size_t row = begin; row < end; ++row) {
      Result<void> filled = source_row(row, values.data());
      Result<void> encoded = filled ? quant::quantize_row(type, values.data(), out + row * bytes_per_row, row_length) : Result<void>(filled.error());
      if (!encoded) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!failed.exchange(true)) first_error = encoded.error();
        return;
      }
    }
  };
  parallel_for(executor, task_count, task);
  if (failed.load()) return first_error;
  return success();
}

struct TensorProgress {
  std::size_t index = 0;  // 0-based, in the order written
  std::size_t count = 0;
  std::string name;
  std::vector<std::int64_t> shape;  // outermost first
  DType from = DType::f32;          // type before (synth: f32)
  DType to = DType::f32;            // type written
  bool fell_back = false;
  std::uint64_t bytes_before = 0;
  std::uint64_t bytes_after = 0;
};

struct QuantizeOptions {
  FileType file_type = FileType::q8_0;
  bool pure = false;                 // no recipe: every weight matrix gets the base type
  bool allow_requantize = false;     // accept quantized input tensors (dequantized first; loses accuracy)
  std::uint32_t thread_count = 0;    // 0: one per hardware thread (ignored with `executor`)
  Executor* executor = nullptr;      // run the conversion here instead of a pool of our own
  std::function<void(const TensorProgress&)> on_tensor;  // after each tensor is written
};

struct QuantizeReport {
  std::size_t tensor_count = 0;
  std::size_t converted_count = 0;   // tensors whose type changed
  std::size_t fallback_count = 0;
  std::uint64_t bytes_before = 0;    // tensor bytes, without header and padding
  std::uint64_t bytes_after = 0;
  std::uint64_t element_count = 0;
  double seconds = 0;
};

// Reads `input_path` (a GGUF model), writes `output_path` with every tensor converted as the
// recipe says, all metadata copied, and general.quantization_version = 2 and general.file_type
// set as llama-quantize sets them. Memory: one converted tensor at a time (the input is mapped).
inline Result<QuantizeReport> quantize_model(const std::string& input_path, const std::string& output_path,
                                             const QuantizeOptions& options) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  if (find_file_type(options.file_type) == nullptr) {
    return fail(ErrorCode::invalid_argument, "quantize: file type " + std::to_string(static_cast<std::uint32_t>(options.file_type)) + " is not one lamina writes");
  }
  Result<gguf::File> input = gguf::File::open(input_path);
  if (!input) return input.take_error();
  if (input->tensors().empty()) return fail(ErrorCode::invalid_format, input_path + ": the file holds no tensors");

  // llama.cpp's order: non-layer tensors, then layer by layer.
  std::vector<const gguf::TensorInfo*> ordered;
  for (const gguf::TensorInfo& tensor : input->tensors()) ordered.push_back(&tensor);
  std::stable_sort(ordered.begin(), ordered.end(), [](const gguf::TensorInfo* a, const gguf::TensorInfo* b) {
    return detail::llama_cpp_tensor_order(a->name, b->name);
  });
  std::vector<TensorDescription> descriptions;
  for (const gguf::TensorInfo* tensor : ordered) descriptions.push_back({tensor->name, tensor->dtype, tensor->shape});
  QuantizationRecipe recipe;
  recipe.file_type = options.file_type;
  recipe.pure = options.pure;
  Result<std::vector<TensorPlan>> plans = plan_tensor_types(quantization_model_info(*input), descriptions, recipe);
  if (!plans) return plans.take_error().with_context(input_path);

  // Check every conversion before writing anything.
  for (std::size_t i = 0; i < ordered.size(); ++i) {
    const gguf::TensorInfo& tensor = *ordered[i];
    const DType to = (*plans)[i].type;
    if (to == tensor.dtype) continue;
    const std::string what = input_path + ": tensor '" + tensor.name + "' (" + dtype_name(tensor.dtype) + ")";
    if (is_quantized(tensor.dtype) && !options.allow_requantize) {
      return fail(ErrorCode::unsupported, what + " is already quantized; converting it again loses accuracy (allow_requantize / --allow-requantize)");
    }
    if (!quant::can_dequantize(tensor.dtype)) return fail(ErrorCode::unsupported, what + ": lamina cannot read this type");
    if (!quant::can_quantize(to)) return fail(ErrorCode::unsupported, what + ": lamina cannot write " + dtype_name(to));
  }

  gguf::StreamWriter writer;
  for (const auto& entry : input->metadata()) writer.set(entry.first, entry.second);
  for (const char* key : {"split.no", "split.count", "split.tensors.count"}) writer.remove(key);
  // llama.cpp sets these last (removing them first), so they end the metadata.
  writer.remove("general.quantization_version");
  writer.set("general.quantization_version", gguf::Value::from_u32(2));
  writer.remove("general.file_type");
  writer.set("general.file_type", gguf::Value::from_u32(static_cast<std::uint32_t>(options.file_type)));
  for (std::size_t i = 0; i < ordered.size(); ++i) {
    Result<void> declared = writer.declare_tensor(ordered[i]->name, (*plans)[i].type, ordered[i]->shape);
    if (!declared) return declared.take_error().with_context(output_path);
  }
  LAMINA_TRY(writer.open(output_path));

  std::unique_ptr<ThreadPool> own_pool;
  Executor* executor = options.executor;
  if (executor == nullptr) {
    own_pool.reset(new ThreadPool(options.thread_count));
    executor = own_pool.get();
  }
  QuantizeReport report;
  report.tensor_count = ordered.size();
  std::vector<unsigned char> converted;
  for (std::size_t i = 0; i < ordered.size(); ++i) {
    const gguf::TensorInfo& tensor = *ordered[i];
    const TensorPlan& plan = (*plans)[i];
    std::uint64_t elements = 1;
    for (std::int64_t extent : tensor.shape) elements *= static_cast<std::uint64_t>(extent);
    report.element_count += elements;
    const std::uint64_t bytes_after = writer.tensor_bytes(i);
    if (plan.type == tensor.dtype) {
      LAMINA_TRY(writer.write_tensor(tensor.data, static_cast<std::size_t>(tensor.size_bytes)));
    } else {
      const std::size_t row_length = static_cast<std::size_t>(tensor.shape.back());
      const std::size_t rows = static_cast<std::size_t>(elements / row_length);
      const std::size_t source_row_bytes = static_cast<std::size_t>(row_bytes(tensor.dtype, row_length));
      const DType from = tensor.dtype;
      const std::uint8_t* source = tensor.data;
      converted.resize(static_cast<std::size_t>(bytes_after));
      auto source_row = [&](std::size_t row, float* values) {
        return quant::dequantize_row(from, source + row * source_row_bytes, values, row_length);
      };
      Result<void> encoded = encode_rows(*executor, plan.type, rows, row_length, source_row, converted.data());
      if (!encoded) return encoded.take_error().with_context(input_path + ": tensor '" + tensor.name + "'");
      LAMINA_TRY(writer.write_tensor(converted.data(), converted.size()));
      ++report.converted_count;
    }
    if (plan.fell_back) ++report.fallback_count;
    report.bytes_before += tensor.size_bytes;
    report.bytes_after += bytes_after;
    if (options.on_tensor) {
      TensorProgress progress;
      progress.index = i;
      progress.count = ordered.size();
      progress.name = tensor.name;
      progress.shape = tensor.shape;
      progress.from = tensor.dtype;
      progress.to = plan.type;
      progress.fell_back = plan.fell_back;
      progress.bytes_before = tensor.size_bytes;
      progress.bytes_after = bytes_after;
      options.on_tensor(progress);
    }
  }
  LAMINA_TRY(writer.finish());
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

LAMINA_NAMESPACE_END
