#!/usr/bin/env bash
# RandAugment's cost in the image-folder loader: runs qsr-bench-augment (decode alone and
# decode + RandAugment severity 10 depth 2, alternating in one invocation, images per CPU-second
# of the decoding thread) and writes its JSON lines, each stamped with its provenance
# (bench/provenance.py), to bench/data/augment.jsonl (or OUT).
#
#   bench/augment.sh [--bin-dir DIR] [--out FILE] [qsr-bench-augment flags...]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/build/bin
OUT=$ROOT/bench/data/augment.jsonl
ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[ -x "$BIN/qsr-bench-augment" ] || {
  echo "augment.sh: $BIN/qsr-bench-augment is missing; build first (scripts/build.sh)" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
/usr/bin/python3 - "$TMP/env.json" "$ROOT" <<'EOF'
import json, os, sys
sys.path.insert(0, os.path.join(sys.argv[2], "bench"))
from provenance import as_env, here
json.dump(as_env(here(sys.argv[2])), open(sys.argv[1], "w"))
EOF
"$BIN/qsr-bench-augment" "${ARGS[@]}" > "$TMP/augment.jsonl"
/usr/bin/python3 "$ROOT/bench/provenance.py" stamp "$TMP/env.json" "$TMP/augment.jsonl"
mkdir -p "$(dirname "$OUT")"
cp "$TMP/augment.jsonl" "$OUT"
echo "augment.sh: wrote $OUT" >&2
