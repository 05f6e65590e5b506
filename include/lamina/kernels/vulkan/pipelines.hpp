// lamina/kernels/vulkan/pipelines.hpp — compute pipelines from the committed SPIR-V, and the
// recorder that puts a forward pass's dispatches into one command buffer.
//
// Every pipeline shares one layout (shaders/common.glsl): eight storage-buffer bindings and
// 128 bytes of push constants. Pipelines are created on first use, through the device's
// pipeline cache, and kept for the context's life; changing an adapter or its scale never
// creates one (scales are push constants, adapters are buffers).
#pragma once

#include "../../config.hpp"
#include "../../core/result.hpp"
#include "context.hpp"
#include "memory.hpp"
#include "spirv/programs.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace vulkan {

inline constexpr std::uint32_t binding_count = 8;
inline constexpr std::uint32_t push_constant_bytes = 128;

class Pipelines {
 public:
  Pipelines(const Pipelines&) = delete;
  Pipelines& operator=(const Pipelines&) = delete;
  ~Pipelines() {
    const vk::DispatchLoaderDynamic& d = context_->dispatch;
    for (auto& entry : pipelines_) context_->device().destroyPipeline(entry.second, nullptr, d);
    if (pipeline_layout_) context_->device().destroyPipelineLayout(pipeline_layout_, nullptr, d);
    if (set_layout_) context_->device().destroyDescriptorSetLayout(set_layout_, nullptr, d);
  }

  static Result<std::shared_ptr<Pipelines>> create(std::shared_ptr<Context> context) {
    std::shared_ptr<Pipelines> pipelines(new (std::nothrow) Pipelines());
    if (pipelines == nullptr) return fail(ErrorCode::out_of_memory, "vulkan: out of memory");
    pipelines->context_ = std::move(context);
    const Context& c = *pipelines->context_;
    std::array<vk::DescriptorSetLayoutBinding, binding_count> bindings;
    for (std::uint32_t b = 0; b < binding_count; ++b) {
      bindings[b] = vk::DescriptorSetLayoutBinding(b, vk::DescriptorType::eStorageBuffer, 1, vk::ShaderStageFlagBits::eCompute);
    }
    vk::ResultValue<vk::DescriptorSetLayout> set_layout =
        c.device().createDescriptorSetLayout(vk::DescriptorSetLayoutCreateInfo({}, binding_count, bindings.data()), nullptr, c.dispatch);
    if (set_layout.result != vk::Result::eSuccess) return detail::device_error("vkCreateDescriptorSetLayout", set_layout.result);
    pipelines->set_layout_ = set_layout.value;
    vk::PushConstantRange push(vk::ShaderStageFlagBits::eCompute, 0, push_constant_bytes);
    vk::ResultValue<vk::PipelineLayout> layout =
        c.device().createPipelineLayout(vk::PipelineLayoutCreateInfo({}, 1, &pipelines->set_layout_, 1, &push), nullptr, c.dispatch);
    if (layout.result != vk::Result::eSuccess) return detail::device_error("vkCreatePipelineLayout", layout.result);
    pipelines->pipeline_layout_ = layout.value;
    return pipelines;
  }

  // The pipeline of variant `name` (spirv/programs.hpp), created on first use.
  Result<vk::Pipeline> get(const std::string& name) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = pipelines_.find(name);
    if (found != pipelines_.end()) return found->second;
    const lamina_spirv::Program* program = nullptr;
    for (const lamina_spirv::Program& candidate : lamina_spirv::programs) {
      if (name == candidate.name) program = &candidate;
    }
    if (program == nullptr) return fail(ErrorCode::unsupported, "vulkan: no compute kernel '" + name + "'");
    const Context& c = *context_;
    const auto started = std::chrono::steady_clock::now();
    vk::ResultValue<vk::ShaderModule> module =
        c.device().createShaderModule(vk::ShaderModuleCreateInfo({}, program->word_count * 4, program->words), nullptr, c.dispatch);
    if (module.result != vk::Result::eSuccess) return detail::device_error("vkCreateShaderModule", module.result);
    vk::ComputePipelineCreateInfo info({}, vk::PipelineShaderStageCreateInfo({}, vk::ShaderStageFlagBits::eCompute, module.value, "main"),
                                       pipeline_layout_);
    vk::ResultValue<vk::Pipeline> pipeline = c.device().createComputePipeline(c.pipeline_cache(), info, nullptr, c.dispatch);
    c.device().destroyShaderModule(module.value, nullptr, c.dispatch);
    if (pipeline.result != vk::Result::eSuccess) return detail::device_error(("creating the pipeline " + name).c_str(), pipeline.result);
    compile_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    pipelines_.emplace(name, pipeline.value);
    return pipeline.value;
  }

  vk::DescriptorSetLayout set_layout() const { return set_layout_; }
  vk::PipelineLayout layout() const { return pipeline_layout_; }
  const Context& context() const { return *context_; }
  // Time spent creating pipelines so far (the cold-start cost the pipeline cache saves).
  double compile_seconds() const { return compile_seconds_; }
  std::size_t pipeline_count() const { return pipelines_.size(); }

 private:
  Pipelines() = default;
  std::shared_ptr<Context> context_;
  vk::DescriptorSetLayout set_layout_;
  vk::PipelineLayout pipeline_layout_;
  std::map<std::string, vk::Pipeline> pipelines_;
  std::mutex mutex_;
  double compile_seconds_ = 0;
};

// A buffer bound to one of the eight bindings of a dispatch.
struct Binding {
  const Buffer* buffer = nullptr;  // null or empty: the recorder's placeholder buffer
  std::uint64_t offset = 0;
  std::uint64_t range = VK_WHOLE_SIZE;
};

// Records dispatches into one command buffer, with a barrier after each, then submits the
// whole recording once and waits on a fence (or lets the caller poll it). Descriptor sets come
// from pools that are reset for every recording, so a forward pass allocates no Vulkan objects
// once the pools have grown to its size.
class Recorder {
 public:
  Recorder() = default;
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;
  ~Recorder() {
    if (pipelines_ == nullptr) return;
    const Context& c = pipelines_->context();
    const vk::DispatchLoaderDynamic& d = c.dispatch;
    if (submitted_) static_cast<void>(c.device().waitForFences(fence_, VK_TRUE, UINT64_MAX, d));
    for (vk::DescriptorPool pool : pools_) c.device().destroyDescriptorPool(pool, nullptr, d);
    if (fence_) c.device().destroyFence(fence_, nullptr, d);
    if (command_pool_) c.device().destroyCommandPool(command_pool_, nullptr, d);  // frees command_
  }

  static Result<std::unique_ptr<Recorder>> create(std::shared_ptr<Pipelines> pipelines) {
    std::unique_ptr<Recorder> recorder(new (std::nothrow) Recorder());
    if (recorder == nullptr) return fail(ErrorCode::out_of_memory, "vulkan: out of memory");
    recorder->pipelines_ = std::move(pipelines);
    const Context& c = recorder->pipelines_->context();
    const vk::DispatchLoaderDynamic& d = c.dispatch;
    // A pool of its own: command buffers of one pool must not be recorded on two threads at
    // once, and each session records on its own thread.
    vk::ResultValue<vk::CommandPool> pool = c.device().createCommandPool(
        vk::CommandPoolCreateInfo(vk::CommandPoolCreateFlagBits::eResetCommandBuffer, c.queue_family()), nullptr, d);
    if (pool.result != vk::Result::eSuccess) return detail::device_error("vkCreateCommandPool", pool.result);
    recorder->command_pool_ = pool.value;
    vk::ResultValue<std::vector<vk::CommandBuffer>> commands =
        c.device().allocateCommandBuffers(vk::CommandBufferAllocateInfo(recorder->command_pool_, vk::CommandBufferLevel::ePrimary, 1), d);
    if (commands.result != vk::Result::eSuccess) return detail::device_error("vkAllocateCommandBuffers", commands.result);
    recorder->command_ = commands.value[0];
    vk::ResultValue<vk::Fence> fence = c.device().createFence(vk::FenceCreateInfo(), nullptr, d);
    if (fence.result != vk::Result::eSuccess) return detail::device_error("vkCreateFence", fence.result);
    recorder->fence_ = fence.value;
    Result<Buffer> placeholder = Buffer::create(c, 256, MemoryUse::device, "a placeholder binding");
    if (!placeholder) return placeholder.take_error();
    recorder->placeholder_ = std::move(*placeholder);
    return recorder;
  }

  // Starts a recording (waits for the previous submission first).
  Result<void> begin() {
    LAMINA_TRY(wait());
    const Context& c = pipelines_->context();
    const vk::DispatchLoaderDynamic& d = c.dispatch;
    for (vk::DescriptorPool pool : pools_) {
      c.device().resetDescriptorPool(pool, {}, d);
    }
    pool_index_ = 0;
    sets_left_ = pools_.empty() ? 0 : sets_per_pool;
    error_ = success();
    dispatch_count_ = 0;
    const vk::Result reset = command_.reset({}, d);
    if (reset != vk::Result::eSuccess) return detail::device_error("vkResetCommandBuffer", reset);
    const vk::Result begun = command_.begin(vk::CommandBufferBeginInfo(vk::CommandBufferUsageFlagBits::eOneTimeSubmit), d);
    if (begun != vk::Result::eSuccess) return detail::device_error("vkBeginCommandBuffer", begun);
    recording_ = true;
    return success();
  }

  // One dispatch of `pipeline` over `groups` workgroups; `push` is copied into the push constants.
  // An error (a pipeline that cannot be created, no descriptor memory) is kept and returned by submit().
  template <class PushConstants>
  void dispatch(const std::string& pipeline, std::initializer_list<std::pair<std::uint32_t, Binding>> bindings, const PushConstants& push,
                std::uint32_t groups_x, std::uint32_t groups_y = 1, std::uint32_t groups_z = 1) {
    static_assert(sizeof(PushConstants) <= push_constant_bytes, "push constants above 128 bytes");
    if (!error_ || !recording_) return;
    if (groups_x == 0 || groups_y == 0 || groups_z == 0) return;
    Result<vk::Pipeline> found = pipelines_->get(pipeline);
    if (!found) { error_ = found.take_error(); return; }
    Result<vk::DescriptorSet> set = allocate_set();
    if (!set) { error_ = set.take_error(); return; }
    const Context& c = pipelines_->context();
    const vk::DispatchLoaderDynamic& d = c.dispatch;
    std::array<vk::DescriptorBufferInfo, binding_count> infos;
    for (std::uint32_t b = 0; b < binding_count; ++b) infos[b] = vk::DescriptorBufferInfo(placeholder_.handle(), 0, VK_WHOLE_SIZE);
    for (const auto& entry : bindings) {
      const Binding& binding = entry.second;
      const Buffer* buffer = binding.buffer != nullptr && *binding.buffer ? binding.buffer : &placeholder_;
      infos[entry.first] = vk::DescriptorBufferInfo(buffer->handle(), binding.offset, binding.range);
    }
    std::array<vk::WriteDescriptorSet, binding_count> writes;
    for (std::uint32_t b = 0; b < binding_count; ++b) {
      writes[b] = vk::WriteDescriptorSet(*set, b, 0, 1, vk::DescriptorType::eStorageBuffer, nullptr, &infos[b]);
    }
    c.device().updateDescriptorSets(binding_count, writes.data(), 0, nullptr, d);
    command_.bindPipeline(vk::PipelineBindPoint::eCompute, *found, d);
    command_.bindDescriptorSets(vk::PipelineBindPoint::eCompute, pipelines_->layout(), 0, 1, &*set, 0, nullptr, d);
    command_.pushConstants(pipelines_->layout(), vk::ShaderStageFlagBits::eCompute, 0, sizeof(PushConstants), &push, d);
    command_.dispatch(groups_x, groups_y, groups_z, d);
    barrier();
    ++dispatch_count_;
  }

  // Copies bytes between buffers inside the recording (with a barrier after).
  void copy(const Buffer& from, std::uint64_t from_offset, const Buffer& to, std::uint64_t to_offset, std::uint64_t bytes) {
    if (!error_ || !recording_ || bytes == 0) return;
    command_.copyBuffer(from.handle(), to.handle(), vk::BufferCopy(from_offset, to_offset, bytes), pipelines_->context().dispatch);
    barrier();
  }

  // Ends the recording and submits it; the work runs while the caller goes on. wait() or
  // poll() tell when it is done.
  Result<void> submit() {
    if (!recording_) return fail(ErrorCode::invalid_state, "vulkan: submit without a recording");
    recording_ = false;
    const Context& c = pipelines_->context();
    const vk::DispatchLoaderDynamic& d = c.dispatch;
    const vk::Result ended = command_.end(d);
    if (!error_) return error_;
    if (ended != vk::Result::eSuccess) return detail::device_error("vkEndCommandBuffer", ended);
    vk::Result reset = c.device().resetFences(fence_, d);
    if (reset != vk::Result::eSuccess) return detail::device_error("vkResetFences", reset);
    std::lock_guard<std::mutex> lock(c.submit_mutex());
    const vk::Result submitted = c.queue().submit(vk::SubmitInfo(0, nullptr, nullptr, 1, &command_), fence_, d);
    if (submitted != vk::Result::eSuccess) return detail::device_error("vkQueueSubmit", submitted);
    submitted_ = true;
    return success();
  }

  // Whether the last submission has finished (true when nothing is in flight).
  Result<bool> poll() {
    if (!submitted_) return true;
    const Context& c = pipelines_->context();
    const vk::Result status = c.device().getFenceStatus(fence_, c.dispatch);
    if (status == vk::Result::eNotReady) return false;
    submitted_ = false;
    if (status != vk::Result::eSuccess) return detail::device_error("the forward pass on the device", status);
    return true;
  }

  Result<void> wait() {
    if (!submitted_) return success();
    const Context& c = pipelines_->context();
    submitted_ = false;
    const vk::Result waited = c.device().waitForFences(fence_, VK_TRUE, UINT64_MAX, c.dispatch);
    if (waited != vk::Result::eSuccess) return detail::device_error("the forward pass on the device", waited);
    return success();
  }

  bool in_flight() const { return submitted_; }
  std::size_t dispatch_count() const { return dispatch_count_; }
  Pipelines& pipelines() { return *pipelines_; }

 private:
  static constexpr std::uint32_t sets_per_pool = 1024;

  void barrier() {
    vk::MemoryBarrier memory(vk::AccessFlagBits::eShaderWrite | vk::AccessFlagBits::eTransferWrite,
                             vk::AccessFlagBits::eShaderRead | vk::AccessFlagBits::eShaderWrite | vk::AccessFlagBits::eTransferRead |
                                 vk::AccessFlagBits::eTransferWrite);
    command_.pipelineBarrier(vk::PipelineStageFlagBits::eComputeShader | vk::PipelineStageFlagBits::eTransfer,
                             vk::PipelineStageFlagBits::eComputeShader | vk::PipelineStageFlagBits::eTransfer, {}, 1, &memory, 0, nullptr,
                             0, nullptr, pipelines_->context().dispatch);
  }

  Result<vk::DescriptorSet> allocate_set() {
    const Context& c = pipelines_->context();
    const vk::DispatchLoaderDynamic& d = c.dispatch;
    if (sets_left_ == 0) {
      if (pool_index_ + 1 < pools_.size()) {
        ++pool_index_;
      } else {
        vk::DescriptorPoolSize size(vk::DescriptorType::eStorageBuffer, sets_per_pool * binding_count);
        vk::ResultValue<vk::DescriptorPool> pool = c.device().createDescriptorPool(vk::DescriptorPoolCreateInfo({}, sets_per_pool, 1, &size), nullptr, d);
        if (pool.result != vk::Result::eSuccess) return detail::device_error("vkCreateDescriptorPool", pool.result);
        pools_.push_back(pool.value);
        pool_index_ = pools_.size() - 1;
      }
      sets_left_ = sets_per_pool;
    }
    vk::DescriptorSetLayout layout = pipelines_->set_layout();
    vk::DescriptorSet set;
    const vk::DescriptorSetAllocateInfo info(pools_[pool_index_], 1, &layout);
    const vk::Result allocated = c.device().allocateDescriptorSets(&info, &set, d);
    if (allocated != vk::Result::eSuccess) return detail::device_error("vkAllocateDescriptorSets", allocated);
    --sets_left_;
    return set;
  }

  std::shared_ptr<Pipelines> pipelines_;
  vk::CommandPool command_pool_;
  vk::CommandBuffer command_;
  vk::Fence fence_;
  Buffer placeholder_;
  std::vector<vk::DescriptorPool> pools_;
  std::size_t pool_index_ = 0;
  std::uint32_t sets_left_ = 0;
  Result<void> error_ = success();
  bool recording_ = false;
  bool submitted_ = false;
  std::size_t dispatch_count_ = 0;
};

}  // namespace vulkan
LAMINA_NAMESPACE_END
