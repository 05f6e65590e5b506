// lamina/model/model.hpp — a loaded model: the GGUF file (memory-mapped), its hyperparameters,
// its weights bound in place, and its tokenizer.
//
//   auto model = lamina::Model::load("model.gguf");   // Result<std::shared_ptr<const Model>>
//
// A Model is never modified after loading: any number of sessions (session.hpp) on any threads
// share one model and one memory mapping, and adapters (adapters/) are loaded against it.
#pragma once

#include "../config.hpp"
#include "../core/fingerprint.hpp"
#include "../core/progress.hpp"
#include "../core/result.hpp"
#include "../io/gguf.hpp"
#include "../text/tokenizer.hpp"
#include "hparams.hpp"
#include "llama.hpp"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/definitions_begin.inl"

LAMINA_NAMESPACE_BEGIN

struct ModelParams {
  bool load_tokenizer = true;  // false for files without tokenizer metadata; encode/decode are then unavailable
  // Read one byte of every page of the weights while loading, so that the first tokens are not
  // slowed by page faults (the file is then in memory, or at least in the page cache).
  bool touch_pages = false;
  // Progress reports and cancellation, for a load on a worker thread (core/progress.hpp).
  LoadControl load;
};

class Model {
 public:
  // Maps `path` and binds its weights in place. Errors name the file and the tensor or key.
  static Result<std::shared_ptr<const Model>> load(const std::string& path, const ModelParams& params = {});
  // The same for a file already open.
  static Result<std::shared_ptr<const Model>> from_file(gguf::File file, const ModelParams& params = {});

  const gguf::File& file() const { return file_; }
  const ModelHparams& hparams() const { return hparams_; }
  // The hyperparameters and the tensor table (names, types, shapes, places) as one number
  // (core/fingerprint.hpp): saved session states carry it, so that a state of another model is
  // refused. Two files that differ only in their tensors' values are not told apart.
  std::uint64_t fingerprint() const { return fingerprint_; }
  const ModelWeights& weights() const { return weights_; }
  // The bytes of the weights, mapped from the file (not copied), and how many of them are in
  // memory now (mincore(); the page cache may hold more of the file than this process touched).
  // On Windows resident_bytes() is not measured and reports mapped_bytes().
  std::uint64_t mapped_bytes() const;
  std::uint64_t resident_bytes() const;
  bool has_tokenizer() const { return tokenizer_ != nullptr; }
  // Precondition: has_tokenizer().
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // The chat template the file ships, as Jinja source (tokenizer.chat_template; text/chat.hpp
  // renders it), or the one named `name` (tokenizer.chat_template.NAME, such as "tool_use").
  // An error names the key when the file has none or holds something else than a string.
  Result<std::string> chat_template(const std::string& name = std::string()) const;
  // The names of the named templates (tokenizer.chat_templates), in the file's order; empty
  // when it lists none.
  Result<std::vector<std::string>> chat_template_names() const;

 private:
  Model() = default;
  gguf::File file_;
  ModelHparams hparams_;
  ModelWeights weights_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::uint64_t fingerprint_ = 0;
};

#if LAMINA_DETAIL_DEFINITIONS
LAMINA_DETAIL_API Result<std::shared_ptr<const Model>> Model::load(const std::string& path, const ModelParams& params) {
  detail::LoadReporter reporter(params.load);
  reporter.stage(LoadStage::parse, 1, 0.0, 0.02);
  Result<gguf::File> file = gguf::File::open(path);
  if (!file) return file.take_error();
  reporter.report(1);
  return from_file(std::move(*file), params);
}

LAMINA_DETAIL_API Result<std::shared_ptr<const Model>> Model::from_file(gguf::File file, const ModelParams& params) {
  // Shares of the whole load after the parse's 2%, by the stages that run: validating and the
  // tokenizer's tables are quick, touching pages reads the whole file.
  const double validate_weight = 1.0, touch_weight = params.touch_pages ? 8.0 : 0.0, tokenizer_weight = params.load_tokenizer ? 1.0 : 0.0;
  const double share_per_weight = 0.98 / (validate_weight + touch_weight + tokenizer_weight);
  const double validated_at = 0.02 + validate_weight * share_per_weight;
  const double touched_at = validated_at + touch_weight * share_per_weight;
  detail::LoadReporter reporter(params.load);
  const std::string name = file.name();
  auto cancelled = [&]() -> Error { return fail(ErrorCode::cancelled, name + ": loading was cancelled"); };
  reporter.stage(LoadStage::validate, 1, 0.02, validated_at);
  if (reporter.cancelled()) return cancelled();
  std::shared_ptr<Model> model(new Model());
  model->file_ = std::move(file);
  Result<ModelHparams> hparams = read_hparams(model->file_);
  if (!hparams) return hparams.take_error();
  model->hparams_ = std::move(*hparams);
  Result<ModelWeights> weights = bind_weights(model->file_, model->hparams_);
  if (!weights) return weights.take_error();
  model->weights_ = std::move(*weights);
  const ModelHparams& h = model->hparams_;
  Fingerprint identity;
  identity.add(h.architecture_name).add(h.context_length).add(h.embedding_length).add(h.block_count).add(h.feed_forward_length);
  identity.add(h.head_count).add(h.head_count_kv).add(h.head_size).add(h.vocab_size).add(h.rope_dimension_count);
  identity.add(static_cast<std::uint64_t>(h.rope_scaling)).add(h.rope_original_context_length).add(static_cast<std::uint64_t>(h.rope_style));
  for (float value : {h.rms_norm_epsilon, h.rope_frequency_base, h.rope_scaling_factor}) identity.add_bytes(&value, sizeof value);
  for (const gguf::TensorInfo& tensor : model->file_.tensors()) {
    identity.add(tensor.name).add(static_cast<std::uint64_t>(tensor.dtype)).add(tensor.offset).add(tensor.size_bytes);
    for (std::int64_t dimension : tensor.shape) identity.add(static_cast<std::uint64_t>(dimension));
  }
  model->fingerprint_ = identity.value();
  reporter.report(1);
  if (params.touch_pages) {
    reporter.stage(LoadStage::touch_pages, model->mapped_bytes(), validated_at, touched_at);
    std::uint8_t sum = 0;
    std::uint64_t touched = 0;
    for (const gguf::TensorInfo& tensor : model->file_.tensors()) {
      for (std::uint64_t at = 0; at < tensor.size_bytes; at += 4096) {
        sum = static_cast<std::uint8_t>(sum + tensor.data[at]);
        if (((touched + at) & ((std::uint64_t{1} << 22) - 1)) < 4096) {  // every 4 MiB
          if (reporter.cancelled()) return cancelled();
          reporter.report(touched + at);
        }
      }
      touched += tensor.size_bytes;
    }
    volatile std::uint8_t keep = sum;  // the reads must happen
    (void)keep;
    reporter.report(touched);
  }
  if (reporter.cancelled()) return cancelled();
  if (params.load_tokenizer) {
    reporter.stage(LoadStage::tokenizer, 1, touched_at, 1.0);
    Result<Tokenizer> tokenizer = Tokenizer::from_gguf(model->file_);
    if (!tokenizer) return tokenizer.take_error();
    if (tokenizer->vocab_size() != model->hparams_.vocab_size) {
      return fail(ErrorCode::invalid_format, model->file_.name() + ": the tokenizer has " +
                                                 std::to_string(tokenizer->vocab_size()) + " tokens, token_embd.weight " +
                                                 std::to_string(model->hparams_.vocab_size) + " rows");
    }
    model->tokenizer_ = std::make_shared<const Tokenizer>(std::move(*tokenizer));
    if (reporter.cancelled()) return cancelled();
  }
  reporter.finish();
  return std::shared_ptr<const Model>(std::move(model));
}

LAMINA_DETAIL_API Result<std::string> Model::chat_template(const std::string& name) const {
  const std::string key = name.empty() ? std::string("tokenizer.chat_template") : "tokenizer.chat_template." + name;
  if (!file_.contains(key)) {
    return fail(ErrorCode::missing,
                file_.name() + ": no chat template " + (name.empty() ? std::string() : "named '" + name + "' ") + "(" + key + ")");
  }
  return file_.get_string(key);
}

LAMINA_DETAIL_API Result<std::vector<std::string>> Model::chat_template_names() const {
  if (!file_.contains("tokenizer.chat_templates")) return std::vector<std::string>();
  return file_.get_string_array("tokenizer.chat_templates");
}

LAMINA_DETAIL_API std::uint64_t Model::mapped_bytes() const {
  std::uint64_t bytes = 0;
  for (const gguf::TensorInfo& tensor : file_.tensors()) bytes += tensor.size_bytes;
  return bytes;
}

LAMINA_DETAIL_API std::uint64_t Model::resident_bytes() const {
#if LAMINA_WINDOWS
  return mapped_bytes();
#else
  // The pages from the first tensor's to the last one's end (the data section is contiguous).
  const std::uint8_t* first = nullptr;
  const std::uint8_t* last = nullptr;
  for (const gguf::TensorInfo& tensor : file_.tensors()) {
    if (tensor.size_bytes == 0) continue;
    if (first == nullptr || tensor.data < first) first = tensor.data;
    if (last == nullptr || tensor.data + tensor.size_bytes > last) last = tensor.data + tensor.size_bytes;
  }
  if (first == nullptr) return 0;
  const long page_size = ::sysconf(_SC_PAGESIZE);
  const std::uintptr_t page = page_size > 0 ? static_cast<std::uintptr_t>(page_size) : 4096;
  const std::uintptr_t begin = reinterpret_cast<std::uintptr_t>(first) & ~(page - 1);
  const std::uintptr_t end = reinterpret_cast<std::uintptr_t>(last);
  const std::size_t pages = static_cast<std::size_t>((end - begin + page - 1) / page);
  std::vector<unsigned char> in_memory(pages);
  if (::mincore(reinterpret_cast<void*>(begin), end - begin, in_memory.data()) != 0) return mapped_bytes();
  std::uint64_t resident_pages = 0;
  for (unsigned char flag : in_memory) resident_pages += flag & 1u;
  return std::min<std::uint64_t>(resident_pages * page, mapped_bytes());
#endif
}
#endif  // LAMINA_DETAIL_DEFINITIONS

LAMINA_NAMESPACE_END

#include "../core/definitions_end.inl"
