#!/usr/bin/env bash
# Installs the Debian 12 packages duet builds, tests and runs with. Idempotent: does nothing when
# everything is already there. Needs root (or sudo) and Debian's package registry.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(cmake g++ make ccache pkg-config
      libtorch-dev libopenblas-dev libopenblas0-openmp libopencv-dev libfaiss-dev
      libcli11-dev nlohmann-json3-dev libflatbuffers-dev flatbuffers-compiler
      libgtest-dev libbenchmark-dev python3 python3-numpy python3-opencv
      libcpp-httplib-dev libgloo-dev libjs-chart.js chromium
      clang-14 libclang-rt-14-dev   # libFuzzer and the sanitizers' runtimes (scripts/fuzz.sh)
      clang-format-14)              # scripts/format.sh
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
blas_alternatives() {
  # LibTorch must use OpenBLAS, not the reference BLAS (about 40x slower matrix products), and
  # its OpenMP build, so that BLAS and LibTorch share one thread pool instead of fighting.
  local name lib
  for name in libblas.so.3 libopenblas.so.0; do
    lib=/usr/lib/x86_64-linux-gnu/openblas-openmp/$name
    [ -e "$lib" ] || continue
    update-alternatives --query "$name-x86_64-linux-gnu" 2>/dev/null | grep -q "^Value: $lib" ||
      $SUDO update-alternatives --set "$name-x86_64-linux-gnu" "$lib" >/dev/null
  done
}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
# Node.js and npm drive the browser test; a machine with its own Node.js (e.g. NodeSource's,
# which bundles npm) keeps it, since Debian's npm package would conflict with it.
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#pkgs[@]} packages present"
else
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
blas_alternatives
# playwright-core for tests/browser, at the version package-lock.json pins (no browser download:
# the test drives Debian's chromium).
browser=tests/browser
if [ ! -f "$browser/node_modules/playwright-core/package.json" ] ||
   [ "$browser/package-lock.json" -nt "$browser/node_modules/.package-lock.json" ]; then
  echo "deps: npm ci in $browser"
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
