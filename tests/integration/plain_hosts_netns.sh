#!/usr/bin/env bash
# Two "nodes" without Kubernetes: network namespaces of their own, joined to one bridge in the
# root namespace by veth pairs, on a private /24 this script picks among the unused 10.215.X.0/24
# (bridge .254, where the coordinator listens on an OS-chosen port; node K is .(K+1)). Each node
# runs `qsr-run --coordinator BRIDGE:PORT --nproc-per-node 2` (its qsr-agent and two workers,
# --host found from the route); the coordinator trains `mlp` on Fashion-MNIST with 4 workers.
# Mid-run one worker of node 1 is killed with SIGKILL: its node's qsr-run restarts it and it
# rejoins. Passes when the run FINISHED, both nodes exit 0, the restart is in node 1's output,
# and rounds.jsonl has every round once: ids 0..n-1 in order, each starting where the previous
# ended, the last ending at the plan's last step, and the last round averaged by all 4 workers.
#
# Usage: plain_hosts_netns.sh --bin-dir DIR [--source-dir DIR] [--data-dir DIR]
# Needs root and iproute2 (`ip netns`); without them it FAILS (it never skips). Everything it
# creates is removed on exit (trap); every wait has a deadline.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=""
DATA=/usr/share/datasets/fashion-mnist
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) BIN=$2; shift 2 ;;
    --source-dir) ROOT=$2; shift 2 ;;
    --data-dir) DATA=$2; shift 2 ;;
    *) echo "plain_hosts_netns.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
fail() { echo "plain_hosts_netns.sh: FAIL: $*" >&2; exit 1; }
for b in qsr-run qsr-coordinator qsr-agent qsr-worker qsrctl; do
  [ -x "$BIN/$b" ] || fail "--bin-dir $BIN has no $b"
done
[ "$(id -u)" = 0 ] || fail "needs root for ip netns (CI runs the tests as root)"
command -v ip >/dev/null || fail "ip (iproute2) is not installed: scripts/install-deps.sh installs it"
ip netns list >/dev/null || fail "ip netns does not work here"
[ -f "$DATA/train-images-idx3-ubyte.gz" ] || fail "no Fashion-MNIST at $DATA"

TAG=$$
BR=qsrpb$((TAG % 100000))
NS=("qsrp$TAG-0" "qsrp$TAG-1")
WORK=$(mktemp -d /tmp/qsr-plain-hosts.XXXXXX)
PIDS=()
cleanup() {
  local p ns
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for ns in "${NS[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  ip link del "$BR" 2>/dev/null || true
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work folder kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A /24 no interface or route of this machine uses.
SUBNET=""
for x in $(seq $((TAG % 200 + 20)) 254) $(seq 20 $((TAG % 200 + 19))); do
  if ! ip -4 route show | grep -q "^10\.215\.$x\." && ! ip -4 addr show | grep -q " 10\.215\.$x\."; then
    SUBNET=10.215.$x
    break
  fi
done
[ -n "$SUBNET" ] || fail "no free 10.215.X.0/24 subnet"
COORD_IP=$SUBNET.254
ip link add "$BR" type bridge
ip addr add "$COORD_IP/24" dev "$BR"
ip link set "$BR" up
for k in 0 1; do
  ip netns add "${NS[$k]}"
  ip link add "qp${TAG: -6}h$k" type veth peer name eth0 netns "${NS[$k]}"
  ip link set "qp${TAG: -6}h$k" master "$BR" up
  ip -n "${NS[$k]}" addr add "$SUBNET.$((k + 1))/24" dev eth0
  ip -n "${NS[$k]}" link set eth0 up
  ip -n "${NS[$k]}" link set lo up
done

# wait_for DEADLINE_S DESCRIPTION CMD...: runs CMD until it succeeds or the deadline passes.
wait_for() {
  local deadline=$(($(date +%s) + $1)) what=$2
  shift 2
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for $what"
    sleep 0.2
  done
}

RUN=$WORK/run
"$BIN/qsr-coordinator" --recipe "$ROOT/recipes/fashion-mnist/mlp-localadamw-qsr.yaml" \
  --listen "$COORD_IP:0" --port-file "$WORK/port" --run-dir "$RUN" --run-id plain-hosts \
  --heartbeat-interval 200ms --heartbeat-timeout 3000ms --survivor-wait 5000ms \
  --rendezvous-timeout 60s --plan-batch-steps 2 \
  --workers=4 --epochs=3 --steps_per_epoch=80 --total_batch_size=128 \
  > "$WORK/coordinator.log" 2>&1 &
COORD=$!
PIDS+=("$COORD")
coord_up() { kill -0 "$COORD" 2>/dev/null || fail "the coordinator exited: $(cat "$WORK/coordinator.log")"; [ -s "$WORK/port" ]; }
wait_for 30 "the coordinator's port" coord_up
ADDR=$COORD_IP:$(cat "$WORK/port")

NODES=()
for k in 0 1; do
  ip netns exec "${NS[$k]}" "$BIN/qsr-run" --coordinator "$ADDR" --nproc-per-node 2 \
    --node-name "n$k" --log-dir "$WORK/logs/n$k" --threads 1 --data-dir "$DATA" \
    --restart-delay 0.2s --coordinator-wait 30s --progress 5s --grace 10s \
    > "$WORK/node$k.out" 2>&1 &
  NODES+=($!)
  PIDS+=($!)
done

status_field() {  # status_field FIELD: from qsrctl status --json
  "$BIN/qsrctl" --coordinator "$ADDR" status --json 2>/dev/null |
    sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}
past_round() { local r; r=$(status_field round); [ -n "$r" ] && [ "$r" -ge "$1" ]; }
wait_for 180 "round 6" past_round 6

# The victim: node 1's worker n1-w1, found among the processes of its namespace.
VICTIM=""
for p in $(ip netns pids "${NS[1]}"); do
  if tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q "qsr-worker .*--worker-id n1-w1 "; then
    VICTIM=$p
  fi
done
[ -n "$VICTIM" ] || fail "no qsr-worker n1-w1 in ${NS[1]}"
kill -9 "$VICTIM"
echo "killed n1-w1 (pid $VICTIM) at round $(status_field round)"

# Both nodes end on their own once the run is over.
nodes_done() { local p; for p in "${NODES[@]}"; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
wait_for 420 "both nodes to exit" nodes_done
for k in 0 1; do
  echo "--- node $k"
  cat "$WORK/node$k.out"
  wait "${NODES[$k]}" || fail "node $k exited $?"
done
grep -q "w1 (pid $VICTIM) killed by SIGKILL; restart 1 of 3" "$WORK/node1.out" ||
  fail "node 1 did not report restarting n1-w1"
grep -q "done: 2 workers, 1 restarts" "$WORK/node1.out" || fail "node 1's closing line"
grep -q "logs in $WORK/logs/n1" "$WORK/node1.out" || fail "node 1 does not say where its logs are"
for f in agent w0 w1; do [ -s "$WORK/logs/n1/$f.log" ] || fail "no $WORK/logs/n1/$f.log"; done
[ "$(grep -c "rank .* done:" "$WORK/logs/n1/w1.log")" = 1 ] || fail "n1-w1's log does not end with its restarted self's finish"

grep -q '"state":"FINISHED"' "$RUN/summary.json" || fail "the run did not finish: $(cat "$RUN/summary.json" 2>/dev/null)"
# Every round once, in order, contiguous, to the last step; the last averaged by all 4 again.
TOTAL=$(sed -n 's/.*"total_steps":\([0-9]*\).*/\1/p' "$RUN/summary.json")
[ "$TOTAL" = 240 ] || fail "total_steps is \"$TOTAL\", expected 240"
expect_round=0
expect_step=0
last_workers=0
while IFS= read -r line; do
  r=$(sed -n 's/.*"round":\([0-9]*\).*/\1/p' <<< "$line")
  s=$(sed -n 's/.*"step":\([0-9]*\).*/\1/p' <<< "$line")
  h=$(sed -n 's/.*"h":\([0-9]*\).*/\1/p' <<< "$line")
  last_workers=$(sed -n 's/.*"workers":\([0-9]*\).*/\1/p' <<< "$line")
  [ "$r" = "$expect_round" ] || fail "rounds.jsonl: round $r where $expect_round was due (lost or duplicated)"
  [ "$s" = "$expect_step" ] || fail "rounds.jsonl: round $r starts at step $s, not $expect_step"
  expect_round=$((expect_round + 1))
  expect_step=$((s + h))
done < "$RUN/rounds.jsonl"
[ "$expect_step" = "$TOTAL" ] || fail "rounds.jsonl ends at step $expect_step of $TOTAL"
[ "$last_workers" = 4 ] || fail "the last round had $last_workers workers: n1-w1 did not rejoin"
echo "plain_hosts_netns: PASS: $expect_round rounds, each once; n1-w1 restarted and rejoined"
