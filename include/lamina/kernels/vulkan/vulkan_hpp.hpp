// lamina/kernels/vulkan/vulkan_hpp.hpp — Vulkan-Hpp, configured the way lamina uses it.
//
// The program links nothing for Vulkan: the loader (libvulkan.so.1) is opened at run time and
// every call goes through a vk::DispatchLoaderDynamic that lamina passes explicitly, so no
// global dispatcher has to be defined anywhere. Vulkan-Hpp reports failures as vk::Result
// values (VULKAN_HPP_NO_EXCEPTIONS) that lamina turns into lamina::Result errors; its assertion
// on failed results is switched off, since every result is checked.
#pragma once

#if defined(VULKAN_HPP)
// The program included Vulkan-Hpp first: it must be configured as lamina needs it.
#  if !defined(VK_NO_PROTOTYPES) || !defined(VULKAN_HPP_NO_EXCEPTIONS)
#    error "lamina/vulkan.hpp needs <vulkan/vulkan.hpp> with VK_NO_PROTOTYPES and VULKAN_HPP_NO_EXCEPTIONS defined; include lamina/vulkan.hpp before it, or define both (and VULKAN_HPP_ASSERT_ON_RESULT as empty) first"
#  endif
#else
#  ifndef VK_NO_PROTOTYPES
#    define VK_NO_PROTOTYPES
#  endif
#  ifndef VULKAN_HPP_NO_EXCEPTIONS
#    define VULKAN_HPP_NO_EXCEPTIONS
#  endif
#  ifndef VULKAN_HPP_ASSERT_ON_RESULT
#    define VULKAN_HPP_ASSERT_ON_RESULT(condition) static_cast<void>(0)
#  endif
#  ifndef VULKAN_HPP_NO_SMART_HANDLE
#    define VULKAN_HPP_NO_SMART_HANDLE
#  endif
#  include <vulkan/vulkan.hpp>
#endif

#if defined(_WIN32)
#  error "lamina's Vulkan backend opens the loader with dlopen; Windows is not supported yet"
#endif
#include <dlfcn.h>
