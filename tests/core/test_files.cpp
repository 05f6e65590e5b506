// Tests for lamina/core/file_io.hpp: files that are not regular files, given as inputs (a FIFO
// must not block, /dev/zero must not fill memory) and as outputs (a device node or FIFO must
// not be replaced by a file), size caps, write errors, and the temporary beside the output.
// Every hostile file is made here, at run time, in a scratch folder; no test writes to a real
// device. What could hang if it regressed (opening a FIFO) runs in a forked child that alarm()
// ends.
#include <lamina/core/file_io.hpp>
#include <lamina/core/mapped_file.hpp>
#include <lamina/io/gguf.hpp>
#include <lamina/io/safetensors.hpp>
#include <lamina/io/gguf_stream.hpp>

#include <doctest/doctest.h>

#if !defined(_WIN32)

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace {

bool contains_text(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A folder of its own under $TMPDIR, emptied and removed at the end of the test (one level of
// subfolders, which is all these tests make).
class ScratchFolder {
 public:
  ScratchFolder() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/lamina-files-XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (::mkdtemp(buffer.data()) != nullptr) path_ = buffer.data();
  }
  ~ScratchFolder() {
    if (path_.empty()) return;
    for (const std::string& name : names()) {
      const std::string entry = path_ + "/" + name;
      struct stat info;
      if (::lstat(entry.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) {
        ::rmdir(entry.c_str());
      } else {
        ::unlink(entry.c_str());
      }
    }
    ::rmdir(path_.c_str());
  }
  ScratchFolder(const ScratchFolder&) = delete;
  ScratchFolder& operator=(const ScratchFolder&) = delete;

  bool ok() const { return !path_.empty(); }
  std::string at(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

  std::vector<std::string> names() const {
    std::vector<std::string> found;
    DIR* directory = ::opendir(path_.c_str());
    if (directory == nullptr) return found;
    while (const dirent* entry = ::readdir(directory)) {
      const std::string name = entry->d_name;
      if (name != "." && name != "..") found.push_back(name);
    }
    ::closedir(directory);
    return found;
  }
  // Temporaries an OutputFile left behind: NAME.partial-XXXXXXXX.
  std::vector<std::string> leftover_temporaries() const {
    std::vector<std::string> found;
    for (const std::string& name : names()) {
      if (contains_text(name, ".partial-")) found.push_back(name);
    }
    return found;
  }

 private:
  std::string path_;
};

void write_plain_file(const std::string& path, const std::string& text) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  REQUIRE(file != nullptr);
  REQUIRE(std::fwrite(text.data(), 1, text.size(), file) == text.size());
  REQUIRE(std::fclose(file) == 0);
}

std::string read_plain_file(const std::string& path) {
  std::string text;
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return "<missing>";
  char buffer[4096];
  std::size_t got;
  while ((got = std::fread(buffer, 1, sizeof buffer, file)) > 0) text.append(buffer, got);
  std::fclose(file);
  return text;
}

mode_t kind_of(const std::string& path) {
  struct stat info;
  if (::lstat(path.c_str(), &info) != 0) return 0;
  return info.st_mode & S_IFMT;
}

// What a call gave: "ok", or its error message.
template <class T>
std::string outcome_of(const lamina::Result<T>& result) {
  return result.ok() ? std::string("ok") : result.error().message;
}

struct ChildOutcome {
  bool finished = false;  // false: it hung (alarm) or crashed
  std::vector<std::string> lines;
};

// Runs `attempt` in a forked child that alarm() ends after 20 s, and returns the lines it gave.
// Used where a regression would block (opening a FIFO) and where the child changes process-wide
// state (a file size limit).
ChildOutcome run_in_child(const std::function<std::vector<std::string>()>& attempt) {
  ChildOutcome outcome;
  int channel[2];
  if (::pipe(channel) != 0) return outcome;
  std::fflush(nullptr);  // the child must not flush the parent's buffered output a second time
  const pid_t child = ::fork();
  if (child < 0) {
    ::close(channel[0]);
    ::close(channel[1]);
    return outcome;
  }
  if (child == 0) {
    ::close(channel[0]);
    ::alarm(20);
    std::string text;
    for (const std::string& line : attempt()) text += line + "\n";
    std::size_t sent = 0;
    while (sent < text.size()) {
      const ssize_t wrote = ::write(channel[1], text.data() + sent, text.size() - sent);
      if (wrote <= 0) break;
      sent += static_cast<std::size_t>(wrote);
    }
    ::_exit(0);
  }
  ::close(channel[1]);
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t got = ::read(channel[0], buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
  }
  ::close(channel[0]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  outcome.finished = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  std::size_t start = 0;
  for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) outcome.lines.push_back(text.substr(start, end - start));
  return outcome;
}

// Every writer of the library, each writing a small valid file of its format to `path`.
struct NamedWriter {
  const char* name;
  std::function<lamina::Result<void>(const std::string&)> write;
};

const std::vector<NamedWriter>& all_writers() {
  static const std::vector<float> values = {1, 2, 3, 4, 5, 6};
  static const std::vector<NamedWriter> writers = {
      {"write_regular_file", [](const std::string& path) -> lamina::Result<void> { return lamina::write_regular_file(path, "bytes", 5); }},
      {"gguf::Writer::write_file",
       [](const std::string& path) -> lamina::Result<void> {
         lamina::gguf::Writer writer;
         writer.set("general.architecture", lamina::gguf::Value::from_string("llama"));
         LAMINA_TRY(writer.add_tensor("w", lamina::DType::f32, {2, 3}, values.data(), values.size() * sizeof(float)));
         return writer.write_file(path);
       }},
      {"safetensors::write",
       [](const std::string& path) -> lamina::Result<void> {
         return lamina::safetensors::write(path, {{"w", lamina::DType::f32, {2, 3}, values.data()}}, {});
       }},
      {"gguf::StreamWriter",
       [](const std::string& path) -> lamina::Result<void> {
         lamina::gguf::StreamWriter writer;
         writer.set("general.architecture", lamina::gguf::Value::from_string("llama"));
         LAMINA_TRY(writer.declare_tensor("w", lamina::DType::f32, {2, 3}));
         LAMINA_TRY(writer.open(path));
         LAMINA_TRY(writer.write_tensor(values.data(), values.size() * sizeof(float)));
         return writer.finish();
       }},
  };
  return writers;
}

}  // namespace

TEST_CASE("files: a FIFO is refused at once by every reader") {
  ScratchFolder folder;
  REQUIRE(folder.ok());
  const std::string fifo = folder.at("input.fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const ChildOutcome outcome = run_in_child([&]() {
    return std::vector<std::string>{
        outcome_of(lamina::MappedFile::open(fifo)),
        outcome_of(lamina::gguf::File::open(fifo)),
        outcome_of(lamina::safetensors::File::open(fifo)),
        outcome_of(lamina::read_regular_file(fifo, 1024)),
    };
  });
  REQUIRE_MESSAGE(outcome.finished, "a reader blocked on a FIFO (or crashed)");
  REQUIRE(outcome.lines.size() == 4);
  for (const std::string& line : outcome.lines) {
    CHECK_MESSAGE(contains_text(line, fifo + ": not a regular file (a FIFO)"), line);
  }
  CHECK(kind_of(fifo) == S_IFIFO);
}

TEST_CASE("files: a directory, a character device and a missing file are refused by the readers") {
  ScratchFolder folder;
  REQUIRE(folder.ok());
  const std::string directory = folder.path();
  CHECK(contains_text(outcome_of(lamina::MappedFile::open(directory)), directory + ": not a regular file (a directory)"));
  CHECK(contains_text(outcome_of(lamina::gguf::File::open(directory)), "not a regular file (a directory)"));
  CHECK(contains_text(outcome_of(lamina::read_regular_file(directory, 1024)), directory + ": not a regular file (a directory)"));

  // /dev/zero as input only: it is refused before it is opened, so nothing is read from it.
  lamina::Result<std::string> zero = lamina::read_regular_file("/dev/zero", 4096);
  REQUIRE_FALSE(zero.ok());
  CHECK(zero.error().message == "/dev/zero: not a regular file (a character device)");
  CHECK(contains_text(outcome_of(lamina::MappedFile::open("/dev/zero")), "/dev/zero: not a regular file (a character device)"));

  const std::string missing = folder.at("missing.txt");
  CHECK(contains_text(outcome_of(lamina::read_regular_file(missing, 1024)), missing + ": cannot open file: "));
  CHECK(contains_text(outcome_of(lamina::MappedFile::open(missing)), missing + ": cannot open file: "));
}

TEST_CASE("files: read_regular_file reads up to its cap and refuses a larger file before reading it") {
  ScratchFolder folder;
  REQUIRE(folder.ok());
  const std::string path = folder.at("text.txt");
  const std::string text(1000, 'x');
  write_plain_file(path, text);

  lamina::Result<std::string> at_cap = lamina::read_regular_file(path, 1000);
  REQUIRE_MESSAGE(at_cap.ok(), outcome_of(at_cap));
  CHECK(*at_cap == text);
  lamina::Result<std::string> over = lamina::read_regular_file(path, 999);
  REQUIRE_FALSE(over.ok());
  CHECK(over.error().code == lamina::ErrorCode::unsupported);
  CHECK(over.error().message == path + ": 1000 bytes is larger than the 999 bytes this reader accepts");

  const std::string empty = folder.at("empty.txt");
  write_plain_file(empty, "");
  lamina::Result<std::string> nothing = lamina::read_regular_file(empty, 0);
  REQUIRE_MESSAGE(nothing.ok(), outcome_of(nothing));
  CHECK(nothing->empty());

  // A sparse 1.2 GiB file: refused from its size alone, at once (reading it would take seconds).
  const std::string huge = folder.at("huge.bin");
  const int descriptor = ::open(huge.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  REQUIRE(descriptor >= 0);
  const bool sized = ::ftruncate(descriptor, static_cast<off_t>(1288490189)) == 0;
  ::close(descriptor);
  REQUIRE(sized);
  lamina::Result<std::string> too_big = lamina::read_regular_file(huge, std::size_t{64} << 20);
  REQUIRE_FALSE(too_big.ok());
  CHECK(too_big.error().message == huge + ": 1.2 GiB is larger than the 64 MiB this reader accepts");
}

TEST_CASE("files: sizes in messages") {
  using lamina::detail::describe_byte_count;
  CHECK(describe_byte_count(0) == "0 bytes");
  CHECK(describe_byte_count(1) == "1 byte");
  CHECK(describe_byte_count(1023) == "1023 bytes");
  CHECK(describe_byte_count(1024) == "1 KiB");
  CHECK(describe_byte_count(1536) == "1.5 KiB");
  CHECK(describe_byte_count(std::uint64_t{64} << 20) == "64 MiB");
  CHECK(describe_byte_count(1288490189) == "1.2 GiB");
}

TEST_CASE("files: the writers refuse a FIFO, a device node, a directory and odd links as their path, and leave them as they were") {
  ScratchFolder folder;
  REQUIRE(folder.ok());
  const std::string fifo = folder.at("out.fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const std::string directory = folder.at("out.dir");
  REQUIRE(::mkdir(directory.c_str(), 0700) == 0);
  const std::string link_to_fifo = folder.at("fifo.link");
  REQUIRE(::symlink("out.fifo", link_to_fifo.c_str()) == 0);
  const std::string dangling = folder.at("dangling.link");
  REQUIRE(::symlink("nothing-here", dangling.c_str()) == 0);
  // As root, a device node of our own with /dev/null's numbers: never the real /dev/null or /dev/full.
  const std::string device = folder.at("out.device");
  const bool have_device = ::geteuid() == 0 && ::mknod(device.c_str(), S_IFCHR | 0600, makedev(1, 3)) == 0;
  if (!have_device) MESSAGE("not root (or mknod refused): the character-device case is skipped");

  // In a child: a writer that regressed to opening the FIFO would block.
  const ChildOutcome outcome = run_in_child([&]() {
    std::vector<std::string> lines;
    for (const NamedWriter& writer : all_writers()) {
      lines.push_back(outcome_of(writer.write(fifo)));
      lines.push_back(outcome_of(writer.write(directory)));
      lines.push_back(outcome_of(writer.write(link_to_fifo)));
      lines.push_back(outcome_of(writer.write(dangling)));
      lines.push_back(have_device ? outcome_of(writer.write(device)) : device + ": not a regular file (a character device)");
    }
    return lines;
  });
  REQUIRE_MESSAGE(outcome.finished, "a writer blocked on a FIFO (or crashed)");
  REQUIRE(outcome.lines.size() == 5 * all_writers().size());
  for (std::size_t w = 0; w < all_writers().size(); ++w) {
    INFO(all_writers()[w].name);
    const std::string* line = &outcome.lines[5 * w];
    CHECK(line[0] == fifo + ": not a regular file (a FIFO); an output must be a new path or a regular file");
    CHECK(line[1] == directory + ": not a regular file (a directory); an output must be a new path or a regular file");
    CHECK(line[2] == link_to_fifo + ": a symbolic link to a FIFO, not to a regular file; an output must be a new path or a regular file");
    CHECK(contains_text(line[3], dangling + ": a symbolic link that leads nowhere"));
    CHECK(contains_text(line[4], device + ": not a regular file (a character device)"));
  }
  // check_output_path: the same verdict, and it creates nothing.
  CHECK(outcome_of(lamina::check_output_path(fifo)) == outcome.lines[0]);
  CHECK(outcome_of(lamina::check_output_path(link_to_fifo)) == outcome.lines[2]);
  CHECK(outcome_of(lamina::check_output_path(folder.at("new.bin"))) == "ok");
  CHECK(kind_of(folder.at("new.bin")) == 0);
  CHECK(kind_of(fifo) == S_IFIFO);
  CHECK(kind_of(directory) == S_IFDIR);
  CHECK(kind_of(link_to_fifo) == S_IFLNK);
  CHECK(kind_of(dangling) == S_IFLNK);
  if (have_device) {
    struct stat info;
    REQUIRE(::lstat(device.c_str(), &info) == 0);
    CHECK(S_ISCHR(info.st_mode));
    CHECK(info.st_rdev == makedev(1, 3));
  }
  CHECK(folder.leftover_temporaries().empty());
}

TEST_CASE("files: a PATH.partial someone left behind is never touched") {
  ScratchFolder folder;
  REQUIRE(folder.ok());
  const ChildOutcome outcome = run_in_child([&]() {
    std::vector<std::string> lines;
    for (std::size_t w = 0; w < all_writers().size(); ++w) {
      const std::string beside_fifo = folder.at("fifo-" + std::to_string(w) + ".out");
      const std::string beside_file = folder.at("file-" + std::to_string(w) + ".out");
      if (::mkfifo((beside_fifo + ".partial").c_str(), 0600) != 0) return std::vector<std::string>{"mkfifo failed"};
      write_plain_file(beside_file + ".partial", "keep");
      lines.push_back(outcome_of(all_writers()[w].write(beside_fifo)));
      lines.push_back(outcome_of(all_writers()[w].write(beside_file)));
    }
    return lines;
  });
  REQUIRE_MESSAGE(outcome.finished, "a writer blocked on PATH.partial, a FIFO (or crashed)");
  REQUIRE(outcome.lines.size() == 2 * all_writers().size());
  for (std::size_t w = 0; w < all_writers().size(); ++w) {
    INFO(all_writers()[w].name);
    const std::string beside_fifo = folder.at("fifo-" + std::to_string(w) + ".out");
    const std::string beside_file = folder.at("file-" + std::to_string(w) + ".out");
    CHECK(outcome.lines[2 * w] == "ok");
    CHECK(outcome.lines[2 * w + 1] == "ok");
    CHECK(kind_of(beside_fifo + ".partial") == S_IFIFO);
    CHECK(read_plain_file(beside_file + ".partial") == "keep");
    CHECK(kind_of(beside_fifo) == S_IFREG);
    CHECK(read_plain_file(beside_fifo) == read_plain_file(beside_file));
  }
  CHECK(lamina::gguf::File::open(folder.at("file-1.out")).ok());
  CHECK(lamina::safetensors::File::open(folder.at("file-2.out")).ok());
  CHECK(lamina::gguf::File::open(folder.at("file-3.out")).ok());
  CHECK(folder.leftover_temporaries().empty());
}

TEST_CASE("files: a write error (EFBIG) is reported with the path and leaves neither the file nor a temporary") {
  ScratchFolder folder;
  REQUIRE(folder.ok());
  const std::string fresh = folder.at("fresh.bin");
  const std::string existing = folder.at("existing.bin");
  write_plain_file(existing, "old contents");
  const ChildOutcome outcome = run_in_child([&]() {
    // Files of this process may not grow past 4 KiB; with SIGXFSZ ignored, write() fails with EFBIG.
    struct rlimit limit;
    limit.rlim_cur = 4096;
    limit.rlim_max = 4096;
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return std::vector<std::string>{"setrlimit failed"};
    ::signal(SIGXFSZ, SIG_IGN);
    const std::vector<float> big(16384, 0.5f);  // 64 KiB
    std::vector<std::string> lines;
    lines.push_back(outcome_of(lamina::write_regular_file(fresh, big.data(), big.size() * sizeof(float))));
    lines.push_back(outcome_of(lamina::write_regular_file(existing, big.data(), big.size() * sizeof(float))));
    lamina::gguf::Writer writer;
    lamina::Result<void> added = writer.add_tensor("big", lamina::DType::f32, {128, 128}, big.data(), big.size() * sizeof(float));
    lines.push_back(added.ok() ? outcome_of(writer.write_file(fresh)) : added.error().message);
    lines.push_back(outcome_of(lamina::safetensors::write(fresh, {{"big", lamina::DType::f32, {128, 128}, big.data()}}, {})));
    lamina::gguf::StreamWriter stream;
    lamina::Result<void> streamed = stream.declare_tensor("big", lamina::DType::f32, {128, 128});
    if (streamed) streamed = stream.open(fresh);
    if (streamed) streamed = stream.write_tensor(big.data(), big.size() * sizeof(float));
    if (streamed) streamed = stream.finish();
    lines.push_back(outcome_of(streamed));
    return lines;
  });
  REQUIRE(outcome.finished);
  REQUIRE(outcome.lines.size() == 5);
  const std::string too_large = std::strerror(EFBIG);
  CHECK(outcome.lines[0] == fresh + ": cannot write: " + too_large);
  CHECK(outcome.lines[1] == existing + ": cannot write: " + too_large);
  for (std::size_t i = 2; i < outcome.lines.size(); ++i) CHECK(outcome.lines[i] == fresh + ": cannot write: " + too_large);
  CHECK(kind_of(fresh) == 0);
  CHECK(read_plain_file(existing) == "old contents");
  CHECK(folder.leftover_temporaries().empty());
}

TEST_CASE("files: a write replaces a regular file, follows a link to one, and a file given up leaves nothing") {
  ScratchFolder folder;
  REQUIRE(folder.ok());
  const std::string path = folder.at("replace.bin");
  write_plain_file(path, "old contents, longer than the new ones");
  lamina::Result<void> written = lamina::write_regular_file(path, "new", 3);
  REQUIRE_MESSAGE(written.ok(), outcome_of(written));
  CHECK(read_plain_file(path) == "new");
  // The mode is the umask's, as fopen("wb") gave, not mkstemp's 0600.
  const mode_t mask = ::umask(022);
  ::umask(mask);
  struct stat info;
  REQUIRE(::stat(path.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == (0666 & ~mask));

  // A link to a regular file: the file gets the new contents, the link stays a link.
  const std::string target = folder.at("target.bin");
  const std::string link = folder.at("link.bin");
  write_plain_file(target, "old");
  REQUIRE(::symlink("target.bin", link.c_str()) == 0);
  written = lamina::write_regular_file(link, "through the link", 16);
  REQUIRE_MESSAGE(written.ok(), outcome_of(written));
  CHECK(kind_of(link) == S_IFLNK);
  CHECK(read_plain_file(target) == "through the link");

  // Given up (destroyed without commit): the path keeps what it had, the temporary is gone.
  std::string temporary;
  {
    lamina::Result<lamina::OutputFile> output = lamina::OutputFile::create(path);
    REQUIRE_MESSAGE(output.ok(), outcome_of(output));
    temporary = output->temporary_path();
    CHECK(temporary.rfind(path + ".partial-", 0) == 0);
    CHECK(kind_of(temporary) == S_IFREG);
    REQUIRE(output->write("never seen", 10).ok());
  }
  CHECK(kind_of(temporary) == 0);
  CHECK(read_plain_file(path) == "new");

  // After commit the file is closed: another write is a state error, not a crash.
  lamina::Result<lamina::OutputFile> output = lamina::OutputFile::create(path);
  REQUIRE(output.ok());
  REQUIRE(output->commit().ok());
  CHECK(read_plain_file(path).empty());
  lamina::Result<void> late = output->write("x", 1);
  REQUIRE_FALSE(late.ok());
  CHECK(late.error().code == lamina::ErrorCode::invalid_state);
  CHECK(lamina::OutputFile::create("").error().code == lamina::ErrorCode::invalid_argument);
  CHECK(contains_text(outcome_of(lamina::write_regular_file(folder.at("no-such-folder/x.bin"), "x", 1)),
                      "cannot create a temporary file beside it"));
  CHECK(folder.leftover_temporaries().empty());
}

#endif  // !_WIN32
