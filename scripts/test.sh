#!/usr/bin/env bash
# scripts/test.sh — install what is missing, then build and run every test in every configuration.
#
# usage: scripts/test.sh [STEP...]     no STEP: all of them, in this order; --list prints the names
#   deps                      install missing Debian/Ubuntu packages (scripts/install-deps.sh)
#   install-scripts           tests/scripts/test_install_deps.sh: install-deps.sh against stand-in apt tools
#   arch-symbols              tests/scripts/test_arch_symbols.sh: each instruction set's kernels keep to their namespace (nm)
#   headers                   tests/scripts/test_headers.sh: each public header compiles alone; the macros they leave
#   include-graph             tests/scripts/test_include_graph.sh: folders include each other one way only
#   spirv                     tools/gen_spirv.py --check: the committed SPIR-V headers are what the shaders compile to
#   gcc-cxx17-release         g++, C++17, Release (-O2)                          build/gcc-cxx17-release
#   clang-cxx20-asan          clang++, C++20, -O1, AddressSanitizer + UBSan      build/clang-cxx20-asan (tests only)
#   clang-tsan                clang++, -O1, ThreadSanitizer: the tests that start threads (cancel() from
#                             another thread, the thread pool, sessions on several threads)  build/clang-tsan
#                             (these, and meson, with lamina's heavy functions compiled once:
#                             LAMINA_SEPARATE_IMPLEMENTATION; header-only programs are built by
#                             plain-include-O0, the packaging steps and meson-subproject)
#   plain-include-O0          the CLI from g++ -O0 -I include alone (no lamina sources, no -m flags,
#                             no build system), through the reference checks with every instruction set
#   package-find-package      install lamina to a temporary prefix; tests/packaging uses find_package(lamina)
#   package-add-subdirectory  tests/packaging includes the checkout with add_subdirectory
#   package-fetchcontent      tests/packaging includes the checkout with FetchContent
#   meson                     meson setup + meson test: g++, C++20, -O2 -march=native, -fno-exceptions (cpp_eh=none),
#                             -Dseparate_implementation=true, no Vulkan; the tests and the C API  build/meson-gcc-cxx20-noexcept-native
#   meson-subproject          tests/packaging built by meson with lamina as a subproject (header-only)
#   fuzz                      builds fuzz/*.cpp with libFuzzer (clang; lamina compiled once, instrumented) and runs
#                             each briefly, as many at a time as there are jobs
#   check-logits              ../shared/tools/check_all.sh on build/gcc-cxx17-release/examples/cli/lamina
#   check-tokenize            the same for the tokenizer cases
#   check-lora                the same for the LoRA cases (GGUF and PEFT forms of each adapter)
#   check-vulkan              every reference case through `lamina logits --backend vulkan` and the mixed-stack
#                             batch-logits on lavapipe, validation layer on; the kernel tests at other
#                             LP_NATIVE_VECTOR_WIDTHs (subgroup sizes); a program without a Vulkan driver
#   cli-errors                tests/scripts/test_cli_errors.sh: the lamina command on hostile input
# Every step runs even when an earlier one failed. The last line printed is "N passed, M failed"
# (N, M count steps); the exit status is non-zero when any step failed. Logs: build/logs/STEP.log.
#
# Environment: LAMINA_SHARED_DIR (reference data; default ../shared beside the checkout),
# LAMINA_JOBS (parallel jobs; default nproc), LAMINA_NO_INSTALL=1 (never install packages),
# LAMINA_FUZZ_SECONDS (per fuzzer; default 20).
set -uo pipefail  # no -e here: a failed step must not stop the others; each step runs with -e

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1

all_steps=(deps install-scripts arch-symbols headers include-graph spirv gcc-cxx17-release clang-cxx20-asan
           clang-tsan plain-include-O0
           package-find-package package-add-subdirectory package-fetchcontent
           meson meson-subproject fuzz check-logits check-tokenize check-lora check-vulkan cli-errors)
if [ "${1:-}" = "--list" ]; then
  printf '%s\n' "${all_steps[@]}"
  exit 0
fi
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
fi
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=("${all_steps[@]}")

shared=${LAMINA_SHARED_DIR:-$root/../shared}
[ -d "$shared" ] && shared=$(cd "$shared" && pwd)
export LAMINA_SHARED_DIR=$shared
jobs=${LAMINA_JOBS:-$(nproc 2>/dev/null || echo 2)}
fuzz_seconds=${LAMINA_FUZZ_SECONDS:-20}
cli=$root/build/gcc-cxx17-release/examples/cli/lamina

packages=(g++ clang cmake ninja-build ccache meson pkg-config python3-numpy
          doctest-dev libstb-dev nlohmann-json3-dev unicode-data
          libvulkan-dev mesa-vulkan-drivers vulkan-validationlayers glslang-tools)

# ---------------------------------------------------------------------------------------------
# Helpers

# Sets `common` to the CMake arguments every configuration shares: Ninja and ccache when present.
# The generator is only named for a new build folder (CMake cannot switch it in an existing one).
set_common_args() {  # BUILD_DIR
  common=()
  if [ ! -f "$1/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then common+=(-G Ninja); fi
  if command -v ccache >/dev/null 2>&1; then common+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
}

require_program() {
  command -v "$1" >/dev/null 2>&1 || { echo "$1 is not installed"; return 1; }
}

# One configuration of the matrix: configure, build everything, run the tests through CTest.
# lamina's heavy functions are compiled once (LAMINA_SEPARATE_IMPLEMENTATION=ON), as a program of
# many files would.
cmake_config() {  # NAME COMPILER STANDARD BUILD_TYPE EXTRA_CXX_FLAGS [CMAKE_ARGS...]
  local name=$1 compiler=$2 standard=$3 build_type=$4 flags=$5 dir=build/$1
  shift 5
  require_program "$compiler"
  local common
  set_common_args "$dir"
  cmake -S . -B "$dir" "${common[@]}" \
    -DCMAKE_CXX_COMPILER="$compiler" \
    -DCMAKE_CXX_STANDARD="$standard" -DCMAKE_CXX_STANDARD_REQUIRED=ON -DCMAKE_CXX_EXTENSIONS=OFF \
    -DCMAKE_BUILD_TYPE="$build_type" \
    -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
    -DCMAKE_CXX_FLAGS_DEBUG="-g" \
    -DLAMINA_WERROR=ON -DLAMINA_SEPARATE_IMPLEMENTATION=ON \
    -DLAMINA_SHARED_DIR="$shared" "$@"
  echo "building $name with $jobs jobs"
  cmake --build "$dir" --parallel "$jobs"
  (cd "$dir" && ctest --output-on-failure)
}

# Configures, builds and runs tests/packaging.
build_consumer() {  # BUILD_DIR CMAKE_ARGS...
  local dir=$1
  shift
  rm -rf "$dir"
  local common
  set_common_args "$dir"
  cmake -S tests/packaging -B "$dir" "${common[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS="-Wall -Wextra -Wpedantic -Werror" "$@"
  cmake --build "$dir" --parallel "$jobs"
  "$dir/consumer"
  "$dir/vulkan_consumer"  # lamina::vulkan: the checkout and the package have it where Vulkan-Hpp is installed
}

# ---------------------------------------------------------------------------------------------
# Steps

step_deps() {
  bash scripts/install-deps.sh --sanitizers "${packages[@]}"
}

step_install_scripts() {
  bash tests/scripts/test_install_deps.sh
}

step_arch_symbols() {
  bash tests/scripts/test_arch_symbols.sh
}

step_headers() {
  bash tests/scripts/test_headers.sh
}

step_include_graph() {
  bash tests/scripts/test_include_graph.sh
}

step_spirv() {
  require_program glslangValidator
  /usr/bin/python3 tools/gen_spirv.py --check
}

step_gcc_cxx17_release() {
  cmake_config gcc-cxx17-release g++ 17 Release ""
}

step_clang_cxx20_asan() {
  # Any sanitizer report fails the run: UBSan does not recover, ASan and LeakSanitizer exit non-zero.
  export ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export LSAN_OPTIONS=suppressions=$root/tests/lsan_suppressions.txt:print_suppressions=0  # the Vulkan driver's own
  # The tests only: the CLI and the benchmarks are built (and the CLI run) by the other steps.
  cmake_config clang-cxx20-asan clang++ 20 Debug \
    "-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
    -DLAMINA_BUILD_EXAMPLES=OFF -DLAMINA_BUILD_BENCH=OFF
}

# The test files whose cases start threads, with lamina compiled once beside them, as one small
# program under ThreadSanitizer (the whole suite under it would cost most of the CI budget), and
# only the cases that use threads.
step_clang_tsan() {
  require_program clang++
  local dir=$root/build/clang-tsan compiler=clang++
  command -v ccache >/dev/null 2>&1 && compiler="ccache clang++"
  rm -rf "$dir"
  mkdir -p "$dir"
  local sources=(tests/main.cpp tests/test_stepping.cpp tests/core/test_core.cpp tests/model/test_reference_logits.cpp
                 src/lamina_implementation.cpp src/lamina_cpu_sse2.cpp src/lamina_cpu_avx2.cpp src/lamina_cpu_avx512.cpp)
  export compiler dir root shared
  # shellcheck disable=SC2016  # expanded by the inner shell
  printf '%s\n' "${sources[@]}" | xargs -P "$jobs" -I{} sh -c \
    '$compiler -std=c++17 -O1 -g -fsanitize=thread -DLAMINA_SEPARATE_IMPLEMENTATION=1 -DLAMINA_CPU_DISPATCH=1 -DLAMINA_TEST_SHARED_DIR="\"$shared\"" -I "$root/include" -I "$root/tests" -I "$root/examples" -Wall -Wextra -Wpedantic -Werror -c "$root/{}" -o "$dir/$(basename {} .cpp).o"'
  clang++ -fsanitize=thread "$dir"/*.o -o "$dir/lamina_tests_tsan" -pthread
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 "$dir/lamina_tests_tsan" \
    --test-case="*cancel*,*several threads*,ThreadPool*,*thread count*"
}

# What a user who copies include/ gets: each CLI file compiled alone with -I include and no
# flags but -O0 (where inline functions are emitted as weak symbols in every file, the ODR
# trap's ground), linked, then judged against llama.cpp with each instruction set the CPU has.
step_plain_include_O0() {
  require_program g++
  if [ ! -f "$shared/tools/check_all.sh" ]; then
    echo "no reference data at $shared (set LAMINA_SHARED_DIR)"
    return 1
  fi
  local dir=$root/build/plain-include-O0 compiler=g++
  command -v ccache >/dev/null 2>&1 && compiler="ccache g++"
  rm -rf "$dir"
  mkdir -p "$dir"
  export compiler dir root
  # shellcheck disable=SC2016  # expanded by the inner shell
  printf '%s\n' examples/cli/*.cpp | xargs -P "$jobs" -I{} sh -c \
    '$compiler -std=c++17 -O0 -I "$root/include" -I "$root/examples" -Wall -Wextra -Wpedantic -Werror -c "$root/{}" -o "$dir/$(basename {} .cpp).o"'
  g++ "$dir"/*.o -o "$dir/lamina" -pthread
  local best arch
  best=$("$dir/lamina" bench -m "$shared/models/stories260K.gguf" -p 8 -n 2 -r 1 | sed -n 's/^CPU kernels: \([a-z0-9]*\);.*/\1/p')
  echo "the plain -O0 build picks the $best kernels"
  for arch in scalar sse2 avx2 avx512; do
    echo "--- LAMINA_CPU_ARCH=$arch"
    LAMINA_CPU_ARCH=$arch bash "$shared/tools/check_all.sh" "$dir/lamina" all
    [ "$arch" = "$best" ] && break  # the sets above it do not run on this CPU
  done
}

step_package_find_package() {
  local work=build/packaging
  rm -rf "$work/lamina" "$work/prefix"
  local common
  set_common_args "$work/lamina"
  cmake -S . -B "$work/lamina" "${common[@]}" -DLAMINA_BUILD_TESTS=OFF -DLAMINA_BUILD_EXAMPLES=OFF \
    -DLAMINA_BUILD_BENCH=OFF -DLAMINA_INSTALL=ON -DCMAKE_INSTALL_PREFIX="$root/$work/prefix"
  cmake --build "$work/lamina"
  cmake --install "$work/lamina"
  build_consumer "$work/find-package" -DLAMINA_CONSUMER_MODE=find_package -DCMAKE_PREFIX_PATH="$root/$work/prefix" \
    -DCMAKE_C_FLAGS="-Wall -Wextra -pedantic -Werror"
  "$work/find-package/c_consumer"  # the installed liblamina_c through lamina::c
  # The installed pkg-config file, with nothing but the compiler and pkg-config.
  local flags
  flags=$(PKG_CONFIG_PATH="$root/$work/prefix/share/pkgconfig" pkg-config --cflags --libs lamina)
  echo "pkg-config --cflags --libs lamina: $flags"
  # shellcheck disable=SC2086  # $flags is a list of flags
  g++ -std=c++17 -O1 -Wall -Wextra -Wpedantic -Werror tests/packaging/main.cpp $flags -o "$work/pkg-config-consumer"
  "$work/pkg-config-consumer"
}

step_package_add_subdirectory() {
  build_consumer build/packaging/add-subdirectory -DLAMINA_CONSUMER_MODE=add_subdirectory -DLAMINA_SOURCE_DIR="$root"
}

step_package_fetchcontent() {
  build_consumer build/packaging/fetchcontent -DLAMINA_CONSUMER_MODE=fetchcontent -DLAMINA_SOURCE_DIR="$root"
}

step_meson() {
  require_program meson
  require_program clang++
  local dir=build/meson-gcc-cxx20-noexcept-native
  # The third full build of the tests, the one of g++ and C++20, and the one without exceptions
  # (library, tests and C API) and with -march=native (the instruction sets' macros defined for
  # every file, not only in the kernels'). Without the Vulkan backend: this build proves lamina
  # builds and tests where Vulkan-Hpp is absent (meson-subproject and the CMake steps build it
  # with the backend). The tests only: the CLI is built by gcc-cxx17-release and, header-only,
  # by plain-include-O0. With meson's separate_implementation option (meson-subproject builds
  # header-only).
  local options=(-Dcpp_std=c++20 -Dcpp_eh=none -Dcpp_args=-march=native -Dwarning_level=3 -Dwerror=true
                 -Doptimization=2 -Ddebug=false -Db_ndebug=true -Dshared_dir="$shared" -Dvulkan=disabled
                 -Dexamples=false -Dseparate_implementation=true)
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "${options[@]}"
  else
    local compiler=g++
    command -v ccache >/dev/null 2>&1 && compiler="ccache g++"
    CXX=$compiler meson setup "$dir" "${options[@]}"
  fi
  meson compile -C "$dir" -j "$jobs"
  meson test -C "$dir" --print-errorlogs
}

step_meson_subproject() {
  require_program meson
  local work=build/meson-subproject
  rm -rf "$work"
  mkdir -p "$work/source/subprojects"
  cp tests/packaging/meson.build tests/packaging/main.cpp tests/packaging/vulkan_consumer.cpp "$work/source/"
  ln -s "$root" "$work/source/subprojects/lamina"
  meson setup "$work/build" "$work/source" -Dwarning_level=3 -Dwerror=true
  meson compile -C "$work/build" -j "$jobs"
  "$work/build/consumer"
  "$work/build/vulkan_consumer"
}

step_fuzz() {
  local sources=(fuzz/*.cpp)
  if [ ! -e "${sources[0]}" ]; then
    echo "no fuzz targets (fuzz/*.cpp) yet"
    return 0
  fi
  require_program clang++
  local dir=build/clang-fuzz
  local common
  set_common_args "$dir"
  # lamina's heavy functions compiled once for all the targets, instrumented as they are
  # (CMakeLists.txt, LAMINA_FUZZ).
  cmake -S . -B "$dir" "${common[@]}" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS="" -DCMAKE_CXX_FLAGS_DEBUG="-g" -DLAMINA_FUZZ=ON -DLAMINA_WERROR=ON -DLAMINA_SEPARATE_IMPLEMENTATION=ON \
    -DLAMINA_BUILD_TESTS=OFF -DLAMINA_BUILD_EXAMPLES=OFF -DLAMINA_BUILD_BENCH=OFF -DLAMINA_BUILD_C_API=OFF
  cmake --build "$dir" --parallel "$jobs"
  local source name corpus running=0 failures=0
  mkdir -p "$dir/artifacts" "$dir/logs"
  for source in "${sources[@]}"; do
    name=$(basename "$source" .cpp)
    corpus=$dir/corpus/$name
    mkdir -p "$corpus"
    if [ -d "fuzz/corpus/$name" ]; then cp -R "fuzz/corpus/$name/." "$corpus/"; fi
    # A target that makes its own seeds (model_fuzz: tiny models) writes them first.
    if grep -q LAMINA_FUZZ_WRITE_SEEDS "$source"; then LAMINA_FUZZ_WRITE_SEEDS=$corpus "$dir/fuzz/$name"; fi
    echo "fuzzing $name for ${fuzz_seconds}s (log: $dir/logs/$name.log)"
    "$dir/fuzz/$name" -max_total_time="$fuzz_seconds" -timeout=25 -rss_limit_mb=2048 \
      -artifact_prefix="$dir/artifacts/$name-" -print_final_stats=1 "$corpus" >"$dir/logs/$name.log" 2>&1 &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
      wait -n || failures=$((failures + 1))
      running=$((running - 1))
    fi
  done
  while [ "$running" -gt 0 ]; do
    wait -n || failures=$((failures + 1))
    running=$((running - 1))
  done
  for source in "${sources[@]}"; do
    name=$(basename "$source" .cpp)
    echo "--- $name"
    grep -E '^(stat::|INFO: Done|==[0-9]+==ERROR|SUMMARY)|runtime error|artifact' "$dir/logs/$name.log" || true
  done
  [ "$failures" -eq 0 ] || { echo "$failures fuzz target(s) failed; their logs are in $dir/logs"; return 1; }
}

check_cases() {  # logits | tokenize | lora | all
  if [ ! -x "$cli" ]; then
    echo "$cli was not built (see step gcc-cxx17-release)"
    return 1
  fi
  if [ ! -f "$shared/tools/check_all.sh" ]; then
    echo "no reference data at $shared (set LAMINA_SHARED_DIR)"
    return 1
  fi
  bash "$shared/tools/check_all.sh" "$cli" "$1"
}

step_check_logits() { check_cases logits; }
step_check_tokenize() { check_cases tokenize; }
step_check_lora() {
  check_cases lora
  check_batch_logits ""
}

# All F32 LoRA cases (and the plain one) as sequences of one `lamina batch-logits` pass, each
# judged against its own reference. BACKEND_ARGS: extra options of batch-logits.
check_batch_logits() {  # BACKEND_ARGS
  local out=build/check-batch-logits python
  python=$(command -v /usr/bin/python3 || command -v python3)
  mkdir -p "$out"
  "$python" - "$shared" "$out/spec.json" <<'PY'
import json, sys
shared, spec = sys.argv[1], sys.argv[2]
names = ["llama-f32-lora-a", "llama-f32-lora-ab", "llama-f32-dora-d", "llama-f32-rslora-e", "llama-f32"]
sequences = []
for name in names:
    case = json.load(open(f"{shared}/reference/{name}.json"))
    sequences.append({"tokens": case["prompt"],
                      "adapters": [{"path": f"{shared}/{a['peft']}", "scale": a["scale"]} for a in case["adapters"]]})
json.dump({"sequences": sequences, "names": names}, open(spec, "w"))
PY
  # shellcheck disable=SC2086  # $1 is a list of options
  "$cli" batch-logits -m "$shared/models/synth-llama-f32.gguf" --spec "$out/spec.json" --out-dir "$out/logits" $1
  local i=0 name
  for name in llama-f32-lora-a llama-f32-lora-ab llama-f32-dora-d llama-f32-rslora-e llama-f32; do
    "$python" "$shared/tools/compare_logits.py" "$shared/reference/$name.json" "$out/logits/$i.f32"
    i=$((i + 1))
  done
}
step_check_vulkan() {
  if [ ! -x "$cli" ]; then
    echo "$cli was not built (see step gcc-cxx17-release)"
    return 1
  fi
  export LAMINA_VULKAN_VALIDATION=1  # any validation-layer error fails the command
  "$cli" devices
  # check_all.sh runs `lamina logits`: a stand-in that adds --backend vulkan to it.
  local wrapper=build/check-vulkan/lamina
  mkdir -p build/check-vulkan
  printf '#!/usr/bin/env bash\nif [ "$1" = logits ]; then shift; exec "%s" logits --backend vulkan "$@"; fi\nexec "%s" "$@"\n' "$cli" "$cli" >"$wrapper"
  chmod +x "$wrapper"
  bash "$shared/tools/check_all.sh" "$root/$wrapper" logits
  bash "$shared/tools/check_all.sh" "$root/$wrapper" lora
  check_batch_logits "--backend vulkan"
  # Lavapipe's vector width sets the subgroup size (4, 8, 16 lanes): the kernels at each.
  local tests=build/gcc-cxx17-release/tests/lamina_tests width
  for width in 128 512; do
    echo "--- kernel tests with LP_NATIVE_VECTOR_WIDTH=$width"
    LP_NATIVE_VECTOR_WIDTH=$width "$tests" --test-case="vulkan: *scalar reference*"
  done
  # A program compiled with -I include alone, run where the loader finds no driver: a clean
  # error, then the CPU.
  g++ -std=c++17 -O1 -Wall -Wextra -Wpedantic -Werror -I include examples/gpu_or_cpu/main.cpp -o build/check-vulkan/gpu_or_cpu -pthread
  VK_DRIVER_FILES=/nonexistent.json VK_ICD_FILENAMES=/nonexistent.json build/check-vulkan/gpu_or_cpu \
    models/demo/fortunes-demo.gguf "The cat" 8 2>build/check-vulkan/no-driver.err
  cat build/check-vulkan/no-driver.err
  grep -q "no Vulkan driver" build/check-vulkan/no-driver.err
  grep -q "backend: cpu" build/check-vulkan/no-driver.err
  # And the CLI: exit 1 with one line saying why.
  if VK_DRIVER_FILES=/nonexistent.json VK_ICD_FILENAMES=/nonexistent.json "$cli" generate -m models/demo/fortunes-demo.gguf \
       -p "The cat" -n 4 --backend vulkan >/dev/null 2>build/check-vulkan/cli.err; then
    echo "lamina generate --backend vulkan without a driver exited 0"
    return 1
  fi
  cat build/check-vulkan/cli.err
  [ "$(wc -l <build/check-vulkan/cli.err)" -eq 1 ]
}

step_cli_errors() {
  if [ ! -x "$cli" ]; then
    echo "$cli was not built (see step gcc-cxx17-release)"
    return 1
  fi
  bash tests/scripts/test_cli_errors.sh "$cli" "$shared"
}

# ---------------------------------------------------------------------------------------------
# Run the steps

mkdir -p build/logs
passed=0
failed=0
summary=()
started=$SECONDS
echo "lamina tests: $(uname -sm), $jobs jobs, reference data: $shared"
[ -d "$shared" ] || echo "warning: $shared does not exist; tests that need reference data will fail"

for step in "${steps[@]}"; do
  function=step_${step//-/_}
  if ! declare -F "$function" >/dev/null; then
    echo "unknown step '$step' (scripts/test.sh --list shows them)"
    summary+=("FAIL  $step (unknown step)")
    failed=$((failed + 1))
    continue
  fi
  echo
  echo "==> $step"
  step_started=$SECONDS
  ( set -euo pipefail; "$function" ) 2>&1 | tee "build/logs/$step.log"
  status=${PIPESTATUS[0]}
  elapsed=$((SECONDS - step_started))
  if [ "$status" -eq 0 ]; then
    passed=$((passed + 1))
    summary+=("$(printf 'PASS  %-26s %5ss' "$step" "$elapsed")")
  else
    failed=$((failed + 1))
    summary+=("$(printf 'FAIL  %-26s %5ss  (exit %s; log: build/logs/%s.log)' "$step" "$elapsed" "$status" "$step")")
  fi
done

echo
echo "==> summary ($((SECONDS - started))s in all)"
printf '%s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
