#!/usr/bin/env python3
"""Benchmark 2 driver: qsr-bench-avg (qsr's averaging round, raw Gloo, ring link) and
torch_allreduce.py for each worker count; passes their JSON lines through and adds one summary
line per (workers, bytes): {"bench":"averaging","kind":"summary","qsr_s","gloo_s","torch_s",
"qsr_over_gloo","ring_bound_s","link_MBps"}."""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def lines_of(cmd, timeout):
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        sys.exit(f"averaging: {' '.join(cmd)} failed (rc {out.returncode}): {out.stderr[-2000:]}")
    return [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--workers", default="2,4")
    p.add_argument("--sizes-mb", default="1,10,100")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--python", default="/usr/bin/python3")
    a = p.parse_args()
    for n in a.workers.split(","):
        recs = lines_of([os.path.join(a.bin_dir, "qsr-bench-avg"), "--workers", n, "--sizes-mb",
                         a.sizes_mb, "--iters", str(a.iters)], 900)
        recs += lines_of([a.python, os.path.join(HERE, "torch_allreduce.py"), "--workers", n,
                          "--sizes-mb", a.sizes_mb, "--iters", str(a.iters)], 900)
        for r in recs:
            print(json.dumps(r), flush=True)
        by = {}
        for r in recs:
            by.setdefault(r["bytes"], {})[r["impl"]] = r
        for size, d in sorted(by.items()):
            s = {"bench": "averaging", "kind": "summary", "workers": int(n), "bytes": size}
            for impl in ("qsr", "comm", "gloo", "torch"):
                if impl in d:
                    s[impl + "_s"] = d[impl]["median_s"]
                    s[impl + "_busbw_MBps"] = d[impl]["busbw_MBps"]
            if "link" in d:
                s["link_MBps"] = d["link"]["link_MBps"]
                s["ring_bound_s"] = d["link"]["ring_bound_s"]
            if "qsr_s" in s and "gloo_s" in s:
                s["qsr_over_gloo"] = s["qsr_s"] / s["gloo_s"]
            if "comm_s" in s and "gloo_s" in s:
                s["comm_over_gloo"] = s["comm_s"] / s["gloo_s"]
            if "torch_s" in s and "gloo_s" in s:
                s["torch_over_gloo"] = s["torch_s"] / s["gloo_s"]
            print(json.dumps(s), flush=True)


if __name__ == "__main__":
    main()
