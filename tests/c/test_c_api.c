/* tests/c/test_c_api.c — lamina's C API (include/lamina/lamina.h) from a C99 program, on real
 * files: the demo model and its PEFT adapters (models/demo/), and the reference data's models
 * and GGUF adapters (LAMINA_SHARED_DIR), including models of other shapes.
 *
 * usage: test_c_api SOURCE_DIR SHARED_DIR    (the environment variable LAMINA_SHARED_DIR
 *                                             overrides SHARED_DIR); prints each failed check,
 *                                             then "N checks, M failed"; exits 1 on a failure
 *
 * Besides "returns LAMINA_OK" it checks what the results mean: text -> tokens -> text gives the
 * text back, a restored state generates the same text again, an adapter changes greedy text and
 * an adapter at scale 0 does not, each bad input gives its own status and a message naming
 * what was wrong. */
#include <lamina/lamina.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- checks --------------------------------------------------------------------------------- */

static int check_count = 0;
static int failure_count = 0;

static int check_at(int passed, const char* what, const char* file, int line) {
  ++check_count;
  if (!passed) {
    ++failure_count;
    fprintf(stderr, "%s:%d: FAILED: %s\n    lamina_last_error(): %s\n", file, line, what, lamina_last_error());
  }
  return passed;
}

static int check_status_at(lamina_status got, lamina_status expected, const char* call, const char* file, int line) {
  ++check_count;
  if (got != expected) {
    ++failure_count;
    fprintf(stderr, "%s:%d: FAILED: %s\n    gave %s, expected %s; lamina_last_error(): %s\n", file, line, call, lamina_status_name(got),
            lamina_status_name(expected), lamina_last_error());
    return 0;
  }
  return 1;
}

/* A failed call that must also leave a message containing `part` (a file name, an argument). */
static int check_failure_at(lamina_status got, lamina_status expected, const char* part, const char* call, const char* file, int line) {
  if (!check_status_at(got, expected, call, file, line)) return 0;
  return check_at(strstr(lamina_last_error(), part) != NULL, "the message names what was wrong", file, line) ||
         (fprintf(stderr, "    (expected it to contain \"%s\")\n", part), 0);
}

#define CHECK(condition) check_at((condition) != 0, #condition, __FILE__, __LINE__)
#define CHECK_STATUS(call, expected) check_status_at((call), (expected), #call, __FILE__, __LINE__)
#define CHECK_OK(call) check_status_at((call), LAMINA_OK, #call, __FILE__, __LINE__)
#define CHECK_FAILS(call, expected, part) check_failure_at((call), (expected), (part), #call, __FILE__, __LINE__)

/* --- paths ---------------------------------------------------------------------------------- */

static const char* source_dir = ".";
static const char* shared_dir = "../shared";

/* Up to four paths at a time, each valid until four more were made. */
static const char* path_of(const char* root, const char* relative) {
  static char paths[4][1024];
  static int next = 0;
  char* path = paths[next];
  next = (next + 1) % 4;
  snprintf(path, sizeof paths[0], "%s/%s", root, relative);
  return path;
}

static int file_exists(const char* path) {
  FILE* file = fopen(path, "rb");
  if (file == NULL) return 0;
  fclose(file);
  return 1;
}

#define DEMO_MODEL path_of(source_dir, "models/demo/fortunes-demo.gguf")
#define DEMO_ADAPTER(name) path_of(source_dir, "models/demo/adapters/" name)
#define SHARED(relative) path_of(shared_dir, relative)

/* --- callbacks ------------------------------------------------------------------------------ */

typedef struct text_sink {
  char text[8192];
  size_t length;
  int pieces;
  int stop_after_pieces;           /* > 0: return nonzero once this many pieces came */
  lamina_session* cancel_session;  /* not NULL: lamina_session_cancel it after the first piece */
} text_sink;

static void sink_reset(text_sink* sink) { memset(sink, 0, sizeof *sink); }

static int collect_text(const char* text, size_t length, void* user) {
  text_sink* sink = (text_sink*)user;
  if (sink->length + length < sizeof sink->text) {
    memcpy(sink->text + sink->length, text, length);
    sink->length += length;
    sink->text[sink->length] = '\0';
  }
  ++sink->pieces;
  if (sink->cancel_session != NULL && sink->pieces == 1) lamina_session_cancel(sink->cancel_session);
  return sink->stop_after_pieces > 0 && sink->pieces >= sink->stop_after_pieces;
}

typedef struct progress_log {
  int calls;
  float first;
  float last;
  int went_back;       /* a fraction smaller than the one before */
  int cancel_at_call;  /* > 0: return nonzero on this call */
  int cancel_at_end;   /* return nonzero when the fraction is 1 */
} progress_log;

static int record_progress(float fraction, void* user) {
  progress_log* log = (progress_log*)user;
  ++log->calls;
  if (log->calls == 1) log->first = fraction;
  else if (fraction < log->last) log->went_back = 1;
  log->last = fraction;
  if (log->cancel_at_call > 0 && log->calls == log->cancel_at_call) return 1;
  return log->cancel_at_end && fraction >= 1.0f;
}

/* --- helpers -------------------------------------------------------------------------------- */

static lamina_model* load_model(const char* path) {
  lamina_model* model = NULL;
  if (!CHECK_OK(lamina_model_load(path, NULL, &model))) return NULL;
  return model;
}

static lamina_adapter* load_adapter(const lamina_model* model, const char* path) {
  lamina_adapter* adapter = NULL;
  if (!CHECK_OK(lamina_adapter_load(model, path, NULL, NULL, &adapter))) return NULL;
  return adapter;
}

/* A greedy session (temperature 0) of `sequences` sequences, 2 threads, context 512. */
static lamina_session* greedy_session(const lamina_model* model, uint32_t sequences) {
  lamina_session_params params;
  lamina_session* session = NULL;
  if (!CHECK_OK(lamina_session_params_init(&params, sizeof params))) return NULL;
  params.context_length = 512;
  params.sequence_count = sequences;
  params.thread_count = 2;
  params.temperature = 0.0f;
  if (!CHECK_OK(lamina_session_create(model, &params, &session))) return NULL;
  return session;
}

static const char prompt[] = "The computer";

/* Clears `sequence`, then generates up to max_tokens tokens after `text` into `sink`. */
static lamina_status generate_into(lamina_session* session, int32_t sequence, const char* text, size_t max_tokens, text_sink* sink,
                                   lamina_generate_result* result) {
  lamina_generate_params params;
  lamina_status status = lamina_generate_params_init(&params, sizeof params);
  if (status != LAMINA_OK) return status;
  params.sequence = sequence;
  params.max_tokens = max_tokens;
  status = lamina_session_rewind(session, sequence, 0);
  if (status != LAMINA_OK) return status;
  sink_reset(sink);
  return lamina_generate(session, text, strlen(text), &params, collect_text, sink, result);
}

/* --- tests ---------------------------------------------------------------------------------- */

static void test_version_and_status_names(void) {
  CHECK(strcmp(lamina_version(), LAMINA_VERSION_STRING) == 0);
  CHECK(lamina_version_number() == LAMINA_VERSION_NUMBER);
  CHECK(LAMINA_VERSION_NUMBER == LAMINA_VERSION_MAJOR * 10000 + LAMINA_VERSION_MINOR * 100 + LAMINA_VERSION_PATCH);
  CHECK(strcmp(lamina_status_name(LAMINA_OK), "LAMINA_OK") == 0);
  CHECK(strcmp(lamina_status_name(LAMINA_ERROR_CANCELLED), "LAMINA_ERROR_CANCELLED") == 0);
  CHECK(strcmp(lamina_status_name(LAMINA_ERROR_INTERNAL), "LAMINA_ERROR_INTERNAL") == 0);
  CHECK(strcmp(lamina_status_name(99), "LAMINA_ERROR_UNKNOWN") == 0);
  /* The values are the ABI: they never change. */
  CHECK(LAMINA_ERROR_IO == 1 && LAMINA_ERROR_CANCELLED == 10 && LAMINA_ERROR_BUFFER_TOO_SMALL == 11 && LAMINA_ERROR_INTERNAL == 12);
  CHECK(lamina_last_error() != NULL);
  lamina_free_buffer(NULL);
}

/* Every handle and out-pointer NULL in turn: LAMINA_ERROR_INVALID_ARGUMENT, naming the argument. */
static void test_null_arguments(const lamina_model* model, lamina_session* session, lamina_adapter* adapter) {
  lamina_model* model_out = (lamina_model*)1;
  lamina_adapter* adapter_out = (lamina_adapter*)1;
  lamina_session* session_out = (lamina_session*)1;
  lamina_generator* generator_out = (lamina_generator*)1;
  lamina_model_info info;
  lamina_generation_progress progress;
  int32_t token = 0, idle = 0, position = 0;
  size_t count = 0;
  uint64_t bytes = 0;
  const float* logits = NULL;
  void* state = NULL;
  char text[16];
  const lamina_status bad = LAMINA_ERROR_INVALID_ARGUMENT;
  info.struct_size = sizeof info;
  progress.struct_size = sizeof progress;

  CHECK_FAILS(lamina_model_load(NULL, NULL, &model_out), bad, "path");
  CHECK(model_out == NULL);  /* an out handle is set to NULL first */
  CHECK_FAILS(lamina_model_load(DEMO_MODEL, NULL, NULL), bad, "model");
  CHECK_FAILS(lamina_model_params_init(NULL, sizeof(lamina_model_params)), bad, "params");
  CHECK_FAILS(lamina_model_get_info(NULL, &info), bad, "model");
  CHECK_FAILS(lamina_model_get_info(model, NULL), bad, "info");
  CHECK_FAILS(lamina_tokenize(NULL, "a", 1, 0, NULL, 0, &count), bad, "model");
  CHECK_FAILS(lamina_tokenize(model, NULL, 1, 0, NULL, 0, &count), bad, "text");
  CHECK_FAILS(lamina_tokenize(model, "a", 1, 0, NULL, 0, NULL), bad, "count");
  CHECK_FAILS(lamina_detokenize(NULL, &token, 1, text, sizeof text, &count), bad, "model");
  CHECK_FAILS(lamina_detokenize(model, NULL, 1, text, sizeof text, &count), bad, "tokens");
  CHECK_FAILS(lamina_detokenize(model, &token, 1, text, sizeof text, NULL), bad, "length");
  CHECK_FAILS(lamina_adapter_load(NULL, DEMO_ADAPTER("love"), NULL, NULL, &adapter_out), bad, "model");
  CHECK(adapter_out == NULL);
  CHECK_FAILS(lamina_adapter_load(model, NULL, NULL, NULL, &adapter_out), bad, "path");
  CHECK_FAILS(lamina_adapter_load(model, DEMO_ADAPTER("love"), NULL, NULL, NULL), bad, "adapter");
  CHECK_FAILS(lamina_session_params_init(NULL, sizeof(lamina_session_params)), bad, "params");
  CHECK_FAILS(lamina_session_memory_needed(NULL, NULL, &bytes), bad, "model");
  CHECK_FAILS(lamina_session_memory_needed(model, NULL, NULL), bad, "bytes");
  CHECK_FAILS(lamina_session_create(NULL, NULL, &session_out), bad, "model");
  CHECK(session_out == NULL);
  CHECK_FAILS(lamina_session_create(model, NULL, NULL), bad, "session");
  CHECK_FAILS(lamina_session_feed_text(NULL, 0, "a", 1), bad, "session");
  CHECK_FAILS(lamina_session_feed_text(session, 0, NULL, 1), bad, "text");
  CHECK_FAILS(lamina_session_feed_tokens(NULL, 0, &token, 1), bad, "session");
  CHECK_FAILS(lamina_session_feed_tokens(session, 0, NULL, 1), bad, "tokens");
  CHECK_FAILS(lamina_session_sample(NULL, 0, &token), bad, "session");
  CHECK_FAILS(lamina_session_sample(session, 0, NULL), bad, "token");
  CHECK_FAILS(lamina_session_generate_next(NULL, 0, &token), bad, "session");
  CHECK_FAILS(lamina_session_generate_next(session, 0, NULL), bad, "token");
  CHECK_FAILS(lamina_session_get_logits(NULL, 0, &logits, &count), bad, "session");
  CHECK_FAILS(lamina_session_get_logits(session, 0, NULL, &count), bad, "logits");
  CHECK_FAILS(lamina_session_get_logits(session, 0, &logits, NULL), bad, "count");
  CHECK_FAILS(lamina_session_get_position(NULL, 0, &position), bad, "session");
  CHECK_FAILS(lamina_session_get_position(session, 0, NULL), bad, "position");
  CHECK_FAILS(lamina_session_rewind(NULL, 0, 0), bad, "session");
  CHECK_FAILS(lamina_session_cancel(NULL), bad, "session");
  CHECK_FAILS(lamina_session_set_adapters(NULL, 0, NULL, NULL, 0), bad, "session");
  CHECK_FAILS(lamina_session_set_adapters(session, 0, NULL, NULL, 1), bad, "scales");
  CHECK_FAILS(lamina_session_set_adapters(session, 0, NULL, (const float[]){1.0f}, 1), bad, "adapters");
  CHECK_FAILS(lamina_session_set_adapters(session, 0, (lamina_adapter* const[]){NULL}, (const float[]){1.0f}, 1), bad, "adapters[0]");
  CHECK_FAILS(lamina_session_add_adapter(NULL, 0, adapter, 1.0f), bad, "session");
  CHECK_FAILS(lamina_session_add_adapter(session, 0, NULL, 1.0f), bad, "adapter");
  CHECK_FAILS(lamina_session_set_adapter_scale(NULL, 0, adapter, 1.0f), bad, "session");
  CHECK_FAILS(lamina_session_set_adapter_scale(session, 0, NULL, 1.0f), bad, "adapter");
  CHECK_FAILS(lamina_session_remove_adapter(NULL, 0, adapter), bad, "session");
  CHECK_FAILS(lamina_session_remove_adapter(session, 0, NULL), bad, "adapter");
  state = (void*)1;
  CHECK_FAILS(lamina_session_save_sequence(NULL, 0, &state, &count), bad, "session");
  CHECK(state == NULL);
  CHECK_FAILS(lamina_session_save_sequence(session, 0, NULL, &count), bad, "bytes");
  CHECK_FAILS(lamina_session_save_sequence(session, 0, &state, NULL), bad, "size");
  CHECK_FAILS(lamina_session_restore_sequence(NULL, 0, text, sizeof text, NULL, 0), bad, "session");
  CHECK_FAILS(lamina_session_restore_sequence(session, 0, NULL, 4, NULL, 0), bad, "bytes");
  CHECK_FAILS(lamina_session_restore_sequence(session, 0, text, sizeof text, NULL, 1), bad, "adapters");
  CHECK_FAILS(lamina_session_save_sequence_to_file(NULL, 0, "x"), bad, "session");
  CHECK_FAILS(lamina_session_save_sequence_to_file(session, 0, NULL), bad, "path");
  CHECK_FAILS(lamina_session_restore_sequence_from_file(NULL, 0, "x", NULL, 0), bad, "session");
  CHECK_FAILS(lamina_session_restore_sequence_from_file(session, 0, NULL, NULL, 0), bad, "path");
  CHECK_FAILS(lamina_generate_params_init(NULL, sizeof(lamina_generate_params)), bad, "params");
  CHECK_FAILS(lamina_generate(NULL, "a", 1, NULL, NULL, NULL, NULL), bad, "session");
  CHECK_FAILS(lamina_generate(session, NULL, 1, NULL, NULL, NULL, NULL), bad, "prompt");
  CHECK_FAILS(lamina_generator_create(NULL, &generator_out), bad, "session");
  CHECK(generator_out == NULL);
  CHECK_FAILS(lamina_generator_create(session, NULL), bad, "generator");
  CHECK_FAILS(lamina_generator_start(NULL, "a", 1, NULL, NULL, NULL), bad, "generator");
  CHECK_FAILS(lamina_generator_step(NULL, 1000, NULL), bad, "generator");
  CHECK_FAILS(lamina_generator_stop(NULL, 0), bad, "generator");
  CHECK_FAILS(lamina_generator_is_idle(NULL, &idle), bad, "generator");
  CHECK_FAILS(lamina_generator_get_progress(NULL, 0, &progress), bad, "generator");
  CHECK_FAILS(lamina_generator_get_text(NULL, 0, text, sizeof text, &count), bad, "generator");
  /* Freeing NULL does nothing, as free() does. */
  lamina_model_free(NULL);
  lamina_adapter_free(NULL);
  lamina_session_free(NULL);
  lamina_generator_free(NULL);
}

static void test_bad_model_files(void) {
  lamina_model* model = (lamina_model*)1;
  CHECK_FAILS(lamina_model_load(path_of(source_dir, "models/demo/no-such-model.gguf"), NULL, &model), LAMINA_ERROR_IO, "no-such-model.gguf");
  CHECK(model == NULL);
  CHECK_FAILS(lamina_model_load(path_of(source_dir, "models/demo/SOURCE.md"), NULL, &model), LAMINA_ERROR_INVALID_FORMAT, "SOURCE.md");
  CHECK(model == NULL);
  /* An adapter is a GGUF file too, but not a model. */
  CHECK_FAILS(lamina_model_load(SHARED("adapters/lora-a.gguf"), NULL, &model), LAMINA_ERROR_INVALID_ARGUMENT, "adapter");
  CHECK(model == NULL);
}

static void test_versioned_structs(const lamina_model* model) {
  lamina_session_params params;
  lamina_model_params model_params;
  uint64_t bytes = 0;
  /* A struct of a newer header: longer, with its extra fields 0 (their default) or not. */
  union {
    lamina_session_params params;
    unsigned char bytes[sizeof(lamina_session_params) + 32];
  } newer;

  CHECK_FAILS(lamina_session_params_init(&params, 2), LAMINA_ERROR_INVALID_ARGUMENT, "struct_size");
  CHECK_OK(lamina_session_params_init(&params, sizeof params));
  CHECK(params.struct_size == sizeof params);
  CHECK(params.sequence_count == 1 && params.batch_size == 512 && params.context_length == 0);
  CHECK(params.temperature > 0.79f && params.temperature < 0.81f && params.top_k == 40 && params.kv_cache_type == LAMINA_KV_CACHE_F16);
  CHECK(params.memory_limit_bytes == (uint64_t)8 << 30);
  CHECK_OK(lamina_model_params_init(&model_params, sizeof model_params));
  CHECK(model_params.load_tokenizer == 1 && model_params.touch_pages == 0 && model_params.progress == NULL);

  params.struct_size = 0;
  CHECK_FAILS(lamina_session_memory_needed(model, &params, &bytes), LAMINA_ERROR_INVALID_ARGUMENT, "struct_size");
  /* An older header's struct (one without the sampling fields): those take their defaults. */
  CHECK_OK(lamina_session_params_init(&params, sizeof params));
  params.context_length = 256;
  params.struct_size = (size_t)((const char*)&params.kv_cache_type - (const char*)&params);
  CHECK_OK(lamina_session_memory_needed(model, &params, &bytes));
  CHECK(bytes > 0);

  CHECK_OK(lamina_session_params_init(&newer.params, sizeof newer.bytes));
  CHECK(newer.params.struct_size == sizeof newer.bytes);
  CHECK(newer.bytes[sizeof newer.bytes - 1] == 0);
  CHECK_OK(lamina_session_memory_needed(model, &newer.params, &bytes));
  newer.bytes[sizeof(lamina_session_params) + 3] = 1;
  CHECK_FAILS(lamina_session_memory_needed(model, &newer.params, &bytes), LAMINA_ERROR_UNSUPPORTED, "does not know");
}

static void test_loading_progress_and_cancel(void) {
  lamina_model_params params;
  lamina_model* model = NULL;
  lamina_adapter* adapter = NULL;
  progress_log log;

  CHECK_OK(lamina_model_params_init(&params, sizeof params));
  params.progress = record_progress;
  params.progress_user = &log;
  params.touch_pages = 1;
  memset(&log, 0, sizeof log);
  if (CHECK_OK(lamina_model_load(DEMO_MODEL, &params, &model))) {
    CHECK(log.calls >= 3);
    CHECK(log.first >= 0.0f && log.first < 0.5f);
    CHECK(log.last == 1.0f);
    CHECK(!log.went_back);

    memset(&log, 0, sizeof log);
    CHECK_OK(lamina_adapter_load(model, DEMO_ADAPTER("love"), record_progress, &log, &adapter));
    CHECK(log.calls >= 2 && log.last == 1.0f && !log.went_back);
    lamina_adapter_free(adapter);

    memset(&log, 0, sizeof log);
    log.cancel_at_call = 1;
    CHECK_FAILS(lamina_adapter_load(model, DEMO_ADAPTER("love"), record_progress, &log, &adapter), LAMINA_ERROR_CANCELLED, "cancelled");
    CHECK(adapter == NULL);
    lamina_model_free(model);
  }

  /* Cancelled at the first report, and at the last one (after which the load checks nothing). */
  memset(&log, 0, sizeof log);
  log.cancel_at_call = 1;
  model = (lamina_model*)1;
  CHECK_FAILS(lamina_model_load(DEMO_MODEL, &params, &model), LAMINA_ERROR_CANCELLED, "fortunes-demo.gguf");
  CHECK(model == NULL);
  CHECK(log.calls >= 1);
  memset(&log, 0, sizeof log);
  log.cancel_at_end = 1;
  CHECK_FAILS(lamina_model_load(DEMO_MODEL, &params, &model), LAMINA_ERROR_CANCELLED, "cancelled");
  CHECK(model == NULL);
}

static void test_model_info(const lamina_model* model) {
  lamina_model_info info;
  info.struct_size = sizeof info;
  if (!CHECK_OK(lamina_model_get_info(model, &info))) return;
  /* models/demo/SOURCE.md: 6 layers, width 128, 4 query heads sharing 2 KV heads, 1024 pieces. */
  CHECK(strcmp(info.architecture, "llama") == 0);
  CHECK(info.vocab_size == 1024);
  CHECK(info.block_count == 6);
  CHECK(info.embedding_length == 128);
  CHECK(info.head_count == 4 && info.head_count_kv == 2);
  CHECK(info.context_length > 0);
  CHECK(info.bos >= 0 && (uint32_t)info.bos < info.vocab_size);
  CHECK(info.eos >= 0 && (uint32_t)info.eos < info.vocab_size && info.eos != info.bos);
  CHECK(info.mapped_bytes > 4000000 && info.mapped_bytes < 5274784);  /* F32 weights, most of the 5 MB file */
  CHECK(info.resident_bytes <= info.mapped_bytes);
  info.struct_size = 1;
  CHECK_FAILS(lamina_model_get_info(model, &info), LAMINA_ERROR_INVALID_ARGUMENT, "struct_size");
}

static void test_tokenizer(const lamina_model* model) {
  static const char text[] = "The computer said: \"caf\xc3\xa9 na\xc3\xafve, 42 </s> <s>!\"\nTwo lines.";
  const size_t length = sizeof text - 1;
  int32_t tokens[256];
  char decoded[512];
  size_t count = 0, needed = 0, decoded_length = 0, i;
  lamina_model_info info;
  info.struct_size = sizeof info;
  if (!CHECK_OK(lamina_model_get_info(model, &info))) return;

  /* Size query, a buffer too small (the count is written all the same), then the ids. */
  if (!CHECK_OK(lamina_tokenize(model, text, length, 0, NULL, 0, &needed))) return;
  CHECK(needed > 5 && needed < 256);
  CHECK_FAILS(lamina_tokenize(model, text, length, 0, tokens, needed - 1, &count), LAMINA_ERROR_BUFFER_TOO_SMALL, "buffer");
  CHECK(count == needed);
  if (!CHECK_OK(lamina_tokenize(model, text, length, 0, tokens, 256, &count))) return;
  CHECK(count == needed);
  /* Plain text: "</s>" and "<s>" are characters, never the control tokens. */
  for (i = 0; i < count; ++i) CHECK(tokens[i] != info.eos && tokens[i] != info.bos);

  /* Back to text: the same bytes. */
  CHECK_OK(lamina_detokenize(model, tokens, count, NULL, 0, &decoded_length));
  CHECK(decoded_length == length);
  CHECK_FAILS(lamina_detokenize(model, tokens, count, decoded, length, &decoded_length), LAMINA_ERROR_BUFFER_TOO_SMALL, "NUL");
  if (CHECK_OK(lamina_detokenize(model, tokens, count, decoded, sizeof decoded, &decoded_length))) {
    CHECK(decoded_length == length);
    CHECK(memcmp(decoded, text, length) == 0 && decoded[length] == '\0');
  }

  /* add_bos 1 puts BOS first; -1 does as the vocabulary says. */
  CHECK_OK(lamina_tokenize(model, text, length, 1, tokens, 256, &count));
  CHECK(count == needed + 1 && tokens[0] == info.bos);
  CHECK_OK(lamina_tokenize(model, "", 0, 0, tokens, 256, &count));
  CHECK(count == 0);
  CHECK_OK(lamina_detokenize(model, NULL, 0, decoded, sizeof decoded, &decoded_length));
  CHECK(decoded_length == 0 && decoded[0] == '\0');

  /* Bad input. */
  CHECK_FAILS(lamina_tokenize(model, "ab\xff\xfe", 4, 0, tokens, 256, &count), LAMINA_ERROR_INVALID_ARGUMENT, "UTF-8");
  CHECK_FAILS(lamina_tokenize(model, "ab", 2, 2, tokens, 256, &count), LAMINA_ERROR_INVALID_ARGUMENT, "add_bos");
  tokens[0] = 1;
  tokens[1] = (int32_t)info.vocab_size;
  CHECK_FAILS(lamina_detokenize(model, tokens, 2, decoded, sizeof decoded, &decoded_length), LAMINA_ERROR_INVALID_ARGUMENT, "tokens[1]");
  tokens[1] = -1;
  CHECK_FAILS(lamina_detokenize(model, tokens, 2, decoded, sizeof decoded, &decoded_length), LAMINA_ERROR_INVALID_ARGUMENT, "vocabulary");
}

static void test_session_basics(const lamina_model* model) {
  lamina_session_params params;
  lamina_session* session = NULL;
  uint64_t small = 0, large = 0;
  int32_t token = -1, position = -1, best = 0, prompt_tokens[64];
  const float* logits = NULL;
  size_t count = 0, i, prompt_count = 0;
  lamina_model_info info;
  info.struct_size = sizeof info;
  CHECK_OK(lamina_model_get_info(model, &info));

  /* Memory planning: more context, more bytes; a limit below the need refuses the session. */
  CHECK_OK(lamina_session_params_init(&params, sizeof params));
  params.context_length = 256;
  CHECK_OK(lamina_session_memory_needed(model, &params, &small));
  params.context_length = 1024;
  CHECK_OK(lamina_session_memory_needed(model, &params, &large));
  CHECK(small > 0 && large > small);
  params.memory_limit_bytes = 1024;
  CHECK_FAILS(lamina_session_create(model, &params, &session), LAMINA_ERROR_OUT_OF_MEMORY, "memory_limit_bytes");
  CHECK(session == NULL);

  /* Options out of range, named by the message. */
  CHECK_OK(lamina_session_params_init(&params, sizeof params));
  params.sequence_count = 0;
  CHECK_FAILS(lamina_session_create(model, &params, &session), LAMINA_ERROR_INVALID_ARGUMENT, "sequence_count");
  CHECK_OK(lamina_session_params_init(&params, sizeof params));
  params.context_length = 1u << 25;
  CHECK_FAILS(lamina_session_memory_needed(model, &params, &small), LAMINA_ERROR_INVALID_ARGUMENT, "context length");
  CHECK_OK(lamina_session_params_init(&params, sizeof params));
  params.kv_cache_type = 7;
  CHECK_FAILS(lamina_session_create(model, &params, &session), LAMINA_ERROR_INVALID_ARGUMENT, "kv_cache_type");
  CHECK_OK(lamina_session_params_init(&params, sizeof params));
  params.temperature = -1.0f;
  CHECK_FAILS(lamina_session_create(model, &params, &session), LAMINA_ERROR_INVALID_ARGUMENT, "temperature");

  session = greedy_session(model, 2);
  if (session == NULL) return;
  /* Nothing fed yet: no logits to sample from. */
  CHECK_FAILS(lamina_session_sample(session, 0, &token), LAMINA_ERROR_INVALID_STATE, "logits");
  CHECK_FAILS(lamina_session_get_logits(session, 0, &logits, &count), LAMINA_ERROR_INVALID_STATE, "logits");

  /* Feeding: the position counts the prompt's tokens (with BOS); greedy picks the largest logit. */
  CHECK_OK(lamina_tokenize(model, prompt, strlen(prompt), -1, prompt_tokens, 64, &prompt_count));
  CHECK_OK(lamina_session_feed_text(session, 0, prompt, strlen(prompt)));
  CHECK_OK(lamina_session_get_position(session, 0, &position));
  CHECK(position == (int32_t)prompt_count);
  if (CHECK_OK(lamina_session_get_logits(session, 0, &logits, &count))) {
    CHECK(count == info.vocab_size);
    for (i = 1; i < count; ++i) {
      if (logits[i] > logits[best]) best = (int32_t)i;
    }
  }
  CHECK_OK(lamina_session_sample(session, 0, &token));
  CHECK(token == best);
  CHECK_OK(lamina_session_generate_next(session, 0, &token));
  CHECK(token == best);
  CHECK_OK(lamina_session_get_position(session, 0, &position));
  CHECK(position == (int32_t)prompt_count + 1);
  /* The same ids through feed_tokens on the other sequence: the same prediction. */
  CHECK_OK(lamina_session_feed_tokens(session, 1, prompt_tokens, prompt_count));
  CHECK_OK(lamina_session_sample(session, 1, &token));
  CHECK(token == best);
  CHECK_OK(lamina_session_rewind(session, 0, 0));
  CHECK_OK(lamina_session_get_position(session, 0, &position));
  CHECK(position == 0);

  /* Sequence ids outside [0, 2), and token ids outside the vocabulary. */
  CHECK_FAILS(lamina_session_feed_text(session, 2, prompt, strlen(prompt)), LAMINA_ERROR_INVALID_ARGUMENT, "sequence id 2");
  CHECK_FAILS(lamina_session_feed_text(session, -1, prompt, strlen(prompt)), LAMINA_ERROR_INVALID_ARGUMENT, "sequence id -1");
  CHECK_FAILS(lamina_session_sample(session, 5, &token), LAMINA_ERROR_INVALID_ARGUMENT, "sequence id 5");
  CHECK_FAILS(lamina_session_get_position(session, 2, &position), LAMINA_ERROR_INVALID_ARGUMENT, "sequence id 2");
  CHECK_FAILS(lamina_session_rewind(session, 3, 0), LAMINA_ERROR_INVALID_ARGUMENT, "sequence id 3");
  CHECK_FAILS(lamina_session_rewind(session, 0, -4), LAMINA_ERROR_INVALID_ARGUMENT, "negative");
  CHECK_FAILS(lamina_session_set_adapters(session, 9, NULL, NULL, 0), LAMINA_ERROR_INVALID_ARGUMENT, "sequence id 9");
  token = (int32_t)info.vocab_size;
  CHECK_FAILS(lamina_session_feed_tokens(session, 0, &token, 1), LAMINA_ERROR_INVALID_ARGUMENT, "vocabulary");
  CHECK_FAILS(lamina_session_feed_text(session, 0, "\xc3", 1), LAMINA_ERROR_INVALID_ARGUMENT, "UTF-8");
  lamina_session_free(session);
}

static void test_generate(const lamina_model* model) {
  lamina_session* session = greedy_session(model, 2);
  lamina_generate_params params;
  lamina_generate_result result;
  text_sink base, again, stopped;
  const char* stops[1];
  char stop_string[8];
  const char* found;
  if (session == NULL) return;
  result.struct_size = sizeof result;

  /* Greedy: the same text on each sequence and each run. */
  if (!CHECK_OK(generate_into(session, 0, prompt, 24, &base, &result))) return;
  CHECK(base.length > 0 && base.pieces > 0);
  CHECK(result.generated_token_count > 0 && result.generated_token_count <= 24);
  CHECK(result.prompt_token_count >= 2);
  CHECK(result.stop_reason == LAMINA_STOP_MAX_TOKENS || result.stop_reason == LAMINA_STOP_END_OF_GENERATION);
  CHECK(result.prompt_seconds >= 0.0 && result.generation_seconds >= 0.0);
  CHECK_OK(generate_into(session, 1, prompt, 24, &again, NULL));
  CHECK(strcmp(again.text, base.text) == 0);

  /* A callback that returns nonzero stops, which is no error. */
  sink_reset(&stopped);
  stopped.stop_after_pieces = 1;
  CHECK_OK(lamina_session_rewind(session, 0, 0));
  CHECK_OK(lamina_generate_params_init(&params, sizeof params));
  params.max_tokens = 24;
  CHECK_OK(lamina_generate(session, prompt, strlen(prompt), &params, collect_text, &stopped, &result));
  CHECK(result.stop_reason == LAMINA_STOP_CANCELLED);
  CHECK(stopped.pieces == 1 && strncmp(base.text, stopped.text, stopped.length) == 0);

  /* A stop string taken from the greedy text ends it just before its first occurrence. */
  if (base.length >= 10) {
    memcpy(stop_string, base.text + 6, 3);
    stop_string[3] = '\0';
    found = strstr(base.text, stop_string);
    stops[0] = stop_string;
    params.stop_strings = stops;
    params.stop_string_count = 1;
    sink_reset(&stopped);
    CHECK_OK(lamina_session_rewind(session, 0, 0));
    CHECK_OK(lamina_generate(session, prompt, strlen(prompt), &params, collect_text, &stopped, &result));
    CHECK(result.stop_reason == LAMINA_STOP_STOP_STRING);
    CHECK(found != NULL && stopped.length == (size_t)(found - base.text) && strncmp(stopped.text, base.text, stopped.length) == 0);
    params.stop_strings = NULL;
    CHECK_FAILS(lamina_generate(session, prompt, strlen(prompt), &params, NULL, NULL, NULL), LAMINA_ERROR_INVALID_ARGUMENT, "stop_strings");
    params.stop_string_count = 0;
  }

  /* Going on: an empty prompt continues the sequence. */
  CHECK_OK(generate_into(session, 0, prompt, 8, &again, NULL));
  sink_reset(&stopped);
  params.max_tokens = 8;
  CHECK_OK(lamina_generate(session, NULL, 0, &params, collect_text, &stopped, &result));
  CHECK(stopped.length > 0 || result.stop_reason == LAMINA_STOP_END_OF_GENERATION);

  /* Cancel: one that came while nothing ran does not touch the next call; one during the call
   * ends it with LAMINA_STOP_CANCELLED. */
  CHECK_OK(lamina_session_cancel(session));
  CHECK_OK(generate_into(session, 0, prompt, 24, &again, &result));
  CHECK(strcmp(again.text, base.text) == 0);
  CHECK(result.stop_reason != LAMINA_STOP_CANCELLED);
  CHECK_OK(lamina_session_rewind(session, 0, 0));
  sink_reset(&stopped);
  stopped.cancel_session = session;
  params.max_tokens = 24;
  CHECK_OK(lamina_generate(session, prompt, strlen(prompt), &params, collect_text, &stopped, &result));
  CHECK(result.stop_reason == LAMINA_STOP_CANCELLED);
  CHECK(result.generated_token_count < 24);

  /* Bad requests. */
  params.sequence = 7;
  CHECK_FAILS(lamina_generate(session, prompt, strlen(prompt), &params, NULL, NULL, NULL), LAMINA_ERROR_INVALID_ARGUMENT, "sequence id 7");
  params.sequence = 0;
  CHECK_FAILS(lamina_generate(session, "\xe2\x82", 2, &params, NULL, NULL, NULL), LAMINA_ERROR_INVALID_ARGUMENT, "UTF-8");
  result.struct_size = 0;
  CHECK_FAILS(lamina_generate(session, prompt, strlen(prompt), &params, NULL, NULL, &result), LAMINA_ERROR_INVALID_ARGUMENT, "struct_size");
  lamina_session_free(session);
}

static void test_adapters(const lamina_model* model) {
  lamina_session* session = greedy_session(model, 2);
  lamina_adapter* computers = load_adapter(model, DEMO_ADAPTER("computers"));
  lamina_adapter* love = load_adapter(model, DEMO_ADAPTER("love"));
  lamina_adapter* both[2];
  const float scales[2] = {1.0f, -0.5f};
  text_sink base, adapted, other, stacked, check;
  if (session == NULL || computers == NULL || love == NULL) return;
  both[0] = computers;
  both[1] = love;

  CHECK_OK(generate_into(session, 0, prompt, 24, &base, NULL));

  /* An adapter changes greedy text; the other sequence keeps the base model. */
  CHECK_OK(lamina_session_add_adapter(session, 1, computers, 1.0f));
  CHECK_OK(generate_into(session, 1, prompt, 24, &adapted, NULL));
  CHECK(strcmp(adapted.text, base.text) != 0);
  CHECK_OK(generate_into(session, 0, prompt, 24, &check, NULL));
  CHECK(strcmp(check.text, base.text) == 0);

  /* At scale 0 it changes nothing; back at 1, the adapted text again. */
  CHECK_OK(lamina_session_set_adapter_scale(session, 1, computers, 0.0f));
  CHECK_OK(generate_into(session, 1, prompt, 24, &check, NULL));
  CHECK(strcmp(check.text, base.text) == 0);
  CHECK_OK(lamina_session_set_adapter_scale(session, 1, computers, 1.0f));
  CHECK_OK(generate_into(session, 1, prompt, 24, &check, NULL));
  CHECK(strcmp(check.text, adapted.text) == 0);
  CHECK_FAILS(lamina_session_set_adapter_scale(session, 1, love, 0.5f), LAMINA_ERROR_MISSING, "does not hold");

  /* Another adapter, another text; two stacked, a third. */
  CHECK_OK(lamina_session_set_adapters(session, 0, &love, scales, 1));
  CHECK_OK(generate_into(session, 0, prompt, 24, &other, NULL));
  CHECK(strcmp(other.text, base.text) != 0 && strcmp(other.text, adapted.text) != 0);
  CHECK_OK(lamina_session_set_adapters(session, 0, both, scales, 2));
  CHECK_OK(generate_into(session, 0, prompt, 24, &stacked, NULL));
  CHECK(strcmp(stacked.text, base.text) != 0 && strcmp(stacked.text, adapted.text) != 0);

  /* Freeing the handles while the stacks hold the adapters is safe: the stacks keep them. */
  lamina_adapter_free(love);
  love = NULL;
  CHECK_OK(generate_into(session, 0, prompt, 24, &check, NULL));
  CHECK(strcmp(check.text, stacked.text) == 0);

  /* Removing: the base text again; removing what is not there is LAMINA_ERROR_MISSING. */
  CHECK_OK(lamina_session_remove_adapter(session, 1, computers));
  CHECK_OK(generate_into(session, 1, prompt, 24, &check, NULL));
  CHECK(strcmp(check.text, base.text) == 0);
  CHECK_FAILS(lamina_session_remove_adapter(session, 1, computers), LAMINA_ERROR_MISSING, "does not hold");
  CHECK_OK(lamina_session_set_adapters(session, 0, NULL, NULL, 0));
  CHECK_OK(generate_into(session, 0, prompt, 24, &check, NULL));
  CHECK(strcmp(check.text, base.text) == 0);

  /* A scale that is not a number. */
  CHECK_FAILS(lamina_session_add_adapter(session, 0, computers, NAN), LAMINA_ERROR_INVALID_ARGUMENT, "finite");
  lamina_adapter_free(computers);
  lamina_session_free(session);
}

/* Adapters, models and states of other shapes than the demo model's. */
static void test_other_models(const lamina_model* demo) {
  lamina_model* llama = NULL;
  lamina_adapter* llama_adapter = NULL;
  lamina_adapter* refused = (lamina_adapter*)1;
  lamina_session* demo_session = NULL;
  lamina_session* llama_session = NULL;
  void* state = NULL;
  size_t state_size = 0;
  text_sink sink;
  char qwen_path[1024], llama_path[1024];  /* kept: path_of's buffers are reused */
  snprintf(qwen_path, sizeof qwen_path, "%s", SHARED("models/synth-qwen2-f32.gguf"));
  snprintf(llama_path, sizeof llama_path, "%s", SHARED("models/synth-llama-f32.gguf"));
  if (!CHECK(file_exists(llama_path) && file_exists(qwen_path))) {
    fprintf(stderr, "    reference data missing under %s (set LAMINA_SHARED_DIR)\n", shared_dir);
    return;
  }
  llama = load_model(llama_path);
  if (llama == NULL) return;
  llama_adapter = load_adapter(llama, SHARED("adapters/lora-a.gguf"));
  lamina_adapter_free(load_adapter(llama, SHARED("adapters/lora-b-peft")));  /* a PEFT folder of the reference data */

  /* An adapter for synth-llama, given to the demo model or to a Qwen2 model: an error naming the
   * tensor; the demo's adapters, given to synth-llama, the same. */
  CHECK_FAILS(lamina_adapter_load(demo, SHARED("adapters/lora-a.gguf"), NULL, NULL, &refused), LAMINA_ERROR_TYPE_MISMATCH, "blk.");
  CHECK(refused == NULL);
  {
    lamina_model* qwen = load_model(qwen_path);
    if (qwen != NULL) {
      CHECK(lamina_adapter_load(qwen, SHARED("adapters/lora-a.gguf"), NULL, NULL, &refused) != LAMINA_OK);
      CHECK(strstr(lamina_last_error(), "lora-a.gguf") != NULL);
      CHECK(refused == NULL);
      lamina_model_free(qwen);
    }
  }
  CHECK(lamina_adapter_load(llama, DEMO_ADAPTER("computers"), NULL, NULL, &refused) != LAMINA_OK);
  CHECK(strstr(lamina_last_error(), "computers") != NULL);
  CHECK(refused == NULL);
  CHECK_FAILS(lamina_adapter_load(demo, DEMO_ADAPTER("no-such-adapter"), NULL, NULL, &refused), LAMINA_ERROR_IO, "no-such-adapter");

  demo_session = greedy_session(demo, 1);
  llama_session = greedy_session(llama, 1);
  if (demo_session != NULL && llama_adapter != NULL) {
    /* An adapter of another model in a stack. */
    CHECK_FAILS(lamina_session_add_adapter(demo_session, 0, llama_adapter, 1.0f), LAMINA_ERROR_TYPE_MISMATCH, "shapes");
    CHECK_FAILS(lamina_session_set_adapters(demo_session, 0, &llama_adapter, (const float[]){1.0f}, 1), LAMINA_ERROR_TYPE_MISMATCH, "shapes");
  }
  if (demo_session != NULL && llama_session != NULL) {
    /* The demo model's state, restored in a session of synth-llama. */
    CHECK_OK(lamina_session_feed_text(demo_session, 0, prompt, strlen(prompt)));
    if (CHECK_OK(lamina_session_save_sequence(demo_session, 0, &state, &state_size))) {
      CHECK(lamina_session_restore_sequence(llama_session, 0, state, state_size, NULL, 0) != LAMINA_OK);
      CHECK(strstr(lamina_last_error(), "model") != NULL);
      lamina_free_buffer(state);
    }
    /* And synth-llama generates, with its adapter (the model's handle freed: the session keeps it). */
    if (llama_adapter != NULL) CHECK_OK(lamina_session_add_adapter(llama_session, 0, llama_adapter, 0.5f));
    lamina_model_free(llama);
    llama = NULL;
    CHECK_OK(generate_into(llama_session, 0, "hello", 8, &sink, NULL));
  }
  lamina_session_free(demo_session);
  lamina_session_free(llama_session);
  lamina_adapter_free(llama_adapter);
  lamina_model_free(llama);
}

static void test_saved_sequences(const lamina_model* model) {
  lamina_session_params params;
  lamina_session* session = NULL;
  lamina_adapter* love = load_adapter(model, DEMO_ADAPTER("love"));
  lamina_generate_params options;
  void* state = NULL;
  size_t state_size = 0;
  int32_t position = 0, saved_position = 0;
  text_sink first, second;
  const char* state_file = "test_c_api_state.bin";
  static const char garbage[] = "this is not a saved state";

  /* Sampling with a seed: only the saved sampler state makes the second text equal the first. */
  CHECK_OK(lamina_session_params_init(&params, sizeof params));
  params.context_length = 512;
  params.sequence_count = 2;
  params.thread_count = 2;
  params.temperature = 0.9f;
  params.seed = 1234;
  if (!CHECK_OK(lamina_session_create(model, &params, &session)) || love == NULL) return;
  CHECK_OK(lamina_generate_params_init(&options, sizeof options));
  options.max_tokens = 24;
  CHECK_OK(lamina_session_set_adapters(session, 0, &love, (const float[]){0.7f}, 1));

  CHECK_OK(lamina_session_feed_text(session, 0, prompt, strlen(prompt)));
  CHECK_OK(lamina_session_get_position(session, 0, &saved_position));
  if (!CHECK_OK(lamina_session_save_sequence(session, 0, &state, &state_size))) return;
  CHECK(state != NULL && state_size > 64);
  sink_reset(&first);
  CHECK_OK(lamina_generate(session, NULL, 0, &options, collect_text, &first, NULL));
  CHECK(first.length > 0);

  /* Restored: the same text again; into the other sequence too. */
  CHECK_OK(lamina_session_restore_sequence(session, 0, state, state_size, &love, 1));
  CHECK_OK(lamina_session_get_position(session, 0, &position));
  CHECK(position == saved_position);
  sink_reset(&second);
  CHECK_OK(lamina_generate(session, NULL, 0, &options, collect_text, &second, NULL));
  CHECK(strcmp(first.text, second.text) == 0);
  CHECK_OK(lamina_session_restore_sequence(session, 1, state, state_size, &love, 1));
  options.sequence = 1;
  sink_reset(&second);
  CHECK_OK(lamina_generate(session, NULL, 0, &options, collect_text, &second, NULL));
  CHECK(strcmp(first.text, second.text) == 0);
  options.sequence = 0;

  /* The saved stack holds `love`: without it the state cannot be restored. */
  CHECK_FAILS(lamina_session_restore_sequence(session, 0, state, state_size, NULL, 0), LAMINA_ERROR_MISSING, "adapter");

  /* A truncated state, or bytes that are none: an error, and the sequence as it was. */
  CHECK_OK(lamina_session_get_position(session, 0, &saved_position));
  CHECK_FAILS(lamina_session_restore_sequence(session, 0, state, state_size / 2, &love, 1), LAMINA_ERROR_INVALID_FORMAT, "session state");
  CHECK_FAILS(lamina_session_restore_sequence(session, 0, state, state_size - 1, &love, 1), LAMINA_ERROR_INVALID_FORMAT, "session state");
  CHECK_FAILS(lamina_session_restore_sequence(session, 0, garbage, sizeof garbage, NULL, 0), LAMINA_ERROR_INVALID_FORMAT, "LAMSTATE");
  CHECK_OK(lamina_session_get_position(session, 0, &position));
  CHECK(position == saved_position);
  CHECK_FAILS(lamina_session_restore_sequence(session, 2, state, state_size, &love, 1), LAMINA_ERROR_INVALID_ARGUMENT, "sequence id 2");

  /* The file forms. */
  CHECK_OK(lamina_session_restore_sequence(session, 0, state, state_size, &love, 1));
  CHECK_OK(lamina_session_save_sequence_to_file(session, 0, state_file));
  CHECK_OK(lamina_session_rewind(session, 0, 0));
  CHECK_OK(lamina_session_restore_sequence_from_file(session, 0, state_file, &love, 1));
  sink_reset(&second);
  CHECK_OK(lamina_generate(session, NULL, 0, &options, collect_text, &second, NULL));
  CHECK(strcmp(first.text, second.text) == 0);
  CHECK_FAILS(lamina_session_restore_sequence_from_file(session, 0, "no-such-state.bin", &love, 1), LAMINA_ERROR_IO, "no-such-state.bin");
  CHECK(lamina_session_save_sequence_to_file(session, 0, "no-such-folder/state.bin") == LAMINA_ERROR_IO);
  remove(state_file);

  lamina_free_buffer(state);
  lamina_adapter_free(love);
  lamina_session_free(session);
}

static void test_generator(const lamina_model* model) {
  lamina_session* session = greedy_session(model, 2);
  lamina_adapter* computers = load_adapter(model, DEMO_ADAPTER("computers"));
  lamina_adapter* love = load_adapter(model, DEMO_ADAPTER("love"));
  lamina_generator* generator = NULL;
  lamina_generate_params options;
  lamina_step_report report;
  lamina_generation_progress progress;
  text_sink streamed[2];
  char text[8192];
  size_t length = 0;
  int32_t idle = 0, sequence;
  int steps = 0;
  if (session == NULL || computers == NULL || love == NULL) return;
  CHECK_OK(lamina_session_add_adapter(session, 0, computers, 1.0f));
  CHECK_OK(lamina_session_add_adapter(session, 1, love, 1.0f));
  if (!CHECK_OK(lamina_generator_create(session, &generator))) return;
  /* The generator holds the session: the handle may go. */
  lamina_session_free(session);
  session = NULL;

  CHECK_OK(lamina_generator_is_idle(generator, &idle));
  CHECK(idle == 1);
  CHECK_OK(lamina_generate_params_init(&options, sizeof options));
  options.max_tokens = 16;
  for (sequence = 0; sequence < 2; ++sequence) {
    options.sequence = sequence;
    sink_reset(&streamed[sequence]);
    CHECK_OK(lamina_generator_start(generator, prompt, strlen(prompt), &options, collect_text, &streamed[sequence]));
  }
  CHECK_FAILS(lamina_generator_start(generator, prompt, strlen(prompt), &options, NULL, NULL), LAMINA_ERROR_INVALID_STATE, "already");
  options.sequence = 2;
  CHECK_FAILS(lamina_generator_start(generator, prompt, strlen(prompt), &options, NULL, NULL), LAMINA_ERROR_INVALID_ARGUMENT, "sequence id 2");

  /* Steps of 2 ms until both requests are done. */
  report.struct_size = sizeof report;
  report.idle = 0;
  while (!report.idle && steps < 100000) {
    if (!CHECK_OK(lamina_generator_step(generator, 2000, &report))) break;
    ++steps;
  }
  CHECK(report.idle == 1);
  CHECK(steps > 1);
  CHECK_OK(lamina_generator_is_idle(generator, &idle));
  CHECK(idle == 1);
  for (sequence = 0; sequence < 2; ++sequence) {
    progress.struct_size = sizeof progress;
    if (!CHECK_OK(lamina_generator_get_progress(generator, sequence, &progress))) continue;
    CHECK(progress.finished == 1);
    CHECK(progress.prompt_tokens_total >= 2 && progress.prompt_tokens_done == progress.prompt_tokens_total);
    CHECK((progress.stop_reason == LAMINA_STOP_MAX_TOKENS && progress.tokens_generated == 16) ||
          progress.stop_reason == LAMINA_STOP_END_OF_GENERATION);
    /* What was streamed is the request's text. */
    CHECK_OK(lamina_generator_get_text(generator, sequence, NULL, 0, &length));
    CHECK(length == streamed[sequence].length && length > 0);
    CHECK_FAILS(lamina_generator_get_text(generator, sequence, text, length, &length), LAMINA_ERROR_BUFFER_TOO_SMALL, "buffer");
    if (CHECK_OK(lamina_generator_get_text(generator, sequence, text, sizeof text, &length))) {
      CHECK(strcmp(text, streamed[sequence].text) == 0);
    }
  }
  /* Each sequence has its own adapter: two texts. */
  CHECK(strcmp(streamed[0].text, streamed[1].text) != 0);
  CHECK_FAILS(lamina_generator_get_progress(generator, 2, &progress), LAMINA_ERROR_INVALID_ARGUMENT, "sequence id 2");

  /* A request stopped before its first step ends as cancelled. */
  options.sequence = 0;
  CHECK_OK(lamina_generator_start(generator, " and then", 9, &options, NULL, NULL));
  CHECK_OK(lamina_generator_stop(generator, 0));
  CHECK_OK(lamina_generator_step(generator, 2000, NULL));
  CHECK_OK(lamina_generator_get_progress(generator, 0, &progress));
  CHECK(progress.finished == 1 && progress.stop_reason == LAMINA_STOP_CANCELLED);
  CHECK_FAILS(lamina_generator_stop(generator, -1), LAMINA_ERROR_INVALID_ARGUMENT, "sequence id -1");

  lamina_generator_free(generator);
  lamina_adapter_free(computers);
  lamina_adapter_free(love);
}

int main(int argc, char** argv) {
  lamina_model* model = NULL;
  lamina_session* session = NULL;
  lamina_adapter* adapter = NULL;
  const char* shared_from_environment = getenv("LAMINA_SHARED_DIR");
  if (argc > 1) source_dir = argv[1];
  if (argc > 2) shared_dir = argv[2];
  if (shared_from_environment != NULL && shared_from_environment[0] != '\0') shared_dir = shared_from_environment;
  if (!file_exists(DEMO_MODEL)) {
    fprintf(stderr, "no demo model at %s (usage: test_c_api SOURCE_DIR SHARED_DIR)\n", DEMO_MODEL);
    return 1;
  }

  test_version_and_status_names();
  test_bad_model_files();
  test_loading_progress_and_cancel();
  model = load_model(DEMO_MODEL);
  if (model != NULL) {
    session = greedy_session(model, 1);
    adapter = load_adapter(model, DEMO_ADAPTER("startrek"));
    test_null_arguments(model, session, adapter);
    lamina_adapter_free(adapter);
    lamina_session_free(session);
    test_versioned_structs(model);
    test_model_info(model);
    test_tokenizer(model);
    test_session_basics(model);
    test_generate(model);
    test_adapters(model);
    test_other_models(model);
    test_saved_sequences(model);
    test_generator(model);
    lamina_model_free(model);
  }

  printf("%d checks, %d failed\n", check_count, failure_count);
  return failure_count == 0 ? 0 : 1;
}
