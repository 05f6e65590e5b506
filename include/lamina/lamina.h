/* lamina/lamina.h — lamina's C API: models, LoRA adapters, sessions and generation, from C or
 * from any language with a C foreign-function interface (Python's ctypes: examples/python/demo.py).
 *
 *   lamina_model* model = NULL;
 *   lamina_session* session = NULL;
 *   if (lamina_model_load("model.gguf", NULL, &model) != LAMINA_OK ||
 *       lamina_session_create(model, NULL, &session) != LAMINA_OK) {
 *     fprintf(stderr, "%s\n", lamina_last_error());
 *     return 1;
 *   }
 *   lamina_generate(session, "Once upon a time", 16, NULL, print_text, NULL, NULL);
 *   lamina_session_free(session);
 *   lamina_model_free(model);
 *
 * The library: liblamina_c (CMake target lamina_c, meson's lamina_c) is this API as a shared
 * library that exports the lamina_* functions and nothing else. To compile the API into a program
 * instead, define LAMINA_C_IMPLEMENTATION in exactly one C++17 file before including this header,
 * as with stb's libraries; every other file, C or C++, includes it plainly:
 *
 *   // lamina_c.cpp (src/lamina_c.cpp is this file)
 *   #define LAMINA_C_IMPLEMENTATION
 *   #include <lamina/lamina.h>
 *
 * The implementation is this header's second half, after the declarations, so that the C API is
 * one file: the declarations are C99 and need nothing but <stddef.h> and <stdint.h>; the
 * implementation includes <lamina/lamina.hpp> (and, for PEFT adapter folders,
 * <lamina/adapters/peft.hpp>, which needs nlohmann/json; LAMINA_C_PEFT 0 leaves it out).
 *
 * Conventions, for every function:
 * - A function that can fail returns a lamina_status; LAMINA_OK is 0. Its results come through
 *   out-parameters, written on success only (an out handle is set to NULL first; a size of the
 *   buffer pattern below is written when the buffer is too small, too).
 *   A NULL handle, out-pointer or string is LAMINA_ERROR_INVALID_ARGUMENT, never a crash.
 *   lamina_last_error() then says what was wrong, naming the file, tensor or argument.
 * - Nothing aborts and no C++ exception leaves a function: an allocation that fails is
 *   LAMINA_ERROR_OUT_OF_MEMORY (in a library built without exceptions, an allocation failure
 *   ends the program, as in any C++ code built so).
 * - Text is UTF-8 given as a pointer and a length in bytes (no NUL needed). Text given to the
 *   library is plain, as a user typed it: "</s>" in it is those four characters, never a control
 *   token. Control tokens are ids (lamina_model_info's bos and eos, lamina_session_feed_tokens).
 * - Outputs of unknown size (tokens, text) follow one pattern: pass a NULL buffer to learn the
 *   size, then a buffer at least that large; a buffer too small is LAMINA_ERROR_BUFFER_TOO_SMALL
 *   and the size needed is written all the same. Saved session states are allocated by the
 *   library instead, and given back with lamina_free_buffer.
 * - Every struct starts with struct_size, so that fields can be added at its end without breaking
 *   programs built against an older header. Set structs you pass in with their _init function
 *   (which sets struct_size and every default), then change the fields you want; for structs the
 *   library fills in, set struct_size to sizeof the struct. A field added later takes 0 as its
 *   default, and the library reads only the fields that fit in struct_size.
 * - Threads: a model and an adapter may be used from any number of threads at once; a session
 *   (and its generator) by one thread at a time, except lamina_session_cancel, which any thread may
 *   call at any time. lamina_last_error is kept per thread.
 * - Lifetimes: freeing is always safe. A session holds its model, an adapter stack holds its
 *   adapters and a generator holds its session, so a handle may be freed while others use what
 *   it points to (not while a call on that handle itself runs on another thread); the memory
 *   goes when the last user lets go. The _free functions accept NULL and do nothing, like free().
 */
#ifndef LAMINA_H
#define LAMINA_H

#include <stddef.h>
#include <stdint.h>

/* The version of this header, the same as include/lamina/config.hpp's (a check in tests/c/
 * compares them). lamina_version() is the version of the library a program runs with. */
#define LAMINA_VERSION_MAJOR 0
#define LAMINA_VERSION_MINOR 1
#define LAMINA_VERSION_PATCH 0
#define LAMINA_VERSION_STRING "0.1.0"
#define LAMINA_VERSION_NUMBER (LAMINA_VERSION_MAJOR * 10000 + LAMINA_VERSION_MINOR * 100 + LAMINA_VERSION_PATCH)

/* LAMINA_C_API marks the functions liblamina_c exports. Define it yourself to override. */
#ifndef LAMINA_C_API
#  if defined(_WIN32) || defined(__CYGWIN__)
#    ifdef LAMINA_C_IMPLEMENTATION
#      define LAMINA_C_API __declspec(dllexport)
#    else
#      define LAMINA_C_API
#    endif
#  elif defined(__GNUC__)
#    define LAMINA_C_API __attribute__((visibility("default")))
#  else
#    define LAMINA_C_API
#  endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* --- status codes ---------------------------------------------------------------------------
 * Their values never change; new codes are added at the end. LAMINA_ERROR_IO to
 * LAMINA_ERROR_CANCELLED are lamina::ErrorCode's (include/lamina/core/result.hpp). */
typedef enum lamina_status {
  LAMINA_OK = 0,
  LAMINA_ERROR_IO = 1,                /* the operating system refused: open, read, map, write */
  LAMINA_ERROR_INVALID_FORMAT = 2,    /* the bytes do not follow the file format (or the saved state's) */
  LAMINA_ERROR_UNSUPPORTED = 3,       /* valid, but lamina does not handle it: architecture, tensor type... */
  LAMINA_ERROR_MISSING = 4,           /* a required key, tensor, file or stack entry is absent */
  LAMINA_ERROR_TYPE_MISMATCH = 5,     /* another type or shape than required: an adapter of another model */
  LAMINA_ERROR_INVALID_ARGUMENT = 6,  /* a NULL pointer, an option out of range, invalid UTF-8, a bad id */
  LAMINA_ERROR_OUT_OF_MEMORY = 7,     /* an allocation failed, or a session would exceed memory_limit_bytes */
  LAMINA_ERROR_INVALID_STATE = 8,     /* the call does not fit the object's state (KV cache full, no logits yet) */
  LAMINA_ERROR_NOT_FINITE = 9,        /* the logits hold NaN or infinity (NaN weights, an absurd adapter scale) */
  LAMINA_ERROR_CANCELLED = 10,        /* stopped by a cancel (a progress callback, lamina_session_cancel) */
  LAMINA_ERROR_BUFFER_TOO_SMALL = 11, /* an output buffer is too small; the size needed was written */
  LAMINA_ERROR_INTERNAL = 12          /* a bug in lamina: please report lamina_last_error()'s text */
} lamina_status;

/* What the last function that failed on this thread said: a sentence naming the file, key,
 * tensor or argument and what was wrong. "" before any failure; functions that succeed leave it
 * as it is. The text stays valid until the next failure on this thread. Never NULL. */
LAMINA_C_API const char* lamina_last_error(void);

/* "LAMINA_OK", "LAMINA_ERROR_IO", ... for a lamina_status; "LAMINA_ERROR_UNKNOWN" for a value not
 * listed above (an int, so that any value may be passed: one of a newer library, say). */
LAMINA_C_API const char* lamina_status_name(int status);

/* The library's version: "0.1.0", and MAJOR * 10000 + MINOR * 100 + PATCH (LAMINA_VERSION_NUMBER
 * is the header's, to compare with). */
LAMINA_C_API const char* lamina_version(void);
LAMINA_C_API uint32_t lamina_version_number(void);

/* Gives back a buffer the library allocated (lamina_session_save_sequence). NULL is ignored. */
LAMINA_C_API void lamina_free_buffer(void* buffer);

/* --- handles and callbacks ----------------------------------------------------------------- */
typedef struct lamina_model lamina_model;          /* a loaded GGUF model, immutable, shared */
typedef struct lamina_adapter lamina_adapter;      /* a LoRA adapter loaded for one model */
typedef struct lamina_session lamina_session;      /* KV cache, samplers and buffers for N sequences */
typedef struct lamina_generator lamina_generator;  /* generation in time-budgeted steps, on a session */

/* Called while a model or an adapter loads, on the loading thread, a few hundred times at most:
 * fraction of the whole load in [0, 1], 1 once at the end. Return nonzero to cancel: the load
 * then fails with LAMINA_ERROR_CANCELLED. */
typedef int (*lamina_progress_callback)(float fraction, void* user);

/* Called with each piece of generated text as it becomes final (text that may be the start of a
 * stop string is held back until it is not): `length` bytes, not NUL-terminated; a piece may end
 * inside a UTF-8 character, so join pieces before decoding them. Return nonzero to stop: the
 * generation ends with LAMINA_STOP_CANCELLED (that is not an error). */
typedef int (*lamina_text_callback)(const char* text, size_t length, void* user);

/* --- models -------------------------------------------------------------------------------- */
typedef struct lamina_model_params {
  size_t struct_size;
  lamina_progress_callback progress;  /* NULL: no reports */
  void* progress_user;                /* passed to progress */
  int32_t touch_pages;     /* 0 (default); 1: read every page of the weights while loading, so that the first tokens are not slowed by page faults */
  int32_t load_tokenizer;  /* 1 (default); 0 for files without a vocabulary: tokenizing and generating text are then unavailable */
} lamina_model_params;

LAMINA_C_API lamina_status lamina_model_params_init(lamina_model_params* params, size_t struct_size);

/* Maps a GGUF file and binds its weights in place. params NULL: the defaults. */
LAMINA_C_API lamina_status lamina_model_load(const char* path, const lamina_model_params* params, lamina_model** model);
LAMINA_C_API void lamina_model_free(lamina_model* model);

typedef struct lamina_model_info {
  size_t struct_size;
  const char* architecture;  /* "llama", "qwen2" (general.architecture); valid while the model lives */
  uint64_t mapped_bytes;     /* the weights, mapped from the file */
  uint64_t resident_bytes;   /* how many of those bytes are in memory now */
  uint32_t vocab_size;
  uint32_t context_length;   /* the training context */
  uint32_t embedding_length;
  uint32_t block_count;
  uint32_t head_count;
  uint32_t head_count_kv;
  int32_t bos;               /* token ids; -1 where the vocabulary has none (or no tokenizer was loaded) */
  int32_t eos;
} lamina_model_info;

/* Fills `info` (set info->struct_size = sizeof *info first). */
LAMINA_C_API lamina_status lamina_model_get_info(const lamina_model* model, lamina_model_info* info);

/* Text -> token ids. The text is plain and must be valid UTF-8 (else LAMINA_ERROR_INVALID_ARGUMENT
 * with the byte offset). add_bos: -1 as the model's vocabulary says, 0 never, 1 always. Writes
 * *count (the number of ids) and, when tokens is not NULL and capacity >= *count, the ids. */
LAMINA_C_API lamina_status lamina_tokenize(const lamina_model* model, const char* text, size_t length, int add_bos,
                                           int32_t* tokens, size_t capacity, size_t* count);

/* Token ids -> text, as llama.cpp's detokenizer does (control tokens give no text; the space a
 * SentencePiece vocabulary puts before the first word is removed, so text -> ids -> text gives
 * the text back). Writes *length (bytes, without a NUL) and, when text is not NULL and
 * capacity > *length, the text and a NUL after it. */
LAMINA_C_API lamina_status lamina_detokenize(const lamina_model* model, const int32_t* tokens, size_t count, char* text,
                                             size_t capacity, size_t* length);

/* --- adapters ------------------------------------------------------------------------------ */
/* Loads a LoRA adapter for `model`: a llama.cpp GGUF adapter file or a Hugging Face PEFT folder
 * (adapter_config.json + adapter_model.safetensors). An adapter of another model is an error
 * naming the tensor. progress may be NULL. */
LAMINA_C_API lamina_status lamina_adapter_load(const lamina_model* model, const char* path, lamina_progress_callback progress,
                                               void* progress_user, lamina_adapter** adapter);
LAMINA_C_API void lamina_adapter_free(lamina_adapter* adapter);

/* --- sessions ------------------------------------------------------------------------------ */
typedef enum lamina_kv_cache_type {
  LAMINA_KV_CACHE_F16 = 0,
  LAMINA_KV_CACHE_F32 = 1
} lamina_kv_cache_type;

typedef struct lamina_session_params {
  size_t struct_size;
  uint64_t memory_limit_bytes;  /* 8 GiB: a session that would need more is refused before it allocates */
  uint64_t seed;                /* of every sequence's sampler */
  uint32_t context_length;      /* 0 (default): the model's training context; KV cells shared by all sequences */
  uint32_t sequence_count;      /* 1: independent sequences, ids 0 .. sequence_count - 1 */
  uint32_t batch_size;          /* 512: most tokens per forward pass */
  uint32_t thread_count;        /* 0: one per hardware thread */
  uint32_t max_lora_rank;       /* 256: the largest adapter rank the stacks accept */
  int32_t kv_cache_type;        /* a lamina_kv_cache_type: LAMINA_KV_CACHE_F16 (default) or _F32 */
  /* Sampling, for every sequence: */
  float temperature;            /* 0.8; 0 is greedy: always the most likely token */
  int32_t top_k;                /* 40; 0 is off */
  float top_p;                  /* 0.95, in (0, 1]; 1 is off */
  float min_p;                  /* 0.05, in [0, 1]; 0 is off */
  float repeat_penalty;         /* 1 (off), > 0 */
  float frequency_penalty;      /* 0 */
  float presence_penalty;       /* 0 */
  int32_t penalty_last_n;       /* 64: how many recent tokens the penalties look at */
} lamina_session_params;

LAMINA_C_API lamina_status lamina_session_params_init(lamina_session_params* params, size_t struct_size);

/* The bytes a session with these params would allocate (KV cache, buffers, samplers, adapter
 * scratch), without allocating them. params NULL: the defaults. */
LAMINA_C_API lamina_status lamina_session_memory_needed(const lamina_model* model, const lamina_session_params* params,
                                                        uint64_t* bytes);

/* Allocates everything the session will need: generating allocates nothing per token. */
LAMINA_C_API lamina_status lamina_session_create(const lamina_model* model, const lamina_session_params* params,
                                                 lamina_session** session);
LAMINA_C_API void lamina_session_free(lamina_session* session);

/* Appends text (tokenized as plain text; with BOS when the sequence is empty and the model wants
 * one) or token ids to `sequence`, running them through the model. */
LAMINA_C_API lamina_status lamina_session_feed_text(lamina_session* session, int32_t sequence, const char* text, size_t length);
LAMINA_C_API lamina_status lamina_session_feed_tokens(lamina_session* session, int32_t sequence, const int32_t* tokens,
                                                      size_t count);

/* Picks the next token of `sequence` with its sampler; _generate_next also feeds it. */
LAMINA_C_API lamina_status lamina_session_sample(lamina_session* session, int32_t sequence, int32_t* token);
LAMINA_C_API lamina_status lamina_session_generate_next(lamina_session* session, int32_t sequence, int32_t* token);

/* The logits after the last token fed to `sequence`: *count (the vocabulary size) floats, valid
 * until the next call on the session. LAMINA_ERROR_INVALID_STATE before anything was fed. */
LAMINA_C_API lamina_status lamina_session_get_logits(const lamina_session* session, int32_t sequence, const float** logits,
                                                     size_t* count);

/* The tokens `sequence` holds, and forgetting those from `length` on (0 clears the sequence). */
LAMINA_C_API lamina_status lamina_session_get_position(const lamina_session* session, int32_t sequence, int32_t* position);
LAMINA_C_API lamina_status lamina_session_rewind(lamina_session* session, int32_t sequence, int32_t length);

/* From any thread: what runs on the session now (a feed, lamina_generate, a generator step)
 * stops at its next check, between two layers at the latest. Feeds then fail with
 * LAMINA_ERROR_CANCELLED; generation ends with LAMINA_STOP_CANCELLED. The KV cache holds exactly
 * the tokens of the passes that finished. A cancel that arrives when nothing runs does not
 * affect the next call. */
LAMINA_C_API lamina_status lamina_session_cancel(lamina_session* session);

/* --- adapter stacks, one per sequence -------------------------------------------------------
 * The changes of a stack's adapters add up: y = W x + sum_i scale_i * B_i (A_i x). Changing a
 * stack between two tokens costs O(adapters) and allocates nothing large. */

/* Replaces the stack of `sequence` with `count` adapters and their scales (count 0 empties it;
 * adapters and scales may then be NULL). */
LAMINA_C_API lamina_status lamina_session_set_adapters(lamina_session* session, int32_t sequence, lamina_adapter* const* adapters,
                                                       const float* scales, size_t count);
/* Appends an adapter to the stack of `sequence`. */
LAMINA_C_API lamina_status lamina_session_add_adapter(lamina_session* session, int32_t sequence, lamina_adapter* adapter, float scale);
/* Sets the scale of `adapter` in the stack of `sequence` (0 switches it off and keeps its place);
 * LAMINA_ERROR_MISSING when the stack does not hold it. */
LAMINA_C_API lamina_status lamina_session_set_adapter_scale(lamina_session* session, int32_t sequence, lamina_adapter* adapter,
                                                            float scale);
/* Removes every entry of `adapter` from the stack of `sequence`; LAMINA_ERROR_MISSING when it held none. */
LAMINA_C_API lamina_status lamina_session_remove_adapter(lamina_session* session, int32_t sequence, lamina_adapter* adapter);

/* --- saved sequences ------------------------------------------------------------------------
 * One sequence's KV cells, sampler state, last logits and adapter stack, in a versioned format
 * that names the model. Restoring brings it back in any session of the same model (and KV cache
 * type): decoding then goes on with bit-identical logits. The saved stack's adapters are found,
 * by content, among `adapters`. Another model's state, a newer format, a truncated or damaged
 * state, or a missing adapter is an error that leaves the session as it was. */

/* *bytes: a buffer the library allocated, of *size bytes; give it back with lamina_free_buffer. */
LAMINA_C_API lamina_status lamina_session_save_sequence(const lamina_session* session, int32_t sequence, void** bytes, size_t* size);
LAMINA_C_API lamina_status lamina_session_restore_sequence(lamina_session* session, int32_t sequence, const void* bytes, size_t size,
                                                           lamina_adapter* const* adapters, size_t adapter_count);
LAMINA_C_API lamina_status lamina_session_save_sequence_to_file(const lamina_session* session, int32_t sequence, const char* path);
LAMINA_C_API lamina_status lamina_session_restore_sequence_from_file(lamina_session* session, int32_t sequence, const char* path,
                                                                     lamina_adapter* const* adapters, size_t adapter_count);

/* --- generation ---------------------------------------------------------------------------- */
typedef enum lamina_stop_reason {
  LAMINA_STOP_MAX_TOKENS = 0,
  LAMINA_STOP_END_OF_GENERATION = 1,  /* an end-of-sequence (or end-of-turn) token */
  LAMINA_STOP_STOP_STRING = 2,        /* the text reached one of stop_strings (not streamed) */
  LAMINA_STOP_CANCELLED = 3           /* the text callback returned nonzero, lamina_session_cancel, lamina_generator_stop */
} lamina_stop_reason;

typedef struct lamina_generate_params {
  size_t struct_size;
  size_t max_tokens;                 /* 128 */
  const char* const* stop_strings;   /* NULL: none; else stop_string_count NUL-terminated strings */
  size_t stop_string_count;
  int32_t sequence;                  /* 0 */
  int32_t stop_at_end_of_generation; /* 1: end at an end-of-sequence token */
} lamina_generate_params;

LAMINA_C_API lamina_status lamina_generate_params_init(lamina_generate_params* params, size_t struct_size);

typedef struct lamina_generate_result {
  size_t struct_size;
  size_t prompt_token_count;
  size_t generated_token_count;  /* including a final end-of-sequence token */
  double prompt_seconds;
  double generation_seconds;
  int32_t stop_reason;           /* a lamina_stop_reason */
} lamina_generate_result;

/* Feeds the prompt (plain text; BOS as lamina_session_feed_text adds it) to params->sequence,
 * then samples and feeds up to max_tokens tokens, streaming their text to on_text (may be NULL).
 * The session keeps everything: call again, with an empty prompt, to go on. params NULL: the
 * defaults. result (may be NULL; set its struct_size) tells why it ended. */
LAMINA_C_API lamina_status lamina_generate(lamina_session* session, const char* prompt, size_t prompt_length,
                                           const lamina_generate_params* params, lamina_text_callback on_text, void* on_text_user,
                                           lamina_generate_result* result);

/* --- generation in steps, for a frame loop --------------------------------------------------
 * A generator holds one request per sequence (a prompt to read, then tokens to generate), and
 * each lamina_generator_step works on all of them within a time budget: the tokens of every
 * request share one forward pass, run a piece at a time. While a request runs, the session is
 * driven by the generator only (lamina_session_cancel excepted); one generator per session. */
LAMINA_C_API lamina_status lamina_generator_create(lamina_session* session, lamina_generator** generator);
LAMINA_C_API void lamina_generator_free(lamina_generator* generator);

/* Starts a request on params->sequence, which must have none running; its text goes to on_text
 * as lamina_generate's does. The prompt may be empty when the sequence was fed before. */
LAMINA_C_API lamina_status lamina_generator_start(lamina_generator* generator, const char* prompt, size_t prompt_length,
                                                  const lamina_generate_params* params, lamina_text_callback on_text,
                                                  void* on_text_user);

typedef struct lamina_step_report {
  size_t struct_size;
  size_t prompt_tokens;     /* prompt tokens whose pass finished during this step */
  size_t generated_tokens;  /* tokens sampled during this step */
  size_t passes_finished;
  int32_t idle;             /* 1: nothing left to do, every request has finished */
} lamina_step_report;

/* Works on every unfinished request for at most budget_microseconds, then returns. report may
 * be NULL. */
LAMINA_C_API lamina_status lamina_generator_step(lamina_generator* generator, uint32_t budget_microseconds, lamina_step_report* report);

/* Ends the request of `sequence` with LAMINA_STOP_CANCELLED (tokens of a pass in progress are
 * still fed). Nothing happens when it has none running. */
LAMINA_C_API lamina_status lamina_generator_stop(lamina_generator* generator, int32_t sequence);

/* *idle: 1 when every request has finished (or none was started). */
LAMINA_C_API lamina_status lamina_generator_is_idle(const lamina_generator* generator, int32_t* idle);

typedef struct lamina_generation_progress {
  size_t struct_size;
  size_t prompt_tokens_done;
  size_t prompt_tokens_total;
  size_t tokens_generated;         /* sampled and streamed, including a final end-of-sequence token */
  int32_t finished;
  int32_t stop_reason;             /* a lamina_stop_reason, once finished */
} lamina_generation_progress;

/* The request of `sequence` (all zero for a sequence that never had one). */
LAMINA_C_API lamina_status lamina_generator_get_progress(const lamina_generator* generator, int32_t sequence,
                                                         lamina_generation_progress* progress);
/* The text the request of `sequence` generated so far, with the buffer pattern of lamina_detokenize. */
LAMINA_C_API lamina_status lamina_generator_get_text(const lamina_generator* generator, int32_t sequence, char* text, size_t capacity,
                                                     size_t* length);

#ifdef __cplusplus
}
#endif

#endif /* LAMINA_H */


/* ==============================================================================================
 * The implementation: compiled where LAMINA_C_IMPLEMENTATION is defined, in one C++17 file.
 * ============================================================================================== */
#if defined(LAMINA_C_IMPLEMENTATION) && !defined(LAMINA_C_IMPLEMENTATION_COMPILED)
#define LAMINA_C_IMPLEMENTATION_COMPILED

#ifndef __cplusplus
#  error "LAMINA_C_IMPLEMENTATION compiles lamina's C API, which is C++: define it in a C++17 file"
#endif

// LAMINA_C_PEFT: 1 to load Hugging Face PEFT folders (adapters/peft.hpp, which needs
// nlohmann/json), 0 for GGUF adapters only. Default: 1 where <nlohmann/json.hpp> is found.
#ifndef LAMINA_C_PEFT
#  if __has_include(<nlohmann/json.hpp>)
#    define LAMINA_C_PEFT 1
#  else
#    define LAMINA_C_PEFT 0
#  endif
#endif

#include "lamina.hpp"
#if LAMINA_C_PEFT
#  include "adapters/peft.hpp"
#else
#  include <sys/stat.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#  include <exception>
#  define LAMINA_C_EXCEPTIONS 1
#else
#  define LAMINA_C_EXCEPTIONS 0
#endif

// The handles. Each holds a reference, so that freeing one while others use what it points to
// is safe: a session's Session holds its model, a stack holds its adapters.
struct lamina_model {
  std::shared_ptr<const lamina::Model> model;
};
struct lamina_adapter {
  std::shared_ptr<const lamina::LoraAdapter> adapter;
};
struct lamina_session {
  std::shared_ptr<lamina::Session> session;
};
struct lamina_generator {
  explicit lamina_generator(std::shared_ptr<lamina::Session> held) : session(std::move(held)), generator(*session) {}
  std::shared_ptr<lamina::Session> session;  // declared before `generator`, which points at it
  lamina::Generator generator;
};

LAMINA_NAMESPACE_BEGIN
namespace detail {
namespace c_api {
namespace {

// --- errors -------------------------------------------------------------------------------------

// The last failure's message on this thread. `fixed` (a string literal, or null: use `text`)
// is for failures whose text cannot be stored, so that reporting an allocation failure allocates
// nothing.
struct LastError {
  std::string text;
  const char* fixed = "";
};
thread_local LastError last_error;

lamina_status report_fixed(lamina_status status, const char* text) noexcept {
  last_error.fixed = text;
  return status;
}

lamina_status report(lamina_status status, std::string_view text) noexcept {
#if LAMINA_C_EXCEPTIONS
  try {
    last_error.text.assign(text.data(), text.size());
  } catch (...) {
    return report_fixed(status, "out of memory (while keeping an error message)");
  }
#else
  last_error.text.assign(text.data(), text.size());
#endif
  last_error.fixed = nullptr;
  return status;
}

lamina_status status_of(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::io: return LAMINA_ERROR_IO;
    case ErrorCode::invalid_format: return LAMINA_ERROR_INVALID_FORMAT;
    case ErrorCode::unsupported: return LAMINA_ERROR_UNSUPPORTED;
    case ErrorCode::missing: return LAMINA_ERROR_MISSING;
    case ErrorCode::type_mismatch: return LAMINA_ERROR_TYPE_MISMATCH;
    case ErrorCode::invalid_argument: return LAMINA_ERROR_INVALID_ARGUMENT;
    case ErrorCode::out_of_memory: return LAMINA_ERROR_OUT_OF_MEMORY;
    case ErrorCode::invalid_state: return LAMINA_ERROR_INVALID_STATE;
    case ErrorCode::not_finite: return LAMINA_ERROR_NOT_FINITE;
    case ErrorCode::cancelled: return LAMINA_ERROR_CANCELLED;
  }
  return LAMINA_ERROR_INTERNAL;
}

lamina_status report(const Error& error) noexcept { return report(status_of(error.code), error.message); }

lamina_status report(lamina_status status, const char* function, const std::string& what) {
  return report(status, std::string(function) + ": " + what);
}

lamina_status invalid(const char* function, const std::string& what) { return report(LAMINA_ERROR_INVALID_ARGUMENT, function, what); }

lamina_status null_argument(const char* function, const char* argument) {
  return invalid(function, std::string("`") + argument + "` is NULL");
}

// Runs an entry point's body. With exceptions, none leaves it: std::bad_alloc is
// LAMINA_ERROR_OUT_OF_MEMORY, anything else LAMINA_ERROR_INTERNAL (lamina throws nothing, but the
// standard library's containers may).
template <class Body>
lamina_status guarded(const char* function, Body&& body) noexcept {
#if LAMINA_C_EXCEPTIONS
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return report_fixed(LAMINA_ERROR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& exception) {
    return report(LAMINA_ERROR_INTERNAL, function, exception.what());
  } catch (...) {
    return report_fixed(LAMINA_ERROR_INTERNAL, "an unknown C++ exception reached lamina's C API");
  }
#else
  (void)function;
  return body();
#endif
}

// --- versioned structs --------------------------------------------------------------------------

// Larger than any struct of lamina.h will grow: a struct_size beyond it is garbage, not a size.
constexpr std::size_t largest_struct_size = 4096;

bool struct_size_valid(std::size_t size) { return size >= sizeof(std::size_t) && size <= largest_struct_size; }

// The defaults into a caller's struct of `size` bytes: zeros (the default of fields a newer
// header has), then the fields of `defaults` that fit.
template <class Struct>
lamina_status init_struct(const char* function, Struct* params, std::size_t size, Struct defaults) {
  if (params == nullptr) return null_argument(function, "params");
  if (!struct_size_valid(size)) return invalid(function, "struct_size " + std::to_string(size) + " is not a struct's size (pass sizeof *params)");
  std::memset(static_cast<void*>(params), 0, size);
  defaults.struct_size = size;
  std::memcpy(static_cast<void*>(params), &defaults, std::min(size, sizeof(Struct)));
  return LAMINA_OK;
}

// A caller's struct as this library's: the fields that fit in its struct_size, the defaults
// for the rest. The bytes of a newer header's fields, unknown here, must be 0 (their default).
template <class Struct>
lamina_status read_struct(const char* function, const Struct* given, const Struct& defaults, Struct* out) {
  *out = defaults;
  if (given == nullptr) return LAMINA_OK;
  const std::size_t size = given->struct_size;
  if (!struct_size_valid(size)) return invalid(function, "params->struct_size is " + std::to_string(size) + "; set the struct up with its _init function");
  std::memcpy(static_cast<void*>(out), given, std::min(size, sizeof(Struct)));
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(given);
  for (std::size_t at = sizeof(Struct); at < size; ++at) {
    if (bytes[at] != 0) {
      return report(LAMINA_ERROR_UNSUPPORTED, function, "params sets a field (at byte " + std::to_string(at) +
                                                            ") that this version of lamina (" LAMINA_VERSION_STRING ") does not know");
    }
  }
  out->struct_size = sizeof(Struct);
  return LAMINA_OK;
}

template <class Struct>
lamina_status check_out_struct(const char* function, const char* argument, const Struct* out) {
  if (out != nullptr && !struct_size_valid(out->struct_size)) {
    return invalid(function, std::string(argument) + "->struct_size is " + std::to_string(out->struct_size) + "; set it to sizeof the struct");
  }
  return LAMINA_OK;
}

// A filled struct into the caller's, as far as its struct_size reaches (checked before).
template <class Struct>
void write_struct(const Struct& filled, Struct* out) {
  const std::size_t copied = std::min<std::size_t>(out->struct_size, sizeof(Struct));
  std::memcpy(reinterpret_cast<unsigned char*>(out) + sizeof(std::size_t),
              reinterpret_cast<const unsigned char*>(&filled) + sizeof(std::size_t), copied - sizeof(std::size_t));
}

template <class Struct>
Struct zeroed() {
  Struct value;
  std::memset(static_cast<void*>(&value), 0, sizeof value);  // padding too: it is compared byte by byte
  value.struct_size = sizeof value;
  return value;
}

lamina_model_params default_model_params() {
  lamina_model_params params = zeroed<lamina_model_params>();
  params.load_tokenizer = 1;
  return params;
}

lamina_session_params default_session_params() {
  const SessionParams session;
  lamina_session_params params = zeroed<lamina_session_params>();
  params.memory_limit_bytes = session.memory_limit_bytes;
  params.seed = session.sampling.seed;
  params.context_length = session.context_length;
  params.sequence_count = session.sequence_count;
  params.batch_size = session.batch_size;
  params.thread_count = session.thread_count;
  params.max_lora_rank = session.max_lora_rank;
  params.kv_cache_type = session.kv_cache_type == DType::f32 ? LAMINA_KV_CACHE_F32 : LAMINA_KV_CACHE_F16;
  params.temperature = session.sampling.temperature;
  params.top_k = session.sampling.top_k;
  params.top_p = session.sampling.top_p;
  params.min_p = session.sampling.min_p;
  params.repeat_penalty = session.sampling.repeat_penalty;
  params.frequency_penalty = session.sampling.frequency_penalty;
  params.presence_penalty = session.sampling.presence_penalty;
  params.penalty_last_n = session.sampling.penalty_last_n;
  return params;
}

lamina_generate_params default_generate_params() {
  const GenerateOptions options;
  lamina_generate_params params = zeroed<lamina_generate_params>();
  params.max_tokens = options.max_tokens;
  params.sequence = options.sequence;
  params.stop_at_end_of_generation = options.stop_at_end_of_generation ? 1 : 0;
  return params;
}

// The options are checked by Session::create (and Sampler::create), which name the bad one.
lamina_status to_session_params(const char* function, const lamina_session_params* given, SessionParams* out) {
  lamina_session_params params;
  const lamina_status read = read_struct(function, given, default_session_params(), &params);
  if (read != LAMINA_OK) return read;
  if (params.kv_cache_type != LAMINA_KV_CACHE_F16 && params.kv_cache_type != LAMINA_KV_CACHE_F32) {
    return invalid(function, "kv_cache_type " + std::to_string(params.kv_cache_type) +
                                 " is neither LAMINA_KV_CACHE_F16 nor LAMINA_KV_CACHE_F32");
  }
  out->memory_limit_bytes = params.memory_limit_bytes;
  out->context_length = params.context_length;
  out->sequence_count = params.sequence_count;
  out->batch_size = params.batch_size;
  out->thread_count = params.thread_count;
  out->max_lora_rank = params.max_lora_rank;
  out->kv_cache_type = params.kv_cache_type == LAMINA_KV_CACHE_F32 ? DType::f32 : DType::f16;
  out->sampling.seed = params.seed;
  out->sampling.temperature = params.temperature;
  out->sampling.top_k = params.top_k;
  out->sampling.top_p = params.top_p;
  out->sampling.min_p = params.min_p;
  out->sampling.repeat_penalty = params.repeat_penalty;
  out->sampling.frequency_penalty = params.frequency_penalty;
  out->sampling.presence_penalty = params.presence_penalty;
  out->sampling.penalty_last_n = params.penalty_last_n;
  return LAMINA_OK;
}

lamina_status to_generate_options(const char* function, const lamina_generate_params* given, GenerateOptions* out) {
  lamina_generate_params params;
  const lamina_status read = read_struct(function, given, default_generate_params(), &params);
  if (read != LAMINA_OK) return read;
  if (params.stop_strings == nullptr && params.stop_string_count != 0) return null_argument(function, "params->stop_strings");
  out->max_tokens = params.max_tokens;
  out->sequence = params.sequence;
  out->stop_at_end_of_generation = params.stop_at_end_of_generation != 0;
  out->parse_special = false;  // the C API's text is always plain
  out->stop_strings.clear();
  for (std::size_t i = 0; i < params.stop_string_count; ++i) {
    if (params.stop_strings[i] == nullptr) return invalid(function, "params->stop_strings[" + std::to_string(i) + "] is NULL");
    out->stop_strings.emplace_back(params.stop_strings[i]);
  }
  return LAMINA_OK;
}

// --- small helpers ------------------------------------------------------------------------------

lamina_stop_reason stop_reason_of(StopReason reason) {
  switch (reason) {
    case StopReason::max_tokens: return LAMINA_STOP_MAX_TOKENS;
    case StopReason::end_of_generation: return LAMINA_STOP_END_OF_GENERATION;
    case StopReason::stop_string: return LAMINA_STOP_STOP_STRING;
    case StopReason::cancelled: return LAMINA_STOP_CANCELLED;
  }
  return LAMINA_STOP_CANCELLED;
}

// Text given as (pointer, length): NULL only with length 0.
lamina_status check_text(const char* function, const char* argument, const char* text, std::size_t length) {
  return text == nullptr && length != 0 ? null_argument(function, argument) : LAMINA_OK;
}

std::string_view text_view(const char* text, std::size_t length) {
  return text == nullptr ? std::string_view() : std::string_view(text, length);
}

// The size-query pattern for text: *length always; the bytes and a NUL when they fit.
lamina_status copy_text_out(const char* function, std::string_view text, char* out, std::size_t capacity, std::size_t* length) {
  *length = text.size();
  if (out == nullptr) return LAMINA_OK;
  if (capacity <= text.size()) {
    return report(LAMINA_ERROR_BUFFER_TOO_SMALL, function, "the text is " + std::to_string(text.size()) + " bytes and a NUL; the buffer holds " +
                                                               std::to_string(capacity));
  }
  if (!text.empty()) std::memcpy(out, text.data(), text.size());
  out[text.size()] = '\0';
  return LAMINA_OK;
}

// Session's own calls check their sequence id too, but not all of them (position() trusts it),
// so every entry point checks it first.
lamina_status check_sequence(const char* function, const Session& session, int32_t sequence) {
  const Result<void> valid = session.check_sequence(sequence);
  return valid ? LAMINA_OK : invalid(function, valid.error().message);
}

lamina_status check_tokenizer(const char* function, const Model& model) {
  return model.has_tokenizer() ? LAMINA_OK : report(LAMINA_ERROR_INVALID_STATE, function, "the model was loaded without its tokenizer");
}

lamina_status collect_adapters(const char* function, lamina_adapter* const* adapters, std::size_t count,
                               std::vector<std::shared_ptr<const LoraAdapter>>* out) {
  if (adapters == nullptr && count != 0) return null_argument(function, "adapters");
  out->reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    if (adapters[i] == nullptr) return invalid(function, "adapters[" + std::to_string(i) + "] is NULL");
    out->push_back(adapters[i]->adapter);
  }
  return LAMINA_OK;
}

bool stack_holds(const Session& session, int32_t sequence, const LoraAdapter* adapter) {
  for (const AdapterStackEntry& entry : session.adapters(sequence)) {
    if (entry.adapter.get() == adapter) return true;
  }
  return false;
}

lamina_status not_in_stack(const char* function, int32_t sequence, const LoraAdapter& adapter) {
  return report(LAMINA_ERROR_MISSING, function, "the stack of sequence " + std::to_string(sequence) + " does not hold adapter '" + adapter.name() + "'");
}

// A C progress callback as a LoadControl. A nonzero return cancels through a CancelSource the
// loading call owns; `asked_to_cancel` remembers it for a cancel at the last report, after which
// the load checks nothing more.
class ProgressBridge {
 public:
  ProgressBridge(lamina_progress_callback callback, void* user) : callback_(callback), user_(user) {
    control_.cancel = source_.token();
    if (callback_ != nullptr) control_.on_progress = [this](const LoadProgress& progress) { forward(progress); };
  }
  ProgressBridge(const ProgressBridge&) = delete;  // control_ points at it
  ProgressBridge& operator=(const ProgressBridge&) = delete;

  const LoadControl& control() const { return control_; }
  bool asked_to_cancel() const { return asked_to_cancel_; }

 private:
  void forward(const LoadProgress& progress) {
    if (callback_(static_cast<float>(progress.fraction), user_) != 0) {
      asked_to_cancel_ = true;
      source_.cancel();
    }
  }
  lamina_progress_callback callback_;
  void* user_;
  CancelSource source_;
  LoadControl control_;
  bool asked_to_cancel_ = false;
};

// A C text callback as generate()'s on_text: nonzero (stop) in C is false in C++.
std::function<bool(std::string_view)> text_function(lamina_text_callback callback, void* user) {
  if (callback == nullptr) return {};
  return [callback, user](std::string_view text) { return callback(text.data(), text.size(), user) == 0; };
}

Result<std::shared_ptr<const LoraAdapter>> load_any_adapter(const Model& model, const std::string& path, const LoadControl& control) {
#if LAMINA_C_PEFT
  return peft::load_adapter(model, path, control);
#else
  struct stat info;
  if (::stat(path.c_str(), &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR) {
    return fail(ErrorCode::unsupported, path + ": a folder (a PEFT adapter?), but this build of lamina's C API reads GGUF adapters only "
                                               "(it was compiled with LAMINA_C_PEFT 0, without nlohmann/json)");
  }
  LoadReporter reporter(control);
  reporter.stage(LoadStage::convert, 1, 0.0, 1.0);
  if (reporter.cancelled()) return fail(ErrorCode::cancelled, path + ": loading was cancelled");
  Result<std::shared_ptr<const LoraAdapter>> adapter = load_gguf_adapter(model, path);
  if (!adapter) return adapter;
  if (reporter.cancelled()) return fail(ErrorCode::cancelled, path + ": loading was cancelled");
  reporter.finish();
  return adapter;
#endif
}

}  // namespace
}  // namespace c_api
}  // namespace detail
LAMINA_NAMESPACE_END

// --- the entry points -------------------------------------------------------------------------
// Each runs its body in guarded(); only `*out = NULL`, which cannot fail, comes before it.
extern "C" {

LAMINA_C_API const char* lamina_last_error(void) {
  const lamina::detail::c_api::LastError& error = lamina::detail::c_api::last_error;
  return error.fixed != nullptr ? error.fixed : error.text.c_str();
}

LAMINA_C_API const char* lamina_status_name(int status) {
  switch (status) {
    case LAMINA_OK: return "LAMINA_OK";
    case LAMINA_ERROR_IO: return "LAMINA_ERROR_IO";
    case LAMINA_ERROR_INVALID_FORMAT: return "LAMINA_ERROR_INVALID_FORMAT";
    case LAMINA_ERROR_UNSUPPORTED: return "LAMINA_ERROR_UNSUPPORTED";
    case LAMINA_ERROR_MISSING: return "LAMINA_ERROR_MISSING";
    case LAMINA_ERROR_TYPE_MISMATCH: return "LAMINA_ERROR_TYPE_MISMATCH";
    case LAMINA_ERROR_INVALID_ARGUMENT: return "LAMINA_ERROR_INVALID_ARGUMENT";
    case LAMINA_ERROR_OUT_OF_MEMORY: return "LAMINA_ERROR_OUT_OF_MEMORY";
    case LAMINA_ERROR_INVALID_STATE: return "LAMINA_ERROR_INVALID_STATE";
    case LAMINA_ERROR_NOT_FINITE: return "LAMINA_ERROR_NOT_FINITE";
    case LAMINA_ERROR_CANCELLED: return "LAMINA_ERROR_CANCELLED";
    case LAMINA_ERROR_BUFFER_TOO_SMALL: return "LAMINA_ERROR_BUFFER_TOO_SMALL";
    case LAMINA_ERROR_INTERNAL: return "LAMINA_ERROR_INTERNAL";
  }
  return "LAMINA_ERROR_UNKNOWN";
}

LAMINA_C_API const char* lamina_version(void) { return LAMINA_VERSION_STRING; }

LAMINA_C_API uint32_t lamina_version_number(void) { return LAMINA_VERSION_NUMBER; }

LAMINA_C_API void lamina_free_buffer(void* buffer) { std::free(buffer); }

// --- models

LAMINA_C_API lamina_status lamina_model_params_init(lamina_model_params* params, size_t struct_size) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_model_params_init";
  return guarded(function, [&] { return init_struct(function, params, struct_size, default_model_params()); });
}

LAMINA_C_API lamina_status lamina_model_load(const char* path, const lamina_model_params* params, lamina_model** model) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_model_load";
  if (model != nullptr) *model = nullptr;
  return guarded(function, [&] {
    if (model == nullptr) return null_argument(function, "model");
    if (path == nullptr) return null_argument(function, "path");
    lamina_model_params given;
    const lamina_status read = read_struct(function, params, default_model_params(), &given);
    if (read != LAMINA_OK) return read;
    ProgressBridge progress(given.progress, given.progress_user);
    lamina::ModelParams model_params;
    model_params.touch_pages = given.touch_pages != 0;
    model_params.load_tokenizer = given.load_tokenizer != 0;
    model_params.load = progress.control();
    lamina::Result<std::shared_ptr<const lamina::Model>> loaded = lamina::Model::load(path, model_params);
    if (!loaded) return report(loaded.error());
    if (progress.asked_to_cancel()) return report(LAMINA_ERROR_CANCELLED, std::string(path) + ": loading was cancelled");
    *model = new lamina_model{std::move(*loaded)};
    return LAMINA_OK;
  });
}

LAMINA_C_API void lamina_model_free(lamina_model* model) { delete model; }

LAMINA_C_API lamina_status lamina_model_get_info(const lamina_model* model, lamina_model_info* info) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_model_get_info";
  return guarded(function, [&] {
    if (model == nullptr) return null_argument(function, "model");
    if (info == nullptr) return null_argument(function, "info");
    const lamina_status valid = check_out_struct(function, "info", info);
    if (valid != LAMINA_OK) return valid;
    const lamina::Model& loaded = *model->model;
    const lamina::ModelHparams& hparams = loaded.hparams();
    lamina_model_info filled = zeroed<lamina_model_info>();
    filled.architecture = hparams.architecture_name.c_str();
    filled.mapped_bytes = loaded.mapped_bytes();
    filled.resident_bytes = loaded.resident_bytes();
    filled.vocab_size = hparams.vocab_size;
    filled.context_length = hparams.context_length;
    filled.embedding_length = hparams.embedding_length;
    filled.block_count = hparams.block_count;
    filled.head_count = hparams.head_count;
    filled.head_count_kv = hparams.head_count_kv;
    filled.bos = loaded.has_tokenizer() ? loaded.tokenizer().bos() : -1;
    filled.eos = loaded.has_tokenizer() ? loaded.tokenizer().eos() : -1;
    write_struct(filled, info);
    return LAMINA_OK;
  });
}

LAMINA_C_API lamina_status lamina_tokenize(const lamina_model* model, const char* text, size_t length, int add_bos, int32_t* tokens,
                                           size_t capacity, size_t* count) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_tokenize";
  return guarded(function, [&] {
    if (model == nullptr) return null_argument(function, "model");
    if (count == nullptr) return null_argument(function, "count");
    if (check_text(function, "text", text, length) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    if (add_bos < -1 || add_bos > 1) return invalid(function, "add_bos is " + std::to_string(add_bos) + ", not -1, 0 or 1");
    if (check_tokenizer(function, *model->model) != LAMINA_OK) return LAMINA_ERROR_INVALID_STATE;
    lamina::EncodeOptions options;
    options.add_bos = add_bos;
    lamina::Result<std::vector<lamina::Token>> encoded = model->model->tokenizer().encode(text_view(text, length), options);
    if (!encoded) return report(encoded.error());
    *count = encoded->size();
    if (tokens == nullptr) return LAMINA_OK;
    if (capacity < encoded->size()) {
      return report(LAMINA_ERROR_BUFFER_TOO_SMALL, function, "the text is " + std::to_string(encoded->size()) + " tokens; the buffer holds " +
                                                                 std::to_string(capacity));
    }
    if (!encoded->empty()) std::memcpy(tokens, encoded->data(), encoded->size() * sizeof(int32_t));
    return LAMINA_OK;
  });
}

LAMINA_C_API lamina_status lamina_detokenize(const lamina_model* model, const int32_t* tokens, size_t count, char* text, size_t capacity,
                                             size_t* length) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_detokenize";
  return guarded(function, [&] {
    if (model == nullptr) return null_argument(function, "model");
    if (length == nullptr) return null_argument(function, "length");
    if (tokens == nullptr && count != 0) return null_argument(function, "tokens");
    if (check_tokenizer(function, *model->model) != LAMINA_OK) return LAMINA_ERROR_INVALID_STATE;
    const std::uint32_t vocab = model->model->hparams().vocab_size;
    for (std::size_t i = 0; i < count; ++i) {  // the tokenizer would give "" for them: say so instead
      if (tokens[i] < 0 || static_cast<std::uint32_t>(tokens[i]) >= vocab) {
        return invalid(function, "tokens[" + std::to_string(i) + "] is " + std::to_string(tokens[i]) + ", outside the vocabulary [0, " +
                                     std::to_string(vocab) + ")");
      }
    }
    const std::string decoded = model->model->tokenizer().decode(tokens, count);
    return copy_text_out(function, decoded, text, capacity, length);
  });
}

// --- adapters

LAMINA_C_API lamina_status lamina_adapter_load(const lamina_model* model, const char* path, lamina_progress_callback progress,
                                               void* progress_user, lamina_adapter** adapter) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_adapter_load";
  if (adapter != nullptr) *adapter = nullptr;
  return guarded(function, [&] {
    if (adapter == nullptr) return null_argument(function, "adapter");
    if (model == nullptr) return null_argument(function, "model");
    if (path == nullptr) return null_argument(function, "path");
    ProgressBridge bridge(progress, progress_user);
    lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> loaded = load_any_adapter(*model->model, path, bridge.control());
    if (!loaded) return report(loaded.error());
    if (bridge.asked_to_cancel()) return report(LAMINA_ERROR_CANCELLED, std::string(path) + ": loading was cancelled");
    *adapter = new lamina_adapter{std::move(*loaded)};
    return LAMINA_OK;
  });
}

LAMINA_C_API void lamina_adapter_free(lamina_adapter* adapter) { delete adapter; }

// --- sessions

LAMINA_C_API lamina_status lamina_session_params_init(lamina_session_params* params, size_t struct_size) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_params_init";
  return guarded(function, [&] { return init_struct(function, params, struct_size, default_session_params()); });
}

LAMINA_C_API lamina_status lamina_session_memory_needed(const lamina_model* model, const lamina_session_params* params, uint64_t* bytes) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_memory_needed";
  return guarded(function, [&] {
    if (model == nullptr) return null_argument(function, "model");
    if (bytes == nullptr) return null_argument(function, "bytes");
    lamina::SessionParams session_params;
    const lamina_status converted = to_session_params(function, params, &session_params);
    if (converted != LAMINA_OK) return converted;
    lamina::Result<lamina::SessionMemory> memory = lamina::Session::memory_needed(*model->model, session_params);
    if (!memory) return report(memory.error());
    *bytes = memory->total();
    return LAMINA_OK;
  });
}

LAMINA_C_API lamina_status lamina_session_create(const lamina_model* model, const lamina_session_params* params, lamina_session** session) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_create";
  if (session != nullptr) *session = nullptr;
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (model == nullptr) return null_argument(function, "model");
    lamina::SessionParams session_params;
    const lamina_status converted = to_session_params(function, params, &session_params);
    if (converted != LAMINA_OK) return converted;
    lamina::Result<lamina::Session> created = lamina::Session::create(model->model, session_params);
    if (!created) return report(created.error());
    *session = new lamina_session{std::make_shared<lamina::Session>(std::move(*created))};
    return LAMINA_OK;
  });
}

LAMINA_C_API void lamina_session_free(lamina_session* session) { delete session; }

LAMINA_C_API lamina_status lamina_session_feed_text(lamina_session* session, int32_t sequence, const char* text, size_t length) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_feed_text";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (check_text(function, "text", text, length) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    lamina::Result<void> fed = session->session->feed_text(text_view(text, length), sequence);
    return fed ? LAMINA_OK : report(fed.error());
  });
}

LAMINA_C_API lamina_status lamina_session_feed_tokens(lamina_session* session, int32_t sequence, const int32_t* tokens, size_t count) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_feed_tokens";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (tokens == nullptr && count != 0) return null_argument(function, "tokens");
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    lamina::Result<void> fed = session->session->feed(tokens, count, sequence);
    return fed ? LAMINA_OK : report(fed.error());
  });
}

LAMINA_C_API lamina_status lamina_session_sample(lamina_session* session, int32_t sequence, int32_t* token) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_sample";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (token == nullptr) return null_argument(function, "token");
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    lamina::Result<lamina::Token> sampled = session->session->sample(sequence);
    if (!sampled) return report(sampled.error());
    *token = *sampled;
    return LAMINA_OK;
  });
}

LAMINA_C_API lamina_status lamina_session_generate_next(lamina_session* session, int32_t sequence, int32_t* token) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_generate_next";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (token == nullptr) return null_argument(function, "token");
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    lamina::Result<lamina::Token> generated = session->session->generate_next(sequence);
    if (!generated) return report(generated.error());
    *token = *generated;
    return LAMINA_OK;
  });
}

LAMINA_C_API lamina_status lamina_session_get_logits(const lamina_session* session, int32_t sequence, const float** logits, size_t* count) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_get_logits";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (logits == nullptr) return null_argument(function, "logits");
    if (count == nullptr) return null_argument(function, "count");
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    const float* last = session->session->last_logits(sequence);
    if (last == nullptr) {
      return report(LAMINA_ERROR_INVALID_STATE, function, "sequence " + std::to_string(sequence) + " has no logits yet; feed it first");
    }
    *logits = last;
    *count = session->session->model().hparams().vocab_size;
    return LAMINA_OK;
  });
}

LAMINA_C_API lamina_status lamina_session_get_position(const lamina_session* session, int32_t sequence, int32_t* position) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_get_position";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (position == nullptr) return null_argument(function, "position");
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    *position = session->session->position(sequence);
    return LAMINA_OK;
  });
}

LAMINA_C_API lamina_status lamina_session_rewind(lamina_session* session, int32_t sequence, int32_t length) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_rewind";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    if (length < 0) return invalid(function, "length " + std::to_string(length) + " is negative");
    session->session->rewind(sequence, length);
    return LAMINA_OK;
  });
}

LAMINA_C_API lamina_status lamina_session_cancel(lamina_session* session) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_cancel";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    session->session->cancel();  // an atomic increment: safe from any thread
    return LAMINA_OK;
  });
}

// --- adapter stacks

LAMINA_C_API lamina_status lamina_session_set_adapters(lamina_session* session, int32_t sequence, lamina_adapter* const* adapters,
                                                       const float* scales, size_t count) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_set_adapters";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (scales == nullptr && count != 0) return null_argument(function, "scales");
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    std::vector<std::shared_ptr<const lamina::LoraAdapter>> held;
    const lamina_status collected = collect_adapters(function, adapters, count, &held);
    if (collected != LAMINA_OK) return collected;
    lamina::AdapterStack stack;
    stack.reserve(count);
    for (std::size_t i = 0; i < count; ++i) stack.push_back(lamina::AdapterStackEntry{held[i], scales[i]});
    lamina::Result<void> set = session->session->set_adapters(std::move(stack), sequence);
    return set ? LAMINA_OK : report(set.error());
  });
}

LAMINA_C_API lamina_status lamina_session_add_adapter(lamina_session* session, int32_t sequence, lamina_adapter* adapter, float scale) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_add_adapter";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (adapter == nullptr) return null_argument(function, "adapter");
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    lamina::Result<void> added = session->session->add_adapter(adapter->adapter, scale, sequence);
    return added ? LAMINA_OK : report(added.error());
  });
}

LAMINA_C_API lamina_status lamina_session_set_adapter_scale(lamina_session* session, int32_t sequence, lamina_adapter* adapter, float scale) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_set_adapter_scale";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (adapter == nullptr) return null_argument(function, "adapter");
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    if (!stack_holds(*session->session, sequence, adapter->adapter.get())) return not_in_stack(function, sequence, *adapter->adapter);
    lamina::Result<void> set = session->session->set_adapter_scale(adapter->adapter.get(), scale, sequence);
    return set ? LAMINA_OK : report(set.error());
  });
}

LAMINA_C_API lamina_status lamina_session_remove_adapter(lamina_session* session, int32_t sequence, lamina_adapter* adapter) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_remove_adapter";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (adapter == nullptr) return null_argument(function, "adapter");
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    if (!session->session->remove_adapter(adapter->adapter.get(), sequence)) return not_in_stack(function, sequence, *adapter->adapter);
    return LAMINA_OK;
  });
}

// --- saved sequences

LAMINA_C_API lamina_status lamina_session_save_sequence(const lamina_session* session, int32_t sequence, void** bytes, size_t* size) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_save_sequence";
  if (bytes != nullptr) *bytes = nullptr;
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (bytes == nullptr) return null_argument(function, "bytes");
    if (size == nullptr) return null_argument(function, "size");
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    lamina::Result<std::vector<std::uint8_t>> saved = session->session->save_sequence(sequence);
    if (!saved) return report(saved.error());
    // malloc'd, so that lamina_free_buffer is free() whatever allocator the C++ side uses.
    void* copy = std::malloc(saved->empty() ? 1 : saved->size());
    if (copy == nullptr) return report_fixed(LAMINA_ERROR_OUT_OF_MEMORY, "lamina_session_save_sequence: out of memory");
    if (!saved->empty()) std::memcpy(copy, saved->data(), saved->size());
    *bytes = copy;
    *size = saved->size();
    return LAMINA_OK;
  });
}

LAMINA_C_API lamina_status lamina_session_restore_sequence(lamina_session* session, int32_t sequence, const void* bytes, size_t size,
                                                           lamina_adapter* const* adapters, size_t adapter_count) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_restore_sequence";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (bytes == nullptr) return null_argument(function, "bytes");
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    std::vector<std::shared_ptr<const lamina::LoraAdapter>> held;
    const lamina_status collected = collect_adapters(function, adapters, adapter_count, &held);
    if (collected != LAMINA_OK) return collected;
    lamina::Result<void> restored = session->session->restore_sequence(static_cast<const std::uint8_t*>(bytes), size, sequence, held);
    return restored ? LAMINA_OK : report(restored.error());
  });
}

LAMINA_C_API lamina_status lamina_session_save_sequence_to_file(const lamina_session* session, int32_t sequence, const char* path) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_save_sequence_to_file";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (path == nullptr) return null_argument(function, "path");
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    lamina::Result<void> saved = session->session->save_sequence_to_file(path, sequence);
    return saved ? LAMINA_OK : report(saved.error());
  });
}

LAMINA_C_API lamina_status lamina_session_restore_sequence_from_file(lamina_session* session, int32_t sequence, const char* path,
                                                                     lamina_adapter* const* adapters, size_t adapter_count) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_session_restore_sequence_from_file";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (path == nullptr) return null_argument(function, "path");
    if (check_sequence(function, *session->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    std::vector<std::shared_ptr<const lamina::LoraAdapter>> held;
    const lamina_status collected = collect_adapters(function, adapters, adapter_count, &held);
    if (collected != LAMINA_OK) return collected;
    lamina::Result<void> restored = session->session->restore_sequence_from_file(path, sequence, held);
    return restored ? LAMINA_OK : report(restored.error());
  });
}

// --- generation

LAMINA_C_API lamina_status lamina_generate_params_init(lamina_generate_params* params, size_t struct_size) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_generate_params_init";
  return guarded(function, [&] { return init_struct(function, params, struct_size, default_generate_params()); });
}

LAMINA_C_API lamina_status lamina_generate(lamina_session* session, const char* prompt, size_t prompt_length,
                                           const lamina_generate_params* params, lamina_text_callback on_text, void* on_text_user,
                                           lamina_generate_result* result) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_generate";
  return guarded(function, [&] {
    if (session == nullptr) return null_argument(function, "session");
    if (check_text(function, "prompt", prompt, prompt_length) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    if (check_out_struct(function, "result", result) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    lamina::GenerateOptions options;
    const lamina_status converted = to_generate_options(function, params, &options);
    if (converted != LAMINA_OK) return converted;
    if (check_sequence(function, *session->session, options.sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    lamina::Result<lamina::GenerationResult> generated =
        lamina::generate(*session->session, text_view(prompt, prompt_length), options, text_function(on_text, on_text_user));
    if (!generated) return report(generated.error());
    if (result == nullptr) return LAMINA_OK;
    lamina_generate_result filled = zeroed<lamina_generate_result>();
    filled.prompt_token_count = generated->prompt_token_count;
    filled.generated_token_count = generated->tokens.size();
    filled.prompt_seconds = generated->prompt_seconds;
    filled.generation_seconds = generated->generation_seconds;
    filled.stop_reason = stop_reason_of(generated->stop_reason);
    write_struct(filled, result);
    return LAMINA_OK;
  });
}

// --- generation in steps

LAMINA_C_API lamina_status lamina_generator_create(lamina_session* session, lamina_generator** generator) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_generator_create";
  if (generator != nullptr) *generator = nullptr;
  return guarded(function, [&] {
    if (generator == nullptr) return null_argument(function, "generator");
    if (session == nullptr) return null_argument(function, "session");
    *generator = new lamina_generator(session->session);
    return LAMINA_OK;
  });
}

LAMINA_C_API void lamina_generator_free(lamina_generator* generator) { delete generator; }

LAMINA_C_API lamina_status lamina_generator_start(lamina_generator* generator, const char* prompt, size_t prompt_length,
                                                  const lamina_generate_params* params, lamina_text_callback on_text, void* on_text_user) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_generator_start";
  return guarded(function, [&] {
    if (generator == nullptr) return null_argument(function, "generator");
    if (check_text(function, "prompt", prompt, prompt_length) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    lamina::GenerateOptions options;
    const lamina_status converted = to_generate_options(function, params, &options);
    if (converted != LAMINA_OK) return converted;
    if (check_sequence(function, *generator->session, options.sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    lamina::Result<void> started =
        generator->generator.start(text_view(prompt, prompt_length), options, text_function(on_text, on_text_user));
    return started ? LAMINA_OK : report(started.error());
  });
}

LAMINA_C_API lamina_status lamina_generator_step(lamina_generator* generator, uint32_t budget_microseconds, lamina_step_report* step_report) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_generator_step";
  return guarded(function, [&] {
    if (generator == nullptr) return null_argument(function, "generator");
    if (check_out_struct(function, "report", step_report) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    lamina::Result<lamina::StepReport> stepped = generator->generator.step(std::chrono::microseconds(budget_microseconds));
    if (!stepped) return report(stepped.error());
    if (step_report == nullptr) return LAMINA_OK;
    lamina_step_report filled = zeroed<lamina_step_report>();
    filled.prompt_tokens = stepped->prompt_tokens;
    filled.generated_tokens = stepped->generated_tokens;
    filled.passes_finished = stepped->passes_finished;
    filled.idle = stepped->idle ? 1 : 0;
    write_struct(filled, step_report);
    return LAMINA_OK;
  });
}

LAMINA_C_API lamina_status lamina_generator_stop(lamina_generator* generator, int32_t sequence) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_generator_stop";
  return guarded(function, [&] {
    if (generator == nullptr) return null_argument(function, "generator");
    if (check_sequence(function, *generator->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    generator->generator.stop(sequence);
    return LAMINA_OK;
  });
}

LAMINA_C_API lamina_status lamina_generator_is_idle(const lamina_generator* generator, int32_t* idle) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_generator_is_idle";
  return guarded(function, [&] {
    if (generator == nullptr) return null_argument(function, "generator");
    if (idle == nullptr) return null_argument(function, "idle");
    *idle = generator->generator.idle() ? 1 : 0;
    return LAMINA_OK;
  });
}

LAMINA_C_API lamina_status lamina_generator_get_progress(const lamina_generator* generator, int32_t sequence,
                                                         lamina_generation_progress* progress) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_generator_get_progress";
  return guarded(function, [&] {
    if (generator == nullptr) return null_argument(function, "generator");
    if (progress == nullptr) return null_argument(function, "progress");
    if (check_out_struct(function, "progress", progress) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    if (check_sequence(function, *generator->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    const lamina::GenerationProgress& now = generator->generator.progress(sequence);
    lamina_generation_progress filled = zeroed<lamina_generation_progress>();
    filled.prompt_tokens_done = now.prompt_tokens_done;
    filled.prompt_tokens_total = now.prompt_tokens_total;
    filled.tokens_generated = now.tokens_generated;
    filled.finished = now.finished ? 1 : 0;
    filled.stop_reason = stop_reason_of(now.stop_reason);
    write_struct(filled, progress);
    return LAMINA_OK;
  });
}

LAMINA_C_API lamina_status lamina_generator_get_text(const lamina_generator* generator, int32_t sequence, char* text, size_t capacity,
                                                     size_t* length) {
  using namespace lamina::detail::c_api;
  const char* function = "lamina_generator_get_text";
  return guarded(function, [&] {
    if (generator == nullptr) return null_argument(function, "generator");
    if (length == nullptr) return null_argument(function, "length");
    if (check_sequence(function, *generator->session, sequence) != LAMINA_OK) return LAMINA_ERROR_INVALID_ARGUMENT;
    return copy_text_out(function, generator->generator.result(sequence).text, text, capacity, length);
  });
}

}  // extern "C"

#undef LAMINA_C_EXCEPTIONS
#endif  // LAMINA_C_IMPLEMENTATION
