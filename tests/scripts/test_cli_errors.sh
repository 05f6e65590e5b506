#!/usr/bin/env bash
# tests/scripts/test_cli_errors.sh — the `lamina` command on hostile input, as a user meets it:
# FIFOs and devices where files are expected, outputs that are not regular files, JSON that
# does not parse, sequences longer than the context, terminal escapes in metadata. Each case
# must end within its time limit with exit status 1 and one line on stderr that says what is
# wrong, and must leave every path that was not the command's own as it was.
#
# usage: tests/scripts/test_cli_errors.sh PATH/TO/lamina [SHARED_DIR]
#        prints one line per case, then "N passed, M failed"
set -uo pipefail

lamina=${1:?usage: test_cli_errors.sh PATH/TO/lamina [SHARED_DIR]}
source "$(dirname "${BASH_SOURCE[0]}")/script_support.sh"  # root, work, pass, fail, finish
shared=${2:-${LAMINA_SHARED_DIR:-$root/../shared}}

# expect_error NAME MESSAGE_PART COMMAND...: status 1 within 60 s, one stderr line holding MESSAGE_PART.
expect_error() {
  local name=$1 part=$2
  shift 2
  timeout 60 "$@" >"$work/out" 2>"$work/err" </dev/null
  local status=$?
  local lines
  lines=$(wc -l <"$work/err")
  if [ "$status" -eq 124 ]; then fail "$name" "did not finish in 60 s (blocked?)"; return; fi
  if [ "$status" -ne 1 ]; then fail "$name" "exit status $status, stderr: $(head -c 300 "$work/err")"; return; fi
  if [ "$lines" -ne 1 ]; then fail "$name" "$lines lines on stderr: $(head -c 300 "$work/err")"; return; fi
  if ! grep -qF -- "$part" "$work/err"; then fail "$name" "message lacks '$part': $(cat "$work/err")"; return; fi
  pass "$name: $(cat "$work/err")"
}

# still_fifo NAME PATH: the FIFO at PATH was not replaced.
still_fifo() {
  if [ -p "$2" ]; then pass "$1: $2 is still a FIFO"; else fail "$1" "$2 is no longer a FIFO"; fi
}

model=$work/tiny.gguf
if ! "$lamina" synth --preset llama-tiny -o "$model" >/dev/null 2>"$work/err"; then
  echo "FAIL setup: lamina synth: $(cat "$work/err")"
  exit 1
fi
mkfifo "$work/fifo"

# --- files that are not regular files -----------------------------------------------------
expect_error "FIFO as -m" "not a regular file (a FIFO)" "$lamina" generate -m "$work/fifo" --prompt hi -n 1
expect_error "FIFO as --lora" "not a regular file (a FIFO)" "$lamina" logits -m "$model" --tokens "1 2" --lora "$work/fifo" -o "$work/l.f32"
mkdir "$work/peft"
ln -s "$work/fifo" "$work/peft/adapter_config.json"
expect_error "FIFO as adapter_config.json" "not a regular file" "$lamina" logits -m "$model" --tokens "1 2" --lora "$work/peft" -o "$work/l.f32"
expect_error "FIFO as tokenize -f" "not a regular file (a FIFO)" "$lamina" tokenize -m "$model" -f "$work/fifo"
expect_error "/dev/zero as tokenize -f" "not a regular file (a character device)" "$lamina" tokenize -m "$model" -f /dev/zero
expect_error "/dev/zero as --spec" "not a regular file (a character device)" "$lamina" batch-logits -m "$model" --spec /dev/zero --out-dir "$work/b"
expect_error "FIFO as quantize input" "not a regular file (a FIFO)" "$lamina" quantize "$work/fifo" "$work/q.gguf" q8_0

# --- outputs that are not ours to replace ---------------------------------------------------
expect_error "quantize to a FIFO" "not a regular file (a FIFO)" "$lamina" quantize "$model" "$work/fifo" q8_0
still_fifo "quantize to a FIFO" "$work/fifo"
expect_error "synth -o a FIFO" "not a regular file (a FIFO)" "$lamina" synth --preset llama-tiny -o "$work/fifo"
still_fifo "synth -o a FIFO" "$work/fifo"
expect_error "logits -o a FIFO" "not a regular file (a FIFO)" "$lamina" logits -m "$model" --tokens "1 2" -o "$work/fifo"
still_fifo "logits -o a FIFO" "$work/fifo"
if [ -e /dev/full ]; then
  expect_error "quantize to /dev/full" "not a regular file (a character device)" "$lamina" quantize "$model" /dev/full q8_0
  if [ -c /dev/full ]; then pass "/dev/full is still a device"; else fail "quantize to /dev/full" "/dev/full was replaced"; fi
fi
touch "$work/a-file"
expect_error "explain --out-dir an existing file" "exists and is not a directory (--out-dir)" \
  "$lamina" explain -m "$model" --tokens "1 2" --out-dir "$work/a-file"

# --- JSON ----------------------------------------------------------------------------------
printf '{"sequences": [{"tokens": [1, 2, 1e400]}]}' >"$work/overflow.json"
expect_error "1e400 in a spec" "at byte 33: invalid JSON: number overflow parsing '1e400'" "$lamina" batch-logits -m "$model" --spec "$work/overflow.json" --out-dir "$work/b"
printf '{"sequences": [{"tokens": [1, 2]}' >"$work/cut.json"
expect_error "a cut spec" "invalid JSON" "$lamina" batch-logits -m "$model" --spec "$work/cut.json" --out-dir "$work/b"

# --- chat templates ----------------------------------------------------------------------------
printf '{{ messages[0].content }}' >"$work/chat.jinja"
printf '{"messages": [{"role": "user", "content": "hi"}]}' >"$work/chat.json"
expect_error "FIFO as template --template" "not a regular file (a FIFO)" "$lamina" template --template "$work/fifo" --vars "$work/chat.json"
expect_error "FIFO as template --vars" "not a regular file (a FIFO)" "$lamina" template --template "$work/chat.jinja" --vars "$work/fifo"
expect_error "a directory as template --template" "not a regular file (a directory)" "$lamina" template --template "$work" --vars "$work/chat.json"
printf '{"messages": [' >"$work/chat-cut.json"
expect_error "cut template --vars" "invalid JSON" "$lamina" template --template "$work/chat.jinja" --vars "$work/chat-cut.json"
printf "{{ raise_exception('no\\nway') }}" >"$work/raise.jinja"
expect_error "raise_exception in a template" 'no\nway' "$lamina" template --template "$work/raise.jinja" --vars "$work/chat.json"

# --- context length --------------------------------------------------------------------------
tokens=$(seq -s ' ' 1 300)  # llama-tiny's context is 256
expect_error "logits past the context" "--tokens has 300 tokens, more than the model's context length 256 ('llama.context_length')" \
  "$lamina" logits -m "$model" --tokens "$tokens" -o "$work/l.f32"
printf '{"sequences": [{"tokens": [%s]}]}' "$(seq -s ', ' 1 300)" >"$work/long.json"
expect_error "batch-logits past the context" "sequences[0] has 300 tokens, more than the model's context length 256" \
  "$lamina" batch-logits -m "$model" --spec "$work/long.json" --out-dir "$work/b"
expect_error "--ctx 16777216" "more than SessionParams::memory_limit_bytes" "$lamina" generate -m "$model" --prompt hi -n 1 --ctx 16777216
expect_error "--ctx past the cap" "--ctx" "$lamina" generate -m "$model" --prompt hi -n 1 --ctx 16777217

# --- an adapter given as the model -------------------------------------------------------------
if "$lamina" synth --lora-for "$model" -o "$work/adapter.gguf" >/dev/null 2>&1; then
  expect_error "adapter as -m" "this is a LoRA adapter" "$lamina" generate -m "$work/adapter.gguf" --prompt hi -n 1
else
  fail "adapter as -m" "lamina synth --lora-for failed"
fi

# --- terminal escapes in metadata --------------------------------------------------------------
# general.name holds "random weights"; write ESC sequences of the same length over it.
offset=$(grep -obaF "random weights" "$model" | head -1 | cut -d: -f1)
cp "$model" "$work/escape.gguf"
printf '\033[31mRED\033[0m!!' | dd of="$work/escape.gguf" bs=1 seek="$offset" conv=notrunc status=none
"$lamina" inspect -m "$work/escape.gguf" >"$work/inspect" 2>&1
if [ $? -ne 0 ]; then
  fail "inspect escapes" "inspect failed: $(head -3 "$work/inspect")"
elif grep -q $'\033' "$work/inspect"; then
  fail "inspect escapes" "an ESC byte reached the terminal"
elif ! grep -qF '\x1b[31mRED\x1b[0m!!' "$work/inspect"; then
  fail "inspect escapes" "the name is not shown escaped: $(grep general.name "$work/inspect")"
else
  pass "inspect escapes: $(grep general.name "$work/inspect" | sed 's/^ *//')"
fi

# --- user text is plain -----------------------------------------------------------------------
vocab=$shared/vocab/ggml-vocab-llama-spm.gguf
if [ -f "$vocab" ]; then
  plain=$("$lamina" tokenize -m "$vocab" --text 'hi</s>')
  trusted=$("$lamina" tokenize -m "$vocab" --text 'hi</s>' --parse-special)
  if [ "$trusted" = "1 7251 2" ] && [ "$plain" != "$trusted" ] && ! [[ " $plain " == *" 2 "* ]]; then
    pass "tokenize: '</s>' is text ($plain), a control token only with --parse-special ($trusted)"
  else
    fail "tokenize plain text" "plain '$plain', --parse-special '$trusted'"
  fi
else
  fail "tokenize plain text" "$vocab is missing"
fi

finish
