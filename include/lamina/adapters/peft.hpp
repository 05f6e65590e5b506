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

#include "../io/peft_config.hpp"
#include "../io/safetensors.hpp"
#include "../session.hpp"
#include "lora_load.hpp"

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <utility>
#include <vector>

namespace lamina {
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

}  // namespace detail

// Reads the PEFT directory `directory` and checks it against the model (`hparams`, `weights`).
inline Result<std::shared_ptr<const LoraAdapter>> load_peft_adapter(const std::string& directory, const ModelHparams& hparams,
                                                                     const ModelWeights& weights) {
  Result<AdapterConfig> config = read_adapter_config(directory);
  if (!config) return config.take_error();
  const std::string tensors_path = directory + "/adapter_model.safetensors";
  Result<safetensors::File> file = safetensors::File::open(tensors_path);
  if (!file) return file.take_error();

  struct Pending {
    LoraFactors factors;
    const safetensors::TensorInfo* a = nullptr;
    const safetensors::TensorInfo* b = nullptr;
    const safetensors::TensorInfo* magnitude = nullptr;
  };
  std::vector<Pending> pending;
  for (const safetensors::TensorInfo& info : file->tensors()) {
    detail::ParsedKey key;
    if (!detail::parse_key(info.name, &key)) {
      return fail(ErrorCode::unsupported, tensors_path + ": tensor '" + info.name +
                                              "' is not the LoRA of a decoder layer's attention or MLP projection (lamina adapts those)");
    }
    if (!targets_module(*config, key.module_path)) {
      return fail(ErrorCode::invalid_format, tensors_path + ": tensor '" + info.name +
                                                 "' belongs to a module adapter_config.json does not target (target_modules / layers_to_transform)");
    }
    Pending* entry = nullptr;
    for (Pending& candidate : pending) {
      if (candidate.factors.layer == key.layer && candidate.factors.projection == key.projection) entry = &candidate;
    }
    if (entry == nullptr) {
      pending.emplace_back();
      entry = &pending.back();
      entry->factors.source = key.module_path;
      entry->factors.layer = key.layer;
      entry->factors.projection = key.projection;
    }
    const safetensors::TensorInfo** slot = key.part == 'A' ? &entry->a : key.part == 'B' ? &entry->b : &entry->magnitude;
    if (*slot != nullptr) return fail(ErrorCode::invalid_format, tensors_path + ": tensor '" + info.name + "' appears twice");
    *slot = &info;
  }
  if (pending.empty()) return fail(ErrorCode::invalid_format, tensors_path + ": the adapter holds no LoRA tensors");

  std::vector<LoraFactors> factors;
  for (Pending& entry : pending) {
    const std::string& module = entry.factors.source;
    if (entry.a == nullptr || entry.b == nullptr) {
      return fail(ErrorCode::missing, tensors_path + ": module '" + module + "' lacks its lora_" + (entry.a == nullptr ? "A" : "B") + " tensor");
    }
    if (config->use_dora && entry.magnitude == nullptr) {
      return fail(ErrorCode::missing, tensors_path + ": module '" + module + "' lacks its lora_magnitude_vector (use_dora is set)");
    }
    if (!config->use_dora && entry.magnitude != nullptr) {
      return fail(ErrorCode::invalid_format, tensors_path + ": module '" + module + "' has a DoRA magnitude but use_dora is not set");
    }
    const RankAlpha rank_alpha = effective_rank_alpha(*config, module);
    const std::vector<std::int64_t>& a_shape = entry.a->shape;
    const std::vector<std::int64_t>& b_shape = entry.b->shape;
    if (a_shape.size() != 2 || b_shape.size() != 2 || a_shape[0] != b_shape[1] || a_shape[0] <= 0 || a_shape[0] > 65536 ||
        a_shape[1] > (1 << 24) || b_shape[0] > (1 << 24)) {
      return fail(ErrorCode::type_mismatch, tensors_path + ": module '" + module + "': lora_A [r, in] and lora_B [out, r] do not fit together");
    }
    if (a_shape[0] != rank_alpha.rank) {
      return fail(ErrorCode::type_mismatch, tensors_path + ": module '" + module + "' has rank " + std::to_string(a_shape[0]) +
                                                ", adapter_config.json says " + std::to_string(rank_alpha.rank));
    }
    LoraFactors& factor = entry.factors;
    factor.source = module;
    factor.rank = static_cast<std::uint32_t>(a_shape[0]);
    factor.in = static_cast<std::uint32_t>(a_shape[1]);
    factor.out = static_cast<std::uint32_t>(b_shape[0]);
    factor.scaling = static_cast<float>(scaling(*config, rank_alpha.rank, rank_alpha.alpha));
    if (factor.layer < hparams.block_count &&
        (factor.in != projection_columns(hparams, factor.projection) || factor.out != projection_rows(hparams, factor.projection))) {
      return build_adapter(directory, hparams, weights, {std::move(factor)});  // reports the mismatch, naming the module
    }
    Result<std::vector<float>> a = safetensors::to_f32(*entry.a);
    if (!a) return a.take_error();
    Result<std::vector<float>> b = safetensors::to_f32(*entry.b);
    if (!b) return b.take_error();
    factor.a = std::move(*a);
    factor.b = std::move(*b);
    if (entry.magnitude != nullptr) {
      if (entry.magnitude->shape.size() != 1 && !(entry.magnitude->shape.size() == 2 && entry.magnitude->shape[1] == 1)) {
        return fail(ErrorCode::type_mismatch, tensors_path + ": the DoRA magnitude of '" + module + "' is not a vector");
      }
      Result<std::vector<float>> magnitude = safetensors::to_f32(*entry.magnitude);
      if (!magnitude) return magnitude.take_error();
      factor.magnitude = std::move(*magnitude);
    }
    factors.push_back(std::move(factor));
  }
  return build_adapter(directory, hparams, weights, std::move(factors));
}

// A PEFT directory or a GGUF adapter file, whichever `path` is.
inline Result<std::shared_ptr<const LoraAdapter>> load_adapter(const Model& model, const std::string& path) {
  if (detail::is_directory(path)) return load_peft_adapter(path, model.hparams(), model.weights());
  return load_gguf_adapter(model, path);
}

}  // namespace peft
}  // namespace lamina
