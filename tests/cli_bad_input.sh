#!/usr/bin/env bash
# Bad input to the duet binary: each case must exit non-zero with one clear "duet: error" line
# (or a usage error), never a crash (exit >= 128) and never a result on stdout.
set -u
duet=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0

# expect CODE PATTERN -- command...
expect() {
  local want=$1 pattern=$2
  shift 3
  local out err rc
  out=$("$@" 2>"$tmp/err")
  rc=$?
  err=$(cat "$tmp/err")
  if [ "$rc" -ne "$want" ] || ! grep -q -- "$pattern" <<<"$err" || [ -n "$out" ]; then
    echo "FAIL: $* -> rc=$rc (want $want), stderr: $err, stdout: $out"
    fails=$((fails + 1))
  else
    passes=$((passes + 1))
  fi
}

python3 - "$tmp" <<'PY'
import struct, sys
d = sys.argv[1]
def npy(path, rows, cols, descr="<f4"):
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }" % (descr, rows, cols)
    hdr += " " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + "\n"
    size = 4 if descr == "<f4" else 8
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + bytes(rows * cols * size))
npy(f"{d}/q4.npy", 3, 4)
npy(f"{d}/g4.npy", 5, 4)
npy(f"{d}/g8.npy", 5, 8)
npy(f"{d}/f8.npy", 3, 4, "<f8")
open(f"{d}/ql.txt", "w").write("a\nb\nc\n")
open(f"{d}/gl.txt", "w").write("a\nb\nc\na\nb\n")
open(f"{d}/gl_short.txt", "w").write("a\nb\n")
open(f"{d}/junk.npy", "w").write("not numpy")
PY

e="$duet eval --query-labels $tmp/ql.txt --gallery-labels $tmp/gl.txt"
expect 1 "same embedding space" -- $e --query-emb "$tmp/q4.npy" --gallery-emb "$tmp/g8.npy"
expect 1 "labels for 5 gallery rows" -- $duet eval --query-emb "$tmp/q4.npy" --query-labels "$tmp/ql.txt" --gallery-emb "$tmp/g4.npy" --gallery-labels "$tmp/gl_short.txt"
expect 1 "float32" -- $e --query-emb "$tmp/f8.npy" --gallery-emb "$tmp/g4.npy"
expect 1 "not a .npy file" -- $e --query-emb "$tmp/junk.npy" --gallery-emb "$tmp/g4.npy"
expect 1 "manifest" -- $duet eval --query-emb "$tmp/q4.npy" --gallery-emb "$tmp/g4.npy"
expect 2 "metric" -- $e --query-emb "$tmp/q4.npy" --gallery-emb "$tmp/g4.npy" --metric manhattan
expect 2 "" -- $duet eval --query-emb "$tmp/nope.npy" --gallery-emb "$tmp/g4.npy"
expect 2 "" -- $duet frobnicate
expect 2 "" -- $duet eval --bogus-flag
expect 1 "no such dataset folder\|does not exist\|Directory" -- $duet embed --data "$tmp/none" --domain photo -o "$tmp/x.npy"
mkdir -p "$tmp/ds/photo/cat"
echo "garbage" > "$tmp/ds/photo/cat/a.jpg"
expect 1 "a.jpg" -- $duet embed --backbone mobilenet_v1_025 --data "$tmp/ds" --domain photo -o "$tmp/x.npy"
expect 1 "no sketch images" -- $duet embed --backbone mobilenet_v1_025 --data "$tmp/ds" --domain sketch -o "$tmp/x.npy"
expect 1 "no such weights file" -- $duet classify --weights "$tmp/none.tflite" "$tmp/ds/photo/cat/a.jpg"
expect 1 "not a TorchScript file" -- $duet classify --weights "$tmp/gl.txt" "$tmp/ds/photo/cat/a.jpg"
expect 1 "belong to the default config" -- $duet run --config paper --diffusion-seeds 5 --out "$tmp/run"
expect 2 "diffusion-alpha" -- $duet run --diffusion-alpha 1 --out "$tmp/run"
expect 1 "belong to the default config" -- $duet run --config paper --unseen-gate 0.1 --out "$tmp/run"
expect 2 "unseen-profile" -- $duet run --unseen-profile -1 --out "$tmp/run"
expect 2 "photo-power" -- $duet run --photo-power 0 --out "$tmp/run"
expect 2 "preserve-source" -- $duet run --preserve-source -1 --out "$tmp/run"
expect 2 "distill" -- $duet run --distill -1 --out "$tmp/run"
expect 1 "no such split file" -- $duet run --split "$tmp/none.tsv" --out "$tmp/run"
expect 1 "with --from" -- $duet split -o "$tmp/s.tsv"

# Image limits on every path that reads images (classify, embed, run; index, search and serve in
# their own tests): the pixel cap from the header, DUET_MAX_PIXELS, the file-size cap, formats
# duet does not read.
w=${DUET_SHARED:-$(dirname "$0")/../../shared}/weights
expect 1 "cat.bmp: a BMP of .* larger than the limit of 1000 " -- env DUET_MAX_PIXELS=1000 $duet classify "$w/cat.bmp"
expect 1 "DUET_MAX_PIXELS: 'lots' is not" -- env DUET_MAX_PIXELS=lots $duet classify "$w/cat.bmp"
head -c 2000000 /dev/zero > "$tmp/big.png"
expect 1 "big.png: a file of 2000000 bytes" -- env DUET_MAX_PIXELS=100 $duet classify "$tmp/big.png"
printf 'P6\n100000 100000\n255\n' > "$tmp/bomb.ppm"
expect 1 "bomb.ppm: cannot decode image: not a format duet reads" -- $duet classify "$tmp/bomb.ppm"
for c in cat dog; do
  mkdir -p "$tmp/bombs/photo/$c" "$tmp/bombs/sketch/$c"
  cp "$w/parrot.jpg" "$tmp/bombs/photo/$c/p.jpg"
  cp "$w/bird.bmp" "$tmp/bombs/sketch/$c/p-1.bmp"
done
expect 1 "p.jpg: a JPEG of .* larger than the limit of 5000" -- env DUET_MAX_PIXELS=5000 $duet embed --backbone mobilenet_v1_025 --data "$tmp/bombs" --domain photo -o "$tmp/x.npy"
$duet split --data "$tmp/bombs" --test-fraction 0.5 -o "$tmp/bombs.tsv" >/dev/null 2>&1
expect 1 "p-1.bmp: a BMP of .* larger than the limit of 5000" -- env DUET_MAX_PIXELS=5000 $duet run --data "$tmp/bombs" --split "$tmp/bombs.tsv" --out "$tmp/run"

[ ! -e "$tmp/x.npy" ] || { echo "FAIL: a failed embed left $tmp/x.npy behind"; fails=$((fails + 1)); }

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
