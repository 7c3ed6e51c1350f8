#!/usr/bin/env python3
"""Data-parallel Phase I, duet run and duet index on c10d/Gloo with 2 processes on 127.0.0.1,
on 10 classes of the shared Sketchy subset with the tiny test backbone (--quick):

- train-encoder: 2 ranks at half of each minibatch train the encoder 1 rank trains (embeddings
  within float noise; the ranks must end with identical parameters, which it checks), rank 0
  writes; a rank killed mid-training makes the other exit with one error.
- duet run --quick: 2 ranks give the metrics of 1 rank within 0.02 mAP (Phase I and II float
  noise, which Phase II's hard negatives amplify; seed 1 against seed 0 differs by about 0.006).
- duet index: 2 ranks, each embedding a share of the photos, write the same file as 1 rank, byte
  for byte; a rerun with 2 ranks reuses every row.

Usage: dist_pipeline_e2e.py path/to/duet
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from dist_util import kill_rank_1
from e2e import E2E

t = E2E(sys.argv[1])
env = {k: v for k, v in t.env.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                                                    "LOCAL_WORLD_SIZE")}


def run(args, extra_env=None, timeout=600):
    r = subprocess.run([t.duet] + args, capture_output=True, text=True, env={**env, **(extra_env or {})},
                       timeout=timeout)
    if r.returncode != 0:
        print(r.stderr[-2000:])
    return r


with tempfile.TemporaryDirectory() as tmp:
    # A split of the first 4 classes, for the encoder.
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(t.data, "splits/category.tsv"))]
    body = [r for r in rows if r[0] in ("sketch", "photo")]
    classes = sorted({r[2] for r in body})[:4]
    split = os.path.join(tmp, "small.tsv")
    with open(split, "w") as f:
        f.write("domain\tpath\tclass\tsplit\n")
        for r in body:
            if r[2] in classes:
                f.write("\t".join(r) + "\n")

    enc = ["train-encoder", "--split", split, "--data", t.data, "--domain", "sketch", "--backbone",
           "mobilenet_v1_025", "--frozen-epochs", "5", "--finetune-epochs", "2", "--views", "2", "--batch", "16",
           "--seed", "3"]
    r1 = run(enc + ["-t", "1", "-o", f"{tmp}/one.pt", "--emb-out", f"{tmp}/one.npy"])
    r2 = run(enc + ["-o", f"{tmp}/two.pt", "--emb-out", f"{tmp}/two.npy", "--nproc", "2"])
    ok = r1.returncode == 0 and r2.returncode == 0
    t.check("train-encoder: 1 rank and --nproc 2 both exit 0", ok)
    lines = r2.stdout.strip().splitlines()
    j2 = json.loads(lines[0]) if ok and lines else {}
    t.check("train-encoder --nproc 2: one report (rank 0's), naming 2 ranks", len(lines) == 1 and j2.get("ranks") == 2,
            r2.stdout[-200:])
    if ok:
        j1 = json.loads(r1.stdout)
        for name, a, b in (("embeddings", np.load(f"{tmp}/one.npy"), np.load(f"{tmp}/two.npy")),
                           ("posteriors", np.load(f"{tmp}/one.probs.npy"), np.load(f"{tmp}/two.probs.npy"))):
            diff = float(np.abs(a - b).max() / np.abs(a).max())
            t.check(f"2 ranks at half the minibatch give 1 rank's encoder ({name} within 1e-3 of their scale)",
                    diff < 1e-3, f"max relative difference {diff:.2e}")
        l1 = [e["loss"] for e in j1["epochs"]]
        l2 = [e["loss"] for e in j2["epochs"]]
        t.check("and the same epoch losses (within 1e-3 relative)", len(l1) == 7 and len(l1) == len(l2) and
                all(abs(a - b) <= 1e-3 * abs(a) for a, b in zip(l1, l2)), f"{l1} vs {l2}")
    left = sorted(f for f in os.listdir(tmp) if ".tmp" in f)
    t.check("no worker's temporary file is left", not left, str(left))

    # torchrun's way, one process per rank; rank 1 killed mid-training.
    long = [a if a != "5" else "100000" for a in enc] + ["-o", f"{tmp}/long.pt"]
    alive, rc, err0, took = kill_rank_1(t.duet, long, env, after=6)
    t.check("train-encoder: a killed rank makes the other exit with one clear error, not hang",
            alive and rc == 1 and "another rank stopped" in err0 and "internal error" not in err0
            and not os.path.exists(f"{tmp}/long.pt"), f"rc={rc} after {took:.1f}s: {err0.strip()[-300:]}")

    # duet run --quick on 10 classes, 1 rank and 2.
    metrics = {}
    for n in (1, 2):
        out = f"{tmp}/run{n}"
        r = run(["run", "--quick", "--max-classes", "10", "--split", "category", "--out", out, "--json",
                 "--nproc", str(n)])
        metrics[n] = json.loads(r.stdout)["splits"]["category"] if r.returncode == 0 else None
        t.check(f"duet run --quick --nproc {n} exits 0 with one metrics report", r.returncode == 0 and
                len(r.stdout.strip().splitlines()) > 1 and os.path.exists(f"{out}/report.html"))
    if metrics[1] and metrics[2]:
        for key in ("retrieval", "retrieval_before_diffusion"):
            a, b = metrics[1][key]["map_all"], metrics[2][key]["map_all"]
            t.check(f"2 ranks give 1 rank's {key} mAP@all within 0.02", abs(a - b) <= 0.02, f"{a:.4f} vs {b:.4f}")
        t.check("the same test images were ranked", metrics[1]["gallery"] == metrics[2]["gallery"] and
                metrics[1]["queries"] == metrics[2]["queries"], f"{metrics[1]['gallery']} / {metrics[2]['gallery']}")

    # duet index of the 10 classes' photos with the 1-rank model: 1 rank and 2.
    model = f"{tmp}/run1/category/model"
    photos = os.path.join(t.data, "photo")
    gallery = os.path.join(tmp, "photos")
    os.makedirs(gallery)
    for c in sorted(os.listdir(photos))[:10]:
        os.symlink(os.path.join(photos, c), os.path.join(gallery, c))
    reports = {}
    for n in (1, 2):
        r = run(["index", "--model", model, "--images", gallery, "-o", f"{tmp}/g{n}.idx", "--json", "--nproc", str(n)])
        reports[n] = json.loads(r.stdout) if r.returncode == 0 else {}
    t.check("duet index --nproc 2 embeds every photo once", reports[2].get("embedded") == 250 and
            reports[2].get("images") == 250 and reports[1].get("embedded") == 250, f"{reports}")
    same = all(os.path.exists(f"{tmp}/g{n}.idx") for n in (1, 2)) and \
        open(f"{tmp}/g1.idx", "rb").read() == open(f"{tmp}/g2.idx", "rb").read()
    t.check("2 ranks write the index 1 rank writes, byte for byte", same)
    r = run(["index", "--model", model, "--images", gallery, "-o", f"{tmp}/g2.idx", "--json", "--nproc", "2"])
    again = json.loads(r.stdout) if r.returncode == 0 else {}
    t.check("a rerun with 2 ranks reuses every row and leaves the file as it was",
            again.get("reused") == 250 and again.get("embedded") == 0 and
            open(f"{tmp}/g1.idx", "rb").read() == open(f"{tmp}/g2.idx", "rb").read(), f"{again}")
    left = sorted(f for f in os.listdir(tmp) if "partial" in f or ".tmp" in f)
    t.check("no checkpoint or temporary file is left", not left, str(left))

t.finish()
