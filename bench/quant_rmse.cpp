// lamina_bench_quant_rmse — how far quantized models are from their original, tensor by tensor.
//
//   lamina_bench_quant_rmse ORIGINAL.gguf A.gguf [B.gguf]
//
// For every tensor of ORIGINAL (F32/F16/BF16) that A (and B) hold with the same shape, both are
// dequantized with quant::dequantize_row and compared value by value. Prints one line per tensor
// (type, RMSE against the original; with B, whether A's and B's bytes are identical), then one
// line per tensor type: the RMSE over all values of that type's tensors. Use it to compare
// `lamina quantize` with `llama-quantize` (bench/README.md): both should give the same bytes.
// The last line is machine-readable: "summary: N tensors compared, M identical, K differ".
#include <lamina/io/gguf.hpp>
#include <lamina/quant/quant.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

struct Totals {
  double squared_error = 0;
  double squared_reference = 0;
  std::uint64_t count = 0;
  std::size_t tensors = 0;
};

bool dequantize(const lamina::gguf::TensorInfo& tensor, std::vector<float>& out) {
  std::uint64_t elements = 1;
  for (std::int64_t extent : tensor.shape) elements *= static_cast<std::uint64_t>(extent);
  out.resize(static_cast<std::size_t>(elements));
  const std::size_t row_length = static_cast<std::size_t>(tensor.shape.back());
  const std::size_t rows = static_cast<std::size_t>(elements / row_length);
  const std::size_t bytes_per_row = static_cast<std::size_t>(lamina::row_bytes(tensor.dtype, row_length));
  for (std::size_t row = 0; row < rows; ++row) {
    lamina::Result<void> done = lamina::quant::dequantize_row(tensor.dtype, tensor.data + row * bytes_per_row, out.data() + row * row_length, row_length);
    if (!done) {
      std::fprintf(stderr, "%s\n", done.error().message.c_str());
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: %s ORIGINAL.gguf A.gguf [B.gguf]\n", argv[0]);
    return 1;
  }
  std::vector<lamina::gguf::File> files;
  for (int i = 1; i < argc; ++i) {
    lamina::Result<lamina::gguf::File> file = lamina::gguf::File::open(argv[i]);
    if (!file) {
      std::fprintf(stderr, "%s\n", file.error().message.c_str());
      return 1;
    }
    files.push_back(std::move(*file));
  }
  const std::size_t compared_files = files.size() - 1;
  std::map<std::string, Totals> by_type[2];
  std::size_t tensor_count = 0, identical = 0, different = 0;
  std::vector<float> reference, values;
  std::printf("%-28s %-8s %12s", "tensor", "A type", "A rmse");
  if (compared_files == 2) std::printf(" %-8s %12s %s", "B type", "B rmse", "bytes");
  std::printf("\n");
  for (const lamina::gguf::TensorInfo& original : files[0].tensors()) {
    const lamina::gguf::TensorInfo* versions[2] = {nullptr, nullptr};
    bool usable = original.dtype == lamina::DType::f32 || original.dtype == lamina::DType::f16 || original.dtype == lamina::DType::bf16;
    for (std::size_t f = 0; f < compared_files; ++f) {
      versions[f] = files[f + 1].find_tensor(original.name);
      if (versions[f] == nullptr || versions[f]->shape != original.shape) usable = false;
    }
    if (!usable || !dequantize(original, reference)) continue;
    ++tensor_count;
    std::printf("%-28s", original.name.c_str());
    for (std::size_t f = 0; f < compared_files; ++f) {
      if (!dequantize(*versions[f], values)) return 1;
      double squared_error = 0, squared_reference = 0;
      for (std::size_t i = 0; i < values.size(); ++i) {
        const double difference = static_cast<double>(values[i]) - static_cast<double>(reference[i]);
        squared_error += difference * difference;
        squared_reference += static_cast<double>(reference[i]) * reference[i];
      }
      Totals& totals = by_type[f][lamina::dtype_name(versions[f]->dtype)];
      totals.squared_error += squared_error;
      totals.squared_reference += squared_reference;
      totals.count += values.size();
      ++totals.tensors;
      std::printf(" %-8s %12.4e", lamina::dtype_name(versions[f]->dtype), std::sqrt(squared_error / static_cast<double>(values.size())));
    }
    if (compared_files == 2) {
      const bool same = versions[0]->dtype == versions[1]->dtype && versions[0]->size_bytes == versions[1]->size_bytes &&
                        std::memcmp(versions[0]->data, versions[1]->data, static_cast<std::size_t>(versions[0]->size_bytes)) == 0;
      std::printf(" %s", same ? "identical" : "DIFFERENT");
      if (same) ++identical;
      else ++different;
    }
    std::printf("\n");
  }
  std::printf("\nper type (RMSE over all values of the type's tensors; relative = RMSE / RMS of the original):\n");
  for (std::size_t f = 0; f < compared_files; ++f) {
    for (const auto& entry : by_type[f]) {
      const Totals& totals = entry.second;
      std::printf("  %s %-8s %3zu tensors  rmse %.6e  relative %.5f\n", f == 0 ? "A" : "B", entry.first.c_str(), totals.tensors,
                  std::sqrt(totals.squared_error / static_cast<double>(totals.count)),
                  std::sqrt(totals.squared_error / (totals.squared_reference > 0 ? totals.squared_reference : 1.0)));
    }
  }
  std::printf("summary: %zu tensors compared, %zu identical, %zu differ\n", tensor_count, identical, different);
  return 0;
}
