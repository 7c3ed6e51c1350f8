#!/usr/bin/env python3
"""Test fixture for the server tests: a `duet run --quick` model of 6 classes and a `duet index`
of their test photos (a folder of links, one per class folder), in OUT. Writes OUT/fixture.json:
{"model", "index", "gallery", "sketches": test sketches of those classes, "classes"}.

Usage: serve_fixture.py path/to/duet OUT
Skips (exit 0, no fixture.json) when the shared dataset is not available.
"""
import json
import os
import shutil
import sys

from e2e import E2E

t = E2E(sys.argv[1])
out = os.path.abspath(sys.argv[2])
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(t.data, "splits/category.tsv"))][1:]
classes = sorted({r[2] for r in rows})[:6]
r = t.run(["-q", "run", "--quick", "--max-classes", str(len(classes)), "--split", "category",
           "--out", os.path.join(out, "run")])
t.check("quick run for the server tests", r.returncode == 0, r.stderr[-500:])
model = os.path.join(out, "run", "category", "model")
gallery = os.path.join(out, "gallery")
sketches = t.link_test_gallery(rows, classes, gallery)
index = os.path.join(out, "photos.idx")
r = t.run(["-q", "index", "--model", model, "--images", gallery, "-o", index])
t.check("index of the test photos", r.returncode == 0, r.stderr[-500:])
if not t.failed:
    json.dump({"model": model, "index": index, "gallery": gallery, "sketches": sketches, "classes": classes},
              open(os.path.join(out, "fixture.json"), "w"), indent=1)
t.finish()
