// lamina/adapters/peft.hpp — Hugging Face PEFT LoRA adapters, read natively: a directory with
// adapter_config.json and adapter_model.safetensors, no conversion step.
//
//   auto adapter = lamina::peft::load_adapter(*model, "my-lora/");   // or a .gguf adapter file
//   session.add_adapter(*adapter, 0.8f);
//
// This header reads JSON with nlohmann/json, so it is not part of <lamina/lamina.hpp>; include
// it where adapters are loaded.
//
// Hugging Face module names of the Llama and Qwen2 families map to lamina's matrices:
//   base_model.model.model.layers.N.self_attn.{q,k,v,o}_proj  -> blk.N.attn_{q,k,v,output}
//   base_model.model.model.layers.N.mlp.{gate,up,down}_proj   -> blk.N.ffn_{gate,up,down}
// with tensors <module>.lora_A.weight [r, in], <module>.lora_B.weight [out, r] and, for DoRA,
// <module>.lora_magnitude_vector(.weight) [out]. rank_pattern / alpha_pattern, rsLoRA,
// target_modules and layers_to_transform follow PEFT's rules (io/peft_config.hpp).
#pragma once

#include "../config.hpp"
#include "../io/peft_config.hpp"
#include "../io/safetensors.hpp"
#include "../model/model.hpp"
#include "lora_load.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <utility>
#include <vector>

#include "../core/definitions_begin.inl"

LAMINA_NAMESPACE_BEGIN
namespace peft {

namespace detail {

struct ParsedKey {
  std::string module_path;  // "model.layers.3.self_attn.q_proj"
  std::uint32_t layer = 0;
  Projection projection = Projection::query;
  char part = 0;            // 'A', 'B' or 'M' (magnitude)
};

// Splits a PEFT tensor name; false for names that are no LoRA tensor of a decoder layer's matrix.
inline bool parse_key(std::string name, ParsedKey* parsed) {
  const std::string prefix = "base_model.model.";
  if (name.compare(0, prefix.size(), prefix) == 0) name = name.substr(prefix.size());
  // The tensor part, with PEFT's optional adapter name (".default") before ".weight".
  struct Suffix { const char* text; char part; };
  const Suffix suffixes[] = {{".lora_A.weight", 'A'}, {".lora_A.default.weight", 'A'}, {".lora_B.weight", 'B'},
                             {".lora_B.default.weight", 'B'}, {".lora_magnitude_vector.weight", 'M'},
                             {".lora_magnitude_vector", 'M'}, {".lora_magnitude_vector.default.weight", 'M'},
                             {".lora_magnitude_vector.default", 'M'}};
  std::string module;
  for (const Suffix& suffix : suffixes) {
    const std::string text = suffix.text;
    if (name.size() > text.size() && name.compare(name.size() - text.size(), text.size(), text) == 0) {
      module = name.substr(0, name.size() - text.size());
      parsed->part = suffix.part;
      break;
    }
  }
  if (module.empty()) return false;
  const std::string layers = "model.layers.";
  if (module.compare(0, layers.size(), layers) != 0) return false;
  std::size_t at = layers.size();
  const std::size_t digits_begin = at;
  std::uint64_t number = 0;
  while (at < module.size() && module[at] >= '0' && module[at] <= '9' && at - digits_begin < 6) number = number * 10 + static_cast<std::uint64_t>(module[at++] - '0');
  if (at == digits_begin || at >= module.size() || module[at] != '.') return false;
  const std::string inner = module.substr(at + 1);
  for (std::size_t p = 0; p < projection_count; ++p) {
    if (inner == projection_hf_name(projection_at(p))) {
      parsed->module_path = module;
      parsed->layer = static_cast<std::uint32_t>(number);
      parsed->projection = projection_at(p);
      return true;
    }
  }
  return false;
}

inline bool is_directory(const std::string& path) {
  struct stat status;
  return ::stat(path.c_str(), &status) == 0 && S_ISDIR(status.st_mode);
}

// The float scale of a module, or an Error naming the config key that gave its alpha when
// alpha / r (or alpha / sqrt(r)) does not fit a float: PEFT's lora_alpha is a JSON number, and
// 1e300 is a valid one.
inline Result<float> module_scaling(const AdapterConfig& config, const RankAlpha& rank_alpha, const std::string& config_path,
                                    const std::string& module) {
  const double scale = scaling(config, rank_alpha.rank, rank_alpha.alpha);
  const float stored = static_cast<float>(scale);
  if (std::isfinite(stored)) return stored;
  const std::string source = rank_alpha.alpha_key.empty()
                                 ? std::string("key 'lora_alpha'")
                                 : "key 'alpha_pattern': pattern " + safetensors::detail::quote_name(rank_alpha.alpha_key);
  const std::string formula = config.use_rslora ? "alpha/sqrt(r)" : "alpha/r";
  return fail(ErrorCode::invalid_format, config_path + ": " + source + ": alpha " + lamina::detail::number_text(rank_alpha.alpha) + " with r " +
                                             std::to_string(rank_alpha.rank) + " gives module " + safetensors::detail::quote_name(module) +
                                             " the scale " + formula + " = " + lamina::detail::number_text(scale) +
                                             ", which is not a finite float (the largest is about 3.4e38)");
}

}  // namespace detail

// Reads the PEFT directory `directory` and checks it against the model (`hparams`, `weights`).
// Errors name adapter_config.json and its key, or adapter_model.safetensors and its tensor.
LAMINA_DETAIL_API Result<std::shared_ptr<const LoraAdapter>> load_peft_adapter(const std::string& directory, const ModelHparams& hparams,
                                                                                const ModelWeights& weights);
#if LAMINA_DETAIL_DEFINITIONS
LAMINA_DETAIL_API Result<std::shared_ptr<const LoraAdapter>> load_peft_adapter(const std::string& directory, const ModelHparams& hparams,
                                                                                const ModelWeights& weights) {
  // The config's patterns are compiled once, here, and matched against each module with a bound
  // on the work (io/peft_config.hpp).
  ModuleMatcher matcher;
  Result<AdapterConfig> config = read_adapter_config(directory, &matcher);
  if (!config) return config.take_error();
  const std::string config_path = directory + "/adapter_config.json";
  const std::string tensors_path = directory + "/adapter_model.safetensors";
  Result<safetensors::File> file = safetensors::File::open(tensors_path);
  if (!file) return file.take_error();
  const auto tensor_name = [](const safetensors::TensorInfo& info) { return "tensor " + safetensors::detail::quote_name(info.name); };

  struct Pending {
    LoraFactors factors;
    const safetensors::TensorInfo* a = nullptr;
    const safetensors::TensorInfo* b = nullptr;
    const safetensors::TensorInfo* magnitude = nullptr;
  };
  std::vector<Pending> pending;
  // [block_count * projection_count]: the index in `pending` of each matrix's entry, or -1.
  // Layers past the model are refused first, so a hostile file cannot make this (or the
  // pattern matching below) grow with its tensor count.
  std::vector<std::ptrdiff_t> pending_of(static_cast<std::size_t>(hparams.block_count) * projection_count, -1);
  for (const safetensors::TensorInfo& info : file->tensors()) {
    detail::ParsedKey key;
    if (!detail::parse_key(info.name, &key)) {
      return fail(ErrorCode::unsupported, tensors_path + ": " + tensor_name(info) +
                                              " is not the LoRA of a decoder layer's attention or MLP projection (lamina adapts those)");
    }
    if (key.layer >= hparams.block_count) {
      return fail(ErrorCode::type_mismatch, tensors_path + ": " + tensor_name(info) + ": layer " + std::to_string(key.layer) +
                                                " does not exist (the model has " + std::to_string(hparams.block_count) + " layers)");
    }
    Result<bool> targeted = matcher.targets_module(key.module_path);
    if (!targeted) return targeted.take_error();
    if (!*targeted) {
      return fail(ErrorCode::invalid_format, tensors_path + ": " + tensor_name(info) +
                                                 " belongs to a module adapter_config.json does not target (target_modules / layers_to_transform)");
    }
    const std::size_t matrix = static_cast<std::size_t>(key.layer) * projection_count + static_cast<std::size_t>(key.projection);
    if (pending_of[matrix] < 0) {
      pending_of[matrix] = static_cast<std::ptrdiff_t>(pending.size());
      pending.emplace_back();
      Pending& entry = pending.back();
      entry.factors.source = key.module_path;
      entry.factors.layer = key.layer;
      entry.factors.projection = key.projection;
    }
    Pending& entry = pending[static_cast<std::size_t>(pending_of[matrix])];
    const safetensors::TensorInfo** slot = key.part == 'A' ? &entry.a : key.part == 'B' ? &entry.b : &entry.magnitude;
    if (*slot != nullptr) {
      return fail(ErrorCode::invalid_format, tensors_path + ": " + tensor_name(info) + " holds the same matrix as tensor " +
                                                 safetensors::detail::quote_name((*slot)->name) + " (it appears twice)");
    }
    // Only F32, F16 and BF16 factors are read; say so before any shape is compared.
    if (!info.supported) {
      return fail(ErrorCode::unsupported, tensors_path + ": " + tensor_name(info) + " has dtype " +
                                              safetensors::detail::quote_name(info.dtype_name) +
                                              ", which lamina does not read (LoRA factors must be F32, F16 or BF16)");
    }
    *slot = &info;
  }
  if (pending.empty()) return fail(ErrorCode::invalid_format, tensors_path + ": the adapter holds no LoRA tensors");

  std::vector<LoraFactors> factors;
  for (Pending& entry : pending) {
    const std::string module = safetensors::detail::quote_name(entry.factors.source);
    if (entry.a == nullptr || entry.b == nullptr) {
      return fail(ErrorCode::missing, tensors_path + ": module " + module + " lacks its lora_" + (entry.a == nullptr ? "A" : "B") + " tensor");
    }
    if (config->use_dora && entry.magnitude == nullptr) {
      return fail(ErrorCode::missing, tensors_path + ": module " + module + " lacks its lora_magnitude_vector (use_dora is set)");
    }
    if (!config->use_dora && entry.magnitude != nullptr) {
      return fail(ErrorCode::invalid_format, tensors_path + ": module " + module + " has a DoRA magnitude (" + tensor_name(*entry.magnitude) +
                                                 ") but use_dora is not set");
    }
    Result<RankAlpha> rank_alpha = matcher.effective_rank_alpha(entry.factors.source);
    if (!rank_alpha) return rank_alpha.take_error();
    const std::vector<std::int64_t>& a_shape = entry.a->shape;
    const std::vector<std::int64_t>& b_shape = entry.b->shape;
    if (a_shape.size() != 2 || b_shape.size() != 2 || a_shape[0] != b_shape[1] || a_shape[0] <= 0 || a_shape[0] > 65536 ||
        a_shape[1] > (1 << 24) || b_shape[0] > (1 << 24)) {
      return fail(ErrorCode::type_mismatch, tensors_path + ": module " + module + ": lora_A [r, in] (" + tensor_name(*entry.a) +
                                                ") and lora_B [out, r] (" + tensor_name(*entry.b) + ") do not fit together");
    }
    if (a_shape[0] != rank_alpha->rank) {
      return fail(ErrorCode::type_mismatch, tensors_path + ": module " + module + " has rank " + std::to_string(a_shape[0]) + " (" +
                                                tensor_name(*entry.a) + "), adapter_config.json says " + std::to_string(rank_alpha->rank) +
                                                (rank_alpha->rank_key.empty() ? std::string(" (key 'r')")
                                                                              : " (key 'rank_pattern': pattern " +
                                                                                    safetensors::detail::quote_name(rank_alpha->rank_key) + ")"));
    }
    Result<float> scale = detail::module_scaling(*config, *rank_alpha, config_path, entry.factors.source);
    if (!scale) return scale.take_error();
    LoraFactors& factor = entry.factors;
    // build_adapter checks the values (finite) and names these in its messages.
    factor.a_source = tensors_path + ": " + tensor_name(*entry.a);
    factor.b_source = tensors_path + ": " + tensor_name(*entry.b);
    if (entry.magnitude != nullptr) factor.magnitude_source = tensors_path + ": " + tensor_name(*entry.magnitude);
    factor.rank = static_cast<std::uint32_t>(a_shape[0]);
    factor.in = static_cast<std::uint32_t>(a_shape[1]);
    factor.out = static_cast<std::uint32_t>(b_shape[0]);
    factor.scaling = *scale;
    if (factor.in != projection_columns(hparams, factor.projection) || factor.out != projection_rows(hparams, factor.projection)) {
      return build_adapter(directory, hparams, weights, {std::move(factor)});  // reports the mismatch, naming the module
    }
    // to_f32 names the tensor; the file name is added here.
    Result<std::vector<float>> a = safetensors::to_f32(*entry.a);
    if (!a) return a.take_error().with_context(tensors_path);
    Result<std::vector<float>> b = safetensors::to_f32(*entry.b);
    if (!b) return b.take_error().with_context(tensors_path);
    factor.a = std::move(*a);
    factor.b = std::move(*b);
    if (entry.magnitude != nullptr) {
      if (entry.magnitude->shape.size() != 1 && !(entry.magnitude->shape.size() == 2 && entry.magnitude->shape[1] == 1)) {
        return fail(ErrorCode::type_mismatch, tensors_path + ": the DoRA magnitude of " + module + " (" + tensor_name(*entry.magnitude) +
                                                  ") is not a vector");
      }
      Result<std::vector<float>> magnitude = safetensors::to_f32(*entry.magnitude);
      if (!magnitude) return magnitude.take_error().with_context(tensors_path);
      factor.magnitude = std::move(*magnitude);
    }
    factors.push_back(std::move(factor));
  }
  return build_adapter(directory, hparams, weights, std::move(factors));
}
#endif

// A PEFT directory or a GGUF adapter file, whichever `path` is. `control` reports the stages
// (parse, convert, done) and stops the load before converting or after it when its token is
// cancelled (ErrorCode::cancelled); an adapter is small next to its model, so it checks less often.
LAMINA_DETAIL_API Result<std::shared_ptr<const LoraAdapter>> load_adapter(const Model& model, const std::string& path,
                                                                          const LoadControl& control = LoadControl());
#if LAMINA_DETAIL_DEFINITIONS
LAMINA_DETAIL_API Result<std::shared_ptr<const LoraAdapter>> load_adapter(const Model& model, const std::string& path,
                                                                          const LoadControl& control) {
  lamina::detail::LoadReporter reporter(control);
  auto cancelled = [&]() -> Error { return fail(ErrorCode::cancelled, path + ": loading was cancelled"); };
  reporter.stage(LoadStage::parse, 1, 0.0, 0.1);
  const bool peft_folder = detail::is_directory(path);
  gguf::File file;  // a GGUF adapter's header, parsed before converting; a PEFT folder is read whole below
  if (!peft_folder) {
    Result<gguf::File> opened = gguf::File::open(path);
    if (!opened) return opened.take_error();
    file = std::move(*opened);
    reporter.report(1);
  }
  if (reporter.cancelled()) return cancelled();
  reporter.stage(LoadStage::convert, 1, 0.1, 1.0);
  Result<std::shared_ptr<const LoraAdapter>> adapter = peft_folder ? load_peft_adapter(path, model.hparams(), model.weights())
                                                                   : load_gguf_adapter(file, model.hparams(), model.weights());
  if (!adapter) return adapter.take_error();
  if (reporter.cancelled()) return cancelled();
  reporter.finish();
  return adapter;
}
#endif

}  // namespace peft
LAMINA_NAMESPACE_END

#include "../core/definitions_end.inl"
