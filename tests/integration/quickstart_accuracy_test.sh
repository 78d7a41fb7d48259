#!/bin/bash
# The README's quick start, as a user runs it: qsr-run with 2 workers on the quick-start recipe
# (cnn on Fashion-MNIST, Local SGD with the Quadratic Synchronization Rule, 4 epochs). The run must
# finish and its last evaluation must reach at least 90% test accuracy. About 200 s on 2 cores.
# Usage: quickstart_accuracy_test.sh BIN_DIR SOURCE_DIR [RUN_DEADLINE_S]
set -euo pipefail
BIN=$1
SRC=$2
DEADLINE_S=${3:-840}
TARGET=0.90
WORK=$(mktemp -d)
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
RECIPE=$SRC/recipes/fashion-mnist/cnn-localsgd-qsr.yaml
[ -f "$RECIPE" ] || fail "the quick-start recipe $RECIPE is missing"
# The run's own deadline stays below the ctest timeout, so a stuck run fails here with its log.
rc=0
timeout --signal=INT --kill-after=30 "$DEADLINE_S" \
  "$BIN/qsr-run" --workers 2 --recipe "$RECIPE" --run-dir "$WORK/run" --progress 30s \
  > "$WORK/qsr-run.log" 2>&1 || rc=$?
tail -n 5 "$WORK/qsr-run.log"
[ "$rc" -eq 124 ] && fail "the quick start did not finish within ${DEADLINE_S} s"
[ "$rc" -eq 0 ] || fail "qsr-run exited with $rc (log above)"
[ -s "$WORK/run/evals.jsonl" ] || fail "the run wrote no evaluation to $WORK/run/evals.jsonl"
python3 - "$WORK/run" "$TARGET" <<'PY'
import json, sys
run, target = sys.argv[1], float(sys.argv[2])
evals = [json.loads(line) for line in open(f"{run}/evals.jsonl") if line.strip()]
summary = json.load(open(f"{run}/summary.json"))
last = evals[-1]
total = int(summary["total_steps"])
print(f"quick start: {len(evals)} evaluations, last at step {last['step']} of {total}: "
      f"test_acc {float(last['test_acc']):.4f} (target {target:.2f}); state {summary['state']}, "
      f"{summary['rounds']} rounds, {float(summary['elapsed_s']):.0f} s")
if summary["state"] != "FINISHED":
    sys.exit(f"FAIL: the run ended {summary['state']!r}, not 'FINISHED'")
if int(last["step"]) != total:
    sys.exit(f"FAIL: the last evaluation is at step {last['step']}, not the end ({total})")
if float(last["test_acc"]) < target:
    sys.exit(f"FAIL: final test accuracy {float(last['test_acc']):.4f} < {target:.2f}")
PY
