#!/usr/bin/env python3
"""Benchmark 1: training-step throughput, the C++ LibTorch loop (qsr-bench-step) against the same
loop in Python PyTorch (train_step_bench.py), same model, batch, thread count and device, run
alternately --repeats times. Prints one JSON line per run and one summary line per model:
  {"bench":"step","kind":"summary","model":..,"cpp_samples_per_s":median,"python_samples_per_s":
   median,"ratio":cpp/python,"repeats":n,...}

The columns (impl):
  cpp          qsr-bench-step as qsr-worker runs: --heap keep (worker/heap_policy.h), gradients
               dropped between steps and its fused CPU SGD (worker/foreach_sgd.h)
  python       the Python twin as a user runs it: glibc's default heap, opt.zero_grad()
  cpp_system   C++ with glibc's default heap (--heap system)
  python_keep  Python with the worker's memory behaviour: its heap, given through GLIBC_TUNABLES,
               and zero_grad(set_to_none=True)
  cpp_cl, python_cl  both in channels_last, both with the worker's memory behaviour
so that "ratio" (the product against Python as shipped) can be read next to the ratio with the
same memory behaviour on both sides (ratio_same_heap), which is what the language and the fused
SGD are worth, and the ratio with glibc's default heap on both (ratio_system_heap).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# model -> [(batch, steps, warmup, channels_last columns)] for a CPU run; --scale multiplies the
# steps. ResNet-18 runs at batch 16 (short steps) and at 128, the batch CIFAR training usually
# uses, where the first layers' activations (33.5 MB each) are above glibc's largest mmap
# threshold (32 MiB) and so are unmapped and faulted in again every step under glibc's default
# heap. Its channels_last columns are left out at 128: at 16 they measured the layout ~12% slower
# on both sides, and a step there takes seconds.
SIZES = {"mlp": [(128, 200, 20, False)], "cnn": [(128, 40, 5, True)],
         "resnet18": [(16, 8, 2, True), (128, 3, 1, False)]}
# The environment that gives a process qsr-worker's --heap keep (worker/heap_policy.h).
KEEP_HEAP_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=18446744073709551615"


def parse(line):
    fields = dict(kv.split("=", 1) for kv in line.split()[1:])
    for k in ("batch", "steps", "params"):
        fields[k] = int(fields[k])
    for k in ("samples_per_s", "step_ms", "final_loss"):
        fields[k] = float(fields[k])
    return fields


def run(cmd, timeout, keep_heap=False):
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    env.pop("GLIBC_TUNABLES", None)
    if keep_heap:
        env["GLIBC_TUNABLES"] = KEEP_HEAP_TUNABLES
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [l for l in out.stdout.splitlines() if l.startswith("bench ")]
    if out.returncode != 0 or not lines:
        sys.exit(f"step_throughput: {' '.join(cmd)} failed (rc {out.returncode}): {out.stderr[-2000:]}")
    return parse(lines[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--models", default="mlp,cnn,resnet18",
                   help="comma-separated; model@batch picks one of SIZES' batches")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the step counts")
    p.add_argument("--device", default="cpu")
    p.add_argument("--python", default="/usr/bin/python3")
    a = p.parse_args()
    configs = []
    for spec in a.models.split(","):
        model, _, want = spec.partition("@")
        if model not in SIZES:
            sys.exit(f"step_throughput: unknown model {model!r} (allowed: {', '.join(SIZES)})")
        sizes = [c for c in SIZES[model] if not want or str(c[0]) == want]
        if not sizes:
            sys.exit(f"step_throughput: no batch {want} for {model} (allowed: "
                     f"{', '.join(str(c[0]) for c in SIZES[model])})")
        configs += [(model,) + c for c in sizes]
    for model, batch, steps, warmup, with_cl in configs:
        steps = max(2, int(steps * a.scale))
        warmup = max(1, int(warmup * a.scale))
        common = ["--model", model, "--batch", str(batch), "--steps", str(steps), "--warmup",
                  str(warmup), "--device", a.device, "--threads", str(a.threads)]
        # Both heaps on both sides, then both layouts (the recipe's memory_format): channels_last
        # only for the models with 4-D tensors.
        impls = ["cpp", "python", "cpp_system", "python_keep"] + (
            ["cpp_cl", "python_cl"] if with_cl else [])
        res = {impl: [] for impl in impls}
        for r in range(a.repeats):
            # Alternate the order so that drifting machine load hits all alike.
            order = impls if r % 2 == 0 else impls[::-1]
            for impl in order:
                layout = ["--memory-format", "channels_last" if impl.endswith("_cl") else "contiguous"]
                if impl.startswith("cpp"):
                    heap = ["--heap", "system" if impl == "cpp_system" else "keep"]
                    cmd = [os.path.join(a.bin_dir, "qsr-bench-step")] + common + layout + heap
                    f = run(cmd, timeout=600)
                else:
                    tuned = impl in ("python_keep", "python_cl")
                    cmd = ([a.python, os.path.join(HERE, "train_step_bench.py")] + common + layout
                           + ["--grads", "none" if tuned else "default"])
                    f = run(cmd, timeout=600, keep_heap=tuned)
                # From step_ms: the printed samples_per_s is rounded to an integer.
                res[impl].append(batch * 1000.0 / f["step_ms"])
                print(json.dumps({"bench": "step", "kind": "run", "impl": impl, "model": model,
                                  "heap": "system" if impl in ("cpp_system", "python") else "keep",
                                  "batch": batch, "steps": steps, "threads": a.threads,
                                  "device": a.device, "repeat": r, "params": f["params"],
                                  "memory_format": f.get("memory_format"),
                                  "samples_per_s": batch * 1000.0 / f["step_ms"],
                                  "step_ms": f["step_ms"]}), flush=True)
        cpp, py = statistics.median(res["cpp"]), statistics.median(res["python"])
        summary = {"bench": "step", "kind": "summary", "model": model, "batch": batch,
                   "steps": steps, "threads": a.threads, "device": a.device,
                   "repeats": a.repeats, "cpp_samples_per_s": cpp,
                   "python_samples_per_s": py, "ratio": cpp / py,
                   "cpp_all": res["cpp"], "python_all": res["python"]}
        med = {impl: statistics.median(v) for impl, v in res.items()}
        summary.update({"cpp_system_samples_per_s": med["cpp_system"],
                        "python_keep_samples_per_s": med["python_keep"],
                        "ratio_same_heap": cpp / med["python_keep"],
                        "ratio_system_heap": med["cpp_system"] / py})
        if "cpp_cl" in res:
            cpp_cl, py_cl = statistics.median(res["cpp_cl"]), statistics.median(res["python_cl"])
            summary.update({"cpp_cl_samples_per_s": cpp_cl, "python_cl_samples_per_s": py_cl,
                            "ratio_cl": cpp_cl / py_cl, "cpp_cl_all": res["cpp_cl"],
                            "python_cl_all": res["python_cl"]})
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
