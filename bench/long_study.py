#!/usr/bin/env python3
"""The long accuracy study: can the Quadratic Synchronization Rule be told apart from a constant H
when training runs long enough for the late, small-lr phase to matter?

The `mlp` on Fashion-MNIST, --workers workers via qsr-run on this machine, a cosine schedule with
a high peak lr (--max-lr, momentum 0.9), --seeds seeds, four methods with the same epochs:
  parallel    data-parallel SGD (gradients averaged every step, H = 1)
  constant_h  Local SGD with a constant H, chosen so that its sync count equals QSR's (power 2)
  qsr2        Local SGD + QSR, H = max(floor((alpha / lr)^2), H_base), H_base = 2
  qsr3        Local SGD + the cubic rule, H = max(floor((alpha / lr)^3), H_base), H_base = 2
QSR's sync count comes from the planner (`qsrctl plan --json`), before any training.

One command:  bench/long_study.py --bin-dir build/bin [--epochs 100] [--out bench/data/long_study.jsonl]
Appends one JSON line per run to --out as soon as it ends (so an interrupted study keeps what it
finished):
  {"bench":"long_study","kind":"run","method","seed","epochs","max_lr","alpha","power","h",
   "test_acc" (final), "best_test_acc", "train_loss" (last eval's), "syncs","steps","elapsed_s",
   "evals": [[step, test_acc, test_loss], ...], "rounds": [[step, h, lr], ...],
   "load_avg_at_start", "provenance": {"date","commit","cpu","cores"}}
and one "plan" line first. bench/report.py draws the figures and the BENCHMARKS.md section from
it."""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

import provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes/fashion-mnist/cnn-localsgd-qsr.yaml")


def common_flags(a):
    return ["--model=mlp", f"--epochs={a.epochs}", f"--max_lr={a.max_lr}", "--min_lr=0",
            "--momentum=0.9", "--wd=0.0005", "--scheduler=cosine",
            f"--warmup_epochs={a.warmup_epochs}", f"--workers={a.workers}",
            "--total_batch_size=128"]


def method_flags(a, method, constant_h):
    if method == "parallel":
        return ["--optimizer=sgd", "--alpha=0", "--init_h=1", "--min_h=1"]
    if method == "constant_h":
        return ["--optimizer=localsgd", "--alpha=0", f"--init_h={constant_h}", "--min_h=1"]
    if method == "qsr2":
        return ["--optimizer=localsgd", f"--alpha={a.alpha}", "--power=2", "--min_h=2",
                "--init_h=2"]
    if method == "qsr3":
        return ["--optimizer=localsgd", f"--alpha={a.alpha3}", "--power=3", "--min_h=2",
                "--init_h=2"]
    raise ValueError(method)


def last_epoch_loss(rounds, total_steps, steps_per_epoch):
    """The mean training loss over the last epoch's steps. A round reports the mean loss of its
    H steps; late QSR rounds span more than an epoch, so each round that overlaps the last epoch
    counts with the number of its steps inside it."""
    begin = (total_steps or 0) - steps_per_epoch
    weighted = weight = 0
    for r in rounds:
        if r.get("train_loss") is None:
            continue
        inside = min(r["step"] + r["h"], total_steps or 0) - max(r["step"], begin)
        if inside > 0:
            weighted += r["train_loss"] * inside
            weight += inside
    return weighted / weight if weight else None


def plan(a, flags):
    out = subprocess.run([os.path.join(a.bin_dir, "qsrctl"), "plan", "--recipe", RECIPE, "--json"]
                         + flags, capture_output=True, text=True, check=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--methods", default="parallel,constant_h,qsr2,qsr3")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-lr", type=float, default=0.2)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=0.2, help="QSR (power 2)")
    p.add_argument("--alpha3", type=float, default=0.2, help="the cubic rule")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out", default=os.path.join(ROOT, "bench/data/long_study.jsonl"))
    p.add_argument("--timeout-s", type=int, default=36000, help="per run")
    a = p.parse_args()
    methods = a.methods.split(",")
    known = {"parallel", "constant_h", "qsr2", "qsr3"}
    if not set(methods) <= known:
        sys.exit(f"long_study: unknown method(s) {sorted(set(methods) - known)}; known: "
                 f"{sorted(known)}")
    env = provenance.here(ROOT)

    def prov():  # bench/provenance.py's fields
        return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                "commit": env["commit"], "cpu": env["cpu"], "cores": env["cores"]}
    lines = plan(a, common_flags(a) + method_flags(a, "qsr2", 0))
    qsr_plan = [l for l in lines if "round" in l]
    steps = qsr_plan[-1]["step"] + qsr_plan[-1]["h"]
    constant_h = max(1, round(steps / len(qsr_plan)))
    with open(a.out, "a") as f:
        f.write(json.dumps({"bench": "long_study", "kind": "plan", "epochs": a.epochs,
                            "steps": steps, "qsr2_syncs": len(qsr_plan),
                            "constant_h": constant_h, "provenance": prov()}) + "\n")
    tmp = tempfile.mkdtemp(prefix="qsr-long-study-")
    for seed in [int(s) for s in a.seeds.split(",")]:
        for method in methods:
            run_dir = os.path.join(tmp, f"{method}-s{seed}")
            flags = common_flags(a) + method_flags(a, method, constant_h)
            cmd = [os.path.join(a.bin_dir, "qsr-run"), "--workers", str(a.workers), "--recipe",
                   RECIPE, "--data-dir", a.data_dir, "--run-dir", run_dir, "--run-id",
                   f"long-{method}-s{seed}", "--threads", str(a.threads), "--progress", "3600s",
                   f"--seed={seed}", f"--init_model_by_seed={seed}"] + flags
            load = open("/proc/loadavg").read().split()[:3]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout_s)
            if out.returncode != 0:
                sys.exit(f"long_study: {method} seed {seed} failed (rc {out.returncode}): "
                         f"{out.stderr[-2000:]}")
            summary = json.load(open(os.path.join(run_dir, "summary.json")))
            rounds = [json.loads(l) for l in open(os.path.join(run_dir, "rounds.jsonl"))]
            evals = [json.loads(l) for l in open(os.path.join(run_dir, "evals.jsonl"))]
            accs = [e["test_acc"] for e in evals if e.get("test_acc") is not None]
            rec = {"bench": "long_study", "kind": "run", "method": method, "seed": seed,
                   "epochs": a.epochs, "workers": a.workers, "max_lr": a.max_lr,
                   "alpha": {"qsr2": a.alpha, "qsr3": a.alpha3}.get(method, 0),
                   "power": {"qsr2": 2, "qsr3": 3}.get(method),
                   "h": {"parallel": 1, "constant_h": constant_h}.get(method),
                   "test_acc": summary.get("test_acc"), "best_test_acc": max(accs, default=None),
                   "train_loss": last_epoch_loss(rounds, summary.get("total_steps"),
                                                 summary.get("total_steps", 0) // a.epochs),
                   "syncs": len(rounds), "steps": summary.get("total_steps"),
                   "elapsed_s": summary.get("elapsed_s"), "state": summary.get("state"),
                   "evals": [[e.get("step"), e.get("test_acc"), e.get("test_loss")]
                             for e in evals],
                   "rounds": [[r["step"], r["h"], r["lr"]] for r in rounds],
                   "load_avg_at_start": " ".join(load), "provenance": prov()}
            with open(a.out, "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"{method} seed {seed}: test {rec['test_acc']} best {rec['best_test_acc']} "
                  f"loss {rec['train_loss']} syncs {rec['syncs']} {rec['elapsed_s']:.0f} s",
                  flush=True)


if __name__ == "__main__":
    main()
