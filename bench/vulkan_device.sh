#!/usr/bin/env bash
# bench/vulkan_device.sh — lamina's Vulkan backend and llama.cpp's Vulkan build on the same GPU and
# the same GGUF files, side by side: a table of prompt (pp) and generation (tg) tokens/s and the
# ratios lamina / llama.cpp (targets: tg >= 1.0x, pp >= 0.8x).
#
# usage: bench/vulkan_device.sh --llama-bench PATH [--device N] [-p N] [-n N] [-r N] MODEL.gguf...
#   --llama-bench PATH   llama-bench from a llama.cpp built with -DGGML_VULKAN=ON (or $LLAMA_BENCH)
#   --device N           the device of `lamina devices` (default: the best by type); llama.cpp
#                        gets GGML_VK_VISIBLE_DEVICES=N so both run on the same one
#   -p, -n, -r           prompt tokens, generated tokens, rounds (defaults 512, 128, 3)
#   --build DIR          where lamina is built (default: build/vulkan-release; built if missing)
# Builds lamina (Release, LAMINA_VULKAN=ON) when DIR has no CLI yet, prints the devices, then runs
# bench/compare_llama_cpp.sh with --backend vulkan for lamina and -ngl 99 (every layer on the GPU)
# for llama.cpp, rounds interleaved. Run it on a machine with a real GPU: on lavapipe (Mesa's CPU
# Vulkan driver) the figures measure nothing a player would see.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
llama_bench=${LLAMA_BENCH:-}
device=
prompt=512
generated=128
rounds=3
build=$root/build/vulkan-release
models=()

die() { echo "vulkan_device.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case $1 in
    --llama-bench) [ $# -ge 2 ] || die "--llama-bench needs a value"; llama_bench=$2; shift 2 ;;
    --device) [ $# -ge 2 ] || die "--device needs a value"; [[ $2 =~ ^[0-9]+$ ]] || die "--device: '$2' is not an index"; device=$2; shift 2 ;;
    -p) [ $# -ge 2 ] || die "-p needs a value"; prompt=$2; shift 2 ;;
    -n) [ $# -ge 2 ] || die "-n needs a value"; generated=$2; shift 2 ;;
    -r) [ $# -ge 2 ] || die "-r needs a value"; rounds=$2; shift 2 ;;
    --build) [ $# -ge 2 ] || die "--build needs a value"; build=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) models+=("$1"); shift ;;
  esac
done
[ -n "$llama_bench" ] || die "give llama.cpp's Vulkan llama-bench with --llama-bench PATH (or LLAMA_BENCH)"
[ ${#models[@]} -gt 0 ] || die "no model files given"

lamina=$build/examples/cli/lamina
if [ ! -x "$lamina" ]; then
  echo "building lamina with the Vulkan backend in $build" >&2
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DLAMINA_VULKAN=ON -DLAMINA_BUILD_TESTS=OFF -DLAMINA_BUILD_BENCH=OFF >&2
  cmake --build "$build" --target lamina_cli --parallel "$(nproc 2>/dev/null || echo 2)" >&2
fi

echo "devices:"
"$lamina" devices
lamina_args="--backend vulkan"
llama_args="-ngl 99"
if [ -n "$device" ]; then
  lamina_args+=" --device $device"
  export GGML_VK_VISIBLE_DEVICES=$device
fi
exec bash "$root/bench/compare_llama_cpp.sh" --llama-bench "$llama_bench" --lamina "$lamina" -t 1 -p "$prompt" -n "$generated" \
  -r "$rounds" --lamina-args "$lamina_args" --llama-args "$llama_args" "${models[@]}"
