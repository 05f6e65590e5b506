// libFuzzer target for lamina/io/safetensors.hpp.
//
// Parses the input; when it parses, checks every tensor lies inside the input, reads every byte
// of every tensor, converts the F32/F16/BF16 ones to float, and writes the file again with the
// writer (when every tensor is of a dtype it writes): the result must parse to the same names,
// dtypes, shapes, bytes and metadata.
//
// Build and run (seeds: real files copied into a scratch corpus, never into the repo):
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude fuzz/safetensors_fuzz.cpp -o st_fuzz
//   mkdir -p /tmp/st-corpus && cp ../shared/adapters/*/adapter_model.safetensors /tmp/st-corpus/
//   ./st_fuzz /tmp/st-corpus -max_total_time=600 -rss_limit_mb=2048
#include <lamina/io/safetensors.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

void check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "safetensors_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace st = lamina::safetensors;
  lamina::Result<st::File> parsed = st::File::parse(data, size, "fuzz.safetensors");
  if (!parsed) {
    check(!parsed.error().message.empty(), "an error has a message");
    check(parsed.error().message.compare(0, 17, "fuzz.safetensors:") == 0, "an error names the file");
    return 0;
  }
  const st::File& file = *parsed;
  volatile std::uint64_t sink = 0;
  bool writable = true;
  for (const st::TensorInfo& tensor : file.tensors()) {
    check(file.find(tensor.name) == &tensor, "find() returns the tensor");
    check(tensor.size_bytes == 0 || (tensor.data >= data && tensor.data + tensor.size_bytes <= data + size),
          "tensor data inside the input");
    for (std::size_t i = 0; i < tensor.size_bytes; ++i) sink = sink + tensor.data[i];
    lamina::Result<std::vector<float>> values = st::to_f32(tensor);
    check(values.ok() == tensor.supported, "to_f32 converts exactly the supported tensors");
    if (values) {
      check(values->size() == tensor.element_count(), "to_f32 gives one float per element");
      for (float value : *values) sink = sink + static_cast<std::uint64_t>(std::isnan(value));
    }
    if (!tensor.supported || tensor.name.empty()) writable = false;  // the writer refuses empty names
  }
  for (const auto& entry : file.metadata()) sink = sink + entry.first.size() + entry.second.size();
  if (!writable) return 0;

  std::vector<st::WriteTensor> to_write;
  for (const st::TensorInfo& tensor : file.tensors()) {
    to_write.push_back(st::WriteTensor{tensor.name, tensor.dtype, tensor.shape, tensor.data});
  }
  lamina::Result<std::vector<std::uint8_t>> written = st::serialize(to_write, file.metadata());
  check(written.ok(), "the writer accepts every file of F32/F16/BF16 tensors the reader accepts");
  lamina::Result<st::File> reread = st::File::parse(written->data(), written->size(), "rewritten.safetensors");
  if (!reread) std::fprintf(stderr, "%s\n", reread.error().message.c_str());
  check(reread.ok(), "a rewritten file parses");
  check(reread->metadata() == file.metadata(), "metadata survives a round trip");
  check(reread->tensors().size() == file.tensors().size(), "tensor count survives a round trip");
  for (std::size_t i = 0; i < file.tensors().size(); ++i) {
    const st::TensorInfo& before = file.tensors()[i];
    const st::TensorInfo& after = reread->tensors()[i];
    check(before.name == after.name && before.dtype_name == after.dtype_name && before.dtype == after.dtype &&
              before.shape == after.shape && before.size_bytes == after.size_bytes,
          "tensor info survives a round trip (in header order)");
    check(before.size_bytes == 0 || std::memcmp(before.data, after.data, before.size_bytes) == 0,
          "tensor bytes survive a round trip");
  }
  return 0;
}
