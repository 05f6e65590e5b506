// lamina/backend.hpp — the interface through which a session runs its forward passes on a
// device other than the CPU (lamina/vulkan.hpp provides the Vulkan one).
//
//   auto gpu = lamina::vulkan::Backend::create();                 // Result<std::shared_ptr<…>>
//   lamina::SessionParams params;
//   if (gpu) params.backend = *gpu;                               // else: stay on the CPU
//   auto session = lamina::Session::create(model, params);
//
// The session keeps its API on any backend. The host side of a forward pass (checking the
// batch, the KV cache's bookkeeping, the cells each token sees, the RoPE angles, grouping the
// tokens by adapter stack) is shared; the backend runs the layers (model/llama.hpp's
// transformer_layer through its own ForwardOps) and returns the logits.
#pragma once

#include "config.hpp"
#include "adapters/lora.hpp"
#include "core/cancel.hpp"
#include "core/executor.hpp"
#include "core/result.hpp"
#include "kernels/cpu/kernels.hpp"
#include "model/kv_cache.hpp"
#include "model/llama.hpp"
#include "model/model.hpp"

#include <cstdint>
#include <memory>
#include <string>

LAMINA_NAMESPACE_BEGIN

// The sizes a session is created with, as a backend needs them to allocate its part.
struct BackendSessionShape {
  std::uint32_t context_length = 0;
  std::uint32_t batch_size = 0;
  std::uint32_t max_outputs = 0;
  std::uint32_t sequence_count = 0;
  std::uint32_t max_lora_rank = 0;
};

// One forward pass, after prepare_forward() (model/llama.hpp) ran on the host. The references
// stay valid until finish() returns.
struct BackendForward {
  const ModelHparams* hparams = nullptr;
  const ModelWeights* weights = nullptr;
  const Batch* batch = nullptr;
  KvCache* cache = nullptr;          // bookkeeping; it holds data only for the layers on the CPU
  ForwardBuffers* buffers = nullptr; // host buffers: cells, visible cells, RoPE tables in; logits out
  Executor* executor = nullptr;      // for the layers that run on the CPU (partial offload)
  const cpu::CpuKernels* kernels = nullptr;
  LoraBatch* lora = nullptr;         // the tokens grouped by adapter stack, or null when no stack applies
  CancelToken cancel;                // checked between the layers that run on the CPU
};

// A session's part on a device: its activations, KV cache and command buffer.
class BackendSession {
 public:
  virtual ~BackendSession() = default;
  // Records the forward pass and submits it; returns without waiting.
  virtual Result<void> start(const BackendForward& forward) = 0;
  // Whether the submitted work has finished on the device (finish() then does not wait for it).
  virtual Result<bool> ready() = 0;
  // Waits for the device, runs the layers that stay on the CPU, and leaves the logits in
  // forward.buffers->logits. Every start() is followed by one finish().
  virtual Result<void> finish() = 0;
  // Layers from this index on run on the CPU; the session's KvCache holds data only for them.
  virtual std::uint32_t first_cpu_layer() const = 0;
  // Bytes this session holds on the device (activations, KV cache, scratch).
  virtual std::uint64_t device_bytes() const = 0;
  // One line: the device, the kernels, what is offloaded.
  virtual std::string description() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;  // "vulkan"
  virtual Result<std::unique_ptr<BackendSession>> create_session(const std::shared_ptr<const Model>& model,
                                                                 const BackendSessionShape& shape) = 0;
};

LAMINA_NAMESPACE_END
