#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test through ctest.
# Data and weights come from $DUET_SHARED or ../shared (read-only; tests write to temp folders).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure -j2 "$@"
