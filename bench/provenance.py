#!/usr/bin/env python3
"""Where a benchmark record comes from: every JSON line in bench/data carries
  "provenance": {"date": "YYYY-MM-DD HH:MM" (UTC, the invocation's start), "commit": short id
                 (" (dirty)" when tracked files other than the benchmarks' own outputs had
                 changes), "cpu": lscpu's model name, "cores": N}
so that a table built from several invocations can say which machine and which code produced
each number.

  provenance.py stamp ENV_JSON FILE   adds the provenance of the invocation described by
                                      ENV_JSON (bench/run_all.sh writes it) to every line of
                                      FILE that has none; run_all.sh calls it after each benchmark
  provenance.py describe FILE         prints the one-line description report.py puts under a
                                      section's title
  provenance.py here ROOT             prints the provenance of a run starting now from the
                                      checkout ROOT (for scripts run without run_all.sh)
  provenance.py commit ROOT           prints ROOT's commit as the records name it
"""
import datetime
import json
import os
import subprocess
import sys

KEYS = ("date", "commit", "cpu", "cores")


def from_env(env):
    return {"date": env["date (UTC)"], "commit": env["git commit"], "cpu": env["cpu"],
            "cores": env["cores"]}


def as_env(prov):
    """from_env's inverse: the env.json keys that `stamp` reads, for a provenance from here()."""
    return {"date (UTC)": prov["date"], "git commit": prov["commit"], "cpu": prov["cpu"],
            "cores": prov["cores"]}


# What an invocation writes as it goes (env.json, invocations.jsonl, the records, the figures):
# a change there says nothing about the code that ran, and run_all.sh has already written
# env.json when a benchmark script asks for its provenance.
OUTPUTS = ("bench/data", "bench/figures")


def _git(root, *args):
    try:
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def commit(root):
    """'70b839d', or '70b839d (dirty)' when a tracked file outside OUTPUTS differs from HEAD;
    'unknown' outside a git checkout."""
    head = _git(root, "rev-parse", "--short", "HEAD")
    if not head:
        return "unknown"
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".",
                 *(f":(exclude){p}" for p in OUTPUTS))
    return head + (" (dirty)" if dirty else "")


def here(root):
    """The provenance of an invocation starting now in the checkout `root`."""
    cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True,
                         text=True).stdout.strip()
    return {"date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"),
            "commit": commit(root), "cpu": cpu, "cores": os.cpu_count()}


def stamp(env_path, path):
    prov = from_env(json.load(open(env_path)))
    lines = []
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        rec = json.loads(line)
        rec.setdefault("provenance", prov)
        lines.append(json.dumps(rec))
    with open(path, "w") as f:
        f.write("".join(l + "\n" for l in lines))


def missing(rec):
    """The provenance keys a record lacks (all of them when it has none)."""
    p = rec.get("provenance")
    if not isinstance(p, dict):
        return list(KEYS)
    return [k for k in KEYS if p.get(k) in (None, "")]


def describe(recs):
    """'Measured 2026-11-26 23:40 at commit adc359f on Intel(R) Xeon(R) Processor, 2 cores.'
    for the records' invocations (several when the section's data comes from more than one)."""
    seen = []
    for r in recs or []:
        p = r.get("provenance")
        if isinstance(p, dict):
            key = tuple(p.get(k) for k in KEYS)
            if key not in seen:
                seen.append(key)
    if not seen:
        return "Provenance: not recorded."
    parts = [f"{d} (UTC) at commit `{c}` on {cpu}, {n} cores" for d, c, cpu, n in seen]
    return "Measured " + "; ".join(parts) + "."


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "stamp":
        stamp(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "describe":
        print(describe([json.loads(l) for l in open(sys.argv[2]) if l.strip()]))
    elif len(sys.argv) == 3 and sys.argv[1] == "here":
        print(json.dumps(here(sys.argv[2])))
    elif len(sys.argv) == 3 and sys.argv[1] == "commit":
        print(commit(sys.argv[2]))
    else:
        sys.exit("usage: provenance.py stamp ENV_JSON FILE | provenance.py describe FILE | "
                 "provenance.py here ROOT | provenance.py commit ROOT")


if __name__ == "__main__":
    main()
