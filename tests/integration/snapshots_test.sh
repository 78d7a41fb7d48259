#!/bin/bash
# Model snapshots for time-to-accuracy curves, end to end: qsr-run with 2 workers, Local SGD with
# H = 2 on 48 steps, --snapshot-every 0.1 (4.8 steps, so syncs are thinned to every third). Checks
# snapshots.jsonl: it starts at step 0 and ends at the last step; every other snapshot is at a
# sync boundary (a round's end in rounds.jsonl) at least the interval after the one before, and
# the first boundary at or past the interval (the rule: every interval or at every sync,
# whichever is rarer); clock_s rises and never exceeds wall_s; every file loads into the
# Python `cnn` (bench/train_step_bench.py), and the last one is the exported final model.
# Usage: snapshots_test.sh BIN_DIR SOURCE_DIR PYTHON [RUN_DEADLINE_S]
set -euo pipefail
BIN=$1
SRC=$2
PY=$3
DEADLINE_S=${4:-150}
WORK=$(mktemp -d)
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
RECIPE=$SRC/recipes/fashion-mnist/cnn-localsgd-constant-h.yaml
[ -f "$RECIPE" ] || fail "the recipe $RECIPE is missing"
rc=0
timeout --signal=INT --kill-after=30 "$DEADLINE_S" \
  "$BIN/qsr-run" --workers 2 --threads 1 --recipe "$RECIPE" --run-dir "$WORK/run" --progress 30s \
  --snapshot-dir "$WORK/snaps" --snapshot-every 0.1 \
  --epochs=1 --steps_per_epoch=48 --warmup_epochs=0.25 --init_h=2 --min_h=2 --save_freq=0 \
  "--checkpoint_dir=$WORK/ckpt" \
  > "$WORK/qsr-run.log" 2>&1 || rc=$?
tail -n 3 "$WORK/qsr-run.log"
[ "$rc" -eq 124 ] && fail "the run did not finish within ${DEADLINE_S} s"
[ "$rc" -eq 0 ] || fail "qsr-run exited with $rc (log above)"
"$PY" - "$WORK" "$SRC/bench" 0.1 48 <<'PY'
import json, os, sys
work, bench, every, spe = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, bench)
import torch
from train_step_bench import Cnn

def die(msg):
    sys.exit(f"FAIL: {msg}")

snaps = [json.loads(l) for l in open(f"{work}/snaps/snapshots.jsonl") if l.strip()]
rounds = [json.loads(l) for l in open(f"{work}/run/rounds.jsonl") if l.strip()]
summary = json.load(open(f"{work}/run/summary.json"))
total, interval = int(summary["total_steps"]), every * spe
bounds = sorted({r["step"] + r["h"] for r in rounds})
steps = [s["step"] for s in snaps]
print(f"snapshots at steps {steps}; sync boundaries {bounds}; interval {interval} steps")
if len(set(b2 - b1 for b1, b2 in zip([0] + bounds, bounds))) != 1 or bounds[0] >= interval:
    die(f"the run should sync every 2 steps, more often than the interval: {bounds}")
if steps[0] != 0 or steps[-1] != total:
    die(f"the snapshots should start at step 0 and end at {total}: {steps}")
for prev, s in zip(steps, steps[1:]):
    if s not in bounds:
        die(f"step {s} is not a sync boundary")
    want = min(b for b in bounds if b - prev >= interval - 1e-9) if s != total else s
    if s != want:
        die(f"after step {prev} the next snapshot should be at {want} (the first boundary at "
            f"least {interval} steps on), not {s}")
for a, b in zip(snaps, snaps[1:]):
    if not b["clock_s"] > a["clock_s"]:
        die(f"clock_s does not rise: {a} then {b}")
for s in snaps:
    if not 0 <= s["clock_s"] <= s["wall_s"] + 1e-9 or s["write_s"] < 0:
        die(f"clock_s must be in [0, wall_s] and write_s >= 0: {s}")
    if abs(s["epoch"] - s["step"] / spe) > 1e-6:
        die(f"epoch is not step / steps_per_epoch: {s}")
models = []
for s in snaps:
    m = Cnn()
    m.load_state_dict(torch.load(os.path.join(work, "snaps", s["file"])))  # strict
    models.append(m.state_dict())
first, last = models[0], models[-1]
if all(torch.equal(first[k], last[k]) for k in first):
    die("the first and the last snapshot hold the same weights: nothing was trained")
ref = torch.load(f"{work}/ckpt/model.pt")  # the final model, exported by rank 0
if not all(torch.equal(ref[k].float(), last[k].float()) for k in ref):
    die("the last snapshot differs from the exported final model ckpt/model.pt")
print(f"snapshots: {len(snaps)} files load into the cnn; clock {snaps[-1]['clock_s']:.1f} s of "
      f"{snaps[-1]['wall_s']:.1f} s wall")
PY
