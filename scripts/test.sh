#!/usr/bin/env bash
# Sets up like the quick start, builds everything with the tests, runs the whole suite, then
# fuzzes the coordinator's request handling for a bounded time (FUZZ_SECONDS, default 60; 0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure --timeout 600 -j "${TEST_JOBS:-2}")
if [ "${FUZZ_SECONDS:-60}" != 0 ]; then
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
fi
