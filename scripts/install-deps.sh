#!/usr/bin/env bash
# Installs the Debian 12 packages qsr needs to build, run and test. Idempotent; needs root (or sudo).
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config git
  libtorch-dev libopenblas0-openmp
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libgoogle-glog-dev libgflags-dev libgtest-dev libgmock-dev
  libgloo-dev libyaml-cpp-dev zlib1g-dev libjpeg62-turbo-dev
  dataset-fashion-mnist
  python3-torch python3-torchvision python3-yaml python3-pil gnuplot-nox
  iproute2 bc
  libcpp-httplib-dev
  openssl clang libclang-rt-14-dev
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
# deploy/check.sh and the reflection test: kubectl (its kustomize renders deploy/k8s),
# Node.js, and the npm packages in deploy/tools (Kubernetes schemas, a YAML parser, a gRPC
# reflection client). QSR_DEPLOY_TOOLS=0 skips this (the container build does).
if [ "${QSR_DEPLOY_TOOLS:-1}" != 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  tools=()
  command -v node >/dev/null && command -v npm >/dev/null || tools+=(nodejs npm)
  # This machine kind ships kubectl (with kustomize v5); Debian's kubernetes-client is older
  # (kustomize v2) and only a fallback.
  command -v kubectl >/dev/null || tools+=(kubernetes-client)
  if ((${#tools[@]})); then
    echo "[install-deps] installing: ${tools[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${tools[@]}"
  fi
  # deploy/check.sh needs kustomize v4 or later (components, includeTemplates) and stops without.
  kv=$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\{0,1\}//p')
  if ! [[ "${kv%%.*}" =~ ^[0-9]+$ ]] || [ "${kv%%.*}" -lt 4 ]; then
    echo "[install-deps] kubectl's kustomize is '${kv:-unknown}', v4 or later is needed:" \
         "deploy_check fails until a newer kubectl is on PATH" >&2
    # CI (strict mode) must not go on without it.
    if [ "${CI:-}" = true ] || [ "${QSR_STRICT:-0}" = 1 ]; then exit 1; fi
  fi
  TOOLS_DIR="$(cd "$(dirname "$0")/.." && pwd)/deploy/tools"
  stamp="$TOOLS_DIR/node_modules/.qsr-lock.sha256"
  want=$(sha256sum "$TOOLS_DIR/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[install-deps] npm ci in deploy/tools"
    if (cd "$TOOLS_DIR" && npm ci --no-audit --no-fund --loglevel=error); then
      echo "$want" > "$stamp"
    else
      echo "[install-deps] npm ci in deploy/tools failed: deploy_check and reflection_test" \
           "need its packages" >&2
      exit 1
    fi
  fi
fi
echo "[install-deps] ok"
