// lamina/core/mapped_file.hpp — read-only memory mapping of a whole file.
//
// Model weights are used in place from the mapping: loading a model costs page-table work,
// not a copy, and several processes share the same physical pages. Only a regular file is
// mapped: a FIFO, device or directory is refused at once (file_io.hpp's open_regular_file),
// never waited on.
#pragma once

#include "../config.hpp"
#include "file_io.hpp"
#include "result.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#if !LAMINA_WINDOWS  // file_io.hpp brings <windows.h>, <fcntl.h>, <unistd.h> ...
#  include <sys/mman.h>
#endif

LAMINA_NAMESPACE_BEGIN

class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept { swap(other); }
  MappedFile& operator=(MappedFile&& other) noexcept {
    MappedFile moved(std::move(other));
    swap(moved);
    return *this;
  }
  ~MappedFile() { unmap(); }

  // Maps `path` read-only. An empty file maps to size() == 0 and data() == nullptr. Anything
  // but a regular file is an error: "PATH: not a regular file (a FIFO)".
  static Result<MappedFile> open(const std::string& path);

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void swap(MappedFile& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(path_, other.path_);
#if LAMINA_WINDOWS
    std::swap(mapping_, other.mapping_);
#endif
  }
  void unmap() noexcept;
  static Result<detail::RegularFile> open_to_map(const std::string& path);

  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
#if LAMINA_WINDOWS
  HANDLE mapping_ = nullptr;
#endif
};

// The file to map, opened by open_regular_file, and checked to fit in the address space.
inline Result<detail::RegularFile> MappedFile::open_to_map(const std::string& path) {
  Result<detail::RegularFile> opened = detail::open_regular_file(path);
  if (!opened) return opened.take_error();
  if (opened->size_bytes > static_cast<std::uint64_t>(static_cast<std::size_t>(-1))) {
    return fail(ErrorCode::unsupported, path + ": " + detail::describe_byte_count(opened->size_bytes) + " does not fit in the address space");
  }
  return opened;
}

#if LAMINA_WINDOWS

inline Result<MappedFile> MappedFile::open(const std::string& path) {
  MappedFile file;
  file.path_ = path;
  Result<detail::RegularFile> opened = open_to_map(path);
  if (!opened) return opened.take_error();
  file.size_ = static_cast<std::size_t>(opened->size_bytes);
  if (file.size_ == 0) return file;
  // The mapping keeps the file open after `opened` closes its handle.
  file.mapping_ = CreateFileMappingA(opened->file.get(), nullptr, PAGE_READONLY, 0, 0, nullptr);
  if (file.mapping_ == nullptr) {
    file.size_ = 0;
    return fail(ErrorCode::io, path + ": cannot create file mapping");
  }
  void* view = MapViewOfFile(file.mapping_, FILE_MAP_READ, 0, 0, 0);
  if (view == nullptr) return fail(ErrorCode::io, path + ": cannot map file");
  file.data_ = static_cast<const std::uint8_t*>(view);
  return file;
}

inline void MappedFile::unmap() noexcept {
  if (data_ != nullptr) UnmapViewOfFile(data_);
  if (mapping_ != nullptr) CloseHandle(mapping_);
  data_ = nullptr;
  mapping_ = nullptr;
  size_ = 0;
}

#else

inline Result<MappedFile> MappedFile::open(const std::string& path) {
  MappedFile file;
  file.path_ = path;
  Result<detail::RegularFile> opened = open_to_map(path);
  if (!opened) return opened.take_error();
  file.size_ = static_cast<std::size_t>(opened->size_bytes);
  if (file.size_ == 0) return file;
  // The mapping keeps the file alive after `opened` closes its descriptor.
  void* address = ::mmap(nullptr, file.size_, PROT_READ, MAP_SHARED, opened->file.get(), 0);
  const int saved = errno;
  if (address == MAP_FAILED) {
    file.size_ = 0;
    return fail(ErrorCode::io, path + ": cannot map file: " + std::strerror(saved));
  }
  file.data_ = static_cast<const std::uint8_t*>(address);
  return file;
}

inline void MappedFile::unmap() noexcept {
  if (data_ != nullptr) ::munmap(const_cast<std::uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

#endif

LAMINA_NAMESPACE_END
