#!/usr/bin/env bash
# Installs the Debian 12 packages qsr needs to build, run and test. Idempotent; needs root (or sudo).
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config git
  libtorch-dev libopenblas0-openmp
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libgoogle-glog-dev libgflags-dev libgtest-dev libgmock-dev
  libgloo-dev libyaml-cpp-dev zlib1g-dev
  dataset-fashion-mnist
  python3-torch python3-yaml gnuplot-nox
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "[install-deps] installing: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# LibTorch calls libblas.so.3; the netlib reference BLAS is ~30x slower than OpenBLAS.
if command -v update-alternatives >/dev/null; then
  alt=$(update-alternatives --list libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep openblas | head -1 || true)
  [ -n "$alt" ] && ${SUDO:-} update-alternatives --set libblas.so.3-x86_64-linux-gnu "$alt" >/dev/null || true
fi
echo "[install-deps] ok"
