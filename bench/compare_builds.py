#!/usr/bin/env python3
"""Two builds of qsr on the same machine, in one invocation: benchmark 1's C++ training step
(qsr-bench-step, as qsr-worker runs it) and benchmark 2's averaging round (qsr-bench-avg), the
builds taking turns so that drifting load hits both alike. Answers "did a change make the step or
the averaging slower?" with a ratio against the base build run beside it, which the per-build
ratios of benchmarks 1 and 2 (each against its own Python or raw-Gloo run) answer only through two
noisy ratios.

  bench/compare_builds.py --base-bin-dir OLD/build/bin --bin-dir build/bin [--repeats 5]

One JSON line per run, then summaries:
  {"bench":"compare_builds","kind":"step","model","batch","base_samples_per_s","samples_per_s",
   "ratio"}          ratio = this build's median throughput / the base's (> 1: faster)
  {"bench":"compare_builds","kind":"averaging","workers","bytes","base_qsr_s","qsr_s","ratio"}
                     ratio = the base's median round time / this build's (> 1: faster)"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from step_throughput import SIZES, run  # noqa: E402  (one way to run and read qsr-bench-step)
from averaging import lines_of  # noqa: E402


def step_rates(bin_dirs, model, batch, steps, warmup, repeats, threads):
    common = ["--model", model, "--batch", str(batch), "--steps", str(steps), "--warmup",
              str(warmup), "--device", "cpu", "--threads", str(threads), "--memory-format",
              "contiguous", "--heap", "keep"]
    rates = {name: [] for name in bin_dirs}
    for r in range(repeats):
        order = list(bin_dirs) if r % 2 == 0 else list(bin_dirs)[::-1]
        for name in order:
            f = run([os.path.join(bin_dirs[name], "qsr-bench-step")] + common, timeout=600)
            rate = batch * 1000.0 / f["step_ms"]
            rates[name].append(rate)
            print(json.dumps({"bench": "compare_builds", "kind": "step_run", "build": name,
                              "model": model, "batch": batch, "repeat": r,
                              "samples_per_s": rate}), flush=True)
    return rates


def averaging_times(bin_dirs, workers, sizes_mb, iters, repeats):
    times = {name: {} for name in bin_dirs}
    for r in range(repeats):
        order = list(bin_dirs) if r % 2 == 0 else list(bin_dirs)[::-1]
        for name in order:
            cmd = [os.path.join(bin_dirs[name], "qsr-bench-avg"), "--workers", str(workers),
                   "--sizes-mb", sizes_mb, "--iters", str(iters)]
            for rec in lines_of(cmd, 900):
                if rec.get("impl") == "qsr":
                    times[name].setdefault(rec["bytes"], []).append(rec["median_s"])
                    print(json.dumps({"bench": "compare_builds", "kind": "averaging_run",
                                      "build": name, "workers": workers, "bytes": rec["bytes"],
                                      "repeat": r, "qsr_s": rec["median_s"]}), flush=True)
    return times


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-bin-dir", required=True, help="the build to compare against")
    p.add_argument("--bin-dir", required=True, help="the build under test")
    p.add_argument("--models", default="mlp,cnn,resnet18@16")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--avg-workers", default="2,4")
    p.add_argument("--avg-sizes-mb", default="10,100")
    p.add_argument("--avg-iters", type=int, default=20)
    a = p.parse_args()
    bin_dirs = {"base": a.base_bin_dir, "new": a.bin_dir}
    for name, d in bin_dirs.items():
        for exe in ("qsr-bench-step", "qsr-bench-avg"):
            if not os.access(os.path.join(d, exe), os.X_OK):
                sys.exit(f"compare_builds: {os.path.join(d, exe)} is missing (build both "
                         f"qsr-bench-step and qsr-bench-avg in the {name} build)")
    for spec in a.models.split(","):
        model, _, want = spec.partition("@")
        if model not in SIZES:
            sys.exit(f"compare_builds: unknown model {model!r} (allowed: {', '.join(SIZES)})")
        for batch, steps, warmup, _ in SIZES[model]:
            if want and str(batch) != want:
                continue
            rates = step_rates(bin_dirs, model, batch, steps, warmup, a.repeats, a.threads)
            base, new = statistics.median(rates["base"]), statistics.median(rates["new"])
            print(json.dumps({"bench": "compare_builds", "kind": "step", "model": model,
                              "batch": batch, "repeats": a.repeats, "base_samples_per_s": base,
                              "samples_per_s": new, "ratio": new / base,
                              "base_all": rates["base"], "new_all": rates["new"]}), flush=True)
    for workers in a.avg_workers.split(","):
        times = averaging_times(bin_dirs, int(workers), a.avg_sizes_mb, a.avg_iters, a.repeats)
        for size in sorted(times["new"]):
            base = statistics.median(times["base"][size])
            new = statistics.median(times["new"][size])
            print(json.dumps({"bench": "compare_builds", "kind": "averaging",
                              "workers": int(workers), "bytes": size, "repeats": a.repeats,
                              "base_qsr_s": base, "qsr_s": new, "ratio": base / new}),
                  flush=True)


if __name__ == "__main__":
    main()
