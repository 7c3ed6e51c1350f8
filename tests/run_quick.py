#!/usr/bin/env python3
"""End to end: `duet run --quick` on a slice of the Sketchy subset learns, resumes, and is
deterministic; the phase commands reject mismatched inputs.

Usage: run_quick.py path/to/duet
Skips (exit 0 with a note) when the shared dataset is not available.
"""
import json
import os
import shutil
import sys
import tempfile

from e2e import E2E

t = E2E(sys.argv[1])
shared, check, run = t.shared, t.check, t.run

with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "run")
    classes = 8
    args = ["run", "--quick", "--max-classes", str(classes), "--split", "category", "--out", out, "--json"]
    r = run(args)
    check("quick run exits 0", r.returncode == 0, f"rc={r.returncode}")
    m = json.loads(r.stdout)
    s = m["splits"]["category"]
    mp = s["retrieval"]["map_all"]
    # Chance for 8 balanced classes is about 1/8; a pipeline that learns does far better.
    check("quick run learns (map_all well above chance)", mp > 0.4, f"map_all={mp:.3f}, chance~{1/classes:.3f}")
    check("metrics.json written", os.path.isfile(os.path.join(out, "metrics.json")))
    for key in ("map_all", "map@100", "map@200", "p@100", "p@200", "queries", "skipped"):
        check(f"retrieval has {key}", key in s["retrieval"])
    for ph in ("phase1_sketch", "phase1_photo", "phase2"):
        led = s[ph]["ledger"]
        check(f"{ph} ledger", led["wall_s"] > 0 and led["peak_rss_mib"] > 0 and led["flops"] > 0, str(led))
    check("sketch classifier beats chance", s["sketch_accuracy"] > 2.0 / classes, str(s["sketch_accuracy"]))

    # Resume: nothing is recomputed and the metrics are identical.
    r2 = run(args)
    check("rerun skips finished phases", r2.stderr.count("up to date") == 3, r2.stderr[-500:])
    check("rerun gives the same metrics", json.loads(r2.stdout)["splits"]["category"]["retrieval"] == s["retrieval"])

    # Determinism: a fresh run with the same seed gives the same metrics (up to float noise).
    out2 = os.path.join(tmp, "run2")
    r3 = run(["run", "--quick", "--max-classes", str(classes), "--split", "category", "--out", out2, "--json"])
    mp3 = json.loads(r3.stdout)["splits"]["category"]["retrieval"]["map_all"]
    check("same seed, same result", abs(mp3 - mp) < 0.02, f"{mp} vs {mp3}")

    # A broken step output is detected and recomputed, earlier results stay.
    os.remove(os.path.join(out, "category", "mapper.pt"))
    r4 = run(args)
    check("missing mapper is retrained", r4.returncode == 0 and r4.stderr.count("up to date") == 2)

    # Bad input to the phase commands.
    cat = os.path.join(out, "category")
    r = run(["train-mapper", "--sketch-emb", f"{cat}/sketch.npy", "--photo-emb", f"{cat}/sketch.npy",
             "-o", f"{tmp}/m.pt"], expect_rc=1)
    check("same-domain mapper input rejected", r.returncode == 1 and "domain" in r.stderr, r.stderr.strip())
    r = run(["train-mapper", "--sketch-emb", f"{cat}/sketch.npy", "--photo-emb", f"{cat}/photo.probs.npy",
             "-o", f"{tmp}/m.pt"], expect_rc=1)
    check("mismatched widths rejected", r.returncode == 1 and "-d" in r.stderr, r.stderr.strip())
    r = run(["embed", "--encoder", f"{cat}/mapper.pt", "--split",
             os.path.join(shared, "data/sketchy-subset/splits/category.tsv"), "--domain", "sketch",
             "-o", f"{tmp}/e.npy"], expect_rc=1)
    check("mapper file is not an encoder", r.returncode == 1 and "not a duet encoder" in r.stderr, r.stderr.strip())
    r = run(["eval", "--query-emb", f"{cat}/sketch.npy", "--gallery-emb", f"{cat}/photo.probs.npy"], expect_rc=1)
    check("eval rejects mixed spaces", r.returncode == 1 and "same embedding space" in r.stderr, r.stderr.strip())

t.finish()
