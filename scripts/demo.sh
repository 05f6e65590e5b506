#!/usr/bin/env bash
# scripts/demo.sh — install what is missing, build the `lamina` CLI, and generate some text.
#
# usage: scripts/demo.sh [MODEL.gguf] [PROMPT] [more `lamina generate` options...]
#   MODEL  a GGUF model; default ../shared/models/stories260K.gguf when it exists
#   PROMPT default "Once upon a time"
# The build goes to build/demo (Release) and is reused when the script runs again.
# Environment: LAMINA_SHARED_DIR (default ../shared beside the checkout), LAMINA_JOBS, LAMINA_NO_INSTALL=1.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

echo "lamina demo: lamina will ship its own small demo model later; until then this runs a GGUF model you name"
echo "(default: the reference model ../shared/models/stories260K.gguf)."

bash scripts/install-deps.sh g++ cmake ninja-build libxsimd-dev nlohmann-json3-dev ||
  echo "demo: some packages could not be installed; trying to build anyway" >&2

shared=${LAMINA_SHARED_DIR:-$root/../shared}
[ -d "$shared" ] && shared=$(cd "$shared" && pwd)
model=${1:-$shared/models/stories260K.gguf}
prompt=${2:-Once upon a time}
shift $(($# < 2 ? $# : 2))
if [ ! -f "$model" ]; then
  echo "demo: no model at $model" >&2
  echo "usage: scripts/demo.sh [MODEL.gguf] [PROMPT] [lamina generate options...]" >&2
  exit 2
fi

dir=build/demo
args=(-DCMAKE_BUILD_TYPE=Release -DLAMINA_BUILD_TESTS=OFF -DLAMINA_BUILD_BENCH=OFF -DLAMINA_WERROR=OFF)
if [ ! -f "$dir/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then args+=(-G Ninja); fi
if command -v ccache >/dev/null 2>&1; then args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B "$dir" "${args[@]}" >/dev/null
cmake --build "$dir" --target lamina_cli --parallel "${LAMINA_JOBS:-$(nproc 2>/dev/null || echo 2)}"

echo
echo "\$ lamina generate -m $model --prompt \"$prompt\" -n 64 $*"
case $(basename "$model") in
  stories260K.gguf) echo "(stories260K's token texts are placeholders, so its words look odd; its numbers are real)" ;;
esac
exec "$dir/examples/cli/lamina" generate -m "$model" --prompt "$prompt" -n 64 "$@"
