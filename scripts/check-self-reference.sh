#!/usr/bin/env bash
# Fails (exit 1) when a tracked file speaks of how the project was made (a numbered work period,
# a numbered ticket) instead of naming a date, a commit or the machine. Words in their ordinary
# meaning (a gRPC or TLS session) are allowed by the explicit list below; every other match is
# printed as FILE:LINE:TEXT.
# Usage: scripts/check-self-reference.sh [REPO_ROOT]   (default: this script's repository)
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$root"
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || { echo "check-self-reference: $root is not a git checkout" >&2; exit 2; }

# Bracketed letters, so that this file does not match its own pattern.
pattern='s[e]ssion|the [i]ssue|[i]ssue [0-9]|[i]ssue #[0-9]'
# Ordinary meanings, matched case-insensitively against the offending line's text.
allow=(
  'tls session'
  'ssl session'
  'grpc session'
  'session ticket'
  'session resumption'
  'session cache'
  'setsid|new session|session leader|process group'
)

matches="$(git grep -nIiE "$pattern" -- . || true)"
bad=0
while IFS= read -r line; do
  [ -z "$line" ] && continue
  text="${line#*:*:}"
  ok=0
  for a in "${allow[@]}"; do
    if printf '%s\n' "$text" | grep -qiE "$a"; then ok=1; break; fi
  done
  if [ "$ok" = 0 ]; then
    printf '%s\n' "$line"
    bad=$((bad + 1))
  fi
done <<<"$matches"

if [ "$bad" -gt 0 ]; then
  echo "check-self-reference: $bad line(s) speak of how the project was made; name a date," \
       "a commit or the machine instead (allowed ordinary meanings: ${allow[*]})" >&2
  exit 1
fi
echo "check-self-reference: no self-references"
