#!/usr/bin/env python3
"""Writes BENCHMARKS.md (tables, and SVG figures drawn by gnuplot) from the JSON lines the
benchmarks wrote into --data-dir: step.jsonl, averaging.jsonl, coordinator.jsonl,
release_floor.jsonl, ts_step.jsonl, tta.jsonl (and the full mode's tta_long, tta_sweep, tta_100,
tta_overlap, tta_slow100), accuracy.jsonl, and env.json (machine, versions, command, date). A
missing file leaves its section saying so. It then rewrites the performance table of the
repository's README.md (the lines between its two marker comments) from the same data, so that
the README cannot drift from it. With --check it only validates the data (the CI smoke): every
file present parses, and every throughput, time and accuracy is positive and finite; exits 1
naming what is wrong."""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import tta_curve
from provenance import describe, missing

FILES = ["step", "ts_step", "averaging", "coordinator", "release_floor", "tta", "tta_long",
         "tta_sweep", "tta_100", "tta_overlap", "tta_slow100", "accuracy", "accuracy_bf16",
         "accuracy_long", "accuracy_overlap", "long_study", "augment", "compare_builds"]
# Run by the full mode only (bench/run_all.sh), so the smoke does not require it.
OPTIONAL = {"tta_long", "tta_sweep", "tta_100", "tta_overlap", "tta_slow100", "accuracy_bf16",
            "accuracy_long", "accuracy_overlap", "long_study", "augment", "compare_builds"}


def load(data_dir, name):
    path = os.path.join(data_dir, name + ".jsonl")
    if not os.path.exists(path):
        return None
    recs = []
    for i, line in enumerate(open(path)):
        line = line.strip()
        if line:
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{i + 1}: not JSON: {e}")
    return recs


def positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def check(data):
    """Problems with the data, as strings (empty: sane)."""
    bad = []

    def need(cond, what):
        if not cond:
            bad.append(what)

    for name in FILES:
        if name not in OPTIONAL:
            need(data.get(name), f"{name}.jsonl is missing or empty")
        for i, r in enumerate(data.get(name) or []):
            gaps = missing(r)
            need(not gaps, f"{name}.jsonl line {i + 1}: provenance lacks {', '.join(gaps)}")
    for r in data.get("ts_step") or []:
        if r.get("kind") == "summary":
            need(positive(r.get("ratio_vs_builtin")) and positive(r.get("ratio_vs_python")),
                 "ts_step: non-positive ratio")
    need(any(r.get("kind") == "summary" for r in data.get("ts_step") or []),
         "ts_step: no summary")
    for r in data.get("step") or []:
        if r.get("kind") == "summary":
            need(positive(r["cpp_samples_per_s"]) and positive(r["python_samples_per_s"]),
                 f"step {r['model']}: non-positive throughput")
    need(any(r.get("kind") == "summary" for r in data.get("step") or []), "step: no summary")
    for r in data.get("averaging") or []:
        if r.get("kind") == "summary":
            for k in ("qsr_s", "gloo_s", "torch_s", "ring_bound_s"):
                need(positive(r.get(k)), f"averaging {r['workers']}x{r['bytes']}: {k} missing")
    for r in data.get("coordinator") or []:
        need(positive(r.get("rounds_per_s")) and r.get("barriers", 0) > 0 and
             r.get("errors") == 0 and positive(r.get("release_p99_ms")),
             f"coordinator K={r.get('workers')}: no barriers, errors or non-positive rates")
    for r in data.get("release_floor") or []:
        need(r.get("transport") in ("tcp", "grpc") and r.get("barriers", 0) > 0 and
             positive(r.get("all_released_p99_ms")),
             f"release_floor {r.get('transport')} K={r.get('workers')}: no barriers or latency")
    tta_names = ("tta", "tta_long", "tta_sweep", "tta_100", "tta_overlap", "tta_slow100")
    for r in [r for name in tta_names for r in data.get(name) or []]:
        need(r.get("evals") and all(0 < a <= 1 and t > 0 for t, a in r["evals"]),
             f"tta {r.get('method')}: no evaluations or insane accuracy/time")
        need(r.get("steps_done", 0) > 0, f"tta {r.get('method')}: no training steps")
        if "curve" in r:  # written with snapshots: at least the starting one, on a sane clock
            try:
                tta_curve.check_curve(r["curve"] or [])
                sane = bool(r["curve"])
            except ValueError:
                sane = False
            need(sane, f"tta {r.get('method')}: no snapshot curve, or one with a clock going "
                       "back or an accuracy outside [0, 1]")
    for r in [r for name in ("accuracy", "accuracy_bf16", "accuracy_long", "accuracy_overlap")
              for r in data.get(name) or []]:
        if r.get("kind") == "run":
            need(positive(r.get("test_acc")) and r["test_acc"] <= 1 and r.get("syncs", 0) > 0,
                 f"accuracy {r['method']} seed {r['seed']}: bad accuracy or no syncs")
    return bad


def fmt(x, spec=".3g"):
    if x is None:
        return "n/a"
    return format(x, spec)


def mb(b):
    return f"{b / 1e6:.4g} MB" if b is not None else "n/a"


def gnuplot(script, out_dir):
    try:
        subprocess.run(["gnuplot"], input=script, text=True, cwd=out_dir, check=True,
                       capture_output=True, timeout=60)
        return True
    except (OSError, subprocess.SubprocessError) as e:
        print(f"report: gnuplot failed: {e}", file=sys.stderr)
        return False


def write_dat(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(" ".join(str(x) for x in row) + "\n")


def step_summaries(recs):
    """The step summaries, their medians and ratios recomputed from the runs."""
    sums = [r for r in recs or [] if r.get("kind") == "summary"]
    # Medians recomputed from the runs' step_ms (older data rounded samples_per_s to integers,
    # which is too coarse for the slow models).
    for s in sums:
        for impl in ("cpp", "python", "cpp_system", "python_keep", "cpp_cl", "python_cl"):
            v = sorted(s["batch"] * 1000.0 / r["step_ms"] for r in recs
                       if r.get("kind") == "run" and r["model"] == s["model"]
                       and r["batch"] == s["batch"] and r["impl"] == impl)
            if v:
                s[impl + "_samples_per_s"] = (v[len(v) // 2] if len(v) % 2 else
                                              0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2]))
                s[impl + "_range"] = (v[0], v[-1])
        s["ratio"] = s["cpp_samples_per_s"] / s["python_samples_per_s"]
        if s.get("cpp_system_samples_per_s") and s.get("python_keep_samples_per_s"):
            s["ratio_same_heap"] = s["cpp_samples_per_s"] / s["python_keep_samples_per_s"]
            s["ratio_system_heap"] = s["cpp_system_samples_per_s"] / s["python_samples_per_s"]
        if s.get("python_cl_samples_per_s") and s.get("cpp_cl_samples_per_s"):
            s["ratio_cl"] = s["cpp_cl_samples_per_s"] / s["python_cl_samples_per_s"]
    return sums


def section_step(recs, fig_dir, md):
    md.append("## 1. Worker step throughput (C++ LibTorch vs Python PyTorch)\n")
    if not recs:
        md.append("Not run.\n")
        return
    sums = step_summaries(recs)
    r0 = sums[0]
    md.append(f"Same model, batch, SGD settings and synthetic on-device data; "
              f"{r0['threads']} intra-op thread(s), device {r0['device']}; "
              f"median of {r0['repeats']} alternating runs each "
              "(`qsr-bench-step` vs `bench/train_step_bench.py`). Aim: ratio >= 1.15.\n")
    md.append("C++ runs as qsr-worker does: its heap policy (`--heap keep`: memory a step "
              "frees is reused instead of being unmapped and faulted in again, "
              "worker/heap_policy.h), gradients dropped between steps instead of zero-filled "
              "(`ClearGradients`, as LibTorch 2.x's `zero_grad()`), and on the CPU one fused SGD "
              "pass per parameter (worker/foreach_sgd.h). Python runs as a user runs it: glibc's "
              "default heap and `opt.zero_grad()`. The same-memory column gives Python the "
              "worker's heap (`GLIBC_TUNABLES`) and `zero_grad(set_to_none=True)`, so what is "
              "left is the language and the fused update; the glibc-default column runs both "
              "sides with glibc's default heap. Then both in channels_last (the recipe's "
              "`memory_format: channels_last`; Python: "
              "`model.to(memory_format=torch.channels_last)`), both with the worker's memory "
              "behaviour, for the models with convolutions.\n")
    md.append("| model | batch | steps | C++ samples/s (min-max) | Python samples/s (min-max) | "
              "C++ / Python | same memory behaviour: C++ / Python | glibc default heap: C++ / "
              "Python | channels_last: C++ / Python samples/s | C++ / Python |")
    md.append("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for i, r in enumerate(sums):
        cr, pr = r.get("cpp_range", (0, 0)), r.get("python_range", (0, 0))
        cl = (f"{r['cpp_cl_samples_per_s']:.4g} / {r['python_cl_samples_per_s']:.4g} | "
              f"**{r['ratio_cl']:.3f}**" if r.get("ratio_cl") else "not run | -")
        heaps = (f"{r['ratio_same_heap']:.3f} | {r['ratio_system_heap']:.3f}"
                 if r.get("ratio_same_heap") else "not run | not run")
        md.append(f"| {r['model']} | {r['batch']} | {r['steps']} | {r['cpp_samples_per_s']:.4g} "
                  f"({cr[0]:.4g}-{cr[1]:.4g}) | {r['python_samples_per_s']:.4g} "
                  f"({pr[0]:.4g}-{pr[1]:.4g}) | **{r['ratio']:.3f}** | {heaps} | {cl} |")
        rows.append([i, f"{r['model']}/{r['batch']}", r["ratio"]])
    md.append("")
    write_dat(os.path.join(fig_dir, "step.dat"), rows)
    if gnuplot("""set terminal svg size 560,320
set output 'step.svg'
set style fill solid 0.6
set boxwidth 0.5
set ylabel 'C++ / Python samples/s'
set yrange [0:*]
set xrange [-0.6:%d]
set title 'Training-step throughput ratio (same threads, model, batch)'
plot 'step.dat' using 1:3:xtic(2) with boxes notitle, 1.15 with lines dt 2 title 'aim 1.15', 1 with lines lc rgb 'gray' notitle
""" % (len(rows) - 0.4), fig_dir):
        md.append("![step throughput ratio](bench/figures/step.svg)\n")


def section_ts_step(recs, md):
    md.append("### 1b. A model brought as TorchScript\n")
    sums = [r for r in recs or [] if r.get("kind") == "summary"]
    if not sums:
        md.append("Not run.\n")
        return
    md.append("The built-in `cnn` written in Python (`bench/train_step_bench.py`'s `Cnn`), "
              "scripted with `torch.jit.script` and trained by `qsr-bench-step --model "
              "torchscript` the way qsr-worker trains `model: torchscript` (same optimizer, heap "
              "policy and synthetic data), against the built-in C++ `cnn` and against eager Python "
              "(`bench/torchscript_step.py`; median of alternating runs). Aim: TorchScript / "
              "built-in >= 0.95.\n")
    md.append("| batch | threads | built-in samples/s | TorchScript samples/s | Python samples/s "
              "(same heap) | **TorchScript / built-in** | TorchScript / Python | TorchScript / "
              "Python, same heap | repeats |")
    md.append("|---|---|---|---|---|---|---|---|---|")
    for r in sums:
        md.append(f"| {r['batch']} | {r['threads']} | {r['builtin_samples_per_s']:.4g} | "
                  f"{r['torchscript_samples_per_s']:.4g} | {r['python_samples_per_s']:.4g} "
                  f"({r['python_keep_samples_per_s']:.4g}) | **{r['ratio_vs_builtin']:.3f}** | "
                  f"{r['ratio_vs_python']:.3f} | {r['ratio_vs_python_keep']:.3f} | "
                  f"{r['repeats']} |")
    md.append("")


def section_augment(recs, md):
    md.append("### 1c. RandAugment in the loader: decode alone against decode + RandAugment\n")
    modes = {r["mode"]: r for r in recs or [] if r.get("bench") == "augment"}
    ops = [r for r in recs or [] if r.get("bench") == "augment_op"]
    if "decode" not in modes or "decode+randaugment" not in modes:
        md.append("Not run.\n")
        return
    d, a = modes["decode"], modes["decode+randaugment"]
    md.append(f"`bench/augment.sh` (`qsr-bench-augment`): the image-folder loader's work on "
              f"{d['files']} synthetic {d['jpeg']} JPEGs (~{d['jpeg_kb']:.0f} KB): decode, "
              f"random-resized crop to {d['image_size']} and flip, then with RandAugment (the "
              f"authors' `--strong-aug 1`: severity {a.get('severity')}, depth {a.get('depth')}) "
              "or without, alternating in one invocation; images per CPU-second of the decoding "
              "thread. Target: RandAugment costs at most 30% of decode throughput (ratio >= "
              "0.70).\n")
    md.append("| mode | images/s per core | ratio to decode alone |")
    md.append("|---|---|---|")
    md.append(f"| decode | {d['images_per_s_per_core']:.1f} | 1 |")
    md.append(f"| decode + RandAugment | {a['images_per_s_per_core']:.1f} | "
              f"**{a['ratio_vs_decode']:.3f}** |")
    md.append("")
    if ops:
        md.append("Each operation alone on a " + str(ops[0]["image_size"]) + "x" +
                  str(ops[0]["image_size"]) + " image (microseconds): " +
                  ", ".join(f"{r['op']} {r['us_per_image']:.0f}" for r in ops) + ".\n")


def section_averaging(recs, fig_dir, md):
    md.append("## 2. Averaging cost (one averaging round vs raw Gloo vs torch.distributed)\n")
    if not recs:
        md.append("Not run.\n")
        return
    md.append("One averaging round of qsr (`ModelAverager::Average` over `GlooCommunicator`: a "
              "model of 16 tensors that live in one flat buffer, averaged by one ring all-reduce "
              "with the division folded into it), the communicator alone "
              "(`GlooCommunicator::AllReduceAverage` of one flat tensor), a raw `gloo::allreduce` "
              "(ring, `gloo::sum<float>`: a sum, not a mean) of the same bytes "
              "and `torch.distributed.all_reduce` (gloo, a sum) from Python; processes on one "
              "machine over loopback, 1 thread each, the implementations taking turns, median of "
              "the repetitions after a barrier (older data: each implementation's repetitions in "
              "a row). *link* is the "
              "measured ring-neighbour bandwidth (every rank sends S bytes to its successor while "
              "receiving from its predecessor); the ring bound is 2(n-1)/n * S / link. Aim: qsr "
              "within 5% of raw Gloo.\n")
    md.append("| workers | size | qsr round | communicator only | raw Gloo | torch (gloo) | "
              "qsr / Gloo | communicator / Gloo | torch / Gloo | qsr bus bw | link bw | ring bound |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    sums = [r for r in recs if r.get("kind") == "summary"]
    for r in sums:
        md.append(f"| {r['workers']} | {mb(r['bytes'])} | {fmt(r.get('qsr_s') and r['qsr_s'] * 1e3)} ms "
                  f"| {fmt(r.get('comm_s') and r['comm_s'] * 1e3)} ms "
                  f"| {fmt(r.get('gloo_s') and r['gloo_s'] * 1e3)} ms "
                  f"| {fmt(r.get('torch_s') and r['torch_s'] * 1e3)} ms "
                  f"| **{fmt(r.get('qsr_over_gloo'), '.3f')}** | {fmt(r.get('comm_over_gloo'), '.3f')} "
                  f"| {fmt(r.get('torch_over_gloo'), '.3f')} "
                  f"| {fmt(r.get('qsr_busbw_MBps'), '.4g')} MB/s | {fmt(r.get('link_MBps'), '.4g')} MB/s "
                  f"| {fmt(r.get('ring_bound_s') and r['ring_bound_s'] * 1e3)} ms |")
    md.append("")
    plots = []
    for n in sorted({r["workers"] for r in sums}):
        rows = [[r["bytes"] / 1e6, r.get("qsr_s", 0) * 1e3, r.get("gloo_s", 0) * 1e3,
                 r.get("torch_s", 0) * 1e3, r.get("ring_bound_s", 0) * 1e3]
                for r in sums if r["workers"] == n]
        write_dat(os.path.join(fig_dir, f"avg{n}.dat"), rows)
        for col, name in ((2, "qsr"), (3, "raw Gloo"), (4, "torch"), (5, "ring bound")):
            plots.append(f"'avg{n}.dat' using 1:{col} with linespoints title '{name}, {n} workers'")
    if gnuplot("""set terminal svg size 640,380
set output 'averaging.svg'
set logscale xy
set xlabel 'model size (MB)'
set ylabel 'time per round (ms)'
set key left top
set title 'Averaging round vs raw Gloo all-reduce (loopback)'
plot """ + ", ".join(plots) + "\n", fig_dir):
        md.append("![averaging](bench/figures/averaging.svg)\n")


def split_by_agent(recs):
    """The coordinator records with one connection per worker, and those behind host agents."""
    return ([r for r in recs or [] if r.get("ranks_per_agent", 1) == 1],
            [r for r in recs or [] if r.get("ranks_per_agent", 1) > 1])


def section_compare_builds(recs, md):
    """2b: this build's step and averaging round against a base build, taking turns in one
    invocation (bench/compare_builds.py); one row per summary, invocations kept apart."""
    sums = [r for r in recs or [] if r.get("kind") in ("step", "averaging")]
    if not sums:
        return
    base = sorted({r.get("base_commit", "?") for r in sums})
    md.append("### 2b. This build against a base build (benchmarks 1 and 2 side by side)\n")
    md.append("`bench/compare_builds.py`: benchmark 1's C++ step (`qsr-bench-step`, `--heap keep`, "
              "contiguous) and benchmark 2's averaging round (`qsr-bench-avg`, the qsr round) of "
              f"two builds, base commit {', '.join(f'`{b}`' for b in base)}, taking turns "
              "(alternating order); median over the repeats. Ratio > 1: this build is faster. "
              "Each invocation is a row of its own, so their spread shows the noise.\n")
    md.append("| invocation | benchmark | model or workers | batch or size | repeats | base | this "
              "build | **this / base** |")
    md.append("|---|---|---|---|---|---|---|---|")
    for r in sums:
        if r["kind"] == "step":
            md.append(f"| {r.get('invocation', 1)} | step | {r['model']} | {r['batch']} | "
                      f"{r['repeats']} | {r['base_samples_per_s']:.4g} samples/s | "
                      f"{r['samples_per_s']:.4g} samples/s | **{r['ratio']:.3f}** |")
        else:
            md.append(f"| {r.get('invocation', 1)} | averaging | {r['workers']} | "
                      f"{r['bytes'] / 1e6:g} MB | {r['repeats']} | {r['base_qsr_s'] * 1e3:.3g} ms | "
                      f"{r['qsr_s'] * 1e3:.3g} ms | **{r['ratio']:.3f}** |")
    md.append("")


def section_coordinator(recs, fig_dir, md):
    md.append("## 3. Coordinator scale\n")
    if not recs:
        md.append("Not run.\n")
        return
    r0 = recs[0]
    direct, agents = split_by_agent(recs)
    conn = ("one gRPC connection per simulated worker" if all(r["channels"] == r["workers"]
            for r in direct) else f"{r0['channels']} gRPC connections shared by the workers")
    # Records before report_interval_ms / train_ms existed sent one Report per barrier and
    # trained in no time.
    interval = r0.get("report_interval_ms", 0)
    train = r0.get("train_ms", 0)
    reports = ("one Report per barrier" if interval == 0 else
               f"round reports batched into one Report per worker every {interval} ms, as the "
               "worker's ReportSender does")
    training = ("training takes no time, so barriers come back to back" if train == 0 else
                f"training takes {train} ms per round")
    md.append(f"`qsr-bench-coord` simulates K workers (gRPC callback API, {conn}) doing Join, then NextRounds (the "
              f"round barrier) ... / Leave against one `qsr-coordinator`, {reports} "
              f"(constant H = {r0.get('h')}, `--plan-batch-steps 1`: every round is a barrier, "
              f"{training}). Release latency: a "
              "worker's reply time minus the last worker's arrival (both client-side); "
              "all-released: the last reply minus the last arrival, per barrier. CPU and memory "
              "of the coordinator process from /proc. The load generator runs on the same 2 "
              "cores. Aim: p99 < 20 ms at 1,024 workers.\n")
    if agents:
        md.append("Rows with S workers per host agent: the workers are grouped S to a host behind "
                  "a host agent (`qsr-agent`), one connection per host, and the host's calls go "
                  "as the agent sends them. Its round barrier goes as one call carrying the "
                  "host's ranks (`co_members`) when the host's last worker arrives, over the "
                  "host's `NextRoundsStream` (the column says `stream`; `unary`: one call each). Its "
                  "heartbeat goes once per interval for all of its workers. Its reports go in "
                  "`ReportBatch` calls: when every worker of the host has one waiting, or 500 ms "
                  "after the first. Join and Leave go one per worker. The agent's local hop runs "
                  "on each host's own cores and is not simulated; a worker's release is the "
                  "moment its host's call is answered. These rows run more barriers (see the "
                  "column) so that they last seconds and include the periodic heartbeats and "
                  "reports, as the direct rows do.\n")
    md.append("| K | workers per host agent | barriers | rounds/s | release p50 | release p99 | "
              "all released p50 | all released p99 | coordinator CPU (cores) | coordinator CPU "
              "per barrier | load generator CPU per barrier | coordinator RSS / peak |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in direct + agents:
        per_host = r.get("ranks_per_agent", 1)
        agent = f"{per_host} ({r.get('agent_transport', 'unary')})" if per_host > 1 else "- (direct)"
        md.append(f"| {r['workers']} | {agent} | "
                  f"{r['barriers']} | {r['rounds_per_s']:.1f} | "
                  f"{r['release_p50_ms']:.2f} ms | {r['release_p99_ms']:.2f} ms | "
                  f"{r['all_released_p50_ms']:.2f} ms | **{r['all_released_p99_ms']:.2f} ms** | "
                  f"{r['coordinator_cpu_util']:.2f} | "
                  f"{1e3 * r['coordinator_cpu_s'] / max(r['barriers'], 1):.1f} ms | "
                  f"{fmt(r.get('loadgen_cpu_s') and 1e3 * r['loadgen_cpu_s'] / max(r['barriers'], 1), '.1f')} ms | "
                  f"{r['coordinator_rss_MB']:.0f} / "
                  f"{r['coordinator_hwm_MB']:.0f} MB |")
    md.append("")
    write_dat(os.path.join(fig_dir, "coord.dat"),
              [[r["workers"], r["release_p50_ms"], r["release_p99_ms"], r["all_released_p99_ms"]]
               for r in direct])
    write_dat(os.path.join(fig_dir, "coord_agent.dat"),
              [[r["workers"], r["all_released_p50_ms"], r["all_released_p99_ms"]]
               for r in agents] or [[1, 1, 1]])
    agent_plot = (", 'coord_agent.dat' using 1:3 with linespoints title 'all released p99, "
                  f"{agents[0]['ranks_per_agent']} per host agent'" if agents else "")
    if gnuplot("""set terminal svg size 640,380
set output 'coordinator.svg'
set logscale xy
set xlabel 'simulated workers K'
set ylabel 'ms from the last arrival'
set key left top
set title 'Round barrier release latency'
plot 'coord.dat' using 1:2 with linespoints title 'release p50', 'coord.dat' using 1:3 with linespoints title 'release p99', 'coord.dat' using 1:4 with linespoints title 'all released p99'""" + agent_plot + """, 20 with lines dt 2 title 'aim 20 ms'
""", fig_dir):
        md.append("![coordinator](bench/figures/coordinator.svg)\n")


def section_release_floor(recs, coord, md):
    md.append("### 3b. The floor under it: the same release with no coordinator\n")
    if not recs:
        md.append("Not run.\n")
        return
    md.append("`qsr-bench-release-floor` times the same thing (K waiters released back to back, "
              "latency from the last arrival, client-side) with no coordinator logic at all: a "
              "server process that counts 8-byte arrivals and, at the K-th, sends every worker "
              "an 8-byte release. `tcp`: plain sockets and epoll, one thread on each side, the "
              "kernel's own cost. `grpc`: one gRPC bidirectional stream per worker (callback "
              "API), what a streaming coordinator transport would cost. Both sides share the "
              "same 2 cores, as in the table above. The last column is the coordinator's all "
              "released p99 at the same K (table above; `run_all.sh --only coordinator` runs "
              "both in one invocation) over this row's.\n")
    md.append("| K | transport | release p50 | release p99 | all released p50 | "
              "all released p99 | server CPU per barrier | client CPU per barrier | "
              "coordinator p99 / this |")
    md.append("|---|---|---|---|---|---|---|---|---|")
    by_k = {r["workers"]: r for r in coord or [] if r.get("ranks_per_agent", 1) == 1}
    for r in recs:
        c = by_k.get(r["workers"])
        ratio = (f"{c['all_released_p99_ms'] / r['all_released_p99_ms']:.1f}x"
                 if c and positive(r["all_released_p99_ms"]) else "n/a")
        md.append(f"| {r['workers']} | {r['transport']} | {r['release_p50_ms']:.2f} ms | "
                  f"{r['release_p99_ms']:.2f} ms | {r['all_released_p50_ms']:.2f} ms | "
                  f"**{r['all_released_p99_ms']:.2f} ms** | "
                  f"{r['server_cpu_per_barrier_ms']:.1f} ms | "
                  f"{r['client_cpu_per_barrier_ms']:.1f} ms | {ratio} |")
    md.append("")


def fill_schedule(recs):
    """Runs killed at the cap before writing their summary may lack total_steps; every run of an
    invocation has the same schedule."""
    schedule = max([r.get("total_steps") or 0 for r in recs or []] or [0])
    for r in recs or []:
        r["total_steps"] = r.get("total_steps") or schedule or None
    return recs


def full_run_s(r):
    """A tta run's whole-schedule wall-clock: elapsed, projected to total steps where capped."""
    if not r or not r.get("steps_done") or not r.get("total_steps"):
        return None
    return r["elapsed_s"] * r["total_steps"] / r["steps_done"]


def versus(peer):
    """How a peer's time to target compares with another run's time to target T: ("time", t)
    when the peer reached the target at t, so t / T is the ratio; ("capped", t) when the cap
    stopped it at t before it reached the target: its time to target exceeds t, so the ratio
    exceeds t / T (a lower bound on the ratio; t, the cap, is a lower bound on the peer's time);
    ("never", t) when its whole schedule (t) ended without reaching it: no ratio."""
    t = tta_time(peer)
    if t:
        return "time", t
    if peer.get("capped"):
        snap = snapshot_tta(peer)  # below the target up to its last snapshot's clock
        return "capped", snap.by if snap is not None else peer["elapsed_s"]
    return "never", peer["elapsed_s"]


def floor_to(x, digits):
    """x rounded down to digits decimals: how a lower bound is shown without overstating it."""
    return math.floor(x * 10 ** digits) / 10 ** digits


def tta_time(r):
    """A run's time to target: interpolated on its snapshot curve where it has one, else its first
    per-epoch evaluation at the target; None when not reached."""
    t = snapshot_tta(r)
    if t is None:
        return r.get("time_to_target_s")
    return t.tta if isinstance(t, tta_curve.Reached) else None


def snapshot_tta(r):
    """tta_curve.Reached / NotReached from a record's snapshot curve (bench/tta_netns.sh with
    snapshots); None for a record from before snapshots."""
    if r.get("curve") is None:
        return None
    if r.get("tta_s") is not None:
        return tta_curve.Reached(r["tta_s"], *r["tta_bracket_s"])
    return tta_curve.NotReached(r.get("not_reached_by_s") or 0.0)


def tta_cell(r):
    """'83.2 s [80.1, 90.3]' (interpolated, with the bracketing snapshots), 'not reached by 300 s'
    or, for a record without snapshots, the first per-epoch evaluation at the target."""
    t = snapshot_tta(r)
    if t is None:
        return f"{fmt(r['time_to_target_s'], '.0f')} s"
    if isinstance(t, tta_curve.Reached):
        return f"{t.tta:.1f} s [{t.lo:.1f}, {t.hi:.1f}]"
    return f"not reached by {t.by:.0f} s"


def passes(r):
    """Passes over Fashion-MNIST's 60,000 training images in a tta run's schedule, at its total
    batch of 128 (at least 1)."""
    return max(1, round((r.get("total_steps") or 0) * 128 / 60000))


def steps_per_epoch(r):
    """Steps in one of the run's epochs (its evaluation period), from its schedule."""
    return (r.get("total_steps") or 0) / (r.get("epochs") or 1)


def bracket_steps(r):
    """How many training steps apart the two snapshots around the crossing were, or None."""
    b = r.get("tta_bracket_epochs")
    return round((b[1] - b[0]) * steps_per_epoch(r)) if b else None


def bracket_cell(r):
    """'1.162-1.231 (8 steps)': where in the schedule the two snapshots around the crossing were
    taken, in the run's epochs, and how many steps apart; '-' when the target was not reached."""
    b = r.get("tta_bracket_epochs")
    return f"{b[0]:.3f}-{b[1]:.3f} ({bracket_steps(r)} steps)" if b else "-"


def bracket_summary(recs):
    """How wide the brackets are against 1/16 of a pass over the training set, and why the wider
    ones are wider."""
    r0 = recs[0]
    every, spe = r0.get("snapshot_every") or 0, steps_per_epoch(r0)
    pass_steps = (r0.get("total_steps") or 0) / passes(r0)
    reached = [r for r in recs if r.get("tta_bracket_epochs")]
    limit = pass_steps / 16
    # Snapshots fall on whole steps and, for a local method, on syncs: an interval of 29.25
    # steps becomes 30, or 32 with a sync every 8 steps. Up to a tenth over 1/16 of a pass is
    # that rounding; more is a round (or two thinned ones) longer than the interval.
    within = [r["method"] for r in reached if bracket_steps(r) <= limit]
    rounded = [r for r in reached if limit < bracket_steps(r) <= 1.1 * limit]
    wide = [r for r in reached if bracket_steps(r) > 1.1 * limit]
    text = (f"Brackets: an epoch of this schedule is {spe:.0f} steps (one evaluation's share), "
            f"a pass over the 60,000 training images {pass_steps:.0f} steps, so 1/16 of a pass is "
            f"{limit:.2f} steps. Snapshots were taken every {every} epochs (every "
            f"{math.ceil(every * spe - 1e-9)} steps: snapshots fall on whole steps) or at every "
            "sync, whichever is rarer. ")
    if within:
        text += f"Within 1/16 of a pass: {', '.join(within)}. "
    if rounded:
        text += ("Within 1/16 of a pass rounded up to a whole step or to the sync that ends the "
                 "interval: " + ", ".join(f"{r['method']} ({bracket_steps(r)} steps)"
                                          for r in rounded) + ". ")
    if wide:
        text += ("Wider: " + ", ".join(f"{r['method']} ({bracket_steps(r)} steps)" for r in wide) +
                 ". A local method has an averaged model only at a sync, so where its rounds "
                 "around the crossing are longer than the interval, one round (or the syncs "
                 "that together first pass the interval) is the finest its curve can be.")
    return text


def snapshot_ratio_line(rate, peer, name, p, q):
    """A ratio line from the snapshot curves (both records have them), or None when `name` did not
    reach the target. The range takes each time anywhere in its bracket."""
    pt, qt = snapshot_tta(p), snapshot_tta(q)
    r = tta_curve.ratio(pt, qt)
    if r is None:
        return None
    own = f"{name} {qt.tta:.1f} s [{qt.lo:.1f}, {qt.hi:.1f}]"
    if not r.at_least:
        hi = "inf" if math.isinf(r.hi) else f"{r.hi:.2f}"
        return (f"- {rate:.0f} Mbit/s: {peer} / {name} = **{r.value:.2f}x** (range "
                f"{r.lo:.2f}x to {hi}x over the snapshot brackets; {peer} {pt.tta:.1f} s "
                f"[{pt.lo:.1f}, {pt.hi:.1f}], {own})")
    if not p.get("capped"):
        return (f"- {rate:.0f} Mbit/s: {peer} did not reach the target in its whole schedule "
                f"(last snapshot at {pt.by:.0f} s); {own}")
    # Below the target at its last snapshot (clock `by`): its time to target exceeds `by`, ours is
    # at most the bracket's end, so the ratio exceeds by / own.hi: a lower bound.
    return (f"- {rate:.0f} Mbit/s: {peer} / {name} > **{floor_to(r.lo, 2):.2f}x** ({peer} was "
            f"below the target at its last snapshot, {pt.by:.0f} s of training, before the cap "
            f"stopped it, so its time to target exceeds that and the ratio exceeds "
            f"{pt.by:.0f} / {qt.hi:.1f}, the end of {name}'s bracket; {r.value:.2f}x at "
            f"{name}'s interpolated time; a lower bound; {own})")


def eval_ratio_line(rate, peer, name, p, q):
    """A ratio line from the per-epoch evaluations (records from before snapshots)."""
    own = q["time_to_target_s"]
    how, t = versus(p)
    if how == "time":
        return (f"- {rate:.0f} Mbit/s: {peer} / {name} = **{t / own:.2f}x** "
                f"({peer}: time to target, {t:.0f} s; {name} {own:.0f} s)")
    if how == "capped":
        full = full_run_s(p)
        upper = (f"; had it reached the target within its schedule, at most about "
                 f"{full / own:.2f}x (its projected full schedule, {full:.0f} s, bounds its time "
                 "from above)" if full else "")
        return (f"- {rate:.0f} Mbit/s: {peer} / {name} > **{floor_to(t / own, 2):.2f}x** "
                f"({peer} had not reached the target when the cap stopped it at {t:.0f} s, so its "
                f"time to target exceeds {t:.0f} s and this is a lower bound on the ratio{upper}; "
                f"{name} {own:.0f} s)")
    return (f"- {rate:.0f} Mbit/s: {peer} did not reach the target in its whole schedule "
            f"({t:.0f} s); {name} reached it in {own:.0f} s")


def section_tta(recs, fig_dir, md,
                title="## 4. Time to accuracy on a constrained network: 50 Mbit/s links, every "
                      "method, one invocation",
                prefix="tta"):
    md.append(title + "\n")
    if not recs:
        md.append("Not run.\n")
        return
    fill_schedule(recs)
    r0 = recs[0]
    md.append(f"{r0['workers']} workers, each in its own network namespace, joined by a bridge; "
              "every worker's veth is limited by tc tbf in both directions to the rate shown; the "
              "coordinator in the root namespace. `cnn` on Fashion-MNIST, total batch 128, "
              f"lr 0.1 cosine over {r0.get('total_steps')} steps, {r0['epochs']} evaluations "
              f"(one every {r0['epochs'] and (r0.get('total_steps') or 0) // r0['epochs']} steps, "
              "counted in the wall-clock), target "
              f"{r0['target']:.2f}, 1 thread per worker (the workers share the machine's cores). "
              + ("*time to target* is interpolated between the two model snapshots around the "
                 "crossing (taken every " + f"{r0.get('snapshot_every')} epochs or at every sync, "
                 "whichever is rarer, on a clock that leaves out the snapshot writes and the "
                 "evaluations; the bracket in square brackets); the snapshots are evaluated after "
                 "the run. " if snapshot_tta(r0) is not None else "") +
              "Runs that did not finish within the cap are marked *capped*; their projected "
              "full-run time is elapsed * total steps / steps done. *tx* is what the worker's "
              "interface sent (headers and control traffic included). *nocomm*'s accuracy is that "
              "of one average of independently trained models and is not a target candidate; "
              "it is there for its wall-clock.\n")
    with_width = any(r.get("tta_bracket_epochs") for r in recs)
    md.append("| method | rate | time to target | " + ("bracket, epochs (steps apart) | " if with_width
                                                      else "") +
              "final acc | steps done / total | elapsed | projected full run | syncs | "
              "bytes/worker (qsr count) | tx/worker |")
    md.append("|---|---|---|" + ("---|" if with_width else "") + "---|---|---|---|---|---|---|")
    plots = []
    for i, r in enumerate(recs):
        proj = None
        if r.get("total_steps") and r.get("steps_done"):
            proj = r["elapsed_s"] * r["total_steps"] / r["steps_done"]
        md.append(f"| {r['method']} ({r['impl']}) | {r['rate_mbit']:.0f} Mbit/s | "
                  f"{tta_cell(r)} | " + (f"{bracket_cell(r)} | " if with_width else "") +
                  f"{fmt(r['final_acc'], '.4f')} | "
                  f"{r['steps_done']} / {r.get('total_steps')} | {r['elapsed_s']:.0f} s"
                  f"{' (capped)' if r['capped'] else ''} | {fmt(proj, '.0f')} s | "
                  f"{r.get('syncs', 'n/a')} | {mb(r.get('bytes_per_worker'))} | "
                  f"{mb(r.get('tx_bytes_per_worker'))} |")
        # The snapshot curve (training clock) where there is one, else the per-epoch evaluations.
        write_dat(os.path.join(fig_dir, f"{prefix}{i}.dat"), r.get("curve") or r["evals"])
        plots.append(f"'{prefix}{i}.dat' using 1:2 with linespoints title '{r['method']} "
                     f"{r['rate_mbit']:.0f} Mbit/s'")
    md.append("")
    if with_width:
        md.append(bracket_summary(recs) + "\n")
    # The headline ratios, per rate: QSR against DDP (time to target; a peer that the cap stopped
    # before the target gives only a lower bound on the ratio) and against no communication
    # (full-run wall-clock, projected where capped).
    full = full_run_s
    for rate in sorted({r["rate_mbit"] for r in recs}):
        by = {r["method"]: r for r in recs if r["rate_mbit"] == rate}
        n = by.get("nocomm")
        # "qsr" against every peer; the slow-link variants (qsr_bf16, qsr_h16, constant_h32_bf16,
        # ...) and constant_h against DDP; all of them against no communication.
        variants = (m for m in by if m.startswith("qsr") or m.startswith("constant_h"))
        for name in sorted(variants, key=lambda m: (m != "qsr", m)):
            q = by[name]
            peers = (("ddp", "parallel", "postlocal", "periodic", "constant_h") if name == "qsr"
                     else ("ddp",))
            for peer in peers:
                p = by.get(peer)
                if p and snapshot_tta(p) is not None and snapshot_tta(q) is not None:
                    line = snapshot_ratio_line(rate, peer, name, p, q)
                elif p and q.get("time_to_target_s"):
                    line = eval_ratio_line(rate, peer, name, p, q)
                else:
                    line = None
                if line:
                    md.append(line)
            base = by.get(name[:-len("_overlap")]) if name.endswith("_overlap") else None
            if base and full(base) and full(q):
                md.append(f"- {rate:.0f} Mbit/s: full schedule {name[:-len('_overlap')]} / "
                          f"{name} = **{full(base) / full(q):.2f}x** ({full(base):.0f} s vs "
                          f"{full(q):.0f} s; final accuracy {base.get('final_acc') or 0:.4f} vs "
                          f"{q.get('final_acc') or 0:.4f})")
            if n and full(q) and full(n):
                md.append(f"- {rate:.0f} Mbit/s: full schedule {name} / no communication = "
                          f"**{full(q) / full(n):.2f}x** ({full(q):.0f} s vs {full(n):.0f} s; "
                          f"{name} final accuracy {q.get('final_acc') or 0:.4f})")
    md.append("")
    xlabel = ("training clock, snapshots (s)" if snapshot_tta(r0) is not None
              else "wall-clock (s)")
    if gnuplot("""set terminal svg size 700,400
set output '""" + prefix + """.svg'
set xlabel '""" + xlabel + """'
set ylabel 'test accuracy'
set key right bottom
set title 'Test accuracy over time, rate-limited links (nocomm below the range)'
set yrange [0.7:*]
plot """ + ", ".join(plots) + f", {r0['target']} with lines dt 2 title 'target'\n", fig_dir):
        md.append(f"![time to accuracy](bench/figures/{prefix}.svg)\n")


def accuracy_tables(runs, sums, md):
    md.append("| method | test acc mean | std | min | max | syncs (mean) |")
    md.append("|---|---|---|---|---|---|")
    for r in sums:
        md.append(f"| {r['method']} | **{r['acc_mean']:.4f}** | {r['acc_std']:.4f} | "
                  f"{r['acc_min']:.4f} | {r['acc_max']:.4f} | {r['syncs_mean']:.0f} |")
    md.append("\nPer run:\n")
    md.append("| method | seed | test acc | syncs | bytes/worker | elapsed |")
    md.append("|---|---|---|---|---|---|")
    for r in runs:
        md.append(f"| {r['method']} | {r['seed']} | {r['test_acc']:.4f} | {r['syncs']} | "
                  f"{mb(r['bytes_per_worker'])} | {fmt(r['elapsed_s'], '.0f')} s |")
    md.append("")


def section_accuracy_long(recs, md):
    md.append("### 5c. A longer schedule: QSR against constant H\n")
    runs = [r for r in recs if r.get("kind") == "run"]
    sums = [r for r in recs if r.get("kind") == "summary"]
    if not runs:
        md.append("Not run.\n")
        return
    r0 = runs[0]
    md.append(f"The setting of section 5 over {r0['epochs']} epochs (warmup "
              f"{r0['warmup_epochs']} epoch), where QSR's H grows further as the learning rate "
              f"decays; seeds {sorted({r['seed'] for r in runs})}, one invocation of its own.\n")
    accuracy_tables(runs, sums, md)
    by = {(r["method"], r["seed"]): r for r in runs}
    pairs = [(by[("qsr", s)], by[("constant_h", s)]) for s in sorted({r["seed"] for r in runs})
             if ("qsr", s) in by and ("constant_h", s) in by]
    if pairs:
        md.append("Seed by seed (the same seed: the same initial model and data order):\n")
        md.append("| seed | qsr | constant H | qsr - constant H | syncs, qsr / constant H |")
        md.append("|---|---|---|---|---|")
        for q, c in pairs:
            md.append(f"| {q['seed']} | {q['test_acc']:.4f} | {c['test_acc']:.4f} | "
                      f"{100 * (q['test_acc'] - c['test_acc']):+.2f} points | "
                      f"{q['syncs']} / {c['syncs']} |")
        md.append("")


def section_accuracy(recs, bf16_recs, overlap_recs, fig_dir, md):
    md.append("## 5. Accuracy study (small scale)\n")
    if not recs:
        md.append("Not run.\n")
        return
    runs = [r for r in recs if r.get("kind") == "run"]
    sums = [r for r in recs if r.get("kind") == "summary"]
    r0 = runs[0]
    md.append(f"`cnn` on Fashion-MNIST, cosine decay, {r0['workers']} workers (qsr-run on this "
              f"machine, 1 thread each), {r0['epochs']} epoch(s), seeds "
              f"{sorted({r['seed'] for r in runs})}, equal epochs for every method. A sync is "
              "one round (one averaging for Local SGD; for parallel SGD one round is one step "
              "with its gradient all-reduce). No CIFAR-format file is on this machine, so "
              "Fashion-MNIST only.\n")
    accuracy_tables(runs, sums, md)
    # accuracy_bf16.jsonl (its own invocation) runs qsr and qsr_bf16 on the same seeds, with only
    # the sync precision changed: the per-seed difference is the paired effect of bf16 syncs.
    bf16_runs = [r for r in bf16_recs or [] if r.get("kind") == "run"]
    fp32 = {r["seed"]: r for r in bf16_runs if r["method"] == "qsr"}
    pairs = [(r, fp32[r["seed"]]) for r in bf16_runs if r["method"] == "qsr_bf16" and
             r["seed"] in fp32]
    if pairs:
        b0 = pairs[0][0]
        md.append(f"QSR with bf16 syncs against QSR, seed by seed ({b0['epochs']} epoch(s), "
                  f"{b0['workers']} workers, one invocation of its own; the same seed gives the "
                  "same initial model and data order, so only what a sync sends differs):\n")
        md.append("| seed | qsr | qsr_bf16 | difference | bytes/worker, bf16 / fp32 |")
        md.append("|---|---|---|---|---|")
        for b, f in pairs:
            md.append(f"| {b['seed']} | {f['test_acc']:.4f} | {b['test_acc']:.4f} | "
                      f"{100 * (b['test_acc'] - f['test_acc']):+.2f} points | "
                      f"{b['bytes_per_worker'] / f['bytes_per_worker']:.2f} |")
        md.append("")
    # accuracy_overlap.jsonl (its own invocation): qsr and its overlapped variants, paired by seed.
    over = [r for r in overlap_recs or [] if r.get("kind") == "run"]
    base = {(r["method"], r["seed"]): r for r in over}
    opairs = [(r, base[(r["method"][:-len("_overlap")], r["seed"])]) for r in over
              if r["method"].endswith("_overlap") and
              (r["method"][:-len("_overlap")], r["seed"]) in base]
    if opairs:
        o0 = opairs[0][0]
        md.append(f"Overlapped syncs (`sync_overlap: 0.5`) against the same method without, seed "
                  f"by seed ({o0['epochs']} epoch(s), {o0['workers']} workers on loopback, one "
                  "invocation of its own; only when a sync is applied differs: halfway through "
                  "the next round, on top of each worker's own progress):\n")
        md.append("| seed | method | without overlap | with overlap | difference |")
        md.append("|---|---|---|---|---|")
        for o, b in sorted(opairs, key=lambda p: (p[1]["method"], p[0]["seed"])):
            md.append(f"| {o['seed']} | {b['method']} | {b['test_acc']:.4f} | "
                      f"{o['test_acc']:.4f} | {100 * (o['test_acc'] - b['test_acc']):+.2f} points |")
        for m in sorted({b["method"] for _, b in opairs}):
            d = [100 * (o["test_acc"] - b["test_acc"]) for o, b in opairs if b["method"] == m]
            md.append(f"\n{m}: mean difference with overlap **{sum(d) / len(d):+.2f} points** "
                      f"over {len(d)} seeds (range {min(d):+.2f} to {max(d):+.2f}).")
        md.append("")
    series = [r for r in recs if r.get("kind") == "series" and r["method"] == "qsr"]
    if series:
        s = series[0]
        write_dat(os.path.join(fig_dir, "qsr_h.dat"), zip(s["step"], s["h"], s["lr"]))
        if gnuplot("""set terminal svg size 640,380
set output 'qsr_h_lr.svg'
set xlabel 'step'
set ylabel 'H (steps between averagings)'
set y2label 'learning rate'
set y2tics
set ytics nomirror
set key left top
set title 'QSR: H and lr over training'
plot 'qsr_h.dat' using 1:2 with steps title 'H', 'qsr_h.dat' using 1:3 axes x1y2 with lines title 'lr'
""", fig_dir):
            md.append("![QSR H and lr](bench/figures/qsr_h_lr.svg)\n")


README_BEGIN = ("<!-- performance table: generated by bench/report.py from bench/data; do not "
                "edit -->")
README_END = "<!-- end of performance table -->"
# How the README's table names the tta methods and models.
LABELS = {"qsr": "QSR", "ddp": "DDP", "parallel": "qsr parallel", "postlocal": "PostLocalSGD",
          "periodic": "PeriodicModelAverager", "constant_h": "constant H", "mlp": "mlp",
          "cnn": "`cnn`", "resnet18": "ResNet-18"}

# Benchmark 4's QSR runs in README's table: the paper's setting (alpha 0.2, H_base 2) and the
# settings for slow links; and the peers whose time to target is set against QSR's.
QSR_VARIANTS = [("qsr", "QSR"), ("qsr_bf16", "with bf16 syncs"),
                ("qsr_bf16_overlap", "with bf16 and overlapped syncs"),
                ("qsr_h32_bf16", "H_base 32 with bf16 syncs"),
                ("qsr_h8_bf16_overlap", "H_base 8 with bf16 and overlapped syncs")]
TTA_PEERS = [("ddp", "PyTorch DDP"), ("postlocal", "PostLocalSGD"),
             ("periodic", "PeriodicModelAverager"), ("parallel", "qsr parallel"),
             ("constant_h", "constant H = 8")]


def short_provenance(recs):
    """'(AMD EPYC, 2026-11-26)': the machines and days that measured the records, each machine
    named once ('(AMD EPYC, 2026-12-06 and 2026-12-07)')."""
    days = {}
    for r in recs:
        p = r.get("provenance") or {}
        cpu = p.get("cpu") or "unknown CPU"
        for noise in ("(R)", "(TM)", " Processor", " CPU", "(", ")"):
            cpu = cpu.replace(noise, "")
        day = str(p.get("date") or "undated")[:10]
        seen = days.setdefault(" ".join(cpu.split()), [])
        if day not in seen:
            seen.append(day)
    named = []
    for cpu, seen in days.items():
        when = seen[0] if len(seen) == 1 else ", ".join(seen[:-1]) + " and " + seen[-1]
        named.append(f"{cpu}, {when}")
    return "(" + "; ".join(named) + ")"


def pct(acc):
    return f"{100 * acc:.2f}%"


def and_list(items):
    items = list(items)
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def peer_phrase(label, peer, owns, target):
    """'DDP 859 s (3.0x and 4.8x QSR's time)': a peer's time to target against the times owns,
    worded by versus(): a cap that stopped the peer before the target gives a lower bound."""
    how, t = versus(peer)
    if how == "time":
        return f"{label} {t:.0f} s ({and_list(f'{t / o:.2f}x' for o in owns)} QSR's time)"
    if how == "capped":
        return (f"{label} did not reach {target:.0%} within {t:.0f} s (ratio at least "
                f"{and_list(f'{floor_to(t / o, 1):.1f}x' for o in owns)})")
    return f"{label} did not reach {target:.0%} in its whole schedule ({t:.0f} s)"


def reached(label, r, target):
    """'PostLocalSGD 231 s', or why there is no time to target."""
    how, t = versus(r)
    if how == "time":
        return f"{label} {t:.0f} s"
    return (f"{label} did not reach {target:.0%} "
            + (f"within {t:.0f} s (capped)" if how == "capped" else "in its whole schedule"))


def threads(n, device=""):
    """'1 CPU thread', '4 threads'."""
    return f"{n} {device.upper() + ' ' if device else ''}thread" + ("s" if n != 1 else "")


def stopped(r):
    """'' for a run that ran its whole schedule, else where the cap stopped it."""
    if r.get("total_steps") and r["steps_done"] < r["total_steps"]:
        return f", stopped by the cap at step {r['steps_done']:,} of {r['total_steps']:,}"
    return ""


def tta_methods(recs):
    """The tta records of one file by method, their schedules filled in."""
    return {r["method"]: r for r in fill_schedule(recs or [])}


def readme_table(data):
    """README.md's performance table (its lines) from the loaded data; a row whose data is
    missing is left out. Every row ends its first cell with the machine and day of its data."""
    rows = []

    def row(what, recs, result):
        rows.append(f"| {what} {short_provenance(recs)} | {result} |")

    def run_setting(r):
        # Epochs of Fashion-MNIST's 60,000 training images at the tta runs' total batch of 128.
        return (f"{r['workers']} workers, {r['rate_mbit']:.0f} Mbit/s links, "
                f"{passes(r)}-epoch schedule")

    # Benchmark 4, one invocation per rate with every method: time to target, then the whole
    # schedule against no communication, then bytes.
    for name in ("tta", "tta_100"):
        by = tta_methods(data.get(name))
        q = by.get("qsr")
        if not q or not tta_time(q):
            continue
        own, target = tta_time(q), q["target"]
        ours = [(label, by[m]) for m, label in QSR_VARIANTS if m in by]
        peers = [(label, by[m]) for m, label in TTA_PEERS if m in by]
        result = ", ".join(reached(label, r, target) for label, r in ours)
        result += "; " + ", ".join(peer_phrase(label, r, [own], target) for label, r in peers)
        row(f"time to {target:.0%} on Fashion-MNIST, {run_setting(q)}, every method in one "
            "invocation", [r for _, r in ours + peers], result)
    parts, used = [], []
    for name in ("tta", "tta_100"):
        by = tta_methods(data.get(name))
        n = by.get("nocomm")
        if not n or not full_run_s(n):
            continue
        picks = [(label, by[m]) for m, label in QSR_VARIANTS if m in by and full_run_s(by[m])]
        if picks:
            parts.append(f"{n['rate_mbit']:.0f} Mbit/s: " + ", ".join(
                f"{label} {full_run_s(r) / full_run_s(n):.2f}x ({pct(r['final_acc'])})"
                for label, r in picks))
            used += [r for _, r in picks] + [n]
    if parts:
        row("whole schedule against no communication, same invocations", used, "; ".join(parts))
    # What a worker's interface sent at 100 Mbit/s.
    by = tta_methods(data.get("tta_100"))
    sent = [(label, by[m]) for label, m in (("QSR", "qsr"), ("with bf16 syncs", "qsr_bf16"),
                                            ("DDP", "ddp"))
            if m in by and by[m].get("tx_bytes_per_worker")]
    if sent:
        result, first = "", None
        for label, r in sent:
            where = (f"by step {r['steps_done']:,} of {r['total_steps']:,}" if stopped(r) else
                     "over its whole schedule")
            gb = f"{r['tx_bytes_per_worker'] / 1e9:.2f} GB"
            if label.startswith("with"):
                result += f", {gb} {label}" + (f" {where}" if where != first else "")
            else:
                result += ("; " if result else "") + f"{label} {gb} {where}"
                first = first or where
        row(f"bytes sent per worker, {sent[0][1]['rate_mbit']:.0f} Mbit/s run",
            [r for _, r in sent], result)
    # One averaging round against a raw Gloo all-reduce of the same bytes.
    sums = [r for r in data.get("averaging") or [] if r.get("kind") == "summary" and
            r["bytes"] >= 10e6 and r.get("qsr_over_gloo")]
    if sums:
        ratios = [r["qsr_over_gloo"] for r in sums]
        sizes = sorted({r["bytes"] for r in sums})
        workers = and_list(str(n) for n in sorted({r["workers"] for r in sums}))
        row(f"one averaging round vs a raw Gloo all-reduce, {sizes[0] / 1e6:.0f}-"
            f"{sizes[-1] / 1e6:.0f} MB", sums,
            f"{min(ratios):.2f}-{max(ratios):.2f}x ({workers} workers, loopback)")
    # The training step, C++ against Python.
    sums = step_summaries(data.get("step"))
    if sums:
        r0 = sums[0]
        many = {s["model"] for s in sums if sum(t["model"] == s["model"] for t in sums) > 1}

        def model(s):
            name = LABELS.get(s["model"], s["model"])
            return f"{name} at batch {s['batch']}" if s["model"] in many else name

        result = (", ".join(f"{model(s)} {s['ratio']:.2f}x" for s in sums) +
                  " (the worker's fused SGD update, gradients dropped between steps and heap "
                  "policy, `--heap keep`)")
        same = [s for s in sums if s.get("ratio_same_heap")]
        if same:
            result += ("; Python given the same heap and `set_to_none`: " +
                       ", ".join(f"{model(s)} {s['ratio_same_heap']:.2f}x" for s in same))
        row(f"training step, C++ vs Python PyTorch, same model, "
            f"{threads(r0['threads'], r0['device'])}", sums, result)
    # A TorchScript model against the built-in one.
    sums = [r for r in data.get("ts_step") or [] if r.get("kind") == "summary"]
    if sums:
        s = sums[0]
        row(f"training step, TorchScript `cnn` vs the built-in `cnn`, batch {s['batch']}, "
            f"{threads(s['threads'])}", sums,
            f"{s['ratio_vs_builtin']:.2f}x the built-in's throughput; {s['ratio_vs_python']:.2f}x "
            f"eager Python, {s['ratio_vs_python_keep']:.2f}x Python with the same heap")
    # The coordinator's round barrier.
    direct, agents = split_by_agent(data.get("coordinator"))
    if direct or agents:
        cores = (direct + agents)[0].get("provenance", {}).get("cores", "its")
        parts = []
        if agents:
            k = {r["workers"]: r for r in agents}
            main_k = 1024 if 1024 in k else max(k)
            a = k[main_k]
            part = (f"{a['ranks_per_agent']} workers per `qsr-agent`: "
                    f"**{a['all_released_p99_ms']:.1f} ms at {main_k:,} workers** "
                    f"(median {a['all_released_p50_ms']:.1f} ms)")
            if max(k) > main_k:
                part += f", {k[max(k)]['all_released_p99_ms']:.1f} ms at {max(k):,}"
            parts.append(part)
        if direct:
            k = {r["workers"]: r for r in direct}
            main_k = 1024 if 1024 in k else max(k)
            parts.append(f"one connection per worker: {k[main_k]['all_released_p99_ms']:.1f} ms "
                         f"at {main_k:,}")
        row(f"coordinator barrier release, all workers, p99, {cores} cores shared with the load "
            "generator", direct + agents, "; ".join(parts))
    if not rows:
        return []
    return ["| what | result |", "|---|---|"] + rows


LONG_METHODS = [("parallel", "parallel SGD (H = 1)"), ("constant_h", "constant H"),
                ("qsr2", "QSR (power 2)"), ("qsr3", "QSR (power 3)")]


def section_long_study(recs, fig_dir, md):
    md.append("### 5d. A long schedule: the mlp for many epochs, QSR against constant H\n")
    runs = [r for r in recs or [] if r.get("kind") == "run"]
    plan = next((r for r in recs or [] if r.get("kind") == "plan"), None)
    if not runs:
        md.append("Not run.\n")
        return
    r0 = runs[0]
    seeds = sorted({r["seed"] for r in runs})
    md.append(f"`bench/long_study.py`: the `mlp` on Fashion-MNIST, {r0['workers']} workers, "
              f"{r0['epochs']} epochs, cosine from max_lr {r0['max_lr']} to 0 (momentum 0.9), "
              f"seed(s) {', '.join(str(x) for x in seeds)}. Constant H is chosen so that its "
              "sync count equals QSR's (power 2)"
              + (f": H = {plan['constant_h']} against QSR's {plan['qsr2_syncs']} syncs over "
                 f"{plan['steps']} steps" if plan else "") + ". Accuracy is on the test set at "
              "each epoch's end; 'best' is the highest of those, 'final' the last.\n")
    md.append("| method | seeds | final test acc | final, range over seeds | best test acc | "
              "last train loss | syncs | wall s |")
    md.append("|---|---|---|---|---|---|---|---|")

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs) if xs else float("nan")

    for method, label in LONG_METHODS:
        rs = [r for r in runs if r["method"] == method]
        if not rs:
            continue
        finals = [r["test_acc"] for r in rs if r["test_acc"] is not None]
        spread = (f"{100 * min(finals):.2f}-{100 * max(finals):.2f}%" if finals else "n/a")
        md.append(f"| {label} | {len(rs)} | {100 * mean(r['test_acc'] for r in rs):.2f}% | "
                  f"{spread} | {100 * mean(r['best_test_acc'] for r in rs):.2f}% | "
                  f"{mean(r['train_loss'] for r in rs):.4f} | "
                  f"{mean(r['syncs'] for r in rs):.0f} | {mean(r['elapsed_s'] for r in rs):.0f} |")
    md.append("")
    # The comparison the study is for, seed by seed (same seed = same initial model and data).
    by = {(r["method"], r["seed"]): r["test_acc"] for r in runs if r["test_acc"] is not None}
    for a, b in (("qsr2", "constant_h"), ("qsr2", "parallel"), ("qsr3", "constant_h")):
        diffs = [100 * (by[(a, s)] - by[(b, s)]) for s in seeds if (a, s) in by and (b, s) in by]
        if diffs:
            md.append(f"- {dict(LONG_METHODS)[a]} minus {dict(LONG_METHODS)[b]}, final test "
                      f"accuracy per seed: " + ", ".join(f"{d:+.2f}" for d in diffs)
                      + f" points (mean {sum(diffs) / len(diffs):+.2f}).")
    md.append("")
    # Curves of the first seed: test accuracy and H against the step.
    seed = seeds[0]
    acc_plots, h_plots = [], []
    for method, label in LONG_METHODS:
        r = next((r for r in runs if r["method"] == method and r["seed"] == seed), None)
        if not r:
            continue
        write_dat(os.path.join(fig_dir, f"long_{method}_acc.dat"),
                  [[e[0], e[1]] for e in r["evals"] if e[1] is not None])
        write_dat(os.path.join(fig_dir, f"long_{method}_h.dat"), [[x[0], x[1]] for x in r["rounds"]])
        acc_plots.append(f"'long_{method}_acc.dat' using 1:2 with lines title '{label}'")
        h_plots.append(f"'long_{method}_h.dat' using 1:2 with steps title '{label}'")
    if gnuplot(f"""set terminal svg size 720,360
set output 'long_acc.svg'
set xlabel 'step'
set ylabel 'test accuracy'
set key bottom right
set title 'Test accuracy against step (seed {seed})'
plot {", ".join(acc_plots)}
set output 'long_h.svg'
set ylabel 'H (steps per round)'
set logscale y
set key top left
set title 'Sync period H against step (seed {seed})'
plot {", ".join(h_plots)}
""", fig_dir):
        md.append("![long study accuracy](bench/figures/long_acc.svg)\n")
        md.append("![long study H](bench/figures/long_h.svg)\n")


def update_readme(path, table, check_only=False):
    """Replaces what lies between README_BEGIN and README_END in path with table; with check_only,
    exits 1 when the file's table differs from it instead (the CI check that the README's numbers
    are the data's)."""
    lines = open(path).read().split("\n") if os.path.exists(path) else []
    marks = [l.strip() for l in lines]
    if README_BEGIN not in marks or README_END not in marks[marks.index(README_BEGIN):]:
        sys.exit(f"report: {path} lacks the lines '{README_BEGIN}' and '{README_END}' around its "
                 "performance table")
    begin = marks.index(README_BEGIN)
    end = marks.index(README_END, begin)
    if check_only:
        if lines[begin + 1:end] != [""] + table + [""]:
            sys.exit(f"report: the performance table of {path} is not what bench/data gives; "
                     "regenerate it with bench/report.py --data-dir bench/data")
        print(f"report: the performance table of {path} matches bench/data")
        return
    lines[begin + 1:end] = [""] + table + [""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print(f"report: wrote the performance table of {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", default="BENCHMARKS.md")
    p.add_argument("--check", action="store_true")
    p.add_argument("--check-readme", metavar="README",
                   help="only check that README's performance table is what the data gives")
    p.add_argument("--check-benchmarks", metavar="BENCHMARKS_MD",
                   help="only check that BENCHMARKS_MD is what the data and FINDINGS.md give")
    a = p.parse_args()
    data = {name: load(a.data_dir, name) for name in FILES}
    if a.check_readme:
        update_readme(a.check_readme, readme_table(data), check_only=True)
        return
    if a.check:
        bad = check(data)
        for b in bad:
            print("bench smoke: " + b, file=sys.stderr)
        if bad:
            sys.exit(1)
        print("bench smoke: all benchmarks produced sane output")
        return
    if a.check_benchmarks:
        check_benchmarks(a.check_benchmarks, data, a.data_dir)
        return
    fig_dir = os.path.join(os.path.dirname(os.path.abspath(a.out)), "bench", "figures")
    os.makedirs(fig_dir, exist_ok=True)
    text = render(data, a.data_dir, a.out, fig_dir)
    with open(a.out, "w") as f:
        f.write(text)
    print(f"report: wrote {a.out}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    update_readme(os.path.join(root, "README.md"), readme_table(data))


def check_benchmarks(path, data, data_dir):
    """Exits 1 naming the first line where `path` differs from what the data and FINDINGS.md
    render to (its figures drawn in a scratch folder, so a check writes nothing)."""
    with tempfile.TemporaryDirectory() as scratch:
        want = render(data, data_dir, path, scratch).splitlines()
    have = open(path).read().splitlines() if os.path.exists(path) else []
    if want == have:
        print(f"report: {path} matches bench/data and bench/FINDINGS.md")
        return
    n = next((i for i, (w, h) in enumerate(zip(want, have)) if w != h), min(len(want), len(have)))
    print(f"report: {path} is not what bench/data and bench/FINDINGS.md give, from line {n + 1}:\n"
          f"  file: {have[n] if n < len(have) else '(ends)'}\n"
          f"  data: {want[n] if n < len(want) else '(ends)'}\n"
          f"regenerate it: python3 bench/report.py --data-dir bench/data --out {path}",
          file=sys.stderr)
    sys.exit(1)


def render(data, data_dir, out, fig_dir):
    """BENCHMARKS.md's text for `out`, its figures written into fig_dir."""
    env = json.load(open(os.path.join(data_dir, "env.json")))
    md = ["# qsr benchmarks\n",
          "Generated by `bench/report.py` from the JSON lines in "
          f"`{os.path.relpath(data_dir, os.path.dirname(os.path.abspath(out)))}/` "
          "(do not edit by hand). Every ratio compares numbers measured in the same invocation.\n",
          "| | |", "|---|---|"]
    # Machine and commit differ between sections: each section says its own (from the records'
    # provenance); the table holds what the newest invocation ran with.
    for k, v in env.items():
        if "load average" not in k and k not in ("command", "date (UTC)", "git commit", "cpu",
                                                 "cores", "mode"):
            md.append(f"| {k} | {v} |")
    md.append("")
    inv = os.path.join(data_dir, "invocations.jsonl")
    if os.path.exists(inv):
        md.append("Invocations that produced the data (the machine is shared: its load average, "
                  "from other people's builds, is what the benchmarks competed with):\n")
        md.append("| date (UTC) | command | benchmarks | load at start | load at end |")
        md.append("|---|---|---|---|---|")
        for line in open(inv):
            r = json.loads(line)
            md.append(f"| {r['date (UTC)']} | `{r['command']}` | {r['benchmarks']} | "
                      f"{r['load average at start']} | {r['load average at end']} |")
        md.append("")
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "FINDINGS.md")
    if os.path.exists(notes):
        md.append(open(notes).read())
    def with_provenance(recs, write):
        """Runs write() and puts the section's provenance under the title it wrote."""
        at = len(md)
        write()
        if len(md) > at:
            md.insert(at + 1, describe(recs) + "\n")

    with_provenance(data["step"], lambda: section_step(data["step"], fig_dir, md))
    with_provenance(data["ts_step"], lambda: section_ts_step(data["ts_step"], md))
    if data["augment"]:
        with_provenance(data["augment"], lambda: section_augment(data["augment"], md))
    with_provenance(data["averaging"], lambda: section_averaging(data["averaging"], fig_dir, md))
    with_provenance(data["compare_builds"],
                    lambda: section_compare_builds(data["compare_builds"], md))
    with_provenance(data["coordinator"],
                    lambda: section_coordinator(data["coordinator"], fig_dir, md))
    with_provenance(data["release_floor"],
                    lambda: section_release_floor(data["release_floor"], data["coordinator"], md))
    with_provenance(data["tta"], lambda: section_tta(data["tta"], fig_dir, md))
    for name, title in [
            ("tta_100", "### 4b. 100 Mbit/s links, every method, to 90%, one invocation"),
            ("tta_long", "### 4c. Earlier invocation: 50 Mbit/s to a 90% target, 3-epoch "
                         "schedule"),
            ("tta_sweep", "### 4d. Earlier invocation: settings for slow links, H_base and bf16 "
                          "syncs against no communication"),
            ("tta_overlap", "### 4e. Earlier invocation: overlapped syncs (sync_overlap: 0.5) at "
                            "100 Mbit/s, the paper's H_base"),
            ("tta_slow100", "### 4f. Earlier invocation: slow-link settings at 100 Mbit/s, with "
                            "DDP and no communication")]:
        if data[name]:
            with_provenance(data[name], lambda: section_tta(data[name], fig_dir, md, title, name))
    accuracy = (data["accuracy"] or []) + (data["accuracy_bf16"] or []) + (
        data["accuracy_overlap"] or [])
    with_provenance(accuracy, lambda: section_accuracy(
        data["accuracy"], data["accuracy_bf16"], data["accuracy_overlap"], fig_dir, md))
    if data["accuracy_long"]:
        with_provenance(data["accuracy_long"],
                        lambda: section_accuracy_long(data["accuracy_long"], md))
    if data["long_study"]:
        with_provenance(data["long_study"],
                        lambda: section_long_study(data["long_study"], fig_dir, md))
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
