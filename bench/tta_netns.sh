#!/usr/bin/env bash
# Benchmark 4: time to accuracy on a constrained network.
#
# Puts WORKERS workers in network namespaces of their own, each joined to one bridge by a veth
# pair rate-limited by tc (tbf, both directions, RATE Mbit/s per worker link), on the private
# subnet 10.213.77.0/24 (bridge 10.213.77.254 in the root namespace, where the coordinator
# listens; worker i is 10.213.77.(i+1)), and trains the `cnn` on Fashion-MNIST with:
#   qsr         qsr, Local SGD with QSR (recipes/fashion-mnist/cnn-localsgd-qsr.yaml)
#   parallel    qsr, parallel SGD (H = 1: a gradient all-reduce every step)
#   constant_h  qsr, Local SGD with constant H = 8
#   nocomm      qsr, Local SGD with H = the whole run (it averages only at the evaluations, once
#               per epoch): the wall-clock of the training with (almost) no communication
#   ddp         PyTorch DistributedDataParallel (gloo), bench/torch_fmnist_train.py
#   postlocal   PyTorch PostLocalSGDOptimizer (H = 8 after the warmup), same script
#   periodic    PyTorch PeriodicModelAverager alone (Local SGD, H = 8 from the first step), same
#               script
# and variants for slow links (same recipe otherwise):
#   qsr_bf16      QSR, syncs send bfloat16 changes (sync_precision: bf16, half the bytes)
#   qsr_hN        QSR with H_base = init_h = N (fewer syncs early, where the rule gives H < N)
#   constant_hN   constant H = N, the baseline for qsr_hN
#   ..._bf16      either of the two, syncing in bf16 (e.g. qsr_h16_bf16)
#   ..._overlap   any qsr or constant-H method with sync_overlap: 0.5 (each sync travels through
#                 the first half of the next round; e.g. qsr_overlap, qsr_bf16_overlap)
# Every run has the same recipe (total batch 128, lr 0.1 cosine, 0.5 warmup epochs, EPOCHS
# epochs, one evaluation per epoch) and is stopped after CAP_S seconds. Rank 0 of every method
# snapshots the averaged (or data-parallel) model every SNAP epochs or at every sync, whichever is
# rarer, on a clock that leaves out the snapshot writes and the in-run evaluations; after the run
# bench/eval_snapshots.py evaluates each snapshot on the test set (outside any timing) and the
# time to target is interpolated between the two snapshots around it (bench/tta_curve.py).
# One JSON line per run:
#   {"bench":"tta","method","rate_mbit","workers","epochs","target","time_to_target_s" (the
#    first per-epoch evaluation at the target, null if none), "final_acc","evals":[[elapsed_s,
#    acc], ...],"bytes_per_worker" (the worker's own count, qsr only), "tx_bytes_per_worker" (the
#    namespace's interface counter, all methods), "steps_done","total_steps","elapsed_s","capped",
#    "snapshot_every" (epochs), "curve":[[clock_s, acc], ...] (one point per snapshot), "tta_s"
#    (interpolated on that clock, null if not reached), "tta_bracket_s":[lo, hi] (the clocks of
#    the snapshots around it), "not_reached_by_s" (the last snapshot's clock when not reached),
#    "provenance":{"date","commit","cpu","cores"}}
#
# Usage: tta_netns.sh --bin-dir DIR [--rates 50] [--methods ...] [--epochs 2] [--target 0.90]
#        [--cap-s 600] [--workers 4] [--steps-per-epoch N] [--snapshot-every 0.0625]
#        [--no-netns] > out.jsonl
# --no-netns runs the same on loopback without namespaces or tc (the CI smoke; needs no root).
# Needs root, iproute2 and tc otherwise. The namespaces, veths and bridge are removed on exit
# (trap), also when interrupted; every wait is bounded.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=""
RATES="50"
METHODS="qsr,parallel,constant_h,nocomm,ddp,postlocal,periodic"
EPOCHS=2
TARGET=0.90
CAP_S=600
WORKERS=4
SPE=-1
NETNS=1
DATA=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
SNAP=0.0625
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) BIN=$2; shift 2 ;;
    --rates) RATES=$2; shift 2 ;;
    --methods) METHODS=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --target) TARGET=$2; shift 2 ;;
    --cap-s) CAP_S=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --steps-per-epoch) SPE=$2; shift 2 ;;
    --data-dir) DATA=$2; shift 2 ;;
    --snapshot-every) SNAP=$2; shift 2 ;;
    --no-netns) NETNS=0; shift ;;
    *) echo "tta_netns.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ -x "$BIN/qsr-coordinator" ] && [ -x "$BIN/qsr-worker" ] || {
  echo "tta_netns.sh: --bin-dir must hold qsr-coordinator and qsr-worker" >&2; exit 2; }
[ "$WORKERS" -ge 1 ] && [ "$WORKERS" -le 16 ] || { echo "tta_netns.sh: --workers in [1, 16]" >&2; exit 2; }
KNOWN_METHODS="qsr parallel constant_h nocomm qsr_bf16 ddp postlocal periodic"
VARIANT='^(qsr|constant)_h([1-9][0-9]{0,3})(_bf16)?$'
IFS=, read -r -a RATE_LIST <<< "$RATES"
IFS=, read -r -a METHOD_LIST <<< "$METHODS"
OVERLAPPABLE='^(qsr|qsr_bf16|constant_h|(qsr|constant)_h[1-9][0-9]{0,3}(_bf16)?)$'
for method in "${METHOD_LIST[@]}"; do
  base=${method%_overlap}
  if [ "$base" != "$method" ]; then
    [[ $base =~ $OVERLAPPABLE ]] || {
      echo "tta_netns.sh: \"$method\": _overlap goes with qsr, qsr_bf16, constant_h, qsr_hN or" \
           "constant_hN (local methods)" >&2; exit 2; }
  fi
  case " $KNOWN_METHODS " in
    *" $base "*) ;;
    *) [[ $base =~ $VARIANT ]] || {
         echo "tta_netns.sh: unknown method \"$method\" (known: $KNOWN_METHODS, and" \
              "qsr_hN, constant_hN with N in [1, 9999], either with _bf16; local ones with" \
              "_overlap)" >&2; exit 2; } ;;
  esac
done

"$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' "$SNAP" 2>/dev/null || {
  echo "tta_netns.sh: --snapshot-every $SNAP: epochs between snapshots, above 0 (e.g. 0.0625)" >&2
  exit 2; }
# Every line says which commit and machine produced it.
TTA_PROVENANCE=$("$PY" "$ROOT/bench/provenance.py" here "$ROOT")
export TTA_PROVENANCE TTA_BENCH=$ROOT/bench TTA_SNAP=$SNAP

TAG=$$
BR=qsrbbr$((TAG % 100000))
SUBNET=10.213.77
HOSTIP=$SUBNET.254
NS=()
for i in $(seq 0 $((WORKERS - 1))); do NS+=("qsrb$TAG-$i"); done
WORK=$(mktemp -d /tmp/qsr-tta.XXXXXX)
PIDS=()

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "$NETNS" = 1 ]; then
    local ns
    for ns in "${NS[@]}"; do
      # Whatever still runs in the namespace goes first, then the namespace (and its veth end).
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    done
    ip link del "$BR" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# in_ns I CMD...: runs CMD in worker I's namespace (or directly without namespaces).
in_ns() {
  local i=$1
  shift
  if [ "$NETNS" = 1 ]; then ip netns exec "${NS[$i]}" "$@"; else "$@"; fi
}
worker_ip() { if [ "$NETNS" = 1 ]; then echo "$SUBNET.$(($1 + 1))"; else echo 127.0.0.1; fi; }
coord_ip() { if [ "$NETNS" = 1 ]; then echo "$HOSTIP"; else echo 127.0.0.1; fi; }
tx_bytes() {  # tx_bytes I: bytes sent by worker I's interface (0 without namespaces)
  if [ "$NETNS" = 1 ]; then in_ns "$1" cat /sys/class/net/eth0/statistics/tx_bytes; else echo 0; fi
}

setup_net() {
  ip link add "$BR" type bridge
  ip addr add "$HOSTIP/24" dev "$BR"
  ip link set "$BR" up
  local i
  for i in $(seq 0 $((WORKERS - 1))); do
    local ns=${NS[$i]} host=qb${TAG: -6}h$i
    ip netns add "$ns"
    ip link add "$host" type veth peer name eth0 netns "$ns"
    ip link set "$host" master "$BR" up
    ip -n "$ns" addr add "$SUBNET.$((i + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
}

# shape RATE: tbf on both ends of every worker's veth (egress of the worker, and of the bridge
# towards the worker), so each worker has a RATE Mbit/s link each way.
shape() {
  local rate=$1 i
  for i in $(seq 0 $((WORKERS - 1))); do
    local host=qb${TAG: -6}h$i
    tc -n "${NS[$i]}" qdisc replace dev eth0 root tbf rate "${rate}mbit" burst 256kb latency 100ms
    tc qdisc replace dev "$host" root tbf rate "${rate}mbit" burst 256kb latency 100ms
  done
}

# wait_pids DEADLINE_EPOCH PID...: waits for the PIDs until the deadline; returns 1 if it passed
# (the PIDs are then killed).
wait_pids() {
  local deadline=$1 p alive
  shift
  while :; do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      for p in "$@"; do kill -9 "$p" 2>/dev/null || true; done
      return 1
    fi
    sleep 0.5
  done
}

# eval_curve DIR: the accuracy of every snapshot in DIR/snaps, into DIR/snaps/curve.jsonl (after
# the run, so it costs the run nothing; a run without snapshots leaves no curve).
eval_curve() {
  [ -s "$1/snaps/snapshots.jsonl" ] || return 0
  "$PY" "$ROOT/bench/eval_snapshots.py" "$1/snaps" --data-dir "$DATA" \
    --threads "$(nproc)" > "$1/eval_snapshots.log" 2>&1 || {
    echo "tta_netns.sh: evaluating the snapshots of $1 failed:" >&2; cat "$1/eval_snapshots.log" >&2; }
}

RECIPES=$ROOT/recipes/fashion-mnist
# The schedule's length (a killed run leaves no summary.json to read it from): Fashion-MNIST's
# 60,000 training images in batches of 128 per epoch, unless --steps-per-epoch says otherwise.
if [ "$SPE" -gt 0 ]; then export TTA_TOTAL_STEPS=$((EPOCHS * SPE)); else export TTA_TOTAL_STEPS=$((EPOCHS * 468)); fi
run_qsr() {  # run_qsr METHOD RATE
  local method=$1 rate=$2 recipe extra=()
  local base=${method%_overlap}
  case $base in
    qsr) recipe=$RECIPES/cnn-localsgd-qsr.yaml ;;
    parallel) recipe=$RECIPES/cnn-parallel-sgd.yaml ;;
    constant_h) recipe=$RECIPES/cnn-localsgd-constant-h.yaml ;;
    nocomm) recipe=$RECIPES/cnn-localsgd-constant-h.yaml; extra=(--init_h=1000000 --min_h=1000000) ;;
    qsr_bf16) recipe=$RECIPES/cnn-localsgd-qsr.yaml; extra=(--sync_precision=bf16) ;;
    *)  # qsr_hN[_bf16], constant_hN[_bf16] (checked up front)
      [[ $base =~ $VARIANT ]]
      recipe=$RECIPES/cnn-localsgd-qsr.yaml
      [ "${BASH_REMATCH[1]}" = constant ] && recipe=$RECIPES/cnn-localsgd-constant-h.yaml
      extra=("--init_h=${BASH_REMATCH[2]}" "--min_h=${BASH_REMATCH[2]}")
      [ -n "${BASH_REMATCH[3]}" ] && extra+=(--sync_precision=bf16) ;;
  esac
  [ "$base" != "$method" ] && extra+=(--sync_overlap=0.5)
  [ "$SPE" -gt 0 ] && extra+=("--steps_per_epoch=$SPE")
  local dir=$WORK/$method-$rate
  mkdir -p "$dir"
  "$BIN/qsr-coordinator" --recipe "$recipe" --listen "$(coord_ip):0" --run-dir "$dir/run" \
    --run-id "tta-$method-$rate" --port-file "$dir/port" --rendezvous-timeout 120s \
    --round-timeout 3600s \
    "--workers=$WORKERS" "--epochs=$EPOCHS" "${extra[@]}" > "$dir/coordinator.log" 2>&1 &
  local coord=$!
  PIDS+=("$coord")
  local deadline=$(($(date +%s) + 30))
  until [ -s "$dir/port" ]; do
    [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$coord" 2>/dev/null || {
      echo "tta_netns.sh: $method: the coordinator did not start" >&2; cat "$dir/coordinator.log" >&2; return 1; }
    sleep 0.1
  done
  local port i wpids=() tx0=()
  port=$(cat "$dir/port")
  for i in $(seq 0 $((WORKERS - 1))); do tx0+=("$(tx_bytes "$i")"); done
  local start
  start=$(date +%s.%N)
  for i in $(seq 0 $((WORKERS - 1))); do
    in_ns "$i" "$BIN/qsr-worker" --coordinator "$(coord_ip):$port" --host "$(worker_ip "$i")" \
      --threads 1 --data-dir "$DATA" --worker-id "w$i" --snapshot-dir "$dir/snaps" \
      --snapshot-every "$SNAP" > "$dir/worker$i.log" 2>&1 &
    wpids+=($!)
    PIDS+=($!)
  done
  local capped=false
  wait_pids $(($(date +%s) + CAP_S)) "${wpids[@]}" || capped=true
  local end
  end=$(date +%s.%N)
  local tx=0
  for i in $(seq 0 $((WORKERS - 1))); do tx=$((tx + $(tx_bytes "$i") - ${tx0[$i]})); done
  kill "$coord" 2>/dev/null || true
  wait_pids $(($(date +%s) + 10)) "$coord" || true
  eval_curve "$dir"
  "$PY" - "$dir/run" "$method" "$rate" "$WORKERS" "$EPOCHS" "$TARGET" "$capped" \
    "$(echo "$end - $start" | bc)" "$((tx / WORKERS))" <<'EOF'
import json, os, sys
run, method, rate, workers, epochs, target, capped, elapsed, tx = sys.argv[1:]
evals = [json.loads(l) for l in open(os.path.join(run, "evals.jsonl"))] if os.path.exists(
    os.path.join(run, "evals.jsonl")) else []
rounds = [json.loads(l) for l in open(os.path.join(run, "rounds.jsonl"))] if os.path.exists(
    os.path.join(run, "rounds.jsonl")) else []
summary = json.load(open(os.path.join(run, "summary.json"))) if os.path.exists(
    os.path.join(run, "summary.json")) else {}
hit = [e["elapsed_s"] for e in evals if e["test_acc"] >= float(target)]
steps = max([r["step"] + r["h"] for r in rounds], default=0)
total = summary.get("total_steps") or int(os.environ["TTA_TOTAL_STEPS"])
sys.path.insert(0, os.environ["TTA_BENCH"])
import tta_curve
curve_path = os.path.join(os.path.dirname(run), "snaps", "curve.jsonl")
points = [json.loads(l) for l in open(curve_path)] if os.path.exists(curve_path) else []
print(json.dumps({"bench": "tta", "impl": "qsr", "method": method, "rate_mbit": float(rate),
                  "workers": int(workers), "epochs": int(epochs), "target": float(target),
                  "time_to_target_s": hit[0] if hit else None,
                  "final_acc": evals[-1]["test_acc"] if evals else None,
                  "evals": [[e["elapsed_s"], e["test_acc"]] for e in evals],
                  "bytes_per_worker": summary.get("bytes_per_worker",
                                                  sum(r["bytes"] for r in rounds)),
                  "tx_bytes_per_worker": int(tx), "steps_done": steps,
                  "total_steps": total, "syncs": len(rounds),
                  "elapsed_s": float(elapsed), "capped": capped == "true",
                  "snapshot_every": float(os.environ["TTA_SNAP"]),
                  **tta_curve.record_fields(points, float(target)),
                  "provenance": json.loads(os.environ["TTA_PROVENANCE"])}), flush=True)
EOF
}

run_torch() {  # run_torch MODE RATE
  local mode=$1 rate=$2 dir=$WORK/$1-$2 i wpids=() tx0=()
  mkdir -p "$dir"
  local port
  port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  for i in $(seq 0 $((WORKERS - 1))); do tx0+=("$(tx_bytes "$i")"); done
  local start end
  start=$(date +%s.%N)
  for i in $(seq 0 $((WORKERS - 1))); do
    in_ns "$i" env -u LD_LIBRARY_PATH GLOO_SOCKET_IFNAME="$([ "$NETNS" = 1 ] && echo eth0 || echo lo)" \
      "$PY" "$ROOT/bench/torch_fmnist_train.py" --mode "$mode" --rank "$i" \
      --world-size "$WORKERS" --master-addr "$(worker_ip 0)" --master-port "$port" \
      --epochs "$EPOCHS" --steps-per-epoch "$SPE" --threads 1 --data-dir "$DATA" \
      --time-limit-s "$CAP_S" --stop-at-acc 2 --out "$dir/evals$i.jsonl" \
      --snapshot-dir "$dir/snaps" --snapshot-every "$SNAP" > "$dir/rank$i.log" 2>&1 &
    wpids+=($!)
    PIDS+=($!)
  done
  local capped=false
  # The script stops itself at CAP_S (collectively); the extra minute covers its evaluation.
  wait_pids $(($(date +%s) + CAP_S + 120)) "${wpids[@]}" || capped=true
  end=$(date +%s.%N)
  local tx=0
  for i in $(seq 0 $((WORKERS - 1))); do tx=$((tx + $(tx_bytes "$i") - ${tx0[$i]})); done
  eval_curve "$dir"
  "$PY" - "$dir/evals0.jsonl" "$mode" "$rate" "$WORKERS" "$EPOCHS" "$TARGET" "$capped" \
    "$(echo "$end - $start" | bc)" "$((tx / WORKERS))" <<'EOF'
import json, os, sys
path, mode, rate, workers, epochs, target, capped, elapsed, tx = sys.argv[1:]
evals = [json.loads(l) for l in open(path)] if os.path.exists(path) else []
if not evals:
    sys.exit(f"tta_netns.sh: {mode}: no evaluations; see {os.path.dirname(path)}/rank0.log")
hit = [e["elapsed_s"] for e in evals if e["test_acc"] >= float(target)]
last = evals[-1]
sys.path.insert(0, os.environ["TTA_BENCH"])
import tta_curve
curve_path = os.path.join(os.path.dirname(path), "snaps", "curve.jsonl")
points = [json.loads(l) for l in open(curve_path)] if os.path.exists(curve_path) else []
print(json.dumps({"bench": "tta", "impl": "pytorch", "method": mode, "rate_mbit": float(rate),
                  "workers": int(workers), "epochs": int(epochs), "target": float(target),
                  "time_to_target_s": hit[0] if hit else None, "final_acc": last["test_acc"],
                  "evals": [[e["elapsed_s"], e["test_acc"]] for e in evals],
                  "bytes_per_worker": None, "tx_bytes_per_worker": int(tx),
                  "steps_done": last["step"], "total_steps": last.get("total_steps"),
                  "elapsed_s": float(elapsed),
                  "capped": capped == "true" or last.get("stopped") == "time_limit",
                  "snapshot_every": float(os.environ["TTA_SNAP"]),
                  **tta_curve.record_fields(points, float(target)),
                  "provenance": json.loads(os.environ["TTA_PROVENANCE"])}), flush=True)
EOF
}

if [ "$NETNS" = 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "tta_netns.sh: needs root for ip netns and tc (or --no-netns)" >&2; exit 2; }
  setup_net
fi
for rate in "${RATE_LIST[@]}"; do
  [ "$NETNS" = 1 ] && shape "$rate"
  [ "$NETNS" = 1 ] || rate=0
  for method in "${METHOD_LIST[@]}"; do
    case $method in
      ddp|postlocal|periodic) run_torch "$method" "$rate" ;;
      *) run_qsr "$method" "$rate" ;;
    esac
  done
done
