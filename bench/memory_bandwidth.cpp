// lamina_bench_memory_bandwidth — the machine's sustainable memory read bandwidth, the ceiling
// of token generation (each generated token reads every weight once; see bench/README.md).
//
//   lamina_bench_memory_bandwidth [--threads N] [--size-mib M] [--repeat R] [--sweep]
//
// Method: one buffer of M MiB (default 1024, far larger than any cache), split into one
// contiguous slice per thread; each thread first writes its own slice (so on NUMA machines the
// pages sit near the thread that reads them), then every repetition has all threads read their
// slices at once, each with eight independent 64-bit accumulators (eight load streams in flight
// per thread). The time of a repetition runs from the start of all threads to the end of the
// last; the result is bytes / the best (shortest) repetition, in GB/s (10^9 bytes per second).
// --sweep measures every thread count from 1 to N. The last line is machine-readable:
//   read_bandwidth_gbps=41.23 threads=2 size_mib=1024 repeat=10
#include <lamina/core/executor.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

// Reads [begin, end) and returns a value that depends on every word, so nothing is optimized away.
std::uint64_t read_slice(const std::uint64_t* begin, const std::uint64_t* end) {
  std::uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
  const std::uint64_t* p = begin;
  for (; p + 8 <= end; p += 8) {
    a0 += p[0];
    a1 += p[1];
    a2 += p[2];
    a3 += p[3];
    a4 += p[4];
    a5 += p[5];
    a6 += p[6];
    a7 += p[7];
  }
  for (; p < end; ++p) a0 += *p;
  return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

bool parse_count(const char* text, long long minimum, long long maximum, long long& out) {
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || value < minimum || value > maximum) return false;
  out = value;
  return true;
}

// Best read bandwidth in GB/s with `threads` threads over `words` 64-bit words.
double measure(lamina::Executor& executor, std::size_t threads, const std::uint64_t* data, std::size_t words, int repeat,
               std::uint64_t& checksum) {
  double best = 1e30;
  std::vector<std::uint64_t> sums(threads);
  for (int r = 0; r < repeat; ++r) {
    auto task = [&](std::size_t thread) {
      const std::size_t begin = words * thread / threads;
      const std::size_t end = words * (thread + 1) / threads;
      sums[thread] = read_slice(data + begin, data + end);
    };
    const auto start = std::chrono::steady_clock::now();
    lamina::parallel_for(executor, threads, task);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds < best) best = seconds;
    for (std::uint64_t sum : sums) checksum += sum;
  }
  return static_cast<double>(words) * 8.0 / best / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  long long threads = static_cast<long long>(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  long long size_mib = 1024;
  long long repeat = 10;
  bool sweep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string argument = argv[i];
    const bool has_value = i + 1 < argc;
    if ((argument == "--threads" || argument == "-t") && has_value && parse_count(argv[i + 1], 1, 1024, threads)) {
      ++i;
    } else if (argument == "--size-mib" && has_value && parse_count(argv[i + 1], 16, 1 << 20, size_mib)) {
      ++i;
    } else if (argument == "--repeat" && has_value && parse_count(argv[i + 1], 1, 10000, repeat)) {
      ++i;
    } else if (argument == "--sweep") {
      sweep = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--threads N] [--size-mib M (>= 16)] [--repeat R] [--sweep]\n"
                   "bad or unknown argument '%s'\n",
                   argv[0], argument.c_str());
      return 1;
    }
  }
  const std::size_t words = static_cast<std::size_t>(size_mib) * 1024 * 1024 / 8;
  std::unique_ptr<std::uint64_t[]> buffer(new (std::nothrow) std::uint64_t[words]);
  if (!buffer) {
    std::fprintf(stderr, "cannot allocate %lld MiB\n", size_mib);
    return 1;
  }
  lamina::ThreadPool pool(static_cast<std::size_t>(threads));
  // First touch by the thread that will read each slice.
  const std::size_t thread_count = static_cast<std::size_t>(threads);
  auto fill = [&](std::size_t thread) {
    const std::size_t begin = words * thread / thread_count;
    const std::size_t end = words * (thread + 1) / thread_count;
    for (std::size_t i = begin; i < end; ++i) buffer[i] = i * 0x9E3779B97F4A7C15ull;
  };
  lamina::parallel_for(pool, thread_count, fill);

  std::uint64_t checksum = 0;
  double result = 0;
  std::printf("buffer %lld MiB, best of %lld reads\n", size_mib, repeat);
  for (std::size_t count = sweep ? 1 : thread_count; count <= thread_count; ++count) {
    lamina::ThreadPool workers(count);
    result = measure(workers, count, buffer.get(), words, static_cast<int>(repeat), checksum);
    std::printf("threads %3zu: %8.2f GB/s\n", count, result);
  }
  std::fprintf(stderr, "(checksum %llx)\n", static_cast<unsigned long long>(checksum));
  std::printf("read_bandwidth_gbps=%.2f threads=%lld size_mib=%lld repeat=%lld\n", result, threads, size_mib, repeat);
  return 0;
}
