#!/usr/bin/env bash
# Sets up like the quick start, builds everything with the tests, runs the whole suite, then
# fuzzes the coordinator's request handling for a bounded time (FUZZ_SECONDS, default 60; 0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure --timeout 600 -j "${TEST_JOBS:-2}")
if [ "${FUZZ_SECONDS:-60}" != 0 ]; then
  # QSR_FUZZ_UNANSWERED=ignore: a known RunController issue (fuzz/known/README.md) would fail the
  # run at once; every other check (crashes, ASan, hangs, double answers) stays on.
  QSR_FUZZ_UNANSWERED=ignore bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
fi
