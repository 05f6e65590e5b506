#!/usr/bin/env bash
# bench/roofline.sh — how close lamina's token generation comes to the memory-bandwidth limit.
#
# usage: bench/roofline.sh [-t N] [-n N_GEN] [-r R] [--bandwidth GBPS] [--build DIR] MODEL.gguf...
#   -t N              threads for both measurements (default: nproc)
#   -n N              generated tokens per run (default 64)
#   -r R              timed runs of `lamina bench` (default 5)
#   --bandwidth GBPS  skip the bandwidth measurement and use this figure
#   --build DIR       the CMake build folder with the lamina CLI and lamina_bench_memory_bandwidth
#                     (default: build/gcc-cxx17-release)
# Generating one token reads every weight once (all matrices; one row of an untied token
# embedding), so tg t/s can be at most bandwidth / bytes per token. This prints, per model,
# bytes read per token, tg t/s and roofline % = bytes per token × tg t/s ÷ bandwidth. The
# bandwidth is lamina_bench_memory_bandwidth's best multi-threaded read (bench/README.md).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$root/build/gcc-cxx17-release
threads=$(nproc 2>/dev/null || echo 1)
generated=64
repetitions=5
bandwidth=
models=()

die() { echo "roofline.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case $1 in
    -t) [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || die "-t needs a positive integer"; threads=$2; shift 2 ;;
    -n) [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || die "-n needs a positive integer"; generated=$2; shift 2 ;;
    -r) [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]*$ ]] || die "-r needs a positive integer"; repetitions=$2; shift 2 ;;
    --bandwidth) [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--bandwidth needs a number (GB/s)"; bandwidth=$2; shift 2 ;;
    --build) [ $# -ge 2 ] || die "--build needs a folder"; build=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) models+=("$1"); shift ;;
  esac
done
[ ${#models[@]} -gt 0 ] || die "no model files given"
lamina=$build/examples/cli/lamina
[ -x "$lamina" ] || die "$lamina is missing (cmake --build $build --target lamina_cli)"
for model in "${models[@]}"; do [ -f "$model" ] || die "$model: no such file"; done

if [ -z "$bandwidth" ]; then
  meter=$build/bench/lamina_bench_memory_bandwidth
  [ -x "$meter" ] || die "$meter is missing (cmake --build $build --target lamina_bench_memory_bandwidth)"
  echo "measuring memory read bandwidth with $threads threads ..." >&2
  bandwidth=$("$meter" --threads "$threads" 2>/dev/null | sed -n 's/^read_bandwidth_gbps=\([0-9.]*\).*/\1/p')
  [ -n "$bandwidth" ] || die "the bandwidth measurement failed"
fi
echo "memory read bandwidth: $bandwidth GB/s ($threads threads)"
printf '%-36s %14s %10s %10s %9s\n' model "bytes/token" "tg t/s" "GB/s" roofline
for model in "${models[@]}"; do
  echo "lamina bench -m $model -t $threads -p 0 -n $generated -r $repetitions" >&2
  output=$("$lamina" bench -m "$model" -t "$threads" -p 0 -n "$generated" -r "$repetitions" --json 2>/dev/null) || die "lamina bench failed on $model"
  bytes=$(printf '%s\n' "$output" | sed -n 's/.*read per generated token: .*(\([0-9]*\) bytes).*/\1/p')
  tg=$(printf '%s\n' "$output" | tail -n 1 | sed -n 's/.*"tg_tps":\([0-9.]*\).*/\1/p')
  [ -n "$bytes" ] && [ -n "$tg" ] || die "could not read lamina bench's output for $model"
  awk -v name="$(basename "$model")" -v bytes="$bytes" -v tg="$tg" -v bw="$bandwidth" \
    'BEGIN { gbps = bytes * tg / 1e9; printf "%-36s %14d %10.2f %10.2f %8.1f%%\n", name, bytes, tg, gbps, 100 * gbps / bw }'
done
