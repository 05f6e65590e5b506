#!/usr/bin/env bash
# tests/scripts/test_install_deps.sh — runs scripts/install-deps.sh against stand-ins for
# dpkg-query, apt-cache, apt-get, id and sudo, on a PATH that holds nothing else, and checks
# what it installs, what it reports and its exit status.
#
# The stand-ins keep their state in files of a temporary folder:
#   installed   the packages dpkg-query reports as installed, one a line (apt-get install adds to it)
#   candidates  the packages apt-cache policy knows: "NAME VERSION", VERSION "(none)" for a name
#               apt knows but cannot install; a name not listed gets no output, as apt-cache does
#   apt.log     one line per apt-get call, with its arguments
# apt-cache writes its output a line at a time followed by a long version table, the way the
# real one does, so a reader that stops early (grep -q) kills it with SIGPIPE.
#
# usage: tests/scripts/test_install_deps.sh      prints one line per case, then "N passed, M failed"
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
script=$root/scripts/install-deps.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A bin folder with the stand-ins and links to the few real programs the script and stand-ins use.
make_bin() {  # DIR WITH_SUDO(0|1)
  local bin=$1 program
  mkdir -p "$bin"
  for program in bash env sed grep cat cut head mktemp rm; do
    ln -sf "$(command -v "$program")" "$bin/$program"
  done
  cat >"$bin/dpkg-query" <<'STUB'
#!/usr/bin/env bash
# dpkg-query -W -f='${Status}' NAME
name=${!#}
if grep -qxF -- "$name" "$STUB_STATE/installed" 2>/dev/null; then
  printf 'install ok installed'
  exit 0
fi
echo "dpkg-query: no packages found matching $name" >&2
exit 1
STUB
  cat >"$bin/apt-cache" <<'STUB'
#!/usr/bin/env bash
# apt-cache policy NAME...
[ "$1" = policy ] || exit 100
shift
for name in "$@"; do
  version=$(sed -n "s/^$name //p" "$STUB_STATE/candidates")
  [ -n "$version" ] || continue
  echo "$name:"
  echo "  Installed: (none)"
  echo "  Candidate: $version"
  echo "  Version table:"
  for ((i = 0; i < 4000; i++)); do
    echo "     $version.$i 500"
    echo "        500 http://deb.example.org/debian stable/main amd64 Packages"
  done
done
STUB
  cat >"$bin/apt-get" <<'STUB'
#!/usr/bin/env bash
echo "apt-get $* (uid ${STUB_UID:-0}, DEBIAN_FRONTEND=${DEBIAN_FRONTEND:-})" >>"$STUB_STATE/apt.log"
[ "${STUB_UID:-0}" = 0 ] || { echo "E: Could not open lock file - are you root?" >&2; exit 100; }
case $1 in
  update) [ "${STUB_UPDATE_FAILS:-0}" = 1 ] && { echo "E: network is unreachable" >&2; exit 100; }; exit 0 ;;
  install)
    shift
    for name in "$@"; do
      case $name in -*) continue ;; esac
      [ "$name" = "${STUB_BROKEN:-}" ] && { echo "E: $name: unmet dependencies" >&2; exit 100; }
      echo "$name" >>"$STUB_STATE/installed"
    done ;;
esac
STUB
  cat >"$bin/id" <<'STUB'
#!/usr/bin/env bash
[ "$1" = -u ] && echo "${STUB_UID:-0}"
STUB
  if [ "$2" = 1 ]; then
    cat >"$bin/sudo" <<'STUB'
#!/usr/bin/env bash
echo "sudo $*" >>"$STUB_STATE/apt.log"
[ "$1" = -n ] && shift
STUB_UID=0 exec "$@"
STUB
  fi
  chmod +x "$bin"/dpkg-query "$bin"/apt-cache "$bin"/apt-get "$bin"/id
  [ "$2" = 1 ] && chmod +x "$bin/sudo"
  return 0
}
make_bin "$work/bin" 0
make_bin "$work/bin-sudo" 1

passed=0
failed=0
case_name=
case_failures=0

# Starts a case: fresh state with the given installed packages and apt candidates.
begin() {  # NAME
  case_name=$1
  case_failures=0
  export STUB_STATE=$work/state-$((passed + failed))
  mkdir -p "$STUB_STATE"
  : >"$STUB_STATE/installed"
  : >"$STUB_STATE/apt.log"
  cat >"$STUB_STATE/candidates" <<'LIST'
libxsimd-dev 8.1.0-7
nlohmann-json3-dev 3.11.2-2
libstb-dev 0.0~git20230129.5736b15+ds-1
unicode-data 15.0.0-1
doctest-dev 2.4.9-1
libc-dev (none)
LIST
  unset STUB_UID STUB_BROKEN STUB_UPDATE_FAILS LAMINA_NO_INSTALL
}
installed() { printf '%s\n' "$@" >>"$STUB_STATE/installed"; }

# Runs install-deps.sh with PATH set to the given bin folder only; sets `status` and `output`.
run_script() {  # BIN PACKAGE...
  local bin=$1
  shift
  output=$(PATH=$bin "$bin/bash" "$script" "$@" 2>&1 </dev/null)
  status=$?
}

expect() {  # DESCRIPTION COMMAND...
  if ! "${@:2}"; then
    echo "  $case_name: expected $1"
    echo "    exit status $status; output:"
    printf '%s\n' "$output" | sed 's/^/      /'
    echo "    apt-get calls:"
    sed 's/^/      /' "$STUB_STATE/apt.log"
    case_failures=$((case_failures + 1))
  fi
}
end() {
  if [ $case_failures -eq 0 ]; then
    passed=$((passed + 1))
    echo "PASS $case_name"
  else
    failed=$((failed + 1))
    echo "FAIL $case_name"
  fi
}
output_has() { printf '%s\n' "$output" | grep -qF -- "$1"; }
apt_log_has() { grep -qF -- "$1" "$STUB_STATE/apt.log"; }
apt_log_empty() { [ ! -s "$STUB_STATE/apt.log" ]; }
is_installed() { grep -qxF -- "$1" "$STUB_STATE/installed"; }
status_is() { [ "$status" = "$1" ]; }

begin "missing packages are installed (root, long apt-cache output)"
installed g++ cmake
run_script "$work/bin" g++ cmake libxsimd-dev nlohmann-json3-dev libstb-dev unicode-data
expect "exit status 0" status_is 0
expect "apt-get update" apt_log_has "apt-get update -qq"
expect "one apt-get install of exactly the missing packages" \
  apt_log_has "apt-get install -y -qq --no-install-recommends libxsimd-dev nlohmann-json3-dev libstb-dev unicode-data (uid 0, DEBIAN_FRONTEND=noninteractive)"
expect "libxsimd-dev installed" is_installed libxsimd-dev
expect "unicode-data installed" is_installed unicode-data
expect "no 'no package named' report" eval '! output_has "no package named"'
end

begin "nothing is done when everything is installed"
installed g++ libxsimd-dev
run_script "$work/bin" g++ libxsimd-dev
expect "exit status 0" status_is 0
expect "no apt-get call" apt_log_empty
expect "no output" eval '[ -z "$output" ]'
end

begin "a package that does not exist is reported, the others are installed"
run_script "$work/bin" libxsimd-dev no-such-package-lamina libc-dev doctest-dev
expect "exit status 1" status_is 1
expect "the unknown names reported" output_has "this distribution has no package named: no-such-package-lamina libc-dev (skipped)"
expect "the known ones installed in one call" \
  apt_log_has "apt-get install -y -qq --no-install-recommends libxsimd-dev doctest-dev"
expect "the still-missing ones named" output_has "still not installed: no-such-package-lamina libc-dev"
end

begin "no root and no sudo: names the packages and the command, runs nothing"
export STUB_UID=1000
run_script "$work/bin" libxsimd-dev libstb-dev
expect "exit status 1" status_is 1
expect "no apt-get call" apt_log_empty
expect "the missing packages named" output_has "missing: libxsimd-dev libstb-dev"
expect "the command to run as root" output_has "apt-get install -y libxsimd-dev libstb-dev"
end

begin "no root, sudo present: apt-get runs through sudo -n (no terminal)"
export STUB_UID=1000
run_script "$work/bin-sudo" libxsimd-dev
expect "exit status 0" status_is 0
expect "sudo -n apt-get install" apt_log_has "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libxsimd-dev"
expect "apt-get ran as root" apt_log_has "libxsimd-dev (uid 0, DEBIAN_FRONTEND=noninteractive)"
expect "libxsimd-dev installed" is_installed libxsimd-dev
end

begin "LAMINA_NO_INSTALL=1 reports and installs nothing"
export LAMINA_NO_INSTALL=1
run_script "$work/bin" libxsimd-dev
expect "exit status 1" status_is 1
expect "no apt-get call" apt_log_empty
expect "the missing package named" output_has "missing (LAMINA_NO_INSTALL=1, not installing): libxsimd-dev"
end

begin "apt-get install fails: reported, exit status 1"
export STUB_BROKEN=libstb-dev
run_script "$work/bin" libxsimd-dev libstb-dev
expect "exit status 1" status_is 1
expect "the failure reported" output_has "apt-get install failed for: libxsimd-dev libstb-dev"
end

begin "apt-get update fails: the package lists already there are used"
export STUB_UPDATE_FAILS=1
run_script "$work/bin" libxsimd-dev
expect "exit status 0" status_is 0
expect "the failure reported" output_has "apt-get update failed"
expect "libxsimd-dev installed" is_installed libxsimd-dev
end

begin "the functions work when sourced into a pipefail script"
installed cmake
output=$(PATH=$work/bin "$work/bin/bash" -c 'set -euo pipefail; source "$1"; lamina_install_missing cmake unicode-data' _ "$script" 2>&1 </dev/null)
status=$?
expect "exit status 0" status_is 0
expect "unicode-data installed" is_installed unicode-data
end

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
