#!/usr/bin/env python3
"""End to end: `duet run --extra` trains on another dataset's sketches merged by class name, and a
zero-shot run never trains on its unseen classes from that source.

The main data: 8 classes of the zeroshot21 split (cow and dolphin are its unseen test classes).
The extra source: 10 TU-Berlin sketches each of ant (a class the split trains on), cow and dolphin
(held out), and angel (a class the Sketchy subset lacks), copied into a folder.

Usage: extra_e2e.py path/to/duet
"""
import csv
import json
import os
import shutil
import sys
import tempfile

from e2e import E2E

t = E2E(sys.argv[1])
check, run = t.check, t.run
tu = os.path.join(t.shared, "data", "tu-berlin", "sketch")
if not os.path.isdir(tu):
    t.check("TU-Berlin sketches in the shared folder", False, tu)
    t.finish()

seen = ["airplane", "alarm_clock", "ant", "apple", "banana", "bear"]
unseen = ["cow", "dolphin"]
with tempfile.TemporaryDirectory() as tmp:
    rows = list(csv.reader(open(os.path.join(t.data, "splits", "zeroshot21.tsv")), delimiter="\t"))
    keep = [r for r in rows[1:] if r[2] in seen + unseen]
    check("the split holds cow and dolphin out", {r[2] for r in keep if r[3] == "test"} == set(unseen))
    split = os.path.join(tmp, "zs.tsv")
    with open(split, "w") as f:
        f.write("\t".join(rows[0]) + "\n" + "".join("\t".join(r) + "\n" for r in keep))
    extra = os.path.join(tmp, "tu")
    for cls in ["ant", "angel"] + unseen:
        os.makedirs(os.path.join(extra, "sketch", cls))
        for name in sorted(os.listdir(os.path.join(tu, cls)))[:10]:
            shutil.copy(os.path.join(tu, cls, name), os.path.join(extra, "sketch", cls, name))

    out = os.path.join(tmp, "run")
    r = run(["run", "--quick", "--split", split, "--extra", extra, "--out", out, "--json"])
    check("run with --extra exits 0", r.returncode == 0, r.stderr[-500:])
    check("the log says what was merged and what held out",
          "extra tu: 20 images of 2 classes merged for training; 2 held-out classes left out" in r.stderr)

    # The training list: no sketch of an unseen class from any source; the extra's others are in.
    train = list(csv.DictReader(open(os.path.join(out, "zs", "train.tsv")), delimiter="\t"))
    from_extra = [x for x in train if x["path"].startswith(os.path.realpath(extra) + "/")]
    check("no unseen class in the training list", not [x for x in train if x["class"] in unseen],
          str(sorted({x["class"] for x in train})))
    check("the extra's seen and new classes train",
          sorted({x["class"] for x in from_extra}) == ["angel", "ant"] and len(from_extra) == 20,
          str(len(from_extra)))
    check("every training row is a train row", {x["split"] for x in train} == {"train"})

    # The model: the gallery's classes; the sketch encoder learnt angel too, and says from where.
    model = os.path.join(out, "zs", "model")
    man = json.load(open(os.path.join(model, "manifest.json")))
    check("the model's classes are the gallery's", man["classes"] == seen, str(man["classes"]))
    by = man["training"]["classes_by_source"]
    check("the record names each source's classes", by.get("tu") == {"sketch": ["angel", "ant"]} and
          by["sketchy-subset"]["sketch"] == seen, json.dumps(by))
    info = run(["model", "info", model, "--classes"])
    lines = dict(l.split("\t", 1) for l in info.stdout.splitlines())
    check("model info --classes lists the query-only class and its source",
          lines.get("angel") == "query only\ttu (sketch)" and
          lines.get("ant") == "gallery\tsketchy-subset (photo), sketchy-subset (sketch), tu (sketch)",
          info.stdout)

    # The model searches: a cow sketch (a class nothing learnt) gets ranked photos back.
    m = json.loads(r.stdout)["splits"]["zs"]
    check("the run scores its unseen classes", m["queries"] == 50 and 0 < m["retrieval"]["map_all"] <= 1,
          str(m["retrieval"]))

    # A rerun with the same inputs retrains nothing; without --extra, Phase I retrains.
    r2 = run(["run", "--quick", "--split", split, "--extra", extra, "--out", out, "--json"])
    check("a rerun with the same extra is up to date", "phase1-sketch: up to date" in r2.stderr)
    r3 = run(["run", "--quick", "--split", split, "--extra", os.path.join(tmp, "nope"), "--out", out], expect_rc=None)
    check("a missing extra folder is one clear error", r3.returncode != 0 and "nope" in r3.stderr, r3.stderr[-300:])
t.finish()
