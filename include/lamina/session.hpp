// lamina/session.hpp — the high-level API: the Sessions that run a shared, immutable Model
// (model/model.hpp). The generation loop, generate(), is in generate.hpp.
//
//   auto model = lamina::Model::load("model.gguf");            // Result<std::shared_ptr<const Model>>
//   if (!model) return report(model.error());
//   auto session = lamina::Session::create(*model);             // owns KV cache, sampler, buffers
//   session->feed_text("Once upon a time");
//   for (int i = 0; i < 32; ++i) {
//     lamina::Result<lamina::Token> token = session->generate_next();   // one step per call
//     std::fputs((*model)->tokenizer().token_to_piece(*token).c_str(), stdout);
//   }
//
// A Model is never modified after loading: any number of sessions on any threads share one
// model and one memory mapping. A Session is used by one thread at a time. Every call does
// only the work it was asked for, so a game can advance generation a few tokens per frame.
#pragma once

#include "config.hpp"
#include "adapters/lora.hpp"
#include "adapters/lora_load.hpp"
#include "backend.hpp"
#include "core/executor.hpp"
#include "core/file_io.hpp"
#include "core/result.hpp"
#include "io/gguf.hpp"
#include "model/hparams.hpp"
#include "model/kv_cache.hpp"
#include "model/llama.hpp"
#include "model/model.hpp"
#include "text/sampler.hpp"
#include "text/tokenizer.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/definitions_begin.inl"

LAMINA_NAMESPACE_BEGIN

namespace detail {
// True when none of `count` floats is NaN or infinite. Reads the exponent bits, so the loop
// vectorizes without fast-math and costs little next to the output projection that made them.
inline bool all_finite(const float* values, std::size_t count) {
  std::uint32_t all_exponent_bits_set = 0;
  for (std::size_t i = 0; i < count; ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, values + i, sizeof bits);
    all_exponent_bits_set |= static_cast<std::uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return all_exponent_bits_set == 0;
}

// A size for messages; `bytes` may be an estimate too large for any integer.
inline std::string describe_estimated_bytes(double bytes) {
  return describe_byte_count(bytes >= 1.8e19 ? std::numeric_limits<std::uint64_t>::max() : static_cast<std::uint64_t>(bytes));
}
}  // namespace detail

struct SessionParams {
  std::uint32_t context_length = 0;   // KV cells shared by all sequences; 0: the model's training context
  std::uint32_t batch_size = 512;     // most tokens per forward pass; longer inputs are split
  std::uint32_t sequence_count = 1;   // independent sequences (ids 0 .. sequence_count-1)
  bool logits_for_every_token = false;  // allow a batch to ask for logits of all its tokens
  std::uint32_t thread_count = 0;     // size of the session's own thread pool; 0: one per hardware thread
  Executor* executor = nullptr;       // run parallel work here instead (host job system); must outlive the session
  SamplerParams sampling;             // each sequence gets a sampler with these settings
  DType kv_cache_type = DType::f16;   // f16 (default) or f32
  CpuArch cpu_arch = CpuArch::automatic;  // force a lower instruction set (tests, comparisons)
  std::uint32_t max_lora_rank = 256;  // largest adapter rank the session's stacks accept (sizes scratch)
  // Session::create refuses to allocate more than this for the KV cache and the forward
  // buffers together, so a model file's context_length (or an option) cannot ask for terabytes.
  std::uint64_t memory_limit_bytes = std::uint64_t{8} << 30;
  // The device that runs the forward passes; null: the CPU. lamina/vulkan.hpp makes one
  // (vulkan::Backend::create); any number of sessions share it and the model's weights on it.
  std::shared_ptr<Backend> backend;
};

// The longest context a session can have (KV cells are counted in 32 bits with room to spare).
inline constexpr std::uint32_t max_session_context_length = 1u << 24;

class Session {
 public:
  static Result<Session> create(std::shared_ptr<const Model> model, const SessionParams& params = {});

  Session(Session&&) noexcept = default;
  Session& operator=(Session&&) noexcept = default;

  const Model& model() const { return *model_; }
  const SessionParams& params() const { return params_; }
  Executor& executor() { return params_.executor != nullptr ? *params_.executor : *own_pool_; }

  // --- low level: one forward pass over tokens of any sequences -------------------------------
  // Logits of the tokens flagged in batch.want_logits are then output_logits(0 .. n-1), in batch order.
  Result<void> decode(const Batch& batch);
  // The same in two halves, so a game thread can do its own work while a device computes:
  // decode_async() records and submits the pass (on the CPU it runs it at once), decode_ready()
  // tells whether it has finished, decode_wait() finishes it (waits if needed) and makes the
  // logits available. The batch is copied; nothing else may be called on the session between.
  Result<void> decode_async(const Batch& batch);
  Result<bool> decode_ready();
  Result<void> decode_wait();
  std::size_t output_count() const { return output_count_; }
  const float* output_logits(std::size_t output) const {
    LAMINA_ASSERT(output < output_count_, "output_logits: index out of range");
    return buffers_.logits.data() + output * model_->hparams().vocab_size;
  }

  // --- one sequence at a time -----------------------------------------------------------------
  // Appends tokens to `sequence` (split into batch_size pieces); afterwards last_logits(sequence)
  // holds the prediction after the last token. With logits_out non-null ([count, vocab] floats)
  // and logits_for_every_token set, the logits after every token are written there.
  Result<void> feed(const Token* tokens, std::size_t count, SequenceId sequence = 0, float* logits_out = nullptr);
  Result<void> feed(const std::vector<Token>& tokens, SequenceId sequence = 0) { return feed(tokens.data(), tokens.size(), sequence); }

  // Tokenizes `text` and feeds it. The text is plain, as a user typed it: "</s>" or
  // "<|im_end|>" in it are those characters, not control tokens; set options.parse_special only
  // for text built from a trusted template. options.add_bos -1 (the default) adds BOS when the
  // sequence is empty and the model wants one.
  Result<void> feed_text(std::string_view text, SequenceId sequence = 0, const EncodeOptions& options = EncodeOptions());

  // The logits after the last token fed to `sequence` ([vocab] floats), or nullptr before any.
  const float* last_logits(SequenceId sequence = 0) const {
    if (sequence < 0 || static_cast<std::uint32_t>(sequence) >= params_.sequence_count) return nullptr;
    if (!has_last_logits_[static_cast<std::size_t>(sequence)]) return nullptr;
    return last_logits_.data() + static_cast<std::size_t>(sequence) * model_->hparams().vocab_size;
  }

  // Picks the next token of `sequence` from its last logits with its sampler (does not feed it).
  Result<Token> sample(SequenceId sequence = 0);

  // One generation step: samples the next token, feeds it, and returns it.
  Result<Token> generate_next(SequenceId sequence = 0);

  // Tokens `sequence` holds (its next position).
  Position position(SequenceId sequence = 0) const { return cache_.next_position(sequence); }

  // Forgets the tokens of `sequence` from position `new_length` on (rewind); 0 clears it.
  void rewind(SequenceId sequence, Position new_length);
  void clear();

  // --- LoRA adapters ---------------------------------------------------------------------------
  // Each sequence has its own stack of (adapter, scale); the changes of a stack's adapters add up.
  // Changing a stack between two tokens costs O(adapters) and allocates nothing large (the
  // scratch the adapters need is made once, when a stack first holds one). A batch mixing
  // sequences with different stacks runs as one forward pass.

  // Replaces the stack of `sequence`. Every adapter must be built for this session's model.
  Result<void> set_adapters(AdapterStack stack, SequenceId sequence = 0);
  // The same stack for every sequence.
  Result<void> set_adapters_for_all(const AdapterStack& stack);
  // Appends `adapter` with `scale` to the stack of `sequence`.
  Result<void> add_adapter(std::shared_ptr<const LoraAdapter> adapter, float scale = 1.0f, SequenceId sequence = 0);
  // Sets the scale of every entry of `adapter` in the stack of `sequence` (0 switches it off
  // and keeps its place).
  Result<void> set_adapter_scale(const LoraAdapter* adapter, float scale, SequenceId sequence = 0);
  // Removes every entry of `adapter` from the stack of `sequence`; false when it held none.
  bool remove_adapter(const LoraAdapter* adapter, SequenceId sequence = 0);
  // The stack of `sequence` (empty for an invalid id).
  const AdapterStack& adapters(SequenceId sequence = 0) const {
    static const AdapterStack none;
    if (sequence < 0 || static_cast<std::uint32_t>(sequence) >= params_.sequence_count) return none;
    return stacks_[static_cast<std::size_t>(sequence)];
  }

  // Merges `stack` into this session's copy of the matrices it changes (the model stays as it
  // is, for its other sessions), so inference with a fixed stack costs nothing extra. Merged
  // matrices are stored as the base's own type (re-quantized), or as F32 / F16. A second merge
  // replaces the first; unmerge_adapters() goes back to the base weights. Per-sequence stacks
  // still apply on top of the merged weights.
  Result<void> merge_adapters(const AdapterStack& stack, MergeStorage storage = MergeStorage::base_type);
  void unmerge_adapters();
  const AdapterStack& merged_adapters() const { return merged_stack_; }

  Sampler& sampler(SequenceId sequence = 0) { return samplers_[static_cast<std::size_t>(sequence)]; }
  const KvCache& kv_cache() const { return cache_; }
  // The instruction set this session's kernels use.
  CpuArch cpu_arch() const { return kernels_->arch; }
  // Where the forward passes run: "cpu", or the backend's description (device, kernels, offload).
  std::string backend_description() const { return device_ != nullptr ? device_->description() : std::string("cpu"); }
  // Bytes this session holds on its device (0 on the CPU).
  std::uint64_t device_bytes() const { return device_ != nullptr ? device_->device_bytes() : 0; }

 private:
  Session() = default;
  Result<void> check_sequence(SequenceId sequence) const;

  Result<void> check_adapter(const AdapterStackEntry& entry) const;
  Result<void> ensure_lora_scratch();
  void update_any_stack_active();
  Result<void> finish_decode(const Batch& batch);
  Result<void> keep_logits(const Batch& batch);

  std::shared_ptr<const Model> model_;
  SessionParams params_;
  const cpu::CpuKernels* kernels_ = nullptr;
  std::unique_ptr<ThreadPool> own_pool_;
  KvCache cache_;
  ForwardBuffers buffers_;
  Batch batch_;
  std::vector<Sampler> samplers_;
  std::vector<float> last_logits_;              // [sequence_count, vocab]
  std::vector<std::uint8_t> has_last_logits_;   // [sequence_count]
  std::size_t output_count_ = 0;
  std::vector<AdapterStack> stacks_;         // [sequence_count]
  bool any_stack_active_ = false;
  LoraBatch lora_;                           // grouping and scratch, made when a stack first holds an adapter
  std::unique_ptr<MergedWeights> merged_;    // the weights with merged_stack_ merged in, or null
  AdapterStack merged_stack_;
  std::unique_ptr<BackendSession> device_;   // null: the CPU runs every layer
  Batch pending_batch_;                      // decode_async()'s batch until decode_wait()
  bool pending_ = false;
};

#if LAMINA_DETAIL_DEFINITIONS
LAMINA_DETAIL_API Result<Session> Session::create(std::shared_ptr<const Model> model, const SessionParams& params) {
  if (model == nullptr) return fail(ErrorCode::invalid_argument, "Session::create: no model");
  const ModelHparams& hparams = model->hparams();
  if (params.sequence_count == 0 || params.sequence_count > 4096) {
    return fail(ErrorCode::invalid_argument, "sequence_count must be in [1, 4096]");
  }
  if (params.batch_size == 0 || params.batch_size > 65536) {
    return fail(ErrorCode::invalid_argument, "batch_size must be in [1, 65536]");
  }
  // 0 takes the model's training context, which comes from the file: check it like an option.
  const bool context_from_model = params.context_length == 0;
  const std::uint32_t context_length = context_from_model ? hparams.context_length : params.context_length;
  const std::string context_source = context_from_model
                                         ? "the model's context length (key '" + hparams.architecture_name + ".context_length')"
                                         : std::string("SessionParams::context_length");
  if (context_length > max_session_context_length) {
    return fail(ErrorCode::invalid_argument, context_source + " is " + std::to_string(context_length) + ", more than the " +
                                                 std::to_string(max_session_context_length) + " a session can hold" +
                                                 (context_from_model ? "; set SessionParams::context_length (--ctx)" : ""));
  }
  const std::uint32_t max_outputs = params.logits_for_every_token ? params.batch_size
                                    : (params.sequence_count < params.batch_size ? params.sequence_count : params.batch_size);
  const std::size_t concurrency = 16;  // an upper bound: the matmul scratch stops growing at 64 chunks
  // A backend first: the layers it takes keep their KV cache on the device.
  std::unique_ptr<BackendSession> device;
  if (params.backend != nullptr) {
    BackendSessionShape shape;
    shape.context_length = context_length;
    shape.batch_size = params.batch_size;
    shape.max_outputs = max_outputs;
    shape.sequence_count = params.sequence_count;
    shape.max_lora_rank = params.max_lora_rank;
    Result<std::unique_ptr<BackendSession>> created = params.backend->create_session(model, shape);
    if (!created) return created.take_error();
    device = std::move(*created);
  }
  const std::uint32_t first_cpu_layer = device != nullptr ? device->first_cpu_layer() : 0;
  const double cache_bytes = KvCache::bytes_needed(hparams, context_length, params.kv_cache_type, first_cpu_layer);
  const double needed_bytes = cache_bytes +
                              ForwardBuffers::bytes_needed(hparams, params.batch_size, max_outputs, context_length, concurrency) +
                              4.0 * params.sequence_count * hparams.vocab_size;
  if (needed_bytes > static_cast<double>(params.memory_limit_bytes)) {
    return fail(ErrorCode::out_of_memory,
                "a session with " + context_source + " " + std::to_string(context_length) + " needs " +
                    detail::describe_estimated_bytes(needed_bytes) + " (KV cache " + detail::describe_estimated_bytes(cache_bytes) +
                    "), more than SessionParams::memory_limit_bytes (" + detail::describe_estimated_bytes(static_cast<double>(params.memory_limit_bytes)) +
                    "); use a shorter context_length (--ctx) or a larger memory_limit_bytes");
  }
  Session session;
  session.model_ = std::move(model);
  session.params_ = params;
  session.params_.context_length = context_length;
  if (params.cpu_arch != CpuArch::automatic && !cpu_supports(params.cpu_arch)) {
    return fail(ErrorCode::invalid_argument, std::string("cpu_arch ") + cpu_arch_name(params.cpu_arch) + " is not supported by this processor");
  }
  session.kernels_ = &cpu::cpu_kernels(params.cpu_arch);
  session.device_ = std::move(device);
  Result<KvCache> cache = KvCache::create(hparams, session.params_.context_length, params.kv_cache_type, first_cpu_layer);
  if (!cache) return cache.take_error();
  session.cache_ = std::move(*cache);
  if (params.executor == nullptr) session.own_pool_.reset(new ThreadPool(params.thread_count));
  Result<ForwardBuffers> buffers = ForwardBuffers::create(hparams, params.batch_size, max_outputs, session.params_.context_length,
                                                          session.executor().concurrency());
  if (!buffers) return buffers.take_error();
  session.buffers_ = std::move(*buffers);
  for (std::uint32_t sequence = 0; sequence < params.sequence_count; ++sequence) {
    SamplerParams sampling = params.sampling;
    sampling.seed += sequence;  // distinct, reproducible streams per sequence
    Result<Sampler> sampler = Sampler::create(sampling, hparams.vocab_size);
    if (!sampler) return sampler.take_error();
    session.samplers_.push_back(std::move(*sampler));
  }
  session.stacks_.resize(params.sequence_count);
  session.last_logits_.assign(static_cast<std::size_t>(params.sequence_count) * hparams.vocab_size, 0.0f);
  session.has_last_logits_.assign(params.sequence_count, 0);
  session.batch_.tokens.reserve(params.batch_size);
  session.batch_.positions.reserve(params.batch_size);
  session.batch_.sequences.reserve(params.batch_size);
  session.batch_.want_logits.reserve(params.batch_size);
  session.pending_batch_.tokens.reserve(params.batch_size);
  session.pending_batch_.positions.reserve(params.batch_size);
  session.pending_batch_.sequences.reserve(params.batch_size);
  session.pending_batch_.want_logits.reserve(params.batch_size);
  return session;
}

LAMINA_DETAIL_API Result<void> Session::decode(const Batch& batch) {
  if (device_ == nullptr) return finish_decode(batch);  // runs the pass on the CPU
  LAMINA_TRY(decode_async(batch));
  return decode_wait();
}

LAMINA_DETAIL_API Result<void> Session::decode_async(const Batch& batch) {
  if (pending_) return fail(ErrorCode::invalid_state, "decode_async: the previous pass has not been finished with decode_wait()");
  pending_batch_.tokens.assign(batch.tokens.begin(), batch.tokens.end());
  pending_batch_.positions.assign(batch.positions.begin(), batch.positions.end());
  pending_batch_.sequences.assign(batch.sequences.begin(), batch.sequences.end());
  pending_batch_.want_logits.assign(batch.want_logits.begin(), batch.want_logits.end());
  if (device_ == nullptr) {  // nothing to overlap with: the pass runs now, decode_wait() reports it
    pending_ = true;
    return success();
  }
  LAMINA_TRY(prepare_forward(model_->hparams(), model_->weights(), pending_batch_, cache_, buffers_, params_.sequence_count));
  LoraBatch* lora = nullptr;
  if (any_stack_active_ && pending_batch_.size() <= lora_.max_tokens()) {
    const bool grouped = lora_.group(pending_batch_.sequences.data(), pending_batch_.size(), [&](SequenceId sequence) -> const AdapterStack* {
      return &stacks_[static_cast<std::size_t>(sequence)];  // checked by prepare_forward
    });
    if (grouped) lora = &lora_;
  }
  BackendForward forward;
  forward.hparams = &model_->hparams();
  forward.weights = &model_->weights();
  forward.batch = &pending_batch_;
  forward.cache = &cache_;
  forward.buffers = &buffers_;
  forward.executor = &executor();
  forward.kernels = kernels_;
  forward.lora = lora;
  Result<void> started = device_->start(forward);
  if (!started) {
    for (std::size_t t = 0; t < pending_batch_.size(); ++t) cache_.remove(pending_batch_.sequences[t], pending_batch_.positions[t], pending_batch_.positions[t] + 1);
    return started;
  }
  pending_ = true;
  return success();
}

LAMINA_DETAIL_API Result<bool> Session::decode_ready() {
  if (!pending_) return fail(ErrorCode::invalid_state, "decode_ready: no pass was started with decode_async()");
  if (device_ == nullptr) return true;
  return device_->ready();
}

LAMINA_DETAIL_API Result<void> Session::decode_wait() {
  if (!pending_) return fail(ErrorCode::invalid_state, "decode_wait: no pass was started with decode_async()");
  pending_ = false;
  return finish_decode(pending_batch_);
}

// Runs the pass on the CPU, or finishes the device's; then checks and keeps the logits.
LAMINA_DETAIL_API Result<void> Session::finish_decode(const Batch& batch) {
  if (device_ != nullptr) {
    Result<void> finished = device_->finish();
    if (!finished) {  // the cells were claimed, but hold nothing: free them
      for (std::size_t t = 0; t < batch.size(); ++t) cache_.remove(batch.sequences[t], batch.positions[t], batch.positions[t] + 1);
      return finished;
    }
    return keep_logits(batch);
  }
  const ModelWeights& weights = merged_ != nullptr ? merged_->weights : model_->weights();
  LoraBatch* lora = nullptr;
  if (any_stack_active_ && batch.sequences.size() <= lora_.max_tokens()) {
    const bool grouped = lora_.group(batch.sequences.data(), batch.sequences.size(), [&](SequenceId sequence) -> const AdapterStack* {
      if (sequence < 0 || static_cast<std::uint32_t>(sequence) >= params_.sequence_count) return nullptr;  // forward reports it
      return &stacks_[static_cast<std::size_t>(sequence)];
    });
    if (grouped) lora = &lora_;
  }
  LAMINA_TRY(forward(model_->hparams(), weights, batch, cache_, buffers_, executor(), params_.sequence_count, *kernels_, lora));
  return keep_logits(batch);
}

LAMINA_DETAIL_API Result<void> Session::keep_logits(const Batch& batch) {
  output_count_ = batch.output_count();
  const std::size_t vocab = model_->hparams().vocab_size;
  std::size_t output = 0;
  for (std::size_t t = 0; t < batch.size(); ++t) {
    if (!batch.want_logits[t]) continue;
    const SequenceId sequence = batch.sequences[t];
    if (!detail::all_finite(buffers_.logits.data() + output * vocab, vocab)) {
      // Sampling from them would pick an arbitrary token; the tokens stay in the KV cache (rewind to drop them).
      has_last_logits_[static_cast<std::size_t>(sequence)] = 0;
      return fail(ErrorCode::not_finite, "the logits after position " + std::to_string(batch.positions[t]) + " of sequence " +
                                             std::to_string(sequence) + " are not finite (NaN or infinity): the model's weights hold "
                                             "NaN/inf values, or an adapter scale is too large");
    }
    std::memcpy(last_logits_.data() + static_cast<std::size_t>(sequence) * vocab, buffers_.logits.data() + output * vocab,
                vocab * sizeof(float));
    has_last_logits_[static_cast<std::size_t>(sequence)] = 1;
    ++output;
  }
  return success();
}

LAMINA_DETAIL_API Result<void> Session::feed(const Token* tokens, std::size_t count, SequenceId sequence, float* logits_out) {
  LAMINA_TRY(check_sequence(sequence));
  if (logits_out != nullptr && !params_.logits_for_every_token) {
    return fail(ErrorCode::invalid_argument, "feed: logits for every token need SessionParams::logits_for_every_token");
  }
  const std::size_t vocab = model_->hparams().vocab_size;
  for (std::size_t begin = 0; begin < count; begin += params_.batch_size) {
    const std::size_t end = begin + params_.batch_size < count ? begin + params_.batch_size : count;
    Position position = cache_.next_position(sequence);
    batch_.clear();
    for (std::size_t i = begin; i < end; ++i) batch_.add(tokens[i], position++, sequence, logits_out != nullptr || i + 1 == count);
    LAMINA_TRY(decode(batch_));
    if (logits_out != nullptr) std::memcpy(logits_out + begin * vocab, buffers_.logits.data(), (end - begin) * vocab * sizeof(float));
    for (std::size_t i = begin; i < end; ++i) samplers_[static_cast<std::size_t>(sequence)].accept(tokens[i]);
  }
  return success();
}

LAMINA_DETAIL_API Result<void> Session::feed_text(std::string_view text, SequenceId sequence, const EncodeOptions& options) {
  if (!model_->has_tokenizer()) return fail(ErrorCode::invalid_state, "feed_text: the model was loaded without a tokenizer");
  LAMINA_TRY(check_sequence(sequence));
  EncodeOptions encode_options = options;
  if (encode_options.add_bos < 0 && position(sequence) != 0) encode_options.add_bos = 0;
  Result<std::vector<Token>> tokens = model_->tokenizer().encode(text, encode_options);
  if (!tokens) return tokens.take_error();
  return feed(*tokens, sequence);
}

LAMINA_DETAIL_API Result<Token> Session::sample(SequenceId sequence) {
  LAMINA_TRY(check_sequence(sequence));
  const float* logits = last_logits(sequence);
  if (logits == nullptr) return fail(ErrorCode::invalid_state, "sample: sequence " + std::to_string(sequence) + " has no logits yet; feed a prompt first");
  return samplers_[static_cast<std::size_t>(sequence)].sample(logits);
}

LAMINA_DETAIL_API Result<Token> Session::generate_next(SequenceId sequence) {
  Result<Token> token = sample(sequence);
  if (!token) return token;
  const Token chosen = *token;
  LAMINA_TRY(feed(&chosen, 1, sequence));
  return chosen;
}

LAMINA_DETAIL_API void Session::rewind(SequenceId sequence, Position new_length) {
  cache_.remove(sequence, new_length < 0 ? 0 : new_length);
  if (sequence >= 0 && static_cast<std::uint32_t>(sequence) < params_.sequence_count) {
    has_last_logits_[static_cast<std::size_t>(sequence)] = 0;
    if (new_length <= 0) samplers_[static_cast<std::size_t>(sequence)].reset();
  }
}

LAMINA_DETAIL_API void Session::clear() {
  cache_.clear();
  has_last_logits_.assign(params_.sequence_count, 0);
  for (Sampler& sampler : samplers_) sampler.reset();
}

LAMINA_DETAIL_API Result<void> Session::set_adapters(AdapterStack stack, SequenceId sequence) {
  LAMINA_TRY(check_sequence(sequence));
  for (const AdapterStackEntry& entry : stack) LAMINA_TRY(check_adapter(entry));
  LAMINA_TRY(ensure_lora_scratch());
  AdapterStack& target = stacks_[static_cast<std::size_t>(sequence)];
  target.clear();
  for (AdapterStackEntry& entry : stack) target.push_back(std::move(entry));
  update_any_stack_active();
  return success();
}

LAMINA_DETAIL_API Result<void> Session::set_adapters_for_all(const AdapterStack& stack) {
  for (std::uint32_t sequence = 0; sequence < params_.sequence_count; ++sequence) {
    LAMINA_TRY(set_adapters(stack, static_cast<SequenceId>(sequence)));
  }
  return success();
}

LAMINA_DETAIL_API Result<void> Session::add_adapter(std::shared_ptr<const LoraAdapter> adapter, float scale, SequenceId sequence) {
  LAMINA_TRY(check_sequence(sequence));
  AdapterStackEntry entry{std::move(adapter), scale};
  LAMINA_TRY(check_adapter(entry));
  LAMINA_TRY(ensure_lora_scratch());
  stacks_[static_cast<std::size_t>(sequence)].push_back(std::move(entry));
  update_any_stack_active();
  return success();
}

LAMINA_DETAIL_API Result<void> Session::set_adapter_scale(const LoraAdapter* adapter, float scale, SequenceId sequence) {
  LAMINA_TRY(check_sequence(sequence));
  if (!std::isfinite(scale)) return fail(ErrorCode::invalid_argument, "set_adapter_scale: the scale is not a finite number");
  bool found = false;
  for (AdapterStackEntry& entry : stacks_[static_cast<std::size_t>(sequence)]) {
    if (entry.adapter.get() == adapter) entry.scale = scale, found = true;
  }
  if (!found) return fail(ErrorCode::invalid_argument, "set_adapter_scale: the adapter is not in the stack of sequence " + std::to_string(sequence));
  update_any_stack_active();
  return success();
}

LAMINA_DETAIL_API bool Session::remove_adapter(const LoraAdapter* adapter, SequenceId sequence) {
  if (!check_sequence(sequence).ok()) return false;
  AdapterStack& stack = stacks_[static_cast<std::size_t>(sequence)];
  std::size_t kept = 0;
  for (std::size_t i = 0; i < stack.size(); ++i) {
    if (stack[i].adapter.get() != adapter) stack[kept++] = std::move(stack[i]);
  }
  const bool removed = kept != stack.size();
  while (stack.size() > kept) stack.pop_back();
  update_any_stack_active();
  return removed;
}

LAMINA_DETAIL_API Result<void> Session::merge_adapters(const AdapterStack& stack, MergeStorage storage) {
  if (device_ != nullptr) {
    return fail(ErrorCode::unsupported, "merge_adapters: not available on the " + std::string(params_.backend->name()) +
                                            " backend yet; per-sequence adapter stacks are (set_adapters)");
  }
  for (const AdapterStackEntry& entry : stack) LAMINA_TRY(check_adapter(entry));
  Result<std::unique_ptr<MergedWeights>> merged = merge_weights(executor(), model_->hparams(), model_->weights(), stack, storage);
  if (!merged) return merged.take_error();
  merged_ = std::move(*merged);
  merged_stack_ = stack;
  return success();
}

LAMINA_DETAIL_API void Session::unmerge_adapters() {
  merged_.reset();
  merged_stack_.clear();
}

LAMINA_DETAIL_API Result<void> Session::check_sequence(SequenceId sequence) const {
  if (sequence < 0 || static_cast<std::uint32_t>(sequence) >= params_.sequence_count) {
    return fail(ErrorCode::invalid_argument, "sequence id " + std::to_string(sequence) + " is outside [0, " +
                                                 std::to_string(params_.sequence_count) + ")");
  }
  return success();
}

LAMINA_DETAIL_API Result<void> Session::check_adapter(const AdapterStackEntry& entry) const {
  if (entry.adapter == nullptr) return fail(ErrorCode::invalid_argument, "adapter stack: an entry holds no adapter");
  if (!std::isfinite(entry.scale)) return fail(ErrorCode::invalid_argument, "adapter stack: the scale of '" + entry.adapter->name() + "' is not a finite number");
  if (!(entry.adapter->shape() == AdapterShape::of(model_->hparams()))) {
    return fail(ErrorCode::type_mismatch, "adapter '" + entry.adapter->name() + "' was built for a model of other shapes than this session's");
  }
  if (entry.adapter->max_rank() > buffers_.workspace.max_in()) {
    return fail(ErrorCode::invalid_argument, "adapter '" + entry.adapter->name() + "' has rank " + std::to_string(entry.adapter->max_rank()) +
                                                 ", more than the model's widest matrix has columns");
  }
  if (entry.adapter->max_rank() > params_.max_lora_rank) {
    return fail(ErrorCode::invalid_argument, "adapter '" + entry.adapter->name() + "' has rank " + std::to_string(entry.adapter->max_rank()) +
                                                 ", above the session's max_lora_rank " + std::to_string(params_.max_lora_rank));
  }
  return success();
}

LAMINA_DETAIL_API Result<void> Session::ensure_lora_scratch() {
  if (lora_.max_tokens() != 0) return success();
  const ModelHparams& hparams = model_->hparams();
  std::size_t widest_in = hparams.embedding_length, widest_out = hparams.embedding_length;
  if (hparams.feed_forward_length > widest_in) widest_in = hparams.feed_forward_length;
  if (hparams.query_width() > widest_in) widest_in = hparams.query_width();
  if (hparams.feed_forward_length > widest_out) widest_out = hparams.feed_forward_length;
  if (hparams.query_width() > widest_out) widest_out = hparams.query_width();
  lora_ = LoraBatch(params_.batch_size, params_.sequence_count, params_.max_lora_rank, widest_in, widest_out);
  for (AdapterStack& stack : stacks_) stack.reserve(8);
  return success();
}

LAMINA_DETAIL_API void Session::update_any_stack_active() {
  any_stack_active_ = false;
  for (const AdapterStack& stack : stacks_) any_stack_active_ = any_stack_active_ || stack_is_active(stack);
}
#endif  // LAMINA_DETAIL_DEFINITIONS

LAMINA_NAMESPACE_END

#include "core/definitions_end.inl"
