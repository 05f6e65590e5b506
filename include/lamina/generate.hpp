// lamina/generate.hpp — the generation loop, for callers who want it done for them: generate().
//
//   lamina::GenerateOptions options;
//   options.max_tokens = 64;
//   options.stop_strings = {"\nUser:"};
//   auto result = lamina::generate(*session, "Once upon a time", options, [](std::string_view text) {
//     std::fwrite(text.data(), 1, text.size(), stdout);  // streamed as it becomes final
//     return true;                                        // false stops early
//   });
//
// generate() feeds a prompt to a Session (session.hpp), then samples and feeds one token at a
// time until max_tokens, an end-of-generation token or a stop string (StopStringMatcher,
// text/sampler.hpp). A caller with a frame loop uses a Generator instead: it advances the
// requests of several sequences within a time budget per call.
//
//   lamina::Generator generator(*session);
//   generator.start(prompt_tokens, options, on_text);        // options.sequence: which one
//   while (!generator.idle()) { generator.step(std::chrono::milliseconds(4)); draw_frame(); }
#pragma once

#include "config.hpp"
#include "core/result.hpp"
#include "model/kv_cache.hpp"
#include "model/model.hpp"
#include "session.hpp"
#include "text/sampler.hpp"
#include "text/token.hpp"
#include "text/tokenizer.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/definitions_begin.inl"

LAMINA_NAMESPACE_BEGIN

struct GenerateOptions {
  std::size_t max_tokens = 128;
  std::vector<std::string> stop_strings;  // generation ends when the text contains one; it is not emitted
  bool stop_at_end_of_generation = true;  // end at EOS / EOT tokens
  SequenceId sequence = 0;
  // A text prompt is plain unless this is set: see EncodeOptions::parse_special. Only for
  // prompts built from trusted templates, never for what a user typed.
  bool parse_special = false;
};

// cancelled: on_text returned false, Session::cancel() was called, or Generator::stop().
enum class StopReason { max_tokens, end_of_generation, stop_string, cancelled };

struct GenerationResult {
  std::vector<Token> tokens;  // generated, including a final end-of-generation token
  std::string text;           // what was streamed, without stop strings
  StopReason stop_reason = StopReason::max_tokens;
  std::size_t prompt_token_count = 0;
  double prompt_seconds = 0;
  double generation_seconds = 0;
};

// Feeds `prompt` to options.sequence, then samples up to max_tokens tokens, streaming their text
// to on_text as it becomes final (text that may be the start of a stop string is held back).
// on_text returns false to stop early. The session keeps everything it saw: call again to continue.
LAMINA_DETAIL_API Result<GenerationResult> generate(Session& session, const std::vector<Token>& prompt, const GenerateOptions& options,
                                                    const std::function<bool(std::string_view)>& on_text = {});
#if LAMINA_DETAIL_DEFINITIONS
LAMINA_DETAIL_API Result<GenerationResult> generate(Session& session, const std::vector<Token>& prompt, const GenerateOptions& options,
                                                    const std::function<bool(std::string_view)>& on_text) {
  if (!session.model().has_tokenizer()) return fail(ErrorCode::invalid_state, "generate: the model was loaded without a tokenizer");
  const Tokenizer& tokenizer = session.model().tokenizer();
  using Clock = std::chrono::steady_clock;
  GenerationResult result;
  result.prompt_token_count = prompt.size();
  const CancelToken cancel = session.cancel_token();  // Session::cancel() ends the loop between tokens too
  const Clock::time_point start = Clock::now();
  // A cancelled feed is a way to end, not an error: the result says so (StopReason::cancelled).
  auto fed = [&](Result<void> feeding) -> Result<bool> {
    if (feeding) return true;
    if (feeding.error().code != ErrorCode::cancelled) return feeding.take_error();
    result.stop_reason = StopReason::cancelled;
    return false;
  };
  if (!prompt.empty()) {
    Result<bool> prompt_fed = fed(session.feed(prompt, options.sequence));
    if (!prompt_fed) return prompt_fed.take_error();
    if (!*prompt_fed) return result;
  }
  const Clock::time_point prompt_done = Clock::now();
  StopStringMatcher stops(options.stop_strings);
  // Room for every token the session can still take and its text, so that the loop below
  // allocates nothing (pieces are string_views into the tokenizer).
  const std::size_t context = session.params().context_length;
  const std::size_t position = session.position(options.sequence);
  const std::size_t most_tokens = std::min<std::size_t>(options.max_tokens, context > position ? context - position : 0);
  result.tokens.reserve(most_tokens);
  result.text.reserve(most_tokens * tokenizer.longest_piece());  // the text is at most the pieces
  bool keep_going = true;
  auto emit = [&](std::string_view text) {
    result.text.append(text.data(), text.size());
    if (on_text && !text.empty() && !on_text(text)) keep_going = false;
  };
  for (std::size_t i = 0; i < options.max_tokens; ++i) {
    Result<Token> token = session.sample(options.sequence);
    if (!token) return token.take_error();
    result.tokens.push_back(*token);
    if (options.stop_at_end_of_generation && tokenizer.is_end_of_generation(*token)) {
      result.stop_reason = StopReason::end_of_generation;
      break;
    }
    const StopMatch match = stops.feed(tokenizer.piece(*token));
    emit(match.text);
    if (match.stopped) {
      result.stop_reason = StopReason::stop_string;
      break;
    }
    if (!keep_going || cancel.cancelled()) {
      result.stop_reason = StopReason::cancelled;
      break;
    }
    // Fed even after the last step, so a later call continues from a consistent state. When
    // this feed is cancelled the session ends before the token (session.position() tells).
    Result<bool> token_fed = fed(session.feed(&result.tokens.back(), 1, options.sequence));
    if (!token_fed) return token_fed.take_error();
    if (!*token_fed) break;
  }
  if (result.stop_reason != StopReason::stop_string) emit(stops.flush());
  result.prompt_seconds = std::chrono::duration<double>(prompt_done - start).count();
  result.generation_seconds = std::chrono::duration<double>(Clock::now() - prompt_done).count();
  return result;
}
#endif

// Same, from text: tokenized as plain text (unless options.parse_special), with BOS when the
// sequence is empty and the model wants one.
LAMINA_DETAIL_API Result<GenerationResult> generate(Session& session, std::string_view prompt, const GenerateOptions& options,
                                                    const std::function<bool(std::string_view)>& on_text = {});
#if LAMINA_DETAIL_DEFINITIONS
LAMINA_DETAIL_API Result<GenerationResult> generate(Session& session, std::string_view prompt, const GenerateOptions& options,
                                                    const std::function<bool(std::string_view)>& on_text) {
  if (!session.model().has_tokenizer()) return fail(ErrorCode::invalid_state, "generate: the model was loaded without a tokenizer");
  EncodeOptions encode_options;
  encode_options.add_bos = session.position(options.sequence) == 0 ? -1 : 0;
  encode_options.parse_special = options.parse_special;
  Result<std::vector<Token>> tokens = session.model().tokenizer().encode(prompt, encode_options);
  if (!tokens) return tokens.take_error();
  return generate(session, *tokens, options, on_text);
}
#endif

// --- Generator: generation in time-budgeted steps, for a frame loop ----------------------------
//
// Each sequence of a session can hold one request: a prompt to feed, then up to max_tokens
// tokens to generate, streamed to its on_text as with generate(). step(budget) works on every
// unfinished request and returns before `budget` is spent: the tokens of all requests go through
// one forward pass (one token of each generating sequence and a share of the prompts of the
// others), run a piece at a time (Session::begin_decode / continue_decode). The pass's size
// follows the measured speed so that each piece takes at most three quarters of the budget; the
// first pass, with nothing measured, holds one token.
struct GenerationProgress {
  std::size_t prompt_tokens_done = 0;
  std::size_t prompt_tokens_total = 0;
  std::size_t tokens_generated = 0;  // sampled and streamed, including a final end-of-generation token
  bool finished = false;
  StopReason stop_reason = StopReason::max_tokens;  // once finished
};

struct StepReport {
  std::size_t prompt_tokens = 0;     // prompt tokens whose pass finished during this step
  std::size_t generated_tokens = 0;  // tokens sampled during this step
  std::size_t passes_finished = 0;
  bool idle = false;                 // nothing left to do: every request is finished
};

class Generator {
 public:
  using TextCallback = std::function<bool(std::string_view)>;

  // The session must outlive the generator, and is driven only by it while a request runs.
  explicit Generator(Session& session);

  // Starts a request on options.sequence, which must have none running: `prompt` is fed after
  // what the sequence holds, then tokens are generated. The text form tokenizes the prompt as
  // generate() does.
  Result<void> start(const std::vector<Token>& prompt, const GenerateOptions& options, TextCallback on_text = {});
  Result<void> start(std::string_view prompt, const GenerateOptions& options, TextCallback on_text = {});

  // Works on every unfinished request for at most `budget`, then returns. Session::cancel()
  // (from any thread) ends every request that was running, with StopReason::cancelled.
  Result<StepReport> step(std::chrono::microseconds budget);

  // Ends the request of `sequence` with StopReason::cancelled (its tokens of a pass in progress
  // are still fed; the sequence holds them).
  void stop(SequenceId sequence);

  // Every request finished (or none started).
  bool idle() const;
  // The request of `sequence`: its progress, and its tokens and text so far. Empty for a
  // sequence that never had one.
  const GenerationProgress& progress(SequenceId sequence) const;
  const GenerationResult& result(SequenceId sequence) const;

 private:
  struct Request {
    bool running = false;                // started and not finished
    std::vector<Token> prompt;
    GenerateOptions options;
    TextCallback on_text;
    StopStringMatcher stops;
    GenerationProgress progress;
    GenerationResult result;
    CancelToken cancel;
    bool has_logits = false;             // the pass with its last token finished: ready to sample
    std::size_t tokens_in_pass = 0;      // of the pass in progress
    bool stop_requested = false;         // stop() during a pass
  };
  Request* request_of(SequenceId sequence);
  void finish(Request& request, StopReason reason);
  // Samples the next token of a generating request, streams it, and says whether to feed it.
  Result<bool> sample_next(Request& request);
  Result<bool> build_pass(double piece_seconds, StepReport& report);
  void pass_done(StepReport& report);

  Session* session_;
  std::vector<Request> requests_;  // [sequence_count]
  Batch batch_;
  std::size_t next_prompt_ = 0;    // the first request served with prompt tokens in the next pass (round robin)
  double build_seconds_ = 0;       // what starting a pass (build_pass) took lately
};

#if LAMINA_DETAIL_DEFINITIONS
LAMINA_DETAIL_API Generator::Generator(Session& session) : session_(&session), requests_(session.params().sequence_count) {
  batch_.tokens.reserve(session.params().batch_size);
  batch_.positions.reserve(session.params().batch_size);
  batch_.sequences.reserve(session.params().batch_size);
  batch_.want_logits.reserve(session.params().batch_size);
}

LAMINA_DETAIL_API Result<void> Generator::start(const std::vector<Token>& prompt, const GenerateOptions& options, TextCallback on_text) {
  if (!session_->model().has_tokenizer()) return fail(ErrorCode::invalid_state, "Generator: the model was loaded without a tokenizer");
  Request* request = request_of(options.sequence);
  if (request == nullptr) {
    return fail(ErrorCode::invalid_argument, "Generator::start: sequence id " + std::to_string(options.sequence) + " is outside [0, " +
                                                 std::to_string(requests_.size()) + ")");
  }
  if (request->running) return fail(ErrorCode::invalid_state, "Generator::start: sequence " + std::to_string(options.sequence) + " already has a request running");
  if (request->tokens_in_pass != 0) return fail(ErrorCode::invalid_state, "Generator::start: sequence " + std::to_string(options.sequence) + " still has tokens in the pass in progress");
  const std::uint32_t vocab = session_->model().hparams().vocab_size;
  for (Token token : prompt) {
    if (token < 0 || static_cast<std::uint32_t>(token) >= vocab) {
      return fail(ErrorCode::invalid_argument, "Generator::start: token id " + std::to_string(token) + " is outside the vocabulary");
    }
  }
  if (prompt.empty() && session_->last_logits(options.sequence) == nullptr) {
    return fail(ErrorCode::invalid_state, "Generator::start: sequence " + std::to_string(options.sequence) + " has no logits yet; give a prompt");
  }
  Request& r = *request;
  r = Request();
  r.running = true;
  r.prompt = prompt;
  r.options = options;
  r.on_text = std::move(on_text);
  r.stops = StopStringMatcher(options.stop_strings);
  r.progress.prompt_tokens_total = prompt.size();
  r.result.prompt_token_count = prompt.size();
  r.result.tokens.reserve(options.max_tokens < 4096 ? options.max_tokens : 4096);
  r.cancel = session_->cancel_token();
  r.has_logits = prompt.empty();
  return success();
}

LAMINA_DETAIL_API Result<void> Generator::start(std::string_view prompt, const GenerateOptions& options, TextCallback on_text) {
  if (!session_->model().has_tokenizer()) return fail(ErrorCode::invalid_state, "Generator: the model was loaded without a tokenizer");
  EncodeOptions encode_options;
  encode_options.add_bos = session_->position(options.sequence) == 0 ? -1 : 0;
  encode_options.parse_special = options.parse_special;
  Result<std::vector<Token>> tokens = session_->model().tokenizer().encode(prompt, encode_options);
  if (!tokens) return tokens.take_error();
  return start(*tokens, options, std::move(on_text));
}

LAMINA_DETAIL_API Generator::Request* Generator::request_of(SequenceId sequence) {
  if (sequence < 0 || static_cast<std::size_t>(sequence) >= requests_.size()) return nullptr;
  return &requests_[static_cast<std::size_t>(sequence)];
}

LAMINA_DETAIL_API const GenerationProgress& Generator::progress(SequenceId sequence) const {
  static const GenerationProgress none;
  if (sequence < 0 || static_cast<std::size_t>(sequence) >= requests_.size()) return none;
  return requests_[static_cast<std::size_t>(sequence)].progress;
}

LAMINA_DETAIL_API const GenerationResult& Generator::result(SequenceId sequence) const {
  static const GenerationResult none;
  if (sequence < 0 || static_cast<std::size_t>(sequence) >= requests_.size()) return none;
  return requests_[static_cast<std::size_t>(sequence)].result;
}

LAMINA_DETAIL_API bool Generator::idle() const {
  for (const Request& request : requests_) {
    if (request.running || request.tokens_in_pass != 0) return false;
  }
  return true;
}

LAMINA_DETAIL_API void Generator::stop(SequenceId sequence) {
  Request* request = request_of(sequence);
  if (request == nullptr || !request->running) return;
  if (request->tokens_in_pass != 0) request->stop_requested = true;  // ends when its pass does
  else finish(*request, StopReason::cancelled);
}

LAMINA_DETAIL_API void Generator::finish(Request& request, StopReason reason) {
  if (!request.running) return;
  if (reason != StopReason::stop_string) {  // text held back for a stop string that never came
    const std::string_view rest = request.stops.flush();
    request.result.text.append(rest.data(), rest.size());
    if (request.on_text && !rest.empty()) request.on_text(rest);
  }
  request.running = false;
  request.progress.finished = true;
  request.progress.stop_reason = reason;
  request.result.stop_reason = reason;
}

LAMINA_DETAIL_API Result<bool> Generator::sample_next(Request& request) {
  const Tokenizer& tokenizer = session_->model().tokenizer();
  Result<Token> token = session_->sample(request.options.sequence);
  if (!token) return token.take_error();
  request.result.tokens.push_back(*token);
  ++request.progress.tokens_generated;
  request.has_logits = false;
  if (request.options.stop_at_end_of_generation && tokenizer.is_end_of_generation(*token)) {
    finish(request, StopReason::end_of_generation);
    return false;
  }
  const StopMatch match = request.stops.feed(tokenizer.piece(*token));
  bool keep_going = true;
  if (!match.text.empty()) {
    request.result.text.append(match.text.data(), match.text.size());
    if (request.on_text && !request.on_text(match.text)) keep_going = false;
  }
  if (match.stopped) {
    finish(request, StopReason::stop_string);
    return false;
  }
  if (!keep_going) {
    finish(request, StopReason::cancelled);
    return false;
  }
  return true;  // fed even when it is the last one (max_tokens), as generate() does
}

// Starts the next pass: one token of each generating request, then prompt tokens, as many as
// the measured times allow for pieces of `piece_seconds`. False when there is nothing to do.
LAMINA_DETAIL_API Result<bool> Generator::build_pass(double piece_seconds, StepReport& report) {
  batch_.clear();
  for (Request& request : requests_) {
    if (!request.running) continue;
    if (request.cancel.cancelled() || request.stop_requested) {
      finish(request, StopReason::cancelled);
      continue;
    }
    if (!request.has_logits) continue;
    if (request.progress.tokens_generated >= request.options.max_tokens) {
      finish(request, StopReason::max_tokens);
      continue;
    }
    Result<bool> feed_it = sample_next(request);
    if (!feed_it) return feed_it.take_error();
    ++report.generated_tokens;
    if (!*feed_it) continue;
    const SequenceId sequence = request.options.sequence;
    batch_.add(request.result.tokens.back(), session_->position(sequence), sequence, true);
    request.tokens_in_pass = 1;
  }
  // Prompt tokens come after the decoding ones and are computed as one feed of the whole prompt
  // would compute them (Batch::invariant_from).
  batch_.invariant_from = batch_.size();
  const std::size_t capacity = session_->params().batch_size;
  const std::size_t wanted = session_->tokens_for_piece_seconds(piece_seconds, capacity);
  std::size_t room = wanted > batch_.size() ? wanted - batch_.size() : 0;
  if (batch_.size() == 0 && room == 0) room = 1;
  // Prompt tokens, shared out in turn: each prompt gets an equal part of the room, the first
  // ones (rotating from pass to pass) one more.
  std::size_t prompts = 0;
  for (const Request& request : requests_) prompts += request.running && !request.has_logits && request.tokens_in_pass == 0 &&
                                                      request.progress.prompt_tokens_done < request.prompt.size();
  for (std::size_t i = 0; i < requests_.size() && room > 0 && prompts > 0; ++i) {
    Request& request = requests_[(next_prompt_ + i) % requests_.size()];
    if (!request.running || request.has_logits || request.tokens_in_pass != 0) continue;
    const std::size_t left = request.prompt.size() - request.progress.prompt_tokens_done;
    if (left == 0) continue;
    const std::size_t share = std::min(left, std::max<std::size_t>(1, room / prompts));
    const SequenceId sequence = request.options.sequence;
    Position position = session_->position(sequence);
    for (std::size_t k = 0; k < share; ++k) {
      const std::size_t index = request.progress.prompt_tokens_done + k;
      batch_.add(request.prompt[index], position++, sequence, index + 1 == request.prompt.size());
    }
    request.tokens_in_pass = share;
    room -= share;
    --prompts;
  }
  next_prompt_ = (next_prompt_ + 1) % requests_.size();
  if (batch_.size() == 0) return false;
  Result<void> begun = session_->begin_decode(batch_);
  if (!begun) {  // e.g. the KV cache is full: the requests in this pass cannot go on
    for (Request& request : requests_) {
      if (request.tokens_in_pass == 0) continue;
      request.tokens_in_pass = 0;
      finish(request, StopReason::cancelled);
    }
    return begun.take_error();
  }
  return true;
}

LAMINA_DETAIL_API void Generator::pass_done(StepReport& report) {
  ++report.passes_finished;
  for (std::size_t t = 0; t < batch_.size(); ++t) session_->sampler(batch_.sequences[t]).accept(batch_.tokens[t]);
  for (Request& request : requests_) {
    if (request.tokens_in_pass == 0) continue;
    if (!request.has_logits && request.progress.prompt_tokens_done < request.prompt.size()) {  // prompt tokens
      request.progress.prompt_tokens_done += request.tokens_in_pass;
      report.prompt_tokens += request.tokens_in_pass;
    }
    request.tokens_in_pass = 0;
    if (request.progress.prompt_tokens_done == request.prompt.size()) request.has_logits = true;
    if (request.stop_requested) finish(request, StopReason::cancelled);
  }
}

LAMINA_DETAIL_API Result<StepReport> Generator::step(std::chrono::microseconds budget) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point step_start = Clock::now();
  const Clock::time_point deadline = step_start + budget;
  const double piece_seconds = std::chrono::duration<double>(budget).count() * 0.75;
  StepReport report;
  bool first = true;
  while (true) {
    if (!session_->decode_in_progress()) {
      // Starting a pass samples the requests' next tokens (a pass over the vocabulary each):
      // only when the time that took before still fits.
      const Clock::time_point build_start = Clock::now();
      if (!first && build_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(build_seconds_)) >= deadline) break;
      Result<bool> started = build_pass(piece_seconds, report);
      if (!started) return started.take_error();
      if (!*started) break;
      const double took = std::chrono::duration<double>(Clock::now() - build_start).count();
      build_seconds_ = std::max(took, 0.75 * build_seconds_);  // the slowest recent start, fading
    }
    Result<bool> done = session_->continue_decode(deadline, first);
    first = false;
    if (!done) {
      if (done.error().code != ErrorCode::cancelled) return done.take_error();
      // The pass was dropped: its tokens are not in the cache. Its requests end.
      for (Request& request : requests_) {
        if (request.tokens_in_pass == 0) continue;
        request.tokens_in_pass = 0;
        finish(request, StopReason::cancelled);
      }
      continue;
    }
    if (!*done) break;  // the time is up
    pass_done(report);
  }
  report.idle = idle();
  return report;
}
#endif

LAMINA_NAMESPACE_END

#include "core/definitions_end.inl"
