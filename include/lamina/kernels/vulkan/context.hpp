// lamina/kernels/vulkan/context.hpp — the Vulkan loader, instance and device lamina computes on.
//
//   Result<std::shared_ptr<vulkan::Context>> context = vulkan::Context::create(params);
//
// Context::create opens the loader at run time, picks a physical device (the best by type,
// discrete > integrated > virtual > CPU, or the one VulkanParams names), records what it can do
// (DeviceInfo), and creates one compute queue. Every failure on the way is a lamina::Error that
// says what was missing, so a host can fall back to the CPU.
#pragma once

#include "../../config.hpp"
#include "../../core/file_io.hpp"
#include "../../core/result.hpp"
#include "vulkan_hpp.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace vulkan {

// Which kernels the device runs: `baseline` needs only what every Vulkan 1.1 compute device has
// (32-bit storage buffers, shared memory); `subgroup` reduces with subgroup arithmetic
// (subgroupAdd), which most GPUs have. `automatic` takes the fastest the device allows.
enum class KernelVariant : std::uint8_t { automatic, baseline, subgroup };

inline const char* kernel_variant_name(KernelVariant variant) {
  switch (variant) {
    case KernelVariant::automatic: return "automatic";
    case KernelVariant::baseline: return "baseline";
    case KernelVariant::subgroup: return "subgroup";
  }
  return "unknown";
}

struct VulkanParams {
  int device_index = -1;             // an index into list_devices(); -1: choose by type or name
  std::string device_name;           // with device_index -1: the first device whose name contains this (any case)
  bool validation = false;           // Khronos validation layer + a messenger counting its errors (tests)
  KernelVariant kernels = KernelVariant::automatic;
  // A file that keeps compiled pipelines between runs (the driver's pipeline cache), so the
  // shader compile of the first forward pass is paid once per machine. Empty: none.
  std::string pipeline_cache_path;
  std::string loader_path;           // empty: libvulkan.so.1
  // Partial offload: the first `offload_layers` layers run on the device, the rest on the CPU
  // in the same forward call (-1: all). `offload_max_bytes` (0: no limit) caps the weight bytes
  // uploaded; layers that do not fit run on the CPU. The output matrix goes to the device
  // only when every layer does.
  int offload_layers = -1;
  std::uint64_t offload_max_bytes = 0;
};

struct MemoryHeap {
  std::uint64_t size = 0;
  bool device_local = false;
  bool host_visible = false;  // some memory type of the heap is host-visible (mapped uploads, no staging copy)
};

// What a physical device is and can do, for choosing one and for selecting kernel variants.
struct DeviceInfo {
  std::uint32_t index = 0;
  std::string name;
  std::string type;            // "discrete", "integrated", "virtual", "cpu", "other"
  std::string driver_name;     // "llvmpipe", "NVIDIA", …
  std::string driver_info;
  std::uint32_t api_version = 0;
  std::uint32_t subgroup_size = 0;
  std::uint64_t max_storage_buffer_range = 0;
  std::uint32_t max_compute_workgroup_invocations = 0;
  std::vector<MemoryHeap> heaps;
  // Optional features found (each kernel variant says which it needs).
  bool storage_buffer_16bit = false;
  bool storage_buffer_8bit = false;
  bool shader_float16 = false;
  bool shader_int8 = false;
  bool integer_dot_product = false;   // VK_KHR_shader_integer_dot_product
  bool cooperative_matrix = false;    // VK_KHR_cooperative_matrix or VK_NV_cooperative_matrix
  bool subgroup_arithmetic = false;   // subgroupAdd & co. in compute shaders
  bool compute_queue = false;
  bool usable = false;                // Vulkan 1.1+ with a compute queue: lamina can run on it
  std::string unusable_reason;

  std::uint64_t device_local_bytes() const {
    std::uint64_t total = 0;
    for (const MemoryHeap& heap : heaps) total += heap.device_local ? heap.size : 0;
    return total;
  }
  // One line: "0: llvmpipe (LLVM 15.0.6, 256 bits) (cpu, llvmpipe, subgroup 8, 23.4 GiB)".
  std::string summary() const;
};

namespace detail {

inline std::string vk_error(const char* what, vk::Result result) {
  return std::string(what) + " failed: " + vk::to_string(result);
}

inline Error device_error(const char* what, vk::Result result) {
  const ErrorCode code = result == vk::Result::eErrorOutOfDeviceMemory || result == vk::Result::eErrorOutOfHostMemory
                             ? ErrorCode::out_of_memory
                             : ErrorCode::unsupported;
  return fail(code, "vulkan: " + vk_error(what, result));
}

inline int device_type_rank(vk::PhysicalDeviceType type) {
  switch (type) {
    case vk::PhysicalDeviceType::eDiscreteGpu: return 4;
    case vk::PhysicalDeviceType::eIntegratedGpu: return 3;
    case vk::PhysicalDeviceType::eVirtualGpu: return 2;
    case vk::PhysicalDeviceType::eCpu: return 1;
    default: return 0;
  }
}

inline const char* device_type_name(vk::PhysicalDeviceType type) {
  switch (type) {
    case vk::PhysicalDeviceType::eDiscreteGpu: return "discrete";
    case vk::PhysicalDeviceType::eIntegratedGpu: return "integrated";
    case vk::PhysicalDeviceType::eVirtualGpu: return "virtual";
    case vk::PhysicalDeviceType::eCpu: return "cpu";
    default: return "other";
  }
}

inline std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// The loader library, opened at run time, and the functions that need no instance.
class Loader {
 public:
  Loader() = default;
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  ~Loader() { if (library_ != nullptr) dlclose(library_); }

  static Result<std::unique_ptr<Loader>> open(const std::string& path) {
    std::unique_ptr<Loader> loader(new (std::nothrow) Loader());
    if (loader == nullptr) return fail(ErrorCode::out_of_memory, "vulkan: out of memory");
    const char* names[] = {"libvulkan.so.1", "libvulkan.so"};
    if (!path.empty()) loader->library_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    for (const char* name : names) {
      if (loader->library_ == nullptr && path.empty()) loader->library_ = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    }
    if (loader->library_ == nullptr) {
      const char* reason = dlerror();
      return fail(ErrorCode::missing, "vulkan: no Vulkan loader (" + (path.empty() ? std::string("libvulkan.so.1") : path) +
                                          " could not be opened" + (reason != nullptr ? std::string(": ") + reason : std::string()) +
                                          "); install a Vulkan driver and loader (Debian: libvulkan1 mesa-vulkan-drivers)");
    }
    void* symbol = dlsym(loader->library_, "vkGetInstanceProcAddr");
    if (symbol == nullptr) return fail(ErrorCode::missing, "vulkan: the loader has no vkGetInstanceProcAddr");
    PFN_vkGetInstanceProcAddr get_instance_proc_addr;
    static_assert(sizeof(symbol) == sizeof(get_instance_proc_addr), "function and object pointers differ in size");
    std::memcpy(&get_instance_proc_addr, &symbol, sizeof(symbol));
    loader->dispatch.init(get_instance_proc_addr);
    return loader;
  }

  vk::DispatchLoaderDynamic dispatch;

 private:
  void* library_ = nullptr;
};

// The validation layer's messages: errors are counted (tests fail on any) and kept.
struct ValidationLog {
  std::atomic<std::uint64_t> error_count{0};
  std::mutex mutex;
  std::vector<std::string> messages;  // the first few errors

  static VKAPI_ATTR VkBool32 VKAPI_CALL callback(VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT,
                                                 const VkDebugUtilsMessengerCallbackDataEXT* data, void* user) {
    if ((severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) == 0) return VK_FALSE;
    ValidationLog& log = *static_cast<ValidationLog*>(user);
    log.error_count.fetch_add(1);
    std::lock_guard<std::mutex> lock(log.mutex);
    if (log.messages.size() < 16) log.messages.push_back(data != nullptr && data->pMessage != nullptr ? data->pMessage : "?");
    return VK_FALSE;
  }
};

inline DeviceInfo describe_device(const vk::DispatchLoaderDynamic& d, vk::PhysicalDevice device, std::uint32_t index) {
  DeviceInfo info;
  info.index = index;
  const vk::PhysicalDeviceProperties properties = device.getProperties(d);
  info.name = properties.deviceName.data();
  info.type = device_type_name(properties.deviceType);
  info.api_version = properties.apiVersion;
  info.max_storage_buffer_range = properties.limits.maxStorageBufferRange;
  info.max_compute_workgroup_invocations = properties.limits.maxComputeWorkGroupInvocations;
  if (properties.apiVersion < VK_API_VERSION_1_1) {
    info.unusable_reason = "Vulkan " + std::to_string(VK_API_VERSION_MAJOR(properties.apiVersion)) + "." +
                           std::to_string(VK_API_VERSION_MINOR(properties.apiVersion)) + " (lamina needs 1.1)";
  }
  if (info.unusable_reason.empty()) {
    vk::PhysicalDeviceProperties2 properties2;
    vk::PhysicalDeviceSubgroupProperties subgroup;
    vk::PhysicalDeviceDriverProperties driver;
    properties2.pNext = &subgroup;
    if (properties.apiVersion >= VK_API_VERSION_1_2) subgroup.pNext = &driver;
    device.getProperties2(&properties2, d);
    info.subgroup_size = subgroup.subgroupSize;
    info.subgroup_arithmetic = (subgroup.supportedStages & vk::ShaderStageFlagBits::eCompute) &&
                               (subgroup.supportedOperations & vk::SubgroupFeatureFlagBits::eArithmetic);
    if (properties.apiVersion >= VK_API_VERSION_1_2) {
      info.driver_name = driver.driverName.data();
      info.driver_info = driver.driverInfo.data();
      vk::PhysicalDeviceFeatures2 features2;
      vk::PhysicalDeviceVulkan11Features features11;
      vk::PhysicalDeviceVulkan12Features features12;
      features2.pNext = &features11;
      features11.pNext = &features12;
      device.getFeatures2(&features2, d);
      info.storage_buffer_16bit = features11.storageBuffer16BitAccess;
      info.storage_buffer_8bit = features12.storageBuffer8BitAccess;
      info.shader_float16 = features12.shaderFloat16;
      info.shader_int8 = features12.shaderInt8;
    }
    vk::ResultValue<std::vector<vk::ExtensionProperties>> extensions = device.enumerateDeviceExtensionProperties(nullptr, d);
    if (extensions.result == vk::Result::eSuccess) {
      for (const vk::ExtensionProperties& extension : extensions.value) {
        const std::string name = extension.extensionName.data();
        if (name == "VK_KHR_shader_integer_dot_product") info.integer_dot_product = true;
        if (name == "VK_KHR_cooperative_matrix" || name == "VK_NV_cooperative_matrix") info.cooperative_matrix = true;
      }
    }
  }
  const vk::PhysicalDeviceMemoryProperties memory = device.getMemoryProperties(d);
  for (std::uint32_t h = 0; h < memory.memoryHeapCount; ++h) {
    MemoryHeap heap;
    heap.size = memory.memoryHeaps[h].size;
    heap.device_local = static_cast<bool>(memory.memoryHeaps[h].flags & vk::MemoryHeapFlagBits::eDeviceLocal);
    for (std::uint32_t t = 0; t < memory.memoryTypeCount; ++t) {
      if (memory.memoryTypes[t].heapIndex == h && (memory.memoryTypes[t].propertyFlags & vk::MemoryPropertyFlagBits::eHostVisible)) {
        heap.host_visible = true;
      }
    }
    info.heaps.push_back(heap);
  }
  const std::vector<vk::QueueFamilyProperties> families = device.getQueueFamilyProperties(d);
  for (const vk::QueueFamilyProperties& family : families) {
    if (family.queueFlags & vk::QueueFlagBits::eCompute) info.compute_queue = true;
  }
  if (info.unusable_reason.empty() && !info.compute_queue) info.unusable_reason = "no compute queue";
  info.usable = info.unusable_reason.empty();
  return info;
}

}  // namespace detail

inline std::string DeviceInfo::summary() const {
  std::string text = std::to_string(index) + ": " + name + " (" + type;
  if (!driver_name.empty()) text += ", " + driver_name;
  text += ", Vulkan " + std::to_string(VK_API_VERSION_MAJOR(api_version)) + "." + std::to_string(VK_API_VERSION_MINOR(api_version));
  if (subgroup_size != 0) text += ", subgroup " + std::to_string(subgroup_size);
  text += ", " + lamina::detail::describe_byte_count(device_local_bytes());
  std::string features;
  const std::pair<bool, const char*> flags[] = {{storage_buffer_16bit, "storage16"}, {storage_buffer_8bit, "storage8"},
                                                {shader_float16, "float16"},         {shader_int8, "int8"},
                                                {integer_dot_product, "int-dot"},    {cooperative_matrix, "coopmat"},
                                                {subgroup_arithmetic, "subgroup-arith"}};
  for (const auto& flag : flags) {
    if (flag.first) features += (features.empty() ? "" : " ") + std::string(flag.second);
  }
  if (!features.empty()) text += "; " + features;
  text += ")";
  if (!usable) text += " unusable: " + unusable_reason;
  return text;
}

// The instance, the chosen device, its compute queue and a command pool. Shared (shared_ptr) by
// every model and session on that device; destroyed when the last one lets go.
class Context {
 public:
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context() {
    if (device_) {
      static_cast<void>(device_.waitIdle(dispatch));
      if (pipeline_cache_) device_.destroyPipelineCache(pipeline_cache_, nullptr, dispatch);
      if (command_pool_) device_.destroyCommandPool(command_pool_, nullptr, dispatch);
      device_.destroy(nullptr, dispatch);
    }
    if (instance_) {
      if (messenger_) instance_.destroyDebugUtilsMessengerEXT(messenger_, nullptr, dispatch);
      instance_.destroy(nullptr, dispatch);
    }
  }

  // Opens the loader and the device `params` asks for.
  static Result<std::shared_ptr<Context>> create(const VulkanParams& params = VulkanParams());

  // Every physical device the loader reports (for `lamina devices` and for choosing one).
  static Result<std::vector<DeviceInfo>> list_devices(const VulkanParams& params = VulkanParams());

  const DeviceInfo& info() const { return info_; }
  KernelVariant kernel_variant() const { return variant_; }
  const VulkanParams& params() const { return params_; }
  vk::Device device() const { return device_; }
  vk::PhysicalDevice physical_device() const { return physical_device_; }
  vk::Queue queue() const { return queue_; }
  std::uint32_t queue_family() const { return queue_family_; }
  vk::CommandPool command_pool() const { return command_pool_; }
  vk::PipelineCache pipeline_cache() const { return pipeline_cache_; }
  const vk::PhysicalDeviceMemoryProperties& memory_properties() const { return memory_properties_; }
  // The largest range one storage-buffer binding may cover (tensors larger than it are split).
  std::uint64_t max_binding_bytes() const { return max_binding_bytes_; }

  // Validation-layer errors since creation (0 without VulkanParams::validation).
  std::uint64_t validation_error_count() const { return validation_ != nullptr ? validation_->error_count.load() : 0; }
  std::vector<std::string> validation_messages() const {
    if (validation_ == nullptr) return {};
    std::lock_guard<std::mutex> lock(validation_->mutex);
    return validation_->messages;
  }
  bool validation_enabled() const { return validation_ != nullptr; }

  // Writes the pipeline cache to VulkanParams::pipeline_cache_path (a no-op without one).
  Result<void> save_pipeline_cache() const;

  // A command pool is used from one thread at a time: sessions on several threads lock it.
  std::mutex& submit_mutex() const { return submit_mutex_; }

  // Bytes of device memory lamina holds on this device now (every Buffer: weights, sessions,
  // adapters, uploads in flight).
  std::uint64_t allocated_bytes() const { return allocated_bytes_.load(); }
  void count_allocation(std::int64_t bytes) const { allocated_bytes_.fetch_add(static_cast<std::uint64_t>(bytes)); }

  vk::DispatchLoaderDynamic dispatch;

 private:
  Context() = default;
  static Result<std::shared_ptr<Context>> create_instance(const VulkanParams& params);

  std::unique_ptr<detail::Loader> loader_;
  std::unique_ptr<detail::ValidationLog> validation_;
  VulkanParams params_;
  vk::Instance instance_;
  vk::DebugUtilsMessengerEXT messenger_;
  vk::PhysicalDevice physical_device_;
  vk::Device device_;
  vk::Queue queue_;
  std::uint32_t queue_family_ = 0;
  vk::CommandPool command_pool_;
  vk::PipelineCache pipeline_cache_;
  vk::PhysicalDeviceMemoryProperties memory_properties_;
  DeviceInfo info_;
  KernelVariant variant_ = KernelVariant::baseline;
  std::uint64_t max_binding_bytes_ = 0;
  std::vector<vk::PhysicalDevice> physical_devices_;
  mutable std::mutex submit_mutex_;
  mutable std::atomic<std::uint64_t> allocated_bytes_{0};
};

inline Result<std::shared_ptr<Context>> Context::create_instance(const VulkanParams& params) {
  std::shared_ptr<Context> context(new (std::nothrow) Context());
  if (context == nullptr) return fail(ErrorCode::out_of_memory, "vulkan: out of memory");
  Result<std::unique_ptr<detail::Loader>> loader = detail::Loader::open(params.loader_path);
  if (!loader) return loader.take_error();
  context->loader_ = std::move(*loader);
  context->dispatch = context->loader_->dispatch;
  context->params_ = params;
  vk::DispatchLoaderDynamic& d = context->dispatch;
  if (d.vkCreateInstance == nullptr) return fail(ErrorCode::missing, "vulkan: the loader has no vkCreateInstance");

  std::uint32_t instance_version = VK_API_VERSION_1_0;
  if (d.vkEnumerateInstanceVersion != nullptr) static_cast<void>(vk::enumerateInstanceVersion(&instance_version, d));
  if (instance_version < VK_API_VERSION_1_1) {
    return fail(ErrorCode::unsupported, "vulkan: the loader offers Vulkan " + std::to_string(VK_API_VERSION_MAJOR(instance_version)) +
                                            "." + std::to_string(VK_API_VERSION_MINOR(instance_version)) + "; lamina needs 1.1");
  }
  vk::ApplicationInfo application("lamina", 1, "lamina", VK_MAKE_API_VERSION(0, LAMINA_VERSION_MAJOR, LAMINA_VERSION_MINOR, LAMINA_VERSION_PATCH),
                                  std::min<std::uint32_t>(instance_version, VK_API_VERSION_1_3));
  std::vector<const char*> layers, extensions;
  if (params.validation) {
    bool have_layer = false, have_debug_utils = false;
    vk::ResultValue<std::vector<vk::LayerProperties>> available = vk::enumerateInstanceLayerProperties(d);
    if (available.result == vk::Result::eSuccess) {
      for (const vk::LayerProperties& layer : available.value) have_layer |= std::strcmp(layer.layerName.data(), "VK_LAYER_KHRONOS_validation") == 0;
    }
    vk::ResultValue<std::vector<vk::ExtensionProperties>> instance_extensions = vk::enumerateInstanceExtensionProperties(nullptr, d);
    if (instance_extensions.result == vk::Result::eSuccess) {
      for (const vk::ExtensionProperties& extension : instance_extensions.value) {
        have_debug_utils |= std::strcmp(extension.extensionName.data(), VK_EXT_DEBUG_UTILS_EXTENSION_NAME) == 0;
      }
    }
    if (!have_layer || !have_debug_utils) {
      return fail(ErrorCode::missing, std::string("vulkan: validation was asked for, but ") +
                                          (!have_layer ? "the layer VK_LAYER_KHRONOS_validation is not installed (Debian: vulkan-validationlayers)"
                                                       : "the loader lacks VK_EXT_debug_utils"));
    }
    layers.push_back("VK_LAYER_KHRONOS_validation");
    extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
  }
  vk::InstanceCreateInfo instance_info({}, &application, static_cast<std::uint32_t>(layers.size()), layers.data(),
                                       static_cast<std::uint32_t>(extensions.size()), extensions.data());
  vk::DebugUtilsMessengerCreateInfoEXT messenger_info;
  if (params.validation) {
    context->validation_.reset(new (std::nothrow) detail::ValidationLog());
    if (context->validation_ == nullptr) return fail(ErrorCode::out_of_memory, "vulkan: out of memory");
    messenger_info.messageSeverity = vk::DebugUtilsMessageSeverityFlagBitsEXT::eError | vk::DebugUtilsMessageSeverityFlagBitsEXT::eWarning;
    messenger_info.messageType = vk::DebugUtilsMessageTypeFlagBitsEXT::eValidation | vk::DebugUtilsMessageTypeFlagBitsEXT::eGeneral |
                                 vk::DebugUtilsMessageTypeFlagBitsEXT::ePerformance;
    messenger_info.pfnUserCallback = &detail::ValidationLog::callback;
    messenger_info.pUserData = context->validation_.get();
    instance_info.pNext = &messenger_info;  // also reports on instance creation itself
  }
  vk::ResultValue<vk::Instance> instance = vk::createInstance(instance_info, nullptr, d);
  if (instance.result == vk::Result::eErrorIncompatibleDriver) {
    return fail(ErrorCode::missing, "vulkan: the loader found no Vulkan driver (vkCreateInstance: ErrorIncompatibleDriver); "
                                    "install one (Debian: mesa-vulkan-drivers for a CPU fallback driver, or the GPU vendor's)");
  }
  if (instance.result != vk::Result::eSuccess) return detail::device_error("vkCreateInstance", instance.result);
  context->instance_ = instance.value;
  d.init(context->instance_);
  if (params.validation) {
    vk::ResultValue<vk::DebugUtilsMessengerEXT> messenger = context->instance_.createDebugUtilsMessengerEXT(messenger_info, nullptr, d);
    if (messenger.result != vk::Result::eSuccess) return detail::device_error("vkCreateDebugUtilsMessengerEXT", messenger.result);
    context->messenger_ = messenger.value;
  }
  vk::ResultValue<std::vector<vk::PhysicalDevice>> devices = context->instance_.enumeratePhysicalDevices(d);
  if (devices.result != vk::Result::eSuccess) return detail::device_error("vkEnumeratePhysicalDevices", devices.result);
  context->physical_devices_ = std::move(devices.value);
  return context;
}

inline Result<std::vector<DeviceInfo>> Context::list_devices(const VulkanParams& params) {
  Result<std::shared_ptr<Context>> context = create_instance(params);
  if (!context) return context.take_error();
  std::vector<DeviceInfo> devices;
  for (std::uint32_t i = 0; i < (*context)->physical_devices_.size(); ++i) {
    devices.push_back(detail::describe_device((*context)->dispatch, (*context)->physical_devices_[i], i));
  }
  return devices;
}

inline Result<std::shared_ptr<Context>> Context::create(const VulkanParams& params) {
  Result<std::shared_ptr<Context>> created = create_instance(params);
  if (!created) return created.take_error();
  std::shared_ptr<Context> context = std::move(*created);
  vk::DispatchLoaderDynamic& d = context->dispatch;
  if (context->physical_devices_.empty()) return fail(ErrorCode::missing, "vulkan: the loader found no Vulkan device (no driver installed?)");

  // Choose: an explicit index, else a name, else the best usable device by type.
  std::vector<DeviceInfo> infos;
  for (std::uint32_t i = 0; i < context->physical_devices_.size(); ++i) {
    infos.push_back(detail::describe_device(d, context->physical_devices_[i], i));
  }
  int chosen = -1;
  if (params.device_index >= 0) {
    if (static_cast<std::size_t>(params.device_index) >= infos.size()) {
      return fail(ErrorCode::invalid_argument, "vulkan: device " + std::to_string(params.device_index) + " does not exist (" +
                                                   std::to_string(infos.size()) + " found; `lamina devices` lists them)");
    }
    chosen = params.device_index;
  } else {
    int best_rank = -1;
    for (const DeviceInfo& info : infos) {
      if (!info.usable) continue;
      if (!params.device_name.empty() && detail::lower(info.name).find(detail::lower(params.device_name)) == std::string::npos) continue;
      const int rank = detail::device_type_rank(context->physical_devices_[info.index].getProperties(d).deviceType);
      if (rank > best_rank) { best_rank = rank; chosen = static_cast<int>(info.index); }
    }
    if (chosen < 0) {
      std::string found;
      for (const DeviceInfo& info : infos) found += (found.empty() ? "" : "; ") + info.summary();
      return fail(ErrorCode::missing, std::string("vulkan: no usable device") +
                                          (params.device_name.empty() ? "" : " named like '" + params.device_name + "'") + " (found: " + found + ")");
    }
  }
  const DeviceInfo& info = infos[static_cast<std::size_t>(chosen)];
  if (!info.usable) return fail(ErrorCode::unsupported, "vulkan: device " + info.summary());
  context->info_ = info;
  context->physical_device_ = context->physical_devices_[static_cast<std::size_t>(chosen)];
  context->memory_properties_ = context->physical_device_.getMemoryProperties(d);
  context->max_binding_bytes_ = std::min<std::uint64_t>(info.max_storage_buffer_range, std::uint64_t{1} << 31) & ~std::uint64_t{255};

  // Kernel variant: what was asked for, if the device has it.
  if (params.kernels == KernelVariant::subgroup && !info.subgroup_arithmetic) {
    return fail(ErrorCode::unsupported, "vulkan: the subgroup kernels need subgroup arithmetic in compute shaders, which " + info.name + " lacks");
  }
  const char* forced = std::getenv("LAMINA_VULKAN_KERNELS");
  KernelVariant wanted = params.kernels;
  if (wanted == KernelVariant::automatic && forced != nullptr) {
    if (std::strcmp(forced, "baseline") == 0) wanted = KernelVariant::baseline;
    else if (std::strcmp(forced, "subgroup") == 0 && info.subgroup_arithmetic) wanted = KernelVariant::subgroup;
  }
  if (wanted == KernelVariant::automatic) wanted = info.subgroup_arithmetic ? KernelVariant::subgroup : KernelVariant::baseline;
  context->variant_ = wanted;

  const std::vector<vk::QueueFamilyProperties> families = context->physical_device_.getQueueFamilyProperties(d);
  std::uint32_t family = 0;
  bool found_family = false;
  for (std::uint32_t f = 0; f < families.size() && !found_family; ++f) {  // prefer a compute-only queue family
    if ((families[f].queueFlags & vk::QueueFlagBits::eCompute) && !(families[f].queueFlags & vk::QueueFlagBits::eGraphics)) {
      family = f;
      found_family = true;
    }
  }
  for (std::uint32_t f = 0; f < families.size() && !found_family; ++f) {
    if (families[f].queueFlags & vk::QueueFlagBits::eCompute) { family = f; found_family = true; }
  }
  context->queue_family_ = family;
  const float priority = 1.0f;
  vk::DeviceQueueCreateInfo queue_info({}, family, 1, &priority);
  vk::DeviceCreateInfo device_info({}, 1, &queue_info);
  vk::ResultValue<vk::Device> device = context->physical_device_.createDevice(device_info, nullptr, d);
  if (device.result != vk::Result::eSuccess) return detail::device_error("vkCreateDevice", device.result);
  context->device_ = device.value;
  d.init(context->device_);
  context->queue_ = context->device_.getQueue(family, 0, d);
  vk::ResultValue<vk::CommandPool> pool = context->device_.createCommandPool(
      vk::CommandPoolCreateInfo(vk::CommandPoolCreateFlagBits::eResetCommandBuffer, family), nullptr, d);
  if (pool.result != vk::Result::eSuccess) return detail::device_error("vkCreateCommandPool", pool.result);
  context->command_pool_ = pool.value;

  // The pipeline cache, seeded from the file when one is named and readable. A file written by
  // another driver or device is rejected by the driver itself (its header names both).
  std::vector<char> cache_data;
  if (!params.pipeline_cache_path.empty()) {
    if (std::FILE* file = std::fopen(params.pipeline_cache_path.c_str(), "rb")) {
      char chunk[65536];
      std::size_t got = 0;
      while ((got = std::fread(chunk, 1, sizeof chunk, file)) > 0 && cache_data.size() < (std::size_t{256} << 20)) {
        cache_data.insert(cache_data.end(), chunk, chunk + got);
      }
      std::fclose(file);
    }
  }
  vk::PipelineCacheCreateInfo cache_info({}, cache_data.size(), cache_data.empty() ? nullptr : cache_data.data());
  vk::ResultValue<vk::PipelineCache> cache = context->device_.createPipelineCache(cache_info, nullptr, d);
  if (cache.result != vk::Result::eSuccess) {  // a corrupt file: start empty
    cache = context->device_.createPipelineCache(vk::PipelineCacheCreateInfo(), nullptr, d);
    if (cache.result != vk::Result::eSuccess) return detail::device_error("vkCreatePipelineCache", cache.result);
  }
  context->pipeline_cache_ = cache.value;
  return context;
}

inline Result<void> Context::save_pipeline_cache() const {
  if (params_.pipeline_cache_path.empty()) return success();
  vk::ResultValue<std::vector<std::uint8_t>> data = device_.getPipelineCacheData(pipeline_cache_, dispatch);
  if (data.result != vk::Result::eSuccess) return detail::device_error("vkGetPipelineCacheData", data.result);
  const std::string temporary = params_.pipeline_cache_path + ".partial";
  std::FILE* file = std::fopen(temporary.c_str(), "wb");
  if (file == nullptr) return fail(ErrorCode::io, params_.pipeline_cache_path + ": cannot write the pipeline cache");
  const bool written = std::fwrite(data.value.data(), 1, data.value.size(), file) == data.value.size();
  const bool closed = std::fclose(file) == 0;
  if (!written || !closed || std::rename(temporary.c_str(), params_.pipeline_cache_path.c_str()) != 0) {
    std::remove(temporary.c_str());
    return fail(ErrorCode::io, params_.pipeline_cache_path + ": cannot write the pipeline cache");
  }
  return success();
}

}  // namespace vulkan
LAMINA_NAMESPACE_END
