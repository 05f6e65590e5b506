#!/usr/bin/env bash
# bench/compare_llama_cpp.sh — lamina and llama.cpp on the same GGUF files, same thread count,
# interleaved, with a table of prompt (pp) and generation (tg) tokens/s and their ratios.
#
# usage: bench/compare_llama_cpp.sh --llama-bench PATH [options] MODEL.gguf...
#   --llama-bench PATH   llama.cpp's llama-bench, built by you (or $LLAMA_BENCH)
#   --lamina PATH        the lamina CLI (default: build/gcc-cxx17-release/examples/cli/lamina)
#   -t N                 threads for both (default: nproc)
#   -p N                 prompt tokens (default 256)
#   -n N                 generated tokens (default 64)
#   -r N                 rounds (default 5): each round runs every model once in lamina and once
#                        in llama.cpp (each run: one warm-up + one timed repetition); the order
#                        of the two alternates from round to round
#   --bandwidth GBPS     memory read bandwidth for the roofline column (bench/roofline.sh
#                        or lamina_bench_memory_bandwidth measure it); omitted: no roofline column
#   --raw FILE           also write every sample as CSV (round,engine,model,pp,tg)
#   --lamina-args "..."  extra arguments for `lamina bench` (e.g. "--kv-type f32")
#   --llama-args "..."   extra arguments for llama-bench (e.g. "-fa on")
# The table shows the median of the rounds for each figure (robust to a noisy machine) and
# ratio = lamina / llama.cpp. Roofline % = weight bytes read per generated token × tg t/s ÷
# bandwidth (bench/README.md). Needs bash and python3; prints progress on stderr.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
llama_bench=${LLAMA_BENCH:-}
lamina=$root/build/gcc-cxx17-release/examples/cli/lamina
threads=$(nproc 2>/dev/null || echo 1)
prompt=256
generated=64
rounds=5
bandwidth=
raw=
lamina_args=
llama_args=
models=()

die() { echo "compare_llama_cpp.sh: $*" >&2; exit 1; }
need_value() { [ $# -ge 2 ] || die "option $1 needs a value"; }
is_count() { [[ $1 =~ ^[0-9]+$ ]] || die "$2: '$1' is not a non-negative integer"; }

while [ $# -gt 0 ]; do
  case $1 in
    --llama-bench) need_value "$@"; llama_bench=$2; shift 2 ;;
    --lamina) need_value "$@"; lamina=$2; shift 2 ;;
    -t) need_value "$@"; is_count "$2" -t; threads=$2; shift 2 ;;
    -p) need_value "$@"; is_count "$2" -p; prompt=$2; shift 2 ;;
    -n) need_value "$@"; is_count "$2" -n; generated=$2; shift 2 ;;
    -r) need_value "$@"; is_count "$2" -r; rounds=$2; shift 2 ;;
    --bandwidth) need_value "$@"; [[ $2 =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--bandwidth: '$2' is not a number"; bandwidth=$2; shift 2 ;;
    --raw) need_value "$@"; raw=$2; shift 2 ;;
    --lamina-args) need_value "$@"; lamina_args=$2; shift 2 ;;
    --llama-args) need_value "$@"; llama_args=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) models+=("$1"); shift ;;
  esac
done

[ -n "$llama_bench" ] || die "give the path of llama.cpp's llama-bench with --llama-bench PATH (or LLAMA_BENCH)"
[ -x "$llama_bench" ] || die "$llama_bench is not an executable file"
[ -x "$lamina" ] || die "$lamina is not an executable file (build it: cmake --build build/gcc-cxx17-release --target lamina_cli, or pass --lamina)"
[ ${#models[@]} -gt 0 ] || die "no model files given"
[ "$threads" -ge 1 ] || die "-t must be at least 1"
[ "$rounds" -ge 1 ] || die "-r must be at least 1"
[ "$prompt" -gt 0 ] || [ "$generated" -gt 0 ] || die "-p and -n are both 0: nothing to measure"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to read the results"
for model in "${models[@]}"; do [ -f "$model" ] || die "$model: no such file"; done

samples=$(mktemp)
trap 'rm -f "$samples"' EXIT

# One lamina run: prints "pp tg bytes_per_token".
run_lamina() {  # MODEL
  local output
  # shellcheck disable=SC2086
  output=$("$lamina" bench -m "$1" -t "$threads" -p "$prompt" -n "$generated" -r 1 --json $lamina_args 2>/dev/null) ||
    die "lamina bench failed on $1 (run it by hand to see why)"
  python3 - "$output" <<'EOF'
import json, re, sys
text = sys.argv[1]
line = json.loads(text.strip().splitlines()[-1])
match = re.search(r"read per generated token: .*\((\d+) bytes\)", text)
print(line["pp_tps"], line["tg_tps"], match.group(1) if match else 0)
EOF
}

# One llama-bench run: prints "pp tg".
run_llama() {  # MODEL
  local output
  # shellcheck disable=SC2086
  output=$("$llama_bench" -m "$1" -t "$threads" -p "$prompt" -n "$generated" -r 1 -o jsonl $llama_args 2>/dev/null) ||
    die "llama-bench failed on $1 (run it by hand to see why)"
  python3 - "$output" <<'EOF'
import json, sys
pp = tg = 0.0
for line in sys.argv[1].splitlines():
    line = line.strip()
    if not line.startswith("{"):
        continue
    record = json.loads(line)
    if record.get("n_prompt", 0) > 0 and record.get("n_gen", 0) == 0:
        pp = record["avg_ts"]
    elif record.get("n_gen", 0) > 0 and record.get("n_prompt", 0) == 0:
        tg = record["avg_ts"]
print(pp, tg)
EOF
}

echo "comparing on ${#models[@]} model(s), $threads threads, pp$prompt / tg$generated, $rounds rounds" >&2
for ((round = 1; round <= rounds; ++round)); do
  for model in "${models[@]}"; do
    name=$(basename "$model")
    if ((round % 2 == 1)); then order="lamina llama.cpp"; else order="llama.cpp lamina"; fi
    for engine in $order; do
      echo "round $round/$rounds: $engine $name" >&2
      if [ "$engine" = lamina ]; then
        read -r pp tg bytes < <(run_lamina "$model")
      else
        read -r pp tg < <(run_llama "$model")
        bytes=0
      fi
      echo "$round,$engine,$name,$pp,$tg,$bytes" >>"$samples"
    done
  done
done
if [ -n "$raw" ]; then
  { echo "round,engine,model,pp_tps,tg_tps,bytes_per_token"; cat "$samples"; } >"$raw"
fi

python3 - "$samples" "$threads" "$prompt" "$generated" "${bandwidth:-0}" <<'EOF'
import statistics, sys
path, threads, prompt, generated, bandwidth = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
data, order, bytes_per_token = {}, [], {}
for line in open(path):
    round_, engine, model, pp, tg, nbytes = line.strip().split(",")
    if model not in order:
        order.append(model)
    data.setdefault((model, engine), []).append((float(pp), float(tg)))
    if int(nbytes) > 0:
        bytes_per_token[model] = int(nbytes)

def median(model, engine, index):
    values = [sample[index] for sample in data.get((model, engine), [])]
    return statistics.median(values) if values else 0.0

def ratio(a, b):
    return f"{a / b:.2f}" if b > 0 else "-"

pp_label, tg_label = f"pp{prompt}", f"tg{generated}"
header = ["model", f"lamina {pp_label}", f"llama.cpp {pp_label}", "ratio", f"lamina {tg_label}", f"llama.cpp {tg_label}", "ratio"]
if bandwidth > 0:
    header += ["lamina roofline", "llama.cpp roofline"]
rows = []
for model in order:
    lamina_pp, llama_pp = median(model, "lamina", 0), median(model, "llama.cpp", 0)
    lamina_tg, llama_tg = median(model, "lamina", 1), median(model, "llama.cpp", 1)
    row = [model, f"{lamina_pp:.2f}", f"{llama_pp:.2f}", ratio(lamina_pp, llama_pp),
           f"{lamina_tg:.2f}", f"{llama_tg:.2f}", ratio(lamina_tg, llama_tg)]
    if bandwidth > 0:
        per_token = bytes_per_token.get(model, 0)
        for tg in (lamina_tg, llama_tg):
            row.append(f"{100.0 * per_token * tg / (bandwidth * 1e9):.1f} %" if per_token else "-")
    rows.append(row)
widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
def show(cells):
    print("| " + " | ".join(str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
                            for i, (cell, width) in enumerate(zip(cells, widths))) + " |")
print(f"tokens/s, median of {len(next(iter(data.values())))} rounds, {threads} threads; ratio = lamina / llama.cpp")
show(header)
print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
for row in rows:
    show(row)
if bandwidth > 0:
    print(f"roofline = weight bytes read per generated token x tg t/s / {bandwidth:g} GB/s")
EOF
