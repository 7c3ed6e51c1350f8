#!/usr/bin/env bash
# bench/eval_scale.sh — `duet eval` at scale: Q queries x G gallery items in D dims (default
# 10,000 x 100,000 x 512, 100 classes), random data. Prints wall time and peak memory, writes JSON.
#   bench/eval_scale.sh [build/duet] [Q] [G] [D] [out.json]
set -euo pipefail
duet=${1:-build/duet} q=${2:-10000} g=${3:-100000} d=${4:-512} out=${5:-eval_scale.json}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$tmp" "$q" "$g" "$d" <<'PY'
import sys, numpy as np
tmp, q, g, d = sys.argv[1], *map(int, sys.argv[2:])
rng = np.random.default_rng(0)
for name, n in (("q", q), ("g", g)):
    np.save(f"{tmp}/{name}.npy", rng.standard_normal((n, d), dtype=np.float32))
    with open(f"{tmp}/{name}.txt", "w") as f:
        f.write("\n".join(f"c{x}" for x in rng.integers(0, 100, n)) + "\n")
PY
for metric in cosine euclidean; do
  /usr/bin/time -f "%e %M" -o "$tmp/time" "$duet" -q eval --query-emb "$tmp/q.npy" --query-labels "$tmp/q.txt" \
    --gallery-emb "$tmp/g.npy" --gallery-labels "$tmp/g.txt" --metric "$metric" --json > "$tmp/$metric.json"
  read -r wall kb < "$tmp/time"
  echo "$metric $wall $kb" >> "$tmp/rows"
done
printf "%-10s %8s %8s %10s %12s %10s\n" metric queries gallery dims wall_s peak_MiB
while read -r m w kb; do printf "%-10s %8d %8d %10d %12.1f %10.0f\n" "$m" "$q" "$g" "$d" "$w" "$((kb / 1024))"; done < "$tmp/rows"
/usr/bin/python3 - "$tmp" "$q" "$g" "$d" "$out" <<'PY'
import json, sys
tmp, q, g, d, out = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5]
rows = []
for line in open(f"{tmp}/rows"):
    m, w, kb = line.split()
    rows.append({"metric": m, "queries": q, "gallery": g, "dims": d, "wall_s": float(w),
                 "peak_mib": int(kb) / 1024, "result": json.load(open(f"{tmp}/{m}.json"))})
json.dump({"rows": rows}, open(out, "w"), indent=2)
print(f"wrote {out}")
PY
