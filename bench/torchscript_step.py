#!/usr/bin/env python3
"""Benchmark: the training step of a model brought as TorchScript against the same model built
into qsr, and against Python.

The `cnn` of worker/model/models.cc, written in Python (train_step_bench.Cnn), is scripted with
torch.jit.script and saved; then, alternately --repeats times, with the same batch, thread count,
device and synthetic data:
  builtin      qsr-bench-step --model cnn                  (the C++ model qsr-worker trains)
  torchscript  qsr-bench-step --model torchscript          (the scripted file, as qsr-worker trains
                                                            `model: torchscript`: same optimizer,
                                                            same heap policy)
  python       train_step_bench.py --model cnn             (eager PyTorch as a user runs it)
  python_keep  the same with the worker's heap and zero_grad(set_to_none=True)
Prints one JSON line per run and a summary line:
  {"bench":"torchscript_step","kind":"summary","ratio_vs_builtin":ts/builtin,
   "ratio_vs_python":ts/python,"ratio_vs_python_keep":..., medians in samples/s, ...}
The target is ratio_vs_builtin >= 0.95.

usage: torchscript_step.py --bin-dir build/bin [--repeats 5] [--threads 1] [--batch 128]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from step_throughput import run  # noqa: E402  (the same runner and environment handling)


def script_cnn(python, path):
    import subprocess
    code = ("import sys, torch; sys.path.insert(0, %r); import train_step_bench as t; "
            "torch.manual_seed(1); torch.jit.script(t.Cnn()).save(%r)" % (HERE, path))
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        sys.exit(f"torchscript_step: scripting the cnn failed: {out.stderr[-2000:]}")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--python", default="/usr/bin/python3")
    a = p.parse_args()
    if a.repeats < 1 or a.batch < 1 or a.steps < 1 or a.warmup < 0 or a.threads < 1:
        sys.exit("torchscript_step: --repeats, --batch, --steps, --threads >= 1; --warmup >= 0")
    with tempfile.TemporaryDirectory() as tmp:
        ts = os.path.join(tmp, "cnn.ts")
        script_cnn(a.python, ts)
        common = ["--batch", str(a.batch), "--steps", str(a.steps), "--warmup", str(a.warmup),
                  "--device", a.device, "--threads", str(a.threads)]
        bench = os.path.join(a.bin_dir, "qsr-bench-step")
        py = [a.python, os.path.join(HERE, "train_step_bench.py"), "--model", "cnn"] + common
        cmds = {
            "builtin": ([bench, "--model", "cnn"] + common, False),
            "torchscript": ([bench, "--model", "torchscript", "--model-path", ts] + common, False),
            "python": (py + ["--grads", "default"], False),
            "python_keep": (py + ["--grads", "none"], True),
        }
        res = {impl: [] for impl in cmds}
        for r in range(a.repeats):
            order = list(cmds) if r % 2 == 0 else list(cmds)[::-1]
            for impl in order:
                cmd, keep = cmds[impl]
                f = run(cmd, timeout=600, keep_heap=keep)
                sps = a.batch * 1000.0 / f["step_ms"]
                res[impl].append(sps)
                print(json.dumps({"bench": "torchscript_step", "kind": "run", "impl": impl,
                                  "batch": a.batch, "steps": a.steps, "threads": a.threads,
                                  "device": a.device, "repeat": r, "params": f["params"],
                                  "samples_per_s": sps, "step_ms": f["step_ms"]}), flush=True)
    med = {impl: statistics.median(v) for impl, v in res.items()}
    print(json.dumps({
        "bench": "torchscript_step", "kind": "summary", "model": "cnn", "batch": a.batch,
        "steps": a.steps, "threads": a.threads, "device": a.device, "repeats": a.repeats,
        **{f"{impl}_samples_per_s": v for impl, v in med.items()},
        "ratio_vs_builtin": med["torchscript"] / med["builtin"],
        "ratio_vs_python": med["torchscript"] / med["python"],
        "ratio_vs_python_keep": med["torchscript"] / med["python_keep"],
        "all": res}), flush=True)


if __name__ == "__main__":
    main()
