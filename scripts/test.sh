#!/usr/bin/env bash
# Sets up like the quick start, builds everything with the tests, and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 -j "${TEST_JOBS:-2}"
