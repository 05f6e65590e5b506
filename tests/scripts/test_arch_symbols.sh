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

for compiler in g++ clang++; do
  if ! command -v "$compiler" >/dev/null 2>&1; then
    fail "$compiler" "not installed"
    continue
  fi
  for set in sse2 avx2 avx512; do
    for level in -O0 -O2; do
      name="$compiler $level $set"
      object=$work/$compiler-$set$level.o
      if ! "$compiler" -std=c++17 "$level" -I "$root/include" -Wall -Wextra -Wpedantic -Werror \
           -c "$root/src/lamina_cpu_$set.cpp" -o "$object" 2>"$work/err"; then
        fail "$name" "does not compile: $(head -c 400 "$work/err")"
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
for compiler in g++ clang++; do
  command -v "$compiler" >/dev/null 2>&1 || continue
  name="$compiler plain include"
  if ! "$compiler" -std=c++17 -O2 -I "$root/include" -Wall -Wextra -Wpedantic -Werror "$work/plain.cpp" \
       -o "$work/plain" -pthread 2>"$work/err"; then
    fail "$name" "does not compile: $(head -c 400 "$work/err")"
    continue
  fi
  zmm=$(objdump -d --no-show-raw-insn "$work/plain" | grep -c '%zmm' || true)
  ymm=$(objdump -d --no-show-raw-insn "$work/plain" | grep -c '%ymm' || true)
  if [ "$zmm" -eq 0 ] || [ "$ymm" -eq 0 ]; then
    fail "$name" "holds $zmm AVX-512 and $ymm AVX instructions; both kernels should be there"
  else
    pass "$name: $zmm AVX-512 and $ymm AVX instructions; this CPU runs $("$work/plain")"
  fi
done

finish
