// lamina/vulkan.hpp — the Vulkan compute backend: forward passes, quantized weights and
// per-sequence LoRA stacks on a GPU.
//
//   #include <lamina/lamina.hpp>
//   #include <lamina/vulkan.hpp>       // links nothing: the Vulkan loader is opened at run time
//
//   auto gpu = lamina::vulkan::Backend::create();           // Result<std::shared_ptr<Backend>>
//   lamina::SessionParams params;
//   if (gpu) params.backend = *gpu;                          // else gpu.error() says why; stay on the CPU
//   auto session = lamina::Session::create(model, params);
//
// The model is described once (model/llama.hpp, transformer_layer); this file implements its
// ForwardOps by recording each operation as a compute dispatch into one command buffer per
// forward pass, submitted once. The weights of a model are uploaded once per device and shared
// by every session on it; an adapter's factors are uploaded the first time a stack uses it, so
// changing stacks or scales between two tokens costs no upload of the base and no pipeline.
#pragma once

#include "lamina.hpp"
#include "kernels/vulkan/context.hpp"
#include "kernels/vulkan/memory.hpp"
#include "kernels/vulkan/kernels.hpp"
#include "kernels/vulkan/pipelines.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace vulkan {

// The weights of one model on one device, shared by every session of that model there.
struct DeviceLayer {
  DeviceMatrix matrices[projection_count];  // by Projection
  Buffer vectors[5];                        // by LayerVector; empty when absent
};

class DeviceWeights {
 public:
  // Uploads the token embedding, the first `layer_count` layers, and (when `with_output`) the
  // output norm and matrix.
  static Result<std::shared_ptr<DeviceWeights>> upload(const Context& context, const Model& model, std::uint32_t layer_count, bool with_output) {
    std::shared_ptr<DeviceWeights> weights(new (std::nothrow) DeviceWeights());
    if (weights == nullptr) return fail(ErrorCode::out_of_memory, "vulkan: out of memory");
    const ModelWeights& source = model.weights();
    // One staging buffer for every upload when the device memory is not mapped (discrete GPUs).
    Buffer staging;
    Buffer* staging_pointer = nullptr;
    {
      Result<Buffer> probe = Buffer::create(context, 4, MemoryUse::device, "a probe");
      if (!probe) return probe.take_error();
      if (probe->mapped() == nullptr) {
        Result<Buffer> created = Buffer::create(context, std::uint64_t{64} << 20, MemoryUse::host, "the upload staging buffer");
        if (!created) return created.take_error();
        staging = std::move(*created);
        staging_pointer = &staging;
      }
    }
    Result<DeviceMatrix> embedding = DeviceMatrix::upload(context, source.token_embedding, "token_embd.weight", staging_pointer);
    if (!embedding) return embedding.take_error();
    weights->token_embedding = std::move(*embedding);
    for (std::uint32_t l = 0; l < layer_count; ++l) {
      const LayerWeights& layer = source.layers[l];
      DeviceLayer device;
      const TensorView* matrices[projection_count] = {&layer.query, &layer.key, &layer.value, &layer.attention_output,
                                                      &layer.ffn_gate, &layer.ffn_up, &layer.ffn_down};
      for (std::size_t p = 0; p < projection_count; ++p) {
        const std::string name = "blk." + std::to_string(l) + "." + projection_gguf_name(projection_at(p)) + ".weight";
        Result<DeviceMatrix> matrix = DeviceMatrix::upload(context, *matrices[p], name, staging_pointer);
        if (!matrix) return matrix.take_error();
        device.matrices[p] = std::move(*matrix);
      }
      const std::vector<float>* vectors[5] = {&layer.attention_norm, &layer.ffn_norm, &layer.query_bias, &layer.key_bias, &layer.value_bias};
      for (std::size_t v = 0; v < 5; ++v) {
        Result<Buffer> buffer = upload_vector(context, *vectors[v], "a norm or bias vector");
        if (!buffer) return buffer.take_error();
        device.vectors[v] = std::move(*buffer);
      }
      weights->layers.push_back(std::move(device));
    }
    if (with_output) {
      Result<DeviceMatrix> output = DeviceMatrix::upload(context, source.output, "output.weight", staging_pointer);
      if (!output) return output.take_error();
      weights->output = std::move(*output);
      Result<Buffer> norm = upload_vector(context, source.output_norm, "output_norm.weight");
      if (!norm) return norm.take_error();
      weights->output_norm = std::move(*norm);
      weights->has_output = true;
    }
    return weights;
  }

  std::uint64_t bytes() const {
    std::uint64_t total = token_embedding.bytes() + output.bytes() + output_norm.size();
    for (const DeviceLayer& layer : layers) {
      for (const DeviceMatrix& matrix : layer.matrices) total += matrix.bytes();
      for (const Buffer& vector : layer.vectors) total += vector.size();
    }
    return total;
  }

  DeviceMatrix token_embedding;
  std::vector<DeviceLayer> layers;  // the offloaded layers, from layer 0
  DeviceMatrix output;
  Buffer output_norm;
  bool has_output = false;
};

// An adapter's factors on the device (uploaded on first use, shared by sessions).
struct DeviceAdapterModule {
  Buffer a;          // [rank, in], the module's factor type
  Buffer b;          // [rank, out] (B transposed)
  Buffer row_scale;  // [out] DoRA, else empty
};
struct DeviceAdapter {
  std::vector<DeviceAdapterModule> modules;  // [block_count × projection_count]; empty buffers where inactive
  std::uint64_t bytes = 0;
};

class DeviceSession;

// The Vulkan backend: one device, its pipelines, and the models and adapters uploaded to it.
class Backend final : public lamina::Backend, public std::enable_shared_from_this<Backend> {
 public:
  static Result<std::shared_ptr<Backend>> create(const VulkanParams& params = VulkanParams()) {
    Result<std::shared_ptr<Context>> context = Context::create(params);
    if (!context) return context.take_error();
    Result<std::shared_ptr<Pipelines>> pipelines = Pipelines::create(*context);
    if (!pipelines) return pipelines.take_error();
    std::shared_ptr<Backend> backend(new (std::nothrow) Backend());
    if (backend == nullptr) return fail(ErrorCode::out_of_memory, "vulkan: out of memory");
    backend->context_ = std::move(*context);
    backend->pipelines_ = std::move(*pipelines);
    return backend;
  }

  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  // Keeps the pipelines compiled so far in VulkanParams::pipeline_cache_path, if set.
  ~Backend() override {
    if (context_ != nullptr) static_cast<void>(context_->save_pipeline_cache());
  }

  const char* name() const override { return "vulkan"; }
  // Writes the pipeline cache now (also done when the backend is destroyed).
  Result<void> save_pipeline_cache() const { return context_->save_pipeline_cache(); }
  const Context& context() const { return *context_; }
  const DeviceInfo& info() const { return context_->info(); }
  Pipelines& pipelines() const { return *pipelines_; }
  std::shared_ptr<Pipelines> shared_pipelines() const { return pipelines_; }

  Result<std::unique_ptr<lamina::BackendSession>> create_session(const std::shared_ptr<const Model>& model,
                                                                 const BackendSessionShape& shape) override;

  // The weights of `model` on this device, uploaded on the first call (later calls share them
  // while any session holds them). `layer_count` layers; the output matrix with all layers.
  Result<std::shared_ptr<DeviceWeights>> weights_for(const std::shared_ptr<const Model>& model, std::uint32_t layer_count) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = models_.begin(); it != models_.end();) {  // forget models that are gone
      if (it->second.model.expired() || it->second.weights.expired()) it = models_.erase(it);
      else ++it;
    }
    auto found = models_.find(model.get());
    if (found != models_.end()) {
      std::shared_ptr<DeviceWeights> weights = found->second.weights.lock();
      if (weights != nullptr && weights->layers.size() == layer_count) return weights;
    }
    const bool with_output = layer_count == model->hparams().block_count;
    Result<std::shared_ptr<DeviceWeights>> weights = DeviceWeights::upload(*context_, *model, layer_count, with_output);
    if (!weights) return weights.take_error();
    models_[model.get()] = ModelEntry{model, *weights};
    return weights;
  }

  // The factors of `adapter` on this device, uploaded on its first use.
  Result<const DeviceAdapter*> adapter_for(const std::shared_ptr<const LoraAdapter>& adapter, std::uint32_t block_count) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = adapters_.begin(); it != adapters_.end();) {
      if (it->second.adapter.expired()) it = adapters_.erase(it);
      else ++it;
    }
    auto found = adapters_.find(adapter.get());
    if (found != adapters_.end()) return found->second.device.get();
    std::shared_ptr<DeviceAdapter> device(new (std::nothrow) DeviceAdapter());
    if (device == nullptr) return fail(ErrorCode::out_of_memory, "vulkan: out of memory");
    device->modules.resize(static_cast<std::size_t>(block_count) * projection_count);
    for (std::uint32_t l = 0; l < block_count; ++l) {
      for (std::size_t p = 0; p < projection_count; ++p) {
        const LoraModule& module = adapter->module(l, projection_at(p));
        if (!module.active()) continue;
        DeviceAdapterModule& target = device->modules[l * projection_count + p];
        Result<Buffer> a = Buffer::create(*context_, module.a.size(), MemoryUse::device, "an adapter's A");
        if (!a) return a.take_error();
        LAMINA_TRY(upload(*context_, *a, 0, module.a.data(), module.a.size()));
        Result<Buffer> b = Buffer::create(*context_, module.b.size(), MemoryUse::device, "an adapter's B");
        if (!b) return b.take_error();
        LAMINA_TRY(upload(*context_, *b, 0, module.b.data(), module.b.size()));
        target.a = std::move(*a);
        target.b = std::move(*b);
        if (module.dora()) {
          Result<Buffer> scale = upload_vector(*context_, module.row_scale, "a DoRA row scale");
          if (!scale) return scale.take_error();
          target.row_scale = std::move(*scale);
        }
        device->bytes += target.a.size() + target.b.size() + target.row_scale.size();
      }
    }
    const DeviceAdapter* result = device.get();
    adapters_[adapter.get()] = AdapterEntry{adapter, std::move(device)};
    return result;
  }

 private:
  Backend() = default;
  struct ModelEntry {
    std::weak_ptr<const Model> model;
    std::weak_ptr<DeviceWeights> weights;
  };
  struct AdapterEntry {
    std::weak_ptr<const LoraAdapter> adapter;
    std::shared_ptr<DeviceAdapter> device;
  };
  std::shared_ptr<Context> context_;
  std::shared_ptr<Pipelines> pipelines_;
  std::mutex mutex_;
  std::map<const Model*, ModelEntry> models_;
  std::map<const LoraAdapter*, AdapterEntry> adapters_;
};

// A session's part on the device: activations, KV cache of the offloaded layers, per-call
// inputs, and the recorder. It implements the layer operations by recording dispatches.
class DeviceSession final : public lamina::BackendSession, private ForwardOps {
 public:
  static Result<std::unique_ptr<DeviceSession>> create(std::shared_ptr<Backend> backend, std::shared_ptr<const Model> model,
                                                      const BackendSessionShape& shape) {
    std::unique_ptr<DeviceSession> session(new (std::nothrow) DeviceSession());
    if (session == nullptr) return fail(ErrorCode::out_of_memory, "vulkan: out of memory");
    const Context& context = backend->context();
    const ModelHparams& hparams = model->hparams();
    const VulkanParams& params = context.params();
    if (hparams.head_size > 256) {
      return fail(ErrorCode::unsupported, "vulkan: heads of " + std::to_string(hparams.head_size) + " dimensions (the attention kernel takes up to 256)");
    }
    // How many layers go to the device: VulkanParams::offload_layers, then the byte budget.
    std::uint32_t layers = hparams.block_count;
    if (params.offload_layers >= 0 && static_cast<std::uint32_t>(params.offload_layers) < layers) layers = static_cast<std::uint32_t>(params.offload_layers);
    if (params.offload_max_bytes != 0) {
      const ModelWeights& weights = model->weights();
      std::uint64_t used = static_cast<std::uint64_t>(weights.token_embedding.row_count()) *
                           row_bytes(weights.token_embedding.dtype, static_cast<std::uint64_t>(weights.token_embedding.row_length()));
      std::uint32_t fitting = 0;
      for (; fitting < layers; ++fitting) {
        const LayerWeights& layer = weights.layers[fitting];
        const TensorView* matrices[] = {&layer.query, &layer.key, &layer.value, &layer.attention_output, &layer.ffn_gate, &layer.ffn_up, &layer.ffn_down};
        std::uint64_t bytes = 0;
        for (const TensorView* m : matrices) bytes += static_cast<std::uint64_t>(m->row_count()) * row_bytes(m->dtype, static_cast<std::uint64_t>(m->row_length()));
        if (used + bytes > params.offload_max_bytes) break;
        used += bytes;
      }
      layers = fitting;
    }
    session->backend_ = std::move(backend);
    session->model_ = std::move(model);
    session->shape_ = shape;
    session->device_layers_ = layers;
    Result<std::shared_ptr<DeviceWeights>> weights = session->backend_->weights_for(session->model_, layers);
    if (!weights) return weights.take_error();
    session->weights_ = std::move(*weights);
    LAMINA_TRY(session->allocate());
    return session;
  }

  Result<void> start(const BackendForward& forward) override;
  Result<bool> ready() override { return recorder_->poll(); }
  Result<void> finish() override;
  std::uint32_t first_cpu_layer() const override { return device_layers_; }
  std::uint64_t device_bytes() const override { return session_bytes_; }
  std::string description() const override {
    const ModelHparams& hparams = model_->hparams();
    return "vulkan: " + backend_->info().name + ", " + kernel_variant_name(backend_->context().kernel_variant()) + " kernels, " +
           std::to_string(device_layers_) + "/" + std::to_string(hparams.block_count) + " layers on the device (weights " +
           lamina::detail::describe_byte_count(weights_->bytes()) + ", session " + lamina::detail::describe_byte_count(session_bytes_) + ")";
  }
  // Bytes of the model's weights on the device (shared with the model's other sessions there).
  std::uint64_t weight_bytes() const { return weights_->bytes(); }

 private:
  DeviceSession() = default;

  Result<void> allocate() {
    const ModelHparams& hparams = model_->hparams();
    const std::uint64_t n = shape_.batch_size;
    const std::uint64_t widths[] = {hparams.embedding_length, hparams.embedding_length, hparams.query_width(), hparams.kv_width(),
                                    hparams.kv_width(),       hparams.query_width(),     hparams.embedding_length,
                                    hparams.feed_forward_length, hparams.feed_forward_length};
    for (std::size_t a = 0; a < 9; ++a) LAMINA_TRY(make(activations_[a], n * widths[a] * 4, MemoryUse::device, "activations"));
    const std::uint64_t cells = shape_.context_length;
    const std::uint64_t kv_bytes = cells * hparams.kv_width() * 4;
    cache_keys_.resize(device_layers_);
    cache_values_.resize(device_layers_);
    for (std::uint32_t l = 0; l < device_layers_; ++l) {
      LAMINA_TRY(make(cache_keys_[l], kv_bytes, MemoryUse::device, "the KV cache"));
      LAMINA_TRY(make(cache_values_[l], kv_bytes, MemoryUse::device, "the KV cache"));
    }
    const std::uint64_t pairs = hparams.rope_dimension_count / 2;
    LAMINA_TRY(make(tokens_, n * 4, MemoryUse::host, "token ids"));
    LAMINA_TRY(make(cells_, n * 4, MemoryUse::host, "cache cells"));
    LAMINA_TRY(make(visible_, cells * 4, MemoryUse::host, "visible cells"));
    LAMINA_TRY(make(ranges_, n * 8, MemoryUse::host, "visible ranges"));
    LAMINA_TRY(make(rope_cos_, n * std::max<std::uint64_t>(pairs, 1) * 4, MemoryUse::host, "RoPE angles"));
    LAMINA_TRY(make(rope_sin_, n * std::max<std::uint64_t>(pairs, 1) * 4, MemoryUse::host, "RoPE angles"));
    LAMINA_TRY(make(output_index_, std::max<std::uint64_t>(shape_.max_outputs, 1) * 4, MemoryUse::host, "output rows"));
    LAMINA_TRY(make(output_rows_, std::max<std::uint64_t>(shape_.max_outputs, 1) * hparams.embedding_length * 4, MemoryUse::device, "output rows"));
    // The logits [outputs, vocab] in parts of as many rows as one binding holds (a large
    // vocabulary times every token of a batch can exceed it); `output_order_` [0, 1, 2, …] lets
    // each part's product read its rows of output_rows_ through the matmul's gather.
    const std::uint64_t outputs = std::max<std::uint32_t>(shape_.max_outputs, 1);
    const std::uint64_t row_bytes = static_cast<std::uint64_t>(hparams.vocab_size) * 4;
    logits_rows_per_part_ = static_cast<std::uint32_t>(std::max<std::uint64_t>(1, backend_->context().max_binding_bytes() / row_bytes));
    for (std::uint64_t first = 0; first < outputs; first += logits_rows_per_part_) {
      logits_parts_.emplace_back();
      LAMINA_TRY(make(logits_parts_.back(), std::min<std::uint64_t>(logits_rows_per_part_, outputs - first) * row_bytes, MemoryUse::host, "logits"));
    }
    LAMINA_TRY(make(output_order_, outputs * 4, MemoryUse::host, "output rows"));
    for (std::uint64_t i = 0; i < outputs; ++i) static_cast<std::uint32_t*>(output_order_.mapped())[i] = static_cast<std::uint32_t>(i);
    if (device_layers_ < hparams.block_count) {
      LAMINA_TRY(make(hidden_readback_, n * hparams.embedding_length * 4, MemoryUse::host, "the hidden state"));
    }
    // LoRA: the tokens of the groups (batch order per group), A x, and W x for DoRA.
    const std::uint64_t widest = std::max({hparams.embedding_length, hparams.feed_forward_length, hparams.query_width()});
    LAMINA_TRY(make(lora_tokens_, n * 4, MemoryUse::host, "adapter groups"));
    LAMINA_TRY(make(lora_rank_out_, n * std::max<std::uint32_t>(shape_.max_lora_rank, 1) * 4, MemoryUse::device, "adapter scratch"));
    LAMINA_TRY(make(lora_base_, n * widest * 4, MemoryUse::device, "adapter scratch"));
    Result<std::unique_ptr<Recorder>> recorder = Recorder::create(backend_->shared_pipelines());
    if (!recorder) return recorder.take_error();
    recorder_ = std::move(*recorder);
    return success();
  }

  // Every buffer is bound whole, so none may be larger than one storage binding.
  Result<void> make(Buffer& target, std::uint64_t bytes, MemoryUse use, const char* what) {
    const std::uint64_t limit = backend_->context().max_binding_bytes();
    if (bytes > limit) {
      return fail(ErrorCode::unsupported, std::string("vulkan: the session's ") + what + " would take " + lamina::detail::describe_byte_count(bytes) +
                                              ", more than one storage binding of this device holds (" + lamina::detail::describe_byte_count(limit) +
                                              "); use a smaller batch_size, fewer logit rows (logits_for_every_token) or a shorter context");
    }
    Result<Buffer> buffer = Buffer::create(backend_->context(), bytes, use, what);
    if (!buffer) return buffer.take_error();
    target = std::move(*buffer);
    session_bytes_ += target.size();
    return success();
  }

  const Buffer& act(Activation activation) const { return activations_[static_cast<std::size_t>(activation)]; }
  std::uint32_t width(Activation activation) const {
    const ModelHparams& h = model_->hparams();
    const std::uint32_t widths[] = {h.embedding_length, h.embedding_length, h.query_width(), h.kv_width(), h.kv_width(),
                                    h.query_width(),    h.embedding_length, h.feed_forward_length, h.feed_forward_length};
    return widths[static_cast<std::size_t>(activation)];
  }
  KernelVariant variant() const { return backend_->context().kernel_variant(); }
  const Buffer& layer_vector(std::uint32_t layer, LayerVector which) const {
    return weights_->layers[layer].vectors[static_cast<std::size_t>(which)];
  }

  // --- ForwardOps: the layer, recorded ---------------------------------------------------------
  void rms_norm(Activation in, std::uint32_t layer, LayerVector weight, Activation out) override {
    const ModelHparams& h = model_->hparams();
    kernels::rms_norm(*recorder_, act(in), layer_vector(layer, weight), act(out), tokens_now_, h.embedding_length, h.rms_norm_epsilon);
  }
  void project(std::uint32_t layer, Projection projection, Activation in, Activation out) override {
    const DeviceMatrix& matrix = weights_->layers[layer].matrices[static_cast<std::size_t>(projection)];
    kernels::matmul(*recorder_, variant(), matrix, act(in), act(out), tokens_now_, matrix.rows);
    if (lora_ != nullptr) apply_adapters(layer, projection, act(in), act(out), matrix.columns, matrix.rows);
  }
  void add_bias(std::uint32_t layer, LayerVector bias, Activation target) override {
    const std::uint32_t w = width(target);
    kernels::elementwise(*recorder_, kernels::Elementwise::add_bias, act(target), layer_vector(layer, bias), tokens_now_ * w, w);
  }
  void rope(Activation target, std::uint32_t heads) override {
    const ModelHparams& h = model_->hparams();
    kernels::rope(*recorder_, act(target), rope_cos_, rope_sin_, tokens_now_, heads, h.head_size, h.rope_dimension_count / 2,
                  h.rope_style == reference::RopeStyle::neox);
  }
  void store_kv(std::uint32_t layer) override {
    kernels::store_kv(*recorder_, act(Activation::key), act(Activation::value), cells_, cache_keys_[layer], cache_values_[layer], tokens_now_,
                      model_->hparams().kv_width());
  }
  void attention(std::uint32_t layer) override {
    const ModelHparams& h = model_->hparams();
    kernels::attention(*recorder_, act(Activation::query), act(Activation::attention), visible_, ranges_, cache_keys_[layer],
                       cache_values_[layer], tokens_now_, h.head_count, h.head_count_kv, h.head_size);
  }
  void silu_mul(Activation gate, Activation up) override {
    kernels::elementwise(*recorder_, kernels::Elementwise::silu_mul, act(gate), act(up), tokens_now_ * width(gate));
  }
  void add(Activation target, Activation addend) override {
    kernels::elementwise(*recorder_, kernels::Elementwise::add, act(target), act(addend), tokens_now_ * width(target));
  }

  // Every group's adapter changes to one projection, as LoraBatch::apply does on the CPU:
  // u = A x over the group's tokens (gathered), then y += B u (or DoRA's form) back at those tokens.
  void apply_adapters(std::uint32_t layer, Projection projection, const Buffer& x, const Buffer& y, std::uint32_t in, std::uint32_t out) {
    bool dora_base_copied = false;
    for (std::size_t g = 0; g < lora_->group_count(); ++g) {
      const AdapterStack& stack = lora_->group_stack(g);
      const std::uint32_t count = static_cast<std::uint32_t>(lora_->group_token_count(g));
      const std::uint64_t offset = lora_->group_offset(g);
      for (const AdapterStackEntry& entry : stack) {
        if (entry.adapter == nullptr || entry.scale == 0.0f) continue;
        const LoraModule& module = entry.adapter->module(layer, projection);
        if (!module.active()) continue;
        const DeviceAdapter* device = group_adapters_[adapter_slot(entry.adapter.get())];
        const DeviceAdapterModule& factors = device->modules[layer * projection_count + static_cast<std::size_t>(projection)];
        if (module.dora() && !dora_base_copied) {  // W x without any adapter's change
          recorder_->copy(y, 0, lora_base_, 0, static_cast<std::uint64_t>(tokens_now_) * out * 4);
          dora_base_copied = true;
        }
        DeviceMatrix a;  // how the A factor [rank, in] is laid out; its buffer is factors.a
        a.type = module.factor_type;
        a.rows = module.rank;
        a.columns = in;
        a.row_bytes = static_cast<std::uint32_t>(lamina::row_bytes(module.factor_type, in));
        kernels::matmul(*recorder_, variant(), a, x, lora_rank_out_, count, module.rank, &lora_tokens_, offset, &factors.a);
        const kernels::LoraPush push{out,         module.rank,    count, entry.scale * module.scaling, module.dora() ? 1u : 0u,
                                     entry.scale, module.scaling, static_cast<std::uint32_t>(offset)};
        kernels::lora_b(*recorder_, module.factor_type, factors.b, lora_rank_out_, y, lora_tokens_, lora_base_, factors.row_scale, push);
      }
    }
  }
  std::size_t adapter_slot(const LoraAdapter* adapter) const {
    for (std::size_t i = 0; i < group_adapter_keys_.size(); ++i) if (group_adapter_keys_[i] == adapter) return i;
    return 0;
  }

  std::shared_ptr<Backend> backend_;
  std::shared_ptr<const Model> model_;
  std::shared_ptr<DeviceWeights> weights_;
  BackendSessionShape shape_;
  std::uint32_t device_layers_ = 0;
  std::uint64_t session_bytes_ = 0;
  Buffer activations_[9];  // by Activation
  std::vector<Buffer> cache_keys_, cache_values_;  // [device layers] each [cells, kv_width] F32
  Buffer tokens_, cells_, visible_, ranges_, rope_cos_, rope_sin_, output_index_, output_rows_, output_order_, hidden_readback_;
  std::vector<Buffer> logits_parts_;  // [outputs, vocab] floats, logits_rows_per_part_ rows each
  std::uint32_t logits_rows_per_part_ = 1;
  Buffer lora_tokens_, lora_rank_out_, lora_base_;
  std::unique_ptr<Recorder> recorder_;
  // The forward pass in flight.
  BackendForward forward_;
  std::uint32_t tokens_now_ = 0;
  std::uint32_t outputs_now_ = 0;
  LoraBatch* lora_ = nullptr;
  std::vector<const LoraAdapter*> group_adapter_keys_;
  std::vector<const DeviceAdapter*> group_adapters_;
};

inline Result<std::unique_ptr<lamina::BackendSession>> Backend::create_session(const std::shared_ptr<const Model>& model,
                                                                               const BackendSessionShape& shape) {
  Result<std::unique_ptr<DeviceSession>> session = DeviceSession::create(shared_from_this(), model, shape);
  if (!session) return session.take_error();
  return std::unique_ptr<lamina::BackendSession>(std::move(*session));
}

inline Result<void> DeviceSession::start(const BackendForward& forward) {
  forward_ = forward;
  const ModelHparams& hparams = *forward.hparams;
  const Batch& batch = *forward.batch;
  ForwardBuffers& buffers = *forward.buffers;
  tokens_now_ = static_cast<std::uint32_t>(batch.size());
  lora_ = forward.lora;

  // The adapters the groups use, on the device (uploaded on first use).
  group_adapter_keys_.clear();
  group_adapters_.clear();
  if (lora_ != nullptr) {
    for (std::size_t g = 0; g < lora_->group_count(); ++g) {
      for (const AdapterStackEntry& entry : lora_->group_stack(g)) {
        if (entry.adapter == nullptr || entry.scale == 0.0f) continue;
        if (std::find(group_adapter_keys_.begin(), group_adapter_keys_.end(), entry.adapter.get()) != group_adapter_keys_.end()) continue;
        Result<const DeviceAdapter*> device = backend_->adapter_for(entry.adapter, hparams.block_count);
        if (!device) return device.take_error();
        group_adapter_keys_.push_back(entry.adapter.get());
        group_adapters_.push_back(*device);
      }
    }
  }

  LAMINA_TRY(recorder_->wait());
  // The host's inputs, written into mapped buffers: token ids, cells, the cells each token sees, RoPE angles.
  std::uint32_t* tokens = static_cast<std::uint32_t*>(tokens_.mapped());
  std::uint32_t* ranges = static_cast<std::uint32_t*>(ranges_.mapped());
  std::uint32_t* outputs = static_cast<std::uint32_t*>(output_index_.mapped());
  std::uint32_t visible_total = 0;
  outputs_now_ = 0;
  for (std::size_t t = 0; t < batch.size(); ++t) {
    tokens[t] = static_cast<std::uint32_t>(batch.tokens[t]);
    ranges[2 * t] = buffers.visible_begin[t];
    ranges[2 * t + 1] = buffers.visible_count[t];
    visible_total = std::max(visible_total, buffers.visible_begin[t] + buffers.visible_count[t]);
    if (batch.want_logits[t]) outputs[outputs_now_++] = static_cast<std::uint32_t>(t);
  }
  std::memcpy(cells_.mapped(), buffers.cells.data(), batch.size() * 4);
  std::memcpy(visible_.mapped(), buffers.visible_cells.data(), static_cast<std::size_t>(visible_total) * 4);
  const std::size_t pairs = hparams.rope_dimension_count / 2;
  std::memcpy(rope_cos_.mapped(), buffers.rope_cos.data(), batch.size() * pairs * 4);
  std::memcpy(rope_sin_.mapped(), buffers.rope_sin.data(), batch.size() * pairs * 4);
  if (lora_ != nullptr && lora_->group_count() > 0) {
    const std::size_t grouped = lora_->group_offset(lora_->group_count() - 1) + lora_->group_token_count(lora_->group_count() - 1);
    std::memcpy(lora_tokens_.mapped(), lora_->group_tokens(0), grouped * 4);
  }

  LAMINA_TRY(recorder_->begin());
  kernels::get_rows(*recorder_, weights_->token_embedding, tokens_, act(Activation::hidden), tokens_now_);  // x = token_embd[token]
  for (std::uint32_t layer = 0; layer < device_layers_; ++layer) {
    transformer_layer(hparams, forward.weights->layers[layer], layer, *this);
  }
  if (weights_->has_output && outputs_now_ > 0) {
    // logits [outputs, vocab] = rms_norm(x[t]) * output_norm · Woutput for the tokens asked for.
    kernels::rms_norm(*recorder_, act(Activation::hidden), weights_->output_norm, output_rows_, outputs_now_, hparams.embedding_length,
                      hparams.rms_norm_epsilon, &output_index_);
    for (std::uint32_t first = 0, part = 0; first < outputs_now_; first += logits_rows_per_part_, ++part) {
      kernels::matmul(*recorder_, variant(), weights_->output, output_rows_, logits_parts_[part],
                      std::min(logits_rows_per_part_, outputs_now_ - first), hparams.vocab_size, &output_order_, first);
    }
  } else if (!weights_->has_output) {  // partial offload: the CPU takes the hidden state from here
    recorder_->copy(act(Activation::hidden), 0, hidden_readback_, 0, static_cast<std::uint64_t>(tokens_now_) * hparams.embedding_length * 4);
  }
  return recorder_->submit();
}

inline Result<void> DeviceSession::finish() {
  LAMINA_TRY(recorder_->wait());
  const ModelHparams& hparams = *forward_.hparams;
  ForwardBuffers& buffers = *forward_.buffers;
  if (weights_->has_output) {
    const std::size_t row_floats = hparams.vocab_size;
    for (std::uint32_t first = 0, part = 0; first < outputs_now_; first += logits_rows_per_part_, ++part) {
      const std::size_t rows = std::min(logits_rows_per_part_, outputs_now_ - first);
      std::memcpy(buffers.logits.data() + first * row_floats, logits_parts_[part].mapped(), rows * row_floats * 4);
    }
    return success();
  }
  // Partial offload: the rest of the layers on the CPU, from the hidden state the device left.
  std::memcpy(buffers.hidden.data(), hidden_readback_.mapped(), static_cast<std::size_t>(tokens_now_) * hparams.embedding_length * 4);
  // The CPU applies the same adapter groups to its layers.
  const ForwardPass pass{hparams, *forward_.weights, *forward_.batch, *forward_.cache, buffers, *forward_.executor, *forward_.kernels, forward_.lora,
                        forward_.cancel};
  if (!forward_from_layer(pass, device_layers_)) return fail(ErrorCode::cancelled, "the forward pass was cancelled");
  return success();
}

// Every device the loader reports, for `lamina devices` (an error when there is no loader).
inline Result<std::vector<DeviceInfo>> list_devices(const VulkanParams& params = VulkanParams()) { return Context::list_devices(params); }

}  // namespace vulkan
LAMINA_NAMESPACE_END
