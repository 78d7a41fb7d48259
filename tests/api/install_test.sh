#!/usr/bin/env bash
# Installs a qsr build into a temporary prefix, builds examples/local_sgd against it as a separate
# CMake project (find_package(qsr) + qsr::qsr), and runs it as 2 processes on a free port.
# Usage: install_test.sh BUILD_DIR EXAMPLE_SOURCE_DIR [GENERATOR] [PREFIX_PATH]
# PREFIX_PATH: where qsr's dependencies are, '|'-separated (the build's CMAKE_PREFIX_PATH).
set -euo pipefail
build_dir=$1
example_dir=$2
generator=${3:-}
deps_path=${4:-}
deps_path=${deps_path//|/;}
work=$(mktemp -d "${TMPDIR:-/tmp}/qsr-install-test-XXXXXX")
trap 'rm -rf "$work"' EXIT

step() { echo "== $*"; }

step "install $build_dir into $work/prefix"
timeout 300 cmake --install "$build_dir" --prefix "$work/prefix" >"$work/install.log" ||
  { cat "$work/install.log"; exit 1; }
test -f "$work/prefix/lib/cmake/qsr/qsrConfig.cmake" ||
  test -f "$work/prefix/lib/x86_64-linux-gnu/cmake/qsr/qsrConfig.cmake" ||
  { echo "no qsrConfig.cmake installed"; find "$work/prefix" -name '*.cmake'; exit 1; }
test -f "$work/prefix/include/qsr/qsr.h" || { echo "qsr/qsr.h not installed"; exit 1; }

step "configure the example against the installed package"
gen_args=()
[ -n "$generator" ] && gen_args=(-G "$generator")
timeout 300 cmake -S "$example_dir" -B "$work/build" "${gen_args[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix${deps_path:+;$deps_path}"

step "build the example (one LibTorch file: about a minute)"
timeout 900 cmake --build "$work/build" -j 2

step "run it as 2 processes"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 40000)))
for rank in 0 1; do
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 RANK=$rank \
    timeout 120 "$work/build/local_sgd" --steps=60 >"$work/rank$rank.log" 2>&1 &
  pids[$rank]=$!
done
status=0
for rank in 0 1; do wait "${pids[$rank]}" || status=$?; done
cat "$work/rank0.log" "$work/rank1.log"
[ "$status" -eq 0 ] || { echo "an example rank failed ($status)"; exit 1; }
h0=$(grep -o 'final params hash [0-9a-f]*' "$work/rank0.log")
h1=$(grep -o 'final params hash [0-9a-f]*' "$work/rank1.log")
[ -n "$h0" ] && [ "$h0" = "$h1" ] || { echo "ranks disagree: '$h0' vs '$h1'"; exit 1; }
step "OK: the installed package builds and runs the example ($h0)"
