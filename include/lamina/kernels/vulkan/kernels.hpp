// lamina/kernels/vulkan/kernels.hpp — the compute kernels as typed calls: each records one
// kind of dispatch (shaders/*.comp) with its push constants and bindings.
//
// Shapes are given next to each call; every activation is a buffer of floats, one row per token.
// The forward pass (lamina/vulkan.hpp) and the kernel tests call these, never a shader by name.
#pragma once

#include "../../config.hpp"
#include "../../core/dtype.hpp"
#include "../../core/result.hpp"
#include "../../core/tensor.hpp"
#include "context.hpp"
#include "memory.hpp"
#include "pipelines.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace vulkan {

namespace detail {

// The name kernels use for a weight type ("q4_k"), or null when the device has no kernel for it.
inline const char* kernel_type_name(DType type) {
  switch (type) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::q4_0: return "q4_0";
    case DType::q4_1: return "q4_1";
    case DType::q5_0: return "q5_0";
    case DType::q5_1: return "q5_1";
    case DType::q8_0: return "q8_0";
    case DType::q2_k: return "q2_k";
    case DType::q3_k: return "q3_k";
    case DType::q4_k: return "q4_k";
    case DType::q5_k: return "q5_k";
    case DType::q6_k: return "q6_k";
    case DType::iq4_nl: return "iq4_nl";
    case DType::iq4_xs: return "iq4_xs";
    default: return nullptr;
  }
}

// Splits a large dispatch over the second grid dimension (each dimension holds at least 65535).
struct Grid {
  std::uint32_t x = 1, y = 1;
};
inline Grid grid_for(std::uint64_t groups) {
  const std::uint64_t limit = 65535;
  Grid grid;
  grid.x = static_cast<std::uint32_t>(groups < limit ? groups : limit);
  grid.y = static_cast<std::uint32_t>((groups + grid.x - 1) / (grid.x == 0 ? 1 : grid.x));
  return grid;
}

}  // namespace detail

// A weight matrix (or table) on the device: the GGUF rows, as they are in the file, in one
// buffer, or in several when the matrix is larger than one storage-buffer binding may cover.
struct DeviceMatrix {
  DType type = DType::f32;
  std::uint32_t rows = 0, columns = 0;
  std::uint32_t row_bytes = 0;
  std::vector<Buffer> parts;
  std::vector<std::uint32_t> part_first_row;  // [parts] the first row of each part
  std::vector<std::uint32_t> part_rows;       // [parts]

  std::uint64_t bytes() const {
    std::uint64_t total = 0;
    for (const Buffer& part : parts) total += part.size();
    return total;
  }

  static Result<DeviceMatrix> upload(const Context& context, const TensorView& view, const std::string& name, Buffer* staging) {
    DeviceMatrix matrix;
    matrix.type = view.dtype;
    matrix.rows = static_cast<std::uint32_t>(view.row_count());
    matrix.columns = static_cast<std::uint32_t>(view.row_length());
    matrix.row_bytes = static_cast<std::uint32_t>(lamina::row_bytes(view.dtype, static_cast<std::uint64_t>(view.row_length())));
    if (detail::kernel_type_name(view.dtype) == nullptr) {
      return fail(ErrorCode::unsupported, "vulkan: tensor '" + name + "' has type " + dtype_name(view.dtype) + ", which the Vulkan kernels do not read");
    }
    const std::uint64_t rows_per_part = std::max<std::uint64_t>(1, context.max_binding_bytes() / std::max<std::uint32_t>(matrix.row_bytes, 1));
    for (std::uint64_t first = 0; first < matrix.rows; first += rows_per_part) {
      const std::uint64_t rows = std::min<std::uint64_t>(rows_per_part, matrix.rows - first);
      Result<Buffer> part = Buffer::create(context, rows * matrix.row_bytes, MemoryUse::device, name.c_str());
      if (!part) return part.take_error();
      LAMINA_TRY(upload_rows(context, *part, view, first, rows, matrix.row_bytes, staging));
      matrix.parts.push_back(std::move(*part));
      matrix.part_first_row.push_back(static_cast<std::uint32_t>(first));
      matrix.part_rows.push_back(static_cast<std::uint32_t>(rows));
    }
    return matrix;
  }

 private:
  static Result<void> upload_rows(const Context& context, Buffer& target, const TensorView& view, std::uint64_t first, std::uint64_t rows,
                                  std::uint64_t row_bytes, Buffer* staging) {
    // Rows are contiguous in a GGUF tensor: one copy per part (the memory map is read once).
    const std::uint8_t* source = view.row(static_cast<std::int64_t>(first));
    const std::uint64_t bytes = rows * row_bytes;
    if (staging == nullptr || target.mapped() != nullptr) return vulkan::upload(context, target, 0, source, bytes, staging);
    // Through the staging buffer, a staging buffer's size at a time.
    for (std::uint64_t done = 0; done < bytes; done += staging->size()) {
      const std::uint64_t chunk = std::min<std::uint64_t>(staging->size(), bytes - done);
      LAMINA_TRY(vulkan::upload(context, target, done, source + done, chunk, staging));
    }
    return success();
  }
};

// A float vector (norm weight, bias) on the device; empty when the model has none.
inline Result<Buffer> upload_vector(const Context& context, const std::vector<float>& values, const char* what) {
  if (values.empty()) return Buffer();
  Result<Buffer> buffer = Buffer::create(context, values.size() * sizeof(float), MemoryUse::device, what);
  if (!buffer) return buffer.take_error();
  LAMINA_TRY(upload(context, *buffer, 0, values.data(), values.size() * sizeof(float)));
  return buffer;
}

namespace kernels {

// y [tokens, output_stride] (columns output_offset.. of each row) = x [*, columns] · Wᵀ, part by
// part of W. With `indices`, token t reads row indices[index_offset + t] of x. `weights` may be
// given to multiply by another buffer laid out as `matrix` says (an adapter's factor).
struct MatmulPush {
  std::uint32_t rows, columns, row_bytes, tokens, output_offset, output_stride, gather, index_offset;
};
inline void matmul(Recorder& recorder, KernelVariant variant, const DeviceMatrix& matrix, const Buffer& x, const Buffer& y,
                   std::uint32_t tokens, std::uint32_t output_stride, const Buffer* indices = nullptr, std::uint64_t index_offset = 0,
                   const Buffer* weights = nullptr) {
  const std::string pipeline = std::string("matmul_") + detail::kernel_type_name(matrix.type) +
                               (variant == KernelVariant::subgroup ? "_subgroup" : "");
  const std::size_t parts = weights != nullptr ? 1 : matrix.parts.size();
  for (std::size_t part = 0; part < parts; ++part) {
    const std::uint32_t rows = weights != nullptr ? matrix.rows : matrix.part_rows[part];
    const std::uint32_t first = weights != nullptr ? 0 : matrix.part_first_row[part];
    const MatmulPush push{rows,          matrix.columns, matrix.row_bytes, tokens, first, output_stride, indices != nullptr ? 1u : 0u,
                          static_cast<std::uint32_t>(index_offset)};
    const detail::Grid grid = detail::grid_for(rows);
    recorder.dispatch(pipeline,
                      {{0, Binding{weights != nullptr ? weights : &matrix.parts[part]}}, {1, Binding{&x}}, {2, Binding{&y}},
                       {3, Binding{indices}}},
                      push, grid.x, (tokens + 7) / 8, grid.y);
  }
}

// out [tokens, columns] = row tokens[t] of `table`, decoded to floats.
struct GetRowsPush {
  std::uint32_t columns, row_bytes, first_row, rows;
};
inline void get_rows(Recorder& recorder, const DeviceMatrix& table, const Buffer& token_ids, const Buffer& out, std::uint32_t tokens) {
  for (std::size_t part = 0; part < table.parts.size(); ++part) {
    recorder.dispatch(std::string("get_rows_") + detail::kernel_type_name(table.type),
                      {{0, Binding{&table.parts[part]}}, {2, Binding{&out}}, {3, Binding{&token_ids}}},
                      GetRowsPush{table.columns, table.row_bytes, table.part_first_row[part], table.part_rows[part]}, tokens);
  }
}

// out [rows, columns] = rms_norm(x[row]) * weight, row = t or gather[t].
struct RmsNormPush {
  std::uint32_t columns, gather;
  float epsilon;
};
inline void rms_norm(Recorder& recorder, const Buffer& x, const Buffer& weight, const Buffer& out, std::uint32_t rows,
                     std::uint32_t columns, float epsilon, const Buffer* gather = nullptr) {
  recorder.dispatch("rms_norm", {{1, Binding{&x}}, {2, Binding{&out}}, {3, Binding{gather}}, {4, Binding{&weight}}},
                    RmsNormPush{columns, gather != nullptr ? 1u : 0u, epsilon}, rows);
}

// target [count] op= source (shaders/elementwise.comp).
enum class Elementwise : std::uint32_t { add = 0, add_bias = 1, silu_mul = 2, copy = 3 };
struct ElementwisePush {
  std::uint32_t count, operation, width;
};
inline void elementwise(Recorder& recorder, Elementwise operation, const Buffer& target, const Buffer& source, std::uint32_t count,
                        std::uint32_t width = 1) {
  const detail::Grid grid = detail::grid_for((static_cast<std::uint64_t>(count) + 63) / 64);
  recorder.dispatch("elementwise", {{1, Binding{&target}}, {2, Binding{&source}}},
                    ElementwisePush{count, static_cast<std::uint32_t>(operation), width}, grid.x, grid.y);
}

// Rotates x [tokens, heads, head_size] by the angles cos/sin [tokens, pairs].
struct RopePush {
  std::uint32_t tokens, heads, head_size, pairs, neox;
};
inline void rope(Recorder& recorder, const Buffer& x, const Buffer& cos_table, const Buffer& sin_table, std::uint32_t tokens,
                 std::uint32_t heads, std::uint32_t head_size, std::uint32_t pairs, bool neox) {
  if (pairs == 0) return;
  const detail::Grid grid = detail::grid_for((static_cast<std::uint64_t>(tokens) * heads * pairs + 63) / 64);
  recorder.dispatch("rope", {{1, Binding{&x}}, {4, Binding{&cos_table}}, {5, Binding{&sin_table}}},
                    RopePush{tokens, heads, head_size, pairs, neox ? 1u : 0u}, grid.x, grid.y);
}

// cache_keys[cells[t]] = key[t], cache_values[cells[t]] = value[t]; rows of kv_width floats.
struct StoreKvPush {
  std::uint32_t tokens, kv_width;
};
inline void store_kv(Recorder& recorder, const Buffer& key, const Buffer& value, const Buffer& cells, const Buffer& cache_keys,
                     const Buffer& cache_values, std::uint32_t tokens, std::uint32_t kv_width) {
  const detail::Grid grid = detail::grid_for((static_cast<std::uint64_t>(tokens) * kv_width + 63) / 64);
  recorder.dispatch("store_kv",
                    {{1, Binding{&key}}, {2, Binding{&value}}, {3, Binding{&cells}}, {4, Binding{&cache_keys}}, {5, Binding{&cache_values}}},
                    StoreKvPush{tokens, kv_width}, grid.x, grid.y);
}

// out [tokens, heads, head_size] = attention of each token's queries over the cells
// visible[ranges[2t] .. + ranges[2t+1]] of the cache [cells, kv_heads, head_size].
struct AttentionPush {
  std::uint32_t heads, kv_heads, head_size;
  float scale;
};
inline void attention(Recorder& recorder, const Buffer& query, const Buffer& out, const Buffer& visible, const Buffer& ranges,
                      const Buffer& cache_keys, const Buffer& cache_values, std::uint32_t tokens, std::uint32_t heads,
                      std::uint32_t kv_heads, std::uint32_t head_size) {
  recorder.dispatch("attention",
                    {{1, Binding{&query}}, {2, Binding{&out}}, {3, Binding{&visible}}, {4, Binding{&cache_keys}},
                     {5, Binding{&cache_values}}, {6, Binding{&ranges}}},
                    AttentionPush{heads, kv_heads, head_size, 1.0f / std::sqrt(static_cast<float>(head_size))}, heads, tokens);
}

// y[indices[t]] += an adapter's change B u[t] (LoRA) or DoRA's form (shaders/lora_b.comp).
struct LoraPush {
  std::uint32_t outputs, rank, tokens;
  float factor;
  std::uint32_t dora;
  float scale, scaling;
  std::uint32_t index_offset;  // where the group's token list starts in `indices`
};
inline void lora_b(Recorder& recorder, DType factor_type, const Buffer& b, const Buffer& u, const Buffer& y, const Buffer& indices,
                   const Buffer& base, const Buffer& row_scale, const LoraPush& push) {
  const detail::Grid grid = detail::grid_for((static_cast<std::uint64_t>(push.tokens) * push.outputs + 63) / 64);
  recorder.dispatch(factor_type == DType::f16 ? "lora_b_f16" : "lora_b_f32",
                    {{0, Binding{&b}}, {1, Binding{&u}}, {2, Binding{&y}}, {3, Binding{&indices}}, {4, Binding{&base}},
                     {5, Binding{&row_scale}}},
                    push, grid.x, grid.y);
}

}  // namespace kernels
}  // namespace vulkan
LAMINA_NAMESPACE_END
