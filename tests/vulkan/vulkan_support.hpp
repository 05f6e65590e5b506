// What the Vulkan tests share: one backend on the device the loader finds (CI: lavapipe), with
// the Khronos validation layer on, so that every test can fail on a validation error.
#pragma once

#include <doctest/doctest.h>
#include <lamina/lamina.hpp>
#include <lamina/vulkan.hpp>

#include <memory>
#include <string>

namespace lamina_test {

struct VulkanFixture {
  std::shared_ptr<lamina::vulkan::Backend> backend;
  std::unique_ptr<lamina::vulkan::Recorder> recorder;  // for the kernel tests
};

// Made on first use and never destroyed: at exit, the driver (lavapipe's LLVM) may already have
// torn down its own statics, so Vulkan objects must not be released from a static destructor.
// The pointer keeps it reachable, which LeakSanitizer does not report.
inline VulkanFixture& vulkan_fixture() {
  static VulkanFixture* const instance = new VulkanFixture();
  VulkanFixture& fixture = *instance;
  if (fixture.backend == nullptr) {
    lamina::vulkan::VulkanParams params;
    params.validation = true;
    lamina::Result<std::shared_ptr<lamina::vulkan::Backend>> backend = lamina::vulkan::Backend::create(params);
    REQUIRE_MESSAGE(backend.ok(), "no Vulkan device for the Vulkan tests (Debian: mesa-vulkan-drivers vulkan-validationlayers): "
                                      << (backend.ok() ? "" : backend.error().message));
    fixture.backend = *backend;
    lamina::Result<std::unique_ptr<lamina::vulkan::Recorder>> recorder =
        lamina::vulkan::Recorder::create(fixture.backend->shared_pipelines());
    REQUIRE(recorder.ok());
    fixture.recorder = std::move(*recorder);
    MESSAGE("Vulkan tests on " << fixture.backend->info().summary());
  }
  return fixture;
}

inline void check_no_validation_errors(const VulkanFixture& fixture) {
  const lamina::vulkan::Context& context = fixture.backend->context();
  std::string messages;
  for (const std::string& message : context.validation_messages()) messages += "\n  " + message;
  CHECK_MESSAGE(context.validation_error_count() == 0, "validation errors:" << messages);
}

}  // namespace lamina_test
