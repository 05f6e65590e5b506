#!/usr/bin/env python3
"""lamina from Python through its C API (liblamina_c, include/lamina/lamina.h), with ctypes alone.

Loads the demo model and two of its LoRA adapters, gives each adapter a sequence of its own,
then stacks both on one sequence, and prints the text of each as it is generated.

  python3 examples/python/demo.py --library build/release/liblamina_c.so
  LAMINA_C_LIBRARY=/opt/lamina/lib/liblamina_c.so python3 examples/python/demo.py --prompt "Love is"

Exits 1 when the library reports an error or a generation gives no text.
"""

import argparse
import codecs
import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
DEMO = REPOSITORY / "models" / "demo"

# --- the C API's types, as lamina.h declares them -------------------------------------------------

STATUS = ctypes.c_int  # lamina_status; LAMINA_OK is 0
PROGRESS_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_float, ctypes.c_void_p)
# The text is `length` bytes, not NUL-terminated: POINTER(c_char), read with ctypes.string_at.
TEXT_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t, ctypes.c_void_p)

STOP_REASONS = {0: "max tokens", 1: "end of generation", 2: "stop string", 3: "cancelled"}


class SessionParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("memory_limit_bytes", ctypes.c_uint64),
        ("seed", ctypes.c_uint64),
        ("context_length", ctypes.c_uint32),
        ("sequence_count", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
        ("thread_count", ctypes.c_uint32),
        ("max_lora_rank", ctypes.c_uint32),
        ("kv_cache_type", ctypes.c_int32),
        ("temperature", ctypes.c_float),
        ("top_k", ctypes.c_int32),
        ("top_p", ctypes.c_float),
        ("min_p", ctypes.c_float),
        ("repeat_penalty", ctypes.c_float),
        ("frequency_penalty", ctypes.c_float),
        ("presence_penalty", ctypes.c_float),
        ("penalty_last_n", ctypes.c_int32),
    ]


class GenerateParams(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("max_tokens", ctypes.c_size_t),
        ("stop_strings", ctypes.POINTER(ctypes.c_char_p)),
        ("stop_string_count", ctypes.c_size_t),
        ("sequence", ctypes.c_int32),
        ("stop_at_end_of_generation", ctypes.c_int32),
    ]


class GenerateResult(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("prompt_token_count", ctypes.c_size_t),
        ("generated_token_count", ctypes.c_size_t),
        ("prompt_seconds", ctypes.c_double),
        ("generation_seconds", ctypes.c_double),
        ("stop_reason", ctypes.c_int32),
    ]


class LaminaError(Exception):
    pass


class Lamina:
    """The functions of liblamina_c this example calls, with their C signatures."""

    def __init__(self, path):
        self.library = ctypes.CDLL(str(path))
        handle = ctypes.c_void_p
        out_handle = ctypes.POINTER(ctypes.c_void_p)
        self._declare("lamina_version", ctypes.c_char_p)
        self._declare("lamina_last_error", ctypes.c_char_p)
        self._declare("lamina_status_name", ctypes.c_char_p, STATUS)
        self._declare("lamina_model_load", STATUS, ctypes.c_char_p, ctypes.c_void_p, out_handle)
        self._declare("lamina_model_free", None, handle)
        self._declare("lamina_adapter_load", STATUS, handle, ctypes.c_char_p, PROGRESS_CALLBACK, ctypes.c_void_p, out_handle)
        self._declare("lamina_adapter_free", None, handle)
        self._declare("lamina_session_params_init", STATUS, ctypes.POINTER(SessionParams), ctypes.c_size_t)
        self._declare("lamina_session_create", STATUS, handle, ctypes.POINTER(SessionParams), out_handle)
        self._declare("lamina_session_free", None, handle)
        self._declare("lamina_session_set_adapters", STATUS, handle, ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p),
                      ctypes.POINTER(ctypes.c_float), ctypes.c_size_t)
        self._declare("lamina_session_rewind", STATUS, handle, ctypes.c_int32, ctypes.c_int32)
        self._declare("lamina_generate_params_init", STATUS, ctypes.POINTER(GenerateParams), ctypes.c_size_t)
        self._declare("lamina_generate", STATUS, handle, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(GenerateParams),
                      TEXT_CALLBACK, ctypes.c_void_p, ctypes.POINTER(GenerateResult))

    def _declare(self, name, result, *arguments):
        function = getattr(self.library, name)
        function.restype = result
        function.argtypes = list(arguments)

    def __getattr__(self, name):  # lamina.session_create(...) calls lamina_session_create and checks its status
        function = getattr(self.library, "lamina_" + name)
        if function.restype is not STATUS:
            return function

        def checked(*arguments):
            status = function(*arguments)
            if status != 0:
                name_of_status = self.library.lamina_status_name(status).decode()
                raise LaminaError(f"{name_of_status}: {self.library.lamina_last_error().decode(errors='replace')}")

        return checked


def find_library(given):
    for candidate in (given, os.environ.get("LAMINA_C_LIBRARY"), ctypes.util.find_library("lamina_c")):
        if candidate:
            return candidate
    sys.exit("demo.py: where is liblamina_c? Give --library PATH or set LAMINA_C_LIBRARY "
             "(build it with: cmake --build BUILD_DIR --target lamina_c)")


def generate(lamina, session, sequence, prompt, max_tokens):
    """Generates after `prompt` on `sequence` (cleared first), printing the text as it comes."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a piece may end inside a character
    pieces = []

    @TEXT_CALLBACK
    def on_text(text, length, user):
        piece = decoder.decode(ctypes.string_at(text, length))
        pieces.append(piece)
        print(piece, end="", flush=True)
        return 0  # nonzero would stop the generation

    params = GenerateParams()
    lamina.generate_params_init(ctypes.byref(params), ctypes.sizeof(params))
    params.sequence = sequence
    params.max_tokens = max_tokens
    result = GenerateResult(struct_size=ctypes.sizeof(GenerateResult))
    lamina.session_rewind(session, sequence, 0)
    encoded = prompt.encode()
    print(prompt, end="", flush=True)
    lamina.generate(session, encoded, len(encoded), ctypes.byref(params), on_text, None, ctypes.byref(result))
    pieces.append(decoder.decode(b"", final=True))
    print(f"\n  [{result.generated_token_count} tokens, {STOP_REASONS.get(result.stop_reason, '?')}]")
    return "".join(pieces)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", help="liblamina_c (default: $LAMINA_C_LIBRARY, then the system's)")
    parser.add_argument("--model", default=str(DEMO / "fortunes-demo.gguf"))
    parser.add_argument("--adapter", action="append", help="a PEFT folder or GGUF adapter (twice; default: the demo's computers and love)")
    parser.add_argument("--prompt", default="The computer")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=42)
    options = parser.parse_args()
    adapter_paths = options.adapter or [str(DEMO / "adapters" / "computers"), str(DEMO / "adapters" / "love")]
    if len(adapter_paths) != 2:
        parser.error("give --adapter twice, or not at all")

    lamina = Lamina(find_library(options.library))
    print(f"lamina {lamina.version().decode()}, {options.model}")
    model = ctypes.c_void_p()
    adapters = []
    session = ctypes.c_void_p()
    try:
        lamina.model_load(options.model.encode(), None, ctypes.byref(model))
        for path in adapter_paths:
            adapter = ctypes.c_void_p()
            lamina.adapter_load(model, path.encode(), PROGRESS_CALLBACK(), None, ctypes.byref(adapter))  # no progress reports
            adapters.append(adapter)

        params = SessionParams()
        lamina.session_params_init(ctypes.byref(params), ctypes.sizeof(params))
        params.context_length = 512
        params.sequence_count = 2
        params.temperature = options.temperature
        params.seed = options.seed
        lamina.session_create(model, ctypes.byref(params), ctypes.byref(session))

        def set_stack(sequence, stack):  # [(adapter, scale)]
            handles = (ctypes.c_void_p * len(stack))(*(adapter.value for adapter, _ in stack))
            scales = (ctypes.c_float * len(stack))(*(scale for _, scale in stack))
            lamina.session_set_adapters(session, sequence, handles, scales, len(stack))

        # One adapter per sequence, then both on one sequence (the second subtracted at half strength).
        runs = [
            (0, [(adapters[0], 1.0)], Path(adapter_paths[0]).name),
            (1, [(adapters[1], 1.0)], Path(adapter_paths[1]).name),
            (0, [(adapters[0], 1.0), (adapters[1], -0.5)], f"{Path(adapter_paths[0]).name} 1.0 + {Path(adapter_paths[1]).name} -0.5"),
        ]
        empty = 0
        for sequence, stack, label in runs:
            set_stack(sequence, stack)
            print(f"\n--- sequence {sequence}, {label}")
            text = generate(lamina, session, sequence, options.prompt, options.max_tokens)
            empty += not text.strip()
        if empty:
            print(f"demo.py: {empty} generation(s) gave no text", file=sys.stderr)
            return 1
        return 0
    except LaminaError as error:
        print(f"demo.py: {error}", file=sys.stderr)
        return 1
    finally:  # freeing is safe in any order: the session holds its model and its adapters
        lamina.session_free(session)
        for adapter in adapters:
            lamina.adapter_free(adapter)
        lamina.model_free(model)


if __name__ == "__main__":
    sys.exit(main())
