// examples/cli/lora_tools.hpp — LoRA adapters turned into files: a stack merged into a model's
// weights (`lamina lora merge`), and several adapters combined into one (`lamina lora combine`,
// Hugging Face PEFT's add_weighted_adapter over whole adapters).
//
//   // merge: base + sum of scale_i * delta_i, written as a new GGUF model llama.cpp can load
//   lamina::LoraMergeOptions merge;
//   merge.type = lamina::DType::q8_0;                 // or leave empty: each matrix keeps its type
//   auto report = lamina::merge_lora_model(*model, stack, "merged.gguf", merge);
//
//   // combine: one adapter from several, e.g. the lossless "cat"
//   lamina::lora::CombineOptions options;
//   options.method = lamina::lora::CombineMethod::cat;
//   auto combined = lamina::combine_adapters({{adapter_a, 0.7f}, {adapter_b, 0.5f}}, options);
//   lamina::write_combined_adapter("combined.gguf", *combined, lamina::combined_adapter_info(*model));
//
// Not part of <lamina/lamina.hpp>: it reads and writes JSON (PEFT's adapter_config.json) with
// nlohmann/json, as adapters/peft.hpp does.
#pragma once

#include <lamina/config.hpp>
#include <lamina/adapters/combine.hpp>
#include <lamina/adapters/lora_load.hpp>
#include <lamina/adapters/peft.hpp>
#include <lamina/core/executor.hpp>
#include <lamina/core/file_io.hpp>
#include <lamina/core/result.hpp>
#include <lamina/io/gguf.hpp>
#include <lamina/io/safetensors.hpp>
#include <lamina/quant/quant.hpp>
#include <lamina/session.hpp>
#include <lamina/io/gguf_stream.hpp>
#include <lamina/quant/quantize_model.hpp>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <sys/types.h>
#include <utility>
#include <vector>

#if LAMINA_WINDOWS
#  include <direct.h>
#endif

LAMINA_NAMESPACE_BEGIN

// =============================================================================================
// Merging a stack into a model
// =============================================================================================

// One tensor of the merged file, after it is written (for progress output).
struct LoraMergeProgress {
  std::size_t index = 0;  // 0-based, in the file's (the base's) order
  std::size_t count = 0;
  std::string name;
  DType from = DType::f32;  // the base's type
  DType to = DType::f32;    // the type written
  bool merged = false;      // the stack changed this matrix
};

struct LoraMergeOptions {
  // How the changed matrices are stored: F32, F16, BF16 or any type quant::quantize_row writes
  // (q8_0, q4_k …). Empty: each keeps the base's type (quantized again after the merge).
  std::optional<DType> type;
  std::uint32_t thread_count = 0;  // 0: one per hardware thread (ignored with `executor`)
  Executor* executor = nullptr;    // run the merge here instead of a pool of our own
  // Recorded in the metadata key lamina.merged_adapters, one per stack entry. Empty: each
  // entry's adapter name (its path) and scale, "path:scale".
  std::vector<std::string> adapter_labels;
  std::function<void(const LoraMergeProgress&)> on_tensor;
};

struct LoraMergeReport {
  std::size_t tensor_count = 0;
  std::size_t merged_count = 0;  // matrices the stack changed
  std::string file_type_note;    // what happened to general.file_type, in words
  double seconds = 0;
};

// The tensor types `lamina lora merge --type` accepts: F32, F16, BF16 and the weight block
// types lamina quantizes (not the activation-only q8_1 / q8_K). Case does not matter.
inline Result<DType> parse_merge_type(std::string_view text) {
  std::string name(text);
  for (char& c : name) if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  std::string known;
  for (std::uint32_t id = 0; id < 64; ++id) {
    if (!is_known_dtype(id)) continue;
    const DType type = static_cast<DType>(id);
    if (!quant::can_quantize(type) || type == DType::q8_1 || type == DType::q8_k) continue;
    std::string type_name = dtype_name(type);
    for (char& c : type_name) if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (type_name == name) return type;
    known += (known.empty() ? "" : ", ") + type_name;
  }
  return fail(ErrorCode::invalid_argument, "unknown tensor type '" + std::string(text) + "' (known: " + known + ")");
}

namespace detail {

// "path:scale" for lamina.merged_adapters.
inline std::string stack_entry_label(const AdapterStackEntry& entry) {
  return entry.adapter->name() + ":" + ::lamina::detail::format_float(entry.scale);
}

// The file type whose recipe gives (nearly) every weight matrix `type`, for a file in which
// every convertible matrix has that type. The K-quant recipes (q3_k_s/m/l, q4_k_s/m …) are
// mixes that a uniform file matches none of exactly: no answer for them.
inline bool uniform_file_type(DType type, FileType* file_type) {
  // (A bool and an out-parameter, not std::optional: GCC's -O3 -Wmaybe-uninitialized misreads
  // an optional enum here.)
  switch (type) {
    case DType::f32: *file_type = FileType::f32; return true;
    case DType::f16: *file_type = FileType::f16; return true;
    case DType::bf16: *file_type = FileType::bf16; return true;
    case DType::q4_0: *file_type = FileType::q4_0; return true;
    case DType::q4_1: *file_type = FileType::q4_1; return true;
    case DType::q5_0: *file_type = FileType::q5_0; return true;
    case DType::q5_1: *file_type = FileType::q5_1; return true;
    case DType::q8_0: *file_type = FileType::q8_0; return true;
    case DType::q6_k: *file_type = FileType::q6_k; return true;
    case DType::iq4_nl: *file_type = FileType::iq4_nl; return true;
    case DType::iq4_xs: *file_type = FileType::iq4_xs; return true;
    default: return false;
  }
}

}  // namespace detail

// Writes `output_path`: the GGUF file of `model` with the stack merged into every matrix it
// changes (W + sum_i scale_i * delta_i, summed in double and rounded once, see merge_matrix),
// everything else copied byte for byte — metadata in its order (general.alignment included),
// tensors in their order, each padded to the alignment — so llama.cpp loads the result like
// the base. Metadata changes:
//   - lamina.merged_adapters (string array, appended to when the base already has it): the
//     adapters merged, "path:scale";
//   - general.file_type is kept when the merged matrices keep their types, or when --type is the
//     base type of the recorded file type. Otherwise it is set when every convertible weight
//     matrix (tools/quantize.hpp's rule) now has one type that a uniform file type names
//     (F32, F16, BF16, Q4_0 … Q8_0, Q6_K, IQ4_NL, IQ4_XS), and removed when the file mixes
//     types: llama.cpp then guesses the file type from its tensors, rather than reading a
//     recorded value that no longer holds;
//   - general.quantization_version = 2 is added when the output holds quantized tensors and the
//     base had no such key (as llama-quantize writes it).
// Memory: one merged matrix at a time (the base is mapped). Errors: an adapter built for another
// model, a stack that changes nothing, a type lamina cannot write or whose blocks do not divide
// a matrix's rows (named), the output path being the base's, an unwritable output.
inline Result<LoraMergeReport> merge_lora_model(const Model& model, const AdapterStack& stack, const std::string& output_path,
                                                const LoraMergeOptions& options) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  const gguf::File& file = model.file();
  const ModelHparams& hparams = model.hparams();
  if (output_path.empty()) return fail(ErrorCode::invalid_argument, "merge: no output path");
  if (output_path == file.name()) return fail(ErrorCode::invalid_argument, output_path + ": the output would replace the base model");
  for (const AdapterStackEntry& entry : stack) {
    if (entry.adapter != nullptr && !(entry.adapter->shape() == AdapterShape::of(hparams))) {
      return fail(ErrorCode::type_mismatch, "merge: adapter '" + entry.adapter->name() + "' was built for another model than " + file.name());
    }
  }
  if (!options.adapter_labels.empty() && options.adapter_labels.size() != stack.size()) {
    return fail(ErrorCode::invalid_argument, "merge: " + std::to_string(options.adapter_labels.size()) + " adapter labels for a stack of " +
                                                 std::to_string(stack.size()));
  }

  // Which tensors of the file the stack changes: "blk.N.<projection>.weight" -> (layer, projection).
  struct Change {
    std::uint32_t layer;
    Projection projection;
  };
  std::map<std::string, Change> changes;
  for (std::uint32_t layer = 0; layer < hparams.block_count; ++layer) {
    for (std::size_t p = 0; p < projection_count; ++p) {
      if (!stack_changes(stack, layer, projection_at(p))) continue;
      changes.emplace("blk." + std::to_string(layer) + "." + projection_gguf_name(projection_at(p)) + ".weight", Change{layer, projection_at(p)});
    }
  }
  if (changes.empty()) return fail(ErrorCode::invalid_argument, "merge: the adapter stack changes no matrix of " + file.name() + " (no adapters, or every scale 0)");

  // The type of every tensor in the output, checked before anything is written.
  const std::vector<gguf::TensorInfo>& tensors = file.tensors();
  std::vector<DType> types(tensors.size());
  std::vector<const Change*> change_of(tensors.size(), nullptr);
  std::size_t found = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const gguf::TensorInfo& tensor = tensors[i];
    types[i] = tensor.dtype;
    const auto change = changes.find(tensor.name);
    if (change == changes.end()) continue;
    ++found;
    change_of[i] = &change->second;
    const DType type = options.type ? *options.type : tensor.dtype;
    const std::int64_t row_length = tensor.shape.empty() ? 0 : tensor.shape.back();
    const std::string what = file.name() + ": tensor '" + tensor.name + "'";
    if (!quant::can_dequantize(tensor.dtype)) return fail(ErrorCode::unsupported, what + " has type " + dtype_name(tensor.dtype) + ", which lamina cannot read");
    if (!quant::can_quantize(type)) {
      return fail(ErrorCode::unsupported, what + ": lamina cannot write " + dtype_name(type) + " tensors" +
                                              (options.type ? "" : " (choose another type with --type)"));
    }
    if (row_length <= 0 || row_length % static_cast<std::int64_t>(dtype_traits(type).block_size) != 0) {
      return fail(ErrorCode::unsupported, what + ": rows of " + std::to_string(row_length) + " values do not split into " + dtype_name(type) +
                                              " blocks of " + std::to_string(dtype_traits(type).block_size));
    }
    types[i] = type;
  }
  LAMINA_ASSERT(found == changes.size(), "merge_lora_model: every bound projection weight is a tensor of the file");

  gguf::StreamWriter writer(file.version());
  for (const auto& entry : file.metadata()) writer.set(entry.first, entry.second);

  LoraMergeReport report;
  report.tensor_count = tensors.size();
  report.merged_count = changes.size();
  // general.file_type: see the comment above the function.
  const gguf::Value* recorded = file.find("general.file_type");
  Result<std::uint32_t> recorded_type = file.get_u32_or("general.file_type", 0xffffffffu);
  const bool recorded_valid = recorded != nullptr && recorded_type.ok() && find_file_type(static_cast<FileType>(*recorded_type)) != nullptr;
  bool types_changed = false;
  for (std::size_t i = 0; i < tensors.size(); ++i) types_changed = types_changed || types[i] != tensors[i].dtype;
  if (!types_changed) {
    report.file_type_note = "general.file_type kept: every tensor keeps its type";
  } else if (recorded_valid && file_type_base_dtype(static_cast<FileType>(*recorded_type)) == *options.type) {
    report.file_type_note = std::string("general.file_type kept (") + file_type_name(static_cast<FileType>(*recorded_type)) + ")";
  } else {
    bool uniform = true;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const TensorDescription description{tensors[i].name, types[i], tensors[i].shape};
      if (detail::tensor_allows_conversion(description) && types[i] != *options.type) uniform = false;
    }
    FileType named = FileType::f32;
    writer.remove("general.file_type");
    if (uniform && detail::uniform_file_type(*options.type, &named)) {
      writer.set("general.file_type", gguf::Value::from_u32(static_cast<std::uint32_t>(named)));
      report.file_type_note = std::string("general.file_type set to ") + file_type_name(named);
    } else {
      report.file_type_note = "general.file_type removed: the merged file mixes tensor types (llama.cpp guesses it from the tensors)";
    }
  }
  bool any_quantized = false;
  for (DType type : types) any_quantized = any_quantized || is_quantized(type);
  if (any_quantized && file.find("general.quantization_version") == nullptr) {
    writer.set("general.quantization_version", gguf::Value::from_u32(2));
  }
  std::vector<std::string> labels;
  if (const gguf::Value* previous = file.find("lamina.merged_adapters")) {
    if (previous->type == gguf::ValueType::array && previous->element_type == gguf::ValueType::string) {
      for (const gguf::Value& element : previous->elements) labels.push_back(element.string_value);
    }
  }
  for (std::size_t i = 0; i < stack.size(); ++i) {
    if (stack[i].adapter == nullptr) continue;
    labels.push_back(options.adapter_labels.empty() ? detail::stack_entry_label(stack[i]) : options.adapter_labels[i]);
  }
  writer.remove("lamina.merged_adapters");
  writer.set("lamina.merged_adapters", gguf::Value::from_strings(labels));

  for (std::size_t i = 0; i < tensors.size(); ++i) {
    Result<void> declared = writer.declare_tensor(tensors[i].name, types[i], tensors[i].shape);
    if (!declared) return declared.take_error().with_context(output_path);
  }
  LAMINA_TRY(writer.open(output_path));

  std::unique_ptr<ThreadPool> own_pool;
  Executor* executor = options.executor;
  if (executor == nullptr) {
    own_pool.reset(new ThreadPool(options.thread_count));
    executor = own_pool.get();
  }
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const gguf::TensorInfo& tensor = tensors[i];
    if (change_of[i] == nullptr) {
      LAMINA_TRY(writer.write_tensor(tensor.data, static_cast<std::size_t>(tensor.size_bytes)));
    } else {
      // The model's view of this tensor: [out, in], in place in the mapping.
      const TensorView& base = projection_weight(model.weights(), change_of[i]->layer, change_of[i]->projection);
      Result<std::vector<std::uint8_t>> merged = merge_matrix(*executor, stack, change_of[i]->layer, change_of[i]->projection, base, types[i]);
      if (!merged) return merged.take_error().with_context(file.name() + ": tensor '" + tensor.name + "'");
      LAMINA_TRY(writer.write_tensor(merged->data(), merged->size()));
    }
    if (options.on_tensor) {
      LoraMergeProgress progress;
      progress.index = i;
      progress.count = tensors.size();
      progress.name = tensor.name;
      progress.from = tensor.dtype;
      progress.to = types[i];
      progress.merged = change_of[i] != nullptr;
      options.on_tensor(progress);
    }
  }
  LAMINA_TRY(writer.finish());
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

// =============================================================================================
// Combining adapters
// =============================================================================================

// One adapter of a combination and its weight (PEFT's `weights`; negative subtracts).
struct CombineSource {
  std::shared_ptr<const LoraAdapter> adapter;
  float weight = 1.0f;
};

// One matrix of the combined adapter: delta W = b a, scaling 1 (combine.hpp's convention).
struct CombinedModule {
  std::uint32_t layer = 0;
  Projection projection = Projection::query;
  lora::LowRankFactors factors;  // a [rank, in], b [out, rank]
};

struct CombinedAdapter {
  AdapterShape shape;                  // of the model the inputs were built for
  std::vector<CombinedModule> modules;  // by layer, then in projection order
  std::vector<std::string> sources;    // "path:weight" of each input, for the metadata
  lora::CombineMethod method = lora::CombineMethod::svd;

  std::size_t max_rank() const {
    std::size_t rank = 0;
    for (const CombinedModule& module : modules) rank = module.factors.rank > rank ? module.factors.rank : rank;
    return rank;
  }
  bool uniform_rank() const {
    for (const CombinedModule& module : modules) if (module.factors.rank != max_rank()) return false;
    return true;
  }
};

// A module's factors as floats (they may be stored as F16, see LoraModule::factor_type).
inline lora::LowRankFactors module_factors(const LoraModule& module) {
  lora::LowRankFactors factors;
  factors.rank = module.rank;
  factors.in = module.in;
  factors.out = module.out;
  factors.a.resize(static_cast<std::size_t>(module.rank) * module.in);
  factors.b.resize(static_cast<std::size_t>(module.out) * module.rank);
  for (std::size_t r = 0; r < module.rank; ++r)
    for (std::size_t i = 0; i < module.in; ++i) factors.a[r * module.in + i] = module.a_at(r, i);
  for (std::size_t o = 0; o < module.out; ++o)
    for (std::size_t r = 0; r < module.rank; ++r) factors.b[o * module.rank + r] = module.b_at(o, r);
  return factors;
}

// The dare masks' seed for one matrix: options.seed + layer * 7 + projection, so masks do not
// repeat across matrices (combine.hpp's advice) and one seed reproduces the whole adapter.
inline std::uint64_t combine_module_seed(std::uint64_t seed, std::uint32_t layer, Projection projection) {
  return seed + static_cast<std::uint64_t>(layer) * projection_count + static_cast<std::uint64_t>(projection);
}

// PEFT's add_weighted_adapter over whole adapters: for every (layer, matrix) that any input
// adapts, lora::combine over the inputs that adapt it (an input that does not adapt a matrix is
// left out for it, as PEFT does), each with its scaling and weight. The result has scaling 1.
// Errors: no inputs, an input built for another model than the first, a DoRA input (PEFT's
// add_weighted_adapter refuses them too: a magnitude vector does not combine linearly), a
// density outside (0, 1] for a pruning method, and combine's own errors (e.g. unequal ranks for
// linear), named by matrix and adapters.
inline Result<CombinedAdapter> combine_adapters(const std::vector<CombineSource>& sources, const lora::CombineOptions& options,
                                                const std::vector<std::string>& labels = {}) {
  if (sources.empty()) return fail(ErrorCode::invalid_argument, "combine: no adapters given");
  if (!labels.empty() && labels.size() != sources.size()) {
    return fail(ErrorCode::invalid_argument, "combine: " + std::to_string(labels.size()) + " labels for " + std::to_string(sources.size()) + " adapters");
  }
  for (const CombineSource& source : sources) {
    if (source.adapter == nullptr) return fail(ErrorCode::invalid_argument, "combine: an input has no adapter (null pointer)");
    if (!(source.adapter->shape() == sources[0].adapter->shape())) {
      return fail(ErrorCode::type_mismatch, "combine: '" + source.adapter->name() + "' and '" + sources[0].adapter->name() +
                                                "' were built for models of different shapes");
    }
    if (source.adapter->has_dora()) {
      return fail(ErrorCode::unsupported, "combine: '" + source.adapter->name() +
                                              "' is a DoRA adapter; its magnitude vectors cannot be combined (PEFT's add_weighted_adapter refuses DoRA too)");
    }
    if (!std::isfinite(source.weight)) {
      return fail(ErrorCode::invalid_argument, "combine: the weight of '" + source.adapter->name() + "' is not a finite number");
    }
  }
  const lora::CombineMethod method = options.method;
  const bool prunes = method == lora::CombineMethod::ties || method == lora::CombineMethod::dare_linear ||
                      method == lora::CombineMethod::dare_ties || method == lora::CombineMethod::magnitude_prune;
  if (prunes && !(options.density > 0.0f && options.density <= 1.0f)) {
    return fail(ErrorCode::invalid_argument, std::string("combine: method ") + lora::to_string(method) + " needs a density in (0, 1], got " +
                                                 ::lamina::detail::format_float(options.density));
  }

  CombinedAdapter combined;
  combined.shape = sources[0].adapter->shape();
  combined.method = method;
  for (std::size_t s = 0; s < sources.size(); ++s) {
    combined.sources.push_back(labels.empty() ? sources[s].adapter->name() + ":" + ::lamina::detail::format_float(sources[s].weight) : labels[s]);
  }
  for (std::uint32_t layer = 0; layer < combined.shape.block_count; ++layer) {
    for (std::size_t p = 0; p < projection_count; ++p) {
      const Projection projection = projection_at(p);
      std::vector<lora::LowRankFactors> factors;  // [inputs that adapt this matrix]
      std::vector<const CombineSource*> used;
      factors.reserve(sources.size());
      for (const CombineSource& source : sources) {
        const LoraModule& module = source.adapter->module(layer, projection);
        if (!module.active()) continue;
        factors.push_back(module_factors(module));
        used.push_back(&source);
      }
      if (factors.empty()) continue;
      std::vector<lora::CombineInput> inputs;
      for (std::size_t i = 0; i < factors.size(); ++i) {
        inputs.push_back({&factors[i], used[i]->adapter->module(layer, projection).scaling, used[i]->weight});
      }
      lora::CombineOptions module_options = options;
      module_options.seed = combine_module_seed(options.seed, layer, projection);
      Result<lora::LowRankFactors> result = lora::combine(inputs, module_options);
      if (!result) {
        std::string names;
        for (const CombineSource* source : used) names += (names.empty() ? "" : ", ") + source->adapter->name();
        return result.take_error().with_context("blk." + std::to_string(layer) + "." + projection_gguf_name(projection) + " (" + names + ")");
      }
      combined.modules.push_back({layer, projection, std::move(*result)});
    }
  }
  return combined;
}

// What the written adapter says about its base model.
struct CombinedAdapterInfo {
  std::string architecture;  // general.architecture of the base (GGUF output)
  std::string base_name;     // general.name of the base, empty when it has none (PEFT output)
};

inline CombinedAdapterInfo combined_adapter_info(const Model& model) {
  CombinedAdapterInfo info;
  info.architecture = model.hparams().architecture_name;
  Result<std::string> name = model.file().get_string_or("general.name", "");
  if (name) info.base_name = *name;
  return info;
}

namespace detail {

inline bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Creates `path` and its missing parents; an existing directory is fine.
inline Result<void> make_directories(const std::string& path) {
  for (std::size_t end = 1; end <= path.size(); ++end) {
    if (end != path.size() && path[end] != '/' && path[end] != '\\') continue;
    const std::string part = path.substr(0, end);
    if (::lamina::peft::detail::is_directory(part)) continue;
#if LAMINA_WINDOWS
    const int made = ::_mkdir(part.c_str());
#else
    const int made = ::mkdir(part.c_str(), 0777);
#endif
    if (made != 0 && !(errno == EEXIST && ::lamina::peft::detail::is_directory(part))) {
      return fail(ErrorCode::io, path + ": cannot create directory " + part + ": " + std::strerror(errno));
    }
  }
  return success();
}

// Through write_regular_file (core/file_io.hpp): replaced whole or not at all, and never over a
// FIFO or device.
inline Result<void> write_text_file(const std::string& path, const std::string& text) {
  return write_regular_file(path, text.data(), text.size());
}

inline const char* hf_short_name(Projection projection) {
  static const char* const names[projection_count] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return names[static_cast<std::size_t>(projection)];
}

}  // namespace detail

// llama.cpp's GGUF adapter format: general.architecture, general.type = adapter,
// adapter.type = lora, adapter.lora.alpha; tensors blk.N.<matrix>.weight.lora_a [rank, in] and
// .lora_b [out, rank], F32. llama.cpp (and lamina) scale each matrix by alpha / its own rank.
// The combined factors mean scaling 1, so alpha = the rank when every matrix has the same rank.
// When ranks differ (cat/svd over inputs that adapt different matrices: a matrix only one input
// adapts keeps that input's rank), one alpha cannot give every matrix scaling 1: alpha is then
// the largest rank R, and the A of a matrix of rank r is stored multiplied by r / R, which
// cancels its scaling R / r exactly (up to one float rounding).
inline Result<void> write_combined_gguf(const std::string& path, const CombinedAdapter& combined, const CombinedAdapterInfo& info) {
  if (combined.modules.empty()) return fail(ErrorCode::invalid_argument, path + ": the combined adapter has no matrices");
  const std::size_t alpha_rank = combined.max_rank();
  gguf::Writer writer;
  writer.set("general.architecture", gguf::Value::from_string(info.architecture));
  writer.set("general.type", gguf::Value::from_string("adapter"));
  writer.set("general.name", gguf::Value::from_string(std::string("lamina lora combine (") + lora::to_string(combined.method) + ")"));
  writer.set("adapter.type", gguf::Value::from_string("lora"));
  writer.set("adapter.lora.alpha", gguf::Value::from_f32(static_cast<float>(alpha_rank)));
  writer.set("lamina.combine.method", gguf::Value::from_string(lora::to_string(combined.method)));
  writer.set("lamina.combined_adapters", gguf::Value::from_strings(combined.sources));
  std::vector<float> a;
  for (const CombinedModule& module : combined.modules) {
    const lora::LowRankFactors& f = module.factors;
    const std::string name = "blk." + std::to_string(module.layer) + "." + projection_gguf_name(module.projection) + ".weight";
    a = f.a;
    if (f.rank != alpha_rank) {
      const float compensation = static_cast<float>(static_cast<double>(f.rank) / static_cast<double>(alpha_rank));
      for (float& value : a) value *= compensation;
    }
    const std::int64_t rank = static_cast<std::int64_t>(f.rank), in = static_cast<std::int64_t>(f.in), out = static_cast<std::int64_t>(f.out);
    Result<void> added = writer.add_tensor(name + ".lora_a", DType::f32, {rank, in}, a.data(), a.size() * sizeof(float));
    if (!added) return added.take_error().with_context(path);
    added = writer.add_tensor(name + ".lora_b", DType::f32, {out, rank}, f.b.data(), f.b.size() * sizeof(float));
    if (!added) return added.take_error().with_context(path);
  }
  return writer.write_file(path);
}

// A Hugging Face PEFT directory (created when missing): adapter_config.json and
// adapter_model.safetensors with base_model.model.model.layers.N.<module>.lora_A.weight [rank, in]
// and .lora_B.weight [out, rank], F32. r = lora_alpha = the largest rank, use_rslora false, so
// alpha / r = 1; a matrix of another rank gets rank_pattern and alpha_pattern entries (both its
// rank) under its full module path, which keeps its scaling 1 too.
inline Result<void> write_combined_peft(const std::string& directory, const CombinedAdapter& combined, const CombinedAdapterInfo& info) {
  if (combined.modules.empty()) return fail(ErrorCode::invalid_argument, directory + ": the combined adapter has no matrices");
  const std::size_t max_rank = combined.max_rank();
  nlohmann::ordered_json rank_pattern = nlohmann::ordered_json::object();
  nlohmann::ordered_json alpha_pattern = nlohmann::ordered_json::object();
  bool targeted[projection_count] = {};
  std::vector<safetensors::WriteTensor> tensors;
  std::vector<std::string> names;  // kept alive with the tensors
  for (const CombinedModule& module : combined.modules) {
    const std::string path = "model.layers." + std::to_string(module.layer) + "." + projection_hf_name(module.projection);
    targeted[static_cast<std::size_t>(module.projection)] = true;
    if (module.factors.rank != max_rank) {
      rank_pattern[path] = module.factors.rank;
      alpha_pattern[path] = module.factors.rank;
    }
    const std::int64_t rank = static_cast<std::int64_t>(module.factors.rank);
    tensors.push_back({"base_model.model." + path + ".lora_A.weight", DType::f32, {rank, static_cast<std::int64_t>(module.factors.in)},
                       module.factors.a.data()});
    tensors.push_back({"base_model.model." + path + ".lora_B.weight", DType::f32, {static_cast<std::int64_t>(module.factors.out), rank},
                       module.factors.b.data()});
  }
  nlohmann::ordered_json target_modules = nlohmann::ordered_json::array();
  for (std::size_t p = 0; p < projection_count; ++p) if (targeted[p]) target_modules.push_back(detail::hf_short_name(projection_at(p)));
  nlohmann::ordered_json config = nlohmann::ordered_json::object();
  config["peft_type"] = "LORA";
  config["task_type"] = "CAUSAL_LM";
  config["base_model_name_or_path"] = info.base_name.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(info.base_name);
  config["r"] = max_rank;
  config["lora_alpha"] = max_rank;
  config["rank_pattern"] = rank_pattern;
  config["alpha_pattern"] = alpha_pattern;
  config["target_modules"] = target_modules;
  config["use_rslora"] = false;
  config["use_dora"] = false;
  config["bias"] = "none";
  config["fan_in_fan_out"] = false;
  config["lora_dropout"] = 0.0;
  config["inference_mode"] = true;
  // error_handler_t::replace: dump() never throws (with -fno-exceptions a throw would abort);
  // the strings here are ASCII anyway, but general.name comes from a file.
  const std::string text = config.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";

  LAMINA_TRY(detail::make_directories(directory));
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"lamina.combine.method", lora::to_string(combined.method)}};
  LAMINA_TRY(safetensors::write(directory + "/adapter_model.safetensors", tensors, metadata));
  return detail::write_text_file(directory + "/adapter_config.json", text);
}

// GGUF when `path` ends in ".gguf", else a PEFT directory.
inline Result<void> write_combined_adapter(const std::string& path, const CombinedAdapter& combined, const CombinedAdapterInfo& info) {
  if (detail::ends_with(path, ".gguf")) return write_combined_gguf(path, combined, info);
  return write_combined_peft(path, combined, info);
}

LAMINA_NAMESPACE_END
