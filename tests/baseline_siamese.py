#!/usr/bin/env python3
"""End to end: `duet baseline siamese` on an 8-class slice of the Sketchy subset learns (beats the
untrained features it starts from), stops at its FLOP budgets, is deterministic, and rejects bad
options with one clear error.

Usage: baseline_siamese.py path/to/duet
Skips (exit 0 with a note) when the shared dataset is not available.
"""
import json
import os
import sys
import tempfile

from e2e import E2E

t = E2E(sys.argv[1])
data, check, run = t.data, t.check, t.run

with tempfile.TemporaryDirectory() as tmp:
    # The first 8 classes of the category split.
    lines = open(os.path.join(data, "splits/category.tsv")).read().splitlines()
    classes = sorted({l.split("\t")[2] for l in lines[1:]})[:8]
    split = os.path.join(tmp, "slice.tsv")
    with open(split, "w") as f:
        f.write("\n".join([lines[0]] + [l for l in lines[1:] if l.split("\t")[2] in classes]) + "\n")
    common = ["--data", data, "--backbone", "mobilenet_v1_025", "-t", "1"]

    raw = run(["baseline", "raw", "--split", split] + common + ["--json"])
    check("raw baseline runs", raw.returncode == 0, raw.stderr[-300:])
    raw_map = json.loads(raw.stdout)["map_all"]

    args = ["baseline", "siamese", "--split", split] + common + ["--batch", "8", "--budget-tflops", "0.05,0.2", "--json"]
    r = run(args + ["--json-out", os.path.join(tmp, "s.json")])
    check("siamese runs", r.returncode == 0, r.stderr[-300:])
    res = json.loads(r.stdout)
    check("one result per budget", len(res) == 2, str(len(res)))
    check("json-out holds the same results", json.load(open(os.path.join(tmp, "s.json"))) == res)
    step = (res[1]["ledger"]["flops"] - res[0]["ledger"]["flops"]) / (res[1]["steps"] - res[0]["steps"])
    for budget, x in zip((0.05, 0.2), res):
        led = x["ledger"]
        check(f"stops once {budget} TFLOPs are spent",
              budget * 1e12 <= led["flops"] < budget * 1e12 + step, f"{led['flops']:.4g} FLOPs, step {step:.3g}")
        check(f"ledger at {budget} TFLOPs", led["wall_s"] > 0 and led["cpu_s"] > 0 and led["peak_rss_mib"] > 0
              and led["image_forward"] == led["image_backward"] == 2 * 8 * x["steps"], str(led))
    m = res[1]["map_all"]
    # Trained end to end, the codes must rank better than the ImageNet features they start from.
    check("siamese learns (beats raw features)", m > raw_map + 0.05, f"map_all {m:.3f} vs raw {raw_map:.3f}")

    r2 = run(args)
    m2 = json.loads(r2.stdout)[1]["map_all"] if r2.returncode == 0 else -1
    check("same seed, same result", abs(m2 - m) < 0.02, f"{m} vs {m2}")

    # Bad options and data: one error line, exit 1, nothing on stdout.
    no_photos = os.path.join(tmp, "no_photos.tsv")
    with open(no_photos, "w") as f:
        f.write("\n".join([lines[0]] + [l for l in lines[1:] if l.split("\t")[2] in classes
                                         and not (l.startswith("photo") and l.endswith("train"))]) + "\n")
    for name, extra, needle in (
            ("budget 0", ["--split", split, "--budget-tflops", "0.1,0"], "must be positive"),
            ("negative budget", ["--split", split, "--budget-tflops", "-1"], "must be positive"),
            ("non-numeric budget", ["--split", split, "--budget-tflops", "lots"], "not a number"),
            ("batch 1", ["--split", split, "--batch", "1"], "batch"),
            ("batch larger than the data", ["--split", split, "--batch", "1000"], "batch"),
            ("no train photos", ["--split", no_photos], "and photo images of at least 2 classes")):
        r = run(["baseline", "siamese"] + common + extra)
        check(f"rejects {name}", r.returncode != 0 and needle in r.stderr and not r.stdout
              and r.stderr.count("\n") <= 2, f"rc={r.returncode} {r.stderr.strip()[:200]}")

t.finish()
