// lamina/kernels/vulkan/memory.hpp — device buffers: weights, activations, KV cache, uploads.
//
// Each Buffer owns one VkBuffer and its own VkDeviceMemory (lamina allocates a few hundred
// buffers per model, well under every driver's allocation limit). Memory is device-local when
// the device has it; where that memory is also host-visible (integrated GPUs, lavapipe) it is
// mapped and written in place, and elsewhere uploads go through a host-visible staging buffer.
#pragma once

#include "../../config.hpp"
#include "../../core/result.hpp"
#include "context.hpp"

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

LAMINA_NAMESPACE_BEGIN
namespace vulkan {

// Where a buffer lives: on the device (weights, activations), or host-visible for the small
// per-call inputs (token ids, cells) and outputs (logits) the host reads.
enum class MemoryUse : std::uint8_t { device, host };

class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      release();
      context_ = other.context_;
      buffer_ = other.buffer_;
      memory_ = other.memory_;
      size_ = other.size_;
      mapped_ = other.mapped_;
      allocated_ = other.allocated_;
      other.context_ = nullptr;
      other.buffer_ = vk::Buffer();
      other.memory_ = vk::DeviceMemory();
      other.size_ = 0;
      other.mapped_ = nullptr;
    }
    return *this;
  }
  ~Buffer() { release(); }

  // A storage buffer of `bytes` (rounded up to 4; at least 4). `what` names it in errors.
  static Result<Buffer> create(const Context& context, std::uint64_t bytes, MemoryUse use, const char* what) {
    Buffer buffer;
    buffer.context_ = &context;
    buffer.size_ = bytes < 4 ? 4 : (bytes + 3) & ~std::uint64_t{3};
    const vk::DispatchLoaderDynamic& d = context.dispatch;
    vk::BufferCreateInfo info({}, buffer.size_,
                              vk::BufferUsageFlagBits::eStorageBuffer | vk::BufferUsageFlagBits::eTransferSrc |
                                  vk::BufferUsageFlagBits::eTransferDst,
                              vk::SharingMode::eExclusive);
    vk::ResultValue<vk::Buffer> created = context.device().createBuffer(info, nullptr, d);
    if (created.result != vk::Result::eSuccess) return buffer_error(what, bytes, created.result);
    buffer.buffer_ = created.value;
    const vk::MemoryRequirements requirements = context.device().getBufferMemoryRequirements(buffer.buffer_, d);
    // Preferences in order; the first memory type that matches one wins.
    using Flags = vk::MemoryPropertyFlags;
    using Bit = vk::MemoryPropertyFlagBits;
    const Flags device_then_mapped[] = {Bit::eDeviceLocal | Bit::eHostVisible | Bit::eHostCoherent, Flags(Bit::eDeviceLocal),
                                        Bit::eHostVisible | Bit::eHostCoherent};
    const Flags host_only[] = {Bit::eHostVisible | Bit::eHostCoherent | Bit::eHostCached, Bit::eHostVisible | Bit::eHostCoherent};
    const Flags* wanted = use == MemoryUse::device ? device_then_mapped : host_only;
    const std::size_t wanted_count = use == MemoryUse::device ? 3 : 2;
    const vk::PhysicalDeviceMemoryProperties& memory = context.memory_properties();
    std::uint32_t type_index = ~0u;
    for (std::size_t w = 0; w < wanted_count && type_index == ~0u; ++w) {
      for (std::uint32_t t = 0; t < memory.memoryTypeCount; ++t) {
        if ((requirements.memoryTypeBits & (1u << t)) && (memory.memoryTypes[t].propertyFlags & wanted[w]) == wanted[w]) {
          type_index = t;
          break;
        }
      }
    }
    if (type_index == ~0u) return fail(ErrorCode::unsupported, std::string("vulkan: no memory type for ") + what);
    vk::ResultValue<vk::DeviceMemory> allocated = context.device().allocateMemory(vk::MemoryAllocateInfo(requirements.size, type_index), nullptr, d);
    if (allocated.result != vk::Result::eSuccess) return buffer_error(what, bytes, allocated.result);
    buffer.memory_ = allocated.value;
    buffer.allocated_ = requirements.size;
    context.count_allocation(static_cast<std::int64_t>(buffer.allocated_));
    const vk::Result bound = context.device().bindBufferMemory(buffer.buffer_, buffer.memory_, 0, d);
    if (bound != vk::Result::eSuccess) return buffer_error(what, bytes, bound);
    if (memory.memoryTypes[type_index].propertyFlags & Bit::eHostVisible) {
      void* mapped = nullptr;
      const vk::Result mapped_result = context.device().mapMemory(buffer.memory_, 0, VK_WHOLE_SIZE, {}, &mapped, d);
      if (mapped_result != vk::Result::eSuccess) return buffer_error(what, bytes, mapped_result);
      buffer.mapped_ = mapped;
    }
    return buffer;
  }

  vk::Buffer handle() const { return buffer_; }
  std::uint64_t size() const { return size_; }
  // The host address of the buffer's memory when it is host-visible (and coherent), else null.
  void* mapped() const { return mapped_; }
  explicit operator bool() const { return static_cast<bool>(buffer_); }

 private:
  static Error buffer_error(const char* what, std::uint64_t bytes, vk::Result result) {
    return detail::device_error((std::string("allocating ") + std::to_string(bytes) + " bytes for " + what).c_str(), result);
  }
  void release() {
    if (context_ == nullptr) return;
    const vk::DispatchLoaderDynamic& d = context_->dispatch;
    if (mapped_ != nullptr) context_->device().unmapMemory(memory_, d);
    if (buffer_) context_->device().destroyBuffer(buffer_, nullptr, d);
    if (memory_) {
      context_->device().freeMemory(memory_, nullptr, d);
      context_->count_allocation(-static_cast<std::int64_t>(allocated_));
    }
    context_ = nullptr;
    buffer_ = vk::Buffer();
    memory_ = vk::DeviceMemory();
    mapped_ = nullptr;
    allocated_ = 0;
  }

  const Context* context_ = nullptr;
  vk::Buffer buffer_;
  vk::DeviceMemory memory_;
  std::uint64_t size_ = 0;
  std::uint64_t allocated_ = 0;  // bytes of device memory (the driver may round size_ up)
  void* mapped_ = nullptr;
};

// A one-off command buffer for copies outside a forward pass (weight uploads), submitted and
// waited for before it returns.
template <class Record>
Result<void> run_commands(const Context& context, Record&& record) {
  const vk::DispatchLoaderDynamic& d = context.dispatch;
  std::lock_guard<std::mutex> lock(context.submit_mutex());
  vk::ResultValue<std::vector<vk::CommandBuffer>> commands =
      context.device().allocateCommandBuffers(vk::CommandBufferAllocateInfo(context.command_pool(), vk::CommandBufferLevel::ePrimary, 1), d);
  if (commands.result != vk::Result::eSuccess) return detail::device_error("vkAllocateCommandBuffers", commands.result);
  vk::CommandBuffer command = commands.value[0];
  vk::ResultValue<vk::Fence> fence = context.device().createFence(vk::FenceCreateInfo(), nullptr, d);
  vk::Result result = fence.result;
  if (result == vk::Result::eSuccess) result = command.begin(vk::CommandBufferBeginInfo(vk::CommandBufferUsageFlagBits::eOneTimeSubmit), d);
  if (result == vk::Result::eSuccess) {
    record(command);
    result = command.end(d);
  }
  if (result == vk::Result::eSuccess) result = context.queue().submit(vk::SubmitInfo(0, nullptr, nullptr, 1, &command), fence.value, d);
  if (result == vk::Result::eSuccess) result = context.device().waitForFences(fence.value, VK_TRUE, UINT64_MAX, d);
  if (fence.result == vk::Result::eSuccess) context.device().destroyFence(fence.value, nullptr, d);
  context.device().freeCommandBuffers(context.command_pool(), command, d);
  if (result != vk::Result::eSuccess) return detail::device_error("a copy on the device", result);
  return success();
}

// Writes `bytes` from `source` at `offset` of `target`: directly when the buffer is mapped,
// else through `staging` (a host buffer, at least as large; created when empty).
inline Result<void> upload(const Context& context, Buffer& target, std::uint64_t offset, const void* source, std::uint64_t bytes,
                           Buffer* staging = nullptr) {
  if (bytes == 0) return success();
  if (target.mapped() != nullptr) {
    std::memcpy(static_cast<std::uint8_t*>(target.mapped()) + offset, source, bytes);
    return success();
  }
  Buffer own;
  if (staging == nullptr || staging->size() < bytes) {
    Result<Buffer> created = Buffer::create(context, bytes, MemoryUse::host, "an upload");
    if (!created) return created.take_error();
    own = std::move(*created);
    staging = &own;
  }
  std::memcpy(staging->mapped(), source, bytes);
  const std::uint64_t copy_bytes = (bytes + 3) & ~std::uint64_t{3};
  const vk::Buffer from = staging->handle(), to = target.handle();
  return run_commands(context, [&](vk::CommandBuffer command) {
    command.copyBuffer(from, to, vk::BufferCopy(0, offset, std::min(copy_bytes, target.size() - offset)), context.dispatch);
  });
}

}  // namespace vulkan
LAMINA_NAMESPACE_END
