#!/usr/bin/env python3
"""Sharded serving on loopback: `duet shard` splits the fixture's index in 2, a `duet serve` per
shard and a `duet serve --shards` front answer as one server over the whole index: the same
results in the same order with the same scores (within float rounding) as a single server, for
sketches and for `like=ID`, on the fixture's model (its 31 photos diffuse whole) and on one whose
diffusion starts from 5 seeds and runs over an 8-item shortlist (each shard sends its best 8, and
the front fetches the seeds' neighbours that no shard sent); thumbnails and files through the front; a stopped or killed shard gives a
partial answer within the deadline, naming it; bad set-ups and requests are refused. The last
model weighs the bridge (duet/bridge.h) and diffuses over both spaces, so its rows travel too.

Usage: serve_shards.py path/to/duet FIXTURE_DIR
"""
import os
import signal
import sys
import tempfile
import time

from e2e import E2E
from serve_util import Server

t = E2E(sys.argv[1])
fx = t.fixture(sys.argv[2])
PNG = {"Content-Type": "image/png"}


def answers(server, queries):
    out = []
    for path, body in queries:
        out.append(server.json("POST" if body else "GET", path, body, PNG if body else {}))
    return out


def same_answers(name, single, front, queries, k):
    worst, first = 0.0, ""
    for (path, _), (s1, a), (s2, b) in zip(queries, answers(single, queries), answers(front, queries)):
        ids_a = [r["id"] for r in a.get("results", [])]
        ids_b = [r["id"] for r in b.get("results", [])]
        ok = s1 == 200 and s2 == 200 and ids_a == ids_b and len(ids_a) == k and \
            [r["path"] for r in a["results"]] == [r["path"] for r in b["results"]] and \
            [r.get("class") for r in a["results"]] == [r.get("class") for r in b["results"]] and \
            a["unseen"] == b["unseen"] and b.get("partial") is False
        if ok:
            worst = max([worst] + [abs(x["score"] - y["score"]) / max(abs(x["score"]), 1e-3)
                                   for x, y in zip(a["results"], b["results"])])
        elif not first:
            first = f"{path}: {s1} {s2} {ids_a[:8]} vs {ids_b[:8]} {b.get('error', '')} {b.get('missing', '')}"
    t.check(f"{name}: the front answers as the single server ({len(queries)} queries, top {k})",
            not first and worst < 1e-5, first or f"largest relative score difference {worst:.1e}")


def shard(index, prefix):
    r = t.run(["shard", "--index", index, "--shards", "2", "-o", prefix])
    files = [f"{prefix}-0.idx", f"{prefix}-1.idx"]
    t.check("duet shard writes 2 shard files", r.returncode == 0 and all(os.path.exists(f) for f in files),
            r.stdout + r.stderr[-300:])
    return files


def sketch_queries(k):
    return [(f"/api/search?k={k}", open(p, "rb").read()) for p in fx["sketches"][:6]]


def compare(name, index, prefix, k, small_k=5):
    files = shard(index, prefix)
    with Server(t.duet, index, t.env) as single, Server(t.duet, files[0], t.env) as a, \
            Server(t.duet, files[1], t.env) as b, \
            Server(t.duet, None, t.env, ["--shards", f"{a.url},{b.url}", "--deadline", "5"]) as front:
        queries = sketch_queries(k) + [(f"/api/search?k={k}&like={i}", None) for i in (0, 17, 30)]
        same_answers(name, single, front, queries, k)
        same_answers(f"{name}, top {small_k}", single, front,
                     [(q.replace(f"k={k}", f"k={small_k}"), b) for q, b in queries], small_k)
        return files


with tempfile.TemporaryDirectory() as tmp:
    # The fixture's model and index: 31 photos, diffused whole.
    files = compare("whole-gallery diffusion", fx["index"], os.path.join(tmp, "photos"), 31)
    with Server(t.duet, fx["index"], t.env) as single, Server(t.duet, files[0], t.env) as a, \
            Server(t.duet, files[1], t.env) as b, \
            Server(t.duet, None, t.env, ["--shards", f"{b.url},{a.url}", "--deadline", "1"]) as front:
        _, info = front.json("GET", "/api/info")
        t.check("the front's /api/info: the whole index, as shards", info.get("images") == 31 and
                info.get("index_type", "").startswith("shards2"), str(info)[:200])
        _, i0 = a.json("GET", "/api/info")
        off = i0["images"]
        same = all(front.request("GET", f"/api/image/{i}{q}")[2] == single.request("GET", f"/api/image/{i}{q}")[2]
                   for i in (0, off - 1, off, 30) for q in ("", "?full=1"))
        t.check("thumbnails and files through the front are the single server's", same)
        st, err = front.json("GET", "/api/image/31")
        t.check("an id past the whole index is 404 at the front", st == 404 and "error" in err, str(err))
        png = open(fx["sketches"][0], "rb").read()
        st, err = a.json("POST", "/api/search?k=5", png, PNG)
        t.check("a shard refuses /api/search: its rows alone are not the gallery", st == 400 and
                "front" in err.get("error", ""), str(err))
        for body in (b"not json", b'{"op": "fly"}', b'{"op": "top", "code": [1, 2]}',
                     b'{"op": "entries", "rows": [999]}'):
            st, err = a.json("POST", "/api/shard", body, {"Content-Type": "application/json"})
            t.check(f"a malformed shard request is a 400: {body[:30]!r}", st == 400 and "error" in err, str(err)[:200])
        # A shard that stops answering (SIGSTOP): the front answers from the other within the
        # deadline, saying so; once it is back, whole answers again.
        os.kill(b.proc.pid, signal.SIGSTOP)
        t0 = time.time()
        st, ans = front.json("POST", "/api/search?k=10", png, PNG)
        took = time.time() - t0
        os.kill(b.proc.pid, signal.SIGCONT)
        ids = [r["id"] for r in ans.get("results", [])]
        t.check("a stopped shard: a partial answer within the deadline, naming it, with the other's rows",
                st == 200 and ans.get("partial") is True and any(b.url in m for m in ans.get("missing", [])) and
                ids and all(i < off for i in ids) and took < 4, f"{st} {took:.1f}s {ans.get('missing')} {ids}")
        st, ans = front.json("POST", "/api/search?k=10", png, PNG)
        t.check("the shard back: whole answers again", st == 200 and ans.get("partial") is False, str(ans)[:200])
        b.proc.kill()
        b.proc.wait()
        t0 = time.time()
        st, ans = front.json("POST", "/api/search?k=10", png, PNG)
        t.check("a killed shard: a partial answer at once", st == 200 and ans.get("partial") is True and
                time.time() - t0 < 2, f"{st} {time.time() - t0:.1f}s {ans.get('missing')}")
        st, err = front.json("GET", f"/api/image/{off}")
        t.check("an image on the killed shard: 503 with a clear error", st == 503 and "does not answer" in err.get("error", ""),
                str(err)[:200])
        st, h = front.json("GET", "/healthz")
        t.check("the front stays up", st == 200, str(h))

        # Set-ups the front refuses, with one line and exit 1.
        for what, args in (("one shard of two", ["--shards", a.url]),
                           ("a whole index's server", ["--shards", f"{a.url},{single.url}"]),
                           ("not a URL", ["--shards", "localhost"]),
                           ("--index and --shards", ["--index", fx["index"], "--shards", a.url])):
            r = t.run(["serve", "--port", "0"] + args, expect_rc=None)
            t.check(f"the front refuses {what}", r.returncode == 1 and r.stderr.count("error") == 1,
                    r.stderr.strip()[-200:])
    r = t.run(["shard", "--index", files[0], "--shards", "2", "-o", os.path.join(tmp, "again")], expect_rc=None)
    t.check("a shard is not sharded again", r.returncode == 1 and "already a shard" in r.stderr, r.stderr[-200:])

    # A model whose diffusion runs over an 8-item shortlist of the 31 photos, from 5 seeds.
    out = os.path.join(tmp, "run8")
    r = t.run(["-q", "run", "--quick", "--max-classes", str(len(fx["classes"])), "--split", "category",
               "--diffusion-seeds", "5", "--diffusion-shortlist", "8", "--out", out])
    index = os.path.join(tmp, "short.idx")
    r2 = t.run(["-q", "index", "--model", os.path.join(out, "category", "model"), "--images", fx["gallery"], "-o", index])
    t.check("a model with an 8-item shortlist and its index", r.returncode == 0 and r2.returncode == 0)
    compare("shortlist diffusion", index, os.path.join(tmp, "short"), 25, 3)
    with Server(t.duet, index, t.env) as plain:
        before = answers(plain, sketch_queries(25))

    # The same model with the bridge weighed and the graph over both spaces (both phases reused):
    # each shard sends its rows' bridge features, the front sends the query's, and the shortlist's
    # graph joins the two spaces at the front.
    r = t.run(["-q", "run", "--quick", "--max-classes", str(len(fx["classes"])), "--split", "category",
               "--diffusion-seeds", "5", "--diffusion-shortlist", "8", "--out", out,
               "--bridge", "1", "--unseen-bridge", "3", "--graph", "both"])
    bridged = os.path.join(tmp, "bridged.idx")
    r2 = t.run(["-q", "index", "--model", os.path.join(out, "category", "model"), "--images", fx["gallery"],
                "-o", bridged])
    t.check("the bridged model and its index", r.returncode == 0 and r2.returncode == 0 and
            os.path.isfile(os.path.join(out, "category", "model", "bridge.pt")))
    with Server(t.duet, bridged, t.env) as with_bridge:
        after = answers(with_bridge, sketch_queries(25))
    t.check("the bridge moves the scores (so the comparison below tests its rows)",
            all(x[0] == y[0] == 200 for x, y in zip(before, after)) and
            any([r["score"] for r in x[1]["results"]] != [r["score"] for r in y[1]["results"]]
                for x, y in zip(before, after)))
    compare("bridge over both graphs, shortlist diffusion", bridged, os.path.join(tmp, "bridged"), 25, 3)
t.finish()
