// lamina/core/random.hpp — lamina's random numbers: xoshiro256** seeded through splitmix64.
//
// The sampler draws tokens with it and the adapter combiner draws DARE's masks; one generator
// for both means the same seed gives the same stream on every compiler, standard library and
// CPU (std::mt19937's distributions differ between libraries).
#pragma once

#include "../config.hpp"

#include <cstdint>

LAMINA_NAMESPACE_BEGIN
namespace detail {

// splitmix64: turns any 64-bit seed (0 included) into well-mixed generator state.
inline std::uint64_t splitmix64_next(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// xoshiro256** (Blackman and Vigna): small, fast, and the same sequence everywhere.
class Xoshiro256 {
 public:
  void seed(std::uint64_t seed) {
    std::uint64_t mixer = seed;
    for (std::uint64_t& word : state_) word = splitmix64_next(mixer);
  }
  std::uint64_t next() {
    const std::uint64_t result = rotate_left(state_[1] * 5, 7) * 9;
    const std::uint64_t shifted = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= shifted;
    state_[3] = rotate_left(state_[3], 45);
    return result;
  }
  // Uniform in [0, 1): the top 53 bits scaled by 2^-53, exact in a double.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // The four words of the state, to save it and to continue later exactly where it was.
  void get_state(std::uint64_t (&words)[4]) const { for (int i = 0; i < 4; ++i) words[i] = state_[i]; }
  void set_state(const std::uint64_t (&words)[4]) { for (int i = 0; i < 4; ++i) state_[i] = words[i]; }

 private:
  static std::uint64_t rotate_left(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t state_[4] = {0, 0, 0, 0};
};

}  // namespace detail

LAMINA_NAMESPACE_END
