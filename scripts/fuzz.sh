#!/usr/bin/env bash
# Builds the coordinator's libFuzzer target with clang (ASan + libFuzzer) in a build directory of
# its own (no LibTorch, no tests) and runs it for SECONDS (default 60), starting from a seed corpus
# the target writes itself. Exits non-zero when the fuzzer finds a crash, a hang or a leak; the
# reproducer is left in $FUZZ_DIR/artifacts. SECONDS 0 only builds.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-60}
FUZZ_DIR=${FUZZ_DIR:-build-fuzz}
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 2; }
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
command -v ccache >/dev/null && GEN+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
start=$(date +%s)
if [ ! -f "$FUZZ_DIR/CMakeCache.txt" ]; then
  cmake -S . -B "$FUZZ_DIR" "${GEN[@]}" -DCMAKE_BUILD_TYPE=None \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_CXX_FLAGS="-O1 -g1 -fno-omit-frame-pointer -fsanitize=address,fuzzer-no-link" \
    -DQSR_BUILD_WORKER=OFF -DQSR_BUILD_TESTS=OFF -DQSR_BUILD_FUZZ=ON >/dev/null
fi
cmake --build "$FUZZ_DIR" --target coordinator_fuzz -j "${JOBS:-$(nproc)}"
built=$(date +%s)
if [ "$SECONDS_TO_RUN" = 0 ]; then
  echo "fuzz.sh: built $FUZZ_DIR/bin/coordinator_fuzz in $((built - start)) s"
  exit 0
fi
corpus="$FUZZ_DIR/corpus/coordinator"
mkdir -p "$corpus" "$FUZZ_DIR/artifacts"
# -timeout: one input taking over 10 s is a hang; -rss_limit_mb: a leak or unbounded growth.
# Earlier findings first: each must now pass.
for known in fuzz/known/*; do
  case "$known" in *.md) continue ;; esac
  "$FUZZ_DIR/bin/coordinator_fuzz" "$known" >/dev/null 2>&1 || {
    echo "fuzz.sh: the earlier finding $known fails again"
    exit 1
  }
done
set +e
QSR_FUZZ_SEED_DIR="$corpus" "$FUZZ_DIR/bin/coordinator_fuzz" "$corpus" \
  -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
  -print_final_stats=1 -artifact_prefix="$FUZZ_DIR/artifacts/" 2>&1 | tail -n 25
status=${PIPESTATUS[0]}
set -e
echo "fuzz.sh: build $((built - start)) s, fuzzing ${SECONDS_TO_RUN} s, exit $status"
exit "$status"
