// The Vulkan backend the way another project uses it: lamina::vulkan (CMake) or
// dependency('lamina-vulkan') (meson), nothing else linked. Creating the backend either works or
// says why (no loader, no driver, no usable device); both exit 0 with one line.
#include <lamina/lamina.hpp>
#include <lamina/vulkan.hpp>

#include <cstdio>

int main() {
  lamina::Result<std::shared_ptr<lamina::vulkan::Backend>> backend = lamina::vulkan::Backend::create();
  if (backend) {
    std::printf("lamina %s: vulkan consumer ok on %s\n", LAMINA_VERSION_STRING, (*backend)->info().name.c_str());
  } else {
    std::printf("lamina %s: vulkan consumer ok, no device: %s\n", LAMINA_VERSION_STRING, backend.error().message.c_str());
  }
  return 0;
}
