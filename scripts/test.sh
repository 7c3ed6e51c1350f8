#!/usr/bin/env bash
# The test command: installs what is missing, checks the C++ formatting, builds, fuzzes each reader of untrusted bytes for a
# short while (scripts/fuzz.sh; DUET_FUZZ_SECONDS per target, default 60, 0 skips), and runs every
# test through ctest. Data and weights come from $DUET_SHARED or ../shared (read-only; tests write
# to temp folders).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/format.sh
bash scripts/build.sh
bash scripts/fuzz.sh --seconds "${DUET_FUZZ_SECONDS:-60}"
cd build
ctest --output-on-failure -j2 "$@"
