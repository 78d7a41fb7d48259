#!/usr/bin/env python3
"""Benchmark 5: the accuracy study at small scale. QSR against parallel SGD (H = 1) and constant H
(and QSR with bf16 syncs, method qsr_bf16, and with overlapped syncs, qsr_overlap and
qsr_bf16_overlap) on Fashion-MNIST (cnn, cosine decay), --seeds seeds each, equal epochs, --workers workers via
qsr-run on this machine. One JSON line per run:
  {"bench":"accuracy","kind":"run","method","seed","epochs","test_acc","rounds","syncs",
   "bytes_per_worker","elapsed_s","state"}
one summary line per method (mean, sample std, min, max of test_acc; mean syncs), and one
"series" line per run of the first seed with the per-round step, H and lr (for the figure)."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# method -> (recipe, extra recipe flags). qsr_bf16 differs from qsr only in what a sync sends (the
# change since the last sync, in bfloat16), so the same seed gives a paired comparison.
METHODS = {"qsr": ("cnn-localsgd-qsr.yaml", []),
           "qsr_bf16": ("cnn-localsgd-qsr.yaml", ["--sync_precision=bf16"]),
           # Overlapped syncs (sync_overlap: 0.5): each sync travels through the first half of
           # the next round; the same seed again gives a paired comparison with qsr.
           "qsr_overlap": ("cnn-localsgd-qsr.yaml", ["--sync_overlap=0.5"]),
           "qsr_bf16_overlap": ("cnn-localsgd-qsr.yaml",
                                ["--sync_precision=bf16", "--sync_overlap=0.5"]),
           "parallel": ("cnn-parallel-sgd.yaml", []),
           "constant_h": ("cnn-localsgd-constant-h.yaml", [])}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--methods", default="qsr,parallel,constant_h")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps-per-epoch", type=int, default=-1, help="-1: the data set's")
    p.add_argument("--warmup-epochs", type=float, default=-1, help="-1: the recipe's (0.5)")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--timeout-s", type=int, default=1800, help="per run")
    p.add_argument("--keep-dir", default="", help="keep the run directories here")
    a = p.parse_args()
    tmp = a.keep_dir or tempfile.mkdtemp(prefix="qsr-bench-acc-")
    try:
        run_methods(a, tmp)
    finally:
        if not a.keep_dir:
            shutil.rmtree(tmp, ignore_errors=True)


def run_methods(a, tmp):
    seeds = [int(s) for s in a.seeds.split(",")]
    unknown = [m for m in a.methods.split(",") if m not in METHODS]
    if unknown:
        sys.exit(f"accuracy_study: unknown method(s) {', '.join(unknown)}; "
                 f"known: {', '.join(METHODS)}")
    for method in a.methods.split(","):
        accs, syncs = [], []
        for seed in seeds:
            run_dir = os.path.join(tmp, f"{method}-s{seed}")
            cmd = [os.path.join(a.bin_dir, "qsr-run"), "--workers", str(a.workers), "--recipe",
                   os.path.join(ROOT, "recipes/fashion-mnist", METHODS[method][0]),
                   "--data-dir", a.data_dir, "--run-dir", run_dir, "--run-id",
                   f"acc-{method}-s{seed}", "--threads", str(a.threads), "--progress", "600s",
                   f"--epochs={a.epochs}", f"--seed={seed}", f"--init_model_by_seed={seed}"]
            cmd += METHODS[method][1]
            if a.warmup_epochs >= 0:
                cmd.append(f"--warmup_epochs={a.warmup_epochs}")
            if a.steps_per_epoch > 0:
                cmd.append(f"--steps_per_epoch={a.steps_per_epoch}")
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout_s)
            if out.returncode != 0:
                sys.exit(f"accuracy_study: {method} seed {seed} failed (rc {out.returncode}): "
                         f"{out.stderr[-2000:]}")
            summary = json.load(open(os.path.join(run_dir, "summary.json")))
            rounds = [json.loads(l) for l in open(os.path.join(run_dir, "rounds.jsonl"))]
            # A round of H > 1 ends in one averaging; a data-parallel round (H = 1) all-reduces
            # gradients every step: both count as one synchronisation per round.
            rec = {"bench": "accuracy", "kind": "run", "method": method, "seed": seed,
                   "epochs": a.epochs, "workers": a.workers, "warmup_epochs": a.warmup_epochs, "test_acc": summary.get("test_acc"),
                   "rounds": len(rounds), "syncs": len(rounds),
                   "steps": summary.get("total_steps"),
                   "bytes_per_worker": summary.get("bytes_per_worker"),
                   "elapsed_s": summary.get("elapsed_s"), "state": summary.get("state")}
            print(json.dumps(rec), flush=True)
            accs.append(rec["test_acc"])
            syncs.append(rec["syncs"])
            if seed == seeds[0]:
                print(json.dumps({"bench": "accuracy", "kind": "series", "method": method,
                                  "seed": seed, "step": [r["step"] for r in rounds],
                                  "h": [r["h"] for r in rounds],
                                  "lr": [r["lr"] for r in rounds]}), flush=True)
        print(json.dumps({"bench": "accuracy", "kind": "summary", "method": method,
                          "epochs": a.epochs, "seeds": len(seeds),
                          "acc_mean": statistics.mean(accs),
                          "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                          "acc_min": min(accs), "acc_max": max(accs),
                          "syncs_mean": statistics.mean(syncs)}), flush=True)


if __name__ == "__main__":
    main()
