#!/usr/bin/env python3
"""End to end: a `duet run --quick` model folder, `duet index` of a folder of photos, and
`duet search` ranking exactly as the run measured (parity to 1e-6, diffusion included); the index
updates incrementally (new, changed, renamed, deleted files), resumes after a kill, skips bad
images, and every bad input is one error line and exit 1 with nothing written.

Usage: search_e2e.py path/to/duet
Skips (exit 0 with a note) when the shared dataset is not available.
"""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

from e2e import E2E

t = E2E(sys.argv[1])
check, run, data = t.check, t.run, t.data


def expect_error(name, args, pattern):
    r = run(args, expect_rc=None)
    ok = r.returncode == 1 and pattern in r.stderr and r.stdout == "" and \
        r.stderr.count("duet: error:") == 1 and "Traceback" not in r.stderr
    check(name, ok, f"rc={r.returncode} stderr={r.stderr[-300:]!r} stdout={r.stdout[:100]!r}")


def mean_ap(lines):
    """mAP@all of `duet search --json -k all` output; relevance = same class folder."""
    aps = []
    for line in lines:
        r = json.loads(line)
        qc = r["query"].split("/")[-2]
        ranks = [i + 1 for i, h in enumerate(r["results"]) if h["path"].split("/")[-2] == qc]
        aps.append(sum((j + 1) / rk for j, rk in enumerate(ranks)) / len(ranks))
    return sum(aps) / len(aps)


def png_header(path, w, h):
    """A PNG whose header claims w x h pixels (its data is far too short)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(data, "splits/category.tsv"))][1:]
classes = sorted({r[2] for r in rows})[:6]

with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "run")
    r = run(["run", "--quick", "--max-classes", str(len(classes)), "--split", "category", "--out", out, "--json"])
    check("quick run exits 0", r.returncode == 0, r.stderr[-500:])
    metrics = json.loads(r.stdout)["splits"]["category"]
    model = os.path.join(out, "category", "model")
    check("the run leaves a model folder", os.path.isfile(os.path.join(model, "manifest.json")) and
          metrics["model"]["dir"].endswith("category/model"))

    r = run(["model", "info", model, "--json"])
    info = json.loads(r.stdout)
    check("model info --json: tag, version, hash, domains and kinds, classes, both members, rank options",
          info["format"] == "duet-model-v2" and info["hash"] == metrics["model"]["hash"] and
          info["query_domains"] == ["sketch"] and info["gallery_domain"] == "photo" and
          info["kinds"] == {"sketch": "drawing", "photo": "image"} and
          info["classes"] == classes and len(info["encoders"]["sketch"]) == 2 and
          info["rank"]["diffusion"] is True, json.dumps(info)[:300])
    r = run(["model", "info", model])
    check("model info prints the config and the diffusion", "config    default" in r.stdout and
          "diffusion k 10" in r.stdout, r.stdout)

    # The test photos of the split as a user's folder (links keep the class folders), the test
    # sketches as queries.
    gal = os.path.join(tmp, "gallery")
    queries = t.link_test_gallery(rows, classes, gal)
    idx = os.path.join(tmp, "photos.idx")
    r = run(["index", "--model", model, "--images", gal, "-o", idx, "--json"])
    rep = json.loads(r.stdout)
    check("index embeds every test photo", rep["images"] == metrics["gallery"] and
          rep["embedded"] == metrics["gallery"] and rep["skipped"] == 0, r.stdout)
    check("index shows progress with images/s and ETA on stderr", "/s" in r.stderr and "index [" in r.stderr)

    # Parity: the mAP of the CLI's rankings is the run's metrics.json, diffusion included.
    r = run(["-q", "search", "--index", idx, "-k", "all", "--json"] + queries)
    lines = r.stdout.strip().split("\n")
    check("one JSON line per query, the whole gallery each", len(lines) == len(queries) and
          all(len(json.loads(l)["results"]) == metrics["gallery"] for l in lines))
    got, want = mean_ap(lines), metrics["retrieval"]["map_all"]
    check("search parity: CLI rankings give the run's map_all to 1e-6", abs(got - want) < 1e-6, f"{got} vs {want}")
    first = json.loads(lines[0])
    scores = [h["score"] for h in first["results"]]
    check("results best first", scores == sorted(scores, reverse=True))
    r = run(["-q", "search", "--index", idx, "-k", "5", "--json", queries[0]])
    top5 = json.loads(r.stdout)
    check("-k 5 is the first 5 of the full ranking", top5["results"] == first["results"][:5] and
          set(top5) == {"query", "unseen", "results"})
    r = run(["-q", "search", "--index", idx, "-k", "3", queries[0]])
    body = r.stdout.strip().split("\n")
    check("text output: the query, then rank, score and path", body[0] == queries[0] and len(body) == 4 and
          body[1].split()[0] == "1" and body[1].split()[2] == first["results"][0]["path"], r.stdout)
    # A photo is a query too, through the photo encoder: an indexed photo comes back among its
    # own class, ahead of every photo of another class (diffusion lets its neighbours vote too, so
    # it need not be first).
    photo = sorted(os.listdir(os.path.join(gal, classes[0])))[0]
    r = run(["-q", "search", "--index", idx, "--domain", "photo", "-k", "10", "--json",
             os.path.join(gal, classes[0], photo)])
    res = [h["path"] for h in json.loads(r.stdout)["results"]]
    at = [i for i, p in enumerate(res) if p.endswith(os.path.join(classes[0], photo))]
    check("a photo query finds itself, only its own class ranked above it",
          at and all(p.split("/")[-2] == classes[0] for p in res[:at[0]]), r.stdout[:300])

    # The bridge (opt-in): the same run with its term weighed and the graph over both spaces
    # re-uses both phases, writes the bridge into the model folder and its rows into the index,
    # and `duet search` still ranks exactly as the run measured.
    r = run(["run", "--quick", "--max-classes", str(len(classes)), "--split", "category", "--out", out, "--json",
             "--bridge", "1", "--unseen-bridge", "3", "--graph", "both"])
    bm = json.loads(r.stdout)["splits"]["category"]
    check("a bridged run fits the bridge on the train images and skips both phases",
          bm["bridge"]["query_rows"]["sketch"] > 0 and bm["diffusion"]["graph"] == "both" and
          "phase2: up to date, skipped" in r.stderr and
          os.path.isfile(os.path.join(model, "bridge.pt")), r.stderr[-300:])
    bidx = os.path.join(tmp, "bridged.idx")
    run(["-q", "index", "--model", model, "--images", gal, "-o", bidx])
    r = run(["-q", "search", "--index", bidx, "-k", "all", "--json"] + queries)
    got, want = mean_ap(r.stdout.strip().split("\n")), bm["retrieval"]["map_all"]
    check("bridged search parity: CLI rankings give the run's map_all to 1e-6", abs(got - want) < 1e-6 and
          abs(want - metrics["retrieval"]["map_all"]) > 1e-6, f"{got} vs {want} (unbridged {metrics['retrieval']['map_all']})")
    r = run(["-q", "search", "--index", idx, "-k", "3", queries[0]], expect_rc=None)
    check("an index of the earlier model is refused by the new one", r.returncode == 1 and "rebuild it" in r.stderr,
          r.stderr[-200:])
    # Back to the default model for the rest.
    r = run(["run", "--quick", "--max-classes", str(len(classes)), "--split", "category", "--out", out, "--json"])
    check("the default run again: no bridge in the model", not os.path.exists(os.path.join(model, "bridge.pt")) and
          json.loads(r.stdout)["splits"]["category"]["retrieval"]["map_all"] == metrics["retrieval"]["map_all"])

    # Incremental update on a folder of real files.
    own = os.path.join(tmp, "own")
    shutil.copytree(gal, own, symlinks=False)
    own_idx = os.path.join(tmp, "own.idx")
    run(["index", "--model", model, "--images", own, "-o", own_idx])
    c0, c1 = classes[0], classes[1]
    files0 = sorted(os.listdir(os.path.join(own, c0)))
    os.remove(os.path.join(own, c0, files0[0]))                                    # deleted
    os.rename(os.path.join(own, c0, files0[1]), os.path.join(own, c0, "renamed.jpg"))  # renamed
    train_photos = [p for d, p, c, s in rows if d == "photo" and s == "train" and c == c1]
    shutil.copy(os.path.join(data, train_photos[0]), os.path.join(own, c1, "new.jpg"))  # new
    shutil.copy(os.path.join(data, train_photos[1]), os.path.join(own, c0, files0[2]))  # changed
    os.makedirs(os.path.join(own, "sub"))
    shutil.copy(os.path.join(data, train_photos[2]), os.path.join(own, "sub", "UPPER.JPG"))  # new, any case
    open(os.path.join(own, ".hidden.jpg"), "wb").write(open(os.path.join(data, train_photos[3]), "rb").read())
    open(os.path.join(own, "notes.txt"), "w").write("not an image")
    os.symlink(own, os.path.join(own, "sub", "loop"))  # a link cycle is followed once
    r = run(["index", "--model", model, "--images", own, "-o", own_idx, "--json"])
    rep = json.loads(r.stdout)
    n = metrics["gallery"]
    check("update embeds only new and changed files, notices the rename and the deletion",
          rep["embedded"] == 3 and rep["renamed"] == 1 and rep["dropped"] == 1 and
          rep["reused"] == n - 3 and rep["images"] == n + 1 and rep["skipped"] == 0, r.stdout)
    fresh = os.path.join(tmp, "fresh.idx")
    run(["index", "--model", model, "--images", own, "-o", fresh])
    check("the updated index is the fresh build, byte for byte",
          open(fresh, "rb").read() == open(own_idx, "rb").read())
    r = run(["index", "--model", model, "--images", own, "-o", own_idx, "--json"])
    check("an unchanged folder embeds nothing", json.loads(r.stdout)["embedded"] == 0)

    # Bad images are skipped and named; --strict refuses them and keeps the index.
    shutil.copy(os.path.join(data, train_photos[4]), os.path.join(own, "cut.jpg"))
    whole = open(os.path.join(own, "cut.jpg"), "rb").read()
    open(os.path.join(own, "cut.jpg"), "wb").write(whole[: len(whole) // 2])
    open(os.path.join(own, "junk.png"), "wb").write(b"this is not a png")
    png_header(os.path.join(own, "huge.png"), 100000, 100000)
    before = open(own_idx, "rb").read()
    expect_error("--strict: a bad image is an error", ["index", "--model", model, "--images", own, "-o", own_idx,
                                                        "--strict"], "cut.jpg")
    check("a failed index leaves the previous one intact", open(own_idx, "rb").read() == before)
    r = run(["index", "--model", model, "--images", own, "-o", own_idx, "--json"])
    rep = json.loads(r.stdout)
    check("truncated, corrupt and oversized images skipped, each named once", rep["skipped"] == 3 and
          all(r.stderr.count(f) == 1 for f in ("cut.jpg", "junk.png", "huge.png")) and
          "larger than" in r.stderr and "truncated" in r.stderr, r.stderr[-600:])
    for f in ("cut.jpg", "junk.png", "huge.png"):
        os.remove(os.path.join(own, f))

    # Interrupted: kill `duet index` after its first checkpoint; the old index is intact and the
    # rerun resumes from the checkpoint, ending with the fresh build.
    big = os.path.join(tmp, "big")
    for dom, path, cls, split in rows:
        if dom == "photo" and cls in classes:
            dst = os.path.join(big, path[len("photo/"):])
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(os.path.join(data, path), dst)
    big_idx = os.path.join(tmp, "big.idx")
    shutil.copy(idx, big_idx)  # another folder's index stands in for the previous one
    before = open(big_idx, "rb").read()
    p = subprocess.Popen([t.duet, "index", "--model", model, "--images", big, "-o", big_idx, "-b", "4",
                          "--checkpoint-every", "0", "-t", "1"], env=t.env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(big_idx + ".partial") and p.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    check("a killed index run leaves the previous index intact and a checkpoint",
          open(big_idx, "rb").read() == before and os.path.exists(big_idx + ".partial"))
    r = run(["index", "--model", model, "--images", big, "-o", big_idx, "--json"])
    rep = json.loads(r.stdout)
    check("the rerun resumes from the checkpoint", 0 < rep["reused"] and rep["embedded"] < rep["images"] and
          not os.path.exists(big_idx + ".partial"), r.stdout)
    big_fresh = os.path.join(tmp, "big_fresh.idx")
    run(["index", "--model", model, "--images", big, "-o", big_fresh])
    check("the resumed index is the fresh build, byte for byte",
          open(big_fresh, "rb").read() == open(big_idx, "rb").read())

    # Bad input: one error line, exit 1, nothing on stdout, nothing written.
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    expect_error("missing image folder", ["index", "--model", model, "--images", tmp + "/nope", "-o", tmp + "/x.idx"],
                 "no such folder")
    expect_error("empty image folder", ["index", "--model", model, "--images", empty, "-o", tmp + "/x.idx"],
                 "no images")
    check("nothing written on failure", not os.path.exists(tmp + "/x.idx"))
    expect_error("query that is not an image", ["search", "--index", idx, tmp + "/photos.idx"], "cannot decode")
    expect_error("missing query", ["search", "--index", idx, tmp + "/none.png"], "no such image")
    expect_error("-k -1", ["search", "--index", idx, "-k", "-1", queries[0]], "-k")
    expect_error("-k not a number", ["search", "--index", idx, "-k", "ten", queries[0]], "-k")
    expect_error("a domain the model lacks", ["search", "--index", idx, "--domain", "art", queries[0]],
                 "no encoder for it")
    cut = os.path.join(tmp, "cut.idx")
    blob = open(idx, "rb").read()
    open(cut, "wb").write(blob[: len(blob) - 1000])
    expect_error("truncated index", ["search", "--index", cut, queries[0]], "truncated")
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0xFF
    open(cut, "wb").write(bytes(bad))
    expect_error("damaged index", ["search", "--index", cut, queries[0]], "damaged")
    expect_error("not an index", ["search", "--index", queries[0], queries[0]], "not a duet gallery index")
    # An index built with another model: the same run re-scored without diffusion ranks otherwise.
    out2 = os.path.join(tmp, "run2")
    shutil.copytree(out, out2)
    run(["run", "--quick", "--max-classes", str(len(classes)), "--split", "category", "--out", out2,
         "--no-diffusion"])
    model2 = os.path.join(out2, "category", "model")
    expect_error("an index built with another model is refused", ["search", "--index", idx, "--model", model2,
                                                                   queries[0]], "built with another model")
    # Model folders: half-written, a missing file, another format version, an edited file.
    broken = os.path.join(tmp, "broken")
    for case, damage, pattern in [
            ("half-written model (no manifest)", lambda d: os.remove(os.path.join(d, "manifest.json")),
             "half-written"),
            ("model without its files", lambda d: os.remove(os.path.join(d, "mapper.pt")), "missing"),
            ("an edited model file", lambda d: open(os.path.join(d, "mapper.pt"), "ab").write(b"x"),
             "does not match"),
            ("a model from another version", lambda d: open(os.path.join(d, "manifest.json"), "w").write(
                open(os.path.join(model, "manifest.json")).read().replace("duet-model-v2", "duet-model-v9")),
             "duet-model-v2")]:
        shutil.rmtree(broken, ignore_errors=True)
        shutil.copytree(model, broken)
        damage(broken)
        expect_error(case, ["model", "info", broken], pattern)
        expect_error(case + " (index)", ["index", "--model", broken, "--images", gal, "-o", tmp + "/x.idx"], pattern)
    check("no index written from a broken model", not os.path.exists(tmp + "/x.idx"))

t.finish()
