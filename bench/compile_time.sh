#!/usr/bin/env bash
# bench/compile_time.sh — what including lamina costs: seconds to compile an empty main() that
# includes <lamina/lamina.hpp>, with each compiler found, at -O2.
#
# usage: bench/compile_time.sh [HEADER]      HEADER default lamina/lamina.hpp
# Prints one line per compiler and standard, for example
#   compile_time header=lamina/lamina.hpp compiler=g++ std=c++17 flags=-O2 seconds=2.41 baseline=0.05 lines=61234
# seconds: best of REPEAT runs (default 3) compiling to an object file; baseline: the same main
# without the include; lines: preprocessed lines. Environment: REPEAT, COMPILERS ("g++ clang++"),
# STANDARDS ("17 20").
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
header=${1:-lamina/lamina.hpp}
repeat=${REPEAT:-3}
export CCACHE_DISABLE=1  # in case the compiler on PATH is a ccache wrapper

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '#include <%s>\nint main() { return 0; }\n' "$header" >"$work/with.cpp"
printf 'int main() { return 0; }\n' >"$work/without.cpp"

# Best wall-clock seconds of $repeat runs of a command.
best_seconds() {
  local best="" start end elapsed i
  for ((i = 0; i < repeat; i++)); do
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
    if [ -z "$best" ] || awk -v a="$elapsed" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$elapsed; fi
  done
  echo "$best"
}

for compiler in ${COMPILERS:-g++ clang++}; do
  command -v "$compiler" >/dev/null 2>&1 || { echo "# $compiler not found, skipped"; continue; }
  for standard in ${STANDARDS:-17 20}; do
    flags=(-std=c++"$standard" -O2 -I"$root/include")
    seconds=$(best_seconds "$compiler" "${flags[@]}" -c "$work/with.cpp" -o "$work/with.o")
    baseline=$(best_seconds "$compiler" "${flags[@]}" -c "$work/without.cpp" -o "$work/without.o")
    lines=$("$compiler" "${flags[@]}" -E "$work/with.cpp" | wc -l)
    echo "compile_time header=$header compiler=$compiler std=c++$standard flags=-O2 seconds=$seconds baseline=$baseline lines=$lines"
  done
done
