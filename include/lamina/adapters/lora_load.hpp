// lamina/adapters/lora_load.hpp — building LoRA adapters against a base model, reading them from
// llama.cpp's GGUF adapter format, and merging a stack into weights.
//
// Every source of adapters (GGUF here, PEFT directories in adapters/peft.hpp, `lamina lora
// combine`) ends in build_adapter(), which checks each matrix against the base model (layer,
// shapes, finite values) and names the offending tensor when something does not fit, so an
// adapter that loads can be applied without further checks.
#pragma once

#include "../config.hpp"
#include "../core/executor.hpp"
#include "../core/result.hpp"
#include "../io/gguf.hpp"
#include "../kernels/reference.hpp"
#include "../model/hparams.hpp"
#include "../model/llama.hpp"
#include "../model/model.hpp"
#include "../quant/quant.hpp"
#include "lora.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/definitions_begin.inl"

LAMINA_NAMESPACE_BEGIN

// One matrix of an adapter as read from a file, before checking: delta W = scaling * B A.
struct LoraFactors {
  std::string source;   // where it came from, for errors ("blk.3.attn_q.weight.lora_a", a PEFT key …)
  std::uint32_t layer = 0;
  Projection projection = Projection::query;
  std::uint32_t rank = 0;
  std::uint32_t in = 0, out = 0;  // as the file says; checked against the model
  float scaling = 1.0f;
  std::vector<float> a;          // [rank, in]
  std::vector<float> b;          // [out, rank]
  std::vector<float> magnitude;  // DoRA: [out]; empty for plain LoRA
  // Where A, B and the magnitude came from, for messages about their values, e.g.
  // "lora-a.gguf: tensor 'blk.3.attn_q.weight.lora_a'"; when empty, `source` stands for them.
  std::string a_source, b_source, magnitude_source;
};

// The weight matrix `projection` of layer `layer`.
inline TensorView& projection_weight(ModelWeights& weights, std::uint32_t layer, Projection projection) {
  LayerWeights& l = weights.layers[layer];
  switch (projection) {
    case Projection::query: return l.query;
    case Projection::key: return l.key;
    case Projection::value: return l.value;
    case Projection::attention_output: return l.attention_output;
    case Projection::ffn_gate: return l.ffn_gate;
    case Projection::ffn_up: return l.ffn_up;
    case Projection::ffn_down: return l.ffn_down;
  }
  return l.query;
}
inline const TensorView& projection_weight(const ModelWeights& weights, std::uint32_t layer, Projection projection) {
  return projection_weight(const_cast<ModelWeights&>(weights), layer, projection);
}

namespace detail {

inline bool all_finite(const std::vector<float>& values) {
  for (float value : values) if (!std::isfinite(value)) return false;
  return true;
}

inline bool is_float_type(DType type) { return type == DType::f32 || type == DType::f16 || type == DType::bf16; }

// A number as messages show it: "nan", "-inf", "1e+300", "0.5".
inline std::string number_text(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", value);
  return text;
}

// What is wrong with the values of a factor, [rows, columns] row-major, or "" when nothing:
// the first value that is not a finite number, or (largest_magnitude > 0) the first one whose
// magnitude passes it, with its position.
inline std::string bad_value(const std::vector<float>& values, std::size_t columns, double largest_magnitude) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    const float value = values[i];
    const bool finite = std::isfinite(value);
    if (finite && (largest_magnitude <= 0 || std::fabs(value) <= largest_magnitude)) continue;
    const std::string at = columns > 1 ? "[" + std::to_string(i / columns) + ", " + std::to_string(i % columns) + "]" : "[" + std::to_string(i) + "]";
    if (!finite) return "holds " + number_text(value) + " at " + at + ": not a finite number";
    return "holds " + number_text(value) + " at " + at + ", beyond F16's range (+-65504), in which lamina stores the factors of a quantized model";
  }
  return std::string();
}

// delta[i] = scaling * sum_k B[o][k] A[k][i]: row `o` of a module's change, summed in double
// (merged weights then differ from unmerged products by one rounding).
inline void delta_row(const LoraModule& module, std::size_t o, double* delta) {
  for (std::size_t i = 0; i < module.in; ++i) delta[i] = 0.0;
  for (std::size_t k = 0; k < module.rank; ++k) {
    const double weight = static_cast<double>(module.scaling) * module.b_at(o, k);
    if (weight == 0.0) continue;
    for (std::size_t i = 0; i < module.in; ++i) delta[i] += weight * module.a_at(k, i);
  }
}

}  // namespace detail

// Checks `factors` against the model and builds the adapter. Errors name the source tensor.
inline Result<std::shared_ptr<const LoraAdapter>> build_adapter(std::string name, const ModelHparams& hparams,
                                                                 const ModelWeights& weights, std::vector<LoraFactors> factors) {
  std::vector<LoraModule> modules(static_cast<std::size_t>(hparams.block_count) * projection_count);
  for (LoraFactors& factor : factors) {
    const std::string where = name + ": " + factor.source;
    if (factor.layer >= hparams.block_count) {
      return fail(ErrorCode::type_mismatch, where + ": layer " + std::to_string(factor.layer) + " does not exist (the model has " +
                                                std::to_string(hparams.block_count) + " layers)");
    }
    const std::uint32_t rows = projection_rows(hparams, factor.projection), columns = projection_columns(hparams, factor.projection);
    if (factor.in != columns || factor.out != rows) {
      return fail(ErrorCode::type_mismatch, where + ": adapts a [" + std::to_string(factor.out) + ", " + std::to_string(factor.in) +
                                                "] matrix, but blk." + std::to_string(factor.layer) + "." +
                                                projection_gguf_name(factor.projection) + " of the model is [" + std::to_string(rows) +
                                                ", " + std::to_string(columns) + "] (an adapter for another model?)");
    }
    if (factor.rank == 0 || factor.rank > 65536) {
      return fail(ErrorCode::invalid_format, where + ": rank " + std::to_string(factor.rank) + " is out of range");
    }
    if (factor.a.size() != static_cast<std::size_t>(factor.rank) * columns ||
        factor.b.size() != static_cast<std::size_t>(rows) * factor.rank) {
      return fail(ErrorCode::type_mismatch, where + ": A and B do not hold rank " + std::to_string(factor.rank) + " factors of [" +
                                                std::to_string(rows) + ", " + std::to_string(columns) + "]");
    }
    if (!factor.magnitude.empty() && factor.magnitude.size() != rows) {
      return fail(ErrorCode::type_mismatch, where + ": the DoRA magnitude has " + std::to_string(factor.magnitude.size()) +
                                                " values, the matrix " + std::to_string(rows) + " rows");
    }
    if (!std::isfinite(factor.scaling)) {
      return fail(ErrorCode::invalid_format, where + ": the scale " + detail::number_text(factor.scaling) + " is not a finite number");
    }
    const TensorView& base = projection_weight(weights, factor.layer, factor.projection);
    // Factors are stored as F32 for a float model and as F16 for a quantized one (see `store`
    // below), where a value past 65504 would turn into infinity.
    const bool store_f16 = !detail::is_float_type(base.dtype);
    const double largest = store_f16 ? 65504.0 : 0.0;
    const struct {
      const std::vector<float>& values;
      std::size_t columns;
      double largest;  // 0: any finite value (the magnitude stays F32)
      const std::string& source;
      const char* name;
    } checks[] = {{factor.a, columns, largest, factor.a_source, "A"},
                  {factor.b, factor.rank, largest, factor.b_source, "B"},
                  {factor.magnitude, 1, 0.0, factor.magnitude_source, "the DoRA magnitude"}};
    for (const auto& check : checks) {
      const std::string problem = detail::bad_value(check.values, check.columns, check.largest);
      if (problem.empty()) continue;
      const std::string origin = check.source.empty() ? where + ": " + check.name : check.source;
      return fail(ErrorCode::invalid_format, origin + " " + problem);
    }
    LoraModule& module = modules[static_cast<std::size_t>(factor.layer) * projection_count + static_cast<std::size_t>(factor.projection)];
    if (module.active()) {
      return fail(ErrorCode::invalid_format, where + ": blk." + std::to_string(factor.layer) + "." +
                                                 projection_gguf_name(factor.projection) + " is adapted twice");
    }
    module.rank = factor.rank;
    module.in = columns;
    module.out = rows;
    module.scaling = factor.scaling;
    module.factor_type = store_f16 ? DType::f16 : DType::f32;
    const auto store = [&](const std::vector<float>& values, std::vector<std::uint8_t>& bytes) {
      if (module.factor_type == DType::f32) {
        bytes.resize(values.size() * sizeof(float));
        std::memcpy(bytes.data(), values.data(), bytes.size());
        return;
      }
      bytes.resize(values.size() * 2);
      for (std::size_t i = 0; i < values.size(); ++i) {
        const std::uint16_t half = f32_to_f16(values[i]);
        std::memcpy(bytes.data() + 2 * i, &half, 2);
      }
    };
    store(factor.a, module.a);
    std::vector<float> b_transposed(factor.b.size());  // [out, rank] -> [rank, out]
    for (std::size_t o = 0; o < rows; ++o) {
      for (std::size_t k = 0; k < factor.rank; ++k) b_transposed[k * rows + o] = factor.b[o * factor.rank + k];
    }
    store(b_transposed, module.b);
    if (!factor.magnitude.empty()) {
      // DoRA: n = ||W + scaling B A|| per row, with W as the model computes with it.
      module.magnitude = std::move(factor.magnitude);
      module.row_scale.resize(rows);
      std::vector<float> row(columns);
      std::vector<double> delta(columns);
      for (std::uint32_t o = 0; o < rows; ++o) {
        reference::row_to_f32(base.dtype, base.row(o), row.data(), columns);
        detail::delta_row(module, o, delta.data());
        double norm = 0.0;
        for (std::uint32_t i = 0; i < columns; ++i) norm += static_cast<double>(row[i] + delta[i]) * (row[i] + delta[i]);
        norm = std::sqrt(norm);
        module.row_scale[o] = norm > 0.0 ? static_cast<float>(module.magnitude[o] / norm) : 1.0f;
      }
    }
  }
  std::shared_ptr<const LoraAdapter> adapter = std::make_shared<const LoraAdapter>(std::move(name), AdapterShape::of(hparams), std::move(modules));
  if (adapter->active_module_count() == 0) {
    return fail(ErrorCode::invalid_format, adapter->name() + ": the adapter changes no matrix of the model");
  }
  return adapter;
}

namespace detail {

// "blk.<layer>.<projection>.weight.lora_<which>" -> its parts; false for any other name.
inline bool parse_gguf_lora_name(const std::string& name, std::uint32_t* layer, Projection* projection, char* which) {
  const std::string prefix = "blk.";
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  std::size_t at = prefix.size();
  std::uint64_t number = 0;
  const std::size_t digits_begin = at;
  while (at < name.size() && name[at] >= '0' && name[at] <= '9' && at - digits_begin < 6) number = number * 10 + static_cast<std::uint64_t>(name[at++] - '0');
  if (at == digits_begin || at >= name.size() || name[at] != '.') return false;
  ++at;
  for (std::size_t p = 0; p < projection_count; ++p) {
    const std::string expected = std::string(projection_gguf_name(projection_at(p))) + ".weight.lora_";
    if (name.compare(at, expected.size(), expected) == 0 && name.size() == at + expected.size() + 1) {
      const char letter = name[at + expected.size()];
      if (letter != 'a' && letter != 'b') return false;
      *layer = static_cast<std::uint32_t>(number);
      *projection = projection_at(p);
      *which = letter;
      return true;
    }
  }
  return false;
}

inline Result<std::vector<float>> tensor_to_f32(const gguf::File& file, const gguf::TensorInfo& info) {
  if (!quant::can_dequantize(info.dtype)) {
    return fail(ErrorCode::unsupported, file.name() + ": tensor " + quote_for_message(info.name) + " has type " + dtype_name(info.dtype) +
                                            ", which lamina cannot read");
  }
  const TensorView view = info.view();
  std::vector<float> values(static_cast<std::size_t>(view.element_count()));
  const std::size_t row_length = static_cast<std::size_t>(view.row_length());
  for (std::int64_t r = 0; r < view.row_count(); ++r) {
    reference::row_to_f32(view.dtype, view.row(r), values.data() + static_cast<std::size_t>(r) * row_length, row_length);
  }
  return values;
}

}  // namespace detail

// Reads a LoRA adapter in llama.cpp's GGUF format (general.type = adapter, adapter.type = lora,
// adapter.lora.alpha; tensors blk.N.<matrix>.weight.lora_a [rank, in] and .lora_b [out, rank])
// and checks it against the model. alpha 0 (or absent) means scaling 1, as llama.cpp does.
LAMINA_DETAIL_API Result<std::shared_ptr<const LoraAdapter>> load_gguf_adapter(const gguf::File& file, const ModelHparams& hparams,
                                                                                const ModelWeights& weights);
#if LAMINA_DETAIL_DEFINITIONS
LAMINA_DETAIL_API Result<std::shared_ptr<const LoraAdapter>> load_gguf_adapter(const gguf::File& file, const ModelHparams& hparams,
                                                                                const ModelWeights& weights) {
  Result<std::string> general_type = file.get_string_or("general.type", "adapter");
  if (!general_type) return general_type.take_error();
  if (*general_type != "adapter") {
    return fail(ErrorCode::invalid_format, file.name() + ": general.type is " + detail::quote_for_message(*general_type) +
                                               ", not 'adapter' (a model, not a LoRA adapter?)");
  }
  Result<std::string> adapter_type = file.get_string("adapter.type");
  if (!adapter_type) return adapter_type.take_error();
  if (*adapter_type != "lora") {
    return fail(ErrorCode::unsupported, file.name() + ": adapter.type is " + detail::quote_for_message(*adapter_type) + "; lamina reads LoRA adapters");
  }
  Result<float> alpha = file.get_f32_or("adapter.lora.alpha", 0.0f);
  if (!alpha) return alpha.take_error();
  // alpha / rank scales every delta: say which key is wrong rather than let the scale fail later.
  if (!std::isfinite(*alpha)) {
    return fail(ErrorCode::invalid_format, file.name() + ": adapter.lora.alpha is " + detail::number_text(*alpha) + ": not a finite number");
  }
  Result<std::string> architecture = file.get_string_or("general.architecture", hparams.architecture_name);
  if (!architecture) return architecture.take_error();
  if (*architecture != hparams.architecture_name) {
    return fail(ErrorCode::type_mismatch, file.name() + ": the adapter is for architecture " + detail::quote_for_message(*architecture) +
                                              ", the model is '" + hparams.architecture_name + "'");
  }

  // Pair each lora_a with its lora_b.
  std::vector<LoraFactors> factors;
  for (const gguf::TensorInfo& info : file.tensors()) {
    std::uint32_t layer = 0;
    Projection projection = Projection::query;
    char which = 0;
    if (!detail::parse_gguf_lora_name(info.name, &layer, &projection, &which)) {
      return fail(ErrorCode::unsupported, file.name() + ": tensor " + detail::quote_for_message(info.name) +
                                              " is not the lora_a or lora_b of a layer's attention or feed-forward matrix");
    }
    if (info.shape.size() != 2) {
      return fail(ErrorCode::type_mismatch, file.name() + ": tensor '" + info.name + "' is not a matrix");
    }
    if (which == 'b') {
      const std::string a_name = info.name.substr(0, info.name.size() - 1) + "a";
      if (file.find_tensor(a_name) == nullptr) return fail(ErrorCode::missing, file.name() + ": tensor '" + a_name + "' not found (its lora_b is there)");
      continue;
    }
    const std::string b_name = info.name.substr(0, info.name.size() - 1) + "b";
    const gguf::TensorInfo* b_info = file.find_tensor(b_name);
    if (b_info == nullptr) return fail(ErrorCode::missing, file.name() + ": tensor '" + b_name + "' not found (its lora_a is there)");
    if (b_info->shape.size() != 2 || b_info->shape[1] != info.shape[0]) {
      return fail(ErrorCode::type_mismatch, file.name() + ": '" + info.name + "' is [" + std::to_string(info.shape[0]) + ", " +
                                                std::to_string(info.shape[1]) + "] but '" + b_name + "' is not [out, " +
                                                std::to_string(info.shape[0]) + "]");
    }
    LoraFactors factor;
    factor.source = info.name;
    factor.a_source = file.name() + ": tensor " + detail::quote_for_message(info.name);
    factor.b_source = file.name() + ": tensor " + detail::quote_for_message(b_name);
    factor.layer = layer;
    factor.projection = projection;
    if (info.shape[0] <= 0 || info.shape[0] > 65536 || info.shape[1] > (1 << 24) || b_info->shape[0] > (1 << 24)) {
      return fail(ErrorCode::type_mismatch, file.name() + ": tensor '" + info.name + "' has an implausible shape");
    }
    factor.rank = static_cast<std::uint32_t>(info.shape[0]);
    factor.in = static_cast<std::uint32_t>(info.shape[1]);
    factor.out = static_cast<std::uint32_t>(b_info->shape[0]);
    factor.scaling = *alpha == 0.0f ? 1.0f : *alpha / static_cast<float>(factor.rank);
    // Shapes first, so a wrong adapter is reported before its (maybe large) data is converted.
    if (layer < hparams.block_count &&
        (factor.in != projection_columns(hparams, projection) || factor.out != projection_rows(hparams, projection))) {
      return build_adapter(file.name(), hparams, weights, {std::move(factor)});  // reports the mismatch
    }
    Result<std::vector<float>> a = detail::tensor_to_f32(file, info);
    if (!a) return a.take_error();
    Result<std::vector<float>> b = detail::tensor_to_f32(file, *b_info);
    if (!b) return b.take_error();
    factor.a = std::move(*a);
    factor.b = std::move(*b);
    factors.push_back(std::move(factor));
  }
  if (factors.empty()) return fail(ErrorCode::invalid_format, file.name() + ": the adapter holds no lora_a / lora_b tensors");
  return build_adapter(file.name(), hparams, weights, std::move(factors));
}
#endif

LAMINA_DETAIL_API Result<std::shared_ptr<const LoraAdapter>> load_gguf_adapter(const std::string& path, const ModelHparams& hparams,
                                                                                const ModelWeights& weights);
#if LAMINA_DETAIL_DEFINITIONS
LAMINA_DETAIL_API Result<std::shared_ptr<const LoraAdapter>> load_gguf_adapter(const std::string& path, const ModelHparams& hparams,
                                                                                const ModelWeights& weights) {
  Result<gguf::File> file = gguf::File::open(path);
  if (!file) return file.take_error();
  return load_gguf_adapter(*file, hparams, weights);
}
#endif

// Reads a LoRA adapter in llama.cpp's GGUF format and checks it against `model`. (PEFT
// directories: lamina::peft::load_adapter in <lamina/adapters/peft.hpp>.)
inline Result<std::shared_ptr<const LoraAdapter>> load_gguf_adapter(const Model& model, const std::string& path) {
  return load_gguf_adapter(path, model.hparams(), model.weights());
}

// --- merging -------------------------------------------------------------------------------

// Row `o` of W + the stack's changes to matrix `projection` of layer `layer`, rounded once.
// base: W's row [in]; out: the merged row [in]; sum, delta: [in] doubles of scratch.
inline void merge_row(const AdapterStack& stack, std::uint32_t layer, Projection projection, std::size_t o, const float* base,
                      float* out, double* sum, double* delta, std::size_t in) {
  for (std::size_t i = 0; i < in; ++i) sum[i] = base[i];
  for (const AdapterStackEntry& entry : stack) {
    if (entry.adapter == nullptr || entry.scale == 0.0f) continue;
    const LoraModule& module = entry.adapter->module(layer, projection);
    if (!module.active()) continue;
    detail::delta_row(module, o, delta);
    const double scale = entry.scale;
    if (!module.dora()) {
      for (std::size_t i = 0; i < in; ++i) sum[i] += scale * delta[i];
    } else {
      // scale * ((m / n) (W + scaling B A) - W), row by row.
      const double d = module.row_scale[o];
      for (std::size_t i = 0; i < in; ++i) sum[i] += scale * ((d - 1.0) * base[i] + d * delta[i]);
    }
  }
  for (std::size_t i = 0; i < in; ++i) out[i] = static_cast<float>(sum[i]);
}

// Whether the stack changes matrix `projection` of layer `layer`.
inline bool stack_changes(const AdapterStack& stack, std::uint32_t layer, Projection projection) {
  for (const AdapterStackEntry& entry : stack) {
    if (entry.adapter != nullptr && entry.scale != 0.0f && entry.adapter->module(layer, projection).active()) return true;
  }
  return false;
}

// W + the stack's changes, stored as `type` (F32, F16, BF16 or any type quant::quantize_row
// writes, e.g. the base's own). Rows are independent and run in parallel.
inline Result<std::vector<std::uint8_t>> merge_matrix(Executor& executor, const AdapterStack& stack, std::uint32_t layer,
                                                      Projection projection, const TensorView& base, DType type) {
  const std::size_t rows = static_cast<std::size_t>(base.row_count()), in = static_cast<std::size_t>(base.row_length());
  if (!quant::can_quantize(type) || in % dtype_traits(type).block_size != 0) {
    return fail(ErrorCode::unsupported, std::string("merge: cannot store a row of ") + std::to_string(in) + " values as " + dtype_name(type));
  }
  const std::size_t stored_row_bytes = row_bytes(type, in);
  std::vector<std::uint8_t> stored(rows * stored_row_bytes);
  const std::size_t chunks = rows < 64 ? rows : 64;
  std::vector<float> rows_scratch(chunks * 2 * in);    // per chunk: the base row, the merged row
  std::vector<double> sums_scratch(chunks * 2 * in);   // per chunk: the sum, one delta
  parallel_chunks(executor, rows, chunks, [&](std::size_t chunk, std::size_t begin, std::size_t end) {
    float* row = rows_scratch.data() + chunk * 2 * in;
    float* merged = row + in;
    double* sum = sums_scratch.data() + chunk * 2 * in;
    for (std::size_t o = begin; o < end; ++o) {
      reference::row_to_f32(base.dtype, base.row(static_cast<std::int64_t>(o)), row, in);
      merge_row(stack, layer, projection, o, row, merged, sum, sum + in, in);
      const Result<void> written = quant::quantize_row(type, merged, stored.data() + o * stored_row_bytes, in);
      LAMINA_ASSERT(written.ok(), "merge_matrix: the type was checked above");
      (void)written;
    }
  });
  return stored;
}

// The base weights with a stack merged into every matrix it changes: the matrices it leaves
// alone stay views of the base, the others point into `storage`.
struct MergedWeights {
  ModelWeights weights;
  std::vector<std::vector<std::uint8_t>> storage;
};

// How merged matrices are stored.
enum class MergeStorage { base_type, f32, f16 };

inline Result<std::unique_ptr<MergedWeights>> merge_weights(Executor& executor, const ModelHparams& hparams, const ModelWeights& base,
                                                            const AdapterStack& stack, MergeStorage storage) {
  for (const AdapterStackEntry& entry : stack) {
    if (entry.adapter != nullptr && !(entry.adapter->shape() == AdapterShape::of(hparams))) {
      return fail(ErrorCode::type_mismatch, "merge: adapter '" + entry.adapter->name() + "' was built for another model");
    }
  }
  std::unique_ptr<MergedWeights> merged(new MergedWeights());
  merged->weights = base;
  for (std::uint32_t layer = 0; layer < hparams.block_count; ++layer) {
    for (std::size_t p = 0; p < projection_count; ++p) {
      const Projection projection = projection_at(p);
      if (!stack_changes(stack, layer, projection)) continue;
      const TensorView& weight = projection_weight(base, layer, projection);
      const DType type = storage == MergeStorage::f32 ? DType::f32 : storage == MergeStorage::f16 ? DType::f16 : weight.dtype;
      Result<std::vector<std::uint8_t>> bytes = merge_matrix(executor, stack, layer, projection, weight, type);
      if (!bytes) return bytes.take_error();
      merged->storage.push_back(std::move(*bytes));
      const TensorView view = contiguous_view(type, {weight.row_count(), weight.row_length()}, merged->storage.back().data());
      projection_weight(merged->weights, layer, projection) = view;
    }
  }
  return merged;
}

LAMINA_NAMESPACE_END

#include "../core/definitions_end.inl"
