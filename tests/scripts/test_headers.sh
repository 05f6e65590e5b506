#!/usr/bin/env bash
# tests/scripts/test_headers.sh — lamina's public headers as a program meets them.
#
#   - Each header compiles on its own (g++ -fsyntax-only with nothing before it), so it
#     includes what it uses.
#   - The macros the headers leave defined are exactly tests/scripts/macro_allowlist.txt:
#     a program that includes every header, minus the macros of the system headers lamina
#     includes, with g++ and clang++, with LAMINA_CPU_DISPATCH 0 and 1 and LAMINA_THREADS 0.
#     Helpers such as LAMINA_CPU_INLINE must be #undef'd where they are used.
#   - Two files compiled with different knobs (LAMINA_ENABLE_ASSERTS, LAMINA_THREADS,
#     LAMINA_CPU_DISPATCH, LAMINA_SEPARATE_IMPLEMENTATION) that pass a lamina object between
#     them fail to link (the ABI namespace of config.hpp), and link when the knobs agree.
#   - LAMINA_SEPARATE_IMPLEMENTATION=1: README's embedding example does not link without the
#     file that defines LAMINA_IMPLEMENTATION (its heavy functions really are elsewhere), links
#     with it, and writes the same text on the demo model as the plain header-only build.
#
# usage: tests/scripts/test_headers.sh     prints one line per check, then "N passed, M failed"
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/script_support.sh"  # root, work, pass, fail, finish
jobs=${LAMINA_JOBS:-$(nproc 2>/dev/null || echo 2)}

# The public headers: every .hpp but instantiate.hpp, which a file includes once per
# instruction set after defining LAMINA_CPU_TARGET (kernels/cpu/dispatch.hpp does).
(cd "$root/include" && find lamina -name '*.hpp' ! -name instantiate.hpp | sort) >"$work/headers"
header_count=$(wc -l <"$work/headers")

# --- each header alone ---------------------------------------------------------------------
compile_alone() {  # HEADER (run in parallel; prints "ok HEADER" or the first error)
  local header=$1 out
  if out=$(printf '#include <%s>\n' "$header" | g++ -std=c++17 -fsyntax-only -Wall -Wextra -Wpedantic -Werror \
             -I "$ROOT/include" -x c++ - 2>&1); then
    echo "ok $header"
  else
    echo "FAIL $header $(echo "$out" | grep -m1 -E 'error|warning')"
  fi
}
export -f compile_alone
export ROOT=$root
xargs -P "$jobs" -I{} bash -c 'compile_alone {}' <"$work/headers" >"$work/alone"
alone_failures=$(grep -c '^FAIL' "$work/alone" || true)
if [ "$alone_failures" -eq 0 ]; then
  pass "each of the $header_count public headers compiles on its own (g++ -fsyntax-only)"
else
  fail "headers that do not compile alone" "$(grep '^FAIL' "$work/alone" | head -5 | tr '\n' ';')"
fi

# --- the macros they leave -----------------------------------------------------------------
sed 's|.*|#include <&>|' "$work/headers" >"$work/all.cpp"
# The system headers lamina includes (those this machine has: <windows.h> is not here).
grep -rhoE '^#\s*include\s*<[^>]+>' "$root/include/lamina" | sed -E 's/#\s*include\s*/#include /' | sort -u |
  while read -r line; do
    echo "$line" | g++ -std=c++17 -x c++ -E - >/dev/null 2>&1 && echo "$line"
  done >"$work/system.cpp"
grep -v '^#' "$root/tests/scripts/macro_allowlist.txt" | grep . | sort >"$work/allowed"

macro_names() { awk '{ print $2 }' | sed 's/(.*//' | sort -u; }

for compiler in g++ clang++; do
  command -v "$compiler" >/dev/null 2>&1 || { fail "$compiler" "not installed"; continue; }
  "$compiler" -std=c++17 -dM -E "$work/system.cpp" | macro_names >"$work/system-macros"
  for knobs in "" "-DLAMINA_CPU_DISPATCH=1" "-DLAMINA_THREADS=0" "-DLAMINA_SEPARATE_IMPLEMENTATION=1" "-DLAMINA_IMPLEMENTATION"; do
    name="$compiler ${knobs:-(defaults)}"
    # shellcheck disable=SC2086  # $knobs is zero or one flag
    if ! "$compiler" -std=c++17 $knobs -I "$root/include" -dM -E "$work/all.cpp" 2>"$work/err" | macro_names >"$work/macros"; then
      fail "$name" "does not preprocess: $(head -c 300 "$work/err")"
      continue
    fi
    # The program's own definition of LAMINA_IMPLEMENTATION is not the headers'.
    comm -23 "$work/macros" "$work/system-macros" | grep -vx 'LAMINA_IMPLEMENTATION' >"$work/left"
    extra=$(comm -23 "$work/left" "$work/allowed" | tr '\n' ' ')
    missing=$(comm -13 "$work/left" "$work/allowed" | tr '\n' ' ')
    if [ -n "$extra" ] || [ -n "$missing" ]; then
      fail "$name" "macros not in the allow-list: ${extra:-none}; listed but not defined: ${missing:-none}"
    else
      pass "$name: the headers leave exactly the $(wc -l <"$work/allowed") allowed macros"
    fi
  done
done

# --- knobs select the ABI namespace ---------------------------------------------------------
# Its name carries the version: every abi_v... in config.hpp is abi_vMAJOR_MINOR_PATCH_.
version=$(grep -E '^#define LAMINA_VERSION_(MAJOR|MINOR|PATCH) ' "$root/include/lamina/config.hpp" | awk '{ print $3 }' | paste -sd_)
stale=$(grep -oE 'abi_v[0-9]+_[0-9]+_[0-9]+_' "$root/include/lamina/config.hpp" | grep -v "^abi_v${version}_" | sort -u | tr '\n' ' ')
if [ -z "$stale" ]; then pass "the ABI namespace names the version, $version"; else fail "ABI namespace" "names $stale but the version is $version"; fi

cat >"$work/define.cpp" <<'CPP'
#include <lamina/core/result.hpp>
#include <string>
std::string describe(const lamina::Error& error) { return error.message; }
CPP
cat >"$work/use.cpp" <<'CPP'
#include <lamina/core/result.hpp>
#include <string>
std::string describe(const lamina::Error& error);
int main() { return describe(lamina::Error{lamina::ErrorCode::invalid_argument, "x"}) == "x" ? 0 : 1; }
CPP
link_pair() {  # KNOBS_OF_DEFINE KNOBS_OF_USE -> status of compiling and linking the two files
  # shellcheck disable=SC2086  # each is zero or one flag
  g++ -std=c++17 -I "$root/include" $1 -c "$work/define.cpp" -o "$work/define.o" &&
    g++ -std=c++17 -I "$root/include" $2 -c "$work/use.cpp" -o "$work/use.o" &&
    g++ "$work/define.o" "$work/use.o" -o "$work/pair" 2>"$work/link-err" && "$work/pair"
}
if link_pair "" ""; then pass "two files with the same knobs link"; else fail "same knobs" "do not link: $(head -c 300 "$work/link-err")"; fi
for knob in LAMINA_ENABLE_ASSERTS=0 LAMINA_THREADS=0 LAMINA_CPU_DISPATCH=1 LAMINA_SEPARATE_IMPLEMENTATION=1; do
  if link_pair "-D$knob" "" 2>/dev/null; then
    fail "$knob in one file only" "the two files linked"
  elif grep -q "undefined reference" "$work/link-err"; then
    pass "$knob in one file only: the program does not link ($(grep -om1 'abi_v[0-9a-z_]*' "$work/link-err"))"
  else
    fail "$knob in one file only" "failed, but not at the link: $(head -c 300 "$work/link-err")"
  fi
done

# --- LAMINA_SEPARATE_IMPLEMENTATION ---------------------------------------------------------
awk '/^## Library API/ { in_section = 1 } in_section && /^```cpp/ { in_block = 1; next }
     in_block && /^```/ { exit } in_block { print }' "$root/README.md" >"$work/example.cpp"
printf '#define LAMINA_IMPLEMENTATION\n#include <lamina/lamina.hpp>\n' >"$work/implementation.cpp"
build() {  # OUTPUT FLAGS... SOURCES...: -O0 keeps this step short
  local output=$1
  shift
  g++ -std=c++17 -O0 -Wall -Wextra -Wpedantic -Werror -I "$root/include" "$@" -o "$output" -pthread 2>"$work/err"
}
separate=-DLAMINA_SEPARATE_IMPLEMENTATION=1
if build "$work/example-alone" "$separate" "$work/example.cpp"; then
  fail "separate implementation" "the example linked without the implementation file"
elif ! grep -q "undefined reference" "$work/err"; then
  fail "separate implementation" "the example failed, but not at the link: $(head -c 300 "$work/err")"
elif ! build "$work/example-separate" "$separate" "$work/example.cpp" "$work/implementation.cpp"; then
  fail "separate implementation" "example + implementation file do not build: $(head -c 300 "$work/err")"
elif ! build "$work/example-plain" "$work/example.cpp"; then
  fail "separate implementation" "the plain example does not build: $(head -c 300 "$work/err")"
else
  mkdir -p "$work/run"
  ln -sf "$root/models/demo/fortunes-demo.gguf" "$work/run/model.gguf"
  (cd "$work/run" && "$work/example-separate" >"$work/separate.txt" 2>&1) &&
    (cd "$work/run" && "$work/example-plain" >"$work/plain.txt" 2>&1)
  status=$?
  if [ $status -ne 0 ]; then
    fail "separate implementation" "the example failed on the demo model: $(head -c 300 "$work/separate.txt" "$work/plain.txt")"
  elif [ ! -s "$work/plain.txt" ] || ! cmp -s "$work/plain.txt" "$work/separate.txt"; then
    fail "separate implementation" "the two builds wrote different text: $(head -c 200 "$work/separate.txt") / $(head -c 200 "$work/plain.txt")"
  else
    pass "separate implementation: the example needs the LAMINA_IMPLEMENTATION file, and writes what the plain build writes ($(wc -c <"$work/plain.txt") bytes)"
  fi
fi

finish
