#!/usr/bin/env bash
# scripts/install-deps.sh — install the Debian/Ubuntu packages that are missing, and only those.
#
# usage: scripts/install-deps.sh [--sanitizers] PACKAGE...
#   Each PACKAGE that dpkg does not report as installed is installed with apt-get (as root, or
#   through sudo). Packages this distribution does not have are reported and skipped.
#   --sanitizers: afterwards, if clang++ cannot link a -fsanitize=address,undefined program,
#   install the matching libclang-rt-<major>-dev (Debian 12+/Ubuntu 23.04+ ship the sanitizer
#   runtimes there; older releases have them in a package clang already depends on).
# Environment: LAMINA_NO_INSTALL=1 only reports what is missing.
# Exit status: 0 when everything asked for is installed afterwards.
#
# Other scripts either run it or source it and call lamina_install_missing / lamina_ensure_clang_sanitizers.

lamina_package_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# Runs a command as root: directly, or through sudo (non-interactively when there is no terminal).
lamina_as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi
  else
    echo "install-deps: need root or sudo to run: $*" >&2
    return 1
  fi
}

lamina_install_missing() {
  local package missing=() available=() unavailable=()
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: not a Debian/Ubuntu system; make sure these (or their equivalents) are installed: $*" >&2
    return 0
  fi
  for package in "$@"; do
    lamina_package_installed "$package" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "${LAMINA_NO_INSTALL:-0}" = 1 ]; then
    echo "install-deps: missing (LAMINA_NO_INSTALL=1, not installing): ${missing[*]}" >&2
    return 1
  fi
  echo "install-deps: installing ${missing[*]}"
  lamina_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
  for package in "${missing[@]}"; do
    if apt-cache policy "$package" 2>/dev/null | grep -q 'Candidate: [^(]'; then
      available+=("$package")
    else
      unavailable+=("$package")
    fi
  done
  if [ ${#unavailable[@]} -gt 0 ]; then
    echo "install-deps: this distribution has no package named: ${unavailable[*]} (skipped)" >&2
  fi
  [ ${#available[@]} -eq 0 ] && return 1
  lamina_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${available[@]}" || return 1
  [ ${#unavailable[@]} -eq 0 ]
}

# Makes sure clang++ can link an ASan+UBSan program and a libFuzzer one.
lamina_ensure_clang_sanitizers() {
  command -v clang++ >/dev/null 2>&1 || return 1
  local probe major status=0
  probe=$(mktemp -d)
  echo 'int main() { return 0; }' >"$probe/main.cpp"
  printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
    'extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }' >"$probe/fuzz.cpp"
  links() {
    clang++ -fsanitize=address,undefined "$probe/main.cpp" -o "$probe/main" >/dev/null 2>&1 &&
      clang++ -fsanitize=fuzzer,address,undefined "$probe/fuzz.cpp" -o "$probe/fuzz" >/dev/null 2>&1
  }
  if ! links; then
    major=$(clang++ -dumpversion 2>/dev/null | cut -d. -f1)
    echo "install-deps: clang++ cannot link sanitizer programs; installing libclang-rt-${major}-dev"
    if ! lamina_install_missing "libclang-rt-${major}-dev" || ! links; then status=1; fi
  fi
  rm -rf "$probe"
  return $status
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  sanitizers=0
  if [ "${1:-}" = "--sanitizers" ]; then
    sanitizers=1
    shift
  fi
  status=0
  lamina_install_missing "$@" || status=1
  if [ $sanitizers = 1 ]; then
    lamina_ensure_clang_sanitizers || { echo "install-deps: clang++ still cannot link -fsanitize=address,undefined programs" >&2; status=1; }
  fi
  exit $status
fi
