#!/usr/bin/env bash
# Runs every qsr benchmark and writes BENCHMARKS.md (tables + SVG figures in bench/figures/) from
# the JSON lines they leave in bench/data/ (full run) or OUT_DIR.
#
#   bench/run_all.sh            the full set (long: about 2 hours on a busy 2-core machine)
#   bench/run_all.sh --quick    smaller sizes, fewer repeats (minutes)
#   bench/run_all.sh --smoke    tiny sizes, then only checks that every benchmark produced sane
#                               output (parsable JSON, positive throughput): the CI smoke
#                               (ctest -R bench_smoke); writes no BENCHMARKS.md
# Options: --bin-dir DIR (default build/bin), --out-dir DIR (default bench/data, or a temporary
# folder for --smoke), --only step,ts_step,averaging,coordinator,tta,tta_long,tta_sweep,tta_100,tta_overlap,tta_slow100,accuracy,accuracy_bf16,accuracy_long,accuracy_overlap (re-run some; the report
# uses whatever data is there), --no-report.
#
# Benchmark 4 (tta) needs root for network namespaces and tc; without root (and always in --smoke)
# it runs on loopback without a rate limit (--no-netns).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=full
TTA_LONG=()
TTA_SWEEP=()
TTA_100=()
TTA_OVERLAP=()
TTA_SLOW100=()
ACC_BF16=()
ACC_LONG=()
ACC_OVERLAP=()
BIN=$ROOT/build/bin
OUT=""
ONLY=step,ts_step,averaging,coordinator,tta,tta_long,tta_sweep,tta_100,tta_overlap,tta_slow100,accuracy,accuracy_bf16,accuracy_long,accuracy_overlap
REPORT=1
PY=/usr/bin/python3
ARGS="$*"
while [ $# -gt 0 ]; do
  case $1 in
    --quick) MODE=quick; shift ;;
    --smoke) MODE=smoke; shift ;;
    --bin-dir) BIN=$2; shift 2 ;;
    --out-dir) OUT=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --no-report) REPORT=0; shift ;;
    *) echo "run_all.sh: unknown argument $1 (--quick, --smoke, --bin-dir, --out-dir, --only, --no-report)" >&2; exit 2 ;;
  esac
done
for b in qsr-bench-step qsr-bench-avg qsr-bench-coord qsr-bench-release-floor qsr-coordinator qsr-worker qsr-run; do
  [ -x "$BIN/$b" ] || { echo "run_all.sh: $BIN/$b is missing; build first (scripts/build.sh)" >&2; exit 2; }
done
# The smoke (ctest) skips, exit 77, on a machine without Debian's PyTorch or the data set (e.g.
# the GPU check's machine); CI has both (scripts/install-deps.sh).
[ $MODE = smoke ] && SKIP=77 || SKIP=2
$PY -c 'import torch' 2>/dev/null || { echo "run_all.sh: $PY cannot import torch (apt-get install python3-torch)" >&2; exit $SKIP; }
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || {
  echo "run_all.sh: no Fashion-MNIST in /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist)" >&2; exit $SKIP; }
TMP_OUT=0
if [ -z "$OUT" ]; then
  if [ $MODE = smoke ]; then OUT=$(mktemp -d /tmp/qsr-bench-smoke.XXXXXX); TMP_OUT=1; else OUT=$ROOT/bench/data; fi
fi
mkdir -p "$OUT"
# The smoke checks what this run wrote, never data left by an earlier one.
if [ $MODE = smoke ]; then rm -f "$OUT"/*.jsonl "$OUT"/*.tmp; fi
wants() { [[ ",$ONLY," == *",$1,"* ]]; }

NETNS=()
if [ $MODE = smoke ] || [ "$(id -u)" != 0 ] || ! command -v tc >/dev/null; then NETNS=(--no-netns); fi

case $MODE in
  full)
    STEP=(--repeats 5)
    TS_STEP=(--repeats 5)
    AVG=(--workers 2,4 --sizes-mb 1,10,100 --iters 30)
    COORD=(--workers 16,128,512,1024,2048 --barriers 20 --ranks-per-agent 1,8 --agent-barriers 200)
    FLOOR=(128,1024,2048 20)
    # Benchmark 4, one invocation per rate with every method: the PyTorch peers, qsr's parallel
    # SGD and constant H, QSR in the paper's setting (alpha 0.2, H_base 2) with fp32, bf16 and
    # bf16 + overlapped syncs, the settings tuned for slow links, and no communication.
    TTA_METHODS=ddp,postlocal,periodic,parallel,constant_h,qsr,qsr_bf16,qsr_bf16_overlap,qsr_h32_bf16,qsr_h8_bf16_overlap,nocomm
    # 50 Mbit/s: a short schedule (4 epochs of 117 steps, one pass over the data) to 85%
    # (about 35 minutes).
    TTA=(--rates 50 --epochs 4 --steps-per-epoch 117 --target 0.85 --cap-s 300 --methods $TTA_METHODS)
    # A 90% target: a 3-epoch schedule, QSR against DDP and no communication.
    TTA_LONG=(--rates 50 --epochs 3 --target 0.90 --cap-s 900 --methods qsr,qsr_bf16,qsr_h16_bf16,constant_h16,nocomm,ddp)
    # Settings for slow links against no communication: H_base and bf16 syncs (about 11 minutes).
    TTA_SWEEP=(--rates 50 --epochs 3 --target 0.90 --cap-s 600 --methods nocomm,qsr_h16_bf16,qsr_h32_bf16,constant_h32_bf16)
    # 100 Mbit/s: 3 full epochs to 90%; the cap stops DDP and parallel SGD after they reach it
    # (about 85 minutes). Snapshots every 1/32 epoch: at 1/16 (29.25 steps) they fall every 30
    # steps, and every 32 with a sync every 8, just over 1/16 epoch; half the interval keeps the
    # data-parallel and H <= 16 brackets within it.
    TTA_100=(--rates 100 --epochs 3 --target 0.90 --cap-s 650 --snapshot-every 0.03125
             --methods $TTA_METHODS)
    # Overlapped syncs at 100 Mbit/s, the paper's H_base: QSR with and without sync_overlap
    # against DDP and no communication (about 22 minutes; DDP reaches 90% at its second
    # evaluation, about 460 s, so the cap stops it after that instead of at its full schedule).
    TTA_OVERLAP=(--rates 100 --epochs 3 --target 0.90 --cap-s 560 --methods qsr,qsr_overlap,qsr_bf16,qsr_bf16_overlap,nocomm,ddp)
    # The slow-link settings of tta_sweep at 100 Mbit/s, with DDP and no communication in the
    # same invocation, so that both of benchmark 4's aims are read off one run (about 18 minutes).
    TTA_SLOW100=(--rates 100 --epochs 3 --target 0.90 --cap-s 560 --methods qsr_h16_bf16,qsr_h32_bf16,qsr_h8_bf16_overlap,nocomm,ddp)
    ACC=(--epochs 1 --warmup-epochs 0.1 --seeds 1,2,3)
    # QSR with and without bf16 syncs on the same seeds: a paired comparison (about 27 minutes).
    ACC_BF16=(--epochs 1 --warmup-epochs 0.1 --seeds 1,2,3 --methods qsr,qsr_bf16)
    # Overlapped syncs against the same method without, paired by seed (about 11 minutes).
    ACC_OVERLAP=(--epochs 1 --warmup-epochs 0.1 --seeds 1,2,3 --methods qsr,qsr_overlap,qsr_bf16,qsr_bf16_overlap)
    # A longer schedule, where QSR's H grows: QSR against constant H = 8 (about 30 minutes).
    ACC_LONG=(--epochs 5 --warmup-epochs 0.5 --seeds 1,2,3 --methods qsr,constant_h)
    ;;
  quick)
    STEP=(--repeats 3 --scale 0.5)
    TS_STEP=(--repeats 3 --steps 20)
    AVG=(--workers 2,4 --sizes-mb 1,10 --iters 5)
    COORD=(--workers 16,256,1024 --barriers 20 --ranks-per-agent 1,8 --agent-barriers 100)
    FLOOR=(1024 20)
    TTA=(--rates 50 --epochs 1 --target 0.85 --cap-s 180 --methods qsr,nocomm,ddp)
    ACC=(--epochs 1 --seeds 1,2 --steps-per-epoch 100)
    ;;
  smoke)
    STEP=(--repeats 1 --scale 0.05 --models cnn)
    TS_STEP=(--repeats 1 --steps 2 --warmup 1 --batch 16)
    AVG=(--workers 2 --sizes-mb 0.1 --iters 2)
    COORD=(--workers 8,64 --barriers 5 --timeout-s 60 --ranks-per-agent 1,4)
    FLOOR=(8 3)
    TTA=(--workers 2 --epochs 1 --steps-per-epoch 8 --cap-s 60 --target 0.5 --methods qsr,ddp)
    ACC=(--epochs 1 --seeds 1 --methods qsr --steps-per-epoch 8)
    ;;
esac

# Machine, versions, command, date: recorded next to the data.
pkgver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }
$PY - "$OUT/env.json" "bench/run_all.sh $ARGS" "$MODE" <<EOF
import json, os, platform, subprocess, sys, datetime
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception: return "?"
env = {
  "date (UTC)": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"),
  "command": sys.argv[2], "mode": sys.argv[3],
  "git commit": sh("$PY $ROOT/bench/provenance.py commit $ROOT"),
  "cpu": sh("lscpu | sed -n 's/^Model name: *//p'"), "cores": os.cpu_count(),
  "memory": sh("free -g | awk '/Mem:/{print \$2\" GiB\"}'"),
  "os": sh(". /etc/os-release; echo \$PRETTY_NAME") + ", kernel " + platform.release(),
  "compiler": sh("c++ --version | head -1"),
  "LibTorch (Debian)": "$(pkgver libtorch-dev)", "python3-torch": "$(pkgver python3-torch)",
  "Python": platform.python_version(), "Gloo": "$(pkgver libgloo-dev)",
  "gRPC": "$(pkgver libgrpc++-dev)", "load average at start": sh("cut -d' ' -f1-3 /proc/loadavg"),
}
json.dump(env, open(sys.argv[1], "w"), indent=1)
EOF

run() {  # run NAME CMD...: the benchmark's JSON lines into OUT/NAME.jsonl
  local name=$1
  shift
  echo "run_all.sh: [$name] $*" >&2
  local start=$SECONDS
  "$@" > "$OUT/$name.jsonl.tmp"
  # Every line says which invocation, commit and machine produced it (bench/provenance.py).
  $PY "$ROOT/bench/provenance.py" stamp "$OUT/env.json" "$OUT/$name.jsonl.tmp"
  mv "$OUT/$name.jsonl.tmp" "$OUT/$name.jsonl"
  echo "run_all.sh: [$name] done in $((SECONDS - start)) s" >&2
}
wants step && run step $PY "$ROOT/bench/step_throughput.py" --bin-dir "$BIN" "${STEP[@]}"
# A model brought as TorchScript against the same model built in, and against Python.
wants ts_step && run ts_step $PY "$ROOT/bench/torchscript_step.py" --bin-dir "$BIN" "${TS_STEP[@]}"
wants averaging && run averaging $PY "$ROOT/bench/averaging.py" --bin-dir "$BIN" "${AVG[@]}"
# Benchmark 3's floor: the same release over plain TCP and over gRPC streams, no coordinator.
release_floor() {  # release_floor K1,K2,... BARRIERS: one JSON line per K and transport
  local k t
  for k in ${1//,/ }; do
    for t in tcp grpc; do
      "$BIN/qsr-bench-release-floor" --transport $t --workers "$k" --barriers "$2" || return 1
    done
  done
}
wants coordinator && run release_floor release_floor "${FLOOR[@]}"
wants coordinator && run coordinator $PY "$ROOT/bench/coordinator_scale.py" --bin-dir "$BIN" "${COORD[@]}"
wants tta && run tta bash "$ROOT/bench/tta_netns.sh" --bin-dir "$BIN" "${NETNS[@]}" "${TTA[@]}"
# Full mode only (about 25 minutes).
if wants tta_long && [ ${#TTA_LONG[@]} -gt 0 ]; then
  run tta_long bash "$ROOT/bench/tta_netns.sh" --bin-dir "$BIN" "${NETNS[@]}" "${TTA_LONG[@]}"
fi
if wants tta_sweep && [ ${#TTA_SWEEP[@]} -gt 0 ]; then
  run tta_sweep bash "$ROOT/bench/tta_netns.sh" --bin-dir "$BIN" "${NETNS[@]}" "${TTA_SWEEP[@]}"
fi
if wants tta_100 && [ ${#TTA_100[@]} -gt 0 ]; then
  run tta_100 bash "$ROOT/bench/tta_netns.sh" --bin-dir "$BIN" "${NETNS[@]}" "${TTA_100[@]}"
fi
if wants tta_overlap && [ ${#TTA_OVERLAP[@]} -gt 0 ]; then
  run tta_overlap bash "$ROOT/bench/tta_netns.sh" --bin-dir "$BIN" "${NETNS[@]}" "${TTA_OVERLAP[@]}"
fi
if wants tta_slow100 && [ ${#TTA_SLOW100[@]} -gt 0 ]; then
  run tta_slow100 bash "$ROOT/bench/tta_netns.sh" --bin-dir "$BIN" "${NETNS[@]}" "${TTA_SLOW100[@]}"
fi
wants accuracy && run accuracy $PY "$ROOT/bench/accuracy_study.py" --bin-dir "$BIN" "${ACC[@]}"
if wants accuracy_long && [ ${#ACC_LONG[@]} -gt 0 ]; then
  run accuracy_long $PY "$ROOT/bench/accuracy_study.py" --bin-dir "$BIN" "${ACC_LONG[@]}"
fi
if wants accuracy_bf16 && [ ${#ACC_BF16[@]} -gt 0 ]; then
  run accuracy_bf16 $PY "$ROOT/bench/accuracy_study.py" --bin-dir "$BIN" "${ACC_BF16[@]}"
fi
if wants accuracy_overlap && [ ${#ACC_OVERLAP[@]} -gt 0 ]; then
  run accuracy_overlap $PY "$ROOT/bench/accuracy_study.py" --bin-dir "$BIN" "${ACC_OVERLAP[@]}"
fi

# Every invocation (several with --only) is listed in the report with its own date and load.
$PY - "$OUT/env.json" "$OUT/invocations.jsonl" "$ONLY" <<'EOF'
import json, sys
env = json.load(open(sys.argv[1]))
rec = {"date (UTC)": env["date (UTC)"], "command": env["command"], "benchmarks": sys.argv[3],
       "load average at start": env["load average at start"],
       "load average at end": " ".join(open("/proc/loadavg").read().split()[:3])}
with open(sys.argv[2], "a") as f:
    f.write(json.dumps(rec) + "\n")
EOF
if [ $MODE = smoke ]; then
  $PY "$ROOT/bench/report.py" --data-dir "$OUT" --check
  if [ $TMP_OUT = 1 ]; then rm -rf "$OUT"; fi
elif [ $REPORT = 1 ]; then
  $PY "$ROOT/bench/report.py" --data-dir "$OUT" --out "$ROOT/BENCHMARKS.md"
fi
