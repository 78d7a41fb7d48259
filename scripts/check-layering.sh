#!/usr/bin/env bash
# Fails (exit 1) when an include crosses a layer boundary, printing FILE:LINE: INCLUDE (why):
#   - worker/, api/, cli/, agent/ and client/ include no "coordinator/..." header: only the
#     protocol (proto/) and client/ join the coordinator and the processes that call it;
#   - common/ includes no socket, thread or lock, LibTorch, gRPC or generated-proto header, and no
#     allocator, mmap or file-system header: it is pure logic that every binary links (the
#     rendezvous store, checkpoint manifests, /proc metrics and log prefixes have folders of
#     their own).
# Known exceptions are listed in scripts/layering-allowlist.txt, one "PATH INCLUDE" pair a line
# (INCLUDE as written, e.g. <malloc.h>); an entry that no longer matches anything also fails, so
# the list only shrinks.
# Usage: scripts/check-layering.sh [REPO_ROOT]   (default: this script's repository)
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$root"
allowlist=scripts/layering-allowlist.txt
[ -d common ] && [ -d coordinator ] || { echo "check-layering: $root is not a qsr checkout" >&2; exit 2; }

# Every include of FOLDERS... matching the extended regex PATTERN, as "FILE:LINE:HEADER".
includes() {
  local pattern=$1
  shift
  local dirs=()
  for d in "$@"; do [ -d "$d" ] && dirs+=("$d"); done
  [ "${#dirs[@]}" -eq 0 ] && return 0
  grep -rnE --include='*.h' --include='*.hpp' --include='*.cc' --include='*.cpp' --include='*.inc' \
    "^[[:space:]]*#[[:space:]]*include[[:space:]]*${pattern}" "${dirs[@]}" |
    sed -E 's/^([^:]*):([0-9]+):[[:space:]]*#[[:space:]]*include[[:space:]]*([<"][^>"]*[>"]).*/\1:\2:\3/' || true
}

declare -A allowed=() used=()
if [ -f "$allowlist" ]; then
  n=0
  while IFS= read -r entry || [ -n "$entry" ]; do
    n=$((n + 1))
    entry="${entry%%#*}"
    read -r path header extra <<<"$entry" || true
    [ -z "${path:-}" ] && continue
    if [ -z "${header:-}" ] || [ -n "${extra:-}" ]; then
      echo "$allowlist:$n: expected 'PATH INCLUDE', got '$entry'" >&2
      exit 2
    fi
    allowed["$path $header"]=1
  done <"$allowlist"
fi

bad=0
report() {  # FILE:LINE:HEADER WHY
  local file="${1%%:*}" rest="${1#*:}"
  local line="${rest%%:*}" header="${rest#*:}"
  if [ -n "${allowed["$file $header"]+x}" ]; then
    used["$file $header"]=1
    return
  fi
  echo "$file:$line: $header ($2)"
  bad=$((bad + 1))
}

while IFS= read -r hit; do
  [ -n "$hit" ] && report "$hit" "only the coordinator includes coordinator/ headers"
done < <(includes '["<]coordinator/' worker api cli agent client)

common_forbidden='(<sys/socket\.h>|<netinet/|<arpa/|<thread>|<mutex>|<condition_variable>|<shared_mutex>|"absl/synchronization/|<torch/|<ATen/|<grpc|"proto/|<pthread\.h>|<sys/mman\.h>|<malloc\.h>|<fcntl\.h>|<dirent\.h>|<unistd\.h>|<sys/stat\.h>|<filesystem>)'
while IFS= read -r hit; do
  [ -n "$hit" ] && report "$hit" "common/ is pure: no sockets, threads or locks, torch, gRPC, proto, allocator or file-system headers"
done < <(includes "$common_forbidden" common)

# An empty list is fine (the guard keeps bash before 4.4 from calling the empty array unbound).
if [ "${#allowed[@]}" -gt 0 ]; then
  for entry in "${!allowed[@]}"; do
    if [ -z "${used["$entry"]+x}" ]; then
      echo "$allowlist: '$entry' matches no include any more; remove it from the list"
      bad=$((bad + 1))
    fi
  done
fi

if [ "$bad" -gt 0 ]; then
  echo "check-layering: $bad violation(s)"
  exit 1
fi
echo "check-layering: OK"
