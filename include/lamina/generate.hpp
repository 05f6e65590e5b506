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
// text/sampler.hpp). A caller that wants a few tokens per frame calls Session::generate_next()
// itself instead.
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
  const Clock::time_point start = Clock::now();
  if (!prompt.empty()) LAMINA_TRY(session.feed(prompt, options.sequence));
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
    if (!keep_going) {
      result.stop_reason = StopReason::cancelled;
      break;
    }
    // Fed even after the last step, so a later call continues from a consistent state.
    LAMINA_TRY(session.feed(&result.tokens.back(), 1, options.sequence));
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

LAMINA_NAMESPACE_END

#include "core/definitions_end.inl"
