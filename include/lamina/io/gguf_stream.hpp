// lamina/io/gguf_stream.hpp — writing a GGUF file tensor by tensor, without holding it in memory.
//
// gguf::Writer copies every tensor into memory before it writes; that is fine for adapters and
// test models, not for a 2-4 GB model. A StreamWriter instead takes the metadata and the table
// of tensors (name, type, shape) first, writes the header, then takes each tensor's bytes in
// the declared order and writes them straight to the file. A program that makes its tensors
// one at a time (lamina synth, lamina quantize) then needs memory for one tensor only.
//
//   lamina::gguf::StreamWriter writer;
//   writer.set("general.architecture", lamina::gguf::Value::from_string("llama"));
//   LAMINA_TRY(writer.declare_tensor("token_embd.weight", lamina::DType::q8_0, {32000, 2048}));
//   LAMINA_TRY(writer.open("model.gguf"));            // writes a temporary beside model.gguf
//   LAMINA_TRY(writer.write_tensor(bytes, size));      // once per declared tensor, in order
//   LAMINA_TRY(writer.finish());                       // renames it to model.gguf
//
// The layout is the one gguf::Writer (and llama.cpp) write: each tensor padded to the alignment.
// A writer destroyed before finish() removes its partial file. Where the file may go and how
// write errors are reported is OutputFile's (core/file_io.hpp): a FIFO or device is refused.
#pragma once

#include "../config.hpp"
#include "../core/dtype.hpp"
#include "../core/file_io.hpp"
#include "../core/result.hpp"
#include "../core/tensor.hpp"
#include "gguf_value.hpp"
#include "gguf_writer.hpp"  // detail::header_bytes

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace gguf {

class StreamWriter {
 public:
  explicit StreamWriter(std::uint32_t version = 3) : version_(version) {
    LAMINA_ASSERT(version == 2 || version == 3, "gguf::StreamWriter: version must be 2 or 3");
  }
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;
  ~StreamWriter() { abandon(); }

  // Metadata, before open(). Replaces an existing key in place (as gguf::Writer::set does).
  void set(const std::string& key, Value value) {
    LAMINA_ASSERT(!output_.is_open(), "gguf::StreamWriter::set after open()");
    LAMINA_ASSERT(!key.empty() && detail::is_writable_value(value, 0), "gguf::StreamWriter::set: invalid key or value");
    if (key == "general.alignment" && value.type == ValueType::uint32 && detail::is_power_of_two(value.unsigned_value)) {
      alignment_ = static_cast<std::uint32_t>(value.unsigned_value);
    }
    const auto inserted = key_index_.emplace(key, metadata_.size());
    if (inserted.second) metadata_.emplace_back(key, std::move(value));
    else metadata_[inserted.first->second].second = std::move(value);
  }
  void remove(const std::string& key) {
    LAMINA_ASSERT(!output_.is_open(), "gguf::StreamWriter::remove after open()");
    const auto found = key_index_.find(key);
    if (found == key_index_.end()) return;
    metadata_.erase(metadata_.begin() + static_cast<std::ptrdiff_t>(found->second));
    key_index_.clear();
    for (std::size_t i = 0; i < metadata_.size(); ++i) key_index_.emplace(metadata_[i].first, i);
    if (key == "general.alignment") alignment_ = detail::default_alignment;
  }
  const std::vector<std::pair<std::string, Value>>& metadata() const { return metadata_; }

  // One tensor of the table, before open(); `shape` outermost first. Checks what
  // gguf::Writer::add_tensor checks, except the data, which comes later.
  Result<void> declare_tensor(const std::string& name, DType dtype, std::vector<std::int64_t> shape) {
    LAMINA_ASSERT(!output_.is_open(), "gguf::StreamWriter::declare_tensor after open()");
    Result<std::uint64_t> size_bytes =
        detail::check_new_tensor("gguf::StreamWriter", name, tensor_index_.count(name) != 0, "declared", dtype, shape);
    if (!size_bytes) return size_bytes.take_error();
    Declared tensor;
    tensor.size_bytes = *size_bytes;
    tensor.name = name;
    tensor.dtype = dtype;
    tensor.shape = std::move(shape);
    tensor_index_.emplace(name, tensors_.size());
    tensors_.push_back(std::move(tensor));
    return success();
  }
  std::size_t tensor_count() const { return tensors_.size(); }
  // Bytes tensor `index` must be given (without padding).
  std::uint64_t tensor_bytes(std::size_t index) const { return tensors_[index].size_bytes; }
  // Bytes of the whole file: header, tensors and padding.
  std::uint64_t file_bytes() const {
    std::uint64_t total = header_bytes().size();
    for (const Declared& tensor : tensors_) total = detail::align_up(total + tensor.size_bytes, alignment_);
    return total;
  }

  // Creates a temporary beside `path` (temporary_path()) and writes the header; finish()
  // renames it to `path`.
  Result<void> open(const std::string& path) {
    LAMINA_ASSERT(!output_.is_open(), "gguf::StreamWriter::open twice");
    path_ = path;
    Result<OutputFile> output = OutputFile::create(path);
    if (!output) return output.take_error();
    output_ = std::move(*output);
    const std::vector<std::uint8_t> header = header_bytes();
    LAMINA_TRY(output_.write(header.data(), header.size()));
    written_ = header.size();
    next_tensor_ = 0;
    return success();
  }

  // The bytes of the next declared tensor: exactly tensor_bytes(next) of them.
  Result<void> write_tensor(const void* data, std::size_t size_bytes) {
    if (!output_.is_open()) return fail(ErrorCode::invalid_state, "gguf::StreamWriter::write_tensor: the file is not open");
    if (next_tensor_ >= tensors_.size()) {
      return fail(ErrorCode::invalid_state, path_ + ": all " + std::to_string(tensors_.size()) + " declared tensors were already written");
    }
    const Declared& tensor = tensors_[next_tensor_];
    if (size_bytes != tensor.size_bytes) {
      return fail(ErrorCode::invalid_argument, path_ + ": tensor " + detail::quoted(tensor.name) + " needs " +
                                                   std::to_string(tensor.size_bytes) + " bytes, got " + std::to_string(size_bytes));
    }
    if (size_bytes != 0 && data == nullptr) return fail(ErrorCode::invalid_argument, path_ + ": null data for " + detail::quoted(tensor.name));
    LAMINA_TRY(output_.write(data, size_bytes));
    written_ += size_bytes;
    std::uint64_t padding = detail::align_up(written_, alignment_) - written_;
    static const std::uint8_t zeros[256] = {};
    written_ += padding;
    while (padding > 0) {
      const std::size_t chunk = static_cast<std::size_t>(padding < sizeof zeros ? padding : sizeof zeros);
      LAMINA_TRY(output_.write(zeros, chunk));
      padding -= chunk;
    }
    ++next_tensor_;
    return success();
  }
  std::size_t next_tensor() const { return next_tensor_; }
  const std::string& next_tensor_name() const { return tensors_[next_tensor_].name; }
  // The file being written between open() and finish(); empty otherwise.
  const std::string& temporary_path() const { return output_.temporary_path(); }

  // Closes the file and renames it into place. Every declared tensor must have been written.
  Result<void> finish() {
    if (!output_.is_open()) return fail(ErrorCode::invalid_state, "gguf::StreamWriter::finish: the file is not open");
    if (next_tensor_ != tensors_.size()) {
      const std::string missing = tensors_[next_tensor_].name;
      abandon();
      return fail(ErrorCode::invalid_state, path_ + ": tensor " + detail::quoted(missing) + " was declared but never written");
    }
    return output_.commit();
  }

 private:
  struct Declared {
    std::string name;
    DType dtype = DType::f32;
    std::vector<std::int64_t> shape;  // outermost first
    std::uint64_t size_bytes = 0;
  };

  // What precedes the first tensor (detail::header_bytes, shared with gguf::Writer).
  std::vector<std::uint8_t> header_bytes() const {
    std::vector<detail::HeaderTensor> tensors;
    tensors.reserve(tensors_.size());
    for (const Declared& tensor : tensors_) tensors.push_back({&tensor.name, tensor.dtype, &tensor.shape, tensor.size_bytes});
    return detail::header_bytes(version_, alignment_, metadata_, tensors);
  }

  void abandon() { output_.abandon(); }

  std::uint32_t version_ = 3;
  std::uint32_t alignment_ = detail::default_alignment;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::unordered_map<std::string, std::size_t> key_index_;
  std::vector<Declared> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
  std::string path_;
  OutputFile output_;  // open between open() and finish()
  std::uint64_t written_ = 0;
  std::size_t next_tensor_ = 0;
};

}  // namespace gguf
LAMINA_NAMESPACE_END
