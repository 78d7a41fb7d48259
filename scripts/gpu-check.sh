#!/usr/bin/env bash
# gpu-check.sh: the whole GPU check in one run, on a GPU machine that has CUDA, NCCL and a PyTorch
# wheel (with its C++ LibTorch) but no gRPC, Protobuf, Abseil, glog, gflags, yaml-cpp or Gloo and
# no package registry. See docs/gpu.md.
#
#   1. env     prints the OS, compilers, GPU, PyTorch (checks its C++11 ABI: Debian's libraries
#              use the new one)
#   2. deps    unpacks Debian 12 .deb files (scripts/gpu-deps.sh fetches them) into a local prefix
#              and points their CMake files at it
#   3. build   configures qsr against that prefix and the wheel's LibTorch, builds everything
#   4. gputest the NCCL communicator tests, required to run on the GPU (QSR_REQUIRE_GPU=1)
#   5. nccl    a 1-worker NCCL training run (coordinator + qsr-worker --device cuda:0) of the cnn
#              on Fashion-MNIST; passes when summary.json's test_acc >= TARGET_ACC
#   6. dp      the bucketed data-parallel path: 1-worker NCCL parallel-SGD cnn runs (1 epoch) with
#              gradient buckets overlapping backward (bucket_mb 1) and without (bucket_mb 0);
#              passes when the bucketed run reaches DP_TARGET_ACC
#   7. bf16    precision: bf16 (autocast) against fp32, 1-worker NCCL cnn runs of 1 epoch each;
#              passes when the bf16 run reaches DP_TARGET_ACC
#   8. gloo    a 2-worker Gloo run on the CPU (qsr-run), 1 epoch
#   9. bench   training-step throughput, LibTorch C++ (qsr-bench-step) vs Python PyTorch
#              (bench/train_step_bench.py), same GPU, model and batch, in this run; and the CPU
#              data-parallel step with and without overlap, 2 Gloo ranks (qsr-bench-dp-overlap)
#  10. ctest   the rest of the test suite, time-capped (without the CLI and training integration
#              tests, which want /usr/share/datasets)
# Each stage logs to RESULTS_DIR/<stage>.log; a failed stage does not stop the later ones that do
# not depend on it. The exit status is 0 only if every stage passed.
#
# Environment (defaults in brackets):
#   CARRY_DIR [build-carry-gpu]  DEBS_DIR [$CARRY_DIR/debs]  DATA_DIR [$CARRY_DIR/fashion-mnist]
#   BUILD_DIR [build-gpu]  RESULTS_DIR [$BUILD_DIR/results]  JOBS [nproc]  PYTHON [python3]
#   TORCH_CMAKE_PREFIX [the wheel's torch.utils.cmake_prefix_path]  CUDA_HOME [/usr/local/cuda]
#   EPOCHS [3]  TARGET_ACC [0.90]  DP_TARGET_ACC [0.85]  BENCH_BATCH [256]
#   SKIP_DP, SKIP_BF16, SKIP_GLOO, SKIP_BENCH, SKIP_CTEST (=1 skips)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CARRY_DIR=${CARRY_DIR:-$ROOT/build-carry-gpu}
DEBS_DIR=${DEBS_DIR:-$CARRY_DIR/debs}
DATA_DIR=${DATA_DIR:-$CARRY_DIR/fashion-mnist}
WORK=${BUILD_DIR:-$ROOT/build-gpu}
RESULTS=${RESULTS_DIR:-$WORK/results}
JOBS=${JOBS:-$(nproc)}
PY=${PYTHON:-python3}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
EPOCHS=${EPOCHS:-3}
TARGET_ACC=${TARGET_ACC:-0.90}
DP_TARGET_ACC=${DP_TARGET_ACC:-0.85}
BENCH_BATCH=${BENCH_BATCH:-256}
PREFIX=$WORK/prefix
BLD=$WORK/qsr
RUNS=$WORK/runs
RECIPE=$ROOT/recipes/fashion-mnist/cnn-localsgd-qsr.yaml
DP_RECIPE=$ROOT/recipes/fashion-mnist/cnn-parallel-sgd.yaml
mkdir -p "$WORK" "$RESULTS" "$RUNS"
export PATH="$CUDA_HOME/bin:$PATH"

FAILED=0
# Stages run in a pipeline (a subshell), so their notes go to a file, not a variable.
note() {
  echo "gpu-check: $*"
  echo "$*" >> "$RESULTS/summary.txt"
}

# run_stage NAME FUNCTION: runs FUNCTION with its output in RESULTS/NAME.log and on stdout.
run_stage() {
  local name=$1 fn=$2 start rc
  echo
  echo "==================== [$name] ===================="
  start=$(date +%s)
  "$fn" 2>&1 | tee "$RESULTS/$name.log"
  rc=${PIPESTATUS[0]}
  local secs=$(($(date +%s) - start))
  if [ "$rc" -eq 0 ]; then
    note "[$name] PASS (${secs}s)"
  else
    note "[$name] FAIL rc=$rc (${secs}s); see $name.log"
    FAILED=1
  fi
  return "$rc"
}

# ---------------------------------------------------------------------------------------------
stage_env() {
  grep PRETTY_NAME /etc/os-release
  echo "kernel $(uname -r) $(uname -m), $(nproc) cores"
  gcc --version | head -1
  ldd --version | head -1
  cmake --version | head -1
  command -v ninja >/dev/null && echo "ninja $(ninja --version)" || echo "ninja: none (make)"
  command -v nvcc >/dev/null && nvcc --version | tail -1
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || return 1
  env -u LD_LIBRARY_PATH "$PY" - <<'EOF' || return 1
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn",
      torch.backends.cudnn.version(), "nccl", ".".join(map(str, torch.cuda.nccl.version())))
print("cmake prefix", torch.utils.cmake_prefix_path)
print("CXX11 ABI", torch._C._GLIBCXX_USE_CXX11_ABI)
print("cuda available", torch.cuda.is_available(), torch.cuda.get_device_name(0))
if not torch._C._GLIBCXX_USE_CXX11_ABI:
    raise SystemExit("this LibTorch uses the old C++ ABI; Debian's libraries use the new one")
EOF
  ldconfig -p | grep -E 'libnccl\.so|libibverbs\.so\.1' || true
  ls "$DEBS_DIR"/*.deb >/dev/null || { echo "no .deb files in $DEBS_DIR (scripts/gpu-deps.sh)"; return 1; }
  ls "$DATA_DIR"/train-images-idx3-ubyte.gz >/dev/null || return 1
}

# ---------------------------------------------------------------------------------------------
stage_deps() {
  rm -rf "$PREFIX"
  mkdir -p "$PREFIX"
  local deb
  for deb in "$DEBS_DIR"/*.deb; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$deb" "$PREFIX" || return 1
    else  # ar + tar, for machines without dpkg (tar detects the compression of a file)
      local member
      member=$(ar t "$deb" | grep '^data\.tar') || return 1
      ar p "$deb" "$member" > "$WORK/$member" && tar -xf "$WORK/$member" -C "$PREFIX" || return 1
      rm -f "$WORK/$member"
    fi
  done
  echo "unpacked $(ls "$DEBS_DIR"/*.deb | wc -l) packages into $PREFIX"
  # Absolute symlinks (e.g. lib*.so -> /usr/lib/...) would point at the host's /usr.
  local link target
  while IFS= read -r link; do
    target=$(readlink "$link")
    case $target in /*) ln -sfn "$PREFIX$target" "$link" ;; esac
  done < <(find "$PREFIX" -type l)
  # Debian's CMake package files name /usr absolutely in places (Gloo's library, glog's module
  # path, the install-prefix checks of the generated targets files); pkg-config files too.
  local files
  files=$(grep -rlE '"/usr(/|")' "$PREFIX/usr" --include='*.cmake' 2>/dev/null)
  [ -n "$files" ] && sed -i -e "s#\"/usr/#\"$PREFIX/usr/#g" -e "s#\"/usr\"#\"$PREFIX/usr\"#g" $files
  files=$(find "$PREFIX/usr" -name '*.pc')
  [ -n "$files" ] && sed -i -e "s#=/usr#=$PREFIX/usr#g" -e "s#-I/usr#-I$PREFIX/usr#g" \
    -e "s#-L/usr#-L$PREFIX/usr#g" $files
  local left
  left=$(grep -rnE '"/usr(/|")' "$PREFIX/usr" --include='*.cmake' | grep -v "$PREFIX" | head -5)
  [ -n "$left" ] && { echo "absolute /usr paths left:"; echo "$left"; }
  LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu:$PREFIX/usr/lib" "$PREFIX/usr/bin/protoc" \
    --version || return 1
  # The hook runs right after project(qsr): Debian's headers must win over the copies some
  # wheels bundle (torch/include/google/protobuf); every binary names libstdc++ before LibTorch,
  # whose libtorch_cpu.so exports a private std::filesystem that crashes our calls into it (see
  # worker/comm/CMakeLists.txt); re2 has no CMake package in Debian 12 and gRPC's fallback needs
  # pkg-config; bench/ is added when the top level does not add it.
  local libstdcxx
  libstdcxx=$(readlink -f "$("${CXX:-c++}" -print-file-name=libstdc++.so.6)")
  {
    echo "# Generated by scripts/gpu-check.sh."
    # Both the arch-independent and the multiarch headers: Debian keeps jconfig.h (which says
    # which libjpeg ABI, 62) in include/x86_64-linux-gnu; the host's (Ubuntu's, ABI 80) would
    # otherwise pair with Debian's jpeglib.h and library ("Wrong JPEG library version").
    echo "include_directories(BEFORE SYSTEM \"$PREFIX/usr/include/x86_64-linux-gnu\" \"$PREFIX/usr/include\")"
    echo "add_link_options(\"LINKER:--push-state,--no-as-needed,$libstdcxx,--pop-state\")"
    echo "if(NOT TARGET re2::re2)"
    echo "  add_library(re2::re2 SHARED IMPORTED)"
    echo "  set_target_properties(re2::re2 PROPERTIES"
    echo "    IMPORTED_LOCATION \"$PREFIX/usr/lib/x86_64-linux-gnu/libre2.so.9\""
    echo "    INTERFACE_INCLUDE_DIRECTORIES \"$PREFIX/usr/include\")"
    echo "endif()"
    if [ -f "$ROOT/bench/bench.cmake" ] && ! grep -q 'add_subdirectory(bench)' "$ROOT/CMakeLists.txt"; then
      echo "cmake_language(DEFER CALL include \"\${CMAKE_SOURCE_DIR}/bench/bench.cmake\")"
    fi
  } > "$WORK/qsr-gpu-hook.cmake"
}

# ---------------------------------------------------------------------------------------------
TORCH_CMAKE=${TORCH_CMAKE_PREFIX:-$("$PY" -c 'import torch;print(torch.utils.cmake_prefix_path)' 2>/dev/null)}
TORCH_LIB=$(cd "$TORCH_CMAKE/../../lib" 2>/dev/null && pwd)
export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu:$PREFIX/usr/lib:$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

stage_build() {
  local gen=() arch
  command -v ninja >/dev/null && gen=(-G Ninja)
  # LibTorch's CMake files want an architecture list (qsr has no CUDA sources; this only saves
  # them probing the GPU).
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1)
  # -include cstdint: Debian 12's Abseil and yaml-cpp headers predate GCC 13's leaner includes.
  cmake -S "$ROOT" -B "$BLD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$PREFIX/usr;$TORCH_CMAKE" \
    -DCMAKE_PROJECT_qsr_INCLUDE="$WORK/qsr-gpu-hook.cmake" \
    -DCMAKE_POLICY_VERSION_MINIMUM=3.5 \
    -DCMAKE_CXX_FLAGS="-include cstdint" \
    -DProtobuf_PROTOC_EXECUTABLE="$PREFIX/usr/bin/protoc" \
    -DProtobuf_INCLUDE_DIR="$PREFIX/usr/include" \
    -DProtobuf_LIBRARY="$PREFIX/usr/lib/x86_64-linux-gnu/libprotobuf.so" \
    -DGRPC_CPP_PLUGIN="$PREFIX/usr/bin/grpc_cpp_plugin" \
    -DCUDAToolkit_ROOT="$CUDA_HOME" ${arch:+-DTORCH_CUDA_ARCH_LIST="$arch"} \
    -DQSR_WITH_NCCL=ON || return 1
  [ "${CONFIGURE_ONLY:-0}" = 1 ] && return 0
  # Keep going past unrelated failures, then require what the later stages run.
  local keep=()
  [ ${#gen[@]} -gt 0 ] && keep=(-- -k 0)
  cmake --build "$BLD" -j "$JOBS" "${keep[@]}"
  local rc=$? missing=0 f
  for f in bin/qsr-coordinator bin/qsr-worker bin/qsr-run tests/nccl_communicator_test; do
    [ -x "$BLD/$f" ] || { echo "missing $BLD/$f"; missing=1; }
  done
  echo "qsr-worker links: $(readelf -d "$BLD/bin/qsr-worker" 2>/dev/null | grep -oE 'lib(stdc[+][+]|torch_cpu|torch_cuda|c10_cuda|nccl|cudart|gloo|protobuf)[^]]*' | tr '\n' ' ')"
  [ $missing -eq 0 ] && [ $rc -eq 0 ]
}

# ---------------------------------------------------------------------------------------------
stage_gputest() {
  QSR_REQUIRE_GPU=1 timeout 300 "$BLD/tests/nccl_communicator_test" --gtest_color=no || return 1
  # Also on cuda:0 where there is one: the multi-tensor SGD against LibTorch's, and autocast.
  timeout 120 "$BLD/tests/foreach_sgd_test" --gtest_color=no || return 1
  timeout 120 "$BLD/tests/precision_test" --gtest_color=no
}

# ---------------------------------------------------------------------------------------------
# read_json FILE KEY: a number or string field of a flat JSON object.
read_json() { "$PY" -c 'import json,sys;print(json.load(open(sys.argv[1])).get(sys.argv[2],""))' "$1" "$2"; }
# throughput RUN_DIR: training samples/s summed over rounds.jsonl (excludes evaluation).
throughput() {
  "$PY" - "$1/rounds.jsonl" <<'EOF'
import json, sys
samples = seconds = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    samples += r.get("samples", 0)
    seconds += r.get("seconds", 0)
print(f"{samples / seconds:.0f}" if seconds else "n/a")
EOF
}

# nccl_run NAME EPOCHS [--KEY=VALUE recipe overrides...]: a coordinator and one worker on cuda:0
# (NCCL, world size 1) in RUNS/NAME, with the recipe NCCL_RECIPE [RECIPE]; prints summary.json.
# Sets RUN_ACC and RUN_TPUT.
RUN_ACC=""
RUN_TPUT=""
nccl_run() {
  local name=$1 epochs=$2
  shift 2
  local run=$RUNS/$name port="" pid_c pid_w rc_w
  rm -rf "$run"
  mkdir -p "$run"
  "$BLD/bin/qsr-coordinator" --recipe "${NCCL_RECIPE:-$RECIPE}" --listen 127.0.0.1:0 --run-dir "$run" \
    --run-id "$name" --port-file "$run/coordinator.port" --workers=1 --epochs="$epochs" "$@" &
  pid_c=$!
  for _ in $(seq 1 300); do
    [ -s "$run/coordinator.port" ] && port=$(cat "$run/coordinator.port") && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "the coordinator did not start"; kill "$pid_c" 2>/dev/null; return 1; }
  timeout 600 "$BLD/bin/qsr-worker" --coordinator "127.0.0.1:$port" --device cuda:0 \
    --data-dir "$DATA_DIR" --worker-id "$name-w0" --threads 4 &
  pid_w=$!
  wait "$pid_w"
  rc_w=$?
  timeout 60 tail --pid="$pid_c" -f /dev/null  # the coordinator exits once the run is over
  kill "$pid_c" 2>/dev/null
  wait "$pid_c"
  echo "worker rc=$rc_w coordinator rc=$?"
  cat "$run/summary.json" 2>/dev/null || { echo "no summary.json"; return 1; }
  RUN_ACC=$(read_json "$run/summary.json" test_acc)
  RUN_TPUT=$(throughput "$run")
  return "$rc_w"
}

stage_nccl() {
  nccl_run nccl "$EPOCHS" || return 1
  note "NCCL 1-worker cnn, $EPOCHS epochs, batch 128: test_acc=$RUN_ACC (target $TARGET_ACC), state=$(read_json "$RUNS/nccl/summary.json" state), elapsed_s=$(read_json "$RUNS/nccl/summary.json" elapsed_s), train samples/s=$RUN_TPUT"
  "$PY" -c "import sys; sys.exit(0 if float('${RUN_ACC:-0}' or 0) >= $TARGET_ACC else 1)"
}

# ---------------------------------------------------------------------------------------------
# at_least VALUE TARGET: whether the number VALUE >= TARGET.
at_least() { "$PY" -c "import sys; sys.exit(0 if float('${1:-0}' or 0) >= $2 else 1)"; }

stage_dp() {
  local rc=0 acc
  # cnn: ~1.7M parameters (6.5 MB of gradients), so 1 MiB buckets make several per step.
  NCCL_RECIPE=$DP_RECIPE nccl_run dp-bucketed 1 --bucket_mb=1 || rc=1
  acc=$RUN_ACC
  note "data-parallel SGD (NCCL, 1 worker, cnn, 1 epoch) bucket_mb=1 (overlap): test_acc=$RUN_ACC (target $DP_TARGET_ACC), train samples/s=$RUN_TPUT"
  NCCL_RECIPE=$DP_RECIPE nccl_run dp-flat 1 --bucket_mb=0 || rc=1
  note "data-parallel SGD (NCCL, 1 worker, cnn, 1 epoch) bucket_mb=0 (one all-reduce after backward): test_acc=$RUN_ACC, train samples/s=$RUN_TPUT"
  at_least "$acc" "$DP_TARGET_ACC" || rc=1
  return $rc
}

stage_bf16() {
  local rc=0 acc
  nccl_run bf16 1 --precision=bf16 || rc=1
  acc=$RUN_ACC
  note "precision=bf16 (NCCL, 1 worker, cnn localsgd, 1 epoch): test_acc=$RUN_ACC (target $DP_TARGET_ACC), train samples/s=$RUN_TPUT"
  nccl_run fp32 1 --precision=fp32 || rc=1
  note "precision=fp32 (same run otherwise): test_acc=$RUN_ACC, train samples/s=$RUN_TPUT"
  at_least "$acc" "$DP_TARGET_ACC" || rc=1
  return $rc
}

# ---------------------------------------------------------------------------------------------
stage_gloo() {
  local run=$RUNS/gloo
  rm -rf "$run"
  timeout 600 "$BLD/bin/qsr-run" --recipe "$RECIPE" --workers=2 --epochs=1 \
    --data-dir "$DATA_DIR" --run-dir "$run" --run-id gpu-gloo --progress 10s || return 1
  note "Gloo 2-worker CPU cnn, 1 epoch: test_acc=$(read_json "$run/summary.json" test_acc), elapsed_s=$(read_json "$run/summary.json" elapsed_s), train samples/s per worker=$(throughput "$run")"
}

# ---------------------------------------------------------------------------------------------
stage_bench() {
  local model steps line rc=0
  # The real worker (data loader, host-to-device copies, QSR averaging rounds over NCCL) on the
  # same model and batch, 1 epoch; its samples/s come from the round reports.
  if nccl_run bench-worker 1 --total_batch_size="$BENCH_BATCH" > "$RESULTS/bench-worker.log" 2>&1; then
    note "bench impl=cpp-worker model=cnn batch=$BENCH_BATCH epochs=1 device=cuda:0 samples_per_s=$RUN_TPUT (whole training loop incl. data; test_acc=$RUN_ACC)"
  else
    note "bench impl=cpp-worker FAILED; see bench-worker.log"
    rc=1
  fi
  for model in cnn resnet18; do
    steps=300
    [ "$model" = resnet18 ] && steps=100
    # cpp: the worker's multi-tensor SGD; cpp-sgd: LibTorch's per-parameter SGD. Two rounds,
    # alternating, so that drift in the machine's speed shows.
    for impl in cpp python cpp-sgd cpp python cpp-sgd; do
      if [ "$impl" != python ]; then
        [ -x "$BLD/bin/qsr-bench-step" ] || { echo "no qsr-bench-step"; rc=1; continue; }
        local opt=foreach
        [ "$impl" = cpp-sgd ] && opt=sgd
        line=$("$BLD/bin/qsr-bench-step" --model $model --batch "$BENCH_BATCH" --steps $steps \
          --device cuda:0 --optimizer $opt | grep '^bench') || rc=1
      else
        line=$(env -u LD_LIBRARY_PATH "$PY" "$ROOT/bench/train_step_bench.py" --model $model --batch "$BENCH_BATCH" \
          --steps $steps --device cuda:0 | grep '^bench') || rc=1
      fi
      echo "$line"
      note "$line"
    done
  done
  # CPU, 2 Gloo ranks in one process: data-parallel step time with and without overlap.
  if [ -x "$BLD/bin/qsr-bench-dp-overlap" ]; then
    line=$(timeout 300 "$BLD/bin/qsr-bench-dp-overlap" --model resnet18 --batch 16 --threads 4 \
      --steps 5 --rounds 4 | grep '^bench') || rc=1
    echo "$line"
    note "$line"
  else
    echo "no qsr-bench-dp-overlap"
    rc=1
  fi
  return $rc
}

# ---------------------------------------------------------------------------------------------
stage_ctest() {
  (cd "$BLD" && timeout 150 ctest --output-on-failure -j "$JOBS" --timeout 120 -E 'Nccl|Cli|Training')
}

main() {
  : > "$RESULTS/summary.txt"
  run_stage env stage_env || note "environment check failed; stopping"
  if [ $FAILED -eq 0 ] && run_stage deps stage_deps && run_stage build stage_build; then
    run_stage gputest stage_gputest
    run_stage nccl stage_nccl
    [ "${SKIP_DP:-0}" = 1 ] || run_stage dp stage_dp
    [ "${SKIP_BF16:-0}" = 1 ] || run_stage bf16 stage_bf16
    [ "${SKIP_GLOO:-0}" = 1 ] || run_stage gloo stage_gloo
    [ "${SKIP_BENCH:-0}" = 1 ] || run_stage bench stage_bench
    [ "${SKIP_CTEST:-0}" = 1 ] || run_stage ctest stage_ctest
  fi

  echo
  echo "==================== summary ===================="
  cat "$RESULTS/summary.txt"
  cp -r "$RUNS/nccl" "$RESULTS/run-nccl" 2>/dev/null
  local r
  for r in dp-bucketed dp-flat bf16 fp32; do
    cp "$RUNS/$r/summary.json" "$RESULTS/run-$r-summary.json" 2>/dev/null
  done
  cp "$RUNS/gloo/summary.json" "$RESULTS/run-gloo-summary.json" 2>/dev/null
  if [ $FAILED -eq 0 ]; then echo "gpu-check: ALL PASSED"; else echo "gpu-check: SOME STAGES FAILED"; fi
  return $FAILED
}

# Sourcing the script (to run single stages by hand) defines the stages without running them.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main
  exit $?
fi
