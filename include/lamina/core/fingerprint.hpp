// lamina/core/fingerprint.hpp — 64-bit fingerprints of content, to tell whether two things are
// the same: the model a saved session state was made with (its hyperparameters and tensor
// table), the adapters of its stack (their factors). Not cryptographic: it finds mistakes (a
// state of another model, another adapter of the same name), not forgeries.
//
//   std::uint64_t id = lamina::Fingerprint().add(name).add_bytes(data, size).value();
#pragma once

#include "../config.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

LAMINA_NAMESPACE_BEGIN

class Fingerprint {
 public:
  // Eight bytes at a time, each word mixed in with a multiply (several GB/s), then the length.
  Fingerprint& add_bytes(const void* data, std::size_t size) {
    const unsigned char* bytes = static_cast<const unsigned char*>(data);
    std::size_t i = 0;
    for (; i + 8 <= size; i += 8) {
      std::uint64_t word;
      std::memcpy(&word, bytes + i, 8);
      mix(word);
    }
    std::uint64_t tail = 0;
    for (std::size_t k = 0; i + k < size; ++k) tail |= static_cast<std::uint64_t>(bytes[i + k]) << (8 * k);
    mix(tail);
    mix(static_cast<std::uint64_t>(size));
    return *this;
  }
  Fingerprint& add(std::uint64_t value) {
    mix(value);
    return *this;
  }
  Fingerprint& add(const std::string& text) { return add_bytes(text.data(), text.size()); }

  std::uint64_t value() const {  // a final avalanche, so that close inputs give far values
    std::uint64_t h = state_;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
  }

 private:
  void mix(std::uint64_t word) {
    state_ = (state_ ^ word) * 0x9e3779b97f4a7c15ull;
    state_ ^= state_ >> 29;
  }
  std::uint64_t state_ = 0x6c616d696e61ull;  // "lamina"
};

LAMINA_NAMESPACE_END
