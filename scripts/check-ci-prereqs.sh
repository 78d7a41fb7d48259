#!/usr/bin/env bash
# Strict CI's first step (scripts/test.sh runs it when CI=true or QSR_STRICT=1): everything the
# test suite needs is installed, so that no test can pass by skipping or being compiled out.
# Names the first missing piece and exits 1; prints "ok" and exits 0 otherwise.
# QSR_CHECK_FASHION_MNIST_DIR overrides the data set's directory for this check only (to see the
# check fail without removing the package); the tests themselves read the packaged path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
fail() { echo "[strict] MISSING: $*" >&2; exit 1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

fm_dir="${QSR_CHECK_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
installed dataset-fashion-mnist || fail "dataset-fashion-mnist (Debian package) is not installed"
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz \
         t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
  [ -s "$fm_dir/$f" ] || fail "dataset-fashion-mnist: $fm_dir/$f is absent or empty"
done
installed libcpp-httplib-dev || fail "libcpp-httplib-dev (Debian package) is not installed"
installed python3-pil || fail "python3-pil (Debian package) is not installed (RandAugment's reference)"
command -v node >/dev/null || fail "node (Node.js) is not on PATH"
command -v npm >/dev/null || fail "npm is not on PATH"
command -v kubectl >/dev/null || fail "kubectl is not on PATH (deploy_check renders deploy/k8s with it)"
kv=$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\{0,1\}//p')
major="${kv%%.*}"
[[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -ge 4 ] ||
  fail "kubectl's kustomize is '${kv:-unknown}', v4 or later is needed"
stamp="$root/deploy/tools/node_modules/.qsr-lock.sha256"
want=$(sha256sum "$root/deploy/tools/package-lock.json" | cut -d' ' -f1)
[ "$(cat "$stamp" 2>/dev/null)" = "$want" ] ||
  fail "deploy/tools/node_modules is not installed from package-lock.json (scripts/install-deps.sh runs npm ci)"
echo "[strict] ok: dataset-fashion-mnist, libcpp-httplib-dev, python3-pil, node, npm, kubectl (kustomize v$kv), deploy/tools/node_modules"
