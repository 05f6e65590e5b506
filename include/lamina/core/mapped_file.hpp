// lamina/core/mapped_file.hpp — read-only memory mapping of a whole file.
//
// Model weights are used in place from the mapping: loading a model costs page-table work,
// not a copy, and several processes share the same physical pages.
#pragma once

#include "result.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#if LAMINA_WINDOWS
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  ifndef NOMINMAX
#    define NOMINMAX
#  endif
#  include <windows.h>
#else
#  include <cerrno>
#  include <fcntl.h>
#  include <sys/mman.h>
#  include <sys/stat.h>
#  include <unistd.h>
#endif

namespace lamina {

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

  // Maps `path` read-only. An empty file maps to size() == 0 and data() == nullptr.
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

  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
#if LAMINA_WINDOWS
  HANDLE mapping_ = nullptr;
#endif
};

#if LAMINA_WINDOWS

inline Result<MappedFile> MappedFile::open(const std::string& path) {
  MappedFile file;
  file.path_ = path;
  HANDLE handle = CreateFileA(path.c_str(), GENERIC_READ, FILE_SHARE_READ, nullptr, OPEN_EXISTING,
                              FILE_ATTRIBUTE_NORMAL, nullptr);
  if (handle == INVALID_HANDLE_VALUE) return fail(ErrorCode::io, path + ": cannot open file");
  LARGE_INTEGER size;
  if (!GetFileSizeEx(handle, &size)) {
    CloseHandle(handle);
    return fail(ErrorCode::io, path + ": cannot read file size");
  }
  file.size_ = static_cast<std::size_t>(size.QuadPart);
  if (file.size_ == 0) {
    CloseHandle(handle);
    return file;
  }
  file.mapping_ = CreateFileMappingA(handle, nullptr, PAGE_READONLY, 0, 0, nullptr);
  CloseHandle(handle);  // the mapping keeps the file open
  if (file.mapping_ == nullptr) return fail(ErrorCode::io, path + ": cannot create file mapping");
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
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(ErrorCode::io, path + ": cannot open file: " + std::strerror(errno));
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    const int saved = errno;
    ::close(fd);
    return fail(ErrorCode::io, path + ": cannot stat file: " + std::strerror(saved));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    return fail(ErrorCode::io, path + ": not a regular file");
  }
  file.size_ = static_cast<std::size_t>(info.st_size);
  if (file.size_ == 0) {
    ::close(fd);
    return file;
  }
  void* address = ::mmap(nullptr, file.size_, PROT_READ, MAP_SHARED, fd, 0);
  const int saved = errno;
  ::close(fd);  // the mapping keeps the file alive
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

}  // namespace lamina
