// lamina/core/file_io.hpp — reading and writing whole files: regular files only, reads with a
// size cap, writes that replace a file whole or not at all.
//
// Paths come from users and from other files (adapter directories, spec files). A FIFO, a
// device or a directory where a file is expected must give an error at once: open() of a FIFO
// waits for a writer forever, /dev/zero never ends, and rename() of a finished file over
// /dev/full (as root) replaces the device node. The rules live here, once:
//
//   detail::open_regular_file(path)     opens without blocking and refuses anything that is not
//                                       a regular file, naming what it is ("not a regular file
//                                       (a FIFO)"). MappedFile::open and read_regular_file use it.
//   read_regular_file(path, max_bytes)  the whole file as bytes; a file larger than max_bytes is
//                                       refused before a byte is read.
//   OutputFile                          writes PATH through a temporary created exclusively
//                                       beside it (PATH.partial-XXXXXXXX) and renamed over PATH
//                                       by commit(): readers never see half a file, and a
//                                       File that still maps the old PATH keeps its bytes.
//   write_regular_file(path, data, n)   OutputFile for bytes already in memory.
//
// What an output PATH may be: missing (a new file), or a regular file (replaced). Anything else
// (a directory, FIFO, device, socket) is refused and left as it was. A symbolic link is
// followed: when it leads to a regular file, that file is replaced (the temporary is made
// beside it) and the link stays, pointing at the new contents, as `cp new link` would leave it;
// a link that leads nowhere or to something else is refused, so a link is never replaced by a
// file the user did not ask for. (On Windows, where links are rarer and resolving them is
// another API, a reparse point at PATH is refused.)
//
// Every write error (ENOSPC, EFBIG, EIO, from write, fsync or close) is reported with the path,
// and the temporary is removed on any failure. The file is fsync'ed before the rename, so the
// new name never points at contents still only in the page cache. The check that PATH is a
// regular file is made again just before the rename; between that check and the rename there
// is no way (without renameat2 and friends) to make it atomic, so a path swapped in that window
// by another process is not caught.
//
//   lamina::Result<lamina::OutputFile> out = lamina::OutputFile::create("model.gguf");
//   if (!out) return out.take_error();
//   LAMINA_TRY(out->write(header.data(), header.size()));
//   LAMINA_TRY(out->commit());   // destroyed without commit(): the temporary is removed
#pragma once

#include "../config.hpp"
#include "result.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#if LAMINA_WINDOWS
// <windows.h> without its min/max macros and rarely used parts; the two macros are the
// including program's business afterwards, so they go again unless it had set them itself.
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#    define LAMINA_DETAIL_UNDEF_LEAN_AND_MEAN
#  endif
#  ifndef NOMINMAX
#    define NOMINMAX
#    define LAMINA_DETAIL_UNDEF_NOMINMAX
#  endif
#  include <windows.h>
#  ifdef LAMINA_DETAIL_UNDEF_LEAN_AND_MEAN
#    undef WIN32_LEAN_AND_MEAN
#    undef LAMINA_DETAIL_UNDEF_LEAN_AND_MEAN
#  endif
#  ifdef LAMINA_DETAIL_UNDEF_NOMINMAX
#    undef NOMINMAX
#    undef LAMINA_DETAIL_UNDEF_NOMINMAX
#  endif
#else
#  include <cerrno>
#  include <fcntl.h>
#  include <sys/stat.h>
#  include <sys/types.h>
#  include <unistd.h>
#endif

LAMINA_NAMESPACE_BEGIN

// The whole of the regular file `path`, refused without reading when it is larger than
// `max_bytes` (a reader's cap: a tokenizer input, a JSON config), and when it grows past
// `max_bytes` while being read. A FIFO, device, socket or directory is refused at once.
inline Result<std::string> read_regular_file(const std::string& path, std::size_t max_bytes);

// Writes a new version of one file; see the top of this header for what PATH may be.
class OutputFile {
 public:
  OutputFile() = default;
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;
  OutputFile(OutputFile&& other) noexcept { swap(other); }
  OutputFile& operator=(OutputFile&& other) noexcept {
    OutputFile moved(std::move(other));
    swap(moved);
    return *this;
  }
  ~OutputFile() { abandon(); }

  // Checks that `path` may be replaced and creates the temporary beside it (or beside the
  // regular file a symbolic link at `path` leads to).
  static Result<OutputFile> create(const std::string& path);

  // Appends bytes. On an error the temporary is removed and the file is no longer open.
  Result<void> write(const void* data, std::size_t size_bytes);
  // Flushes the temporary to disk, closes it and renames it over the path. The file is no
  // longer open afterwards, whatever the outcome.
  Result<void> commit();
  // Closes and removes the temporary; the path keeps what it had. Safe to call at any time.
  void abandon() noexcept;

  bool is_open() const;
  const std::string& path() const { return path_; }                 // as the caller gave it
  const std::string& temporary_path() const { return temporary_; }  // empty when not open

 private:
  void swap(OutputFile& other) noexcept {
    std::swap(path_, other.path_);
    std::swap(target_, other.target_);
    std::swap(temporary_, other.temporary_);
    std::swap(handle_, other.handle_);
  }
  Error give_up(const std::string& what, const std::string& reason);

  std::string path_;       // for messages
  std::string target_;     // what commit() replaces: path_, or the file a symbolic link at path_ leads to
  std::string temporary_;  // beside target_, so the rename stays within one file system
#if LAMINA_WINDOWS
  HANDLE handle_ = INVALID_HANDLE_VALUE;
#else
  int handle_ = -1;
#endif
};

// The check OutputFile::create makes, without creating anything: for a program that works a
// long time before it writes, so a FIFO or device as its output is refused at the start and an
// interrupted run leaves no temporary behind.
inline Result<void> check_output_path(const std::string& path);

// Replaces `path` with `size_bytes` bytes at `data`, through an OutputFile.
inline Result<void> write_regular_file(const std::string& path, const void* data, std::size_t size_bytes) {
  Result<OutputFile> output = OutputFile::create(path);
  if (!output) return output.take_error();
  LAMINA_TRY(output->write(data, size_bytes));
  return output->commit();
}

namespace detail {

// "512 bytes", "64 MiB", "1.2 GiB": sizes in messages.
inline std::string describe_byte_count(std::uint64_t bytes) {
  static const char* const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + (bytes == 1 ? " byte" : " bytes");
  double scaled = static_cast<double>(bytes) / 1024.0;
  std::uint64_t divisor = 1024;
  std::size_t unit = 0;
  while (scaled >= 1024.0 && unit + 1 < sizeof units / sizeof units[0]) {
    scaled /= 1024.0;
    divisor *= 1024;
    ++unit;
  }
  char text[48];
  if (bytes % divisor == 0) std::snprintf(text, sizeof text, "%llu %s", static_cast<unsigned long long>(bytes / divisor), units[unit]);
  else std::snprintf(text, sizeof text, "%.1f %s", scaled, units[unit]);
  return text;
}

inline Error file_too_large(const std::string& path, std::uint64_t size_bytes, std::uint64_t max_bytes) {
  return fail(ErrorCode::unsupported,
              path + ": " + describe_byte_count(size_bytes) + " is larger than the " + describe_byte_count(max_bytes) + " this reader accepts");
}

// A name for a temporary beside `target`: `target`.partial-XXXXXXXX, different for every call
// in every process (the process id, a counter and the clock, mixed), so a stale temporary from a
// crashed run, or a FIFO someone left with the old fixed name, is never opened.
inline std::string temporary_name_for(const std::string& target, std::uint64_t process_id) {
  static std::atomic<std::uint64_t> counter{0};
  std::uint64_t mixed = (process_id * 0x9E3779B97F4A7C15ull) ^ (counter.fetch_add(1) * 0xBF58476D1CE4E5B9ull) ^
                        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  mixed ^= mixed >> 31;  // splitmix64's finalizer: every input bit moves the 32 bits kept below
  mixed *= 0x94D049BB133111EBull;
  mixed ^= mixed >> 29;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%08x", static_cast<unsigned>(mixed & 0xffffffffu));
  return target + ".partial-" + suffix;
}

#if LAMINA_WINDOWS

inline std::string windows_error_text(DWORD code) { return "Windows error " + std::to_string(static_cast<unsigned long>(code)); }

// An open HANDLE, closed when destroyed.
class NativeFile {
 public:
  NativeFile() = default;
  explicit NativeFile(HANDLE handle) : handle_(handle) {}
  NativeFile(const NativeFile&) = delete;
  NativeFile& operator=(const NativeFile&) = delete;
  NativeFile(NativeFile&& other) noexcept : handle_(other.handle_) { other.handle_ = INVALID_HANDLE_VALUE; }
  NativeFile& operator=(NativeFile&& other) noexcept {
    std::swap(handle_, other.handle_);
    return *this;
  }
  ~NativeFile() {
    if (handle_ != INVALID_HANDLE_VALUE) CloseHandle(handle_);
  }
  HANDLE get() const { return handle_; }

 private:
  HANDLE handle_ = INVALID_HANDLE_VALUE;
};

struct RegularFile {
  NativeFile file;
  std::uint64_t size_bytes = 0;
};

// Opens `path` for reading when it is a file on disk: a directory, pipe or device is refused.
inline Result<RegularFile> open_regular_file(const std::string& path) {
  const DWORD attributes = GetFileAttributesA(path.c_str());
  if (attributes != INVALID_FILE_ATTRIBUTES && (attributes & FILE_ATTRIBUTE_DIRECTORY) != 0) {
    return fail(ErrorCode::io, path + ": not a regular file (a directory)");
  }
  HANDLE handle = CreateFileA(path.c_str(), GENERIC_READ, FILE_SHARE_READ, nullptr, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (handle == INVALID_HANDLE_VALUE) return fail(ErrorCode::io, path + ": cannot open file: " + windows_error_text(GetLastError()));
  RegularFile opened;
  opened.file = NativeFile(handle);
  if (GetFileType(handle) != FILE_TYPE_DISK) return fail(ErrorCode::io, path + ": not a regular file (a pipe or device)");
  LARGE_INTEGER size;
  if (!GetFileSizeEx(handle, &size)) return fail(ErrorCode::io, path + ": cannot read file size: " + windows_error_text(GetLastError()));
  opened.size_bytes = static_cast<std::uint64_t>(size.QuadPart);
  return opened;
}

// What OutputFile::commit replaces for `path`: `path` itself when it is missing or a file on disk.
inline Result<std::string> resolve_output_path(const std::string& path) {
  const DWORD attributes = GetFileAttributesA(path.c_str());
  if (attributes == INVALID_FILE_ATTRIBUTES) {
    const DWORD code = GetLastError();
    if (code == ERROR_FILE_NOT_FOUND || code == ERROR_PATH_NOT_FOUND) return path;
    return fail(ErrorCode::io, path + ": cannot check the output path: " + windows_error_text(code));
  }
  const std::string refused = "; an output must be a new path or a regular file";
  if ((attributes & FILE_ATTRIBUTE_DIRECTORY) != 0) return fail(ErrorCode::io, path + ": not a regular file (a directory)" + refused);
  if ((attributes & FILE_ATTRIBUTE_REPARSE_POINT) != 0) return fail(ErrorCode::io, path + ": not a regular file (a link)" + refused);
  // Device names (NUL, CON, COM1) have attributes too: only the open handle tells them apart.
  NativeFile probe(CreateFileA(path.c_str(), 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr, OPEN_EXISTING, 0, nullptr));
  if (probe.get() != INVALID_HANDLE_VALUE && GetFileType(probe.get()) != FILE_TYPE_DISK) {
    return fail(ErrorCode::io, path + ": not a regular file (a pipe or device)" + refused);
  }
  return path;
}

#else  // POSIX

inline const char* file_kind_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a file lamina knows";
}

// An open file descriptor, closed when destroyed.
class NativeFile {
 public:
  NativeFile() = default;
  explicit NativeFile(int descriptor) : descriptor_(descriptor) {}
  NativeFile(const NativeFile&) = delete;
  NativeFile& operator=(const NativeFile&) = delete;
  NativeFile(NativeFile&& other) noexcept : descriptor_(other.descriptor_) { other.descriptor_ = -1; }
  NativeFile& operator=(NativeFile&& other) noexcept {
    std::swap(descriptor_, other.descriptor_);
    return *this;
  }
  ~NativeFile() {
    if (descriptor_ >= 0) ::close(descriptor_);
  }
  int get() const { return descriptor_; }

 private:
  int descriptor_ = -1;
};

struct RegularFile {
  NativeFile file;
  std::uint64_t size_bytes = 0;
};

// Opens `path` read-only when it is a regular file. stat() first, so a device is refused
// without being opened (opening some has effects: a tape rewinds, a terminal can become the
// controlling terminal); O_NONBLOCK, so a FIFO swapped in after that check cannot block the
// open; fstat() of the open file, which is what counts.
inline Result<RegularFile> open_regular_file(const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) return fail(ErrorCode::io, path + ": cannot open file: " + std::strerror(errno));
  if (!S_ISREG(info.st_mode)) return fail(ErrorCode::io, path + ": not a regular file (" + file_kind_name(info.st_mode) + ")");
  int descriptor = -1;
  do {
    descriptor = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  } while (descriptor < 0 && errno == EINTR);
  if (descriptor < 0) return fail(ErrorCode::io, path + ": cannot open file: " + std::strerror(errno));
  RegularFile opened;
  opened.file = NativeFile(descriptor);
  if (::fstat(descriptor, &info) != 0) return fail(ErrorCode::io, path + ": cannot stat file: " + std::strerror(errno));
  if (!S_ISREG(info.st_mode)) return fail(ErrorCode::io, path + ": not a regular file (" + file_kind_name(info.st_mode) + ")");
  // O_NONBLOCK was for the open only; reads of the file itself should wait as usual.
  const int flags = ::fcntl(descriptor, F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK) != 0) (void)::fcntl(descriptor, F_SETFL, flags & ~O_NONBLOCK);
  opened.size_bytes = static_cast<std::uint64_t>(info.st_size);
  return opened;
}

// What OutputFile::commit replaces for `path` (see the top of this header): `path` when it is
// missing or a regular file; the regular file a symbolic link at `path` leads to.
inline Result<std::string> resolve_output_path(const std::string& path) {
  const std::string refused = "; an output must be a new path or a regular file";
  struct stat info;
  if (::lstat(path.c_str(), &info) != 0) {
    // A missing folder is reported when the temporary cannot be created in it.
    if (errno == ENOENT) return path;
    return fail(ErrorCode::io, path + ": cannot check the output path: " + std::strerror(errno));
  }
  if (S_ISREG(info.st_mode)) return path;
  if (!S_ISLNK(info.st_mode)) return fail(ErrorCode::io, path + ": not a regular file (" + file_kind_name(info.st_mode) + ")" + refused);
  if (::stat(path.c_str(), &info) != 0) {
    return fail(ErrorCode::io, path + ": a symbolic link that leads nowhere (" + std::strerror(errno) + "); lamina does not replace the link");
  }
  if (!S_ISREG(info.st_mode)) {
    return fail(ErrorCode::io, path + ": a symbolic link to " + file_kind_name(info.st_mode) + ", not to a regular file" + refused);
  }
  char* resolved = ::realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return fail(ErrorCode::io, path + ": cannot resolve the symbolic link: " + std::strerror(errno));
  std::string target(resolved);
  std::free(resolved);
  return target;
}

#endif

}  // namespace detail

inline Result<void> check_output_path(const std::string& path) {
  if (path.empty()) return fail(ErrorCode::invalid_argument, "the output path is empty");
  Result<std::string> target = detail::resolve_output_path(path);
  if (!target) return target.take_error();
  return success();
}

namespace detail {

// read_regular_file's loop, for both systems: `read_some(buffer, wanted)` reads up to `wanted`
// bytes and returns how many (0 at the end of the file), or an Error.
template <class ReadSome>
Result<std::string> read_up_to(const std::string& path, std::uint64_t size_bytes, std::size_t max_bytes, ReadSome&& read_some) {
  if (size_bytes > max_bytes) return file_too_large(path, size_bytes, max_bytes);
  // One byte more than allowed, so a file that grew since it was measured is noticed.
  const std::size_t limit = max_bytes == static_cast<std::size_t>(-1) ? max_bytes : max_bytes + 1;
  std::string text(static_cast<std::size_t>(size_bytes), '\0');
  std::size_t total = 0;
  for (;;) {
    if (total == text.size()) {
      if (text.size() >= limit) break;
      const std::size_t grown = text.size() + 65536;
      text.resize(grown < limit && grown > text.size() ? grown : limit);
    }
    const std::size_t wanted = text.size() - total;
    Result<std::size_t> got = read_some(&text[total], wanted < (std::size_t{1} << 30) ? wanted : (std::size_t{1} << 30));
    if (!got) return got.take_error();
    if (*got == 0) break;
    total += *got;
  }
  if (total > max_bytes) return fail(ErrorCode::unsupported, path + ": grew past the " + describe_byte_count(max_bytes) + " this reader accepts");
  text.resize(total);
  return text;
}

}  // namespace detail

#if LAMINA_WINDOWS

inline Result<std::string> read_regular_file(const std::string& path, std::size_t max_bytes) {
  Result<detail::RegularFile> opened = detail::open_regular_file(path);
  if (!opened) return opened.take_error();
  return detail::read_up_to(path, opened->size_bytes, max_bytes, [&](char* buffer, std::size_t wanted) -> Result<std::size_t> {
    DWORD got = 0;
    if (!ReadFile(opened->file.get(), buffer, static_cast<DWORD>(wanted), &got, nullptr)) {
      return fail(ErrorCode::io, path + ": cannot read: " + detail::windows_error_text(GetLastError()));
    }
    return static_cast<std::size_t>(got);
  });
}

inline bool OutputFile::is_open() const { return handle_ != INVALID_HANDLE_VALUE; }

inline Result<OutputFile> OutputFile::create(const std::string& path) {
  if (path.empty()) return fail(ErrorCode::invalid_argument, "the output path is empty");
  Result<std::string> target = detail::resolve_output_path(path);
  if (!target) return target.take_error();
  OutputFile output;
  output.path_ = path;
  output.target_ = *target;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string candidate = detail::temporary_name_for(output.target_, GetCurrentProcessId());
    // CREATE_NEW: fails when the name exists, so nothing already there is ever opened.
    HANDLE handle = CreateFileA(candidate.c_str(), GENERIC_WRITE, 0, nullptr, CREATE_NEW, FILE_ATTRIBUTE_NORMAL, nullptr);
    if (handle != INVALID_HANDLE_VALUE) {
      output.handle_ = handle;
      output.temporary_ = candidate;
      return output;
    }
    const DWORD code = GetLastError();
    if (code != ERROR_FILE_EXISTS && code != ERROR_ALREADY_EXISTS) {
      return fail(ErrorCode::io, path + ": cannot create a temporary file beside it (" + candidate + "): " + detail::windows_error_text(code));
    }
  }
  return fail(ErrorCode::io, path + ": cannot find a free name for a temporary file beside it");
}

inline Result<void> OutputFile::write(const void* data, std::size_t size_bytes) {
  if (!is_open()) return fail(ErrorCode::invalid_state, path_ + ": the output file is not open (committed or given up)");
  const char* bytes = static_cast<const char*>(data);
  while (size_bytes > 0) {
    const DWORD chunk = static_cast<DWORD>(size_bytes < (1u << 30) ? size_bytes : (1u << 30));
    DWORD wrote = 0;
    if (!WriteFile(handle_, bytes, chunk, &wrote, nullptr)) return give_up("cannot write", detail::windows_error_text(GetLastError()));
    if (wrote == 0) return give_up("cannot write", "nothing was written");
    bytes += wrote;
    size_bytes -= wrote;
  }
  return success();
}

inline Result<void> OutputFile::commit() {
  if (!is_open()) return fail(ErrorCode::invalid_state, path_ + ": the output file is not open (committed or given up)");
  if (!FlushFileBuffers(handle_)) return give_up("cannot write the file to disk", detail::windows_error_text(GetLastError()));
  const BOOL closed = CloseHandle(handle_);
  handle_ = INVALID_HANDLE_VALUE;
  if (!closed) return give_up("cannot close the file", detail::windows_error_text(GetLastError()));
  Result<std::string> target = detail::resolve_output_path(path_);
  if (!target) {
    abandon();
    return target.take_error();
  }
  if (*target != target_) return give_up("changed while it was written (it now leads to " + *target + ")", "nothing was replaced");
  if (!MoveFileExA(temporary_.c_str(), target_.c_str(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)) {
    return give_up("cannot rename the written file into place", detail::windows_error_text(GetLastError()));
  }
  temporary_.clear();
  return success();
}

inline void OutputFile::abandon() noexcept {
  if (handle_ != INVALID_HANDLE_VALUE) CloseHandle(handle_);
  handle_ = INVALID_HANDLE_VALUE;
  if (!temporary_.empty()) DeleteFileA(temporary_.c_str());
  temporary_.clear();
}

#else  // POSIX

inline Result<std::string> read_regular_file(const std::string& path, std::size_t max_bytes) {
  Result<detail::RegularFile> opened = detail::open_regular_file(path);
  if (!opened) return opened.take_error();
  return detail::read_up_to(path, opened->size_bytes, max_bytes, [&](char* buffer, std::size_t wanted) -> Result<std::size_t> {
    for (;;) {
      const ssize_t got = ::read(opened->file.get(), buffer, wanted);
      if (got >= 0) return static_cast<std::size_t>(got);
      if (errno != EINTR) return fail(ErrorCode::io, path + ": cannot read: " + std::strerror(errno));
    }
  });
}

inline bool OutputFile::is_open() const { return handle_ >= 0; }

inline Result<OutputFile> OutputFile::create(const std::string& path) {
  if (path.empty()) return fail(ErrorCode::invalid_argument, "the output path is empty");
  Result<std::string> target = detail::resolve_output_path(path);
  if (!target) return target.take_error();
  OutputFile output;
  output.path_ = path;
  output.target_ = *target;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string candidate = detail::temporary_name_for(output.target_, static_cast<std::uint64_t>(::getpid()));
    // O_EXCL: fails when the name exists (even as a link), so nothing already there is opened.
    // Mode 0666 lets the umask decide, as fopen("wb") did; mkstemp would make it 0600.
    const int descriptor = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0666);
    if (descriptor >= 0) {
      output.handle_ = descriptor;
      output.temporary_ = candidate;
      return output;
    }
    if (errno != EEXIST && errno != EINTR) {
      return fail(ErrorCode::io, path + ": cannot create a temporary file beside it (" + candidate + "): " + std::strerror(errno));
    }
  }
  return fail(ErrorCode::io, path + ": cannot find a free name for a temporary file beside it");
}

inline Result<void> OutputFile::write(const void* data, std::size_t size_bytes) {
  if (!is_open()) return fail(ErrorCode::invalid_state, path_ + ": the output file is not open (committed or given up)");
  const char* bytes = static_cast<const char*>(data);
  while (size_bytes > 0) {
    const ssize_t wrote = ::write(handle_, bytes, size_bytes < (1u << 30) ? size_bytes : (1u << 30));
    if (wrote < 0) {
      if (errno == EINTR) continue;
      return give_up("cannot write", std::strerror(errno));
    }
    if (wrote == 0) return give_up("cannot write", "nothing was written");
    bytes += wrote;
    size_bytes -= static_cast<std::size_t>(wrote);
  }
  return success();
}

inline Result<void> OutputFile::commit() {
  if (!is_open()) return fail(ErrorCode::invalid_state, path_ + ": the output file is not open (committed or given up)");
  int synced = 0;
  do {
    synced = ::fsync(handle_);
  } while (synced != 0 && errno == EINTR);
  // EINVAL / EOPNOTSUPP: a file system that cannot sync (some FUSE ones); the rename still
  // gives readers a whole file. Anything else (EIO, ENOSPC, EDQUOT) means lost bytes.
  if (synced != 0 && errno != EINVAL && errno != EOPNOTSUPP) return give_up("cannot write the file to disk", std::strerror(errno));
  const int closed = ::close(handle_);
  handle_ = -1;
  // EINTR from close: Linux has closed the descriptor anyway, and fsync already succeeded.
  if (closed != 0 && errno != EINTR) return give_up("cannot close the file", std::strerror(errno));
  // Again, just before the rename: the path may have become a FIFO or device since create().
  Result<std::string> target = detail::resolve_output_path(path_);
  if (!target) {
    abandon();
    return target.take_error();
  }
  if (*target != target_) return give_up("changed while it was written (it now leads to " + *target + ")", "nothing was replaced");
  if (::rename(temporary_.c_str(), target_.c_str()) != 0) return give_up("cannot rename the written file into place", std::strerror(errno));
  temporary_.clear();
  return success();
}

inline void OutputFile::abandon() noexcept {
  if (handle_ >= 0) ::close(handle_);
  handle_ = -1;
  if (!temporary_.empty()) ::unlink(temporary_.c_str());
  temporary_.clear();
}

#endif

inline Error OutputFile::give_up(const std::string& what, const std::string& reason) {
  abandon();
  return fail(ErrorCode::io, path_ + ": " + what + ": " + reason);
}

LAMINA_NAMESPACE_END
