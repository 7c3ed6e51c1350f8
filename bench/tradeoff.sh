#!/usr/bin/env bash
# bench/tradeoff.sh — accuracy against training compute, side by side, on both splits:
# dual-phase (paper and default configs), HOG on edge maps, raw ImageNet features.
# Prints one table and writes JSON. Finished `duet run` outputs under OUT are reused (resume).
#   bench/tradeoff.sh [build/duet] [OUT=runs] [tradeoff.json]
# Not yet here (issue #5): the end-to-end Siamese/triplet baseline at several compute budgets.
set -euo pipefail
duet=${1:-build/duet} out=${2:-runs} json=${3:-tradeoff.json}
splits_dir=${DUET_DATA:-}
if [ -z "$splits_dir" ]; then
  shared=${DUET_SHARED:-../shared}
  splits_dir=$shared/data/sketchy-subset
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for cfg in paper default; do
  "$duet" run --config "$cfg" --out "$out/$cfg" --data "$splits_dir" --json > "$tmp/run-$cfg.json"
done
for split in category zeroshot21; do
  for b in hog raw; do
    "$duet" -q baseline "$b" --split "$splits_dir/splits/$split.tsv" --json > "$tmp/base-$b-$split.json"
  done
done
/usr/bin/python3 - "$tmp" "$json" <<'PY'
import json, sys
tmp, out = sys.argv[1], sys.argv[2]
rows = []
for cfg in ("paper", "default"):
    m = json.load(open(f"{tmp}/run-{cfg}.json"))
    for split, s in m["splits"].items():
        led = [s["phase1_sketch"]["ledger"], s["phase1_photo"]["ledger"], s["phase2"]["ledger"]]
        rows.append({"method": f"dual-phase {cfg}", "split": split, **{k: s["retrieval"][k] for k in ("map_all", "map@200", "p@100")},
                     "train_wall_s": sum(l["wall_s"] for l in led), "train_cpu_s": sum(l["cpu_s"] for l in led),
                     "peak_mib": max(l["peak_rss_mib"] for l in led), "flops": sum(l["flops"] for l in led)})
for split in ("category", "zeroshot21"):
    for b, name in (("hog", "HOG edge maps"), ("raw", "raw MobileNetV2")):
        r = json.load(open(f"{tmp}/base-{b}-{split}.json"))
        rows.append({"method": name, "split": split, **{k: r[k] for k in ("map_all", "map@200", "p@100")},
                     "train_wall_s": 0.0, "train_cpu_s": 0.0, "peak_mib": None, "flops": 0.0})
print(f"{'method':<20} {'split':<11} {'map_all':>8} {'map@200':>8} {'p@100':>7} {'train_s':>8} {'cpu_s':>8} {'peak_MiB':>9} {'TFLOPs':>8}")
for r in rows:
    peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] else "-"
    print(f"{r['method']:<20} {r['split']:<11} {r['map_all']:8.4f} {r['map@200']:8.4f} {r['p@100']:7.4f} "
          f"{r['train_wall_s']:8.1f} {r['train_cpu_s']:8.1f} {peak:>9} {r['flops'] / 1e12:8.2f}")
json.dump({"rows": rows}, open(out, "w"), indent=2)
print(f"wrote {out}")
PY
