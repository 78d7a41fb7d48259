#!/usr/bin/env python3
"""Evaluates every model snapshot of a run on the Fashion-MNIST test set: the accuracy curve that
benchmark 4's time to target is read from (bench/tta_curve.py).

  eval_snapshots.py SNAPSHOT_DIR [--out CURVE] [--data-dir DIR] [--threads N] [--target ACC]

SNAPSHOT_DIR is what qsr-worker --snapshot-dir or bench/torch_fmnist_train.py --snapshot-dir
wrote: snapshots.jsonl and one state dict of the `cnn` per line. CURVE (default
SNAPSHOT_DIR/curve.jsonl) gets one line per snapshot, in step order:
  {"step", "epoch", "clock_s", "wall_s", "test_acc", "test_loss"}
With --target, a last line on stdout gives the interpolated time to target and its bracket (or the
clock it was not reached by) as JSON.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_fmnist_train import evaluate, load_split  # noqa: E402
from train_step_bench import Cnn  # noqa: E402
import tta_curve  # noqa: E402


def read_index(snapshot_dir):
    path = os.path.join(snapshot_dir, "snapshots.jsonl")
    if not os.path.exists(path):
        sys.exit(f"eval_snapshots.py: {path} does not exist (was the run given --snapshot-dir?)")
    lines = [json.loads(line) for line in open(path) if line.strip()]
    if not lines:
        sys.exit(f"eval_snapshots.py: {path} lists no snapshot")
    return sorted(lines, key=lambda r: r["step"])


def load_model(path):
    state = torch.load(path, map_location="cpu")
    model = Cnn()
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        sys.exit(f"eval_snapshots.py: {path} is not a state dict of the `cnn`: {e}")
    return model


def curve(snapshot_dir, x, y):
    out = []
    for rec in read_index(snapshot_dir):
        acc, loss = evaluate(load_model(os.path.join(snapshot_dir, rec["file"])), x, y)
        out.append({"step": rec["step"], "epoch": rec["epoch"], "clock_s": rec["clock_s"],
                    "wall_s": rec["wall_s"], "test_acc": acc, "test_loss": loss})
    return out


def summary(points, target):
    """The time to target of a curve as a JSON-ready dict."""
    r = tta_curve.time_to_target(tta_curve.curve_from_records(points), target)
    if isinstance(r, tta_curve.Reached):
        return {"target": target, "tta_s": r.tta, "bracket_s": [r.lo, r.hi]}
    return {"target": target, "tta_s": None, "not_reached_by_s": r.by}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("snapshot_dir")
    p.add_argument("--out", default="")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    p.add_argument("--target", type=float, default=None)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    x, y = load_split(a.data_dir, "t10k")
    points = curve(a.snapshot_dir, x, y)
    out = a.out or os.path.join(a.snapshot_dir, "curve.jsonl")
    with open(out + ".tmp", "w") as f:
        f.write("".join(json.dumps(pt) + "\n" for pt in points))
    os.replace(out + ".tmp", out)
    if a.target is not None:
        print(json.dumps(summary(points, a.target)))


if __name__ == "__main__":
    main()
