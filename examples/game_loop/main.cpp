// game_loop — three characters of a game talk at the same time, each with LoRA adapters of its
// own on one shared model, inside a 60 fps frame loop that lends lamina a few ms of every frame.
//
//   game_loop [MODEL] [--budget-ms B] [--frames N] [--save-dir DIR] [--resume]
//     --budget-ms B   lamina's share of each frame, in ms (4)
//     --frames N      no new words after frame N (1200: 20 s); the run ends sooner once all is said
//     --save-dir DIR  where the characters are saved at the end (lamina-game-loop in the temp folder)
//     --resume        start from the characters saved in DIR instead of from the scene
//
//   cmake --build build --target lamina_game_loop
//   build/examples/game_loop/game_loop            # the demo model
//   build/examples/game_loop/game_loop --resume   # the same characters, going on where they stopped
//
// MODEL is models/demo/fortunes-demo.gguf unless given; the adapters are read from the adapters/
// folder beside it. What a game would take from here:
//  - one Model and one Session for every character: a sequence and an adapter stack each;
//  - the scene read once, while loading, and copied to every character (Session::copy_prefix);
//  - lamina's parallel loops run on the game's own job system (SessionParams::executor);
//  - Generator::step(budget) once a frame, after the game's own work;
//  - each character's memory saved at the end, and restored by the next run.
#include <lamina/adapters/peft.hpp>  // the demo adapters are PEFT folders; GGUF ones need only lamina.hpp
#include <lamina/lamina.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#ifndef GAME_LOOP_DEMO_MODEL  // CMake gives the repository's path; built by hand, run from the repository root
#  define GAME_LOOP_DEMO_MODEL "models/demo/fortunes-demo.gguf"
#endif

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// A game engine's job system in miniature: workers that sleep until a job is posted. lamina posts
// one job at a time, "run task(i) for every i in [0, count)", and run() returns when all of them
// are done; the posting thread takes tasks too instead of waiting idle.
class JobSystem final : public lamina::Executor {
 public:
  explicit JobSystem(std::size_t threads) {
    for (std::size_t i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~JobSystem() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quitting_ = true;
    }
    job_posted_.notify_all();
    for (std::thread& worker : workers_) worker.join();
  }
  std::size_t concurrency() const override { return workers_.size() + 1; }
  void run(std::size_t count, lamina::TaskRef task) override {
    std::unique_lock<std::mutex> lock(mutex_);
    task_ = &task;
    count_ = count;
    next_ = finished_ = 0;
    job_posted_.notify_all();
    take_tasks(lock);
    job_done_.wait(lock, [&] { return finished_ == count_; });
    task_ = nullptr;  // `task` lives on this call's stack: no worker may touch it once we return
  }

 private:
  // Runs tasks of the posted job while any are left; the lock is held only between tasks.
  void take_tasks(std::unique_lock<std::mutex>& lock) {
    while (task_ != nullptr && next_ < count_) {
      const std::size_t index = next_++;
      const lamina::TaskRef task = *task_;
      lock.unlock();
      task(index);
      lock.lock();
      if (++finished_ == count_) job_done_.notify_all();
    }
  }
  void work() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!quitting_) {
      job_posted_.wait(lock, [&] { return quitting_ || (task_ != nullptr && next_ < count_); });
      take_tasks(lock);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable job_posted_, job_done_;
  lamina::TaskRef* task_ = nullptr;  // the job being run, or null
  std::size_t count_ = 0, next_ = 0, finished_ = 0;
  bool quitting_ = false;
};

// lamina-game-loop in the temporary folder (in the current folder when there is none).
std::string default_save_dir() {
  std::error_code no_temp_folder;
  return (fs::temp_directory_path(no_temp_folder) / "lamina-game-loop").string();
}

struct Options {
  std::string model = GAME_LOOP_DEMO_MODEL;
  double budget_ms = 4;
  unsigned long frames = 1200;
  std::string save_dir = default_save_dir();
  bool resume = false;
};

// Reads the command line into `options`; returns what is wrong with it, or "".
std::string parse_arguments(int argc, char** argv, Options& options) {
  bool model_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string argument = argv[i];
    const bool takes_value = argument == "--budget-ms" || argument == "--frames" || argument == "--save-dir";
    if (takes_value && i + 1 == argc) return argument + " needs a value";
    const std::string value = takes_value ? argv[++i] : "";
    char* end = nullptr;
    if (argument == "--resume") {
      options.resume = true;
    } else if (argument == "--save-dir") {
      options.save_dir = value;
    } else if (argument == "--budget-ms") {
      options.budget_ms = std::strtod(value.c_str(), &end);
      if (*end != '\0' || !(options.budget_ms > 0 && options.budget_ms <= 1000)) {
        return "--budget-ms wants (0, 1000], not '" + value + "'";
      }
    } else if (argument == "--frames") {
      options.frames = std::strtoul(value.c_str(), &end, 10);
      if (value.find_first_not_of("0123456789") != std::string::npos || options.frames == 0 || options.frames > 1000000) {
        return "--frames wants a count in [1, 1000000], not '" + value + "'";
      }
    } else if (argument[0] == '-' || model_given) {
      return "unexpected argument '" + argument + "'";
    } else {
      options.model = argument;
      model_given = true;
    }
  }
  return "";
}

// Prints the error of a lamina call that failed (main() then returns 1).
template <class T>
bool failed(const lamina::Result<T>& result) {
  if (!result) std::fprintf(stderr, "game_loop: %s\n", result.error().message.c_str());
  return !result;
}

struct Character {
  Character(const char* name, lamina::AdapterStack adapters) : name(name), adapters(std::move(adapters)) {}
  std::string name;
  lamina::AdapterStack adapters;
  std::string unprinted;       // of the line it is saying: the words not printed yet
  bool talking = false;
  std::size_t lines_said = 0;  // in this run
  std::size_t tokens_said = 0;
};

// Every character begins its n-th line with the n-th opener: the same words for the three, so
// that what follows shows their adapters.
const char* const openers[] = {"I think", "The trouble with"};
constexpr std::size_t lines_per_run = sizeof openers / sizeof openers[0];

}  // namespace

int main(int argc, char** argv) {
  Options options;
  const std::string bad_arguments = parse_arguments(argc, argv, options);
  if (!bad_arguments.empty()) {
    std::fprintf(stderr, "game_loop: %s (usage: game_loop [MODEL] [--budget-ms B] [--frames N] [--save-dir DIR] [--resume])\n",
                 bad_arguments.c_str());
    return 2;
  }

  // --- loading screen: the model, the adapters, one session for everybody ----------------------
  auto model = lamina::Model::load(options.model);
  if (failed(model)) return 1;
  const fs::path adapter_folder = fs::path(options.model).parent_path() / "adapters";
  auto computers = lamina::peft::load_adapter(**model, (adapter_folder / "computers").string());
  auto startrek = lamina::peft::load_adapter(**model, (adapter_folder / "startrek").string());
  if (failed(computers) || failed(startrek)) return 1;
  // Sequence i is character i. The third stacks both adapters: a programmer like the first, with
  // half of the second one's taste for starships taken out (a negative scale).
  std::vector<Character> characters = {{"Hacker", {{*computers, 1.0f}}},
                                       {"Captain", {{*startrek, 1.0f}}},
                                       {"Skeptic", {{*computers, 1.0f}, {*startrek, -0.5f}}}};
  const lamina::SequenceId character_count = static_cast<lamina::SequenceId>(characters.size());

  JobSystem jobs(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  lamina::SessionParams params;
  params.sequence_count = static_cast<std::uint32_t>(character_count);
  params.context_length = 2048;  // KV cells shared by the three: room for a few resumed runs
  params.executor = &jobs;       // lamina starts no threads: its parallel loops are our jobs
  auto session = lamina::Session::create(*model, params);
  if (failed(session)) return 1;
  auto state_file = [&](lamina::SequenceId who) {
    return (fs::path(options.save_dir) / (characters[who].name + ".state")).string();
  };

  if (options.resume) {
    // A saved state brings back a character's tokens, sampler and adapter stack; the stack's
    // adapters are looked for, by fingerprint, among those given here.
    for (lamina::SequenceId who = 0; who < character_count; ++who) {
      if (failed(session->restore_sequence_from_file(state_file(who), who, {*computers, *startrek}))) return 1;
      std::printf("%s remembers %d tokens\n", characters[who].name.c_str(), session->position(who));
    }
  } else {
    // The scene is read once, by the base model on sequence 0 before anyone has adapters, then
    // copied to the others; each character's adapters apply from its own first word on.
    const char* scene = "Three travellers shared a table in the bar of a starship, far from home.";
    if (failed(session->feed_text(scene, 0))) return 1;
    for (lamina::SequenceId who = 0; who < character_count; ++who) {
      if (who > 0 && failed(session->copy_prefix(0, who, session->position(0)))) return 1;
      if (failed(session->set_adapters(characters[who].adapters, who))) return 1;
    }
    std::printf("scene, %d tokens read once: %s\n", session->position(0), scene);
  }
  std::printf("%.2f ms a frame for lamina, on a job system of %zu threads\n\n", options.budget_ms, jobs.concurrency());

  // --- the frame loop ------------------------------------------------------------------------
  const lamina::Tokenizer& tokenizer = (*model)->tokenizer();
  lamina::Generator generator(*session);
  std::size_t frame = 0;
  // Words arrive a token at a time, in the middle of a step; they are printed a whole line at a
  // time so that the three characters never interleave within a line.
  auto print_line = [&frame](const Character& character, const std::string& text) {
    std::printf("[frame %4zu] %-8s %s\n", frame, character.name.c_str(), text.c_str());
  };
  auto start_line = [&](lamina::SequenceId who) -> lamina::Result<void> {
    Character& character = characters[who];
    const char* opener = openers[character.lines_said];
    // The model learned quotations that each end with an end-of-text token, so a line starts
    // after one, as a new quotation would.
    lamina::EncodeOptions no_bos;
    no_bos.add_bos = 0;
    auto words = tokenizer.encode(opener, no_bos);
    if (!words) return words.take_error();
    if (tokenizer.eos() >= 0) words->insert(words->begin(), tokenizer.eos());
    lamina::GenerateOptions line;
    line.sequence = who;
    line.max_tokens = 40;
    character.unprinted = opener;
    character.talking = true;
    return generator.start(*words, line, [&character, &print_line](std::string_view text) {
      character.unprinted.append(text.data(), text.size());
      for (std::size_t end; (end = character.unprinted.find('\n')) != std::string::npos; character.unprinted.erase(0, end + 1)) {
        print_line(character, character.unprinted.substr(0, end));
      }
      return true;  // false would end this line now
    });
  };

  const auto budget = std::chrono::microseconds(static_cast<long long>(options.budget_ms * 1000));
  const auto frame_time = std::chrono::microseconds(16667);  // 60 frames a second
  std::vector<double> step_ms;
  Clock::time_point next_frame = Clock::now();
  for (;; ++frame) {
    for (lamina::SequenceId who = 0; who < character_count; ++who) {
      if (frame < options.frames && !characters[who].talking && characters[who].lines_said < lines_per_run) {
        if (failed(start_line(who))) return 1;
      }
      if (frame == options.frames) generator.stop(who);  // out of frames: ends once the pass in progress does
    }
    if (generator.idle()) break;  // every line said, or stopped

    std::this_thread::sleep_for(std::chrono::milliseconds(3));  // the game's own work: physics, AI, draw calls

    const Clock::time_point step_start = Clock::now();
    auto report = generator.step(budget);
    step_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - step_start).count());
    if (failed(report)) return 1;

    // The Generator has no "line finished" callback: look at each request after the step.
    for (lamina::SequenceId who = 0; who < character_count; ++who) {
      Character& character = characters[who];
      const lamina::GenerationProgress& progress = generator.progress(who);
      if (!character.talking || !progress.finished) continue;
      const bool cut_off = progress.stop_reason == lamina::StopReason::cancelled ||
                           progress.stop_reason == lamina::StopReason::max_tokens;
      if (!character.unprinted.empty()) print_line(character, character.unprinted + (cut_off ? " [cut off]" : ""));
      character.talking = false;
      character.tokens_said += progress.tokens_generated;
      ++character.lines_said;
    }
    std::fflush(stdout);
    // Sleep through the rest of the frame; after a frame that ran late, start the next one now.
    next_frame = std::max(next_frame + frame_time, Clock::now());
    std::this_thread::sleep_until(next_frame);
  }

  // --- the end: figures, then every character's memory, for --resume ---------------------------
  std::sort(step_ms.begin(), step_ms.end());
  std::printf("\n%zu frames; Generator::step p50 %.2f ms, max %.2f ms (budget %.2f ms)\n", frame,
              step_ms.empty() ? 0.0 : step_ms[step_ms.size() / 2], step_ms.empty() ? 0.0 : step_ms.back(), options.budget_ms);
  for (const Character& character : characters) {
    std::printf("  %-8s %zu tokens generated\n", character.name.c_str(), character.tokens_said);
  }

  std::error_code folder_error;
  fs::create_directories(options.save_dir, folder_error);
  if (folder_error) {
    std::fprintf(stderr, "game_loop: %s: %s\n", options.save_dir.c_str(), folder_error.message().c_str());
    return 1;
  }
  for (lamina::SequenceId who = 0; who < character_count; ++who) {
    if (failed(session->save_sequence_to_file(state_file(who), who))) return 1;
  }
  std::printf("saved in %s; --resume goes on from there\n", options.save_dir.c_str());
  return 0;
}
