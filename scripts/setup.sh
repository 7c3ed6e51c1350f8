#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds, and runs the full dual-phase
# pipeline on the default dataset (the shared Sketchy subset), writing runs/default/metrics.json.
# Extra arguments go to `duet run` (e.g. --split category, --config paper, --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
exec ./build/duet run --out runs/default "$@"
