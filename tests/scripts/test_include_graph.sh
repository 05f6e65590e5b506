#!/usr/bin/env bash
# tests/scripts/test_include_graph.sh — lamina's folders include each other one way only.
#
# The order (lowest first; a file may include its own folder and any lower one):
#   0 config.hpp
#   1 core/
#   2 io/
#   3 quant/  text/           (side by side: neither includes the other)
#   4 kernels/                (kernels/vulkan/ too: the device layer knows no model)
#   5 model/
#   6 adapters/
#   7 backend.hpp             (the interface a device backend implements for sessions)
#   8 session.hpp
#   9 generate.hpp            (the generation loop, on top of session.hpp)
#  10 lamina.hpp
#  11 vulkan.hpp              (the Vulkan backend, on top of everything; lamina.hpp never includes it)
# Every `#include "..."` of every file under include/lamina is checked; an edge to a higher
# folder, or between quant/ and text/, fails.
#
# usage: tests/scripts/test_include_graph.sh     prints the edges it refuses, then "N passed, M failed"
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root/include/lamina" || exit 1

level_of() {  # PATH relative to include/lamina -> level and group
  case $1 in
    config.hpp) echo "0 config" ;;
    core/*) echo "1 core" ;;
    io/*) echo "2 io" ;;
    quant/*) echo "3 quant" ;;
    text/*) echo "3 text" ;;
    kernels/*) echo "4 kernels" ;;
    model/*) echo "5 model" ;;
    adapters/*) echo "6 adapters" ;;
    backend.hpp) echo "7 backend" ;;
    session.hpp) echo "8 session" ;;
    generate.hpp) echo "9 generate" ;;
    lamina.hpp) echo "10 top" ;;
    vulkan.hpp) echo "11 vulkan" ;;
    *) echo "? unknown" ;;
  esac
}

edges=0
refused=()
while IFS= read -r file; do
  read -r from_level from_group <<<"$(level_of "$file")"
  directory=$(dirname "$file")
  while IFS= read -r included; do
    [ -n "$included" ] || continue
    target=$(realpath -m --relative-to=. "$directory/$included")
    read -r to_level to_group <<<"$(level_of "$target")"
    edges=$((edges + 1))
    if [ "$from_level" = "?" ] || [ "$to_level" = "?" ]; then
      refused+=("$file -> $target: a folder the order does not name")
    elif [ "$to_level" -gt "$from_level" ]; then
      refused+=("$file -> $target: $from_group includes the higher $to_group")
    elif [ "$to_level" -eq "$from_level" ] && [ "$to_group" != "$from_group" ]; then
      refused+=("$file -> $target: $from_group and $to_group are side by side")
    fi
  done < <(grep -oE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"]+"' "$file" | sed -E 's/.*"(.*)"/\1/')
done < <(find . \( -name '*.hpp' -o -name '*.inl' \) | sed 's|^\./||' | sort)

if [ ${#refused[@]} -eq 0 ]; then
  echo "ok   $edges include edges between lamina's files, all downward or within a folder"
  echo "1 passed, 0 failed"
  exit 0
fi
printf 'FAIL %s\n' "${refused[@]}"
echo "0 passed, 1 failed"
exit 1
