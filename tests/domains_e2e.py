#!/usr/bin/env python3
"""End to end: domains are data. On folders built from the shared Sketchy subset:
- the subset with its domains renamed (drawing/, picture/) splits and trains to exactly the
  metrics of sketch/, photo/ with the same seed;
- a three-domain dataset (sketches, photos, and edge maps of other photos) trains one space
  that both query domains search, through `duet run`, `duet train`, `duet index`, `duet search`;
- bad input: one domain, a domain with no class in common with the gallery, a class with images
  in one domain only, a missing default domain, a bad kind.

Usage: domains_e2e.py path/to/duet
"""
import json
import os
import sys
import tempfile

import cv2

from e2e import E2E

t = E2E(sys.argv[1])
check, run = t.check, t.run
data = os.path.abspath(t.data)
CLASSES = sorted(os.listdir(os.path.join(data, "photo")))[:6]
QUICK = ["--quick", "--seed", "3", "--json"]


def link_domain(src_dom, dest, dom, classes=CLASSES, pick=lambda i, f: True):
    for cls in classes:
        files = sorted(os.listdir(os.path.join(data, src_dom, cls)))
        for i, f in enumerate(files):
            if not pick(i, f):
                continue
            os.makedirs(os.path.join(dest, dom, cls), exist_ok=True)
            os.symlink(os.path.join(data, src_dom, cls, f), os.path.join(dest, dom, cls, f))


def split_rows(path, rename=None):
    with open(path) as f:
        rows = [l.rstrip("\n").split("\t") for l in f][1:]
    rename = rename or {}
    return sorted((rename.get(d, d), p.replace(d + "/", rename.get(d, d) + "/", 1), c, s) for d, p, c, s in rows)


def retrieval(r):
    if r.returncode != 0:
        return {}
    s = next(iter(json.loads(r.stdout)["splits"].values()))
    return s


def make_tree(root, spec):  # spec: {domain: [classes]}, one image file each (a copy of a real photo)
    src = os.path.join(data, "photo", CLASSES[0], sorted(os.listdir(os.path.join(data, "photo", CLASSES[0])))[0])
    for dom, classes in spec.items():
        for cls in classes:
            for i in range(2):
                os.makedirs(os.path.join(root, dom, cls), exist_ok=True)
                os.symlink(src, os.path.join(root, dom, cls, f"{cls}{i}.jpg"))


def one_error(r, *needles):
    return r.returncode == 1 and "Traceback" not in r.stderr and all(n in r.stderr for n in needles)


with tempfile.TemporaryDirectory() as tmp:
    # --- renamed domains: the names change nothing but names -----------------------------------
    orig, renamed = os.path.join(tmp, "orig"), os.path.join(tmp, "renamed")
    link_domain("sketch", orig, "sketch")
    link_domain("photo", orig, "photo")
    link_domain("sketch", renamed, "drawing")
    link_domain("photo", renamed, "picture")
    for root in (orig, renamed):
        r = run(["split", "--data", root, "--seed", "5", "-o", os.path.join(root, "splits", "s.tsv")])
        check(f"split {os.path.basename(root)} exits 0", r.returncode == 0, r.stderr[-300:])
    a = split_rows(os.path.join(orig, "splits", "s.tsv"))
    b = split_rows(os.path.join(renamed, "splits", "s.tsv"), {"drawing": "sketch", "picture": "photo"})
    check("renamed domains: the same split", a == b and len(a) > 0, f"{len(a)} vs {len(b)} rows")
    ra = retrieval(run(["run", "--data", orig, "--split", "s", "--out", os.path.join(tmp, "run-orig")] + QUICK))
    r = run(["run", "--data", renamed, "--split", "s", "--out", os.path.join(tmp, "run-renamed"),
             "--query-domain", "drawing", "--gallery-domain", "picture"] + QUICK)
    rb = retrieval(r)
    check("renamed domains: detected kinds follow the pixels, not the names",
          rb.get("domains", {}).get("kinds") == {"drawing": "drawing", "picture": "image"}, str(rb.get("domains")))
    check("renamed domains: exactly the same metrics", ra and ra.get("retrieval") == rb.get("retrieval") and
          ra.get("retrieval_before_diffusion") == rb.get("retrieval_before_diffusion"),
          f"{ra.get('retrieval', {}).get('map_all')} vs {rb.get('retrieval', {}).get('map_all')}")
    check("renamed domains: the run learns", ra.get("retrieval", {}).get("map_all", 0) > 0.4,
          str(ra.get("retrieval", {}).get("map_all")))

    # --- three domains: sketches and edge maps both query one photo gallery ---------------------
    three = os.path.join(tmp, "three")
    link_domain("sketch", three, "sketch")
    link_domain("photo", three, "photo", pick=lambda i, f: i % 2 == 0)
    # Edge maps of the *other* photos: no edge image shows a photo of the gallery.
    for cls in CLASSES:
        files = sorted(os.listdir(os.path.join(data, "photo", cls)))
        for f in files[1::2]:
            grey = cv2.cvtColor(cv2.imread(os.path.join(data, "photo", cls, f)), cv2.COLOR_BGR2GRAY)
            edges = 255 - cv2.Canny(cv2.GaussianBlur(grey, (5, 5), 0), 60, 160)
            os.makedirs(os.path.join(three, "edges", cls), exist_ok=True)
            cv2.imwrite(os.path.join(three, "edges", cls, os.path.splitext(f)[0] + ".png"), edges)
    r = run(["split", "--data", three, "--seed", "5", "-o", os.path.join(three, "splits", "s.tsv")])
    check("three-domain split", r.returncode == 0 and "edges" in r.stdout, r.stdout.strip())
    rows = split_rows(os.path.join(three, "splits", "s.tsv"))
    check("three-domain split: no class left out", {c for _, _, c, _ in rows} == set(CLASSES))
    out3 = os.path.join(tmp, "run-three")
    doms3 = ["--query-domain", "sketch", "--query-domain", "edges"]
    args3 = ["run", "--data", three, "--split", "s", "--out", out3] + doms3
    r = run(args3 + QUICK)
    s = retrieval(r)
    # Sketchy's sketches are named for their source photos; these edge maps are not.
    check("three domains: sketches distil their source photos, edge maps (no sources) learn without",
          "no edges image has a source image in photo" in r.stderr and "no sketch image" not in r.stderr,
          r.stderr[-400:])
    r = run(["run", "--data", three, "--split", "s", "--out", out3 + "-ps", "--preserve-source", "1"] + doms3 + QUICK)
    check("three domains: --preserve-source without source images is one error",
          one_error(r, "--preserve-source: no edges image has a source image in photo") and not r.stdout,
          r.stderr[-400:])
    byq = s.get("by_query", {})
    check("three domains: a metrics row per query domain", sorted(byq) == ["edges", "sketch"], str(sorted(byq)))
    chance = 1.0 / len(CLASSES)
    for dom in ("sketch", "edges"):
        m = byq.get(dom, {}).get("retrieval", {}).get("map_all", 0)
        check(f"three domains: {dom} queries find their class (map_all well above chance)", m > 2 * chance,
              f"map_all={m:.3f}, chance~{chance:.3f}")
    check("three domains: edge maps detected as drawings",
          s.get("domains", {}).get("kinds", {}).get("edges") == "drawing", str(s.get("domains")))
    r = run(args3 + ["--quick", "--seed", "3"])
    lines = [l for l in r.stdout.splitlines() if l.startswith("s ")]
    check("three domains: the table has a row per query domain (resumed, nothing retrained)",
          len(lines) == 2 and r.stderr.count("up to date") == 8, r.stdout + r.stderr[-400:])
    info = run(["model", "info", os.path.join(out3, "s", "model")])
    check("three domains: the model names both query domains and the kinds",
          "query: sketch, edges; gallery: photo" in info.stdout and "edges (drawing)" in info.stdout, info.stdout)

    # duet train: every image, the same model folder; index the photos, search from both domains.
    model = os.path.join(tmp, "model3")
    r = run(["train", "--data", three, "-o", model, "--query-domain", "sketch", "--query-domain", "edges"] + QUICK)
    rep = json.loads(r.stdout) if r.returncode == 0 else {}
    check("train exits 0 and reports its data", r.returncode == 0 and rep.get("training", {}).get("classes") == 6,
          r.stderr[-400:])
    check("train leaves its work files beside the model and a split of every image",
          os.path.isfile(os.path.join(model + ".work", "train.tsv")) and
          all(l.rstrip().endswith("\ttrain") for l in open(os.path.join(model + ".work", "train.tsv")).readlines()[1:]))
    man = json.load(open(os.path.join(model, "manifest.json"))) if r.returncode == 0 else {}
    check("train: the manifest records what it learnt from",
          man.get("training", {}).get("held_out", "").startswith("none") and
          man.get("query_domains") == ["sketch", "edges"], str(man.get("training")))
    idx = os.path.join(tmp, "g.idx")
    r = run(["index", "--model", model, "--images", os.path.join(three, "photo"), "-o", idx])
    check("index the photos with the trained model", r.returncode == 0, r.stderr[-300:])
    for dom in ("sketch", "edges"):
        queries = [os.path.join(three, dom, c, sorted(os.listdir(os.path.join(three, dom, c)))[0]) for c in CLASSES]
        r = run(["search", "--index", idx, "--domain", dom, "-k", "5", "--json"] + queries)
        hits = [json.loads(l) for l in r.stdout.splitlines()] if r.returncode == 0 else []
        right = sum(h["path"].split("/")[-2] == q.split("/")[-2] for q, j in zip(queries, hits) for h in j["results"])
        check(f"search from {dom}: most of the top 5 are the query's class", len(hits) == 6 and right >= 0.6 * 30,
              f"{right}/30 right")
    r = run(["search", "--index", idx, "--domain", "cartoon", queries[0]], expect_rc=1)
    check("search from a domain the model lacks", one_error(r, "cartoon", "edges, photo, sketch"), r.stderr.strip())

    # --- bad input ---------------------------------------------------------------------------------
    one = os.path.join(tmp, "one")
    make_tree(one, {"photo": ["a", "b"]})
    r = run(["split", "--data", one, "-o", os.path.join(one, "s.tsv")], expect_rc=1)
    check("split: one domain only", one_error(r, "one domain"), r.stderr.strip())
    r = run(["train", "--data", one, "-o", os.path.join(tmp, "m1"), "--query-domain", "photo", "--gallery-domain",
             "photo", "--quick"], expect_rc=1)
    check("train: one domain only", one_error(r, "one domain"), r.stderr.strip())
    disjoint = os.path.join(tmp, "disjoint")
    make_tree(disjoint, {"photo": ["a", "b"], "sketch": ["a", "b"], "art": ["x", "y"]})
    r = run(["split", "--data", disjoint, "--domains", "art,photo", "-o", os.path.join(disjoint, "s.tsv")], expect_rc=1)
    check("split: a domain with no class in common", one_error(r, "no class has images in every one"), r.stderr.strip())
    r = run(["train", "--data", disjoint, "-o", os.path.join(tmp, "m2"), "--query-domain", "art", "--quick"], expect_rc=1)
    check("train: a query domain with no class in common with the gallery",
          one_error(r, "no class has images in every one"), r.stderr.strip())
    lonely = os.path.join(tmp, "lonely")
    make_tree(lonely, {"photo": ["a", "b", "c"], "sketch": ["a", "b"]})
    r = run(["split", "--data", lonely, "-o", os.path.join(lonely, "s.tsv")])
    listed = "class 'c' has no images in: sketch (left out)" in r.stderr
    kept = {c for _, _, c, _ in split_rows(os.path.join(lonely, "s.tsv"))} if r.returncode == 0 else set()
    check("split: a class with images in one domain only is listed and left out", listed and kept == {"a", "b"},
          r.stderr.strip())
    art = os.path.join(tmp, "art")
    make_tree(art, {"photo": ["a", "b"], "art": ["a", "b"]})
    run(["split", "--data", art, "-o", os.path.join(art, "splits", "s.tsv")])
    r = run(["run", "--data", art, "--split", "s", "--out", os.path.join(tmp, "ra"), "--quick"], expect_rc=1)
    check("run: no sketch domain names the domains there and the flag", one_error(r, "art, photo", "--query-domain"),
          r.stderr.strip())
    r = run(["run", "--data", art, "--split", "s", "--out", os.path.join(tmp, "ra"), "--quick",
             "--query-domain", "art", "--domain-kind", "art=paint"], expect_rc=1)
    check("run: a bad --domain-kind", one_error(r, "drawing") and len(r.stderr.strip().splitlines()) == 1,
          r.stderr.strip())
    r = run(["run", "--data", art, "--split", "s", "--out", os.path.join(tmp, "ra"), "--quick",
             "--query-domain", "art", "--domain-kind", "sketch=drawing"], expect_rc=1)
    check("run: --domain-kind naming a domain not in the run", one_error(r, "not a domain of this run"),
          r.stderr.strip())

t.finish()
