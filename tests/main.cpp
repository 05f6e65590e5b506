// The one main() of lamina_tests, and the allocation counter of tests/alloc_counter.hpp.
//
// Without exceptions (-fno-exceptions), doctest's REQUIRE would silently do nothing unless
// DOCTEST_CONFIG_NO_EXCEPTIONS_BUT_WITH_ALL_ASSERTS is set (then a failed REQUIRE ends the
// program). The build defines it for every test file in that case; this is the fallback for
// builds that compile main.cpp alone.
#if !defined(__cpp_exceptions) && !defined(__EXCEPTIONS) && !defined(_CPPUNWIND)
#  ifndef DOCTEST_CONFIG_NO_EXCEPTIONS_BUT_WITH_ALL_ASSERTS
#    define DOCTEST_CONFIG_NO_EXCEPTIONS_BUT_WITH_ALL_ASSERTS
#  endif
#endif
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "alloc_counter.hpp"

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

// AddressSanitizer and ThreadSanitizer supply every form of operator new/delete themselves (the
// nothrow ones too), and pair them; replacing only some forms would make them report mismatches
// (or fail to link), and replacing all would hide real ones. So under either nothing is replaced
// and nothing is counted.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#  define LAMINA_TEST_ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#    define LAMINA_TEST_ASAN 1
#  endif
#endif

namespace {
std::atomic<std::size_t> allocations{0};
std::atomic<std::size_t> live_bytes{0};
}  // namespace

std::size_t lamina_test::allocation_count() { return allocations.load(std::memory_order_relaxed); }
std::size_t lamina_test::live_bytes() { return ::live_bytes.load(std::memory_order_relaxed); }

#if defined(LAMINA_TEST_ASAN)

bool lamina_test::allocation_counting() { return false; }

#else

bool lamina_test::allocation_counting() { return true; }

namespace {
// Each block starts with a header holding its size, so that a delete knows what it frees; the
// header is 16 bytes, which keeps the block as aligned as malloc's.
constexpr std::size_t header_bytes = 16;

void* counted_allocation(std::size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  void* memory = size <= static_cast<std::size_t>(-1) - header_bytes ? std::malloc(size + header_bytes) : nullptr;
  if (memory != nullptr) {
    std::memcpy(memory, &size, sizeof size);
    live_bytes.fetch_add(size, std::memory_order_relaxed);
    return static_cast<unsigned char*>(memory) + header_bytes;
  }
#  if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
  throw std::bad_alloc();
#  else
  std::abort();
#  endif
}

void counted_free(void* memory) noexcept {
  if (memory == nullptr) return;
  unsigned char* block = static_cast<unsigned char*>(memory) - header_bytes;
  std::size_t size;
  std::memcpy(&size, block, sizeof size);
  live_bytes.fetch_sub(size, std::memory_order_relaxed);
  std::free(block);
}
}  // namespace

// Replacements of the global allocation functions ([replacement.functions]). The standard
// library's nothrow forms call these; over-aligned allocations keep the standard library's own
// (uncounted) pair, which is consistent on its own.
void* operator new(std::size_t size) { return counted_allocation(size); }
void* operator new[](std::size_t size) { return counted_allocation(size); }
void operator delete(void* memory) noexcept { counted_free(memory); }
void operator delete[](void* memory) noexcept { counted_free(memory); }
void operator delete(void* memory, std::size_t) noexcept { counted_free(memory); }
void operator delete[](void* memory, std::size_t) noexcept { counted_free(memory); }

#endif
