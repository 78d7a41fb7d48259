#!/usr/bin/env python3
"""Benchmark 2's Python peer: torch.distributed.all_reduce (gloo) of one float32 tensor of S bytes,
N ranks started as processes here (MASTER_ADDR/MASTER_PORT by hand; torchrun fails on Python 3.11).
Rank 0 prints one JSON line per size, timed like qsr-bench-avg (a barrier before each repetition,
median of --iters after --warmup):
  {"bench":"averaging","impl":"torch","workers":n,"bytes":S,"median_s":..,"busbw_MBps":..}
"""
import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time


def rank_main(rank, a, port):
    import datetime
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://{a.host}:{port}", rank=rank,
                            world_size=a.workers, timeout=datetime.timedelta(seconds=a.timeout_s))
    n = a.workers
    for mb in [float(s) for s in a.sizes_mb.split(",")]:
        numel = int(mb * 1e6 / 4)
        t = torch.ones(numel)
        times = []
        for i in range(a.warmup + a.iters):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(t)
            if i >= a.warmup:
                times.append(time.perf_counter() - start)
        med = statistics.median(times)
        if rank == 0:
            print(json.dumps({"bench": "averaging", "impl": "torch", "workers": n,
                              "bytes": numel * 4, "iters": a.iters, "median_s": med,
                              "min_s": min(times), "max_s": max(times),
                              "algbw_MBps": numel * 4 / med / 1e6,
                              "busbw_MBps": 2 * (n - 1) / n * numel * 4 / med / 1e6}), flush=True)
    dist.barrier()
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--sizes-mb", default="1,10,100")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--timeout-s", type=int, default=300)
    a = p.parse_args()
    with socket.socket() as s:  # a free port for the rendezvous (released just before use)
        s.bind((a.host, 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=rank_main, args=(r, a, port)) for r in range(a.workers)]
    for pr in procs:
        pr.start()
    deadline = time.time() + a.timeout_s + 30
    for pr in procs:
        pr.join(max(1, deadline - time.time()))
    failed = [pr for pr in procs if pr.exitcode != 0]
    for pr in procs:
        if pr.is_alive():
            pr.kill()
    if failed:
        sys.exit(f"torch_allreduce: {len(failed)} ranks failed or timed out")


if __name__ == "__main__":
    main()
