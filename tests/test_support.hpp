// Helpers shared by the tests: where the reference data lives, and reading and writing files.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#if !defined(_WIN32)
#  include <unistd.h>
#endif

namespace lamina_test {

// ../shared by default (set by the build as LAMINA_TEST_SHARED_DIR); the environment variable
// LAMINA_SHARED_DIR overrides it.
inline std::string shared_dir() {
  if (const char* from_environment = std::getenv("LAMINA_SHARED_DIR")) return from_environment;
#ifdef LAMINA_TEST_SHARED_DIR
  return LAMINA_TEST_SHARED_DIR;
#else
  return "../shared";
#endif
}

inline std::string shared_path(const std::string& relative) { return shared_dir() + "/" + relative; }

inline bool file_exists(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return false;
  std::fclose(file);
  return true;
}

inline std::string read_text_file(const std::string& path) {
  std::string text;
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return text;
  char buffer[65536];
  std::size_t got;
  while ((got = std::fread(buffer, 1, sizeof buffer, file)) > 0) text.append(buffer, got);
  std::fclose(file);
  return text;
}

// Writes `text` to `path` (replacing it); false when any of it could not be written.
inline bool write_text_file(const std::string& path, const std::string& text) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return false;
  const bool written = std::fwrite(text.data(), 1, text.size(), file) == text.size();
  return std::fclose(file) == 0 && written;
}

inline std::vector<unsigned char> read_binary_file(const std::string& path) {
  const std::string text = read_text_file(path);
  return std::vector<unsigned char>(text.begin(), text.end());
}

// A scratch path under the system temp directory, unique per process and name.
inline std::string temp_path(const std::string& name) {
  const char* directory = std::getenv("TMPDIR");
  return std::string(directory ? directory : "/tmp") + "/lamina-test-" + std::to_string(static_cast<long>(
#if defined(_WIN32)
      0
#else
      ::getpid()
#endif
      )) + "-" + name;
}

}  // namespace lamina_test

#define LAMINA_REQUIRE_SHARED(relative_path)                                                     \
  do {                                                                                           \
    if (!lamina_test::file_exists(lamina_test::shared_path(relative_path))) {                    \
      FAIL("reference data missing: " << lamina_test::shared_path(relative_path)                 \
           << " (set LAMINA_SHARED_DIR or the CMake cache variable LAMINA_SHARED_DIR)");        \
    }                                                                                            \
  } while (0)
