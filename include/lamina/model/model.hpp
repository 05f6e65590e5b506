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
#include "../core/result.hpp"
#include "../io/gguf.hpp"
#include "../text/tokenizer.hpp"
#include "hparams.hpp"
#include "llama.hpp"

#include <memory>
#include <string>
#include <utility>

#include "../core/definitions_begin.inl"

LAMINA_NAMESPACE_BEGIN

struct ModelParams {
  bool load_tokenizer = true;  // false for files without tokenizer metadata; encode/decode are then unavailable
  // Read one byte of every page of the weights while loading, so that the first tokens are not
  // slowed by page faults (the file is then in memory, or at least in the page cache).
  bool touch_pages = false;
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
  bool has_tokenizer() const { return tokenizer_ != nullptr; }
  // Precondition: has_tokenizer().
  const Tokenizer& tokenizer() const { return *tokenizer_; }

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
  Result<gguf::File> file = gguf::File::open(path);
  if (!file) return file.take_error();
  return from_file(std::move(*file), params);
}

LAMINA_DETAIL_API Result<std::shared_ptr<const Model>> Model::from_file(gguf::File file, const ModelParams& params) {
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
  if (params.touch_pages) {
    std::uint8_t sum = 0;
    for (const gguf::TensorInfo& tensor : model->file_.tensors()) {
      for (std::uint64_t at = 0; at < tensor.size_bytes; at += 4096) sum = static_cast<std::uint8_t>(sum + tensor.data[at]);
    }
    volatile std::uint8_t keep = sum;  // the reads must happen
    (void)keep;
  }
  if (params.load_tokenizer) {
    Result<Tokenizer> tokenizer = Tokenizer::from_gguf(model->file_);
    if (!tokenizer) return tokenizer.take_error();
    if (tokenizer->vocab_size() != model->hparams_.vocab_size) {
      return fail(ErrorCode::invalid_format, model->file_.name() + ": the tokenizer has " +
                                                 std::to_string(tokenizer->vocab_size()) + " tokens, token_embd.weight " +
                                                 std::to_string(model->hparams_.vocab_size) + " rows");
    }
    model->tokenizer_ = std::make_shared<const Tokenizer>(std::move(*tokenizer));
  }
  return std::shared_ptr<const Model>(std::move(model));
}
#endif  // LAMINA_DETAIL_DEFINITIONS

LAMINA_NAMESPACE_END

#include "../core/definitions_end.inl"
