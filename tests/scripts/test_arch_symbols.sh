#!/usr/bin/env bash
# tests/scripts/test_arch_symbols.sh — the guard against the ODR trap, checked with nm.
#
# Each instruction set's kernels (src/lamina_cpu_{sse2,avx2,avx512}.cpp) are compiled with g++
# and clang++ at -O0 and -O2, and every symbol such an object defines with external linkage
# (global, weak or unique) must live in that set's namespace, lamina::cpu::<set>::. A weak copy
# of a shared inline function (std::exp(float), a library constant, a lamina helper outside
# the arch namespace) compiled with AVX-512 may be the one the linker keeps for the whole
# program, which then crashes on a processor without AVX-512.
#
# The same objects are also compiled from one translation unit that includes lamina.hpp with no
# -m flags, which must hold code of every set: AVX-512 instructions (zmm registers) and AVX2
# (ymm), chosen at run time.
#
# usage: tests/scripts/test_arch_symbols.sh     prints one line per object, then "N passed, M failed"
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/script_support.sh"  # root, work, pass, fail, finish

# Symbols every C++ object with exception tables may define: the personality routine's
# reference, a hidden weak data symbol that only points at the one in the C++ runtime.
allowed='^DW\.ref\.__gxx_personality_v0$'
# The ABI namespace's part of a mangled name: its length and name, abi_v0_1_0_a1_t1_d1_s0 and the like.
abi='[0-9]+abi_v[0-9_]+_a[01]_t[01]_d[01]_s[01]'

# Every object first, LAMINA_JOBS (default: the cores) compilers at a time; then the checks.
jobs=${LAMINA_JOBS:-$(nproc 2>/dev/null || echo 2)}
compile_kernels() {  # COMPILER LEVEL SET
  "$1" -std=c++17 "$2" -I "$root/include" -Wall -Wextra -Wpedantic -Werror \
    -c "$root/src/lamina_cpu_$3.cpp" -o "$work/$1-$3$2.o" 2>"$work/$1-$3$2.err"
  echo $? >"$work/$1-$3$2.status"
}
export -f compile_kernels
export root work
compilers=()
for compiler in g++ clang++; do
  if command -v "$compiler" >/dev/null 2>&1; then compilers+=("$compiler"); else fail "$compiler" "not installed"; fi
done
for compiler in "${compilers[@]}"; do
  for set in sse2 avx2 avx512; do
    for level in -O0 -O2; do echo "$compiler $level $set"; done
  done
done | xargs -P "$jobs" -L 1 bash -c 'compile_kernels "$0" "$1" "$2"'

for compiler in "${compilers[@]}"; do
  for set in sse2 avx2 avx512; do
    for level in -O0 -O2; do
      name="$compiler $level $set"
      object=$work/$compiler-$set$level.o
      if [ "$(cat "$work/$compiler-$set$level.status" 2>/dev/null)" != 0 ]; then
        fail "$name" "does not compile: $(head -c 400 "$work/$compiler-$set$level.err")"
        continue
      fi
      # Defined symbols of types T/W/V/u/B/D/R/i (lowercase: local), by their mangled names:
      # _ZN6lamina22abi_v0_1_0_a1_t1_d1_s03cpu4avx2... (the ABI namespace of config.hpp; K: a const
      # member; each Z: an entity local to a function, such as a lambda in a lambda; GV: a
      # static's guard).
      external=$(nm --defined-only "$object" | awk '$2 ~ /^[TWVuBDRi]$/ { print $3 }')
      count=$(echo "$external" | grep -c . || true)
      outside=$(echo "$external" | grep -Ev "^_Z(GV)?Z*NK?6lamina${abi}3cpu${#set}$set" | grep -Ev "$allowed" | c++filt || true)
      if [ -n "$outside" ]; then
        fail "$name" "defines symbols outside lamina::cpu::$set:: $(echo "$outside" | head -5 | tr '\n' ';')"
      elif ! grep -Eqx "_ZN6lamina${abi}3cpu${#set}${set}12kernel_tableEv" <<<"$external"; then  # no pipe: grep -q would cut it
        fail "$name" "defines no lamina::cpu::$set::kernel_table()"
      else
        pass "$name: $count external symbols, all in lamina::cpu::$set::"
      fi
    done
  done
done

# One plain translation unit: lamina.hpp, no -m flags, no lamina sources.
cat >"$work/plain.cpp" <<'CPP'
#include <lamina/lamina.hpp>
#include <cstdio>
int main() { std::printf("%s\n", lamina::cpu_arch_name(lamina::cpu::cpu_kernels().arch)); }
CPP
for compiler in "${compilers[@]}"; do  # both at once
  "$compiler" -std=c++17 -O2 -I "$root/include" -Wall -Wextra -Wpedantic -Werror "$work/plain.cpp" \
    -o "$work/plain-$compiler" -pthread 2>"$work/plain-$compiler.err" &
done
wait
for compiler in "${compilers[@]}"; do
  name="$compiler plain include"
  if [ ! -x "$work/plain-$compiler" ]; then
    fail "$name" "does not compile: $(head -c 400 "$work/plain-$compiler.err")"
    continue
  fi
  zmm=$(objdump -d --no-show-raw-insn "$work/plain-$compiler" | grep -c '%zmm' || true)
  ymm=$(objdump -d --no-show-raw-insn "$work/plain-$compiler" | grep -c '%ymm' || true)
  if [ "$zmm" -eq 0 ] || [ "$ymm" -eq 0 ]; then
    fail "$name" "holds $zmm AVX-512 and $ymm AVX instructions; both kernels should be there"
  else
    pass "$name: $zmm AVX-512 and $ymm AVX instructions; this CPU runs $("$work/plain-$compiler")"
  fi
done

finish
