#!/usr/bin/env bash
# bench/tune_retrieval.sh — chooses the default config's retrieval settings without touching test
# data: the fused score's unseen-class gate (--sweep fusion), the diffusion re-ranking
# (--sweep diffusion), or the bridge's weights and the graph's space (--sweep bridge). Carves a
# validation split from the train part of each Sketchy split (`duet split --from`: held-out photo
# instances for category, held-out train classes for zeroshot21), trains the default pipeline on
# it, then sweeps that family's flags over the finished runs (each point only re-scores: a few
# seconds, since a run keeps its test images' features), every other setting at duet's default.
# Prints the best points by the mean map_all of both validation splits, the choice (the best mean
# among points that lower neither split against the reference: fusion without the gate, no
# diffusion, or no bridge; retrieval must not cost seen classes what it gains on unseen ones) and
# duet's defaults; writes every point as JSON. Finished runs under OUT are reused.
#
#   bench/tune_retrieval.sh --sweep fusion|diffusion|bridge [--duet build/duet] [--out runs/val] [--json FILE]
set -euo pipefail
duet=build/duet out=runs/val json="" sweep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sweep) sweep=$2; shift 2 ;;
    --duet) duet=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "tune_retrieval.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
points=()
case "$sweep" in
  fusion)
    reference="--unseen-gate 0"
    for gate in 0.02 0.03 0.04 0.05 0.06 0.08 0.1 0.15; do
      for post in 0 0.25 0.5; do
        for profile in 2 3 4 5; do points+=("--unseen-gate $gate --unseen-post $post --unseen-profile $profile"); done
      done
    done ;;
  diffusion)
    reference="--no-diffusion"
    for k in 5 10 20; do
      for alpha in 0.9 0.95 0.99; do
        for seeds in 5 10 20 50 100; do
          for blend in 0 0.5 1; do
            points+=("--diffusion-k $k --diffusion-alpha $alpha --diffusion-seeds $seeds --diffusion-blend $blend")
          done
        done
      done
    done ;;
  bridge)
    reference="--bridge 0 --unseen-bridge 0 --graph embedding"
    for graph in embedding both bridge; do
      for seen in 0 1 3; do
        for unseen in 0 3 6; do points+=("--bridge $seen --unseen-bridge $unseen --graph $graph"); done
      done
    done ;;
  *) echo "tune_retrieval.sh: --sweep fusion, diffusion or bridge (try --help)" >&2; exit 2 ;;
esac
json=${json:-tune_$sweep.json}
data=${DUET_DATA:-${DUET_SHARED:-../shared}/data/sketchy-subset}
mkdir -p "$out"
"$duet" split --from "$data/splits/category.tsv" -o "$out/category-val.tsv" >&2
"$duet" split --from "$data/splits/zeroshot21.tsv" --zeroshot -o "$out/zeroshot21-val.tsv" >&2
for s in category-val zeroshot21-val; do
  "$duet" run --data "$data" --split "$out/$s.tsv" --out "$out" --json > /dev/null
done
# One line per point: its flags, then map_all on category-val and zeroshot21-val.
score() {
  local line="$1" m s
  for s in category-val zeroshot21-val; do
    # shellcheck disable=SC2086  # the flags are meant to split
    m=$("$duet" -q run --data "$data" --split "$out/$s.tsv" --out "$out" --json $1 |
        /usr/bin/python3 -c 'import json,sys; print(next(iter(json.load(sys.stdin)["splits"].values()))["retrieval"]["map_all"])')
    line="$line	$m"
  done
  echo "$line"
}
rows="$out/sweep-$sweep.tsv"
{ score "$reference"; score ""; } > "$rows"
n=0
for p in "${points[@]}"; do
  score "$p" >> "$rows"
  n=$((n + 1))
  [ $((n % 10)) -eq 0 ] && echo "tune_retrieval: $n/${#points[@]} points" >&2
done
/usr/bin/python3 - "$rows" "$json" <<'PY'
import json, sys
lines = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
pt = lambda f, c, z: dict(flags=f, category_val=float(c), zeroshot21_val=float(z), mean=(float(c) + float(z)) / 2)
ref, default, pts = pt(*lines[0]), pt(*lines[1]), [pt(*l) for l in lines[2:]]
pts.sort(key=lambda p: -p["mean"])
safe = [p for p in pts if p["category_val"] >= ref["category_val"] and p["zeroshot21_val"] >= ref["zeroshot21_val"]]
def show(p, name=None):
    print(f"{p['category_val']:>12.4f} {p['zeroshot21_val']:>14.4f} {p['mean']:>7.4f}  {name or p['flags']}")
print(f"{'category-val':>12} {'zeroshot21-val':>14} {'mean':>7}  flags (map_all)")
show(ref, f"reference: {ref['flags']}")
for p in pts[:10]:
    show(p)
print("chosen (best mean lowering neither split):")
for p in safe[:1]:
    show(p)
show(default, "duet's defaults")
json.dump(dict(reference=ref, defaults=default, chosen=safe[0] if safe else None, points=pts),
          open(sys.argv[2], "w"), indent=1)
print(f"wrote {sys.argv[2]}")
PY
