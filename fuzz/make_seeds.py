#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, from real files: what duet's writers and OpenCV's encoders
produce, and images of the shared folder. Written under OUT/<target>/; nothing here is committed.

Usage: make_seeds.py path/to/duet SHARED OUT
  image           ../shared/weights' BMPs and JPEG, Sketchy sketches (PNG) and photos (JPEG), and
                  small images OpenCV writes in every form duet decodes: PNG (grey, RGB, RGBA,
                  16-bit), JPEG (baseline, progressive, EXIF-rotated), BMP (8- and 24-bit), WebP
                  (lossy, lossless, lossy with alpha)
  model           a `duet run --quick` model's manifest, encoder, bridge and backbone, small
                  encoders and mappers of `duet train-encoder` and `train-mapper`, each behind its
                  reader's byte (fuzz_model.cpp); OUT/model-folder is the folder DUET_FUZZ_MODEL names
  gallery         `duet index` of a few Sketchy photos with that model, and its two `duet shard`s
  search_request  raw HTTP requests for /api/search: GET ?like, POST of an image, multipart,
                  chunked, and some the handler refuses
Without the shared folder only the generated images and the requests are written.
"""
import glob
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import cv2
import numpy as np

duet, shared, out = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
data = os.path.join(shared, "data", "sketchy-subset")


def put(target, name, blob):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(blob)


def encode(ext, img, params=()):
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok, ext
    return buf.tobytes()


def with_exif_orientation(jpeg, orientation):
    """The JPEG with an APP1 Exif segment (little-endian TIFF, one IFD entry: Orientation) after SOI."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + \
        struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


# --- images ----------------------------------------------------------------------------------
drawing = np.full((24, 40, 3), 255, np.uint8)  # a small sketch: dark strokes on white
cv2.line(drawing, (4, 20), (30, 3), (0, 0, 0), 2)
cv2.circle(drawing, (28, 14), 6, (40, 40, 200), 1)
rgba = np.zeros((24, 40, 4), np.uint8)  # strokes on a transparent background, half-transparent ones
rgba[..., 3] = 0
cv2.line(rgba, (4, 20), (30, 3), (0, 0, 0, 255), 2)
cv2.line(rgba, (2, 2), (38, 22), (0, 0, 255, 128), 1)
grey = cv2.cvtColor(drawing, cv2.COLOR_BGR2GRAY)
seeds = {
    "grey.png": encode(".png", grey),
    "rgb.png": encode(".png", drawing),
    "rgba.png": encode(".png", rgba),
    "rgb16.png": encode(".png", drawing.astype(np.uint16) * 257),
    "uncompressed.png": encode(".png", drawing, [cv2.IMWRITE_PNG_COMPRESSION, 0]),
    "baseline.jpg": encode(".jpg", drawing, [cv2.IMWRITE_JPEG_QUALITY, 80]),
    "progressive.jpg": encode(".jpg", drawing, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    "grey.jpg": encode(".jpg", grey),
    "rgb.bmp": encode(".bmp", drawing),
    "grey.bmp": encode(".bmp", grey),
    "lossy.webp": encode(".webp", drawing, [cv2.IMWRITE_WEBP_QUALITY, 80]),
    "lossless.webp": encode(".webp", drawing, [cv2.IMWRITE_WEBP_QUALITY, 101]),
    "alpha.webp": encode(".webp", rgba, [cv2.IMWRITE_WEBP_QUALITY, 80]),
    "alpha-lossless.webp": encode(".webp", rgba, [cv2.IMWRITE_WEBP_QUALITY, 101]),
}
seeds["exif-rotated.jpg"] = with_exif_orientation(seeds["baseline.jpg"], 6)
for name, blob in seeds.items():
    put("image", name, blob)
for name in ("cat.bmp", "bird.bmp", "parrot.jpg"):
    path = os.path.join(shared, "weights", name)
    if os.path.isfile(path):
        put("image", name, open(path, "rb").read())
for domain in ("sketch", "photo"):
    for cls in sorted(glob.glob(os.path.join(data, domain, "*")))[:3]:
        first = sorted(os.listdir(cls))[0]
        put("image", f"{domain}-{os.path.basename(cls)}-{first}", open(os.path.join(cls, first), "rb").read())

# --- HTTP requests ---------------------------------------------------------------------------
png = seeds["rgb.png"]


def request(method, target, headers=(), body=b""):
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode() + b"\r\n" + body


def multipart(boundary, parts):
    body = b""
    for name, filename, ctype, content in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        body += (f"Content-Type: {ctype}\r\n" if ctype else "").encode() + b"\r\n" + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


form = multipart("duetB0undary", [("query", "q.png", "image/png", png), ("k", None, None, b"7"),
                                  ("domain", None, None, b"sketch")])
chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (png[:40], png[40:])) + b"0\r\n\r\n"
requests = {
    "like.http": request("GET", "/api/search?like=3&k=5"),
    "like-range.http": request("GET", "/api/search?like=50&k=1001"),
    "get-no-like.http": request("GET", "/api/search?k=3&domain=sketch"),
    "png.http": request("POST", "/api/search?k=10&domain=sketch",
                        [("Content-Type", "image/png"), ("Content-Length", len(png))], png),
    "octet.http": request("POST", "/api/search", [("Content-Type", "application/octet-stream"),
                                                  ("Content-Length", len(png))], png),
    "multipart.http": request("POST", "/api/search", [("Content-Type", "multipart/form-data; boundary=duetB0undary"),
                                                      ("Content-Length", len(form))], form),
    "chunked.http": request("POST", "/api/search?k=2", [("Content-Type", "image/png"),
                                                        ("Transfer-Encoding", "chunked")], chunked),
    "text.http": request("POST", "/api/search", [("Content-Type", "text/plain"), ("Content-Length", 5)], b"hello"),
    "no-length.http": request("POST", "/api/search", [("Content-Type", "image/png")], png),
    "empty.http": request("POST", "/api/search?k=0", [("Content-Type", "image/png"), ("Content-Length", 0)]),
    "keepalive.http": request("GET", "/api/search?like=0", [("Connection", "keep-alive")]) +
    request("GET", "/api/search?like=1"),
}
for name, blob in requests.items():
    put("search_request", name, blob)

# --- a model folder and a gallery index, from the duet binary ------------------------------------
if not os.path.isdir(data):
    print(f"make_seeds: no {data}: model and gallery seeds skipped", file=sys.stderr)
    sys.exit(0)
env = dict(os.environ, DUET_SHARED=shared)


def run(args):
    r = subprocess.run([duet, "-q"] + args, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"make_seeds: duet {' '.join(args)} failed:\n{r.stderr[-2000:]}")


def fnv1a(blob):
    h = 1469598103934665603
    for c in blob:
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def model_hash(manifest):
    """duet's model hash (model.cpp): fnv1a of the manifest without "hash", as nlohmann's compact
    dump writes it (keys sorted, no spaces, UTF-8)."""
    rest = {k: v for k, v in manifest.items() if k != "hash"}
    return "%016x" % fnv1a(json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())


work = tempfile.mkdtemp(prefix="duet-seeds-")
try:
    # A real model folder: `duet run --quick` of 2 classes, with a bridge and a graph over both spaces.
    run(["run", "--quick", "--max-classes", "2", "--split", "category", "--bridge", "0.1", "--graph", "both",
         "--out", os.path.join(work, "run")])
    quick = os.path.join(work, "run", "category", "model")
    # Small encoder and mapper files from the same commands (`duet train-encoder`, `train-mapper`)
    # on a few images of those classes: 10 KB where the quick model's are 1.5 and 9 MB.
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(data, "splits", "category.tsv"))][1:]
    classes = sorted({r[2] for r in rows})[:2]
    tiny = [r for d in ("sketch", "photo") for c in classes
            for r in [x for x in rows if x[0] == d and x[2] == c and x[3] == "train"][:3] +
            [x for x in rows if x[0] == d and x[2] == c and x[3] == "test"][:1]]
    split = os.path.join(work, "tiny.tsv")
    with open(split, "w") as f:
        f.write("domain\tpath\tclass\tsplit\n" + "".join("\t".join(r) + "\n" for r in tiny))
    small = {}
    for domain, stages in (("sketch", 0), ("photo", 0), ("sketch", 1)):
        name = f"{domain}.{stages}.pt"
        run(["train-encoder", "--backbone", "mobilenet_v1_025", "--split", split, "--data", data, "--domain", domain,
             "--hidden", "8", "--frozen-epochs", "1", "--finetune-epochs", str(stages), "--finetune-stages",
             str(stages), "--views", "1", "-o", os.path.join(work, name), "--emb-out", os.path.join(work, f"{name}.npy")])
        small[name] = os.path.join(work, name)
    for name, extra in (("mapper.pt", []), ("mapper-shared.pt", ["--shared", "--normalize", "--loss", "triplet"])):
        run(["train-mapper", "--query-emb", small["sketch.0.pt"] + ".npy", "--gallery-emb",
             small["photo.0.pt"] + ".npy", "--hidden", "8", "--code", "4", "--epochs", "1", "-o",
             os.path.join(work, name)] + extra)
        small[name] = os.path.join(work, name)
    # The folder DUET_FUZZ_MODEL names: the quick model with small files in place of its large ones
    # (no bridge), and its manifest rewritten to match (sizes, hashes, model hash): a manifest's
    # files are read and hashed per input, and small ones keep the fuzzer fast. Only when this
    # script's hash reproduces duet's on the quick manifest; else the quick folder as it is.
    model = os.path.join(out, "model-folder")
    shutil.rmtree(model, ignore_errors=True)
    manifest = json.load(open(os.path.join(quick, "manifest.json")))
    if model_hash(manifest) == manifest["hash"]:
        os.makedirs(model)
        files = {"sketch.0.pt": small["sketch.0.pt"], "photo.0.pt": small["photo.0.pt"],
                 "mapper.pt": small["mapper.pt"], manifest["backbone"]["file"]: os.path.join(quick, manifest["backbone"]["file"])}
        manifest["encoders"] = {"sketch": ["sketch.0.pt"], "photo": ["photo.0.pt"]}
        del manifest["bridge"]
        manifest["files"] = {}
        for name, path in files.items():
            blob = open(path, "rb").read()
            shutil.copyfile(path, os.path.join(model, name))
            manifest["files"][name] = {"bytes": len(blob), "fnv1a": "%016x" % fnv1a(blob)}
        manifest["hash"] = model_hash(manifest)
        with open(os.path.join(model, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2, ensure_ascii=False)
    else:
        print("make_seeds: cannot reproduce the model hash: the quick model folder as it is", file=sys.stderr)
        shutil.copytree(quick, model)
    # Seeds of fuzz_model: each file behind its reader's byte (0 manifest, 1 encoder, 2 mapper,
    # 3 bridge, 4 backbone); the quick model's 1.5 MB encoders and 9 MB mapper are left out (the
    # small ones parse the same way, faster), its 1.3 MB bridge is the one bridge there is.
    seeds_of = [(0, "manifest.json", os.path.join(model, "manifest.json")),
                (0, "manifest-quick.json", os.path.join(quick, "manifest.json")),
                (2, "mapper-shared.pt", small["mapper-shared.pt"]),
                (3, "bridge.pt", os.path.join(quick, "bridge.pt"))]
    seeds_of += [(1, "encoder-" + n, p) for n, p in small.items() if not n.startswith("mapper")]
    seeds_of += [(2, "mapper.pt", small["mapper.pt"])]
    seeds_of += [(4, "backbone.tflite", os.path.join(quick, manifest["backbone"]["file"]))]
    for byte, name, path in seeds_of:
        put("model", name, bytes([byte]) + open(path, "rb").read())
    # A gallery index of a few photos by the quick model (embeddings, posteriors, codes, bridge
    # rows, graph, thumbnails), and its two shards.
    photos = os.path.join(work, "photos")
    for cls in classes:
        os.makedirs(os.path.join(photos, cls))
        for r in [x for x in rows if x[0] == "photo" and x[2] == cls][:3]:
            os.symlink(os.path.join(data, r[1]), os.path.join(photos, cls, os.path.basename(r[1])))
    index = os.path.join(work, "photos.idx")
    run(["index", "--model", quick, "--images", photos, "-o", index, "--thumb", "16"])
    run(["shard", "--index", index, "--shards", "2", "-o", os.path.join(work, "shard")])
    for path in [index] + sorted(glob.glob(os.path.join(work, "shard-*.idx"))):
        put("gallery", os.path.basename(path), open(path, "rb").read())
finally:
    shutil.rmtree(work, ignore_errors=True)
