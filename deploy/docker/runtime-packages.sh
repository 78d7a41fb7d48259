#!/usr/bin/env bash
# Prints the Debian packages that provide the shared libraries the given binaries load, one per
# line, so that a runtime image installs exactly those (and no -dev package). Fails, naming the
# library, when one is missing or belongs to no package.
# Usage: runtime-packages.sh BINARY...
# RUNTIME_PACKAGES_SKIP: colon-separated path prefixes whose libraries come with the image by
# other means (a PyTorch wheel, the CUDA base image), not from packages.
set -euo pipefail
out=$(ldd "$@")
# The GPU driver's libraries (libcuda, libnvidia-*) are not in any image: the NVIDIA container
# runtime mounts them when the container starts.
missing=$(awk '/not found/ {print $1}' <<<"$out" | grep -vE '^lib(cuda|nvidia-)' | sort -u || true)
if [ -n "$missing" ]; then
  echo "runtime-packages: libraries not found: $missing" >&2
  exit 1
fi
mapfile -t all < <(awk '$2 == "=>" && $3 ~ /^\// {print $3}' <<<"$out" | sort -u)
libs=()
IFS=: read -r -a skip <<<"${RUNTIME_PACKAGES_SKIP:-}"
for lib in "${all[@]}"; do
  keep=1
  for prefix in "${skip[@]}"; do
    if [ -n "$prefix" ] && [[ $lib == "$prefix"* || $(readlink -f "$lib") == "$prefix"* ]]; then
      keep=0
    fi
  done
  [ $keep -eq 1 ] && libs+=("$lib")
done
# Debian 12 is merged-/usr: dpkg may know a library under /lib or /usr/lib, or only the file a
# link points to (alternatives such as libblas.so.3). Ask once for every spelling.
declare -A owner
candidates=()
for lib in "${libs[@]}"; do
  candidates+=("$lib" "$(readlink -f "$lib")" "/usr${lib#/usr}" "${lib#/usr}")
done
while IFS= read -r line; do
  pkg=${line%%: *}
  path=${line#*: }
  owner[$path]=${pkg%%:*}  # drop the architecture qualifier (libc6:amd64)
done < <(dpkg-query -S "${candidates[@]}" 2>/dev/null || true)
for lib in "${libs[@]}"; do
  pkg=""
  for path in "$lib" "$(readlink -f "$lib")" "/usr${lib#/usr}" "${lib#/usr}"; do
    if [ -n "${owner[$path]:-}" ]; then pkg=${owner[$path]}; break; fi
  done
  if [ -z "$pkg" ]; then
    echo "runtime-packages: no Debian package owns $lib" >&2
    exit 1
  fi
  echo "$pkg"
done | sort -u
