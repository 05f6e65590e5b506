#!/usr/bin/env bash
# bench/compile_time.sh — what lamina costs to compile, in each of its three ways of building:
#   plain     `-I include` and nothing else: every function inline, the SSE2/AVX2/AVX-512 kernels
#             compiled in each file that runs a model
#   dispatch  -DLAMINA_CPU_DISPATCH=1 (the CMake target, the meson dependency): the kernels come
#             from src/lamina_cpu_*.cpp, compiled once
#   separate  -DLAMINA_SEPARATE_IMPLEMENTATION=1: the heavy functions (loading, session, forward
#             pass, tokenizer, kernels) are compiled in one file that defines LAMINA_IMPLEMENTATION
#
# usage: bench/compile_time.sh [modules|example|all]     default all
#   modules  a file that includes one header and calls nothing, for each module's header
#   example  the README's embedding example (its first ```cpp block under "Library API"), and
#            for dispatch and separate the files compiled once beside it
# Prints one line per measurement, for example
#   compile_time what=example mode=plain compiler=g++ std=c++17 flags=-O2 seconds=31.90
# seconds: best of REPEAT runs (default 2) of compiling one file to an object file, wall clock;
# an empty main() is baseline=... on the first line. Environment: REPEAT, COMPILERS ("g++"),
# STANDARD (17), FLAGS ("-O2").
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
what=${1:-all}
repeat=${REPEAT:-2}
standard=${STANDARD:-17}
read -r -a extra_flags <<<"${FLAGS:--O2}"
export CCACHE_DISABLE=1  # in case the compiler on PATH is a ccache wrapper

case $what in modules | example | all) ;; *) echo "usage: $0 [modules|example|all]" >&2; exit 2 ;; esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Best wall-clock seconds of $repeat runs of a command.
best_seconds() {
  local best="" start end elapsed i
  for ((i = 0; i < repeat; i++)); do
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
    if [ -z "$best" ] || awk -v a="$elapsed" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$elapsed; fi
  done
  echo "$best"
}

mode_flags() {  # MODE -> its -D flags
  case $1 in
    plain) ;;
    dispatch) echo "-DLAMINA_CPU_DISPATCH=1" ;;
    separate) echo "-DLAMINA_SEPARATE_IMPLEMENTATION=1" ;;
  esac
}

# The README's example: the first C++ block after "## Library API".
awk '/^## Library API/ { in_section = 1 } in_section && /^```cpp/ { in_block = 1; next }
     in_block && /^```/ { exit } in_block { print }' "$root/README.md" >"$work/example.cpp"
if ! grep -q 'lamina::generate' "$work/example.cpp"; then
  echo "bench/compile_time.sh: found no example under README.md's \"## Library API\"" >&2
  exit 1
fi
printf '#define LAMINA_IMPLEMENTATION\n#include <lamina/lamina.hpp>\n' >"$work/implementation.cpp"
printf 'int main() { return 0; }\n' >"$work/empty.cpp"

# The headers a program includes, one per module (the umbrella last).
modules=(config.hpp core/result.hpp core/executor.hpp io/gguf.hpp quant/quant.hpp text/tokenizer.hpp
         text/sampler.hpp kernels/cpu/dispatch.hpp model/model.hpp adapters/lora_load.hpp session.hpp
         generate.hpp lamina.hpp)

for compiler in ${COMPILERS:-g++}; do
  command -v "$compiler" >/dev/null 2>&1 || { echo "# $compiler not found, skipped"; continue; }
  common=(-std=c++"$standard" "${extra_flags[@]}" -I"$root/include")
  label="compiler=$compiler std=c++$standard flags=$(IFS=,; echo "${extra_flags[*]}")"
  baseline=$(best_seconds "$compiler" "${common[@]}" -c "$work/empty.cpp" -o "$work/empty.o")
  echo "compile_time what=empty-main mode=none $label seconds=$baseline"

  if [ "$what" != example ]; then
    for header in "${modules[@]}"; do
      [ -f "$root/include/lamina/$header" ] || continue
      printf '#include <lamina/%s>\nint main() { return 0; }\n' "$header" >"$work/module.cpp"
      for mode in plain dispatch separate; do
        # shellcheck disable=SC2046  # zero or one flag
        seconds=$(best_seconds "$compiler" "${common[@]}" $(mode_flags $mode) -c "$work/module.cpp" -o "$work/module.o")
        echo "compile_time what=include:$header mode=$mode $label seconds=$seconds"
      done
    done
  fi

  if [ "$what" != modules ]; then
    for mode in plain dispatch separate; do
      # shellcheck disable=SC2046
      seconds=$(best_seconds "$compiler" "${common[@]}" $(mode_flags $mode) -c "$work/example.cpp" -o "$work/example.o")
      echo "compile_time what=example mode=$mode $label seconds=$seconds"
    done
    for set in sse2 avx2 avx512; do  # what dispatch compiles once, beside the program
      [ -f "$root/src/lamina_cpu_$set.cpp" ] || continue
      seconds=$(best_seconds "$compiler" "${common[@]}" -c "$root/src/lamina_cpu_$set.cpp" -o "$work/kernels.o")
      echo "compile_time what=once:src/lamina_cpu_$set.cpp mode=dispatch $label seconds=$seconds"
    done
    for mode in separate separate+dispatch; do  # what separate compiles once
      flags=(-DLAMINA_SEPARATE_IMPLEMENTATION=1)
      [ "$mode" = separate ] || flags+=(-DLAMINA_CPU_DISPATCH=1)
      seconds=$(best_seconds "$compiler" "${common[@]}" "${flags[@]}" -c "$work/implementation.cpp" -o "$work/implementation.o")
      echo "compile_time what=once:implementation.cpp mode=$mode $label seconds=$seconds"
    done
  fi
done
