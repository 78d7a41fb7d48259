#!/usr/bin/env bash
# The main job from a fresh Debian 12 machine: install what is missing, build, and train the `cnn`
# on Fashion-MNIST with Local SGD + QSR using a coordinator and two workers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
exec build/bin/qsr-run --workers 2 --recipe recipes/fashion-mnist/cnn-localsgd-qsr.yaml "$@"
