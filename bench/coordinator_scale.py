#!/usr/bin/env python3
"""Benchmark 3 driver: for each K, starts one qsr-coordinator for K workers (constant H, one round
per NextRounds: --plan-batch-steps 1, so every round is a barrier) and runs qsr-bench-coord
against it, which simulates the K workers and measures barrier release latency, rounds/s and the
coordinator's CPU and memory. With --ranks-per-agent 1,8 each K also runs with the workers grouped
8 per host behind a host agent (qsr-agent: one barrier call per host). Prints qsr-bench-coord's
JSON line per K and grouping (with "h" added)."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one(a, k, per_agent, tmp):
    barriers = a.agent_barriers if per_agent > 1 and a.agent_barriers else a.barriers
    run_dir = os.path.join(tmp, f"coord-{k}-{per_agent}")
    port_file = os.path.join(tmp, f"coord-{k}-{per_agent}.port")
    log = open(os.path.join(tmp, f"coord-{k}-{per_agent}.log"), "w")
    coord = subprocess.Popen(
        [os.path.join(a.bin_dir, "qsr-coordinator"), "--recipe",
         os.path.join(ROOT, "recipes/fashion-mnist/cnn-localsgd-constant-h.yaml"),
         "--listen", "127.0.0.1:0", "--run-dir", run_dir, "--run-id", f"bench-coord-{k}",
         "--port-file", port_file, "--plan-batch-steps", "1", "--rendezvous-timeout", "120s",
         f"--workers={k}", f"--total_batch_size={k}", "--epochs=1",
         f"--steps_per_epoch={barriers * a.h}", f"--init_h={a.h}", f"--min_h={a.h}",
         "--warmup_epochs=0"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while not os.path.exists(port_file):
            if coord.poll() is not None or time.time() > deadline:
                sys.exit(f"coordinator_scale: the coordinator did not start; see {log.name}")
            time.sleep(0.05)
        port = open(port_file).read().strip()
        out = subprocess.run(
            [os.path.join(a.bin_dir, "qsr-bench-coord"), "--coordinator", f"127.0.0.1:{port}",
             "--workers", str(k), "--barriers", str(barriers + 5), "--channels",
             str(a.channels), "--coordinator-pid", str(coord.pid), "--timeout-s",
             str(a.timeout_s), "--report-interval-ms", str(a.report_interval_ms),
             "--train-ms", str(a.train_ms), "--ranks-per-agent", str(per_agent)],
            capture_output=True, text=True, timeout=a.timeout_s + 30)
        if out.returncode != 0:
            sys.exit(f"coordinator_scale: K={k}: qsr-bench-coord failed: {out.stderr[-2000:]}")
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        rec["h"] = a.h
        print(json.dumps(rec), flush=True)
    finally:
        if coord.poll() is None:
            coord.terminate()
        try:
            coord.wait(10)
        except subprocess.TimeoutExpired:
            coord.kill()
            coord.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--workers", default="16,128,512,1024,2048")
    p.add_argument("--barriers", type=int, default=40)
    p.add_argument("--h", type=int, default=4)
    p.add_argument("--channels", type=int, default=0,
                   help="0: one connection per worker (per host with --ranks-per-agent)")
    p.add_argument("--agent-barriers", type=int, default=0,
                   help="barriers for the rows behind host agents (0: --barriers). Through agents "
                        "a barrier takes milliseconds, so 20 of them end before the first "
                        "heartbeat or report is due; 200 run for seconds, as the direct rows do")
    p.add_argument("--ranks-per-agent", default="1",
                   help="comma list: workers per host agent (1: every worker calls the "
                        "coordinator itself)")
    p.add_argument("--timeout-s", type=int, default=300)
    p.add_argument("--report-interval-ms", type=int, default=1000,
                   help="how often a simulated worker sends its round reports, as the worker's "
                        "ReportSender does (0: one Report per barrier, the old load)")
    p.add_argument("--train-ms", type=int, default=0,
                   help="simulated training time per round (0: barriers back to back)")
    a = p.parse_args()
    if a.barriers < 1 or a.agent_barriers < 0 or a.h < 1:
        p.error("--barriers and --h must be >= 1, --agent-barriers >= 0 (0: --barriers)")
    if not all(x.isdigit() and int(x) >= 1 for x in a.ranks_per_agent.split(",")):
        p.error(f"--ranks-per-agent is {a.ranks_per_agent!r}; allowed: a comma list of integers "
                ">= 1 (workers per host agent; 1: no agent)")
    with tempfile.TemporaryDirectory(prefix="qsr-bench-coord-") as tmp:
        for k in a.workers.split(","):
            for per_agent in a.ranks_per_agent.split(","):
                one(a, int(k), int(per_agent), tmp)


if __name__ == "__main__":
    main()
