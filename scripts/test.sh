#!/usr/bin/env bash
# Sets up like the quick start, builds everything with the tests, runs the whole suite, then
# fuzzes the coordinator's request handling for a bounded time (FUZZ_SECONDS, default 30; 0 skips).
# Strict mode (CI=true or QSR_STRICT=1; .ci/run is CI) first checks that every tool and data set
# the suite needs is installed (scripts/check-ci-prereqs.sh), and afterwards that ctest ran at
# least tests/expected_min_tests tests, so that the suite cannot pass by running less.
set -euo pipefail
cd "$(dirname "$0")/.."
strict=0
[ "${CI:-}" = true ] || [ "${QSR_STRICT:-0}" = 1 ] && strict=1
bash scripts/install-deps.sh
if [ "$strict" = 1 ]; then
  bash scripts/check-ci-prereqs.sh
  export QSR_STRICT=1
fi
bash scripts/build.sh
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure --timeout 600 -j "${TEST_JOBS:-2}") 2>&1 |
  tee "$log"
if [ "$strict" = 1 ]; then
  # ctest's summary: "100% tests passed, 0 tests failed out of 312".
  ran=$(sed -n 's/.*tests failed out of \([0-9][0-9]*\).*/\1/p' "$log" | tail -1)
  want=$(tr -d '[:space:]' < tests/expected_min_tests)
  if [ -z "$ran" ] || [ "$ran" -lt "$want" ]; then
    echo "[strict] ctest ran ${ran:-no} tests, at least $want expected (tests/expected_min_tests):" \
         "tests are missing from the build" >&2
    exit 1
  fi
  echo "[strict] ctest ran $ran tests (at least $want expected)"
fi
# Files over 600 lines and functions over 80 (informational: the limits the code is moving to).
/usr/bin/python3 scripts/code-size-report.py || true
if [ "${FUZZ_SECONDS:-30}" != 0 ]; then
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
fi
