// lamina/io/gguf_writer.hpp — writing GGUF: gguf::Writer builds a whole file in memory and writes it.
//
// Tensors are laid out in the order added, each padded to the alignment as llama.cpp does, and
// write_file() replaces its path atomically. detail::header_bytes() (everything before the first
// tensor's bytes) is shared with gguf::StreamWriter (io/gguf_stream.hpp), which writes tensors as
// they are made.
#pragma once

#include "../config.hpp"
#include "../core/dtype.hpp"
#include "../core/file_io.hpp"
#include "../core/result.hpp"
#include "../core/tensor.hpp"
#include "gguf_value.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace gguf {

// Builds a GGUF file in memory and writes it. Tensors are laid out in the order added, each
// padded to the alignment as llama.cpp does. Passing an invalid Value to set() (an array whose
// elements are not all of its element_type, arrays nested more than 8 deep) or a bad alignment
// is a programmer error caught by LAMINA_ASSERT; add_tensor() checks its input and reports.
class Writer {
 public:
  explicit Writer(std::uint32_t version = 3);
  void set(const std::string& key, Value value);  // replaces an existing key, keeps its position
  void set_alignment(std::uint32_t alignment);   // also writes general.alignment
  // `shape` outermost first; `data` must hold row_bytes(dtype, shape.back()) * rows bytes. The
  // bytes are copied. ErrorCode::invalid_argument for a bad shape or size, a duplicate name, or
  // a name longer than llama.cpp's 63 bytes.
  Result<void> add_tensor(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                          const void* data, std::size_t size_bytes);
  std::vector<std::uint8_t> to_bytes() const;
  // Writes a temporary file beside `path` (see OutputFile), then renames it over `path`: readers
  // never see half a file, and anything at `path` that is not a regular file is refused.
  Result<void> write_file(const std::string& path) const;

 private:
  struct PendingTensor {
    std::string name;
    DType dtype = DType::f32;
    std::vector<std::int64_t> shape;  // outermost first
    std::vector<std::uint8_t> bytes;
  };
  // Everything before the first tensor's bytes: header, metadata, tensor infos, padding.
  std::vector<std::uint8_t> header_bytes() const;

  std::uint32_t version_ = 3;
  std::uint32_t alignment_ = detail::default_alignment;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::unordered_map<std::string, std::size_t> key_index_;
  std::vector<PendingTensor> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
};

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

// --- Writer ---

inline Writer::Writer(std::uint32_t version) : version_(version) {
  LAMINA_ASSERT(version == 2 || version == 3, "gguf::Writer: version must be 2 or 3");
}

inline void Writer::set(const std::string& key, Value value) {
  LAMINA_ASSERT(!key.empty(), "gguf::Writer::set: empty key");
  LAMINA_ASSERT(detail::is_writable_value(value, 0),
                "gguf::Writer::set: invalid value (unknown type, array elements of another type than element_type, "
                "or arrays nested more than 8 deep)");
  if (key == "general.alignment") {
    // The reader requires this; keep the layout the writer uses in step with the key.
    LAMINA_ASSERT(value.type == ValueType::uint32 && detail::is_power_of_two(value.unsigned_value),
                  "gguf::Writer::set: general.alignment must be a uint32 power of two");
    if (value.type == ValueType::uint32 && detail::is_power_of_two(value.unsigned_value)) {
      alignment_ = static_cast<std::uint32_t>(value.unsigned_value);
    }
  }
  const auto inserted = key_index_.emplace(key, metadata_.size());
  if (inserted.second) {
    metadata_.emplace_back(key, std::move(value));
  } else {
    metadata_[inserted.first->second].second = std::move(value);
  }
}

inline void Writer::set_alignment(std::uint32_t alignment) {
  LAMINA_ASSERT(detail::is_power_of_two(alignment), "gguf::Writer::set_alignment: alignment must be a power of two");
  if (!detail::is_power_of_two(alignment)) return;
  set("general.alignment", Value::from_u32(alignment));
}

namespace detail {
// What gguf::Writer::add_tensor and gguf::StreamWriter::declare_tensor check of a new tensor:
// its name, dtype and shape (outermost first). `writer` names the caller in messages and
// `taken` says the name is already in its table ("already " + taken_word). Returns the bytes
// the tensor's data takes.
inline Result<std::uint64_t> check_new_tensor(const char* writer, const std::string& name, bool taken, const char* taken_word,
                                               DType dtype, const std::vector<std::int64_t>& shape) {
  const auto problem = [&](const std::string& what) {
    return fail(ErrorCode::invalid_argument, std::string(writer) + ": tensor " + quoted(name) + ": " + what);
  };
  if (name.empty()) return fail(ErrorCode::invalid_argument, std::string(writer) + ": empty tensor name");
  if (name.size() > max_written_tensor_name_bytes) {
    return problem("name is " + std::to_string(name.size()) + " bytes; llama.cpp reads at most " +
                   std::to_string(max_written_tensor_name_bytes));
  }
  if (taken) return problem(std::string("a tensor with this name was already ") + taken_word);
  if (!is_known_dtype(static_cast<std::uint32_t>(dtype))) {
    return problem("unknown dtype id " + std::to_string(static_cast<std::uint32_t>(dtype)));
  }
  if (shape.empty() || shape.size() > static_cast<std::size_t>(max_tensor_rank)) {
    return problem("rank " + std::to_string(shape.size()) + " is not between 1 and " + std::to_string(max_tensor_rank));
  }
  std::uint64_t dims[max_tensor_rank] = {};  // innermost first, as GGUF stores them
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] <= 0) {
      return problem("dimension " + std::to_string(d) + " is " + std::to_string(shape[d]) + "; dimensions must be positive");
    }
    dims[shape.size() - 1 - d] = static_cast<std::uint64_t>(shape[d]);
  }
  std::uint64_t bytes = 0;
  std::string why;
  if (!tensor_size(dims, shape.size(), dtype, bytes, why)) return problem(why);
  return bytes;
}
}  // namespace detail

inline Result<void> Writer::add_tensor(const std::string& name, DType dtype, std::vector<std::int64_t> shape,
                                       const void* data, std::size_t size_bytes) {
  const auto problem = [&](const std::string& what) {
    return fail(ErrorCode::invalid_argument, "gguf::Writer: tensor " + detail::quoted(name) + ": " + what);
  };
  Result<std::uint64_t> checked = detail::check_new_tensor("gguf::Writer", name, tensor_index_.count(name) != 0, "added", dtype, shape);
  if (!checked) return checked.take_error();
  const std::uint64_t expected_bytes = *checked;
  if (expected_bytes != size_bytes) {
    return problem("size_bytes is " + std::to_string(size_bytes) + ", but the shape needs " +
                   std::to_string(expected_bytes) + " bytes of " + dtype_name(dtype));
  }
  if (data == nullptr) return problem("data is null");
  PendingTensor tensor;
  tensor.name = name;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  const std::uint8_t* bytes = static_cast<const std::uint8_t*>(data);
  tensor.bytes.assign(bytes, bytes + size_bytes);
  tensor_index_.emplace(name, tensors_.size());
  tensors_.push_back(std::move(tensor));
  return success();
}

namespace detail {

// One tensor as the header describes it.
struct HeaderTensor {
  const std::string* name;
  DType dtype;
  const std::vector<std::int64_t>* shape;  // outermost first
  std::uint64_t size_bytes;
};

// What precedes the first tensor: magic, version, counts, metadata, the tensor infos, padding
// to the alignment. Tensors follow each other in the data section, each padded to the
// alignment (as llama.cpp writes them, so its reader finds the padded size it expects). Shared
// by Writer (whole files in memory) and StreamWriter (tensors written as they are made).
inline std::vector<std::uint8_t> header_bytes(std::uint32_t version, std::uint32_t alignment,
                                              const std::vector<std::pair<std::string, Value>>& metadata,
                                              const std::vector<HeaderTensor>& tensors) {
  std::vector<std::uint8_t> out;
  out.reserve(4096);  // grows as needed; reserving also keeps GCC 12's -Wstringop-overflow quiet
  store_u32(out, 0x46554747u);  // "GGUF" read as a little-endian u32
  store_u32(out, version);
  store_u64(out, tensors.size());
  store_u64(out, metadata.size());
  for (const auto& entry : metadata) {
    store_string(out, entry.first);
    store_u32(out, static_cast<std::uint32_t>(entry.second.type));
    store_value(out, entry.second.type, entry.second);
  }
  std::uint64_t offset = 0;
  for (const HeaderTensor& tensor : tensors) {
    store_string(out, *tensor.name);
    store_u32(out, static_cast<std::uint32_t>(tensor.shape->size()));
    for (std::size_t d = tensor.shape->size(); d-- > 0;) store_u64(out, static_cast<std::uint64_t>((*tensor.shape)[d]));
    store_u32(out, static_cast<std::uint32_t>(tensor.dtype));
    store_u64(out, offset);
    offset = align_up(offset + tensor.size_bytes, alignment);
  }
  out.resize(static_cast<std::size_t>(align_up(out.size(), alignment)), 0);
  return out;
}

}  // namespace detail

inline std::vector<std::uint8_t> Writer::header_bytes() const {
  std::vector<detail::HeaderTensor> tensors;
  tensors.reserve(tensors_.size());
  for (const PendingTensor& tensor : tensors_) tensors.push_back({&tensor.name, tensor.dtype, &tensor.shape, tensor.bytes.size()});
  return detail::header_bytes(version_, alignment_, metadata_, tensors);
}

inline std::vector<std::uint8_t> Writer::to_bytes() const {
  std::vector<std::uint8_t> out = header_bytes();
  for (const PendingTensor& tensor : tensors_) {
    out.insert(out.end(), tensor.bytes.begin(), tensor.bytes.end());
    out.resize(static_cast<std::size_t>(detail::align_up(out.size(), alignment_)), 0);
  }
  return out;
}

inline Result<void> Writer::write_file(const std::string& path) const {
  // OutputFile (core/file_io.hpp) writes a temporary beside `path` and renames it over `path`,
  // so a reader (or a crash) never sees half a file and a File that still maps the old `path`
  // keeps its bytes; it refuses a `path` that is a FIFO, device or directory.
  Result<OutputFile> output = OutputFile::create(path);
  if (!output) return output.take_error();
  const std::vector<std::uint8_t> header = header_bytes();
  LAMINA_TRY(output->write(header.data(), header.size()));
  static const std::uint8_t zeros[256] = {};  // padding source, never written to
  std::uint64_t written = header.size();
  for (const PendingTensor& tensor : tensors_) {
    LAMINA_TRY(output->write(tensor.bytes.data(), tensor.bytes.size()));
    written += tensor.bytes.size();
    std::uint64_t padding = detail::align_up(written, alignment_) - written;
    written += padding;
    while (padding > 0) {
      const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(padding, sizeof zeros));
      LAMINA_TRY(output->write(zeros, chunk));
      padding -= chunk;
    }
  }
  return output->commit();
}

}  // namespace gguf
LAMINA_NAMESPACE_END
