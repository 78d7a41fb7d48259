#!/usr/bin/env bash
# `cmake --install` puts the five binaries in PREFIX/bin and they run from there; `cpack -G DEB`
# makes a .deb holding them under /usr/bin whose Depends names the Debian libraries they link.
# Usage: install_package_test.sh BUILD_DIR. Everything goes to a temporary folder, removed on exit.
set -euo pipefail
BUILD=$1
WORK=$(mktemp -d /tmp/qsr-install.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "install_package_test: FAIL: $*" >&2; exit 1; }
timeout 300 cmake --install "$BUILD" --prefix "$WORK/prefix" > "$WORK/install.log" ||
  fail "cmake --install: $(cat "$WORK/install.log")"
for b in qsr-coordinator qsr-worker qsr-agent qsrctl qsr-run; do
  [ -x "$WORK/prefix/bin/$b" ] || fail "no $b in PREFIX/bin"
done
"$WORK/prefix/bin/qsr-run" --help > "$WORK/help.txt" || fail "the installed qsr-run --help"
grep -q -- "--nproc-per-node" "$WORK/help.txt" || fail "the installed qsr-run's --help"
(cd "$BUILD" && timeout 300 cpack -G DEB -B "$WORK/deb" > "$WORK/cpack.log" 2>&1) ||
  fail "cpack: $(cat "$WORK/cpack.log")"
DEB=$(ls "$WORK"/deb/qsr_*.deb) || fail "cpack made no qsr_*.deb"
dpkg-deb -c "$DEB" > "$WORK/contents.txt"
grep -q " ./usr/bin/qsr-run$" "$WORK/contents.txt" || fail "the package has no /usr/bin/qsr-run"
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
for lib in libgrpc++ libprotobuf libyaml-cpp libgoogle-glog libtorch; do
  grep -q "$lib" <<< "$DEPENDS" || fail "Depends lacks $lib: $DEPENDS"
done
echo "install_package_test: PASS: $(basename "$DEB"), Depends: $DEPENDS"
