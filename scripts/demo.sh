#!/usr/bin/env bash
# scripts/demo.sh — install what is missing, build the `lamina` CLI, and run the main job: the
# demo model lamina ships (models/demo, trained on Debian's fortune cookies by
# tools/train_demo.py) continues one prompt, first alone, then with its LoRA adapters stacked
# on it at run time — one, another, and two at once, one of them subtracted.
#
# usage: scripts/demo.sh [PROMPT] [more `lamina generate` options...]
#        scripts/demo.sh --model MODEL.gguf [PROMPT] [options...]   (any GGUF model, no adapters)
# The build goes to build/demo (Release) and is reused when the script runs again.
# Environment: LAMINA_JOBS, LAMINA_NO_INSTALL=1.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/install-deps.sh g++ cmake ninja-build nlohmann-json3-dev libstb-dev ||
  echo "demo: some packages could not be installed; trying to build anyway" >&2

model=models/demo/fortunes-demo.gguf
adapters=models/demo/adapters
if [ "${1:-}" = "--model" ]; then
  model=${2:?--model needs a GGUF file}
  adapters=
  shift 2
fi
prompt=${1:-The computer}
shift $(($# < 1 ? $# : 1))
if [ ! -f "$model" ]; then
  echo "demo: no model at $model" >&2
  exit 2
fi

dir=build/demo
args=(-DCMAKE_BUILD_TYPE=Release -DLAMINA_BUILD_TESTS=OFF -DLAMINA_BUILD_BENCH=OFF -DLAMINA_WERROR=OFF)
if [ ! -f "$dir/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then args+=(-G Ninja); fi
if command -v ccache >/dev/null 2>&1; then args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B "$dir" "${args[@]}" >/dev/null
cmake --build "$dir" --target lamina_cli --parallel "${LAMINA_JOBS:-$(nproc 2>/dev/null || echo 2)}"
lamina=$dir/examples/cli/lamina

# Sampled with a fixed seed, so every run prints the same text.
generate() {  # TITLE [--lora PATH:SCALE]...
  local title=$1
  shift
  echo
  echo "== $title"
  echo "\$ lamina generate -m $model --prompt \"$prompt\" -n 48 --temp 0.7 --seed 7 $*"
  "$lamina" generate -m "$model" --prompt "$prompt" -n 48 --temp 0.7 --seed 7 "$@" "${extra[@]}"
  echo
}
extra=("$@")

generate "the base model"
if [ -n "$adapters" ]; then
  generate "base + computers adapter" --lora "$adapters/computers:1.0"
  generate "base + startrek adapter" --lora "$adapters/startrek:1.0"
  generate "base + startrek 0.8 + love -0.5 (stacked; the negative scale pushes away from love quotes)" \
    --lora "$adapters/startrek:0.8" --lora "$adapters/love:-0.5"
fi
