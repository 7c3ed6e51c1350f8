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

import numpy as np

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
    for name, ph in (("phase1 sketch", s["phase1"]["sketch"]), ("phase1 photo", s["phase1"]["photo"]),
                     ("phase2", s["phase2"])):
        led = ph["ledger"]
        check(f"{name} ledger", led["wall_s"] > 0 and led["peak_rss_mib"] > 0 and led["flops"] > 0, str(led))
    check("sketch classifier beats chance", s["accuracy"]["sketch"] > 2.0 / classes, str(s["accuracy"]))
    check("domains and their detected kinds recorded",
          s["domains"] == {"query": ["sketch"], "gallery": "photo", "kinds": {"sketch": "drawing", "photo": "image"}},
          str(s["domains"]))
    check("one metrics row per query domain, the headline the first's",
          list(s["by_query"]) == ["sketch"] and s["by_query"]["sketch"]["retrieval"] == s["retrieval"])
    before = s["retrieval_before_diffusion"]["map_all"]
    check("gallery diffusion reported with the score before it", 0 < before <= 1, str(before))
    mem = s.get("phase1_members", [])
    check("two Phase I encoders per domain, the second in member1/", len(mem) == 2 and
          os.path.isfile(os.path.join(out, "category", "member1", "sketch_encoder.pt")), str(mem))
    caches = sorted(os.listdir(os.path.join(out, "cache")))
    trunks = [c for c in caches if c.startswith("trunk-")]
    pooled = [c for c in caches if c.startswith("pooled-")]
    # --quick has 2 views, the image and its mirror, which no seed changes: the second member
    # reuses the first one's trunk cache and the frozen features kept beside it.
    check("one trunk cache and one set of frozen features per domain, the second member's reused",
          len(trunks) == 2 and len(pooled) == 2 and len(caches) == 4 and
          r.stderr.count("trunk cache: reusing") == 4, str(caches))
    nu = s.get("unseen_queries", -1)
    check("unseen-class gate reports how many queries it took", 0 <= nu <= s["queries"], str(nu))

    # Resume: nothing is recomputed and the metrics are identical.
    r2 = run(args)
    # 4 encoders, the mapper and the test images' features.
    check("rerun skips finished phases", r2.stderr.count("up to date") == 6, r2.stderr[-500:])
    check("rerun gives the same metrics", json.loads(r2.stdout)["splits"]["category"]["retrieval"] == s["retrieval"])

    # Re-ranking settings only re-score: a resumed run without diffusion trains nothing and gives
    # exactly the score before diffusion.
    r = run(args + ["--no-diffusion"])
    nd = json.loads(r.stdout)["splits"]["category"]
    check("--no-diffusion ranks by the fused score alone", r.stderr.count("up to date") == 6 and
          nd["retrieval"] == s["retrieval_before_diffusion"] and "retrieval_before_diffusion" not in nd)

    # Determinism: a fresh run with the same seed gives the same metrics (up to float noise).
    out2 = os.path.join(tmp, "run2")
    r3 = run(["run", "--quick", "--max-classes", str(classes), "--split", "category", "--out", out2, "--json"])
    mp3 = json.loads(r3.stdout)["splits"]["category"]["retrieval"]["map_all"]
    check("same seed, same result", abs(mp3 - mp) < 0.02, f"{mp} vs {mp3}")

    # A broken step output is detected and recomputed, earlier results stay.
    os.remove(os.path.join(out, "category", "mapper.pt"))
    r4 = run(args)
    check("missing mapper is retrained", r4.returncode == 0 and r4.stderr.count("phase1-") == 4 and
          r4.stderr.count("up to date") >= 4 and "phase2: up to date" not in r4.stderr, r4.stderr[-500:])
    # A second member whose posteriors cover other samples is refused, not averaged row by row.
    m1 = os.path.join(out, "category", "member1")
    shutil.copy(os.path.join(m1, "sketch.probs.tsv"), os.path.join(tmp, "probs.tsv.bak"))
    with open(os.path.join(m1, "sketch.probs.tsv")) as f:
        lines = f.readlines()
    body = [i for i, l in enumerate(lines) if not l.startswith("#")][1:]  # data rows after the header
    lines[body[0]], lines[body[-1]] = lines[body[-1]], lines[body[0]]
    with open(os.path.join(m1, "sketch.probs.tsv"), "w") as f:
        f.writelines(lines)
    r5 = run(args)
    check("misaligned member posteriors are one clear error", r5.returncode == 1 and
          "do not line up" in r5.stderr and "Traceback" not in r5.stderr, r5.stderr[-300:])
    shutil.copy(os.path.join(tmp, "probs.tsv.bak"), os.path.join(m1, "sketch.probs.tsv"))

    # Validation splits carved from a split's train part, and `run --split` on a split file.
    def read_split(path):
        with open(path) as f:
            return [l.rstrip("\n").split("\t") for l in f][1:]
    src = read_split(os.path.join(shared, "data/sketchy-subset/splits/category.tsv"))
    train_rows = {(r[0], r[1], r[2]) for r in src if r[3] == "train"}
    val = os.path.join(tmp, "val.tsv")
    r = run(["split", "--from", os.path.join(shared, "data/sketchy-subset/splits/category.tsv"), "-o", val])
    v = read_split(val)
    check("split --from keeps exactly the train part", {(x[0], x[1], x[2]) for x in v} == train_rows)
    inst = lambda x: os.path.basename(x[1]).rsplit(".", 1)[0].rsplit("-", 1)[0]
    sides = {}
    for x in v:
        sides.setdefault(inst(x), set()).add(x[3])
    test_share = sum(x[3] == "test" for x in v) / len(v)
    check("split --from holds out instances (a photo and its sketches on one side)",
          all(len(sd) == 1 for sd in sides.values()) and 0.1 < test_share < 0.3, f"test share {test_share:.2f}")
    zval = os.path.join(tmp, "zval.tsv")
    run(["split", "--from", os.path.join(shared, "data/sketchy-subset/splits/zeroshot21.tsv"), "--zeroshot", "-o", zval])
    z = read_split(zval)
    ztrain, ztest = {x[2] for x in z if x[3] == "train"}, {x[2] for x in z if x[3] == "test"}
    check("split --from --zeroshot holds out whole train classes", ztrain and ztest and not ztrain & ztest,
          f"{len(ztrain)} train, {len(ztest)} test classes")
    r = run(["run", "--quick", "--max-classes", "4", "--split", val, "--out", os.path.join(tmp, "valrun"), "--json"])
    vm = json.loads(r.stdout)["splits"].get("val", {}).get("retrieval", {}).get("map_all", 0) if r.returncode == 0 else 0
    check("run --split takes a split file, results under its stem", vm > 0.4 and
          os.path.isfile(os.path.join(tmp, "valrun", "val", "mapper.pt")), f"map_all={vm}")
    r = run(["split", "-o", os.path.join(tmp, "x.tsv")], expect_rc=1)
    check("split without --data or --from is an error", r.returncode == 1 and "--from" in r.stderr, r.stderr.strip())

    # `duet embed --encoder` preprocesses as training did: the default config frames sketches
    # (crops them to their strokes) and averages test-time views, and the encoder file records
    # both, so embedding a few sketches anew reproduces the pipeline's rows for them.
    cat = os.path.join(out, "category")
    emb = lambda p: (np.load(p), [l.split("\t")[0] for l in open(p[:-4] + ".tsv") if not l.startswith("#")][1:])
    X, paths = emb(f"{cat}/sketch.npy")
    few = os.path.join(tmp, "splits", "few.tsv")
    os.makedirs(os.path.dirname(few))
    with open(few, "w") as f:
        f.write("domain\tpath\tclass\tsplit\n")
        for p in paths[:6]:
            f.write(f"sketch\t{p}\t{p.split('/')[1]}\ttest\n")
    r = run(["embed", "--encoder", f"{cat}/sketch_encoder.pt", "--split", few, "--data",
             os.path.join(shared, "data/sketchy-subset"), "--domain", "sketch", "-o", f"{tmp}/few.npy"])
    Y = np.load(f"{tmp}/few.npy") if r.returncode == 0 else np.zeros((6, X.shape[1]))
    err = float(np.abs(Y - X[:6]).max())
    check("embed --encoder reproduces the pipeline's framed sketch embeddings", err < 1e-3 * max(1.0, float(np.abs(X[:6]).max())),
          f"max abs diff {err:.2e}")

    # The same with seeded augmentations among the test-time views (the default config uses 4):
    # a small encoder that averages 3 views writes rows `duet embed` redraws exactly; its
    # image-only embeddings differ, so the check sees whether the views are applied.
    tiny = ["--backbone", "mobilenet_v1_025",
            "--weights", os.path.join(shared, "weights/mobilenet_v1_0.25_128_quant.tflite")]
    few3 = os.path.join(tmp, "splits", "few3.tsv")
    with open(os.path.join(shared, "data/sketchy-subset/splits/category.tsv")) as f, open(few3, "w") as g:
        g.writelines(l for l in f if l.startswith("domain\t") or
                     (l.startswith("sketch\t") and l.split("\t")[2] in ("airplane", "apple", "bear")))
    r = run(["train-encoder", "--split", few3, "--data", os.path.join(shared, "data/sketchy-subset"),
             "--domain", "sketch", "--frame", "--views", "3", "--tta-views", "3", "--frozen-epochs", "2",
             "--finetune-epochs", "1", "--seed", "7", "-o", f"{tmp}/e3.pt", "--emb-out", f"{tmp}/e3.npy"] + tiny)
    check("train-encoder with 3 test-time views exits 0", r.returncode == 0,
          r.stderr[-300:] if r.returncode else "")
    X3, p3 = emb(f"{tmp}/e3.npy") if r.returncode == 0 else (np.zeros((1, 1)), [])
    def embed3(*extra):
        r = run(["embed", "--encoder", f"{tmp}/e3.pt", "--split", few3, "--data",
                 os.path.join(shared, "data/sketchy-subset"), "--domain", "sketch",
                 "-o", f"{tmp}/r3.npy"] + list(extra))
        return emb(f"{tmp}/r3.npy") if r.returncode == 0 else (np.zeros_like(X3), [])
    Y3, q3 = embed3()
    err = float(np.abs(Y3 - X3).max()) if q3 == p3 else float("inf")
    check("embed --encoder redraws the augmented test-time views",
          err < 1e-3 * max(1.0, float(np.abs(X3).max())), f"max abs diff {err:.2e}")
    Y1, q1 = embed3("--views", "1")
    check("embed --views 1 embeds the image alone (differs)",
          q1 == p3 and float(np.abs(Y1 - X3).max()) > 1e-2)

    # A mapper trained with --normalize scales each embedding to unit length first (recorded in the
    # mapper file), so `duet map` gives the same codes for embeddings of any length; without it, not.
    def codes(mapper, scale):
        x = os.path.join(tmp, f"s{scale}.npy")
        np.save(x, (np.load(f"{cat}/sketch.npy") * scale).astype(np.float32))
        shutil.copy(f"{cat}/sketch.tsv", x[:-4] + ".tsv")
        r = run(["map", "--mapper", mapper, "--emb", x, "-o", f"{tmp}/c.npy"])
        return np.load(f"{tmp}/c.npy") if r.returncode == 0 else None
    for flag, name in (("--normalize", "mn.pt"), (None, "mr.pt")):
        r = run(["train-mapper", "--query-emb", f"{cat}/sketch.npy", "--gallery-emb", f"{cat}/photo.npy", "--epochs", "2",
                 "-o", f"{tmp}/{name}"] + ([flag] if flag else []))
        check(f"train-mapper {flag or 'without --normalize'} exits 0", r.returncode == 0,
              r.stderr[-300:] if r.returncode else "")
    a, b = codes(f"{tmp}/mn.pt", 1.0), codes(f"{tmp}/mn.pt", 3.0)
    check("--normalize mapper ignores embedding length", a is not None and b is not None and np.abs(a - b).max() < 1e-4)
    a, b = codes(f"{tmp}/mr.pt", 1.0), codes(f"{tmp}/mr.pt", 3.0)
    check("plain mapper does not", a is not None and b is not None and np.abs(a - b).max() > 1e-2)

    # Bad input to the phase commands.
    r = run(["train-mapper", "--query-emb", f"{cat}/sketch.npy", "--gallery-emb", f"{cat}/sketch.npy",
             "-o", f"{tmp}/m.pt"], expect_rc=1)
    check("same-domain mapper input rejected", r.returncode == 1 and "domain" in r.stderr, r.stderr.strip())
    r = run(["train-mapper", "--query-emb", f"{cat}/sketch.npy", "--gallery-emb", f"{cat}/photo.probs.npy",
             "-o", f"{tmp}/m.pt"], expect_rc=1)
    check("mismatched widths rejected", r.returncode == 1 and "-d" in r.stderr, r.stderr.strip())
    # An output path in a missing folder fails at once with one line, before any training.
    r = run(["train-mapper", "--query-emb", f"{cat}/sketch.npy", "--gallery-emb", f"{cat}/photo.npy",
             "-o", f"{tmp}/none/m.pt"], expect_rc=1)
    def one_line(r):
        return r.returncode == 1 and "does the folder exist" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    check("train-mapper into a missing folder", one_line(r), r.stderr.strip()[-300:])
    r = run(["train-encoder", "--split", few, "--data", os.path.join(shared, "data/sketchy-subset"),
             "--domain", "sketch", "-o", f"{tmp}/none/e.pt"], expect_rc=1)
    check("train-encoder into a missing folder", one_line(r), r.stderr.strip()[-300:])
    r = run(["embed", "--encoder", f"{cat}/mapper.pt", "--split",
             os.path.join(shared, "data/sketchy-subset/splits/category.tsv"), "--domain", "sketch",
             "-o", f"{tmp}/e.npy"], expect_rc=1)
    check("mapper file is not an encoder", r.returncode == 1 and "not a duet encoder" in r.stderr, r.stderr.strip())
    r = run(["eval", "--query-emb", f"{cat}/sketch.npy", "--gallery-emb", f"{cat}/photo.probs.npy"], expect_rc=1)
    check("eval rejects mixed spaces", r.returncode == 1 and "same embedding space" in r.stderr, r.stderr.strip())

t.finish()
