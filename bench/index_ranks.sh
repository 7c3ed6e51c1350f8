#!/usr/bin/env bash
# bench/index_ranks.sh — `duet index` throughput with 1, 2, ... data-parallel ranks on this machine
# (--nproc N: N local workers that split the cores), each a fresh build of the same folder, side by
# side in one run; checks that every rank count writes the same index, byte for byte.
# Prints one table and writes JSON.
#
#   bench/index_ranks.sh --model DIR --images DIR [--ranks 1,2] [--duet build/duet] [--json index_ranks.json]
set -euo pipefail
duet=build/duet json=index_ranks.json ranks=1,2 model="" images=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --images) images=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --duet) duet=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "index_ranks.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[ -n "$model" ] && [ -n "$images" ] || { echo "index_ranks.sh: give --model and --images (try --help)" >&2; exit 2; }
IFS=, read -ra rank_list <<< "$ranks"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rows=()
for n in "${rank_list[@]}"; do
  start=$(date +%s.%N)
  "$duet" -q index --model "$model" --images "$images" -o "$tmp/r$n.idx" --nproc "$n" --json > "$tmp/r$n.json"
  end=$(date +%s.%N)
  rows+=("$n $(python3 -c "import json; print(json.load(open('$tmp/r$n.json'))['embedded'])") $start $end")
done
first=${rank_list[0]}
printf '%s\n' "${rows[@]}" | python3 -c "
import json, sys, filecmp
rows = []
for line in sys.stdin:
    n, images, start, end = line.split()
    wall = float(end) - float(start)
    same = filecmp.cmp('$tmp/r$first.idx', '$tmp/r' + n + '.idx', shallow=False)
    rows.append({'ranks': int(n), 'images': int(images), 'wall_s': round(float(wall), 2),
                 'images_per_s': round(int(images) / float(wall), 1), 'same_index': same})
print(f\"{'ranks':>5} {'images':>7} {'wall_s':>8} {'images/s':>9} {'same index':>11}\")
for r in rows:
    print(f\"{r['ranks']:>5} {r['images']:>7} {r['wall_s']:>8.2f} {r['images_per_s']:>9.1f} {str(r['same_index']):>11}\")
json.dump({'model': '$model', 'images': '$images', 'cores': $(nproc), 'rows': rows}, open('$json', 'w'), indent=2)
"
echo "wrote $json"
