#!/usr/bin/env bash
# tests/c/check_symbols.sh — liblamina_c exports exactly the names in tests/c/lamina_c.symbols.
#
# That list is the C API's ABI. A name that leaves it breaks the programs linked against an
# earlier liblamina_c; a name that joins it must be a lamina_* function of lamina.h (anything
# else is C++ leaking out, which src/lamina_c.map and hidden visibility are there to prevent).
# A change made on purpose (a new function) updates the list with --update, committed with it.
#
# usage: tests/c/check_symbols.sh LIB LIST            exits 1, showing the difference, when they differ
#        tests/c/check_symbols.sh LIB LIST --update   writes LIB's exports to LIST
# LIB's exports: the names `nm -D --defined-only LIB` prints, sorted (NM overrides nm). They must
# also be the functions include/lamina/lamina.h declares.
set -euo pipefail

library=${1:?usage: check_symbols.sh LIB LIST [--update]}
list=${2:?usage: check_symbols.sh LIB LIST [--update]}
nm=${NM:-nm}

exports=$("$nm" -D --defined-only "$library" | awk 'NF >= 3 { print $NF }' | sed 's/@.*//' | LC_ALL=C sort -u)
if [ -z "$exports" ]; then
  echo "FAIL $library exports nothing ($nm -D --defined-only found no names)"
  exit 1
fi

if [ "${3:-}" = "--update" ]; then
  printf '%s\n' "$exports" >"$list"
  echo "wrote the $(printf '%s\n' "$exports" | wc -l) names $library exports to $list"
  exit 0
fi

if [ ! -f "$list" ]; then
  echo "FAIL no list $list; write it with: $0 $library $list --update"
  exit 1
fi
status=0
if difference=$(diff -u --label "$list (committed)" --label "$library (built)" "$list" <(printf '%s\n' "$exports")); then
  echo "ok   $library exports the $(printf '%s\n' "$exports" | wc -l) names of $(basename "$list")"
else
  echo "FAIL $library does not export what $list lists:"
  printf '%s\n' "$difference"
  echo "A change to the C API made on purpose? Then update the list and commit it with the change:"
  echo "  $0 $library $list --update"
  status=1
fi

# Every function lamina.h declares (LAMINA_C_API ... lamina_name(...)) is exported, and nothing else.
header=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../include/lamina" && pwd)/lamina.h
declared=$(grep -oE 'LAMINA_C_API [^(]*\blamina_[a-z0-9_]+\(' "$header" | grep -oE 'lamina_[a-z0-9_]+\($' | tr -d '(' | LC_ALL=C sort -u)
if difference=$(diff -u --label "declared by lamina.h" --label "$library (built)" <(printf '%s\n' "$declared") <(printf '%s\n' "$exports")); then
  echo "ok   the exports are the $(printf '%s\n' "$declared" | wc -l) functions lamina.h declares"
else
  echo "FAIL $library does not export the functions lamina.h declares:"
  printf '%s\n' "$difference"
  status=1
fi
exit $status
