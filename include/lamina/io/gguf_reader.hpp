// lamina/io/gguf_reader.hpp — reading GGUF: gguf::File (zero copy, from a memory mapping), TensorInfo.
//
// File::open maps a file and parses it; File::parse reads bytes the caller owns. Reading never
// trusts the file (see io/gguf.hpp): every count and length is checked against the bytes that
// are left, and a bad file gives an Error naming the file, the key or tensor, the byte offset
// and what is wrong. The parser (detail::Parser) fills a FileContents that every copy of the
// File shares.
#pragma once

#include "../config.hpp"
#include "../core/dtype.hpp"
#include "../core/mapped_file.hpp"
#include "../core/result.hpp"
#include "../core/tensor.hpp"
#include "gguf_value.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace gguf {

struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;  // outermost first (GGUF's dims reversed): a weight is [out, in]
  std::uint64_t offset = 0;         // from the start of the data section
  std::uint64_t size_bytes = 0;
  const std::uint8_t* data = nullptr;  // into the mapping

  TensorView view() const;  // contiguous view over `data`
};

namespace detail {

// Everything parsed from one file. It is built once, never changed, and shared by every copy
// of a File, so copies are cheap and tensor pointers stay valid while any copy lives.
struct FileContents {
  std::shared_ptr<const MappedFile> mapping;  // null when parse() read caller-owned bytes
  std::string name;
  std::uint32_t version = 0;
  std::uint32_t alignment = default_alignment;
  std::uint64_t data_offset = 0;  // byte offset of the data section from the start of the file
  std::vector<std::pair<std::string, Value>> metadata;
  std::unordered_map<std::string, std::size_t> key_index;  // key -> index into metadata
  std::vector<TensorInfo> tensors;
  std::unordered_map<std::string, std::size_t> tensor_index;  // name -> index into tensors
};

class Parser;

}  // namespace detail

// A parsed GGUF file: immutable, and cheap to copy (copies share the parsed contents and the
// mapping, which lives until the last copy is gone).
class File {
 public:
  // Maps and parses `path`. Errors name the path and what is wrong, with the byte offset.
  static Result<File> open(const std::string& path);
  // Parses bytes that stay owned by the caller (fuzzing, embedded models). `name` is used in errors.
  // TensorInfo::data points into `data`, which must outlive the File and its copies.
  static Result<File> parse(const std::uint8_t* data, std::size_t size, const std::string& name);

  std::uint32_t version() const;
  std::uint32_t alignment() const;
  const std::string& name() const;  // path or the name given to parse()
  // Byte offset of the data section (the first tensor's bytes) from the start of the file.
  std::uint64_t data_offset() const;

  // Metadata, in file order.
  const std::vector<std::pair<std::string, Value>>& metadata() const;
  const Value* find(const std::string& key) const;  // nullptr when absent
  bool contains(const std::string& key) const;

  // Typed access. Missing -> ErrorCode::missing; a different type -> ErrorCode::type_mismatch.
  // Integer getters accept any integer type whose value fits the requested type.
  Result<std::uint32_t> get_u32(const std::string& key) const;
  Result<std::int32_t> get_i32(const std::string& key) const;
  Result<std::uint64_t> get_u64(const std::string& key) const;
  Result<float> get_f32(const std::string& key) const;   // float32 or float64
  Result<bool> get_bool(const std::string& key) const;
  Result<std::string> get_string(const std::string& key) const;
  Result<std::vector<std::string>> get_string_array(const std::string& key) const;
  Result<std::vector<float>> get_f32_array(const std::string& key) const;
  Result<std::vector<std::int32_t>> get_i32_array(const std::string& key) const;
  // Same, but an absent key gives `fallback` (a present key of the wrong type is still an error).
  Result<std::uint32_t> get_u32_or(const std::string& key, std::uint32_t fallback) const;
  Result<float> get_f32_or(const std::string& key, float fallback) const;
  Result<bool> get_bool_or(const std::string& key, bool fallback) const;
  Result<std::string> get_string_or(const std::string& key, const std::string& fallback) const;

  const std::vector<TensorInfo>& tensors() const;
  const TensorInfo* find_tensor(const std::string& name) const;  // nullptr when absent

 private:
  friend class detail::Parser;

  // A default-constructed or moved-from File reads as an empty file.
  const detail::FileContents& contents() const;
  // The value of `key`, or ErrorCode::missing naming the file and key.
  Result<const Value*> require(const std::string& key) const;
  Error type_error(const std::string& key, const char* expected, const Value& found) const;
  template <class Integer>
  Result<Integer> get_integer(const std::string& key, const char* type_name) const;

  std::shared_ptr<const detail::FileContents> contents_;
};

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

// Reads one GGUF image. Every read goes through need(), which checks the bytes left; counts
// are bounded by the bytes left before anything is allocated for them.
class Parser {
 public:
  Parser(const std::uint8_t* data, std::size_t size, const std::string& name) : data_(data), size_(size), name_(name) {}

  Result<File> run(std::shared_ptr<const MappedFile> mapping) {
    auto contents = std::make_shared<FileContents>();
    contents_ = contents.get();
    contents_->mapping = std::move(mapping);
    contents_->name = name_;
    if (!read_header() || !read_metadata() || !read_alignment() || !read_tensor_infos() || !place_tensors()) {
      return std::move(error_);
    }
    File file;
    file.contents_ = std::move(contents);
    return file;
  }

 private:
  static constexpr std::size_t no_offset = static_cast<std::size_t>(-1);
  static constexpr std::uint64_t min_metadata_entry_bytes = 8 + 1 + 4 + 1;     // key length, 1-byte key, type, uint8
  static constexpr std::uint64_t min_tensor_info_bytes = 8 + 1 + 4 + 8 + 4 + 8;  // name length, 1-byte name, n_dims, one dim, type, offset

  std::size_t remaining() const { return size_ - position_; }

  // Records "<file>: <context> at byte <offset>: <what>" and returns false for chaining.
  bool fail(ErrorCode code, std::size_t offset, const std::string& what) {
    std::string message = name_ + ": " + context_;
    if (offset != no_offset) message += " at byte " + std::to_string(offset);
    message += ": " + what;
    error_ = Error{code, std::move(message)};
    return false;
  }

  // `what` + `suffix` name the field: "the version", "key" + " length" …
  bool need(std::uint64_t bytes, const char* what, const char* suffix = "") {
    if (bytes <= remaining()) return true;
    return fail(ErrorCode::invalid_format, position_,
                std::string("truncated file: ") + what + suffix + " needs " + std::to_string(bytes) + " bytes, only " +
                    std::to_string(remaining()) + " left");
  }

  bool read_u32(std::uint32_t& out, const char* what) {
    if (!need(4, what)) return false;
    out = load_u32(data_ + position_);
    position_ += 4;
    return true;
  }

  bool read_u64(std::uint64_t& out, const char* what) {
    if (!need(8, what)) return false;
    out = load_u64(data_ + position_);
    position_ += 8;
    return true;
  }

  // `what` names the string: "key", "tensor name", "string value" …
  bool read_string(std::string& out, const char* what) {
    const std::size_t start = position_;
    if (!need(8, what, " length")) return false;
    const std::uint64_t length = load_u64(data_ + position_);
    position_ += 8;
    if (length > remaining()) {
      return fail(ErrorCode::invalid_format, start,
                  std::string(what) + " length " + std::to_string(length) + " runs past the end of the file (" +
                      std::to_string(remaining()) + " bytes left)");
    }
    out.assign(reinterpret_cast<const char*>(data_ + position_), static_cast<std::size_t>(length));
    position_ += static_cast<std::size_t>(length);
    return true;
  }

  // Every value costs memory (a Value is ~100 bytes), so the whole file gets a budget.
  bool take_values(std::uint64_t count, std::size_t offset) {
    if (count <= values_left_) {
      values_left_ -= count;
      return true;
    }
    return fail(ErrorCode::unsupported, offset,
                "the metadata holds more than " + std::to_string(max_metadata_values) +
                    " values (arrays included), more than lamina accepts");
  }

  bool read_header() {
    context_ = "header";
    if (!need(4, "the magic \"GGUF\"")) return false;
    if (std::memcmp(data_, "GGUF", 4) != 0) {
      char found[32];
      std::snprintf(found, sizeof found, "%02x %02x %02x %02x", data_[0], data_[1], data_[2], data_[3]);
      return fail(ErrorCode::invalid_format, 0,
                  std::string("bad magic ") + found + ", expected \"GGUF\" (47 47 55 46): not a GGUF file");
    }
    position_ = 4;
    std::uint32_t version = 0;
    if (!read_u32(version, "the version")) return false;
    if (version != 2 && version != 3) {
      const std::uint32_t swapped = (version >> 24) | ((version >> 8) & 0xff00u) | ((version << 8) & 0xff0000u) | (version << 24);
      if (version == 1) {
        return fail(ErrorCode::unsupported, 4,
                    "GGUF version 1 is not supported (lamina reads versions 2 and 3; re-convert the model with a "
                    "current llama.cpp)");
      }
      if (swapped >= 1 && swapped <= 3) {
        return fail(ErrorCode::unsupported, 4,
                    "big-endian GGUF (version " + std::to_string(swapped) + " byte-swapped) is not supported");
      }
      return fail(ErrorCode::unsupported, 4,
                  "unknown GGUF version " + std::to_string(version) + " (lamina reads versions 2 and 3)");
    }
    contents_->version = version;

    std::uint64_t tensor_count = 0;
    std::uint64_t metadata_count = 0;
    const std::size_t tensor_count_offset = position_;
    if (!read_u64(tensor_count, "the tensor count")) return false;
    const std::size_t metadata_count_offset = position_;
    if (!read_u64(metadata_count, "the metadata entry count")) return false;
    // Each entry takes at least a few bytes, so a count larger than the rest of the file can
    // hold is a lie; refuse it before reserving anything.
    if (tensor_count > remaining() / min_tensor_info_bytes) {
      return fail(ErrorCode::invalid_format, tensor_count_offset,
                  "tensor count " + std::to_string(tensor_count) + " cannot fit in the " + std::to_string(remaining()) +
                      " bytes left (at most " + std::to_string(remaining() / min_tensor_info_bytes) +
                      " tensor infos): truncated or corrupt file");
    }
    if (metadata_count > remaining() / min_metadata_entry_bytes) {
      return fail(ErrorCode::invalid_format, metadata_count_offset,
                  "metadata entry count " + std::to_string(metadata_count) + " cannot fit in the " +
                      std::to_string(remaining()) + " bytes left (at most " +
                      std::to_string(remaining() / min_metadata_entry_bytes) + " entries): truncated or corrupt file");
    }
    if (tensor_count * min_tensor_info_bytes + metadata_count * min_metadata_entry_bytes > remaining()) {
      return fail(ErrorCode::invalid_format, tensor_count_offset,
                  std::to_string(metadata_count) + " metadata entries and " + std::to_string(tensor_count) +
                      " tensor infos cannot fit in the " + std::to_string(remaining()) +
                      " bytes left: truncated or corrupt file");
    }
    if (tensor_count > max_tensor_count) {
      return fail(ErrorCode::unsupported, tensor_count_offset,
                  "tensor count " + std::to_string(tensor_count) + " is more than lamina accepts (" +
                      std::to_string(max_tensor_count) + ")");
    }
    tensor_count_ = tensor_count;
    metadata_count_ = metadata_count;
    return true;
  }

  bool read_metadata() {
    std::vector<std::pair<std::string, Value>>& metadata = contents_->metadata;
    std::unordered_map<std::string, std::size_t>& key_index = contents_->key_index;
    metadata.reserve(static_cast<std::size_t>(metadata_count_));
    key_index.reserve(static_cast<std::size_t>(metadata_count_));
    for (std::uint64_t i = 0; i < metadata_count_; ++i) {
      context_ = "metadata entry " + std::to_string(i) + " of " + std::to_string(metadata_count_);
      const std::size_t entry_offset = position_;
      std::string key;
      if (!read_string(key, "key")) return false;
      if (key.empty()) return fail(ErrorCode::invalid_format, entry_offset, "empty key");
      context_ = "key " + detail::quoted(key);
      const auto inserted = key_index.emplace(key, metadata.size());
      if (!inserted.second) {
        return fail(ErrorCode::invalid_format, entry_offset,
                    "duplicate key (first defined by metadata entry " + std::to_string(inserted.first->second) + ")");
      }
      const std::size_t type_offset = position_;
      std::uint32_t type_id = 0;
      if (!read_u32(type_id, "the value type")) return false;
      if (!is_valid_value_type(type_id)) {
        return fail(ErrorCode::invalid_format, type_offset, "unknown value type " + std::to_string(type_id));
      }
      if (!take_values(1, type_offset)) return false;
      Value value;
      if (!read_value(static_cast<ValueType>(type_id), value, 0)) return false;
      metadata.emplace_back(std::move(key), std::move(value));
    }
    return true;
  }

  // `depth`: how many arrays enclose this value.
  bool read_value(ValueType type, Value& out, int depth) {
    out.type = type;
    if (type == ValueType::string) return read_string(out.string_value, "string value");
    if (type == ValueType::array) return read_array(out, depth + 1);
    if (!need(fixed_value_bytes(type), "the value")) return false;
    decode_scalar(type, data_ + position_, out);
    position_ += static_cast<std::size_t>(fixed_value_bytes(type));
    return true;
  }

  bool read_array(Value& out, int depth) {
    const std::size_t start = position_;
    if (depth > max_array_nesting) {
      return fail(ErrorCode::invalid_format, start,
                  "arrays nested more than " + std::to_string(max_array_nesting) + " deep");
    }
    std::uint32_t element_id = 0;
    if (!read_u32(element_id, "the array element type")) return false;
    if (!is_valid_value_type(element_id)) {
      return fail(ErrorCode::invalid_format, start, "unknown array element type " + std::to_string(element_id));
    }
    const ValueType element_type = static_cast<ValueType>(element_id);
    std::uint64_t count = 0;
    if (!read_u64(count, "the array length")) return false;
    const std::uint64_t smallest = smallest_encoding_bytes(element_type);
    if (count > remaining() / smallest) {
      return fail(ErrorCode::invalid_format, start,
                  "array of " + std::to_string(count) + " " + value_type_name(element_type) +
                      " elements runs past the end of the file (each needs at least " + std::to_string(smallest) +
                      " bytes, " + std::to_string(remaining()) + " bytes left)");
    }
    if (!take_values(count, start)) return false;
    out.element_type = element_type;
    out.elements.resize(static_cast<std::size_t>(count));
    const std::uint64_t fixed = fixed_value_bytes(element_type);
    if (fixed != 0) {
      // Scalars: the bound above already guarantees count * fixed bytes are there.
      for (Value& element : out.elements) {
        decode_scalar(element_type, data_ + position_, element);
        position_ += static_cast<std::size_t>(fixed);
      }
    } else if (element_type == ValueType::string) {
      for (Value& element : out.elements) {
        element.type = ValueType::string;
        if (!read_string(element.string_value, "array element string")) return false;
      }
    } else {
      for (Value& element : out.elements) {
        element.type = ValueType::array;
        if (!read_array(element, depth + 1)) return false;
      }
    }
    return true;
  }

  bool read_alignment() {
    const auto found = contents_->key_index.find("general.alignment");
    if (found == contents_->key_index.end()) return true;
    context_ = "key 'general.alignment'";
    const Value& value = contents_->metadata[found->second].second;
    if (value.type != ValueType::uint32) {
      return fail(ErrorCode::invalid_format, no_offset, "must be a uint32, found " + describe_type(value));
    }
    if (!is_power_of_two(value.unsigned_value)) {
      return fail(ErrorCode::invalid_format, no_offset,
                  "alignment " + std::to_string(value.unsigned_value) + " is not a nonzero power of two");
    }
    contents_->alignment = static_cast<std::uint32_t>(value.unsigned_value);
    return true;
  }

  bool read_tensor_infos() {
    std::vector<TensorInfo>& tensors = contents_->tensors;
    std::unordered_map<std::string, std::size_t>& tensor_index = contents_->tensor_index;
    context_ = "tensor infos";
    // Bound again now that the metadata is read: what is left must hold every tensor info.
    if (tensor_count_ > remaining() / min_tensor_info_bytes) {
      return fail(ErrorCode::invalid_format, position_,
                  "tensor count " + std::to_string(tensor_count_) + " cannot fit in the " + std::to_string(remaining()) +
                      " bytes left after the metadata (at most " + std::to_string(remaining() / min_tensor_info_bytes) +
                      " tensor infos): truncated or corrupt file");
    }
    tensors.reserve(static_cast<std::size_t>(tensor_count_));
    tensor_index.reserve(static_cast<std::size_t>(tensor_count_));
    for (std::uint64_t i = 0; i < tensor_count_; ++i) {
      context_ = "tensor info " + std::to_string(i) + " of " + std::to_string(tensor_count_);
      const std::size_t info_offset = position_;
      TensorInfo info;
      if (!read_string(info.name, "tensor name")) return false;
      if (info.name.empty()) return fail(ErrorCode::invalid_format, info_offset, "empty tensor name");
      context_ = "tensor " + detail::quoted(info.name);
      const auto inserted = tensor_index.emplace(info.name, tensors.size());
      if (!inserted.second) {
        return fail(ErrorCode::invalid_format, info_offset,
                    "duplicate tensor name (first defined by tensor info " + std::to_string(inserted.first->second) + ")");
      }

      const std::size_t dims_offset = position_;
      std::uint32_t dim_count = 0;
      if (!read_u32(dim_count, "the dimension count")) return false;
      if (dim_count == 0 || dim_count > static_cast<std::uint32_t>(max_tensor_rank)) {
        return fail(ErrorCode::invalid_format, dims_offset,
                    "dimension count " + std::to_string(dim_count) + " is not between 1 and " +
                        std::to_string(max_tensor_rank));
      }
      std::uint64_t dims[max_tensor_rank] = {};  // innermost first, as stored
      for (std::uint32_t d = 0; d < dim_count; ++d) {
        if (!read_u64(dims[d], "a dimension")) return false;
      }
      const std::size_t type_offset = position_;
      std::uint32_t type_id = 0;
      if (!read_u32(type_id, "the tensor type")) return false;
      if (!is_known_dtype(type_id)) {
        return fail(ErrorCode::unsupported, type_offset, "unknown tensor type id " + std::to_string(type_id));
      }
      info.dtype = static_cast<DType>(type_id);
      std::string problem;
      if (!tensor_size(dims, dim_count, info.dtype, info.size_bytes, problem)) {
        return fail(ErrorCode::invalid_format, dims_offset, problem);
      }
      info.shape.resize(dim_count);
      for (std::uint32_t d = 0; d < dim_count; ++d) info.shape[dim_count - 1 - d] = static_cast<std::int64_t>(dims[d]);

      const std::size_t data_offset_position = position_;
      if (!read_u64(info.offset, "the data offset")) return false;
      if (info.offset % contents_->alignment != 0) {
        return fail(ErrorCode::invalid_format, data_offset_position,
                    "data offset " + std::to_string(info.offset) + " is not a multiple of the alignment " +
                        std::to_string(contents_->alignment));
      }
      tensors.push_back(std::move(info));
    }
    return true;
  }

  // Finds the data section, points every tensor into it, and checks that tensors stay inside
  // the file and do not overlap.
  bool place_tensors() {
    const std::uint64_t data_offset = align_up(position_, contents_->alignment);
    contents_->data_offset = data_offset;
    // A file without tensors may end right after its header, without padding.
    const std::uint64_t data_size = data_offset < size_ ? size_ - data_offset : 0;
    std::vector<TensorInfo>& tensors = contents_->tensors;
    for (TensorInfo& tensor : tensors) {
      if (tensor.offset > data_size || tensor.size_bytes > data_size - tensor.offset) {
        context_ = "tensor " + detail::quoted(tensor.name);
        return fail(ErrorCode::invalid_format, no_offset,
                    "data (offset " + std::to_string(tensor.offset) + ", " + std::to_string(tensor.size_bytes) +
                        " bytes) runs past the end of the file (the data section at byte " +
                        std::to_string(data_offset) + " holds " + std::to_string(data_size) + " bytes)");
      }
      tensor.data = data_ + data_offset + tensor.offset;
    }
    std::vector<std::size_t> by_offset(tensors.size());
    for (std::size_t i = 0; i < by_offset.size(); ++i) by_offset[i] = i;
    std::sort(by_offset.begin(), by_offset.end(), [&](std::size_t a, std::size_t b) {
      return tensors[a].offset != tensors[b].offset ? tensors[a].offset < tensors[b].offset : a < b;
    });
    for (std::size_t i = 1; i < by_offset.size(); ++i) {
      const TensorInfo& previous = tensors[by_offset[i - 1]];
      const TensorInfo& current = tensors[by_offset[i]];
      if (previous.offset + previous.size_bytes > current.offset) {  // both inside data_size: no overflow
        context_ = "tensor " + detail::quoted(current.name);
        return fail(ErrorCode::invalid_format, no_offset,
                    "data (bytes " + std::to_string(current.offset) + " to " +
                        std::to_string(current.offset + current.size_bytes) + " of the data section) overlaps tensor " +
                        detail::quoted(previous.name) + " (bytes " + std::to_string(previous.offset) + " to " +
                        std::to_string(previous.offset + previous.size_bytes) + ")");
      }
    }
    return true;
  }

  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t position_ = 0;
  const std::string& name_;
  std::string context_;  // where we are, for messages: "header", "key 'general.name'", "tensor 'output.weight'"
  Error error_;
  FileContents* contents_ = nullptr;
  std::uint64_t tensor_count_ = 0;
  std::uint64_t metadata_count_ = 0;
  std::uint64_t values_left_ = max_metadata_values;
};

}  // namespace detail

// --- TensorInfo ---

inline TensorView TensorInfo::view() const {
  TensorView view;
  LAMINA_ASSERT(shape.size() <= static_cast<std::size_t>(max_tensor_rank), "gguf::TensorInfo::view: rank above 4");
  if (shape.size() > static_cast<std::size_t>(max_tensor_rank)) return view;  // empty view when asserts are off
  view.dtype = dtype;
  view.data = data;
  view.rank = static_cast<int>(shape.size());
  for (std::size_t d = 0; d < shape.size(); ++d) view.shape[d] = shape[d];
  if (view.rank == 0) return view;
  // Same layout as contiguous_view(): the innermost stride is one block, each outer stride the
  // bytes of everything inside it.
  const std::size_t innermost = shape.size() - 1;
  view.stride[innermost] = static_cast<std::int64_t>(dtype_traits(dtype).block_bytes);
  std::int64_t stride = static_cast<std::int64_t>(row_bytes(dtype, static_cast<std::uint64_t>(shape[innermost])));
  for (std::size_t d = innermost; d-- > 0;) {
    view.stride[d] = stride;
    stride *= shape[d];
  }
  return view;
}

// --- File ---

inline Result<File> File::open(const std::string& path) {
  Result<MappedFile> mapped = MappedFile::open(path);
  if (!mapped) return mapped.take_error();
  auto mapping = std::make_shared<const MappedFile>(std::move(*mapped));
  detail::Parser parser(mapping->data(), mapping->size(), path);
  return parser.run(mapping);
}

inline Result<File> File::parse(const std::uint8_t* data, std::size_t size, const std::string& name) {
  if (data == nullptr) size = 0;
  detail::Parser parser(data, size, name);
  return parser.run(nullptr);
}

inline const detail::FileContents& File::contents() const {
  static const detail::FileContents empty{};  // immutable: what a default-constructed File reads as
  return contents_ ? *contents_ : empty;
}

inline std::uint32_t File::version() const { return contents().version; }
inline std::uint32_t File::alignment() const { return contents().alignment; }
inline const std::string& File::name() const { return contents().name; }
inline std::uint64_t File::data_offset() const { return contents().data_offset; }
inline const std::vector<std::pair<std::string, Value>>& File::metadata() const { return contents().metadata; }
inline const std::vector<TensorInfo>& File::tensors() const { return contents().tensors; }

inline const Value* File::find(const std::string& key) const {
  const detail::FileContents& file = contents();
  const auto found = file.key_index.find(key);
  return found == file.key_index.end() ? nullptr : &file.metadata[found->second].second;
}

inline bool File::contains(const std::string& key) const { return find(key) != nullptr; }

inline const TensorInfo* File::find_tensor(const std::string& name) const {
  const detail::FileContents& file = contents();
  const auto found = file.tensor_index.find(name);
  return found == file.tensor_index.end() ? nullptr : &file.tensors[found->second];
}

inline Result<const Value*> File::require(const std::string& key) const {
  const Value* value = find(key);
  if (value == nullptr) return fail(ErrorCode::missing, name() + ": key " + detail::quoted(key) + " not found");
  return value;
}

inline Error File::type_error(const std::string& key, const char* expected, const Value& found) const {
  return fail(ErrorCode::type_mismatch,
              name() + ": key " + detail::quoted(key) + ": expected " + expected + ", found " + detail::describe_type(found));
}

template <class Integer>
Result<Integer> File::get_integer(const std::string& key, const char* type_name) const {
  Result<const Value*> found = require(key);
  if (!found) return found.take_error();
  const Value& value = **found;
  if (!detail::is_unsigned_integer_type(value.type) && !detail::is_signed_integer_type(value.type)) {
    return type_error(key, type_name, value);
  }
  Integer number{};
  if (!detail::integer_value(value, number)) {
    return fail(ErrorCode::type_mismatch, name() + ": key " + detail::quoted(key) + ": " +
                                              value_type_name(value.type) + " value " + detail::describe_number(value) +
                                              " does not fit " + type_name);
  }
  return number;
}

inline Result<std::uint32_t> File::get_u32(const std::string& key) const { return get_integer<std::uint32_t>(key, "uint32"); }
inline Result<std::int32_t> File::get_i32(const std::string& key) const { return get_integer<std::int32_t>(key, "int32"); }
inline Result<std::uint64_t> File::get_u64(const std::string& key) const { return get_integer<std::uint64_t>(key, "uint64"); }

inline Result<float> File::get_f32(const std::string& key) const {
  Result<const Value*> found = require(key);
  if (!found) return found.take_error();
  const Value& value = **found;
  if (value.type != ValueType::float32 && value.type != ValueType::float64) return type_error(key, "float32", value);
  float number = 0;
  if (!detail::float_value(value, number)) {
    return fail(ErrorCode::type_mismatch, name() + ": key " + detail::quoted(key) + ": float64 value " +
                                              detail::describe_number(value) + " does not fit float32");
  }
  return number;
}

inline Result<bool> File::get_bool(const std::string& key) const {
  Result<const Value*> found = require(key);
  if (!found) return found.take_error();
  if ((*found)->type != ValueType::boolean) return type_error(key, "bool", **found);
  return (*found)->unsigned_value != 0;
}

inline Result<std::string> File::get_string(const std::string& key) const {
  Result<const Value*> found = require(key);
  if (!found) return found.take_error();
  if ((*found)->type != ValueType::string) return type_error(key, "string", **found);
  return (*found)->string_value;
}

inline Result<std::vector<std::string>> File::get_string_array(const std::string& key) const {
  Result<const Value*> found = require(key);
  if (!found) return found.take_error();
  const Value& value = **found;
  if (value.type != ValueType::array || value.element_type != ValueType::string) {
    return type_error(key, "array of string", value);
  }
  std::vector<std::string> texts;
  texts.reserve(value.elements.size());
  for (const Value& element : value.elements) texts.push_back(element.string_value);
  return texts;
}

inline Result<std::vector<float>> File::get_f32_array(const std::string& key) const {
  Result<const Value*> found = require(key);
  if (!found) return found.take_error();
  const Value& value = **found;
  if (value.type != ValueType::array ||
      (value.element_type != ValueType::float32 && value.element_type != ValueType::float64)) {
    return type_error(key, "array of float32", value);
  }
  std::vector<float> numbers(value.elements.size());
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    if (!detail::float_value(value.elements[i], numbers[i])) {
      return fail(ErrorCode::type_mismatch, name() + ": key " + detail::quoted(key) + ": element " + std::to_string(i) +
                                                " (float64 " + detail::describe_number(value.elements[i]) +
                                                ") does not fit float32");
    }
  }
  return numbers;
}

inline Result<std::vector<std::int32_t>> File::get_i32_array(const std::string& key) const {
  Result<const Value*> found = require(key);
  if (!found) return found.take_error();
  const Value& value = **found;
  if (value.type != ValueType::array || (!detail::is_unsigned_integer_type(value.element_type) &&
                                         !detail::is_signed_integer_type(value.element_type))) {
    return type_error(key, "array of int32", value);
  }
  std::vector<std::int32_t> numbers(value.elements.size());
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    if (!detail::integer_value(value.elements[i], numbers[i])) {
      return fail(ErrorCode::type_mismatch, name() + ": key " + detail::quoted(key) + ": element " + std::to_string(i) +
                                                " (" + value_type_name(value.element_type) + " " +
                                                detail::describe_number(value.elements[i]) + ") does not fit int32");
    }
  }
  return numbers;
}

inline Result<std::uint32_t> File::get_u32_or(const std::string& key, std::uint32_t fallback) const {
  return contains(key) ? get_u32(key) : Result<std::uint32_t>(fallback);
}
inline Result<float> File::get_f32_or(const std::string& key, float fallback) const {
  return contains(key) ? get_f32(key) : Result<float>(fallback);
}
inline Result<bool> File::get_bool_or(const std::string& key, bool fallback) const {
  return contains(key) ? get_bool(key) : Result<bool>(fallback);
}
inline Result<std::string> File::get_string_or(const std::string& key, const std::string& fallback) const {
  return contains(key) ? get_string(key) : Result<std::string>(fallback);
}

}  // namespace gguf
LAMINA_NAMESPACE_END
