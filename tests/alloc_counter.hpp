// Counting heap allocations in tests: "the decode loop allocates nothing" is checked, not hoped.
//
// tests/main.cpp replaces the global operator new/delete for the whole lamina_tests program and
// counts every allocation made through them (on any thread). Typical use:
//
//   lamina_test::AllocationScope scope;
//   sampler.sample(logits);
//   CHECK(scope.count() == 0);
//
// (Not in AddressSanitizer builds: see allocation_counting().)
#pragma once

#include <cstddef>

namespace lamina_test {

// False in AddressSanitizer builds: there the sanitizer's own operator new/delete stay in place
// (they check new/delete pairing, which a replacement would hide), and counts are always 0.
bool allocation_counting();

// Allocations through operator new since the program started (defined in tests/main.cpp).
std::size_t allocation_count();
// Bytes allocated through operator new and not yet deleted (0 where not counted).
std::size_t live_bytes();

class AllocationScope {
 public:
  AllocationScope() : start_(allocation_count()) {}
  // Allocations since this scope began.
  std::size_t count() const { return allocation_count() - start_; }

 private:
  std::size_t start_;
};

}  // namespace lamina_test
