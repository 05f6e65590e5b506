// lamina_bench_frame_budget — generation inside a game's frame loop: 60 frames a second, each
// giving lamina BUDGET milliseconds (Generator::step), four characters (sequences) each with an
// adapter stack of its own, until every one has read its prompt and said its line.
//
// Prints the time of each step call (p50, p99, max), how far calls went past the budget, and the
// tokens per second achieved, once with the session's own thread pool and once with a host job
// system plugged in through lamina::Executor (a pool of workers that the frame's thread helps,
// as game engines have). The last line is one JSON object with the figures of the first run and,
// under "host_executor", those of the second.
//
// usage: lamina_bench_frame_budget MODEL.gguf [ADAPTER ...] [--budget-ms B] [--threads T]
//        [--prompt-tokens N] [--tokens N] [--host-spin-us S]
// ADAPTERs are GGUF adapter files or PEFT directories (lamina synth --lora-for MODEL -o A.gguf
// writes random ones; models/demo/adapters/* fit the demo model). Sequence i gets adapter i mod
// count, the last sequence a stack of two (the second at scale -0.5); without adapters every
// stack is empty.
#include <lamina/adapters/peft.hpp>
#include <lamina/lamina.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

int fail_with(const std::string& message) {
  std::fprintf(stderr, "lamina_bench_frame_budget: %s\n", message.c_str());
  return 1;
}

// A game engine's job system in miniature: worker threads that sleep until a job is posted; the
// posting thread takes part and returns when every task ran. One job at a time, as lamina posts.
// With `spin` > 0 a worker that finished a job watches for the next one that long before it
// sleeps, and the posting thread watches as long for the last tasks to finish before it sleeps,
// as most engines' job systems do. A forward pass posts a few hundred jobs, and a thread woken
// from sleep can take long to run again (on a virtual machine up to milliseconds): with workers
// that sleep at once, the posting thread does nearly all the work. lamina's own pool spins for
// 20000 yields (milliseconds) before its workers sleep.
class HostJobSystem final : public lamina::Executor {
 public:
  HostJobSystem(std::size_t threads, std::chrono::microseconds spin) : spin_(spin) {
    for (std::size_t i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~HostJobSystem() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quitting_ = true;
    }
    wake_.notify_all();
    for (std::thread& worker : workers_) worker.join();
  }
  std::size_t concurrency() const override { return workers_.size() + 1; }
  void run(std::size_t count, lamina::TaskRef task) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      count_ = count;
      next_.store(0);
      unfinished_.store(count);
      ++job_;
      posted_.store(job_);
    }
    wake_.notify_all();
    run_tasks(task, count);
    // Every task ran, and no worker still holds this job (one that took it late would otherwise
    // run the next job's tasks with this job's function).
    const Clock::time_point until = Clock::now() + spin_;
    while ((unfinished_.load() != 0 || busy_workers_.load() != 0) && Clock::now() < until) std::this_thread::yield();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return unfinished_.load() == 0 && busy_workers_ == 0; });
    task_ = nullptr;
  }

 private:
  void run_tasks(lamina::TaskRef& task, std::size_t count) {
    for (std::size_t i = next_.fetch_add(1); i < count; i = next_.fetch_add(1)) {
      task(i);
      if (unfinished_.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_all();
      }
    }
  }
  void work() {
    std::uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    while (true) {
      if (spin_.count() > 0 && job_ == seen && !quitting_) {
        lock.unlock();
        const Clock::time_point until = Clock::now() + spin_;
        while (posted_.load() == seen && Clock::now() < until) std::this_thread::yield();
        lock.lock();
      }
      wake_.wait(lock, [&] { return quitting_ || job_ != seen; });
      if (quitting_) return;
      seen = job_;
      lamina::TaskRef* task = task_;
      const std::size_t count = count_;
      if (task == nullptr) continue;
      ++busy_workers_;
      lock.unlock();
      run_tasks(*task, count);
      lock.lock();
      if (--busy_workers_ == 0) done_.notify_all();
    }
  }

  std::chrono::microseconds spin_;
  std::atomic<std::uint64_t> posted_{0};  // job_, for the spinning workers to read without the lock
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  lamina::TaskRef* task_ = nullptr;
  std::size_t count_ = 0;
  std::uint64_t job_ = 0;
  std::atomic<std::size_t> busy_workers_{0};  // workers inside run_tasks() of the current job (changed under the lock)
  std::atomic<std::size_t> next_{0}, unfinished_{0};
  bool quitting_ = false;
};

struct Figures {
  double p50_ms = 0, p99_ms = 0, max_ms = 0, mean_ms = 0;
  double tokens_per_second = 0, prompt_tokens_per_second = 0, generated_tokens_per_second = 0;
  std::size_t frames = 0, steps = 0, prompt_tokens = 0, generated_tokens = 0, passes = 0;
  std::size_t over[5] = {};  // steps past the budget by: ≤10%, ≤25%, ≤50%, ≤100%, more
  double seconds = 0;
};

double percentile(std::vector<double> values, double fraction) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t index = static_cast<std::size_t>(fraction * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

// One run of the frame loop on a fresh session: the four requests from start to end.
lamina::Result<Figures> run_frames(const std::shared_ptr<const lamina::Model>& model, const std::vector<lamina::AdapterStack>& stacks,
                                   const std::vector<std::vector<lamina::Token>>& prompts, std::size_t tokens, double budget_ms,
                                   std::uint32_t threads, lamina::Executor* executor) {
  lamina::SessionParams params;
  params.sequence_count = static_cast<std::uint32_t>(stacks.size());
  params.context_length = 1024;
  params.thread_count = threads;
  params.executor = executor;
  params.sampling.temperature = 0.8f;
  params.sampling.seed = 7;
  lamina::Result<lamina::Session> created = lamina::Session::create(model, params);
  if (!created) return created.take_error();
  lamina::Session& session = *created;
  lamina::Generator generator(session);
  for (std::size_t s = 0; s < stacks.size(); ++s) {
    LAMINA_TRY(session.set_adapters(stacks[s], static_cast<lamina::SequenceId>(s)));
    lamina::GenerateOptions options;
    options.sequence = static_cast<lamina::SequenceId>(s);
    options.max_tokens = tokens;
    options.stop_at_end_of_generation = false;
    LAMINA_TRY(generator.start(prompts[s], options));
  }
  const auto budget = std::chrono::microseconds(static_cast<std::int64_t>(budget_ms * 1000));
  const auto frame = std::chrono::microseconds(16667);  // 60 frames a second
  std::vector<double> step_ms;
  Figures figures;
  const Clock::time_point start = Clock::now();
  Clock::time_point next_frame = start;
  while (!generator.idle()) {
    const Clock::time_point step_start = Clock::now();
    lamina::Result<lamina::StepReport> report = generator.step(budget);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - step_start).count();
    if (!report) return report.take_error();
    step_ms.push_back(ms);
    figures.prompt_tokens += report->prompt_tokens;
    figures.generated_tokens += report->generated_tokens;
    figures.passes += report->passes_finished;
    const double over = ms / budget_ms - 1;
    if (over > 0) ++figures.over[over <= 0.10 ? 0 : over <= 0.25 ? 1 : over <= 0.5 ? 2 : over <= 1.0 ? 3 : 4];
    ++figures.frames;
    next_frame += frame;  // the rest of the frame belongs to the game
    std::this_thread::sleep_until(next_frame);
  }
  figures.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  figures.steps = step_ms.size();
  figures.p50_ms = percentile(step_ms, 0.50);
  figures.p99_ms = percentile(step_ms, 0.99);
  figures.max_ms = step_ms.empty() ? 0 : *std::max_element(step_ms.begin(), step_ms.end());
  double sum = 0;
  for (double ms : step_ms) sum += ms;
  figures.mean_ms = step_ms.empty() ? 0 : sum / static_cast<double>(step_ms.size());
  figures.prompt_tokens_per_second = static_cast<double>(figures.prompt_tokens) / figures.seconds;
  figures.generated_tokens_per_second = static_cast<double>(figures.generated_tokens) / figures.seconds;
  figures.tokens_per_second = figures.prompt_tokens_per_second + figures.generated_tokens_per_second;
  return figures;
}

void print_figures(const char* title, const Figures& f, double budget_ms) {
  std::printf("%s\n", title);
  std::printf("  %zu frames in %.2f s; step: p50 %.3f ms, p99 %.3f ms, max %.3f ms, mean %.3f ms (budget %.2f ms)\n", f.frames,
              f.seconds, f.p50_ms, f.p99_ms, f.max_ms, f.mean_ms, budget_ms);
  std::printf("  past the budget: %zu steps by <=10%%, %zu by <=25%%, %zu by <=50%%, %zu by <=100%%, %zu by more (of %zu)\n", f.over[0],
              f.over[1], f.over[2], f.over[3], f.over[4], f.steps);
  std::printf("  %.1f tokens/s: %zu prompt tokens (%.1f/s), %zu generated (%.1f/s), in %zu forward passes (%.1f tokens each)\n",
              f.tokens_per_second, f.prompt_tokens, f.prompt_tokens_per_second, f.generated_tokens, f.generated_tokens_per_second, f.passes,
              f.passes == 0 ? 0.0 : static_cast<double>(f.prompt_tokens + f.generated_tokens) / static_cast<double>(f.passes));
}

std::string json_figures(const Figures& f) {
  char text[512];
  std::snprintf(text, sizeof text,
                "\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f,\"mean_ms\":%.4f,\"tokens_per_second\":%.2f,"
                "\"prompt_tokens\":%zu,\"generated_tokens\":%zu,\"passes\":%zu,\"frames\":%zu,\"over_budget\":[%zu,%zu,%zu,%zu,%zu]",
                f.p50_ms, f.p99_ms, f.max_ms, f.mean_ms, f.tokens_per_second, f.prompt_tokens, f.generated_tokens, f.passes, f.frames, f.over[0],
                f.over[1], f.over[2], f.over[3], f.over[4]);
  return text;
}

std::string json_escaped(const std::string& text) {
  std::string escaped;
  for (char c : text) {
    if (c == '"' || c == '\\') escaped += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) escaped += c;
  }
  return escaped;
}

bool parse_number(const char* text, double low, double high, double& value) {
  char* end = nullptr;
  value = std::strtod(text, &end);
  return end != text && *end == '\0' && value >= low && value <= high;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path;
  std::vector<std::string> adapter_paths;
  double budget_ms = 4, threads = 2, prompt_tokens = 48, tokens = 24, host_spin_us = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string argument = argv[i];
    double* number = argument == "--budget-ms"       ? &budget_ms
                     : argument == "--threads"       ? &threads
                     : argument == "--prompt-tokens" ? &prompt_tokens
                     : argument == "--tokens"        ? &tokens
                     : argument == "--host-spin-us"  ? &host_spin_us
                                                     : nullptr;
    if (number != nullptr) {
      const double high = number == &budget_ms ? 1000 : number == &threads ? 256 : number == &host_spin_us ? 10000 : 4096;
      const double low = number == &budget_ms ? 0.05 : number == &threads ? 1 : 0;
      if (i + 1 >= argc || !parse_number(argv[i + 1], low, high, *number)) {
        return fail_with(argument + " needs a number in [" + std::to_string(low) + ", " + std::to_string(high) + "]");
      }
      ++i;
    } else if (!argument.empty() && argument[0] == '-') {
      return fail_with("unknown option " + argument +
                       "\nusage: lamina_bench_frame_budget MODEL.gguf [ADAPTER ...] [--budget-ms B] [--threads T] [--prompt-tokens N] [--tokens N] [--host-spin-us S]");
    } else if (model_path.empty()) {
      model_path = argument;
    } else {
      adapter_paths.push_back(argument);
    }
  }
  if (model_path.empty()) return fail_with("usage: lamina_bench_frame_budget MODEL.gguf [ADAPTER ...] [--budget-ms B] [--threads T]");

  lamina::ModelParams model_params;
  model_params.touch_pages = true;  // no page faults in the measured frames
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(model_path, model_params);
  if (!model) return fail_with(model.error().message);
  if (!(*model)->has_tokenizer()) return fail_with(model_path + " has no tokenizer");
  std::vector<std::shared_ptr<const lamina::LoraAdapter>> adapters;
  for (const std::string& path : adapter_paths) {
    lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> adapter = lamina::peft::load_adapter(**model, path);
    if (!adapter) return fail_with(adapter.error().message);
    adapters.push_back(*adapter);
  }
  constexpr std::size_t sequences = 4;
  std::vector<lamina::AdapterStack> stacks(sequences);
  if (!adapters.empty()) {
    for (std::size_t s = 0; s < sequences; ++s) stacks[s].push_back({adapters[s % adapters.size()], 1.0f});
    stacks[sequences - 1].push_back({adapters[(sequences) % adapters.size()], -0.5f});
  }
  // Prompts of random ids (fixed seed), different lengths per character.
  std::vector<std::vector<lamina::Token>> prompts(sequences);
  std::uint64_t state = 12345;
  const std::uint32_t vocab = (*model)->hparams().vocab_size;
  for (std::size_t s = 0; s < sequences; ++s) {
    const std::size_t length = static_cast<std::size_t>(prompt_tokens) * (2 + s) / 3;
    for (std::size_t i = 0; i < length; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      prompts[s].push_back(static_cast<lamina::Token>(3 + (state >> 33) % (vocab - 3)));
    }
  }
  std::printf("%s: %zu sequences (prompts of %zu..%zu tokens, %zu tokens each to generate), %zu adapters, budget %.2f ms per frame at 60 fps, %d threads\n",
              model_path.c_str(), sequences, prompts.front().size(), prompts.back().size(), static_cast<std::size_t>(tokens), adapters.size(),
              budget_ms, static_cast<int>(threads));

  lamina::Result<Figures> own = run_frames(*model, stacks, prompts, static_cast<std::size_t>(tokens), budget_ms, static_cast<std::uint32_t>(threads), nullptr);
  if (!own) return fail_with(own.error().message);
  print_figures("the session's own thread pool:", *own, budget_ms);
  HostJobSystem jobs(static_cast<std::size_t>(threads), std::chrono::microseconds(static_cast<std::int64_t>(host_spin_us)));
  lamina::Result<Figures> host = run_frames(*model, stacks, prompts, static_cast<std::size_t>(tokens), budget_ms, static_cast<std::uint32_t>(threads), &jobs);
  if (!host) return fail_with(host.error().message);
  const std::string host_title = "the host's job system (lamina::Executor), workers spinning " + std::to_string(static_cast<int>(host_spin_us)) +
                                 " us before they sleep:";
  print_figures(host_title.c_str(), *host, budget_ms);
  std::printf("{\"model\":\"%s\",\"threads\":%d,\"budget_ms\":%.3f,\"sequences\":%zu,%s,\"host_executor\":{\"spin_us\":%d,%s}}\n",
              json_escaped(model_path).c_str(), static_cast<int>(threads), budget_ms, sequences, json_figures(*own).c_str(),
              static_cast<int>(host_spin_us), json_figures(*host).c_str());
  return 0;
}
