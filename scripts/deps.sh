#!/usr/bin/env bash
# Installs the Debian 12 packages duet builds, tests and runs with. Idempotent: does nothing when
# everything is already there. Needs root (or sudo) and Debian's package registry.
set -euo pipefail
pkgs=(cmake g++ make ccache pkg-config
      libtorch-dev libopenblas-dev libopenblas0-openmp libopencv-dev libfaiss-dev
      libcli11-dev nlohmann-json3-dev libflatbuffers-dev flatbuffers-compiler
      libgtest-dev libbenchmark-dev python3 python3-numpy)
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
if [ ${#missing[@]} -eq 0 ]; then
  blas_alternatives
  echo "deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
blas_alternatives
