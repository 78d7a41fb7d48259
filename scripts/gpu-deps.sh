#!/usr/bin/env bash
# Prepares, on a Debian 12 machine with a package registry, what scripts/gpu-check.sh needs on a
# GPU machine that has CUDA, NCCL and a PyTorch wheel but no gRPC & co and no registry:
#   build-carry-gpu/debs/           Debian 12 .deb files of gRPC, Protobuf, Abseil, glog, gflags,
#                                   yaml-cpp, Gloo, GoogleTest and their runtime libraries (~15 MB)
#   build-carry-gpu/fashion-mnist/  the four Fashion-MNIST .gz files (~30 MB)
# The folder is ignored by git (build*/); copy it to the GPU machine beside the source tree.
# Usage: scripts/gpu-deps.sh [OUT_DIR]   (default build-carry-gpu; DATA_SRC overrides where the
# dataset is copied from, default /usr/share/datasets/fashion-mnist)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build-carry-gpu}
DATA_SRC=${DATA_SRC:-/usr/share/datasets/fashion-mnist}

# The -dev packages qsr compiles against, and the runtime libraries they need that an Ubuntu/CUDA
# machine is unlikely to have. Not listed on purpose (the GPU machine has its own, and a second
# copy on LD_LIBRARY_PATH could shadow them): libc, libstdc++, OpenSSL, zlib, libibverbs.
PACKAGES=(
  libgrpc++-dev libgrpc++1.51 libgrpc-dev libgrpc29 protobuf-compiler-grpc
  protobuf-compiler libprotoc32 libprotobuf-dev libprotobuf32 libprotobuf-lite32
  libabsl-dev libabsl20220623
  libgoogle-glog-dev libgoogle-glog0v6 libgflags-dev libgflags2.2 libunwind-dev libunwind8
  libyaml-cpp-dev libyaml-cpp0.7
  libgloo-dev libgloo0 libhiredis0.14
  libre2-dev libre2-9 libc-ares-dev libc-ares2
  libgtest-dev libgmock-dev
  libjpeg62-turbo-dev libjpeg62-turbo libcpp-httplib-dev libcpp-httplib0.11
)

mkdir -p "$OUT/debs" "$OUT/fashion-mnist"
if ! (cd "$OUT/debs" && apt-get download "${PACKAGES[@]}" 2>/dev/null); then
  echo "gpu-deps: apt-get download failed; running apt-get update first" >&2
  apt-get update -qq
  (cd "$OUT/debs" && apt-get download "${PACKAGES[@]}")
fi
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
         t10k-labels-idx1-ubyte.gz; do
  cp -u "$DATA_SRC/$f" "$OUT/fashion-mnist/$f"
done
du -sh "$OUT/debs" "$OUT/fashion-mnist"
echo "gpu-deps: ready in $OUT (keep it under the 64 MiB that can travel)"
