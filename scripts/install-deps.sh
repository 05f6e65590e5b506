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

# True when apt has a version of the package to install. All of apt-cache's output is read: an
# early exit such as `grep -q` kills apt-cache with SIGPIPE (status 141), which `set -o pipefail`
# in the calling script turns into "no such package".
lamina_package_available() {
  local candidate
  candidate=$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
  [ -n "$candidate" ] && [ "$candidate" != "(none)" ]
}

# True when this process can run commands as root (it is root, or sudo is there to ask).
lamina_can_be_root() {
  [ "$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1
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
  if ! lamina_can_be_root; then
    echo "install-deps: missing: ${missing[*]}" >&2
    echo "install-deps: installing needs root or sudo; as root, run: apt-get update && apt-get install -y ${missing[*]}" >&2
    return 1
  fi
  echo "install-deps: installing ${missing[*]}"
  if ! lamina_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq; then
    echo "install-deps: apt-get update failed; trying with the package lists this machine has" >&2
  fi
  for package in "${missing[@]}"; do
    if lamina_package_available "$package"; then
      available+=("$package")
    else
      unavailable+=("$package")
    fi
  done
  if [ ${#unavailable[@]} -gt 0 ]; then
    echo "install-deps: this distribution has no package named: ${unavailable[*]} (skipped)" >&2
  fi
  if [ ${#available[@]} -gt 0 ] &&
     ! lamina_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${available[@]}"; then
    echo "install-deps: apt-get install failed for: ${available[*]}" >&2
  fi
  # What counts is what dpkg reports afterwards, not what apt-get said.
  local still_missing=()
  for package in "${missing[@]}"; do
    lamina_package_installed "$package" || still_missing+=("$package")
  done
  if [ ${#still_missing[@]} -gt 0 ]; then
    echo "install-deps: still not installed: ${still_missing[*]}" >&2
    return 1
  fi
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
