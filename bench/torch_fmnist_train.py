#!/usr/bin/env python3
"""The PyTorch peers of benchmark 4: the `cnn` on Fashion-MNIST with DistributedDataParallel (gloo),
PyTorch's PostLocalSGDOptimizer (DDP through the warmup, then parameters averaged every --h
steps), or PeriodicModelAverager alone (`periodic`: Local SGD with constant H = --h from the first
step, no DDP; averaging right after steps 1, 1 + h, 1 + 2h, ... as the averager counts), one
process per rank, started by hand (torchrun fails on
Python 3.11): MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE or the flags below.

The recipe mirrors recipes/fashion-mnist/cnn-*.yaml: total batch 128 split over the ranks, SGD
momentum 0.9, weight decay 5e-4, max lr 0.1, linear warmup over warmup_epochs then cosine to 0,
the same network (train_step_bench.Cnn) and the same normalisation (mean 0.2860, std 0.3530).

Rank 0 evaluates on the 10,000 test images after every epoch and writes one JSON line per
evaluation to --out: {"impl", "mode", "epoch", "step", "test_acc", "test_loss", "elapsed_s",
"clock_s"} (elapsed_s from the first training step, evaluation included, like qsr's evals.jsonl;
clock_s the same less evaluations and snapshot writes). A run stops after --epochs, after
--time-limit-s of training by clock_s (the line then says "stopped": "time_limit"), or on reaching
--stop-at-acc.

With --snapshot-dir, rank 0 also writes the model (a state dict, torch.save) at sync boundaries
(every step for ddp; for the others the steps right after an averaging, and every step of
postlocal's warmup) whenever --snapshot-every epochs have passed since the last one, i.e. every
--snapshot-every epochs or at every sync, whichever is rarer, plus the starting model and the
last one if it is averaged; DIR/snapshots.jsonl gets one line per snapshot, as qsr-worker writes
it: {"step", "epoch", "clock_s", "wall_s", "write_s", "file"}. clock_s leaves out the time spent
writing snapshots and evaluating, and --time-limit-s applies to that clock.
"""
import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step_bench import Cnn  # noqa: E402

MEAN, STD = 0.2860, 0.3530


def load_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_split(data_dir, prefix):
    x = load_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    y = load_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    x = (torch.from_numpy(x.astype(np.float32) / 255.0) - MEAN) / STD
    return x.unsqueeze(1).contiguous(), torch.from_numpy(y.astype(np.int64))


def lr_at(step, total, warmup, max_lr):
    if step < warmup:
        return max_lr * step / warmup
    if total <= warmup:
        return max_lr
    return 0.5 * max_lr * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def evaluate(model, x, y):
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            out = model(x[i:i + 1000])
            loss += F.cross_entropy(out, y[i:i + 1000], reduction="sum").item()
            correct += (out.argmax(1) == y[i:i + 1000]).sum().item()
    model.train()
    return correct / len(x), loss / len(x)


class Snapshots:
    """Rank 0's snapshots and the training clock that leaves them (and evaluations) out."""

    def __init__(self, out_dir, every_epochs, steps_per_epoch):
        self.dir = out_dir
        self.interval = every_epochs * steps_per_epoch
        self.steps_per_epoch = steps_per_epoch
        self.start = time.perf_counter()
        self.paused = 0.0
        self.last = None
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
            open(os.path.join(out_dir, "snapshots.jsonl"), "w").close()

    def clock(self):
        return time.perf_counter() - self.start - self.paused

    def pause(self):
        """Context manager: the clock stands still inside."""
        snaps = self

        class Paused:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                snaps.paused += time.perf_counter() - self.t0

        return Paused()

    def maybe(self, step, model, force=False):
        """At a sync boundary after `step` steps (force: the first and the last)."""
        if not self.dir or step == self.last:
            return
        if not force and self.last is not None and step - self.last + 1e-9 < self.interval:
            return
        clock, t0 = self.clock(), time.perf_counter()
        with self.pause():
            name = f"snap-{step:08d}.pt"
            torch.save(model.state_dict(), os.path.join(self.dir, name))
            write_s = time.perf_counter() - t0
            with open(os.path.join(self.dir, "snapshots.jsonl"), "a") as f:
                f.write(json.dumps({"step": step, "epoch": round(step / self.steps_per_epoch, 6),
                                    "clock_s": clock, "wall_s": t0 - self.start,
                                    "write_s": write_s, "file": name}) + "\n")
        self.last = step


def synced_after(mode, step, warmup, h):
    """Whether every rank holds the same (averaged or data-parallel) model after `step` steps."""
    if mode == "ddp":
        return True
    if mode == "postlocal":  # gradients all-reduced through the warmup, then the averager's steps
        w = max(warmup, 1)
        return step <= w or (step - 1 - w) % h == 0
    return (step - 1) % h == 0  # periodic: PeriodicModelAverager with no warmup


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mode", choices=["ddp", "postlocal", "periodic"], required=True)
    p.add_argument("--rank", type=int, default=int(os.environ.get("RANK", 0)))
    p.add_argument("--world-size", type=int, default=int(os.environ.get("WORLD_SIZE", 1)))
    p.add_argument("--master-addr", default=os.environ.get("MASTER_ADDR", "127.0.0.1"))
    p.add_argument("--master-port", type=int, default=int(os.environ.get("MASTER_PORT", 29500)))
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--steps-per-epoch", type=int, default=-1, help="-1: 60000 / batch")
    p.add_argument("--batch", type=int, default=128, help="total over all ranks")
    p.add_argument("--max-lr", type=float, default=0.1)
    p.add_argument("--warmup-epochs", type=float, default=0.5)
    p.add_argument("--h", type=int, default=8,
                   help="postlocal, periodic: averaging period (steps)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--time-limit-s", type=float, default=3600)
    p.add_argument("--stop-at-acc", type=float, default=2.0)
    p.add_argument("--out", default="-")
    p.add_argument("--snapshot-dir", default="", help="rank 0's model snapshots (see above)")
    p.add_argument("--snapshot-every", type=float, default=0.0625,
                   help="epochs between snapshots, or every sync if syncs are rarer")
    a = p.parse_args()
    if not a.snapshot_every > 0:
        sys.exit(f"--snapshot-every {a.snapshot_every}: epochs between snapshots, above 0")
    if a.h < 1:
        sys.exit(f"--h {a.h}: the averaging period is a number of steps >= 1")
    if a.batch % a.world_size:
        sys.exit(f"--batch {a.batch} must be a multiple of --world-size {a.world_size}")

    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", init_method=f"tcp://{a.master_addr}:{a.master_port}",
                            rank=a.rank, world_size=a.world_size,
                            timeout=__import__("datetime").timedelta(seconds=120))
    x, y = load_split(a.data_dir, "train")
    tx, ty = load_split(a.data_dir, "t10k") if a.rank == 0 else (None, None)
    local_batch = a.batch // a.world_size
    steps_per_epoch = a.steps_per_epoch if a.steps_per_epoch > 0 else len(x) // a.batch
    total = steps_per_epoch * a.epochs
    warmup = int(a.warmup_epochs * steps_per_epoch)

    torch.manual_seed(a.seed)
    model = Cnn()
    averager = None
    if a.mode == "periodic":
        from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager
        ddp = model  # every rank steps on its own; only the averager communicates
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, 0)  # rank 0's weights, as DDP's constructor does
        averager = PeriodicModelAverager(period=a.h, warmup_steps=0)
    else:
        ddp = torch.nn.parallel.DistributedDataParallel(model)  # broadcasts rank 0's weights
    opt = torch.optim.SGD(ddp.parameters(), lr=a.max_lr, momentum=0.9, weight_decay=5e-4)
    if a.mode == "postlocal":
        from torch.distributed.algorithms.ddp_comm_hooks import post_localSGD_hook as pl
        from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager
        from torch.distributed.optim import PostLocalSGDOptimizer
        # After the warmup every rank steps on its own: its subgroup is itself, so the hook's
        # gradient all-reduce is local, and only the averager communicates (every --h steps).
        # (PyTorch's default, subgroups per machine, needs CUDA; with subgroup = WORLD the hook
        # would keep all-reducing gradients every step, i.e. DDP plus averaging.)
        own = None
        for r in range(a.world_size):  # every rank must create every group
            g = dist.new_group([r])
            if r == a.rank:
                own = g
        state = pl.PostLocalSGDState(process_group=None, subgroup=own,
                                     start_localSGD_iter=max(warmup, 1))
        ddp.register_comm_hook(state, pl.post_localSGD_hook)
        opt = PostLocalSGDOptimizer(optim=opt, averager=PeriodicModelAverager(
            period=a.h, warmup_steps=max(warmup, 1)))

    out = sys.stdout if a.out == "-" else open(a.out, "w")
    gen = torch.Generator().manual_seed(a.seed)
    snaps = Snapshots(a.snapshot_dir if a.rank == 0 else "", a.snapshot_every, steps_per_epoch)
    snaps.maybe(0, model, force=True)
    step, stopped = 0, None
    for epoch in range(a.epochs):
        perm = torch.randperm(len(x), generator=gen)
        mine = perm[a.rank::a.world_size]
        for i in range(steps_per_epoch):
            idx = mine[(i * local_batch) % len(mine):][:local_batch]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, warmup, a.max_lr)
            opt.zero_grad()
            F.cross_entropy(ddp(x[idx]), y[idx]).backward()
            opt.step()
            if averager is not None:
                averager.average_parameters(model.parameters())
            step += 1
            if synced_after(a.mode, step, warmup, a.h):
                snaps.maybe(step, model)
            if step % 25 == 0 and i + 1 < steps_per_epoch:  # a collective time check
                over = torch.tensor([1.0 if snaps.clock() >= a.time_limit_s else 0.0])
                dist.broadcast(over, 0)
                if over.item() > 0:
                    stopped = "time_limit"
                    break
        # Every rank decides on stopping together: rank 0's verdict is broadcast.
        verdict = torch.zeros(1)
        if a.rank == 0:
            with snaps.pause():
                acc, loss = evaluate(model, tx, ty)
            rec = {"impl": "pytorch", "mode": a.mode, "epoch": round(step / steps_per_epoch, 4),
                   "step": step, "test_acc": acc, "test_loss": loss,
                   "elapsed_s": time.perf_counter() - snaps.start, "clock_s": snaps.clock(),
                   "workers": a.world_size}
            if acc >= a.stop_at_acc:
                stopped = "target"
            elif snaps.clock() >= a.time_limit_s and epoch + 1 < a.epochs:
                stopped = "time_limit"
            rec["total_steps"] = total
            if stopped:
                rec["stopped"] = stopped
            print(json.dumps(rec), file=out, flush=True)
            verdict[0] = 1.0 if stopped else 0.0
        dist.broadcast(verdict, 0)
        if verdict.item() > 0:
            break
    if synced_after(a.mode, step, warmup, a.h):  # the last model, if it is an averaged one
        snaps.maybe(step, model, force=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
