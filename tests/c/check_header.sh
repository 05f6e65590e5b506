#!/usr/bin/env bash
# tests/c/check_header.sh — include/lamina/lamina.h as a C or C++ program meets it.
#
#   - it compiles alone as C99 (-std=c99 -Wall -Wextra -pedantic -Werror -Wstrict-prototypes)
#     and as C++ (C++98, the oldest a C++ program may be, and C++17), with nothing before it;
#   - the macros it defines in a C program all start with LAMINA_;
#   - its LAMINA_VERSION_* are include/lamina/config.hpp's (the version has one home; this
#     header repeats it because it cannot include a C++ header).
#
# usage: tests/c/check_header.sh CC CXX INCLUDE_DIR   prints one line per check; exits 1 on a failure
set -uo pipefail

cc=${1:?usage: check_header.sh CC CXX INCLUDE_DIR}
cxx=${2:?usage: check_header.sh CC CXX INCLUDE_DIR}
include=${3:?usage: check_header.sh CC CXX INCLUDE_DIR}
header=$include/lamina/lamina.h
failures=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

check() {  # NAME COMMAND...
  local name=$1
  shift
  if "$@" >"$work/out" 2>&1; then
    echo "ok   $name"
  else
    echo "FAIL $name"
    sed 's/^/     /' "$work/out" | head -20
    failures=$((failures + 1))
  fi
}

printf '#include <lamina/lamina.h>\n' >"$work/alone.c"
cp "$work/alone.c" "$work/alone.cpp"
check "lamina.h alone, C99" "$cc" -std=c99 -Wall -Wextra -pedantic -Werror -Wstrict-prototypes -fsyntax-only -I "$include" "$work/alone.c"
check "lamina.h alone, C++98" "$cxx" -std=c++98 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I "$include" "$work/alone.cpp"
check "lamina.h alone, C++17" "$cxx" -std=c++17 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I "$include" "$work/alone.cpp"

# The macros of lamina.h: those of a file that includes it, minus those of its system headers.
printf '#include <stddef.h>\n#include <stdint.h>\n' >"$work/system.c"
macros() { "$cc" -std=c99 -dM -E -I "$include" "$1" | awk '{ print $2 }' | sed 's/(.*//' | sort -u; }
if macros "$work/alone.c" >"$work/with" && macros "$work/system.c" >"$work/without"; then
  others=$(comm -23 "$work/with" "$work/without" | grep -v '^LAMINA_' | tr '\n' ' ')
  if [ -z "$others" ]; then
    echo "ok   every macro lamina.h defines starts with LAMINA_ ($(comm -23 "$work/with" "$work/without" | wc -l) macros)"
  else
    echo "FAIL lamina.h defines macros outside LAMINA_*: $others"
    failures=$((failures + 1))
  fi
else
  echo "FAIL the C compiler could not preprocess lamina.h"
  failures=$((failures + 1))
fi

version_of() {  # FILE -> "MAJOR.MINOR.PATCH STRING"
  local parts
  parts=$(grep -E '^#define LAMINA_VERSION_(MAJOR|MINOR|PATCH) ' "$1" | awk '{ print $3 }' | paste -sd.)
  echo "$parts $(grep -E '^#define LAMINA_VERSION_STRING ' "$1" | awk '{ print $3 }')"
}
header_version=$(version_of "$header")
config_version=$(version_of "$include/lamina/config.hpp")
if [ "$header_version" = "$config_version" ] && [ -n "${config_version// /}" ]; then
  echo "ok   lamina.h has config.hpp's version ($config_version)"
else
  echo "FAIL lamina.h says version '$header_version', config.hpp '$config_version': change the LAMINA_VERSION_* of lamina.h with config.hpp's"
  failures=$((failures + 1))
fi

[ "$failures" -eq 0 ]
