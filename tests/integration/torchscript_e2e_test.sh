#!/bin/bash
# A model qsr does not know, scripted in Python, trained by qsr-run on two workers on a
# Fashion-MNIST subset that Python saved as a `tensors` dataset (Local SGD with
# the Quadratic Synchronization Rule, BatchNorm re-estimated before each evaluation), then loaded
# back into PyTorch two ways (model.pt into the same class, model.ts as it is): both reproduce the
# run's last test accuracy. Also `qsrctl export` of the final checkpoint gives the same weights.
# Usage: torchscript_e2e_test.sh BIN_DIR SOURCE_DIR
set -euo pipefail
BIN=$1
SRC=$2
PY=/usr/bin/python3
WORK=$(mktemp -d)
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
"$PY" -c "import torch" || fail "$PY cannot import torch (scripts/install-deps.sh installs python3-torch)"
"$PY" "$SRC/tests/integration/torchscript_e2e.py" script "$WORK/net.ts" "$WORK/data.pt" ||
  fail "scripting the model and saving the data"
cat > "$WORK/recipe.yaml" <<YAML
model: torchscript
model_path: $WORK/net.ts
dataset: tensors
data_dir: $WORK/data.pt
optimizer: localsgd
workers: 2
total_batch_size: 64
steps_per_epoch: 150
epochs: 2
max_lr: 0.05
min_lr: 0.0
momentum: 0.9
wd: 0.0005
scheduler: cosine
warmup_epochs: 0.2
seed: 1
init_model_by_seed: 1
alpha: 0.1
power: 2
min_h: 2
init_h: 2
bn: true
bn_batches: 4
save_freq: 1
checkpoint_dir: $WORK/run/checkpoints
YAML
timeout 500 "$BIN/qsr-run" --workers 2 --recipe "$WORK/recipe.yaml" --run-dir "$WORK/run" \
  --run-id ts-e2e --progress 30s > "$WORK/run.log" 2>&1 || {
  tail -40 "$WORK/run.log"
  fail "qsr-run"
}
# The final files land in the checkpoint directory.
CK="$WORK/run/checkpoints"
[ -f "$CK/model.pt" ] && [ -f "$CK/model.ts" ] || fail "no model.pt / model.ts in $CK"
"$PY" "$SRC/tests/integration/torchscript_e2e.py" check "$WORK/run" "$WORK/data.pt" || fail "evaluating the exports"
# Each committed checkpoint lists model.pt and model.ts among its files.
MANIFEST=$(ls -d "$CK"/step=*/MANIFEST.json | tail -1)
grep -q '"model.pt"' "$MANIFEST" && grep -q '"model.ts"' "$MANIFEST" ||
  fail "$MANIFEST does not list model.pt and model.ts"
# qsrctl export of the newest checkpoint: the same tensors as the run's final model.pt.
"$BIN/qsrctl" export --checkpoint "$CK" --out "$WORK/exported.pt" || fail "qsrctl export"
"$PY" -c "
import torch, sys
a = torch.load('$WORK/exported.pt'); b = torch.load('$CK/model.pt')
assert sorted(a) == sorted(b), (sorted(a), sorted(b))
bad = [k for k in a if not torch.equal(a[k], b[k])]
sys.exit('differ: %s' % bad if bad else 0)" || fail "qsrctl export differs from model.pt"
# Bad input: exit 2 with a message.
set +e
"$BIN/qsrctl" export --checkpoint "$WORK/nothing" --out "$WORK/x.pt" 2> "$WORK/err.txt"
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "nothing" "$WORK/err.txt" || fail "missing checkpoint: rc $rc, $(cat "$WORK/err.txt")"
set +e
"$BIN/qsrctl" export --checkpoint "$CK" --out "$WORK/no/such/dir/x.pt" 2> "$WORK/err.txt"
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "x.pt" "$WORK/err.txt" || fail "unwritable --out: rc $rc, $(cat "$WORK/err.txt")"
echo PASS
