#!/usr/bin/env bash
# bench/tradeoff.sh — accuracy against training compute, side by side, on both splits:
# dual-phase (paper and default configs), the end-to-end siamese baseline at multiples of the
# dual-phase default's training FLOPs, HOG on edge maps and raw ImageNet features.
# Prints one table and writes JSON. Finished runs under OUT are reused, so an interrupted bench
# resumes where it stopped.
#
#   bench/tradeoff.sh [--duet build/duet] [--out runs] [--json tradeoff.json]
#                     [--multiples 1,3] [--splits category,zeroshot21]
#
# --multiples is the compute budget: the siamese baseline trains until it has spent m x the FLOPs
# of the dual-phase default run on the same split, for each m. On a 2-core CPU one x is about
# 20 minutes of siamese training per split (MobileNetV2 trains at ~25 images/s end to end).
set -euo pipefail
duet=build/duet out=runs json=tradeoff.json multiples=1,3 splits=category,zeroshot21
while [ $# -gt 0 ]; do
  case "$1" in
    --duet) duet=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    --multiples) multiples=$2; shift 2 ;;
    --splits) splits=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "tradeoff.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
data=${DUET_DATA:-${DUET_SHARED:-../shared}/data/sketchy-subset}
IFS=, read -ra split_list <<< "$splits"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Dual-phase: `duet run` resumes finished steps, so a second bench costs only the evaluation.
for split in "${split_list[@]}"; do
  for cfg in paper default; do
    "$duet" run --config "$cfg" --out "$out/$cfg" --data "$data" --split "$split" --json > "$tmp/run-$cfg-$split.json"
  done
  for b in hog raw; do
    "$duet" -q baseline "$b" --split "$data/splits/$split.tsv" --json > "$tmp/base-$b-$split.json"
  done
done
# Siamese: one training run per split, evaluated as it passes each budget (constant learning rate,
# so the 1x point of a 1,3 run is the 1x run itself).
mkdir -p "$out/siamese"
for split in "${split_list[@]}"; do
  res="$out/siamese/$split-x${multiples//,/-}.json"
  [ -s "$res" ] && continue
  budgets=$(/usr/bin/python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["splits"][sys.argv[2]]
f = (sum(p["ledger"]["flops"] for p in s["phase1"].values()) + s["phase2"]["ledger"]["flops"]) / 1e12
print(",".join(f"{float(m) * f:.3f}" for m in sys.argv[3].split(",")))
' "$tmp/run-default-$split.json" "$split" "$multiples")
  echo "siamese $split at ${multiples}x dual-phase default = $budgets TFLOPs" >&2
  "$duet" baseline siamese --split "$data/splits/$split.tsv" --budget-tflops "$budgets" --json-out "$res" >&2
done

/usr/bin/python3 - "$tmp" "$out/siamese" "$json" "$splits" "$multiples" <<'PY'
import json, sys
tmp, sdir, out = sys.argv[1], sys.argv[2], sys.argv[3]
splits, mults = sys.argv[4].split(","), sys.argv[5].split(",")
keys = ("map_all", "map@200", "p@100")
rows = []
def ledger_row(method, split, metrics, led):
    rows.append({"method": method, "split": split, **{k: metrics[k] for k in keys},
                 "train_wall_s": sum(l["wall_s"] for l in led), "train_cpu_s": sum(l["cpu_s"] for l in led),
                 "peak_mib": max(l["peak_rss_mib"] for l in led), "flops": sum(l["flops"] for l in led),
                 "image_passes": sum(l["image_forward"] + l["image_backward"] for l in led)})
for split in splits:
    for cfg in ("paper", "default"):
        s = json.load(open(f"{tmp}/run-{cfg}-{split}.json"))["splits"][split]
        ledger_row(f"dual-phase {cfg}", split, s["retrieval"],
                   [p["ledger"] for p in s["phase1"].values()] + [s["phase2"]["ledger"]])
    for m, r in zip(mults, json.load(open(f"{sdir}/{split}-x{'-'.join(mults)}.json"))):
        ledger_row(f"siamese {m}x compute", split, r, [r["ledger"]])
    for b, name in (("hog", "HOG edge maps"), ("raw", "raw MobileNetV2")):
        r = json.load(open(f"{tmp}/base-{b}-{split}.json"))
        rows.append({"method": name, "split": split, **{k: r[k] for k in keys}, "train_wall_s": 0.0,
                     "train_cpu_s": 0.0, "peak_mib": None, "flops": 0.0, "image_passes": 0})
print(f"{'method':<22} {'split':<11} {'map_all':>8} {'map@200':>8} {'p@100':>7} {'train_s':>8} {'cpu_s':>8} "
      f"{'peak_MiB':>9} {'TFLOPs':>8} {'img_passes':>10}")
for r in rows:
    peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] else "-"
    print(f"{r['method']:<22} {r['split']:<11} {r['map_all']:8.4f} {r['map@200']:8.4f} {r['p@100']:7.4f} "
          f"{r['train_wall_s']:8.1f} {r['train_cpu_s']:8.1f} {peak:>9} {r['flops'] / 1e12:8.2f} {r['image_passes']:10d}")
# The question the bench asks: how much compute does end to end need to match dual-phase?
answers = {}
for split in splits:
    dual = {r["method"]: r for r in rows if r["split"] == split and r["method"].startswith("dual-phase")}
    siam = [(float(m), r) for m, r in zip(mults, [r for r in rows if r["split"] == split and r["method"].startswith("siamese")])]
    for cfg in ("paper", "default"):
        target = dual[f"dual-phase {cfg}"]["map_all"]
        hit = next((m for m, r in siam if r["map_all"] >= target), None)
        best_m, best = max(siam, key=lambda x: x[1]["map_all"])
        answers[f"{split}/{cfg}"] = {"dual_map_all": target, "siamese_matches_at_multiple": hit,
                                     "siamese_best_map_all": best["map_all"], "siamese_best_multiple": best_m}
        print(f"{split}: dual-phase {cfg} map_all {target:.4f}; siamese "
              + (f"matches it at {hit:g}x the default's compute" if hit is not None
                 else f"does not match it within {max(m for m, _ in siam):g}x (best {best['map_all']:.4f} at {best_m:g}x)"))
json.dump({"rows": rows, "answers": answers}, open(out, "w"), indent=2)
print(f"wrote {out}")
PY
