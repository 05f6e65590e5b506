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
#include "core/cancel.hpp"
#include "core/executor.hpp"
#include "core/fingerprint.hpp"
#include "core/file_io.hpp"
#include "core/result.hpp"
#include "io/gguf.hpp"
#include "model/hparams.hpp"
#include "model/kv_cache.hpp"
#include "model/llama.hpp"
#include "model/model.hpp"
#include "model/stepped_forward.hpp"
#include "text/sampler.hpp"
#include "text/tokenizer.hpp"

#include <chrono>
#include <algorithm>
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

// What a session allocates on the CPU, in bytes, as Session::memory_needed() tells before it
// is created (within a few KiB: vectors' own bookkeeping is not counted).
struct SessionMemory {
  std::uint64_t kv_cache = 0;         // keys and values of every layer on the CPU, and the cells' labels
  std::uint64_t forward_buffers = 0;  // one pass's activations and logits, attention and matmul scratch
  std::uint64_t per_sequence = 0;     // the last logits and a sampler of every sequence
  std::uint64_t adapter_scratch = 0;  // made once, when a stack first holds an adapter
  std::uint64_t total() const { return kv_cache + forward_buffers + per_sequence + adapter_scratch; }
};

class Session {
 public:
  static Result<Session> create(std::shared_ptr<const Model> model, const SessionParams& params = {});
  // The bytes create() would allocate with these params, without allocating them. With a
  // backend, the KV cache of every layer is counted (the device takes some of them).
  static Result<SessionMemory> memory_needed(const Model& model, const SessionParams& params = {});

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

  // --- a forward pass in pieces, for a frame loop ---------------------------------------------
  // begin_decode() checks `batch` and claims its cache cells; each continue_decode(deadline) then
  // runs the next pieces of the pass (on the CPU one operation of a layer each: a matrix product,
  // the attention, a norm; model/stepped_forward.hpp) while the times measured so far say they
  // end before `deadline`, and at least one unless `at_least_one` is false (for a second pass in
  // the same frame). It returns true when the pass is done: its
  // logits are then there as after decode(). A piece not measured yet starts only in the first
  // quarter of the time given. On a device backend the pass is submitted by begin_decode() and
  // continue_decode() returns true once the device has finished it (the CPU layers of a partial
  // offload then run in one go). Until the pass is done decode(), feed() and merge_adapters()
  // are refused, rewind(), clear() and unmerge_adapters() abandon it, and changes to the adapter
  // stacks apply from the next pass.
  Result<void> begin_decode(const Batch& batch);
  Result<bool> continue_decode(std::chrono::steady_clock::time_point deadline, bool at_least_one = true);
  bool decode_in_progress() const { return stepped_.active || pending_; }
  // The most tokens (at most `limit`) a pass may hold for each of its pieces to take at most
  // `seconds`, from the pieces measured so far (1 before any was; it grows step by step).
  std::size_t tokens_for_piece_seconds(double seconds, std::size_t limit) {
    return piece_times_.tokens_within(seconds, limit);
  }

  // --- cancellation --------------------------------------------------------------------------
  // From any thread: the call running now (feed, decode, generate, a pass begun with
  // begin_decode) stops at its next check, between two layers at the latest, and returns
  // ErrorCode::cancelled. The KV cache then holds exactly the tokens of the passes that finished.
  // Work that starts after cancel() is not affected (core/cancel.hpp).
  void cancel() { cancel_->cancel(); }
  // A token that cancel() cancels: for loops of many calls (generate()) to check between calls.
  CancelToken cancel_token() const { return cancel_->token(); }

  // --- one sequence at a time -----------------------------------------------------------------
  // Appends tokens to `sequence` (split into batch_size pieces); afterwards last_logits(sequence)
  // holds the prediction after the last token. With logits_out non-null ([count, vocab] floats)
  // and logits_for_every_token set, the logits after every token are written there.
  // A feed of several tokens (a prompt) runs batch-invariant passes (Batch::invariant_from): fed
  // in pieces of any size, or through a Generator, a prompt gives the logits of one feed, bit
  // for bit. A feed of one token is taken as decoding and runs the faster one-token kernels.
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

  // invalid_argument unless `sequence` is one of this session's ids, [0, sequence_count).
  Result<void> check_sequence(SequenceId sequence) const;

  // Tokens `sequence` holds (its next position).
  Position position(SequenceId sequence = 0) const { return cache_.next_position(sequence); }

  // Forgets the tokens of `sequence` from position `new_length` on (rewind); 0 clears it.
  void rewind(SequenceId sequence, Position new_length);
  void clear();

  // --- saved and shared state ----------------------------------------------------------------
  // One sequence as bytes: its KV cells, the sampler's random state and recent tokens, the
  // logits after its last token, and its adapter stack (by LoraAdapter::fingerprint()), in a
  // versioned format that carries the model's fingerprint (the layout is in session.hpp, above
  // Session::save_sequence). The CPU backend only: a device keeps its KV cache to itself.
  Result<std::vector<std::uint8_t>> save_sequence(SequenceId sequence = 0) const;
  Result<void> save_sequence_to_file(const std::string& path, SequenceId sequence = 0) const;
  // Replaces what `sequence` holds with a saved state of this model (and KV cache type): decoding
  // then goes on with bit-identical logits. The adapters of the saved stack are looked for, by
  // fingerprint, among `adapters` (those the host loaded for this model). A state of another
  // model, a newer format, a truncated or corrupted state, or a missing adapter is an error,
  // and the session is left as it was.
  Result<void> restore_sequence(const std::uint8_t* bytes, std::size_t size, SequenceId sequence = 0,
                                const std::vector<std::shared_ptr<const LoraAdapter>>& adapters = {});
  Result<void> restore_sequence_from_file(const std::string& path, SequenceId sequence = 0,
                                          const std::vector<std::shared_ptr<const LoraAdapter>>& adapters = {});
  // Makes `to` hold the first `length` tokens of `from` (what `to` held is dropped): a scene or
  // system prompt computed once, for many characters. The cells are copied, not shared, so that
  // each sequence stays the only owner of its cells (rewinding one never touches another; the
  // copy costs the prefix's KV bytes again). When the prefix is all of `from`, its last logits
  // and sampler state are copied too, so `to` can sample at once. `to` keeps its own adapters.
  Result<void> copy_prefix(SequenceId from, SequenceId to, Position length);

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

  Result<void> check_adapter(const AdapterStackEntry& entry) const;
  Result<void> ensure_lora_scratch();
  void update_any_stack_active();
  Result<void> refuse_if_busy(const char* call) const;
  Result<void> refuse_on_device(const char* call) const;
  Result<void> run_decode(const Batch& batch, CancelToken cancel);
  Result<void> start_decode(const Batch& batch, CancelToken cancel);
  Result<void> finish_decode(const Batch& batch, CancelToken cancel);
  Result<void> keep_logits(const Batch& batch);
  LoraBatch* group_adapters(const Batch& batch, const std::vector<AdapterStack>& stacks);
  // The widest input or output of the layers' projections: what the adapters' scratch is sized for.
  static std::size_t widest_projection(const ModelHparams& hparams) {
    return std::max<std::size_t>({hparams.embedding_length, hparams.feed_forward_length, hparams.query_width()});
  }
  void abandon_decode();

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
  Batch pending_batch_;                      // decode_async()'s or begin_decode()'s batch until the pass is done
  bool pending_ = false;                     // decode_async() or a device pass of begin_decode() is running
  CancelToken pending_cancel_;
  std::unique_ptr<CancelSource> cancel_;     // behind a pointer: tokens point at it, and the session moves
  struct SteppedPass {                       // begin_decode() on the CPU, until continue_decode() is done
    bool active = false;
    std::uint32_t layer = 0;                 // the layer being run, block_count: the output is next
    std::uint32_t ops_done = 0;              // operations of that layer done
    std::uint32_t logit_rows_done = 0;       // then: vocabulary rows of the output projection done
    const ModelWeights* weights = nullptr;   // the model's, or merged_'s
    LoraBatch* lora = nullptr;
    CancelToken cancel;
  };
  SteppedPass stepped_;
  std::vector<AdapterStack> pass_stacks_;    // the stacks when the stepped pass began
  PieceTimes piece_times_;
};

#if LAMINA_DETAIL_DEFINITIONS
LAMINA_DETAIL_API Result<SessionMemory> Session::memory_needed(const Model& model, const SessionParams& params) {
  if (params.sequence_count == 0 || params.sequence_count > 4096) return fail(ErrorCode::invalid_argument, "sequence_count must be in [1, 4096]");
  if (params.batch_size == 0 || params.batch_size > 65536) return fail(ErrorCode::invalid_argument, "batch_size must be in [1, 65536]");
  const ModelHparams& hparams = model.hparams();
  const std::uint32_t context_length = params.context_length == 0 ? hparams.context_length : params.context_length;
  if (context_length > max_session_context_length) {
    return fail(ErrorCode::invalid_argument, "context length " + std::to_string(context_length) + " is more than the " +
                                                 std::to_string(max_session_context_length) + " a session can hold");
  }
  const std::uint32_t max_outputs = params.logits_for_every_token ? params.batch_size
                                    : (params.sequence_count < params.batch_size ? params.sequence_count : params.batch_size);
  // A sampler: logits after bias and penalties, candidates, and with penalties their window and counts.
  const SamplerParams& sampling = params.sampling;
  const bool penalties = sampling.penalty_last_n > 0 &&
                         (sampling.repeat_penalty != 1.0f || sampling.frequency_penalty != 0.0f || sampling.presence_penalty != 0.0f);
  const double sampler_bytes = static_cast<double>(hparams.vocab_size) * (4.0 + 12.0) +
                               (penalties ? 4.0 * sampling.penalty_last_n + 4.0 * hparams.vocab_size : 0.0) +
                               static_cast<double>(sampling.logit_bias.size() * sizeof(sampling.logit_bias[0]));
  SessionMemory memory;
  memory.kv_cache = static_cast<std::uint64_t>(KvCache::bytes_needed(hparams, context_length, params.kv_cache_type));
  // The matmul scratch grows with the threads that run the passes, as create() makes it.
  std::size_t concurrency = 1;
  if (params.executor != nullptr) {
    concurrency = params.executor->concurrency();
  } else {
#if LAMINA_THREADS
    concurrency = params.thread_count != 0 ? params.thread_count : std::thread::hardware_concurrency();
    if (concurrency == 0) concurrency = 1;
#endif
  }
  memory.forward_buffers = static_cast<std::uint64_t>(ForwardBuffers::bytes_needed(hparams, params.batch_size, max_outputs, context_length, concurrency));
  memory.per_sequence = static_cast<std::uint64_t>(params.sequence_count * (4.0 * hparams.vocab_size + sampler_bytes));
  const std::size_t widest = widest_projection(hparams);
  memory.adapter_scratch = static_cast<std::uint64_t>(LoraBatch::bytes_needed(params.batch_size, params.sequence_count, params.max_lora_rank, widest));
  return memory;
}

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
  session.cancel_.reset(new CancelSource());
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
  LAMINA_TRY(refuse_if_busy("decode"));
  return run_decode(batch, cancel_->token());
}

LAMINA_DETAIL_API Result<void> Session::refuse_if_busy(const char* call) const {
  if (!decode_in_progress()) return success();
  return fail(ErrorCode::invalid_state, std::string(call) + ": a forward pass is in progress (decode_async() or begin_decode()); finish it first");
}

LAMINA_DETAIL_API Result<void> Session::run_decode(const Batch& batch, CancelToken cancel) {
  if (device_ == nullptr) return finish_decode(batch, cancel);  // runs the pass on the CPU
  LAMINA_TRY(start_decode(batch, cancel));
  pending_ = false;
  return finish_decode(pending_batch_, pending_cancel_);
}

LAMINA_DETAIL_API Result<void> Session::decode_async(const Batch& batch) {
  LAMINA_TRY(refuse_if_busy("decode_async"));
  return start_decode(batch, cancel_->token());
}

// Copies the batch (the caller's may go away) and, on a device, starts the pass.
LAMINA_DETAIL_API Result<void> Session::start_decode(const Batch& batch, CancelToken cancel) {
  pending_batch_ = batch;  // reuses the reserved capacity
  pending_cancel_ = cancel;
  if (device_ == nullptr) {  // nothing to overlap with: the pass runs in decode_wait()
    pending_ = true;
    return success();
  }
  LAMINA_TRY(prepare_forward(model_->hparams(), model_->weights(), pending_batch_, cache_, buffers_, params_.sequence_count));
  BackendForward forward;
  forward.hparams = &model_->hparams();
  forward.weights = &model_->weights();
  forward.batch = &pending_batch_;
  forward.cache = &cache_;
  forward.buffers = &buffers_;
  forward.executor = &executor();
  forward.kernels = kernels_;
  forward.lora = group_adapters(pending_batch_, stacks_);  // the device records the groups now
  forward.cancel = cancel;
  Result<void> started = device_->start(forward);
  if (!started) {
    release_cells(pending_batch_, cache_);
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
  return finish_decode(pending_batch_, pending_cancel_);
}

// The tokens of `batch` grouped by their sequences' stacks, or null when no stack applies (or
// the batch is larger than the adapters' scratch: then the sequences' stacks are checked by the
// forward pass).
LAMINA_DETAIL_API LoraBatch* Session::group_adapters(const Batch& batch, const std::vector<AdapterStack>& stacks) {
  if (!any_stack_active_ || batch.sequences.size() > lora_.max_tokens()) return nullptr;
  const bool grouped = lora_.group(batch.sequences.data(), batch.sequences.size(), [&](SequenceId sequence) -> const AdapterStack* {
    if (sequence < 0 || static_cast<std::uint32_t>(sequence) >= params_.sequence_count) return nullptr;  // forward reports it
    return &stacks[static_cast<std::size_t>(sequence)];
  });
  return grouped ? &lora_ : nullptr;
}

// Runs the pass on the CPU, or finishes the device's; then checks and keeps the logits.
LAMINA_DETAIL_API Result<void> Session::finish_decode(const Batch& batch, CancelToken cancel) {
  if (device_ != nullptr) {
    Result<void> finished = device_->finish();
    if (!finished) {  // the cells were claimed, but hold nothing: free them
      release_cells(batch, cache_);
      return finished;
    }
    if (cancel.cancelled()) {  // the device finished it, but the caller asked for it to stop
      release_cells(batch, cache_);
      return fail(ErrorCode::cancelled, "the forward pass was cancelled");
    }
    return keep_logits(batch);
  }
  const ModelWeights& weights = merged_ != nullptr ? merged_->weights : model_->weights();
  LAMINA_TRY(forward(model_->hparams(), weights, batch, cache_, buffers_, executor(), params_.sequence_count, *kernels_,
                     group_adapters(batch, stacks_), cancel));
  return keep_logits(batch);
}

LAMINA_DETAIL_API Result<void> Session::begin_decode(const Batch& batch) {
  LAMINA_TRY(refuse_if_busy("begin_decode"));
  const CancelToken cancel = cancel_->token();
  if (device_ != nullptr) return start_decode(batch, cancel);
  pending_batch_ = batch;  // reuses the reserved capacity
  const ModelWeights& weights = merged_ != nullptr ? merged_->weights : model_->weights();
  LAMINA_TRY(prepare_forward(model_->hparams(), weights, pending_batch_, cache_, buffers_, params_.sequence_count));
  // The stacks as they are now: the pass keeps them (and their adapters) until it is done.
  LoraBatch* lora = nullptr;
  if (any_stack_active_) {
    pass_stacks_.resize(stacks_.size());
    for (std::size_t i = 0; i < stacks_.size(); ++i) pass_stacks_[i] = stacks_[i];
    lora = group_adapters(pending_batch_, pass_stacks_);
  }
  stepped_ = SteppedPass{true, 0, 0, 0, &weights, lora, cancel};
  const ForwardPass pass{model_->hparams(), weights, pending_batch_, cache_, buffers_, executor(), *kernels_, lora, cancel};
  embed_tokens(pass);
  return success();
}

LAMINA_DETAIL_API Result<bool> Session::continue_decode(std::chrono::steady_clock::time_point deadline, bool at_least_one) {
  if (pending_ && device_ != nullptr) {  // the device runs the pass; finish it once it is done
    if (!pending_cancel_.cancelled()) {
      Result<bool> ready = device_->ready();
      if (!ready) {
        abandon_decode();
        return ready.take_error();
      }
      if (!*ready) return false;
    }
    pending_ = false;
    LAMINA_TRY(finish_decode(pending_batch_, pending_cancel_));
    return true;
  }
  if (!stepped_.active) return fail(ErrorCode::invalid_state, "continue_decode: no pass was begun with begin_decode()");
  using Clock = std::chrono::steady_clock;
  const Clock::time_point step_start = Clock::now();
  const ModelHparams& hparams = model_->hparams();
  const ForwardPass pass{hparams, *stepped_.weights, pending_batch_, cache_, buffers_, executor(), *kernels_, stepped_.lora, stepped_.cancel};
  CpuForwardOps cpu_ops(pass);
  bool first_of_step = at_least_one;
  while (stepped_.layer < hparams.block_count) {
    ResumingOps ops(cpu_ops, piece_times_, pending_batch_.size(), stepped_.ops_done, first_of_step, step_start, deadline, stepped_.cancel);
    transformer_layer(hparams, pass.weights.layers[stepped_.layer], stepped_.layer, ops);
    first_of_step = first_of_step && !ops.ran_any();
    if (ops.cancelled()) {
      abandon_decode();
      return fail(ErrorCode::cancelled, "the forward pass was cancelled");
    }
    if (!ops.layer_done()) {
      stepped_.ops_done = ops.ops_done();
      return false;
    }
    ++stepped_.layer;
    stepped_.ops_done = 0;
  }
  // The output projection, the largest matrix: pieces of at most logit_piece_rows vocabulary rows.
  constexpr std::uint32_t logit_piece_rows = 4096;
  const std::size_t outputs = pending_batch_.output_count();
  while (outputs > 0 && stepped_.logit_rows_done < hparams.vocab_size) {
    if (stepped_.cancel.cancelled()) {
      abandon_decode();
      return fail(ErrorCode::cancelled, "the forward pass was cancelled");
    }
    const Clock::time_point start = Clock::now();
    if (!ResumingOps::may_start(piece_times_.predict(PieceTimes::output_slot, outputs), first_of_step, start, step_start, deadline)) return false;
    const std::uint32_t end = std::min(hparams.vocab_size, stepped_.logit_rows_done + logit_piece_rows);
    project_to_logits(pass, stepped_.logit_rows_done, end);
    piece_times_.record(PieceTimes::output_slot, outputs, std::chrono::duration<double>(Clock::now() - start).count());
    stepped_.logit_rows_done = end;
    first_of_step = false;
  }
  stepped_ = SteppedPass();
  for (AdapterStack& stack : pass_stacks_) stack.clear();  // let go of the adapters
  LAMINA_TRY(keep_logits(pending_batch_));
  return true;
}

// Drops the pass in progress, if any: its cells are freed (a device's pass is waited for first).
LAMINA_DETAIL_API void Session::abandon_decode() {
  const bool cells_claimed = (pending_ && device_ != nullptr) || stepped_.active;  // decode_async() on the CPU claims none
  if (pending_ && device_ != nullptr) (void)device_->finish();
  if (cells_claimed) release_cells(pending_batch_, cache_);
  pending_ = false;
  stepped_ = SteppedPass();
  for (AdapterStack& stack : pass_stacks_) stack.clear();
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
  LAMINA_TRY(refuse_if_busy("feed"));
  LAMINA_TRY(check_sequence(sequence));
  const CancelToken cancel = cancel_->token();  // one for every piece of the feed
  if (logits_out != nullptr && !params_.logits_for_every_token) {
    return fail(ErrorCode::invalid_argument, "feed: logits for every token need SessionParams::logits_for_every_token");
  }
  const std::size_t vocab = model_->hparams().vocab_size;
  for (std::size_t begin = 0; begin < count; begin += params_.batch_size) {
    const std::size_t end = begin + params_.batch_size < count ? begin + params_.batch_size : count;
    Position position = cache_.next_position(sequence);
    batch_.clear();
    if (count > 1) batch_.invariant_from = 0;
    for (std::size_t i = begin; i < end; ++i) batch_.add(tokens[i], position++, sequence, logits_out != nullptr || i + 1 == count);
    LAMINA_TRY(run_decode(batch_, cancel));
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
  abandon_decode();
  cache_.remove(sequence, new_length < 0 ? 0 : new_length);
  if (sequence >= 0 && static_cast<std::uint32_t>(sequence) < params_.sequence_count) {
    has_last_logits_[static_cast<std::size_t>(sequence)] = 0;
    if (new_length <= 0) samplers_[static_cast<std::size_t>(sequence)].reset();
  }
}

LAMINA_DETAIL_API void Session::clear() {
  abandon_decode();
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
  LAMINA_TRY(refuse_if_busy("merge_adapters"));
  for (const AdapterStackEntry& entry : stack) LAMINA_TRY(check_adapter(entry));
  Result<std::unique_ptr<MergedWeights>> merged = merge_weights(executor(), model_->hparams(), model_->weights(), stack, storage);
  if (!merged) return merged.take_error();
  merged_ = std::move(*merged);
  merged_stack_ = stack;
  return success();
}

LAMINA_DETAIL_API void Session::unmerge_adapters() {
  abandon_decode();
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
  const std::size_t widest = widest_projection(model_->hparams());
  lora_ = LoraBatch(params_.batch_size, params_.sequence_count, params_.max_lora_rank, widest);
  for (AdapterStack& stack : stacks_) stack.reserve(8);
  return success();
}

LAMINA_DETAIL_API void Session::update_any_stack_active() {
  any_stack_active_ = false;
  for (const AdapterStack& stack : stacks_) any_stack_active_ = any_stack_active_ || stack_is_active(stack);
}

// --- Saved state ---------------------------------------------------------------------------
// A sequence's state, little-endian (the byte order of every machine lamina runs on):
//   "LAMSTATE"  u32 version (1)  u64 model fingerprint  u32 KV type (DType)  u32 block_count
//   u32 kv_width  u32 vocab  u32 cells n  u32 adapters m  u32 has_logits
//   i32 positions[n] (increasing)
//   for each layer: keys [n][kv_width], then values [n][kv_width], of the KV type
//   sampler: u64 random[4]  u32 count  i32 recent[count] (oldest first)
//   f32 logits[vocab] when has_logits
//   m × (u64 adapter fingerprint, f32 scale, u32 name bytes, the name)
//   u64 fingerprint of every byte before it (a checksum)
namespace detail {
constexpr char state_magic[8] = {'L', 'A', 'M', 'S', 'T', 'A', 'T', 'E'};
constexpr std::uint32_t state_version = 1;
constexpr std::uint32_t state_max_adapters = 1024;
constexpr std::uint32_t state_max_name_bytes = 4096;

class StateWriter {
 public:
  explicit StateWriter(std::vector<std::uint8_t>& out) : out_(out) {}
  void bytes(const void* data, std::size_t size) {
    const std::uint8_t* begin = static_cast<const std::uint8_t*>(data);
    out_.insert(out_.end(), begin, begin + size);
  }
  void u32(std::uint32_t value) { bytes(&value, 4); }
  void u64(std::uint64_t value) { bytes(&value, 8); }

 private:
  std::vector<std::uint8_t>& out_;
};

// Reads what the writer wrote; every read is checked against the end (a failed one returns
// null / false and reads nothing).
class StateReader {
 public:
  StateReader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  const std::uint8_t* take(std::size_t count) {
    if (count > size_ - at_) return nullptr;
    const std::uint8_t* here = data_ + at_;
    at_ += count;
    return here;
  }
  bool u32(std::uint32_t& value) { return copy(&value, 4); }
  bool u64(std::uint64_t& value) { return copy(&value, 8); }
  bool f32(float& value) { return copy(&value, 4); }
  std::size_t offset() const { return at_; }
  std::size_t left() const { return size_ - at_; }

 private:
  bool copy(void* out, std::size_t count) {
    const std::uint8_t* from = take(count);
    if (from == nullptr) return false;
    std::memcpy(out, from, count);
    return true;
  }
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};
}  // namespace detail

LAMINA_DETAIL_API Result<void> Session::refuse_on_device(const char* call) const {
  if (device_ == nullptr) return success();
  return fail(ErrorCode::unsupported, std::string(call) + ": not available on the " + params_.backend->name() +
                                          " backend yet (its KV cache stays on the device); use a CPU session");
}

LAMINA_DETAIL_API Result<std::vector<std::uint8_t>> Session::save_sequence(SequenceId sequence) const {
  LAMINA_TRY(check_sequence(sequence));
  LAMINA_TRY(refuse_if_busy("save_sequence"));
  LAMINA_TRY(refuse_on_device("save_sequence"));
  const ModelHparams& hparams = model_->hparams();
  const std::vector<std::uint32_t> cells = cache_.cells_of(sequence);
  const std::size_t index = static_cast<std::size_t>(sequence);
  const AdapterStack& stack = stacks_[index];
  const Sampler::State sampler = samplers_[index].state();
  const bool has_logits = has_last_logits_[index] != 0;
  std::vector<std::uint8_t> out;
  out.reserve(64 + cells.size() * (4 + 2 * hparams.block_count * cache_.row_bytes()) + 40 + sampler.recent.size() * 4 +
              (has_logits ? hparams.vocab_size * 4 : 0) + stack.size() * 64 + 8);
  detail::StateWriter write(out);
  write.bytes(detail::state_magic, sizeof detail::state_magic);
  write.u32(detail::state_version);
  write.u64(model_->fingerprint());
  write.u32(static_cast<std::uint32_t>(cache_.element_type()));
  write.u32(hparams.block_count);
  write.u32(hparams.kv_width());
  write.u32(hparams.vocab_size);
  write.u32(static_cast<std::uint32_t>(cells.size()));
  write.u32(static_cast<std::uint32_t>(stack.size()));
  write.u32(has_logits ? 1 : 0);
  for (std::uint32_t cell : cells) write.u32(static_cast<std::uint32_t>(cache_.cell_position(cell)));
  for (std::uint32_t layer = 0; layer < hparams.block_count; ++layer) {
    for (std::uint32_t cell : cells) write.bytes(cache_.key(layer, cell), cache_.row_bytes());
    for (std::uint32_t cell : cells) write.bytes(cache_.value(layer, cell), cache_.row_bytes());
  }
  for (std::uint64_t word : sampler.random) write.u64(word);
  write.u32(static_cast<std::uint32_t>(sampler.recent.size()));
  for (Token token : sampler.recent) write.u32(static_cast<std::uint32_t>(token));
  if (has_logits) write.bytes(last_logits_.data() + index * hparams.vocab_size, hparams.vocab_size * sizeof(float));
  for (const AdapterStackEntry& entry : stack) {
    write.u64(entry.adapter->fingerprint());
    write.bytes(&entry.scale, 4);
    const std::string& name = entry.adapter->name();
    const std::size_t name_bytes = std::min<std::size_t>(name.size(), detail::state_max_name_bytes);
    write.u32(static_cast<std::uint32_t>(name_bytes));
    write.bytes(name.data(), name_bytes);
  }
  write.u64(Fingerprint().add_bytes(out.data(), out.size()).value());
  return out;
}

LAMINA_DETAIL_API Result<void> Session::save_sequence_to_file(const std::string& path, SequenceId sequence) const {
  Result<std::vector<std::uint8_t>> bytes = save_sequence(sequence);
  if (!bytes) return bytes.take_error();
  return write_regular_file(path, bytes->data(), bytes->size());
}

LAMINA_DETAIL_API Result<void> Session::restore_sequence(const std::uint8_t* bytes, std::size_t size, SequenceId sequence,
                                                         const std::vector<std::shared_ptr<const LoraAdapter>>& adapters) {
  LAMINA_TRY(check_sequence(sequence));
  LAMINA_TRY(refuse_if_busy("restore_sequence"));
  LAMINA_TRY(refuse_on_device("restore_sequence"));
  auto invalid = [](const std::string& what) { return fail(ErrorCode::invalid_format, "session state: " + what); };
  if (bytes == nullptr && size != 0) return fail(ErrorCode::invalid_argument, "restore_sequence: no bytes");
  if (size < sizeof detail::state_magic + 4 || std::memcmp(bytes, detail::state_magic, sizeof detail::state_magic) != 0) {
    return invalid("not a lamina session state (no \"LAMSTATE\" at its start)");
  }
  detail::StateReader read(bytes, size);
  (void)read.take(sizeof detail::state_magic);
  std::uint32_t version = 0;
  (void)read.u32(version);
  if (version != detail::state_version) {
    return fail(ErrorCode::unsupported, "session state: format version " + std::to_string(version) + "; this lamina reads version " +
                                            std::to_string(detail::state_version) + (version > detail::state_version ? " (saved by a newer lamina)" : ""));
  }
  if (size < read.offset() + 8) return invalid("truncated: " + std::to_string(size) + " bytes");
  std::uint64_t checksum;
  std::memcpy(&checksum, bytes + size - 8, 8);
  if (Fingerprint().add_bytes(bytes, size - 8).value() != checksum) {
    return invalid("its checksum does not match its contents (truncated or corrupted)");
  }
  detail::StateReader body(bytes, size - 8);  // everything but the checksum
  (void)body.take(read.offset());
  const ModelHparams& hparams = model_->hparams();
  std::uint64_t model_fingerprint = 0;
  std::uint32_t kv_type = 0, block_count = 0, kv_width = 0, vocab = 0, cell_count = 0, adapter_count = 0, has_logits = 0;
  if (!body.u64(model_fingerprint) || !body.u32(kv_type) || !body.u32(block_count) || !body.u32(kv_width) || !body.u32(vocab) ||
      !body.u32(cell_count) || !body.u32(adapter_count) || !body.u32(has_logits)) {
    return invalid("truncated in its header");
  }
  if (model_fingerprint != model_->fingerprint() || block_count != hparams.block_count || kv_width != hparams.kv_width() ||
      vocab != hparams.vocab_size) {
    return fail(ErrorCode::type_mismatch, "session state: it was saved with another model than this session's (" + std::to_string(block_count) +
                                              " layers, KV width " + std::to_string(kv_width) + ", vocabulary " + std::to_string(vocab) + ")");
  }
  if (kv_type != static_cast<std::uint32_t>(cache_.element_type())) {
    return fail(ErrorCode::type_mismatch, std::string("session state: its KV cache is not ") + dtype_name(cache_.element_type()) +
                                              " like this session's (SessionParams::kv_cache_type)");
  }
  if (has_logits > 1) return invalid("has_logits is " + std::to_string(has_logits));
  if (cell_count > cache_.cell_count()) {
    return fail(ErrorCode::invalid_state, "session state: it holds " + std::to_string(cell_count) + " tokens, more than this session's " +
                                              std::to_string(cache_.cell_count()) + " KV cells");
  }
  if (adapter_count > detail::state_max_adapters) return invalid(std::to_string(adapter_count) + " adapters in the stack");
  // The positions, and the room they need.
  std::vector<Position> positions(cell_count);
  for (std::uint32_t i = 0; i < cell_count; ++i) {
    std::uint32_t position;
    if (!body.u32(position)) return invalid("truncated in the positions");
    positions[i] = static_cast<Position>(position);
    if (positions[i] < 0 || positions[i] >= static_cast<Position>(max_session_context_length) || (i > 0 && positions[i] <= positions[i - 1])) {
      return invalid("position " + std::to_string(positions[i]) + " of token " + std::to_string(i) + " is out of order or out of range");
    }
  }
  const std::uint32_t free_cells = cache_.cell_count() - cache_.used_cell_count() + static_cast<std::uint32_t>(cache_.cells_of(sequence).size());
  if (cell_count > free_cells) {
    return fail(ErrorCode::invalid_state, "session state: it needs " + std::to_string(cell_count) + " KV cells, " + std::to_string(free_cells) +
                                              " are free (remove other tokens first)");
  }
  const std::size_t layer_bytes = static_cast<std::size_t>(cell_count) * cache_.row_bytes();
  const std::uint8_t* kv_data = body.take(2 * layer_bytes * block_count);  // cell_count ≤ cells, so this cannot overflow
  if (kv_data == nullptr) return invalid("truncated in the keys and values");
  Sampler::State sampler;
  for (std::uint64_t& word : sampler.random) {
    if (!body.u64(word)) return invalid("truncated in the sampler state");
  }
  std::uint32_t recent_count = 0;
  if (!body.u32(recent_count) || recent_count > body.left() / 4) return invalid("truncated in the sampler's recent tokens");
  sampler.recent.resize(recent_count);
  for (Token& token : sampler.recent) {
    std::uint32_t id;
    (void)body.u32(id);
    token = static_cast<Token>(id);
    if (token < 0 || static_cast<std::uint32_t>(token) >= hparams.vocab_size) return invalid("a recent token id " + std::to_string(token) + " is outside the vocabulary");
  }
  const std::uint8_t* logits = nullptr;
  if (has_logits) {
    logits = body.take(static_cast<std::size_t>(hparams.vocab_size) * 4);
    if (logits == nullptr) return invalid("truncated in the logits");
    std::vector<float> check(hparams.vocab_size);
    std::memcpy(check.data(), logits, check.size() * 4);
    if (!detail::all_finite(check.data(), check.size())) return invalid("its logits hold NaN or infinity");
  }
  AdapterStack stack;
  for (std::uint32_t i = 0; i < adapter_count; ++i) {
    std::uint64_t fingerprint = 0;
    float scale = 0;
    std::uint32_t name_bytes = 0;
    if (!body.u64(fingerprint) || !body.f32(scale) || !body.u32(name_bytes) || name_bytes > detail::state_max_name_bytes) {
      return invalid("truncated in the adapter stack");
    }
    const std::uint8_t* name = body.take(name_bytes);
    if (name == nullptr) return invalid("truncated in the adapter stack");
    const std::string shown = detail::quote_for_message(std::string(reinterpret_cast<const char*>(name), name_bytes));
    std::shared_ptr<const LoraAdapter> found;
    for (const std::shared_ptr<const LoraAdapter>& adapter : adapters) {
      if (adapter != nullptr && adapter->fingerprint() == fingerprint) found = adapter;
    }
    if (found == nullptr) {
      return fail(ErrorCode::missing, "session state: its adapter stack holds " + shown + ", which is not among the adapters given to restore_sequence (load it first)");
    }
    AdapterStackEntry entry{found, scale};
    LAMINA_TRY(check_adapter(entry));
    stack.push_back(std::move(entry));
  }
  if (body.left() != 0) return invalid(std::to_string(body.left()) + " bytes after its end");

  // Everything checked: now the session changes.
  if (!stack.empty()) LAMINA_TRY(ensure_lora_scratch());
  const std::size_t index = static_cast<std::size_t>(sequence);
  cache_.remove(sequence);
  std::vector<SequenceId> sequences(cell_count, sequence);
  std::vector<std::uint32_t> cells(cell_count);
  LAMINA_TRY(cache_.claim_cells(sequences.data(), positions.data(), cell_count, cells.data()));  // fits: checked above
  const std::size_t row = cache_.row_bytes();
  for (std::uint32_t layer = 0; layer < block_count; ++layer) {
    const std::uint8_t* keys = kv_data + 2 * layer * layer_bytes;
    const std::uint8_t* values = keys + layer_bytes;
    for (std::uint32_t i = 0; i < cell_count; ++i) {
      std::memcpy(cache_.key(layer, cells[i]), keys + i * row, row);
      std::memcpy(cache_.value(layer, cells[i]), values + i * row, row);
    }
  }
  samplers_[index].restore(sampler);
  has_last_logits_[index] = has_logits ? 1 : 0;
  if (has_logits) std::memcpy(last_logits_.data() + index * hparams.vocab_size, logits, hparams.vocab_size * sizeof(float));
  stacks_[index] = std::move(stack);
  update_any_stack_active();
  return success();
}

LAMINA_DETAIL_API Result<void> Session::restore_sequence_from_file(const std::string& path, SequenceId sequence,
                                                                   const std::vector<std::shared_ptr<const LoraAdapter>>& adapters) {
  LAMINA_TRY(check_sequence(sequence));
  // The largest state this session could have saved: all of its cells, logits, a long stack.
  const ModelHparams& hparams = model_->hparams();
  const double most = 256.0 + static_cast<double>(cache_.cell_count()) * (4.0 + 2.0 * hparams.block_count * static_cast<double>(cache_.row_bytes())) +
                      4.0 * (hparams.vocab_size + cache_.cell_count() + params_.sampling.penalty_last_n) +
                      detail::state_max_adapters * (16.0 + detail::state_max_name_bytes);
  Result<std::string> bytes = read_regular_file(path, static_cast<std::size_t>(most));
  if (!bytes) return bytes.take_error();
  Result<void> restored = restore_sequence(reinterpret_cast<const std::uint8_t*>(bytes->data()), bytes->size(), sequence, adapters);
  if (!restored) return fail(restored.error().code, path + ": " + restored.error().message);
  return success();
}

LAMINA_DETAIL_API Result<void> Session::copy_prefix(SequenceId from, SequenceId to, Position length) {
  LAMINA_TRY(check_sequence(from));
  LAMINA_TRY(check_sequence(to));
  LAMINA_TRY(refuse_if_busy("copy_prefix"));
  LAMINA_TRY(refuse_on_device("copy_prefix"));
  if (from == to) return fail(ErrorCode::invalid_argument, "copy_prefix: the two sequences are the same (" + std::to_string(from) + ")");
  if (length < 0 || length > position(from)) {
    return fail(ErrorCode::invalid_argument, "copy_prefix: length " + std::to_string(length) + " is outside [0, " + std::to_string(position(from)) +
                                                 "], the tokens sequence " + std::to_string(from) + " holds");
  }
  const std::vector<std::uint32_t> source = cache_.cells_of(from, length);
  const std::uint32_t free_cells = cache_.cell_count() - cache_.used_cell_count() + static_cast<std::uint32_t>(cache_.cells_of(to).size());
  if (source.size() > free_cells) {
    return fail(ErrorCode::invalid_state, "copy_prefix: " + std::to_string(source.size()) + " KV cells needed, " + std::to_string(free_cells) +
                                              " free (remove other tokens or create the session with a longer context)");
  }
  cache_.remove(to);
  std::vector<SequenceId> sequences(source.size(), to);
  std::vector<Position> positions(source.size());
  for (std::size_t i = 0; i < source.size(); ++i) positions[i] = cache_.cell_position(source[i]);
  std::vector<std::uint32_t> cells(source.size());
  LAMINA_TRY(cache_.claim_cells(sequences.data(), positions.data(), source.size(), cells.data()));
  for (std::size_t i = 0; i < source.size(); ++i) cache_.copy_cell(source[i], cells[i]);
  const std::size_t target = static_cast<std::size_t>(to), origin = static_cast<std::size_t>(from);
  const std::size_t vocab = model_->hparams().vocab_size;
  if (length == position(from)) {
    samplers_[target].restore(samplers_[origin].state());
    has_last_logits_[target] = has_last_logits_[origin];
    std::memcpy(last_logits_.data() + target * vocab, last_logits_.data() + origin * vocab, vocab * sizeof(float));
  } else {
    samplers_[target].reset();
    has_last_logits_[target] = 0;
  }
  return success();
}
#endif  // LAMINA_DETAIL_DEFINITIONS

LAMINA_NAMESPACE_END

#include "core/definitions_end.inl"
