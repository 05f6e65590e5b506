// libFuzzer target for lamina/io/gguf.hpp.
//
// Parses the input; when it parses, touches every metadata value, runs every typed getter on
// every key, reads every byte of every tensor through its view, and writes the file again with
// the Writer: the result must parse to the same metadata and tensor bytes.
//
// Build and run (seeds: real GGUF files copied into a scratch corpus, never into the repo):
//   clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude fuzz/gguf_fuzz.cpp -o gguf_fuzz
//   mkdir -p /tmp/gguf-corpus && cp ../shared/models/stories260K.gguf /tmp/gguf-corpus/
//   ./gguf_fuzz /tmp/gguf-corpus -max_len=65536 -rss_limit_mb=2048 -max_total_time=600
#include <lamina/io/gguf.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

// Sums everything a value holds, so no read can be optimized away.
std::uint64_t touch(const lamina::gguf::Value& value) {
  std::uint64_t sum = static_cast<std::uint64_t>(value.type) + value.unsigned_value +
                      static_cast<std::uint64_t>(value.signed_value) + static_cast<std::uint64_t>(value.element_type);
  std::uint64_t bits;
  std::memcpy(&bits, &value.float_value, sizeof bits);
  sum += bits;
  for (char c : value.string_value) sum += static_cast<unsigned char>(c);
  for (const lamina::gguf::Value& element : value.elements) sum += touch(element);
  return sum;
}

void check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "gguf_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  lamina::Result<lamina::gguf::File> parsed = lamina::gguf::File::parse(data, size, "fuzz.gguf");
  if (!parsed) {
    check(!parsed.error().message.empty(), "an error has a message");
    return 0;
  }
  const lamina::gguf::File& file = *parsed;
  volatile std::uint64_t sink = 0;

  for (const auto& entry : file.metadata()) {
    const std::string& key = entry.first;
    sink = sink + touch(entry.second) + key.size();
    check(file.find(key) == &entry.second, "find() returns the entry");
    // Every getter either succeeds or fails cleanly, whatever the value's type.
    (void)file.get_u32(key);
    (void)file.get_i32(key);
    (void)file.get_u64(key);
    (void)file.get_f32(key);
    (void)file.get_bool(key);
    (void)file.get_string(key);
    (void)file.get_string_array(key);
    (void)file.get_f32_array(key);
    (void)file.get_i32_array(key);
    (void)file.get_u32_or(key, 1);
    (void)file.get_f32_or(key, 1.0f);
    (void)file.get_bool_or(key, true);
    (void)file.get_string_or(key, "x");
  }

  for (const lamina::gguf::TensorInfo& tensor : file.tensors()) {
    check(file.find_tensor(tensor.name) == &tensor, "find_tensor() returns the tensor");
    check(tensor.data >= data && tensor.data + tensor.size_bytes <= data + size, "tensor data inside the input");
    const lamina::TensorView view = tensor.view();
    check(view.rank == static_cast<int>(tensor.shape.size()), "view rank");
    check(static_cast<std::uint64_t>(view.row_count()) *
                  lamina::row_bytes(view.dtype, static_cast<std::uint64_t>(view.row_length())) ==
              tensor.size_bytes,
          "rows x row bytes == size_bytes");
    const std::uint8_t* bytes = static_cast<const std::uint8_t*>(view.data);
    for (std::uint64_t i = 0; i < tensor.size_bytes; ++i) sink = sink + bytes[i];
  }

  // Write what was read and read it again: the same metadata and tensor bytes must come back.
  lamina::gguf::Writer writer(file.version());
  for (const auto& entry : file.metadata()) writer.set(entry.first, entry.second);
  for (const lamina::gguf::TensorInfo& tensor : file.tensors()) {
    lamina::Result<void> added =
        writer.add_tensor(tensor.name, tensor.dtype, tensor.shape, tensor.data, static_cast<std::size_t>(tensor.size_bytes));
    // The reader accepts names of any length; the writer keeps to llama.cpp's 63 bytes.
    if (!added) {
      check(tensor.name.size() > 63, "add_tensor accepts every tensor the reader accepts");
      return 0;
    }
  }
  const std::vector<std::uint8_t> written = writer.to_bytes();
  lamina::Result<lamina::gguf::File> reread = lamina::gguf::File::parse(written.data(), written.size(), "rewritten.gguf");
  check(reread.ok(), "a rewritten file parses");
  check(reread->metadata() == file.metadata(), "metadata survives a round trip");
  check(reread->tensors().size() == file.tensors().size(), "tensor count survives a round trip");
  for (std::size_t i = 0; i < file.tensors().size(); ++i) {
    const lamina::gguf::TensorInfo& before = file.tensors()[i];
    const lamina::gguf::TensorInfo& after = reread->tensors()[i];
    check(before.name == after.name && before.dtype == after.dtype && before.shape == after.shape &&
              before.size_bytes == after.size_bytes,
          "tensor info survives a round trip");
    check(std::memcmp(before.data, after.data, static_cast<std::size_t>(before.size_bytes)) == 0,
          "tensor bytes survive a round trip");
  }
  return 0;
}
