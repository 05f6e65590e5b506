# tests/scripts/script_support.sh — what lamina's test scripts share; each sources it first:
#   source "$(dirname "${BASH_SOURCE[0]}")/script_support.sh"
# Sets `root` (the checkout) and `work` (a temporary folder removed on exit), and gives
# pass NAME, fail NAME WHY (one line each) and finish (the "N passed, M failed" line, and
# the script's exit status).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
