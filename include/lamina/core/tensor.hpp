// lamina/core/tensor.hpp — TensorView: a typed, shaped window onto bytes lamina does not own.
//
// Shapes are written outermost first, as in NumPy and PyTorch: a weight matrix that maps
// `in` features to `out` features is [out, in], one row per output. (GGUF stores the same
// dimensions innermost first; io/gguf.hpp reverses them on load.) Strides are in bytes. The
// innermost dimension is always contiguous, which is what block-quantized rows require.
#pragma once

#include "../config.hpp"
#include "dtype.hpp"

#include <array>
#include <cstdint>
#include <initializer_list>

LAMINA_NAMESPACE_BEGIN

inline constexpr int max_tensor_rank = 4;

struct TensorView {
  DType dtype = DType::f32;
  int rank = 0;
  std::array<std::int64_t, max_tensor_rank> shape{};   // outermost first
  std::array<std::int64_t, max_tensor_rank> stride{};  // bytes between consecutive indices of each dim
  const void* data = nullptr;

  std::int64_t dim(int i) const { return shape[static_cast<std::size_t>(i)]; }
  std::int64_t element_count() const {
    std::int64_t count = 1;
    for (int i = 0; i < rank; ++i) count *= shape[static_cast<std::size_t>(i)];
    return count;
  }
  // Length of the innermost dimension (the row), and the number of rows in a contiguous view.
  std::int64_t row_length() const { return rank == 0 ? 1 : shape[static_cast<std::size_t>(rank - 1)]; }
  std::int64_t row_count() const { return rank == 0 ? 1 : element_count() / row_length(); }
  // Bytes of row `i` of a 2-D view (or of a contiguous view seen as rows).
  const std::uint8_t* row(std::int64_t i) const {
    const std::int64_t row_stride = rank >= 2 ? stride[static_cast<std::size_t>(rank - 2)]
                                              : static_cast<std::int64_t>(row_bytes(dtype, static_cast<std::uint64_t>(row_length())));
    return static_cast<const std::uint8_t*>(data) + i * row_stride;
  }
  bool empty() const { return data == nullptr; }
};

// A contiguous (row-major, densely packed) view of `data` with the given shape, outermost first.
inline TensorView contiguous_view(DType dtype, std::initializer_list<std::int64_t> shape, const void* data) {
  TensorView view;
  view.dtype = dtype;
  view.data = data;
  view.rank = static_cast<int>(shape.size());
  std::size_t i = 0;
  for (std::int64_t extent : shape) view.shape[i++] = extent;
  std::int64_t stride = static_cast<std::int64_t>(row_bytes(dtype, static_cast<std::uint64_t>(view.row_length())));
  if (view.rank > 0) view.stride[static_cast<std::size_t>(view.rank - 1)] = static_cast<std::int64_t>(dtype_traits(dtype).block_bytes);
  for (int d = view.rank - 2; d >= 0; --d) {
    view.stride[static_cast<std::size_t>(d)] = stride;
    stride *= view.shape[static_cast<std::size_t>(d)];
  }
  return view;
}

LAMINA_NAMESPACE_END
