#!/usr/bin/env bash
# bench/tune_diffusion.sh — chooses the diffusion re-ranking settings without touching test data.
# Carves a validation split from the train part of each Sketchy split (`duet split --from`: held-out
# photo instances for category, held-out train classes for zeroshot21), trains the default
# pipeline on it, then sweeps k x alpha x seeds x blend over the finished runs (each point only
# re-ranks: about 2 s). Prints the best points by the mean map_all of both validation splits, the
# choice (the best mean among points that lower neither split: re-ranking must not cost seen-class
# retrieval what it gains on unseen classes) and duet's current defaults; writes every point as
# JSON. Finished runs under OUT are reused.
#
#   bench/tune_diffusion.sh [--duet build/duet] [--out runs/val] [--json tune_diffusion.json]
set -euo pipefail
duet=build/duet out=runs/val json=tune_diffusion.json
while [ $# -gt 0 ]; do
  case "$1" in
    --duet) duet=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "tune_diffusion.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
data=${DUET_DATA:-${DUET_SHARED:-../shared}/data/sketchy-subset}
mkdir -p "$out"
"$duet" split --from "$data/splits/category.tsv" -o "$out/category-val.tsv" >&2
"$duet" split --from "$data/splits/zeroshot21.tsv" --zeroshot -o "$out/zeroshot21-val.tsv" >&2
for s in category-val zeroshot21-val; do
  "$duet" run --data "$data" --split "$out/$s.tsv" --out "$out" --json > /dev/null
done
rows="$out/sweep.tsv"
: > "$rows"
for k in 5 10 20; do
  for alpha in 0.9 0.95 0.99; do
    for seeds in 5 10 20 50 100; do
      for blend in 0 0.5 1; do
        line="$k $alpha $seeds $blend"
        for s in category-val zeroshot21-val; do
          m=$("$duet" -q run --data "$data" --split "$out/$s.tsv" --out "$out" --json --diffusion-k "$k" \
                --diffusion-alpha "$alpha" --diffusion-seeds "$seeds" --diffusion-blend "$blend" |
              /usr/bin/python3 -c 'import json,sys; s=next(iter(json.load(sys.stdin)["splits"].values())); print(s["retrieval"]["map_all"], s["retrieval_before_diffusion"]["map_all"])')
          line="$line $m"
        done
        echo "$line" >> "$rows"
      done
    done
  done
  echo "tune_diffusion: k=$k done" >&2
done
# duet's current defaults, as the pipeline reports them (a run without diffusion flags only re-ranks).
defaults=$("$duet" -q run --data "$data" --split "$out/category-val.tsv" --out "$out" --json |
  /usr/bin/python3 -c 'import json,sys; d=next(iter(json.load(sys.stdin)["splits"].values()))["diffusion"]; print(d["k"], d["alpha"], d["seeds"], d["blend"])')
/usr/bin/python3 - "$rows" "$json" $defaults <<'PY'
import json, sys
pts = []
for l in open(sys.argv[1]):
    k, a, s, b, c, c0, z, z0 = l.split()
    pts.append(dict(k=int(k), alpha=float(a), seeds=int(s), blend=float(b), category_val=float(c),
                    zeroshot21_val=float(z), mean=(float(c) + float(z)) / 2))
base = dict(category_val=float(c0), zeroshot21_val=float(z0))
pts.sort(key=lambda p: -p["mean"])
print(f"validation map_all without diffusion: category-val {base['category_val']:.4f}, zeroshot21-val {base['zeroshot21_val']:.4f}")
print(f"{'k':>3} {'alpha':>6} {'seeds':>5} {'blend':>5} | {'category-val':>12} {'zeroshot21-val':>14} {'mean':>7}")
safe = [p for p in pts if p["category_val"] >= base["category_val"] and p["zeroshot21_val"] >= base["zeroshot21_val"]]
dk, da, ds, db = map(float, sys.argv[3:7])
default = [p for p in pts if (p["k"], p["alpha"], p["seeds"], p["blend"]) == (dk, da, ds, db)]
def show(p):
    print(f"{p['k']:>3} {p['alpha']:>6} {p['seeds']:>5} {p['blend']:>5} | {p['category_val']:>12.4f} "
          f"{p['zeroshot21_val']:>14.4f} {p['mean']:>7.4f}")
for p in pts[:10]:
    show(p)
print("chosen (best mean lowering neither split):")
for p in safe[:1]:
    show(p)
print("duet's default:")
for p in default:
    show(p)
json.dump(dict(without_diffusion=base, chosen=safe[0] if safe else None, points=pts), open(sys.argv[2], "w"), indent=1)
print(f"wrote {sys.argv[2]}")
PY
